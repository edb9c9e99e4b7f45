//! When to ping the heartbeat monitor (`status_alert_heartbeat`): a dead man's switch.
//!
//! A beat says "alerting works", so it follows evaluation: one beat at most per `interval=`,
//! and only once an evaluation round completed since the previous beat. When nginx, the host
//! or the module stops, or worker 0 or its evaluation stalls, the beats stop and the monitor
//! alerts. Plain Rust over a millisecond clock: no nginx types.
//!
//! How worker 0 (`driver/evaluator.rs`) drives it:
//! - once, when it starts: `HeartbeatSchedule::new(interval_ms, now_ms)` with
//!   `mcf.heartbeat()`'s `(index, interval_ms)`, keeping `index` (the heartbeat's place in
//!   `mcf.destinations`, which the helper delivers to with a GET:
//!   `DeliveryConfig::for_destination`);
//! - after every completed evaluation round (`evaluate::evaluate_with` ran, under the lease):
//!   `schedule.on_evaluation()`;
//! - on every tick of its timer (every 250 ms), after the round of that tick if any, while it
//!   holds the lease and its helper makes progress: `if schedule.due(now_ms)`, an empty body
//!   for `index` goes into the outbox, counted `dropped` like any other payload if it must
//!   make room.
//!
//! The first beat goes out with the first completed round. `now_ms` is the clock the evaluator
//! paces rounds with; a clock set back is noticed and does not hold the beats back.

/// The heartbeat's schedule: at most one beat per interval, each after a completed round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatSchedule {
    /// `interval=` of `status_alert_heartbeat`, ms.
    interval_ms: u64,
    /// No beat before this time, ms.
    next_ms: u64,
    /// Evaluation rounds completed since the last beat (since the start, before the first).
    rounds_since_beat: u64,
}

impl HeartbeatSchedule {
    /// A schedule beating every `interval_ms`, from `now_ms` on (once a round completed).
    pub fn new(interval_ms: u64, now_ms: u64) -> HeartbeatSchedule {
        HeartbeatSchedule {
            interval_ms,
            next_ms: now_ms,
            rounds_since_beat: 0,
        }
    }

    /// Notes a completed evaluation round.
    pub fn on_evaluation(&mut self) {
        self.rounds_since_beat = self.rounds_since_beat.saturating_add(1);
    }

    /// True when a beat is to be sent now: a round completed since the last beat and the
    /// interval has passed. Counts it as sent: the next one comes an interval later, at the
    /// earliest, and after another round.
    pub fn due(&mut self, now_ms: u64) -> bool {
        // The clock went back (the wall clock was set): start the interval again from now
        // rather than skip beats until the clock catches up.
        if self.next_ms > now_ms.saturating_add(self.interval_ms) {
            self.next_ms = now_ms;
        }
        if self.rounds_since_beat == 0 || now_ms < self.next_ms {
            return false;
        }
        self.rounds_since_beat = 0;
        self.next_ms = now_ms.saturating_add(self.interval_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK_MS: u64 = 250;

    /// Beat times over `ticks` ticks from `start`, with a round on every tick that `rounds`
    /// says (rounds come before the beat check, as in the evaluator).
    fn run(
        schedule: &mut HeartbeatSchedule,
        start: u64,
        ticks: u64,
        rounds: impl Fn(u64) -> bool,
    ) -> Vec<u64> {
        let mut beats = Vec::new();
        for t in 0..ticks {
            let now = start + t * TICK_MS;
            if rounds(now) {
                schedule.on_evaluation();
            }
            if schedule.due(now) {
                beats.push(now);
            }
        }
        beats
    }

    #[test]
    fn the_first_beat_follows_the_first_round() {
        let mut s = HeartbeatSchedule::new(60_000, 1_000);
        assert!(!s.due(1_000), "no round yet");
        assert!(!s.due(5_000), "no round yet");
        s.on_evaluation();
        assert!(s.due(5_250));
        assert!(!s.due(5_250), "once");
    }

    #[test]
    fn at_most_one_beat_per_interval() {
        // A round on every tick: beats exactly an interval apart.
        let mut s = HeartbeatSchedule::new(1_000, 0);
        let beats = run(&mut s, 0, 40, |_| true);
        assert_eq!(beats, (0..10).map(|i| i * 1_000).collect::<Vec<_>>());
        let mut s = HeartbeatSchedule::new(60_000, 0);
        let beats = run(&mut s, 0, 4 * 300, |_| true);
        assert_eq!(beats, vec![0, 60_000, 120_000, 180_000, 240_000]);
    }

    #[test]
    fn no_round_no_beat() {
        // Rounds every 10 s, beats every 1 s asked for: one beat per round, never more.
        let mut s = HeartbeatSchedule::new(1_000, 0);
        let beats = run(&mut s, 0, 4 * 60, |now| now % 10_000 == 0);
        assert_eq!(
            beats,
            vec![0, 10_000, 20_000, 30_000, 40_000, 50_000],
            "one per round"
        );
        // Evaluation stalls from 5 s to 20 s: the round of 4.75 s still earns the beat of 5 s,
        // then the beats stop, and come back with the rounds.
        let mut s = HeartbeatSchedule::new(1_000, 0);
        let beats = run(&mut s, 0, 4 * 25, |now| !(5_000..20_000).contains(&now));
        assert_eq!(
            beats,
            vec![0, 1_000, 2_000, 3_000, 4_000, 5_000, 20_000, 21_000, 22_000, 23_000, 24_000]
        );
    }

    #[test]
    fn rounds_slower_than_the_interval_wait_for_each_other() {
        // A round that lands just after the interval passed beats at that tick.
        let mut s = HeartbeatSchedule::new(1_000, 0);
        s.on_evaluation();
        assert!(s.due(0));
        assert!(!s.due(1_000), "no round since");
        s.on_evaluation();
        assert!(s.due(1_250));
        s.on_evaluation();
        assert!(!s.due(2_000), "an interval after the last beat is 2250");
        assert!(s.due(2_250));
    }

    #[test]
    fn a_clock_set_back_does_not_hold_beats_back() {
        let mut s = HeartbeatSchedule::new(60_000, 10_000_000);
        s.on_evaluation();
        assert!(s.due(10_000_000));
        // The clock jumps back an hour: the next beat is an interval away, not an hour.
        let back = 10_000_000 - 3_600_000;
        s.on_evaluation();
        assert!(s.due(back), "the interval starts again from the new time");
        s.on_evaluation();
        assert!(!s.due(back + 59_750));
        assert!(s.due(back + 60_000));
        // Forward jumps simply make a beat due.
        s.on_evaluation();
        assert!(s.due(back + 10_000_000));
    }
}
