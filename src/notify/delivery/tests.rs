//! The delivery thread against a scripted webhook on loopback.

use super::*;
use std::io::{Read, Write};
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

fn fast_config(url: &str) -> DeliveryConfig {
    let mut config = DeliveryConfig::new(url);
    config.backoff_base = Duration::from_millis(50);
    config.backoff_cap = Duration::from_secs(1);
    config.connect_timeout = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(2);
    config
}

/// Collects outcomes until `enough` holds or 4 seconds pass.
fn collect(
    delivery: &DeliveryThread,
    enough: impl Fn(&[OutcomeReport]) -> bool,
) -> Vec<OutcomeReport> {
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut all = Vec::new();
    while Instant::now() < deadline {
        all.extend(delivery.outcomes());
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

fn count(outcomes: &[OutcomeReport], result: Outcome) -> usize {
    outcomes.iter().filter(|o| o.outcome == result).count()
}

fn finals(outcomes: &[OutcomeReport]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Sent | Outcome::Failed))
        .count()
}

fn results(outcomes: &[OutcomeReport]) -> Vec<Outcome> {
    outcomes.iter().map(|o| o.outcome).collect()
}

#[test]
fn delivers_on_204_with_body_intact() {
    let server = TestServer::start(vec![answer(204)]);
    let delivery = DeliveryThread::start(fast_config(&server.url)).expect("start");
    let body = r#"{"content":"5xx ratio 12.5% on /api \u00e9t\u00e9 ✓","embeds":[]}"#;
    delivery.submit(body.to_string());
    let outcomes = collect(&delivery, |o| finals(o) == 1);
    assert_eq!(results(&outcomes), vec![Outcome::Sent]);
    assert!(!outcomes[0].is_error);
    assert!(outcomes[0].message.contains("/api/webhooks/123/***"));
    assert_eq!(server.delivered(), vec![body.to_string()]);
    let head = server.seen()[0].head.to_ascii_lowercase();
    assert!(head.starts_with("post /api/webhooks/123/"));
    assert!(head.contains("content-type: application/json"));
    assert!(head.contains("user-agent: nginx-status-alert/"));
    assert!(delivery.shutdown(Duration::from_secs(2)).is_empty());
}

#[test]
fn rate_limited_429_honours_retry_after_in_body() {
    let limited = answer_with(
        429,
        &[("Content-Type", "application/json")],
        r#"{"message": "You are being rate limited.", "retry_after": 0.2, "global": false}"#,
    );
    let server = TestServer::start(vec![limited, answer(204)]);
    let delivery = DeliveryThread::start(fast_config(&server.url)).expect("start");
    delivery.submit("{}".to_string());
    let outcomes = collect(&delivery, |o| finals(o) == 1);
    assert_eq!(results(&outcomes), vec![Outcome::Retried, Outcome::Sent]);
    assert!(outcomes[0]
        .message
        .contains("answered 429, retrying in 0.2s"));
    assert_eq!(server.delivered().len(), 1);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(200));
    delivery.shutdown(Duration::from_secs(2));
}

#[test]
fn rate_limited_429_honours_retry_after_header() {
    let limited = answer_with(429, &[("Retry-After", "1")], "");
    let server = TestServer::start(vec![limited, answer(204)]);
    let delivery = DeliveryThread::start(fast_config(&server.url)).expect("start");
    delivery.submit("{}".to_string());
    let outcomes = collect(&delivery, |o| finals(o) == 1);
    assert_eq!(results(&outcomes), vec![Outcome::Retried, Outcome::Sent]);
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_secs(1));
    delivery.shutdown(Duration::from_secs(2));
}

#[test]
fn exhausted_bucket_delays_the_next_post() {
    let headers = [
        ("X-RateLimit-Remaining", "0"),
        ("X-RateLimit-Reset-After", "0.3"),
    ];
    let server = TestServer::start(vec![answer_with(204, &headers, ""), answer(204)]);
    let delivery = DeliveryThread::start(fast_config(&server.url)).expect("start");
    delivery.submit("1".to_string());
    delivery.submit("2".to_string());
    let outcomes = collect(&delivery, |o| finals(o) == 2);
    assert_eq!(results(&outcomes), vec![Outcome::Sent, Outcome::Sent]);
    let seen = server.seen();
    assert!(seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(300));
    delivery.shutdown(Duration::from_secs(2));
}

#[test]
fn server_errors_are_retried_until_success() {
    let server = TestServer::start(vec![answer(500), answer(502), answer(204)]);
    let delivery = DeliveryThread::start(fast_config(&server.url)).expect("start");
    delivery.submit("{}".to_string());
    let outcomes = collect(&delivery, |o| finals(o) == 1);
    assert_eq!(
        results(&outcomes),
        vec![Outcome::Retried, Outcome::Retried, Outcome::Sent]
    );
    assert!(outcomes[1].message.contains("answered 502"));
    assert!(outcomes[2].message.contains("on attempt 3"));
    assert_eq!(server.seen().len(), 3);
    assert_eq!(server.delivered(), vec!["{}".to_string()]);
    delivery.shutdown(Duration::from_secs(2));
}

#[test]
fn persistent_server_errors_fail_after_max_attempts() {
    let server = TestServer::start(vec![answer(500)]);
    let mut config = fast_config(&server.url);
    config.max_attempts = 4;
    config.backoff_base = Duration::from_millis(20);
    let delivery = DeliveryThread::start(config).expect("start");
    delivery.submit("{}".to_string());
    let outcomes = collect(&delivery, |o| finals(o) == 1);
    assert_eq!(count(&outcomes, Outcome::Retried), 3);
    let last = outcomes.last().expect("outcome");
    assert_eq!(last.outcome, Outcome::Failed);
    assert!(last.is_error);
    assert!(
        last.message.contains("after 4 attempts"),
        "{}",
        last.message
    );
    assert_eq!(server.seen().len(), 4);
    delivery.shutdown(Duration::from_secs(2));
}

#[test]
fn bad_request_fails_once_with_reason() {
    let reason = "{\"message\": \"Cannot send an empty message\",\n \"code\": 50006}";
    let server = TestServer::start(vec![answer_with(400, &[], reason)]);
    let delivery = DeliveryThread::start(fast_config(&server.url)).expect("start");
    delivery.submit("{}".to_string());
    let outcomes = collect(&delivery, |o| finals(o) == 1);
    assert_eq!(results(&outcomes), vec![Outcome::Failed]);
    assert!(outcomes[0].is_error);
    assert!(outcomes[0].message.contains("Cannot send an empty message"));
    assert!(!outcomes[0].message.contains('\n'));
    thread::sleep(Duration::from_millis(150));
    assert_eq!(server.seen().len(), 1);
    delivery.shutdown(Duration::from_secs(2));
}

/// A receiver answering `reply` once: one failed outcome, an error whose message has every
/// part of `says`, and no retry.
fn gone_without_retry(reply: Reply, says: &[&str]) {
    let server = TestServer::start(vec![reply]);
    let delivery = DeliveryThread::start(fast_config(&server.url)).expect("start");
    delivery.submit("{}".to_string());
    let outcomes = collect(&delivery, |o| finals(o) == 1);
    assert_eq!(results(&outcomes), vec![Outcome::Failed]);
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
    delivery.shutdown(Duration::from_secs(2));
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
    let delivery = DeliveryThread::start(config).expect("start");
    delivery.submit("{}".to_string());
    let outcomes = collect(&delivery, |o| finals(o) == 1);
    assert_eq!(
        results(&outcomes),
        vec![Outcome::Retried, Outcome::Retried, Outcome::Failed]
    );
    assert!(outcomes[0].message.contains("could not be reached"));
    assert!(outcomes[2].message.contains("after 3 attempts"));
    delivery.shutdown(Duration::from_secs(2));
}

#[test]
fn full_queue_drops_the_oldest() {
    let mut server = TestServer::start(vec![Reply::HoldThen(204)]);
    let mut config = fast_config(&server.url);
    config.queue_capacity = 2;
    config.request_timeout = Duration::from_secs(5);
    let delivery = DeliveryThread::start(config).expect("start");
    delivery.submit("1".to_string());
    // Payload 1 is now in flight, held by the server, so 2..5 compete for two slots.
    server.wait_requests(1);
    for n in 2..=5 {
        delivery.submit(n.to_string());
    }
    assert_eq!(delivery.queue_depth(), 2);
    let early = delivery.outcomes();
    assert_eq!(results(&early), vec![Outcome::Dropped; 2]);
    server.release();
    let outcomes = collect(&delivery, |o| finals(o) == 3);
    assert_eq!(count(&outcomes, Outcome::Sent), 3);
    assert_eq!(server.delivered(), vec!["1", "4", "5"]);
    delivery.shutdown(Duration::from_secs(2));
}

#[test]
fn shutdown_delivers_what_is_queued() {
    let server = TestServer::start(vec![answer(204)]);
    let delivery = DeliveryThread::start(fast_config(&server.url)).expect("start");
    for n in 0..3 {
        delivery.submit(n.to_string());
    }
    let outcomes = delivery.shutdown(Duration::from_secs(2));
    assert_eq!(results(&outcomes), vec![Outcome::Sent; 3]);
    assert_eq!(server.delivered(), vec!["0", "1", "2"]);
}

#[test]
fn shutdown_with_hanging_webhook_returns_in_time() {
    let server = TestServer::start(vec![Reply::HoldThen(204)]);
    let delivery = DeliveryThread::start(DeliveryConfig::new(server.url.clone())).expect("start");
    delivery.submit("held".to_string());
    server.wait_requests(1);
    delivery.submit("queued 1".to_string());
    delivery.submit("queued 2".to_string());
    let grace = Duration::from_millis(500);
    let started = Instant::now();
    let outcomes = delivery.shutdown(grace);
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
    assert_eq!(results(&outcomes), vec![Outcome::Dropped; 3]);
    assert!(outcomes.iter().all(|o| !o.message.contains(TOKEN)));
}

#[test]
fn a_webhook_that_never_answers_gets_the_message_at_most_twice() {
    // Every request is read in full and never answered: each time out may be a delivery.
    let server = TestServer::start(vec![Reply::HoldThen(204)]);
    let mut config = fast_config(&server.url);
    config.request_timeout = Duration::from_millis(300);
    let delivery = DeliveryThread::start(config).expect("start");
    delivery.submit("once".to_string());
    let outcomes = collect(&delivery, |o| {
        o.iter().any(|o| o.outcome == Outcome::Failed)
    });
    assert_eq!(
        results(&outcomes),
        vec![Outcome::Retried, Outcome::Failed],
        "{outcomes:?}"
    );
    assert!(outcomes[1].message.contains("may have received it"));
    assert_eq!(server.seen().len(), 2, "sent once, resent once, never more");
    drop(delivery);
}

#[test]
fn shutdown_cuts_a_retry_wait_short() {
    let server = TestServer::start(vec![answer(503)]);
    let mut config = fast_config(&server.url);
    config.backoff_base = Duration::from_secs(30);
    config.backoff_cap = Duration::from_secs(60);
    let delivery = DeliveryThread::start(config).expect("start");
    delivery.submit("{}".to_string());
    let first = collect(&delivery, |o| !o.is_empty());
    assert_eq!(results(&first), vec![Outcome::Retried]);
    let started = Instant::now();
    let outcomes = delivery.shutdown(Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(results(&outcomes), vec![Outcome::Dropped]);
    assert_eq!(server.seen().len(), 1);
}

/// A heartbeat configuration for a ping URL on `server`, with a fast retry.
fn heartbeat_config(server: &TestServer) -> DeliveryConfig {
    let mut config = DeliveryConfig::heartbeat(server.url.replace("/api/webhooks/123/", "/ping/"));
    config.backoff_base = Duration::from_millis(20);
    config.connect_timeout = Duration::from_secs(1);
    config.request_timeout = Duration::from_secs(2);
    config
}

#[test]
fn a_heartbeat_is_a_get_without_a_body() {
    let server = TestServer::start(vec![answer_with(200, &[], "OK")]);
    let delivery = DeliveryThread::start(heartbeat_config(&server)).expect("start");
    delivery.submit(String::new());
    let outcomes = collect(&delivery, |o| finals(o) == 1);
    assert_eq!(results(&outcomes), vec![Outcome::Sent]);
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
    assert!(delivery.shutdown(Duration::from_secs(2)).is_empty());
}

#[test]
fn a_failing_heartbeat_is_retried_once_then_failed() {
    let server = TestServer::start(vec![answer(503)]);
    let delivery = DeliveryThread::start(heartbeat_config(&server)).expect("start");
    delivery.submit(String::new());
    let outcomes = collect(&delivery, |o| finals(o) == 1);
    assert_eq!(results(&outcomes), vec![Outcome::Retried, Outcome::Failed]);
    assert!(
        outcomes[1].message.contains("after 2 attempts"),
        "{}",
        outcomes[1].message
    );
    thread::sleep(Duration::from_millis(100));
    assert_eq!(server.seen().len(), 2);
    delivery.shutdown(Duration::from_secs(2));

    // A ping URL that is gone names the heartbeat's directive.
    let server = TestServer::start(vec![answer(404)]);
    let delivery = DeliveryThread::start(heartbeat_config(&server)).expect("start");
    delivery.submit(String::new());
    let outcomes = collect(&delivery, |o| finals(o) == 1);
    assert_eq!(results(&outcomes), vec![Outcome::Failed]);
    assert!(
        outcomes[0]
            .message
            .contains("is gone (HTTP 404): check status_alert_heartbeat"),
        "{}",
        outcomes[0].message
    );
    delivery.shutdown(Duration::from_secs(2));
}

#[test]
fn a_heartbeat_has_a_short_policy_and_a_queue_of_one() {
    let config = DeliveryConfig::heartbeat("https://hc-ping.com/uuid");
    assert_eq!(config.kind, DestinationKind::Heartbeat);
    assert_eq!(config.queue_capacity, 1);
    assert_eq!(config.max_attempts, 2, "one retry");
    // Every wait, a monitor's Retry-After included, is capped at seconds, not minutes.
    assert!(config.backoff_cap <= Duration::from_secs(5));
}

#[test]
fn only_the_newest_heartbeat_waits() {
    let mut server = TestServer::start(vec![Reply::HoldThen(200)]);
    let delivery = DeliveryThread::start(heartbeat_config(&server)).expect("start");
    delivery.submit(String::new());
    // The first beat is in flight, held by the server: of two more, only the newer waits.
    server.wait_requests(1);
    delivery.submit(String::new());
    delivery.submit(String::new());
    assert_eq!(delivery.queue_depth(), 1);
    let early = delivery.outcomes();
    assert_eq!(results(&early), vec![Outcome::Dropped]);
    assert!(
        early[0]
            .message
            .contains("queue for heartbeat http://127.0.0.1:"),
        "{}",
        early[0].message
    );
    server.release();
    let outcomes = collect(&delivery, |o| finals(o) == 2);
    assert_eq!(results(&outcomes), vec![Outcome::Sent; 2]);
    assert_eq!(server.seen().len(), 2);
    delivery.shutdown(Duration::from_secs(2));
}

#[test]
fn each_destination_gets_its_kind_of_delivery() {
    let destination = |format| Destination::new(format!("https://h.example/{TOKEN}"), format);
    for format in [
        WebhookFormat::Discord,
        WebhookFormat::Slack,
        WebhookFormat::Json,
        WebhookFormat::Alertmanager,
    ] {
        let config = DeliveryConfig::for_destination(&destination(format));
        assert_eq!(config.kind, DestinationKind::Webhook, "{format:?}");
        assert_eq!(config.queue_capacity, DEFAULT_QUEUE_CAPACITY, "{format:?}");
    }
    let config = DeliveryConfig::for_destination(&destination(WebhookFormat::Heartbeat));
    assert_eq!(config.kind, DestinationKind::Heartbeat);
    assert_eq!(config.url, format!("https://h.example/{TOKEN}"));
    assert!(!format!("{config:?}").contains(TOKEN));
}

#[test]
fn start_rejects_a_non_http_url_without_leaking_it() {
    let error = match DeliveryThread::start(DeliveryConfig::new(format!("ftp://h/x/{TOKEN}"))) {
        Ok(_) => panic!("ftp URL accepted"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    assert!(!error.to_string().contains(TOKEN));
}

#[test]
fn a_config_never_shows_its_token() {
    let url = format!("https://u:pa55word@discord.com/api/webhooks/77/{TOKEN}?wait=true");
    let config = DeliveryConfig::new(url);
    assert!(!format!("{config:?}").contains(TOKEN));
}

#[test]
fn labels_cover_all_results() {
    let labels: Vec<&str> = Outcome::ALL.iter().map(|r| r.label()).collect();
    assert_eq!(labels, vec!["sent", "retried", "failed", "dropped"]);
}
