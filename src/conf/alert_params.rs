//! The parameters of `status_alert NAME [warn=] [crit=] [window=] [min_requests=] [repeat=]
//! [link=] [runbook=] [latency=] [slo=] [traffic=]` and of `status_alert_buckets`, and the checks that need
//! the rest of the `http` block. Pure Rust, no nginx types.

use super::params::{
    fmt_pct, invalid, parse_duration_ms, parse_percent, parse_time_ms, validate_url, ParamError,
    MAX_WINDOW_MS,
};
use super::traffic::{parse_traffic, TrafficParams};
use crate::zone::counters::MAX_BUCKET_BOUNDS;

/// The parameters of one `status_alert NAME ...` directive.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertParams {
    /// Warning threshold in percent; `None` with `warn=off`.
    pub warn_pct: Option<f64>,
    /// Critical threshold in percent.
    pub crit_pct: f64,
    /// Sliding window length.
    pub window_ms: u64,
    /// Fewer requests than this in the window count as healthy.
    pub min_requests: u64,
    /// Re-post a firing alert this often; `None` with `repeat=off`.
    pub repeat_ms: Option<u64>,
    /// Logs dashboard URL.
    pub link: Option<String>,
    /// Runbook URL.
    pub runbook: Option<String>,
    /// Percentile alert from `latency=`.
    pub latency: Option<LatencyParams>,
    /// Availability objective in percent from `slo=`, e.g. 99.9.
    pub slo_pct: Option<f64>,
    /// Traffic-drop thresholds from `traffic=`.
    pub traffic: Option<TrafficParams>,
}

/// `latency=pQ:WARN[:CRIT]`: alert when the Q-th percentile of request time reaches a threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyParams {
    /// The percentile in tenths of a percent: 950 for `p95`, 999 for `p99.9`.
    pub permille: u16,
    /// WARNING at or above this request time.
    pub warn_ms: u64,
    /// CRITICAL at or above this request time; `None` when only WARN is given.
    pub crit_ms: Option<u64>,
}

impl LatencyParams {
    /// The quantile as a fraction, 0.95 for `p95`.
    pub fn quantile(&self) -> f64 {
        f64::from(self.permille) / 1000.0
    }

    /// The percentile as written in titles: `p95`, `p99.9`.
    pub fn label(&self) -> String {
        match self.permille % 10 {
            0 => format!("p{}", self.permille / 10),
            d => format!("p{}.{d}", self.permille / 10),
        }
    }

    /// The Prometheus `quantile` label: `0.95`, `0.999`.
    pub fn quantile_label(&self) -> String {
        let s = format!("0.{:03}", self.permille);
        s.trim_end_matches('0').to_string()
    }
}

impl Default for AlertParams {
    fn default() -> Self {
        AlertParams {
            warn_pct: Some(5.0),
            crit_pct: 10.0,
            window_ms: 5 * 60 * 1000,
            min_requests: 20,
            repeat_ms: Some(30 * 60 * 1000),
            link: None,
            runbook: None,
            latency: None,
            slo_pct: None,
            traffic: None,
        }
    }
}

/// Lowest percentile `latency=` accepts, in tenths of a percent.
const MIN_PERMILLE: u16 = 500;
/// Highest percentile `latency=` accepts, in tenths of a percent.
const MAX_PERMILLE: u16 = 999;

/// Parses the value of `latency=pQ:WARN[:CRIT]`; `arg` is the whole argument, for errors.
pub fn parse_latency(value: &str, arg: &str) -> Result<LatencyParams, ParamError> {
    let part_error = |what, part: &str, expected| ParamError::InvalidPart {
        what,
        part: part.to_string(),
        arg: arg.to_string(),
        expected,
    };
    let mut parts = value.split(':');
    let q = parts.next().unwrap_or_default();
    let permille = q
        .strip_prefix('p')
        .and_then(parse_permille)
        .filter(|p| (MIN_PERMILLE..=MAX_PERMILLE).contains(p))
        .ok_or_else(|| part_error("percentile", q, "p50 to p99.9"))?;
    let time = |part: Option<&str>| -> Result<Option<u64>, ParamError> {
        let Some(part) = part else {
            return Ok(None);
        };
        parse_duration_ms(part)
            .filter(|ms| (1..=MAX_WINDOW_MS).contains(ms))
            .map(Some)
            .ok_or_else(|| part_error("time", part, "a time between 1ms and 24h, e.g. \"500ms\""))
    };
    let Some(warn_ms) = time(parts.next())? else {
        return Err(part_error(
            "latency",
            value,
            "pQ:WARN[:CRIT], e.g. \"p95:500ms:2s\"",
        ));
    };
    let crit_ms = time(parts.next())?;
    if parts.next().is_some() {
        return Err(part_error(
            "latency",
            value,
            "pQ:WARN[:CRIT], e.g. \"p95:500ms:2s\"",
        ));
    }
    if crit_ms.is_some_and(|crit| crit <= warn_ms) {
        return Err(ParamError::Conflict(format!(
            "the warning time must be below the critical time in \"{arg}\""
        )));
    }
    Ok(LatencyParams {
        permille,
        warn_ms,
        crit_ms,
    })
}

/// `95` -> 950, `99.9` -> 999: digits with at most one decimal.
fn parse_permille(q: &str) -> Option<u16> {
    let (whole, tenth) = match q.split_once('.') {
        Some((w, t)) if t.len() == 1 => (w, t),
        Some(_) => return None,
        None => (q, "0"),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(tenth) {
        return None;
    }
    Some(whole.parse::<u16>().ok()? * 10 + tenth.parse::<u16>().ok()?)
}

/// Parses `slo=PCT`: a decimal percentage strictly between 0 and 100, e.g. `99.9%`.
pub fn parse_slo(value: &str) -> Result<f64, ParamError> {
    parse_percent("slo", value)
        .ok()
        .filter(|p| *p < 100.0)
        .ok_or_else(|| invalid("slo", value, "a percentage in (0, 100), e.g. \"99.9%\""))
}

/// Parses the values of `status_alert_buckets TIME ...`: 1 to 30 increasing times.
pub fn parse_buckets<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Vec<u64>, ParamError> {
    let mut bounds: Vec<u64> = Vec::new();
    let mut previous = "";
    for arg in args {
        let ms = parse_duration_ms(arg)
            .filter(|ms| (1..=MAX_WINDOW_MS).contains(ms))
            .ok_or_else(|| invalid("bucket", arg, "a time between 1ms and 24h, e.g. \"250ms\""))?;
        if bounds.last().is_some_and(|last| ms <= *last) {
            return Err(ParamError::Conflict(format!(
                "bucket \"{arg}\" is not above \"{previous}\", buckets must increase"
            )));
        }
        if bounds.len() == MAX_BUCKET_BOUNDS {
            return Err(ParamError::Conflict(format!(
                "too many buckets, at most {MAX_BUCKET_BOUNDS}"
            )));
        }
        bounds.push(ms);
        previous = arg;
    }
    if bounds.is_empty() {
        return Err(ParamError::Conflict(
            "at least one bucket is needed".to_string(),
        ));
    }
    Ok(bounds)
}

/// Checks `latency=` thresholds against the histogram: an estimate never exceeds the highest
/// finite bucket bound, so a threshold above it could never fire.
pub fn check_latency_buckets(latency: &LatencyParams, bounds_ms: &[u64]) -> Result<(), ParamError> {
    let highest = bounds_ms.last().copied().unwrap_or(0);
    let top = latency.crit_ms.unwrap_or(latency.warn_ms);
    if top > highest {
        return Err(ParamError::Conflict(format!(
            "latency={}: {}ms is above the highest bucket ({}ms) of status_alert_buckets and \
             could never be reached",
            latency.label(),
            top,
            highest
        )));
    }
    Ok(())
}

/// Parses the arguments after NAME of `status_alert NAME [key=value ...]`.
pub fn parse_alert_params<'a>(
    args: impl IntoIterator<Item = &'a str>,
) -> Result<AlertParams, ParamError> {
    let mut p = AlertParams::default();
    let mut seen: Vec<&str> = Vec::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(ParamError::UnknownParameter(arg.to_string()));
        };
        if seen.contains(&key) {
            return Err(ParamError::Duplicate(key.to_string()));
        }
        match key {
            "warn" if value == "off" => p.warn_pct = None,
            "warn" => p.warn_pct = Some(parse_percent(key, value)?),
            "crit" => p.crit_pct = parse_percent(key, value)?,
            "window" => {
                p.window_ms = parse_time_ms(value)
                    .filter(|ms| *ms >= 1000 && *ms <= MAX_WINDOW_MS)
                    .ok_or_else(|| invalid(key, value, "a time between 1s and 24h"))?;
            }
            "min_requests" => {
                p.min_requests = value
                    .parse::<u64>()
                    .ok()
                    .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| invalid(key, value, "a non-negative integer"))?;
            }
            "repeat" if value == "off" => p.repeat_ms = None,
            "repeat" => {
                p.repeat_ms = Some(
                    parse_time_ms(value)
                        .filter(|ms| *ms >= 1000)
                        .ok_or_else(|| invalid(key, value, "a time of at least 1s, or \"off\""))?,
                );
            }
            "link" => {
                validate_url(key, value)?;
                p.link = Some(value.to_string());
            }
            "runbook" => {
                validate_url(key, value)?;
                p.runbook = Some(value.to_string());
            }
            "latency" => p.latency = Some(parse_latency(value, arg)?),
            "slo" => p.slo_pct = Some(parse_slo(value)?),
            "traffic" => p.traffic = Some(parse_traffic(value, arg)?),
            _ => return Err(ParamError::UnknownParameter(arg.to_string())),
        }
        seen.push(key);
    }
    if let Some(warn) = p.warn_pct {
        if warn >= p.crit_pct {
            return Err(ParamError::Conflict(format!(
                "warn={} must be below crit={}",
                fmt_pct(warn),
                fmt_pct(p.crit_pct)
            )));
        }
    }
    Ok(p)
}

/// Checks the window against the evaluation interval: at least two evaluations per window.
pub fn check_window(window_ms: u64, interval_ms: u64) -> Result<(), ParamError> {
    if window_ms < 2 * interval_ms {
        return Err(ParamError::Conflict(format!(
            "window={}ms must be at least 2 x status_alert_interval ({}ms)",
            window_ms, interval_ms
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::params::parse_interval;

    #[test]
    fn alert_defaults() {
        let p = parse_alert_params([]).unwrap();
        assert_eq!(p, AlertParams::default());
        assert_eq!(p.warn_pct, Some(5.0));
        assert_eq!(p.crit_pct, 10.0);
        assert_eq!(p.window_ms, 300_000);
        assert_eq!(p.min_requests, 20);
        assert_eq!(p.repeat_ms, Some(1_800_000));
    }

    #[test]
    fn alert_all_params() {
        let p = parse_alert_params([
            "warn=2%",
            "crit=20.5%",
            "window=10s",
            "min_requests=0",
            "repeat=off",
            "link=https://logs.example.com/be",
            "runbook=http://wiki/be",
        ])
        .unwrap();
        assert_eq!(p.warn_pct, Some(2.0));
        assert_eq!(p.crit_pct, 20.5);
        assert_eq!(p.window_ms, 10_000);
        assert_eq!(p.min_requests, 0);
        assert_eq!(p.repeat_ms, None);
        assert_eq!(p.link.as_deref(), Some("https://logs.example.com/be"));
        assert_eq!(p.runbook.as_deref(), Some("http://wiki/be"));
        assert_eq!(parse_alert_params(["warn=off"]).unwrap().warn_pct, None);
    }

    #[test]
    fn alert_bad_params() {
        let cases = [
            (vec!["foo=1"], "invalid parameter \"foo=1\""),
            (vec!["bare"], "invalid parameter \"bare\""),
            (vec!["warn=1%", "warn=2%"], "duplicate parameter \"warn\""),
            (vec!["warn=abc"], "invalid warn value \"abc\""),
            (vec!["crit=0%"], "invalid crit value \"0%\""),
            (vec!["window=0s"], "invalid window value \"0s\""),
            (vec!["window=25h"], "invalid window value \"25h\""),
            (vec!["min_requests=-1"], "invalid min_requests value \"-1\""),
            (vec!["min_requests=+1"], "invalid min_requests value \"+1\""),
            (vec!["repeat=never"], "invalid repeat value \"never\""),
            (vec!["link=ftp://x"], "invalid link value \"ftp://x\""),
            (
                vec!["runbook=https://"],
                "invalid runbook value \"https://\"",
            ),
            (
                vec!["warn=10%", "crit=10%"],
                "warn=10% must be below crit=10%",
            ),
            (vec!["warn=20%"], "warn=20% must be below crit=10%"),
        ];
        for (args, msg) in cases {
            let err = parse_alert_params(args.iter().copied())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(msg), "{args:?}: {err}");
        }
    }

    #[test]
    fn interval_and_window() {
        assert_eq!(parse_interval("1s"), Ok(1000));
        assert!(parse_interval("500ms").is_err());
        assert!(parse_interval("x").is_err());
        assert!(check_window(20_000, 10_000).is_ok());
        let err = check_window(10_000, 10_000).unwrap_err().to_string();
        assert!(err.contains("at least 2 x status_alert_interval"), "{err}");
    }

    #[test]
    fn latency_and_slo_params() {
        let p = parse_alert_params(["latency=p95:500ms:2s", "slo=99.9%"]).unwrap();
        let l = p.latency.unwrap();
        assert_eq!((l.permille, l.warn_ms, l.crit_ms), (950, 500, Some(2000)));
        assert_eq!(
            (l.label(), l.quantile_label()),
            ("p95".into(), "0.95".into())
        );
        assert!((l.quantile() - 0.95).abs() < 1e-12);
        assert_eq!(p.slo_pct, Some(99.9));
        let l = parse_latency("p99.9:1.5s", "latency=p99.9:1.5s").unwrap();
        assert_eq!((l.permille, l.warn_ms, l.crit_ms), (999, 1500, None));
        assert_eq!(
            (l.label(), l.quantile_label()),
            ("p99.9".into(), "0.999".into())
        );
        let l = parse_latency("p50:1s", "latency=p50:1s").unwrap();
        assert_eq!(
            (l.label(), l.quantile_label()),
            ("p50".into(), "0.5".into())
        );
        assert_eq!(parse_slo("99"), Ok(99.0));
        assert_eq!(parse_slo("0.5%"), Ok(0.5));
        assert_eq!(AlertParams::default().latency, None);
        assert_eq!(AlertParams::default().slo_pct, None);
    }

    #[test]
    fn traffic_param() {
        use crate::conf::traffic::TrafficThreshold::{Percent, Requests};
        let p = parse_alert_params(["traffic=50%:5", "min_requests=100"]).unwrap();
        let t = p.traffic.unwrap();
        assert_eq!((t.warn, t.crit), (Percent(50.0), Some(Requests(5))));
        assert_eq!(AlertParams::default().traffic, None);
        let err = parse_alert_params(["traffic=1", "traffic=2"]).unwrap_err();
        assert_eq!(err, ParamError::Duplicate("traffic".into()));
        let err = parse_alert_params(["traffic=.5%"]).unwrap_err().to_string();
        assert!(
            err.starts_with("invalid threshold \".5%\" in \"traffic=.5%\""),
            "{err}"
        );
        // The percentages of warn= and crit= are written alike.
        for bad in ["warn=.5%", "crit=5.%"] {
            assert!(parse_alert_params([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn latency_and_slo_bad_params() {
        let cases = [
            (
                "latency=p100:1s",
                "invalid percentile \"p100\" in \"latency=p100:1s\", expected p50 to p99.9",
            ),
            ("latency=p49.9:1s", "invalid percentile \"p49.9\""),
            ("latency=p99.95:1s", "invalid percentile \"p99.95\""),
            ("latency=95:1s", "invalid percentile \"95\""),
            ("latency=p95", "invalid latency \"p95\" in \"latency=p95\""),
            ("latency=p95:", "invalid time \"\" in \"latency=p95:\""),
            (
                "latency=p95:fast",
                "invalid time \"fast\" in \"latency=p95:fast\"",
            ),
            ("latency=p95:0ms", "invalid time \"0ms\""),
            ("latency=p95:1s:2s:3s", "invalid latency \"p95:1s:2s:3s\""),
            (
                "latency=p95:2s:500ms",
                "the warning time must be below the critical time in \"latency=p95:2s:500ms\"",
            ),
            (
                "latency=p95:1s:1s",
                "the warning time must be below the critical time",
            ),
            (
                "slo=100%",
                "invalid slo value \"100%\", expected a percentage in (0, 100)",
            ),
            ("slo=0", "invalid slo value \"0\""),
            ("slo=high", "invalid slo value \"high\""),
        ];
        for (arg, msg) in cases {
            let err = parse_alert_params([arg]).unwrap_err().to_string();
            assert!(err.starts_with(msg), "{arg}: {err}");
        }
        let err = parse_alert_params(["slo=99%", "slo=99%"]).unwrap_err();
        assert_eq!(err, ParamError::Duplicate("slo".into()));
    }

    #[test]
    fn buckets() {
        let default = "5ms 10ms 25ms 50ms 100ms 250ms 500ms 1s 2.5s 5s 10s";
        assert_eq!(
            parse_buckets(default.split(' ')).unwrap(),
            crate::zone::counters::BUCKET_BOUNDS_MS.to_vec()
        );
        assert_eq!(parse_buckets(["1ms"]).unwrap(), vec![1]);
        let thirty: Vec<String> = (1..=30).map(|i| format!("{i}ms")).collect();
        assert_eq!(
            parse_buckets(thirty.iter().map(String::as_str))
                .unwrap()
                .len(),
            30
        );
        let thirty_one: Vec<String> = (1..=31).map(|i| format!("{i}ms")).collect();
        let cases: [(Vec<&str>, &str); 6] = [
            (vec![], "at least one bucket is needed"),
            (
                vec!["10ms", "5ms"],
                "bucket \"5ms\" is not above \"10ms\", buckets must increase",
            ),
            (
                vec!["1s", "1000ms"],
                "bucket \"1000ms\" is not above \"1s\"",
            ),
            (vec!["0ms"], "invalid bucket value \"0ms\""),
            (vec!["fast"], "invalid bucket value \"fast\""),
            (
                thirty_one.iter().map(String::as_str).collect(),
                "too many buckets, at most 30",
            ),
        ];
        for (args, msg) in cases {
            let err = parse_buckets(args.iter().copied()).unwrap_err().to_string();
            assert!(err.starts_with(msg), "{args:?}: {err}");
        }
    }

    #[test]
    fn latency_thresholds_must_be_reachable() {
        let l = parse_latency("p95:500ms:2s", "latency=p95:500ms:2s").unwrap();
        assert!(check_latency_buckets(&l, &crate::zone::counters::BUCKET_BOUNDS_MS).is_ok());
        let err = check_latency_buckets(&l, &[100, 1000])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("2000ms is above the highest bucket (1000ms)"),
            "{err}"
        );
    }
}
