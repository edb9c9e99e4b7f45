//! Keeping a helper process running for worker 0: started at once, replaced when it exits or
//! stops making progress, restarted with backoff when it cannot start, handed over after
//! `nginx -s reopen`; its reports are read from a pipe on nginx's event loop.

use core::sync::atomic::Ordering::Relaxed;

use nginx_sys::ngx_setproctitle;

use super::evaluator::{lost_outcomes, Evaluator};
use super::process::on_reports;
use crate::event::loop_fd::LoopFd;
use crate::helper::{Helper, HelperContext, Report};
use crate::notify::delivery::{DeliveryConfig, OutcomeReport};
use crate::zone::StallReason;

/// The shortest and longest wait before restarting a helper that keeps dying or cannot start.
pub(super) const RESTART_BACKOFF_MIN_MS: u64 = 1000;
const RESTART_BACKOFF_MAX_MS: u64 = 60_000;

/// A helper process and its report pipe on the event loop.
pub(super) struct HelperLink {
    pub(super) helper: Helper,
    pub(super) reports: LoopFd,
    /// When it last reported anything, ms.
    pub(super) heard_ms: u64,
    pub(super) started_ms: u64,
    /// The error log it writes to once worker 0 has gone (its stderr): device and inode.
    pub(super) log_file: Option<(u64, u64)>,
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

/// In the helper, right after fork: `ps` shows `nginx: status alert helper` instead of the
/// inherited `nginx: worker process`.
fn set_helper_title() {
    // SAFETY: nginx prepared the argv area at start (ngx_init_setproctitle, on every Linux
    // build); the forked child owns its copy and has no other thread.
    unsafe { ngx_setproctitle(c"status alert helper".as_ptr().cast_mut()) };
}

impl Evaluator {
    /// A helper that reports nothing for this long has stopped making progress: it is
    /// replaced, so that a new one delivers within 2 intervals or 5 s, whichever is longer.
    pub(super) fn stall_limit_ms(&self) -> u64 {
        (2 * self.mcf.interval_ms()).max(5000) - 1000
    }

    /// Reads the helper's reports: delivery outcomes are returned for counting and logging;
    /// a helper that has gone is abandoned and its restart scheduled.
    pub(super) fn read_reports(&mut self, now: u64) -> Vec<OutcomeReport> {
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
    pub(super) fn watch_helper(&mut self, now: u64, outcomes: &mut Vec<OutcomeReport>) {
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
    pub(super) fn follow_reopened_log(&mut self, now: u64) {
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
    pub(super) fn drop_helper(&mut self, why: &str) -> Vec<OutcomeReport> {
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
    pub(super) fn schedule_helper(&mut self, now: u64, lived: u64) {
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
    pub(super) fn start_helper(&mut self, now: u64, replacing: bool) {
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

    pub(super) fn fork_helper(&self) -> std::io::Result<HelperLink> {
        let destinations = self
            .mcf
            .destinations
            .iter()
            .map(DeliveryConfig::for_destination)
            .collect();
        let ctx = HelperContext {
            in_child: set_helper_title,
            zone: Some(self.zone),
            generation: self.mcf.generation,
            // SAFETY: log is the cycle's valid log.
            log_level: unsafe { (*self.log).log_level },
            certificates: self
                .mcf
                .certificates
                .iter()
                .filter_map(|c| {
                    // SAFETY: a slot of the zone, mapped for as long as this configuration
                    // (and the helper, which inherits the mapping) lives.
                    let slot = unsafe { c.slot.as_ref() }?;
                    Some(crate::helper::certificates::WatchedFile {
                        path: c.file.clone().into(),
                        watch: &slot.certificate,
                    })
                })
                .collect(),
        };
        // Forked while this process has no thread (see helper/mod.rs).
        let helper = Helper::start(destinations, ctx)?;
        // SAFETY: the report descriptor is the helper handle's; the watcher closes it when
        // dropped, after the handle has given it up (Helper::abandon / close).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(helper.read_fd()) }
            .try_clone_to_owned()?;
        let reports = LoopFd::new(fd, Some(on_reports), self.log)?;
        Ok(HelperLink {
            helper,
            reports,
            heard_ms: 0,
            started_ms: 0,
            log_file: stderr_identity(),
        })
    }
}
