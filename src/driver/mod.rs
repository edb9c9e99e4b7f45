//! Worker 0's driver (FFI): the evaluating process evaluates the windows, runs the probes and
//! hands alerts to the helper process that delivers them; every other worker watches that it
//! does.
//!
//! Worker 0 paces itself with a timerfd on nginx's event loop (every `helper::TICK_MS`), so
//! nothing it does waits for the helper: a helper that dies, hangs or is stopped is replaced
//! (killed when it stops making progress), one that cannot be started is retried with backoff,
//! and the alerts meanwhile wait in the helper's outbox (bounded) until a helper takes them.
//! The evaluation lease (`lease`) lives in the private state directory. Worker 0 records every
//! round in the zone (`Alerting`); the other workers check that record every few seconds and
//! say at `[alert]`, once a minute, when alerting has not run for three intervals. Once nginx
//! is exiting worker 0 stops evaluating and lets the helper finish alone; a channel event never
//! delays shutdown.
//!
//! Files: `process` (the hooks nginx calls and each process's role), `evaluator` (worker 0's
//! rounds: lease, probes, evaluation, announcements), `helper_link` (keeping a helper process
//! running), `mutes` (what mutes hold back, and their hand-over), `certificates` (the
//! certificate round), `round` (an evaluation round spread over turns of the loop, plain Rust),
//! `watchman` (the other workers), `lease` (the lease and hand-over files,
//! plain Rust); the event-loop primitives it uses are in `crate::event`.

#[cfg(not(test))]
mod certificates;
#[cfg(not(test))]
mod evaluator;
#[cfg(not(test))]
mod helper_link;
pub mod lease;
#[cfg(not(test))]
mod mutes;
#[cfg(not(test))]
mod peers;
#[cfg(not(test))]
mod process;
mod round;
#[cfg(not(test))]
mod watchman;

#[cfg(not(test))]
pub(crate) use process::{exit_process, init_process};
