//! Error-budget burn rates (`slo=`) and the level they call for, as in the Google SRE
//! workbook's multi-window, multi-burn-rate alerts.
//!
//! Four windows scale with `window`: x1, x6, x12 and x72 (5m, 30m, 1h and 6h for the default
//! `window=5m`). CRITICAL when the burn rate is at least 14.4 over both x1 and x12, WARNING when
//! at least 6 over both x6 and x72. Burn rate = 5xx share / (1 - SLO). A window with fewer than
//! `min_requests` requests is not judged. Pure: the figures come from `zone/window.rs`.

use crate::vocab::event::error_share;
use crate::vocab::event::Level;
use crate::zone::window::ErrorCounts;

/// The burn-rate windows in multiples of `window`, in the order of the metric's `window` label.
pub const BURN_FACTORS: [u64; 4] = [1, 6, 12, 72];
/// Burn rate that pages when both x1 and x12 reach it (2% of a 30-day budget in 1h).
pub const CRITICAL_BURN: f64 = 14.4;
/// Burn rate that warns when both x6 and x72 reach it (5% of a 30-day budget in 6h).
pub const WARNING_BURN: f64 = 6.0;

// Indexes into BURN_FACTORS.
const X1: usize = 0;
const X6: usize = 1;
const X12: usize = 2;
const X72: usize = 3;

/// Slack for comparisons at the threshold: 0.0144 / 0.001 is 14.399999999999999 in floats.
const EPSILON: f64 = 1e-9;

/// The four window lengths for `window_ms`.
pub fn burn_windows_ms(window_ms: u64) -> [u64; 4] {
    BURN_FACTORS.map(|f| window_ms * f)
}

/// The `window` label of a burn-rate window, e.g. `5m`, `30m`, `1h`, `6h`.
pub fn window_label(window_ms: u64) -> String {
    crate::vocab::text::format_window(window_ms / 1000)
}

/// Burn rate of the error budget: the 5xx share divided by the share the SLO allows (0 with no
/// requests).
pub fn burn_rate(errors: u64, total: u64, slo_pct: f64) -> f64 {
    let allowed = 1.0 - slo_pct / 100.0;
    if allowed <= 0.0 {
        return 0.0;
    }
    error_share(errors, total, 1.0) / allowed
}

/// Figures of the four burn-rate windows of one NAME at one evaluation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BurnWindows {
    /// Window lengths, see [`burn_windows_ms`].
    pub windows_ms: [u64; 4],
    /// Requests and 5xx responses in each window.
    pub counts: [ErrorCounts; 4],
}

impl BurnWindows {
    /// Burn rate of each window (0 for a window without requests).
    pub fn rates(&self, slo_pct: f64) -> [f64; 4] {
        self.counts.map(|c| burn_rate(c.errors, c.total, slo_pct))
    }

    /// The level these figures call for, and the burn rate to report with it: the lower of the
    /// two windows that fired (both are at least that), or the x1 rate when OK.
    pub fn level(&self, slo_pct: f64, min_requests: u64) -> (Level, f64) {
        let rates = self.rates(slo_pct);
        let judged = |i: usize| self.counts[i].total > 0 && self.counts[i].total >= min_requests;
        let both = |a: usize, b: usize, threshold: f64| {
            (judged(a) && judged(b) && rates[a].min(rates[b]) >= threshold - EPSILON)
                .then(|| rates[a].min(rates[b]))
        };
        if let Some(burn) = both(X1, X12, CRITICAL_BURN) {
            (Level::Critical, burn)
        } else if let Some(burn) = both(X6, X72, WARNING_BURN) {
            (Level::Warning, burn)
        } else {
            (Level::Ok, rates[X1])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(counts: [(u64, u64); 4]) -> BurnWindows {
        BurnWindows {
            windows_ms: burn_windows_ms(300_000),
            counts: counts.map(|(total, errors)| ErrorCounts { total, errors }),
        }
    }

    #[test]
    fn windows_and_labels_scale_with_window() {
        let w = burn_windows_ms(300_000);
        assert_eq!(w, [300_000, 1_800_000, 3_600_000, 21_600_000]);
        let labels: Vec<String> = w.iter().map(|ms| window_label(*ms)).collect();
        assert_eq!(labels, ["5m", "30m", "1h", "6h"]);
        let labels: Vec<String> = burn_windows_ms(10_000)
            .iter()
            .map(|ms| window_label(*ms))
            .collect();
        assert_eq!(labels, ["10s", "1m", "2m", "12m"]);
    }

    #[test]
    fn burn_rate_is_share_over_budget() {
        assert!((burn_rate(1, 1000, 99.9) - 1.0).abs() < 1e-9);
        assert!((burn_rate(152, 10_000, 99.9) - 15.2).abs() < 1e-9);
        assert!((burn_rate(5, 100, 95.0) - 1.0).abs() < 1e-9);
        assert_eq!(burn_rate(0, 0, 99.9), 0.0);
    }

    #[test]
    fn critical_needs_both_short_windows() {
        // 1.44% errors over 5m and 1h, with a 99.9% SLO: burn 14.4 exactly, inclusive.
        let w = windows([(10_000, 144), (60_000, 864), (120_000, 1728), (720_000, 0)]);
        let (level, burn) = w.level(99.9, 20);
        assert_eq!(level, Level::Critical);
        assert!((burn - 14.4).abs() < 1e-9);
        // A spike in the last 5m that the 1h window does not confirm: no page.
        // (5000 errors in the last 5m; 10x over 1h, 1.7x over 6h.)
        let w = windows([
            (10_000, 5000),
            (60_000, 5000),
            (500_000, 5000),
            (3_000_000, 5000),
        ]);
        assert_eq!(w.level(99.9, 20).0, Level::Ok, "10x over 1h is not enough");
        // The same spike in a quieter 6h (6.9x): the long pair warns.
        let w = windows([
            (10_000, 5000),
            (60_000, 5000),
            (500_000, 5000),
            (720_000, 5000),
        ]);
        assert_eq!(w.level(99.9, 20).0, Level::Warning);
    }

    #[test]
    fn warning_needs_both_long_windows() {
        // 0.7% errors everywhere: burn 7 with a 99.9% SLO.
        let w = windows([(1000, 7), (6000, 42), (12_000, 84), (72_000, 504)]);
        let (level, burn) = w.level(99.9, 20);
        assert_eq!(level, Level::Warning);
        assert!((burn - 7.0).abs() < 1e-9);
        // The 6h window has not seen enough yet.
        let w = windows([(1000, 7), (6000, 42), (12_000, 84), (72_000, 300)]);
        assert_eq!(w.level(99.9, 20).0, Level::Ok);
    }

    #[test]
    fn min_requests_applies_to_each_window() {
        let w = windows([(19, 19), (19, 19), (19, 19), (19, 19)]);
        assert_eq!(w.level(99.9, 20).0, Level::Ok);
        assert_eq!(w.level(99.9, 0).0, Level::Critical);
        let empty = windows([(0, 0); 4]);
        assert_eq!(empty.level(99.9, 0), (Level::Ok, 0.0));
    }
}
