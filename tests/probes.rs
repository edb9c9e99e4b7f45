//! Integration tests of the active health probes (README, Directives > status_alert_probe,
//! Metrics, Alerts > Lifecycle):
//! DOWN / UP messages on the webhook, the error-log fallback, the probe metrics (Prometheus and
//! JSON), `fails=` / `passes=`, one message per event however many workers run (also across a
//! reload), and that a hanging target never stalls nginx's event loop.
//!
//! Every test probes every `INTERVAL` (1s) with a `TIMEOUT` of 500ms, so DOWN and UP happen
//! within seconds; every wait is bounded. Timing bounds are generous (the tests run in parallel
//! on small machines) but each still fails for the bug it is about.

use serde_json::Value;
use status_alert_testkit::*;
use std::thread;
use std::time::{Duration, Instant};

/// `interval=` of every probe below.
const INTERVAL: Duration = Duration::from_secs(1);
/// `timeout=` of every probe below (except the JSON test, which needs a longer one).
const TIMEOUT: Duration = Duration::from_millis(500);
/// README, Alerts > Lifecycle: a message is posted within the interval (plus delivery time) of
/// the probe that saw the change; the probe itself can take up to its timeout. One second covers
/// the worker's 250ms drain tick, delivery and a loaded machine.
const SLACK: Duration = Duration::from_secs(1);
/// How long to wait for a message that should come, so a late one is measured, not missed.
const PATIENCE: Duration = Duration::from_secs(8);

/// The http block of every test: NAME `be` in `/` with one probe, metrics at `/status_metrics`.
fn http_block(webhook: Option<&str>, probe: &str) -> String {
    let webhook = webhook
        .map(|url| format!("status_alert_webhook {url};\n"))
        .unwrap_or_default();
    format!(
        r#"
{webhook}status_alert_interval 1s;
server {{
    listen 127.0.0.1:{{PORT}};
    location / {{
        status_alert be;
        status_alert_probe {probe};
        return 200 "ok";
    }}
    location = /status_metrics {{
        status_alert off;
        status_metrics;
    }}
}}
"#
    )
}

/// `URL interval=1s timeout=500ms EXTRA`.
fn probe_args(url: &str, extra: &str) -> String {
    format!(
        "{url} interval={}s timeout={}ms {extra}",
        INTERVAL.as_secs(),
        TIMEOUT.as_millis()
    )
    .trim_end()
    .to_string()
}

/// One embed of a received webhook message.
#[derive(Clone, Debug)]
struct Embed {
    /// When the message carrying it arrived.
    at: Instant,
    title: String,
    color: Option<u64>,
}

/// Every embed of every message received so far, in arrival order.
fn embeds(rx: &WebhookReceiver) -> Vec<Embed> {
    rx.messages_with_time()
        .into_iter()
        .flat_map(|(at, msg)| {
            msg["embeds"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |e| Embed {
                    at,
                    title: e["title"].as_str().unwrap_or("").to_string(),
                    color: e["color"].as_u64(),
                })
        })
        .collect()
}

fn downs(rx: &WebhookReceiver) -> Vec<Embed> {
    embeds(rx)
        .into_iter()
        .filter(|e| e.title.starts_with("DOWN "))
        .collect()
}

fn ups(rx: &WebhookReceiver) -> Vec<Embed> {
    embeds(rx)
        .into_iter()
        .filter(|e| e.title.starts_with("UP "))
        .collect()
}

/// Waits (up to `timeout`) for the first embed whose title starts with `prefix`.
fn wait_for_embed(rx: &WebhookReceiver, prefix: &str, timeout: Duration) -> Option<Embed> {
    let mut found = None;
    wait_until(timeout, || {
        found = embeds(rx).into_iter().find(|e| e.title.starts_with(prefix));
        found.is_some()
    });
    found
}

/// What the test saw, for assertion messages.
fn report(nginx: &Nginx, rx: Option<&WebhookReceiver>) -> String {
    let titles: Vec<String> = rx
        .map(|rx| embeds(rx).into_iter().map(|e| e.title).collect())
        .unwrap_or_default();
    let log = nginx.error_log();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!(
        "\n--- embed titles received ---\n{}\n--- last lines of error.log ---\n{}",
        titles.join("\n"),
        tail.join("\n")
    )
}

/// README, Alerts > Lifecycle (Discord's limits always hold) + the receiver's Discord checks:
/// nothing was rejected.
fn assert_no_violations(rx: &WebhookReceiver) {
    let v = rx.violations();
    assert!(
        v.is_empty(),
        "webhook requests Discord would reject: {v:#?}"
    );
}

/// `0xRRGGBB` is mostly red.
fn is_reddish(c: u64) -> bool {
    let (r, g, b) = ((c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF);
    r > g && r > b
}

/// `0xRRGGBB` is mostly green.
fn is_greenish(c: u64) -> bool {
    let (r, g, b) = ((c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF);
    g > r && g > b
}

/// `/health` requests the upstream received after `after`, oldest first.
fn health_requests_after(up: &Upstream, after: Instant) -> Vec<ReceivedRequest> {
    up.requests()
        .into_iter()
        .filter(|r| r.path() == "/health" && r.at > after)
        .collect()
}

/// An upstream answering `/health` with 200, a webhook receiver, and nginx (2 workers) probing
/// the upstream's `/health` with the `extra` probe parameters.
fn probe_upstream_health(extra: &str) -> (Upstream, WebhookReceiver, String, Nginx) {
    let upstream = Upstream::start();
    let rx = WebhookReceiver::start();
    let target = upstream.url("/health");
    let nginx = Nginx::start(
        &http_block(Some(&rx.url()), &probe_args(&target, extra)),
        NginxOpts::workers(2),
    );
    (upstream, rx, target, nginx)
}

/// Waits until `target` is reported up in the metrics.
fn wait_until_up(nginx: &Nginx, rx: &WebhookReceiver, target: &str) {
    assert!(
        wait_until(Duration::from_secs(5), || probe_up(nginx, "be", target)
            == Some(1.0)),
        "target never reported up{}",
        report(nginx, Some(rx))
    );
}

/// Waits for the next `/health` probe request and returns when it arrived; synchronising on
/// it lets a test change the answer with most of an interval before the next probe.
fn next_probe(up: &Upstream) -> Instant {
    let before = up.hits("/health");
    assert!(
        wait_until(INTERVAL * 3, || up.hits("/health") > before),
        "no probe request reached the upstream within {:?}",
        INTERVAL * 3
    );
    up.requests()
        .into_iter()
        .rev()
        .find(|r| r.path() == "/health")
        .map(|r| r.at)
        .expect("a /health request was just counted")
}

// ---------------------------------------------------------------------------------------------
// 1. A healthy target: probed on schedule, no message at all
// ---------------------------------------------------------------------------------------------

#[test]
fn healthy_target_is_probed_silently() {
    require_module!();
    let (upstream, rx, target, nginx) = probe_upstream_health("");
    let started = Instant::now();

    assert!(
        wait_until(Duration::from_secs(5), || upstream.hits("/health") >= 2),
        "expected 2 probes within 5s, got {}{}",
        upstream.hits("/health"),
        report(&nginx, Some(&rx))
    );
    // An announcement of the first result (there must be none: no UP at start-up) would be
    // posted within the interval after the probe; nothing arrives for two more.
    let calls = settle(INTERVAL * 2, PATIENCE, || rx.requests_count());
    assert!(started.elapsed() >= INTERVAL * 2);
    assert_eq!(
        calls,
        0,
        "a healthy target must not produce any webhook call{}",
        report(&nginx, Some(&rx))
    );
    assert_eq!(probe_up(&nginx, "be", &target), Some(1.0), "nginx_probe_up");
    let samples = prom(&nginx);
    let duration = metric(
        &samples,
        "nginx_probe_duration_seconds",
        &[("probe", "be"), ("target", &target)],
    )
    .expect("nginx_probe_duration_seconds present");
    assert!(
        duration > 0.0 && duration < TIMEOUT.as_secs_f64(),
        "last probe duration {duration}s"
    );
    for reason in [
        "refused", "timeout", "status", "reset", "tls", "dns", "body", "header", "slow",
    ] {
        let labels = [("probe", "be"), ("target", &target), ("reason", reason)];
        assert_eq!(
            metric(&samples, "nginx_probe_failures_total", &labels),
            Some(0.0),
            "nginx_probe_failures_total{{reason=\"{reason}\"}}"
        );
    }

    let probes: Vec<ReceivedRequest> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/health")
        .collect();
    // Started <= ~1.1s after the worker, then one per interval: at most 4-5 in ~3s.
    assert!(
        (2..=5).contains(&probes.len()),
        "{} probes in {:?}",
        probes.len(),
        started.elapsed()
    );
    for r in &probes {
        assert_eq!(r.method, "GET");
        let ua = r.header("user-agent").unwrap_or("");
        assert!(
            ua.starts_with("nginx-status-alert/"),
            "probe User-Agent {ua:?}"
        );
    }
    for pair in probes.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= INTERVAL.mul_f64(0.9),
            "probes {gap:?} apart with interval={INTERVAL:?}"
        );
    }
    assert_no_violations(&rx);
    nginx.assert_log_clean();
}

// ---------------------------------------------------------------------------------------------
// 2. Unexpected status: one DOWN, then one UP after `passes` successes, then silence
// ---------------------------------------------------------------------------------------------

#[test]
fn status_503_down_then_up_after_passes() {
    require_module!();
    let (upstream, rx, target, nginx) = probe_upstream_health("passes=2");
    wait_until_up(&nginx, &rx, &target);

    // Fault just after the first result was published, i.e. shortly after a probe: nearly a
    // whole interval passes before the next probe sees it (close to the worst case).
    let fault = Instant::now();
    upstream.set("/health", 503, "maintenance");
    let down = wait_for_embed(&rx, "DOWN ", PATIENCE)
        .unwrap_or_else(|| panic!("no DOWN within {PATIENCE:?}{}", report(&nginx, Some(&rx))));
    let fault_to_down = down.at.duration_since(fault);
    eprintln!("status_503_down_then_up_after_passes: fault -> DOWN message in {fault_to_down:?}");
    assert!(
        fault_to_down <= INTERVAL + TIMEOUT + SLACK,
        "DOWN arrived {fault_to_down:?} after the fault (bound {:?})",
        INTERVAL + TIMEOUT + SLACK
    );
    assert!(
        down.title.contains("DOWN be:")
            && down.title.contains(&target)
            && down.title.contains("unexpected status 503"),
        "DOWN title {:?}",
        down.title
    );
    assert!(
        down.color.is_some_and(is_reddish),
        "DOWN colour {:?} is not red",
        down.color
    );
    assert_eq!(
        probe_up(&nginx, "be", &target),
        Some(0.0),
        "nginx_probe_up after DOWN"
    );
    assert!(probe_failures(&nginx, "be", &target, "status") >= 1.0);

    // Fix it right after a (failed) probe, so the next two probes are the first two successes.
    next_probe(&upstream);
    thread::sleep(Duration::from_millis(100));
    let fix = Instant::now();
    upstream.set("/health", 200, "ok");
    let up = wait_for_embed(&rx, "UP ", PATIENCE)
        .unwrap_or_else(|| panic!("no UP within {PATIENCE:?}{}", report(&nginx, Some(&rx))));
    let fix_to_up = up.at.duration_since(fix);
    eprintln!("status_503_down_then_up_after_passes: fix -> UP message in {fix_to_up:?}");
    let successes = health_requests_after(&upstream, fix);
    assert!(
        successes.len() >= 2 && up.at >= successes[1].at,
        "UP arrived before the second successful probe (passes=2): fix -> UP {fix_to_up:?}, \
         successful probes at {:?} after the fix",
        successes
            .iter()
            .map(|r| r.at.duration_since(fix))
            .collect::<Vec<_>>()
    );
    // The first success comes ~0.9s after the fix, the second ~1.9s.
    assert!(
        fix_to_up >= INTERVAL.mul_f64(1.5),
        "UP after {fix_to_up:?}: too early for passes=2"
    );
    assert!(
        fix_to_up <= INTERVAL * 2 + TIMEOUT + SLACK,
        "UP arrived {fix_to_up:?} after the fix"
    );
    assert!(
        up.title.starts_with("UP be:")
            && up.title.contains(&target)
            && up.title.contains(" after "),
        "UP title {:?}",
        up.title
    );
    assert!(
        up.color.is_some_and(is_greenish),
        "UP colour {:?} is not green",
        up.color
    );
    assert_eq!(
        probe_up(&nginx, "be", &target),
        Some(1.0),
        "nginx_probe_up after UP"
    );

    // Nothing more while the target stays healthy: two more probes, then nothing new for two
    // intervals.
    let hits = upstream.hits("/health");
    assert!(wait_until(PATIENCE, || upstream.hits("/health") >= hits + 2));
    let all = settle(INTERVAL * 2, PATIENCE, || rx.all_titles());
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(
        (embeds(&rx).len(), downs(&rx).len(), ups(&rx).len()),
        (2, 1, 1),
        "expected exactly one DOWN and one UP{}",
        report(&nginx, Some(&rx))
    );
    assert_eq!(rx.messages().len(), 2, "one message per event");
    assert_no_violations(&rx);
    nginx.assert_log_clean();
}

// ---------------------------------------------------------------------------------------------
// 3. TCP probe of a closed port
// ---------------------------------------------------------------------------------------------

#[test]
fn tcp_probe_of_closed_port_is_refused() {
    require_module!();
    let port = closed_port();
    let target = format!("tcp://127.0.0.1:{port}");
    let rx = WebhookReceiver::start();
    let t0 = Instant::now();
    let nginx = Nginx::start(
        &http_block(Some(&rx.url()), &probe_args(&target, "")),
        NginxOpts::workers(2),
    );
    // The first probe runs within ~1.1s of the worker's start and fails at once.
    let down = wait_for_embed(&rx, "DOWN ", PATIENCE)
        .unwrap_or_else(|| panic!("no DOWN within {PATIENCE:?}{}", report(&nginx, Some(&rx))));
    let start_to_down = down.at.duration_since(t0);
    eprintln!(
        "tcp_probe_of_closed_port_is_refused: nginx start -> DOWN message in {start_to_down:?}"
    );
    assert!(
        start_to_down <= Duration::from_millis(1100) + TIMEOUT + SLACK * 2,
        "DOWN {start_to_down:?} after starting nginx"
    );
    assert_eq!(
        down.title,
        format!("DOWN be: {target} (connection refused)"),
        "DOWN title"
    );

    let f1 = probe_failures(&nginx, "be", &target, "refused");
    assert!(f1 >= 1.0, "refused failures {f1}");
    assert!(
        wait_until(INTERVAL * 3, || probe_failures(
            &nginx, "be", &target, "refused"
        ) > f1),
        "nginx_probe_failures_total{{reason=\"refused\"}} stuck at {f1}"
    );
    for other in [
        "timeout", "status", "reset", "tls", "dns", "body", "header", "slow",
    ] {
        assert_eq!(
            probe_failures(&nginx, "be", &target, other),
            0.0,
            "reason {other}"
        );
    }
    assert_eq!(probe_up(&nginx, "be", &target), Some(0.0));

    // Still down: no second DOWN over two more failed probes.
    let failed = probe_failures(&nginx, "be", &target, "refused");
    assert!(wait_until(PATIENCE, || probe_failures(
        &nginx, "be", &target, "refused"
    ) >= failed + 2.0));
    assert_eq!(
        settle(INTERVAL, PATIENCE, || rx.all_titles()).len(),
        1,
        "one DOWN per outage{}",
        report(&nginx, Some(&rx))
    );
    assert_no_violations(&rx);
    nginx.assert_log_clean();
}

// ---------------------------------------------------------------------------------------------
// 4. A hanging target times out without stalling requests
// ---------------------------------------------------------------------------------------------

/// 300 sequential GETs of `/` on one keep-alive connection.
fn request_latencies(nginx: &Nginx) -> Vec<Duration> {
    latencies(nginx.port, "/", 300)
}

/// GETs of `/` on one keep-alive connection, one every `gap`, for `span`.
fn paced_latencies(nginx: &Nginx, span: Duration, gap: Duration) -> Vec<Duration> {
    let mut client = KeepAliveClient::new(nginx.port);
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < span {
        let t = Instant::now();
        let resp = client.get("/");
        out.push(t.elapsed());
        assert_eq!(resp.status, 200);
        thread::sleep(gap);
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[test]
fn hanging_target_times_out_without_blocking_requests() {
    require_module!();
    // One worker: it runs the probes and serves every request, so if a probe stalled its
    // event loop, the latency measurement below could not land on another worker.
    let one_worker = NginxOpts::workers(1);
    let (hang_port, hanging) = hanging_listener();
    let target = format!("http://127.0.0.1:{hang_port}/health");
    let rx = WebhookReceiver::start();
    let t0 = Instant::now();
    let nginx = Nginx::start(
        &http_block(Some(&rx.url()), &probe_args(&target, "")),
        one_worker,
    );
    let down = wait_for_embed(&rx, "DOWN ", PATIENCE)
        .unwrap_or_else(|| panic!("no DOWN within {PATIENCE:?}{}", report(&nginx, Some(&rx))));
    eprintln!(
        "hanging_target_times_out_without_blocking_requests: nginx start -> DOWN message in {:?}",
        down.at.duration_since(t0)
    );
    assert_eq!(down.title, format!("DOWN be: {target} (timed out)"));
    assert!(probe_failures(&nginx, "be", &target, "timeout") >= 1.0);
    let duration = metric(
        &prom(&nginx),
        "nginx_probe_duration_seconds",
        &[("probe", "be"), ("target", &target)],
    )
    .expect("nginx_probe_duration_seconds");
    assert!(
        duration >= TIMEOUT.as_secs_f64() * 0.9 && duration < TIMEOUT.as_secs_f64() * 2.0,
        "a probe of a silent target took {duration}s with timeout={TIMEOUT:?}"
    );

    // Measure while a probe is hanging: right after the listener accepted the next one, there
    // are ~500ms before the probe gives up.
    let accepted = hanging.accepted();
    let mut caught = None;
    let deadline = Instant::now() + INTERVAL * 3;
    while Instant::now() < deadline {
        if hanging.accepted() > accepted {
            caught = Some(Instant::now());
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    let caught = caught.expect("no probe connected to the hanging listener within 3 intervals");
    let during = request_latencies(&nginx);
    let run = caught.elapsed();
    // Then one request every 10ms for more than an interval, so that a stall anywhere in the
    // probe cycle (while connecting, hanging or handling the result) hits one of them.
    let paced = paced_latencies(&nginx, INTERVAL + TIMEOUT, Duration::from_millis(10));

    let dmax = during
        .iter()
        .chain(&paced)
        .max()
        .copied()
        .unwrap_or_default();
    eprintln!(
        "hanging_target_times_out_without_blocking_requests: slowest of 300 requests in {:.0}ms \
         after the probe connected and {} paced requests over {:?}: {:.2}ms",
        ms(run),
        paced.len(),
        INTERVAL + TIMEOUT,
        ms(dmax)
    );
    // A probe blocking the event loop would add up to its ~500ms timeout to a request: the
    // slowest request must stay far below that. (How much a probe slows requests down is
    // ci/bench's measure, not a test's.)
    assert!(
        dmax < TIMEOUT / 2,
        "a request took {dmax:?} while probes of a silent target were timing out: is the event \
         loop blocked?"
    );
    assert!(
        embeds(&rx).len() == 1,
        "one DOWN per outage{}",
        report(&nginx, Some(&rx))
    );
    assert_no_violations(&rx);
    nginx.assert_log_clean();
}

// ---------------------------------------------------------------------------------------------
// 5. Four workers and a reload: still one DOWN, no spurious UP
// ---------------------------------------------------------------------------------------------

#[test]
fn four_workers_and_reload_announce_down_once() {
    require_module!();
    let upstream = Upstream::start();
    upstream.set("/health", 503, "down");
    let target = upstream.url("/health");
    let rx = WebhookReceiver::start();
    let nginx = Nginx::start(
        &http_block(Some(&rx.url()), &probe_args(&target, "")),
        NginxOpts::workers(4),
    );
    let down = wait_for_embed(&rx, "DOWN ", PATIENCE)
        .unwrap_or_else(|| panic!("no DOWN within {PATIENCE:?}{}", report(&nginx, Some(&rx))));
    assert!(
        down.title.contains("unexpected status 503"),
        "{}",
        down.title
    );

    // A few more intervals: one process probes (about one request per interval) and nobody
    // announces the outage again.
    let hits = upstream.hits("/health");
    let window = Instant::now();
    thread::sleep(INTERVAL * 3 + Duration::from_millis(200));
    let probed = upstream.hits("/health") - hits;
    assert!(
        (2..=4).contains(&probed),
        "{probed} probe requests in {:?} with interval={INTERVAL:?} and 4 workers",
        window.elapsed()
    );
    assert_eq!(
        embeds(&rx).len(),
        1,
        "4 workers: exactly one DOWN{}",
        report(&nginx, Some(&rx))
    );

    // Reload while down: the state survives, so neither a second DOWN nor an UP.
    nginx.reload();
    let reloaded = Instant::now();
    let hits = upstream.hits("/health");
    assert!(
        wait_until(INTERVAL * 4, || upstream.hits("/health") >= hits + 2),
        "probing did not resume after the reload"
    );
    thread::sleep((INTERVAL * 3).saturating_sub(reloaded.elapsed()) + Duration::from_millis(500));
    let titles: Vec<String> = embeds(&rx).into_iter().map(|e| e.title).collect();
    assert_eq!(
        (downs(&rx).len(), ups(&rx).len(), titles.len()),
        (1, 0, 1),
        "after a reload while DOWN: no second DOWN, no UP{}",
        report(&nginx, Some(&rx))
    );
    assert_eq!(
        probe_up(&nginx, "be", &target),
        Some(0.0),
        "still down after reload"
    );
    assert_no_violations(&rx);
    nginx.assert_log_clean();
}

// ---------------------------------------------------------------------------------------------
// 6. No webhook: the DOWN goes to the error log at warn level
// ---------------------------------------------------------------------------------------------

#[test]
fn without_webhook_down_is_logged_at_warn() {
    require_module!();
    let port = closed_port();
    let target = format!("http://127.0.0.1:{port}/health");
    let nginx = Nginx::start(
        &http_block(None, &probe_args(&target, "")),
        NginxOpts::workers(2),
    );
    let needle = "status_alert: DOWN be:";
    assert!(
        nginx.wait_for_log(needle, PATIENCE),
        "no {needle:?} in the error log within {PATIENCE:?}{}",
        report(&nginx, None)
    );
    let log = nginx.error_log();
    let line = log
        .lines()
        .find(|l| l.contains(needle))
        .expect("the line just waited for");
    assert!(line.contains("[warn]"), "not at warn level: {line}");
    assert!(
        line.contains(&format!("{needle} {target} (connection refused)")),
        "DOWN line: {line}"
    );
    assert!(line.contains("probe took "), "DOWN line: {line}");
    assert!(
        !log.contains("queued for the webhook"),
        "{}",
        report(&nginx, None)
    );

    // Still one line per outage after further failed probes.
    let failed = probe_failures(&nginx, "be", &target, "refused");
    assert!(wait_until(PATIENCE, || probe_failures(
        &nginx, "be", &target, "refused"
    ) >= failed + 2.0));
    let count = settle(INTERVAL, PATIENCE, || {
        let log = nginx.error_log();
        log.lines().filter(|l| l.contains(needle)).count()
    });
    let log = nginx.error_log();
    assert_eq!(
        count,
        1,
        "DOWN logged {count} times{}",
        report(&nginx, None)
    );
    assert!(
        !log.contains("status_alert: UP "),
        "{}",
        report(&nginx, None)
    );
    nginx.assert_log_clean();
}

// ---------------------------------------------------------------------------------------------
// 7. fails=3: no DOWN after one or two failures, DOWN after the third
// ---------------------------------------------------------------------------------------------

#[test]
fn fails_3_needs_three_consecutive_failures() {
    require_module!();
    let (upstream, rx, target, nginx) = probe_upstream_health("fails=3");
    wait_until_up(&nginx, &rx, &target);
    next_probe(&upstream);
    thread::sleep(Duration::from_millis(100));
    let fault = Instant::now();
    upstream.set("/health", 503, "down");

    for n in 1..=2 {
        assert!(
            wait_until(INTERVAL * 3, || health_requests_after(&upstream, fault)
                .len()
                >= n),
            "failed probe {n} never came"
        );
        let failed_at = health_requests_after(&upstream, fault)[n - 1].at;
        // Long enough for a wrong DOWN to be drained (250ms) and delivered, well before the
        // next probe (~1s after this one).
        thread::sleep(Duration::from_millis(700).saturating_sub(failed_at.elapsed()));
        assert_eq!(
            health_requests_after(&upstream, fault).len(),
            n,
            "probe {} came early: the check after failure {n} is not conclusive",
            n + 1
        );
        assert!(
            embeds(&rx).is_empty(),
            "a message after only {n} failure(s) with fails=3{}",
            report(&nginx, Some(&rx))
        );
        assert_eq!(
            probe_up(&nginx, "be", &target),
            Some(1.0),
            "still up after {n} failure(s)"
        );
        assert_eq!(probe_failures(&nginx, "be", &target, "status"), n as f64);
    }

    let down = wait_for_embed(&rx, "DOWN ", PATIENCE)
        .unwrap_or_else(|| panic!("no DOWN within {PATIENCE:?}{}", report(&nginx, Some(&rx))));
    let failed = health_requests_after(&upstream, fault);
    assert!(
        failed.len() >= 3 && down.at >= failed[2].at,
        "DOWN before the third failed probe"
    );
    let third_to_down = down.at.duration_since(failed[2].at);
    eprintln!(
        "fails_3_needs_three_consecutive_failures: fault -> DOWN message in {:?} (third failure \
         -> DOWN {third_to_down:?})",
        down.at.duration_since(fault)
    );
    assert!(
        third_to_down <= TIMEOUT + SLACK,
        "DOWN {third_to_down:?} after the third failure"
    );
    assert!(
        down.title.contains("DOWN be:") && down.title.contains("unexpected status 503"),
        "{}",
        down.title
    );
    assert_eq!(probe_up(&nginx, "be", &target), Some(0.0));
    assert_eq!(embeds(&rx).len(), 1, "{}", report(&nginx, Some(&rx)));
    assert_no_violations(&rx);
    nginx.assert_log_clean();
}

// ---------------------------------------------------------------------------------------------
// 7b. A slow target that answers within its timeout: on schedule, never cut short
// ---------------------------------------------------------------------------------------------

#[test]
fn slow_target_within_its_timeout_stays_up_and_on_schedule() {
    require_module!();
    // fails=1: a single probe ended early as a timeout (the next start cutting the one in
    // flight short) would be a DOWN.
    let (upstream, rx, target, nginx) = probe_upstream_health("fails=1");
    wait_until_up(&nginx, &rx, &target);
    // Answers take 400 ms of the 500 ms timeout: a probe is in flight 40 % of the time.
    upstream.set_delay("/health", TIMEOUT.mul_f64(0.8));
    let slow_from = next_probe(&upstream);
    thread::sleep(INTERVAL * 5);

    let probes = health_requests_after(&upstream, slow_from);
    assert!(
        (4..=6).contains(&probes.len()),
        "{} probes in {:?} with interval={INTERVAL:?}",
        probes.len(),
        slow_from.elapsed()
    );
    for pair in probes.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(
            gap >= INTERVAL.mul_f64(0.9) && gap <= INTERVAL.mul_f64(1.5),
            "probe starts {gap:?} apart with interval={INTERVAL:?}"
        );
    }
    assert_eq!(probe_failures(&nginx, "be", &target, "timeout"), 0.0);
    assert_eq!(probe_up(&nginx, "be", &target), Some(1.0));
    assert!(
        embeds(&rx).is_empty(),
        "a message about a target that answered every probe in time{}",
        report(&nginx, Some(&rx))
    );
    assert_no_violations(&rx);
    nginx.assert_log_clean();
}

// ---------------------------------------------------------------------------------------------
// 8. JSON metrics: no state before the first result, "up": false after DOWN
// ---------------------------------------------------------------------------------------------

/// The `probes` entry of `/status_metrics?format=json` for NAME `be` and `target`.
fn json_probe(nginx: &Nginx, target: &str) -> Value {
    let resp = http_get(nginx.port, "/status_metrics?format=json");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let doc = resp.json();
    doc["probes"]
        .as_array()
        .unwrap_or_else(|| panic!("no \"probes\" array in {doc}"))
        .iter()
        .find(|p| p["probe"] == "be" && p["target"] == target)
        .cloned()
        .unwrap_or_else(|| panic!("probe be {target} missing from {doc}"))
}

#[test]
fn json_metrics_show_probe_down() {
    require_module!();
    // A silent target and a 5s timeout: no result can exist until 5s after the first probe
    // connected, however long nginx took to start.
    let timeout = Duration::from_secs(5);
    let (hang_port, hanging) = hanging_listener();
    let target = format!("http://127.0.0.1:{hang_port}/health");
    let rx = WebhookReceiver::start();
    let nginx = Nginx::start(
        &http_block(Some(&rx.url()), &format!("{target} interval=6s timeout=5s")),
        NginxOpts::workers(2),
    );
    let before = json_probe(&nginx, &target);
    let samples = prom(&nginx);
    let read = Instant::now();
    // The accept is a moment after the probe's connect, when its timeout started: allow 10%.
    let connected = hanging.accepted_at().first().copied();
    assert!(
        connected.map_or(true, |at| read.saturating_duration_since(at)
            < timeout.mul_f64(0.9)),
        "the metrics were read {:?} after the first probe connected: too late to see them \
         before its result",
        connected.map(|at| read.saturating_duration_since(at))
    );
    assert!(
        before.get("up").map_or(true, Value::is_null),
        "\"up\" before the first result: {before}"
    );
    assert_eq!(
        metric(&samples, "nginx_probe_up", &[("target", &target)]),
        None,
        "nginx_probe_up must be absent until the first result"
    );

    let down = wait_for_embed(&rx, "DOWN ", PATIENCE)
        .unwrap_or_else(|| panic!("no DOWN within {PATIENCE:?}{}", report(&nginx, Some(&rx))));
    assert!(down.title.contains("(timed out)"), "{}", down.title);
    let after = json_probe(&nginx, &target);
    assert_eq!(after["up"], Value::Bool(false), "after DOWN: {after}");
    assert!(
        after["failures"]["timeout"].as_u64().unwrap_or(0) >= 1,
        "failures after DOWN: {after}"
    );
    let duration = after["duration_seconds"].as_f64().unwrap_or(-1.0);
    assert!(
        (4.5..8.0).contains(&duration),
        "duration_seconds of a 5s timeout: {after}"
    );
    assert_eq!(
        probe_up(&nginx, "be", &target),
        Some(0.0),
        "Prometheus agrees"
    );
    assert_no_violations(&rx);
    nginx.assert_log_clean();
}

// ---------------------------------------------------------------------------------------------
// Answer checks: body=, header=, max_time= (Directives > status_alert_probe)
// ---------------------------------------------------------------------------------------------

/// Waits for the `n`-th embed (counting from 1) whose title starts with `prefix`.
fn wait_for_nth_embed(rx: &WebhookReceiver, prefix: &str, n: usize) -> Embed {
    let mut found = None;
    wait_until(PATIENCE, || {
        found = embeds(rx)
            .into_iter()
            .filter(|e| e.title.starts_with(prefix))
            .nth(n - 1);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no {prefix}#{n} within {PATIENCE:?}"))
}

/// An answer-check phase: the reason, its words in the DOWN title, how to break the answer and
/// how to mend it.
type Phase<'a> = (&'a str, &'a str, &'a dyn Fn(), &'a dyn Fn());

#[test]
fn answer_checks_fail_with_their_own_reasons() {
    require_module!();
    let upstream = Upstream::start();
    let ready = [("X-Ready", "yes, all 3")];
    upstream.set("/health", 200, "{\"status\": \"ready\"}");
    upstream.set_headers("/health", &ready);
    let rx = WebhookReceiver::start();
    let target = upstream.url("/health");
    let checks = "\"body=\\\"status\\\": \\\"ready\\\"\" header=x-ready:all max_time=250ms";
    let nginx = Nginx::start(
        &http_block(Some(&rx.url()), &probe_args(&target, checks)),
        NginxOpts::workers(1),
    );
    wait_until_up(&nginx, &rx, &target);
    // The probe asked for the body as sent.
    let asked = upstream.requests();
    let last = asked.last().expect("a probe request");
    assert_eq!(last.header("accept-encoding"), Some("identity"));

    // Each broken answer: DOWN with its reason's words, the reason's counter, then UP again.
    let phases: [Phase; 4] = [
        (
            "body",
            "body check failed",
            &|| upstream.set("/health", 200, "{\"status\": \"starting\"}"),
            &|| upstream.set("/health", 200, "{\"status\": \"ready\"}"),
        ),
        (
            "header",
            "header check failed",
            &|| upstream.set_headers("/health", &[("X-Ready", "no")]),
            &|| upstream.set_headers("/health", &ready),
        ),
        (
            "slow",
            "answer slower than max_time",
            // Within timeout=500ms, beyond max_time=250ms.
            &|| upstream.set_delay("/health", Duration::from_millis(350)),
            &|| upstream.set_delay("/health", Duration::ZERO),
        ),
        (
            "body",
            "body check failed",
            // A compressed body is never read, whatever it holds.
            &|| {
                upstream.set_headers("/health", &[ready[0], ("Content-Encoding", "gzip")]);
            },
            &|| upstream.set_headers("/health", &ready),
        ),
    ];
    for (i, (reason, words, fault, fix)) in phases.iter().enumerate() {
        let before = probe_failures(&nginx, "be", &target, reason);
        fault();
        let down = wait_for_nth_embed(&rx, "DOWN ", i + 1);
        assert!(
            down.title.contains(words) && down.title.contains(&target),
            "phase {i}: DOWN title {:?} lacks {words:?}{}",
            down.title,
            report(&nginx, Some(&rx))
        );
        assert!(
            probe_failures(&nginx, "be", &target, reason) > before,
            "phase {i}: nginx_probe_failures_total{{reason=\"{reason}\"}} did not grow"
        );
        fix();
        wait_for_nth_embed(&rx, "UP ", i + 1);
    }
    assert_eq!(downs(&rx).len(), 4, "{}", report(&nginx, Some(&rx)));
    for other in ["refused", "timeout", "status", "reset", "tls", "dns"] {
        assert_eq!(probe_failures(&nginx, "be", &target, other), 0.0, "{other}");
    }
    assert_no_violations(&rx);
}

#[test]
fn answer_checks_are_refused_where_they_cannot_apply() {
    require_module!();
    for (probe, want) in [
        (
            "tcp://127.0.0.1:9 body=x",
            "body= applies to http:// and https:// probes only",
        ),
        (
            "http://127.0.0.1:9/ timeout=1s max_time=2s",
            "max_time=2s must be below timeout=1s",
        ),
        (
            "http://127.0.0.1:9/ header=X-A",
            "invalid header value \"X-A\"",
        ),
        // nginx's PCRE compiles the pattern when the configuration is read.
        (
            "http://127.0.0.1:9/ body_regex=(ready",
            "status_alert_probe: invalid body_regex \"(ready\": pcre2_compile() failed",
        ),
    ] {
        let (ok, out) = Nginx::test_config(&http_block(None, probe), NginxOpts::default());
        let emerg = out.lines().find(|l| l.contains("[emerg]")).unwrap_or("");
        assert!(
            !ok && emerg.contains(want) && emerg.contains("nginx.conf:"),
            "{probe}: {out}"
        );
    }
}

#[test]
fn body_regex_is_matched_by_nginx_pcre() {
    require_module!();
    let upstream = Upstream::start();
    upstream.set("/health", 200, "state: ready\n");
    let rx = WebhookReceiver::start();
    let target = upstream.url("/health");
    let checks = "\"body_regex=^st[a-z]+: (ready|ok)$\"";
    let nginx = Nginx::start(
        &http_block(Some(&rx.url()), &probe_args(&target, checks)),
        NginxOpts::workers(1),
    );
    wait_until_up(&nginx, &rx, &target);
    // "ok" matches too; "starting" does not.
    upstream.set("/health", 200, "status: ok");
    next_probe(&upstream);
    next_probe(&upstream);
    assert_eq!(probe_up(&nginx, "be", &target), Some(1.0));
    upstream.set("/health", 200, "state: starting");
    let down = wait_for_nth_embed(&rx, "DOWN ", 1);
    assert!(down.title.contains("body check failed"), "{}", down.title);
    assert!(probe_failures(&nginx, "be", &target, "body") >= 1.0);
    assert_no_violations(&rx);
}
