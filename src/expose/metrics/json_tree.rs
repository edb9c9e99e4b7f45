//! The JSON document as it was first built: a `serde_json::Value` tree, serialised. Kept for the
//! tests only, as the reference the direct writer (`json`) must match byte for byte; at 10,000
//! NAMEs building the tree cost about five times the Prometheus text (issue 20).

use serde_json::{json, Map, Value};

use super::{
    cumulative_buckets, status_label, AlertingStatus, Metrics, NameHealth, NOTIFY_RESULT_LABELS,
};
use crate::vocab::reason::Reason;
use crate::zone::incidents::{IncidentKind, KINDS};
use crate::zone::peers::PEER_CLASS_LABELS;

/// The JSON object of [`AlertingStatus`]; times in Unix seconds like the rest of the JSON.
fn alerting_json(a: &AlertingStatus) -> Value {
    json!({
        "evaluations": a.evaluations,
        "last_evaluation": (a.last_evaluation_ms != 0).then_some(a.last_evaluation_ms / 1000),
        "interval_seconds": a.interval_ms as f64 / 1000.0,
        "helper_restarts": a.helper_restarts,
        "running": a.stalled_since_ms.is_none(),
        "stalled_since": a.stalled_since_ms.map(|ms| ms / 1000),
        "evaluated_elsewhere": a.evaluated_elsewhere,
        "reason": a.reason_words(),
    })
}

/// The JSON object of a NAME's latency, error budget and incidents.
fn health_json(h: &NameHealth) -> Map<String, Value> {
    let mut o = Map::new();
    if let Some((q, seconds)) = &h.latency {
        o.insert(
            "latency".into(),
            json!({ "quantile": q, "seconds": seconds }),
        );
    }
    if let Some((objective, rates)) = &h.slo {
        let rates: Map<String, Value> = rates.iter().map(|(w, r)| (w.clone(), json!(r))).collect();
        o.insert(
            "slo".into(),
            json!({ "objective_percent": objective, "burn_rates": rates }),
        );
    }
    if let Some(t) = &h.traffic {
        o.insert(
            "traffic".into(),
            json!({
                "thresholds": t.thresholds,
                "alert_state": t.level.label().to_ascii_lowercase(),
                "usual_requests": t.usual,
                "known_windows": t.known_windows,
            }),
        );
    }
    let per_kind = |values: [u64; KINDS]| -> Map<String, Value> {
        IncidentKind::ALL
            .iter()
            .zip(values)
            .map(|(k, n)| (k.label().to_string(), json!(n)))
            .collect()
    };
    let recent: Vec<Value> = h
        .incidents
        .recent
        .iter()
        .map(|i| {
            json!({
                "kind": i.kind.label(),
                "start": i.start_ms / 1000,
                "end": i.end_ms.map(|ms| ms / 1000),
                "peak_level": i.peak_level.label().to_ascii_lowercase(),
                "peak_value": i.peak_value,
                "muted": i.muted,
            })
        })
        .collect();
    o.insert(
        "incidents".into(),
        json!({
            "total": per_kind(h.incidents.opened),
            "seconds_total": per_kind(h.incidents.firing_seconds),
            "recent": recent,
        }),
    );
    o
}

/// Renders the same data as JSON, through a `Value` tree.
pub fn render_json_tree(m: &Metrics) -> String {
    let mut locations = Map::new();
    for l in &m.names {
        let mut requests = Map::new();
        for (code, n) in l.counters.seen_codes() {
            requests.insert(status_label(code), json!(n));
        }
        let cumulative = cumulative_buckets(&l.counters, &m.bucket_bounds);
        let count = cumulative.last().map_or(0, |(_, n)| *n);
        let buckets: Map<String, Value> = cumulative
            .into_iter()
            .map(|(le, n)| (le, json!(n)))
            .collect();
        let mut entry = json!({
                "requests": requests,
                "requests_total": l.counters.total(),
                "duration_seconds": {
                    "buckets": buckets,
                    "sum": l.counters.duration_us_sum as f64 / 1e6,
                    "count": count,
                },
                "window": {
                    "requests": l.window_requests,
                    "errors": l.window_errors,
                    "error_ratio": l.error_ratio(),
                },
                "alert_state": l.level.label().to_ascii_lowercase(),
                "muted": m.mutes.get(&l.name).map(|v| json!({
                    "until": crate::vocab::text::iso8601(v.until_unix),
                    "until_unix": v.until_unix,
                    "reason": v.reason,
                })),
        });
        if let (Some(h), Some(o)) = (
            m.health.iter().find(|h| h.name == l.name),
            entry.as_object_mut(),
        ) {
            o.extend(health_json(h));
        }
        locations.insert(l.name.clone(), entry);
    }
    let probes: Vec<Value> = m
        .probes
        .iter()
        .map(|p| {
            let failures: Map<String, Value> = Reason::ALL
                .iter()
                .zip(p.failures.iter())
                .map(|(r, n)| (r.label().to_string(), json!(n)))
                .collect();
            let down = m
                .probe_down
                .iter()
                .find(|d| d.name == p.name && d.target == p.target)
                .map(|d| d.seconds);
            json!({
                "probe": p.name,
                "target": p.target,
                "up": p.up,
                "duration_seconds": p.duration_seconds,
                "failures": failures,
                "down_seconds_total": down,
            })
        })
        .collect();
    let notifications: Map<String, Value> = NOTIFY_RESULT_LABELS
        .iter()
        .zip(m.notifications.iter())
        .map(|(r, n)| (r.to_string(), json!(n)))
        .collect();
    let destinations: Map<String, Value> = m
        .destinations
        .iter()
        .map(|(label, counts)| {
            let c: Map<String, Value> = NOTIFY_RESULT_LABELS
                .iter()
                .zip(counts.iter())
                .map(|(r, n)| (r.to_string(), json!(n)))
                .collect();
            (label.clone(), Value::Object(c))
        })
        .collect();
    let certificates: Vec<Value> = m
        .certificates
        .iter()
        .map(|c| {
            json!({
                "server": c.server,
                "file": c.file,
                "served_expiry": c.served,
                "on_disk_expiry": c.on_disk,
                "renewed_on_disk_since": c.renewed_since,
                "problem": c.problem,
                "alert_state": c.level.label().to_ascii_lowercase(),
            })
        })
        .collect();
    let probe_certificates: Vec<Value> = m
        .probe_certificates
        .iter()
        .map(|(probe, target, expiry, level)| {
            json!({
                "probe": probe,
                "target": target,
                "expiry": expiry,
                "alert_state": level.label().to_ascii_lowercase(),
            })
        })
        .collect();
    let mut upstream_peers = Map::new();
    for p in &m.upstream_peers {
        let classes: Map<String, Value> = PEER_CLASS_LABELS
            .iter()
            .zip(p.classes.iter())
            .map(|(c, n)| (c.to_string(), json!(n)))
            .collect();
        if let Some(peers) = upstream_peers
            .entry(p.upstream.clone())
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            peers.insert(p.peer.clone(), Value::Object(classes));
        }
    }
    let doc = json!({
        "upstream_peers": upstream_peers,
        "locations": locations,
        "probes": probes,
        "certificates": certificates,
        "probe_certificates": probe_certificates,
        "notifications": notifications,
        "destinations": destinations,
        "queue_depth": m.queue_depth,
        "alerting": m.alerting.as_ref().map(alerting_json),
    });
    let mut s = doc.to_string();
    s.push('\n');
    s
}
