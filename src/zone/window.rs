//! Sliding-window figures from periodic snapshots of the cumulative counters.
//!
//! The evaluator records a [`SampleCounts`] per NAME every `step` into a fixed ring kept in
//! shared memory. The window's figures are the current counts minus the newest sample that is at
//! least `window` old (or the oldest sample while the history is shorter than the window). The
//! request path never sees any of this.
//!
//! Each sample also keeps the histogram buckets, so request-time percentiles are over the same
//! window. To keep the slot small, a sample stores its total in full and every other count
//! (classes, 5xx codes, buckets) modulo 2^32: a window's figure is exact as long as it stays
//! below 2^32 (about 50,000 responses per second of one class, code or bucket, sustained over
//! the longest window, 24h). The full total tells a reset slot (counts going backwards) apart.
//!
//! The burn-rate windows of `slo=` (up to 72 x `window`) come from a second, coarser ring,
//! [`LongWindowRing`], of total and 5xx counts: [`LONG_RING_LEN`] samples, one every
//! [`long_step_ms`] (72 x window / 94: 3m50s for `window=5m`). A long window's figures therefore
//! cover between the window and the window plus one step (30m to 33m50s for the 30m window).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use crate::vocab::event::error_share;
use crate::zone::counters::{CountersSnapshot, BUCKET_SLOTS};

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
            *v = s.status[crate::zone::counters::status_index(500 + i)];
        }
        SampleCounts(f)
    }

    /// Field-wise `self - older`: the total in full, every other field modulo 2^32 (as samples
    /// store them), never more than the total. A reset slot (the total went backwards) yields an
    /// empty window.
    pub fn since(&self, older: &SampleCounts) -> WindowCounts {
        let mut f = [0u64; SAMPLE_FIELDS];
        if self.0[TOTAL] < older.0[TOTAL] {
            return WindowCounts(f);
        }
        let total = self.0[TOTAL] - older.0[TOTAL];
        f[TOTAL] = total;
        for (i, v) in f.iter_mut().enumerate().skip(TOTAL + 1) {
            // A field that went backwards on its own (no path does) would wrap to about 2^32:
            // capped, it can never make a share above 100 %.
            *v = u64::from((self.0[i] as u32).wrapping_sub(older.0[i] as u32)).min(total);
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

/// Chooses how often samples are recorded: every evaluation, or coarser for long windows.
pub fn sample_step_ms(window_ms: u64, interval_ms: u64) -> u64 {
    let span = (RING_LEN - 2) as u64;
    interval_ms.max(window_ms.div_ceil(span))
}

/// Histogram buckets within one window, non-cumulative, indexed like
/// [`CountersSnapshot::buckets`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowHistogram(pub [u64; BUCKET_SLOTS]);

impl Default for WindowHistogram {
    fn default() -> Self {
        WindowHistogram([0; BUCKET_SLOTS])
    }
}

impl WindowHistogram {
    /// Requests counted in the histogram.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// One recorded sample in shared memory.
#[repr(C)]
pub struct WindowSample {
    at_ms: AtomicU64,
    /// Cumulative requests, in full.
    total: AtomicU64,
    /// The other cumulative counts of a [`SampleCounts`] modulo 2^32 (see the module docs).
    counts: [AtomicU32; SAMPLE_FIELDS - 1],
    /// Cumulative bucket counts modulo 2^32.
    buckets: [AtomicU32; BUCKET_SLOTS],
}

impl WindowSample {
    fn load(&self) -> (u64, SampleCounts) {
        let mut f = [0u64; SAMPLE_FIELDS];
        f[TOTAL] = self.total.load(Relaxed);
        for (d, s) in f[TOTAL + 1..].iter_mut().zip(self.counts.iter()) {
            *d = u64::from(s.load(Relaxed));
        }
        (self.at_ms.load(Relaxed), SampleCounts(f))
    }

    fn load_buckets(&self) -> [u32; BUCKET_SLOTS] {
        let mut b = [0u32; BUCKET_SLOTS];
        for (d, s) in b.iter_mut().zip(self.buckets.iter()) {
            *d = s.load(Relaxed);
        }
        b
    }

    fn store(&self, at_ms: u64, c: &SampleCounts, buckets: &[u64; BUCKET_SLOTS]) {
        self.total.store(c.0[TOTAL], Relaxed);
        for (d, s) in self.counts.iter().zip(c.0[TOTAL + 1..].iter()) {
            // Truncation intended: differences are taken modulo 2^32.
            d.store(*s as u32, Relaxed);
        }
        for (d, s) in self.buckets.iter().zip(buckets.iter()) {
            // Truncation intended: differences are taken modulo 2^32.
            d.store(*s as u32, Relaxed);
        }
        self.at_ms.store(at_ms, Relaxed);
    }
}

/// The baseline of a window in a ring of `cap` samples holding `len`, the next written at
/// `next`: the index of the newest sample at least a window old (at or before `cutoff`). While
/// the history is shorter than the window and the ring has never wrapped, the slot started
/// counting inside the window, so the baseline is zero (`None`): requests counted before the
/// first sample are included. A wrapped ring that is too short uses its oldest sample.
fn find_baseline(
    len: usize,
    next: usize,
    cap: usize,
    cutoff: u64,
    at: impl Fn(usize) -> u64,
) -> Option<usize> {
    let mut oldest = None;
    for k in 1..=len {
        let i = (next + cap - k) % cap;
        if at(i) <= cutoff {
            return Some(i);
        }
        oldest = Some(i);
    }
    if len == cap {
        oldest
    } else {
        None
    }
}

/// True when a new sample is due: none yet, a step has passed, or the clock went backwards.
fn sample_due(newest_at: Option<u64>, now_ms: u64, step_ms: u64) -> bool {
    match newest_at {
        None => true,
        Some(at) => now_ms.saturating_sub(at) >= step_ms || at > now_ms,
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
    /// the newest sample. The histogram is recorded as empty; see
    /// [`WindowRing::advance_with_histogram`].
    pub fn advance(
        &self,
        now_ms: u64,
        current: &SampleCounts,
        window_ms: u64,
        step_ms: u64,
    ) -> WindowCounts {
        let none = [0u64; BUCKET_SLOTS];
        self.advance_with_histogram(now_ms, current, &none, window_ms, step_ms)
            .0
    }

    /// Like [`WindowRing::advance`], also recording the cumulative histogram `buckets` (as in
    /// [`CountersSnapshot::buckets`]) and returning the window's buckets.
    pub fn advance_with_histogram(
        &self,
        now_ms: u64,
        current: &SampleCounts,
        buckets: &[u64; BUCKET_SLOTS],
        window_ms: u64,
        step_ms: u64,
    ) -> (WindowCounts, WindowHistogram) {
        let len = (self.len.load(Relaxed) as usize).min(RING_LEN);
        let next = self.next.load(Relaxed) as usize % RING_LEN;
        let cutoff = now_ms.saturating_sub(window_ms);
        let at = |i: usize| self.samples[i].at_ms.load(Relaxed);
        // Read before the new sample is stored: it may take the baseline's place.
        let base = find_baseline(len, next, RING_LEN, cutoff, at)
            .map(|i| (self.samples[i].load().1, self.samples[i].load_buckets()));
        let newest_at = (len > 0).then(|| at((next + RING_LEN - 1) % RING_LEN));
        if sample_due(newest_at, now_ms, step_ms) {
            self.samples[next].store(now_ms, current, buckets);
            self.next.store(((next + 1) % RING_LEN) as u32, Relaxed);
            self.len.store((len + 1).min(RING_LEN) as u32, Relaxed);
        }

        let Some((base, base_buckets)) = base else {
            // Everything the slot counted is in the window: the full counts, nothing truncated.
            return (WindowCounts(current.0), WindowHistogram(*buckets));
        };
        let figures = current.since(&base);
        let mut histogram = WindowHistogram::default();
        // Counters that went backwards (a reset slot) yield an empty window, as for the status
        // figures; otherwise each bucket's window count is its difference modulo 2^32.
        if current.0[TOTAL] >= base.0[TOTAL] {
            for (i, h) in histogram.0.iter_mut().enumerate() {
                *h = u64::from((buckets[i] as u32).wrapping_sub(base_buckets[i]));
            }
        }
        (figures, histogram)
    }

    /// Zeroes the recorded buckets of every sample: the histogram restarted under other bounds
    /// (see `NameCounters::adopt_bounds`), so the window's buckets count from then on.
    pub fn reset_histogram(&self) {
        for s in &self.samples {
            s.buckets.iter().for_each(|b| b.store(0, Relaxed));
        }
    }

    /// Copies the ring from another zone (reload into a resized zone).
    pub fn copy_from(&self, other: &WindowRing) {
        self.next.store(other.next.load(Relaxed), Relaxed);
        self.len.store(other.len.load(Relaxed), Relaxed);
        for (d, s) in self.samples.iter().zip(other.samples.iter()) {
            let (at, c) = s.load();
            let buckets = s.load_buckets().map(u64::from);
            d.store(at, &c, &buckets);
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

/// Samples kept per NAME for the burn-rate windows; the step is chosen so that the longest
/// (72 x window) spans at most `LONG_RING_LEN - 2` steps.
pub const LONG_RING_LEN: usize = 96;
/// The longest window the long ring serves, in multiples of `window`.
pub const LONG_SPAN: u64 = 72;

/// How often the long ring records: every evaluation, or 72 x window / 94 when that is longer.
pub fn long_step_ms(window_ms: u64, interval_ms: u64) -> u64 {
    let span = (LONG_RING_LEN - 2) as u64;
    interval_ms.max((window_ms * LONG_SPAN).div_ceil(span))
}

/// Requests and 5xx responses within one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// All requests in the window.
    pub total: u64,
    /// 5xx responses in the window.
    pub errors: u64,
}

/// One recorded sample of the long ring.
#[repr(C)]
pub struct LongSample {
    at_ms: AtomicU64,
    total: AtomicU64,
    errors: AtomicU64,
}

impl LongSample {
    fn load(&self) -> ErrorCounts {
        ErrorCounts {
            total: self.total.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}

/// Coarse ring of total and 5xx counts of one NAME, for windows up to 72 x `window`. Written
/// only by the evaluator that holds the tick lease.
#[repr(C)]
pub struct LongWindowRing {
    next: AtomicU32,
    len: AtomicU32,
    samples: [LongSample; LONG_RING_LEN],
}

impl LongWindowRing {
    /// Returns the figures of each of `windows_ms` at `now_ms` (same order) and records
    /// `current` (cumulative counts) if `step_ms` has passed since the newest sample.
    pub fn advance(
        &self,
        now_ms: u64,
        current: ErrorCounts,
        windows_ms: &[u64],
        step_ms: u64,
    ) -> Vec<ErrorCounts> {
        let len = (self.len.load(Relaxed) as usize).min(LONG_RING_LEN);
        let next = self.next.load(Relaxed) as usize % LONG_RING_LEN;
        let at = |i: usize| self.samples[i].at_ms.load(Relaxed);
        let figures = windows_ms
            .iter()
            .map(|w| {
                let cutoff = now_ms.saturating_sub(*w);
                let base = find_baseline(len, next, LONG_RING_LEN, cutoff, at)
                    .map(|i| self.samples[i].load())
                    .unwrap_or_default();
                ErrorCounts {
                    total: current.total.saturating_sub(base.total),
                    errors: current.errors.saturating_sub(base.errors),
                }
            })
            .collect();
        let newest_at = (len > 0).then(|| at((next + LONG_RING_LEN - 1) % LONG_RING_LEN));
        if sample_due(newest_at, now_ms, step_ms) {
            let s = &self.samples[next];
            s.total.store(current.total, Relaxed);
            s.errors.store(current.errors, Relaxed);
            s.at_ms.store(now_ms, Relaxed);
            self.next
                .store(((next + 1) % LONG_RING_LEN) as u32, Relaxed);
            self.len.store((len + 1).min(LONG_RING_LEN) as u32, Relaxed);
        }
        figures
    }

    /// Copies the ring from another zone (reload into a resized zone).
    pub fn copy_from(&self, other: &LongWindowRing) {
        self.next.store(other.next.load(Relaxed), Relaxed);
        self.len.store(other.len.load(Relaxed), Relaxed);
        for (d, s) in self.samples.iter().zip(other.samples.iter()) {
            d.at_ms.store(s.at_ms.load(Relaxed), Relaxed);
            d.total.store(s.total.load(Relaxed), Relaxed);
            d.errors.store(s.errors.load(Relaxed), Relaxed);
        }
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
    fn a_field_going_backwards_alone_never_exceeds_the_total() {
        let older = counts(100, 10);
        let mut newer = counts(110, 10);
        newer.0[CLASS + 4] = 9; // 5xx went backwards while the total grew
        let w = newer.since(&older);
        assert_eq!(w.total(), 10);
        assert!(
            w.errors() <= w.total(),
            "{} 5xx of {}",
            w.errors(),
            w.total()
        );
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

    fn buckets(values: &[(usize, u64)]) -> [u64; BUCKET_SLOTS] {
        let mut b = [0u64; BUCKET_SLOTS];
        for (i, v) in values {
            b[*i] = *v;
        }
        b
    }

    #[test]
    fn histogram_slides_with_the_window() {
        let r = ring();
        // Each second: 10 requests, 9 in bucket 0 and 1 in bucket 3 (cumulative below).
        let mut h = WindowHistogram::default();
        for s in 0..=30u64 {
            let b = buckets(&[(0, s * 9), (3, s)]);
            h = r
                .advance_with_histogram(s * 1000, &counts(s * 10, 0), &b, 10_000, 1_000)
                .1;
        }
        assert_eq!((h.0[0], h.0[3], h.total()), (90, 10, 100));
        // Before a full window has passed, everything since the slot was created counts.
        let r = ring();
        let b = buckets(&[(1, 7)]);
        let (_, h) = r.advance_with_histogram(0, &counts(7, 0), &b, 10_000, 1_000);
        assert_eq!(h.0[1], 7);
    }

    #[test]
    fn status_counts_across_u32_wraparound() {
        // Cumulative 5xx and 2xx counts cross 2^32 between the samples; the total is kept in
        // full, the rest modulo 2^32: the window's figures are exact.
        let r = ring();
        let start = u64::from(u32::MAX) - 5;
        r.advance(0, &counts(2 * start, start), 10_000, 1_000);
        let w = r.advance(20_000, &counts(2 * start + 30, start + 20), 10_000, 1_000);
        assert_eq!((w.total(), w.errors()), (30, 20));
        assert_eq!(
            w.top_codes(2),
            vec![("502".to_string(), 20), ("2xx".to_string(), 10)]
        );
        // Consecutive samples across the wrap give the same share in the sparkline.
        assert_eq!(r.share_history(20_000, 30_000), vec![0.5, 20.0 / 30.0]);
    }

    #[test]
    fn histogram_counts_across_u32_wraparound() {
        let r = ring();
        let start = u64::from(u32::MAX) - 5;
        r.advance_with_histogram(0, &counts(start, 0), &buckets(&[(2, start)]), 10_000, 1_000);
        let now = buckets(&[(2, start + 20)]);
        let (_, h) = r.advance_with_histogram(20_000, &counts(start + 20, 0), &now, 10_000, 1_000);
        assert_eq!(h.0[2], 20);
    }

    #[test]
    fn histogram_of_a_reset_slot_is_empty_and_reset_histogram_restarts_it() {
        let r = ring();
        r.advance_with_histogram(0, &counts(100, 0), &buckets(&[(0, 100)]), 10_000, 1_000);
        let (_, h) =
            r.advance_with_histogram(1_000, &counts(5, 0), &buckets(&[(0, 5)]), 10_000, 1_000);
        assert_eq!(h.total(), 0);
        // Bounds changed: status counts go on, buckets restart from zero.
        let r = ring();
        r.advance_with_histogram(
            50_000,
            &counts(100, 0),
            &buckets(&[(0, 100)]),
            10_000,
            1_000,
        );
        r.reset_histogram();
        let (w, h) =
            r.advance_with_histogram(51_000, &counts(103, 0), &buckets(&[(4, 3)]), 10_000, 1_000);
        assert_eq!((w.total(), h.0[4], h.total()), (103, 3, 3));
    }

    #[test]
    fn long_step_covers_72_windows() {
        assert_eq!(long_step_ms(300_000, 10_000), 229_788);
        assert_eq!(long_step_ms(10_000, 10_000), 10_000);
        for (w, i) in [(300_000, 10_000), (10_000, 1_000), (86_400_000, 10_000)] {
            let step = long_step_ms(w, i);
            assert!(
                step * (LONG_RING_LEN as u64 - 1) >= 72 * w + step,
                "{w} {i}"
            );
        }
    }

    fn long_ring() -> Box<LongWindowRing> {
        // SAFETY: all-zero bytes are a valid, empty ring.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    #[test]
    fn long_ring_serves_several_windows() {
        let r = long_ring();
        let w = 300_000; // 5m; steps of 10s until the 6h window is covered
        let step = 10_000;
        let windows = [6 * w, 12 * w, 72 * w];
        // 10 requests per second, 1% errors, for 8 hours; steps every 229.788s.
        let step_ms = long_step_ms(w, step);
        let mut figures = vec![];
        for t in (0..=8 * 3600u64).step_by(10) {
            let current = ErrorCounts {
                total: t * 10,
                errors: t / 10,
            };
            figures = r.advance(t * 1000, current, &windows, step_ms);
        }
        // Each window covers at least its length and at most one step more.
        for (f, len) in figures.iter().zip(windows) {
            let secs = f.total / 10;
            assert!(
                secs * 1000 >= len && secs * 1000 <= len + step_ms,
                "{f:?} {len}"
            );
            assert_eq!(f.errors * 100, f.total, "{f:?}");
        }
        // Before the history is long enough: everything since the slot was created.
        let r = long_ring();
        let c = ErrorCounts {
            total: 50,
            errors: 5,
        };
        assert_eq!(r.advance(1_000, c, &windows, step_ms), vec![c; 3]);
        let copy = long_ring();
        copy.copy_from(&r);
        assert_eq!(copy.len.load(Relaxed), 1);
        copy.reset();
        assert_eq!(copy.len.load(Relaxed), 0);
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
