//! Zone-wide state: the layout, the processes that write into the zone, delivery counts and
//! how the evaluator is doing.

use core::sync::atomic::Ordering::Relaxed;
use core::sync::atomic::{AtomicU32, AtomicU64};

use super::mute_table::MuteTable;
use super::{MAX_DESTINATIONS, MAX_WRITERS, NOTIFY_RESULTS};

/// Zone-wide state.
///
/// Slots are carved from the payload as configurations need them: NAME slots from the front,
/// probe slots from the back, so one zone size serves any mix and a slot never moves. Only the
/// master changes the layout (at configuration time); workers only hold pointers to slots.
#[repr(C, align(64))]
pub struct ZoneHeader {
    pub(super) magic: AtomicU64,
    /// Payload bytes (header included).
    pub(super) size: AtomicU64,
    pub(super) name_count: AtomicU32,
    pub(super) probe_count: AtomicU32,
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
    /// Which destination's routing state each column of the slots' `routes` holds: its
    /// `routes::route_key`, 0 for a free column (see `zone/routes.rs`).
    pub routes: [AtomicU64; super::routes::ROUTE_COLUMNS],
    /// Messages waiting in the delivery threads' queues (as last reported by the helper process).
    pub queue_depth: AtomicU64,
    /// How the evaluator is doing, for the metrics, the status page and the other workers: see
    /// [`Alerting`].
    pub alerting: Alerting,
    /// Processes counting into this zone: `pid << 32 | generation`, 0 for an empty entry.
    pub(super) writers: [AtomicU64; MAX_WRITERS],
    /// The lowest generation of a process that found `writers` full, plus one; 0 if none did.
    /// Never cleared (see [`Zone::register_writer`]).
    pub(super) writer_overflow: AtomicU64,
    /// Runtime mutes, behind the zone's lock (see `mute_table`).
    pub mutes: MuteTable,
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
