//! What a mute (maintenance window or runtime mute) does to one alert kind of one
//! NAME: the NAME is still evaluated and its incidents recorded, but no event is sent while it
//! is muted; when the mute ends, what was held back and still matters is announced.
//!
//! At the end of a mute:
//! - an incident still firing whose news was held back (it started, changed level or repeated
//!   during the mute) is announced at its current level, as a repeat ("still firing");
//! - an incident that was announced before the mute and resolved during it gets its RESOLVED
//!   then, so that no destination is left with an incident that never ends;
//! - an incident that began and ended inside the mute is never announced;
//! - nothing happened during the mute: nothing is sent.
//!
//! A muted event is not routed at all (`notify::route` never sees it), and `after=` releases
//! are not asked for while muted: once the mute ends, the release check finds the incident old
//! enough and tells the second tier then.
//!
//! State: one [`MuteGate`] per alert kind and NAME, plain fixed-size fields for the zone (beside
//! the alert state, so that a reload does not forget what was held back). Depends on [`Level`]
//! only.

use crate::vocab::event::Level;

/// What was held back from one alert kind of one NAME during a mute.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuteGate {
    /// Start of the incident this is about, ms since the epoch; 0 for none.
    since_ms: u64,
    /// Start of an announced incident whose RESOLVED was held back, ms; 0 for none. Kept when
    /// a newer incident begins during the same mute.
    unresolved_ms: u64,
    /// 1 when the destinations heard of the incident `since_ms` (an event of it went out).
    announced: u32,
    /// 1 when an event of the incident `since_ms` was held back.
    held_back: u32,
}

/// What to announce now that a mute has ended; both may be due at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AfterMute {
    /// The RESOLVED of the incident that began then (ms since the epoch): it was announced
    /// before the mute and resolved during it.
    pub resolved_since_ms: Option<u64>,
    /// The current incident fires at this level and news of it was held back: announce it as
    /// a repeat ("still firing").
    pub still_firing: Option<Level>,
}

impl MuteGate {
    /// The gate as the zone keeps it (`zone::mute_table::MuteGates`).
    pub fn to_words(self) -> [u64; 3] {
        [
            self.since_ms,
            self.unresolved_ms,
            u64::from(self.announced) | u64::from(self.held_back) << 32,
        ]
    }

    /// A gate read back from the zone; flags other than 0 and 1 read as 1.
    pub fn from_words(w: [u64; 3]) -> MuteGate {
        MuteGate {
            since_ms: w[0],
            unresolved_ms: w[1],
            announced: u32::from(w[2] & 0xffff_ffff != 0),
            held_back: u32::from(w[2] >> 32 != 0),
        }
    }

    fn follow(&mut self, since_ms: u64) {
        if self.since_ms != since_ms {
            *self = MuteGate {
                since_ms,
                unresolved_ms: self.unresolved_ms,
                ..MuteGate::default()
            };
        }
    }

    /// An event of the incident that began at `since_ms`, at `level` (`Ok` for its RESOLVED),
    /// while the NAME is `muted` or not: true to send it, false to hold it back. When not
    /// muted, ask [`Self::after_mute`] first in the same evaluation.
    pub fn pass(&mut self, muted: bool, level: Level, since_ms: u64) -> bool {
        self.follow(since_ms);
        if muted {
            self.held_back = 1;
            if level == Level::Ok && self.announced != 0 {
                self.unresolved_ms = since_ms;
                self.announced = 0;
            }
            return false;
        }
        self.held_back = 0;
        self.announced = u32::from(level != Level::Ok);
        true
    }

    /// True when news of the incident that began at `since_ms` was held back and none of it
    /// was ever announced: its RESOLVED, right after a mute, is no news either.
    pub fn never_announced(&self, since_ms: u64) -> bool {
        self.since_ms == since_ms && self.held_back != 0 && self.announced == 0
    }

    /// Asked every evaluation while the NAME is not muted, before its events, with the kind's
    /// current level and incident start (`since_ms` 0 when ok): what to announce now that a
    /// mute has ended. Each thing is returned once.
    pub fn after_mute(&mut self, level: Level, since_ms: u64) -> AfterMute {
        let resolved_since_ms = (self.unresolved_ms != 0).then_some(self.unresolved_ms);
        self.unresolved_ms = 0;
        let firing = level != Level::Ok && since_ms != 0 && since_ms == self.since_ms;
        let still_firing = (firing && self.held_back != 0).then_some(level);
        if still_firing.is_some() {
            self.announced = 1;
        }
        self.held_back = 0;
        AfterMute {
            resolved_since_ms,
            still_firing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::{Critical, Ok, Warning};

    const T0: u64 = 1_700_000_000_000;
    const NOTHING: AfterMute = AfterMute {
        resolved_since_ms: None,
        still_firing: None,
    };

    #[test]
    fn nothing_during_a_mute_nothing_after() {
        let mut g = MuteGate::default();
        assert_eq!(g.after_mute(Ok, 0), NOTHING);
        assert!(g.pass(false, Warning, T0));
        assert_eq!(g.after_mute(Warning, T0), NOTHING);
        assert!(g.pass(false, Ok, T0));
        assert_eq!(g.after_mute(Ok, 0), NOTHING);
    }

    #[test]
    fn an_incident_still_firing_when_the_mute_ends_is_announced_then() {
        let mut g = MuteGate::default();
        assert!(!g.pass(true, Warning, T0));
        assert!(!g.pass(true, Critical, T0));
        let after = g.after_mute(Critical, T0);
        assert_eq!(after.still_firing, Some(Critical));
        assert_eq!(after.resolved_since_ms, None);
        assert_eq!(g.after_mute(Critical, T0), NOTHING, "once");
        // Its end is then sent as usual.
        assert!(g.pass(false, Ok, T0));
        // Announced before, repeated during the mute: "still firing" after it.
        let mut g = MuteGate::default();
        assert!(g.pass(false, Critical, T0));
        assert!(!g.pass(true, Critical, T0));
        assert_eq!(g.after_mute(Critical, T0).still_firing, Some(Critical));
    }

    #[test]
    fn an_incident_inside_the_mute_is_never_announced() {
        let mut g = MuteGate::default();
        assert!(!g.pass(true, Critical, T0));
        assert!(!g.pass(true, Ok, T0));
        assert_eq!(g.after_mute(Ok, 0), NOTHING);
    }

    #[test]
    fn an_announced_incident_that_ends_during_the_mute_gets_its_resolved() {
        let mut g = MuteGate::default();
        assert!(g.pass(false, Warning, T0));
        assert!(!g.pass(true, Ok, T0));
        let after = g.after_mute(Ok, 0);
        assert_eq!(after.resolved_since_ms, Some(T0));
        assert_eq!(after.still_firing, None);
        assert_eq!(g.after_mute(Ok, 0), NOTHING, "once");
        // ... also when a newer incident began during the mute and still fires: both.
        let mut g = MuteGate::default();
        assert!(g.pass(false, Critical, T0));
        assert!(!g.pass(true, Ok, T0));
        assert!(!g.pass(true, Warning, T0 + 60_000));
        let after = g.after_mute(Warning, T0 + 60_000);
        assert_eq!(after.resolved_since_ms, Some(T0));
        assert_eq!(after.still_firing, Some(Warning));
        assert!(
            g.pass(false, Ok, T0 + 60_000),
            "the newer one's end as usual"
        );
        // ... and when the newer one began and ended inside the mute: only the old end.
        let mut g = MuteGate::default();
        assert!(g.pass(false, Critical, T0));
        assert!(!g.pass(true, Ok, T0));
        assert!(!g.pass(true, Warning, T0 + 60_000));
        assert!(!g.pass(true, Ok, T0 + 60_000));
        let after = g.after_mute(Ok, 0);
        assert_eq!(after.resolved_since_ms, Some(T0));
        assert_eq!(after.still_firing, None);
    }

    #[test]
    fn an_incident_held_back_whole_is_known_as_never_announced() {
        let mut g = MuteGate::default();
        assert!(!g.pass(true, Critical, T0));
        assert!(g.never_announced(T0));
        assert!(!g.never_announced(T0 + 1));
        let mut g = MuteGate::default();
        assert!(g.pass(false, Critical, T0));
        assert!(!g.pass(true, Critical, T0));
        assert!(!g.never_announced(T0), "announced before the mute");
    }

    #[test]
    fn words_round_trip() {
        let mut g = MuteGate::default();
        g.pass(false, Critical, T0);
        g.pass(true, Ok, T0);
        g.pass(true, Warning, T0 + 1);
        assert_eq!(MuteGate::from_words(g.to_words()), g);
        assert_eq!(MuteGate::from_words([0; 3]), MuteGate::default());
    }

    #[test]
    fn layout_is_fixed_and_zero_is_empty() {
        assert_eq!(core::mem::size_of::<MuteGate>(), 24);
        assert_eq!(MuteGate::default().after_mute(Critical, T0), NOTHING);
    }
}
