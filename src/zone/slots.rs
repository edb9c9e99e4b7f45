//! What the zone keeps for one NAME and for one probe target.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{fence, AtomicU32, AtomicU64};

use super::address::HeldAddress;
use super::counters::{BucketBounds, NameCounters};
use super::incidents::KINDS;
use super::incidents::{IncidentLog, IncidentSummary};
use super::key::SlotKey;
use super::mute_table::MuteGates;
use super::peers::PeerCounts;
use super::routes::{RouteCell, ROUTE_COLUMNS};
use super::window::{LongWindowRing, WindowRing};
use super::{NAME_KEY_MAX, PROBE_KEY_MAX};
use crate::vocab::event::Level;
use crate::vocab::reason::Reason;

/// Alert state and last window figures of one NAME.
#[repr(C)]
pub struct ErrorRatioState {
    /// `Level` as u8 in the low byte, packed with nothing else so CAS is simple.
    pub level: AtomicU32,
    /// Seqlock over the window figures: odd while the evaluator writes them.
    pub(super) window_seq: AtomicU32,
    /// Start of the current incident, ms since the epoch.
    pub incident_since_ms: AtomicU64,
    /// Last announcement of the firing level, ms since the epoch.
    pub last_post_ms: AtomicU64,
    /// Requests in the window at the last evaluation.
    pub(super) window_total: AtomicU64,
    /// 5xx in the window at the last evaluation.
    pub(super) window_errors: AtomicU64,
    /// When the level was taken over from another master's evaluator (binary upgrade), ms; 0
    /// otherwise. Until this zone has seen a whole window, the level is held (see
    /// src/evaluate/mod.rs).
    pub adopted_at_ms: AtomicU64,
}

impl ErrorRatioState {
    pub(super) fn copy_from(&self, o: &ErrorRatioState) {
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

    pub(super) fn reset(&self) {
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

/// Level and incident timing of one alert kind (latency, error budget, certificate expiry).
#[repr(C)]
#[derive(Default)]
pub struct LevelState {
    /// `Level` as u32, changed only by compare-and-swap.
    pub level: AtomicU32,
    /// Start of the current incident, ms since the epoch; 0 if ok.
    pub incident_since_ms: AtomicU64,
    /// Last announcement of the firing level, ms since the epoch.
    pub last_post_ms: AtomicU64,
}

impl LevelState {
    pub(super) fn copy_from(&self, o: &LevelState) {
        self.level.store(o.level.load(Relaxed), Relaxed);
        self.incident_since_ms
            .store(o.incident_since_ms.load(Relaxed), Relaxed);
        self.last_post_ms
            .store(o.last_post_ms.load(Relaxed), Relaxed);
    }

    pub(super) fn reset(&self) {
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
pub struct LatencyState {
    /// Level of the percentile alert.
    pub state: LevelState,
    /// Percentile estimate at the last evaluation in microseconds, plus one; 0 for none.
    pub estimate_us_plus_one: AtomicU64,
}

impl LatencyState {
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
pub struct SloState {
    /// Level of the burn-rate alert.
    pub state: LevelState,
    /// Burn rates of the last evaluation (`f64::to_bits`), in the order of
    /// `slo::BURN_FACTORS`.
    pub burn_rates: [AtomicU64; 4],
}

impl SloState {
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

/// Words of a NAME's traffic history (`evaluate::traffic::TrafficHistory::to_words`): four
/// times and totals, the 12 window counts, the ring position and whether the current window
/// counts.
pub const TRAFFIC_HISTORY_WORDS: usize = 18;

/// `traffic=` state of one NAME. Only the evaluator writes it; the request path never sees it
/// (a window's count comes from the NAME's counters).
#[repr(C)]
pub struct TrafficState {
    /// Level of the traffic-drop alert.
    pub state: LevelState,
    /// `f64::to_bits` of the usual traffic (the median of the last 12 windows) at the last
    /// evaluation; 0 while it is not known.
    pub usual_bits: AtomicU64,
    /// The history the usual traffic is taken from, as plain words.
    pub history: [AtomicU64; TRAFFIC_HISTORY_WORDS],
}

impl TrafficState {
    /// The history words (one writer: the evaluator).
    pub fn history_words(&self) -> [u64; TRAFFIC_HISTORY_WORDS] {
        core::array::from_fn(|i| self.history[i].load(Relaxed))
    }

    /// Stores the history words.
    pub fn set_history_words(&self, words: &[u64; TRAFFIC_HISTORY_WORDS]) {
        for (d, w) in self.history.iter().zip(words) {
            d.store(*w, Relaxed);
        }
    }

    /// The usual traffic of the last evaluation, requests per window; `None` while fewer
    /// than 12 windows are known (or without an evaluation).
    pub fn usual(&self) -> Option<f64> {
        let bits = self.usual_bits.load(Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }

    /// Stores the usual traffic of this evaluation.
    pub fn set_usual(&self, usual: Option<f64>) {
        // 0.0 is stored as zero bits too: a usual traffic of 0 has nothing to drop from, and
        // reads as "not known", which alerts alike (never on a percentage).
        self.usual_bits
            .store(usual.map_or(0, f64::to_bits), Relaxed);
    }

    pub(super) fn copy_from(&self, o: &TrafficState) {
        self.state.copy_from(&o.state);
        self.usual_bits.store(o.usual_bits.load(Relaxed), Relaxed);
        self.set_history_words(&o.history_words());
    }

    pub(super) fn reset(&self) {
        self.state.reset();
        self.usual_bits.store(0, Relaxed);
        self.set_history_words(&[0; TRAFFIC_HISTORY_WORDS]);
    }
}

/// Everything the zone keeps for one NAME: 14,400 bytes (see the layout test).
#[repr(C, align(64))]
pub struct NameSlot {
    /// The NAME.
    pub key: SlotKey<NAME_KEY_MAX>,
    /// Cumulative counters (request path).
    pub counters: NameCounters,
    /// Window samples (evaluator).
    pub window: WindowRing,
    /// Alert state (evaluator).
    pub alert: ErrorRatioState,
    /// Coarse samples for the burn-rate windows of `slo=` (evaluator).
    pub long_window: LongWindowRing,
    /// `latency=` state (evaluator).
    pub latency: LatencyState,
    /// `slo=` state (evaluator).
    pub slo: SloState,
    /// Recent incidents and per-kind totals (evaluator).
    pub incidents: IncidentLog,
    /// What each alert kind held back during a mute (evaluator).
    pub mute_gates: MuteGates,
    /// Since when the slot has been evaluated, ms since the epoch; 0 before the first
    /// evaluation (the time MTBF is measured over).
    pub evaluated_since_ms: AtomicU64,
    /// `traffic=` state and the traffic history (evaluator).
    pub traffic: TrafficState,
    /// Per routed destination (column, see `zone/routes.rs`) and alert kind: what it knows of
    /// the current incident (evaluator).
    pub routes: [[RouteCell; KINDS]; ROUTE_COLUMNS],
}

/// [`ProbeHealth::state`] of a target that is down.
pub(super) const PROBE_DOWN: u32 = 2;

/// Health state of one probe target.
#[repr(C)]
pub struct ProbeHealth {
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
    /// Milliseconds spent down in periods that have ended (see [`ProbeHealth::book_down_time`]).
    pub down_ms_total: AtomicU64,
    /// Per routed destination (column, see `zone/routes.rs`): what it knows of the current
    /// DOWN (evaluator).
    pub routes: [RouteCell; ROUTE_COLUMNS],
}

impl ProbeHealth {
    pub(super) fn copy_from(&self, o: &ProbeHealth) {
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
        for (d, s) in self.routes.iter().zip(o.routes.iter()) {
            d.copy_from(s);
        }
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

    pub(super) fn reset(&self) {
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
        self.routes.iter().for_each(RouteCell::reset);
    }
}

/// What the zone keeps about one certificate: a probe target's (the leaf it served last), or
/// a certificate nginx serves (a slot of its own in the probe table, keyed `cert:SERVER FILE`).
#[repr(C)]
#[derive(Default)]
pub struct CertificateWatch {
    /// Expiry of the certificate served (nginx's, or the target's last), Unix seconds; 0
    /// unknown.
    pub not_after_unix: AtomicU64,
    /// Expiry of the certificate in the file on disk when last re-read, Unix seconds; 0 none.
    pub on_disk_not_after_unix: AtomicU64,
    /// Modification time of that file, Unix seconds.
    pub on_disk_since_unix: AtomicU64,
    /// When the file was last re-read, Unix seconds; 0 never.
    pub on_disk_read_unix: AtomicU64,
    /// 0 read fine, 1 unreadable, 2 holds no certificate, at the last re-read.
    pub on_disk_error: AtomicU32,
    /// The expiry of the renewal on disk an alert last told of (evaluator); 0 none.
    pub renewal_told_unix: AtomicU64,
    /// The expiry alert (evaluator).
    pub alert: LevelState,
}

impl CertificateWatch {
    pub(super) fn copy_from(&self, o: &CertificateWatch) {
        for (d, s) in [
            (&self.not_after_unix, &o.not_after_unix),
            (&self.on_disk_not_after_unix, &o.on_disk_not_after_unix),
            (&self.on_disk_since_unix, &o.on_disk_since_unix),
            (&self.on_disk_read_unix, &o.on_disk_read_unix),
            (&self.renewal_told_unix, &o.renewal_told_unix),
        ] {
            d.store(s.load(Relaxed), Relaxed);
        }
        self.on_disk_error
            .store(o.on_disk_error.load(Relaxed), Relaxed);
        self.alert.copy_from(&o.alert);
    }

    pub(super) fn reset(&self) {
        for a in [
            &self.not_after_unix,
            &self.on_disk_not_after_unix,
            &self.on_disk_since_unix,
            &self.on_disk_read_unix,
            &self.renewal_told_unix,
        ] {
            a.store(0, Relaxed);
        }
        self.on_disk_error.store(0, Relaxed);
        self.alert.copy_from(&LevelState::default());
    }
}

/// Everything the zone keeps for one probe target.
#[repr(C, align(64))]
pub struct ProbeSlot {
    /// NAME, a space, the target URL.
    pub key: SlotKey<PROBE_KEY_MAX>,
    /// Health state.
    pub probe: ProbeHealth,
    /// The certificate: of an HTTPS target, or the served certificate this slot watches.
    pub certificate: CertificateWatch,
    /// Tries per class, of the upstream peer a `peer:` slot counts (see `zone/peers.rs`).
    pub peer: PeerCounts,
    /// The address a `server ... resolve` peer's slot probes now (none for other slots).
    pub address: HeldAddress,
}

impl ProbeSlot {
    /// Resets everything but the key (a slot given to another key).
    pub(super) fn reset(&self) {
        self.probe.reset();
        self.certificate.reset();
        self.peer.reset();
        self.address.set(None);
    }

    /// Gives the slot of a `server ... resolve` peer to `addr` (`None`: to no address): what
    /// it knew of the address it held before is reset, so nothing carries over to another
    /// peer.
    pub fn hold(&self, addr: Option<std::net::SocketAddr>) {
        self.reset();
        self.address.set(addr);
    }
}

impl NameSlot {
    pub(super) fn reset(&self) {
        self.counters.reset();
        self.window.reset();
        self.alert.reset();
        self.long_window.reset();
        self.latency.state.reset();
        self.latency.set_estimate_ms(None);
        self.slo.state.reset();
        self.slo.set_rates([0.0; 4]);
        self.incidents.reset();
        self.mute_gates.reset();
        self.evaluated_since_ms.store(0, Relaxed);
        self.traffic.reset();
        self.routes.iter().flatten().for_each(RouteCell::reset);
    }

    /// Copies the routing state of `o` (reload into another zone).
    pub(super) fn copy_routes_from(&self, o: &NameSlot) {
        for (d, s) in self.routes.iter().flatten().zip(o.routes.iter().flatten()) {
            d.copy_from(s);
        }
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
            self.traffic.state.ongoing_since_ms(),
        ];
        self.incidents.summary(now_ms, ongoing)
    }
}
