//! One evaluation tick: window figures, alert transitions and the events they produce.
//!
//! Runs in the single evaluating process. Plain Rust over zone slots: no nginx types.

use core::sync::atomic::Ordering::Relaxed;

use crate::alert::{AlertMachine, AlertState, Transition};
use crate::event::{AlertEvent, EventDetail, Level, LocationEvent};
use crate::params::AlertParams;
use crate::window::{sample_step_ms, SampleCounts};
use crate::zone::{NameSlot, ZoneHeader};

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

fn load_state(slot: &NameSlot) -> AlertState {
    AlertState {
        level: Level::from_u8(slot.alert.level.load(Relaxed) as u8),
        incident_since_ms: slot.alert.incident_since_ms.load(Relaxed),
        last_post_ms: slot.alert.last_post_ms.load(Relaxed),
    }
}

/// Stores `new` if the level is still `old.level`; false if another evaluator got there first.
fn store_state(slot: &NameSlot, old: AlertState, new: AlertState) -> bool {
    let a = &slot.alert;
    if old.level != new.level
        && a.level
            .compare_exchange(old.level as u32, new.level as u32, Relaxed, Relaxed)
            .is_err()
    {
        return false;
    }
    if old.last_post_ms != new.last_post_ms
        && a.last_post_ms
            .compare_exchange(old.last_post_ms, new.last_post_ms, Relaxed, Relaxed)
            .is_err()
    {
        return false;
    }
    a.incident_since_ms.store(new.incident_since_ms, Relaxed);
    true
}

/// Evaluates every NAME at `now_ms` and returns the events to announce.
pub fn evaluate(watched: &[Watched<'_>], now_ms: u64, interval_ms: u64) -> Vec<AlertEvent> {
    let mut events = Vec::new();
    for w in watched {
        let p = w.params;
        let current = SampleCounts::from_snapshot(&w.slot.counters.snapshot());
        let step = sample_step_ms(p.window_ms, interval_ms);
        let figures = w.slot.window.advance(now_ms, &current, p.window_ms, step);
        w.slot.alert.set_window(figures.total(), figures.errors());
        // A firing level taken over from another master (binary upgrade): this zone's counts
        // start then, so it is not lowered (or resolved) before the zone has seen a whole
        // window; a worse level is announced as usual.
        let adopted = w.slot.alert.adopted_at_ms.load(Relaxed);
        let hold = adopted != 0 && now_ms < adopted.saturating_add(p.window_ms);
        if adopted != 0 && !hold {
            w.slot.alert.adopted_at_ms.store(0, Relaxed);
        }

        let machine = AlertMachine::from(p);
        let old = load_state(w.slot);
        let (new, transition) = machine.step(old, figures.errors(), figures.total(), now_ms);
        if hold && new.level < old.level {
            continue;
        }
        if new == old || !store_state(w.slot, old, new) {
            continue;
        }
        let Some(transition) = transition else {
            continue;
        };
        let (level, previous, repeat, since_ms) = match transition {
            Transition::Changed { from, to } => (to, from, false, new.incident_since_ms),
            Transition::Repeat(l) => (l, l, true, new.incident_since_ms),
            Transition::Resolved { from, .. } => (Level::Ok, from, false, old.incident_since_ms),
        };
        events.push(AlertEvent {
            name: w.name.to_string(),
            at_unix: now_ms / 1000,
            link: p.link.clone(),
            runbook: p.runbook.clone(),
            detail: EventDetail::Location(LocationEvent {
                level,
                previous,
                repeat,
                errors: figures.errors(),
                total: figures.total(),
                window_secs: p.window_ms / 1000,
                warn_pct: p.warn_pct,
                crit_pct: p.crit_pct,
                top_codes: figures.top_codes(TOP_CODES),
                since_unix: since_ms / 1000,
            }),
        });
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
                log.push((s, crate::discord::title(&e)));
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
        assert!(crate::discord::title(&up[0]).starts_with("CRITICAL be"));
        let resolved = evaluate(&w, 11_000, 1000);
        assert_eq!(resolved.len(), 1);
        assert_eq!(crate::discord::title(&resolved[0]), "RESOLVED be after 10s");
        assert_eq!(slot.alert.adopted_at_ms.load(Relaxed), 0);
    }

    #[test]
    fn tick_lease() {
        let z = zone(&["be"]);
        let h = z.header();
        assert!(take_tick(h, 10_000, 1000));
        assert!(!take_tick(h, 10_400, 1000));
        assert!(take_tick(h, 10_600, 1000));
    }
}
