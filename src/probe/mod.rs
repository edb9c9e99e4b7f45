//! Active health probes: the state machine that turns [`ProbeResult`]s into DOWN / UP
//! transitions ([`apply`]). The probes themselves run on nginx's event loop in the evaluating
//! worker (`net`, FFI; requests and responses in [`http`], pure); `upstream=` targets come from
//! `upstream` (FFI), and `mark_down=on` decides which peers are kept out in [`mark_down`]
//! (pure) and applies it to nginx's peers in `mark_down::nginx_peers` (FFI); the slots of
//! `server ... resolve` peers follow nginx's re-resolution in [`resolve_pool`].

pub mod http;
pub mod mark_down;
#[cfg(not(test))]
pub(crate) mod net;
pub mod resolve_pool;
#[cfg(not(test))]
pub(crate) mod upstream;

use core::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::conf::probe_spec::ProbeSpec;
use crate::vocab::reason::Reason;
use crate::zone::ProbeHealth;

/// One probe's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// Index of the target in the configuration.
    pub index: usize,
    /// `None` on success, else why it failed.
    pub failure: Option<Reason>,
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// How long the probe took.
    pub duration: Duration,
}

/// A probe target's state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeTransition {
    /// Became DOWN after `fails` consecutive failures.
    Down {
        /// Last failure's reason.
        reason: Reason,
    },
    /// Came back UP after `passes` consecutive successes.
    Up {
        /// When it went down, ms since the epoch.
        down_since_ms: u64,
    },
}

const UNKNOWN: u32 = 0;
const UP: u32 = 1;
const DOWN: u32 = 2;

/// Applies a result to the target's health state; returns the transition to announce, if any.
/// No UP is announced for the first result after start-up (unknown -> up).
pub fn apply(
    health: &ProbeHealth,
    spec: &ProbeSpec,
    r: &ProbeResult,
    now_ms: u64,
) -> Option<ProbeTransition> {
    health
        .last_duration_us
        .store(r.duration.as_micros() as u64, Relaxed);
    health
        .last_status
        .store(r.status.unwrap_or(0) as u32, Relaxed);
    let state = health.state.load(Relaxed);
    match r.failure {
        None => {
            health.consecutive_failures.store(0, Relaxed);
            let ok = health.consecutive_successes.fetch_add(1, Relaxed) + 1;
            match state {
                UNKNOWN => {
                    set_state(health, UNKNOWN, UP, now_ms);
                    None
                }
                DOWN if ok >= spec.passes => {
                    let down_since_ms = health.since_ms.load(Relaxed);
                    let up = set_state(health, DOWN, UP, now_ms);
                    if up {
                        // nginx_probe_down_seconds_total keeps the ended down period.
                        health.book_down_time(down_since_ms, now_ms);
                    }
                    up.then_some(ProbeTransition::Up { down_since_ms })
                }
                _ => None,
            }
        }
        Some(reason) => {
            health.consecutive_successes.store(0, Relaxed);
            health.failures[reason as usize].fetch_add(1, Relaxed);
            health.last_reason.store(reason as u32 + 1, Relaxed);
            let failed = health.consecutive_failures.fetch_add(1, Relaxed) + 1;
            if state != DOWN && failed >= spec.fails {
                set_state(health, state, DOWN, now_ms).then_some(ProbeTransition::Down { reason })
            } else {
                None
            }
        }
    }
}

/// Moves `from` -> `to` by compare-and-swap, so that only one evaluator announces it.
fn set_state(health: &ProbeHealth, from: u32, to: u32, now_ms: u64) -> bool {
    let won = health
        .state
        .compare_exchange(from, to, Relaxed, Relaxed)
        .is_ok();
    if won {
        health.since_ms.store(now_ms, Relaxed);
    }
    won
}

/// The reason of a target's last failure (`None` if it never failed) and the HTTP status of
/// its last probe (`None` if none).
pub fn last_failure(health: &ProbeHealth) -> (Option<Reason>, Option<u16>) {
    let reason = health
        .last_reason
        .load(Relaxed)
        .checked_sub(1)
        .and_then(Reason::from_index);
    let status = Some(health.last_status.load(Relaxed) as u16).filter(|s| *s != 0);
    (reason, status)
}

/// Whether the target is up: `None` until its first result.
pub fn is_up(health: &ProbeHealth) -> Option<bool> {
    match health.state.load(Relaxed) {
        UP => Some(true),
        DOWN => Some(false),
        _ => None,
    }
}

/// The next start of a schedule of `interval_ms` whose start at `due_ms` is being made at
/// `now_ms`: one interval on when this start is at most a tenth of an interval late, so the
/// schedule keeps its phase; otherwise one interval from now (a late tick on a busy worker, no
/// ticks for a while, or the previous probe still running). So a target's starts are never
/// closer than nine tenths of `interval=`, and a pause never ends in a burst.
pub fn next_due_ms(due_ms: u64, now_ms: u64, interval_ms: u64) -> u64 {
    if now_ms.saturating_sub(due_ms) > interval_ms / 10 {
        now_ms + interval_ms
    } else {
        due_ms + interval_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::conf::probe_spec::parse;

    fn health() -> Box<ProbeHealth> {
        // SAFETY: all-zero bytes are a valid, unknown probe state.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    fn spec(args: &[&str]) -> ProbeSpec {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v, false).unwrap()
    }

    fn ok() -> ProbeResult {
        ProbeResult {
            index: 0,
            failure: None,
            status: Some(200),
            duration: Duration::from_millis(3),
        }
    }

    fn fail(reason: Reason) -> ProbeResult {
        ProbeResult {
            failure: Some(reason),
            status: None,
            ..ok()
        }
    }

    #[test]
    fn no_up_at_startup_and_down_after_fails() {
        let s = health();
        let sp = spec(&["http://h/", "fails=2", "passes=2"]);
        assert_eq!(apply(&s, &sp, &ok(), 1), None);
        assert_eq!(s.state.load(Relaxed), UP);
        assert_eq!(apply(&s, &sp, &fail(Reason::Refused), 2), None);
        assert_eq!(
            apply(&s, &sp, &fail(Reason::Timeout), 3),
            Some(ProbeTransition::Down {
                reason: Reason::Timeout
            })
        );
        assert_eq!(
            apply(&s, &sp, &fail(Reason::Timeout), 4),
            None,
            "one DOWN per outage"
        );
        assert_eq!(apply(&s, &sp, &ok(), 5), None);
        assert_eq!(
            apply(&s, &sp, &ok(), 6),
            Some(ProbeTransition::Up { down_since_ms: 3 })
        );
        assert_eq!(s.failures[Reason::Refused as usize].load(Relaxed), 1);
        assert_eq!(s.failures[Reason::Timeout as usize].load(Relaxed), 2);
        assert_eq!(s.last_reason.load(Relaxed), Reason::Timeout as u32 + 1);
        assert_eq!(is_up(&s), Some(true));
    }

    #[test]
    fn down_from_the_start_is_announced() {
        let s = health();
        let sp = spec(&["tcp://h:1"]);
        assert!(matches!(
            apply(&s, &sp, &fail(Reason::Refused), 1),
            Some(ProbeTransition::Down { .. })
        ));
    }

    #[test]
    fn reasons_match_metric_labels() {
        let labels: Vec<&str> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(
            labels,
            ["refused", "timeout", "status", "reset", "tls", "dns", "body", "header", "slow"]
        );
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in the order of the values");
        }
    }

    #[test]
    fn a_start_a_little_late_keeps_the_schedule() {
        // Due at 1000, started on the tick at 1080: the next is still due at 2000.
        assert_eq!(next_due_ms(1000, 1080, 1000), 2000);
        // Started on time.
        assert_eq!(next_due_ms(1000, 1000, 1000), 2000);
    }

    #[test]
    fn starts_are_never_closer_than_nine_tenths_of_the_interval() {
        // A tick 200 ms late on a busy worker: the next start is a whole interval away, not
        // 800 ms.
        assert_eq!(next_due_ms(1000, 1200, 1000), 2200);
        for late in 0..=1000 {
            let next = next_due_ms(1000, 1000 + late, 1000);
            assert!(
                next - (1000 + late) >= 900,
                "{late} ms late: next at {next}"
            );
        }
    }

    #[test]
    fn a_schedule_far_behind_restarts_from_now_without_a_burst() {
        // No tick for 10 s (worker 0 was busy or stopped): one probe now, the next in an
        // interval, not ten in a row.
        assert_eq!(next_due_ms(1000, 11_000, 1000), 12_000);
        assert_eq!(next_due_ms(1000, 2000, 1000), 3000);
        assert_eq!(next_due_ms(1000, 1990, 1000), 2990);
        assert_eq!(next_due_ms(10_000, 17_000, 10_000), 27_000);
        // Late by less than a tenth: the schedule holds.
        assert_eq!(next_due_ms(10_000, 10_900, 10_000), 20_000);
    }
}
