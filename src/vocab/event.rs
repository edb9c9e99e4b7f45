//! Alert events: the owned values that flow from evaluation and probing to notification.
//!
//! Nothing here refers to nginx; events are built in worker 0 and handed to the helper process
//! that delivers them.

pub use crate::vocab::certificate::CertificateEvent;
pub use crate::vocab::traffic::TrafficEvent;

/// Alert level of a NAME or probe, ordered by severity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Level {
    /// Below the warning threshold, or too little traffic to judge.
    #[default]
    Ok = 0,
    /// At or above the warning threshold (`warn=`, the WARN of `latency=`, or burn rate 6).
    Warning = 1,
    /// At or above the critical threshold (`crit=`, the CRIT of `latency=`, or burn rate 14.4).
    Critical = 2,
}

impl Level {
    /// Decodes the value stored in shared memory; unknown values read as `Ok`.
    pub fn from_u8(v: u8) -> Level {
        match v {
            1 => Level::Warning,
            2 => Level::Critical,
            _ => Level::Ok,
        }
    }

    /// Upper-case label used in titles and log lines.
    pub fn label(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
        }
    }
}

/// One thing worth telling the operator about.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertEvent {
    /// The `status_alert` / probe NAME.
    pub name: String,
    /// When the evaluation or probe saw it, Unix seconds.
    pub at_unix: u64,
    /// Logs dashboard URL from `link=`.
    pub link: Option<String>,
    /// Runbook URL from `runbook=`.
    pub runbook: Option<String>,
    /// What happened.
    pub detail: EventDetail,
}

/// The kind-specific part of an [`AlertEvent`].
#[derive(Clone, Debug, PartialEq)]
pub enum EventDetail {
    /// A NAME's 5xx ratio changed level, repeats a firing level, or resolved.
    ErrorRatio(ErrorRatioEvent),
    /// A probe target went down or came back up.
    Probe(ProbeEvent),
    /// A NAME's request-time percentile (`latency=`) changed level, repeats, or resolved.
    Latency(LatencyEvent),
    /// A NAME's error-budget burn rate (`slo=`) changed level, repeats, or resolved.
    Slo(SloEvent),
    /// A NAME's traffic dropped (`traffic=`), repeats, or returned.
    Traffic(TrafficEvent),
    /// A certificate nginx serves, or a probe target's, nears its expiry, repeats, or a newer
    /// one is served.
    Certificate(CertificateEvent),
}

impl EventDetail {
    /// True for a certificate a server serves: it belongs to no NAME, so no NAME's mute holds
    /// it back.
    pub fn is_served_certificate(&self) -> bool {
        matches!(
            self,
            EventDetail::Certificate(c)
                if matches!(c.subject, crate::vocab::certificate::CertificateSubject::Served { .. })
        )
    }

    /// Start of the incident the event is about, Unix seconds (a probe: when it went down).
    pub fn since_unix(&self) -> u64 {
        match self {
            EventDetail::ErrorRatio(l) => l.since_unix,
            EventDetail::Latency(l) => l.since_unix,
            EventDetail::Slo(l) => l.since_unix,
            EventDetail::Traffic(l) => l.since_unix,
            EventDetail::Certificate(c) => c.since_unix,
            EventDetail::Probe(p) => p.since_unix,
        }
    }

    /// The level before the event (a probe UP: `Critical`, its DOWN; a DOWN: `Ok`).
    pub fn previous(&self) -> Level {
        match self {
            EventDetail::ErrorRatio(l) => l.previous,
            EventDetail::Latency(l) => l.previous,
            EventDetail::Slo(l) => l.previous,
            EventDetail::Traffic(l) => l.previous,
            EventDetail::Certificate(c) => c.previous,
            EventDetail::Probe(p) if p.up => Level::Critical,
            EventDetail::Probe(_) => Level::Ok,
        }
    }

    /// The peers behind the window's failed tries, for the alerts that name them (5xx,
    /// latency, SLO).
    pub fn top_peers_mut(&mut self) -> Option<&mut Vec<(String, f64)>> {
        match self {
            EventDetail::ErrorRatio(l) => Some(&mut l.top_peers),
            EventDetail::Latency(l) => Some(&mut l.top_peers),
            EventDetail::Slo(l) => Some(&mut l.top_peers),
            _ => None,
        }
    }

    /// The level the event says a NAME's alert is at (`Ok` for a resolution); a probe DOWN is
    /// `Critical`, an UP `Ok`.
    pub fn level(&self) -> Level {
        match self {
            EventDetail::ErrorRatio(l) => l.level,
            EventDetail::Latency(l) => l.level,
            EventDetail::Slo(l) => l.level,
            EventDetail::Traffic(l) => l.level,
            EventDetail::Certificate(c) => c.level,
            EventDetail::Probe(p) if p.up => Level::Ok,
            EventDetail::Probe(_) => Level::Critical,
        }
    }
}

/// A NAME's 5xx-ratio level change (or repeat) with the window figures that caused it.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorRatioEvent {
    /// Level now; `Level::Ok` means resolved.
    pub level: Level,
    /// Level before this event (equal to `level` for a repeat).
    pub previous: Level,
    /// True when this re-posts a level that is still firing (`repeat=`).
    pub repeat: bool,
    /// 5xx responses in the window.
    pub errors: u64,
    /// All responses in the window.
    pub total: u64,
    /// Window length in seconds.
    pub window_secs: u64,
    /// Warning threshold in percent; `None` with `warn=off`.
    pub warn_pct: Option<f64>,
    /// Critical threshold in percent.
    pub crit_pct: f64,
    /// Most frequent status codes (or classes such as `4xx`) in the window, most frequent first.
    pub top_codes: Vec<(String, u64)>,
    /// The upstream peers behind the window's failed tries (5xx and no answer), with their
    /// share of them (0..=1), largest first, at most 3; empty when not known.
    pub top_peers: Vec<(String, f64)>,
    /// Start of the incident (first non-ok evaluation), Unix seconds.
    pub since_unix: u64,
}

impl ErrorRatioEvent {
    /// 5xx share of the window in percent (0 with no requests).
    pub fn ratio_pct(&self) -> f64 {
        error_share(self.errors, self.total, 100.0)
    }
}

/// A NAME's percentile alert: level change (or repeat) with the estimate that caused it.
#[derive(Clone, Debug, PartialEq)]
pub struct LatencyEvent {
    /// Level now; `Level::Ok` means resolved.
    pub level: Level,
    /// Level before this event (equal to `level` for a repeat).
    pub previous: Level,
    /// True when this re-posts a level that is still firing (`repeat=`).
    pub repeat: bool,
    /// The percentile as configured, e.g. `p95`.
    pub percentile: String,
    /// Its estimate over the window in milliseconds; `None` without requests.
    pub estimate_ms: Option<f64>,
    /// Warning threshold in milliseconds.
    pub warn_ms: u64,
    /// Critical threshold in milliseconds, if any.
    pub crit_ms: Option<u64>,
    /// Requests in the window.
    pub requests: u64,
    /// Window length in seconds.
    pub window_secs: u64,
    /// The upstream peers behind the window's failed tries (5xx and no answer), with their
    /// share of them (0..=1), largest first, at most 3; empty when not known.
    pub top_peers: Vec<(String, f64)>,
    /// Start of the incident (first non-ok evaluation), Unix seconds.
    pub since_unix: u64,
}

/// A NAME's error-budget alert: level change (or repeat) with the burn rates.
#[derive(Clone, Debug, PartialEq)]
pub struct SloEvent {
    /// Level now; `Level::Ok` means resolved.
    pub level: Level,
    /// Level before this event (equal to `level` for a repeat).
    pub previous: Level,
    /// True when this re-posts a level that is still firing (`repeat=`).
    pub repeat: bool,
    /// The objective in percent, e.g. 99.9.
    pub slo_pct: f64,
    /// The burn rate reported in the title: the lower of the two windows that fired (the
    /// shortest window's when resolved).
    pub burn_rate: f64,
    /// Burn rate per window, e.g. `("5m", 15.2)`, shortest first.
    pub windows: Vec<(String, f64)>,
    /// 5xx responses in the shortest window.
    pub errors: u64,
    /// All responses in the shortest window.
    pub total: u64,
    /// The upstream peers behind the shortest window's failed tries (5xx and no answer), with their
    /// share of them (0..=1), largest first, at most 3; empty when not known.
    pub top_peers: Vec<(String, f64)>,
    /// Start of the incident (first non-ok evaluation), Unix seconds.
    pub since_unix: u64,
}

/// A probe target's transition.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeEvent {
    /// True for UP (recovered), false for DOWN.
    pub up: bool,
    /// Target URL without credentials.
    pub target: String,
    /// Failure reason in words, e.g. `connection refused`; `None` for UP.
    pub reason: Option<String>,
    /// HTTP status of the last probe, if any.
    pub status: Option<u16>,
    /// Duration of the last probe in milliseconds.
    pub duration_ms: u64,
    /// Unix seconds: for DOWN, when the target was declared down (now); for UP, when it went down.
    pub since_unix: u64,
}

/// 5xx responses per `per` requests (1.0: a ratio, 100.0: percent); 0 with no requests.
pub fn error_share(errors: u64, total: u64, per: f64) -> f64 {
    if total == 0 {
        0.0
    } else {
        errors as f64 * per / total as f64
    }
}

/// Events for unit tests: a NAME at 2026-11-22T10:15:30Z with its link and runbook.
#[cfg(test)]
pub mod samples {
    use super::*;

    /// 2026-11-22T10:15:30Z, when the sample events happen.
    pub const AT: u64 = 1_795_342_530;

    pub fn error_ratio(level: Level, errors: u64, total: u64) -> ErrorRatioEvent {
        ErrorRatioEvent {
            level,
            previous: Level::Ok,
            repeat: false,
            errors,
            total,
            window_secs: 300,
            warn_pct: Some(5.0),
            crit_pct: 10.0,
            top_codes: vec![("502".into(), 120), ("504".into(), 3)],
            top_peers: Vec::new(),
            since_unix: AT - 430,
        }
    }

    pub fn probe(up: bool, reason: Option<&str>, status: Option<u16>) -> ProbeEvent {
        ProbeEvent {
            up,
            target: "http://10.0.0.5:8080/health".into(),
            reason: reason.map(str::to_owned),
            status,
            duration_ms: 5003,
            since_unix: AT - 185,
        }
    }

    pub fn event(name: &str, detail: EventDetail) -> AlertEvent {
        AlertEvent {
            name: name.into(),
            at_unix: AT,
            link: Some("https://logs.example/be".into()),
            runbook: Some("https://wiki.example/runbook".into()),
            detail,
        }
    }

    pub fn critical(name: &str) -> AlertEvent {
        event(
            name,
            EventDetail::ErrorRatio(error_ratio(Level::Critical, 123, 1000)),
        )
    }

    pub fn latency(level: Level, estimate_ms: Option<f64>) -> LatencyEvent {
        LatencyEvent {
            level,
            previous: Level::Ok,
            repeat: false,
            percentile: "p95".into(),
            estimate_ms,
            warn_ms: 500,
            crit_ms: Some(2000),
            requests: 1200,
            window_secs: 300,
            top_peers: Vec::new(),
            since_unix: AT - 180,
        }
    }

    pub fn traffic(level: Level, requests: u64, usual: Option<f64>) -> TrafficEvent {
        use crate::vocab::traffic::{TrafficParams, TrafficThreshold};
        TrafficEvent {
            level,
            previous: Level::Ok,
            repeat: false,
            requests,
            usual,
            params: TrafficParams {
                warn: TrafficThreshold::Percent(50.0),
                crit: Some(TrafficThreshold::Percent(10.0)),
            },
            window_secs: 300,
            since_unix: AT - 430,
        }
    }

    pub fn slo(level: Level, burn_rate: f64) -> SloEvent {
        SloEvent {
            level,
            previous: Level::Ok,
            repeat: false,
            slo_pct: 99.9,
            burn_rate,
            windows: vec![
                ("5m".into(), 20.0),
                ("30m".into(), 16.0),
                ("1h".into(), 15.234),
                ("6h".into(), 3.0),
            ],
            errors: 20,
            total: 1000,
            top_peers: Vec::new(),
            since_unix: AT - 180,
        }
    }
}
