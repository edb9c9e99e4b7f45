//! Events read back from the zone: a probe's DOWN / UP when its result changes its state, and
//! everything firing right now (what Alertmanager is re-sent every `RESEND_SECS`).
//!
//! Plain Rust over zone slots, like the evaluation tick; the evaluating process calls it.

use core::sync::atomic::Ordering::Relaxed;

use crate::conf::alert_params::AlertParams;
use crate::conf::probe_spec::ProbeSpec;
use crate::evaluate::slo::{burn_windows_ms, window_label};
use crate::evaluate::Watched;
use crate::probe::{self, ProbeResult, ProbeTransition};
use crate::vocab::event::{
    AlertEvent, ErrorRatioEvent, EventDetail, LatencyEvent, Level, ProbeEvent, SloEvent,
    TrafficEvent,
};
use crate::zone::ProbeHealth;

/// A probe target to report on: its configuration and its shared state.
pub struct WatchedProbe<'a> {
    /// What is probed, under which NAME (owned for a `server ... resolve` slot: the probe of
    /// the address it holds now).
    pub spec: std::borrow::Cow<'a, ProbeSpec>,
    /// Its shared state.
    pub health: &'a ProbeHealth,
}

/// An event for `name` at `at_unix`, with the `link=` and `runbook=` of `params`.
fn event(
    name: &str,
    params: Option<&AlertParams>,
    at_unix: u64,
    detail: EventDetail,
) -> AlertEvent {
    AlertEvent {
        name: name.to_string(),
        at_unix,
        link: params.and_then(|p| p.link.clone()),
        runbook: params.and_then(|p| p.runbook.clone()),
        detail,
    }
}

/// A probe's event: its NAME's `link=` and `runbook=` when `names` has the NAME.
fn probe_event(names: &[Watched], name: &str, at_unix: u64, detail: EventDetail) -> AlertEvent {
    let params = names.iter().find(|n| n.name == name).map(|n| n.params);
    event(name, params, at_unix, detail)
}

/// Applies one probe result to its target's shared state; returns the DOWN or UP event when
/// the state changed.
pub fn apply_probe(
    names: &[Watched],
    probe: &WatchedProbe,
    r: &ProbeResult,
    now_ms: u64,
) -> Option<AlertEvent> {
    let transition = probe::apply(probe.health, &probe.spec, r, now_ms)?;
    let (up, reason, since_ms) = match transition {
        ProbeTransition::Down { reason } => (false, Some(reason.words(r.status)), now_ms),
        ProbeTransition::Up { down_since_ms } => (true, None, down_since_ms),
    };
    let detail = EventDetail::Probe(ProbeEvent {
        up,
        target: probe.spec.target.display(),
        reason,
        status: r.status,
        duration_ms: r.duration.as_millis() as u64,
        since_unix: since_ms / 1000,
    });
    Some(probe_event(names, &probe.spec.name, now_ms / 1000, detail))
}

/// What fires at `now_ms`, as repeat events: every NAME at warning or critical (5xx share,
/// latency, error budget, traffic drop) and every probe target that is down.
pub fn firing_now(names: &[Watched], probes: &[WatchedProbe], now_ms: u64) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    let at_unix = now_ms / 1000;
    for n in names {
        let (slot, p) = (n.slot, n.params);
        let (total, errors) = slot.alert.window();
        let level = Level::from_u8(slot.alert.level.load(Relaxed) as u8);
        if level != Level::Ok {
            let detail = EventDetail::ErrorRatio(ErrorRatioEvent {
                level,
                previous: level,
                repeat: true,
                errors,
                total,
                window_secs: p.window_ms / 1000,
                warn_pct: p.warn_pct,
                crit_pct: p.crit_pct,
                top_codes: Vec::new(),
                top_peers: Vec::new(),
                since_unix: slot.alert.incident_since_ms.load(Relaxed) / 1000,
            });
            out.push(event(n.name, Some(p), at_unix, detail));
        }
        if let Some(l) = &p.latency {
            let level = Level::from_u8(slot.latency.state.level.load(Relaxed) as u8);
            if level != Level::Ok {
                let detail = EventDetail::Latency(LatencyEvent {
                    level,
                    previous: level,
                    repeat: true,
                    percentile: l.label(),
                    estimate_ms: slot.latency.estimate_seconds().map(|s| s * 1000.0),
                    warn_ms: l.warn_ms,
                    crit_ms: l.crit_ms,
                    requests: total,
                    window_secs: p.window_ms / 1000,
                    top_peers: Vec::new(),
                    since_unix: slot.latency.state.ongoing_since_ms().unwrap_or(now_ms) / 1000,
                });
                out.push(event(n.name, Some(p), at_unix, detail));
            }
        }
        if let Some(pct) = p.slo_pct {
            let level = Level::from_u8(slot.slo.state.level.load(Relaxed) as u8);
            if level != Level::Ok {
                let labels = burn_windows_ms(p.window_ms).map(window_label);
                let rates = slot.slo.rates();
                let detail = EventDetail::Slo(SloEvent {
                    level,
                    previous: level,
                    repeat: true,
                    slo_pct: pct,
                    burn_rate: rates[0],
                    windows: labels.into_iter().zip(rates).collect(),
                    errors,
                    total,
                    top_peers: Vec::new(),
                    since_unix: slot.slo.state.ongoing_since_ms().unwrap_or(now_ms) / 1000,
                });
                out.push(event(n.name, Some(p), at_unix, detail));
            }
        }
        if let Some(t) = p.traffic {
            let level = Level::from_u8(slot.traffic.state.level.load(Relaxed) as u8);
            if level != Level::Ok {
                let detail = EventDetail::Traffic(TrafficEvent {
                    level,
                    previous: level,
                    repeat: true,
                    requests: total,
                    usual: slot.traffic.usual(),
                    params: t,
                    window_secs: p.window_ms / 1000,
                    since_unix: slot.traffic.state.ongoing_since_ms().unwrap_or(now_ms) / 1000,
                });
                out.push(event(n.name, Some(p), at_unix, detail));
            }
        }
    }
    for t in probes {
        let s = t.health;
        if probe::is_up(s) != Some(false) {
            continue;
        }
        let (reason, status) = probe::last_failure(s);
        let detail = EventDetail::Probe(ProbeEvent {
            up: false,
            target: t.spec.target.display(),
            reason: reason.map(|r| r.words(status)),
            status,
            duration_ms: s.last_duration_us.load(Relaxed) / 1000,
            since_unix: s.since_ms.load(Relaxed) / 1000,
        });
        out.push(probe_event(names, &t.spec.name, at_unix, detail));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::probe_spec::parse;
    use crate::evaluate::evaluate;
    use crate::vocab::reason::Reason;
    use crate::vocab::title::title;
    use crate::zone::{zone_size, Zone};
    use std::alloc::{alloc_zeroed, Layout};
    use std::time::Duration;

    const T0: u64 = 1_000_000;

    /// A zone holding the NAME "api" and one probe target.
    fn zone() -> Zone {
        let size = zone_size(1, 1);
        let layout = Layout::from_size_align(size, 64).unwrap();
        // SAFETY: non-zero size; leaked for the test's lifetime.
        let z = unsafe { Zone::from_raw(alloc_zeroed(layout), size) }.unwrap();
        let probe_key: &[u8] = b"api http://10.0.0.5/health";
        z.claim(&[b"api".as_slice()], &[probe_key], |_| false)
            .unwrap();
        z
    }

    fn params() -> AlertParams {
        AlertParams {
            window_ms: 10_000,
            repeat_ms: None,
            link: Some("https://grafana.example/d/api".to_string()),
            runbook: Some("https://wiki.example/api".to_string()),
            ..AlertParams::default()
        }
    }

    fn spec() -> ProbeSpec {
        let args = ["http://10.0.0.5/health", "name=api", "fails=2", "passes=1"];
        parse(&args.map(String::from), false).unwrap()
    }

    fn result(failure: Option<Reason>, status: Option<u16>) -> ProbeResult {
        ProbeResult {
            index: 0,
            failure,
            status,
            duration: Duration::from_millis(40),
        }
    }

    #[test]
    fn nothing_fires_on_a_quiet_zone() {
        let z = zone();
        let p = params();
        let s = spec();
        let names = [Watched {
            name: "api",
            params: &p,
            slot: &z.names()[0],
        }];
        let probes = [WatchedProbe {
            spec: std::borrow::Cow::Borrowed(&s),
            health: &z.probes()[0].probe,
        }];
        assert!(firing_now(&names, &probes, T0).is_empty());
    }

    #[test]
    fn a_firing_name_and_a_down_target_are_reported_with_their_links() {
        let z = zone();
        let p = params();
        let s = spec();
        let slot = &z.names()[0];
        let names = [Watched {
            name: "api",
            params: &p,
            slot,
        }];
        let probes = [WatchedProbe {
            spec: std::borrow::Cow::Borrowed(&s),
            health: &z.probes()[0].probe,
        }];
        // Half the requests fail for a few seconds: CRITICAL (default crit=10%).
        for t in 0..3 {
            for _ in 0..10 {
                slot.counters.record(200, 1);
                slot.counters.record(502, 1);
            }
            evaluate(&names, T0 + t * 1000, 1000);
        }
        // The target fails twice (fails=2): DOWN, once.
        let refused = result(Some(Reason::Refused), None);
        assert!(apply_probe(&names, &probes[0], &refused, T0).is_none());
        let down = apply_probe(&names, &probes[0], &refused, T0 + 1000).expect("DOWN");
        assert!(
            title(&down).starts_with("DOWN api: http://10.0.0.5/health"),
            "{}",
            title(&down)
        );
        assert_eq!(down.runbook.as_deref(), Some("https://wiki.example/api"));

        let firing = firing_now(&names, &probes, T0 + 5000);
        let titles: Vec<String> = firing.iter().map(title).collect();
        assert_eq!(firing.len(), 2, "{titles:?}");
        assert!(
            titles[0].starts_with("CRITICAL api: 5xx 50.0%"),
            "{titles:?}"
        );
        assert!(
            titles[1].starts_with("DOWN api: http://10.0.0.5/health"),
            "{titles:?}"
        );
        for e in &firing {
            assert_eq!(e.at_unix, (T0 + 5000) / 1000);
            assert_eq!(e.link.as_deref(), Some("https://grafana.example/d/api"));
        }
        match &firing[1].detail {
            EventDetail::Probe(pe) => {
                assert!(!pe.up);
                assert_eq!(
                    pe.since_unix,
                    (T0 + 1000) / 1000,
                    "down since the second failure"
                );
                assert_eq!(pe.duration_ms, 40);
            }
            other => panic!("not a probe event: {other:?}"),
        }

        // One success (passes=1): UP, carrying when it went down; nothing of it fires any more.
        let up = apply_probe(&names, &probes[0], &result(None, Some(200)), T0 + 9000);
        match up.map(|e| e.detail) {
            Some(EventDetail::Probe(pe)) => {
                assert!(pe.up);
                assert_eq!(pe.since_unix, (T0 + 1000) / 1000);
            }
            other => panic!("no UP: {other:?}"),
        }
        let firing = firing_now(&names, &probes, T0 + 9000);
        assert_eq!(firing.len(), 1);
        assert!(matches!(firing[0].detail, EventDetail::ErrorRatio(_)));
    }
}
