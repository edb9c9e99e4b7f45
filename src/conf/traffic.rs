//! `traffic=WARN[:CRIT]` of `status_alert NAME`: alert when a NAME's traffic drops.
//!
//! Each threshold is an absolute number of requests per `window` (`traffic=100:10`) or a
//! percentage of the NAME's usual traffic, the median of its last 12 windows
//! (`traffic=50%:10%`). A drop *below* a threshold alerts, so CRIT must be below WARN. The two
//! may mix (`traffic=50%:5`: warn at half the usual traffic, critical below 5 requests): the
//! order of a percentage and a count depends on the traffic, so it is only checked when both
//! are of one kind. The types are the vocabulary's (`vocab::traffic`), the evaluation is in
//! `evaluate::traffic`; `parse_alert_params` calls [`parse_traffic`].

use crate::conf::params::{parse_decimal, ParamError};
pub use crate::vocab::traffic::{TrafficParams, TrafficThreshold};

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
        // 100% would be the median itself: half of all windows are below it.
        return parse_decimal(number)
            .filter(|p| *p > 0.0 && *p < 100.0)
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
