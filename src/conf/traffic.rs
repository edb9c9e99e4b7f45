//! `traffic=WARN[:CRIT]` of `status_alert NAME` (SPEC 14): alert when a NAME's traffic drops.
//!
//! Each threshold is an absolute number of requests per `window` (`traffic=100:10`) or a
//! percentage of the NAME's usual traffic, the median of its last 12 windows
//! (`traffic=50%:10%`). A drop *below* a threshold alerts, so CRIT must be below WARN. The two
//! may mix (`traffic=50%:5`: warn at half the usual traffic, critical below 5 requests): the
//! order of a percentage and a count depends on the traffic, so it is only checked when both
//! are of one kind. The evaluation is in `evaluate::traffic`.
//!
//! Depends only on [`ParamError`] and [`fmt_pct`] of `conf::params`, so that the errors read
//! like every other `status_alert` parameter error. Wiring: `parse_alert_params` gets
//! `"traffic" => p.traffic = Some(parse_traffic(value, arg)?)`.

use core::fmt;

use crate::conf::params::{fmt_pct, ParamError};

/// One threshold of `traffic=`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TrafficThreshold {
    /// Fewer requests than this in the window alert; applies from the first whole window.
    Requests(u64),
    /// Fewer requests than this percentage (in (0, 100)) of the usual traffic alert; applies
    /// once 12 windows are known.
    Percent(f64),
}

impl fmt::Display for TrafficThreshold {
    /// As written in the configuration: `100`, `50%`, `12.5%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrafficThreshold::Requests(n) => write!(f, "{n}"),
            TrafficThreshold::Percent(p) => f.write_str(&fmt_pct(*p)),
        }
    }
}

/// `traffic=WARN[:CRIT]`: the thresholds of a traffic drop.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrafficParams {
    /// WARNING below this.
    pub warn: TrafficThreshold,
    /// CRITICAL below this; `None` when only WARN is given.
    pub crit: Option<TrafficThreshold>,
}

impl TrafficParams {
    /// True when a threshold is a percentage (it waits for 12 windows of history).
    pub fn uses_percent(&self) -> bool {
        core::iter::once(self.warn)
            .chain(self.crit)
            .any(|t| matches!(t, TrafficThreshold::Percent(_)))
    }
}

const EXPECTED_THRESHOLD: &str =
    "a request count such as \"100\" or a percentage in (0, 100) such as \"50%\"";
const EXPECTED_SHAPE: &str = "WARN[:CRIT], e.g. \"50%:10%\" or \"100:10\"";

/// Parses the value of `traffic=WARN[:CRIT]`; `arg` is the whole argument, for errors.
pub fn parse_traffic(value: &str, arg: &str) -> Result<TrafficParams, ParamError> {
    let part_error = |what, part: &str, expected| ParamError::InvalidPart {
        what,
        part: part.to_string(),
        arg: arg.to_string(),
        expected,
    };
    let mut parts = value.split(':');
    let warn = parts.next().unwrap_or_default();
    let crit = parts.next();
    if parts.next().is_some() {
        return Err(part_error("traffic", value, EXPECTED_SHAPE));
    }
    let threshold = |part: &str| {
        parse_threshold(part).ok_or_else(|| part_error("threshold", part, EXPECTED_THRESHOLD))
    };
    let warn = threshold(warn)?;
    let crit = crit.map(threshold).transpose()?;
    let ordered = match (warn, crit) {
        (TrafficThreshold::Requests(w), Some(TrafficThreshold::Requests(c))) => c < w,
        (TrafficThreshold::Percent(w), Some(TrafficThreshold::Percent(c))) => c < w,
        _ => true,
    };
    if !ordered {
        return Err(ParamError::Conflict(format!(
            "the critical threshold must be below the warning threshold in \"{arg}\" (a drop \
             below them alerts)"
        )));
    }
    Ok(TrafficParams { warn, crit })
}

/// `100` -> requests, `50%` / `12.5%` -> percent; `None` for anything else, 0 and 100%.
fn parse_threshold(part: &str) -> Option<TrafficThreshold> {
    if let Some(number) = part.strip_suffix('%') {
        let well_formed = !number.is_empty()
            && !number.starts_with('.')
            && !number.ends_with('.')
            && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && number.bytes().filter(|b| *b == b'.').count() <= 1;
        // 100% would be the median itself: half of all windows are below it.
        return number
            .parse::<f64>()
            .ok()
            .filter(|p| well_formed && *p > 0.0 && *p < 100.0)
            .map(TrafficThreshold::Percent);
    }
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // 0 could never fire: no window has fewer than 0 requests.
    part.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(TrafficThreshold::Requests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use TrafficThreshold::{Percent, Requests};

    fn parse(value: &str) -> Result<TrafficParams, String> {
        parse_traffic(value, &format!("traffic={value}")).map_err(|e| e.to_string())
    }

    #[test]
    fn counts_percentages_and_mixtures() {
        let cases = [
            ("100", Requests(100), None),
            ("100:10", Requests(100), Some(Requests(10))),
            ("50%", Percent(50.0), None),
            ("50%:10%", Percent(50.0), Some(Percent(10.0))),
            ("12.5%:0.5%", Percent(12.5), Some(Percent(0.5))),
            ("1", Requests(1), None),
            // Mixed: the order depends on the traffic, so it is not checked.
            ("50%:5", Percent(50.0), Some(Requests(5))),
            ("5:50%", Requests(5), Some(Percent(50.0))),
            ("99.9%", Percent(99.9), None),
        ];
        for (value, warn, crit) in cases {
            assert_eq!(parse(value), Ok(TrafficParams { warn, crit }), "{value}");
        }
        assert!(parse("50%:5").unwrap().uses_percent());
        assert!(parse("100:5%").unwrap().uses_percent());
        assert!(!parse("100:5").unwrap().uses_percent());
        assert_eq!(Percent(12.5).to_string(), "12.5%");
        assert_eq!(Requests(100).to_string(), "100");
    }

    #[test]
    fn errors_name_the_part_and_the_argument() {
        let cases = [
            (
                "",
                "invalid threshold \"\" in \"traffic=\", expected a request count such as \"100\" \
                 or a percentage in (0, 100) such as \"50%\"",
            ),
            ("0", "invalid threshold \"0\" in \"traffic=0\""),
            ("0%", "invalid threshold \"0%\" in \"traffic=0%\""),
            ("100%", "invalid threshold \"100%\" in \"traffic=100%\""),
            ("150%", "invalid threshold \"150%\""),
            ("-5", "invalid threshold \"-5\""),
            ("+5", "invalid threshold \"+5\""),
            ("5.5", "invalid threshold \"5.5\""),
            (".5%", "invalid threshold \".5%\""),
            ("5.%", "invalid threshold \"5.%\""),
            ("1.2.3%", "invalid threshold \"1.2.3%\""),
            ("lots", "invalid threshold \"lots\""),
            ("50%:", "invalid threshold \"\" in \"traffic=50%:\""),
            (
                "99999999999999999999999",
                "invalid threshold \"99999999999999999999999\"",
            ),
            (
                "50%:10%:1%",
                "invalid traffic \"50%:10%:1%\" in \"traffic=50%:10%:1%\", expected \
                 WARN[:CRIT], e.g. \"50%:10%\" or \"100:10\"",
            ),
            (
                "10%:50%",
                "the critical threshold must be below the warning threshold in \
                 \"traffic=10%:50%\" (a drop below them alerts)",
            ),
            (
                "10:100",
                "the critical threshold must be below the warning threshold",
            ),
            (
                "10:10",
                "the critical threshold must be below the warning threshold",
            ),
            (
                "10%:10%",
                "the critical threshold must be below the warning threshold",
            ),
        ];
        for (value, msg) in cases {
            let err = parse(value).unwrap_err();
            assert!(err.starts_with(msg), "{value}: {err}");
        }
    }
}
