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
pub mod scrape;
#[cfg(not(test))]
mod scrape_event;

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

/// The zone's values copied a few NAMEs at a time ([`Collector::names`]), so that a scrape of
/// thousands of NAMEs can give the event loop back between slices. Each NAME's values are read
/// together; NAMEs read in different slices are a few milliseconds apart, as are the values
/// that are not per NAME (read when the collector is made). A scrape that writes NAMEs as they
/// come forgets each batch once written ([`Collector::forget_names`]), so its copy stays a few
/// hundred KB however many NAMEs there are.
pub struct Collector {
    m: Metrics,
    now_ms: u64,
    /// The runtime mutes, as copied from the zone (under its lock) when the scrape began.
    records: Vec<crate::zone::mutes::MuteRecord>,
    local_offset_secs: i32,
    /// The order to copy NAMEs in (indexes into `mcf.names`); `None`: configuration order.
    order: Option<Vec<usize>>,
    /// How many NAMEs are copied.
    next: usize,
    /// Unit tests: NAMEs copied from these values instead of a zone.
    #[cfg(test)]
    replay: Option<Metrics>,
}

impl Collector {
    /// Copies everything but the NAMEs: probes, certificates, peers, deliveries, alerting.
    pub fn new(mcf: &MainConf, now_ms: u64) -> Self {
        let mut m = Metrics {
            bucket_bounds: mcf.bucket_bounds(),
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
        collect_rest(mcf, &mut m, now_ms);
        // The runtime mutes live under the zone's lock, which unit tests have none of.
        #[cfg(not(test))]
        let (records, local_offset_secs) = (
            crate::conf::mute_lock::copy_mutes(mcf),
            crate::conf::mute_lock::local_offset_secs(),
        );
        #[cfg(test)]
        let (records, local_offset_secs) = (Vec::new(), 0);
        Collector {
            m,
            now_ms,
            records,
            local_offset_secs,
            order: None,
            next: 0,
            #[cfg(test)]
            replay: None,
        }
    }

    /// Unit tests: a collector whose NAMEs come from `m`'s (its other values are `m`'s too).
    #[cfg(test)]
    pub fn replaying(m: Metrics) -> Self {
        let mut names_of = m.clone();
        names_of.names.clear();
        names_of.health.clear();
        names_of.name_details.clear();
        names_of.mutes.clear();
        names_of.observed_secs.clear();
        Collector {
            m: names_of,
            now_ms: 0,
            records: Vec::new(),
            local_offset_secs: 0,
            order: None,
            next: 0,
            replay: Some(m),
        }
    }

    /// How many NAMEs there are to copy.
    fn total(&self, mcf: &MainConf) -> usize {
        #[cfg(test)]
        if let Some(r) = &self.replay {
            return r.names.len();
        }
        mcf.names.len()
    }

    /// Room for every NAME at once, for a scrape that keeps them all: a NAME's entry carries
    /// its counters (4 KB), and growing by doubling copied them over and over.
    pub fn reserve_all(&mut self, mcf: &MainConf) {
        self.m.names.reserve(mcf.names.len());
        self.m.health.reserve(mcf.names.len());
    }

    /// Copies the NAMEs in key order (as JSON lists them) rather than configuration order.
    pub fn in_key_order(&mut self, mcf: &MainConf) {
        let name = |i: usize| -> &str {
            #[cfg(test)]
            if let Some(r) = &self.replay {
                return &r.names[i].name;
            }
            &mcf.names[i].name
        };
        let mut order: Vec<usize> = (0..self.total(mcf)).collect();
        // Unstable, with the index as the tie-break: the order a stable sort gives, without
        // its merge buffer.
        order.sort_unstable_by(|&a, &b| (name(a), a).cmp(&(name(b), b)));
        self.order = Some(order);
    }

    /// Copies up to `count` more NAMEs; true once every NAME is copied.
    pub fn names(&mut self, mcf: &MainConf, count: usize) -> bool {
        let total = self.total(mcf);
        let end = self.next.saturating_add(count).min(total);
        for i in self.next..end {
            let at = self.order.as_ref().map_or(i, |o| o[i]);
            #[cfg(test)]
            if self.replay.is_some() {
                self.replay_name(at);
                continue;
            }
            self.name(mcf, &mcf.names[at]);
        }
        self.next = end;
        end == total
    }

    /// Unit tests: copies the NAME at `i` of the values replayed.
    #[cfg(test)]
    fn replay_name(&mut self, i: usize) {
        let Some(r) = &self.replay else {
            return;
        };
        let l = r.names[i].clone();
        let m = &mut self.m;
        // As collected: the health entry at the NAME's index.
        if let Some(h) = r.health.get(i) {
            m.health.push(h.clone());
        }
        if let Some(d) = r.name_details.get(&l.name) {
            m.name_details.insert(l.name.clone(), d.clone());
        }
        if let Some(v) = r.mutes.get(&l.name) {
            m.mutes.insert(l.name.clone(), v.clone());
        }
        if let Some(v) = r.observed_secs.get(&l.name) {
            m.observed_secs.insert(l.name.clone(), *v);
        }
        m.names.push(l);
    }

    /// What is copied: every NAME so far (since [`Collector::forget_names`]), and the rest.
    pub fn metrics(&self) -> &Metrics {
        &self.m
    }

    /// Forgets the NAMEs copied so far, keeping their memory for the next ones.
    pub fn forget_names(&mut self) {
        let m = &mut self.m;
        m.names.clear();
        m.health.clear();
        m.name_details.clear();
        m.mutes.clear();
        m.observed_secs.clear();
    }

    /// What was copied.
    pub fn finish(self) -> Metrics {
        self.m
    }

    /// One NAME's counters, window, level, health, page details and mute.
    fn name(&mut self, mcf: &MainConf, n: &crate::conf::NameConf) {
        let mutes = crate::evaluate::muted::Mutes {
            maintenance: &mcf.maintenance,
            records: &self.records,
            local_offset_secs: self.local_offset_secs,
        };
        mute_view::collect_mute(&mut self.m, n, &mutes, self.now_ms);
        // SAFETY: slots point into the mapped zone once it is initialised.
        let Some(slot) = (unsafe { n.slot.as_ref() }) else {
            return;
        };
        let p = &n.params;
        let since = slot.alert.incident_since_ms.load(Relaxed);
        let level = Level::from_u8(slot.alert.level.load(Relaxed) as u8);
        self.m.name_details.insert(
            n.name.clone(),
            NameDetail {
                error_share_history: slot.window.share_history(self.now_ms, p.window_ms),
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
        self.m.health.push(NameHealth {
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
            incidents: slot.incident_summary(self.now_ms),
        });
        self.m.names.push(NameMetrics {
            name: n.name.clone(),
            counters: slot.counters.snapshot(),
            window_requests: slot.alert.window().0,
            window_errors: slot.alert.window().1,
            level: Level::from_u8(slot.alert.level.load(Relaxed) as u8),
        });
    }
}

/// Copies the zone's values for every configured NAME and probe at `now_ms`, in one go.
pub fn collect(mcf: &MainConf, now_ms: u64) -> Metrics {
    let mut c = Collector::new(mcf, now_ms);
    c.reserve_all(mcf);
    c.names(mcf, usize::MAX);
    c.finish()
}

/// Probes, certificates, deliveries and the evaluator's state.
fn collect_rest(mcf: &MainConf, m: &mut Metrics, now_ms: u64) {
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
    collect_certificates(mcf, m);
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
