//! MTTR and MTBF of a NAME, per alert kind, from the incident totals the module keeps
//! ([`IncidentSummary`]): the figures the status page shows beside each NAME.
//!
//! - **MTTR**, mean time to resolve: seconds spent firing / incidents opened. The ongoing
//!   incident counts with its time so far, exactly as
//!   `nginx_location_incident_seconds_total / nginx_location_incidents_total` (docs/metrics.md).
//! - **MTBF**, mean time between failures: time not firing / incidents opened, i.e. the mean
//!   healthy stretch before an incident (so MTBF + MTTR is the mean time from one incident's
//!   start to the next's). `None` before the first incident: there is no failure to measure
//!   between, and the page says "no incident in T" instead.
//!
//! Per kind, not per NAME: a 5xx incident and an error-budget incident usually overlap, so
//! adding their firing times (or their counts) would double-count an outage. The totals do not
//! say how kinds overlap, so a per-NAME figure would be a guess.
//!
//! The same over the last 30 days in PromQL (per `location` and `kind`; the `> 0` keeps NAMEs
//! without incidents out instead of dividing by zero):
//!
//! ```text
//! # MTTR
//!   increase(nginx_location_incident_seconds_total[30d])
//! / (increase(nginx_location_incidents_total[30d]) > 0)
//!
//! # MTBF
//!   (30 * 86400 - increase(nginx_location_incident_seconds_total[30d]))
//! / (increase(nginx_location_incidents_total[30d]) > 0)
//! ```
//!
//! (A series younger than 30 days makes that MTBF too long; `increase` copes with the counter
//! resets of a binary upgrade.)
//!
//! Depends on `zone::incidents`. The observed time is how long the NAME's slot has been
//! evaluated ([`observe`] notes its first evaluation in the slot).

use core::sync::atomic::Ordering::Relaxed;

use crate::zone::incidents::{IncidentKind, IncidentSummary, KINDS};
use crate::zone::NameSlot;

/// Notes `now_ms` as the start of the observed time of `slot` if nothing is noted yet.
pub fn observe(slot: &NameSlot, now_ms: u64) {
    let _ = slot
        .evaluated_since_ms
        .compare_exchange(0, now_ms, Relaxed, Relaxed);
}

/// Seconds `slot` has been evaluated at `now_ms` (0 before its first evaluation).
pub fn observed_secs(slot: &NameSlot, now_ms: u64) -> u64 {
    match slot.evaluated_since_ms.load(Relaxed) {
        0 => 0,
        since => now_ms.saturating_sub(since) / 1000,
    }
}

/// MTTR and MTBF of one alert kind of one NAME.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reliability {
    /// The kind.
    pub kind: IncidentKind,
    /// Incidents opened (the ongoing one included).
    pub incidents: u64,
    /// Mean seconds firing per incident; `None` without incidents.
    pub mttr_secs: Option<f64>,
    /// Mean seconds healthy per incident; `None` without incidents.
    pub mtbf_secs: Option<f64>,
}

/// MTTR and MTBF of every kind from `summary`, for a NAME watched for `observed_secs`; firing
/// time beyond the observed time (history carried over from before it) counts as all of it.
pub fn reliability(summary: &IncidentSummary, observed_secs: u64) -> [Reliability; KINDS] {
    IncidentKind::ALL.map(|kind| {
        let i = kind as usize;
        let incidents = summary.opened[i];
        let firing = summary.firing_seconds[i];
        let per_incident = |secs: u64| (incidents > 0).then(|| secs as f64 / incidents as f64);
        Reliability {
            kind,
            incidents,
            mttr_secs: per_incident(firing),
            mtbf_secs: per_incident(observed_secs.saturating_sub(firing)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mttr_and_mtbf_per_kind() {
        let summary = IncidentSummary {
            opened: [4, 1, 0, 0],
            firing_seconds: [1200, 90, 0, 0],
            recent: Vec::new(),
        };
        let [errors, latency, slo, _] = reliability(&summary, 30 * 86_400);
        assert_eq!(errors.kind, IncidentKind::Errors);
        assert_eq!(errors.incidents, 4);
        assert_eq!(errors.mttr_secs, Some(300.0));
        assert_eq!(errors.mtbf_secs, Some((30.0 * 86_400.0 - 1200.0) / 4.0));
        assert_eq!(
            (latency.mttr_secs, latency.mtbf_secs),
            (Some(90.0), Some(2_591_910.0))
        );
        // No incident: nothing to average.
        assert_eq!(
            (slo.incidents, slo.mttr_secs, slo.mtbf_secs),
            (0, None, None)
        );
    }

    #[test]
    fn an_ongoing_incident_counts_so_far_and_history_beyond_the_observed_time_is_clamped() {
        // Firing since the start of observation: healthy time 0.
        let summary = IncidentSummary {
            opened: [1, 0, 0, 0],
            firing_seconds: [600, 0, 0, 0],
            recent: Vec::new(),
        };
        let [errors, ..] = reliability(&summary, 600);
        assert_eq!(
            (errors.mttr_secs, errors.mtbf_secs),
            (Some(600.0), Some(0.0))
        );
        let [errors, ..] = reliability(&summary, 10);
        assert_eq!(errors.mtbf_secs, Some(0.0));
        assert_eq!(
            reliability(&IncidentSummary::default(), 0)[0].mttr_secs,
            None
        );
    }
}
