//! Worker 0's rounds: every tick it takes the lease when free, applies probe results, evaluates
//! the windows when an interval is due, and queues what the round announces for the helper
//! process (which destination gets what is `notify::routing`'s call).

use core::sync::atomic::Ordering::Relaxed;

use nginx_sys::{ngx_cycle_t, ngx_log_t};

use super::helper_link::{HelperLink, RESTART_BACKOFF_MIN_MS};
use super::lease::{self, Attempt, Lease, StateDir};
use super::process::{exiting, now_ms, pid};
use super::round::{Round, SLICE_BUDGET};
use crate::conf::state_dir::StateDirError;
use crate::conf::MainConf;
use crate::evaluate::firing::{self, WatchedProbe};
use crate::evaluate::heartbeat::HeartbeatSchedule;
use crate::evaluate::mute_round::HeldDowns;
use crate::evaluate::{self, Watched};
use crate::event::loop_fd::PostedEvent;
use crate::helper::{Outbox, MAX_PENDING};
use crate::notify::alertmanager;
use crate::notify::delivery::{Outcome, OutcomeReport};
use crate::notify::routing::{self, Post, ZoneEscalations};
use crate::probe::ProbeResult;
use crate::vocab::event::AlertEvent;
use crate::vocab::title::log_line;
use crate::zone::routes::route_key;
use crate::zone::{StallReason, Zone};

/// A hand-over older than this is from an earlier run of nginx, not from the previous holder.
const HAND_OVER_MAX_AGE: core::time::Duration = core::time::Duration::from_secs(60);

/// State of the evaluating process.
pub(super) struct Evaluator {
    pub(super) mcf: &'static MainConf,
    pub(super) zone: Zone,
    pub(super) log: *mut ngx_log_t,
    pub(super) host: String,
    pub(super) next_eval_ms: u64,
    /// Alerts not yet taken by a helper: they outlive helpers.
    pub(super) outbox: Outbox,
    pub(super) helper: Option<HelperLink>,
    /// No helper before this (backoff after a quick death or a failed start), ms.
    pub(super) next_helper_start_ms: u64,
    pub(super) helper_backoff_ms: u64,
    /// Helpers started so far (the first one is no restart).
    pub(super) helpers_started: u64,
    /// The helper was told to finish (nginx is exiting).
    pub(super) stopping: bool,
    /// The private state directory, or why it cannot be used.
    pub(super) state: Result<StateDir, StateDirError>,
    /// This nginx instance's name (prefix and configuration file), for the lease's file.
    pub(super) instance: String,
    /// Held while this process is the one that evaluates (see `lease`).
    pub(super) lease: Option<Lease>,
    /// Another master held the lease and this was said (logged once).
    pub(super) held_logged: bool,
    /// When firing alerts are next re-posted to the Alertmanagers, ms.
    pub(super) next_alertmanager_ms: u64,
    /// `status_alert_heartbeat`: its destination index and its schedule.
    pub(super) heartbeat: Option<(usize, HeartbeatSchedule)>,
    /// Probe DOWNs a mute held back, announced when it ends if still down.
    pub(super) held_downs: HeldDowns,
    /// The zone's routing-state column of each destination (`zone/routes.rs`), by index;
    /// `None` for a destination that gets everything. Set when the lease is taken.
    pub(super) route_columns: Vec<Option<usize>>,
    /// The evaluation round in progress, if it did not fit into one turn of the loop.
    pub(super) round: Option<Round>,
    /// Failed tries per peer over time, one per peer group (`driver/peers.rs`).
    pub(super) peer_windows: Vec<crate::evaluate::peer_window::PeerWindow>,
    /// How long `peer_windows` keep samples: the longest `window=` (`driver/peers.rs`).
    pub(super) peer_keep_ms: u64,
    /// Continues the round on the next turn of the loop.
    pub(super) resume: PostedEvent,
}

/// One `dropped` outcome per payload lost for `why`, given by its destination.
pub(super) fn lost_outcomes(destinations: Vec<usize>, why: &str) -> Vec<OutcomeReport> {
    destinations
        .into_iter()
        .map(|destination| OutcomeReport {
            outcome: Outcome::Dropped,
            message: format!("alert dropped: {why}"),
            is_error: false,
            destination,
        })
        .collect()
}

impl Evaluator {
    /// Worker 0 at `init_process`: starts the helper and the probes; the lease is tried on
    /// the first tick.
    pub(super) fn start(cycle: &ngx_cycle_t, mcf: &'static MainConf, zone: Zone) -> Box<Evaluator> {
        let now = now_ms();
        let log = cycle.log;
        let instance =
            lease::instance_name(&cycle.prefix.to_string(), &cycle.conf_file.to_string());
        let state = StateDir::open(&mcf.state_dir, &instance);
        let mut evaluator = Box::new(Evaluator {
            mcf,
            zone,
            log,
            host: cycle.hostname.to_string(),
            next_eval_ms: now + mcf.interval_ms(),
            outbox: Outbox::default(),
            helper: None,
            next_helper_start_ms: now,
            helper_backoff_ms: RESTART_BACKOFF_MIN_MS,
            helpers_started: 0,
            stopping: false,
            state,
            instance,
            lease: None,
            held_logged: false,
            next_alertmanager_ms: 0,
            heartbeat: mcf
                .heartbeat()
                .map(|(index, interval_ms)| (index, HeartbeatSchedule::new(interval_ms, now))),
            held_downs: HeldDowns::default(),
            route_columns: Vec::new(),
            round: None,
            peer_windows: Vec::new(),
            peer_keep_ms: super::peers::peer_keep_ms(mcf),
            resume: PostedEvent::new(Some(super::process::on_resume), log),
        });
        evaluator.start_helper(now, true);
        crate::probe::net::start(&mcf.probes, log);
        notice!(
            log,
            "status_alert: evaluating {} names and {} probes in this process",
            mcf.names.len(),
            mcf.probes.len()
        );
        evaluator
    }

    /// One tick of worker 0: helper health, probes, the lease, evaluation, announcements.
    pub(super) fn tick(&mut self, now: u64) {
        if exiting() {
            if !self.stopping {
                self.shut_down("nginx is exiting");
            }
            return;
        }
        let mut outcomes = self.read_reports(now);
        self.watch_helper(now, &mut outcomes);
        self.follow_reopened_log(now);
        // `server ... resolve` slots follow nginx's re-resolution before the tick's probes.
        if self.lease.is_some() {
            crate::probe::resolve_pool::nginx_pools::sync(self.mcf, self.log);
            crate::probe::resolve_pool::nginx_pools::sync_peer_cells(self.mcf);
        }
        crate::probe::net::follow_slots();
        // The probes due start on ticks only, at the same phase each time, so a target's
        // starts stay an interval apart.
        crate::probe::net::run_due();
        self.take_over(now);
        let mut events = Vec::new();
        let results = crate::probe::net::take_results();
        if self.lease.is_some() && !results.is_empty() {
            let names = self.watched();
            for r in &results {
                events.extend(self.apply_probe(&names, r, now));
            }
        }
        if self.lease.is_some() {
            let fail_open = crate::probe::mark_down::nginx_peers::sync(self.mcf, self.log);
            crate::probe::mark_down::annotate(&mut events, &fail_open);
        }
        if self.lease.is_some() && self.round.is_none() && now >= self.next_eval_ms {
            let interval = self.mcf.interval_ms();
            self.next_eval_ms = now + interval;
            if evaluate::take_tick(self.zone.header(), now, interval) {
                self.record_peers(now);
                self.round = Some(Round::new(now));
            }
        }
        self.continue_round(now, events, outcomes, true);
    }

    /// The posted event: the next slice of the round in progress.
    pub(super) fn resume(&mut self, now: u64) {
        if exiting() || self.round.is_none() {
            // The next tick shuts down; a round is not finished on the way out.
            return;
        }
        self.continue_round(now, Vec::new(), Vec::new(), false);
    }

    /// Evaluates the next slice of the round in progress (every NAME at the round's start),
    /// then announces what this turn has: the probe `events` of a tick, and the round's events
    /// once its last NAME is done. An unfinished round continues on the next turn of the loop;
    /// a slice between ticks (`on_tick` false) that does not finish it has nothing to say.
    fn continue_round(
        &mut self,
        now: u64,
        mut events: Vec<AlertEvent>,
        mut outcomes: Vec<OutcomeReport>,
        on_tick: bool,
    ) {
        let mut sent = Vec::new();
        let mut evaluated = false;
        if let Some(mut round) = self.round.take().filter(|_| self.lease.is_some()) {
            let (interval, bounds) = (self.mcf.interval_ms(), self.mcf.bucket_bounds());
            let at = round.now_ms;
            let total = self.mcf.names.len();
            // Each slice's events pass the mutes with the slice's NAMEs (whose gates are
            // kept in their slots), so no step of a round walks every NAME at once.
            let mut held_downs = core::mem::take(&mut self.held_downs);
            let done = round.advance(total, SLICE_BUDGET, |range| {
                let watched = self.watched_range(range);
                let mut events = evaluate::evaluate_with(&watched, at, interval, &bounds);
                self.name_peers(&mut events, at);
                self.gate(&mut held_downs, &watched, events, at)
            });
            self.held_downs = held_downs;
            match done {
                Some(round_events) => {
                    sent = round_events;
                    events.extend(self.certificate_events(at));
                    evaluated = true;
                    self.zone.header().alerting.evaluated(now_ms(), pid());
                    if let Some((_, schedule)) = self.heartbeat.as_mut() {
                        schedule.on_evaluation();
                    }
                }
                None => {
                    self.round = Some(round);
                    self.resume.post();
                }
            }
        }
        if !on_tick && !evaluated {
            return;
        }
        if self.lease.is_some() && (evaluated || !events.is_empty()) {
            // The tick's probe events and the round's certificates, with their NAMEs.
            if !events.is_empty() {
                let mut held_downs = core::mem::take(&mut self.held_downs);
                let watched = self.watched_of(&events);
                let passed = self.gate(&mut held_downs, &watched, events, now);
                self.held_downs = held_downs;
                sent.extend(passed);
            }
            sent.extend(self.release_held_downs(now));
        } else {
            sent.extend(events);
        }
        let events = sent;
        if !events.is_empty() {
            outcomes.extend(self.announce(&events, now));
        } else if self.lease.is_some() {
            outcomes.extend(self.resend_to_alertmanager(now));
        }
        if self.lease.is_some() && routing::holds_back(&self.mcf.destinations) {
            outcomes.extend(self.release_held(now));
        }
        if self.lease.is_some() {
            outcomes.extend(self.beat(now));
        }
        if let Some(link) = self.helper.as_mut() {
            link.helper.flush(&mut self.outbox);
        }
        self.record_outcomes(outcomes);
    }

    /// Queues a heartbeat when one is due: only after an evaluation round since the last one,
    /// and only to a helper that is making progress (a beat must mean that alerts get out).
    pub(super) fn beat(&mut self, now: u64) -> Vec<OutcomeReport> {
        let responsive = self
            .helper
            .as_ref()
            .is_some_and(|l| now.saturating_sub(l.heard_ms) < 1000);
        let Some((index, schedule)) = self.heartbeat.as_mut() else {
            return Vec::new();
        };
        if !responsive || !schedule.due(now) {
            return Vec::new();
        }
        let index = *index;
        self.submit(index, "")
    }

    /// Stops evaluating for good (nginx is exiting): the lease goes with our state, the helper
    /// finishes alone with what it has, and what never reached it whole is counted dropped.
    pub(super) fn shut_down(&mut self, why: &str) {
        self.stopping = true;
        crate::probe::net::stop();
        self.release_lease();
        let lost = match self.helper.take() {
            // Closing the pipe tells the helper to finish.
            Some(link) => link.helper.close(&mut self.outbox),
            None => self.outbox.take_unwritten(),
        };
        self.record_outcomes(lost_outcomes(lost, why));
    }

    /// Gives up the lease, leaving this process's evaluator state for the next holder.
    pub(super) fn release_lease(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if let Ok(state) = &self.state {
            let log = self.log;
            let mut report = |m: String| warn!(log, "status_alert: {m}");
            let mut exported = self.zone.export_state();
            exported["mutes"] = self.export_mutes(now_ms());
            let exported = exported.to_string();
            if let Err(e) = state.leave(exported.as_bytes(), &mut report) {
                warn!(
                    self.log,
                    "status_alert: cannot leave the evaluator state: {e}"
                );
            }
        }
        drop(lease);
    }

    /// On every tick: stops evaluating once a newer configuration counts elsewhere, moves the
    /// counts of draining zones into the primary, and takes the lease when it is free (with
    /// the last state of the previous evaluator).
    pub(super) fn take_over(&mut self, now: u64) {
        let zone = self.zone;
        let header = zone.header();
        let superseded =
            header.superseded.load(Relaxed) != 0 || zone.generation() != self.mcf.generation;
        if superseded {
            if self.lease.is_some() {
                self.release_lease();
                notice!(
                    self.log,
                    "status_alert: a newer configuration evaluates from now on"
                );
            }
            return;
        }
        for d in &self.mcf.draining {
            // SAFETY: both slots of a pair point into zones mapped for this cycle.
            let pairs: Vec<_> = d
                .pairs
                .iter()
                .map(|(a, b)| unsafe { (&**a, &**b) })
                .collect();
            zone.move_counts(&d.zone, &pairs);
        }
        if self.lease.is_some() {
            return;
        }
        if self.state.is_err() {
            self.state = StateDir::open(&self.mcf.state_dir, &self.instance);
        }
        let log = self.log;
        let mut report = |m: String| warn!(log, "status_alert: {m}");
        let state = match &self.state {
            Ok(state) => state,
            Err(e) => return self.cannot_evaluate(e, now),
        };
        let alerting = &header.alerting;
        match state.try_lease(&mut report) {
            Ok(Attempt::Taken(lease)) => {
                if let Some(p) = self.mcf.predecessor {
                    zone.import_state(&p);
                }
                // The last state the previous holder left (from the other master of a binary
                // upgrade; after a reload it is what the zone already holds).
                let last = state.take(HAND_OVER_MAX_AGE, &mut report);
                if let Some(state) = last.and_then(|m| serde_json::from_slice(&m).ok()) {
                    zone.import_exported(&state, now);
                    self.import_mutes(&state["mutes"], now);
                }
                // Routed destinations keep their state in the zone, in a column per
                // destination; only the lease holder writes it.
                let keys: Vec<u64> = self
                    .mcf
                    .destinations
                    .iter()
                    .map(|d| {
                        if d.is_routed() {
                            route_key(d.format.name(), &d.url)
                        } else {
                            0
                        }
                    })
                    .collect();
                self.route_columns = zone.route_columns(&keys);
                self.lease = Some(lease);
                self.held_logged = false;
                alerting.evaluated_elsewhere.store(0, Relaxed);
                alerting.reason.store(StallReason::Unknown as u64, Relaxed);
                notice!(self.log, "status_alert: this process evaluates from now on");
            }
            Ok(Attempt::Held) => {
                // The previous generation's evaluator until it exits, or the other master of
                // a binary upgrade: either way, another process evaluates.
                alerting.evaluated_elsewhere.store(1, Relaxed);
                if !self.held_logged && now >= self.next_eval_ms {
                    self.held_logged = true;
                    notice!(
                        self.log,
                        "status_alert: another process of this nginx (the other master of a \
                         binary upgrade?) holds the evaluation lease; it evaluates"
                    );
                }
            }
            Err(e) => self.cannot_evaluate(&e, now),
        }
    }

    /// The state directory cannot be used: says why at `[alert]` (once a minute among all
    /// workers) and records it for the watching workers and the status page.
    fn cannot_evaluate(&self, e: &StateDirError, now: u64) {
        let alerting = &self.zone.header().alerting;
        alerting.evaluated_elsewhere.store(0, Relaxed);
        alerting
            .reason
            .store(StallReason::StateDirectory as u64, Relaxed);
        if alerting.should_log_stall(now) {
            alert!(
                self.log,
                "status_alert: alerting is not running: {e} (status_alert_state_path)"
            );
        }
    }

    /// The NAMEs with their slots, as the plain-Rust evaluation reads them.
    pub(super) fn watched(&self) -> Vec<Watched<'_>> {
        self.watched_range(0..self.mcf.names.len())
    }

    /// The NAMEs at `range` of the configuration's NAMEs with their slots.
    pub(super) fn watched_range(&self, range: core::ops::Range<usize>) -> Vec<Watched<'_>> {
        self.mcf.names[range]
            .iter()
            .filter_map(|n| {
                // SAFETY: slots point into the mapped zone.
                let slot = unsafe { n.slot.as_ref() }?;
                Some(Watched {
                    name: &n.name,
                    params: &n.params,
                    slot,
                })
            })
            .collect()
    }

    /// The probe target at `index` of the configuration with its slot.
    pub(super) fn watched_probe(&self, index: usize) -> Option<WatchedProbe<'_>> {
        let probe = self.mcf.probes.get(index)?;
        // SAFETY: slots point into the mapped zone.
        let slot = unsafe { probe.slot.as_ref() }?;
        Some(WatchedProbe {
            // A `server ... resolve` slot that holds no address is no target now.
            spec: probe.current()?,
            health: &slot.probe,
        })
    }

    /// Updates a target's shared state; returns the DOWN / UP event if it changed.
    pub(super) fn apply_probe(
        &self,
        names: &[Watched],
        r: &ProbeResult,
        now: u64,
    ) -> Option<AlertEvent> {
        let probe = self.watched_probe(r.index)?;
        firing::apply_probe(names, &probe, r, now)
    }

    /// Every probe target with its state.
    pub(super) fn watched_probes(&self) -> Vec<WatchedProbe<'_>> {
        (0..self.mcf.probes.len())
            .filter_map(|i| self.watched_probe(i))
            .collect()
    }

    /// What fires now, read from the zone (see [`firing::firing_now`]).
    pub(super) fn firing_now(&self, now: u64) -> Vec<AlertEvent> {
        let mut firing = firing::firing_now(&self.watched(), &self.watched_probes(), now);
        firing.extend(self.certificates_firing(now));
        self.without_muted(firing, now)
    }

    /// Tells each `after=` destination of the incidents that have now fired long enough
    /// (every tick while the lease is held).
    pub(super) fn release_held(&mut self, now: u64) -> Vec<OutcomeReport> {
        let (names, probes) = (self.watched(), self.watched_probes());
        // A muted NAME's incidents are not released: once its mute ends, the check finds
        // them old enough and tells the second tier then.
        let firing = self.without_muted(firing::firing_now(&names, &probes, now), now);
        if firing.is_empty() {
            return Vec::new();
        }
        let store = ZoneEscalations {
            names: &names,
            probes: &probes,
            columns: &self.route_columns,
        };
        let destinations = &self.mcf.destinations;
        let released = routing::releases(destinations, &firing, &self.host, now, &store);
        let mut posts = Vec::new();
        for r in released {
            let label = destinations[r.destination].label(r.destination);
            for e in &r.events {
                notice!(
                    self.log,
                    "{} (fired for after=, queued for {label})",
                    log_line(e, &self.host)
                );
            }
            posts.extend(r.posts);
        }
        self.submit_all(posts)
    }

    /// Logs every event and queues the payloads for every destination. Returns outcomes for
    /// payloads that could not be queued.
    pub(super) fn announce(&mut self, events: &[AlertEvent], now: u64) -> Vec<OutcomeReport> {
        if !self.mcf.has_alert_destinations() {
            // No destination: the error log is where alerts go.
            for e in events {
                warn!(self.log, "{}", log_line(e, &self.host));
            }
            return Vec::new();
        }
        for e in events {
            notice!(
                self.log,
                "{} (queued for delivery)",
                log_line(e, &self.host)
            );
        }
        let destinations = &self.mcf.destinations;
        let firing = if routing::wants_firing(destinations) {
            self.next_alertmanager_ms = now + alertmanager::RESEND_SECS * 1000;
            self.firing_now(now)
        } else {
            Vec::new()
        };
        let (names, probes) = (self.watched(), self.watched_probes());
        let store = ZoneEscalations {
            names: &names,
            probes: &probes,
            columns: &self.route_columns,
        };
        let posts = routing::route(destinations, events, &firing, &self.host, now, &store);
        self.submit_all(posts)
    }

    /// Queues `body` for destination `i`; returns outcomes for what had to be dropped.
    pub(super) fn submit(&mut self, i: usize, body: &str) -> Vec<OutcomeReport> {
        lost_outcomes(
            self.outbox.push(i, body, MAX_PENDING),
            "too many alerts wait for the helper process",
        )
    }

    /// Queues what [`routing`] says; returns outcomes for what had to be dropped.
    pub(super) fn submit_all(&mut self, posts: Vec<Post>) -> Vec<OutcomeReport> {
        let mut dropped = Vec::new();
        for post in posts {
            dropped.extend(self.submit(post.destination, &post.body));
        }
        dropped
    }

    /// Re-posts what fires to the Alertmanagers every `alertmanager::RESEND_SECS`.
    pub(super) fn resend_to_alertmanager(&mut self, now: u64) -> Vec<OutcomeReport> {
        if !routing::wants_firing(&self.mcf.destinations) || now < self.next_alertmanager_ms {
            return Vec::new();
        }
        self.next_alertmanager_ms = now + alertmanager::RESEND_SECS * 1000;
        let firing = self.firing_now(now);
        let posts = routing::resend(&self.mcf.destinations, &firing, &self.host, now);
        self.submit_all(posts)
    }

    /// Counts delivery outcomes in the zone and logs each once.
    pub(super) fn record_outcomes(&self, outcomes: Vec<OutcomeReport>) {
        for o in outcomes {
            let i = Outcome::ALL
                .iter()
                .position(|r| *r == o.outcome)
                .unwrap_or(0);
            self.zone.count_delivery(o.destination, i);
            let msg = &o.message;
            match o.outcome {
                Outcome::Sent => notice!(self.log, "status_alert: {msg}"),
                _ if o.is_error => error!(self.log, "status_alert: {msg}"),
                _ => warn!(self.log, "status_alert: {msg}"),
            }
        }
    }
}
