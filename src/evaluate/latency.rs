//! Request-time percentiles from histogram buckets, and the level they call for (`latency=`).
//!
//! The estimate is Prometheus's `histogram_quantile`: find the bucket where the cumulative count
//! reaches `q` x total, then interpolate linearly within it (the first bucket starts at 0). A rank
//! that falls into `+Inf` answers with the highest finite bound, as Prometheus does. Pure: no
//! shared memory, no nginx.

use crate::conf::alert_params::LatencyParams;
use crate::vocab::event::Level;

/// Estimates the `q`-quantile (0 < q < 1) of request time in milliseconds from non-cumulative
/// bucket `counts` (`counts[i]` for `bounds_ms[i]`, `counts[bounds_ms.len()]` for `+Inf`; slots
/// beyond are ignored). `None` with no requests.
pub fn quantile_ms(q: f64, bounds_ms: &[u64], counts: &[u64]) -> Option<f64> {
    let inf = bounds_ms.len();
    let total: u64 = counts.iter().take(inf + 1).sum();
    if total == 0 || bounds_ms.is_empty() {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, bound) in bounds_ms.iter().enumerate() {
        let n = counts.get(i).copied().unwrap_or(0);
        if (below + n) as f64 >= rank {
            let start = if i == 0 { 0.0 } else { bounds_ms[i - 1] as f64 };
            let end = *bound as f64;
            if n == 0 {
                return Some(end);
            }
            return Some(start + (end - start) * (rank - below as f64) / n as f64);
        }
        below += n;
    }
    Some(bounds_ms[inf - 1] as f64)
}

/// The level a percentile estimate calls for: CRITICAL at or above `crit_ms`, WARNING at or
/// above `warn_ms`; OK without an estimate or with fewer than `min_requests` requests.
pub fn latency_level(
    p: &LatencyParams,
    estimate_ms: Option<f64>,
    requests: u64,
    min_requests: u64,
) -> Level {
    let Some(ms) = estimate_ms else {
        return Level::Ok;
    };
    if requests == 0 || requests < min_requests {
        Level::Ok
    } else if p.crit_ms.is_some_and(|crit| ms >= crit as f64) {
        Level::Critical
    } else if ms >= p.warn_ms as f64 {
        Level::Warning
    } else {
        Level::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::counters::BUCKET_BOUNDS_MS;

    const BOUNDS: [u64; 3] = [100, 200, 400];

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn no_requests_no_estimate() {
        assert_eq!(quantile_ms(0.95, &BOUNDS, &[0, 0, 0, 0]), None);
        assert_eq!(quantile_ms(0.95, &BOUNDS, &[]), None);
        assert_eq!(quantile_ms(0.5, &[], &[3]), None);
    }

    #[test]
    fn all_in_inf_answers_the_highest_bound() {
        assert!(close(quantile_ms(0.5, &BOUNDS, &[0, 0, 0, 10]), 400.0));
        assert!(close(quantile_ms(0.99, &BOUNDS, &[0, 0, 0, 1]), 400.0));
    }

    #[test]
    fn one_bucket_interpolates_from_zero() {
        // 10 requests in (0, 100]: p50 is rank 5 of 10 -> 50ms; p95 -> 95ms.
        assert!(close(quantile_ms(0.5, &BOUNDS, &[10, 0, 0, 0]), 50.0));
        assert!(close(quantile_ms(0.95, &BOUNDS, &[10, 0, 0, 0]), 95.0));
        // Only the second bucket: interpolation between 100 and 200.
        assert!(close(quantile_ms(0.5, &BOUNDS, &[0, 4, 0, 0]), 150.0));
    }

    #[test]
    fn interpolation_across_buckets() {
        // 60 in (0,100], 30 in (100,200], 10 in (200,400]; total 100.
        let counts = [60, 30, 10, 0];
        // p50: rank 50 in the first bucket -> 100 * 50/60.
        assert!(close(
            quantile_ms(0.5, &BOUNDS, &counts),
            100.0 * 50.0 / 60.0
        ));
        // p90: rank 90 = cumulative of bucket 2 exactly -> its upper bound.
        assert!(close(quantile_ms(0.9, &BOUNDS, &counts), 200.0));
        // p95: rank 95, 5 of the 10 in (200,400] -> 300.
        assert!(close(quantile_ms(0.95, &BOUNDS, &counts), 300.0));
        // p99.9 -> 200 + 200 * 9.9/10.
        assert!(close(quantile_ms(0.999, &BOUNDS, &counts), 398.0));
        // Empty buckets in between are skipped: 1 in (0,100], 1 in (200,400].
        assert!(close(quantile_ms(0.75, &BOUNDS, &[1, 0, 1, 0]), 300.0));
        // A rank past every finite bucket lands in +Inf.
        assert!(close(quantile_ms(0.95, &BOUNDS, &[90, 0, 0, 10]), 400.0));
        // The default bounds: 100 requests in (1s, 2.5s] -> p95 is 1000 + 1500 * 0.95.
        let mut c = [0u64; 12];
        c[8] = 100;
        assert!(close(quantile_ms(0.95, &BUCKET_BOUNDS_MS, &c), 2425.0));
    }

    #[test]
    fn slots_above_inf_are_ignored() {
        let mut counts = [0u64; 31];
        counts[0] = 10;
        counts[30] = 1000; // never written for 3 bounds; must not count
        assert!(close(quantile_ms(0.5, &BOUNDS, &counts), 50.0));
    }

    #[test]
    fn levels() {
        let p = LatencyParams {
            permille: 950,
            warn_ms: 500,
            crit_ms: Some(2000),
        };
        assert_eq!(latency_level(&p, Some(499.9), 100, 20), Level::Ok);
        assert_eq!(latency_level(&p, Some(500.0), 100, 20), Level::Warning);
        assert_eq!(latency_level(&p, Some(2000.0), 100, 20), Level::Critical);
        assert_eq!(
            latency_level(&p, Some(5000.0), 19, 20),
            Level::Ok,
            "min_requests"
        );
        assert_eq!(latency_level(&p, None, 100, 20), Level::Ok);
        let warn_only = LatencyParams { crit_ms: None, ..p };
        assert_eq!(latency_level(&warn_only, Some(1e9), 100, 0), Level::Warning);
    }
}
