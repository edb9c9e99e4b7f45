//! A documented, versioned JSON message for custom receivers (`format=json`).
//!
//! One message per batch of events (what one evaluation produced), posted as
//! `Content-Type: application/json`. Schema, version 1 (see also `docs/alerts.md`, "JSON event"):
//!
//! ```text
//! {
//!   "version": 1,                      // bumped only for incompatible changes
//!   "source": "nginx-status-alert",
//!   "host": "web-1",                   // host name of the nginx that saw the events
//!   "events": [ EVENT, ... ]           // in the order they happened, never empty
//! }
//! ```
//!
//! Every EVENT has the common keys, and all keys of its kind; a key that does not apply is
//! `null`, never missing:
//!
//! - common: `kind` (`"location"` | `"probe"`), `level` (location: `"warning"`, `"critical"`,
//!   `"resolved"`; probe: `"down"`, `"up"`), `name`, `title` (the Discord/Slack title, e.g.
//!   `CRITICAL api: 5xx 12.3% over 5m`), `summary` (one sentence), `at` (RFC 3339 UTC, when the
//!   evaluation or probe saw it), `at_unix`, `since` / `since_unix` (location: start of the
//!   incident; probe: when the target went down), `host`, `link`, `runbook`.
//! - location: `previous` (level before: `"ok"`, `"warning"`, `"critical"`), `repeat` (true when
//!   re-posted by `repeat=`), `errors`, `total` (requests in the window), `ratio` (errors / total,
//!   0..=1, 0 with no requests), `warn_pct` (`null` with `warn=off`), `crit_pct`,
//!   `window_seconds`, `top_peers` (`[{"peer": "10.0.0.3:8080", "share": 0.82}, ...]`, the
//!   upstream peers behind the window's failed tries, at most 3, largest first; empty when not
//!   known), `top_codes` (`[{"code": "502", "count": 120}, ...]`, most frequent first;
//!   codes or classes such as `"4xx"`), `duration_seconds` (`resolved` only: the incident's
//!   length).
//! - probe: `target` (URL without credentials), `reason` (`down` only, e.g.
//!   `"connection refused"`), `status` (HTTP status of the last probe), `probe_duration_ms`,
//!   `duration_seconds` (`up` only: how long it was down).
//!
//! Receivers should ignore unknown keys: new keys may be added within version 1.

use crate::vocab::certificate::CertificateSubject;
use serde_json::{json, Value};

use crate::notify::describe::event_description;
use crate::vocab::event::{AlertEvent, EventDetail, Level};
use crate::vocab::text::{iso8601, MAX_TIMESTAMP};
use crate::vocab::title::title;
use crate::vocab::traffic::TrafficThreshold;

/// Version of the message schema; changes only when a key changes meaning or goes away.
pub const SCHEMA_VERSION: u32 = 1;
/// `source` of every message.
const SOURCE: &str = "nginx-status-alert";

/// RFC 3339 UTC time; years past 9999 do not fit RFC 3339 and are clamped.
fn rfc3339(unix: u64) -> String {
    iso8601(unix.min(MAX_TIMESTAMP))
}

/// `[{"peer": "10.0.0.3:8080", "share": 0.82}, ...]`: the peers behind the window's failed
/// tries, largest share first.
fn peers_json(peers: &[(String, f64)]) -> Vec<Value> {
    peers
        .iter()
        .map(|(peer, share)| json!({ "peer": peer, "share": share }))
        .collect()
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok",
        Level::Warning => "warning",
        Level::Critical => "critical",
    }
}

/// The JSON object of one event.
pub fn event_json(event: &AlertEvent, host: &str) -> Value {
    let mut v = json!({
        "name": event.name,
        "title": title(event),
        "summary": event_description(event, &event.name),
        "at": rfc3339(event.at_unix),
        "at_unix": event.at_unix,
        "host": host,
        "link": event.link,
        "runbook": event.runbook,
    });
    let extra = match &event.detail {
        EventDetail::ErrorRatio(l) => {
            let resolved = l.level == Level::Ok;
            let top: Vec<Value> = l
                .top_codes
                .iter()
                .map(|(code, count)| json!({ "code": code, "count": count }))
                .collect();
            json!({
                "kind": "location",
                "level": if resolved { "resolved" } else { level_name(l.level) },
                "previous": level_name(l.previous),
                "repeat": l.repeat,
                "since": rfc3339(l.since_unix),
                "since_unix": l.since_unix,
                "errors": l.errors,
                "total": l.total,
                "ratio": crate::vocab::event::error_share(l.errors, l.total, 1.0),
                "warn_pct": l.warn_pct,
                "crit_pct": l.crit_pct,
                "window_seconds": l.window_secs,
                "top_codes": top,
                "top_peers": peers_json(&l.top_peers),
                "duration_seconds": resolved.then(|| event.at_unix.saturating_sub(l.since_unix)),
            })
        }
        EventDetail::Latency(l) => {
            let resolved = l.level == Level::Ok;
            json!({
                "kind": "latency",
                "level": if resolved { "resolved" } else { level_name(l.level) },
                "previous": level_name(l.previous),
                "repeat": l.repeat,
                "since": rfc3339(l.since_unix),
                "since_unix": l.since_unix,
                "percentile": l.percentile,
                "estimate_seconds": l.estimate_ms.map(|ms| ms / 1000.0),
                "warn_seconds": l.warn_ms as f64 / 1000.0,
                "crit_seconds": l.crit_ms.map(|ms| ms as f64 / 1000.0),
                "requests": l.requests,
                "window_seconds": l.window_secs,
                "top_peers": peers_json(&l.top_peers),
                "duration_seconds": resolved.then(|| event.at_unix.saturating_sub(l.since_unix)),
            })
        }
        EventDetail::Slo(l) => {
            let resolved = l.level == Level::Ok;
            let windows: Vec<Value> = l
                .windows
                .iter()
                .map(|(window, rate)| json!({ "window": window, "burn_rate": rate }))
                .collect();
            json!({
                "kind": "slo",
                "level": if resolved { "resolved" } else { level_name(l.level) },
                "previous": level_name(l.previous),
                "repeat": l.repeat,
                "since": rfc3339(l.since_unix),
                "since_unix": l.since_unix,
                "slo_pct": l.slo_pct,
                "burn_rate": l.burn_rate,
                "windows": windows,
                "top_peers": peers_json(&l.top_peers),
                "errors": l.errors,
                "total": l.total,
                "duration_seconds": resolved.then(|| event.at_unix.saturating_sub(l.since_unix)),
            })
        }
        EventDetail::Traffic(l) => {
            let resolved = l.level == Level::Ok;
            let threshold = |t: Option<TrafficThreshold>| match t {
                Some(TrafficThreshold::Requests(n)) => json!({ "requests": n }),
                Some(TrafficThreshold::Percent(p)) => json!({ "percent_of_usual": p }),
                None => Value::Null,
            };
            json!({
                "kind": "traffic",
                "level": if resolved { "resolved" } else { level_name(l.level) },
                "previous": level_name(l.previous),
                "repeat": l.repeat,
                "since": rfc3339(l.since_unix),
                "since_unix": l.since_unix,
                "requests": l.requests,
                "usual_requests": l.usual,
                "warn": threshold(Some(l.params.warn)),
                "crit": threshold(l.params.crit),
                "window_seconds": l.window_secs,
                "duration_seconds": resolved.then(|| event.at_unix.saturating_sub(l.since_unix)),
            })
        }
        EventDetail::Certificate(c) => {
            let resolved = c.level == Level::Ok;
            let (server, file, probe, target) = match &c.subject {
                CertificateSubject::Served { server, file } => {
                    (Some(server), Some(file), None, None)
                }
                CertificateSubject::Probe { probe, target } => {
                    (None, None, Some(probe), Some(target))
                }
            };
            json!({
                "kind": "certificate",
                "level": if resolved { "resolved" } else { level_name(c.level) },
                "previous": level_name(c.previous),
                "repeat": c.repeat,
                "since": rfc3339(c.since_unix),
                "since_unix": c.since_unix,
                "server": server,
                "file": file,
                "probe": probe,
                "target": target,
                "expires": rfc3339(c.not_after_unix),
                "expires_unix": c.not_after_unix,
                "renewed_on_disk": c.renewal.map(|(expires, since)| json!({
                    "expires": rfc3339(expires),
                    "since": rfc3339(since),
                    "message": c.renewal_words(),
                })),
                "duration_seconds": resolved.then(|| event.at_unix.saturating_sub(c.since_unix)),
            })
        }
        EventDetail::Probe(p) => json!({
            "kind": "probe",
            "level": if p.up { "up" } else { "down" },
            "since": rfc3339(p.since_unix),
            "since_unix": p.since_unix,
            "target": p.target,
            "reason": if p.up { None } else { p.reason.as_deref() },
            "status": p.status,
            "probe_duration_ms": p.duration_ms,
            "duration_seconds": p.up.then(|| event.at_unix.saturating_sub(p.since_unix)),
        }),
    };
    if let (Some(obj), Value::Object(extra)) = (v.as_object_mut(), extra) {
        obj.extend(extra);
    }
    v
}

/// Builds the one message for a batch of events; `None` for no events.
pub fn build_payload(events: &[AlertEvent], host: &str) -> Option<Value> {
    if events.is_empty() {
        return None;
    }
    let events: Vec<Value> = events.iter().map(|e| event_json(e, host)).collect();
    Some(json!({
        "version": SCHEMA_VERSION,
        "source": SOURCE,
        "host": host,
        "events": events,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::event::{ErrorRatioEvent, ProbeEvent};

    const AT: u64 = 1_795_308_505;

    fn location(level: Level, previous: Level) -> AlertEvent {
        AlertEvent {
            name: "api".into(),
            at_unix: AT,
            link: Some("https://logs.example.com/api".into()),
            runbook: None,
            detail: EventDetail::ErrorRatio(ErrorRatioEvent {
                level,
                previous,
                repeat: false,
                errors: 123,
                total: 1000,
                window_secs: 300,
                warn_pct: None,
                crit_pct: 10.0,
                top_codes: vec![("502".into(), 100), ("4xx".into(), 7)],
                top_peers: Vec::new(),
                since_unix: AT - 430,
            }),
        }
    }

    fn probe(up: bool) -> AlertEvent {
        AlertEvent {
            name: "db".into(),
            at_unix: AT,
            link: None,
            runbook: Some("https://wiki/db".into()),
            detail: EventDetail::Probe(ProbeEvent {
                up,
                target: "tcp://10.0.0.7:5432".into(),
                reason: Some("connection refused".into()),
                status: None,
                duration_ms: 12,
                since_unix: AT - 185,
            }),
        }
    }

    #[test]
    fn envelope() {
        assert_eq!(build_payload(&[], "h"), None);
        let p = build_payload(
            &[location(Level::Critical, Level::Ok), probe(false)],
            "web-1",
        )
        .unwrap();
        assert_eq!(p["version"], 1);
        assert_eq!(p["source"], "nginx-status-alert");
        assert_eq!(p["host"], "web-1");
        let events = p["events"].as_array().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0]["kind"], "location");
        assert_eq!(events[1]["kind"], "probe");
    }

    #[test]
    fn location_event_keys() {
        let e = event_json(&location(Level::Critical, Level::Warning), "web-1");
        assert_eq!(e["level"], "critical");
        assert_eq!(e["previous"], "warning");
        assert_eq!(e["repeat"], false);
        assert_eq!(e["name"], "api");
        assert_eq!(e["title"], "CRITICAL api: 5xx 12.3% over 5m");
        assert_eq!(
            e["summary"],
            "5xx share of api crossed the critical threshold (10%)."
        );
        assert_eq!(e["at"], "2026-11-22T00:48:25Z");
        assert_eq!(e["at_unix"], AT);
        assert_eq!(e["since"], "2026-11-22T00:41:15Z");
        assert_eq!(e["errors"], 123);
        assert_eq!(e["total"], 1000);
        assert_eq!(e["ratio"], 0.123);
        assert_eq!(e["warn_pct"], Value::Null);
        assert_eq!(e["crit_pct"], 10.0);
        assert_eq!(e["window_seconds"], 300);
        assert_eq!(
            e["top_codes"],
            json!([{"code": "502", "count": 100}, {"code": "4xx", "count": 7}])
        );
        assert_eq!(e["top_peers"], json!([]));
        let mut with_peers = location(Level::Critical, Level::Warning);
        if let EventDetail::ErrorRatio(l) = &mut with_peers.detail {
            l.top_peers = vec![
                ("10.0.0.3:8080".into(), 0.82),
                ("10.0.0.4:8080".into(), 0.18),
            ];
        }
        assert_eq!(
            event_json(&with_peers, "web-1")["top_peers"],
            json!([
                {"peer": "10.0.0.3:8080", "share": 0.82},
                {"peer": "10.0.0.4:8080", "share": 0.18}
            ])
        );
        // Latency and SLO events carry them too.
        use crate::vocab::event::samples::{event, latency, slo};
        let peers = vec![("10.0.0.3:8080".to_string(), 1.0)];
        let mut lat = latency(Level::Critical, Some(2400.0));
        assert_eq!(
            event_json(&event("api", EventDetail::Latency(lat.clone())), "h")["top_peers"],
            json!([])
        );
        lat.top_peers = peers.clone();
        let mut burn = slo(Level::Critical, 20.0);
        burn.top_peers = peers;
        for detail in [EventDetail::Latency(lat), EventDetail::Slo(burn)] {
            assert_eq!(
                event_json(&event("api", detail), "h")["top_peers"],
                json!([{"peer": "10.0.0.3:8080", "share": 1.0}])
            );
        }
        assert_eq!(e["host"], "web-1");
        assert_eq!(e["link"], "https://logs.example.com/api");
        assert_eq!(e["runbook"], Value::Null);
        assert_eq!(e["duration_seconds"], Value::Null);
        assert!(e.get("target").is_none(), "probe keys only on probe events");
    }

    #[test]
    fn resolved_carries_the_incident_length() {
        let e = event_json(&location(Level::Ok, Level::Critical), "h");
        assert_eq!(e["level"], "resolved");
        assert_eq!(e["title"], "RESOLVED api after 7m 10s");
        assert_eq!(e["duration_seconds"], 430);
    }

    #[test]
    fn probe_event_keys() {
        let down = event_json(&probe(false), "h");
        assert_eq!(down["level"], "down");
        assert_eq!(down["target"], "tcp://10.0.0.7:5432");
        assert_eq!(down["reason"], "connection refused");
        assert_eq!(down["status"], Value::Null);
        assert_eq!(down["probe_duration_ms"], 12);
        assert_eq!(down["duration_seconds"], Value::Null);
        assert_eq!(down["runbook"], "https://wiki/db");
        assert!(down.get("errors").is_none());
        let up = event_json(&probe(true), "h");
        assert_eq!(up["level"], "up");
        assert_eq!(up["reason"], Value::Null);
        assert_eq!(up["duration_seconds"], 185);
        assert_eq!(up["title"], "UP db: tcp://10.0.0.7:5432 after 3m 5s");
    }

    #[test]
    fn every_kind_has_every_key() {
        let common = [
            "kind",
            "level",
            "name",
            "title",
            "summary",
            "at",
            "at_unix",
            "since",
            "since_unix",
            "host",
            "link",
            "runbook",
            "duration_seconds",
        ];
        let location_keys = [
            "previous",
            "repeat",
            "errors",
            "total",
            "ratio",
            "warn_pct",
            "crit_pct",
            "window_seconds",
            "top_codes",
            "top_peers",
        ];
        let probe_keys = ["target", "reason", "status", "probe_duration_ms"];
        for level in [Level::Ok, Level::Warning, Level::Critical] {
            let e = event_json(&location(level, Level::Ok), "h");
            for k in common.iter().chain(location_keys.iter()) {
                assert!(e.get(k).is_some(), "{k} missing");
            }
        }
        for up in [true, false] {
            let e = event_json(&probe(up), "h");
            for k in common.iter().chain(probe_keys.iter()) {
                assert!(e.get(k).is_some(), "{k} missing");
            }
        }
    }

    #[test]
    fn traffic_event_keys() {
        use crate::vocab::event::samples::{event, traffic};
        let e = event_json(
            &event(
                "api",
                EventDetail::Traffic(traffic(Level::Critical, 3, Some(412.0))),
            ),
            "h",
        );
        assert_eq!(e["kind"], "traffic");
        assert_eq!(e["level"], "critical");
        assert_eq!(
            e["title"],
            "CRITICAL api: traffic 3 requests in 5m, usually 412"
        );
        assert_eq!(e["requests"], 3);
        assert_eq!(e["usual_requests"], 412.0);
        assert_eq!(e["warn"], serde_json::json!({ "percent_of_usual": 50.0 }));
        assert_eq!(e["crit"], serde_json::json!({ "percent_of_usual": 10.0 }));
        assert_eq!(e["window_seconds"], 300);
        assert_eq!(e["duration_seconds"], Value::Null);
        let learning = event_json(
            &event("api", EventDetail::Traffic(traffic(Level::Ok, 0, None))),
            "h",
        );
        assert_eq!(learning["level"], "resolved");
        assert_eq!(learning["usual_requests"], Value::Null);
    }

    #[test]
    fn strings_round_trip_unchanged() {
        let mut e = location(Level::Warning, Level::Ok);
        e.name = "\"><script>\n\u{0}".into();
        let text = build_payload(&[e], "h").unwrap().to_string();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["events"][0]["name"], "\"><script>\n\u{0}");
        assert!(rfc3339(u64::MAX).starts_with("9999-12-31T23:59:59Z"));
    }
}
