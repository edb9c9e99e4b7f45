//! Metric values and their encodings (Prometheus text format 0.0.4 and JSON).
//!
//! The content handler copies shared-memory counters into a [`Metrics`] value first and renders
//! afterwards, so rendering is pure and testable.

use core::fmt::{self, Write};
use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::vocab::event::error_share;
use crate::vocab::event::Level;
use crate::vocab::reason::Reason;
use crate::zone::counters::{BucketBounds, CountersSnapshot};
use crate::zone::incidents::{IncidentKind, IncidentSummary};
use crate::zone::StallReason;

/// Results of alert deliveries, in the order of [`Metrics::notifications`].
pub const NOTIFY_RESULT_LABELS: [&str; 4] = ["sent", "retried", "failed", "dropped"];

/// Everything `status_metrics` shows.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// One entry per NAME, in configuration order.
    pub names: Vec<NameMetrics>,
    /// One entry per probe target.
    pub probes: Vec<ProbeMetrics>,
    /// Alert deliveries by result, see [`NOTIFY_RESULT_LABELS`].
    pub notifications: [u64; 4],
    /// The same per destination: its label (`discord-1`, `alertmanager-2`, ...) and counts.
    /// Empty without destinations; then the totals are exported without a `destination`.
    pub destinations: Vec<(String, [u64; 4])>,
    /// Messages waiting for delivery.
    pub queue_depth: u64,
    /// The histogram bounds the counters count by (`status_alert_buckets`).
    pub bucket_bounds: BucketBounds,
    /// Latency, error-budget and incident figures per NAME, matched to `names` by name.
    pub health: Vec<NameHealth>,
    /// Time each probe target spent down, matched to `probes` by name and target.
    pub probe_down: Vec<ProbeDown>,
    /// What the status page shows beyond the counters, by NAME; a NAME without an entry
    /// simply shows less. (Kept out of [`NameMetrics`] so existing constructors stay valid.)
    pub name_details: BTreeMap<String, NameDetail>,
    /// Probe state beyond the counters, by (probe NAME, target).
    pub probe_details: BTreeMap<(String, String), ProbeDetail>,
    /// `(upstream, peer, kept out)` of every `mark_down=on` peer.
    pub peers_down: Vec<(String, String, bool)>,
    /// How the evaluator is doing (SPEC 11); `None` without a zone (nothing evaluates then).
    pub alerting: Option<AlertingStatus>,
}

impl Metrics {
    /// The page details of a NAME, if any were collected.
    pub fn location_detail(&self, name: &str) -> Option<&NameDetail> {
        self.name_details.get(name)
    }

    /// The page details of a probe target, if any were collected.
    pub fn probe_detail(&self, name: &str, target: &str) -> Option<&ProbeDetail> {
        self.probe_details
            .get(&(name.to_string(), target.to_string()))
    }
}

/// The evaluator watching itself (SPEC 11), as read from the zone.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertingStatus {
    /// Evaluation rounds completed.
    pub evaluations: u64,
    /// When the last round completed, ms since the epoch; 0 before the first.
    pub last_evaluation_ms: u64,
    /// `status_alert_interval`, ms.
    pub interval_ms: u64,
    /// Helper processes started to replace one that died, stalled or could not be started.
    pub helper_restarts: u64,
    /// Since when alerting is not running (no round for more than 3 intervals), ms since the
    /// epoch; `None` while it runs.
    pub stalled_since_ms: Option<u64>,
    /// Another nginx master of this configuration (a binary upgrade) evaluates instead.
    pub evaluated_elsewhere: bool,
    /// Why evaluation cannot run, as far as the evaluating process knows.
    pub reason: StallReason,
}

impl AlertingStatus {
    /// The reason in words, `None` when nothing is known.
    pub fn reason_words(&self) -> Option<&'static str> {
        match self.reason {
            StallReason::Unknown => None,
            StallReason::StateDirectory => {
                Some("the state directory or its lease file is unusable")
            }
            StallReason::Helper => Some("no helper process can be started"),
        }
    }
}

/// Status-page data of one NAME that the cumulative counters do not carry; every field is
/// optional, empty or `None` until the zone keeps it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NameDetail {
    /// 5xx share (0..=1) at successive evaluations across the window, oldest first.
    pub error_share_history: Vec<f64>,
    /// Recent incidents, any order (the page shows the newest first).
    pub incidents: Vec<IncidentView>,
    /// Start of the current incident while the level is not ok, Unix seconds.
    pub level_since_unix: Option<u64>,
    /// Window length in seconds (`window=`).
    pub window_secs: Option<u64>,
    /// `warn=` in percent; `None` with `warn=off` or when unknown.
    pub warn_pct: Option<f64>,
    /// `crit=` in percent.
    pub crit_pct: Option<f64>,
    /// Window median request time in seconds, when the zone tracks window percentiles.
    pub window_p50_seconds: Option<f64>,
    /// Window 95th percentile request time in seconds, as above.
    pub window_p95_seconds: Option<f64>,
    /// `link=` URL.
    pub link: Option<String>,
    /// `runbook=` URL.
    pub runbook: Option<String>,
}

/// One incident of a NAME: from the first non-ok evaluation to the return to ok.
#[derive(Clone, Debug, PartialEq)]
pub struct IncidentView {
    /// Start, Unix seconds.
    pub start_unix: u64,
    /// End, Unix seconds; `None` while ongoing.
    pub end_unix: Option<u64>,
    /// Highest level reached.
    pub peak_level: Level,
    /// Highest 5xx share (0..=1) seen during the incident.
    pub peak_share: f64,
}

/// Probe state beyond the counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeDetail {
    /// Since when the target is in its current state (up or down), Unix seconds.
    pub since_unix: Option<u64>,
    /// Reason of the last failure in words, e.g. `connection refused`.
    pub last_reason: Option<String>,
    /// HTTP status of the last probe, if any.
    pub last_status: Option<u16>,
}

/// Latency, error-budget and incident figures of one NAME.
#[derive(Clone, Debug, Default)]
pub struct NameHealth {
    /// The NAME.
    pub name: String,
    /// With `latency=`: the `quantile` label (`0.95`) and the window estimate in seconds
    /// (`None` without requests in the window).
    pub latency: Option<(String, Option<f64>)>,
    /// With `slo=`: the objective in percent and the burn rate per window label
    /// (`5m`, `30m`, `1h`, `6h` for `window=5m`), shortest first.
    pub slo: Option<(f64, Vec<(String, f64)>)>,
    /// Incident totals and recent incidents.
    pub incidents: IncidentSummary,
}

/// Time one probe target spent down.
#[derive(Clone, Debug)]
pub struct ProbeDown {
    /// Probe NAME.
    pub name: String,
    /// Target URL without credentials.
    pub target: String,
    /// Seconds spent down, the current down period included.
    pub seconds: u64,
}

/// Metrics of one NAME.
#[derive(Clone, Debug)]
pub struct NameMetrics {
    /// The NAME.
    pub name: String,
    /// Cumulative counters.
    pub counters: CountersSnapshot,
    /// Requests in the window at the last evaluation.
    pub window_requests: u64,
    /// 5xx in the window at the last evaluation.
    pub window_errors: u64,
    /// Alert level.
    pub level: Level,
}

impl NameMetrics {
    /// 5xx share of the window (0 with no requests).
    pub fn error_ratio(&self) -> f64 {
        error_share(self.window_errors, self.window_requests, 1.0)
    }
}

/// Metrics of one probe target.
#[derive(Clone, Debug)]
pub struct ProbeMetrics {
    /// Probe NAME.
    pub name: String,
    /// Target URL without credentials.
    pub target: String,
    /// `None` until the first result.
    pub up: Option<bool>,
    /// Last probe's duration in seconds.
    pub duration_seconds: f64,
    /// Failures by reason, in the order of [`Reason::ALL`].
    pub failures: [u64; Reason::COUNT],
}

/// Writes `s` escaped as a Prometheus label value.
fn escape_label(out: &mut impl Write, s: &str) -> fmt::Result {
    for c in s.chars() {
        match c {
            '\\' => out.write_str("\\\\")?,
            '"' => out.write_str("\\\"")?,
            '\n' => out.write_str("\\n")?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// A sample line: `name{k="v",...} value`.
fn sample(
    out: &mut impl Write,
    name: &str,
    labels: &[(&str, &str)],
    value: impl fmt::Display,
) -> fmt::Result {
    out.write_str(name)?;
    if !labels.is_empty() {
        out.write_char('{')?;
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            write!(out, "{k}=\"")?;
            escape_label(out, v)?;
            out.write_char('"')?;
        }
        out.write_char('}')?;
    }
    writeln!(out, " {value}")
}

fn header(out: &mut impl Write, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// Cumulative bucket counts with their `le` labels, `+Inf` last (equal to the count).
fn cumulative_buckets(c: &CountersSnapshot, bounds: &BucketBounds) -> Vec<(String, u64)> {
    let mut total = 0u64;
    let mut out: Vec<(String, u64)> = bounds
        .as_ms()
        .iter()
        .zip(c.buckets.iter())
        .map(|(ms, n)| {
            total += n;
            (le_label(*ms), total)
        })
        .collect();
    total += c.buckets[bounds.inf_index()];
    out.push(("+Inf".to_string(), total));
    out
}

/// Estimates the `q` quantile (0..=1) from cumulative bucket counts like Prometheus's
/// `histogram_quantile`: linear interpolation inside the bucket holding the rank, the first
/// bucket starting at 0, and the highest finite bound when the rank falls into `+Inf`.
///
/// `bounds` are the finite upper bounds, increasing; `cumulative` has one more entry (`+Inf`).
/// `None` without observations, for `q` outside 0..=1 or for mismatched slices.
pub fn histogram_quantile(q: f64, bounds: &[f64], cumulative: &[u64]) -> Option<f64> {
    if !(0.0..=1.0).contains(&q) || bounds.is_empty() || cumulative.len() != bounds.len() + 1 {
        return None;
    }
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let b = cumulative.iter().position(|&n| n as f64 >= rank)?;
    if b == bounds.len() {
        return Some(bounds[b - 1]);
    }
    let (lower, below) = if b == 0 {
        (0.0, 0)
    } else {
        (bounds[b - 1], cumulative[b - 1])
    };
    let upper = bounds[b];
    let in_bucket = cumulative[b] - below;
    if in_bucket == 0 {
        return Some(upper);
    }
    Some(lower + (upper - lower) * (rank - below as f64) / in_bucket as f64)
}

/// Request-time quantile in seconds over all requests counted so far (not just the window),
/// with the histogram counted by `bounds` (see [`Metrics::bucket_bounds`]).
pub fn duration_quantile(c: &CountersSnapshot, bounds: &BucketBounds, q: f64) -> Option<f64> {
    let seconds: Vec<f64> = bounds
        .as_ms()
        .iter()
        .map(|ms| *ms as f64 / 1000.0)
        .collect();
    let cumulative: Vec<u64> = cumulative_buckets(c, bounds)
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    histogram_quantile(q, &seconds, &cumulative)
}

/// Upper bound label of a histogram bucket: `0.005` ... `10`.
fn le_label(ms: u64) -> String {
    (ms as f64 / 1000.0).to_string()
}

fn status_label(code: Option<u16>) -> String {
    code.map_or_else(|| "other".to_string(), |c| c.to_string())
}

/// Renders Prometheus text exposition format 0.0.4.
pub fn render_prometheus(m: &Metrics, out: &mut impl Write) -> fmt::Result {
    let locs = &m.names;

    header(
        out,
        "nginx_location_requests_total",
        "counter",
        "Responses by location NAME and status code.",
    )?;
    for l in locs {
        for (code, n) in l.counters.seen_codes() {
            let status = status_label(code);
            sample(
                out,
                "nginx_location_requests_total",
                &[("location", &l.name), ("status", &status)],
                n,
            )?;
        }
    }

    let hist = "nginx_location_request_duration_seconds";
    header(out, hist, "histogram", "Request time by location NAME.")?;
    for l in locs {
        let bucket = format!("{hist}_bucket");
        let buckets = cumulative_buckets(&l.counters, &m.bucket_bounds);
        for (le, n) in &buckets {
            sample(out, &bucket, &[("location", &l.name), ("le", le)], n)?;
        }
        let count = buckets.last().map_or(0, |(_, n)| *n);
        let sum = l.counters.duration_us_sum as f64 / 1e6;
        sample(out, &format!("{hist}_sum"), &[("location", &l.name)], sum)?;
        sample(
            out,
            &format!("{hist}_count"),
            &[("location", &l.name)],
            count,
        )?;
    }

    header(
        out,
        "nginx_location_window_requests",
        "gauge",
        "Requests in the current window.",
    )?;
    for l in locs {
        sample(
            out,
            "nginx_location_window_requests",
            &[("location", &l.name)],
            l.window_requests,
        )?;
    }
    header(
        out,
        "nginx_location_error_ratio",
        "gauge",
        "5xx share of the requests in the current window.",
    )?;
    for l in locs {
        sample(
            out,
            "nginx_location_error_ratio",
            &[("location", &l.name)],
            l.error_ratio(),
        )?;
    }
    header(
        out,
        "nginx_location_alert_state",
        "gauge",
        "Alert level: 0 ok, 1 warning, 2 critical.",
    )?;
    for l in locs {
        sample(
            out,
            "nginx_location_alert_state",
            &[("location", &l.name)],
            l.level as u8,
        )?;
    }
    render_health(m, out)?;

    if !m.probes.is_empty() {
        header(
            out,
            "nginx_probe_up",
            "gauge",
            "Probe target health: 1 up, 0 down (absent until the first result).",
        )?;
        for p in &m.probes {
            if let Some(up) = p.up {
                sample(
                    out,
                    "nginx_probe_up",
                    &[("probe", &p.name), ("target", &p.target)],
                    up as u8,
                )?;
            }
        }
        header(
            out,
            "nginx_probe_duration_seconds",
            "gauge",
            "Duration of the last probe.",
        )?;
        for p in &m.probes {
            let labels = [("probe", p.name.as_str()), ("target", p.target.as_str())];
            sample(
                out,
                "nginx_probe_duration_seconds",
                &labels,
                p.duration_seconds,
            )?;
        }
        header(
            out,
            "nginx_probe_failures_total",
            "counter",
            "Failed probes by reason.",
        )?;
        for p in &m.probes {
            for (reason, n) in Reason::ALL.iter().zip(p.failures.iter()) {
                let labels = [
                    ("probe", p.name.as_str()),
                    ("target", p.target.as_str()),
                    ("reason", reason.label()),
                ];
                sample(out, "nginx_probe_failures_total", &labels, n)?;
            }
        }
    }
    if !m.probe_down.is_empty() {
        let name = "nginx_probe_down_seconds_total";
        header(out, name, "counter", "Seconds the probe target spent down.")?;
        for p in &m.probe_down {
            let labels = [("probe", p.name.as_str()), ("target", p.target.as_str())];
            sample(out, name, &labels, p.seconds)?;
        }
    }

    if !m.peers_down.is_empty() {
        header(
            out,
            "nginx_upstream_peer_down",
            "gauge",
            "1 while mark_down keeps an upstream peer out of rotation.",
        )?;
        for (upstream, peer, down) in &m.peers_down {
            let labels = [("upstream", upstream.as_str()), ("peer", peer.as_str())];
            sample(out, "nginx_upstream_peer_down", &labels, *down as u8)?;
        }
    }

    header(
        out,
        "nginx_alert_notifications_total",
        "counter",
        "Alert deliveries by destination and result.",
    )?;
    if m.destinations.is_empty() {
        for (result, n) in NOTIFY_RESULT_LABELS.iter().zip(m.notifications.iter()) {
            sample(
                out,
                "nginx_alert_notifications_total",
                &[("result", result)],
                n,
            )?;
        }
    }
    for (destination, counts) in &m.destinations {
        for (result, n) in NOTIFY_RESULT_LABELS.iter().zip(counts.iter()) {
            let labels = [("destination", destination.as_str()), ("result", result)];
            sample(out, "nginx_alert_notifications_total", &labels, n)?;
        }
    }
    header(
        out,
        "nginx_alert_queue_depth",
        "gauge",
        "Alert messages waiting for delivery.",
    )?;
    sample(out, "nginx_alert_queue_depth", &[], m.queue_depth)?;
    match &m.alerting {
        Some(a) => render_alerting(a, out),
        None => Ok(()),
    }
}

/// The evaluator's own families (SPEC 11): `NginxStatusAlertStalled` compares the last
/// evaluation's age with 3 intervals.
fn render_alerting(a: &AlertingStatus, out: &mut impl Write) -> fmt::Result {
    let name = "nginx_status_alert_evaluations_total";
    header(out, name, "counter", "Evaluation rounds completed.")?;
    sample(out, name, &[], a.evaluations)?;
    let name = "nginx_status_alert_last_evaluation_timestamp_seconds";
    header(
        out,
        name,
        "gauge",
        "When the last evaluation round completed, seconds since the epoch (0 before the first).",
    )?;
    sample(out, name, &[], a.last_evaluation_ms as f64 / 1000.0)?;
    let name = "nginx_status_alert_interval_seconds";
    header(
        out,
        name,
        "gauge",
        "Evaluation interval (status_alert_interval).",
    )?;
    sample(out, name, &[], a.interval_ms as f64 / 1000.0)?;
    let name = "nginx_status_alert_helper_restarts_total";
    header(
        out,
        name,
        "counter",
        "Helper processes started to replace one that died, stalled or could not be started.",
    )?;
    sample(out, name, &[], a.helper_restarts)
}

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

/// Incidents, latency percentiles and burn rates (SPEC section 9); a family without samples is
/// left out entirely.
fn render_health(m: &Metrics, out: &mut impl Write) -> fmt::Result {
    if !m.health.is_empty() {
        let name = "nginx_location_incidents_total";
        header(
            out,
            name,
            "counter",
            "Incidents opened (ok -> warning/critical) by kind.",
        )?;
        for h in &m.health {
            for (kind, n) in IncidentKind::ALL.iter().zip(h.incidents.opened) {
                sample(
                    out,
                    name,
                    &[("location", &h.name), ("kind", kind.label())],
                    n,
                )?;
            }
        }
        let name = "nginx_location_incident_seconds_total";
        header(
            out,
            name,
            "counter",
            "Seconds spent firing by kind (MTTR = this / incidents).",
        )?;
        for h in &m.health {
            for (kind, n) in IncidentKind::ALL.iter().zip(h.incidents.firing_seconds) {
                sample(
                    out,
                    name,
                    &[("location", &h.name), ("kind", kind.label())],
                    n,
                )?;
            }
        }
    }
    let latencies: Vec<(&str, &str, f64)> = m
        .health
        .iter()
        .filter_map(|h| {
            let (q, seconds) = h.latency.as_ref()?;
            Some((h.name.as_str(), q.as_str(), (*seconds)?))
        })
        .collect();
    if !latencies.is_empty() {
        // Typed `summary`, not `gauge`: its value is a gauge (the percentile over the window,
        // like a client library's summary over its max age), but the exposition format keeps
        // the `quantile` label to summaries, and promtool rejects it on a gauge.
        let name = "nginx_location_latency_seconds";
        header(
            out,
            name,
            "summary",
            "Request-time percentile of latency= over the window.",
        )?;
        for (location, q, seconds) in latencies {
            sample(
                out,
                name,
                &[("location", location), ("quantile", q)],
                seconds,
            )?;
        }
    }
    if m.health.iter().any(|h| h.slo.is_some()) {
        let name = "nginx_location_slo_burn_rate";
        header(
            out,
            name,
            "gauge",
            "Error-budget burn rate of slo= by window.",
        )?;
        for h in &m.health {
            for (window, rate) in h.slo.iter().flat_map(|(_, rates)| rates) {
                sample(
                    out,
                    name,
                    &[("location", &h.name), ("window", window)],
                    rate,
                )?;
            }
        }
    }
    Ok(())
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
    let per_kind = |values: [u64; 3]| -> Map<String, Value> {
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

/// Renders the same data as JSON.
pub fn render_json(m: &Metrics) -> String {
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
    let doc = json!({
        "locations": locations,
        "probes": probes,
        "notifications": notifications,
        "destinations": destinations,
        "queue_depth": m.queue_depth,
        "alerting": m.alerting.as_ref().map(alerting_json),
    });
    let mut s = doc.to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::counters::{bucket_index, status_index, BUCKET_SLOTS, STATUS_SLOTS};

    fn loc(name: &str, records: &[(usize, u64)]) -> NameMetrics {
        let mut c = CountersSnapshot {
            status: [0; STATUS_SLOTS],
            buckets: [0; BUCKET_SLOTS],
            duration_us_sum: 0,
        };
        for (status, ms) in records {
            c.status[status_index(*status)] += 1;
            c.buckets[bucket_index(*ms)] += 1;
            c.duration_us_sum += ms * 1000;
        }
        NameMetrics {
            name: name.into(),
            counters: c,
            window_requests: 10,
            window_errors: 1,
            level: Level::Warning,
        }
    }

    fn render(m: &Metrics) -> String {
        let mut s = String::new();
        render_prometheus(m, &mut s).unwrap();
        s
    }

    #[test]
    fn upstream_peer_down() {
        let mut m = Metrics::default();
        assert!(!render(&m).contains("nginx_upstream_peer_down"));
        m.peers_down = vec![
            ("backend".into(), "127.0.0.1:81".into(), false),
            ("backend".into(), "[::1]:82".into(), true),
        ];
        let text = render(&m);
        assert!(text.contains("# TYPE nginx_upstream_peer_down gauge\n"));
        assert!(text
            .contains("nginx_upstream_peer_down{upstream=\"backend\",peer=\"127.0.0.1:81\"} 0\n"));
        assert!(
            text.contains("nginx_upstream_peer_down{upstream=\"backend\",peer=\"[::1]:82\"} 1\n")
        );
    }

    #[test]
    fn prometheus_counts_and_histogram() {
        let m = Metrics {
            names: vec![loc("be", &[(200, 3), (200, 30), (503, 20_000), (0, 1)])],
            ..Default::default()
        };
        let text = render(&m);
        assert!(text.contains("nginx_location_requests_total{location=\"be\",status=\"200\"} 2\n"));
        assert!(text.contains("nginx_location_requests_total{location=\"be\",status=\"503\"} 1\n"));
        assert!(text.contains("status=\"other\"} 1\n"));
        assert!(!text.contains("status=\"404\""), "only codes seen");
        let b = "nginx_location_request_duration_seconds_bucket{location=\"be\"";
        assert!(text.contains(&format!("{b},le=\"0.005\"}} 2\n")));
        assert!(text.contains(&format!("{b},le=\"0.05\"}} 3\n")));
        assert!(text.contains(&format!("{b},le=\"10\"}} 3\n")));
        assert!(text.contains(&format!("{b},le=\"+Inf\"}} 4\n")));
        assert!(text.contains("nginx_location_request_duration_seconds_count{location=\"be\"} 4\n"));
        assert!(
            text.contains("nginx_location_request_duration_seconds_sum{location=\"be\"} 20.034\n")
        );
        assert!(text.contains("nginx_location_error_ratio{location=\"be\"} 0.1\n"));
        assert!(text.contains("nginx_location_alert_state{location=\"be\"} 1\n"));
        assert!(text.contains("# TYPE nginx_location_request_duration_seconds histogram\n"));
        assert!(text.contains("nginx_alert_notifications_total{result=\"dropped\"} 0\n"));
        assert!(text.ends_with("nginx_alert_queue_depth 0\n"));
    }

    #[test]
    fn bucket_labels() {
        let labels: Vec<String> = crate::zone::counters::BUCKET_BOUNDS_MS
            .iter()
            .map(|ms| le_label(*ms))
            .collect();
        assert_eq!(
            labels,
            ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"]
        );
    }

    #[test]
    fn label_escaping() {
        let mut s = String::new();
        escape_label(&mut s, "a\"b\\c\nd").unwrap();
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn probes_render_only_known_state() {
        let mut m = Metrics::default();
        m.probes.push(ProbeMetrics {
            name: "be".into(),
            target: "http://127.0.0.1:1/h".into(),
            up: None,
            duration_seconds: 0.0,
            failures: [1, 0, 0, 0, 0, 0],
        });
        let text = render(&m);
        assert!(!text.contains("nginx_probe_up{"));
        assert!(text.contains("nginx_probe_failures_total{probe=\"be\",target=\"http://127.0.0.1:1/h\",reason=\"refused\"} 1\n"));
        m.probes[0].up = Some(false);
        assert!(
            render(&m).contains("nginx_probe_up{probe=\"be\",target=\"http://127.0.0.1:1/h\"} 0\n")
        );
    }

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let bounds = [0.1, 0.5, 1.0];
        // 10 in [0, 0.1], 10 in (0.1, 0.5], 0 in (0.5, 1], 0 above.
        let cum = [10, 20, 20, 20];
        assert_eq!(histogram_quantile(0.5, &bounds, &cum), Some(0.1));
        assert_eq!(histogram_quantile(0.25, &bounds, &cum), Some(0.05));
        let p75 = histogram_quantile(0.75, &bounds, &cum).unwrap();
        assert!((p75 - 0.3).abs() < 1e-12, "{p75}");
        assert_eq!(histogram_quantile(0.0, &bounds, &cum), Some(0.0));
        // Rank in +Inf: the highest finite bound, as Prometheus does.
        assert_eq!(histogram_quantile(0.99, &bounds, &[0, 0, 1, 10]), Some(1.0));
        assert_eq!(histogram_quantile(0.5, &bounds, &[0, 0, 0, 0]), None);
        assert_eq!(histogram_quantile(1.5, &bounds, &cum), None);
        assert_eq!(histogram_quantile(f64::NAN, &bounds, &cum), None);
        assert_eq!(histogram_quantile(0.5, &bounds, &cum[..3]), None);
    }

    #[test]
    fn duration_quantile_uses_the_module_buckets() {
        let l = loc("be", &[(200, 3), (200, 3), (200, 30), (200, 30)]);
        // Two in le=0.005, two in (0.025, 0.05]: the median is the top of the first bucket.
        let default = BucketBounds::default();
        assert_eq!(duration_quantile(&l.counters, &default, 0.5), Some(0.005));
        let p95 = duration_quantile(&l.counters, &default, 0.95).unwrap();
        assert!((p95 - 0.0475).abs() < 1e-12, "{p95}");
    }

    #[test]
    fn json_carries_the_same_data() {
        let m = Metrics {
            names: vec![loc("be", &[(200, 3), (502, 3)])],
            notifications: [3, 1, 0, 0],
            ..Default::default()
        };
        let v: Value = serde_json::from_str(&render_json(&m)).unwrap();
        let be = &v["locations"]["be"];
        assert_eq!(be["requests"]["200"], 1);
        assert_eq!(be["requests"]["502"], 1);
        assert_eq!(be["requests_total"], 2);
        assert_eq!(be["duration_seconds"]["count"], 2);
        assert_eq!(be["duration_seconds"]["buckets"]["+Inf"], 2);
        assert_eq!(be["window"]["error_ratio"], 0.1);
        assert_eq!(be["alert_state"], "warning");
        assert_eq!(v["notifications"]["sent"], 3);
        assert_eq!(v["queue_depth"], 0);
    }

    fn health() -> NameHealth {
        use crate::zone::incidents::Incident;
        NameHealth {
            name: "api".into(),
            latency: Some(("0.95".into(), Some(2.4))),
            slo: Some((
                99.9,
                vec![
                    ("5m".into(), 15.2),
                    ("30m".into(), 7.5),
                    ("1h".into(), 14.5),
                    ("6h".into(), 2.0),
                ],
            )),
            incidents: IncidentSummary {
                opened: [3, 1, 0],
                firing_seconds: [420, 180, 0],
                recent: vec![Incident {
                    kind: IncidentKind::Latency,
                    start_ms: 1_700_000_000_000,
                    end_ms: None,
                    peak_level: Level::Critical,
                    peak_value: 2.4,
                }],
            },
        }
    }

    fn full() -> Metrics {
        let mut m = Metrics {
            names: vec![loc("api", &[(200, 3), (503, 700)])],
            health: vec![health()],
            probe_down: vec![ProbeDown {
                name: "api".into(),
                target: "http://10.0.0.5/health".into(),
                seconds: 95,
            }],
            alerting: Some(running()),
            ..Default::default()
        };
        m.probes.push(ProbeMetrics {
            name: "api".into(),
            target: "http://10.0.0.5/health".into(),
            up: Some(false),
            duration_seconds: 0.5,
            failures: [0, 2, 0, 0, 0, 0],
        });
        m
    }

    #[test]
    fn prometheus_health_families() {
        let text = render(&full());
        for line in [
            "# TYPE nginx_location_incidents_total counter\n",
            "nginx_location_incidents_total{location=\"api\",kind=\"errors\"} 3\n",
            "nginx_location_incidents_total{location=\"api\",kind=\"slo\"} 0\n",
            "nginx_location_incident_seconds_total{location=\"api\",kind=\"latency\"} 180\n",
            "# TYPE nginx_location_latency_seconds summary\n",
            "nginx_location_latency_seconds{location=\"api\",quantile=\"0.95\"} 2.4\n",
            "nginx_location_slo_burn_rate{location=\"api\",window=\"5m\"} 15.2\n",
            "nginx_location_slo_burn_rate{location=\"api\",window=\"6h\"} 2\n",
            "# TYPE nginx_probe_down_seconds_total counter\n",
            "nginx_probe_down_seconds_total{probe=\"api\",target=\"http://10.0.0.5/health\"} 95\n",
        ] {
            assert!(text.contains(line), "missing {line}");
        }
        // Without latency=/slo= (or without requests) those families are absent.
        let mut m = full();
        m.health[0].latency = Some(("0.95".into(), None));
        m.health[0].slo = None;
        let text = render(&m);
        assert!(!text.contains("nginx_location_latency_seconds"));
        assert!(!text.contains("nginx_location_slo_burn_rate"));
        assert!(text.contains("nginx_location_incidents_total{"));
        assert!(!render(&Metrics::default()).contains("incidents"));
    }

    #[test]
    fn configured_buckets_render_their_bounds() {
        let mut l = loc("api", &[]);
        l.counters.buckets[0] = 2; // <= 100ms
        l.counters.buckets[2] = 1; // +Inf with two bounds
        let m = Metrics {
            names: vec![l],
            bucket_bounds: BucketBounds::new(&[100, 2500]).unwrap(),
            ..Default::default()
        };
        let text = render(&m);
        let b = "nginx_location_request_duration_seconds_bucket{location=\"api\"";
        assert!(text.contains(&format!("{b},le=\"0.1\"}} 2\n")));
        assert!(text.contains(&format!("{b},le=\"2.5\"}} 2\n")));
        assert!(text.contains(&format!("{b},le=\"+Inf\"}} 3\n")));
        assert!(!text.contains("le=\"0.005\""));
        let v: Value = serde_json::from_str(&render_json(&m)).unwrap();
        assert_eq!(
            v["locations"]["api"]["duration_seconds"]["buckets"]["2.5"],
            2
        );
    }

    #[test]
    fn json_health() {
        let v: Value = serde_json::from_str(&render_json(&full())).unwrap();
        let api = &v["locations"]["api"];
        assert_eq!(api["latency"]["quantile"], "0.95");
        assert_eq!(api["latency"]["seconds"], 2.4);
        assert_eq!(api["slo"]["objective_percent"], 99.9);
        assert_eq!(api["slo"]["burn_rates"]["1h"], 14.5);
        assert_eq!(api["incidents"]["total"]["errors"], 3);
        assert_eq!(api["incidents"]["seconds_total"]["latency"], 180);
        let recent = &api["incidents"]["recent"][0];
        assert_eq!(recent["kind"], "latency");
        assert_eq!(recent["start"], 1_700_000_000u64);
        assert_eq!(recent["end"], Value::Null);
        assert_eq!(recent["peak_level"], "critical");
        assert_eq!(v["probes"][0]["down_seconds_total"], 95);
    }

    /// An evaluator that completed its last round 4 s ago, every 10 s.
    fn running() -> AlertingStatus {
        AlertingStatus {
            evaluations: 1234,
            last_evaluation_ms: 1_795_308_501_250,
            interval_ms: 10_000,
            helper_restarts: 2,
            stalled_since_ms: None,
            evaluated_elsewhere: false,
            reason: StallReason::Unknown,
        }
    }

    #[test]
    fn alerting_families_while_running() {
        let text = render(&Metrics {
            alerting: Some(running()),
            ..Default::default()
        });
        for line in [
            "# TYPE nginx_status_alert_evaluations_total counter\n",
            "nginx_status_alert_evaluations_total 1234\n",
            "# TYPE nginx_status_alert_last_evaluation_timestamp_seconds gauge\n",
            "nginx_status_alert_last_evaluation_timestamp_seconds 1795308501.25\n",
            "# TYPE nginx_status_alert_interval_seconds gauge\n",
            "nginx_status_alert_interval_seconds 10\n",
            "# TYPE nginx_status_alert_helper_restarts_total counter\n",
            "nginx_status_alert_helper_restarts_total 2\n",
        ] {
            assert!(text.contains(line), "missing {line}");
        }
        for name in [
            "nginx_status_alert_evaluations_total",
            "nginx_status_alert_last_evaluation_timestamp_seconds",
            "nginx_status_alert_interval_seconds",
            "nginx_status_alert_helper_restarts_total",
        ] {
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}"
            );
        }
        let v: Value = serde_json::from_str(&render_json(&Metrics {
            alerting: Some(running()),
            ..Default::default()
        }))
        .unwrap();
        let a = &v["alerting"];
        assert_eq!(a["evaluations"], 1234);
        assert_eq!(a["last_evaluation"], 1_795_308_501u64);
        assert_eq!(a["interval_seconds"], 10.0);
        assert_eq!(a["helper_restarts"], 2);
        assert_eq!(a["running"], true);
        assert_eq!(a["stalled_since"], Value::Null);
        assert_eq!(a["evaluated_elsewhere"], false);
        assert_eq!(a["reason"], Value::Null);
    }

    #[test]
    fn alerting_stalled_before_the_first_evaluation() {
        let stalled = AlertingStatus {
            evaluations: 0,
            last_evaluation_ms: 0,
            interval_ms: 1_500,
            helper_restarts: 0,
            stalled_since_ms: Some(1_795_308_400_000),
            evaluated_elsewhere: false,
            reason: StallReason::StateDirectory,
        };
        let m = Metrics {
            alerting: Some(stalled),
            ..Default::default()
        };
        let text = render(&m);
        assert!(text.contains("nginx_status_alert_evaluations_total 0\n"));
        assert!(text.contains("nginx_status_alert_last_evaluation_timestamp_seconds 0\n"));
        assert!(text.contains("nginx_status_alert_interval_seconds 1.5\n"));
        let v: Value = serde_json::from_str(&render_json(&m)).unwrap();
        let a = &v["alerting"];
        assert_eq!(a["last_evaluation"], Value::Null, "no round yet");
        assert_eq!(a["interval_seconds"], 1.5);
        assert_eq!(a["running"], false);
        assert_eq!(a["stalled_since"], 1_795_308_400u64);
        assert_eq!(
            a["reason"],
            "the state directory or its lease file is unusable"
        );
    }

    #[test]
    fn alerting_absent_without_a_zone() {
        let m = Metrics::default();
        assert!(!render(&m).contains("nginx_status_alert_"));
        let v: Value = serde_json::from_str(&render_json(&m)).unwrap();
        assert_eq!(v["alerting"], Value::Null);
    }

    #[test]
    fn promtool_accepts_every_family() {
        let Ok(mut child) = std::process::Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("promtool not installed; skipped");
            return;
        };
        use std::io::Write as _;
        let text = render(&full());
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let report = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && report.trim().is_empty(),
            "{report}\n{text}"
        );
    }
}
