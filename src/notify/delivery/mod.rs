//! Webhook delivery (Discord, Slack, JSON or Alertmanager payloads, POSTed) and heartbeat pings
//! (a GET) on a thread of the helper process: queue, retry policy with backoff, redaction of
//! the URL in what it reports.
//!
//! The helper process hands JSON payloads to [`DeliveryThread::submit`], which never blocks: a
//! bounded queue sits between it and the delivery thread that does the HTTP work (`worker`,
//! retrying as `policy` says). The thread never logs and never touches nginx; it reports every
//! outcome over a channel, and the helper sends them to worker 0, which counts and logs them.
//!
//! Two names: an [`Outcome`] is what happened to a payload or an attempt (the `result` label of
//! `nginx_alert_notifications_total`); an [`OutcomeReport`] is one outcome with its log line
//! and destination, as worker 0 counts and logs it.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::conf::destination::Destination;
use crate::conf::destination::WebhookFormat;
use crate::vocab::redact::{redact_url, url_secrets};
use policy::{fmt_secs, later};
use worker::DeliveryLoop;

mod policy;
mod worker;

/// Default number of payloads that may wait for the delivery thread.
const DEFAULT_QUEUE_CAPACITY: usize = 256;
/// Default limit for TCP connect plus TLS handshake.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default limit for one whole request, from DNS lookup to the end of the response body.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of POSTs per payload, the first one included.
const DEFAULT_MAX_ATTEMPTS: u32 = 6;
/// Default wait before the first retry; doubles with each further retry.
const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Default upper bound for any single wait (backoff, `retry_after`, rate-limit reset).
const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Name of the delivery thread, as shown by `top -H` and in core dumps.
const THREAD_NAME: &str = "status-alert-notify";
/// Outcomes are drained by the helper's loop; beyond this they are discarded, never blocked on.
const OUTCOME_CAPACITY_MIN: usize = 1024;
/// Extra time `shutdown` waits past the grace for the thread to post its last outcomes.
const SHUTDOWN_SLACK: Duration = Duration::from_millis(100);
/// Bound on the drop-oldest loop in `submit`; it only repeats when the queue is contended.
const SUBMIT_TRIES: usize = 4;
/// Heartbeat: GETs per beat, the first one included. One quick retry covers a blip; a beat
/// that still fails is `failed`, and the next one comes an interval later anyway.
const HEARTBEAT_MAX_ATTEMPTS: u32 = 2;
/// Heartbeat: wait before the retry (jittered like any backoff).
const HEARTBEAT_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Heartbeat: upper bound for any wait, a monitor's `Retry-After` included: never minutes.
const HEARTBEAT_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// What a destination is: it decides the request, and how log lines name the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DestinationKind {
    /// Alerts: each payload is POSTed as JSON (webhooks, Alertmanager).
    Webhook,
    /// A heartbeat monitor's ping URL: a GET without a body; the payload is ignored.
    Heartbeat,
}

impl DestinationKind {
    /// How log lines call it.
    fn noun(self) -> &'static str {
        match self {
            DestinationKind::Webhook => "webhook",
            DestinationKind::Heartbeat => "heartbeat",
        }
    }

    /// The directive that configures it, for "check your configuration" messages.
    fn directive(self) -> &'static str {
        match self {
            DestinationKind::Webhook => "status_alert_webhook",
            DestinationKind::Heartbeat => "status_alert_heartbeat",
        }
    }
}

/// Settings of the delivery thread of one destination.
#[derive(Clone)]
pub struct DeliveryConfig {
    /// Webhook URL; contains the secret token, so it is only ever shown through [`redact_url`].
    pub url: String,
    /// POSTed payloads or heartbeat GETs.
    pub kind: DestinationKind,
    /// Payloads that may wait for delivery; when full, the oldest one is dropped.
    pub queue_capacity: usize,
    /// Limit for connecting (TCP and TLS) to the webhook.
    pub connect_timeout: Duration,
    /// Limit for one whole request, connect and response body included.
    pub request_timeout: Duration,
    /// POSTs per payload, the first one included, before giving up.
    pub max_attempts: u32,
    /// Wait before the first retry after a 5xx or network error; doubles per retry.
    pub backoff_base: Duration,
    /// Upper bound for every wait, including Discord's `retry_after`.
    pub backoff_cap: Duration,
    /// `User-Agent` header sent with each POST; empty sends none.
    pub user_agent: String,
}

impl DeliveryConfig {
    /// Configuration for `url` with the default queue size, timeouts and retry policy.
    pub fn new(url: impl Into<String>) -> Self {
        DeliveryConfig {
            url: url.into(),
            kind: DestinationKind::Webhook,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_cap: DEFAULT_BACKOFF_CAP,
            user_agent: concat!("nginx-status-alert/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }

    /// Configuration for a heartbeat monitor's ping URL: a GET per submitted payload (whose
    /// text is ignored), a queue of one (only the newest beat matters: an older one still
    /// waiting is dropped and counted), and one retry after about a second, waits capped at
    /// a few seconds.
    pub fn heartbeat(url: impl Into<String>) -> Self {
        DeliveryConfig {
            kind: DestinationKind::Heartbeat,
            queue_capacity: 1,
            max_attempts: HEARTBEAT_MAX_ATTEMPTS,
            backoff_base: HEARTBEAT_BACKOFF_BASE,
            backoff_cap: HEARTBEAT_BACKOFF_CAP,
            ..DeliveryConfig::new(url)
        }
    }

    /// Configuration for a configured destination: [`DeliveryConfig::heartbeat`] for the
    /// heartbeat, [`DeliveryConfig::new`] for the others.
    pub fn for_destination(destination: &Destination) -> Self {
        let url = destination.url.clone();
        match destination.format {
            WebhookFormat::Heartbeat => DeliveryConfig::heartbeat(url),
            _ => DeliveryConfig::new(url),
        }
    }
}

// Hand-written so that `{:?}` of a config can never print the webhook token.
impl fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryConfig")
            .field("url", &redact_url(&self.url))
            .field("kind", &self.kind)
            .field("queue_capacity", &self.queue_capacity)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_cap", &self.backoff_cap)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// What happened to one payload, or to one attempt at delivering it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The webhook accepted the payload.
    Sent,
    /// An attempt failed in a way worth retrying; another one is scheduled.
    Retried,
    /// The payload was given up on: rejected, webhook gone, or out of attempts.
    Failed,
    /// The payload was discarded undelivered: queue full or shutting down.
    Dropped,
}

impl Outcome {
    /// Every outcome, in a fixed order: the order of the zone's counters.
    pub const ALL: [Outcome; 4] = [
        Outcome::Sent,
        Outcome::Retried,
        Outcome::Failed,
        Outcome::Dropped,
    ];

    /// Lower-case label used as a metric label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retried => "retried",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
        }
    }
}

/// One outcome with its log line, for worker 0 to count and log.
#[derive(Clone, Debug)]
pub struct OutcomeReport {
    /// Which counter it is counted in.
    pub outcome: Outcome,
    /// One log line; the webhook URL in it is always redacted.
    pub message: String,
    /// Log at error level (webhook gone, rejected, gave up) rather than warn/info.
    pub is_error: bool,
    /// The destination it concerns (index in configuration order); a delivery thread serves one
    /// destination and reports 0, its owner sets the index.
    pub destination: usize,
}

/// Handle to the delivery thread of one destination, owned by the helper process.
pub struct DeliveryThread {
    queue_tx: Sender<String>,
    // A receiver on the sending side lets `submit` pop the oldest payload when the queue is full.
    queue_rx: Receiver<String>,
    capacity: usize,
    shutdown_tx: Sender<Instant>,
    outcome_tx: Sender<OutcomeReport>,
    outcome_rx: Receiver<OutcomeReport>,
    // Disconnects when the thread's state is dropped, i.e. when the thread has finished.
    done_rx: Receiver<()>,
    in_flight: Arc<AtomicBool>,
    /// How log lines name the destination: kind and redacted URL.
    shown: String,
    handle: Option<JoinHandle<()>>,
}

impl DeliveryThread {
    /// Spawns the `status-alert-notify` thread that delivers submitted payloads.
    pub fn start(config: DeliveryConfig) -> io::Result<DeliveryThread> {
        let redacted = redact_url(&config.url);
        let shown = format!("{} {redacted}", config.kind.noun());
        let scheme_ok = {
            let lower = config.url.trim().to_ascii_lowercase();
            lower.starts_with("https://") || lower.starts_with("http://")
        };
        if !scheme_ok {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{shown} is not an http:// or https:// URL"),
            ));
        }

        // A zero-capacity crossbeam channel is a rendezvous channel, on which try_send would
        // nearly always fail; one slot is the least that behaves like a queue.
        let capacity = config.queue_capacity.max(1);
        let (queue_tx, queue_rx) = crossbeam_channel::bounded(capacity);
        let (shutdown_tx, shutdown_rx) = crossbeam_channel::bounded(1);
        // Room for a full queue dropped at shutdown on top of the normal traffic.
        let outcome_capacity = capacity.saturating_mul(2).max(OUTCOME_CAPACITY_MIN);
        let (outcome_tx, outcome_rx) = crossbeam_channel::bounded(outcome_capacity);
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        let in_flight = Arc::new(AtomicBool::new(false));

        let agent: ureq::Agent = ureq::Agent::config_builder()
            // Non-2xx answers must come back as responses: their status drives the retry rules.
            .http_status_as_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.request_timeout))
            .user_agent(config.user_agent.as_str())
            // Discord never redirects webhooks, and a redirected POST would lose its body
            // (heartbeat monitors do not redirect their ping URLs either).
            .max_redirects(0)
            .max_redirects_will_error(false)
            .build()
            .into();

        let delivery = DeliveryLoop {
            secrets: url_secrets(&config.url),
            url: config.url.trim().to_string(),
            kind: config.kind,
            redacted,
            shown: shown.clone(),
            agent,
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
            max_attempts: config.max_attempts.max(1),
            backoff_base: config.backoff_base,
            backoff_cap: config.backoff_cap,
            queue: queue_rx.clone(),
            control: shutdown_rx,
            control_open: true,
            outcomes: outcome_tx.clone(),
            in_flight: Arc::clone(&in_flight),
            deadline: None,
            next_allowed: None,
            rng: fastrand::Rng::new(),
            _done: done_tx,
        };
        let handle = thread::Builder::new()
            .name(THREAD_NAME.to_string())
            .spawn(move || delivery.run())?;

        Ok(DeliveryThread {
            queue_tx,
            queue_rx,
            capacity,
            shutdown_tx,
            outcome_tx,
            outcome_rx,
            done_rx,
            in_flight,
            shown,
            handle: Some(handle),
        })
    }

    /// Queues a JSON payload without blocking; on a full queue the oldest payload is dropped.
    pub fn submit(&self, body: String) {
        let mut body = body;
        for _ in 0..SUBMIT_TRIES {
            match self.queue_tx.try_send(body) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    body = back;
                    // Fresh alerts matter more than stale ones, so the oldest one makes room.
                    if self.queue_rx.try_recv().is_ok() {
                        self.report_dropped(format!(
                            "notification queue for {} is full ({} queued): \
                             dropped the oldest message",
                            self.shown, self.capacity
                        ));
                    }
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
        // Only reachable when other threads keep refilling the queue: give up on this payload.
        self.report_dropped(format!(
            "could not queue a new message for {}: dropped it",
            self.shown
        ));
    }

    /// Number of payloads waiting for the delivery thread.
    pub fn queue_depth(&self) -> usize {
        self.queue_tx.len()
    }

    /// Outcomes reported since the last call, without waiting.
    pub fn outcomes(&self) -> Vec<OutcomeReport> {
        self.outcome_rx.try_iter().collect()
    }

    /// Stops the thread, giving it at most `grace` to deliver what is queued; returns outcomes.
    pub fn shutdown(self, grace: Duration) -> Vec<OutcomeReport> {
        let DeliveryThread {
            queue_tx,
            queue_rx,
            shutdown_tx,
            outcome_tx,
            outcome_rx,
            done_rx,
            in_flight,
            shown,
            handle,
            ..
        } = self;

        let now = Instant::now();
        let deadline = later(now, grace);
        // Capacity 1 and sent once, so this cannot fail for lack of room.
        let _ = shutdown_tx.try_send(deadline);
        // No more payloads: once the queue is empty the thread sees it closed and exits.
        drop(queue_tx);

        let finished = match done_rx.recv_deadline(later(deadline, SHUTDOWN_SLACK)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        };

        let mut outcomes: Vec<OutcomeReport> = outcome_rx.try_iter().collect();
        // Whatever is still queued was not reached in time (the thread may be stuck in I/O).
        for _ in queue_rx.try_iter() {
            outcomes.push(dropped(format!(
                "shutting down: dropped an undelivered message for {shown}"
            )));
        }
        if finished {
            if let Some(handle) = handle {
                // The thread has already released its state, so this returns at once.
                let _ = handle.join();
            }
        } else {
            if in_flight.swap(false, Ordering::AcqRel) {
                outcomes.push(dropped(format!(
                    "shutting down: abandoned a message still in flight to {shown} \
                     after the {} grace period",
                    fmt_secs(grace)
                )));
            }
            // Never join a thread that may hang in I/O: it is left detached, and with the
            // control channel closed below it stops as soon as its current request ends.
            drop(handle);
        }
        drop(shutdown_tx);
        drop(outcome_tx);
        outcomes
    }

    fn report_dropped(&self, message: String) {
        // Never block the worker; the outcome channel is sized so this practically never fails.
        let _ = self.outcome_tx.try_send(dropped(message));
    }
}

fn dropped(message: String) -> OutcomeReport {
    OutcomeReport {
        outcome: Outcome::Dropped,
        message,
        is_error: false,
        destination: 0,
    }
}

#[cfg(test)]
mod tests;
