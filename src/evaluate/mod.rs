//! One evaluation tick: window figures, alert transitions and the events they produce.
//!
//! Runs in the single evaluating process. Plain Rust over zone slots: no nginx types.

pub mod alert;
pub mod certificate;
pub mod firing;
pub mod heartbeat;
pub mod latency;
pub mod mute_round;
pub mod muted;
pub mod muting;
pub mod peer_window;
pub mod reliability;
pub mod slo;
pub mod traffic;

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::conf::alert_params::AlertParams;
use crate::evaluate::alert::{advance, AlertMachine, AlertState, Transition};
use crate::evaluate::latency::{latency_level, quantile_ms};
use crate::evaluate::slo::{burn_windows_ms, window_label, BurnWindows};
use crate::evaluate::traffic::{traffic_level, TrafficHistory};
use crate::vocab::event::{
    error_share, AlertEvent, ErrorRatioEvent, EventDetail, LatencyEvent, Level, SloEvent,
};
use crate::vocab::traffic::TrafficEvent;
use crate::zone::counters::BucketBounds;
use crate::zone::incidents::{IncidentKind, IncidentLog};
use crate::zone::window::{long_step_ms, sample_step_ms, ErrorCounts, SampleCounts};
use crate::zone::{LevelState, NameSlot, ZoneHeader};

/// How many status codes an alert lists.
const TOP_CODES: usize = 5;

/// A NAME to evaluate: its configuration and its slot.
pub struct Watched<'a> {
    /// The NAME.
    pub name: &'a str,
    /// Its thresholds and window.
    pub params: &'a AlertParams,
    /// Its shared state.
    pub slot: &'a NameSlot,
}

/// Takes the evaluation tick at `now_ms` unless another process evaluated less than half an
/// interval ago. Makes overlapping evaluators (old and new worker during a reload) take turns.
pub fn take_tick(header: &ZoneHeader, now_ms: u64, interval_ms: u64) -> bool {
    let last = header.eval_tick_ms.load(Relaxed);
    if last != 0 && now_ms.saturating_sub(last) < interval_ms / 2 && last <= now_ms {
        return false;
    }
    header
        .eval_tick_ms
        .compare_exchange(last, now_ms, Relaxed, Relaxed)
        .is_ok()
}

/// The shared cells of one alert kind's state.
struct StateCells<'a> {
    level: &'a AtomicU32,
    incident_since_ms: &'a AtomicU64,
    last_post_ms: &'a AtomicU64,
}

impl<'a> StateCells<'a> {
    fn errors(slot: &'a NameSlot) -> Self {
        StateCells {
            level: &slot.alert.level,
            incident_since_ms: &slot.alert.incident_since_ms,
            last_post_ms: &slot.alert.last_post_ms,
        }
    }

    fn of(state: &'a LevelState) -> Self {
        StateCells {
            level: &state.level,
            incident_since_ms: &state.incident_since_ms,
            last_post_ms: &state.last_post_ms,
        }
    }

    fn load(&self) -> AlertState {
        AlertState {
            level: Level::from_u8(self.level.load(Relaxed) as u8),
            incident_since_ms: self.incident_since_ms.load(Relaxed),
            last_post_ms: self.last_post_ms.load(Relaxed),
        }
    }

    /// Stores `new` if the level is still `old.level`; false if another evaluator got there
    /// first.
    fn store(&self, old: AlertState, new: AlertState) -> bool {
        if old.level != new.level
            && self
                .level
                .compare_exchange(old.level as u32, new.level as u32, Relaxed, Relaxed)
                .is_err()
        {
            return false;
        }
        if old.last_post_ms != new.last_post_ms
            && self
                .last_post_ms
                .compare_exchange(old.last_post_ms, new.last_post_ms, Relaxed, Relaxed)
                .is_err()
        {
            return false;
        }
        self.incident_since_ms.store(new.incident_since_ms, Relaxed);
        true
    }
}

/// What one alert kind announces at one evaluation.
struct Announce {
    level: Level,
    previous: Level,
    repeat: bool,
    since_ms: u64,
}

/// Moves one alert kind to `level`: stores the state (compare-and-swap, so an event is
/// announced once however many evaluators run), books the incident, and returns what to
/// announce. `value` is the figure behind the level (see `Incident::peak_value`). With `hold`
/// (a level taken over less than a window ago) the level may rise but not fall.
#[allow(clippy::too_many_arguments)]
fn settle(
    cells: &StateCells<'_>,
    incidents: &IncidentLog,
    kind: IncidentKind,
    level: Level,
    value: f64,
    now_ms: u64,
    repeat_ms: Option<u64>,
    hold: bool,
) -> Option<Announce> {
    let old = cells.load();
    let (new, transition) = advance(old, level, now_ms, repeat_ms);
    if hold && new.level < old.level {
        // A taken-over level is not lowered yet (see `evaluate_with`).
        return None;
    }
    if new != old && !cells.store(old, new) {
        return None;
    }
    match transition {
        Some(Transition::Changed {
            from: Level::Ok,
            to,
        }) => incidents.open(kind, new.incident_since_ms, to, value),
        Some(Transition::Resolved { .. }) => {
            incidents.close(kind, old.incident_since_ms, now_ms);
        }
        _ if new.level != Level::Ok => {
            incidents.raise_peak(kind, new.incident_since_ms, new.level, value);
        }
        _ => {}
    }
    let announce = match transition? {
        Transition::Changed { from, to } => Announce {
            level: to,
            previous: from,
            repeat: false,
            since_ms: new.incident_since_ms,
        },
        Transition::Repeat(l) => Announce {
            level: l,
            previous: l,
            repeat: true,
            since_ms: new.incident_since_ms,
        },
        Transition::Resolved { from, .. } => Announce {
            level: Level::Ok,
            previous: from,
            repeat: false,
            since_ms: old.incident_since_ms,
        },
    };
    Some(announce)
}

/// Evaluates every NAME at `now_ms` under the default histogram buckets (the tests' case; worker
/// 0 passes the configured ones to [`evaluate_with`]).
#[cfg(test)]
pub fn evaluate(watched: &[Watched<'_>], now_ms: u64, interval_ms: u64) -> Vec<AlertEvent> {
    evaluate_with(watched, now_ms, interval_ms, &BucketBounds::default())
}

/// Evaluates every NAME at `now_ms` and returns the events to announce: the 5xx share, and
/// where configured the `latency=` percentile (over `bounds`, the `status_alert_buckets` the
/// counters count by), the `slo=` burn rates and a `traffic=` drop. Each kind has its own
/// level and events.
pub fn evaluate_with(
    watched: &[Watched<'_>],
    now_ms: u64,
    interval_ms: u64,
    bounds: &BucketBounds,
) -> Vec<AlertEvent> {
    let mut events = Vec::new();
    for w in watched {
        let p = w.params;
        let slot = w.slot;
        let snapshot = slot.counters.snapshot();
        let current = SampleCounts::from_snapshot(&snapshot);
        let step = sample_step_ms(p.window_ms, interval_ms);
        let (figures, histogram) = slot.window.advance_with_histogram(
            now_ms,
            &current,
            &snapshot.buckets,
            p.window_ms,
            step,
        );
        slot.alert.set_window(figures.total(), figures.errors());
        // A firing level taken over from another master (binary upgrade): this zone's counts
        // start then, so no level (5xx, latency, error budget) is lowered (or resolved) before
        // the zone has seen a whole window; a worse level is announced as usual. The figures
        // (window, estimate, burn rates) still advance.
        let adopted = slot.alert.adopted_at_ms.load(Relaxed);
        let hold = adopted != 0 && now_ms < adopted.saturating_add(p.window_ms);
        if adopted != 0 && !hold {
            slot.alert.adopted_at_ms.store(0, Relaxed);
        }
        let event = |detail| AlertEvent {
            name: w.name.to_string(),
            at_unix: now_ms / 1000,
            link: p.link.clone(),
            runbook: p.runbook.clone(),
            detail,
        };

        // 5xx share.
        let machine = AlertMachine::from(p);
        let level = machine.classify(figures.errors(), figures.total());
        let share_pct = error_share(figures.errors(), figures.total(), 100.0);
        let cells = StateCells::errors(slot);
        let kind = IncidentKind::Errors;
        let announce = settle(
            &cells,
            &slot.incidents,
            kind,
            level,
            share_pct,
            now_ms,
            p.repeat_ms,
            hold,
        );
        if let Some(a) = announce {
            events.push(event(EventDetail::ErrorRatio(ErrorRatioEvent {
                level: a.level,
                previous: a.previous,
                repeat: a.repeat,
                errors: figures.errors(),
                total: figures.total(),
                window_secs: p.window_ms / 1000,
                warn_pct: p.warn_pct,
                crit_pct: p.crit_pct,
                top_codes: figures.top_codes(TOP_CODES),
                top_peers: Vec::new(),
                since_unix: a.since_ms / 1000,
            })));
        }

        // Request-time percentile. Without `latency=` (e.g. removed by a reload) the state
        // returns to ok silently.
        let estimate = p
            .latency
            .and_then(|l| quantile_ms(l.quantile(), bounds.as_ms(), &histogram.0));
        slot.latency.set_estimate_ms(estimate);
        let level = p.latency.map_or(Level::Ok, |l| {
            latency_level(&l, estimate, histogram.total(), p.min_requests)
        });
        let cells = StateCells::of(&slot.latency.state);
        let kind = IncidentKind::Latency;
        let seconds = estimate.unwrap_or(0.0) / 1000.0;
        let announce = settle(
            &cells,
            &slot.incidents,
            kind,
            level,
            seconds,
            now_ms,
            p.repeat_ms,
            hold,
        );
        if let (Some(a), Some(l)) = (announce, p.latency) {
            events.push(event(EventDetail::Latency(LatencyEvent {
                level: a.level,
                previous: a.previous,
                repeat: a.repeat,
                percentile: l.label(),
                estimate_ms: estimate,
                warn_ms: l.warn_ms,
                crit_ms: l.crit_ms,
                requests: histogram.total(),
                window_secs: p.window_ms / 1000,
                top_peers: Vec::new(),
                since_unix: a.since_ms / 1000,
            })));
        }

        // Error-budget burn rates. The long ring records even without `slo=`, so that a
        // reload adding it finds history.
        let windows_ms = burn_windows_ms(p.window_ms);
        let cumulative = ErrorCounts {
            total: snapshot.total(),
            errors: snapshot.errors(),
        };
        let long = slot.long_window.advance(
            now_ms,
            cumulative,
            &windows_ms[1..],
            long_step_ms(p.window_ms, interval_ms),
        );
        let mut burn = BurnWindows {
            windows_ms,
            counts: [ErrorCounts::default(); 4],
        };
        burn.counts[0] = ErrorCounts {
            total: figures.total(),
            errors: figures.errors(),
        };
        burn.counts[1..].copy_from_slice(&long);
        let (level, rate) = match p.slo_pct {
            Some(slo) => {
                slot.slo.set_rates(burn.rates(slo));
                burn.level(slo, p.min_requests)
            }
            None => {
                slot.slo.set_rates([0.0; 4]);
                (Level::Ok, 0.0)
            }
        };
        let cells = StateCells::of(&slot.slo.state);
        let kind = IncidentKind::Slo;
        let announce = settle(
            &cells,
            &slot.incidents,
            kind,
            level,
            rate,
            now_ms,
            p.repeat_ms,
            hold,
        );
        if let (Some(a), Some(slo)) = (announce, p.slo_pct) {
            let rates = burn.rates(slo);
            events.push(event(EventDetail::Slo(SloEvent {
                level: a.level,
                previous: a.previous,
                repeat: a.repeat,
                slo_pct: slo,
                burn_rate: rate,
                windows: windows_ms
                    .iter()
                    .zip(rates)
                    .map(|(ms, r)| (window_label(*ms), r))
                    .collect(),
                errors: figures.errors(),
                total: figures.total(),
                top_peers: Vec::new(),
                since_unix: a.since_ms / 1000,
            })));
        }

        // Traffic drop: the window's requests against the thresholds, whatever min_requests
        // says (few requests are the finding here). The history records even without
        // `traffic=`, so that a reload adding it finds the usual traffic known.
        let mut history = TrafficHistory::from_words(&slot.traffic.history_words());
        let usual = history.usual();
        let requests = figures.total();
        let cells = StateCells::of(&slot.traffic.state);
        let level = p.traffic.map_or(Level::Ok, |t| {
            let whole = history.counted_whole_window(now_ms, p.window_ms);
            let level = traffic_level(&t, requests, usual, whole);
            // No step down from critical to warning: when traffic returns, the window refills
            // for a window's length and passes through the warning band on its way; that is
            // no news. A drop ends with its RESOLVED once the window is above WARN again.
            let firing = cells.load().level;
            if firing == Level::Critical && level == Level::Warning {
                firing
            } else {
                level
            }
        });
        let announce = settle(
            &cells,
            &slot.incidents,
            IncidentKind::Traffic,
            level,
            requests as f64,
            now_ms,
            p.repeat_ms,
            hold,
        );
        let firing = cells.load().level != Level::Ok;
        history.record(now_ms, snapshot.total(), p.window_ms, firing);
        slot.traffic.set_history_words(&history.to_words());
        slot.traffic.set_usual(history.usual());
        if let (Some(a), Some(t)) = (announce, p.traffic) {
            events.push(event(EventDetail::Traffic(TrafficEvent {
                level: a.level,
                previous: a.previous,
                repeat: a.repeat,
                requests,
                usual,
                params: t,
                window_secs: p.window_ms / 1000,
                since_unix: a.since_ms / 1000,
            })));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::{zone_size, Zone};
    use std::alloc::{alloc_zeroed, Layout};

    fn zone(names: &[&str]) -> Zone {
        let size = zone_size(names.len(), 0);
        let layout = Layout::from_size_align(size, 64).unwrap();
        // SAFETY: non-zero size; leaked for the test's lifetime.
        let z = unsafe { Zone::from_raw(alloc_zeroed(layout), size) }.unwrap();
        let keys: Vec<&[u8]> = names.iter().map(|n| n.as_bytes()).collect();
        z.claim(&keys, &[], |_| false).unwrap();
        z
    }

    fn params() -> AlertParams {
        AlertParams {
            window_ms: 10_000,
            repeat_ms: Some(30_000),
            ..AlertParams::default()
        }
    }

    /// One watched NAME "be" over `z`'s first slot.
    fn watch<'a>(z: &'a Zone, p: &'a AlertParams) -> [Watched<'a>; 1] {
        [Watched {
            name: "be",
            params: p,
            slot: &z.names()[0],
        }]
    }

    fn traffic(slot: &NameSlot, ok: u64, errors: u64) {
        for _ in 0..ok {
            slot.counters.record(200, 1);
        }
        for _ in 0..errors {
            slot.counters.record(502, 1);
        }
    }

    #[test]
    fn lifecycle_over_time() {
        let z = zone(&["be"]);
        let p = params();
        let slot = &z.names()[0];
        let w = watch(&z, &p);
        let mut log: Vec<(u64, String)> = Vec::new();
        for s in 0..=120u64 {
            // 20 req/s; 50% errors between t=20s and t=60s.
            let errors = if (20..60).contains(&s) { 10 } else { 0 };
            traffic(slot, 20 - errors, errors);
            for e in evaluate(&w, 1_000_000 + s * 1000, 1000) {
                log.push((s, crate::vocab::title::title(&e)));
            }
        }
        let titles: Vec<&str> = log.iter().map(|(_, t)| t.as_str()).collect();
        // The window fills second by second: 5% after one second of errors, 10% after two.
        let expect = [
            "WARNING be: 5xx 5.0% over 10s",
            "CRITICAL be: 5xx 10.0% over 10s",
            "CRITICAL be: 5xx 50.0% over 10s (still firing)",
            "WARNING be: 5xx 5.0% over 10s",
            "RESOLVED be after 49s",
        ];
        assert_eq!(titles, expect, "{log:?}");
        let at: Vec<u64> = log.iter().map(|(s, _)| *s).collect();
        // Seen at the first two evaluations that include errors, repeated after 30s,
        // and back to ok once the bad seconds have left the 10s window.
        assert_eq!(at, [20, 21, 51, 68, 69], "{log:?}");
        assert_eq!(slot.alert.level.load(Relaxed), 0);
    }

    #[test]
    fn below_min_requests_nothing() {
        let z = zone(&["be"]);
        let p = params();
        let slot = &z.names()[0];
        let w = watch(&z, &p);
        for s in 0..30u64 {
            traffic(slot, 0, 1); // 1 error per second: 10 in the window < 20
            assert!(evaluate(&w, s * 1000 + 1, 1000).is_empty());
        }
        assert_eq!(slot.alert.window().0, 10);
    }

    #[test]
    fn second_evaluator_does_not_repeat_an_event() {
        let z = zone(&["be"]);
        let p = params();
        let slot = &z.names()[0];
        let w = watch(&z, &p);
        evaluate(&w, 1_000, 1000);
        traffic(slot, 0, 100);
        let first = evaluate(&w, 2_000, 1000);
        assert_eq!(first.len(), 1);
        // Same figures seen again (e.g. by a new worker right after a reload): no event.
        assert!(evaluate(&w, 2_500, 1000).is_empty());
    }

    #[test]
    fn an_adopted_level_is_held_for_one_window() {
        let z = zone(&["be"]);
        let p = params();
        let slot = &z.names()[0];
        let w = watch(&z, &p);
        // Another master's evaluator left "critical since 1_000" then; no traffic here yet.
        slot.alert.level.store(Level::Critical as u32, Relaxed);
        slot.alert.incident_since_ms.store(1_000, Relaxed);
        slot.alert.adopted_at_ms.store(1_000, Relaxed);
        for t in (2_000..11_000).step_by(1_000) {
            assert!(evaluate(&w, t, 1000).is_empty(), "held at {t}");
        }
        // A worse level is not held back.
        let worse_z = zone(&["be"]);
        let worse = &worse_z.names()[0];
        worse.alert.level.store(Level::Warning as u32, Relaxed);
        worse.alert.adopted_at_ms.store(1_000, Relaxed);
        traffic(worse, 0, 100);
        let ws = watch(&worse_z, &p);
        let up = evaluate(&ws, 2_000, 1000);
        assert_eq!(up.len(), 1);
        assert!(crate::vocab::title::title(&up[0]).starts_with("CRITICAL be"));
        let resolved = evaluate(&w, 11_000, 1000);
        assert_eq!(resolved.len(), 1);
        assert_eq!(
            crate::vocab::title::title(&resolved[0]),
            "RESOLVED be after 10s"
        );
        assert_eq!(slot.alert.adopted_at_ms.load(Relaxed), 0);
    }

    #[test]
    fn adopted_latency_and_slo_levels_are_held_too() {
        let z = zone(&["be"]);
        let p = AlertParams {
            slo_pct: Some(99.0),
            ..latency_params()
        };
        let slot = &z.names()[0];
        let w = watch(&z, &p);
        // Taken over (import_exported): latency critical, error budget warning since 1_000.
        slot.latency
            .state
            .level
            .store(Level::Critical as u32, Relaxed);
        slot.latency.state.incident_since_ms.store(1_000, Relaxed);
        slot.slo.state.level.store(Level::Warning as u32, Relaxed);
        slot.slo.state.incident_since_ms.store(1_000, Relaxed);
        slot.alert.adopted_at_ms.store(1_000, Relaxed);
        for t in (2_000..11_000).step_by(1_000) {
            assert!(evaluate(&w, t, 1000).is_empty(), "held at {t}");
            assert_eq!(slot.latency.state.level.load(Relaxed), 2);
            assert_eq!(slot.slo.state.level.load(Relaxed), 1);
        }
        let titles: Vec<String> = evaluate(&w, 11_000, 1000)
            .iter()
            .map(crate::vocab::title::title)
            .collect();
        assert_eq!(
            titles,
            [
                "RESOLVED be latency after 10s",
                "RESOLVED be error budget after 10s"
            ]
        );
        assert_eq!(slot.alert.adopted_at_ms.load(Relaxed), 0);

        // A worse latency level is not held back.
        let worse_z = zone(&["be"]);
        let worse = &worse_z.names()[0];
        worse
            .latency
            .state
            .level
            .store(Level::Warning as u32, Relaxed);
        worse.latency.state.incident_since_ms.store(1_000, Relaxed);
        worse.alert.adopted_at_ms.store(1_000, Relaxed);
        slow_traffic(worse, 0, 100, 3000);
        let up = evaluate(&watch(&worse_z, &p), 2_000, 1000);
        assert_eq!(up.len(), 1);
        assert!(crate::vocab::title::title(&up[0]).starts_with("CRITICAL be: p95"));
    }

    #[test]
    fn tick_lease() {
        let z = zone(&["be"]);
        let h = z.header();
        assert!(take_tick(h, 10_000, 1000));
        assert!(!take_tick(h, 10_400, 1000));
        assert!(take_tick(h, 10_600, 1000));
    }

    fn slow_traffic(slot: &NameSlot, fast: u64, slow: u64, slow_ms: u64) {
        for _ in 0..fast {
            slot.counters.record(200, 1);
        }
        for _ in 0..slow {
            slot.counters.record(200, slow_ms);
        }
    }

    fn latency_params() -> AlertParams {
        AlertParams {
            latency: crate::conf::alert_params::parse_latency(
                "p95:500ms:2s",
                "latency=p95:500ms:2s",
            )
            .ok(),
            ..params()
        }
    }

    #[test]
    fn latency_lifecycle_is_separate_from_5xx() {
        let z = zone(&["be"]);
        let p = latency_params();
        let slot = &z.names()[0];
        let w = watch(&z, &p);
        let mut log: Vec<(u64, String)> = Vec::new();
        for s in 0..=80u64 {
            // 20 req/s; 4 of them take 3s between t=20s and t=40s.
            let slow = if (20..40).contains(&s) { 4 } else { 0 };
            slow_traffic(slot, 20 - slow, slow, 3000);
            let now = 1_000_000 + s * 1000;
            for e in evaluate(&w, now, 1000) {
                log.push((s, crate::vocab::title::title(&e)));
            }
            if s == 22 {
                // Another evaluator seeing the same figures announces nothing.
                assert!(evaluate(&w, now + 500, 1000).is_empty());
                // 188 fast, 12 slow: rank 190 is the 2nd of 12 in (2.5s, 5s].
                let est = slot.latency.estimate_seconds().unwrap();
                assert!((est - (2.5 + 2.5 * 2.0 / 12.0)).abs() < 1e-6, "{est}");
            }
        }
        // Until 8 slow requests are in the window, rank 190 of 200 is still a fast one; the
        // window drops back below 12 slow ones at t=47s.
        let expect = [
            (22, "CRITICAL be: p95 2.9s over 10s".to_string()),
            (47, "RESOLVED be latency after 25s".to_string()),
        ];
        assert_eq!(log, expect);
        assert_eq!(slot.alert.level.load(Relaxed), 0, "no 5xx alert");
        let summary = slot.incident_summary(1_000_000 + 80_000);
        assert_eq!(summary.opened, [0, 1, 0, 0]);
        assert_eq!(summary.firing_seconds, [0, 25, 0, 0]);
        let i = summary.recent[0];
        assert_eq!((i.peak_level, i.end_ms), (Level::Critical, Some(1_047_000)));
    }

    #[test]
    fn latency_below_min_requests_nothing() {
        let z = zone(&["be"]);
        let p = latency_params();
        let slot = &z.names()[0];
        let w = watch(&z, &p);
        for s in 0..30u64 {
            slow_traffic(slot, 0, 1, 5000); // 10 in the window < 20
            assert!(evaluate(&w, 1_000_000 + s * 1000, 1000).is_empty());
        }
        assert!(slot.latency.estimate_seconds().is_some());
    }

    fn slo_params() -> AlertParams {
        AlertParams {
            warn_pct: None,
            crit_pct: 100.0, // keep the 5xx alert quiet: these tests watch the budget
            slo_pct: Some(99.0),
            repeat_ms: None,
            ..params()
        }
    }

    /// Runs `seconds` of 100 req/s with `errors` 5xx each second from `start` and returns the
    /// error-budget events with the second they came at.
    fn run_slo(
        slot: &NameSlot,
        w: &[Watched<'_>],
        start: u64,
        seconds: u64,
        errors: u64,
    ) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for s in start..start + seconds {
            traffic(slot, 100 - errors, errors);
            for e in evaluate(w, 1_000_000 + s * 1000, 1000) {
                if matches!(e.detail, EventDetail::Slo(_)) {
                    out.push((s - start, crate::vocab::title::title(&e)));
                }
            }
        }
        out
    }

    #[test]
    fn short_spike_pages_only_when_the_long_window_agrees() {
        // window=10s: burn windows 10s, 1m, 2m and 12m.
        let z = zone(&["be"]);
        let p = slo_params();
        let slot = &z.names()[0];
        let w = watch(&z, &p);
        assert!(run_slo(slot, &w, 0, 1200, 0).is_empty());
        // 30% errors for 10s: burn 30 over 10s, but only 2.5 over 2m: no page.
        assert!(run_slo(slot, &w, 1200, 10, 30).is_empty());
        let rates = slot.slo.rates();
        assert!(rates[0] > 14.4 && rates[2] < 14.4, "{rates:?}");
        assert!(
            run_slo(slot, &w, 1210, 200, 0).is_empty(),
            "the spike passes quietly"
        );
        // The same errors sustained: burn over 2m reaches 14.4 after about 58s (plus up to one
        // step of the coarse ring).
        let events = run_slo(slot, &w, 1410, 80, 30);
        assert_eq!(events.len(), 1, "{events:?}");
        let (at, title) = &events[0];
        assert!((57..=66).contains(at), "{events:?}");
        assert!(
            title.starts_with("CRITICAL be: error budget burning 1"),
            "{title}"
        );
        assert!(title.ends_with("x (slo 99%)"), "{title}");
        // Recovery: the 10s window clears first, which resolves the page.
        let events = run_slo(slot, &w, 1490, 20, 0);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0].1.starts_with("RESOLVED be error budget after "),
            "{events:?}"
        );
        assert_eq!(slot.incident_summary(0).opened, [0, 0, 1, 0]);
    }

    #[test]
    fn slow_burn_opens_a_warning() {
        let z = zone(&["be"]);
        let p = slo_params();
        let slot = &z.names()[0];
        let w = watch(&z, &p);
        assert!(run_slo(slot, &w, 0, 1200, 0).is_empty());
        // 8% errors: burn 8, below 14.4 everywhere; 6 over 12m after 540s.
        let events = run_slo(slot, &w, 1200, 700, 8);
        assert_eq!(events.len(), 1, "{events:?}");
        let (at, title) = &events[0];
        assert!((540..=550).contains(at), "{events:?}");
        assert!(
            title.starts_with("WARNING be: error budget burning 6."),
            "{title}"
        );
        assert_eq!(
            Level::from_u8(slot.slo.state.level.load(Relaxed) as u8),
            Level::Warning
        );
    }

    #[test]
    fn removing_latency_or_slo_returns_quietly_to_ok() {
        let z = zone(&["be"]);
        let slot = &z.names()[0];
        slot.latency.state.level.store(2, Relaxed);
        slot.latency.state.incident_since_ms.store(1_000, Relaxed);
        slot.slo.state.level.store(1, Relaxed);
        let p = params();
        assert!(evaluate(&watch(&z, &p), 61_000, 1000).is_empty());
        assert_eq!(slot.latency.state.level.load(Relaxed), 0);
        assert_eq!(slot.slo.state.level.load(Relaxed), 0);
        assert_eq!(slot.latency.estimate_seconds(), None);
        assert_eq!(slot.incident_summary(61_000).firing_seconds[1], 60);
    }

    fn traffic_params(value: &str) -> AlertParams {
        AlertParams {
            traffic: crate::conf::traffic::parse_traffic(value, value).ok(),
            repeat_ms: None,
            ..params()
        }
    }

    /// Runs `seconds` evaluations one second apart from `start` with `per_second` requests
    /// each; returns the traffic titles with the second they came at.
    fn run_traffic(
        slot: &NameSlot,
        w: &[Watched<'_>],
        start: u64,
        seconds: u64,
        per_second: u64,
    ) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for s in start..start + seconds {
            traffic(slot, per_second, 0);
            for e in evaluate(w, 1_000_000 + s * 1000, 1000) {
                if matches!(e.detail, EventDetail::Traffic(_)) {
                    out.push((s, crate::vocab::title::title(&e)));
                }
            }
        }
        out
    }

    #[test]
    fn traffic_drop_warns_then_pages_once_and_resolves_when_it_returns() {
        // window=10s, warn below 50 requests, critical below 10; 20 req/s is 200 a window.
        let z = zone(&["be"]);
        let p = AlertParams {
            min_requests: 1_000, // plays no part in a traffic drop
            ..traffic_params("50:10")
        };
        let slot = &z.names()[0];
        let w = watch(&z, &p);
        assert!(run_traffic(slot, &w, 0, 60, 20).is_empty());
        let events = run_traffic(slot, &w, 60, 30, 0);
        let titles: Vec<&str> = events.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            titles,
            [
                "WARNING be: traffic 40 requests in 10s, expected at least 50",
                "CRITICAL be: traffic 0 requests in 10s, expected at least 10",
            ],
            "{events:?}"
        );
        // Critical does not step down to warning while the window refills: no news.
        let events = run_traffic(slot, &w, 90, 20, 20);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0].1.starts_with("RESOLVED be traffic after "),
            "{events:?}"
        );
        assert_eq!(slot.incident_summary(0).opened, [0, 0, 0, 1]);
        let i = slot.incident_summary(0).recent[0];
        assert_eq!((i.peak_level, i.peak_value), (Level::Critical, 0.0));
        assert_eq!(slot.alert.level.load(Relaxed), 0, "no 5xx alert");
    }

    #[test]
    fn a_percentage_waits_for_twelve_windows_and_an_absolute_floor_does_not() {
        let z = zone(&["be", "idle"]);
        let p = traffic_params("50%:10%");
        let floor = traffic_params("1");
        let slots = z.names();
        let w = [
            Watched {
                name: "be",
                params: &p,
                slot: &slots[0],
            },
            Watched {
                name: "idle",
                params: &floor,
                slot: &slots[1],
            },
        ];
        let mut events = Vec::new();
        // 20 req/s from 11s on, except for two stops: 60s-75s, while fewer than 12 windows
        // are known (quiet), and 200s-215s, once they are. "idle" never gets a request.
        for s in 0..240u64 {
            if (11..60).contains(&s) || (75..200).contains(&s) || s >= 215 {
                traffic(&slots[0], 20, 0);
            }
            for e in evaluate(&w, 1_000_000 + s * 1000, 1000) {
                events.push((s, crate::vocab::title::title(&e)));
            }
            if s == 199 {
                assert_eq!(slots[0].traffic.usual(), Some(200.0));
            }
        }
        let titles: Vec<(u64, &str)> = events.iter().map(|(s, t)| (*s, t.as_str())).collect();
        assert_eq!(
            titles,
            [
                (
                    10,
                    "WARNING idle: traffic 0 requests in 10s, expected at least 1"
                ),
                (205, "WARNING be: traffic 80 requests in 10s, usually 200"),
                (209, "CRITICAL be: traffic 0 requests in 10s, usually 200"),
                (219, "RESOLVED be traffic after 14s"),
            ],
        );
    }
}
