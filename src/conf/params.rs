//! Directive value parsing: pure Rust, no nginx types.
//!
//! Errors are worded like nginx's own (`invalid value "x" ...`) and are printed by the
//! configuration glue as `status_alert: <error>` with nginx's `in file:line` suffix.

use core::fmt;

use crate::vocab::redact::redact_for_error;
use crate::zone::counters::MAX_BUCKET_BOUNDS;

/// Longest NAME accepted by `status_alert` and `name=`.
pub const MAX_NAME_LEN: usize = 64;
/// Longest window accepted (`window=`).
pub const MAX_WINDOW_MS: u64 = 24 * 3600 * 1000;
/// Default `status_alert_interval`.
pub const DEFAULT_INTERVAL_MS: u64 = 10_000;

/// A directive value that could not be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamError {
    /// `key=value` with an unknown key, or a bare word where `key=value` was expected.
    UnknownParameter(String),
    /// The same `key=` given twice.
    Duplicate(String),
    /// A value that does not parse or is out of range; the `String` says what was expected.
    Invalid {
        /// Parameter name, e.g. `window`.
        key: String,
        /// The raw value as written.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// A NAME with forbidden characters or length.
    InvalidName(String),
    /// Parameters that are each valid but do not fit together.
    Conflict(String),
    /// A bad part of a compound value, e.g. the percentile of `latency=p100:1s`.
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
    /// The file named by `file=` could not be read; the message says why.
    File(String),
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::UnknownParameter(p) => write!(f, "invalid parameter \"{p}\""),
            ParamError::Duplicate(k) => write!(f, "duplicate parameter \"{k}\""),
            ParamError::Invalid {
                key,
                value,
                expected,
            } => write!(f, "invalid {key} value \"{value}\", expected {expected}"),
            ParamError::InvalidName(n) => write!(
                f,
                "invalid name \"{n}\", expected 1-{MAX_NAME_LEN} letters, digits, \".\", \"_\", \
                 \"-\" or \"/\""
            ),
            ParamError::Conflict(msg) | ParamError::File(msg) => f.write_str(msg),
            ParamError::InvalidPart {
                what,
                part,
                arg,
                expected,
            } => write!(
                f,
                "invalid {what} \"{part}\" in \"{arg}\", expected {expected}"
            ),
        }
    }
}

fn invalid(key: &str, value: &str, expected: &str) -> ParamError {
    ParamError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// Units of nginx time syntax, most significant first, in milliseconds. As in nginx's
/// millisecond directives, `y` is not accepted.
const TIME_UNITS: [(&str, u64); 7] = [
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

/// Parses a percentage such as `5%`, `12.5%` or `7` into (0, 100].
pub fn parse_percent(key: &str, value: &str) -> Result<f64, ParamError> {
    let number = value.strip_suffix('%').unwrap_or(value);
    let ok = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|b| *b == b'.').count() <= 1;
    match number.parse::<f64>() {
        Ok(p) if ok && p > 0.0 && p <= 100.0 => Ok(p),
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

/// Where alerts go, from `status_alert_webhook`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum WebhookTarget {
    /// Alerts are written to the error log only.
    #[default]
    Off,
    /// Alerts are posted to this URL.
    Url(String),
}

/// Validates a webhook URL (`https://...` or `http://...` for local receivers).
pub fn parse_webhook_url(value: &str) -> Result<WebhookTarget, ParamError> {
    parse_secret_url("webhook", value).map(WebhookTarget::Url)
}

/// Validates a URL that may hold a secret (`https://...` or `http://...` for local receivers);
/// errors call it `key` and show it only as [`redact_for_error`] does.
fn parse_secret_url(key: &str, value: &str) -> Result<String, ParamError> {
    let value = value.trim();
    validate_url(key, value)
        .map_err(|_| invalid(key, &redact_for_error(value), "an http:// or https:// URL"))?;
    Ok(value.to_string())
}

/// The URL given as `URL` or as `file=PATH` (read with `read_file`, see
/// [`parse_webhook_args`]), validated by [`parse_secret_url`] under `key`.
fn url_or_file(
    key: &str,
    arg: &str,
    read_file: impl FnOnce(&str) -> Result<String, String>,
) -> Result<String, ParamError> {
    let Some(path) = arg.strip_prefix("file=") else {
        return parse_secret_url(key, arg);
    };
    if path.is_empty() {
        return Err(invalid("file", path, "a path"));
    }
    let text = read_file(path).map_err(ParamError::File)?;
    parse_secret_url(key, &text)
        .map_err(|e| ParamError::File(format!("{e} (read from \"{path}\")")))
}

/// Payload format of a webhook destination, from `format=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WebhookFormat {
    /// Discord webhook payload (embeds); the default.
    #[default]
    Discord,
    /// Slack incoming-webhook payload (attachments).
    Slack,
    /// The versioned JSON event of `json_event`.
    Json,
    /// Prometheus Alertmanager API v2 (`status_alert_alertmanager`; not a `format=` value).
    Alertmanager,
    /// A heartbeat monitor's ping URL (`status_alert_heartbeat`; not a `format=` value): it
    /// gets a GET now and then, never an alert.
    Heartbeat,
}

impl WebhookFormat {
    /// Parses a `format=` value.
    pub fn parse(value: &str) -> Result<WebhookFormat, ParamError> {
        match value {
            "discord" => Ok(WebhookFormat::Discord),
            "slack" => Ok(WebhookFormat::Slack),
            "json" => Ok(WebhookFormat::Json),
            _ => Err(invalid("format", value, "discord, slack or json")),
        }
    }

    /// The `format=` value naming this format.
    pub fn name(self) -> &'static str {
        match self {
            WebhookFormat::Discord => "discord",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Json => "json",
            WebhookFormat::Alertmanager => "alertmanager",
            WebhookFormat::Heartbeat => "heartbeat",
        }
    }

    /// True for the formats that alert events are sent in: all but the heartbeat.
    pub fn carries_alerts(self) -> bool {
        self != WebhookFormat::Heartbeat
    }
}

/// Parses the arguments of `status_alert_webhook URL | file=PATH [format=...] | off`.
///
/// The destination and `format=` may come in either order. `read_file` is called with the
/// `file=` path as written and returns the file's text or why it could not be read; the
/// configuration glue resolves the path and does the I/O, so this stays pure. Errors never echo
/// more than the first 24 characters of a URL (it may carry the webhook token).
pub fn parse_webhook_args(
    args: &[&str],
    read_file: impl FnOnce(&str) -> Result<String, String>,
) -> Result<(WebhookTarget, WebhookFormat), ParamError> {
    let mut destination: Option<&str> = None;
    let mut format: Option<WebhookFormat> = None;
    for arg in args {
        if let Some(value) = arg.strip_prefix("format=") {
            if format.is_some() {
                return Err(ParamError::Duplicate("format".into()));
            }
            format = Some(WebhookFormat::parse(value)?);
        } else if destination.is_some() {
            return Err(ParamError::UnknownParameter(redact_for_error(arg)));
        } else {
            destination = Some(arg);
        }
    }
    let Some(destination) = destination else {
        return Err(ParamError::Conflict(
            "a webhook URL, \"file=PATH\" or \"off\" is required".into(),
        ));
    };
    let target = if destination == "off" {
        if format.is_some() {
            return Err(ParamError::Conflict(
                "\"off\" takes no other parameters".into(),
            ));
        }
        WebhookTarget::Off
    } else {
        WebhookTarget::Url(url_or_file("webhook", destination, read_file)?)
    };
    Ok((target, format.unwrap_or_default()))
}

/// Default `interval=` of `status_alert_heartbeat`.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 60_000;

/// Parses the arguments of `status_alert_heartbeat URL | file=PATH [interval=TIME]`: the ping
/// URL and the interval in ms (1s to 24h, default [`DEFAULT_HEARTBEAT_INTERVAL_MS`]).
///
/// The URL and `interval=` may come in either order; `file=` and the errors are as for
/// [`parse_webhook_args`] (the URL is as secret as a webhook's).
pub fn parse_heartbeat_args(
    args: &[&str],
    read_file: impl FnOnce(&str) -> Result<String, String>,
) -> Result<(String, u64), ParamError> {
    let mut destination: Option<&str> = None;
    let mut interval_ms: Option<u64> = None;
    for arg in args {
        if let Some(value) = arg.strip_prefix("interval=") {
            if interval_ms.is_some() {
                return Err(ParamError::Duplicate("interval".into()));
            }
            interval_ms = Some(parse_interval(value)?);
        } else if destination.is_some() {
            return Err(ParamError::UnknownParameter(redact_for_error(arg)));
        } else {
            destination = Some(arg);
        }
    }
    let Some(destination) = destination else {
        return Err(ParamError::Conflict(
            "a heartbeat URL or \"file=PATH\" is required".into(),
        ));
    };
    let url = url_or_file("heartbeat", destination, read_file)?;
    Ok((url, interval_ms.unwrap_or(DEFAULT_HEARTBEAT_INTERVAL_MS)))
}

/// The `POST /api/v2/alerts` URL of an Alertmanager given as `http://host:9093` (or already
/// with a path); errors never echo the URL's credentials.
pub fn parse_alertmanager_url(value: &str) -> Result<String, ParamError> {
    let WebhookTarget::Url(url) = parse_webhook_url(value)? else {
        return Err(invalid("alertmanager", value, "an http:// or https:// URL"));
    };
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    let has_path = after_scheme
        .find('/')
        .is_some_and(|i| i + 1 < after_scheme.len());
    Ok(if has_path {
        url
    } else {
        format!("{}/api/v2/alerts", url.trim_end_matches('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanager_urls_get_the_v2_alerts_path() {
        let url = |v: &str| parse_alertmanager_url(v).unwrap();
        assert_eq!(url("http://am1:9093"), "http://am1:9093/api/v2/alerts");
        assert_eq!(url("http://am1:9093/"), "http://am1:9093/api/v2/alerts");
        assert_eq!(
            url("https://am.example/x/api/v2/alerts"),
            "https://am.example/x/api/v2/alerts"
        );
        assert!(parse_alertmanager_url("am1:9093").is_err());
    }

    #[test]
    fn webhook_errors_never_show_credentials() {
        let e = parse_webhook_url("ftp://user:hunter2@example.com/x").unwrap_err();
        let text = e.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("user"),
            "{text}"
        );
        assert!(text.contains("ftp://***@example.com"), "{text}");
    }

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
    fn webhook_urls() {
        assert_eq!(
            parse_webhook_url(" https://discord.com/api/webhooks/1/abc\n"),
            Ok(WebhookTarget::Url(
                "https://discord.com/api/webhooks/1/abc".into()
            ))
        );
        let err = parse_webhook_url("discord.com/api/webhooks/1/supersecrettokenvalue123")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("supersecrettokenvalue123"),
            "token leaked: {err}"
        );
    }

    fn no_file(path: &str) -> Result<String, String> {
        panic!("unexpected read of {path}")
    }

    #[test]
    fn webhook_args_accepted() {
        let url = "https://hooks.slack.com/services/T0/B0/secret";
        let target = WebhookTarget::Url(url.into());
        let cases: [(&[&str], WebhookTarget, WebhookFormat); 6] = [
            (&[url], target.clone(), WebhookFormat::Discord),
            (&[url, "format=slack"], target.clone(), WebhookFormat::Slack),
            (&["format=json", url], target.clone(), WebhookFormat::Json),
            (
                &[url, "format=discord"],
                target.clone(),
                WebhookFormat::Discord,
            ),
            (&["off"], WebhookTarget::Off, WebhookFormat::Discord),
            (
                &["http://127.0.0.1:9000/hook"],
                WebhookTarget::Url("http://127.0.0.1:9000/hook".into()),
                WebhookFormat::Discord,
            ),
        ];
        for (args, t, f) in cases {
            assert_eq!(parse_webhook_args(args, no_file), Ok((t, f)), "{args:?}");
        }
        let read = |path: &str| {
            assert_eq!(path, "/etc/nginx/slack.url");
            Ok(format!("{url}\n"))
        };
        assert_eq!(
            parse_webhook_args(&["file=/etc/nginx/slack.url", "format=slack"], read),
            Ok((target, WebhookFormat::Slack))
        );
    }

    #[test]
    fn webhook_args_rejected() {
        let secret = "https://discord.com/api/webhooks/1/supersecrettokenvalue123";
        let cases: [(&[&str], &str); 9] = [
            (&[], "a webhook URL, \"file=PATH\" or \"off\" is required"),
            (
                &["format=slack"],
                "a webhook URL, \"file=PATH\" or \"off\" is required",
            ),
            (&["off", "format=json"], "\"off\" takes no other parameters"),
            (
                &["https://a/b", "format=teams"],
                "invalid format value \"teams\", expected discord, slack or json",
            ),
            (&["https://a/b", "format="], "invalid format value \"\""),
            (
                &["https://a/b", "format=json", "format=slack"],
                "duplicate parameter \"format\"",
            ),
            (&["https://a/b", "foo=1"], "invalid parameter \"foo=1\""),
            (&["file="], "invalid file value \"\", expected a path"),
            (&["ftp://a/b"], "invalid webhook value \"ftp://a/b\""),
        ];
        for (args, msg) in cases {
            let err = parse_webhook_args(args, no_file).unwrap_err().to_string();
            assert!(err.starts_with(msg), "{args:?}: {err}");
        }
        // A second URL is an unknown parameter, shown without its token.
        let err = parse_webhook_args(&["https://a/b", secret], no_file)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid parameter \"https://discord.com/api/"),
            "{err}"
        );
        assert!(!err.contains("supersecrettokenvalue123"), "{err}");
        // File errors: the reader's reason, or the bad content without its token.
        let err = parse_webhook_args(&["file=x"], |_| Err("cannot read \"x\": gone".into()))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "cannot read \"x\": gone");
        let err = parse_webhook_args(&["file=x"], |_| Ok(secret.replace("https://", "")))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("(read from \"x\")"), "{err}");
        assert!(!err.contains("supersecrettokenvalue123"), "{err}");
    }

    #[test]
    fn heartbeat_args_accepted() {
        let url = "https://hc-ping.com/0b1c2d3e-uuid";
        let cases: [(&[&str], u64); 4] = [
            (&[url], DEFAULT_HEARTBEAT_INTERVAL_MS),
            (&[url, "interval=30s"], 30_000),
            (&["interval=1s", url], 1000),
            (&[url, "interval=1h"], 3_600_000),
        ];
        for (args, interval) in cases {
            assert_eq!(
                parse_heartbeat_args(args, no_file),
                Ok((url.to_string(), interval)),
                "{args:?}"
            );
        }
        let kuma = "https://kuma.example.com/api/push/pushTok3n?status=up&msg=OK&ping=";
        let read = |path: &str| {
            assert_eq!(path, "hb.url");
            Ok(format!("{kuma}\n"))
        };
        assert_eq!(
            parse_heartbeat_args(&["file=hb.url", "interval=2m"], read),
            Ok((kuma.to_string(), 120_000))
        );
    }

    #[test]
    fn heartbeat_args_rejected() {
        let secret = "https://hc-ping.com/supersecretuuidvalue1234";
        let cases: [(&[&str], &str); 9] = [
            (&[], "a heartbeat URL or \"file=PATH\" is required"),
            (
                &["interval=10s"],
                "a heartbeat URL or \"file=PATH\" is required",
            ),
            (
                &["ftp://a/b"],
                "invalid heartbeat value \"ftp://a/b\", expected an http:// or https:// URL",
            ),
            (&["off"], "invalid heartbeat value \"off\""),
            (
                &["https://a/b", "interval=500ms"],
                "invalid interval value \"500ms\", expected a time between 1s and 24h",
            ),
            (
                &["https://a/b", "interval=often"],
                "invalid interval value \"often\"",
            ),
            (
                &["https://a/b", "interval=1m", "interval=2m"],
                "duplicate parameter \"interval\"",
            ),
            (
                &["https://a/b", "format=json"],
                "invalid parameter \"format=json\"",
            ),
            (&["file="], "invalid file value \"\", expected a path"),
        ];
        for (args, msg) in cases {
            let err = parse_heartbeat_args(args, no_file).unwrap_err().to_string();
            assert!(err.starts_with(msg), "{args:?}: {err}");
        }
        // Neither a second URL nor a bad URL read from a file shows its secret.
        let err = parse_heartbeat_args(&["https://a/b", secret], no_file)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("supersecretuuidvalue1234"), "{err}");
        let err = parse_heartbeat_args(&["file=x"], |_| Ok(secret.replace("https://", "")))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("(read from \"x\")"), "{err}");
        assert!(err.starts_with("invalid heartbeat value"), "{err}");
        assert!(!err.contains("supersecretuuidvalue1234"), "{err}");
        let err = parse_heartbeat_args(&["file=x"], |_| Err("cannot read \"x\": gone".into()))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "cannot read \"x\": gone");
    }

    #[test]
    fn webhook_format_names() {
        for f in [
            WebhookFormat::Discord,
            WebhookFormat::Slack,
            WebhookFormat::Json,
        ] {
            assert_eq!(WebhookFormat::parse(f.name()), Ok(f));
        }
        assert!(
            WebhookFormat::parse("Slack").is_err(),
            "values are lower case like nginx's"
        );
        // Not `format=` values: they have directives of their own.
        for f in [WebhookFormat::Alertmanager, WebhookFormat::Heartbeat] {
            assert!(WebhookFormat::parse(f.name()).is_err(), "{f:?}");
        }
        assert!(!WebhookFormat::Heartbeat.carries_alerts());
        assert!(WebhookFormat::Alertmanager.carries_alerts());
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

    #[test]
    fn pct_formatting() {
        assert_eq!(fmt_pct(5.0), "5%");
        assert_eq!(fmt_pct(12.5), "12.5%");
        assert_eq!(fmt_pct(0.125), "0.125%");
    }
}
