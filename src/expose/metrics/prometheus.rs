//! Prometheus text exposition format 0.0.4, written to any `fmt::Write`: HELP and TYPE lines,
//! label values escaped, a family without samples left out.

use core::fmt::{self, Write};
use std::borrow::Cow;

use super::NOTIFY_RESULT_LABELS;
use super::{cumulative_counts, le_labels, AlertingStatus, Metrics, StatusLabel};
use crate::vocab::reason::Reason;
use crate::zone::incidents::IncidentKind;
use crate::zone::peers::PEER_CLASS_LABELS;

/// Writes `s` escaped as a Prometheus label value: runs without `\\`, `"` or newline in one
/// piece.
pub(super) fn escape_label(out: &mut impl Write, s: &str) -> fmt::Result {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            b'\n' => "\\n",
            _ => continue,
        };
        // `i` is an ASCII byte's index, so both slices end on character boundaries.
        out.write_str(&s[start..i])?;
        out.write_str(escaped)?;
        start = i + 1;
    }
    out.write_str(&s[start..])
}

/// A sample's value: integers without the formatting machinery (most samples are counts),
/// floats as Rust prints them (shortest form that reads back the same, no exponent).
pub(super) trait SampleValue {
    fn write_value(&self, out: &mut impl Write) -> fmt::Result;
}

impl SampleValue for u64 {
    fn write_value(&self, out: &mut impl Write) -> fmt::Result {
        // Most counts of most NAMEs are single digits (often 0).
        if *self < 10 {
            return out.write_char(char::from(b'0' + *self as u8));
        }
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = *self;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        // ASCII digits only.
        out.write_str(core::str::from_utf8(&digits[i..]).map_err(|_| fmt::Error)?)
    }
}

impl SampleValue for u8 {
    fn write_value(&self, out: &mut impl Write) -> fmt::Result {
        u64::from(*self).write_value(out)
    }
}

impl SampleValue for usize {
    fn write_value(&self, out: &mut impl Write) -> fmt::Result {
        (*self as u64).write_value(out)
    }
}

impl SampleValue for f64 {
    fn write_value(&self, out: &mut impl Write) -> fmt::Result {
        write!(out, "{self}")
    }
}

impl<T: SampleValue> SampleValue for &T {
    fn write_value(&self, out: &mut impl Write) -> fmt::Result {
        (*self).write_value(out)
    }
}

/// A sample line: `name{k="v",...} value`.
pub(super) fn sample(
    out: &mut impl Write,
    name: &str,
    labels: &[(&str, &str)],
    value: impl SampleValue,
) -> fmt::Result {
    out.write_str(name)?;
    if !labels.is_empty() {
        out.write_char('{')?;
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.write_char(',')?;
            }
            out.write_str(k)?;
            out.write_str("=\"")?;
            escape_label(out, v)?;
            out.write_char('"')?;
        }
        out.write_char('}')?;
    }
    out.write_char(' ')?;
    value.write_value(out)?;
    out.write_char('\n')
}

pub(super) fn header(out: &mut impl Write, name: &str, kind: &str, help: &str) -> fmt::Result {
    for part in [
        "# HELP ",
        name,
        " ",
        help,
        "\n# TYPE ",
        name,
        " ",
        kind,
        "\n",
    ] {
        out.write_str(part)?;
    }
    Ok(())
}

/// What follows a located sample's NAME: the closing quote and brace, or a second label.
const END: &str = "\"} ";
const STATUS: &str = "\",status=\"";
const WINDOW: &str = "\",window=\"";

/// `family{location="`: the start of a sample labelled by location NAME, in one piece.
macro_rules! located {
    ($family:literal) => {
        concat!($family, "{location=\"")
    };
}

/// `s` escaped as a label value; borrowed when nothing needs escaping (the usual NAME).
fn escaped(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    // Writing to a String cannot fail.
    let _ = escape_label(&mut out, s);
    Cow::Owned(out)
}

/// `",key="value"} `: a second label and the end of the label set, `value` escaped.
fn second_label(key: &str, value: &str) -> String {
    format!("\",{key}=\"{}{END}", escaped(value))
}

/// A sample labelled by location NAME: `start` from [`located!`], the NAME already escaped,
/// then `rest` (see [`END`]) and the value. Each NAME is escaped once per scrape, and every
/// piece the same for all NAMEs (`",le="0.005"} `) is made once: a line is a few copies.
fn located_sample(
    out: &mut impl Write,
    start: &str,
    name: &str,
    rest: &[&str],
    value: impl SampleValue,
) -> fmt::Result {
    out.write_str(start)?;
    out.write_str(name)?;
    for piece in rest {
        out.write_str(piece)?;
    }
    value.write_value(out)?;
    out.write_char('\n')
}

/// The families with a sample per NAME, in the order they print: name, type, help, and
/// whether the family prints without samples (the others are left out then).
const NAME_FAMILIES: [(&str, &str, &str, bool); 11] = [
    (
        "nginx_location_requests_total",
        "counter",
        "Responses by location NAME and status code.",
        true,
    ),
    (
        "nginx_location_request_duration_seconds",
        "histogram",
        "Request time by location NAME.",
        true,
    ),
    (
        "nginx_location_window_requests",
        "gauge",
        "Requests in the current window.",
        true,
    ),
    (
        "nginx_location_error_ratio",
        "gauge",
        "5xx share of the requests in the current window.",
        true,
    ),
    (
        "nginx_location_alert_state",
        "gauge",
        "Alert level: 0 ok, 1 warning, 2 critical.",
        true,
    ),
    (
        "nginx_location_muted",
        "gauge",
        "1 while the location NAME is muted (maintenance window or runtime mute): evaluated, \
         nothing sent.",
        true,
    ),
    (
        "nginx_location_incidents_total",
        "counter",
        "Incidents opened (ok -> warning/critical) by kind.",
        false,
    ),
    (
        "nginx_location_incident_seconds_total",
        "counter",
        "Seconds spent firing by kind (MTTR = this / incidents).",
        false,
    ),
    // Typed `summary`, not `gauge`: its value is a gauge (the percentile over the window, like
    // a client library's summary over its max age), but the exposition format keeps the
    // `quantile` label to summaries, and promtool rejects it on a gauge.
    (
        "nginx_location_latency_seconds",
        "summary",
        "Request-time percentile of latency= over the window.",
        false,
    ),
    (
        "nginx_location_traffic_usual_requests",
        "gauge",
        "Usual requests per window of traffic= (median of the last 12 windows), once known.",
        false,
    ),
    (
        "nginx_location_slo_burn_rate",
        "gauge",
        "Error-budget burn rate of slo= by window.",
        false,
    ),
];

/// Indexes into [`NAME_FAMILIES`].
const REQUESTS: usize = 0;
const DURATION: usize = 1;
const WINDOW_REQUESTS: usize = 2;
const ERROR_RATIO: usize = 3;
const ALERT_STATE: usize = 4;
const MUTED: usize = 5;
const INCIDENTS: usize = 6;
const INCIDENT_SECONDS: usize = 7;
const LATENCY: usize = 8;
const USUAL: usize = 9;
const SLO: usize = 10;

/// One family's samples so far, in pieces of about [`PIECE`] bytes, and whether it has any
/// reason to print.
#[derive(Default)]
struct FamilyText {
    pieces: Vec<String>,
    present: bool,
}

/// Size of a family's pieces of text. Pieces rather than one growing buffer: growing a
/// buffer of megabytes copies it (once freed memory is reused, glibc no longer grows large
/// buffers in place), which held the event loop for milliseconds at 10,000 NAMEs.
const PIECE: usize = 256 * 1024;

impl FamilyText {
    /// The piece to write the next NAME's samples to.
    fn text(&mut self) -> &mut String {
        if self.pieces.last().map_or(true, |p| p.len() >= PIECE) {
            // Grown by doubling up to PIECE (and once more if the last NAME's samples run
            // over): a few copies of at most PIECE bytes, and small documents stay small.
            self.pieces.push(String::with_capacity(4096));
        }
        let last = self.pieces.len() - 1;
        &mut self.pieces[last]
    }
}

/// Prometheus text written a few NAMEs at a time ([`PrometheusSlices::add`]), so that a
/// scrape of thousands of NAMEs can give the event loop back between slices. The samples of
/// each per-NAME family collect in a buffer of their own, since a family's samples must stay
/// together; [`PrometheusSlices::finish`] puts headers and buffers in order, as pieces of the
/// body that need not be copied into one.
pub struct PrometheusSlices {
    /// `",le="0.005"} ` and the like: the same for every NAME.
    le: Vec<String>,
    /// `",kind="5xx"} ` and the like.
    kinds: Vec<String>,
    status: StatusLabel,
    families: [FamilyText; NAME_FAMILIES.len()],
}

impl PrometheusSlices {
    /// Ready to write the NAMEs of `m` (which must not change until [`Self::finish`]).
    pub fn new(m: &Metrics) -> Self {
        let mut families: [FamilyText; NAME_FAMILIES.len()] = Default::default();
        for (f, (_, _, _, always)) in families.iter_mut().zip(NAME_FAMILIES) {
            f.present = always;
        }
        PrometheusSlices {
            le: le_labels(&m.bucket_bounds)
                .iter()
                .map(|le| second_label("le", le))
                .collect(),
            kinds: IncidentKind::ALL
                .iter()
                .map(|k| second_label("kind", k.label()))
                .collect(),
            status: StatusLabel::new(),
            families,
        }
    }

    /// Writes the samples of every NAME of `m`: a scrape passes the NAMEs a few at a time,
    /// each batch in a [`Metrics`] of its own (with the same bucket bounds).
    pub fn add(&mut self, m: &Metrics) -> fmt::Result {
        for l in &m.names {
            self.name(m, l)?;
        }
        for h in &m.health {
            self.health(h)?;
        }
        Ok(())
    }

    /// The counters of one NAME, in each family's buffer.
    fn name(&mut self, m: &Metrics, l: &super::NameMetrics) -> fmt::Result {
        let name = escaped(&l.name);
        let f = &mut self.families;
        let out = f[REQUESTS].text();
        for (code, n) in l.counters.seen_codes() {
            let start = located!("nginx_location_requests_total");
            located_sample(out, start, &name, &[STATUS, self.status.of(code), END], n)?;
        }
        let out = f[DURATION].text();
        let cumulative = cumulative_counts(&l.counters, &m.bucket_bounds);
        for (le, n) in self.le.iter().zip(&cumulative) {
            let start = located!("nginx_location_request_duration_seconds_bucket");
            located_sample(out, start, &name, &[le], n)?;
        }
        let count = cumulative[self.le.len() - 1];
        let sum = l.counters.duration_us_sum as f64 / 1e6;
        let start = located!("nginx_location_request_duration_seconds_sum");
        located_sample(out, start, &name, &[END], sum)?;
        let start = located!("nginx_location_request_duration_seconds_count");
        located_sample(out, start, &name, &[END], count)?;
        let start = located!("nginx_location_window_requests");
        located_sample(
            f[WINDOW_REQUESTS].text(),
            start,
            &name,
            &[END],
            l.window_requests,
        )?;
        let start = located!("nginx_location_error_ratio");
        located_sample(f[ERROR_RATIO].text(), start, &name, &[END], l.error_ratio())?;
        let start = located!("nginx_location_alert_state");
        located_sample(f[ALERT_STATE].text(), start, &name, &[END], l.level as u8)?;
        let muted = u8::from(m.mutes.contains_key(&l.name));
        let start = located!("nginx_location_muted");
        located_sample(f[MUTED].text(), start, &name, &[END], muted)
    }

    /// Incidents, latency percentile, usual traffic and burn rates of one NAME.
    fn health(&mut self, h: &super::NameHealth) -> fmt::Result {
        let located = escaped(&h.name);
        let f = &mut self.families;
        for (family, values) in [
            (INCIDENTS, &h.incidents.opened),
            (INCIDENT_SECONDS, &h.incidents.firing_seconds),
        ] {
            let start = if family == INCIDENTS {
                located!("nginx_location_incidents_total")
            } else {
                located!("nginx_location_incident_seconds_total")
            };
            let out = &mut f[family];
            out.present = true;
            for (kind, n) in self.kinds.iter().zip(values) {
                located_sample(out.text(), start, &located, &[kind], n)?;
            }
        }
        if let Some((q, Some(seconds))) = &h.latency {
            let out = &mut f[LATENCY];
            out.present = true;
            let labels = [("location", h.name.as_str()), ("quantile", q.as_str())];
            sample(out.text(), NAME_FAMILIES[LATENCY].0, &labels, seconds)?;
        }
        if let Some(requests) = h.traffic.as_ref().and_then(|t| t.usual) {
            let out = &mut f[USUAL];
            out.present = true;
            let labels = [("location", h.name.as_str())];
            sample(out.text(), NAME_FAMILIES[USUAL].0, &labels, requests)?;
        }
        if let Some((_, rates)) = &h.slo {
            let out = &mut f[SLO];
            out.present = true;
            for (window, rate) in rates {
                let start = located!("nginx_location_slo_burn_rate");
                let window = escaped(window);
                located_sample(out.text(), start, &located, &[WINDOW, &window, END], rate)?;
            }
        }
        Ok(())
    }

    /// The whole document as pieces in order: each family's header and samples, then the
    /// families that are not per NAME (probes, certificates, peers, deliveries, alerting).
    pub fn finish(self, m: &Metrics) -> Result<Vec<Vec<u8>>, fmt::Error> {
        let mut pieces = Vec::with_capacity(2 * NAME_FAMILIES.len() + 1);
        for ((name, kind, help, _), f) in NAME_FAMILIES.iter().zip(self.families) {
            if !f.present {
                continue;
            }
            let mut head = String::with_capacity(160);
            header(&mut head, name, kind, help)?;
            pieces.push(head.into_bytes());
            for text in f.pieces.into_iter().filter(|t| !t.is_empty()) {
                pieces.push(text.into_bytes());
            }
        }
        let mut rest = String::with_capacity(4096 + m.probes.len() * 512);
        render_rest(m, &mut rest)?;
        pieces.push(rest.into_bytes());
        Ok(pieces)
    }
}

/// Renders Prometheus text exposition format 0.0.4.
pub fn render_prometheus(m: &Metrics, out: &mut impl Write) -> fmt::Result {
    let mut slices = PrometheusSlices::new(m);
    slices.add(m)?;
    for piece in slices.finish(m)? {
        // Written from `&str`s only: valid UTF-8.
        out.write_str(core::str::from_utf8(&piece).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

/// The families that are not per NAME.
fn render_rest(m: &Metrics, out: &mut impl Write) -> fmt::Result {
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
