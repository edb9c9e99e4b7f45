//! The delivery thread's loop: waits for a payload, a shutdown or a deadline; sends each
//! payload (a POST, or a GET for a heartbeat) and retries it as the policy says; reports every
//! outcome over a channel, never logging and never touching nginx.

use std::io::Read;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender};

use super::policy::{
    backoff_delay, body_retry_after, fmt_secs, later, may_have_arrived, parse_secs, reason_excerpt,
    MAX_RESENDS_AFTER_SENDING,
};
use super::{DestinationKind, Outcome, OutcomeReport};
use crate::vocab::redact::scrub;

/// We only read response bodies for diagnostics and `retry_after`, so cap what we pull in.
const RESPONSE_BODY_LIMIT: u64 = 64 * 1024;

/// What the delivery loop woke up for.
enum Event {
    Payload(String),
    Shutdown(Instant),
    ControlClosed,
    QueueClosed,
    DeadlineReached,
}

/// How one attempt went.
enum Step {
    /// The payload is finished with; report this outcome.
    Done(Outcome, String),
    /// Retry after `wait`; `why` describes the failed attempt.
    Retry { wait: Duration, why: String },
}

/// State of the delivery thread.
pub(super) struct DeliveryLoop {
    pub(super) url: String,
    pub(super) kind: DestinationKind,
    pub(super) redacted: String,
    /// How log lines name the destination: kind and redacted URL.
    pub(super) shown: String,
    pub(super) secrets: Vec<String>,
    pub(super) agent: ureq::Agent,
    pub(super) connect_timeout: Duration,
    pub(super) request_timeout: Duration,
    pub(super) max_attempts: u32,
    pub(super) backoff_base: Duration,
    pub(super) backoff_cap: Duration,
    pub(super) queue: Receiver<String>,
    pub(super) control: Receiver<Instant>,
    pub(super) control_open: bool,
    pub(super) outcomes: Sender<OutcomeReport>,
    pub(super) in_flight: Arc<AtomicBool>,
    /// Set once shutdown starts: nothing may be waited for or sent past it.
    pub(super) deadline: Option<Instant>,
    /// Discord said the bucket is empty: no POST before this instant.
    pub(super) next_allowed: Option<Instant>,
    /// Backoff jitter: only needs to differ between hosts and retries, not be secure.
    pub(super) rng: fastrand::Rng,
    /// Dropped with the loop, which tells `shutdown` the thread is done.
    pub(super) _done: Sender<()>,
}

impl DeliveryLoop {
    pub(super) fn run(mut self) {
        loop {
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                self.drop_queued();
                return;
            }
            match self.next_event() {
                Event::Payload(body) => {
                    self.in_flight.store(true, Ordering::Release);
                    // ureq and rustls are not expected to panic, but if they do the thread
                    // must survive and keep draining the queue.
                    let delivered = panic::catch_unwind(AssertUnwindSafe(|| self.deliver(&body)));
                    self.in_flight.store(false, Ordering::Release);
                    if delivered.is_err() {
                        self.emit(
                            Outcome::Failed,
                            format!(
                                "internal error while sending to {}; dropping message",
                                self.shown
                            ),
                        );
                    }
                }
                Event::Shutdown(deadline) => self.note_shutdown(deadline),
                Event::ControlClosed => self.note_control_closed(),
                Event::QueueClosed => return,
                Event::DeadlineReached => {}
            }
        }
    }

    fn next_event(&self) -> Event {
        let mut select = Select::new();
        let queue_index = select.recv(&self.queue);
        let control_index = if self.control_open {
            Some(select.recv(&self.control))
        } else {
            None
        };
        let operation = match self.deadline {
            Some(deadline) => match select.select_deadline(deadline) {
                Ok(operation) => operation,
                Err(_) => return Event::DeadlineReached,
            },
            None => select.select(),
        };
        let index = operation.index();
        if index == queue_index {
            match operation.recv(&self.queue) {
                Ok(body) => Event::Payload(body),
                Err(_) => Event::QueueClosed,
            }
        } else if Some(index) == control_index {
            match operation.recv(&self.control) {
                Ok(deadline) => Event::Shutdown(deadline),
                Err(_) => Event::ControlClosed,
            }
        } else {
            // Select only returns registered operations; treat anything else as a tick.
            Event::DeadlineReached
        }
    }

    fn note_shutdown(&mut self, deadline: Instant) {
        self.deadline = Some(self.deadline.map_or(deadline, |d| d.min(deadline)));
    }

    /// The handle is gone (dropped, or `shutdown` gave up on us): stop as soon as possible.
    fn note_control_closed(&mut self) {
        self.control_open = false;
        self.note_shutdown(Instant::now());
    }

    fn drop_queued(&self) {
        for _ in self.queue.try_iter() {
            self.emit(
                Outcome::Dropped,
                format!(
                    "shutting down: dropped an undelivered message for {}",
                    self.shown
                ),
            );
        }
    }

    fn emit(&self, outcome: Outcome, message: String) {
        let is_error = outcome == Outcome::Failed;
        // Never block: if the worker stopped draining, losing a log line beats stalling.
        let _ = self.outcomes.try_send(OutcomeReport {
            outcome,
            message,
            is_error,
            destination: 0,
        });
    }

    /// Waits until `until` unless shutdown makes that impossible; true if the wait completed.
    fn wait_until(&mut self, until: Instant) -> bool {
        loop {
            if self.deadline.is_some_and(|d| until > d) {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            if !self.control_open {
                // Unreachable in practice (a closed control sets the deadline to now), but a
                // bounded sleep keeps this loop from spinning if that ever changes.
                thread::sleep(until - now);
                continue;
            }
            match self.control.recv_deadline(until) {
                Ok(deadline) => self.note_shutdown(deadline),
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => self.note_control_closed(),
            }
        }
    }

    fn fits_before_deadline(&self, wait: Duration) -> bool {
        match self.deadline {
            Some(deadline) => later(Instant::now(), wait) <= deadline,
            None => true,
        }
    }

    fn deliver(&mut self, body: &str) {
        let mut attempt: u32 = 1;
        // Failures after which the webhook may have received the message anyway.
        let mut maybe_delivered: u32 = 0;
        loop {
            if let Some(at) = self.next_allowed {
                if !self.wait_until(at) {
                    self.emit_shutdown_drop("waiting for Discord's rate limit to reset");
                    return;
                }
                self.next_allowed = None;
            }
            let budget = match self.deadline {
                Some(d) => d
                    .saturating_duration_since(Instant::now())
                    .min(self.request_timeout),
                None => self.request_timeout,
            };
            if budget.is_zero() {
                self.emit_shutdown_drop("the grace period is over");
                return;
            }

            let step = match self.request(body, budget) {
                Ok(response) => self.judge_response(response, attempt),
                Err(error) => {
                    let step = self.judge_error(&error, attempt);
                    if matches!(step, Step::Retry { .. }) && may_have_arrived(&error) {
                        maybe_delivered += 1;
                        // Resending could show the alert twice: do it once, never more.
                        if maybe_delivered > MAX_RESENDS_AFTER_SENDING {
                            self.emit(
                                Outcome::Failed,
                                format!(
                                    "{} did not answer after the message was sent, \
                                     twice ({}); it may have received it: not sending again",
                                    self.shown,
                                    self.scrub(&error.to_string())
                                ),
                            );
                            return;
                        }
                    }
                    step
                }
            };
            match step {
                Step::Done(result, message) => {
                    self.emit(result, message);
                    return;
                }
                Step::Retry { wait, why } => {
                    if attempt >= self.max_attempts {
                        self.emit(
                            Outcome::Failed,
                            format!(
                                "{} still failing after {} attempts (last: {why}); \
                                 giving up on this message",
                                self.shown, attempt
                            ),
                        );
                        return;
                    }
                    if !self.fits_before_deadline(wait) {
                        self.emit_shutdown_drop(&format!(
                            "last attempt: {why}; no time left to retry"
                        ));
                        return;
                    }
                    self.emit(
                        Outcome::Retried,
                        format!(
                            "{} {why}, retrying in {} (attempt {attempt} of {})",
                            self.shown,
                            fmt_secs(wait),
                            self.max_attempts
                        ),
                    );
                    let until = later(Instant::now(), wait);
                    if !self.wait_until(until) {
                        self.emit_shutdown_drop("waiting to retry");
                        return;
                    }
                    attempt += 1;
                }
            }
        }
    }

    fn emit_shutdown_drop(&self, why: &str) {
        self.emit(
            Outcome::Dropped,
            format!(
                "shutting down: dropped a message for {} ({why})",
                self.shown
            ),
        );
    }

    /// One attempt: `body` POSTed as JSON, or for a heartbeat a GET (`body` is not sent).
    fn request(
        &self,
        body: &str,
        budget: Duration,
    ) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        // Per request, so that during shutdown a request cannot outlive the grace period.
        let timeout_global = Some(budget);
        let timeout_connect = Some(self.connect_timeout.min(budget));
        match self.kind {
            DestinationKind::Webhook => self
                .agent
                .post(self.url.as_str())
                .config()
                .timeout_global(timeout_global)
                .timeout_connect(timeout_connect)
                .build()
                .header("Content-Type", "application/json")
                .send(body),
            DestinationKind::Heartbeat => self
                .agent
                .get(self.url.as_str())
                .config()
                .timeout_global(timeout_global)
                .timeout_connect(timeout_connect)
                .build()
                .call(),
        }
    }

    fn judge_response(
        &mut self,
        mut response: ureq::http::Response<ureq::Body>,
        attempt: u32,
    ) -> Step {
        self.note_rate_limit_headers(response.headers());
        let status = response.status().as_u16();
        let mut raw = Vec::new();
        // A failed or partial body read only costs diagnostics, never the verdict.
        let _ = response
            .body_mut()
            .as_reader()
            .take(RESPONSE_BODY_LIMIT)
            .read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        let shown = &self.shown;

        match status {
            200..=299 => {
                let mut message = format!("{shown} accepted the message (HTTP {status})");
                if attempt > 1 {
                    message.push_str(&format!(" on attempt {attempt}"));
                }
                Step::Done(Outcome::Sent, message)
            }
            429 => {
                let hinted = body_retry_after(&text).or_else(|| {
                    response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_secs)
                });
                let wait = match hinted {
                    Some(wait) => wait.min(self.backoff_cap),
                    None => self.backoff(attempt),
                };
                Step::Retry {
                    wait,
                    why: "answered 429".to_string(),
                }
            }
            500..=599 => Step::Retry {
                wait: self.backoff(attempt),
                why: format!("answered {status}"),
            },
            400 => Step::Done(
                Outcome::Failed,
                format!(
                    "{shown} rejected the message (HTTP 400): {}; dropping message",
                    self.scrub(&reason_excerpt(&text))
                ),
            ),
            // 410: Slack's answer for an archived channel (`channel_is_archived`).
            401 | 403 | 404 | 410 => Step::Done(
                Outcome::Failed,
                format!(
                    "{shown} is gone (HTTP {status}): check {}; {}; dropping message",
                    self.kind.directive(),
                    self.scrub(&reason_excerpt(&text))
                ),
            ),
            _ => Step::Done(
                Outcome::Failed,
                format!(
                    "{shown} answered HTTP {status}: {}; not retrying, dropping message",
                    self.scrub(&reason_excerpt(&text))
                ),
            ),
        }
    }

    fn judge_error(&mut self, error: &ureq::Error, attempt: u32) -> Step {
        let detail = self.scrub(&error.to_string());
        let permanent = matches!(
            error,
            ureq::Error::BadUri(_)
                | ureq::Error::Http(_)
                | ureq::Error::InvalidProxyUrl
                | ureq::Error::RequireHttpsOnly(_)
                | ureq::Error::TlsRequired
                | ureq::Error::BodyExceedsLimit(_)
        );
        if permanent {
            // Retrying cannot fix a malformed request; the configuration needs attention.
            return Step::Done(
                Outcome::Failed,
                format!("cannot send to {}: {detail}; dropping message", self.shown),
            );
        }
        Step::Retry {
            wait: self.backoff(attempt),
            why: format!("could not be reached ({detail})"),
        }
    }

    fn backoff(&mut self, attempt: u32) -> Duration {
        let unit = self.rng.f64();
        backoff_delay(self.backoff_base, self.backoff_cap, attempt, unit)
    }

    /// Discord's bucket headers: with nothing left, hold the next POST until the reset.
    fn note_rate_limit_headers(&mut self, headers: &ureq::http::HeaderMap) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let exhausted = header("x-ratelimit-remaining")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|left| left <= 0.0);
        if !exhausted {
            return;
        }
        if let Some(reset) = header("x-ratelimit-reset-after").and_then(parse_secs) {
            let at = later(Instant::now(), reset.min(self.backoff_cap));
            self.next_allowed = Some(self.next_allowed.map_or(at, |prev| prev.max(at)));
        }
    }

    fn scrub(&self, text: &str) -> String {
        scrub(text, &self.url, &self.redacted, &self.secrets)
    }
}
