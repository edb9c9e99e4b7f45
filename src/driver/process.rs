//! The process hooks nginx calls (`init_process`, `exit_process`), the role each worker plays
//! (worker 0 evaluates, the others watch) and the event-loop callbacks that drive them.

use core::cell::RefCell;

use nginx_sys::{ngx_cycle_t, ngx_event_t, ngx_int_t, NGX_OK};
use ngx::http::HttpModuleMainConf;

use super::evaluator::Evaluator;
use super::watchman::Watchman;
use crate::event::loop_fd::{self, LoopFd};
use crate::helper::TICK_MS;
use crate::HttpStatusAlertModule;

/// How often the other workers check that alerting runs.
const WATCH_MS: u64 = 5000;

/// What this process does besides serving requests, with the timer that paces it.
enum Role {
    Evaluator(Box<Evaluator>),
    Watchman(Watchman),
}

struct Process {
    role: Role,
    timer: LoopFd,
}

thread_local! {
    // nginx runs its event loop on one thread; the worker state lives there.
    static PROCESS: RefCell<Option<Process>> = const { RefCell::new(None) };
}

pub(super) fn now_ms() -> u64 {
    let t = nginx_sys::ngx_timeofday();
    t.sec as u64 * 1000 + t.msec as u64
}

pub(super) fn exiting() -> bool {
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

pub(super) fn pid() -> u32 {
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
    let timer = loop_fd::periodic_timer(period).and_then(|fd| LoopFd::new(fd, Some(on_timer), log));
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
        Role::Evaluator(Evaluator::start(cycle, mcf, zone))
    } else {
        Role::Watchman(Watchman { zone, log })
    };
    PROCESS.with(|p| *p.borrow_mut() = Some(Process { role, timer }));
    NGX_OK as ngx_int_t
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
            loop_fd::consume_timer(process.timer.fd());
        }
    });
    with_role("evaluation", |role| match role {
        Role::Evaluator(e) => e.tick(now_ms()),
        Role::Watchman(w) => w.check(now_ms()),
    });
}

/// The posted event of an evaluation round that continues on this turn of the loop.
pub(super) extern "C" fn on_resume(_ev: *mut ngx_event_t) {
    with_role("evaluation", |role| {
        if let Role::Evaluator(e) = role {
            e.resume(now_ms());
        }
    });
}

/// Read event on the helper's report pipe.
pub(super) extern "C" fn on_reports(_ev: *mut ngx_event_t) {
    with_role("reading the helper's reports", |role| {
        if let Role::Evaluator(e) = role {
            let now = now_ms();
            let outcomes = e.read_reports(now);
            e.record_outcomes(outcomes);
        }
    });
}
