//! Metric values (a [`Metrics`] copied out of the zone) and their encodings: Prometheus text
//! format 0.0.4 (`prometheus`) and JSON (`json`), each writing the same data.
//!
//! The content handler copies shared-memory counters into a [`Metrics`] value first and renders
//! afterwards, so rendering is pure and testable.

mod json;
mod json_out;
#[cfg(test)]
mod json_tree;
mod prometheus;

use std::collections::BTreeMap;

use crate::vocab::event::{error_share, Level};
use crate::vocab::reason::Reason;
use crate::zone::counters::{BucketBounds, CountersSnapshot, BUCKET_SLOTS};
use crate::zone::incidents::IncidentSummary;
use crate::zone::StallReason;
pub use json::{render_json, write_json, JsonSlices};
pub use prometheus::{render_prometheus, PrometheusSlices};

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
    /// How the evaluator is doing; `None` without a zone (nothing evaluates then).
    pub alerting: Option<AlertingStatus>,
    /// The certificates nginx serves (`status_alert_certificates`).
    pub certificates: Vec<CertificateMetrics>,
    /// HTTPS probe targets' certificates: `(probe, target, expiry in Unix seconds, alert
    /// level)`, for the targets whose certificate has been seen.
    pub probe_certificates: Vec<(String, String, u64, crate::vocab::event::Level)>,
    /// The NAMEs muted now (maintenance window or runtime mute), by NAME.
    pub mutes: BTreeMap<String, MuteView>,
    /// Seconds each NAME has been evaluated (what MTBF is measured over), by NAME.
    pub observed_secs: BTreeMap<String, u64>,
    /// Tries per upstream peer of NAMEs' requests, in configuration order.
    pub upstream_peers: Vec<PeerMetrics>,
}

/// Tries of one upstream peer (`nginx_upstream_peer_responses_total`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerMetrics {
    /// The upstream (`-`: none the configuration names).
    pub upstream: String,
    /// The peer as `$upstream_addr` prints it, or `other`.
    pub peer: String,
    /// Tries by class, in the order of `zone::peers::PEER_CLASS_LABELS`.
    pub classes: [u64; 5],
}

/// One certificate nginx serves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CertificateMetrics {
    /// The server's name.
    pub server: String,
    /// The certificate file.
    pub file: String,
    /// Expiry of the certificate served, Unix seconds (`None`: the file could not be read
    /// when the configuration was loaded).
    pub served: Option<u64>,
    /// Expiry of the certificate in the file when last re-read (`None`: not read yet, or
    /// unreadable).
    pub on_disk: Option<u64>,
    /// Since when the file holds a later certificate than the served one, Unix seconds.
    pub renewed_since: Option<u64>,
    /// What is wrong with the file on disk, if anything.
    pub problem: Option<String>,
    /// The expiry alert's level.
    pub level: crate::vocab::event::Level,
}

/// A NAME's mute as shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MuteView {
    /// End of the mute, Unix seconds.
    pub until_unix: u64,
    /// Why: the runtime mute's reason (may be empty) or "maintenance window".
    pub reason: String,
}

impl Metrics {
    /// Frees the values of up to `count` NAMEs and probe targets (the last ones); true once
    /// nothing per NAME or target is left. A scrape frees its copy this way, a few NAMEs at a
    /// time: 10,000 NAMEs' values freed at once hold the event loop about 10 ms.
    pub fn shed(&mut self, count: usize) -> bool {
        let mut left = false;
        for _ in 0..count {
            let some = [
                self.names.pop().is_some(),
                self.health.pop().is_some(),
                self.name_details.pop_last().is_some(),
                self.mutes.pop_last().is_some(),
                self.observed_secs.pop_last().is_some(),
                self.probes.pop().is_some(),
                self.probe_down.pop().is_some(),
                self.probe_details.pop_last().is_some(),
            ];
            left = some.contains(&true);
            if !left {
                break;
            }
        }
        // The vectors' memory too, a part at a time: 10,000 NAMEs' counters are 40 MB, whose
        // pages took milliseconds to give back at once. (A large buffer shrinks in place.)
        self.names.shrink_to_fit();
        self.health.shrink_to_fit();
        self.probes.shrink_to_fit();
        self.probe_down.shrink_to_fit();
        !left
    }

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

/// How the evaluator is doing (evaluations, the last one, stalls, helper restarts), as read
/// from the zone.
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
    /// The upstream the NAME's location passes requests to, whose peers' tries
    /// ([`Metrics::upstream_peers`]) its card lists.
    pub upstream: Option<String>,
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
    /// With `traffic=`: the thresholds, the usual traffic and how much history there is.
    pub traffic: Option<TrafficHealth>,
    /// Incident totals and recent incidents.
    pub incidents: IncidentSummary,
}

/// The `traffic=` figures of one NAME.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficHealth {
    /// The thresholds as configured, e.g. `warn 50% · crit 10`.
    pub thresholds: String,
    /// Level of the traffic alert.
    pub level: Level,
    /// The usual requests per window (median of the last 12 windows); `None` while learning.
    pub usual: Option<f64>,
    /// Completed windows known, at most 12.
    pub known_windows: usize,
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

/// Cumulative bucket counts with their `le` labels, `+Inf` last (equal to the count).
pub(super) fn cumulative_buckets(
    c: &CountersSnapshot,
    bounds: &BucketBounds,
) -> Vec<(String, u64)> {
    le_labels(bounds)
        .into_iter()
        .zip(cumulative_counts(c, bounds))
        .collect()
}

/// The `le` labels of `bounds`, `+Inf` last: the same for every NAME of a scrape.
pub(super) fn le_labels(bounds: &BucketBounds) -> Vec<String> {
    let mut labels: Vec<String> = bounds.as_ms().iter().map(|ms| le_label(*ms)).collect();
    labels.push("+Inf".to_string());
    labels
}

/// Cumulative bucket counts in the order of [`le_labels`] (`+Inf` at `bounds.as_ms().len()`,
/// equal to the count); the slots after it are 0.
pub(super) fn cumulative_counts(
    c: &CountersSnapshot,
    bounds: &BucketBounds,
) -> [u64; BUCKET_SLOTS] {
    let mut out = [0u64; BUCKET_SLOTS];
    let finite = bounds.as_ms().len();
    let mut total = 0u64;
    for (d, n) in out.iter_mut().zip(&c.buckets[..finite]) {
        total += n;
        *d = total;
    }
    out[finite] = total + c.buckets[bounds.inf_index()];
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
pub(super) fn le_label(ms: u64) -> String {
    (ms as f64 / 1000.0).to_string()
}

#[cfg(test)]
pub(super) fn status_label(code: Option<u16>) -> String {
    code.map_or_else(|| "other".to_string(), |c| c.to_string())
}

/// A status code's label (`503`, or `other` for the slot of codes outside 100..=599), written
/// without allocating.
pub(super) struct StatusLabel([u8; 5]);

impl StatusLabel {
    pub fn new() -> Self {
        StatusLabel([0; 5])
    }

    /// The label of `code`.
    pub fn of(&mut self, code: Option<u16>) -> &str {
        let Some(mut n) = code else {
            return "other";
        };
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        // ASCII digits only.
        core::str::from_utf8(&self.0[i..]).unwrap_or("other")
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod tests_scale;
