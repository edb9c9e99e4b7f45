//! Per-NAME request counters: exact status codes and a latency histogram.
//!
//! These live in shared memory. The request path only calls [`LocationCounters::record`], which is
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

/// Histogram upper bounds in milliseconds (Prometheus `le`), `+Inf` excluded.
pub const BUCKET_BOUNDS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
/// Buckets including `+Inf`.
pub const BUCKETS: usize = BUCKET_BOUNDS_MS.len() + 1;

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

/// Maps a request time to its (non-cumulative) bucket index.
#[inline(always)]
pub fn bucket_index(elapsed_ms: u64) -> usize {
    // A linear scan over 11 bounds: most requests stop in the first few comparisons.
    let mut i = 0;
    while i < BUCKET_BOUNDS_MS.len() && elapsed_ms > BUCKET_BOUNDS_MS[i] {
        i += 1;
    }
    i
}

/// Cumulative counters of one NAME.
#[repr(C, align(64))]
pub struct LocationCounters {
    /// Responses per status code, see [`status_index`].
    pub status: [AtomicU64; STATUS_SLOTS],
    /// Request time histogram, non-cumulative; the last bucket is `+Inf`.
    pub buckets: [AtomicU64; BUCKETS],
    /// Sum of request times in microseconds.
    pub duration_us_sum: AtomicU64,
}

impl LocationCounters {
    /// Counts one finished request. Lock-free, allocation-free, cannot fail.
    #[inline(always)]
    pub fn record(&self, status: usize, elapsed_ms: u64) {
        self.status[status_index(status)].fetch_add(1, Relaxed);
        self.buckets[bucket_index(elapsed_ms)].fetch_add(1, Relaxed);
        self.duration_us_sum
            .fetch_add(elapsed_ms.saturating_mul(1000), Relaxed);
    }

    /// Copies every counter (used when a reload moves counters into a new zone).
    pub fn copy_from(&self, other: &LocationCounters) {
        for (d, s) in self.status.iter().zip(other.status.iter()) {
            d.store(s.load(Relaxed), Relaxed);
        }
        for (d, s) in self.buckets.iter().zip(other.buckets.iter()) {
            d.store(s.load(Relaxed), Relaxed);
        }
        self.duration_us_sum
            .store(other.duration_us_sum.load(Relaxed), Relaxed);
    }

    /// Moves every count of `other` into `self`, leaving `other` at zero. Exact while processes
    /// still add to `other`: each count lands before the swap (moved now) or after it (moved by
    /// the next call).
    pub fn move_from(&self, other: &LocationCounters) {
        let pairs = self.status.iter().zip(other.status.iter());
        let pairs = pairs.chain(self.buckets.iter().zip(other.buckets.iter()));
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
    }

    /// Zeroes every counter (a slot taken over by a new NAME).
    pub fn reset(&self) {
        self.status.iter().for_each(|c| c.store(0, Relaxed));
        self.buckets.iter().for_each(|c| c.store(0, Relaxed));
        self.duration_us_sum.store(0, Relaxed);
    }

    /// A plain copy of the counters, for rendering and window evaluation.
    pub fn snapshot(&self) -> CountersSnapshot {
        let mut s = CountersSnapshot {
            status: [0; STATUS_SLOTS],
            buckets: [0; BUCKETS],
            duration_us_sum: self.duration_us_sum.load(Relaxed),
        };
        for (d, c) in s.status.iter_mut().zip(self.status.iter()) {
            *d = c.load(Relaxed);
        }
        for (d, c) in s.buckets.iter_mut().zip(self.buckets.iter()) {
            *d = c.load(Relaxed);
        }
        s
    }
}

/// A point-in-time copy of [`LocationCounters`].
#[derive(Clone, Debug, PartialEq)]
pub struct CountersSnapshot {
    /// Responses per status slot.
    pub status: [u64; STATUS_SLOTS],
    /// Non-cumulative histogram buckets.
    pub buckets: [u64; BUCKETS],
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

    fn zeroed() -> Box<LocationCounters> {
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
    fn counters_do_not_share_cache_lines() {
        assert_eq!(core::mem::align_of::<LocationCounters>(), 64);
        assert_eq!(core::mem::size_of::<LocationCounters>() % 64, 0);
    }
}
