//! Webhook delivery (Discord, Slack, JSON or Alertmanager payloads, POSTed) and heartbeat pings
//! (a GET) on a thread of the helper process: queue, retry policy with backoff, redaction of
//! the URL in what it reports.
//!
//! The helper process hands JSON payloads to [`Notifier::submit`], which never blocks: a bounded
//! queue sits between it and the delivery thread that does the HTTP work. The thread never logs
//! and never touches nginx; it reports every outcome over a channel, and the helper sends them
//! to worker 0, which counts and logs them.

use std::fmt;
use std::io::{self, Read};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, Sender, TrySendError};

use crate::conf::params::WebhookFormat;
use crate::conf::Destination;
use crate::vocab::redact::{redact_url, scrub, url_secrets};

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
/// Backoff waits are spread by up to this fraction either way so that workers desynchronise.
const JITTER_FRACTION: f64 = 0.25;
/// Name of the delivery thread, as shown by `top -H` and in core dumps.
const THREAD_NAME: &str = "status-alert-notify";
/// Longest excerpt of a rejection reason that goes into a log line.
const REASON_MAX_CHARS: usize = 300;
/// We only read response bodies for diagnostics and `retry_after`, so cap what we pull in.
const RESPONSE_BODY_LIMIT: u64 = 64 * 1024;
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
pub struct NotifierConfig {
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

impl NotifierConfig {
    /// Configuration for `url` with the default queue size, timeouts and retry policy.
    pub fn new(url: impl Into<String>) -> Self {
        NotifierConfig {
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
        NotifierConfig {
            kind: DestinationKind::Heartbeat,
            queue_capacity: 1,
            max_attempts: HEARTBEAT_MAX_ATTEMPTS,
            backoff_base: HEARTBEAT_BACKOFF_BASE,
            backoff_cap: HEARTBEAT_BACKOFF_CAP,
            ..NotifierConfig::new(url)
        }
    }

    /// Configuration for a configured destination: [`NotifierConfig::heartbeat`] for the
    /// heartbeat, [`NotifierConfig::new`] for the others.
    pub fn for_destination(destination: &Destination) -> Self {
        let url = destination.url.clone();
        match destination.format {
            WebhookFormat::Heartbeat => NotifierConfig::heartbeat(url),
            _ => NotifierConfig::new(url),
        }
    }
}

// Hand-written so that `{:?}` of a config can never print the webhook token.
impl fmt::Debug for NotifierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifierConfig")
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
pub enum DeliveryResult {
    /// The webhook accepted the payload.
    Sent,
    /// An attempt failed in a way worth retrying; another one is scheduled.
    Retried,
    /// The payload was given up on: rejected, webhook gone, or out of attempts.
    Failed,
    /// The payload was discarded undelivered: queue full or shutting down.
    Dropped,
}

impl DeliveryResult {
    /// Every result, in a fixed order, for registering counters.
    pub const ALL: [DeliveryResult; 4] = [
        DeliveryResult::Sent,
        DeliveryResult::Retried,
        DeliveryResult::Failed,
        DeliveryResult::Dropped,
    ];

    /// Lower-case label used as a metric label value.
    pub fn label(self) -> &'static str {
        match self {
            DeliveryResult::Sent => "sent",
            DeliveryResult::Retried => "retried",
            DeliveryResult::Failed => "failed",
            DeliveryResult::Dropped => "dropped",
        }
    }
}

/// One event for the worker to count and log.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Which counter this event belongs to.
    pub result: DeliveryResult,
    /// One log line; the webhook URL in it is always redacted.
    pub message: String,
    /// Log at error level (webhook gone, rejected, gave up) rather than warn/info.
    pub is_error: bool,
    /// The destination it concerns (index in configuration order); a notifier serves one
    /// destination and reports 0, its owner sets the index.
    pub destination: usize,
}

/// Handle to the webhook delivery thread, owned by the helper process.
pub struct Notifier {
    queue_tx: Sender<String>,
    // A receiver on the sending side lets `submit` pop the oldest payload when the queue is full.
    queue_rx: Receiver<String>,
    capacity: usize,
    shutdown_tx: Sender<Instant>,
    outcome_tx: Sender<Outcome>,
    outcome_rx: Receiver<Outcome>,
    // Disconnects when the thread's state is dropped, i.e. when the thread has finished.
    done_rx: Receiver<()>,
    in_flight: Arc<AtomicBool>,
    /// How log lines name the destination: kind and redacted URL.
    shown: String,
    handle: Option<JoinHandle<()>>,
}

impl Notifier {
    /// Spawns the `status-alert-notify` thread that delivers submitted payloads.
    pub fn start(config: NotifierConfig) -> io::Result<Notifier> {
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

        Ok(Notifier {
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
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.outcome_rx.try_iter().collect()
    }

    /// Stops the thread, giving it at most `grace` to deliver what is queued; returns outcomes.
    pub fn shutdown(self, grace: Duration) -> Vec<Outcome> {
        let Notifier {
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

        let mut outcomes: Vec<Outcome> = outcome_rx.try_iter().collect();
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

fn dropped(message: String) -> Outcome {
    Outcome {
        result: DeliveryResult::Dropped,
        message,
        is_error: false,
        destination: 0,
    }
}

/// `Instant + Duration` that saturates instead of panicking on absurd durations.
fn later(from: Instant, wait: Duration) -> Instant {
    from.checked_add(wait)
        .or_else(|| from.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(from)
}

/// Seconds as Discord sends them (float text) to a duration; rejects negative and non-finite.
fn secs_to_duration(secs: f64) -> Option<Duration> {
    if secs.is_finite() && secs >= 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

fn parse_secs(text: &str) -> Option<Duration> {
    text.trim().parse::<f64>().ok().and_then(secs_to_duration)
}

/// Discord's `{"retry_after": 1.234, ...}` from a 429 body.
fn body_retry_after(body: &str) -> Option<Duration> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value
        .get("retry_after")?
        .as_f64()
        .and_then(secs_to_duration)
}

/// Capped exponential backoff before retry number `retry` (1-based), jittered by `unit` in [0,1).
fn backoff_delay(base: Duration, cap: Duration, retry: u32, unit: f64) -> Duration {
    let exponent = retry.saturating_sub(1);
    let factor = 1u32.checked_shl(exponent).unwrap_or(u32::MAX);
    let plain = base.saturating_mul(factor).min(cap);
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let jitter = 1.0 + JITTER_FRACTION * (2.0 * unit - 1.0);
    // The cap stays a hard maximum, so jitter at the cap can only shorten the wait.
    secs_to_duration(plain.as_secs_f64() * jitter)
        .unwrap_or(plain)
        .min(cap)
}

/// How often a message is sent again after a failure that came once the request was sent (the
/// webhook may have received it): each resend risks one duplicate, and webhooks such as
/// Discord's have no idempotency key to dedupe by.
const MAX_RESENDS_AFTER_SENDING: u32 = 1;

/// True if `error` came after the request may have reached the webhook: waiting for or reading
/// the answer, or an I/O error at a point ureq does not tell. Connection, DNS and TLS-handshake
/// failures come before anything was sent.
fn may_have_arrived(error: &ureq::Error) -> bool {
    use ureq::Timeout;
    match error {
        ureq::Error::Timeout(t) => matches!(
            t,
            Timeout::Global
                | Timeout::PerCall
                | Timeout::SendBody
                | Timeout::RecvResponse
                | Timeout::RecvBody
        ),
        ureq::Error::Io(e) => {
            use std::io::ErrorKind::{AddrNotAvailable, ConnectionRefused, NotFound};
            let unreachable = matches!(
                e.raw_os_error(),
                Some(libc::ENETUNREACH | libc::EHOSTUNREACH)
            );
            !(matches!(e.kind(), ConnectionRefused | AddrNotAvailable | NotFound) || unreachable)
        }
        _ => false,
    }
}

/// A diagnostic excerpt of a response body: one line, at most `REASON_MAX_CHARS` characters.
fn reason_excerpt(body: &str) -> String {
    // Collapsing all whitespace keeps pretty-printed JSON on one readable log line.
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    // No raw control characters (escape sequences, NULs) from a receiver reach the error log.
    let one_line: String = one_line
        .chars()
        .flat_map(|c| {
            let escaped = c.is_control().then(|| c.escape_default());
            let plain = (!c.is_control()).then_some(c);
            escaped.into_iter().flatten().chain(plain)
        })
        .collect();
    if one_line.is_empty() {
        return "no reason given".to_string();
    }
    let mut excerpt: String = one_line.chars().take(REASON_MAX_CHARS).collect();
    if one_line.chars().count() > REASON_MAX_CHARS {
        excerpt.push_str("...");
    }
    excerpt
}

/// Short human form of a duration for log lines, e.g. `1.5s`.
fn fmt_secs(d: Duration) -> String {
    let text = format!("{:.2}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}s")
}

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
    Done(DeliveryResult, String),
    /// Retry after `wait`; `why` describes the failed attempt.
    Retry { wait: Duration, why: String },
}

/// State of the delivery thread.
struct DeliveryLoop {
    url: String,
    kind: DestinationKind,
    redacted: String,
    /// How log lines name the destination: kind and redacted URL.
    shown: String,
    secrets: Vec<String>,
    agent: ureq::Agent,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_attempts: u32,
    backoff_base: Duration,
    backoff_cap: Duration,
    queue: Receiver<String>,
    control: Receiver<Instant>,
    control_open: bool,
    outcomes: Sender<Outcome>,
    in_flight: Arc<AtomicBool>,
    /// Set once shutdown starts: nothing may be waited for or sent past it.
    deadline: Option<Instant>,
    /// Discord said the bucket is empty: no POST before this instant.
    next_allowed: Option<Instant>,
    /// Backoff jitter: only needs to differ between hosts and retries, not be secure.
    rng: fastrand::Rng,
    /// Dropped with the loop, which tells `shutdown` the thread is done.
    _done: Sender<()>,
}

impl DeliveryLoop {
    fn run(mut self) {
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
                            DeliveryResult::Failed,
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
                DeliveryResult::Dropped,
                format!(
                    "shutting down: dropped an undelivered message for {}",
                    self.shown
                ),
            );
        }
    }

    fn emit(&self, result: DeliveryResult, message: String) {
        let is_error = result == DeliveryResult::Failed;
        // Never block: if the worker stopped draining, losing a log line beats stalling.
        let _ = self.outcomes.try_send(Outcome {
            result,
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
                                DeliveryResult::Failed,
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
                            DeliveryResult::Failed,
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
                        DeliveryResult::Retried,
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
            DeliveryResult::Dropped,
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
                Step::Done(DeliveryResult::Sent, message)
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
                DeliveryResult::Failed,
                format!(
                    "{shown} rejected the message (HTTP 400): {}; dropping message",
                    self.scrub(&reason_excerpt(&text))
                ),
            ),
            // 410: Slack's answer for an archived channel (`channel_is_archived`).
            401 | 403 | 404 | 410 => Step::Done(
                DeliveryResult::Failed,
                format!(
                    "{shown} is gone (HTTP {status}): check {}; {}; dropping message",
                    self.kind.directive(),
                    self.scrub(&reason_excerpt(&text))
                ),
            ),
            _ => Step::Done(
                DeliveryResult::Failed,
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
                DeliveryResult::Failed,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_carry_no_control_characters() {
        let r = reason_excerpt("{\"message\": \"bad\u{1b}[31mred\u{0}\"}\r\n");
        assert_eq!(r, "{\"message\": \"bad\\u{1b}[31mred\\u{0}\"}");
        assert!(!r.chars().any(char::is_control));
    }
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Mutex;

    /// Path secret used in every test URL; it must never show up in an outcome.
    const TOKEN: &str = "tok3n-SECRET-abc";

    /// How the scripted server answers one request.
    #[derive(Clone)]
    enum Reply {
        Answer {
            status: u16,
            headers: Vec<(String, String)>,
            body: String,
        },
        /// Hold the request until the server is released (or dropped), then answer.
        HoldThen(u16),
    }

    fn answer(status: u16) -> Reply {
        answer_with(status, &[], "")
    }

    fn answer_with(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply::Answer {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_string(),
        }
    }

    /// One request as the server saw it.
    #[derive(Clone, Debug)]
    struct Seen {
        at: Instant,
        head: String,
        body: String,
        status: u16,
    }

    /// Minimal HTTP/1.1 server: one request per connection, replies taken from a script.
    struct TestServer {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        arrivals: Receiver<usize>,
        release: Option<Sender<()>>,
        stop: Arc<AtomicBool>,
        accept: Option<JoinHandle<()>>,
    }

    impl TestServer {
        /// Serves `script` in order; the last reply repeats for any further request.
        fn start(script: Vec<Reply>) -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.set_nonblocking(true).expect("nonblocking");
            let port = listener.local_addr().expect("addr").port();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let (arrival_tx, arrivals) = crossbeam_channel::unbounded();
            let (release, release_rx) = crossbeam_channel::bounded::<()>(0);
            let stop = Arc::new(AtomicBool::new(false));
            let accept = {
                let seen = Arc::clone(&seen);
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut count = 0usize;
                    while !stop.load(Ordering::Acquire) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                let reply = script[count.min(script.len() - 1)].clone();
                                let (seen, arrival_tx) = (Arc::clone(&seen), arrival_tx.clone());
                                let release_rx = release_rx.clone();
                                let index = count;
                                thread::spawn(move || {
                                    serve(stream, index, reply, &seen, &arrival_tx, &release_rx)
                                });
                                count += 1;
                            }
                            Err(_) => thread::sleep(Duration::from_millis(5)),
                        }
                    }
                })
            };
            TestServer {
                url: format!("http://127.0.0.1:{port}/api/webhooks/123/{TOKEN}"),
                seen,
                arrivals,
                release: Some(release),
                stop,
                accept: Some(accept),
            }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().expect("lock").clone()
        }

        /// Bodies of the requests that were answered with 2xx, in arrival order.
        fn delivered(&self) -> Vec<String> {
            let seen = self.seen();
            seen.iter()
                .filter(|s| (200..300).contains(&s.status))
                .map(|s| s.body.clone())
                .collect()
        }

        /// Waits until `n` requests in total have arrived.
        fn wait_requests(&self, n: usize) {
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.seen().len() < n {
                let _ = self.arrivals.recv_deadline(deadline);
                assert!(
                    Instant::now() < deadline,
                    "server saw fewer than {n} requests"
                );
            }
        }

        /// Lets held requests answer.
        fn release(&mut self) {
            self.release.take();
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.release.take();
            self.stop.store(true, Ordering::Release);
            if let Some(accept) = self.accept.take() {
                let _ = accept.join();
            }
        }
    }

    fn serve(
        mut stream: TcpStream,
        index: usize,
        reply: Reply,
        seen: &Mutex<Vec<Seen>>,
        arrival_tx: &Sender<usize>,
        release_rx: &Receiver<()>,
    ) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
        let mut data = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => data.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&data[..head_end]).to_string();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while data.len() < head_end + length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => data.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&data[head_end..head_end + length]).to_string();
        let hold = matches!(reply, Reply::HoldThen(_));
        let (status, headers, reply_body) = match reply {
            Reply::Answer {
                status,
                headers,
                body,
            } => (status, headers, body),
            Reply::HoldThen(status) => (status, Vec::new(), String::new()),
        };
        seen.lock().expect("lock").push(Seen {
            at: Instant::now(),
            head,
            body,
            status,
        });
        let _ = arrival_tx.send(index);
        if hold {
            // Bounded so that a forgotten release cannot hang the test run.
            let _ = release_rx.recv_timeout(Duration::from_secs(5));
        }
        let mut out = format!(
            "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n",
            reply_body.len()
        );
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&reply_body);
        let _ = stream.write_all(out.as_bytes());
        let _ = stream.flush();
    }

    fn fast_config(url: &str) -> NotifierConfig {
        let mut config = NotifierConfig::new(url);
        config.backoff_base = Duration::from_millis(50);
        config.backoff_cap = Duration::from_secs(1);
        config.connect_timeout = Duration::from_secs(1);
        config.request_timeout = Duration::from_secs(2);
        config
    }

    /// Collects outcomes until `enough` holds or 4 seconds pass.
    fn collect(notifier: &Notifier, enough: impl Fn(&[Outcome]) -> bool) -> Vec<Outcome> {
        let deadline = Instant::now() + Duration::from_secs(4);
        let mut all = Vec::new();
        while Instant::now() < deadline {
            all.extend(notifier.outcomes());
            if enough(&all) {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        for outcome in &all {
            assert!(
                !outcome.message.contains(TOKEN),
                "token leaked: {}",
                outcome.message
            );
        }
        all
    }

    fn count(outcomes: &[Outcome], result: DeliveryResult) -> usize {
        outcomes.iter().filter(|o| o.result == result).count()
    }

    fn finals(outcomes: &[Outcome]) -> usize {
        outcomes
            .iter()
            .filter(|o| matches!(o.result, DeliveryResult::Sent | DeliveryResult::Failed))
            .count()
    }

    fn results(outcomes: &[Outcome]) -> Vec<DeliveryResult> {
        outcomes.iter().map(|o| o.result).collect()
    }

    #[test]
    fn delivers_on_204_with_body_intact() {
        let server = TestServer::start(vec![answer(204)]);
        let notifier = Notifier::start(fast_config(&server.url)).expect("start");
        let body = r#"{"content":"5xx ratio 12.5% on /api \u00e9t\u00e9 ✓","embeds":[]}"#;
        notifier.submit(body.to_string());
        let outcomes = collect(&notifier, |o| finals(o) == 1);
        assert_eq!(results(&outcomes), vec![DeliveryResult::Sent]);
        assert!(!outcomes[0].is_error);
        assert!(outcomes[0].message.contains("/api/webhooks/123/***"));
        assert_eq!(server.delivered(), vec![body.to_string()]);
        let head = server.seen()[0].head.to_ascii_lowercase();
        assert!(head.starts_with("post /api/webhooks/123/"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains("user-agent: nginx-status-alert/"));
        assert!(notifier.shutdown(Duration::from_secs(2)).is_empty());
    }

    #[test]
    fn rate_limited_429_honours_retry_after_in_body() {
        let limited = answer_with(
            429,
            &[("Content-Type", "application/json")],
            r#"{"message": "You are being rate limited.", "retry_after": 0.2, "global": false}"#,
        );
        let server = TestServer::start(vec![limited, answer(204)]);
        let notifier = Notifier::start(fast_config(&server.url)).expect("start");
        notifier.submit("{}".to_string());
        let outcomes = collect(&notifier, |o| finals(o) == 1);
        assert_eq!(
            results(&outcomes),
            vec![DeliveryResult::Retried, DeliveryResult::Sent]
        );
        assert!(outcomes[0]
            .message
            .contains("answered 429, retrying in 0.2s"));
        assert_eq!(server.delivered().len(), 1);
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(200));
        notifier.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn rate_limited_429_honours_retry_after_header() {
        let limited = answer_with(429, &[("Retry-After", "1")], "");
        let server = TestServer::start(vec![limited, answer(204)]);
        let notifier = Notifier::start(fast_config(&server.url)).expect("start");
        notifier.submit("{}".to_string());
        let outcomes = collect(&notifier, |o| finals(o) == 1);
        assert_eq!(
            results(&outcomes),
            vec![DeliveryResult::Retried, DeliveryResult::Sent]
        );
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1));
        notifier.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn exhausted_bucket_delays_the_next_post() {
        let headers = [
            ("X-RateLimit-Remaining", "0"),
            ("X-RateLimit-Reset-After", "0.3"),
        ];
        let server = TestServer::start(vec![answer_with(204, &headers, ""), answer(204)]);
        let notifier = Notifier::start(fast_config(&server.url)).expect("start");
        notifier.submit("1".to_string());
        notifier.submit("2".to_string());
        let outcomes = collect(&notifier, |o| finals(o) == 2);
        assert_eq!(
            results(&outcomes),
            vec![DeliveryResult::Sent, DeliveryResult::Sent]
        );
        let seen = server.seen();
        assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(300));
        notifier.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn server_errors_are_retried_until_success() {
        let server = TestServer::start(vec![answer(500), answer(502), answer(204)]);
        let notifier = Notifier::start(fast_config(&server.url)).expect("start");
        notifier.submit("{}".to_string());
        let outcomes = collect(&notifier, |o| finals(o) == 1);
        assert_eq!(
            results(&outcomes),
            vec![
                DeliveryResult::Retried,
                DeliveryResult::Retried,
                DeliveryResult::Sent
            ]
        );
        assert!(outcomes[1].message.contains("answered 502"));
        assert!(outcomes[2].message.contains("on attempt 3"));
        assert_eq!(server.seen().len(), 3);
        assert_eq!(server.delivered(), vec!["{}".to_string()]);
        notifier.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn persistent_server_errors_fail_after_max_attempts() {
        let server = TestServer::start(vec![answer(500)]);
        let mut config = fast_config(&server.url);
        config.max_attempts = 4;
        config.backoff_base = Duration::from_millis(20);
        let notifier = Notifier::start(config).expect("start");
        notifier.submit("{}".to_string());
        let outcomes = collect(&notifier, |o| finals(o) == 1);
        assert_eq!(count(&outcomes, DeliveryResult::Retried), 3);
        let last = outcomes.last().expect("outcome");
        assert_eq!(last.result, DeliveryResult::Failed);
        assert!(last.is_error);
        assert!(
            last.message.contains("after 4 attempts"),
            "{}",
            last.message
        );
        assert_eq!(server.seen().len(), 4);
        notifier.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn bad_request_fails_once_with_reason() {
        let reason = "{\"message\": \"Cannot send an empty message\",\n \"code\": 50006}";
        let server = TestServer::start(vec![answer_with(400, &[], reason)]);
        let notifier = Notifier::start(fast_config(&server.url)).expect("start");
        notifier.submit("{}".to_string());
        let outcomes = collect(&notifier, |o| finals(o) == 1);
        assert_eq!(results(&outcomes), vec![DeliveryResult::Failed]);
        assert!(outcomes[0].is_error);
        assert!(outcomes[0].message.contains("Cannot send an empty message"));
        assert!(!outcomes[0].message.contains('\n'));
        thread::sleep(Duration::from_millis(150));
        assert_eq!(server.seen().len(), 1);
        notifier.shutdown(Duration::from_secs(2));
    }

    /// A receiver answering `reply` once: one failed outcome, an error whose message has every
    /// part of `says`, and no retry.
    fn gone_without_retry(reply: Reply, says: &[&str]) {
        let server = TestServer::start(vec![reply]);
        let notifier = Notifier::start(fast_config(&server.url)).expect("start");
        notifier.submit("{}".to_string());
        let outcomes = collect(&notifier, |o| finals(o) == 1);
        assert_eq!(results(&outcomes), vec![DeliveryResult::Failed]);
        assert!(outcomes[0].is_error);
        for part in says {
            assert!(
                outcomes[0].message.contains(part),
                "{:?}",
                outcomes[0].message
            );
        }
        thread::sleep(Duration::from_millis(150));
        assert_eq!(server.seen().len(), 1);
        notifier.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn archived_slack_channel_is_gone_with_its_reason() {
        gone_without_retry(
            answer_with(410, &[], "channel_is_archived"),
            &["is gone (HTTP 410)", "channel_is_archived"],
        );
    }

    #[test]
    fn missing_webhook_is_reported_loudly_without_retry() {
        gone_without_retry(answer(404), &["is gone (HTTP 404)", "status_alert_webhook"]);
    }

    #[test]
    fn refused_connection_is_retried_then_failed() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let mut config = fast_config(&format!("http://127.0.0.1:{port}/api/webhooks/9/{TOKEN}"));
        config.max_attempts = 3;
        config.backoff_base = Duration::from_millis(20);
        let notifier = Notifier::start(config).expect("start");
        notifier.submit("{}".to_string());
        let outcomes = collect(&notifier, |o| finals(o) == 1);
        assert_eq!(
            results(&outcomes),
            vec![
                DeliveryResult::Retried,
                DeliveryResult::Retried,
                DeliveryResult::Failed
            ]
        );
        assert!(outcomes[0].message.contains("could not be reached"));
        assert!(outcomes[2].message.contains("after 3 attempts"));
        notifier.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn full_queue_drops_the_oldest() {
        let mut server = TestServer::start(vec![Reply::HoldThen(204)]);
        let mut config = fast_config(&server.url);
        config.queue_capacity = 2;
        config.request_timeout = Duration::from_secs(5);
        let notifier = Notifier::start(config).expect("start");
        notifier.submit("1".to_string());
        // Payload 1 is now in flight, held by the server, so 2..5 compete for two slots.
        server.wait_requests(1);
        for n in 2..=5 {
            notifier.submit(n.to_string());
        }
        assert_eq!(notifier.queue_depth(), 2);
        let early = notifier.outcomes();
        assert_eq!(results(&early), vec![DeliveryResult::Dropped; 2]);
        server.release();
        let outcomes = collect(&notifier, |o| finals(o) == 3);
        assert_eq!(count(&outcomes, DeliveryResult::Sent), 3);
        assert_eq!(server.delivered(), vec!["1", "4", "5"]);
        notifier.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn shutdown_delivers_what_is_queued() {
        let server = TestServer::start(vec![answer(204)]);
        let notifier = Notifier::start(fast_config(&server.url)).expect("start");
        for n in 0..3 {
            notifier.submit(n.to_string());
        }
        let outcomes = notifier.shutdown(Duration::from_secs(2));
        assert_eq!(results(&outcomes), vec![DeliveryResult::Sent; 3]);
        assert_eq!(server.delivered(), vec!["0", "1", "2"]);
    }

    #[test]
    fn shutdown_with_hanging_webhook_returns_in_time() {
        let server = TestServer::start(vec![Reply::HoldThen(204)]);
        let notifier = Notifier::start(NotifierConfig::new(server.url.clone())).expect("start");
        notifier.submit("held".to_string());
        server.wait_requests(1);
        notifier.submit("queued 1".to_string());
        notifier.submit("queued 2".to_string());
        let grace = Duration::from_millis(500);
        let started = Instant::now();
        let outcomes = notifier.shutdown(grace);
        let took = started.elapsed();
        assert!(
            took < grace + Duration::from_millis(300),
            "shutdown took {took:?}"
        );
        assert!(
            took >= grace,
            "shutdown returned before the grace: {took:?}"
        );
        // Two queued payloads plus the one stuck in flight.
        assert_eq!(results(&outcomes), vec![DeliveryResult::Dropped; 3]);
        assert!(outcomes.iter().all(|o| !o.message.contains(TOKEN)));
    }

    #[test]
    fn a_webhook_that_never_answers_gets_the_message_at_most_twice() {
        // Every request is read in full and never answered: each time out may be a delivery.
        let server = TestServer::start(vec![Reply::HoldThen(204)]);
        let mut config = fast_config(&server.url);
        config.request_timeout = Duration::from_millis(300);
        let notifier = Notifier::start(config).expect("start");
        notifier.submit("once".to_string());
        let outcomes = collect(&notifier, |o| {
            o.iter().any(|o| o.result == DeliveryResult::Failed)
        });
        assert_eq!(
            results(&outcomes),
            vec![DeliveryResult::Retried, DeliveryResult::Failed],
            "{outcomes:?}"
        );
        assert!(outcomes[1].message.contains("may have received it"));
        assert_eq!(server.seen().len(), 2, "sent once, resent once, never more");
        drop(notifier);
    }

    #[test]
    fn shutdown_cuts_a_retry_wait_short() {
        let server = TestServer::start(vec![answer(503)]);
        let mut config = fast_config(&server.url);
        config.backoff_base = Duration::from_secs(30);
        config.backoff_cap = Duration::from_secs(60);
        let notifier = Notifier::start(config).expect("start");
        notifier.submit("{}".to_string());
        let first = collect(&notifier, |o| !o.is_empty());
        assert_eq!(results(&first), vec![DeliveryResult::Retried]);
        let started = Instant::now();
        let outcomes = notifier.shutdown(Duration::from_secs(2));
        assert!(started.elapsed() < Duration::from_millis(500));
        assert_eq!(results(&outcomes), vec![DeliveryResult::Dropped]);
        assert_eq!(server.seen().len(), 1);
    }

    /// A heartbeat configuration for a ping URL on `server`, with a fast retry.
    fn heartbeat_config(server: &TestServer) -> NotifierConfig {
        let mut config =
            NotifierConfig::heartbeat(server.url.replace("/api/webhooks/123/", "/ping/"));
        config.backoff_base = Duration::from_millis(20);
        config.connect_timeout = Duration::from_secs(1);
        config.request_timeout = Duration::from_secs(2);
        config
    }

    #[test]
    fn a_heartbeat_is_a_get_without_a_body() {
        let server = TestServer::start(vec![answer_with(200, &[], "OK")]);
        let notifier = Notifier::start(heartbeat_config(&server)).expect("start");
        notifier.submit(String::new());
        let outcomes = collect(&notifier, |o| finals(o) == 1);
        assert_eq!(results(&outcomes), vec![DeliveryResult::Sent]);
        assert!(
            outcomes[0]
                .message
                .starts_with("heartbeat http://127.0.0.1:"),
            "{}",
            outcomes[0].message
        );
        assert!(
            outcomes[0].message.contains("/***"),
            "{}",
            outcomes[0].message
        );
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        let head = seen[0].head.to_ascii_lowercase();
        assert!(
            head.starts_with(&format!(
                "get /ping/{} http/1.1\r\n",
                TOKEN.to_ascii_lowercase()
            )),
            "{head}"
        );
        assert!(!head.contains("content-type"), "{head}");
        assert!(head.contains("user-agent: nginx-status-alert/"), "{head}");
        assert!(seen[0].body.is_empty());
        assert!(notifier.shutdown(Duration::from_secs(2)).is_empty());
    }

    #[test]
    fn a_failing_heartbeat_is_retried_once_then_failed() {
        let server = TestServer::start(vec![answer(503)]);
        let notifier = Notifier::start(heartbeat_config(&server)).expect("start");
        notifier.submit(String::new());
        let outcomes = collect(&notifier, |o| finals(o) == 1);
        assert_eq!(
            results(&outcomes),
            vec![DeliveryResult::Retried, DeliveryResult::Failed]
        );
        assert!(
            outcomes[1].message.contains("after 2 attempts"),
            "{}",
            outcomes[1].message
        );
        thread::sleep(Duration::from_millis(100));
        assert_eq!(server.seen().len(), 2);
        notifier.shutdown(Duration::from_secs(2));

        // A ping URL that is gone names the heartbeat's directive.
        let server = TestServer::start(vec![answer(404)]);
        let notifier = Notifier::start(heartbeat_config(&server)).expect("start");
        notifier.submit(String::new());
        let outcomes = collect(&notifier, |o| finals(o) == 1);
        assert_eq!(results(&outcomes), vec![DeliveryResult::Failed]);
        assert!(
            outcomes[0]
                .message
                .contains("is gone (HTTP 404): check status_alert_heartbeat"),
            "{}",
            outcomes[0].message
        );
        notifier.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn a_heartbeat_has_a_short_policy_and_a_queue_of_one() {
        let config = NotifierConfig::heartbeat("https://hc-ping.com/uuid");
        assert_eq!(config.kind, DestinationKind::Heartbeat);
        assert_eq!(config.queue_capacity, 1);
        assert_eq!(config.max_attempts, 2, "one retry");
        // Every wait, a monitor's Retry-After included, is capped at seconds, not minutes.
        assert!(config.backoff_cap <= Duration::from_secs(5));
    }

    #[test]
    fn only_the_newest_heartbeat_waits() {
        let mut server = TestServer::start(vec![Reply::HoldThen(200)]);
        let notifier = Notifier::start(heartbeat_config(&server)).expect("start");
        notifier.submit(String::new());
        // The first beat is in flight, held by the server: of two more, only the newer waits.
        server.wait_requests(1);
        notifier.submit(String::new());
        notifier.submit(String::new());
        assert_eq!(notifier.queue_depth(), 1);
        let early = notifier.outcomes();
        assert_eq!(results(&early), vec![DeliveryResult::Dropped]);
        assert!(
            early[0]
                .message
                .contains("queue for heartbeat http://127.0.0.1:"),
            "{}",
            early[0].message
        );
        server.release();
        let outcomes = collect(&notifier, |o| finals(o) == 2);
        assert_eq!(results(&outcomes), vec![DeliveryResult::Sent; 2]);
        assert_eq!(server.seen().len(), 2);
        notifier.shutdown(Duration::from_secs(2));
    }

    #[test]
    fn each_destination_gets_its_kind_of_delivery() {
        let destination = |format| Destination {
            url: format!("https://h.example/{TOKEN}"),
            format,
        };
        for format in [
            WebhookFormat::Discord,
            WebhookFormat::Slack,
            WebhookFormat::Json,
            WebhookFormat::Alertmanager,
        ] {
            let config = NotifierConfig::for_destination(&destination(format));
            assert_eq!(config.kind, DestinationKind::Webhook, "{format:?}");
            assert_eq!(config.queue_capacity, DEFAULT_QUEUE_CAPACITY, "{format:?}");
        }
        let config = NotifierConfig::for_destination(&destination(WebhookFormat::Heartbeat));
        assert_eq!(config.kind, DestinationKind::Heartbeat);
        assert_eq!(config.url, format!("https://h.example/{TOKEN}"));
        assert!(!format!("{config:?}").contains(TOKEN));
    }

    #[test]
    fn start_rejects_a_non_http_url_without_leaking_it() {
        let error = match Notifier::start(NotifierConfig::new(format!("ftp://h/x/{TOKEN}"))) {
            Ok(_) => panic!("ftp URL accepted"),
            Err(error) => error,
        };
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert!(!error.to_string().contains(TOKEN));
    }

    #[test]
    fn a_config_never_shows_its_token() {
        let url = format!("https://u:pa55word@discord.com/api/webhooks/77/{TOKEN}?wait=true");
        let config = NotifierConfig::new(url);
        assert!(!format!("{config:?}").contains(TOKEN));
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let base = Duration::from_secs(1);
        let cap = Duration::from_secs(60);
        assert_eq!(backoff_delay(base, cap, 1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff_delay(base, cap, 3, 0.5), Duration::from_secs(4));
        assert_eq!(backoff_delay(base, cap, 1, 0.0), Duration::from_millis(750));
        assert_eq!(
            backoff_delay(base, cap, 2, 1.0),
            Duration::from_millis(2500)
        );
        assert_eq!(backoff_delay(base, cap, 7, 0.99), cap);
        assert_eq!(backoff_delay(base, cap, u32::MAX, f64::NAN), cap);
        let mut rng = fastrand::Rng::new();
        for retry in 1..=10 {
            let wait = backoff_delay(base, cap, retry, rng.f64());
            let plain = base.saturating_mul(1 << (retry - 1)).min(cap);
            assert!(wait <= cap && wait.as_secs_f64() >= plain.as_secs_f64() * 0.75);
        }
    }

    #[test]
    fn parses_rate_limit_hints_defensively() {
        let hint = body_retry_after(r#"{"retry_after": 1.234, "global": false}"#);
        assert_eq!(hint, Some(Duration::from_millis(1234)));
        assert_eq!(body_retry_after(r#"{"retry_after": -1}"#), None);
        assert_eq!(body_retry_after("not json"), None);
        assert_eq!(parse_secs(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_secs("NaN"), None);
        assert_eq!(parse_secs("1e400"), None);
        assert_eq!(parse_secs("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        let long = "x\r\n".repeat(400);
        let reason = reason_excerpt(&long);
        assert!(!reason.contains('\n') && reason.chars().count() <= REASON_MAX_CHARS + 3);
        assert_eq!(fmt_secs(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_secs(Duration::from_secs(60)), "60s");
    }

    #[test]
    fn labels_cover_all_results() {
        let labels: Vec<&str> = DeliveryResult::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels, vec!["sent", "retried", "failed", "dropped"]);
    }
}
