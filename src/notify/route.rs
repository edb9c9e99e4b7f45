//! Which destination hears of which event: `min_level=` and `after=` as a pure
//! decision, with the little state that makes RESOLVED go out exactly once, and only to a
//! destination that heard of the incident.
//!
//! The rules, per destination and per incident (one alert kind of one NAME, or one probe
//! target):
//! - **Firing events** (a level change or a repeat) at or above `min_level` are sent once the
//!   incident has fired for `after` (counted from its start, its first non-ok evaluation,
//!   whatever the level then). Before that they are *held*: [`Route::Hold`] says until when.
//!   Nothing is queued; instead the evaluator asks [`Escalation::release`] every tick while the
//!   incident fires, and when it is due builds a message of the current figures (as a repeat,
//!   "still firing"). Below `min_level` (also a de-escalation, critical -> warning, for a
//!   `min_level=critical` destination) nothing is sent.
//! - **RESOLVED** goes to a destination only if it was told of the incident; the state then
//!   marks the incident ended, so a second RESOLVED of it is not sent. A short incident (resolved before `after`) or one that stayed
//!   below `min_level` never reaches the destination, start or end.
//! - A destination without `min_level=critical` and `after=` gets every event, as before
//!   routing existed, whatever its state says.
//! - Probe targets: DOWN routes as CRITICAL, UP as its RESOLVED ([`RoutedEvent::probe`]).
//!
//! State: one [`Escalation`] per destination, alert kind and NAME (or probe target), plain
//! fixed-size fields kept in the zone beside the alert state ([`Escalation::to_word`],
//! `zone/routes.rs` says why there): a reload or a helper restart neither repeats a start nor
//! loses an end. Where it was lost
//! anyway (it is about another incident), RESOLVED falls back to what the incident shows: sent
//! when its peak reached `min_level` and it lasted `after`.
//!
//! Depends on [`Level`] (event vocabulary) and [`RouteRules`] (`conf::route`).

use crate::conf::route::RouteRules;
use crate::vocab::event::Level;

/// What routing does with one event for one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Send it now.
    Send,
    /// Not yet: the incident has not fired for `after=`. [`Escalation::release`] tells when to
    /// announce it.
    Hold {
        /// When the incident will have fired long enough, ms since the epoch.
        until_ms: u64,
    },
    /// Never to this destination.
    Skip,
}

/// An event as routing sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutedEvent {
    /// Level now; `Level::Ok` is the RESOLVED (or UP) of the incident.
    pub level: Level,
    /// Start of the incident (its first non-ok evaluation), ms since the epoch.
    pub since_ms: u64,
    /// Highest level the incident reached (the incident log's peak), for the fallback of a
    /// lost state.
    pub peak: Level,
    /// When the event happens, ms since the epoch.
    pub now_ms: u64,
}

impl RoutedEvent {
    /// A probe target's transition: DOWN (since `since_ms`, now) routes as CRITICAL, UP as the
    /// RESOLVED of the DOWN that began at `since_ms`.
    pub fn probe(up: bool, since_ms: u64, now_ms: u64) -> RoutedEvent {
        RoutedEvent {
            level: if up { Level::Ok } else { Level::Critical },
            since_ms,
            peak: Level::Critical,
            now_ms,
        }
    }
}

/// What one destination knows of the current incident of one alert kind of one NAME.
///
/// Plain fixed-size fields, all zero when it knows nothing (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Escalation {
    /// Start of the incident this is about, ms since the epoch; 0 for none.
    since_ms: u64,
    /// 1 once the destination was told of the incident.
    told: u32,
    /// 1 once the incident's RESOLVED was routed (sent or skipped): a second one is not sent.
    ended: u32,
}

impl Escalation {
    /// The state as the zone keeps it, in one word: `since_ms << 2 | ended << 1 | told` (a
    /// time in ms needs 41 bits until the year 2039 and 62 for longer than anyone will care).
    pub fn to_word(&self) -> u64 {
        self.since_ms << 2 | u64::from(self.ended != 0) << 1 | u64::from(self.told != 0)
    }

    /// The state from the zone's word (any word will do).
    pub fn from_word(w: u64) -> Escalation {
        Escalation {
            since_ms: w >> 2,
            told: u32::from(w & 1 != 0),
            ended: u32::from(w & 2 != 0),
        }
    }

    /// True when the destination was told of the incident that began at `since_ms`.
    pub fn told_of(&self, since_ms: u64) -> bool {
        self.since_ms == since_ms && since_ms != 0 && self.told != 0
    }

    /// Starts following the incident that began at `since_ms`, if this is not it yet.
    fn follow(&mut self, since_ms: u64) {
        if self.since_ms != since_ms || since_ms == 0 || self.ended != 0 {
            *self = Escalation {
                since_ms,
                ..Escalation::default()
            };
        }
    }

    /// Decides what `rules`' destination gets of `event`, and remembers whether it was told.
    pub fn route(&mut self, rules: &RouteRules, event: &RoutedEvent) -> Route {
        let known = self.since_ms == event.since_ms && event.since_ms != 0;
        if event.level == Level::Ok {
            let told = if known && self.ended != 0 {
                false // this RESOLVED was routed already
            } else if rules.gets_everything() {
                true
            } else if known {
                self.told != 0
            } else {
                event.peak >= rules.min_level
                    && event.now_ms.saturating_sub(event.since_ms) >= rules.after_ms
            };
            *self = Escalation {
                since_ms: event.since_ms,
                told: 0,
                ended: 1,
            };
            return if told { Route::Send } else { Route::Skip };
        }
        self.follow(event.since_ms);
        if rules.gets_everything() {
            self.told = 1;
            return Route::Send;
        }
        if event.level < rules.min_level {
            return Route::Skip;
        }
        let due_ms = event.since_ms.saturating_add(rules.after_ms);
        if event.now_ms < due_ms {
            return Route::Hold { until_ms: due_ms };
        }
        self.told = 1;
        Route::Send
    }

    /// Asked every evaluation while an incident fires at `level` since `since_ms`: true when
    /// `rules`' destination is to be told of it now (it has fired for `after=` at or above
    /// `min_level`, and the destination was not told yet). Only `after=` holds events, so
    /// without it this is always false.
    pub fn release(
        &mut self,
        rules: &RouteRules,
        level: Level,
        since_ms: u64,
        now_ms: u64,
    ) -> bool {
        if rules.after_ms == 0 || level == Level::Ok || since_ms == 0 {
            return false;
        }
        if self.since_ms == since_ms && self.ended != 0 {
            return false; // resolved already; a late check of the old level
        }
        self.follow(since_ms);
        let due = level >= rules.min_level
            && self.told == 0
            && now_ms >= since_ms.saturating_add(rules.after_ms);
        if due {
            self.told = 1;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::{Critical, Ok, Warning};

    const T0: u64 = 1_700_000_000_000;

    fn rules(min_level: Level, after_ms: u64) -> RouteRules {
        RouteRules {
            min_level,
            after_ms,
            mentions: Vec::new(),
        }
    }

    fn ev(level: Level, peak: Level, now_ms: u64) -> RoutedEvent {
        RoutedEvent {
            level,
            since_ms: T0,
            peak,
            now_ms,
        }
    }

    /// One destination through an incident given as (time offset, level) evaluations, one per
    /// second: events where the level changes, the release check at every evaluation, as the
    /// evaluator would do it. Returns what the destination received: (offset, level, repeat).
    fn run(rules: &RouteRules, levels: &[(u64, Level)]) -> Vec<(u64, Level, bool)> {
        let mut got = Vec::new();
        let mut state = Escalation::default();
        let mut level = Ok;
        let mut peak = Ok;
        let end = levels.last().map_or(0, |l| l.0);
        for t in 0..=end {
            let now = T0 + t * 1000;
            if let Some(&(_, next)) = levels.iter().find(|(at, _)| *at == t) {
                if next != level {
                    peak = peak.max(next);
                    let e = ev(next, peak, now);
                    if state.route(rules, &e) == Route::Send {
                        got.push((t, next, false));
                    }
                    level = next;
                }
            }
            if state.release(rules, level, T0, now) {
                got.push((t, level, true));
            }
        }
        got
    }

    #[test]
    fn three_destinations_each_get_their_share_in_order() {
        // Warning at 0s, critical at 2s, resolved at 10s.
        let incident = [(0, Warning), (2, Critical), (10, Ok)];
        let all = run(&RouteRules::default(), &incident);
        assert_eq!(
            all,
            [(0, Warning, false), (2, Critical, false), (10, Ok, false)]
        );
        let critical = run(&rules(Critical, 0), &incident);
        assert_eq!(critical, [(2, Critical, false), (10, Ok, false)]);
        // after=5s: told at 5s of the current level (as a repeat), then its RESOLVED.
        let second_tier = run(&rules(Warning, 5000), &incident);
        assert_eq!(second_tier, [(5, Critical, true), (10, Ok, false)]);
        // Both: the incident must be critical and 5s old.
        let late_critical = run(
            &rules(Critical, 5000),
            &[(0, Warning), (7, Critical), (9, Ok)],
        );
        assert_eq!(late_critical, [(7, Critical, false), (9, Ok, false)]);
    }

    #[test]
    fn a_short_incident_never_reaches_an_after_destination() {
        let short = [(0, Warning), (2, Critical), (4, Ok)];
        assert!(run(&rules(Warning, 5000), &short).is_empty());
        // Nor does one that stayed below min_level, start or end.
        assert!(run(&rules(Critical, 0), &[(0, Warning), (60, Ok)]).is_empty());
        assert!(run(
            &rules(Critical, 5000),
            &[(0, Critical), (3, Warning), (60, Ok)]
        )
        .is_empty());
    }

    #[test]
    fn de_escalation_below_min_level_is_not_sent_but_the_end_is() {
        let incident = [(0, Critical), (3, Warning), (6, Critical), (9, Ok)];
        let got = run(&rules(Critical, 0), &incident);
        assert_eq!(
            got,
            [(0, Critical, false), (6, Critical, false), (9, Ok, false)]
        );
        // Held while critical, de-escalated before `after`: released only once critical again.
        let incident = [(0, Critical), (3, Warning), (8, Critical), (12, Ok)];
        let got = run(&rules(Critical, 5000), &incident);
        assert_eq!(got, [(8, Critical, false), (12, Ok, false)]);
    }

    #[test]
    fn hold_says_until_when_and_repeats_go_to_told_destinations() {
        let r = rules(Warning, 15 * 60_000);
        let mut s = Escalation::default();
        assert_eq!(
            s.route(&r, &ev(Warning, Warning, T0)),
            Route::Hold {
                until_ms: T0 + 900_000
            }
        );
        assert!(!s.release(&r, Warning, T0, T0 + 899_999));
        assert!(s.release(&r, Warning, T0, T0 + 900_000));
        assert!(!s.release(&r, Warning, T0, T0 + 900_001), "once");
        assert!(s.told_of(T0));
        // A repeat (same level, later) is sent to a destination that was told.
        assert_eq!(
            s.route(&r, &ev(Warning, Warning, T0 + 1_800_000)),
            Route::Send
        );
        assert_eq!(s.route(&r, &ev(Ok, Warning, T0 + 1_900_000)), Route::Send);
        // A second RESOLVED of the incident is not sent, and nothing more is released.
        assert_eq!(s.route(&r, &ev(Ok, Warning, T0 + 1_900_000)), Route::Skip);
        assert!(!s.told_of(T0));
        assert!(!s.release(&r, Warning, T0, T0 + 2_000_000));
        // Without after= nothing is ever released.
        let mut s = Escalation::default();
        assert!(!s.release(&rules(Critical, 0), Critical, T0, T0 + 10_000_000));
        assert!(!s.release(&r, Ok, T0, T0 + 10_000_000));
    }

    #[test]
    fn resolved_goes_out_exactly_once_and_only_after_a_start() {
        let r = rules(Warning, 5000);
        let mut s = Escalation::default();
        assert!(matches!(
            s.route(&r, &ev(Critical, Critical, T0)),
            Route::Hold { .. }
        ));
        assert!(s.release(&r, Critical, T0, T0 + 5000));
        assert_eq!(s.route(&r, &ev(Ok, Critical, T0 + 6000)), Route::Send);
        assert_eq!(
            s.route(&r, &ev(Ok, Critical, T0 + 7000)),
            Route::Skip,
            "once"
        );
        // Also for a destination that gets everything.
        let mut s = Escalation::default();
        let all = RouteRules::default();
        assert_eq!(s.route(&all, &ev(Warning, Warning, T0)), Route::Send);
        assert_eq!(s.route(&all, &ev(Ok, Warning, T0 + 1000)), Route::Send);
        assert_eq!(s.route(&all, &ev(Ok, Warning, T0 + 1000)), Route::Skip);
        // A new incident replaces what the state knew of an older one.
        let mut s = Escalation::default();
        assert_eq!(
            s.route(&RouteRules::default(), &ev(Warning, Warning, T0)),
            Route::Send
        );
        let later = RoutedEvent {
            since_ms: T0 + 60_000,
            ..ev(Warning, Warning, T0 + 60_000)
        };
        assert_eq!(
            s.route(&r, &later),
            Route::Hold {
                until_ms: T0 + 65_000
            }
        );
        assert!(!s.told_of(T0) && !s.told_of(T0 + 60_000));
    }

    #[test]
    fn a_lost_state_falls_back_to_the_incident() {
        let r = rules(Critical, 5000);
        let fresh = |e: RoutedEvent, r: &RouteRules| Escalation::default().route(r, &e);
        // Long enough and critical at its peak: it was told.
        assert_eq!(fresh(ev(Ok, Critical, T0 + 60_000), &r), Route::Send);
        // Too short, or never critical: it was not.
        assert_eq!(fresh(ev(Ok, Critical, T0 + 4_000), &r), Route::Skip);
        assert_eq!(fresh(ev(Ok, Warning, T0 + 60_000), &r), Route::Skip);
        // Destinations that get everything always get the end.
        assert_eq!(
            fresh(ev(Ok, Warning, T0 + 1), &RouteRules::default()),
            Route::Send
        );
    }

    #[test]
    fn probes_route_down_as_critical() {
        let r = rules(Critical, 30_000);
        let mut s = Escalation::default();
        let down = RoutedEvent::probe(false, T0, T0);
        assert_eq!(
            s.route(&r, &down),
            Route::Hold {
                until_ms: T0 + 30_000
            }
        );
        assert!(s.release(&r, Critical, T0, T0 + 30_000));
        assert_eq!(
            s.route(&r, &RoutedEvent::probe(true, T0, T0 + 40_000)),
            Route::Send
        );
        // A target down for 10s: the second tier never hears of it.
        let mut s = Escalation::default();
        assert!(matches!(s.route(&r, &down), Route::Hold { .. }));
        assert_eq!(
            s.route(&r, &RoutedEvent::probe(true, T0, T0 + 10_000)),
            Route::Skip
        );
    }

    #[test]
    fn layout_is_fixed_and_zero_is_empty() {
        assert_eq!(core::mem::size_of::<Escalation>(), 16);
        assert!(!Escalation::default().told_of(0));
    }

    #[test]
    fn the_zone_word_round_trips() {
        let r = rules(Warning, 5000);
        let mut s = Escalation::default();
        assert_eq!(s.to_word(), 0);
        for step in 0..3 {
            match step {
                0 => assert!(matches!(
                    s.route(&r, &ev(Critical, Critical, T0)),
                    Route::Hold { .. }
                )),
                1 => assert!(s.release(&r, Critical, T0, T0 + 5000)),
                _ => assert_eq!(s.route(&r, &ev(Ok, Critical, T0 + 6000)), Route::Send),
            }
            assert_eq!(Escalation::from_word(s.to_word()), s, "step {step}");
        }
    }
}
