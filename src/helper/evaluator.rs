//! The evaluating process (FFI): worker 0 evaluates the windows, runs the probes and hands
//! alerts to the helper process that delivers them; every worker watches that it does.
//!
//! Worker 0 paces itself with a timerfd on nginx's event loop (every [`TICK_MS`]), so nothing
//! it does waits for the helper: a helper that dies, hangs or is stopped is replaced (killed
//! when it stops making progress for [`Evaluator::stall_limit_ms`]), one that cannot be started
//! is retried with backoff, and the alerts meanwhile wait in the [`Outbox`] (bounded) until a
//! helper takes them. The evaluation lease (`evaluate/lease.rs`) lives in the private state
//! directory. Worker 0 records every round in the zone (`Alerting`); the other workers check
//! that record every few seconds and say at `[alert]`, once a minute, when alerting has not run
//! for three intervals. Once nginx is exiting worker 0 stops evaluating and lets the helper
//! finish alone; a channel event never delays shutdown.

use core::cell::RefCell;
use core::sync::atomic::Ordering::Relaxed;

use nginx_sys::{ngx_cycle_t, ngx_event_t, ngx_int_t, ngx_log_t, ngx_setproctitle, NGX_OK};
use ngx::http::HttpModuleMainConf;

use crate::conf::MainConf;
use crate::evaluate::firing::{self, WatchedProbe};
use crate::evaluate::heartbeat::HeartbeatSchedule;
use crate::evaluate::lease::{self, Attempt, Lease, StateDir};
use crate::evaluate::{self, Watched};
use crate::helper::watch::{self, Watched as WatchedFd};
use crate::helper::{Helper, HelperContext, Outbox, Report, MAX_PENDING, TICK_MS};
use crate::notify::alertmanager;
use crate::notify::delivery::{DeliveryResult, NotifierConfig, Outcome};
use crate::notify::routing::{self, Post};
use crate::probe::ProbeResult;
use crate::vocab::event::AlertEvent;
use crate::vocab::title::log_line;
use crate::zone::{StallReason, Zone};
use crate::HttpStatusAlertModule;

/// A hand-over older than this is from an earlier run of nginx, not from the previous holder.
const HAND_OVER_MAX_AGE: core::time::Duration = core::time::Duration::from_secs(60);

/// The shortest and longest wait before restarting a helper that keeps dying or cannot start.
const RESTART_BACKOFF_MIN_MS: u64 = 1000;
const RESTART_BACKOFF_MAX_MS: u64 = 60_000;

/// How often the other workers check that alerting runs.
const WATCH_MS: u64 = 5000;

/// A helper process and its report pipe on the event loop.
struct HelperLink {
    helper: Helper,
    reports: WatchedFd,
    /// When it last reported anything, ms.
    heard_ms: u64,
    started_ms: u64,
    /// The error log it writes to once worker 0 has gone (its stderr): device and inode.
    log_file: Option<(u64, u64)>,
}

/// Device and inode of this process's stderr, which nginx points at the error log (again
/// after `nginx -s reopen`).
fn stderr_identity() -> Option<(u64, u64)> {
    // SAFETY: fstat of descriptor 2 into a zeroed stat.
    unsafe {
        let mut st: libc::stat = core::mem::zeroed();
        (libc::fstat(2, &mut st) == 0).then_some((st.st_dev, st.st_ino))
    }
}

/// State of the evaluating process.
struct Evaluator {
    mcf: &'static MainConf,
    zone: Zone,
    log: *mut ngx_log_t,
    host: String,
    next_eval_ms: u64,
    /// Alerts not yet taken by a helper: they outlive helpers.
    outbox: Outbox,
    helper: Option<HelperLink>,
    /// No helper before this (backoff after a quick death or a failed start), ms.
    next_helper_start_ms: u64,
    helper_backoff_ms: u64,
    /// Helpers started so far (the first one is no restart).
    helpers_started: u64,
    /// The helper was told to finish (nginx is exiting).
    stopping: bool,
    /// The private state directory, or why it cannot be used.
    state: Result<StateDir, String>,
    /// This nginx instance's name (prefix and configuration file), for the lease's file.
    instance: String,
    /// Held while this process is the one that evaluates (see lease.rs).
    lease: Option<Lease>,
    /// Another master held the lease and this was said (logged once).
    held_logged: bool,
    /// When firing alerts are next re-posted to the Alertmanagers, ms.
    next_alertmanager_ms: u64,
    /// `status_alert_heartbeat`: its destination index and its schedule.
    heartbeat: Option<(usize, HeartbeatSchedule)>,
}

/// A worker that is not evaluating: it watches that the evaluation runs.
struct Watchman {
    zone: Zone,
    log: *mut ngx_log_t,
}

/// What this process does besides serving requests, with the timer that paces it.
enum Role {
    Evaluator(Box<Evaluator>),
    Watchman(Watchman),
}

struct Process {
    role: Role,
    timer: WatchedFd,
}

thread_local! {
    // nginx runs its event loop on one thread; the worker state lives there.
    static PROCESS: RefCell<Option<Process>> = const { RefCell::new(None) };
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

fn pid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

/// `init_process`: every worker notes in the zone that it counts into it; the evaluating
/// process also starts the helper, the lease and the probes; the others watch it.
pub extern "C" fn init_process(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the current cycle, valid for the process's lifetime.
    let cycle = unsafe { &*cycle };
    let Some(mcf) = HttpStatusAlertModule::main_conf(cycle) else {
        return NGX_OK as ngx_int_t;
    };
    let Some(zone) = mcf.zone else {
        return NGX_OK as ngx_int_t;
    };
    zone.register_writer(pid(), mcf.generation, crate::zone::process_alive);
    let log = cycle.log;
    let evaluating = is_evaluating_process();
    let period = if evaluating { TICK_MS } else { WATCH_MS };
    let timer =
        watch::periodic_timer(period).and_then(|fd| WatchedFd::new(fd, Some(on_timer), log));
    let timer = match timer {
        Ok(t) => t,
        Err(e) => {
            alert!(
                log,
                "status_alert: cannot create the {} timer, alerting is not running: {e}",
                if evaluating { "evaluation" } else { "watch" }
            );
            return NGX_OK as ngx_int_t;
        }
    };
    let role = if evaluating {
        let now = now_ms();
        let instance =
            lease::instance_name(&cycle.prefix.to_string(), &cycle.conf_file.to_string());
        let state = StateDir::open(&mcf.state_dir, &instance).map_err(|e| e.to_string());
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
        });
        evaluator.start_helper(now, true);
        crate::probe::net::start(&mcf.probes, log);
        notice!(
            log,
            "status_alert: evaluating {} names and {} probes in this process",
            mcf.names.len(),
            mcf.probes.len()
        );
        Role::Evaluator(evaluator)
    } else {
        Role::Watchman(Watchman { zone, log })
    };
    PROCESS.with(|p| *p.borrow_mut() = Some(Process { role, timer }));
    NGX_OK as ngx_int_t
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
    let Some(process) = PROCESS.with(|p| p.borrow_mut().take()) else {
        return;
    };
    if let Role::Evaluator(mut evaluator) = process.role {
        evaluator.shut_down("evaluator 0 exited before handing it over");
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

/// Runs `f` on this process's role, catching panics so that no unwind crosses into nginx.
fn with_role(what: &str, f: impl FnOnce(&mut Role)) {
    PROCESS.with(|p| {
        let mut guard = p.borrow_mut();
        let Some(process) = guard.as_mut() else {
            return;
        };
        let log = match &process.role {
            Role::Evaluator(e) => e.log,
            Role::Watchman(w) => w.log,
        };
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut process.role)));
        if run.is_err() {
            error!(log, "status_alert: {what} failed unexpectedly");
        }
    });
}

/// The pace timer fired.
extern "C" fn on_timer(_ev: *mut ngx_event_t) {
    PROCESS.with(|p| {
        if let Some(process) = p.borrow().as_ref() {
            watch::consume_timer(process.timer.fd());
        }
    });
    with_role("evaluation", |role| match role {
        Role::Evaluator(e) => e.tick(now_ms()),
        Role::Watchman(w) => w.check(now_ms()),
    });
}

/// Read event on the helper's report pipe.
extern "C" fn on_reports(_ev: *mut ngx_event_t) {
    with_role("reading the helper's reports", |role| {
        if let Role::Evaluator(e) = role {
            let now = now_ms();
            let outcomes = e.read_reports(now);
            e.record_outcomes(outcomes);
        }
    });
}

impl Watchman {
    /// Says at `[alert]`, once a minute among all workers, that alerting is not running.
    fn check(&self, now: u64) {
        let alerting = &self.zone.header().alerting;
        let Some(since) = alerting.stalled_since(now) else {
            return;
        };
        if !alerting.should_log_stall(now) {
            return;
        }
        let why = match StallReason::from_index(alerting.reason.load(Relaxed)) {
            StallReason::StateDirectory => {
                "the evaluating worker cannot use the state directory (see its error above)".into()
            }
            StallReason::Helper => "no helper process can be started".into(),
            StallReason::Unknown => format!(
                "the evaluating worker (pid {}) has not evaluated for {} s: it may be stopped \
                 or hung",
                alerting.evaluator_pid.load(Relaxed),
                now.saturating_sub(since) / 1000
            ),
        };
        alert!(
            self.log,
            "status_alert: alerting is not running since {}: {why}",
            crate::vocab::text::iso8601(since / 1000)
        );
    }
}

impl Evaluator {
    /// A helper that reports nothing for this long has stopped making progress: it is
    /// replaced, so that a new one delivers within 2 intervals or 5 s, whichever is longer.
    fn stall_limit_ms(&self) -> u64 {
        (2 * self.mcf.interval_ms()).max(5000) - 1000
    }

    /// One tick of worker 0: helper health, probes, the lease, evaluation, announcements.
    fn tick(&mut self, now: u64) {
        if exiting() {
            if !self.stopping {
                self.shut_down("nginx is exiting");
            }
            return;
        }
        let mut outcomes = self.read_reports(now);
        self.watch_helper(now, &mut outcomes);
        self.follow_reopened_log(now);
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
            let fail_open = crate::probe::mark_down::sync(self.mcf, self.log);
            crate::probe::peer_down::annotate(&mut events, &fail_open);
        }
        if self.lease.is_some() && now >= self.next_eval_ms {
            let interval = self.mcf.interval_ms();
            self.next_eval_ms = now + interval;
            if evaluate::take_tick(self.zone.header(), now, interval) {
                let bounds = self.mcf.bucket_bounds();
                events.extend(evaluate::evaluate_with(
                    &self.watched(),
                    now,
                    interval,
                    &bounds,
                ));
                self.zone.header().alerting.evaluated(now_ms(), pid());
                if let Some((_, schedule)) = self.heartbeat.as_mut() {
                    schedule.on_evaluation();
                }
            }
        }
        if !events.is_empty() {
            outcomes.extend(self.announce(&events, now));
        } else if self.lease.is_some() {
            outcomes.extend(self.resend_to_alertmanager(now));
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
    fn beat(&mut self, now: u64) -> Vec<Outcome> {
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

    /// Reads the helper's reports: delivery outcomes are returned for counting and logging;
    /// a helper that has gone is abandoned and its restart scheduled.
    fn read_reports(&mut self, now: u64) -> Vec<Outcome> {
        let Some(link) = self.helper.as_mut() else {
            return Vec::new();
        };
        let (reports, heard, gone) = link.helper.poll(&mut self.outbox);
        if heard {
            link.heard_ms = now;
        }
        let mut outcomes = Vec::new();
        for r in reports {
            match r {
                Report::Outcome(o) => outcomes.push(o),
                Report::QueueDepth(n) => self.zone.header().queue_depth.store(n, Relaxed),
                Report::Accepted(_) | Report::Tick => {}
            }
        }
        if gone && !self.stopping {
            error!(self.log, "status_alert: the helper process exited");
            let lived = now.saturating_sub(link.started_ms);
            outcomes.extend(self.drop_helper("the helper process exited before delivering it"));
            self.schedule_helper(now, lived);
        }
        outcomes
    }

    /// Replaces a helper that stopped making progress, and starts one when none runs.
    fn watch_helper(&mut self, now: u64, outcomes: &mut Vec<Outcome>) {
        let silent = self
            .helper
            .as_ref()
            .map_or(0, |l| now.saturating_sub(l.heard_ms));
        if silent > self.stall_limit_ms() {
            if let Some(link) = &self.helper {
                error!(
                    self.log,
                    "status_alert: the helper process (pid {}) has not responded for {} ms: \
                     killing it and starting another",
                    link.helper.pid(),
                    silent
                );
                link.helper.kill();
            }
            outcomes.extend(self.drop_helper("the helper process stopped responding"));
            self.next_helper_start_ms = now;
        }
        if self.helper.is_none() && now >= self.next_helper_start_ms {
            self.start_helper(now, true);
        }
    }

    /// After `nginx -s reopen` the helper would still write to the old, rotated error log:
    /// a new helper takes over (inheriting the new one) and the old one finishes alone.
    fn follow_reopened_log(&mut self, now: u64) {
        let current = stderr_identity();
        let Some(link) = self.helper.as_ref() else {
            return;
        };
        if current.is_none() || link.log_file == current {
            return;
        }
        let link = self.helper.take().expect("checked");
        link.helper.retire(&mut self.outbox);
        drop(link.reports);
        notice!(
            self.log,
            "status_alert: the error log was reopened; a new helper process takes over"
        );
        self.start_helper(now, false);
    }

    /// Forgets the current helper; what it had taken but not settled is returned as dropped,
    /// what it had not taken stays in the outbox for the next one.
    fn drop_helper(&mut self, why: &str) -> Vec<Outcome> {
        let Some(link) = self.helper.take() else {
            return Vec::new();
        };
        let lost = link.helper.abandon(&mut self.outbox);
        // Closes the report pipe through nginx.
        drop(link.reports);
        lost_outcomes(lost, why)
    }

    /// After a helper died: start the next one at once if it lived a while, else after a
    /// backoff that doubles with every quick death or failed start (1 s up to 60 s).
    fn schedule_helper(&mut self, now: u64, lived: u64) {
        if lived >= RESTART_BACKOFF_MAX_MS {
            self.helper_backoff_ms = RESTART_BACKOFF_MIN_MS;
            self.next_helper_start_ms = now;
            return;
        }
        self.next_helper_start_ms = now + self.helper_backoff_ms;
        self.helper_backoff_ms = (self.helper_backoff_ms * 2).min(RESTART_BACKOFF_MAX_MS);
    }

    /// Forks a helper and watches its reports; on failure, says so and schedules the next try.
    /// Every helper after the first counts as a restart, unless `replacing` is false (the old
    /// one lives on and finishes alone, after `nginx -s reopen`).
    fn start_helper(&mut self, now: u64, replacing: bool) {
        let alerting = &self.zone.header().alerting;
        match self.fork_helper() {
            Ok(helper) => {
                if self.helpers_started > 0 {
                    if replacing {
                        alerting.helper_restarts.fetch_add(1, Relaxed);
                    }
                    notice!(
                        self.log,
                        "status_alert: started a new helper process (pid {})",
                        helper.helper.pid()
                    );
                }
                self.helpers_started += 1;
                let mut helper = helper;
                helper.heard_ms = now;
                helper.started_ms = now;
                helper.helper.flush(&mut self.outbox);
                self.helper = Some(helper);
                if alerting.reason.load(Relaxed) == StallReason::Helper as u64 {
                    alerting.reason.store(StallReason::Unknown as u64, Relaxed);
                }
            }
            Err(e) => {
                let wait = self.helper_backoff_ms;
                self.next_helper_start_ms = now + wait;
                self.helper_backoff_ms = (wait * 2).min(RESTART_BACKOFF_MAX_MS);
                alerting.reason.store(StallReason::Helper as u64, Relaxed);
                error!(
                    self.log,
                    "status_alert: cannot start the helper process: {e}; {} alerts wait; \
                     next attempt in {} s",
                    self.outbox.len(),
                    wait / 1000
                );
            }
        }
    }

    fn fork_helper(&self) -> std::io::Result<HelperLink> {
        let destinations = self
            .mcf
            .destinations
            .iter()
            .map(NotifierConfig::for_destination)
            .collect();
        let ctx = HelperContext {
            in_child: set_helper_title,
            zone: Some(self.zone),
            generation: self.mcf.generation,
            // SAFETY: log is the cycle's valid log.
            log_level: unsafe { (*self.log).log_level },
        };
        // Forked while this process has no thread (see helper/mod.rs).
        let helper = Helper::start(destinations, ctx)?;
        // SAFETY: the report descriptor is the helper handle's; the watcher closes it when
        // dropped, after the handle has given it up (Helper::abandon / close).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(helper.read_fd()) }
            .try_clone_to_owned()?;
        let reports = WatchedFd::new(fd, Some(on_reports), self.log)?;
        Ok(HelperLink {
            helper,
            reports,
            heard_ms: 0,
            started_ms: 0,
            log_file: stderr_identity(),
        })
    }

    /// Stops evaluating for good (nginx is exiting): the lease goes with our state, the helper
    /// finishes alone with what it has, and what never reached it whole is counted dropped.
    fn shut_down(&mut self, why: &str) {
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
    fn release_lease(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if let Ok(state) = &self.state {
            let log = self.log;
            let mut report = |m: String| warn!(log, "status_alert: {m}");
            let exported = self.zone.export_state().to_string();
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
    fn take_over(&mut self, now: u64) {
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
            self.state =
                StateDir::open(&self.mcf.state_dir, &self.instance).map_err(|e| e.to_string());
        }
        let log = self.log;
        let mut report = |m: String| warn!(log, "status_alert: {m}");
        let attempt = match &self.state {
            Ok(state) => state.try_lease(&mut report).map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        let alerting = &header.alerting;
        match attempt {
            Ok(Attempt::Taken(lease)) => {
                if let Some(p) = self.mcf.predecessor {
                    zone.import_state(&p);
                }
                // The last state the previous holder left (from the other master of a binary
                // upgrade; after a reload it is what the zone already holds).
                let last = match &self.state {
                    Ok(state) => state.take(HAND_OVER_MAX_AGE, &mut report),
                    Err(_) => None,
                };
                if let Some(state) = last.and_then(|m| serde_json::from_slice(&m).ok()) {
                    zone.import_exported(&state, now);
                }
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
            Err(e) => {
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
        }
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

    /// Logs every event and queues the payloads for every destination. Returns outcomes for
    /// payloads that could not be queued.
    fn announce(&mut self, events: &[AlertEvent], now: u64) -> Vec<Outcome> {
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
        let posts = routing::route(destinations, events, &firing, &self.host, now / 1000);
        self.submit_all(posts)
    }

    /// Queues `body` for destination `i`; returns outcomes for what had to be dropped.
    fn submit(&mut self, i: usize, body: &str) -> Vec<Outcome> {
        lost_outcomes(
            self.outbox.push(i, body, MAX_PENDING),
            "too many alerts wait for the helper process",
        )
    }

    /// Queues what [`routing`] says; returns outcomes for what had to be dropped.
    fn submit_all(&mut self, posts: Vec<Post>) -> Vec<Outcome> {
        let mut dropped = Vec::new();
        for post in posts {
            dropped.extend(self.submit(post.destination, &post.body));
        }
        dropped
    }

    /// Re-posts what fires to the Alertmanagers every `alertmanager::RESEND_SECS`.
    fn resend_to_alertmanager(&mut self, now: u64) -> Vec<Outcome> {
        if !routing::wants_firing(&self.mcf.destinations) || now < self.next_alertmanager_ms {
            return Vec::new();
        }
        self.next_alertmanager_ms = now + alertmanager::RESEND_SECS * 1000;
        let firing = self.firing_now(now);
        let posts = routing::resend(&self.mcf.destinations, &firing, &self.host, now / 1000);
        self.submit_all(posts)
    }

    /// Counts delivery outcomes in the zone and logs each once.
    fn record_outcomes(&self, outcomes: Vec<Outcome>) {
        for o in outcomes {
            let i = DeliveryResult::ALL
                .iter()
                .position(|r| *r == o.result)
                .unwrap_or(0);
            self.zone.count_delivery(o.destination, i);
            let msg = &o.message;
            match o.result {
                DeliveryResult::Sent => notice!(self.log, "status_alert: {msg}"),
                _ if o.is_error => error!(self.log, "status_alert: {msg}"),
                _ => warn!(self.log, "status_alert: {msg}"),
            }
        }
    }
}
