//! The evaluating process (FFI): worker 0 evaluates the windows and runs the helper process
//! that delivers webhooks and runs probes.
//!
//! All of it runs in exactly one process (worker 0, or the single process with
//! `master_process off`). It forks the helper process (`helper/mod.rs`) and watches the helper's
//! report pipe as an nginx channel event, so it needs no timer: the helper writes a tick every
//! `helper::TICK_MS`, and on each one worker 0 applies probe results, counts delivery outcomes
//! and, every `status_alert_interval`, evaluates the windows. Once nginx is exiting it stops
//! evaluating and tells the helper to finish; a channel event never delays shutdown.

use core::cell::RefCell;
use core::ptr;
use core::sync::atomic::Ordering::Relaxed;

use nginx_sys::{
    ngx_close_connection, ngx_connection_t, ngx_cycle_t, ngx_event_handler_pt, ngx_event_t,
    ngx_fd_t, ngx_int_t, ngx_log_t, ngx_setproctitle, NGX_OK,
};
use ngx::http::HttpModuleMainConf;

use crate::conf::params::WebhookFormat;
use crate::conf::MainConf;
use crate::evaluate::event::AlertEvent;
use crate::evaluate::firing::{self, WatchedProbe};
use crate::evaluate::lease::{self, HandOver, Lease};
use crate::evaluate::{self, Watched};
use crate::helper::{Helper, HelperContext, Outbox, Report};
use crate::notify::delivery::{DeliveryResult, NotifierConfig, Outcome};
use crate::notify::{alertmanager, discord, payload};
use crate::probe::ProbeResult;
use crate::HttpStatusAlertModule;

extern "C" {
    // nginx's own helper for its master/worker channel (src/os/unix/ngx_channel.c): registers
    // a descriptor for read events with `channel` set, so it never holds up a worker's exit.
    fn ngx_add_channel_event(
        cycle: *mut ngx_cycle_t,
        fd: ngx_fd_t,
        event: ngx_int_t,
        handler: ngx_event_handler_pt,
    ) -> ngx_int_t;
}

/// nginx's `NGX_READ_EVENT` with the epoll event method.
const NGX_READ_EVENT: ngx_int_t = (libc::EPOLLIN | libc::EPOLLRDHUP) as ngx_int_t;

/// State of the evaluating process.
struct Evaluator {
    mcf: &'static MainConf,
    log: *mut ngx_log_t,
    host: String,
    next_eval_ms: u64,
    helper: Option<Helper>,
    /// The helper was told to finish (nginx is exiting).
    stopping: bool,
    /// Held while this process is the one that evaluates (see lease.rs).
    lease: Option<Lease>,
    /// The lease's name for this nginx.
    lease_name: Vec<u8>,
    /// Where the previous holder leaves its state when it cannot share a zone with us.
    hand_over: HandOver,
    /// A failure to take the lease was logged (logged once).
    lease_error_logged: bool,
    /// When the helper was last started, ms, and the wait before the next start after a crash.
    helper_started_ms: u64,
    helper_backoff_ms: u64,
    /// Restarts the helper after a backoff (armed only while there is none).
    restart_timer: Box<ngx_event_t>,
    /// Payloads waiting for the next helper while the restart backs off.
    pending_restart: Option<Outbox>,
    /// When firing alerts are next re-posted to the Alertmanagers, ms.
    next_alertmanager_ms: u64,
}

/// A hand-over older than this is from an earlier run of nginx, not from the previous holder.
const HAND_OVER_MAX_AGE: core::time::Duration = core::time::Duration::from_secs(60);

/// The shortest and longest wait before restarting a helper that keeps dying.
const RESTART_BACKOFF_MIN_MS: u64 = 1000;
const RESTART_BACKOFF_MAX_MS: u64 = 60_000;

thread_local! {
    // nginx runs its event loop on one thread; the worker state lives there.
    static EVALUATOR: RefCell<Option<Evaluator>> = const { RefCell::new(None) };
}

fn now_ms() -> u64 {
    let t = nginx_sys::ngx_timeofday();
    t.sec as u64 * 1000 + t.msec as u64
}

fn exiting() -> bool {
    // SAFETY: plain reads of nginx's process-wide flags, set by signal handlers.
    unsafe {
        nginx_sys::ngx_exiting != 0 || nginx_sys::ngx_terminate != 0 || nginx_sys::ngx_quit != 0
    }
}

fn is_evaluating_process() -> bool {
    // SAFETY: plain reads of globals set before init_process.
    let (process, worker) = unsafe { (nginx_sys::ngx_process, nginx_sys::ngx_worker) };
    process == nginx_sys::NGX_PROCESS_SINGLE as usize
        || (process == nginx_sys::NGX_PROCESS_WORKER as usize && worker == 0)
}

/// `init_process`: every worker notes in the zone that it counts into it; the evaluating
/// process also forks the helper and watches its reports.
pub extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the current cycle, valid for the process's lifetime.
    let cycle = unsafe { &*cycle };
    let Some(mcf) = HttpStatusAlertModule::main_conf(cycle) else {
        return NGX_OK as ngx_int_t;
    };
    let Some(zone) = mcf.zone else {
        return NGX_OK as ngx_int_t;
    };
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    zone.register_writer(pid, mcf.generation, crate::zone::process_alive);
    if !is_evaluating_process() {
        return NGX_OK as ngx_int_t;
    }
    let log = cycle.log;

    let helper = start_helper(mcf, cycle, log, Outbox::default());
    let lease_name = lease::name_for(&cycle.conf_file.to_string());
    // SAFETY: all-zero is an idle event; the fields nginx's timer code reads are set below.
    let mut restart_timer: Box<ngx_event_t> = Box::new(unsafe { core::mem::zeroed() });
    restart_timer.handler = Some(on_restart_timer);
    restart_timer.log = log;
    // A pending restart never holds up a graceful shutdown.
    restart_timer.set_cancelable(1);

    let evaluator = Evaluator {
        mcf,
        log,
        host: cycle.hostname.to_string(),
        next_eval_ms: now_ms() + mcf.interval_ms(),
        helper,
        stopping: false,
        lease: None,
        lease_name: lease_name.clone(),
        hand_over: HandOver::for_lease(&lease_name),
        lease_error_logged: false,
        helper_started_ms: now_ms(),
        helper_backoff_ms: RESTART_BACKOFF_MIN_MS,
        restart_timer,
        pending_restart: None,
        next_alertmanager_ms: 0,
    };
    EVALUATOR.with(|w| *w.borrow_mut() = Some(evaluator));
    crate::probe::net::start(&mcf.probes, log);
    notice!(
        log,
        "status_alert: evaluating {} names and {} probes in this process",
        mcf.names.len(),
        mcf.probes.len()
    );
    NGX_OK as ngx_int_t
}

/// Forks the helper process and watches its reports; logs and returns `None` on failure.
/// `pending` holds payloads a previous helper was never handed.
fn start_helper(
    mcf: &MainConf,
    cycle: &ngx_cycle_t,
    log: *mut ngx_log_t,
    pending: Outbox,
) -> Option<Helper> {
    let destinations = mcf
        .destinations
        .iter()
        .map(|d| NotifierConfig::new(d.url.clone()))
        .collect();
    // Probes run on this process's event loop (probe_net.rs), not in the helper.
    let ctx = HelperContext {
        in_child: set_helper_title,
        zone: mcf.zone,
        generation: mcf.generation,
        // SAFETY: log is the cycle's valid log.
        log_level: unsafe { (*log).log_level },
    };
    // Forked while this process has no thread (see helper/mod.rs).
    let mut helper = match Helper::start(destinations, ctx) {
        Ok(s) => s,
        Err(e) => {
            error!(log, "status_alert: cannot start the helper process: {e}");
            return None;
        }
    };
    // SAFETY: valid cycle; the descriptor stays open as long as the helper.
    let rc = unsafe {
        ngx_add_channel_event(
            ptr::from_ref(cycle).cast_mut(),
            helper.read_fd(),
            NGX_READ_EVENT,
            Some(on_reports),
        )
    };
    if rc != NGX_OK as ngx_int_t {
        error!(log, "status_alert: cannot watch the helper process");
        let _ = helper.close();
        return None;
    }
    helper.adopt(pending);
    Some(helper)
}

/// In the helper, right after fork: `ps` shows `nginx: status alert helper` instead of the
/// inherited `nginx: worker process`.
fn set_helper_title() {
    // SAFETY: nginx prepared the argv area at start (ngx_init_setproctitle, on every Linux
    // build); the forked child owns its copy and has no other thread.
    unsafe { ngx_setproctitle(c"status alert helper".as_ptr().cast_mut()) };
}

/// `exit_process`: lets the helper go (it finishes delivering on its own) without waiting.
pub extern "C" fn exit_process(_cycle: *mut ngx_cycle_t) {
    crate::probe::net::stop();
    let Some(mut evaluator) = EVALUATOR.with(|w| w.borrow_mut().take()) else {
        return;
    };
    // Let the next evaluator start at once, with our state.
    evaluator.release_lease();
    if evaluator.restart_timer.timer_set() != 0 {
        // SAFETY: the timer was armed by this process's event loop.
        unsafe { nginx_sys::ngx_del_timer(&mut *evaluator.restart_timer) };
    }
    if let Some(helper) = evaluator.helper.take() {
        let (fd, unsent) = helper.close();
        // SAFETY: our descriptor; the process is exiting and its channel event is not used again.
        unsafe { libc::close(fd) };
        // Payloads the pipe did not take in time are lost with this process: count them.
        record_outcomes(
            &evaluator,
            lost_outcomes(unsent, "evaluator 0 exited before handing it over"),
        );
    }
}

/// Closes the helper's report descriptor `fd`, through nginx when `c` is its connection.
fn close_channel(c: *mut ngx_connection_t, fd: libc::c_int) {
    // SAFETY: c is null or the channel connection nginx made for a descriptor of ours;
    // closing it removes the event.
    unsafe {
        if !c.is_null() && (*c).fd == fd {
            ngx_close_connection(c);
        } else {
            libc::close(fd);
        }
    }
}

/// One `dropped` outcome per payload lost for `why`, given by its destination.
fn lost_outcomes(destinations: Vec<usize>, why: &str) -> Vec<Outcome> {
    destinations
        .into_iter()
        .map(|destination| Outcome {
            result: DeliveryResult::Dropped,
            message: format!("alert dropped: {why}"),
            is_error: false,
            destination,
        })
        .collect()
}

/// Timer: start the helper again after a backoff.
extern "C" fn on_restart_timer(_ev: *mut ngx_event_t) {
    EVALUATOR.with(|w| {
        let mut guard = w.borrow_mut();
        let Some(evaluator) = guard.as_mut() else {
            return;
        };
        if !evaluator.stopping && !exiting() && evaluator.helper.is_none() {
            evaluator.restart_helper(Outbox::default());
        }
    });
}

/// Read event on the helper's report pipe.
extern "C" fn on_reports(ev: *mut ngx_event_t) {
    // SAFETY: nginx passes the channel event it registered; its data is the connection.
    let c = unsafe { (*ev).data.cast::<ngx_connection_t>() };
    EVALUATOR.with(|w| {
        let mut guard = w.borrow_mut();
        let Some(evaluator) = guard.as_mut() else {
            return;
        };
        // Catch panics so that no unwind crosses into nginx; a failed tick is logged.
        let run =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| evaluator.on_reports(c)));
        if run.is_err() {
            error!(
                evaluator.log,
                "status_alert: evaluation failed unexpectedly"
            );
        }
    });
}

impl Evaluator {
    fn on_reports(&mut self, c: *mut ngx_connection_t) {
        let now = now_ms();
        let mut events = Vec::new();
        let Some(helper) = self.helper.as_mut() else {
            return;
        };
        let (mut reports, gone) = helper.poll();
        let ticked = reports.iter().any(|r| matches!(r, Report::Tick));
        if ticked {
            // The probes due start on ticks only (every 250 ms): at the same phase each time,
            // so a target's starts stay an interval apart.
            crate::probe::net::run_due();
        }
        // Results of the probes on this event loop, applied like the helper's used to be.
        reports.extend(
            crate::probe::net::take_results()
                .into_iter()
                .map(Report::Probe),
        );
        if ticked && !exiting() {
            self.take_over();
        }
        let mut outcomes = self.absorb(reports, now, &mut events);
        if self.lease.is_some() && !exiting() {
            let fail_open = crate::probe::mark_down::sync(self.mcf, self.log);
            crate::probe::peer_down::annotate(&mut events, &fail_open);
        }
        if exiting() && !self.stopping {
            // The helper finishes alone (see helper/mod.rs); nothing here waits for it.
            self.stopping = true;
            crate::probe::net::stop();
            self.release_lease();
            if let Some(s) = self.helper.take() {
                let (fd, unsent) = s.close();
                close_channel(c, fd);
                outcomes.extend(lost_outcomes(unsent, "nginx is exiting"));
            }
            record_outcomes(self, outcomes);
            return;
        }
        if gone {
            // The helper died (it never exits on its own while its input is open).
            if let Some(helper) = self.helper.take() {
                let (fd, pending, lost) = helper.abandon();
                close_channel(c, fd);
                outcomes.extend(lost_outcomes(
                    lost,
                    "the helper process exited before delivering it",
                ));
                if !self.stopping {
                    error!(self.log, "status_alert: the helper process exited");
                    self.restart_helper(pending);
                }
            }
        }
        if ticked && self.lease.is_some() && now >= self.next_eval_ms {
            let interval = self.mcf.interval_ms();
            self.next_eval_ms = now + interval;
            let zone = self
                .mcf
                .zone
                .as_ref()
                .expect("zone exists in the evaluating process");
            if evaluate::take_tick(zone.header(), now, interval) {
                let bounds = self.mcf.bucket_bounds();
                events.extend(evaluate::evaluate_with(
                    &self.watched(),
                    now,
                    interval,
                    &bounds,
                ));
            }
        }

        if !events.is_empty() {
            outcomes.extend(self.announce(&events));
        } else if ticked && self.lease.is_some() {
            outcomes.extend(self.resend_to_alertmanager(now));
        }
        record_outcomes(self, outcomes);
    }

    /// Gives up the lease, leaving this process's evaluator state for the next holder.
    fn release_lease(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if let Some(zone) = self.mcf.zone {
            if let Err(e) = self
                .hand_over
                .leave(zone.export_state().to_string().as_bytes())
            {
                warn!(
                    self.log,
                    "status_alert: cannot leave the evaluator state: {e}"
                );
            }
        }
        drop(lease);
    }

    /// Starts a helper: at once if the last one lived a while, else after a backoff that
    /// doubles with every quick death or failed start (1 s up to 60 s). Payloads in `pending`
    /// (never handed to the dead one) go to the new one.
    fn restart_helper(&mut self, pending: Outbox) {
        let now = now_ms();
        if now.saturating_sub(self.helper_started_ms) >= RESTART_BACKOFF_MAX_MS {
            self.helper_backoff_ms = 0;
        }
        let pending = match self.pending_restart.take() {
            Some(mut older) => {
                older.append(pending);
                older
            }
            None => pending,
        };
        if self.helper_backoff_ms == 0 || self.restart_timer.timedout() != 0 {
            self.restart_timer.set_timedout(0);
            self.helper_started_ms = now;
            // SAFETY: ngx_cycle is this process's current cycle.
            let cycle = unsafe { &*nginx_sys::ngx_cycle };
            match start_helper(self.mcf, cycle, self.log, pending) {
                Some(s) => {
                    self.helper = Some(s);
                    self.helper_backoff_ms = self.helper_backoff_ms.max(RESTART_BACKOFF_MIN_MS);
                    notice!(self.log, "status_alert: started a new helper process");
                    return;
                }
                None => self.pending_restart = Some(Outbox::default()),
            }
        } else {
            self.pending_restart = Some(pending);
        }
        let wait = self.helper_backoff_ms.max(RESTART_BACKOFF_MIN_MS);
        self.helper_backoff_ms = (wait * 2).min(RESTART_BACKOFF_MAX_MS);
        warn!(
            self.log,
            "status_alert: the helper process keeps exiting; next start in {} s",
            wait / 1000
        );
        // SAFETY: the event lives as long as the worker state; nginx's timer tree is ours.
        unsafe {
            nginx_sys::ngx_add_timer(&mut *self.restart_timer, wait as nginx_sys::ngx_msec_t)
        };
    }

    /// On every tick: stops evaluating once a newer configuration counts elsewhere, moves the
    /// counts of draining zones into the primary, and takes the lease when it is free (with
    /// the last state of the previous evaluator).
    fn take_over(&mut self) {
        let Some(zone) = self.mcf.zone else {
            return;
        };
        let superseded =
            zone.header().superseded.load(Relaxed) != 0 || zone.generation() != self.mcf.generation;
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
        match Lease::try_acquire(&self.lease_name) {
            Ok(Some(lease)) => {
                if let Some(p) = self.mcf.predecessor {
                    zone.import_state(&p);
                }
                // The last state the previous holder left (from the other master of a binary
                // upgrade; after a reload it is what the zone already holds).
                let last = self.hand_over.take(HAND_OVER_MAX_AGE);
                if let Some(state) = last.and_then(|m| serde_json::from_slice(&m).ok()) {
                    zone.import_exported(&state, now_ms());
                }
                self.lease = Some(lease);
                notice!(self.log, "status_alert: this process evaluates from now on");
            }
            Ok(None) => {}
            Err(e) if !self.lease_error_logged => {
                self.lease_error_logged = true;
                error!(
                    self.log,
                    "status_alert: cannot take the evaluation lease, not evaluating: {e}"
                );
            }
            Err(_) => {}
        }
    }

    /// Applies the helper's reports: probe results become events, the queue depth goes to the
    /// zone, delivery outcomes are returned for counting and logging.
    fn absorb(&self, reports: Vec<Report>, now: u64, events: &mut Vec<AlertEvent>) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        // Built once for all the probe results of this wake-up (link= and runbook= lookups).
        let mut names = None;
        for r in reports {
            match r {
                Report::Outcome(o) => outcomes.push(o),
                // Only the evaluating process applies results: one DOWN per target.
                Report::Probe(p) if self.lease.is_some() => {
                    let names = names.get_or_insert_with(|| self.watched());
                    events.extend(self.apply_probe(names, &p, now))
                }
                Report::Probe(_) => {}
                Report::QueueDepth(n) => {
                    if let Some(zone) = &self.mcf.zone {
                        zone.header().queue_depth.store(n, Relaxed);
                    }
                }
                Report::Tick => {}
            }
        }
        outcomes
    }

    /// The NAMEs with their slots, as the plain-Rust evaluation reads them.
    fn watched(&self) -> Vec<Watched<'_>> {
        self.mcf
            .names
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
    fn watched_probe(&self, index: usize) -> Option<WatchedProbe<'_>> {
        let probe = self.mcf.probes.get(index)?;
        // SAFETY: slots point into the mapped zone.
        let slot = unsafe { probe.slot.as_ref() }?;
        Some(WatchedProbe {
            spec: &probe.spec,
            shared: &slot.probe,
        })
    }

    /// Updates a target's shared state; returns the DOWN / UP event if it changed.
    fn apply_probe(&self, names: &[Watched], r: &ProbeResult, now: u64) -> Option<AlertEvent> {
        let probe = self.watched_probe(r.index)?;
        firing::apply_probe(names, &probe, r, now)
    }

    /// What fires now, read from the zone (see [`firing::firing_now`]).
    fn firing_now(&self, now: u64) -> Vec<AlertEvent> {
        let probes: Vec<WatchedProbe<'_>> = (0..self.mcf.probes.len())
            .filter_map(|i| self.watched_probe(i))
            .collect();
        firing::firing_now(&self.watched(), &probes, now)
    }

    /// Logs every event; with a webhook, also hands the Discord payloads to the helper.
    /// Returns outcomes for payloads that could not be handed over.
    fn announce(&mut self, events: &[AlertEvent]) -> Vec<Outcome> {
        if self.mcf.destinations.is_empty() || self.helper.is_none() {
            // No destination: the error log is where alerts go.
            for e in events {
                warn!(self.log, "{}", discord::log_line(e, &self.host));
            }
            return Vec::new();
        }
        for e in events {
            notice!(
                self.log,
                "{} (queued for delivery)",
                discord::log_line(e, &self.host)
            );
        }
        let now = now_ms();
        let firing = if self.has_alertmanager() {
            self.next_alertmanager_ms = now + alertmanager::RESEND_SECS * 1000;
            self.firing_now(now)
        } else {
            Vec::new()
        };
        self.submit_to_all(events, &firing, now)
    }

    /// True when an Alertmanager is among the destinations.
    fn has_alertmanager(&self) -> bool {
        let am = WebhookFormat::Alertmanager;
        self.mcf.destinations.iter().any(|d| d.format == am)
    }

    /// Every destination gets `events` in its format; Alertmanagers get what fires now
    /// (`firing`) and the end of what `events` ended. Returns outcomes for dropped payloads.
    fn submit_to_all(
        &mut self,
        events: &[AlertEvent],
        firing: &[AlertEvent],
        now: u64,
    ) -> Vec<Outcome> {
        let Some(helper) = self.helper.as_mut() else {
            return Vec::new();
        };
        let mut dropped = Vec::new();
        for (i, d) in self.mcf.destinations.iter().enumerate() {
            let bodies = match d.format {
                WebhookFormat::Alertmanager => {
                    alertmanager::build_payload(firing, events, &self.host, now / 1000)
                        .map(|v| v.to_string())
                        .into_iter()
                        .collect()
                }
                format => payload::webhook_bodies(format, events, &self.host),
            };
            for body in bodies {
                dropped.extend(lost_outcomes(
                    helper.submit(i, &body),
                    "the helper process is not keeping up",
                ));
            }
        }
        dropped
    }

    /// Re-posts what fires to the Alertmanagers every `alertmanager::RESEND_SECS`.
    fn resend_to_alertmanager(&mut self, now: u64) -> Vec<Outcome> {
        if !self.has_alertmanager() || now < self.next_alertmanager_ms {
            return Vec::new();
        }
        self.next_alertmanager_ms = now + alertmanager::RESEND_SECS * 1000;
        let firing = self.firing_now(now);
        if firing.is_empty() {
            return Vec::new();
        }
        let am = WebhookFormat::Alertmanager;
        let Some(helper) = self.helper.as_mut() else {
            return Vec::new();
        };
        let Some(body) = alertmanager::build_payload(&firing, &[], &self.host, now / 1000) else {
            return Vec::new();
        };
        let body = body.to_string();
        let mut dropped = Vec::new();
        for (i, _) in self
            .mcf
            .destinations
            .iter()
            .enumerate()
            .filter(|(_, d)| d.format == am)
        {
            dropped.extend(lost_outcomes(
                helper.submit(i, &body),
                "the helper process is not keeping up",
            ));
        }
        dropped
    }
}

/// Counts delivery outcomes in the zone and logs each once.
fn record_outcomes(evaluator: &Evaluator, outcomes: Vec<Outcome>) {
    let Some(zone) = &evaluator.mcf.zone else {
        return;
    };
    for o in outcomes {
        let i = DeliveryResult::ALL
            .iter()
            .position(|r| *r == o.result)
            .unwrap_or(0);
        zone.count_delivery(o.destination, i);
        let msg = &o.message;
        match o.result {
            DeliveryResult::Sent => notice!(evaluator.log, "status_alert: {msg}"),
            _ if o.is_error => error!(evaluator.log, "status_alert: {msg}"),
            _ => warn!(evaluator.log, "status_alert: {msg}"),
        }
    }
}
