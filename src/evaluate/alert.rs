//! Alert state machine of one NAME: ok / warning / critical, repeats and resolution.
//!
//! Pure: [`AlertMachine::step`] takes the stored state and the window figures and returns the new
//! state plus at most one [`Transition`]. The caller stores the state in shared memory with a
//! compare-and-swap, so two evaluators can never both announce the same transition.

use crate::conf::alert_params::AlertParams;
use crate::vocab::event::Level;

/// The persistent part of a NAME's alert state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlertState {
    /// Current level.
    pub level: Level,
    /// When the current incident started (first non-ok evaluation), ms since the epoch; 0 if ok.
    pub incident_since_ms: u64,
    /// When the firing level was last announced, ms since the epoch.
    pub last_post_ms: u64,
}

/// What an evaluation decided to announce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The level changed between two firing levels or from ok to firing.
    Changed {
        /// Level before.
        from: Level,
        /// Level now (never `Ok`).
        to: Level,
    },
    /// The level is still firing and `repeat` has elapsed since the last announcement.
    Repeat(Level),
    /// Back to ok after an incident of `duration_ms`.
    Resolved {
        /// Level before resolving.
        from: Level,
        /// Incident length.
        duration_ms: u64,
    },
}

/// Thresholds and timing of one NAME.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlertMachine {
    /// Warning threshold in percent, if any.
    pub warn_pct: Option<f64>,
    /// Critical threshold in percent.
    pub crit_pct: f64,
    /// Minimum requests in the window to judge at all.
    pub min_requests: u64,
    /// Re-announce period of a firing level.
    pub repeat_ms: Option<u64>,
}

impl From<&AlertParams> for AlertMachine {
    fn from(p: &AlertParams) -> Self {
        AlertMachine {
            warn_pct: p.warn_pct,
            crit_pct: p.crit_pct,
            min_requests: p.min_requests,
            repeat_ms: p.repeat_ms,
        }
    }
}

impl AlertMachine {
    /// The level that the window figures call for.
    pub fn classify(&self, errors: u64, total: u64) -> Level {
        if total == 0 || total < self.min_requests {
            return Level::Ok;
        }
        // Compare in integers scaled by 1000 to avoid 0.1 + 0.2 style surprises at the edge:
        // errors * 100 / total >= pct  <=>  errors * 100_000 >= pct * 1000 * total.
        let reaches = |pct: f64| {
            let scaled = (pct * 1000.0).round() as u128;
            (errors as u128) * 100_000 >= scaled * total as u128
        };
        if reaches(self.crit_pct) {
            Level::Critical
        } else if self.warn_pct.is_some_and(reaches) {
            Level::Warning
        } else {
            Level::Ok
        }
    }

    /// Advances the state for one evaluation at `now_ms`.
    pub fn step(
        &self,
        state: AlertState,
        errors: u64,
        total: u64,
        now_ms: u64,
    ) -> (AlertState, Option<Transition>) {
        advance(state, self.classify(errors, total), now_ms, self.repeat_ms)
    }
}

/// Moves `state` to `level` at `now_ms`: the transition logic shared by every alert kind (5xx
/// share, latency, error budget), each of which classifies its own figures. `repeat_ms`
/// re-announces a level that keeps firing.
pub fn advance(
    state: AlertState,
    level: Level,
    now_ms: u64,
    repeat_ms: Option<u64>,
) -> (AlertState, Option<Transition>) {
    let prev = state.level;
    match (prev, level) {
        (Level::Ok, Level::Ok) => (state, None),
        (_, Level::Ok) => {
            let duration_ms = now_ms.saturating_sub(state.incident_since_ms);
            (
                AlertState::default(),
                Some(Transition::Resolved {
                    from: prev,
                    duration_ms,
                }),
            )
        }
        (Level::Ok, to) => (
            AlertState {
                level: to,
                incident_since_ms: now_ms,
                last_post_ms: now_ms,
            },
            Some(Transition::Changed { from: prev, to }),
        ),
        (from, to) if from != to => (
            AlertState {
                level: to,
                last_post_ms: now_ms,
                ..state
            },
            Some(Transition::Changed { from, to }),
        ),
        (_, same) => match repeat_ms {
            Some(every) if now_ms.saturating_sub(state.last_post_ms) >= every => (
                AlertState {
                    last_post_ms: now_ms,
                    ..state
                },
                Some(Transition::Repeat(same)),
            ),
            _ => (state, None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> AlertMachine {
        AlertMachine::from(&AlertParams::default())
    }

    #[test]
    fn classify_thresholds_are_inclusive() {
        let m = machine();
        assert_eq!(m.classify(4, 100), Level::Ok);
        assert_eq!(m.classify(5, 100), Level::Warning);
        assert_eq!(m.classify(9, 100), Level::Warning);
        assert_eq!(m.classify(10, 100), Level::Critical);
        assert_eq!(m.classify(100, 100), Level::Critical);
        assert_eq!(m.classify(0, 0), Level::Ok);
    }

    #[test]
    fn min_requests_guard() {
        let m = machine();
        assert_eq!(m.classify(19, 19), Level::Ok);
        assert_eq!(m.classify(20, 20), Level::Critical);
        let m0 = AlertMachine {
            min_requests: 0,
            ..machine()
        };
        assert_eq!(m0.classify(1, 1), Level::Critical);
    }

    #[test]
    fn warn_off_goes_straight_to_critical() {
        let m = AlertMachine {
            warn_pct: None,
            ..machine()
        };
        assert_eq!(m.classify(9, 100), Level::Ok);
        assert_eq!(m.classify(10, 100), Level::Critical);
    }

    #[test]
    fn fractional_threshold_edge() {
        let m = AlertMachine {
            warn_pct: Some(0.1),
            crit_pct: 12.5,
            ..machine()
        };
        assert_eq!(m.classify(1, 1000), Level::Warning);
        assert_eq!(m.classify(125, 1000), Level::Critical);
        assert_eq!(m.classify(124, 1000), Level::Warning);
    }

    #[test]
    fn lifecycle_ok_warning_critical_warning_resolved() {
        let m = machine();
        let s = AlertState::default();
        let (s, t) = m.step(s, 6, 100, 1_000);
        assert_eq!(
            t,
            Some(Transition::Changed {
                from: Level::Ok,
                to: Level::Warning
            })
        );
        assert_eq!(s.incident_since_ms, 1_000);
        let (s, t) = m.step(s, 6, 100, 2_000);
        assert_eq!(t, None);
        let (s, t) = m.step(s, 20, 100, 3_000);
        assert_eq!(
            t,
            Some(Transition::Changed {
                from: Level::Warning,
                to: Level::Critical
            })
        );
        assert_eq!(
            s.incident_since_ms, 1_000,
            "incident start survives escalation"
        );
        let (s, t) = m.step(s, 7, 100, 4_000);
        assert_eq!(
            t,
            Some(Transition::Changed {
                from: Level::Critical,
                to: Level::Warning
            })
        );
        let (s, t) = m.step(s, 0, 100, 431_000);
        assert_eq!(
            t,
            Some(Transition::Resolved {
                from: Level::Warning,
                duration_ms: 430_000
            })
        );
        assert_eq!(s, AlertState::default());
    }

    #[test]
    fn repeat_while_firing() {
        let m = AlertMachine {
            repeat_ms: Some(60_000),
            ..machine()
        };
        let (mut s, _) = m.step(AlertState::default(), 50, 100, 0);
        let mut repeats = vec![];
        for t in (10_000..=200_000).step_by(10_000) {
            let (ns, tr) = m.step(s, 50, 100, t);
            s = ns;
            if let Some(tr) = tr {
                repeats.push((t, tr));
            }
        }
        let times: Vec<u64> = repeats.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![60_000, 120_000, 180_000]);
        assert!(repeats
            .iter()
            .all(|(_, tr)| *tr == Transition::Repeat(Level::Critical)));
    }

    #[test]
    fn repeat_off_never_repeats() {
        let m = AlertMachine {
            repeat_ms: None,
            ..machine()
        };
        let (mut s, _) = m.step(AlertState::default(), 50, 100, 0);
        for t in 1..1000u64 {
            let (ns, tr) = m.step(s, 50, 100, t * 60_000);
            assert_eq!(tr, None);
            s = ns;
        }
    }

    #[test]
    fn below_min_requests_resolves() {
        let m = machine();
        let (s, _) = m.step(AlertState::default(), 50, 100, 0);
        let (_, t) = m.step(s, 5, 5, 10_000);
        assert!(matches!(t, Some(Transition::Resolved { .. })));
    }

    #[test]
    fn advance_serves_any_classification() {
        let (s, t) = advance(AlertState::default(), Level::Critical, 5_000, None);
        assert_eq!(
            t,
            Some(Transition::Changed {
                from: Level::Ok,
                to: Level::Critical
            })
        );
        assert_eq!(advance(s, Level::Critical, 9_000, None), (s, None));
        let (_, t) = advance(s, Level::Ok, 65_000, None);
        assert_eq!(
            t,
            Some(Transition::Resolved {
                from: Level::Critical,
                duration_ms: 60_000
            })
        );
    }

    #[test]
    fn flapping_yields_one_event_per_change() {
        // Ratio alternates just below / at the warning threshold: every change is announced once,
        // steady evaluations in between announce nothing.
        let m = machine();
        let mut s = AlertState::default();
        let mut events = 0;
        let pattern = [5u64, 5, 4, 4, 5, 4, 5, 5, 5, 4];
        for (i, errors) in pattern.iter().enumerate() {
            let (ns, t) = m.step(s, *errors, 100, i as u64 * 1000);
            events += t.is_some() as usize;
            s = ns;
        }
        let changes = pattern
            .windows(2)
            .filter(|w| (w[0] >= 5) != (w[1] >= 5))
            .count()
            + 1; // the first 5 is a change from ok
        assert_eq!(events, changes);
    }
}
