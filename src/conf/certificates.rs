//! `status_alert_certificates [warn=TIME] [crit=TIME] [repeat=TIME|off] | off` (http, server):
//! how long before its expiry a certificate nginx serves, or a probe target's certificate,
//! raises WARNING and CRITICAL. Pure parsing; the levels are `evaluate::certificate`.
//!
//! Defaults `warn=21d crit=7d`: three weeks leave room for a renewal that failed quietly
//! (certbot and acme.sh renew 30 days ahead), one week is when it has become urgent.
//! `repeat=` re-announces a firing level, by default once a day: an expiry moves slowly, and a
//! reminder every 30 minutes (the NAMEs' default) would teach people to ignore it.

use crate::conf::params::{invalid, parse_time_ms, ParamError};

/// Thresholds of certificate expiry alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertificateParams {
    /// WARNING this long before the expiry.
    pub warn_ms: u64,
    /// CRITICAL this long before the expiry, and once expired.
    pub crit_ms: u64,
    /// Re-announce a firing level this often; `None` with `repeat=off`.
    pub repeat_ms: Option<u64>,
}

/// One day in milliseconds.
const DAY_MS: u64 = 86_400_000;

impl Default for CertificateParams {
    fn default() -> Self {
        CertificateParams {
            warn_ms: 21 * DAY_MS,
            crit_ms: 7 * DAY_MS,
            repeat_ms: Some(DAY_MS),
        }
    }
}

/// Longest threshold: a certificate is rarely issued for more than about a year; ten years is
/// certainly a typo.
const MAX_THRESHOLD_MS: u64 = 3650 * DAY_MS;

/// Parses the directive's arguments: `None` for `off`.
pub fn parse(args: &[&str]) -> Result<Option<CertificateParams>, ParamError> {
    if args == ["off"] {
        return Ok(None);
    }
    let mut p = CertificateParams::default();
    let mut seen: Vec<&str> = Vec::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(ParamError::UnknownParameter((*arg).to_string()));
        };
        if seen.contains(&key) {
            return Err(ParamError::Duplicate(key.to_string()));
        }
        let time = || {
            parse_time_ms(value)
                .filter(|ms| (1..=MAX_THRESHOLD_MS).contains(ms))
                .ok_or_else(|| invalid(key, value, "a time from 1s to 3650d"))
        };
        match key {
            "warn" => p.warn_ms = time()?,
            "crit" => p.crit_ms = time()?,
            "repeat" if value == "off" => p.repeat_ms = None,
            "repeat" => p.repeat_ms = Some(time()?.max(60_000)),
            _ => return Err(ParamError::UnknownParameter((*arg).to_string())),
        }
        seen.push(key);
    }
    if p.crit_ms >= p.warn_ms {
        let written = |key: &str, default: &str| {
            args.iter()
                .find(|a| a.split_once('=').is_some_and(|(k, _)| k == key))
                .map_or_else(|| format!("{key} (default {default})"), |a| a.to_string())
        };
        return Err(ParamError::Conflict(format!(
            "{} must be shorter than {}",
            written("crit", "7d"),
            written("warn", "21d")
        )));
    }
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_off_and_values() {
        assert_eq!(parse(&[]), Ok(Some(CertificateParams::default())));
        assert_eq!(parse(&["off"]), Ok(None));
        let p = parse(&["warn=30d", "crit=3d", "repeat=12h"])
            .unwrap()
            .unwrap();
        assert_eq!(p.warn_ms, 30 * DAY_MS);
        assert_eq!(p.crit_ms, 3 * DAY_MS);
        assert_eq!(p.repeat_ms, Some(DAY_MS / 2));
        assert_eq!(parse(&["repeat=off"]).unwrap().unwrap().repeat_ms, None);
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        for (args, want) in [
            (
                &["warn=3d"][..],
                "crit (default 7d) must be shorter than warn=3d",
            ),
            (
                &["crit=30d"][..],
                "crit=30d must be shorter than warn (default 21d)",
            ),
            (
                &["warn=5d", "crit=5d"][..],
                "crit=5d must be shorter than warn=5d",
            ),
            (&["warn=soon"][..], "invalid warn value \"soon\""),
            (&["warn=0s"][..], "invalid warn value"),
            (&["warn=4000d"][..], "from 1s to 3650d"),
            (&["days=3"][..], "days=3"),
            (&["off", "warn=3d"][..], "off"),
            (&["warn=30d", "warn=40d"][..], "warn"),
        ] {
            let e = parse(args).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }
}
