//! A worker that does not evaluate watches that worker 0 does, and says so at `[alert]`.

use core::sync::atomic::Ordering::Relaxed;

use nginx_sys::ngx_log_t;

use crate::zone::{StallReason, Zone};

/// A worker that is not evaluating: it watches that the evaluation runs.
pub(super) struct Watchman {
    pub(super) zone: Zone,
    pub(super) log: *mut ngx_log_t,
}

impl Watchman {
    /// Says at `[alert]`, once a minute among all workers, that alerting is not running.
    pub(super) fn check(&self, now: u64) {
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
