//! Prometheus Alertmanager payloads (API v2, `POST /api/v2/alerts`) from alert events.
//!
//! Alertmanager deduplicates, groups, silences and routes; a fleet of nginx hosts posting the
//! same incident gives one notification. Alerts carry the alertnames and labels of the shipped
//! Prometheus rules (`deploy/prometheus/rules.yml`), so one routing tree, silence or inhibition
//! serves both: `alertname`, `severity`, `location` or `probe` + `target`, and `instance`.
//!
//! Firing alerts are posted on every change and again every [`RESEND_SECS`] with `endsAt` a few
//! resends ahead, so an alert whose sender disappears resolves on its own; a resolved alert is
//! posted with `endsAt` = now. Pure: no nginx, no I/O.

use crate::vocab::certificate::CertificateSubject;
use serde_json::{json, Map, Value};

use crate::vocab::event::{AlertEvent, EventDetail, Level};
use crate::vocab::text::{iso8601, MAX_TIMESTAMP};
use crate::vocab::title::{log_line, title};

/// How often firing alerts are posted again.
pub const RESEND_SECS: u64 = 60;
/// `endsAt` of a firing alert lies this far ahead: Alertmanager resolves it if no resend
/// arrives for that long (the sender stopped).
pub const FIRING_FOR_SECS: u64 = 5 * RESEND_SECS;

/// Alertname of a NAME's 5xx share (as in deploy/prometheus/rules.yml).
pub const ERROR_RATIO: &str = "NginxLocationErrorRatio";
/// Alertname of a NAME's `latency=` percentile (as in deploy/prometheus/rules.yml).
pub const LATENCY: &str = "NginxLocationLatency";
/// Alertname of a NAME's `slo=` error-budget burn (as in deploy/prometheus/rules.yml).
pub const ERROR_BUDGET: &str = "NginxLocationErrorBudgetBurn";
/// Alertname of a NAME's `traffic=` drop (as in deploy/prometheus/rules.yml).
pub const TRAFFIC_DROP: &str = "NginxLocationTrafficDrop";
/// Alertname of a probe target that is down.
pub const PROBE_DOWN: &str = "NginxProbeDown";
/// Alertname of a certificate nginx serves nearing its expiry (as in
/// deploy/prometheus/rules.yml).
pub const CERTIFICATE_EXPIRY: &str = "NginxCertificateExpiry";
/// Alertname of an HTTPS probe target's certificate nearing its expiry (as in
/// deploy/prometheus/rules.yml).
pub const PROBE_CERTIFICATE_EXPIRY: &str = "NginxProbeCertificateExpiry";

fn severity(level: Level) -> &'static str {
    match level {
        Level::Critical => "critical",
        _ => "warning",
    }
}

/// One Alertmanager alert for `event` at `level` (the firing level; for a resolution, the level
/// that was firing), ending at `ends_unix`.
fn alert(event: &AlertEvent, level: Level, host: &str, ends_unix: u64) -> Value {
    let mut labels = Map::new();
    let since = match &event.detail {
        EventDetail::ErrorRatio(l) => {
            labels.insert("alertname".into(), ERROR_RATIO.into());
            labels.insert("location".into(), event.name.clone().into());
            l.since_unix
        }
        EventDetail::Latency(l) => {
            labels.insert("alertname".into(), LATENCY.into());
            labels.insert("location".into(), event.name.clone().into());
            l.since_unix
        }
        EventDetail::Slo(l) => {
            labels.insert("alertname".into(), ERROR_BUDGET.into());
            labels.insert("location".into(), event.name.clone().into());
            l.since_unix
        }
        EventDetail::Traffic(l) => {
            labels.insert("alertname".into(), TRAFFIC_DROP.into());
            labels.insert("location".into(), event.name.clone().into());
            l.since_unix
        }
        EventDetail::Certificate(c) => {
            match &c.subject {
                CertificateSubject::Served { server, file } => {
                    labels.insert("alertname".into(), CERTIFICATE_EXPIRY.into());
                    labels.insert("server".into(), server.clone().into());
                    labels.insert("file".into(), file.clone().into());
                }
                CertificateSubject::Probe { probe, target } => {
                    labels.insert("alertname".into(), PROBE_CERTIFICATE_EXPIRY.into());
                    labels.insert("probe".into(), probe.clone().into());
                    labels.insert("target".into(), target.clone().into());
                }
            }
            c.since_unix
        }
        EventDetail::Probe(p) => {
            labels.insert("alertname".into(), PROBE_DOWN.into());
            labels.insert("probe".into(), event.name.clone().into());
            labels.insert("target".into(), p.target.clone().into());
            p.since_unix
        }
    };
    labels.insert("severity".into(), severity(level).into());
    labels.insert("instance".into(), host.into());
    let mut annotations = Map::new();
    annotations.insert("summary".into(), title(event).into());
    annotations.insert("description".into(), log_line(event, host).into());
    if let Some(r) = &event.runbook {
        annotations.insert("runbook_url".into(), r.clone().into());
    }
    if let Some(l) = &event.link {
        annotations.insert("dashboard".into(), l.clone().into());
    }
    // RFC 3339 needs a four-digit year (a clock far off must not make the alert unreadable),
    // and a start after the end would be rejected.
    let ends_unix = ends_unix.min(MAX_TIMESTAMP);
    let starts = since.min(ends_unix);
    json!({
        "labels": labels,
        "annotations": annotations,
        "startsAt": iso8601(starts),
        "endsAt": iso8601(ends_unix),
    })
}

/// The level an event says is firing now (`None` for a resolution or an UP), and the level it
/// ends (a resolution, an UP, or a change from one firing level to another).
fn levels(event: &AlertEvent) -> (Option<Level>, Option<Level>) {
    let by_level = |level: Level, previous: Level| {
        let firing = (level != Level::Ok).then_some(level);
        let ended = (previous != Level::Ok && previous != level).then_some(previous);
        (firing, ended)
    };
    match &event.detail {
        EventDetail::ErrorRatio(l) => by_level(l.level, l.previous),
        EventDetail::Latency(l) => by_level(l.level, l.previous),
        EventDetail::Slo(l) => by_level(l.level, l.previous),
        EventDetail::Traffic(l) => by_level(l.level, l.previous),
        EventDetail::Certificate(c) => by_level(c.level, c.previous),
        EventDetail::Probe(p) if p.up => (None, Some(Level::Critical)),
        EventDetail::Probe(_) => (Some(Level::Critical), None),
    }
}

/// The body of `POST /api/v2/alerts`: every alert in `firing` (what fires now, also when it
/// did not change), and the end of every level that `events` ended. `None` with nothing to say.
pub fn build_payload(
    firing: &[AlertEvent],
    events: &[AlertEvent],
    host: &str,
    now_unix: u64,
) -> Option<Value> {
    let mut alerts = Vec::new();
    for e in events {
        if let (_, Some(ended)) = levels(e) {
            alerts.push(alert(e, ended, host, now_unix));
        }
    }
    for e in firing {
        if let (Some(level), _) = levels(e) {
            alerts.push(alert(
                e,
                level,
                host,
                now_unix.saturating_add(FIRING_FOR_SECS),
            ));
        }
    }
    (!alerts.is_empty()).then_some(Value::Array(alerts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::event::{ErrorRatioEvent, ProbeEvent};

    fn location(level: Level, previous: Level) -> AlertEvent {
        AlertEvent {
            name: "api".into(),
            at_unix: 2_000,
            link: Some("https://logs.example.com/api".into()),
            runbook: Some("https://wiki.example.com/api".into()),
            detail: EventDetail::ErrorRatio(ErrorRatioEvent {
                level,
                previous,
                repeat: false,
                errors: 30,
                total: 100,
                window_secs: 300,
                warn_pct: Some(5.0),
                crit_pct: 10.0,
                top_codes: vec![("502".into(), 30)],
                top_peers: Vec::new(),
                since_unix: 1_000,
            }),
        }
    }

    fn probe(up: bool) -> AlertEvent {
        AlertEvent {
            name: "db".into(),
            at_unix: 2_000,
            link: None,
            runbook: None,
            detail: EventDetail::Probe(ProbeEvent {
                up,
                target: "tcp://10.0.0.5:5432".into(),
                reason: (!up).then(|| "connection refused".into()),
                status: None,
                duration_ms: 1,
                since_unix: 1_500,
            }),
        }
    }

    #[test]
    fn firing_alert_has_the_rules_labels_and_ends_ahead() {
        let critical = location(Level::Critical, Level::Ok);
        let v = build_payload(
            std::slice::from_ref(&critical),
            std::slice::from_ref(&critical),
            "web1",
            2_000,
        )
        .unwrap();
        let alerts = v.as_array().unwrap();
        assert_eq!(alerts.len(), 1, "{v}");
        let a = &alerts[0];
        assert_eq!(a["labels"]["alertname"], ERROR_RATIO);
        assert_eq!(a["labels"]["severity"], "critical");
        assert_eq!(a["labels"]["location"], "api");
        assert_eq!(a["labels"]["instance"], "web1");
        assert_eq!(a["startsAt"], "1970-01-01T00:16:40Z");
        assert_eq!(a["endsAt"], iso8601(2_000 + FIRING_FOR_SECS));
        assert!(a["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("CRITICAL api: 5xx 30.0%"));
        assert_eq!(
            a["annotations"]["runbook_url"],
            "https://wiki.example.com/api"
        );
        assert_eq!(
            a["annotations"]["dashboard"],
            "https://logs.example.com/api"
        );
    }

    #[test]
    fn a_changed_level_ends_the_old_severity_and_a_resolution_ends_now() {
        let up = location(Level::Critical, Level::Warning);
        let v = build_payload(
            std::slice::from_ref(&up),
            std::slice::from_ref(&up),
            "h",
            2_000,
        )
        .unwrap();
        let alerts = v.as_array().unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0]["labels"]["severity"], "warning");
        assert_eq!(alerts[0]["endsAt"], iso8601(2_000));
        assert_eq!(alerts[1]["labels"]["severity"], "critical");

        let resolved = location(Level::Ok, Level::Critical);
        let v = build_payload(&[], &[resolved], "h", 2_000).unwrap();
        assert_eq!(v[0]["labels"]["severity"], "critical");
        assert_eq!(v[0]["endsAt"], iso8601(2_000));
    }

    #[test]
    fn probes_fire_as_probe_down_and_resolve_on_up() {
        let down = probe(false);
        let v = build_payload(std::slice::from_ref(&down), &[], "h", 2_000).unwrap();
        assert_eq!(v[0]["labels"]["alertname"], PROBE_DOWN);
        assert_eq!(v[0]["labels"]["probe"], "db");
        assert_eq!(v[0]["labels"]["target"], "tcp://10.0.0.5:5432");
        assert_eq!(v[0]["labels"]["severity"], "critical");
        let v = build_payload(&[], &[probe(true)], "h", 2_000).unwrap();
        assert_eq!(v[0]["endsAt"], iso8601(2_000));
        assert!(build_payload(&[], &[], "h", 2_000).is_none());
    }

    #[test]
    fn latency_and_error_budget_use_their_rules_alertnames() {
        let latency = AlertEvent {
            detail: EventDetail::Latency(crate::vocab::event::LatencyEvent {
                level: Level::Warning,
                previous: Level::Critical,
                repeat: false,
                percentile: "p95".into(),
                estimate_ms: Some(700.0),
                warn_ms: 500,
                crit_ms: Some(2000),
                requests: 100,
                window_secs: 300,
                top_peers: Vec::new(),
                since_unix: 1_000,
            }),
            ..location(Level::Ok, Level::Ok)
        };
        let slo = AlertEvent {
            detail: EventDetail::Slo(crate::vocab::event::SloEvent {
                level: Level::Ok,
                previous: Level::Critical,
                repeat: false,
                slo_pct: 99.9,
                burn_rate: 0.5,
                windows: vec![("5m".into(), 0.5)],
                errors: 1,
                total: 1000,
                top_peers: Vec::new(),
                since_unix: 1_200,
            }),
            ..location(Level::Ok, Level::Ok)
        };
        let events = [latency.clone(), slo];
        let v = build_payload(std::slice::from_ref(&latency), &events, "web1", 2_000).unwrap();
        let alerts = v.as_array().unwrap();
        // Ended: latency critical, error budget critical; firing: latency warning.
        let got: Vec<(&str, &str, &str)> = alerts
            .iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap(),
                    a["labels"]["severity"].as_str().unwrap(),
                    a["labels"]["location"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (LATENCY, "critical", "api"),
                (ERROR_BUDGET, "critical", "api"),
                (LATENCY, "warning", "api"),
            ]
        );
    }

    #[test]
    fn a_firing_latency_or_slo_alert_names_its_peers_in_the_description() {
        use crate::vocab::event::samples::{event, latency, slo};
        let peers = vec![("10.0.0.3:8080".to_string(), 0.82)];
        let mut lat = latency(Level::Critical, Some(2400.0));
        lat.top_peers = peers.clone();
        let mut burn = slo(Level::Critical, 20.0);
        burn.top_peers = peers;
        for detail in [EventDetail::Latency(lat), EventDetail::Slo(burn)] {
            let e = event("api", detail);
            let v = build_payload(std::slice::from_ref(&e), &[], "web1", 2_000).unwrap();
            let description = v[0]["annotations"]["description"].as_str().unwrap();
            assert!(
                description.contains("5xx mostly from 10.0.0.3:8080 (82 %)"),
                "{description}"
            );
        }
    }

    #[test]
    fn a_traffic_drop_is_nginx_location_traffic_drop() {
        use crate::vocab::event::samples::{event, traffic};
        let mut t = traffic(Level::Critical, 0, None);
        t.previous = Level::Warning;
        let e = event("api", EventDetail::Traffic(t));
        let v = build_payload(
            std::slice::from_ref(&e),
            std::slice::from_ref(&e),
            "web1",
            2_000,
        )
        .unwrap();
        let labels: Vec<(&str, &str)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                assert_eq!(a["labels"]["location"], "api");
                (
                    a["labels"]["alertname"].as_str().unwrap(),
                    a["labels"]["severity"].as_str().unwrap(),
                )
            })
            .collect();
        // The warning ended, the critical fires.
        assert_eq!(
            labels,
            [(TRAFFIC_DROP, "warning"), (TRAFFIC_DROP, "critical")]
        );
    }
}
