//! Layout of the shared-memory zone and slot bookkeeping across reloads.
//!
//! The zone is a [`ZoneHeader`] followed by `name_capacity` [`NameSlot`]s and `probe_capacity`
//! [`ProbeSlot`]s, all fixed-size `#[repr(C)]` atomics. Slots are found by key (the NAME, or the
//! probe's NAME and URL) at configuration time only; the request path gets a pointer to its
//! slot and never searches. This module needs no nginx: tests run it on a heap buffer.

use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::counters::LocationCounters;
use crate::window::WindowRing;

/// "STALERT" + layout generation; a zone written by another layout is never read.
const ZONE_MAGIC: u64 = u64::from_le_bytes(*b"STALRT\x00\x01");

/// Longest NAME key.
pub const NAME_KEY_MAX: usize = 64;
/// Longest probe key (NAME, a space, the URL).
pub const PROBE_KEY_MAX: usize = 512;

const SLOT_FREE: u32 = 0;
const SLOT_LIVE: u32 = 1;
const SLOT_RETIRED: u32 = 2;

/// Delivery outcome counters, indexed like `notifier::DeliveryResult::ALL`.
pub const NOTIFY_RESULTS: usize = 4;

/// Zone-wide state.
#[repr(C, align(64))]
pub struct ZoneHeader {
    magic: AtomicU64,
    name_capacity: AtomicU32,
    probe_capacity: AtomicU32,
    /// Incremented by every configuration load that uses the zone.
    pub generation: AtomicU64,
    /// Time of the last evaluation tick, ms; evaluators take a tick by compare-and-swap.
    pub eval_tick_ms: AtomicU64,
    /// Alert deliveries by result: sent, retried, failed, dropped.
    pub notifications: [AtomicU64; NOTIFY_RESULTS],
    /// Messages waiting in the notifier queue (as last seen by the delivering worker).
    pub queue_depth: AtomicU64,
}

/// A fixed-capacity key stored in shared memory.
#[repr(C)]
pub struct SlotKey<const N: usize> {
    state: AtomicU32,
    len: AtomicU32,
    retired_generation: AtomicU64,
    bytes: [AtomicU8; N],
}

impl<const N: usize> SlotKey<N> {
    fn matches(&self, key: &[u8]) -> bool {
        self.len.load(Relaxed) as usize == key.len()
            && self
                .bytes
                .iter()
                .zip(key)
                .all(|(b, k)| b.load(Relaxed) == *k)
    }

    fn set(&self, key: &[u8]) {
        for (b, k) in self.bytes.iter().zip(key) {
            b.store(*k, Relaxed);
        }
        self.len.store(key.len().min(N) as u32, Relaxed);
    }

    /// The key as bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let len = (self.len.load(Relaxed) as usize).min(N);
        self.bytes[..len].iter().map(|b| b.load(Relaxed)).collect()
    }

    fn is_live(&self) -> bool {
        self.state.load(Relaxed) == SLOT_LIVE
    }
}

/// Alert state and last window figures of one NAME.
#[repr(C)]
pub struct AlertShared {
    /// `Level` as u8 in the low byte, packed with nothing else so CAS is simple.
    pub level: AtomicU32,
    /// Start of the current incident, ms since the epoch.
    pub incident_since_ms: AtomicU64,
    /// Last announcement of the firing level, ms since the epoch.
    pub last_post_ms: AtomicU64,
    /// Requests in the window at the last evaluation.
    pub window_total: AtomicU64,
    /// 5xx in the window at the last evaluation.
    pub window_errors: AtomicU64,
}

impl AlertShared {
    fn copy_from(&self, o: &AlertShared) {
        self.level.store(o.level.load(Relaxed), Relaxed);
        self.incident_since_ms
            .store(o.incident_since_ms.load(Relaxed), Relaxed);
        self.last_post_ms
            .store(o.last_post_ms.load(Relaxed), Relaxed);
        self.window_total
            .store(o.window_total.load(Relaxed), Relaxed);
        self.window_errors
            .store(o.window_errors.load(Relaxed), Relaxed);
    }

    fn reset(&self) {
        self.level.store(0, Relaxed);
        self.incident_since_ms.store(0, Relaxed);
        self.last_post_ms.store(0, Relaxed);
        self.window_total.store(0, Relaxed);
        self.window_errors.store(0, Relaxed);
    }
}

/// Everything the zone keeps for one NAME.
#[repr(C, align(64))]
pub struct NameSlot {
    /// The NAME.
    pub key: SlotKey<NAME_KEY_MAX>,
    /// Cumulative counters (request path).
    pub counters: LocationCounters,
    /// Window samples (evaluator).
    pub window: WindowRing,
    /// Alert state (evaluator).
    pub alert: AlertShared,
}

/// Probe failure reasons, in the order of [`ProbeShared::failures`].
pub const PROBE_REASONS: [&str; 6] = ["refused", "timeout", "status", "reset", "tls", "dns"];

/// Health state of one probe target.
#[repr(C)]
pub struct ProbeShared {
    /// 0 unknown, 1 up, 2 down.
    pub state: AtomicU32,
    /// Consecutive failed probes.
    pub consecutive_failures: AtomicU32,
    /// Consecutive successful probes.
    pub consecutive_successes: AtomicU32,
    /// HTTP status of the last probe, 0 if none.
    pub last_status: AtomicU32,
    /// Index into [`PROBE_REASONS`] + 1 of the last failure, 0 if none.
    pub last_reason: AtomicU32,
    /// Duration of the last probe in microseconds.
    pub last_duration_us: AtomicU64,
    /// When the current state began, ms since the epoch.
    pub since_ms: AtomicU64,
    /// Failures by reason, see [`PROBE_REASONS`].
    pub failures: [AtomicU64; PROBE_REASONS.len()],
}

impl ProbeShared {
    fn copy_from(&self, o: &ProbeShared) {
        let pairs32 = [
            (&self.state, &o.state),
            (&self.consecutive_failures, &o.consecutive_failures),
            (&self.consecutive_successes, &o.consecutive_successes),
            (&self.last_status, &o.last_status),
            (&self.last_reason, &o.last_reason),
        ];
        for (d, s) in pairs32 {
            d.store(s.load(Relaxed), Relaxed);
        }
        self.last_duration_us
            .store(o.last_duration_us.load(Relaxed), Relaxed);
        self.since_ms.store(o.since_ms.load(Relaxed), Relaxed);
        for (d, s) in self.failures.iter().zip(o.failures.iter()) {
            d.store(s.load(Relaxed), Relaxed);
        }
    }

    fn reset(&self) {
        for a in [
            &self.state,
            &self.consecutive_failures,
            &self.consecutive_successes,
            &self.last_status,
            &self.last_reason,
        ] {
            a.store(0, Relaxed);
        }
        self.last_duration_us.store(0, Relaxed);
        self.since_ms.store(0, Relaxed);
        self.failures.iter().for_each(|f| f.store(0, Relaxed));
    }
}

/// Everything the zone keeps for one probe target.
#[repr(C, align(64))]
pub struct ProbeSlot {
    /// NAME, a space, the target URL.
    pub key: SlotKey<PROBE_KEY_MAX>,
    /// Health state.
    pub probe: ProbeShared,
}

/// The zone cannot hold what the configuration asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct ZoneFull {
    /// Slots needed.
    pub needed: usize,
    /// Slots available.
    pub capacity: usize,
}

/// Bytes needed for a zone with the given capacities.
pub fn zone_size(name_capacity: usize, probe_capacity: usize) -> usize {
    size_of::<ZoneHeader>()
        + name_capacity * size_of::<NameSlot>()
        + probe_capacity * size_of::<ProbeSlot>()
}

/// Capacities for an automatically sized zone: headroom so that a reload adding a few names
/// reuses the zone in place.
pub fn auto_capacity(count: usize) -> usize {
    (count + (count / 4).max(8)).next_multiple_of(8)
}

/// How many NAME slots fit in `size` bytes next to `probe_capacity` probe slots.
pub fn name_capacity_for(size: usize, probe_capacity: usize) -> usize {
    let fixed = size_of::<ZoneHeader>() + probe_capacity * size_of::<ProbeSlot>();
    size.saturating_sub(fixed) / size_of::<NameSlot>()
}

/// The slab allocator needs about one page header per page plus a few pages of its own.
pub fn shm_size_for_payload(payload: usize, pagesize: usize) -> usize {
    let pages = payload.div_ceil(pagesize) + 4;
    // nginx refuses zones below 8 pages.
    (pages * (pagesize + 64) + 2 * pagesize).max(16 * pagesize)
}

/// Inverse of [`shm_size_for_payload`]: usable bytes in a zone of `size`.
pub fn payload_for_shm_size(size: usize, pagesize: usize) -> usize {
    (size.saturating_sub(2 * pagesize) / (pagesize + 64)).saturating_sub(4) * pagesize
}

/// A view of a zone's memory.
#[derive(Clone, Copy, Debug)]
pub struct Zone {
    base: *mut u8,
    size: usize,
}

// SAFETY: a Zone only hands out shared references to atomics.
unsafe impl Send for Zone {}
// SAFETY: as above.
unsafe impl Sync for Zone {}

impl Zone {
    /// Wraps zone memory.
    ///
    /// # Safety
    /// `base` must be 64-byte aligned, valid for `size` bytes for as long as the `Zone` is used,
    /// and either zero-filled or previously formatted by [`Zone::format`].
    pub unsafe fn from_raw(base: *mut u8, size: usize) -> Option<Zone> {
        if base.is_null() || (base as usize) % align_of::<ZoneHeader>() != 0 {
            return None;
        }
        if size < size_of::<ZoneHeader>() {
            return None;
        }
        Some(Zone { base, size })
    }

    /// The header.
    pub fn header(&self) -> &ZoneHeader {
        // SAFETY: from_raw checked size and alignment; all-zero is a valid header.
        unsafe { &*(self.base as *const ZoneHeader) }
    }

    /// True when the memory holds a zone of this layout.
    pub fn is_formatted(&self) -> bool {
        let h = self.header();
        h.magic.load(Relaxed) == ZONE_MAGIC
            && zone_size(
                h.name_capacity.load(Relaxed) as usize,
                h.probe_capacity.load(Relaxed) as usize,
            ) <= self.size
    }

    /// Writes an empty zone with the given capacities. Returns false if it does not fit.
    pub fn format(&self, name_capacity: usize, probe_capacity: usize) -> bool {
        if zone_size(name_capacity, probe_capacity) > self.size {
            return false;
        }
        let h = self.header();
        h.name_capacity.store(name_capacity as u32, Relaxed);
        h.probe_capacity.store(probe_capacity as u32, Relaxed);
        h.magic.store(ZONE_MAGIC, Relaxed);
        true
    }

    /// NAME slots (empty until formatted).
    pub fn names(&self) -> &[NameSlot] {
        if !self.is_formatted() {
            return &[];
        }
        let n = self.header().name_capacity.load(Relaxed) as usize;
        // SAFETY: is_formatted checked that the slots fit; NameSlot's alignment (64) divides the
        // header size, and all-zero is a valid slot.
        unsafe {
            core::slice::from_raw_parts(
                self.base.add(size_of::<ZoneHeader>()) as *const NameSlot,
                n,
            )
        }
    }

    /// Probe slots (empty until formatted).
    pub fn probes(&self) -> &[ProbeSlot] {
        if !self.is_formatted() {
            return &[];
        }
        let h = self.header();
        let names = h.name_capacity.load(Relaxed) as usize;
        let n = h.probe_capacity.load(Relaxed) as usize;
        let offset = size_of::<ZoneHeader>() + names * size_of::<NameSlot>();
        // SAFETY: as in `names`; ProbeSlot is 64-byte aligned and NameSlot's size is a multiple
        // of 64.
        unsafe { core::slice::from_raw_parts(self.base.add(offset) as *const ProbeSlot, n) }
    }

    /// Starts a configuration generation: marks every live slot retired; `claim_*` revives or
    /// assigns slots for the keys of the new configuration.
    pub fn begin_generation(&self) -> u64 {
        let generation = self.header().generation.fetch_add(1, Relaxed) + 1;
        for key in self.names().iter().map(|s| &s.key) {
            retire(key, generation);
        }
        for key in self.probes().iter().map(|s| &s.key) {
            retire(key, generation);
        }
        generation
    }

    /// Finds or assigns the slot of each NAME; returns slot indexes in the order of `keys`.
    pub fn claim_names(&self, keys: &[&[u8]], generation: u64) -> Result<Vec<usize>, ZoneFull> {
        claim(
            self.names(),
            keys,
            generation,
            |s| &s.key,
            |s| {
                s.counters.reset();
                s.window.reset();
                s.alert.reset();
            },
        )
    }

    /// Finds or assigns the slot of each probe key; returns slot indexes in the order of `keys`.
    pub fn claim_probes(&self, keys: &[&[u8]], generation: u64) -> Result<Vec<usize>, ZoneFull> {
        claim(
            self.probes(),
            keys,
            generation,
            |s| &s.key,
            |s| s.probe.reset(),
        )
    }

    /// Copies the state of every live slot from `old` (matched by key) into this zone.
    pub fn import(&self, old: &Zone) {
        if !old.is_formatted() {
            return;
        }
        for slot in self.names().iter().filter(|s| s.key.is_live()) {
            let key = slot.key.to_vec();
            if let Some(o) = old.names().iter().find(|o| o.key.matches(&key)) {
                slot.counters.copy_from(&o.counters);
                slot.window.copy_from(&o.window);
                slot.alert.copy_from(&o.alert);
            }
        }
        for slot in self.probes().iter().filter(|s| s.key.is_live()) {
            let key = slot.key.to_vec();
            if let Some(o) = old.probes().iter().find(|o| o.key.matches(&key)) {
                slot.probe.copy_from(&o.probe);
            }
        }
        let (h, oh) = (self.header(), old.header());
        for (d, s) in h.notifications.iter().zip(oh.notifications.iter()) {
            d.store(s.load(Relaxed), Relaxed);
        }
        h.generation.fetch_max(oh.generation.load(Relaxed), Relaxed);
    }
}

fn retire<const N: usize>(key: &SlotKey<N>, generation: u64) {
    if key.state.load(Relaxed) == SLOT_LIVE {
        key.state.store(SLOT_RETIRED, Relaxed);
        key.retired_generation.store(generation, Relaxed);
    }
}

/// Assigns slots: the slot already holding the key (its data is kept), else a free slot, else
/// one retired by an earlier reload, else (capacity tight) one retired by this reload.
fn claim<S, const N: usize>(
    slots: &[S],
    keys: &[&[u8]],
    generation: u64,
    key_of: impl Fn(&S) -> &SlotKey<N>,
    reset: impl Fn(&S),
) -> Result<Vec<usize>, ZoneFull> {
    if keys.len() > slots.len() {
        return Err(ZoneFull {
            needed: keys.len(),
            capacity: slots.len(),
        });
    }
    let mut out = vec![usize::MAX; keys.len()];
    for (k, key) in keys.iter().enumerate() {
        if let Some(i) = slots
            .iter()
            .position(|s| key_of(s).state.load(Relaxed) != SLOT_FREE && key_of(s).matches(key))
        {
            key_of(&slots[i]).state.store(SLOT_LIVE, Relaxed);
            out[k] = i;
        }
    }
    for (k, key) in keys.iter().enumerate() {
        if out[k] != usize::MAX {
            continue;
        }
        let state = |s: &S| key_of(s).state.load(Relaxed);
        let retired_before = |s: &S| {
            state(s) == SLOT_RETIRED && key_of(s).retired_generation.load(Relaxed) < generation
        };
        let i = slots
            .iter()
            .position(|s| state(s) == SLOT_FREE)
            .or_else(|| slots.iter().position(retired_before))
            .or_else(|| slots.iter().position(|s| state(s) == SLOT_RETIRED))
            .ok_or(ZoneFull {
                needed: keys.len(),
                capacity: slots.len(),
            })?;
        let sk = key_of(&slots[i]);
        reset(&slots[i]);
        sk.set(key);
        sk.state.store(SLOT_LIVE, Relaxed);
        out[k] = i;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{alloc_zeroed, dealloc, Layout};

    struct Buf(*mut u8, Layout);
    impl Buf {
        fn new(size: usize) -> Buf {
            let layout = Layout::from_size_align(size, 64).unwrap();
            // SAFETY: non-zero size.
            Buf(unsafe { alloc_zeroed(layout) }, layout)
        }
        fn zone(&self) -> Zone {
            // SAFETY: zeroed, aligned, lives as long as the test.
            unsafe { Zone::from_raw(self.0, self.1.size()) }.unwrap()
        }
    }
    impl Drop for Buf {
        fn drop(&mut self) {
            // SAFETY: allocated with this layout.
            unsafe { dealloc(self.0, self.1) }
        }
    }

    fn keys<'a>(names: &[&'a str]) -> Vec<&'a [u8]> {
        names.iter().map(|s| s.as_bytes()).collect()
    }

    #[test]
    fn layout_is_cache_line_aligned() {
        assert_eq!(size_of::<ZoneHeader>() % 64, 0);
        assert_eq!(size_of::<NameSlot>() % 64, 0);
        assert_eq!(size_of::<ProbeSlot>() % 64, 0);
        // Documented in the README (memory per NAME).
        assert_eq!(size_of::<NameSlot>(), 9216);
        assert_eq!(auto_capacity(1), 16);
        assert_eq!(auto_capacity(100), 128);
        assert_eq!(name_capacity_for(zone_size(10, 3), 3), 10);
    }

    #[test]
    fn claim_keeps_existing_slots_across_generations() {
        let b = Buf::new(zone_size(4, 0));
        let z = b.zone();
        assert!(z.format(4, 0));
        let g = z.begin_generation();
        let ids = z.claim_names(&keys(&["a", "b"]), g).unwrap();
        z.names()[ids[0]].counters.record(200, 1);
        z.names()[ids[1]].counters.record(500, 1);

        // Reload: "b" removed, "c" added, "a" kept.
        let g = z.begin_generation();
        let ids2 = z.claim_names(&keys(&["c", "a"]), g).unwrap();
        assert_eq!(ids2[1], ids[0], "a keeps its slot");
        assert_ne!(
            ids2[0], ids[1],
            "c does not take b's slot while free slots exist"
        );
        assert_eq!(z.names()[ids2[1]].counters.snapshot().total(), 1);
        assert_eq!(z.names()[ids2[0]].counters.snapshot().total(), 0);
    }

    #[test]
    fn removed_then_readded_name_keeps_counters() {
        let b = Buf::new(zone_size(4, 0));
        let z = b.zone();
        z.format(4, 0);
        let g = z.begin_generation();
        let a = z.claim_names(&keys(&["a"]), g).unwrap()[0];
        z.names()[a].counters.record(200, 1);
        let g = z.begin_generation();
        z.claim_names(&keys(&["x"]), g).unwrap();
        let g = z.begin_generation();
        let a2 = z.claim_names(&keys(&["a"]), g).unwrap()[0];
        assert_eq!(a, a2);
        assert_eq!(z.names()[a2].counters.snapshot().total(), 1);
    }

    #[test]
    fn full_zone_reuses_retired_slots_then_fails() {
        let b = Buf::new(zone_size(2, 0));
        let z = b.zone();
        z.format(2, 0);
        let g = z.begin_generation();
        let ids = z.claim_names(&keys(&["a", "b"]), g).unwrap();
        z.names()[ids[0]].counters.record(200, 1);
        let g = z.begin_generation();
        let ids = z.claim_names(&keys(&["c", "d"]), g).unwrap();
        for i in ids {
            assert_eq!(
                z.names()[i].counters.snapshot().total(),
                0,
                "reused slot is reset"
            );
        }
        let g = z.begin_generation();
        assert_eq!(
            z.claim_names(&keys(&["a", "b", "c"]), g),
            Err(ZoneFull {
                needed: 3,
                capacity: 2
            })
        );
    }

    #[test]
    fn import_copies_by_key_into_a_resized_zone() {
        let old_buf = Buf::new(zone_size(2, 1));
        let old = old_buf.zone();
        old.format(2, 1);
        let g = old.begin_generation();
        let ids = old.claim_names(&keys(&["a", "b"]), g).unwrap();
        for _ in 0..3 {
            old.names()[ids[1]].counters.record(503, 1);
        }
        old.names()[ids[1]].alert.level.store(2, Relaxed);
        let p = old.claim_probes(&keys(&["be http://x/"]), g).unwrap()[0];
        old.probes()[p].probe.state.store(2, Relaxed);
        old.header().notifications[0].store(7, Relaxed);

        let new_buf = Buf::new(zone_size(8, 2));
        let new = new_buf.zone();
        new.format(8, 2);
        let g = new.begin_generation();
        let nids = new.claim_names(&keys(&["b", "c"]), g).unwrap();
        let np = new.claim_probes(&keys(&["be http://x/"]), g).unwrap()[0];
        new.import(&old);
        assert_eq!(new.names()[nids[0]].counters.snapshot().errors(), 3);
        assert_eq!(new.names()[nids[0]].alert.level.load(Relaxed), 2);
        assert_eq!(new.names()[nids[1]].counters.snapshot().total(), 0);
        assert_eq!(new.probes()[np].probe.state.load(Relaxed), 2);
        assert_eq!(new.header().notifications[0].load(Relaxed), 7);
    }

    #[test]
    fn shm_size_round_trips() {
        for payload in [1usize, 4096, 150_000, 12_000_000] {
            let size = shm_size_for_payload(payload, 4096);
            assert!(payload_for_shm_size(size, 4096) >= payload, "{payload}");
            assert!(size >= 8 * 4096, "nginx needs at least 8 pages");
        }
    }

    #[test]
    fn unformatted_zone_has_no_slots() {
        let b = Buf::new(zone_size(2, 0));
        let z = b.zone();
        assert!(!z.is_formatted());
        assert!(z.names().is_empty());
        assert!(!z.format(3, 0), "does not fit");
    }
}
