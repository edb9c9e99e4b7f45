//! Per-NAME request counters: exact status codes and a latency histogram.
//!
//! These live in shared memory. The request path only calls [`NameCounters::record`], which is
//! three relaxed `fetch_add`s on slots computed from the status and the elapsed time.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Lowest status code with its own counter.
pub const STATUS_MIN: u16 = 100;
/// Highest status code with its own counter.
pub const STATUS_MAX: u16 = 599;
/// Counters for 100..=599 plus one for anything outside that range.
pub const STATUS_SLOTS: usize = (STATUS_MAX - STATUS_MIN) as usize + 2;
/// Index of the "other" status slot.
pub const OTHER_STATUS: usize = STATUS_SLOTS - 1;

/// Default histogram upper bounds in milliseconds (Prometheus `le`), `+Inf` excluded.
pub const BUCKET_BOUNDS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
/// Default buckets including `+Inf` (tests count with the default bounds).
#[cfg(test)]
pub const BUCKETS: usize = BUCKET_BOUNDS_MS.len() + 1;
/// Most finite bounds `status_alert_buckets` accepts.
pub const MAX_BUCKET_BOUNDS: usize = 30;
/// Bucket counters kept per NAME: the most finite bounds plus `+Inf`. With fewer bounds the
/// `+Inf` bucket sits at index `bounds.len()` and the slots above it stay zero.
pub const BUCKET_SLOTS: usize = MAX_BUCKET_BOUNDS + 1;

/// Maps a status code to its counter index.
#[inline(always)]
pub fn status_index(status: usize) -> usize {
    let i = status.wrapping_sub(STATUS_MIN as usize);
    if i < OTHER_STATUS {
        i
    } else {
        OTHER_STATUS
    }
}

/// The status code counted at `index`, `None` for the "other" slot.
pub fn status_of_index(index: usize) -> Option<u16> {
    (index < OTHER_STATUS).then(|| STATUS_MIN + index as u16)
}

/// Maps a request time to its (non-cumulative) bucket index under the default bounds (the
/// request path uses the configured ones: [`bucket_index_in`]).
#[cfg(test)]
pub fn bucket_index(elapsed_ms: u64) -> usize {
    bucket_index_in(&BUCKET_BOUNDS_MS, elapsed_ms)
}

/// Maps a request time to its (non-cumulative) bucket index under `bounds_ms`; `bounds_ms.len()`
/// is `+Inf`.
#[inline(always)]
pub fn bucket_index_in(bounds_ms: &[u64], elapsed_ms: u64) -> usize {
    // A linear scan: most requests stop in the first few comparisons.
    let mut i = 0;
    while i < bounds_ms.len() && elapsed_ms > bounds_ms[i] {
        i += 1;
    }
    i
}

/// Histogram bounds of `status_alert_buckets`: 1 to 30 increasing times in ms, `+Inf` implied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketBounds {
    ms: [u64; MAX_BUCKET_BOUNDS],
    len: usize,
}

impl Default for BucketBounds {
    fn default() -> Self {
        BucketBounds::new(&BUCKET_BOUNDS_MS).expect("default bounds are valid")
    }
}

impl BucketBounds {
    /// The bounds, if there are 1 to 30 of them, all positive and increasing.
    pub fn new(ms: &[u64]) -> Option<BucketBounds> {
        let valid = (1..=MAX_BUCKET_BOUNDS).contains(&ms.len())
            && ms[0] > 0
            && ms.windows(2).all(|w| w[0] < w[1]);
        if !valid {
            return None;
        }
        let mut b = BucketBounds {
            ms: [0; MAX_BUCKET_BOUNDS],
            len: ms.len(),
        };
        b.ms[..ms.len()].copy_from_slice(ms);
        Some(b)
    }

    /// The finite upper bounds in ms, increasing.
    #[inline(always)]
    pub fn as_ms(&self) -> &[u64] {
        &self.ms[..self.len]
    }

    /// Index of the `+Inf` bucket (the number of finite bounds).
    pub fn inf_index(&self) -> usize {
        self.len
    }

    /// A non-zero fingerprint of the bounds (FNV-1a), stored with the counters so that a reload
    /// that changes the buckets restarts the histogram instead of mixing two bucket layouts.
    pub fn fingerprint(&self) -> u64 {
        super::fnv1a64(self.as_ms().iter().flat_map(|b| b.to_le_bytes())) | 1
    }
}

/// Cumulative counters of one NAME.
#[repr(C, align(64))]
pub struct NameCounters {
    /// Responses per status code, see [`status_index`].
    pub status: [AtomicU64; STATUS_SLOTS],
    /// Request time histogram, non-cumulative; bucket `bounds.len()` is `+Inf`.
    pub buckets: [AtomicU64; BUCKET_SLOTS],
    /// Sum of request times in microseconds.
    pub duration_us_sum: AtomicU64,
    /// [`BucketBounds::fingerprint`] of the bounds `buckets` count by; 0 until adopted.
    pub bounds_id: AtomicU64,
}

impl NameCounters {
    /// Counts one finished request under the default buckets. Lock-free, allocation-free,
    /// cannot fail.
    #[inline(always)]
    pub fn record(&self, status: usize, elapsed_ms: u64) {
        self.record_in(status, elapsed_ms, &BUCKET_BOUNDS_MS);
    }

    /// Counts one finished request under `bounds_ms` (at most [`MAX_BUCKET_BOUNDS`], e.g.
    /// [`BucketBounds::as_ms`]): relaxed adds, like [`NameCounters::record`].
    #[inline(always)]
    pub fn record_in(&self, status: usize, elapsed_ms: u64, bounds_ms: &[u64]) {
        self.status[status_index(status)].fetch_add(1, Relaxed);
        if elapsed_ms == 0 {
            // Every bound is at least 1 ms (BucketBounds::new): a request answered within the
            // millisecond is in the first bucket, whatever the bounds, and adds 0 to the sum.
            self.buckets[0].fetch_add(1, Relaxed);
            return;
        }
        let bucket = bucket_index_in(bounds_ms, elapsed_ms).min(BUCKET_SLOTS - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.duration_us_sum
            .fetch_add(elapsed_ms.saturating_mul(1000), Relaxed);
    }

    /// Makes the histogram count by `bounds`: when the slot counted by other bounds, its
    /// buckets restart at zero (status counts and the duration sum stay). True when they did,
    /// so the caller also forgets the window's bucket history.
    pub fn adopt_bounds(&self, bounds: &BucketBounds) -> bool {
        let id = bounds.fingerprint();
        let old = self.bounds_id.swap(id, Relaxed);
        if old == id {
            return false;
        }
        self.buckets.iter().for_each(|c| c.store(0, Relaxed));
        old != 0
    }

    /// Copies every counter (used when a reload moves counters into a new zone).
    pub fn copy_from(&self, other: &NameCounters) {
        for (d, s) in self.status.iter().zip(other.status.iter()) {
            d.store(s.load(Relaxed), Relaxed);
        }
        for (d, s) in self.buckets.iter().zip(other.buckets.iter()) {
            d.store(s.load(Relaxed), Relaxed);
        }
        self.duration_us_sum
            .store(other.duration_us_sum.load(Relaxed), Relaxed);
        self.bounds_id.store(other.bounds_id.load(Relaxed), Relaxed);
    }

    /// Moves every count of `other` into `self`, leaving `other` at zero. Exact while processes
    /// still add to `other`: each count lands before the swap (moved now) or after it (moved by
    /// the next call).
    ///
    /// The histogram moves bucket by bucket (all [`BUCKET_SLOTS`]) only when both count by the
    /// same bounds (equal `bounds_id`, both 0 included). When they differ, `other`'s buckets
    /// counted by another layout: they are emptied and dropped, as [`adopt_bounds`] restarts a
    /// histogram whose bounds change, while the status counts and the duration sum still move.
    /// `bounds_id` itself never moves.
    ///
    /// [`adopt_bounds`]: NameCounters::adopt_bounds
    pub fn move_from(&self, other: &NameCounters) {
        let same_bounds = self.bounds_id.load(Relaxed) == other.bounds_id.load(Relaxed);
        let pairs = self.status.iter().zip(other.status.iter());
        let pairs = pairs.chain(core::iter::once((
            &self.duration_us_sum,
            &other.duration_us_sum,
        )));
        for (d, s) in pairs {
            let n = s.swap(0, Relaxed);
            if n != 0 {
                d.fetch_add(n, Relaxed);
            }
        }
        for (d, s) in self.buckets.iter().zip(other.buckets.iter()) {
            let n = s.swap(0, Relaxed);
            if n != 0 && same_bounds {
                d.fetch_add(n, Relaxed);
            }
        }
    }

    /// Zeroes every counter (a slot taken over by a new NAME).
    pub fn reset(&self) {
        self.status.iter().for_each(|c| c.store(0, Relaxed));
        self.buckets.iter().for_each(|c| c.store(0, Relaxed));
        self.duration_us_sum.store(0, Relaxed);
        self.bounds_id.store(0, Relaxed);
    }

    /// A plain copy of the counters, for rendering and window evaluation.
    pub fn snapshot(&self) -> CountersSnapshot {
        // Filled in place: zeroing 4 KB first and then overwriting it was a third of a scrape's
        // copying at 1,000 NAMEs.
        CountersSnapshot {
            status: core::array::from_fn(|i| self.status[i].load(Relaxed)),
            buckets: core::array::from_fn(|i| self.buckets[i].load(Relaxed)),
            duration_us_sum: self.duration_us_sum.load(Relaxed),
        }
    }
}

/// A point-in-time copy of [`NameCounters`].
#[derive(Clone, Debug, PartialEq)]
pub struct CountersSnapshot {
    /// Responses per status slot.
    pub status: [u64; STATUS_SLOTS],
    /// Non-cumulative histogram buckets; bucket `bounds.len()` is `+Inf`.
    pub buckets: [u64; BUCKET_SLOTS],
    /// Sum of request times in microseconds.
    pub duration_us_sum: u64,
}

impl CountersSnapshot {
    /// All responses counted.
    pub fn total(&self) -> u64 {
        self.status.iter().sum()
    }

    /// Responses with a 5xx status.
    pub fn errors(&self) -> u64 {
        self.status[status_index(500)..=status_index(599)]
            .iter()
            .sum()
    }

    /// Responses of status class `class` (1..=5).
    pub fn class(&self, class: usize) -> u64 {
        let lo = status_index(class * 100);
        self.status[lo..lo + 100].iter().sum()
    }

    /// (status code, count) for every code seen; `None` is the "other" slot.
    pub fn seen_codes(&self) -> impl Iterator<Item = (Option<u16>, u64)> + '_ {
        self.status
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (status_of_index(i), *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed() -> Box<NameCounters> {
        // SAFETY: all-zero bytes are a valid value for arrays of atomics.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    #[test]
    fn status_slots() {
        assert_eq!(status_index(100), 0);
        assert_eq!(status_index(599), 499);
        assert_eq!(status_index(600), OTHER_STATUS);
        assert_eq!(status_index(99), OTHER_STATUS);
        assert_eq!(status_index(0), OTHER_STATUS);
        assert_eq!(status_of_index(403), Some(503));
        assert_eq!(status_of_index(OTHER_STATUS), None);
    }

    #[test]
    fn bucket_bounds_are_inclusive() {
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(5), 0);
        assert_eq!(bucket_index(6), 1);
        assert_eq!(bucket_index(1000), 7);
        assert_eq!(bucket_index(10_000), 10);
        assert_eq!(bucket_index(10_001), 11);
        assert_eq!(bucket_index(u64::MAX), 11);
    }

    #[test]
    fn record_and_snapshot() {
        let c = zeroed();
        c.record(200, 3);
        c.record(200, 30);
        c.record(503, 2000);
        c.record(0, 1);
        let s = c.snapshot();
        assert_eq!(s.total(), 4);
        assert_eq!(s.errors(), 1);
        assert_eq!(s.class(2), 2);
        assert_eq!(s.buckets[0], 2);
        assert_eq!(s.buckets[3], 1);
        assert_eq!(s.buckets[8], 1);
        assert_eq!(s.duration_us_sum, 2_034_000);
        let seen: Vec<_> = s.seen_codes().collect();
        assert_eq!(seen, vec![(Some(200), 2), (Some(503), 1), (None, 1)]);
    }

    #[test]
    fn copy_and_reset() {
        let a = zeroed();
        let b = zeroed();
        a.record(404, 7);
        b.copy_from(&a);
        assert_eq!(b.snapshot(), a.snapshot());
        b.reset();
        assert_eq!(b.snapshot().total(), 0);
    }

    #[test]
    fn move_leaves_the_source_empty_and_adds_to_the_target() {
        let a = zeroed();
        let b = zeroed();
        a.record(503, 7);
        a.record(200, 1);
        b.record(200, 1);
        b.move_from(&a);
        assert_eq!(a.snapshot().total(), 0);
        assert_eq!(a.snapshot().duration_us_sum, 0);
        let s = b.snapshot();
        assert_eq!((s.total(), s.errors(), s.duration_us_sum), (3, 1, 9000));
        b.move_from(&a);
        assert_eq!(b.snapshot().total(), 3, "moving twice moves nothing twice");
    }

    #[test]
    fn move_under_other_bounds_drops_only_the_histogram() {
        let a = zeroed();
        let b = zeroed();
        let custom = BucketBounds::new(&[100, 1000]).unwrap();
        a.adopt_bounds(&custom);
        a.record_in(200, 50, custom.as_ms());
        a.record_in(200, 5000, custom.as_ms());
        b.adopt_bounds(&custom);
        b.move_from(&a);
        let s = b.snapshot();
        assert_eq!(
            (s.buckets[0], s.buckets[2], s.total()),
            (1, 1, 2),
            "same bounds move"
        );

        let c = zeroed();
        c.adopt_bounds(&BucketBounds::default());
        a.record_in(503, 50, custom.as_ms());
        c.move_from(&b);
        c.move_from(&a);
        let s = c.snapshot();
        assert_eq!(
            (s.total(), s.errors(), s.duration_us_sum),
            (3, 1, 5_100_000)
        );
        assert!(
            s.buckets.iter().all(|n| *n == 0),
            "other bounds: no buckets"
        );
        assert!(a.snapshot().buckets.iter().all(|n| *n == 0));
        assert!(b.snapshot().buckets.iter().all(|n| *n == 0));
        assert_eq!(
            c.bounds_id.load(Relaxed),
            BucketBounds::default().fingerprint()
        );
    }

    #[test]
    fn configured_bounds() {
        let b = BucketBounds::new(&[100, 1000]).unwrap();
        assert_eq!(b.as_ms(), &[100, 1000]);
        assert_eq!(b.inf_index(), 2);
        assert_eq!(bucket_index_in(b.as_ms(), 100), 0);
        assert_eq!(bucket_index_in(b.as_ms(), 101), 1);
        assert_eq!(bucket_index_in(b.as_ms(), 1001), 2);
        assert_eq!(BucketBounds::default().as_ms(), &BUCKET_BOUNDS_MS);
        assert_eq!(BucketBounds::new(&[]), None);
        assert_eq!(BucketBounds::new(&[0, 5]), None);
        assert_eq!(BucketBounds::new(&[5, 5]), None);
        assert_eq!(BucketBounds::new(&[1; 31]), None);
        let thirty: Vec<u64> = (1..=30).collect();
        let b30 = BucketBounds::new(&thirty).unwrap();
        assert_eq!(bucket_index_in(b30.as_ms(), u64::MAX), BUCKET_SLOTS - 1);
        assert_ne!(b.fingerprint(), BucketBounds::default().fingerprint());
        assert_ne!(b.fingerprint(), 0);
    }

    #[test]
    fn record_in_configured_buckets_and_adopt() {
        let c = zeroed();
        let b = BucketBounds::new(&[100, 1000]).unwrap();
        assert!(!c.adopt_bounds(&b), "a fresh slot just adopts");
        c.record_in(200, 50, b.as_ms());
        c.record_in(200, 5000, b.as_ms());
        let s = c.snapshot();
        assert_eq!((s.buckets[0], s.buckets[1], s.buckets[2]), (1, 0, 1));
        assert!(!c.adopt_bounds(&b), "same bounds keep the counts");
        assert_eq!(c.snapshot().buckets[2], 1);
        assert!(
            c.adopt_bounds(&BucketBounds::default()),
            "other bounds restart"
        );
        let s = c.snapshot();
        assert!(s.buckets.iter().all(|n| *n == 0));
        assert_eq!((s.total(), s.duration_us_sum), (2, 5_050_000));
    }

    #[test]
    fn counters_do_not_share_cache_lines() {
        assert_eq!(core::mem::align_of::<NameCounters>(), 64);
        assert_eq!(core::mem::size_of::<NameCounters>() % 64, 0);
    }
}
