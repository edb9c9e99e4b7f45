//! The retry policy of a delivery thread: capped exponential backoff with jitter, the hints a
//! webhook gives (`retry_after`, `Retry-After`, Discord's bucket headers), which errors may
//! have reached the webhook already, and the reasons that go into log lines. Pure.

use std::time::{Duration, Instant};

/// Backoff waits are spread by up to this fraction either way so that workers desynchronise.
const JITTER_FRACTION: f64 = 0.25;
/// Longest excerpt of a rejection reason that goes into a log line.
pub(super) const REASON_MAX_CHARS: usize = 300;

/// `Instant + Duration` that saturates instead of panicking on absurd durations.
pub(super) fn later(from: Instant, wait: Duration) -> Instant {
    from.checked_add(wait)
        .or_else(|| from.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(from)
}

/// Seconds as Discord sends them (float text) to a duration; rejects negative and non-finite.
pub(super) fn secs_to_duration(secs: f64) -> Option<Duration> {
    if secs.is_finite() && secs >= 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

pub(super) fn parse_secs(text: &str) -> Option<Duration> {
    text.trim().parse::<f64>().ok().and_then(secs_to_duration)
}

/// Discord's `{"retry_after": 1.234, ...}` from a 429 body.
pub(super) fn body_retry_after(body: &str) -> Option<Duration> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value
        .get("retry_after")?
        .as_f64()
        .and_then(secs_to_duration)
}

/// Capped exponential backoff before retry number `retry` (1-based), jittered by `unit` in [0,1).
pub(super) fn backoff_delay(base: Duration, cap: Duration, retry: u32, unit: f64) -> Duration {
    let exponent = retry.saturating_sub(1);
    let factor = 1u32.checked_shl(exponent).unwrap_or(u32::MAX);
    let plain = base.saturating_mul(factor).min(cap);
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let jitter = 1.0 + JITTER_FRACTION * (2.0 * unit - 1.0);
    // The cap stays a hard maximum, so jitter at the cap can only shorten the wait.
    secs_to_duration(plain.as_secs_f64() * jitter)
        .unwrap_or(plain)
        .min(cap)
}

/// How often a message is sent again after a failure that came once the request was sent (the
/// webhook may have received it): each resend risks one duplicate, and webhooks such as
/// Discord's have no idempotency key to dedupe by.
pub(super) const MAX_RESENDS_AFTER_SENDING: u32 = 1;

/// True if `error` came after the request may have reached the webhook: waiting for or reading
/// the answer, or an I/O error at a point ureq does not tell. Connection, DNS and TLS-handshake
/// failures come before anything was sent.
pub(super) fn may_have_arrived(error: &ureq::Error) -> bool {
    use ureq::Timeout;
    match error {
        ureq::Error::Timeout(t) => matches!(
            t,
            Timeout::Global
                | Timeout::PerCall
                | Timeout::SendBody
                | Timeout::RecvResponse
                | Timeout::RecvBody
        ),
        ureq::Error::Io(e) => {
            use std::io::ErrorKind::{AddrNotAvailable, ConnectionRefused, NotFound};
            let unreachable = matches!(
                e.raw_os_error(),
                Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
            );
            !(matches!(e.kind(), ConnectionRefused | AddrNotAvailable | NotFound) || unreachable)
        }
        _ => false,
    }
}

/// A diagnostic excerpt of a response body: one line, at most `REASON_MAX_CHARS` characters.
pub(super) fn reason_excerpt(body: &str) -> String {
    // Collapsing all whitespace keeps pretty-printed JSON on one readable log line.
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    // No raw control characters (escape sequences, NULs) from a receiver reach the error log.
    let one_line: String = one_line
        .chars()
        .flat_map(|c| {
            let escaped = c.is_control().then(|| c.escape_default());
            let plain = (!c.is_control()).then_some(c);
            escaped.into_iter().flatten().chain(plain)
        })
        .collect();
    if one_line.is_empty() {
        return "no reason given".to_string();
    }
    let mut excerpt: String = one_line.chars().take(REASON_MAX_CHARS).collect();
    if one_line.chars().count() > REASON_MAX_CHARS {
        excerpt.push_str("...");
    }
    excerpt
}

/// Short human form of a duration for log lines, e.g. `1.5s`.
pub(super) fn fmt_secs(d: Duration) -> String {
    let text = format!("{:.2}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_carry_no_control_characters() {
        let r = reason_excerpt("{\"message\": \"bad\u{1b}[31mred\u{0}\"}\r\n");
        assert_eq!(r, "{\"message\": \"bad\\u{1b}[31mred\\u{0}\"}");
        assert!(!r.chars().any(char::is_control));
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        assert_eq!(backoff_delay(base, cap, 1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff_delay(base, cap, 3, 0.5), Duration::from_secs(4));
        assert_eq!(backoff_delay(base, cap, 1, 0.0), Duration::from_millis(750));
        assert_eq!(
            backoff_delay(base, cap, 2, 1.0),
            Duration::from_millis(2500)
        );
        assert_eq!(backoff_delay(base, cap, 7, 0.99), cap);
        assert_eq!(backoff_delay(base, cap, u32::MAX, f64::NAN), cap);
        let mut rng = fastrand::Rng::new();
        for retry in 1..=10 {
            let wait = backoff_delay(base, cap, retry, rng.f64());
            let plain = base.saturating_mul(1 << (retry - 1)).min(cap);
            assert!(wait <= cap && wait.as_secs_f64() >= plain.as_secs_f64() * 0.75);
        }
    }

    #[test]
    fn parses_rate_limit_hints_defensively() {
        let hint = body_retry_after(r#"{"retry_after": 1.234, "global": false}"#);
        assert_eq!(hint, Some(Duration::from_millis(1234)));
        assert_eq!(body_retry_after(r#"{"retry_after": -1}"#), None);
        assert_eq!(body_retry_after("not json"), None);
        assert_eq!(parse_secs(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_secs("NaN"), None);
        assert_eq!(parse_secs("1e400"), None);
        assert_eq!(parse_secs("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        let long = "x\r\n".repeat(400);
        let reason = reason_excerpt(&long);
        assert!(!reason.contains('\n') && reason.chars().count() <= REASON_MAX_CHARS + 3);
        assert_eq!(fmt_secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_secs(Duration::from_secs(60)), "60s");
    }
}
