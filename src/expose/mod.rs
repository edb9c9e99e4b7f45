//! The `status_metrics` endpoint: what it shows ([`collect`], plain Rust over the zone), how
//! (Prometheus text and JSON in `metrics`, the HTML page in `html` with its filters in
//! `page_filter`, the choice between them in `negotiate`, gzip in `encoding`), and the content
//! handler with its directive (`handler`, FFI).

pub mod encoding;
#[cfg(not(test))]
pub(crate) mod handler;
pub mod html;
pub mod metrics;
pub mod mute_apply;
pub mod mute_control;
#[cfg(not(test))]
mod mute_handler;
pub mod mute_view;
pub mod negotiate;
pub mod page_filter;

use core::sync::atomic::Ordering::Relaxed;

use crate::conf::traffic::{TrafficParams, TrafficThreshold};
use crate::conf::MainConf;
use crate::evaluate::traffic::TrafficHistory;
use crate::vocab::event::Level;
use crate::zone::StallReason;
use metrics::{
    AlertingStatus, CertificateMetrics, Metrics, NameDetail, NameHealth, NameMetrics, PeerMetrics,
    ProbeDetail, ProbeDown, ProbeMetrics, TrafficHealth,
};

/// `warn 50% · crit 10`: `traffic=` as the page shows it.
fn traffic_thresholds(t: &TrafficParams) -> String {
    let show = |t: TrafficThreshold| match t {
        TrafficThreshold::Requests(n) => format!("{n} requests"),
        TrafficThreshold::Percent(_) => format!("{t} of usual"),
    };
    match t.crit {
        Some(c) => format!("warn below {} · crit below {}", show(t.warn), show(c)),
        None => format!("warn below {}", show(t.warn)),
    }
}

/// The tries of every peer of NAMEs' upstreams; the catch-all group only once it counted.
fn upstream_peers(mcf: &MainConf) -> Vec<PeerMetrics> {
    let mut out = Vec::new();
    for g in mcf.all_peer_groups() {
        let catch_all = g.identity.is_null();
        for (peer, cells) in g.labels_now().into_iter().zip(g.cell_ptrs()) {
            // A cell for resolved addresses that holds none has no series.
            let Some(peer) = peer else {
                continue;
            };
            // SAFETY: cells point into the mapped zone once it is initialised.
            let Some(cells) = (unsafe { cells.as_ref() }) else {
                continue;
            };
            let classes = cells.snapshot();
            if catch_all && classes == [0; 5] {
                continue;
            }
            out.push(PeerMetrics {
                upstream: g.upstream.clone(),
                peer,
                classes,
            });
        }
    }
    out
}

/// Copies the zone's values for every configured NAME and probe at `now_ms`.
pub fn collect(mcf: &MainConf, now_ms: u64) -> Metrics {
    // Sized up front: a NAME's entry carries its counters (4 KB), and growing by doubling
    // copied them over and over at thousands of NAMEs.
    let mut m = Metrics {
        bucket_bounds: mcf.bucket_bounds(),
        names: Vec::with_capacity(mcf.names.len()),
        health: Vec::with_capacity(mcf.names.len()),
        probes: Vec::with_capacity(mcf.probes.len()),
        probe_down: Vec::with_capacity(mcf.probes.len()),
        ..Metrics::default()
    };
    // Which upstream peers mark_down keeps out: read from nginx's upstream zones.
    #[cfg(not(test))]
    {
        m.peers_down = crate::probe::mark_down::nginx_peers::kept_out(mcf);
    }
    m.upstream_peers = upstream_peers(mcf);
    for n in &mcf.names {
        // SAFETY: slots point into the mapped zone once it is initialised.
        let Some(slot) = (unsafe { n.slot.as_ref() }) else {
            continue;
        };
        let p = &n.params;
        let since = slot.alert.incident_since_ms.load(Relaxed);
        let level = Level::from_u8(slot.alert.level.load(Relaxed) as u8);
        m.name_details.insert(
            n.name.clone(),
            NameDetail {
                error_share_history: slot.window.share_history(now_ms, p.window_ms),
                level_since_unix: (level != Level::Ok && since != 0).then_some(since / 1000),
                window_secs: Some(p.window_ms / 1000),
                warn_pct: p.warn_pct,
                crit_pct: Some(p.crit_pct),
                link: p.link.clone(),
                runbook: p.runbook.clone(),
                upstream: n.peers.and_then(|group| {
                    mcf.all_peer_groups()
                        .find(|g| core::ptr::eq(*g, group.as_ptr()))
                        .map(|g| g.upstream.clone())
                }),
                ..NameDetail::default()
            },
        );
        m.health.push(NameHealth {
            name: n.name.clone(),
            latency: p
                .latency
                .as_ref()
                .map(|l| (l.quantile_label(), slot.latency.estimate_seconds())),
            slo: p.slo_pct.map(|pct| {
                let labels = crate::evaluate::slo::burn_windows_ms(p.window_ms)
                    .map(crate::evaluate::slo::window_label);
                (pct, labels.into_iter().zip(slot.slo.rates()).collect())
            }),
            traffic: p.traffic.map(|t| {
                let history = TrafficHistory::from_words(&slot.traffic.history_words());
                TrafficHealth {
                    thresholds: traffic_thresholds(&t),
                    level: Level::from_u8(slot.traffic.state.level.load(Relaxed) as u8),
                    usual: slot.traffic.usual(),
                    known_windows: history.known_windows(),
                }
            }),
            incidents: slot.incident_summary(now_ms),
        });
        m.names.push(NameMetrics {
            name: n.name.clone(),
            counters: slot.counters.snapshot(),
            window_requests: slot.alert.window().0,
            window_errors: slot.alert.window().1,
            level: Level::from_u8(slot.alert.level.load(Relaxed) as u8),
        });
    }
    for p in &mcf.probes {
        // SAFETY: as above.
        let Some(slot) = (unsafe { p.slot.as_ref() }) else {
            continue;
        };
        // A `server ... resolve` slot shows the address it holds now; none, no series.
        let Some(p) = p.current() else {
            continue;
        };
        let s = &slot.probe;
        let mut failures = [0u64; crate::vocab::reason::Reason::COUNT];
        for (d, f) in failures.iter_mut().zip(s.failures.iter()) {
            *d = f.load(Relaxed);
        }
        let since = s.since_ms.load(Relaxed);
        let (reason, status) = crate::probe::last_failure(s);
        m.probe_details.insert(
            (p.name.clone(), p.target.display()),
            ProbeDetail {
                since_unix: (since != 0).then_some(since / 1000),
                last_reason: reason.map(|r| r.words(status)),
                // The page shows it as part of the last failure: only an unexpected status.
                last_status: status
                    .filter(|_| reason == Some(crate::vocab::reason::Reason::Status)),
            },
        );
        m.probe_down.push(ProbeDown {
            name: p.name.clone(),
            target: p.target.display(),
            seconds: s.down_seconds(now_ms),
        });
        m.probes.push(ProbeMetrics {
            name: p.name.clone(),
            target: p.target.display(),
            up: crate::probe::is_up(s),
            duration_seconds: s.last_duration_us.load(Relaxed) as f64 / 1e6,
            failures,
        });
    }
    collect_certificates(mcf, &mut m);
    if let Some(zone) = &mcf.zone {
        let h = zone.header();
        for (d, n) in m.notifications.iter_mut().zip(h.notifications.iter()) {
            *d = n.load(Relaxed);
        }
        for (i, (d, counts)) in mcf
            .destinations
            .iter()
            .zip(&h.destination_notifications)
            .enumerate()
        {
            m.destinations
                .push((d.label(i), counts.each_ref().map(|c| c.load(Relaxed))));
        }
        m.queue_depth = h.queue_depth.load(Relaxed);
        let a = &h.alerting;
        m.alerting = Some(AlertingStatus {
            evaluations: a.evaluations.load(Relaxed),
            last_evaluation_ms: a.last_evaluation_ms.load(Relaxed),
            interval_ms: a.interval_ms.load(Relaxed),
            helper_restarts: a.helper_restarts.load(Relaxed),
            stalled_since_ms: a.stalled_since(now_ms),
            evaluated_elsewhere: a.evaluated_elsewhere.load(Relaxed) != 0,
            reason: StallReason::from_index(a.reason.load(Relaxed)),
        });
    }
    m
}

/// The certificates nginx serves and the probe targets' certificates, from the zone.
fn collect_certificates(mcf: &MainConf, m: &mut Metrics) {
    for c in &mcf.certificates {
        // SAFETY: slots point into the mapped zone once it is initialised.
        let watch = unsafe { c.slot.as_ref() }.map(|s| &s.certificate);
        let served = c.served_not_after();
        let on_disk = watch
            .map(|w| w.on_disk_not_after_unix.load(Relaxed))
            .filter(|v| *v != 0);
        let since = watch.map_or(0, |w| w.on_disk_since_unix.load(Relaxed));
        let renewal = served
            .and_then(|s| crate::evaluate::certificate::renewal(s, on_disk.map(|d| (d, since))));
        let problem = match (&c.served, watch.map(|w| w.on_disk_error.load(Relaxed))) {
            (Err(e), _) => Some(e.to_string()),
            (_, Some(1)) => Some(format!("cannot read \"{}\"", c.file)),
            (_, Some(2)) => Some(format!("no certificate in \"{}\"", c.file)),
            _ => None,
        };
        m.certificates.push(CertificateMetrics {
            server: c.server.clone(),
            file: c.file.clone(),
            served,
            on_disk,
            renewed_since: renewal.map(|r| r.since_unix),
            problem,
            level: watch.map_or(Level::Ok, |w| {
                Level::from_u8(w.alert.level.load(Relaxed) as u8)
            }),
        });
    }
    for p in &mcf.probes {
        // SAFETY: as above.
        let Some(slot) = (unsafe { p.slot.as_ref() }) else {
            continue;
        };
        let Some(p) = p.current() else {
            continue;
        };
        let expiry = slot.certificate.not_after_unix.load(Relaxed);
        if expiry != 0 {
            let level = Level::from_u8(slot.certificate.alert.level.load(Relaxed) as u8);
            m.probe_certificates
                .push((p.name.clone(), p.target.display(), expiry, level));
        }
    }
}
