//! Which slot each key of a configuration gets: the one holding it, fresh space, or a retired
//! slot nobody can write any more. Planned without changing the zone, claimed at commit.

use core::mem::size_of;
use core::sync::atomic::Ordering::Relaxed;
use std::collections::HashMap;

use super::key::{by_key, slot_keys, SlotKey};
use super::{
    zone_size, Counts, NameSlot, ProbeSlot, Zone, ZoneError, ZoneHeader, NAME_KEY_MAX,
    PROBE_KEY_MAX, SLOT_FREE, SLOT_LIVE, SLOT_RETIRED,
};

/// Which slot a key gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pick {
    /// The slot already holding the key (live, or retired and kept): its data is kept.
    Existing(usize),
    /// A slot carved from free space.
    New,
    /// A retired slot nobody can write any more, reset for the key.
    Reclaimed(usize),
}

/// Slots a configuration gets in a zone, worked out without changing it.
#[derive(Debug)]
pub(super) struct Plan {
    names: Vec<Pick>,
    probes: Vec<Pick>,
}

/// The slots a configuration got, in the order of its keys.
pub struct Claimed<'z> {
    /// The generation the configuration counts under.
    pub generation: u64,
    /// One slot per NAME key.
    pub names: Vec<&'z NameSlot>,
    /// One slot per probe key.
    pub probes: Vec<&'z ProbeSlot>,
}

pub(super) fn lossy<const N: usize>(key: &SlotKey<N>) -> String {
    String::from_utf8_lossy(&key.to_vec()).into_owned()
}

pub(super) fn retire<const N: usize>(key: &SlotKey<N>, generation: u64) {
    if key.state.load(Relaxed) == SLOT_LIVE {
        key.state.store(SLOT_RETIRED, Relaxed);
        key.retired_generation.store(generation, Relaxed);
    }
}

/// Picks a slot for every key: the one holding it, else fresh space while `space` lasts,
/// else a reclaimable retired slot (the longest retired first); `None` when none is left.
pub(super) fn pick<S, const N: usize>(
    slots: &[S],
    keys: &[impl AsRef<[u8]>],
    key_of: impl Fn(&S) -> &SlotKey<N>,
    reclaimable: &dyn Fn(u32, u64) -> bool,
    mut space: usize,
) -> Vec<Option<Pick>> {
    let mut taken = vec![false; slots.len()];
    // The used slots by key, the first of equal keys kept: one pass over the slots instead of
    // one per key (10,000 NAMEs reloaded into a zone holding 10,000 were 10^8 key reads, each
    // in another slot's page).
    let mut held: HashMap<Vec<u8>, usize> = HashMap::with_capacity(slots.len());
    for (i, s) in slots.iter().enumerate() {
        if key_of(s).is_used() {
            held.entry(key_of(s).to_vec()).or_insert(i);
        }
    }
    let existing: Vec<Option<usize>> = keys
        .iter()
        .map(|key| {
            let i = *held.get(key.as_ref())?;
            taken[i] = true;
            Some(i)
        })
        .collect();
    let mut spare: Vec<usize> = (0..slots.len())
        .filter(|&i| {
            let k = key_of(&slots[i]);
            !taken[i] && reclaimable(k.state.load(Relaxed), k.retired_generation.load(Relaxed))
        })
        .collect();
    // Longest retired last, so that pop() takes it first.
    spare.sort_by_key(|&i| core::cmp::Reverse(key_of(&slots[i]).retired_generation.load(Relaxed)));
    existing
        .into_iter()
        .map(|e| match e {
            Some(i) => Some(Pick::Existing(i)),
            None if space > 0 => {
                space -= 1;
                Some(Pick::New)
            }
            None => spare.pop().map(Pick::Reclaimed),
        })
        .collect()
}

impl Zone {
    /// Works out the slots of a configuration without changing anything.
    fn plan(
        &self,
        counts: Counts,
        names: &[impl AsRef<[u8]>],
        probes: &[impl AsRef<[u8]>],
        alive: &dyn Fn(u32) -> bool,
    ) -> Result<Plan, ZoneError> {
        let next = self.header().generation.load(Relaxed).wrapping_add(1) & 0xffff_ffff;
        let mut writers = self.live_writer_generations(alive);
        // Processes that could not be recorded may live as long as they like.
        writers.extend(self.unregistered_writer_generation());
        // A slot retired at generation r is written only by processes of generations < r;
        // a slot live now is retired at `next` unless the new configuration keeps it.
        let reclaimable = |state: u32, retired: u64| {
            let r = if state == SLOT_LIVE { next } else { retired };
            state != SLOT_FREE && writers.iter().all(|g| *g >= r)
        };
        // NAME slots are carved first; probes take what is left.
        let free = self.free_bytes(counts);
        let (name_slots, probe_slots) = self.slots(counts);
        let (ns, ps) = (size_of::<NameSlot>(), size_of::<ProbeSlot>());
        let names = pick(name_slots, names, |s| &s.key, &reclaimable, free / ns);
        let new_names = names.iter().filter(|p| **p == Some(Pick::New)).count();
        let left = free - new_names * ns;
        let probes = pick(probe_slots, probes, |s| &s.key, &reclaimable, left / ps);
        let missing = |picks: &[Option<Pick>], size: usize| {
            picks.iter().filter(|p| p.is_none()).count() * size
        };
        let needed = missing(&names, ns) + missing(&probes, ps);
        if needed > 0 {
            return Err(ZoneError::Full { needed, free });
        }
        let all = |picks: Vec<Option<Pick>>| picks.into_iter().flatten().collect();
        let (names, probes) = (all(names), all(probes));
        Ok(Plan { names, probes })
    }

    /// Checks that a configuration's keys fit; see [`Zone::claim`].
    pub fn check(
        &self,
        names: &[&[u8]],
        probes: &[&[u8]],
        alive: impl Fn(u32) -> bool,
    ) -> Result<(), ZoneError> {
        let (names, probes) = (
            slot_keys(names, NAME_KEY_MAX),
            slot_keys(probes, PROBE_KEY_MAX),
        );
        let counts = self.counts().unwrap_or_default();
        self.plan(counts, &names, &probes, &alive).map(|_| ())
    }

    /// Starts a configuration generation and gives every key a slot: the slot already holding
    /// it (its data kept), else fresh space, else a retired slot that no live process can
    /// still write (the oldest first). Every other live slot is retired: its data stays until
    /// the space is needed, so a NAME that comes back finds its counters. Keys are whole: a
    /// slot holds a long one shortened by [`slot_key`].
    pub fn claim(
        &self,
        names: &[&[u8]],
        probes: &[&[u8]],
        alive: impl Fn(u32) -> bool,
    ) -> Result<Claimed<'_>, ZoneError> {
        if !self.is_formatted() {
            self.format();
        }
        let (names, probes) = (
            slot_keys(names, NAME_KEY_MAX),
            slot_keys(probes, PROBE_KEY_MAX),
        );
        // One reading of the counts serves the whole claim; the new ones are written last.
        let before = self.counts().unwrap_or_default();
        let plan = self.plan(before, &names, &probes, &alive)?;
        let new = |picks: &[Pick]| picks.iter().filter(|p| **p == Pick::New).count();
        let (new_names, new_probes) = (new(&plan.names), new(&plan.probes));
        let after = Counts {
            names: before.names + new_names,
            probes: before.probes + new_probes,
        };
        if !after.fit_in(self.size) {
            // The plan found room, so this cannot happen; but never index past the zone.
            let needed = zone_size(new_names, new_probes) - size_of::<ZoneHeader>();
            let free = self.free_bytes(before);
            return Err(ZoneError::Full { needed, free });
        }
        self.zero_fresh(before, after);
        let (name_slots, probe_slots) = self.slots(after);
        let generation = self
            .header()
            .generation
            .fetch_add(1, Relaxed)
            .wrapping_add(1)
            & 0xffff_ffff;
        for slot in &name_slots[..before.names] {
            retire(&slot.key, generation);
        }
        // Probe slots grow downwards: the ones carved before are the last `before.probes`.
        for slot in &probe_slots[new_probes..] {
            retire(&slot.key, generation);
        }
        let mut fresh_names = before.names..after.names;
        let names: Vec<&NameSlot> = names
            .iter()
            .zip(&plan.names)
            .map(|(key, p)| {
                let slot = match *p {
                    Pick::Existing(i) => &name_slots[i],
                    // Fresh space was zeroed above; reset anyway so a slot never starts with
                    // stale data.
                    Pick::New => &name_slots[fresh_names.next().unwrap_or(0)],
                    Pick::Reclaimed(i) => &name_slots[i],
                };
                if !matches!(*p, Pick::Existing(_)) {
                    slot.reset();
                }
                slot.key.set(key);
                slot.key.state.store(SLOT_LIVE, Relaxed);
                slot
            })
            .collect();
        // The newest probe slot is the first: the k-th new key takes slot `new_probes - 1 - k`.
        let mut fresh_probes = (0..new_probes).rev();
        let probes: Vec<&ProbeSlot> = probes
            .iter()
            .zip(&plan.probes)
            .map(|(key, p)| {
                let slot = match *p {
                    Pick::Existing(i) | Pick::Reclaimed(i) => &probe_slots[new_probes + i],
                    Pick::New => &probe_slots[fresh_probes.next().unwrap_or(0)],
                };
                if !matches!(*p, Pick::Existing(_)) {
                    slot.reset();
                }
                slot.key.set(key);
                slot.key.state.store(SLOT_LIVE, Relaxed);
                slot
            })
            .collect();
        let h = self.header();
        h.name_count.store(after.names as u32, Relaxed);
        h.probe_count.store(after.probes as u32, Relaxed);
        Ok(Claimed {
            generation,
            names,
            probes,
        })
    }

    /// Pairs every live NAME slot of this zone with the slot holding the same key in `old`.
    pub fn name_pairs<'a>(&'a self, old: &'a Zone) -> Vec<(&'a NameSlot, &'a NameSlot)> {
        let by_key = by_key(old.names(), |s: &NameSlot| &s.key);
        self.names()
            .iter()
            .filter(|s| s.key.is_live())
            .filter_map(|s| by_key.get(&s.key.to_vec()).map(|o| (s, *o)))
            .collect()
    }
}
