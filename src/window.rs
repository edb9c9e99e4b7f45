//! Sliding-window figures from periodic snapshots of the cumulative counters.
//!
//! The evaluator records a [`SampleCounts`] per NAME every `step` into a fixed ring kept in
//! shared memory. The window's figures are the current counts minus the newest sample that is at
//! least `window` old (or the oldest sample while the history is shorter than the window). The
//! request path never sees any of this.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::counters::CountersSnapshot;

/// Samples kept per NAME; the step is chosen so that a window spans at most `RING_LEN - 2`.
pub const RING_LEN: usize = 32;
/// Individually tracked 5xx codes: 500..=511 (every 5xx code in common use).
pub const TRACKED_5XX: usize = 12;
/// Fields of a sample: total, classes 1xx..5xx, then 500..=511.
pub const SAMPLE_FIELDS: usize = 1 + 5 + TRACKED_5XX;

const TOTAL: usize = 0;
const CLASS: usize = 1; // CLASS + (class - 1) for classes 1..=5
const CODE_500: usize = 6;

/// Compact cumulative counts used for window math.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleCounts(pub [u64; SAMPLE_FIELDS]);

impl SampleCounts {
    /// Condenses a full counter snapshot.
    pub fn from_snapshot(s: &CountersSnapshot) -> SampleCounts {
        let mut f = [0u64; SAMPLE_FIELDS];
        f[TOTAL] = s.total();
        for class in 1..=5 {
            f[CLASS + class - 1] = s.class(class);
        }
        for (i, v) in f[CODE_500..].iter_mut().enumerate() {
            *v = s.status[crate::counters::status_index(500 + i)];
        }
        SampleCounts(f)
    }

    /// Field-wise `self - older`, saturating (a reset slot never yields negative figures).
    pub fn since(&self, older: &SampleCounts) -> WindowCounts {
        let mut f = [0u64; SAMPLE_FIELDS];
        for (i, v) in f.iter_mut().enumerate() {
            *v = self.0[i].saturating_sub(older.0[i]);
        }
        WindowCounts(f)
    }
}

/// Requests seen within one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounts(pub [u64; SAMPLE_FIELDS]);

impl WindowCounts {
    /// All requests in the window.
    pub fn total(&self) -> u64 {
        self.0[TOTAL]
    }

    /// 5xx responses in the window.
    pub fn errors(&self) -> u64 {
        self.0[CLASS + 4]
    }

    /// The `n` most frequent codes or classes, most frequent first: individual 5xx codes
    /// (500..=511), `5xx` for other 5xx codes, and `1xx`..`4xx` classes.
    pub fn top_codes(&self, n: usize) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        let tracked: u64 = self.0[CODE_500..].iter().sum();
        for (i, count) in self.0[CODE_500..].iter().enumerate() {
            out.push(((500 + i).to_string(), *count));
        }
        out.push(("5xx".to_string(), self.errors().saturating_sub(tracked)));
        for class in 1..=4 {
            out.push((format!("{class}xx"), self.0[CLASS + class - 1]));
        }
        out.retain(|(_, c)| *c > 0);
        // Stable sort keeps 5xx codes ahead of classes on ties.
        out.sort_by_key(|(_, count)| core::cmp::Reverse(*count));
        out.truncate(n);
        out
    }
}

/// 5xx responses per `per` requests (1.0: a ratio, 100.0: percent); 0 with no requests.
pub fn error_share(errors: u64, total: u64, per: f64) -> f64 {
    if total == 0 {
        0.0
    } else {
        errors as f64 * per / total as f64
    }
}

/// Chooses how often samples are recorded: every evaluation, or coarser for long windows.
pub fn sample_step_ms(window_ms: u64, interval_ms: u64) -> u64 {
    let span = (RING_LEN - 2) as u64;
    interval_ms.max(window_ms.div_ceil(span))
}

/// One recorded sample in shared memory.
#[repr(C)]
pub struct WindowSample {
    at_ms: AtomicU64,
    counts: [AtomicU64; SAMPLE_FIELDS],
}

impl WindowSample {
    fn load(&self) -> (u64, SampleCounts) {
        let mut f = [0u64; SAMPLE_FIELDS];
        for (d, s) in f.iter_mut().zip(self.counts.iter()) {
            *d = s.load(Relaxed);
        }
        (self.at_ms.load(Relaxed), SampleCounts(f))
    }

    fn store(&self, at_ms: u64, c: &SampleCounts) {
        for (d, s) in self.counts.iter().zip(c.0.iter()) {
            d.store(*s, Relaxed);
        }
        self.at_ms.store(at_ms, Relaxed);
    }
}

/// Ring of samples of one NAME. Written only by the evaluator that holds the tick lease.
#[repr(C)]
pub struct WindowRing {
    /// Index the next sample is written to.
    next: AtomicU32,
    /// Number of valid samples (<= RING_LEN).
    len: AtomicU32,
    samples: [WindowSample; RING_LEN],
}

impl WindowRing {
    /// Returns the window figures at `now_ms` and records `current` if a step has passed since
    /// the newest sample.
    pub fn advance(
        &self,
        now_ms: u64,
        current: &SampleCounts,
        window_ms: u64,
        step_ms: u64,
    ) -> WindowCounts {
        let len = (self.len.load(Relaxed) as usize).min(RING_LEN);
        let next = self.next.load(Relaxed) as usize % RING_LEN;
        let cutoff = now_ms.saturating_sub(window_ms);

        // Baseline: the newest sample at least a window old. While the history is shorter than
        // the window and the ring has never wrapped, the slot started counting inside the window,
        // so the baseline is zero: requests counted before the first sample are included.
        let mut baseline: Option<SampleCounts> = None;
        let mut newest_at: Option<u64> = None;
        let mut oldest: Option<SampleCounts> = None;
        for k in 1..=len {
            let (at, counts) = self.samples[(next + RING_LEN - k) % RING_LEN].load();
            if k == 1 {
                newest_at = Some(at);
            }
            if at <= cutoff {
                baseline = Some(counts);
                break;
            }
            oldest = Some(counts);
        }
        if baseline.is_none() && len == RING_LEN {
            baseline = oldest;
        }

        let due = match newest_at {
            None => true,
            Some(at) => now_ms.saturating_sub(at) >= step_ms || at > now_ms,
        };
        if due {
            self.samples[next].store(now_ms, current);
            self.next.store(((next + 1) % RING_LEN) as u32, Relaxed);
            self.len.store((len + 1).min(RING_LEN) as u32, Relaxed);
        }

        current.since(&baseline.unwrap_or_default())
    }

    /// Copies the ring from another zone (reload into a resized zone).
    pub fn copy_from(&self, other: &WindowRing) {
        self.next.store(other.next.load(Relaxed), Relaxed);
        self.len.store(other.len.load(Relaxed), Relaxed);
        for (d, s) in self.samples.iter().zip(other.samples.iter()) {
            let (at, c) = s.load();
            d.store(at, &c);
        }
    }

    /// 5xx share between consecutive samples no older than `window_ms` before `now_ms`, oldest
    /// first (the status page's sparkline); intervals without requests count as 0.
    pub fn share_history(&self, now_ms: u64, window_ms: u64) -> Vec<f64> {
        let len = (self.len.load(Relaxed) as usize).min(RING_LEN);
        let next = self.next.load(Relaxed) as usize % RING_LEN;
        let cutoff = now_ms.saturating_sub(window_ms);
        let mut samples: Vec<(u64, SampleCounts)> = (1..=len)
            .rev()
            .map(|k| self.samples[(next + RING_LEN - k) % RING_LEN].load())
            .filter(|(at, _)| *at >= cutoff)
            .collect();
        // A ring that never wrapped and whose first sample is inside the window started
        // counting inside it: what came before the first sample is the first step (as in
        // `advance`, whose baseline is then zero).
        if len < RING_LEN && samples.len() == len && len > 0 {
            samples.insert(0, (samples[0].0, SampleCounts::default()));
        }
        samples
            .windows(2)
            .map(|w| {
                let d = w[1].1.since(&w[0].1);
                error_share(d.errors(), d.total(), 1.0)
            })
            .collect()
    }

    /// Forgets all samples.
    pub fn reset(&self) {
        self.len.store(0, Relaxed);
        self.next.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Box<WindowRing> {
        // SAFETY: all-zero bytes are a valid, empty ring.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    fn counts(total: u64, errors: u64) -> SampleCounts {
        let mut f = [0u64; SAMPLE_FIELDS];
        f[TOTAL] = total;
        f[CLASS + 1] = total - errors;
        f[CLASS + 4] = errors;
        f[CODE_500 + 2] = errors; // all 502
        SampleCounts(f)
    }

    #[test]
    fn share_history_follows_the_samples_within_the_window() {
        let r = ring();
        r.advance(1_000, &counts(10, 0), 10_000, 1_000);
        r.advance(2_000, &counts(20, 5), 10_000, 1_000);
        r.advance(3_000, &counts(20, 5), 10_000, 1_000);
        r.advance(4_000, &counts(30, 15), 10_000, 1_000);
        // Everything before the first sample (the slot started counting in the window) first.
        assert_eq!(r.share_history(4_000, 10_000), vec![0.0, 0.5, 0.0, 1.0]);
        assert_eq!(
            r.share_history(4_000, 1_500),
            vec![1.0],
            "older samples are left out"
        );
    }

    #[test]
    fn step_is_interval_or_window_fraction() {
        assert_eq!(sample_step_ms(10_000, 1_000), 1_000);
        assert_eq!(sample_step_ms(300_000, 10_000), 10_000);
        assert_eq!(sample_step_ms(86_400_000, 10_000), 2_880_000);
        // The ring always covers the window plus one step.
        for (w, i) in [
            (10_000, 1_000),
            (300_000, 10_000),
            (86_400_000, 1_000),
            (2_000, 1_000),
        ] {
            let step = sample_step_ms(w, i);
            assert!(step * (RING_LEN as u64 - 1) >= w + step, "{w} {i}");
        }
    }

    #[test]
    fn first_evaluation_counts_everything_since_the_slot_was_created() {
        let r = ring();
        let w = r.advance(1_000, &counts(50, 5), 10_000, 1_000);
        assert_eq!((w.total(), w.errors()), (50, 5));
        let w = r.advance(2_000, &counts(60, 5), 10_000, 1_000);
        assert_eq!((w.total(), w.errors()), (60, 5));
    }

    #[test]
    fn window_slides() {
        let r = ring();
        // 10 requests per second, 1 error per second, starting at t=0.
        let mut now = 0;
        let mut w = WindowCounts::default();
        for s in 0..=30u64 {
            now = s * 1000;
            w = r.advance(now, &counts(s * 10, s), 10_000, 1_000);
        }
        assert_eq!(now, 30_000);
        assert_eq!(w.total(), 100);
        assert_eq!(w.errors(), 10);
        assert!((error_share(w.errors(), w.total(), 1.0) - 0.1).abs() < 1e-9);
        assert_eq!(error_share(0, 0, 100.0), 0.0);
        // Traffic stops: after a full window the figures drop to zero.
        for s in 31..=41u64 {
            w = r.advance(s * 1000, &counts(300, 30), 10_000, 1_000);
        }
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn wrapped_ring_with_short_history_uses_oldest_sample() {
        let r = ring();
        // Samples every 1s but a 100s window: the ring (32) wraps before covering the window.
        for s in 0..40u64 {
            r.advance(s * 1000, &counts(s * 10, 0), 100_000, 1_000);
        }
        let w = r.advance(40_000, &counts(400, 0), 100_000, 1_000);
        // Oldest kept sample is t=8s (40 - 32): 320 requests since.
        assert_eq!(w.total(), 320);
    }

    #[test]
    fn samples_only_every_step() {
        let r = ring();
        for s in 0..100u64 {
            r.advance(s * 1000, &counts(s, 0), 300_000, 10_000);
        }
        assert_eq!(r.len.load(Relaxed), 10);
    }

    #[test]
    fn reset_counters_never_go_negative() {
        let r = ring();
        r.advance(0, &counts(100, 10), 10_000, 1_000);
        let w = r.advance(1_000, &counts(5, 1), 10_000, 1_000);
        assert_eq!((w.total(), w.errors()), (0, 0));
    }

    #[test]
    fn top_codes_order() {
        let mut f = [0u64; SAMPLE_FIELDS];
        f[TOTAL] = 1000;
        f[CLASS + 1] = 850; // 2xx
        f[CLASS + 3] = 20; // 4xx
        f[CLASS + 4] = 130; // 5xx
        f[CODE_500 + 2] = 100; // 502
        f[CODE_500 + 4] = 25; // 504
        let w = WindowCounts(f);
        let top = w.top_codes(4);
        let expect: Vec<(String, u64)> = vec![
            ("2xx".into(), 850),
            ("502".into(), 100),
            ("504".into(), 25),
            ("4xx".into(), 20),
        ];
        assert_eq!(top, expect);
        assert_eq!(w.top_codes(10).last().unwrap(), &("5xx".to_string(), 5));
    }

    #[test]
    fn copy_preserves_history() {
        let a = ring();
        let b = ring();
        for s in 0..5u64 {
            a.advance(s * 1000, &counts(s * 10, s), 10_000, 1_000);
        }
        b.copy_from(&a);
        let wa = a.advance(5_000, &counts(50, 5), 10_000, 1_000);
        let wb = b.advance(5_000, &counts(50, 5), 10_000, 1_000);
        assert_eq!(wa, wb);
        assert_eq!(wb.total(), 50);
    }
}
