//! Prometheus text exposition format 0.0.4, written to any `fmt::Write`: HELP and TYPE lines,
//! label values escaped, a family without samples left out.

use core::fmt::{self, Write};

use super::{cumulative_buckets, status_label, AlertingStatus, Metrics, NOTIFY_RESULT_LABELS};
use crate::vocab::reason::Reason;
use crate::zone::incidents::IncidentKind;
use crate::zone::peers::PEER_CLASS_LABELS;

/// Writes `s` escaped as a Prometheus label value.
pub(super) fn escape_label(out: &mut impl Write, s: &str) -> fmt::Result {
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
pub(super) fn sample(
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

pub(super) fn header(out: &mut impl Write, name: &str, kind: &str, help: &str) -> fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
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
    header(
        out,
        "nginx_location_muted",
        "gauge",
        "1 while the location NAME is muted (maintenance window or runtime mute): evaluated, \
         nothing sent.",
    )?;
    for l in locs {
        sample(
            out,
            "nginx_location_muted",
            &[("location", &l.name)],
            u8::from(m.mutes.contains_key(&l.name)),
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

    if !m.certificates.is_empty() {
        let name = "nginx_ssl_certificate_expiry_timestamp_seconds";
        header(
            out,
            name,
            "gauge",
            "Expiry of a certificate nginx serves (state served) and of the one in its file now \
             (state on_disk), Unix seconds.",
        )?;
        for c in &m.certificates {
            for (state, value) in [("served", c.served), ("on_disk", c.on_disk)] {
                if let Some(v) = value {
                    let labels = [
                        ("server", c.server.as_str()),
                        ("file", c.file.as_str()),
                        ("state", state),
                    ];
                    sample(out, name, &labels, v)?;
                }
            }
        }
    }
    if !m.probe_certificates.is_empty() {
        let name = "nginx_probe_certificate_expiry_timestamp_seconds";
        header(
            out,
            name,
            "gauge",
            "Expiry of the certificate an HTTPS probe target served last, Unix seconds.",
        )?;
        for (probe, target, v, _) in &m.probe_certificates {
            let labels = [("probe", probe.as_str()), ("target", target.as_str())];
            sample(out, name, &labels, v)?;
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

    if !m.upstream_peers.is_empty() {
        let name = "nginx_upstream_peer_responses_total";
        header(
            out,
            name,
            "counter",
            "Upstream tries of NAMEs' requests by peer and class (error: no response).",
        )?;
        for p in &m.upstream_peers {
            for (class, n) in PEER_CLASS_LABELS.iter().zip(p.classes.iter()) {
                let labels = [
                    ("upstream", p.upstream.as_str()),
                    ("peer", p.peer.as_str()),
                    ("class", class),
                ];
                sample(out, name, &labels, n)?;
            }
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

/// The evaluator's own families, so that alerting watches itself: `NginxStatusAlertStalled`
/// compares the last evaluation's age with 3 intervals.
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

/// Incidents, latency percentiles and burn rates; a family without samples is
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
    let usual: Vec<(&str, f64)> = m
        .health
        .iter()
        .filter_map(|h| Some((h.name.as_str(), h.traffic.as_ref()?.usual?)))
        .collect();
    if !usual.is_empty() {
        let name = "nginx_location_traffic_usual_requests";
        header(
            out,
            name,
            "gauge",
            "Usual requests per window of traffic= (median of the last 12 windows), once known.",
        )?;
        for (location, requests) in usual {
            sample(out, name, &[("location", location)], requests)?;
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
