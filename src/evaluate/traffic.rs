//! Traffic drops (`traffic=`): per-window request counts, the usual traffic and the
//! level a drop calls for. Pure: no shared memory, no nginx.
//!
//! - **Usual traffic** is the median of the last [`USUAL_WINDOWS`] completed windows of
//!   `window` length, kept in a [`TrafficHistory`]. The median, not the mean: one burst or one
//!   quiet window does not move it.
//! - **Percentages wait for history.** Until 12 windows are known there is no usual traffic and
//!   a percentage threshold cannot fire; an absolute count applies from the first *whole*
//!   window the NAME has been counted for (a window only partly counted, just after start, would
//!   look like a drop).
//! - **`min_requests` plays no part.** For the 5xx share and latency it means "too few
//!   requests to judge"; for traffic, few requests are the finding itself, so it must never
//!   silence a drop. The price: a percentage of a tiny usual traffic is noisy (2 requests
//!   instead of the usual 4 is "50%"); a quiet NAME is better watched with an absolute
//!   threshold (`traffic=1`: "at least one request per window"), alone or mixed
//!   (`traffic=50%:1`).
//! - **No step down while traffic returns.** Once critical, a drop stays critical until the
//!   window is at or above WARN again (`evaluate_with`): the sliding window refills over its
//!   length when traffic comes back and passes the warning band on the way, which is no news.
//! - **An outage does not become the usual.** A window during which the traffic alert fired is
//!   not recorded, so a long outage cannot drag the median down until the alert resolves itself
//!   while traffic is still gone. The price: a lasting, intended change of traffic keeps the alert
//!   firing until traffic returns or `traffic=` is changed (or the NAME is muted).
//!
//! The thresholds and the event are the vocabulary's (`vocab::traffic`); the zone keeps a
//! [`TrafficHistory`] per NAME as plain words ([`TrafficHistory::to_words`]), and
//! `evaluate_with` calls [`traffic_level`] and [`TrafficHistory::record`] at every evaluation.

use crate::vocab::event::Level;
pub use crate::vocab::traffic::{threshold_requests, TrafficEvent, USUAL_WINDOWS};
use crate::vocab::traffic::{TrafficParams, TrafficThreshold};
use crate::zone::TRAFFIC_HISTORY_WORDS;

/// Request counts of a NAME's last completed windows, for the usual traffic.
///
/// Fixed-size plain fields, all zero when empty, so that it can live in a zone slot. Only the
/// evaluator (the process holding the evaluation tick) writes it; the zone keeps each field in
/// an atomic and the evaluator loads it into this value, calls [`TrafficHistory::record`] and
/// stores it back, as it does with the other evaluator state.
///
/// Update rule: windows are aligned to multiples of `window` since the epoch (so every process
/// and generation cuts them alike). At each evaluation the cumulative request count is given;
/// when the evaluation falls into a later window than the last one, the requests since that
/// window's start are the completed window's count. Each count therefore covers one window's
/// length, shifted by at most one evaluation interval. A window is not recorded when it was
/// only partly counted (the first one, or after the counters were reset), when the window
/// length changed (the history starts over), or when the traffic alert fired during it. When
/// evaluations skipped whole windows (a stall), the requests are shared evenly among them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficHistory {
    /// Window length the counts are of, ms; 0 for an empty history.
    window_ms: u64,
    /// Start of the window being counted, ms since the epoch (a multiple of `window_ms`).
    window_start_ms: u64,
    /// Cumulative request count when counting of the current window began.
    start_total: u64,
    /// First evaluation that counted this NAME, ms since the epoch; 0 before it.
    counting_since_ms: u64,
    /// Completed windows, oldest overwritten first.
    counts: [u64; USUAL_WINDOWS],
    /// Index in `counts` the next completed window goes to.
    next: u32,
    /// Completed windows recorded, at most [`USUAL_WINDOWS`].
    len: u32,
    /// 1 when the current window will not be recorded (partly counted, or the alert fired).
    skip_current: u32,
    /// Keeps the size a multiple of 8 without implicit padding.
    _reserved: u32,
}

impl TrafficHistory {
    /// Takes the evaluation at `now_ms`: `total` is the NAME's cumulative request count,
    /// `window_ms` its `window=`, `firing` whether its traffic alert is not ok after this
    /// evaluation.
    pub fn record(&mut self, now_ms: u64, total: u64, window_ms: u64, firing: bool) {
        if window_ms == 0 {
            return;
        }
        let aligned = now_ms - now_ms % window_ms;
        let since = if self.counting_since_ms == 0 || total < self.start_total {
            now_ms // first evaluation, or the counters were reset
        } else {
            self.counting_since_ms
        };
        if self.window_ms != window_ms || since == now_ms || aligned < self.window_start_ms {
            // A new history: the first evaluation, a new window length, reset counters, or a
            // clock that went back. The window in progress was not counted from its start.
            *self = TrafficHistory {
                window_ms,
                window_start_ms: aligned,
                start_total: total,
                counting_since_ms: since.max(1),
                skip_current: 1,
                ..TrafficHistory::default()
            };
            return;
        }
        if aligned == self.window_start_ms {
            if firing {
                self.skip_current = 1;
            }
            return;
        }
        let skipped_windows = (aligned - self.window_start_ms) / window_ms;
        if self.skip_current == 0 {
            let delta = total - self.start_total;
            let shares = skipped_windows.min(USUAL_WINDOWS as u64);
            // Evenly over every window passed; the remainder goes to the oldest ones.
            let (each, rest) = (delta / skipped_windows, delta % skipped_windows);
            let first = skipped_windows - shares;
            for k in first..skipped_windows {
                self.push(each + u64::from(k < rest));
            }
        }
        self.window_start_ms = aligned;
        self.start_total = total;
        self.skip_current = u32::from(firing);
    }

    fn push(&mut self, count: u64) {
        let i = self.next as usize % USUAL_WINDOWS;
        self.counts[i] = count;
        self.next = ((i + 1) % USUAL_WINDOWS) as u32;
        self.len = (self.len + 1).min(USUAL_WINDOWS as u32);
    }

    /// The usual traffic: the median of the last [`USUAL_WINDOWS`] completed windows; `None`
    /// until that many are known.
    pub fn usual(&self) -> Option<f64> {
        if (self.len as usize) < USUAL_WINDOWS {
            return None;
        }
        let mut sorted = self.counts;
        sorted.sort_unstable();
        let mid = USUAL_WINDOWS / 2;
        Some((sorted[mid - 1] as f64 + sorted[mid] as f64) / 2.0)
    }

    /// The history as the zone keeps it: one word per `u64` field, the `u32` fields in pairs.
    pub fn to_words(&self) -> [u64; TRAFFIC_HISTORY_WORDS] {
        let mut w = [0u64; TRAFFIC_HISTORY_WORDS];
        w[0] = self.window_ms;
        w[1] = self.window_start_ms;
        w[2] = self.start_total;
        w[3] = self.counting_since_ms;
        w[4..4 + USUAL_WINDOWS].copy_from_slice(&self.counts);
        w[4 + USUAL_WINDOWS] = u64::from(self.next) | u64::from(self.len) << 32;
        w[5 + USUAL_WINDOWS] = u64::from(self.skip_current);
        w
    }

    /// The history from the zone's words (see [`TrafficHistory::to_words`]). Any words will
    /// do: out-of-range indices and lengths are cut to the ring, so a damaged zone gives a
    /// wrong median at worst.
    pub fn from_words(w: &[u64; TRAFFIC_HISTORY_WORDS]) -> TrafficHistory {
        let mut counts = [0u64; USUAL_WINDOWS];
        counts.copy_from_slice(&w[4..4 + USUAL_WINDOWS]);
        let pair = w[4 + USUAL_WINDOWS];
        TrafficHistory {
            window_ms: w[0],
            window_start_ms: w[1],
            start_total: w[2],
            counting_since_ms: w[3],
            counts,
            next: (pair as u32) % USUAL_WINDOWS as u32,
            len: ((pair >> 32) as u32).min(USUAL_WINDOWS as u32),
            skip_current: u32::from(w[5 + USUAL_WINDOWS] != 0),
            _reserved: 0,
        }
    }

    /// Completed windows known, at most [`USUAL_WINDOWS`] (the status page can say "learning,
    /// 5 of 12 windows").
    pub fn known_windows(&self) -> usize {
        self.len as usize
    }

    /// The completed windows known, oldest first.
    pub fn windows(&self) -> Vec<u64> {
        let len = self.len as usize;
        let next = self.next as usize;
        (0..len)
            .map(|k| self.counts[(next + USUAL_WINDOWS - len + k) % USUAL_WINDOWS])
            .collect()
    }

    /// True once the NAME has been counted for a whole `window_ms` at `now_ms`, so that its
    /// sliding window holds a full window of requests.
    pub fn counted_whole_window(&self, now_ms: u64, window_ms: u64) -> bool {
        self.counting_since_ms != 0 && now_ms.saturating_sub(self.counting_since_ms) >= window_ms
    }
}

/// The level a window's `requests` call for: CRITICAL below CRIT, WARNING below WARN, else OK
/// (also before the NAME was counted for a `whole_window`). `usual` is
/// [`TrafficHistory::usual`].
pub fn traffic_level(
    p: &TrafficParams,
    requests: u64,
    usual: Option<f64>,
    whole_window: bool,
) -> Level {
    if !whole_window {
        return Level::Ok;
    }
    let below = |t: TrafficThreshold| {
        threshold_requests(t, usual).is_some_and(|limit| (requests as f64) < limit)
    };
    if p.crit.is_some_and(below) {
        Level::Critical
    } else if below(p.warn) {
        Level::Warning
    } else {
        Level::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TrafficThreshold::{Percent, Requests};

    const W: u64 = 300_000; // window=5m
    const T0: u64 = 1_700_000_100_000; // a multiple of W

    fn params(warn: TrafficThreshold, crit: Option<TrafficThreshold>) -> TrafficParams {
        TrafficParams { warn, crit }
    }

    /// Evaluations every 10s for `windows` windows starting at `from`, `per_window` requests
    /// spread evenly; returns the time and total after the last one.
    fn feed(
        h: &mut TrafficHistory,
        from: u64,
        total: u64,
        windows: u64,
        per_window: u64,
    ) -> (u64, u64) {
        let steps = W / 10_000;
        let (mut now, mut total) = (from, total);
        for _ in 0..windows * steps {
            h.record(now, total, W, false);
            now += 10_000;
            total += per_window / steps;
        }
        (now, total)
    }

    #[test]
    fn the_first_window_is_partial_and_not_recorded() {
        let mut h = TrafficHistory::default();
        h.record(T0 + 120_000, 5_000, W, false);
        assert!(!h.counted_whole_window(T0 + 120_000, W));
        assert!(!h.counted_whole_window(T0 + 419_999, W));
        assert!(h.counted_whole_window(T0 + 420_000, W));
        h.record(T0 + W + 1_000, 5_100, W, false); // the partial window ends
        assert_eq!(h.known_windows(), 0);
        h.record(T0 + 2 * W + 1_000, 5_500, W, false);
        assert_eq!(h.windows(), vec![400]);
    }

    #[test]
    fn usual_is_the_median_of_twelve_windows_and_not_known_before() {
        let mut h = TrafficHistory::default();
        h.record(T0, 0, W, false); // partial first window
        let mut total = 0;
        for (k, count) in [10, 400, 410, 420, 5000, 430, 440, 0, 450, 460, 470]
            .iter()
            .enumerate()
        {
            total += count;
            h.record(T0 + (k as u64 + 1) * W + 500, total, W, false);
        }
        // 10 completed windows so far (the first record at T0 + W closes the partial one).
        assert_eq!(h.known_windows(), 10);
        assert_eq!(h.usual(), None);
        for (k, count) in [480, 490].iter().enumerate() {
            total += count;
            h.record(T0 + (k as u64 + 12) * W + 500, total, W, false);
        }
        assert_eq!(h.known_windows(), 12);
        // The 10 went into the partial first window. Sorted:
        // 0 400 410 420 430 440 | 450 460 470 480 490 5000 -> (440 + 450) / 2: outliers ignored.
        assert_eq!(h.usual(), Some(445.0));
        // A thirteenth window overwrites the oldest (400).
        total += 1000;
        h.record(T0 + 14 * W + 500, total, W, false);
        assert_eq!(h.known_windows(), 12);
        assert_eq!(h.windows().first(), Some(&410));
        assert_eq!(h.windows().last(), Some(&1000));
    }

    #[test]
    fn steady_traffic_with_evaluations_every_interval() {
        let mut h = TrafficHistory::default();
        let (now, _) = feed(&mut h, T0, 0, 14, 600);
        assert!(h.counted_whole_window(now, W));
        assert_eq!(h.known_windows(), 12);
        assert!(h.windows().iter().all(|c| *c == 600), "{:?}", h.windows());
        assert_eq!(h.usual(), Some(600.0));
    }

    #[test]
    fn windows_during_a_traffic_alert_are_not_recorded() {
        let mut h = TrafficHistory::default();
        let (now, total) = feed(&mut h, T0, 0, 14, 600);
        assert_eq!(h.usual(), Some(600.0));
        // An outage: the alert fires in every evaluation for 10 windows, no requests.
        let mut now = now;
        for _ in 0..10 * (W / 10_000) {
            h.record(now, total, W, true);
            now += 10_000;
        }
        assert_eq!(
            h.usual(),
            Some(600.0),
            "the outage did not become the usual"
        );
        // One firing evaluation taints its whole window.
        let start = now - now % W + W;
        h.record(start, total, W, false);
        h.record(start + 20_000, total + 10, W, true);
        h.record(start + 40_000, total + 600, W, false);
        h.record(start + W, total + 600, W, false);
        assert!(h.windows().iter().all(|c| *c == 600));
    }

    #[test]
    fn skipped_windows_share_their_requests_and_resets_start_over() {
        let mut h = TrafficHistory::default();
        h.record(T0, 0, W, false);
        h.record(T0 + W, 100, W, false); // ends the partial window
        h.record(T0 + 4 * W + 10, 100 + 902, W, false); // 3 windows at once
        assert_eq!(h.windows(), vec![301, 301, 300]);
        // A stall longer than the history fills it with the average.
        h.record(T0 + 40 * W, 100 + 902 + 36 * 50, W, false);
        assert_eq!(h.windows(), vec![50; 12]);
        // Counters went backwards (a new zone): a new history, not counted from its start.
        h.record(T0 + 41 * W + 10, 7, W, false);
        assert_eq!(h.known_windows(), 0);
        assert!(!h.counted_whole_window(T0 + 41 * W + 10, W));
        h.record(T0 + 42 * W, 20, W, false);
        assert_eq!(
            h.known_windows(),
            0,
            "the first window after a reset is partial"
        );
        h.record(T0 + 43 * W, 50, W, false);
        assert_eq!(h.windows(), vec![30]);
        // A new window length starts over, keeping nothing of the old counts.
        h.record(T0 + 43 * W + 60_000, 60, 60_000, false);
        assert_eq!(h.known_windows(), 0);
        // So does a clock that went back.
        let mut h = TrafficHistory::default();
        feed(&mut h, T0, 0, 3, 600);
        h.record(T0 - 10 * W, 5_000, W, false);
        assert_eq!(h.known_windows(), 0);
        // A zero window length is ignored.
        let before = h;
        h.record(T0, 1, 0, false);
        assert_eq!(h, before);
    }

    #[test]
    fn absolute_floor_works_from_the_first_whole_window() {
        let p = params(Requests(10), Some(Requests(1)));
        assert_eq!(traffic_level(&p, 0, None, false), Level::Ok, "partial");
        assert_eq!(traffic_level(&p, 0, None, true), Level::Critical);
        assert_eq!(traffic_level(&p, 5, None, true), Level::Warning);
        assert_eq!(traffic_level(&p, 10, None, true), Level::Ok, "not below");
    }

    #[test]
    fn percentages_wait_for_twelve_windows() {
        let p = params(Percent(50.0), Some(Percent(10.0)));
        assert_eq!(
            traffic_level(&p, 0, None, true),
            Level::Ok,
            "no history yet"
        );
        assert_eq!(traffic_level(&p, 3, Some(412.0), true), Level::Critical);
        assert_eq!(traffic_level(&p, 41, Some(412.0), true), Level::Critical);
        assert_eq!(traffic_level(&p, 42, Some(412.0), true), Level::Warning);
        assert_eq!(traffic_level(&p, 205, Some(412.0), true), Level::Warning);
        assert_eq!(traffic_level(&p, 206, Some(412.0), true), Level::Ok);
        assert_eq!(traffic_level(&p, 10_000, Some(412.0), true), Level::Ok);
        // A NAME that usually sees nothing has no drop to report.
        assert_eq!(traffic_level(&p, 0, Some(0.0), true), Level::Ok);
        // However quiet a NAME usually is, a drop is reported: min_requests plays no part.
        assert_eq!(traffic_level(&p, 0, Some(4.0), true), Level::Critical);
        assert_eq!(traffic_level(&p, 1, Some(4.0), true), Level::Warning);
    }

    #[test]
    fn mixed_thresholds() {
        // Warn at half the usual traffic, critical below 5 requests from the start.
        let p = params(Percent(50.0), Some(Requests(5)));
        assert_eq!(traffic_level(&p, 4, None, true), Level::Critical);
        assert_eq!(traffic_level(&p, 100, None, true), Level::Ok);
        assert_eq!(traffic_level(&p, 100, Some(400.0), true), Level::Warning);
        // Only WARN: never critical.
        let p = params(Requests(10), None);
        assert_eq!(traffic_level(&p, 0, None, true), Level::Warning);
    }

    #[test]
    fn layout_is_fixed_and_zero_is_empty() {
        assert_eq!(
            core::mem::size_of::<TrafficHistory>(),
            4 * 8 + 12 * 8 + 4 * 4
        );
        let h = TrafficHistory::default();
        assert_eq!((h.usual(), h.known_windows()), (None, 0));
        assert!(!h.counted_whole_window(T0, W));
        assert_eq!(h.to_words(), [0; TRAFFIC_HISTORY_WORDS]);
    }

    #[test]
    fn words_round_trip_and_odd_words_stay_in_the_ring() {
        let mut h = TrafficHistory::default();
        feed(&mut h, T0, 0, 15, 600);
        h.record(T0 + 15 * W + 10_000, 9_000, W, true);
        assert_eq!(TrafficHistory::from_words(&h.to_words()), h);
        let mut odd = [u64::MAX; TRAFFIC_HISTORY_WORDS];
        odd[4 + USUAL_WINDOWS] = 99 | 99 << 32;
        let h = TrafficHistory::from_words(&odd);
        assert_eq!(h.known_windows(), USUAL_WINDOWS);
        assert_eq!(h.windows().len(), USUAL_WINDOWS);
        let mut h = h;
        h.record(T0, 1, W, false);
    }
}
