//! Which upstream peers a window's failed tries came from: the evaluator samples each peer
//! group's cumulative failed tries (`5xx` and `error` of `nginx_upstream_peer_responses_total`)
//! at its ticks, and a 5xx, latency or SLO alert names the peers with the largest shares over
//! its window (`5xx mostly from 10.0.0.3:8080 (82 %), 10.0.0.4:8080 (18 %)`).
//!
//! Kept in the evaluating process only: until it has seen a whole window (after a start or a
//! take-over), the shares are those since the counts began.

use std::collections::VecDeque;

/// Most samples kept per group: the longest window in about 120 steps.
const MAX_SAMPLES: usize = 128;

/// Peers an alert names at most.
pub const TOP_PEERS: usize = 3;

/// Failed tries per cell of one peer group, sampled over time.
#[derive(Debug, Default)]
pub struct PeerWindow {
    samples: VecDeque<(u64, Vec<u64>)>,
}

impl PeerWindow {
    /// Records the cumulative failed tries of each cell at `now_ms` (`failed` reads them, only
    /// when a sample is due), keeping what a window of `keep_ms` needs (a sample at most every
    /// `keep_ms / 120`).
    pub fn record(&mut self, now_ms: u64, failed: impl FnOnce() -> Vec<u64>, keep_ms: u64) {
        let gap = keep_ms / (MAX_SAMPLES as u64 - 8);
        if self
            .samples
            .back()
            .is_some_and(|(t, _)| now_ms < t.saturating_add(gap))
        {
            return;
        }
        self.samples.push_back((now_ms, failed()));
        // The newest sample at or before the start of the longest window is the oldest needed.
        let start = now_ms.saturating_sub(keep_ms);
        while self.samples.len() > 1 && self.samples[1].0 <= start {
            self.samples.pop_front();
        }
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Failed tries of each cell in the window of `window_ms` before `now_ms`, from `current`
    /// (the cumulative counts now): since the newest sample at or before the window's start,
    /// else (the evaluator has not seen a whole window yet: the first alert after a start can
    /// come before its second sample) since the counts began.
    pub fn failed_in_window(&self, current: &[u64], now_ms: u64, window_ms: u64) -> Vec<u64> {
        let start = now_ms.saturating_sub(window_ms);
        let base = self
            .samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= start)
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[]);
        current
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(base.get(i).copied().unwrap_or(0)))
            .collect()
    }
}

/// The `n` largest shares of `counts` (labelled by `labels`, in the same order), largest
/// first, each as (label, share of the total in 0..=1); cells without failures are left out.
pub fn top_shares<'a>(
    labels: impl Iterator<Item = &'a str>,
    counts: &[u64],
    n: usize,
) -> Vec<(String, f64)> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return Vec::new();
    }
    let mut shares: Vec<(String, u64)> = labels
        .zip(counts)
        .filter(|(_, c)| **c > 0)
        .map(|(l, c)| (l.to_string(), *c))
        .collect();
    // Stable: equal counts keep the configuration's order.
    shares.sort_by_key(|s| core::cmp::Reverse(s.1));
    shares.truncate(n);
    shares
        .into_iter()
        .map(|(l, c)| (l, c as f64 / total as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_counts_from_the_sample_at_its_start() {
        let mut w = PeerWindow::default();
        // No sample yet: everything so far.
        assert_eq!(w.failed_in_window(&[5, 1], 0, 60_000), [5, 1]);
        w.record(0, || vec![0, 0], 300_000);
        w.record(60_000, || vec![10, 0], 300_000);
        w.record(120_000, || vec![30, 5], 300_000);
        // A 1-minute window at 2m counts since the 1m sample.
        assert_eq!(w.failed_in_window(&[40, 5], 120_000, 60_000), [30, 5]);
        // A window longer than what was seen counts since the counts began.
        assert_eq!(w.failed_in_window(&[40, 5], 120_000, 600_000), [40, 5]);
        w.record(180_000, || vec![35, 5], 300_000);
        assert_eq!(w.failed_in_window(&[40, 5], 180_000, 600_000), [40, 5]);
        // A cell the samples do not have (a reload added a peer) counts from zero.
        assert_eq!(w.failed_in_window(&[40, 5, 2], 120_000, 60_000), [30, 5, 2]);
    }

    #[test]
    fn the_counts_are_read_only_when_a_sample_is_due() {
        let mut w = PeerWindow::default();
        let mut reads = 0;
        // keep 120 s: a sample a second at most; ticks every 250 ms read every fourth time.
        for t in 0..8u64 {
            w.record(
                t * 250,
                || {
                    reads += 1;
                    vec![t]
                },
                120_000,
            );
        }
        assert_eq!(reads, 2);
    }

    #[test]
    fn samples_are_thinned_and_dropped_once_no_window_needs_them() {
        let mut w = PeerWindow::default();
        // keep 120 s: one sample a second at most.
        for t in 0..1000u64 {
            w.record(t * 100, || vec![t], 120_000);
        }
        assert!(w.samples.len() <= 101, "{}", w.samples.len());
        for t in 0..400u64 {
            w.record(100_000 + t * 1000, || vec![t], 120_000);
        }
        assert!(w.samples.len() <= MAX_SAMPLES);
        let (oldest, _) = w.samples.front().unwrap();
        assert!(*oldest <= 499_000 - 120_000, "{oldest}");
        assert!(*oldest >= 499_000 - 125_000, "{oldest}");
    }

    #[test]
    fn shares_are_the_largest_first_at_most_three() {
        let labels = ["a:1", "b:1", "c:1", "d:1", "other"];
        let top = top_shares(labels.iter().copied(), &[82, 0, 18, 0, 0], TOP_PEERS);
        assert_eq!(top, [("a:1".to_string(), 0.82), ("c:1".to_string(), 0.18)]);
        let top = top_shares(labels.iter().copied(), &[1, 4, 2, 3, 0], TOP_PEERS);
        let names: Vec<&str> = top.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(names, ["b:1", "d:1", "c:1"]);
        assert!((top[0].1 - 0.4).abs() < 1e-9);
        assert!(top_shares(labels.iter().copied(), &[0; 5], TOP_PEERS).is_empty());
    }
}
