//! An evaluation round spread over turns of the event loop: worker 0 evaluates the NAMEs a
//! chunk at a time until a time budget is spent, then lets nginx serve what is waiting and
//! continues on the next turn. Every NAME of a round is evaluated at the round's `now`, so the
//! windows advance as if the round had taken no time; the round's events go out together when
//! its last NAME is done, a few milliseconds after it began.

use core::ops::Range;
use std::time::{Duration, Instant};

use crate::vocab::event::AlertEvent;

/// NAMEs evaluated between two looks at the clock. A NAME (its windows and its mute gates)
/// takes about 150 µs in a debug build (tests/evaluation_scale.rs), a small fraction of that
/// in a release build, so a chunk stays within the budget either way.
const CHUNK: usize = 16;

/// How long one turn of the loop may spend on a round: a slice ends at the first look at the
/// clock past it, so it holds the loop for the budget plus at most one chunk. Half a
/// millisecond: a request that arrives during a slice waits about that long at most, so other
/// requests' p99 stays near that of a configuration with few NAMEs (at 10,000 NAMEs, 1.6 times
/// it; with 3 ms slices 3.8 times, `ci/bench --only scale`).
#[cfg_attr(test, allow(dead_code))] // used by the evaluator, which unit tests do not build
pub(super) const SLICE_BUDGET: Duration = Duration::from_micros(500);

/// A round in progress.
pub(super) struct Round {
    /// When the round began, ms since the epoch: the time every NAME is evaluated at.
    #[cfg_attr(test, allow(dead_code))]
    pub(super) now_ms: u64,
    /// The first NAME (index into the configuration's NAMEs) not evaluated yet.
    next: usize,
    /// What the NAMEs evaluated so far announce, in configuration order.
    events: Vec<AlertEvent>,
}

impl Round {
    /// A round at `now_ms`, nothing evaluated yet.
    pub(super) fn new(now_ms: u64) -> Self {
        Round {
            now_ms,
            next: 0,
            events: Vec::new(),
        }
    }

    /// Evaluates the next chunks of `total` NAMEs with `evaluate` (given index ranges, in
    /// order) until `budget` is spent, at least one chunk. Returns the round's events once
    /// every NAME is done, `None` while some remain.
    pub(super) fn advance(
        &mut self,
        total: usize,
        budget: Duration,
        mut evaluate: impl FnMut(Range<usize>) -> Vec<AlertEvent>,
    ) -> Option<Vec<AlertEvent>> {
        let start = Instant::now();
        while self.next < total {
            let end = (self.next + CHUNK).min(total);
            self.events.extend(evaluate(self.next..end));
            self.next = end;
            if start.elapsed() >= budget {
                break;
            }
        }
        (self.next >= total).then(|| core::mem::take(&mut self.events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::event::{samples, EventDetail};

    fn event(i: usize) -> AlertEvent {
        samples::event(
            &format!("n{i}"),
            EventDetail::Probe(samples::probe(true, None, None)),
        )
    }

    #[test]
    fn a_spent_budget_still_evaluates_one_chunk_per_turn() {
        let mut round = Round::new(1000);
        let mut seen = Vec::new();
        let mut turns = 0;
        let events = loop {
            turns += 1;
            let done = round.advance(200, Duration::ZERO, |r| {
                seen.push(r.clone());
                r.filter(|i| i % 50 == 0).map(event).collect()
            });
            if let Some(events) = done {
                break events;
            }
        };
        assert_eq!(turns, 13, "200 NAMEs in chunks of {CHUNK}");
        assert_eq!(seen.first(), Some(&(0..16)));
        assert_eq!(seen.last(), Some(&(192..200)));
        let names: Vec<_> = events.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["n0", "n50", "n100", "n150"], "all events, in order");
    }

    #[test]
    fn a_large_budget_finishes_in_one_turn() {
        let mut round = Round::new(1000);
        let events = round.advance(10_000, Duration::from_secs(60), |r| {
            r.filter(|i| *i == 9_999).map(event).collect()
        });
        assert_eq!(events.map(|e| e.len()), Some(1));
    }

    #[test]
    fn no_names_is_a_finished_round() {
        let mut round = Round::new(1000);
        let mut called = false;
        let events = round.advance(0, Duration::ZERO, |_| {
            called = true;
            Vec::new()
        });
        assert_eq!(events.map(|e| e.len()), Some(0));
        assert!(!called);
    }
}
