//! Directive value syntax, as nginx writes it: times, sizes, percentages, NAMEs and URLs, and
//! the error every directive's parsing reports. Pure Rust, no nginx types; the parameters of
//! each directive are parsed in `alert_params`, `destination` and `probe_spec`.
//!
//! Errors are worded like nginx's own (`invalid value "x" ...`) and are printed by the
//! configuration glue as `status_alert: <error>` with nginx's `in file:line` suffix.

use thiserror::Error;

/// Longest NAME accepted by `status_alert` and `name=`.
pub const MAX_NAME_LEN: usize = 64;
/// Longest window accepted (`window=`).
pub const MAX_WINDOW_MS: u64 = 24 * 3600 * 1000;
/// Default `status_alert_interval`.
pub const DEFAULT_INTERVAL_MS: u64 = 10_000;

/// A directive value that could not be accepted.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ParamError {
    /// `key=value` with an unknown key, or a bare word where `key=value` was expected.
    #[error("invalid parameter \"{0}\"")]
    UnknownParameter(String),
    /// The same `key=` given twice.
    #[error("duplicate parameter \"{0}\"")]
    Duplicate(String),
    /// A value that does not parse or is out of range.
    #[error("invalid {key} value \"{value}\", expected {expected}")]
    Invalid {
        /// Parameter name, e.g. `window`.
        key: String,
        /// The raw value as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// A NAME with forbidden characters or length.
    #[error(
        "invalid name \"{0}\", expected 1-{max} letters, digits, \".\", \"_\", \"-\" or \"/\"",
        max = MAX_NAME_LEN
    )]
    InvalidName(String),
    /// Parameters that are each valid but do not fit together; the message says how.
    #[error("{0}")]
    Conflict(String),
    /// A bad part of a compound value, e.g. the percentile of `latency=p100:1s`.
    #[error("invalid {what} \"{part}\" in \"{arg}\", expected {expected}")]
    InvalidPart {
        /// What the part is, e.g. `percentile`.
        what: &'static str,
        /// The part as written, e.g. `p100`.
        part: String,
        /// The whole argument, e.g. `latency=p100:1s`.
        arg: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// The file named by `file=` could not be read.
    #[error("cannot read {what} URL from \"{path}\": {reason}")]
    UnreadableFile {
        /// What the file holds, e.g. `webhook`.
        what: &'static str,
        /// The file, as resolved.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// The file named by `file=` holds a value that is not accepted.
    #[error("{error} (read from \"{path}\")")]
    InFile {
        /// What is wrong with the value.
        error: Box<ParamError>,
        /// The file as written.
        path: String,
    },
}

pub(super) fn invalid(key: &str, value: &str, expected: &str) -> ParamError {
    ParamError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// Units of nginx time syntax, most significant first, in milliseconds. As in nginx's
/// millisecond directives, `y` is not accepted.
pub(crate) const TIME_UNITS: [(&str, u64); 7] = [
    ("M", 30 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses nginx time syntax to milliseconds: `500ms`, `10s`, `5m`, `1h30m`, `"1h 30m"`; units in
/// order from the most to the least significant, each at most once, optionally separated by
/// spaces; a number without a unit, alone or last, is seconds.
pub fn parse_time_ms(value: &str) -> Option<u64> {
    let bytes = value.as_bytes();
    let mut total: u64 = 0;
    let mut next_unit = 0; // index into TIME_UNITS of the first unit still allowed
    let mut i = 0;
    if bytes.is_empty() {
        return None;
    }
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        let n: u64 = value[start..i].parse().ok()?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let factor = if unit_start == i {
            if i != bytes.len() {
                return None; // "5 m": a space may follow a unit, not a number
            }
            1000
        } else {
            let unit = &value[unit_start..i];
            let at = TIME_UNITS.iter().position(|(u, _)| *u == unit)?;
            if at < next_unit {
                return None; // out of order or repeated: "5m1h", "1s1s"
            }
            next_unit = at + 1;
            TIME_UNITS[at].1
        };
        total = total.checked_add(n.checked_mul(factor)?)?;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
    }
    Some(total)
}

/// Parses a duration: nginx time syntax (see [`parse_time_ms`]), or a decimal number with one
/// unit (`2.5s`, `0.5m`) as in the default `status_alert_buckets`; the result must be whole
/// milliseconds.
pub fn parse_duration_ms(value: &str) -> Option<u64> {
    if let Some(ms) = parse_time_ms(value) {
        return Some(ms);
    }
    let unit_at = value.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = value.split_at(unit_at);
    let (whole, frac) = number.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) || frac.len() > 9 {
        return None;
    }
    let factor = TIME_UNITS.iter().find(|(u, _)| *u == unit)?.1;
    // whole.frac x factor, exactly: (whole * 10^k + frac) * factor / 10^k.
    let scale = 10u128.pow(frac.len() as u32);
    let n = whole.parse::<u128>().ok()? * scale + frac.parse::<u128>().ok()?;
    let product = n.checked_mul(u128::from(factor))?;
    (product % scale == 0)
        .then(|| u64::try_from(product / scale).ok())
        .flatten()
}

/// Parses nginx size syntax (`512`, `64k`, `16m`, `1g`) to bytes.
pub fn parse_size(value: &str) -> Option<usize> {
    let (digits, factor) = match value.as_bytes().last()? {
        b'k' | b'K' => (&value[..value.len() - 1], 1024),
        b'm' | b'M' => (&value[..value.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&value[..value.len() - 1], 1024 * 1024 * 1024),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(factor)
}

/// Parses a plain decimal number as written in a configuration: digits with at most one
/// `.` between digits (`5`, `12.5`; not `.5`, `5.`, `+5`, `1e3`). Shared by every percentage.
pub fn parse_decimal(number: &str) -> Option<f64> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = match number.split_once('.') {
        Some((whole, frac)) => digits(whole) && digits(frac),
        None => digits(number),
    };
    number.parse::<f64>().ok().filter(|_| well_formed)
}

/// Parses a percentage such as `5%`, `12.5%` or `7` into (0, 100].
pub fn parse_percent(key: &str, value: &str) -> Result<f64, ParamError> {
    let number = value.strip_suffix('%').unwrap_or(value);
    match parse_decimal(number) {
        Some(p) if p > 0.0 && p <= 100.0 => Ok(p),
        _ => Err(invalid(key, value, "a percentage in (0, 100], e.g. \"5%\"")),
    }
}

/// Checks a NAME: 1-64 bytes of letters, digits, `.`, `_`, `-`, `/`.
pub fn validate_name(name: &str) -> Result<(), ParamError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'));
    if ok {
        Ok(())
    } else {
        Err(ParamError::InvalidName(name.to_string()))
    }
}

/// Checks that a `link=`/`runbook=` value is an absolute http(s) URL without spaces.
pub fn validate_url(key: &str, value: &str) -> Result<(), ParamError> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !value.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Ok(())
        }
        _ => Err(invalid(key, value, "an http:// or https:// URL")),
    }
}

/// Formats a percentage without trailing zeros (`5%`, `12.5%`).
pub fn fmt_pct(p: f64) -> String {
    format!("{}%", crate::vocab::text::fmt_pct(p))
}

/// Parses `status_alert_interval TIME` (at least 1s).
pub fn parse_interval(value: &str) -> Result<u64, ParamError> {
    parse_time_ms(value)
        .filter(|ms| *ms >= 1000 && *ms <= MAX_WINDOW_MS)
        .ok_or_else(|| invalid("interval", value, "a time between 1s and 24h"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_syntax() {
        assert_eq!(parse_time_ms("10"), Some(10_000));
        assert_eq!(parse_time_ms("10s"), Some(10_000));
        assert_eq!(parse_time_ms("500ms"), Some(500));
        assert_eq!(parse_time_ms("5m"), Some(300_000));
        assert_eq!(parse_time_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_time_ms("1d"), Some(86_400_000));
        assert_eq!(parse_time_ms("1h 30m"), Some(5_400_000));
        assert_eq!(parse_time_ms("1m 30"), Some(90_000));
        assert_eq!(parse_time_ms("1s 500ms"), Some(1_500));
        assert_eq!(parse_time_ms("2w1d"), Some(15 * 86_400_000));
        assert_eq!(parse_time_ms("1M"), Some(30 * 86_400_000));
        for bad in [
            "",
            " ",
            "s",
            "5x",
            "-1s",
            "1.5s",
            "5 m",
            " 5s",
            "5m1h",
            "1s1s",
            "500ms1s",
            "1y",
            "99999999999999999999s",
            "99999999999M",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn size_syntax() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("64k"), Some(65536));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        for bad in ["", "k", "1.5m", "-1", "10x"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn percent() {
        assert_eq!(parse_percent("warn", "5%"), Ok(5.0));
        assert_eq!(parse_percent("warn", "12.5%"), Ok(12.5));
        assert_eq!(parse_percent("warn", "100"), Ok(100.0));
        for bad in ["0%", "0", "100.1%", "-5%", "abc", "%", "1e1", "5..0", ""] {
            assert!(parse_percent("warn", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        for ok in [
            "be",
            "api.v2",
            "ai_service-1",
            "shop/checkout",
            &"a".repeat(64),
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "x\"y", "é", &"a".repeat(65), "a;b", "a{b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_with_decimals() {
        assert_eq!(parse_duration_ms("2.5s"), Some(2500));
        assert_eq!(parse_duration_ms("0.5m"), Some(30_000));
        assert_eq!(parse_duration_ms("1.5ms"), None, "not whole milliseconds");
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        for bad in ["2.5", ".5s", "5.s", "2.5x", "1.5.5s", "2.5s1ms", ""] {
            assert_eq!(parse_duration_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn pct_formatting() {
        assert_eq!(fmt_pct(5.0), "5%");
        assert_eq!(fmt_pct(12.5), "12.5%");
        assert_eq!(fmt_pct(0.125), "0.125%");
    }
}
