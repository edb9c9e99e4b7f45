//! The control requests of `status_metrics control=on`: `POST ?mute=NAME&for=TIME
//! [&reason=TEXT]` and `POST ?unmute=NAME`, as pure parsing of the method, the switch and the
//! query string into a [`MuteCommand`] or a [`ControlError`] with its HTTP status and text.
//!
//! - A request is a control request when its query has a `mute` or `unmute` parameter
//!   ([`is_control_request`]); every other request is served as before.
//! - `control` off: 403, whatever the method (the switch says no before anything else does).
//!   Other methods than POST: 405 (the handler adds `Allow: POST`). Bad input: 400 with one
//!   line saying what is wrong.
//! - NAME is a configured NAME or `*` (every NAME). Values are percent-decoded (`+` is a space,
//!   as HTML forms send it). `for` is 1s to 7d: a mute that outlives a week is more likely
//!   forgotten than planned (a weekly window is `status_alert_maintenance`). `reason` is at
//!   most [`MUTE_REASON_MAX`] bytes of printable text; it is shown on the status page
//!   (HTML-escaped there).
//! - `format=` may accompany a control request (the answer's format); anything else is
//!   refused, so that a typo (`fro=1h`) is not a mute without an end.
//!
//! Depends on `conf::params` (`parse_time_ms`, `validate_name`) and on the mute record's
//! limits (`zone::mutes`).

use core::fmt;

use crate::conf::params::{parse_time_ms, validate_name, ParamError};
use crate::zone::mutes::{MUTE_ALL, MUTE_REASON_MAX};

/// Longest `for=`.
pub const MAX_MUTE_MS: u64 = 7 * 86_400_000;

/// What a mute applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MuteTarget {
    /// `*`: every NAME.
    All,
    /// One NAME.
    Name(String),
}

impl MuteTarget {
    /// The key of its mute record.
    pub fn key(&self) -> &[u8] {
        match self {
            MuteTarget::All => MUTE_ALL,
            MuteTarget::Name(n) => n.as_bytes(),
        }
    }
}

impl fmt::Display for MuteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MuteTarget::All => f.write_str("*"),
            MuteTarget::Name(n) => f.write_str(n),
        }
    }
}

/// A valid control request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MuteCommand {
    /// `mute=NAME&for=TIME[&reason=TEXT]`.
    Mute {
        /// What to mute.
        target: MuteTarget,
        /// For how long, ms.
        for_ms: u64,
        /// Why (may be empty).
        reason: String,
    },
    /// `unmute=NAME`.
    Unmute {
        /// What to unmute.
        target: MuteTarget,
    },
}

/// Why a control request is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// `status_metrics` without `control=on`: 403.
    Off,
    /// Not a POST: 405.
    Method,
    /// Bad input: 400, with what is wrong.
    BadRequest(String),
}

impl ControlError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            ControlError::Off => 403,
            ControlError::Method => 405,
            ControlError::BadRequest(_) => 400,
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Off => f.write_str("mute and unmute need \"status_metrics control=on\""),
            ControlError::Method => f.write_str("mute and unmute need POST"),
            ControlError::BadRequest(why) => f.write_str(why),
        }
    }
}

fn bad(why: impl Into<String>) -> ControlError {
    ControlError::BadRequest(why.into())
}

/// Input echoed in an error: at most 64 characters, control characters as `?`.
fn shown(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The parameters of a query string (`a=1&b=2`), raw.
pub(super) fn pairs(query: &str) -> impl Iterator<Item = (&str, Option<&str>)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (p, None),
        })
}

/// True when `query` asks to mute or unmute, i.e. the request is for the control handler.
pub fn is_control_request(query: &str) -> bool {
    pairs(query).any(|(k, _)| k == "mute" || k == "unmute")
}

/// Decodes `%XX` and `+` (a space); `None` for a bad escape or bytes that are not UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = core::str::from_utf8(hex).ok()?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a control request: `method` as sent (`POST`), `control` the location's switch,
/// `query` the raw query string, `is_known` whether a NAME is configured.
pub fn parse_control(
    method: &str,
    control: bool,
    query: &str,
    is_known: impl Fn(&str) -> bool,
) -> Result<MuteCommand, ControlError> {
    if !control {
        return Err(ControlError::Off);
    }
    if method != "POST" {
        return Err(ControlError::Method);
    }
    let mut mute = None;
    let mut unmute = None;
    let mut for_value = None;
    let mut reason = None;
    let mut seen: Vec<&str> = Vec::new();
    for (key, raw) in pairs(query) {
        if seen.contains(&key) {
            return Err(bad(format!("duplicate parameter \"{key}\"")));
        }
        seen.push(key);
        let slot = match key {
            "mute" => &mut mute,
            "unmute" => &mut unmute,
            "for" => &mut for_value,
            "reason" => &mut reason,
            "format" => continue,
            _ => {
                return Err(bad(format!(
                    "invalid parameter \"{}\", expected mute, unmute, for or reason",
                    shown(key)
                )));
            }
        };
        let Some(raw) = raw else {
            return Err(bad(format!("\"{key}\" needs a value, e.g. \"{key}=...\"")));
        };
        let value = percent_decode(raw)
            .ok_or_else(|| bad(format!("invalid percent-encoding in \"{key}\"")))?;
        *slot = Some(value);
    }
    let target = |name: String| -> Result<MuteTarget, ControlError> {
        if name == "*" {
            return Ok(MuteTarget::All);
        }
        validate_name(&name).map_err(|_| bad(ParamError::InvalidName(shown(&name)).to_string()))?;
        if !is_known(&name) {
            return Err(bad(format!(
                "unknown NAME \"{name}\": no \"status_alert {name}\" is configured"
            )));
        }
        Ok(MuteTarget::Name(name))
    };
    match (mute, unmute) {
        (Some(_), Some(_)) => Err(bad("\"mute\" and \"unmute\" cannot be combined")),
        (None, None) => Err(bad(
            "expected \"mute=NAME&for=TIME[&reason=TEXT]\" or \"unmute=NAME\"",
        )),
        (None, Some(name)) => {
            if for_value.is_some() || reason.is_some() {
                return Err(bad("\"unmute\" takes no \"for\" or \"reason\""));
            }
            Ok(MuteCommand::Unmute {
                target: target(name)?,
            })
        }
        (Some(name), None) => {
            let target = target(name)?;
            let Some(for_value) = for_value else {
                return Err(bad(format!(
                    "\"for\" is required with \"mute\", e.g. \"mute={target}&for=30m\""
                )));
            };
            let for_ms = parse_time_ms(&for_value)
                .filter(|ms| (1000..=MAX_MUTE_MS).contains(ms))
                .ok_or_else(|| {
                    bad(format!(
                        "invalid for value \"{}\", expected a time between 1s and 7d",
                        shown(&for_value)
                    ))
                })?;
            let reason = reason.unwrap_or_default();
            if reason.len() > MUTE_REASON_MAX {
                return Err(bad(format!(
                    "reason is longer than {MUTE_REASON_MAX} bytes"
                )));
            }
            if reason.chars().any(char::is_control) {
                return Err(bad("reason must be one line of printable text"));
            }
            Ok(MuteCommand::Mute {
                target,
                for_ms,
                reason,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str) -> bool {
        ["api", "be/v2"].contains(&name)
    }

    fn post(query: &str) -> Result<MuteCommand, ControlError> {
        parse_control("POST", true, query, known)
    }

    #[test]
    fn mutes_and_unmutes() {
        assert_eq!(
            post("mute=api&for=30m&reason=deploy+v2.1%20%E2%80%93%20eu"),
            Ok(MuteCommand::Mute {
                target: MuteTarget::Name("api".into()),
                for_ms: 1_800_000,
                reason: "deploy v2.1 – eu".into(),
            })
        );
        assert_eq!(
            post("for=1h&mute=be%2Fv2&format=json"),
            Ok(MuteCommand::Mute {
                target: MuteTarget::Name("be/v2".into()),
                for_ms: 3_600_000,
                reason: String::new(),
            })
        );
        assert_eq!(
            post("mute=*&for=7d"),
            Ok(MuteCommand::Mute {
                target: MuteTarget::All,
                for_ms: MAX_MUTE_MS,
                reason: String::new(),
            })
        );
        assert_eq!(
            post("unmute=be/v2"),
            Ok(MuteCommand::Unmute {
                target: MuteTarget::Name("be/v2".into())
            })
        );
        assert_eq!(MuteTarget::All.key(), b"*");
        assert_eq!(MuteTarget::Name("api".into()).to_string(), "api");
    }

    #[test]
    fn which_requests_are_control_requests() {
        assert!(is_control_request("mute=api&for=1m"));
        assert!(is_control_request("format=json&unmute=api"));
        assert!(is_control_request("mute"));
        assert!(!is_control_request("format=json"));
        assert!(!is_control_request("muted=1&name=mute"));
        assert!(!is_control_request(""));
    }

    #[test]
    fn the_switch_then_the_method() {
        let off = parse_control("POST", false, "mute=api&for=1m", known).unwrap_err();
        assert_eq!(
            (off.status(), off.to_string().as_str()),
            (403, "mute and unmute need \"status_metrics control=on\"")
        );
        let get = parse_control("GET", false, "mute=api&for=1m", known).unwrap_err();
        assert_eq!(
            get.status(),
            403,
            "off says no before the method is looked at"
        );
        for method in ["GET", "HEAD", "PUT", "post"] {
            let e = parse_control(method, true, "mute=api&for=1m", known).unwrap_err();
            assert_eq!(
                (e.status(), e.to_string().as_str()),
                (405, "mute and unmute need POST")
            );
        }
    }

    #[test]
    fn bad_input_is_400_with_a_clear_text() {
        let cases = [
            (
                "",
                "expected \"mute=NAME&for=TIME[&reason=TEXT]\" or \"unmute=NAME\"",
            ),
            ("format=json", "expected \"mute=NAME&for=TIME"),
            (
                "mute=api&unmute=api",
                "\"mute\" and \"unmute\" cannot be combined",
            ),
            (
                "mute=api",
                "\"for\" is required with \"mute\", e.g. \"mute=api&for=30m\"",
            ),
            (
                "mute=api&for=",
                "invalid for value \"\", expected a time between 1s and 7d",
            ),
            ("mute=api&for=soon", "invalid for value \"soon\""),
            ("mute=api&for=500ms", "invalid for value \"500ms\""),
            ("mute=api&for=8d", "invalid for value \"8d\""),
            ("mute=api&for=1m&for=2m", "duplicate parameter \"for\""),
            (
                "mute=api&for=1m&reason=a&reason=b",
                "duplicate parameter \"reason\"",
            ),
            (
                "mute=api&fro=1h",
                "invalid parameter \"fro\", expected mute, unmute, for or reason",
            ),
            ("mute=api&for", "\"for\" needs a value, e.g. \"for=...\""),
            ("mute", "\"mute\" needs a value"),
            (
                "mute=db&for=1m",
                "unknown NAME \"db\": no \"status_alert db\" is configured",
            ),
            ("mute=a%20b&for=1m", "invalid name \"a b\""),
            ("mute=&for=1m", "invalid name \"\""),
            ("mute=api%2&for=1m", "invalid percent-encoding in \"mute\""),
            ("mute=api%zz&for=1m", "invalid percent-encoding in \"mute\""),
            (
                "mute=api&for=1m&reason=%ff",
                "invalid percent-encoding in \"reason\"",
            ),
            (
                "mute=api&for=1m&reason=a%0Ab",
                "reason must be one line of printable text",
            ),
            (
                "unmute=api&for=1m",
                "\"unmute\" takes no \"for\" or \"reason\"",
            ),
            (
                "unmute=api&reason=x",
                "\"unmute\" takes no \"for\" or \"reason\"",
            ),
            ("unmute=nope", "unknown NAME \"nope\""),
        ];
        for (query, msg) in cases {
            let e = post(query).unwrap_err();
            assert_eq!(e.status(), 400, "{query}");
            assert!(e.to_string().starts_with(msg), "{query}: {e}");
        }
        let long = format!("mute=api&for=1m&reason={}", "r".repeat(MUTE_REASON_MAX + 1));
        assert_eq!(
            post(&long).unwrap_err().to_string(),
            format!("reason is longer than {MUTE_REASON_MAX} bytes")
        );
        let exact = format!("mute=api&for=1m&reason={}", "r".repeat(MUTE_REASON_MAX));
        assert!(post(&exact).is_ok());
        // Echoed values are bounded.
        let e = post(&format!("mute=api&for={}", "9".repeat(1000))).unwrap_err();
        assert!(e.to_string().len() < 160, "{e}");
        let e = post(&format!("{}=1", "k".repeat(1000))).unwrap_err();
        assert!(e.to_string().len() < 160, "{e}");
        let e = post(&format!("mute={}%0A&for=1m", "n".repeat(1000))).unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
        let e = post("mute=a%0Ab&for=1m").unwrap_err();
        assert!(e.to_string().starts_with("invalid name \"a?b\""), "{e}");
    }
}
