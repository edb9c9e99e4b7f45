//! The JSON encoding of the metrics (`?format=json`): the same data as the Prometheus text,
//! keyed by NAME, times in Unix seconds.
//!
//! Written straight into one buffer, members in the order a `serde_json::Value` would print
//! them (keys sorted), so the document is byte for byte what the first version built as a tree.
//! Whatever is the same for every NAME (bucket labels and their order) is worked out once.

use std::collections::HashMap;

use super::json_out::{sorted_members, JsonOut};
use super::NOTIFY_RESULT_LABELS;
use super::{cumulative_counts, le_labels, AlertingStatus, Metrics, NameHealth, NameMetrics};
use super::{ProbeMetrics, StatusLabel};
use crate::vocab::event::Level;
use crate::vocab::reason::Reason;
use crate::zone::incidents::{IncidentKind, KINDS};
use crate::zone::peers::PEER_CLASS_LABELS;

/// Renders the same data as JSON, newline-terminated.
pub fn render_json(m: &Metrics) -> String {
    let mut buf = Vec::new();
    write_json(m, &mut buf);
    // Everything written is JSON text from `&str`s: valid UTF-8.
    String::from_utf8(buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends the JSON document (newline-terminated) to `buf`.
pub fn write_json(m: &Metrics, buf: &mut Vec<u8>) {
    let mut slices = JsonSlices::new(m);
    // NAMEs in key order; of a NAME listed twice, the last.
    let names = m.names.iter().map(|l| l.name.as_str()).zip(0..).collect();
    let order: Vec<usize> = sorted_members(names).into_iter().map(|(_, i)| i).collect();
    slices.add_in(m, &order);
    for piece in slices.finish(m) {
        buf.extend_from_slice(&piece);
    }
}

/// The JSON document written a few NAMEs at a time ([`JsonSlices::add`]), so that a scrape
/// of thousands of NAMEs can give the event loop back between slices: what comes before the
/// NAMEs on creation, each batch of NAMEs as a piece of its own, the rest on
/// [`JsonSlices::finish`]. The NAMEs must come in key order (a scrape copies them in that
/// order).
pub struct JsonSlices {
    /// Finished pieces of the document, in order.
    pieces: Vec<Vec<u8>>,
    layout: BucketLayout,
    /// Whether a NAME has been written (the next one needs a comma).
    any: bool,
}

impl JsonSlices {
    /// Writes what precedes the NAMEs of `m` (which needs none of its NAMEs).
    pub fn new(m: &Metrics) -> Self {
        let mut head = Vec::with_capacity(1024 + m.probes.len() * 256);
        let mut o = JsonOut::new(&mut head);
        o.open_object();
        o.key("alerting");
        match &m.alerting {
            Some(a) => alerting(&mut o, a),
            None => o.null(),
        }
        o.member_array("certificates");
        for c in &m.certificates {
            o.element();
            o.open_object();
            o.member("alert_state", level_word(c.level));
            o.member("file", &c.file);
            o.member("on_disk_expiry", c.on_disk);
            o.member("problem", &c.problem);
            o.member("renewed_on_disk_since", c.renewed_since);
            o.member("served_expiry", c.served);
            o.member("server", &c.server);
            o.close_object();
        }
        o.close_array();
        o.member_object("destinations");
        let destinations = m
            .destinations
            .iter()
            .map(|(l, c)| (l.as_str(), c))
            .collect();
        for (label, counts) in sorted_members(destinations) {
            o.key(label);
            notifications(&mut o, counts);
        }
        o.close_object();
        o.member_object("locations");
        JsonSlices {
            pieces: vec![head],
            layout: BucketLayout::new(m),
            any: false,
        }
    }

    /// Writes every NAME of `m`, in the order given, as one piece.
    pub fn add(&mut self, m: &Metrics) {
        let order: Vec<usize> = (0..m.names.len()).collect();
        self.add_in(m, &order);
    }

    /// Writes the NAMEs of `m` at `order`, as one piece.
    fn add_in(&mut self, m: &Metrics, order: &[usize]) {
        let health_of = health_of(m);
        let mut piece = Vec::with_capacity(order.len() * 1024);
        // Continues the `locations` object: a comma before every NAME but the first.
        let mut o = JsonOut::continuing(&mut piece, !self.any);
        for &i in order {
            let l = &m.names[i];
            o.key(&l.name);
            let h = health_of[i].map(|h| &m.health[h]);
            location(&mut o, m, &self.layout, l, h);
        }
        self.any |= !order.is_empty();
        if !piece.is_empty() {
            self.pieces.push(piece);
        }
    }

    /// The whole document as pieces in order (newline-terminated).
    pub fn finish(mut self, m: &Metrics) -> Vec<Vec<u8>> {
        let mut tail = Vec::with_capacity(1024 + m.probes.len() * 256);
        let mut o = JsonOut::continuing(&mut tail, false);
        o.close_object();
        o.key("notifications");
        notifications(&mut o, &m.notifications);
        o.member_array("probe_certificates");
        for (probe, target, expiry, level) in &m.probe_certificates {
            o.element();
            o.open_object();
            o.member("alert_state", level_word(*level));
            o.member("expiry", expiry);
            o.member("probe", probe);
            o.member("target", target);
            o.close_object();
        }
        o.close_array();
        o.member_array("probes");
        probes(&mut o, m);
        o.close_array();
        o.member("queue_depth", m.queue_depth);
        o.member_object("upstream_peers");
        upstream_peers(&mut o, m);
        o.close_object();
        o.close_object();
        tail.push(b'\n');
        self.pieces.push(tail);
        self.pieces
    }
}

/// The index into `health` of each NAME's entry, by index into `names`: the same index when
/// the two lists are in step (as collected; no search at 10,000 NAMEs), else the first entry
/// of that name, as a search from the front would find it.
fn health_of(m: &Metrics) -> Vec<Option<usize>> {
    let in_step = m.health.len() == m.names.len()
        && m.names.iter().zip(&m.health).all(|(l, h)| l.name == h.name);
    if in_step {
        return (0..m.names.len()).map(Some).collect();
    }
    let mut health: HashMap<&str, usize> = HashMap::with_capacity(m.health.len());
    for (i, h) in m.health.iter().enumerate() {
        health.entry(h.name.as_str()).or_insert(i);
    }
    m.names
        .iter()
        .map(|l| health.get(l.name.as_str()).copied())
        .collect()
}

/// Tries per peer: `{UPSTREAM: {PEER: {CLASS: n}}}`, upstreams and peers sorted (of the same
/// peer listed twice, the last).
fn upstream_peers(o: &mut JsonOut, m: &Metrics) {
    let mut by_upstream: HashMap<&str, Vec<(&str, &[u64; 5])>> = HashMap::new();
    for p in &m.upstream_peers {
        by_upstream
            .entry(p.upstream.as_str())
            .or_default()
            .push((p.peer.as_str(), &p.classes));
    }
    for (upstream, peers) in sorted_members(by_upstream.into_iter().collect()) {
        o.member_object(upstream);
        for (peer, classes) in sorted_members(peers) {
            o.member_object(peer);
            for (class, n) in PEER_CLASS_LABELS.iter().zip(classes) {
                o.member(class, n);
            }
            o.close_object();
        }
        o.close_object();
    }
}

/// `ok`, `warning`, `critical`: the level's label in lower case.
fn level_word(level: Level) -> &'static str {
    match level {
        Level::Ok => "ok",
        Level::Warning => "warning",
        Level::Critical => "critical",
    }
}

/// The JSON object of [`AlertingStatus`]; times in Unix seconds like the rest of the JSON.
fn alerting(o: &mut JsonOut, a: &AlertingStatus) {
    o.open_object();
    o.member("evaluated_elsewhere", a.evaluated_elsewhere);
    o.member("evaluations", a.evaluations);
    o.member("helper_restarts", a.helper_restarts);
    o.member("interval_seconds", a.interval_ms as f64 / 1000.0);
    let last = (a.last_evaluation_ms != 0).then_some(a.last_evaluation_ms / 1000);
    o.member("last_evaluation", last);
    o.member("reason", a.reason_words());
    o.member("running", a.stalled_since_ms.is_none());
    o.member("stalled_since", a.stalled_since_ms.map(|ms| ms / 1000));
    o.close_object();
}

/// Deliveries by result, as an object keyed by result.
fn notifications(o: &mut JsonOut, counts: &[u64; 4]) {
    o.open_object();
    for (result, n) in sorted_members(NOTIFY_RESULT_LABELS.iter().zip(counts).collect()) {
        o.member(result, n);
    }
    o.close_object();
}

/// Histogram labels and the order their members print in, the same for every NAME.
struct BucketLayout {
    /// `le` labels, `+Inf` last, as [`le_labels`] gives them.
    labels: Vec<String>,
    /// Indexes into `labels` in key order.
    order: Vec<usize>,
}

impl BucketLayout {
    fn new(m: &Metrics) -> Self {
        let labels = le_labels(&m.bucket_bounds);
        let indexed: Vec<(&str, usize)> = labels.iter().map(String::as_str).zip(0..).collect();
        let order = sorted_members(indexed)
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        BucketLayout { labels, order }
    }
}

/// One NAME's object: counters, window, level, mute, then what its health adds, in key order.
fn location(
    o: &mut JsonOut,
    m: &Metrics,
    layout: &BucketLayout,
    l: &NameMetrics,
    h: Option<&NameHealth>,
) {
    o.open_object();
    o.member("alert_state", level_word(l.level));
    o.member_object("duration_seconds");
    o.member_object("buckets");
    let cumulative = cumulative_counts(&l.counters, &m.bucket_bounds);
    for &i in &layout.order {
        o.member(&layout.labels[i], cumulative[i]);
    }
    o.close_object();
    o.member("count", cumulative[layout.labels.len() - 1]);
    o.member("sum", l.counters.duration_us_sum as f64 / 1e6);
    o.close_object();
    if let Some(h) = h {
        incidents(o, h);
        if let Some((q, seconds)) = &h.latency {
            o.member_object("latency");
            o.member("quantile", q);
            o.member("seconds", seconds);
            o.close_object();
        }
    }
    o.key("muted");
    match m.mutes.get(&l.name) {
        Some(v) => {
            o.open_object();
            o.member("reason", &v.reason);
            o.member("until", crate::vocab::text::iso8601(v.until_unix));
            o.member("until_unix", v.until_unix);
            o.close_object();
        }
        None => o.null(),
    }
    // Status labels print in key order already: three-digit codes ascending, then "other".
    o.member_object("requests");
    let mut status = StatusLabel::new();
    for (code, n) in l.counters.seen_codes() {
        o.member(status.of(code), n);
    }
    o.close_object();
    o.member("requests_total", l.counters.total());
    if let Some(h) = h {
        if let Some((objective, rates)) = &h.slo {
            o.member_object("slo");
            o.member_object("burn_rates");
            let rates = rates.iter().map(|(w, r)| (w.as_str(), r)).collect();
            for (window, rate) in sorted_members(rates) {
                o.member(window, rate);
            }
            o.close_object();
            o.member("objective_percent", objective);
            o.close_object();
        }
        if let Some(t) = &h.traffic {
            o.member_object("traffic");
            o.member("alert_state", level_word(t.level));
            o.member("known_windows", t.known_windows);
            o.member("thresholds", &t.thresholds);
            o.member("usual_requests", t.usual);
            o.close_object();
        }
    }
    o.member_object("window");
    o.member("error_ratio", l.error_ratio());
    o.member("errors", l.window_errors);
    o.member("requests", l.window_requests);
    o.close_object();
    o.close_object();
}

/// `"incidents"`: totals and seconds by kind, and the recent ones.
fn incidents(o: &mut JsonOut, h: &NameHealth) {
    let per_kind = |o: &mut JsonOut, key: &str, values: &[u64; KINDS]| {
        o.member_object(key);
        let pairs = IncidentKind::ALL
            .iter()
            .map(|k| k.label())
            .zip(values)
            .collect();
        for (kind, n) in sorted_members(pairs) {
            o.member(kind, n);
        }
        o.close_object();
    };
    o.member_object("incidents");
    o.member_array("recent");
    for i in &h.incidents.recent {
        o.element();
        o.open_object();
        o.member("end", i.end_ms.map(|ms| ms / 1000));
        o.member("kind", i.kind.label());
        o.member("muted", i.muted);
        o.member("peak_level", level_word(i.peak_level));
        o.member("peak_value", i.peak_value);
        o.member("start", i.start_ms / 1000);
        o.close_object();
    }
    o.close_array();
    per_kind(o, "seconds_total", &h.incidents.firing_seconds);
    per_kind(o, "total", &h.incidents.opened);
    o.close_object();
}

/// The probe targets, in order.
fn probes(o: &mut JsonOut, m: &Metrics) {
    let mut down: HashMap<(&str, &str), u64> = HashMap::with_capacity(m.probe_down.len());
    for d in &m.probe_down {
        down.entry((&d.name, &d.target)).or_insert(d.seconds);
    }
    for p in &m.probes {
        o.element();
        probe(
            o,
            p,
            down.get(&(p.name.as_str(), p.target.as_str())).copied(),
        );
    }
}

fn probe(o: &mut JsonOut, p: &ProbeMetrics, down_seconds: Option<u64>) {
    o.open_object();
    o.member("down_seconds_total", down_seconds);
    o.member("duration_seconds", p.duration_seconds);
    o.member_object("failures");
    let failures = Reason::ALL
        .iter()
        .map(|r| r.label())
        .zip(&p.failures)
        .collect();
    for (reason, n) in sorted_members(failures) {
        o.member(reason, n);
    }
    o.close_object();
    o.member("probe", &p.name);
    o.member("target", &p.target);
    o.member("up", p.up);
    o.close_object();
}
