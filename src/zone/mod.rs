//! Layout of the shared-memory zone and slot bookkeeping across reloads.
//!
//! The zone is a [`ZoneHeader`] followed by `name_capacity` [`NameSlot`]s and `probe_capacity`
//! [`ProbeSlot`]s, all fixed-size `#[repr(C)]` atomics. Slots are found by key (the NAME, or the
//! probe's NAME and URL) at configuration time only; the request path gets a pointer to its
//! slot and never searches. This module needs no nginx: tests run it on a heap buffer.

pub mod counters;
pub mod mutes;
#[cfg(not(test))]
pub(crate) mod shm;

use core::mem::{align_of, size_of};
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8};

use crate::evaluate::event::Level;
use crate::evaluate::incidents::{IncidentLog, IncidentSummary};
use crate::evaluate::window::{LongWindowRing, WindowRing};
use crate::probe::Reason;
use crate::zone::counters::{BucketBounds, LocationCounters};

/// "STALRT" + layout version; a zone written by another layout is never read.
const ZONE_MAGIC: u64 = u64::from_le_bytes(*b"STALRT\x00\x07");

/// Longest NAME key (a NAME is at most as long, see `conf::params::MAX_NAME_LEN`).
pub const NAME_KEY_MAX: usize = 64;
/// Longest probe key (NAME, a space, the URL); a longer one is shortened by [`slot_key`].
pub const PROBE_KEY_MAX: usize = 512;
/// Worker processes a zone remembers as writers (see [`Zone::register_writer`]).
pub const MAX_WRITERS: usize = 256;

const SLOT_FREE: u32 = 0;
const SLOT_LIVE: u32 = 1;
const SLOT_RETIRED: u32 = 2;

/// Delivery outcome counters, indexed like `notifier::DeliveryResult::ALL`.
pub const NOTIFY_RESULTS: usize = 4;
/// Alert destinations whose deliveries are counted separately.
pub const MAX_DESTINATIONS: usize = 16;

/// Zone-wide state.
///
/// Slots are carved from the payload as configurations need them: NAME slots from the front,
/// probe slots from the back, so one zone size serves any mix and a slot never moves. Only the
/// master changes the layout (at configuration time); workers only hold pointers to slots.
#[repr(C, align(64))]
pub struct ZoneHeader {
    magic: AtomicU64,
    /// Payload bytes (header included).
    size: AtomicU64,
    name_count: AtomicU32,
    probe_count: AtomicU32,
    /// Incremented by every configuration that commits with this zone as its primary.
    pub generation: AtomicU64,
    /// Set once a newer configuration counts into another zone: its evaluator stops.
    pub superseded: AtomicU64,
    /// Time of the last evaluation tick, ms; evaluators take a tick by compare-and-swap.
    pub eval_tick_ms: AtomicU64,
    /// Alert deliveries by result: sent, retried, failed, dropped.
    pub notifications: [AtomicU64; NOTIFY_RESULTS],
    /// The same per destination, in configuration order.
    pub destination_notifications: [[AtomicU64; NOTIFY_RESULTS]; MAX_DESTINATIONS],
    /// Messages waiting in the notifier queue (as last seen by the delivering worker).
    pub queue_depth: AtomicU64,
    /// The evaluator watching itself (SPEC 11): see [`Alerting`].
    pub alerting: Alerting,
    /// Processes counting into this zone: `pid << 32 | generation`, 0 for an empty entry.
    writers: [AtomicU64; MAX_WRITERS],
    /// The lowest generation of a process that found `writers` full, plus one; 0 if none did.
    /// Never cleared (see [`Zone::register_writer`]).
    writer_overflow: AtomicU64,
}

/// How the evaluator is doing, written by the evaluating process (and the master at commit),
/// read by every worker for metrics, the status page and the stall warning.
#[repr(C)]
#[derive(Default)]
pub struct Alerting {
    /// Evaluation rounds completed (`nginx_status_alert_evaluations_total`).
    pub evaluations: AtomicU64,
    /// When the last evaluation round completed, ms since the epoch; 0 before the first.
    pub last_evaluation_ms: AtomicU64,
    /// `status_alert_interval` of the configuration counting here, ms.
    pub interval_ms: AtomicU64,
    /// When the configuration counting here committed, ms: until the first evaluation,
    /// staleness is measured from it.
    pub configured_ms: AtomicU64,
    /// Helper processes started to replace one that died, stalled or could not be started.
    pub helper_restarts: AtomicU64,
    /// 1 while another nginx master of this configuration (a binary upgrade) holds the lease:
    /// this zone is then not evaluated, and that is not a stall.
    pub evaluated_elsewhere: AtomicU64,
    /// Pid of the process that last evaluated.
    pub evaluator_pid: AtomicU64,
    /// Why evaluation cannot run, as a [`StallReason`]; 0 when nothing is known to be wrong.
    pub reason: AtomicU64,
    /// When a worker last logged that alerting is not running, ms (once a minute in all).
    pub stall_logged_ms: AtomicU64,
}

/// Evaluations older than this many intervals mean alerting is not running.
pub const STALL_INTERVALS: u64 = 3;

/// Why the evaluating process cannot evaluate, as far as it knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallReason {
    /// Nothing known: the evaluating process itself may be stopped or hung.
    Unknown = 0,
    /// The state directory or the lease file in it cannot be used.
    StateDirectory = 1,
    /// No helper process could be started.
    Helper = 2,
}

impl StallReason {
    /// The reason stored in [`Alerting::reason`].
    pub fn from_index(i: u64) -> StallReason {
        match i {
            1 => StallReason::StateDirectory,
            2 => StallReason::Helper,
            _ => StallReason::Unknown,
        }
    }
}

impl Alerting {
    /// When alerting stopped running, ms since the epoch: the last evaluation (or the commit
    /// of the configuration, before the first one) when that is more than
    /// [`STALL_INTERVALS`] intervals before `now_ms`; `None` while it runs, before it was
    /// ever configured, and while another master evaluates.
    pub fn stalled_since(&self, now_ms: u64) -> Option<u64> {
        let interval = self.interval_ms.load(Relaxed);
        let configured = self.configured_ms.load(Relaxed);
        if interval == 0 || configured == 0 || self.evaluated_elsewhere.load(Relaxed) != 0 {
            return None;
        }
        let since = self.last_evaluation_ms.load(Relaxed).max(configured);
        (now_ms.saturating_sub(since) > STALL_INTERVALS * interval).then_some(since)
    }

    /// Records a completed evaluation round by process `pid` at `now_ms`.
    pub fn evaluated(&self, now_ms: u64, pid: u32) {
        self.evaluations.fetch_add(1, Relaxed);
        self.last_evaluation_ms.store(now_ms, Relaxed);
        self.evaluator_pid.store(u64::from(pid), Relaxed);
        self.reason.store(StallReason::Unknown as u64, Relaxed);
    }

    /// True for the one caller per minute that should log the stall (compare-and-swap).
    pub fn should_log_stall(&self, now_ms: u64) -> bool {
        let last = self.stall_logged_ms.load(Relaxed);
        now_ms.saturating_sub(last) >= 60_000
            && self
                .stall_logged_ms
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_ok()
    }
}

/// FNV-1a, 64 bits, of `bytes`: a hash that is the same in every process, build and release.
pub fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Hex digits of the hash at the end of a shortened key.
const KEY_HASH_DIGITS: usize = 16;

/// The key a slot of `max` bytes holds for `key`: `key` itself when it fits, else its first
/// `max - 17` bytes, `#` and the [`fnv1a64`] of the whole key in hex. Keys that share a long
/// prefix still get slots of their own, and a key gets the same slot on every reload. (Only a
/// 64-bit hash collision, or a key of exactly `max` bytes ending in that very `#` and hash,
/// could share a slot with a long key.)
pub fn slot_key(key: &[u8], max: usize) -> std::borrow::Cow<'_, [u8]> {
    if key.len() <= max {
        return key.into();
    }
    let keep = max.saturating_sub(KEY_HASH_DIGITS + 1);
    let mut short = key[..keep].to_vec();
    short.push(b'#');
    short.extend_from_slice(format!("{:016x}", fnv1a64(key.iter().copied())).as_bytes());
    short.truncate(max);
    short.into()
}

/// The slot keys of a configuration's keys (see [`slot_key`]).
fn slot_keys<'k>(keys: &[&'k [u8]], max: usize) -> Vec<std::borrow::Cow<'k, [u8]>> {
    keys.iter().map(|k| slot_key(k, max)).collect()
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
        let len = self.len.load(Relaxed) as usize;
        len <= N
            && len == key.len()
            && self
                .bytes
                .iter()
                .zip(key)
                .all(|(b, k)| b.load(Relaxed) == *k)
    }

    /// Stores `key`, at most `N` bytes (see [`slot_key`]).
    fn set(&self, key: &[u8]) {
        debug_assert!(key.len() <= N, "keys go through slot_key");
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

    fn is_used(&self) -> bool {
        self.state.load(Relaxed) != SLOT_FREE
    }
}

/// Alert state and last window figures of one NAME.
#[repr(C)]
pub struct AlertShared {
    /// `Level` as u8 in the low byte, packed with nothing else so CAS is simple.
    pub level: AtomicU32,
    /// Seqlock over the window figures: odd while the evaluator writes them.
    window_seq: AtomicU32,
    /// Start of the current incident, ms since the epoch.
    pub incident_since_ms: AtomicU64,
    /// Last announcement of the firing level, ms since the epoch.
    pub last_post_ms: AtomicU64,
    /// Requests in the window at the last evaluation.
    window_total: AtomicU64,
    /// 5xx in the window at the last evaluation.
    window_errors: AtomicU64,
    /// When the level was taken over from another master's evaluator (binary upgrade), ms; 0
    /// otherwise. Until this zone has seen a whole window, the level is held (see
    /// src/evaluate/mod.rs).
    pub adopted_at_ms: AtomicU64,
}

impl AlertShared {
    fn copy_from(&self, o: &AlertShared) {
        self.level.store(o.level.load(Relaxed), Relaxed);
        self.incident_since_ms
            .store(o.incident_since_ms.load(Relaxed), Relaxed);
        self.last_post_ms
            .store(o.last_post_ms.load(Relaxed), Relaxed);
        let (total, errors) = o.window();
        self.set_window(total, errors);
        self.adopted_at_ms
            .store(o.adopted_at_ms.load(Relaxed), Relaxed);
    }

    fn reset(&self) {
        self.level.store(0, Relaxed);
        self.incident_since_ms.store(0, Relaxed);
        self.last_post_ms.store(0, Relaxed);
        self.set_window(0, 0);
        self.adopted_at_ms.store(0, Relaxed);
    }

    /// Publishes the window's requests and 5xx (one writer: the evaluator).
    pub fn set_window(&self, total: u64, errors: u64) {
        let seq = self.window_seq.load(Relaxed);
        self.window_seq.store(seq.wrapping_add(1), Relaxed);
        fence(Release);
        self.window_total.store(total, Relaxed);
        self.window_errors.store(errors, Relaxed);
        self.window_seq.store(seq.wrapping_add(2), Release);
    }

    /// The window's (requests, 5xx) as one consistent pair, never 5xx above requests.
    pub fn window(&self) -> (u64, u64) {
        for _ in 0..16 {
            let before = self.window_seq.load(Acquire);
            let total = self.window_total.load(Relaxed);
            let errors = self.window_errors.load(Relaxed);
            fence(Acquire);
            if before % 2 == 0 && self.window_seq.load(Relaxed) == before {
                return (total, errors);
            }
            core::hint::spin_loop();
        }
        // A writer stalled mid-update (it was killed): the pair is the best there is.
        let total = self.window_total.load(Relaxed);
        (total, self.window_errors.load(Relaxed).min(total))
    }
}

/// Level and incident timing of one alert kind (latency, error budget).
#[repr(C)]
pub struct LevelShared {
    /// `Level` as u32, changed only by compare-and-swap.
    pub level: AtomicU32,
    /// Start of the current incident, ms since the epoch; 0 if ok.
    pub incident_since_ms: AtomicU64,
    /// Last announcement of the firing level, ms since the epoch.
    pub last_post_ms: AtomicU64,
}

impl LevelShared {
    fn copy_from(&self, o: &LevelShared) {
        self.level.store(o.level.load(Relaxed), Relaxed);
        self.incident_since_ms
            .store(o.incident_since_ms.load(Relaxed), Relaxed);
        self.last_post_ms
            .store(o.last_post_ms.load(Relaxed), Relaxed);
    }

    fn reset(&self) {
        self.level.store(0, Relaxed);
        self.incident_since_ms.store(0, Relaxed);
        self.last_post_ms.store(0, Relaxed);
    }

    /// Start of the current incident, `None` while ok.
    pub fn ongoing_since_ms(&self) -> Option<u64> {
        (Level::from_u8(self.level.load(Relaxed) as u8) != Level::Ok)
            .then(|| self.incident_since_ms.load(Relaxed))
    }
}

/// `latency=` state of one NAME.
#[repr(C)]
pub struct LatencyShared {
    /// Level of the percentile alert.
    pub state: LevelShared,
    /// Percentile estimate at the last evaluation in microseconds, plus one; 0 for none.
    pub estimate_us_plus_one: AtomicU64,
}

impl LatencyShared {
    /// The percentile estimate of the last evaluation in seconds, if there was one.
    pub fn estimate_seconds(&self) -> Option<f64> {
        let v = self.estimate_us_plus_one.load(Relaxed);
        (v != 0).then(|| (v - 1) as f64 / 1e6)
    }

    /// Stores the estimate of this evaluation (`None`: no requests, or no `latency=`).
    pub fn set_estimate_ms(&self, ms: Option<f64>) {
        let v = ms.map_or(0, |ms| (ms * 1000.0).round() as u64 + 1);
        self.estimate_us_plus_one.store(v, Relaxed);
    }
}

/// `slo=` state of one NAME.
#[repr(C)]
pub struct SloShared {
    /// Level of the burn-rate alert.
    pub state: LevelShared,
    /// Burn rates of the last evaluation (`f64::to_bits`), in the order of
    /// `slo::BURN_FACTORS`.
    pub burn_rates: [AtomicU64; 4],
}

impl SloShared {
    /// Burn rates of the last evaluation, in the order of `slo::BURN_FACTORS`.
    pub fn rates(&self) -> [f64; 4] {
        [0, 1, 2, 3].map(|i| f64::from_bits(self.burn_rates[i].load(Relaxed)))
    }

    /// Stores this evaluation's burn rates.
    pub fn set_rates(&self, rates: [f64; 4]) {
        for (d, r) in self.burn_rates.iter().zip(rates) {
            d.store(r.to_bits(), Relaxed);
        }
    }
}

/// Everything the zone keeps for one NAME: 13,888 bytes (see the layout test).
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
    /// Coarse samples for the burn-rate windows of `slo=` (evaluator).
    pub long_window: LongWindowRing,
    /// `latency=` state (evaluator).
    pub latency: LatencyShared,
    /// `slo=` state (evaluator).
    pub slo: SloShared,
    /// Recent incidents and per-kind totals (evaluator).
    pub incidents: IncidentLog,
}

/// [`ProbeShared::state`] of a target that is down.
const PROBE_DOWN: u32 = 2;

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
    /// Index into [`Reason::ALL`] + 1 of the last failure, 0 if none.
    pub last_reason: AtomicU32,
    /// Duration of the last probe in microseconds.
    pub last_duration_us: AtomicU64,
    /// When the current state began, ms since the epoch.
    pub since_ms: AtomicU64,
    /// Failures by reason, in the order of [`Reason::ALL`].
    pub failures: [AtomicU64; Reason::COUNT],
    /// Milliseconds spent down in periods that have ended (see [`ProbeShared::book_down_time`]).
    pub down_ms_total: AtomicU64,
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
        self.down_ms_total
            .store(o.down_ms_total.load(Relaxed), Relaxed);
    }

    /// Books a down period that ended: called once per DOWN -> UP transition (the one that
    /// won the state's compare-and-swap), with the time it went down.
    pub fn book_down_time(&self, down_since_ms: u64, now_ms: u64) {
        self.down_ms_total
            .fetch_add(now_ms.saturating_sub(down_since_ms), Relaxed);
    }

    /// Seconds spent down at `now_ms`, the current down period included
    /// (`nginx_probe_down_seconds_total`).
    pub fn down_seconds(&self, now_ms: u64) -> u64 {
        let current = if self.state.load(Relaxed) == PROBE_DOWN {
            now_ms.saturating_sub(self.since_ms.load(Relaxed))
        } else {
            0
        };
        (self.down_ms_total.load(Relaxed) + current) / 1000
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
        self.down_ms_total.store(0, Relaxed);
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
    /// Bytes the new slots need.
    pub needed: usize,
    /// Bytes left in the zone.
    pub free: usize,
}

impl core::fmt::Display for ZoneFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "needs {} more bytes, {} are free",
            self.needed, self.free
        )
    }
}

/// Bytes needed for a zone holding the given numbers of slots.
pub fn zone_size(names: usize, probes: usize) -> usize {
    size_of::<ZoneHeader>() + names * size_of::<NameSlot>() + probes * size_of::<ProbeSlot>()
}

/// Slots an automatically sized zone is made for: headroom (an eighth, at least 8) so that
/// reloads adding a few names (or renaming some while old workers still count into the old ones)
/// keep the zone. Past the headroom a reload moves the counts into a larger zone.
pub fn auto_capacity(count: usize) -> usize {
    (count + (count / 8).max(8)).next_multiple_of(8)
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

/// Where a zone's payload lies in its shared memory: `(offset, length)` within the mapping of
/// `map_size` bytes at `map_addr`, given `data`, the address the slab pool's `data` field holds.
///
/// Worker processes can write that field (it is in the mapping), so the master takes from it
/// only an offset, and only one that is page aligned and past the slab pool's first page (its
/// header and page table, which a payload must never overlap). The length comes from the
/// mapping's size alone ([`payload_for_shm_size`], what the master allocated) and must fit behind
/// the offset. `None` for anything else: the zone is damaged and is not read.
pub fn payload_in_mapping(
    map_addr: usize,
    map_size: usize,
    data: usize,
    pagesize: usize,
) -> Option<(usize, usize)> {
    if !pagesize.is_power_of_two() || map_addr % pagesize != 0 {
        return None;
    }
    let offset = data.checked_sub(map_addr)?;
    let len = payload_for_shm_size(map_size, pagesize);
    let fits = offset.checked_add(len).is_some_and(|end| end <= map_size);
    (fits && offset % pagesize == 0 && offset >= pagesize && len >= size_of::<ZoneHeader>())
        .then_some((offset, len))
}

/// True if process `pid` exists (a zombie counts; so may a recycled pid, which only keeps a
/// zone or a slot a little longer): the liveness test of zone writers.
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// What decides the primary zone's size: `status_alert_zone` (size and where it was set) or
/// automatic sizing, the configuration's keys, and the previous configuration's zones.
pub struct SizePlan<'a> {
    /// `status_alert_zone SIZE` and its `file:line`.
    pub explicit: Option<(usize, &'a str)>,
    /// Keys of the NAMEs.
    pub names: &'a [&'a [u8]],
    /// Keys of the probe targets.
    pub probes: &'a [&'a [u8]],
    /// The previous configuration's zones, with their sizes.
    pub old: &'a [(usize, Zone)],
    /// The system page size.
    pub pagesize: usize,
}

impl SizePlan<'_> {
    /// The size: an explicit one if the configuration fits (in the zone of that size that will
    /// be reused, or in a fresh one); automatically, the running primary's while it has room,
    /// else a fresh size with headroom that no old zone unable to hold us has.
    pub fn size(&self, alive: impl Fn(u32) -> bool + Copy) -> Result<usize, String> {
        let (names, probes) = (self.names, self.probes);
        let fits_old = |size: usize| {
            self.old
                .iter()
                .find(|(s, _)| *s == size)
                .map(|(_, z)| z.check(names, probes, alive))
        };
        if let Some((size, place)) = self.explicit {
            let need = zone_size(names.len(), probes.len());
            return match fits_old(size) {
                Some(Err(full)) => Err(format!(
                    "status_alert_zone {}k cannot hold {} names and {} probes: it {full} (slots \
                     of removed names are reused once the workers that count into them have \
                     exited) in {place}",
                    size / 1024,
                    names.len(),
                    probes.len(),
                )),
                Some(Ok(())) => Ok(size),
                None if payload_for_shm_size(size, self.pagesize) >= need => Ok(size),
                None => Err(format!(
                    "status_alert_zone: size {}k is too small for {} names and {} probes, at \
                     least {}k is needed in {place}",
                    size / 1024,
                    names.len(),
                    probes.len(),
                    shm_size_for_payload(need, self.pagesize).div_ceil(1024)
                )),
            };
        }
        let primary = self
            .old
            .iter()
            .find(|(_, z)| z.header().superseded.load(Relaxed) == 0);
        if let Some((size, _)) = primary {
            if fits_old(*size) == Some(Ok(())) {
                return Ok(*size);
            }
        }
        let probe_capacity = if probes.is_empty() {
            0
        } else {
            auto_capacity(probes.len())
        };
        let payload = zone_size(auto_capacity(names.len()), probe_capacity);
        let mut size = shm_size_for_payload(payload, self.pagesize);
        // Never land on an old zone's size that cannot hold us (it would be reused).
        while fits_old(size).is_some_and(|r| r.is_err()) {
            size += self.pagesize;
        }
        Ok(size)
    }
}

/// Which slot a key gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pick {
    /// The slot already holding the key (live, or retired and kept): its data is kept.
    Existing(usize),
    /// A slot carved from free space.
    New,
    /// A retired slot nobody can write any more, reset for the key.
    Reclaimed(usize),
}

/// Slots a configuration gets in a zone, worked out without changing it.
#[derive(Debug)]
struct Plan {
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

/// How many slots of each kind a zone has carved, as read once from its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
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

// SAFETY: a Zone only hands out shared references to atomics.
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

    /// Writes an empty zone over zero-filled memory.
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

    /// Works out the slots of a configuration without changing anything.
    fn plan(
        &self,
        counts: Counts,
        names: &[impl AsRef<[u8]>],
        probes: &[impl AsRef<[u8]>],
        alive: &dyn Fn(u32) -> bool,
    ) -> Result<Plan, ZoneFull> {
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
            return Err(ZoneFull { needed, free });
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
    ) -> Result<(), ZoneFull> {
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
    ) -> Result<Claimed<'_>, ZoneFull> {
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
            return Err(ZoneFull { needed, free });
        }
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
                    // Fresh space is zero-filled (nginx maps zones anonymously) or was never
                    // handed out; reset anyway so a slot never starts with stale data.
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
                    slot.probe.reset();
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
        let by_key: std::collections::HashMap<Vec<u8>, &NameSlot> = old
            .names()
            .iter()
            .filter(|s| s.key.is_used())
            .map(|s| (s.key.to_vec(), s))
            .collect();
        self.names()
            .iter()
            .filter(|s| s.key.is_live())
            .filter_map(|s| by_key.get(&s.key.to_vec()).map(|o| (s, *o)))
            .collect()
    }

    /// Copies the evaluator's state (windows, alert levels, probe health, delivery counts) of
    /// every live slot from `old`, matched by key. Counters are moved, not copied: see
    /// [`Zone::move_counts`].
    pub fn import_state(&self, old: &Zone) {
        if !old.is_formatted() {
            return;
        }
        for (slot, o) in self.name_pairs(old) {
            slot.window.copy_from(&o.window);
            if slot.counters.bounds_id.load(Relaxed) != o.counters.bounds_id.load(Relaxed) {
                // The buckets will not move (see `LocationCounters::move_from`): the window's
                // bucket history restarts with them.
                slot.window.reset_histogram();
            }
            slot.alert.copy_from(&o.alert);
            slot.long_window.copy_from(&o.long_window);
            slot.latency.state.copy_from(&o.latency.state);
            slot.latency
                .estimate_us_plus_one
                .store(o.latency.estimate_us_plus_one.load(Relaxed), Relaxed);
            slot.slo.state.copy_from(&o.slo.state);
            slot.slo.set_rates(o.slo.rates());
            slot.incidents.copy_from(&o.incidents);
        }
        let by_key: std::collections::HashMap<Vec<u8>, &ProbeSlot> = old
            .probes()
            .iter()
            .filter(|s| s.key.is_used())
            .map(|s| (s.key.to_vec(), s))
            .collect();
        for slot in self.probes().iter().filter(|s| s.key.is_live()) {
            if let Some(o) = by_key.get(&slot.key.to_vec()) {
                slot.probe.copy_from(&o.probe);
            }
        }
        let (h, oh) = (self.header(), old.header());
        h.eval_tick_ms
            .fetch_max(oh.eval_tick_ms.load(Relaxed), Relaxed);
        let (a, oa) = (&h.alerting, &oh.alerting);
        for (mine, theirs) in [
            (&a.evaluations, &oa.evaluations),
            (&a.last_evaluation_ms, &oa.last_evaluation_ms),
            (&a.helper_restarts, &oa.helper_restarts),
            (&a.stall_logged_ms, &oa.stall_logged_ms),
        ] {
            mine.fetch_max(theirs.load(Relaxed), Relaxed);
        }
    }

    /// The evaluator's state of every live slot, for the evaluator that comes next when it
    /// cannot read this zone (the other master of a binary upgrade): per NAME its alert level,
    /// incident start and last post, then the same three for `latency=` and for `slo=` (an
    /// importer that knows only the first three ignores the rest); per probe target its health.
    pub fn export_state(&self) -> serde_json::Value {
        let mut names = serde_json::Map::new();
        for s in self.names().iter().filter(|s| s.key.is_live()) {
            let a = &s.alert;
            let (l, o) = (&s.latency.state, &s.slo.state);
            let v = [
                u64::from(a.level.load(Relaxed)),
                a.incident_since_ms.load(Relaxed),
                a.last_post_ms.load(Relaxed),
                u64::from(l.level.load(Relaxed)),
                l.incident_since_ms.load(Relaxed),
                l.last_post_ms.load(Relaxed),
                u64::from(o.level.load(Relaxed)),
                o.incident_since_ms.load(Relaxed),
                o.last_post_ms.load(Relaxed),
            ];
            names.insert(lossy(&s.key), serde_json::json!(v));
        }
        let mut probes = serde_json::Map::new();
        for s in self.probes().iter().filter(|s| s.key.is_live()) {
            let p = &s.probe;
            let v = [
                u64::from(p.state.load(Relaxed)),
                p.since_ms.load(Relaxed),
                u64::from(p.consecutive_failures.load(Relaxed)),
                u64::from(p.consecutive_successes.load(Relaxed)),
                u64::from(p.last_reason.load(Relaxed)),
                u64::from(p.last_status.load(Relaxed)),
            ];
            probes.insert(lossy(&s.key), serde_json::json!(v));
        }
        serde_json::json!({"version": 1, "names": names, "probes": probes})
    }

    /// Takes over state written by [`Zone::export_state`] at `now_ms` for the keys this zone
    /// has; anything else in it (unknown keys, other versions, odd values) is ignored. A NAME
    /// exported without the `latency=` and `slo=` levels (an older exporter) keeps its own.
    /// Every level taken over is held for one window (`adopted_at_ms`, see src/evaluate/mod.rs).
    pub fn import_exported(&self, state: &serde_json::Value, now_ms: u64) {
        if state["version"] != 1 {
            return;
        }
        let field = |v: &serde_json::Value, i: usize| v.get(i).and_then(|x| x.as_u64());
        for s in self.names().iter().filter(|s| s.key.is_live()) {
            let v = &state["names"][lossy(&s.key)];
            if let (Some(level), Some(since), Some(post)) = (field(v, 0), field(v, 1), field(v, 2))
            {
                let a = &s.alert;
                a.level.store(level.min(2) as u32, Relaxed);
                a.incident_since_ms.store(since, Relaxed);
                a.last_post_ms.store(post, Relaxed);
                let mut firing = level != 0;
                for (k, shared) in [(3, &s.latency.state), (6, &s.slo.state)] {
                    if let (Some(level), Some(since), Some(post)) =
                        (field(v, k), field(v, k + 1), field(v, k + 2))
                    {
                        shared.level.store(level.min(2) as u32, Relaxed);
                        shared.incident_since_ms.store(since, Relaxed);
                        shared.last_post_ms.store(post, Relaxed);
                    }
                    firing |= shared.level.load(Relaxed) != 0;
                }
                // Only a firing level (of any kind) needs holding until this zone has seen a
                // window.
                a.adopted_at_ms
                    .store(if firing { now_ms } else { 0 }, Relaxed);
            }
        }
        for s in self.probes().iter().filter(|s| s.key.is_live()) {
            let v = &state["probes"][lossy(&s.key)];
            let f: Vec<Option<u64>> = (0..6).map(|i| field(v, i)).collect();
            if let [Some(st), Some(since), Some(fails), Some(passes), Some(reason), Some(status)] =
                f[..]
            {
                let p = &s.probe;
                p.state.store(st.min(2) as u32, Relaxed);
                p.since_ms.store(since, Relaxed);
                p.consecutive_failures.store(fails as u32, Relaxed);
                p.consecutive_successes.store(passes as u32, Relaxed);
                p.last_reason
                    .store(reason.min(Reason::COUNT as u64) as u32, Relaxed);
                p.last_status.store(status.min(999) as u32, Relaxed);
            }
        }
    }

    /// Counts one delivery outcome (index into `notifier::DeliveryResult::ALL`) of
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

    /// Moves the counts of `old` into this zone: the request counters of every NAME in
    /// `pairs` (see [`Zone::name_pairs`]) and the delivery outcomes.
    pub fn move_counts(&self, old: &Zone, pairs: &[(&NameSlot, &NameSlot)]) {
        for (slot, o) in pairs {
            slot.counters.move_from(&o.counters);
        }
        let (h, oh) = (self.header(), old.header());
        let per_destination = h.destination_notifications.iter().flatten();
        let old_per_destination = oh.destination_notifications.iter().flatten();
        let all = h.notifications.iter().chain(per_destination);
        for (d, s) in all.zip(oh.notifications.iter().chain(old_per_destination)) {
            let n = s.swap(0, Relaxed);
            if n != 0 {
                d.fetch_add(n, Relaxed);
            }
        }
    }
}

impl NameSlot {
    fn reset(&self) {
        self.counters.reset();
        self.window.reset();
        self.alert.reset();
        self.long_window.reset();
        self.latency.state.reset();
        self.latency.set_estimate_ms(None);
        self.slo.state.reset();
        self.slo.set_rates([0.0; 4]);
        self.incidents.reset();
    }

    /// Makes the slot's histogram count by `bounds` (`status_alert_buckets`): called when a
    /// configuration claims the slot. A slot that counted by other bounds restarts its
    /// histogram and the window's bucket history; with the same bounds nothing changes, so the
    /// counters survive the reload. True when the slot counted with other bounds before (its
    /// histogram restarted).
    pub fn adopt_bucket_bounds(&self, bounds: &BucketBounds) -> bool {
        let changed = self.counters.adopt_bounds(bounds);
        if changed {
            self.window.reset_histogram();
        }
        changed
    }

    /// Incident totals and history at `now_ms`, ongoing incidents included.
    pub fn incident_summary(&self, now_ms: u64) -> IncidentSummary {
        let level = Level::from_u8(self.alert.level.load(Relaxed) as u8);
        let errors_since = (level != Level::Ok).then(|| self.alert.incident_since_ms.load(Relaxed));
        let ongoing = [
            errors_since,
            self.latency.state.ongoing_since_ms(),
            self.slo.state.ongoing_since_ms(),
        ];
        self.incidents.summary(now_ms, ongoing)
    }
}

fn lossy<const N: usize>(key: &SlotKey<N>) -> String {
    String::from_utf8_lossy(&key.to_vec()).into_owned()
}

fn retire<const N: usize>(key: &SlotKey<N>, generation: u64) {
    if key.state.load(Relaxed) == SLOT_LIVE {
        key.state.store(SLOT_RETIRED, Relaxed);
        key.retired_generation.store(generation, Relaxed);
    }
}

/// Picks a slot for every key: the one holding it, else fresh space while `space` lasts,
/// else a reclaimable retired slot (the longest retired first); `None` when none is left.
fn pick<S, const N: usize>(
    slots: &[S],
    keys: &[impl AsRef<[u8]>],
    key_of: impl Fn(&S) -> &SlotKey<N>,
    reclaimable: &dyn Fn(u32, u64) -> bool,
    mut space: usize,
) -> Vec<Option<Pick>> {
    let mut taken = vec![false; slots.len()];
    let existing: Vec<Option<usize>> = keys
        .iter()
        .map(|key| {
            let i = slots
                .iter()
                .position(|s| key_of(s).is_used() && key_of(s).matches(key.as_ref()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerting_is_stalled_after_three_intervals_without_evaluation() {
        let a = Alerting::default();
        assert_eq!(a.stalled_since(1_000_000), None, "never configured");
        a.interval_ms.store(10_000, Relaxed);
        a.configured_ms.store(100_000, Relaxed);
        assert_eq!(
            a.stalled_since(130_000),
            None,
            "three intervals are allowed"
        );
        assert_eq!(a.stalled_since(130_001), Some(100_000), "from the commit");
        a.evaluated(125_000, 42);
        assert_eq!(a.evaluations.load(Relaxed), 1);
        assert_eq!(a.stalled_since(155_000), None);
        assert_eq!(
            a.stalled_since(155_001),
            Some(125_000),
            "from the last round"
        );
        a.evaluated_elsewhere.store(1, Relaxed);
        assert_eq!(a.stalled_since(900_000), None, "another master evaluates");
    }

    #[test]
    fn the_stall_is_logged_once_a_minute_by_one_caller() {
        let a = Alerting::default();
        assert!(a.should_log_stall(60_000));
        assert!(!a.should_log_stall(60_001));
        assert!(!a.should_log_stall(119_999));
        assert!(a.should_log_stall(120_000));
    }
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

    fn nobody(_: u32) -> bool {
        false
    }

    fn everybody(_: u32) -> bool {
        true
    }

    fn claim_names<'z>(z: &'z Zone, names: &[&str]) -> Vec<&'z NameSlot> {
        z.claim(&keys(names), &[], nobody).unwrap().names
    }

    #[test]
    fn layout_is_cache_line_aligned() {
        assert_eq!(size_of::<ZoneHeader>() % 64, 0);
        assert_eq!(size_of::<NameSlot>() % 64, 0);
        assert_eq!(size_of::<ProbeSlot>() % 64, 0);
        assert_eq!(size_of::<ProbeSlot>(), 640);
        // Documented in the README (memory per NAME): at most 16 KiB including the histogram
        // window (6,664 bytes), the burn-rate ring (2,312) and the incident log (312).
        assert_eq!(size_of::<crate::evaluate::window::WindowRing>(), 6664);
        assert_eq!(size_of::<NameSlot>(), 13888);
        assert!(size_of::<NameSlot>() <= 16 * 1024);
        assert_eq!(auto_capacity(1), 16);
        assert_eq!(auto_capacity(100), 112);
    }

    #[test]
    fn claim_keeps_existing_slots_across_generations() {
        let b = Buf::new(zone_size(4, 0));
        let z = b.zone();
        let first = claim_names(&z, &["a", "b"]);
        first[0].counters.record(200, 1);
        first[1].counters.record(500, 1);

        // Reload: "b" removed, "c" added, "a" kept.
        let second = claim_names(&z, &["c", "a"]);
        assert!(core::ptr::eq(second[1], first[0]), "a keeps its slot");
        assert!(
            !core::ptr::eq(second[0], first[1]),
            "c does not take b's slot"
        );
        assert_eq!(second[1].counters.snapshot().total(), 1);
        assert_eq!(second[0].counters.snapshot().total(), 0);
    }

    #[test]
    fn removed_then_readded_name_keeps_counters() {
        let b = Buf::new(zone_size(4, 0));
        let z = b.zone();
        let a = claim_names(&z, &["a"])[0];
        a.counters.record(200, 1);
        claim_names(&z, &["x"]);
        let a2 = claim_names(&z, &["a"])[0];
        assert!(core::ptr::eq(a, a2));
        assert_eq!(a2.counters.snapshot().total(), 1);
    }

    #[test]
    fn a_slot_is_reused_only_once_no_process_can_write_it() {
        let b = Buf::new(zone_size(2, 0));
        let z = b.zone();
        let first = z.claim(&keys(&["a", "b"]), &[], nobody).unwrap();
        // Worker 10 of that generation still runs (an old worker finishing its requests).
        z.register_writer(10, first.generation, everybody);
        first.names[0].counters.record(500, 1);
        // Renaming both while it lives: no slot is free and none may be reused.
        let full = z.check(&keys(&["c", "d"]), &[], everybody);
        assert_eq!(
            full,
            Err(ZoneFull {
                needed: 2 * size_of::<NameSlot>(),
                free: 0
            })
        );
        // Once it has exited, the retired slots are reused, reset.
        let renamed = z.claim(&keys(&["c", "d"]), &[], nobody).unwrap();
        for s in &renamed.names {
            assert_eq!(s.counters.snapshot().total(), 0, "reused slot is reset");
        }
    }

    #[test]
    fn fresh_space_before_retired_slots_and_oldest_retired_first() {
        let b = Buf::new(zone_size(3, 0));
        let z = b.zone();
        let a = claim_names(&z, &["a"])[0];
        let bb = claim_names(&z, &["b"])[0];
        // "a" retired first, then "b": "c" takes the last fresh slot, "d" the oldest retired.
        let cd = claim_names(&z, &["c"]);
        let d = claim_names(&z, &["c", "d"]);
        assert!(!core::ptr::eq(cd[0], a) && !core::ptr::eq(cd[0], bb));
        assert!(
            core::ptr::eq(d[1], a),
            "the longest retired slot is reused first"
        );
    }

    #[test]
    fn one_size_holds_any_mix_of_names_and_probes() {
        let b = Buf::new(zone_size(2, 4));
        let z = b.zone();
        let c = z
            .claim(&keys(&["a", "b"]), &keys(&["p1", "p2"]), nobody)
            .unwrap();
        c.probes[0].probe.state.store(2, Relaxed);
        let c2 = z
            .claim(&keys(&["a"]), &keys(&["p0", "p1", "p2", "p3"]), nobody)
            .unwrap();
        assert!(
            core::ptr::eq(c2.probes[1], c.probes[0]),
            "probe slots never move"
        );
        assert_eq!(c2.probes[1].probe.state.load(Relaxed), 2);
        assert_eq!(c2.probes.len(), 4);
        assert!(z.check(&keys(&["a", "b", "x"]), &[], nobody).is_err());
    }

    #[test]
    fn writers_are_remembered_until_they_die() {
        let b = Buf::new(zone_size(1, 0));
        let z = b.zone();
        z.format();
        z.register_writer(7, 1, everybody);
        z.register_writer(8, 1, everybody);
        assert!(z.has_live_writers(|pid| pid == 8));
        assert!(!z.has_live_writers(|pid| pid == 9));
        // The same pid updates its entry; a dead writer's entry is reused.
        z.register_writer(8, 2, everybody);
        z.register_writer(9, 3, |pid| pid != 7);
        assert_eq!(z.live_writer_generations(&|_| true), vec![3, 2]);
    }

    #[test]
    fn a_full_writer_table_never_forgets_a_live_writer() {
        let b = Buf::new(zone_size(2, 0));
        let z = b.zone();
        let first = z.claim(&keys(&["a", "b"]), &[], nobody).unwrap();
        let pids = 1..=MAX_WRITERS as u32 + 1;
        for pid in pids.clone() {
            z.register_writer(pid, first.generation, everybody);
        }
        // Whichever of them is the one still running, renaming both finds no slot to reuse.
        for survivor in pids {
            let full = z.check(&keys(&["c", "d"]), &[], |pid| pid == survivor);
            assert!(full.is_err(), "pid {survivor}'s slots would be reused");
        }
    }

    #[test]
    fn an_unregistered_writer_keeps_later_retired_slots_for_good() {
        let b = Buf::new(zone_size(3, 0));
        let z = b.zone();
        claim_names(&z, &["a"]);
        let second = z.claim(&keys(&["b"]), &[], nobody).unwrap();
        for pid in 1..=MAX_WRITERS as u32 + 1 {
            z.register_writer(pid, second.generation, everybody);
        }
        // All of them have exited, as far as anyone can tell. "a" (retired before that
        // generation) can be reused; "b" (retired after it) cannot, in this zone.
        let third = claim_names(&z, &["c", "d"]);
        assert_eq!(third.len(), 2);
        assert!(!z.has_live_writers(nobody), "nothing keeps the zone mapped");
        assert!(z.check(&keys(&["e", "f"]), &[], nobody).is_err());
        assert!(z.check(&keys(&["c", "e"]), &[], nobody).is_err());
    }

    #[test]
    fn counts_move_into_a_new_zone_and_state_is_copied() {
        let old_buf = Buf::new(zone_size(2, 1));
        let old = old_buf.zone();
        let c = old
            .claim(&keys(&["a", "b"]), &keys(&["be http://x/"]), nobody)
            .unwrap();
        for _ in 0..3 {
            c.names[1].counters.record(503, 1);
        }
        c.names[1].alert.level.store(2, Relaxed);
        c.probes[0].probe.state.store(2, Relaxed);
        old.header().notifications[0].store(7, Relaxed);

        let new_buf = Buf::new(zone_size(8, 2));
        let new = new_buf.zone();
        let n = new
            .claim(&keys(&["b", "c"]), &keys(&["be http://x/"]), nobody)
            .unwrap();
        new.import_state(&old);
        let pairs = new.name_pairs(&old);
        new.move_counts(&old, &pairs);
        assert_eq!(n.names[0].counters.snapshot().errors(), 3);
        assert_eq!(n.names[0].alert.level.load(Relaxed), 2);
        assert_eq!(n.names[1].counters.snapshot().total(), 0);
        assert_eq!(n.probes[0].probe.state.load(Relaxed), 2);
        assert_eq!(new.header().notifications[0].load(Relaxed), 7);
        // An old worker counts one more into the old zone: the next move brings it over.
        c.names[1].counters.record(503, 1);
        new.move_counts(&old, &pairs);
        assert_eq!(n.names[0].counters.snapshot().errors(), 4);
        assert_eq!(c.names[1].counters.snapshot().total(), 0);
    }

    #[test]
    fn new_bucket_bounds_restart_the_histogram_only() {
        let b = Buf::new(zone_size(1, 0));
        let z = b.zone();
        let s = claim_names(&z, &["a"])[0];
        let default = BucketBounds::default();
        s.adopt_bucket_bounds(&default);
        s.counters.record(200, 3);
        s.adopt_bucket_bounds(&default);
        assert_eq!(
            s.counters.snapshot().buckets[0],
            1,
            "same bounds keep counts"
        );
        s.adopt_bucket_bounds(&BucketBounds::new(&[1, 2]).unwrap());
        let snap = s.counters.snapshot();
        assert_eq!((snap.buckets[0], snap.total()), (0, 1));
    }

    #[test]
    fn incident_state_survives_a_resize_and_a_reset_slot_forgets_it() {
        let old_buf = Buf::new(zone_size(1, 0));
        let old = old_buf.zone();
        let o = claim_names(&old, &["a"])[0];
        o.incidents.open(
            crate::evaluate::incidents::IncidentKind::Latency,
            1_000,
            Level::Warning,
            0.7,
        );
        o.latency.state.level.store(1, Relaxed);
        o.latency.state.incident_since_ms.store(1_000, Relaxed);
        o.latency.set_estimate_ms(Some(700.0));
        o.slo.set_rates([1.0, 2.0, 3.0, 4.0]);
        let new_buf = Buf::new(zone_size(2, 0));
        let new = new_buf.zone();
        let n = claim_names(&new, &["a"])[0];
        new.import_state(&old);
        let summary = n.incident_summary(11_000);
        assert_eq!((summary.opened[1], summary.firing_seconds[1]), (1, 10));
        assert_eq!(n.latency.estimate_seconds(), Some(0.7));
        assert_eq!(n.slo.rates(), [1.0, 2.0, 3.0, 4.0]);
        n.reset();
        assert_eq!(n.incident_summary(11_000), IncidentSummary::default());
        assert_eq!(n.latency.estimate_seconds(), None);
    }

    #[test]
    fn probe_down_time_counts_the_current_period() {
        let b = Buf::new(zone_size(0, 1));
        let z = b.zone();
        let p = &z
            .claim(&[], &keys(&["be http://x/"]), nobody)
            .unwrap()
            .probes[0]
            .probe;
        p.state.store(PROBE_DOWN, Relaxed);
        p.since_ms.store(10_000, Relaxed);
        assert_eq!(p.down_seconds(70_000), 60);
        p.book_down_time(10_000, 100_000);
        p.state.store(1, Relaxed);
        p.since_ms.store(100_000, Relaxed);
        assert_eq!(p.down_seconds(500_000), 90);
        p.reset();
        assert_eq!(p.down_seconds(500_000), 0);
    }

    #[test]
    fn exported_state_is_taken_over_by_key_in_another_zone() {
        let a_buf = Buf::new(zone_size(2, 1));
        let a = a_buf.zone();
        let c = a
            .claim(&keys(&["api", "web"]), &keys(&["api tcp://x:1"]), nobody)
            .unwrap();
        c.names[0].alert.level.store(2, Relaxed);
        c.names[0].alert.incident_since_ms.store(1_000, Relaxed);
        c.probes[0].probe.state.store(2, Relaxed);
        c.probes[0].probe.since_ms.store(900, Relaxed);
        c.names[0].latency.state.level.store(1, Relaxed);
        c.names[0]
            .latency
            .state
            .incident_since_ms
            .store(2_000, Relaxed);
        c.names[0].slo.state.level.store(2, Relaxed);
        c.names[0].slo.state.last_post_ms.store(3_000, Relaxed);
        let state = a.export_state();
        // Through text, as it travels between the masters of a binary upgrade.
        let state: serde_json::Value = serde_json::from_str(&state.to_string()).unwrap();

        let b_buf = Buf::new(zone_size(2, 1));
        let b = b_buf.zone();
        let n = b
            .claim(&keys(&["web", "api"]), &keys(&["api tcp://x:1"]), nobody)
            .unwrap();
        b.import_exported(&state, 5_000);
        assert_eq!(n.names[1].alert.level.load(Relaxed), 2);
        assert_eq!(n.names[1].latency.state.level.load(Relaxed), 1);
        assert_eq!(
            n.names[1].latency.state.incident_since_ms.load(Relaxed),
            2_000
        );
        assert_eq!(n.names[1].slo.state.level.load(Relaxed), 2);
        assert_eq!(n.names[1].slo.state.last_post_ms.load(Relaxed), 3_000);
        assert_eq!(n.names[1].alert.incident_since_ms.load(Relaxed), 1_000);
        assert_eq!(n.names[0].alert.level.load(Relaxed), 0);
        assert_eq!(n.probes[0].probe.state.load(Relaxed), 2);
        assert_eq!(n.probes[0].probe.since_ms.load(Relaxed), 900);
        // Garbage changes nothing.
        b.import_exported(
            &serde_json::json!({"version": 1, "names": {"api": ["x"]}}),
            6_000,
        );
        b.import_exported(
            &serde_json::json!({"version": 9, "names": {"api": [0, 0, 0]}}),
            6_000,
        );
        assert_eq!(n.names[1].alert.adopted_at_ms.load(Relaxed), 5_000);
        assert_eq!(n.names[1].alert.level.load(Relaxed), 2);
        // An older exporter's three values leave the latency and error-budget levels alone.
        b.import_exported(
            &serde_json::json!({"version": 1, "names": {"api": [1, 7_000, 0]}}),
            8_000,
        );
        assert_eq!(n.names[1].alert.level.load(Relaxed), 1);
        assert_eq!(n.names[1].latency.state.level.load(Relaxed), 1);
        assert_eq!(n.names[1].slo.state.level.load(Relaxed), 2);
        // 5xx ok but latency firing: still held; nothing firing: nothing to hold.
        let json = serde_json::json!({"version": 1, "names": {
            "web": [0, 0, 0, 2, 9_000, 0, 0, 0, 0],
            "api": [0, 0, 0, 0, 0, 0, 0, 0, 0],
        }});
        b.import_exported(&json, 9_000);
        assert_eq!(n.names[0].alert.adopted_at_ms.load(Relaxed), 9_000);
        assert_eq!(n.names[1].alert.adopted_at_ms.load(Relaxed), 0);
    }

    #[test]
    fn a_reload_to_other_bucket_bounds_drops_the_histogram_only() {
        let old_buf = Buf::new(zone_size(1, 0));
        let old = old_buf.zone();
        let o = claim_names(&old, &["a"])[0];
        let custom = BucketBounds::new(&[100, 1000]).unwrap();
        o.adopt_bucket_bounds(&custom);
        o.counters.record_in(503, 50, custom.as_ms());
        let current = crate::evaluate::window::SampleCounts::from_snapshot(&o.counters.snapshot());
        let buckets = o.counters.snapshot().buckets;
        o.window
            .advance_with_histogram(1_000, &current, &buckets, 10_000, 1_000);

        let new_buf = Buf::new(zone_size(1, 0));
        let new = new_buf.zone();
        let n = claim_names(&new, &["a"])[0];
        n.adopt_bucket_bounds(&BucketBounds::default());
        new.import_state(&old);
        let pairs = new.name_pairs(&old);
        new.move_counts(&old, &pairs);
        let snap = n.counters.snapshot();
        assert_eq!((snap.total(), snap.errors()), (1, 1));
        assert!(snap.buckets.iter().all(|b| *b == 0));
        // The copied window kept its status figures but restarted its histogram: no bucket
        // count goes backwards (which would read as ~2^32 requests).
        let current = crate::evaluate::window::SampleCounts::from_snapshot(&snap);
        let (figures, histogram) =
            n.window
                .advance_with_histogram(12_000, &current, &snap.buckets, 10_000, 1_000);
        assert_eq!(figures.total(), 0);
        assert_eq!(histogram.total(), 0);
    }

    #[test]
    fn window_figures_are_read_as_one_pair() {
        let b = Buf::new(zone_size(1, 0));
        let z = b.zone();
        let a = &claim_names(&z, &["a"])[0].alert;
        a.set_window(10, 3);
        assert_eq!(a.window(), (10, 3));
        // A writer killed between its two stores leaves the sequence odd: readers still get a
        // pair with no more 5xx than requests.
        a.window_seq.fetch_add(1, Relaxed);
        a.window_errors.store(50, Relaxed);
        assert_eq!(a.window(), (10, 10));
    }

    #[test]
    fn size_plan_keeps_a_zone_with_room_and_grows_past_one_without() {
        let page = 4096;
        let names: Vec<String> = (0..40).map(|i| format!("n{i}")).collect();
        let few: Vec<&[u8]> = names[..3].iter().map(|n| n.as_bytes()).collect();
        let many: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        let plan = |names: &[&[u8]], old: &[(usize, Zone)], explicit| {
            SizePlan {
                explicit,
                names,
                probes: &[],
                old,
                pagesize: page,
            }
            .size(nobody)
        };
        let first = plan(&few, &[], None).unwrap();
        let buf = Buf::new(payload_for_shm_size(first, page));
        let z = buf.zone();
        z.claim(&few, &[], nobody).unwrap();
        let old = [(first, z)];
        assert_eq!(
            plan(&few, &old, None),
            Ok(first),
            "same configuration: same zone"
        );
        let grown = plan(&many, &old, None).unwrap();
        assert!(grown > first, "40 NAMEs do not fit the zone made for 3");
        // Explicit sizes: too small is an error naming the place; the old zone is checked.
        let err = plan(&many, &[], Some((64 * 1024, "nginx.conf:3"))).unwrap_err();
        assert!(
            err.contains("too small") && err.contains("nginx.conf:3"),
            "{err}"
        );
        let err = plan(&many, &old, Some((first, "nginx.conf:4"))).unwrap_err();
        assert!(err.contains("cannot hold 40 names"), "{err}");
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
    fn the_payload_is_trusted_only_inside_its_mapping() {
        let (page, map) = (4096, 0x7f00_0000_0000usize);
        let size = shm_size_for_payload(zone_size(8, 8), page);
        let len = payload_for_shm_size(size, page);
        // Where nginx's slab allocator puts it: a few pages in.
        assert_eq!(
            payload_in_mapping(map, size, map + 3 * page, page),
            Some((3 * page, len))
        );
        // The last place it fits.
        let last = size - len;
        let last = last - last % page;
        assert_eq!(
            payload_in_mapping(map, size, map + last, page),
            Some((last, len))
        );
        for (data, why) in [
            (0, "null"),
            (map - page, "before the mapping"),
            (map, "over the slab pool's header"),
            (map + 3 * page + 64, "not page aligned"),
            (map + last + page, "runs past the end"),
            (map + size, "at the end"),
            (usize::MAX - page + 1, "wraps around"),
        ] {
            assert_eq!(payload_in_mapping(map, size, data, page), None, "{why}");
        }
        assert_eq!(payload_in_mapping(map, size, map + page, 0), None);
        assert_eq!(payload_in_mapping(map + 8, size, map + page, page), None);
        // A mapping too small for a header has no payload.
        assert_eq!(payload_in_mapping(map, 4 * page, map + page, page), None);
    }

    #[test]
    fn counts_in_the_header_are_checked_against_the_real_size() {
        let b = Buf::new(zone_size(2, 1));
        let z = b.zone();
        z.claim(&keys(&["a"]), &keys(&["p"]), nobody).unwrap();
        let h = z.header();
        for (names, probes) in [
            (3, 0),
            (0, 99),
            (u32::MAX, 0),
            (0, u32::MAX),
            (u32::MAX, u32::MAX),
        ] {
            h.name_count.store(names, Relaxed);
            h.probe_count.store(probes, Relaxed);
            assert!(!z.is_formatted(), "{names} names, {probes} probes");
            assert!(z.names().is_empty() && z.probes().is_empty());
            assert!(z.name_pairs(&z).is_empty());
        }
        // A header claiming another size is not read either.
        h.name_count.store(1, Relaxed);
        h.probe_count.store(1, Relaxed);
        assert_eq!(z.names().len(), 1);
        h.size.store(u64::MAX, Relaxed);
        assert!(z.names().is_empty() && z.probes().is_empty());
    }

    #[test]
    fn slots_are_read_with_the_count_that_was_checked() {
        let b = Buf::new(zone_size(2, 2));
        let z = b.zone();
        z.claim(&keys(&["a", "b"]), &keys(&["p", "q"]), nobody)
            .unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        // Stops the worker however the reader ends (a failed assertion too).
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Relaxed);
            }
        }
        std::thread::scope(|s| {
            // A worker flipping the counts between sane and absurd values.
            s.spawn(|| {
                let h = z.header();
                while !stop.load(Relaxed) {
                    for n in [2, u32::MAX, 1, 1 << 20] {
                        h.name_count.store(n, Relaxed);
                        h.probe_count.store(n, Relaxed);
                    }
                }
            });
            let _stop = Stop(&stop);
            for _ in 0..200_000 {
                assert!(z.names().len() <= 2 && z.probes().len() <= 2);
            }
        });
    }

    #[test]
    fn a_worker_changing_the_counts_during_a_claim_cannot_move_it_out_of_the_zone() {
        let b = Buf::new(zone_size(3, 2));
        let z = b.zone();
        z.claim(&keys(&["a"]), &keys(&["p"]), nobody).unwrap();
        let h = z.header();
        // `alive` runs while the claim plans: a worker rewrites the counts right then.
        let racing = |_| {
            h.name_count.store(u32::MAX, Relaxed);
            h.probe_count.store(u32::MAX, Relaxed);
            false
        };
        z.register_writer(1, 1, everybody);
        let c = z
            .claim(&keys(&["a", "b"]), &keys(&["p", "q"]), racing)
            .unwrap();
        let end = b.0 as usize + b.1.size();
        for s in c.names.iter().map(|s| ptr_range(*s)) {
            assert!(s.0 >= b.0 as usize && s.1 <= end);
        }
        for s in c.probes.iter().map(|s| ptr_range(*s)) {
            assert!(s.0 >= b.0 as usize && s.1 <= end);
        }
        // The claim wrote the counts it planned with.
        assert_eq!((z.names().len(), z.probes().len()), (2, 2));
    }

    fn ptr_range<T>(t: &T) -> (usize, usize) {
        let start = core::ptr::from_ref(t) as usize;
        (start, start + size_of::<T>())
    }

    #[test]
    fn fnv1a64_is_the_standard_one() {
        assert_eq!(fnv1a64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn long_keys_are_shortened_to_a_prefix_and_a_hash_of_the_whole() {
        let short = b"be http://h/".as_slice();
        assert!(matches!(slot_key(short, 512), std::borrow::Cow::Borrowed(k) if k == short));
        let exact = vec![b'x'; 512];
        assert_eq!(slot_key(&exact, 512).as_ref(), exact.as_slice());

        let long = [short, &[b'x'; 600]].concat();
        let k = slot_key(&long, PROBE_KEY_MAX);
        assert_eq!(k.len(), PROBE_KEY_MAX);
        assert_eq!(&k[..495], &long[..495]);
        // Pinned: a key must map to the same slot in every release.
        assert_eq!(&k[495..], b"#a03a5fdbd10d3581");
        assert_eq!(slot_key(&long, PROBE_KEY_MAX), k, "stable");
        // Keys alike in their first 512 bytes (and more) still differ.
        let mut other = long.clone();
        *other.last_mut().unwrap() = b'y';
        assert_ne!(slot_key(&other, PROBE_KEY_MAX), k);
        let longer = [long.as_slice(), b"x"].concat();
        assert_ne!(slot_key(&longer, PROBE_KEY_MAX), k);
        assert_eq!(slot_key(&long, NAME_KEY_MAX).len(), NAME_KEY_MAX);
    }

    #[test]
    fn long_keys_get_slots_of_their_own_across_reloads() {
        let b = Buf::new(zone_size(0, 4));
        let z = b.zone();
        let base = format!("be http://h/{}", "x".repeat(600));
        let (one, two) = (format!("{base}1"), format!("{base}2"));
        let probes = keys(&[one.as_str(), two.as_str()]);
        let first = z.claim(&[], &probes, nobody).unwrap();
        assert!(!core::ptr::eq(first.probes[0], first.probes[1]));
        first.probes[1].probe.state.store(PROBE_DOWN, Relaxed);
        let reloaded = z
            .claim(&[], &keys(&[two.as_str(), one.as_str()]), nobody)
            .unwrap();
        assert!(core::ptr::eq(reloaded.probes[0], first.probes[1]));
        assert!(core::ptr::eq(reloaded.probes[1], first.probes[0]));
        assert_eq!(reloaded.probes[0].probe.state.load(Relaxed), PROBE_DOWN);
        assert_eq!(z.probes().len(), 2, "no slot was added");
    }

    #[test]
    fn unformatted_zone_has_no_slots() {
        let b = Buf::new(zone_size(2, 0));
        let z = b.zone();
        assert!(!z.is_formatted());
        assert!(z.names().is_empty());
    }
}
