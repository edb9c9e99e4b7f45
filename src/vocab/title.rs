//! What an event says in one line: its title (shared by every destination's message and the
//! JSON event) and the error-log line written when no webhook is configured.
//!
//! Title formats:
//!
//! - firing: `CRITICAL be: 5xx 12.3% over 5m`, `WARNING be: 5xx 6.0% over 5m`
//! - repeat of a firing level: `CRITICAL be: 5xx 12.3% over 5m (still firing)`
//! - resolved: `RESOLVED be after 7m 10s`
//! - probe down: `DOWN be: http://10.0.0.5:8080/health (connection refused)`; without a reason
//!   but with an HTTP status: `DOWN be: http://10.0.0.5:8080/health (status 503)`; with neither:
//!   `DOWN be: http://10.0.0.5:8080/health`
//! - probe up: `UP be: http://10.0.0.5:8080/health after 3m 5s`
//! - latency (`latency=`): `CRITICAL api: p95 2.4s over 5m` (`480ms` below a second),
//!   `RESOLVED api latency after 3m`
//! - error budget (`slo=`): `CRITICAL api: error budget burning 15.2x (slo 99.9%)`,
//!   `RESOLVED api error budget after 3m`
//! - certificates: `WARNING cert example.com: expires in 14 days (2026-12-16)`, a probe
//!   target's `CRITICAL cert api https://10.0.0.5/health: expired 2 days ago (2026-11-30)`,
//!   `RESOLVED cert example.com: expires in 89 days (2027-03-01)`
//! - traffic drop (`traffic=`): `CRITICAL api: traffic 3 requests in 5m, usually 412`; before
//!   the usual traffic is known (an absolute threshold fired): `CRITICAL api: traffic 0
//!   requests in 5m, expected at least 100`; `RESOLVED api traffic after 7m 10s`

use crate::vocab::certificate::{CertificateEvent, CertificateSubject};
use crate::vocab::event::{AlertEvent, EventDetail, LatencyEvent, Level};
use crate::vocab::text::{
    clip, fmt_pct, format_duration, format_window, iso8601, non_blank, truncate_chars,
};
use crate::vocab::traffic::TrafficEvent;

/// Longest title: the title limit of Discord and Slack alike.
pub const MAX_TITLE: usize = 256;
// Per-piece caps inside titles, so that a huge name cannot push the figures out of the title.
const TITLE_NAME: usize = 80;
const TITLE_TARGET: usize = 100;
const TITLE_REASON: usize = 60;
// Log lines: nginx cuts error-log messages at NGX_MAX_ERROR_STR (2048 bytes) anyway, so keep
// the interesting parts short enough that they all survive.
const LOG_URL: usize = 300;
const LOG_TOP: usize = 200;
const LOG_MAX: usize = 1024;

/// A request time in titles: `480ms` below a second, else seconds with one decimal (`2.4s`).
pub fn fmt_latency(ms: Option<f64>) -> String {
    match ms {
        None => "n/a".to_owned(),
        Some(ms) if ms < 1000.0 => format!("{ms:.0}ms"),
        Some(ms) => format!("{:.1}s", ms / 1000.0),
    }
}

/// A configured threshold: `500ms`, `2s`, `1.5s`.
pub fn fmt_threshold_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", fmt_pct(ms as f64 / 1000.0))
    }
}

/// `warn 500ms · crit 2s` for a latency alert.
pub fn latency_thresholds(l: &LatencyEvent) -> String {
    let warn = format!("warn {}", fmt_threshold_ms(l.warn_ms));
    match l.crit_ms {
        Some(c) => format!("{warn} · crit {}", fmt_threshold_ms(c)),
        None => warn,
    }
}

/// `warn 50% · crit 10` for a traffic alert: thresholds as configured.
pub fn traffic_thresholds(l: &TrafficEvent) -> String {
    let warn = format!("warn {}", l.params.warn);
    match l.params.crit {
        Some(c) => format!("{warn} · crit {c}"),
        None => warn,
    }
}

/// `5m 15.2x · 30m 7.0x · 1h 14.6x · 6h 3.1x`.
pub fn fmt_burn_windows(windows: &[(String, f64)]) -> String {
    windows
        .iter()
        .map(|(w, r)| format!("{} {r:.1}x", clip(w, 16)))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Formats top status codes as `502 × 120, 504 × 30`.
pub fn fmt_top(codes: &[(String, u64)]) -> String {
    codes
        .iter()
        .map(|(code, n)| format!("{} × {n}", clip(code, 32)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `5xx mostly from 10.0.0.3:8080 (82 %), 10.0.0.4:8080 (18 %)`: the peers behind a 5xx
/// alert with their shares, as every format shows them; `None` when none is known.
pub fn peers_text(peers: &[(String, f64)]) -> Option<String> {
    if peers.is_empty() {
        return None;
    }
    let list: Vec<String> = peers
        .iter()
        .map(|(peer, share)| format!("{} ({:.0} %)", clip(peer, 64), share * 100.0))
        .collect();
    Some(format!("5xx mostly from {}", list.join(", ")))
}

/// `, 5xx mostly from ...` appended to a log line while the alert fires and the peers are known.
fn push_peers(line: &mut String, peers: &[(String, f64)], level: Level) {
    if let (Some(peers), false) = (peers_text(peers), level == Level::Ok) {
        line.push_str(&format!(", {peers}"));
    }
}

/// Short upper-case word for the event kind, used in the multi-event summary line.
pub fn kind_label(event: &AlertEvent) -> &'static str {
    match &event.detail {
        EventDetail::ErrorRatio(l) if l.level == Level::Ok => "RESOLVED",
        EventDetail::ErrorRatio(l) => l.level.label(),
        EventDetail::Probe(p) if p.up => "UP",
        EventDetail::Probe(_) => "DOWN",
        EventDetail::Latency(l) if l.level == Level::Ok => "RESOLVED",
        EventDetail::Latency(l) => l.level.label(),
        EventDetail::Slo(l) if l.level == Level::Ok => "RESOLVED",
        EventDetail::Slo(l) => l.level.label(),
        EventDetail::Traffic(l) if l.level == Level::Ok => "RESOLVED",
        EventDetail::Traffic(l) => l.level.label(),
        EventDetail::Certificate(c) if c.level == Level::Ok => "RESOLVED",
        EventDetail::Certificate(c) => c.level.label(),
    }
}

/// `1 request`, `3 requests`.
pub fn fmt_requests(n: u64) -> String {
    if n == 1 {
        "1 request".to_string()
    } else {
        format!("{n} requests")
    }
}

/// A count of requests as shown: whole numbers, rounded (a median of an even number of
/// windows may end in .5).
pub fn whole_requests(v: f64) -> u64 {
    v.round().max(0.0) as u64
}

/// The title of a traffic event for the (already clipped) `name`.
fn traffic_title(name: &str, at_unix: u64, e: &TrafficEvent) -> String {
    if e.level == Level::Ok {
        return format!(
            "RESOLVED {name} traffic after {}",
            format_duration(at_unix.saturating_sub(e.since_unix))
        );
    }
    let mut t = format!(
        "{} {name}: traffic {} in {}",
        e.level.label(),
        fmt_requests(e.requests),
        format_window(e.window_secs)
    );
    match (e.usual, e.crossed_requests()) {
        (Some(usual), _) => t.push_str(&format!(", usually {}", whole_requests(usual))),
        (None, Some(floor)) => {
            t.push_str(&format!(", expected at least {}", whole_requests(floor)))
        }
        (None, None) => {}
    }
    if e.repeat {
        t.push_str(" (still firing)");
    }
    t
}

/// The title of a certificate event: `WARNING cert example.com: expires in 14 days
/// (2026-12-16)`, `RESOLVED cert example.com: expires in 89 days (2027-03-01)`.
fn certificate_title(at_unix: u64, c: &CertificateEvent) -> String {
    let what = c.what(TITLE_NAME, TITLE_TARGET);
    let label = if c.level == Level::Ok {
        "RESOLVED"
    } else {
        c.level.label()
    };
    let mut t = format!("{label} {what}: {}", c.expiry_words(at_unix));
    if c.repeat {
        t.push_str(" (still firing)");
    }
    t
}

/// One-line title of an event (see the module docs for the formats), at most 256 characters.
pub fn title(event: &AlertEvent) -> String {
    let name = clip(&event.name, TITLE_NAME);
    let t = match &event.detail {
        EventDetail::ErrorRatio(l) if l.level == Level::Ok => format!(
            "RESOLVED {name} after {}",
            format_duration(event.at_unix.saturating_sub(l.since_unix))
        ),
        EventDetail::ErrorRatio(l) => {
            let mut t = format!(
                "{} {name}: 5xx {:.1}% over {}",
                l.level.label(),
                l.ratio_pct(),
                format_window(l.window_secs)
            );
            if l.repeat {
                t.push_str(" (still firing)");
            }
            t
        }
        EventDetail::Probe(p) => {
            let target = clip(&p.target, TITLE_TARGET);
            if p.up {
                format!(
                    "UP {name}: {target} after {}",
                    format_duration(event.at_unix.saturating_sub(p.since_unix))
                )
            } else {
                let mut t = format!("DOWN {name}: {target}");
                // The reason is the most telling; a bare status stands in when there is none.
                match (non_blank(&p.reason), p.status) {
                    (Some(r), _) => t.push_str(&format!(" ({})", clip(r, TITLE_REASON))),
                    (None, Some(s)) => t.push_str(&format!(" (status {s})")),
                    (None, None) => {}
                }
                t
            }
        }
        EventDetail::Latency(l) if l.level == Level::Ok => format!(
            "RESOLVED {name} latency after {}",
            format_duration(event.at_unix.saturating_sub(l.since_unix))
        ),
        EventDetail::Latency(l) => {
            let mut t = format!(
                "{} {name}: {} {} over {}",
                l.level.label(),
                clip(&l.percentile, 8),
                fmt_latency(l.estimate_ms),
                format_window(l.window_secs)
            );
            if l.repeat {
                t.push_str(" (still firing)");
            }
            t
        }
        EventDetail::Slo(l) if l.level == Level::Ok => format!(
            "RESOLVED {name} error budget after {}",
            format_duration(event.at_unix.saturating_sub(l.since_unix))
        ),
        EventDetail::Slo(l) => {
            let mut t = format!(
                "{} {name}: error budget burning {:.1}x (slo {}%)",
                l.level.label(),
                l.burn_rate,
                fmt_pct(l.slo_pct)
            );
            if l.repeat {
                t.push_str(" (still firing)");
            }
            t
        }
        EventDetail::Traffic(l) => traffic_title(&name, event.at_unix, l),
        EventDetail::Certificate(c) => certificate_title(event.at_unix, c),
    };
    truncate_chars(&t, MAX_TITLE)
}

/// The single error-log line for `event` when no webhook is configured (never contains newlines).
pub fn log_line(event: &AlertEvent, host: &str) -> String {
    // The host is implicit in nginx's own log; it is accepted for symmetry with the webhook.
    let _ = host;
    let mut line = format!("status_alert: {}", title(event));
    let since = match &event.detail {
        EventDetail::ErrorRatio(l) => {
            line.push_str(&format!(" ({}/{} requests", l.errors, l.total));
            if let Some(w) = l.warn_pct {
                line.push_str(&format!(", warn {}%", fmt_pct(w)));
            }
            line.push_str(&format!(", crit {}%", fmt_pct(l.crit_pct)));
            if !l.top_codes.is_empty() {
                let top = truncate_chars(&fmt_top(&l.top_codes), LOG_TOP);
                line.push_str(&format!(", top {top}"));
            }
            push_peers(&mut line, &l.top_peers, l.level);
            line.push(')');
            l.since_unix
        }
        EventDetail::Probe(p) => {
            line.push_str(&format!(", probe took {} ms", p.duration_ms));
            // The title shows the reason when there is one; keep the status visible as well.
            if let (false, Some(_), Some(s)) = (p.up, non_blank(&p.reason), p.status) {
                line.push_str(&format!(", status {s}"));
            }
            p.since_unix
        }
        EventDetail::Latency(l) => {
            line.push_str(&format!(
                " ({} {} over {} requests, {}",
                clip(&l.percentile, 8),
                fmt_latency(l.estimate_ms),
                l.requests,
                latency_thresholds(l)
            ));
            push_peers(&mut line, &l.top_peers, l.level);
            line.push(')');
            l.since_unix
        }
        EventDetail::Slo(l) => {
            let windows = truncate_chars(&fmt_burn_windows(&l.windows), LOG_TOP);
            line.push_str(&format!(
                " (burn {windows}, {}/{} requests",
                l.errors, l.total
            ));
            push_peers(&mut line, &l.top_peers, l.level);
            line.push(')');
            l.since_unix
        }
        EventDetail::Traffic(l) => {
            line.push_str(&format!(" ({})", traffic_thresholds(l)));
            l.since_unix
        }
        EventDetail::Certificate(c) => {
            if let CertificateSubject::Served { file, .. } = &c.subject {
                line.push_str(&format!(" (file {})", truncate_chars(file, LOG_URL)));
            }
            if let Some(words) = c.renewal_words() {
                line.push_str(&format!(", {words}"));
            }
            c.since_unix
        }
    };
    line.push_str(&format!(", since {}", iso8601(since)));
    if let Some(link) = non_blank(&event.link) {
        line.push_str(&format!(", link {}", truncate_chars(link, LOG_URL)));
    }
    if let Some(runbook) = non_blank(&event.runbook) {
        line.push_str(&format!(", runbook {}", truncate_chars(runbook, LOG_URL)));
    }
    clip(&line, LOG_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::event::samples::*;

    #[test]
    fn title_critical_and_warning() {
        assert_eq!(title(&critical("be")), "CRITICAL be: 5xx 12.3% over 5m");
        let warn = event(
            "be",
            EventDetail::ErrorRatio(error_ratio(Level::Warning, 60, 1000)),
        );
        assert_eq!(title(&warn), "WARNING be: 5xx 6.0% over 5m");
    }

    #[test]
    fn title_repeat_is_still_firing() {
        let mut l = error_ratio(Level::Critical, 123, 1000);
        l.repeat = true;
        l.previous = Level::Critical;
        l.window_secs = 5400;
        let ev = event("be", EventDetail::ErrorRatio(l));
        assert_eq!(
            title(&ev),
            "CRITICAL be: 5xx 12.3% over 1h30m (still firing)"
        );
    }

    #[test]
    fn title_probe_down_variants() {
        let url = "http://10.0.0.5:8080/health";
        let refused = event(
            "be",
            EventDetail::Probe(probe(false, Some("connection refused"), None)),
        );
        assert_eq!(
            title(&refused),
            format!("DOWN be: {url} (connection refused)")
        );
        let status = event("be", EventDetail::Probe(probe(false, None, Some(503))));
        assert_eq!(title(&status), format!("DOWN be: {url} (status 503)"));
        let both = event(
            "be",
            EventDetail::Probe(probe(false, Some("timeout"), Some(503))),
        );
        assert_eq!(title(&both), format!("DOWN be: {url} (timeout)"));
        let blank = event("be", EventDetail::Probe(probe(false, Some("  "), None)));
        assert_eq!(title(&blank), format!("DOWN be: {url}"));
    }

    #[test]
    fn title_probe_up_with_downtime() {
        let ev = event("be", EventDetail::Probe(probe(true, None, Some(200))));
        assert_eq!(title(&ev), "UP be: http://10.0.0.5:8080/health after 3m 5s");
    }

    #[test]
    fn ratio_has_exactly_one_decimal() {
        let cases = [
            (1, 8, "12.5"),
            (1, 3, "33.3"),
            (2, 3, "66.7"),
            (9999, 10000, "100.0"),
        ];
        for (errors, total, want) in cases {
            let ev = event(
                "x",
                EventDetail::ErrorRatio(error_ratio(Level::Critical, errors, total)),
            );
            assert_eq!(title(&ev), format!("CRITICAL x: 5xx {want}% over 5m"));
        }
        let empty = event(
            "x",
            EventDetail::ErrorRatio(error_ratio(Level::Warning, 0, 0)),
        );
        assert_eq!(title(&empty), "WARNING x: 5xx 0.0% over 5m");
    }

    #[test]
    fn log_line_location() {
        assert_eq!(
            log_line(&critical("be"), "h"),
            "status_alert: CRITICAL be: 5xx 12.3% over 5m (123/1000 requests, warn 5%, crit 10%, \
             top 502 × 120, 504 × 3), since 2026-11-22T10:08:20Z, link https://logs.example/be, \
             runbook https://wiki.example/runbook"
        );
    }

    #[test]
    fn the_peers_behind_a_5xx_alert() {
        let peers = vec![
            ("10.0.0.3:8080".to_string(), 0.82),
            ("10.0.0.4:8080".to_string(), 0.18),
        ];
        let text = "5xx mostly from 10.0.0.3:8080 (82 %), 10.0.0.4:8080 (18 %)";
        assert_eq!(peers_text(&peers).as_deref(), Some(text));
        assert_eq!(peers_text(&[]), None);
        let mut ev = critical("be");
        if let EventDetail::ErrorRatio(l) = &mut ev.detail {
            l.top_peers = peers;
        }
        let line = log_line(&ev, "h");
        assert!(line.contains(&format!("504 × 3, {text}), since")), "{line}");
        // A RESOLVED names no peers.
        if let EventDetail::ErrorRatio(l) = &mut ev.detail {
            l.level = Level::Ok;
        }
        assert!(!log_line(&ev, "h").contains("mostly"));
    }

    #[test]
    fn the_peers_behind_a_latency_or_slo_alert() {
        let peers = vec![
            ("10.0.0.3:8080".to_string(), 0.82),
            ("10.0.0.4:8080".to_string(), 0.18),
        ];
        let text = "5xx mostly from 10.0.0.3:8080 (82 %), 10.0.0.4:8080 (18 %)";
        let mut lat = latency(Level::Critical, Some(2400.0));
        assert!(!log_line(&event("be", EventDetail::Latency(lat.clone())), "h").contains("mostly"));
        lat.top_peers = peers.clone();
        let line = log_line(&event("be", EventDetail::Latency(lat.clone())), "h");
        assert!(line.contains(&format!("crit 2s, {text}), since")), "{line}");
        let mut slo = slo(Level::Warning, 15.234);
        slo.top_peers = peers;
        let line = log_line(&event("be", EventDetail::Slo(slo.clone())), "h");
        assert!(
            line.contains(&format!("20/1000 requests, {text}), since")),
            "{line}"
        );
        // A RESOLVED names no peers.
        lat.level = Level::Ok;
        slo.level = Level::Ok;
        for detail in [EventDetail::Latency(lat), EventDetail::Slo(slo)] {
            assert!(!log_line(&event("be", detail), "h").contains("mostly"));
        }
    }

    #[test]
    fn log_line_probe() {
        let mut ev = event(
            "be",
            EventDetail::Probe(probe(false, Some("connection refused"), None)),
        );
        ev.link = None;
        ev.runbook = None;
        assert_eq!(
            log_line(&ev, "h"),
            "status_alert: DOWN be: http://10.0.0.5:8080/health (connection refused), \
             probe took 5003 ms, since 2026-11-22T10:12:25Z"
        );
    }

    #[test]
    fn log_line_never_has_newlines() {
        let nasty = "be\nINJECTED\r\nline\u{2028}x".repeat(2_000);
        let mut ev = event(
            &nasty,
            EventDetail::Probe(probe(false, Some(&nasty), Some(5))),
        );
        ev.link = Some(nasty.clone());
        let mut l = error_ratio(Level::Critical, 1, 2);
        l.top_codes = vec![(nasty.clone(), 1)];
        let loc_ev = AlertEvent {
            detail: EventDetail::ErrorRatio(l),
            ..ev.clone()
        };
        for e in [ev, loc_ev] {
            let line = log_line(&e, &nasty);
            assert!(!line.contains(['\n', '\r', '\u{2028}']));
            assert!(line.starts_with("status_alert: "));
            assert!(line.chars().count() <= LOG_MAX);
            assert!(!title(&e).contains('\n'));
        }
    }

    fn traffic_event(e: crate::vocab::traffic::TrafficEvent) -> AlertEvent {
        let at = e.since_unix + 430;
        AlertEvent {
            at_unix: at,
            ..event("api", EventDetail::Traffic(e))
        }
    }

    #[test]
    fn traffic_titles() {
        use crate::vocab::traffic::{TrafficParams, TrafficThreshold::Requests};
        let e = traffic_event(traffic(Level::Critical, 3, Some(412.0)));
        assert_eq!(
            title(&e),
            "CRITICAL api: traffic 3 requests in 5m, usually 412"
        );
        let mut t = traffic(Level::Warning, 1, Some(411.5));
        t.repeat = true;
        assert_eq!(
            title(&traffic_event(t)),
            "WARNING api: traffic 1 request in 5m, usually 412 (still firing)"
        );
        let e = traffic_event(traffic(Level::Ok, 380, Some(412.0)));
        assert_eq!(title(&e), "RESOLVED api traffic after 7m 10s");
        assert_eq!(kind_label(&e), "RESOLVED");
        // An absolute floor before the usual traffic is known.
        let mut t = traffic(Level::Critical, 0, None);
        t.params = TrafficParams {
            warn: Requests(100),
            crit: Some(Requests(1)),
        };
        t.window_secs = 60;
        let e = traffic_event(t);
        assert_eq!(
            title(&e),
            "CRITICAL api: traffic 0 requests in 1m, expected at least 1"
        );
        assert!(
            log_line(&e, "h").starts_with(
                "status_alert: CRITICAL api: traffic 0 requests in 1m, expected at least 1 \
                 (warn 100 · crit 1), since "
            ),
            "{}",
            log_line(&e, "h")
        );
        // A hostile NAME stays on one line and leaves room for the figures.
        let mut e = traffic_event(traffic(Level::Critical, 3, Some(412.0)));
        e.name = "é\n".repeat(500);
        let t = title(&e);
        assert!(t.chars().count() <= MAX_TITLE && !t.contains('\n'), "{t}");
        assert!(
            t.ends_with(": traffic 3 requests in 5m, usually 412"),
            "{t}"
        );
    }
}
