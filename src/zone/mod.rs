//! The shared-memory zone: its layout and the slot bookkeeping across reloads.
//!
//! The zone is a [`ZoneHeader`] followed by NAME slots ([`NameSlot`]) carved from the front and
//! probe slots ([`ProbeSlot`]) from the back, all fixed-size `#[repr(C)]` atomics. Slots are
//! found by key (the NAME, or the probe's NAME and URL) at configuration time only; the request
//! path gets a pointer to its slot and never searches. Nothing here needs nginx: tests run it on
//! a heap buffer (the registration with nginx is `conf/zone_setup.rs`).
//!
//! Files: `header` (zone-wide state: writers, delivery counts, how alerting is doing), `slots`
//! (what a NAME and a probe target keep), `counters` (the request path's counters), `peers`
//! (tries per upstream peer), `window` (window rings), `incidents` (incident history), `mutes`
//! and `mute_table` (runtime mutes and the muting gates), `key` (slot keys), `size` (sizing and
//! the zone's errors), `claim` (which slot a key gets), `handover` (state and counts carried
//! across reloads and binary upgrades), `routes` (what each routed destination knows of each
//! incident), `address` (the address a `server ... resolve` peer's probe slot holds now).

pub mod address;
mod claim;
pub mod counters;
mod handover;
mod header;
pub mod incidents;
mod key;
pub mod mute_table;
pub mod mutes;
pub mod peers;
pub mod routes;
mod size;
mod slots;
pub mod window;

pub use claim::Claimed;
pub use header::{Alerting, StallReason, ZoneHeader, STALL_INTERVALS};
pub use key::{fnv1a64, slot_key, SlotKey};
pub use size::{
    auto_capacity, payload_for_shm_size, payload_in_mapping, shm_size_for_payload, zone_size,
    SizePlan, ZoneError,
};
pub use slots::{
    CertificateWatch, ErrorRatioState, LatencyState, LevelState, NameSlot, ProbeHealth, ProbeSlot,
    SloState, TrafficState, TRAFFIC_HISTORY_WORDS,
};

use core::mem::{align_of, size_of};
use core::sync::atomic::Ordering::Relaxed;

/// "STALRT" + layout version; a zone written by another layout is never read.
const ZONE_MAGIC: u64 = u64::from_le_bytes(*b"STALRT\x00\x0c");

/// Longest NAME key (a NAME is at most as long, see `conf::params::MAX_NAME_LEN`).
pub const NAME_KEY_MAX: usize = 64;
/// Longest probe key (NAME, a space, the URL); a longer one is shortened by [`slot_key`].
pub const PROBE_KEY_MAX: usize = 512;
/// Worker processes a zone remembers as writers (see [`Zone::register_writer`]).
pub const MAX_WRITERS: usize = 256;

const SLOT_FREE: u32 = 0;
const SLOT_LIVE: u32 = 1;
const SLOT_RETIRED: u32 = 2;

/// Delivery outcome counters, indexed like `notify::delivery::Outcome::ALL`.
pub const NOTIFY_RESULTS: usize = 4;
/// Alert destinations whose deliveries are counted separately.
pub const MAX_DESTINATIONS: usize = 16;

/// True if process `pid` exists (a zombie counts; so may a recycled pid, which only keeps a
/// zone or a slot a little longer): the liveness test of zone writers.
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// How many slots of each kind a zone has carved, as read once from its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    names: usize,
    probes: usize,
}

impl Counts {
    /// Bytes the header and the slots take; `None` past `usize`.
    fn bytes(self) -> Option<usize> {
        size_of::<ZoneHeader>()
            .checked_add(self.names.checked_mul(size_of::<NameSlot>())?)?
            .checked_add(self.probes.checked_mul(size_of::<ProbeSlot>())?)
    }

    fn fit_in(self, size: usize) -> bool {
        self.bytes().is_some_and(|b| b <= size)
    }
}

/// A view of a zone's memory.
///
/// Worker processes can write anything in it, so nothing read from it is trusted to index
/// memory: slot counts are read once and checked against `size`, which the view's creator
/// knows independently of the zone's contents (see [`payload_in_mapping`]).
#[derive(Clone, Copy, Debug)]
pub struct Zone {
    base: *mut u8,
    size: usize,
}

// SAFETY: a Zone only hands out shared references to atomics, and to the mute table, whose
// records are reached only under the zone's lock (`MuteTable::records`).
unsafe impl Send for Zone {}
// SAFETY: as above.
unsafe impl Sync for Zone {}

impl Zone {
    /// Wraps zone memory.
    ///
    /// # Safety
    /// `base` must be valid for `size` bytes for as long as the `Zone` is used. Any contents
    /// will do (every field is an atomic integer), though only zero-filled memory or a zone
    /// written by [`Zone::format`] reads as one.
    pub unsafe fn from_raw(base: *mut u8, size: usize) -> Option<Zone> {
        if base.is_null() || (base as usize) % align_of::<ZoneHeader>() != 0 {
            return None;
        }
        if size < size_of::<ZoneHeader>() {
            return None;
        }
        Some(Zone {
            base,
            size: size - size % 64,
        })
    }

    /// The header.
    pub fn header(&self) -> &ZoneHeader {
        // SAFETY: from_raw checked size and alignment; all-zero is a valid header.
        unsafe { &*(self.base as *const ZoneHeader) }
    }

    /// True when the memory holds a zone of this layout.
    pub fn is_formatted(&self) -> bool {
        self.counts().is_some()
    }

    /// The slot counts, each read once from the header and checked against the zone's real
    /// size; `None` unless the memory holds a zone of this layout. Every use of a count goes
    /// through one such reading: a count re-read later may have been changed by a worker.
    fn counts(&self) -> Option<Counts> {
        let h = self.header();
        let c = Counts {
            names: h.name_count.load(Relaxed) as usize,
            probes: h.probe_count.load(Relaxed) as usize,
        };
        let ours = h.magic.load(Relaxed) == ZONE_MAGIC && h.size.load(Relaxed) == self.size as u64;
        (ours && c.fit_in(self.size)).then_some(c)
    }

    /// The NAME slots and the probe slots (newest first) of `c`; none if they do not fit.
    fn slots(&self, c: Counts) -> (&[NameSlot], &[ProbeSlot]) {
        if !c.fit_in(self.size) {
            return (&[], &[]);
        }
        let probes_at = self.size - c.probes * size_of::<ProbeSlot>();
        // SAFETY: header and slots fit in the zone's `size` bytes (checked above), NAME slots
        // from the front and probe slots from the back, so they never overlap; the slots'
        // alignment (64) divides the base's, the header's size and `size`; any bytes are valid
        // slots (atomics only).
        unsafe {
            (
                core::slice::from_raw_parts(
                    self.base.add(size_of::<ZoneHeader>()) as *const NameSlot,
                    c.names,
                ),
                core::slice::from_raw_parts(self.base.add(probes_at) as *const ProbeSlot, c.probes),
            )
        }
    }

    /// Zeroes the slots carved between `before` and `after` (never handed out yet), so that a
    /// slot starts as zeros whatever the memory held: the zone's creator zeroes only the
    /// header, and zeroing a zone for 10,000 NAMEs touched every page of it (144 MB) at every
    /// `nginx -t` and start.
    fn zero_fresh(&self, before: Counts, after: Counts) {
        if !after.fit_in(self.size) || before.names > after.names || before.probes > after.probes {
            return;
        }
        let names_at = size_of::<ZoneHeader>() + before.names * size_of::<NameSlot>();
        let names_len = (after.names - before.names) * size_of::<NameSlot>();
        let probes_at = self.size - after.probes * size_of::<ProbeSlot>();
        let probes_len = (after.probes - before.probes) * size_of::<ProbeSlot>();
        // SAFETY: both ranges lie within the zone's `size` bytes (`after` fits, checked above)
        // and hold slots no configuration has been given yet, so nothing refers to them; any
        // bytes are valid slots (atomics only).
        unsafe {
            core::ptr::write_bytes(self.base.add(names_at), 0, names_len);
            core::ptr::write_bytes(self.base.add(probes_at), 0, probes_len);
        }
    }

    /// Writes an empty zone over memory whose header is zero-filled.
    pub fn format(&self) {
        let h = self.header();
        h.name_count.store(0, Relaxed);
        h.probe_count.store(0, Relaxed);
        h.size.store(self.size as u64, Relaxed);
        h.magic.store(ZONE_MAGIC, Relaxed);
    }

    /// NAME slots carved so far (none until formatted).
    pub fn names(&self) -> &[NameSlot] {
        self.counts().map_or(&[], |c| self.slots(c).0)
    }

    /// Probe slots carved so far (none until formatted), newest first.
    pub fn probes(&self) -> &[ProbeSlot] {
        self.counts().map_or(&[], |c| self.slots(c).1)
    }

    /// Bytes not carved into the slots of `c`.
    fn free_bytes(&self, c: Counts) -> usize {
        c.bytes().map_or(0, |b| self.size.saturating_sub(b))
    }

    /// The generation of the configuration that last claimed slots here.
    pub fn generation(&self) -> u64 {
        self.header().generation.load(Relaxed) & 0xffff_ffff
    }

    /// Records that process `pid` counts into this zone for configuration `generation`, so
    /// that slots it may write are not handed to another NAME while it lives. Entries of dead
    /// processes are reused.
    ///
    /// With [`MAX_WRITERS`] live writers already recorded, no entry is taken from a live
    /// writer (its slots could then be reclaimed while it still counts into them). Instead the
    /// zone remembers, for good, the lowest generation that found the table full: its
    /// processes cannot be told apart, so none of them is ever known to have exited. The cost
    /// is space, never a wrong count: slots retired after that generation are not reclaimed
    /// in this zone. Automatic sizing moves to a larger, fresh zone once the headroom is used
    /// up; with `status_alert_zone`, a reload needing those slots fails until nginx restarts
    /// or the size changes. Such a writer does not keep the zone mapped across reloads
    /// ([`Zone::has_live_writers`]): counts it makes after the zone is dropped are lost, as
    /// they go to its own mapping, which nothing reads.
    pub fn register_writer(&self, pid: u32, generation: u64, alive: impl Fn(u32) -> bool) {
        let entry = u64::from(pid) << 32 | (generation & 0xffff_ffff);
        let writers = &self.header().writers;
        for w in writers {
            let v = w.load(Relaxed);
            if v >> 32 == u64::from(pid) {
                w.store(entry, Relaxed);
                return;
            }
        }
        for w in writers {
            let v = w.load(Relaxed);
            if (v == 0 || !alive((v >> 32) as u32))
                && w.compare_exchange(v, entry, Relaxed, Relaxed).is_ok()
            {
                return;
            }
        }
        let g = (generation & 0xffff_ffff) + 1;
        let overflow = &self.header().writer_overflow;
        let _ = overflow.fetch_update(Relaxed, Relaxed, |v| (v == 0 || g < v).then_some(g));
    }

    /// The lowest generation of a writer that found the writer table full, if one did.
    fn unregistered_writer_generation(&self) -> Option<u64> {
        let v = self.header().writer_overflow.load(Relaxed);
        v.checked_sub(1)
    }

    /// Generations of the live processes recorded as counting into this zone.
    fn live_writer_generations(&self, alive: &dyn Fn(u32) -> bool) -> Vec<u64> {
        self.header()
            .writers
            .iter()
            .map(|w| w.load(Relaxed))
            .filter(|v| *v != 0 && alive((*v >> 32) as u32))
            .map(|v| v & 0xffff_ffff)
            .collect()
    }

    /// True while a process recorded as counting into this zone lives.
    pub fn has_live_writers(&self, alive: impl Fn(u32) -> bool) -> bool {
        !self.live_writer_generations(&alive).is_empty()
    }

    /// Counts one delivery outcome (index into `notify::delivery::Outcome::ALL`) of
    /// destination `destination`, in the totals and per destination.
    pub fn count_delivery(&self, destination: usize, result: usize) {
        let h = self.header();
        if let Some(c) = h.notifications.get(result) {
            c.fetch_add(1, Relaxed);
        }
        if let Some(c) = h
            .destination_notifications
            .get(destination)
            .and_then(|d| d.get(result))
        {
            c.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests;
