//! Window evaluation and alert delivery with a real nginx (4 workers, 1s interval, 10s windows)
//! and a local webhook receiver that enforces Discord's payload rules.

use std::time::{Duration, Instant};

use serde_json::Value;
use status_alert_testkit::*;

const INTERVAL_S: u64 = 1;
/// How long a count must stay put before an "exactly N" check reads it: longer than an
/// evaluation interval and a delivery.
const QUIET: Duration = Duration::from_secs(2);

/// A server with `be` on `/` (200) and `/err` (503), plus metrics.
fn config(webhook: Option<&str>, alert_params: &str) -> String {
    let webhook = webhook
        .map(|u| format!("status_alert_webhook {u};"))
        .unwrap_or_default();
    format!(
        r#"
        {webhook}
        status_alert_interval {INTERVAL_S}s;
        server {{
            listen 127.0.0.1:{{PORT}};
            location / {{ status_alert be window=10s {alert_params}; return 200 "ok"; }}
            location /err {{ status_alert be window=10s {alert_params}; return 503; }}
            location = /status_metrics {{ status_alert off; status_metrics; }}
        }}
        "#
    )
}

fn four_workers() -> NginxOpts {
    NginxOpts {
        worker_processes: 4,
        ..Default::default()
    }
}

fn title(msg: &Value, i: usize) -> String {
    msg["embeds"][i]["title"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn send(port: u16, path: &str, n: usize) {
    let statuses = hammer(port, path, n, 4);
    assert_eq!(statuses.len(), n);
    assert!(
        statuses.iter().all(|s| *s != 0),
        "transport errors on {path}"
    );
}

fn metrics(port: u16) -> Vec<Sample> {
    parse_prometheus(&http_get(port, "/status_metrics").text())
}

fn notifications(port: u16, result: &str) -> f64 {
    metric(
        &metrics(port),
        "nginx_alert_notifications_total",
        &[("result", result)],
    )
    .unwrap_or(-1.0)
}

#[test]
fn lifecycle_critical_warning_resolved_exactly_once_across_four_workers() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(
        &config(
            Some(&hook.url()),
            "repeat=off link=https://logs.example.com/be",
        ),
        four_workers(),
    );
    let port = nginx.port;
    send(port, "/", 5); // below min_requests: nothing yet

    // 40 errors: the window crosses both thresholds at the moment the burst completes.
    send(port, "/err", 40);
    let crossed = Instant::now();
    let msgs = hook.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(
        msgs.len(),
        1,
        "no CRITICAL message; log:\n{}",
        nginx.error_log()
    );
    let (received, first) = hook.messages_with_time()[0].clone();
    let delay = received.saturating_duration_since(crossed);
    eprintln!("threshold crossing -> webhook post: {delay:?}");
    assert!(
        delay <= scaled(Duration::from_secs(INTERVAL_S + 2)),
        "posted {delay:?} after the crossing"
    );
    // The tick may land inside the burst, so the exact figures are checked on the metrics.
    let t = title(&first, 0);
    assert!(
        t.starts_with("CRITICAL be: 5xx ") && t.ends_with("% over 10s"),
        "{t}"
    );
    assert_eq!(first["allowed_mentions"]["parse"], serde_json::json!([]));
    let fields = first["embeds"][0]["fields"].to_string();
    assert!(fields.contains("https://logs.example.com/be"), "{fields}");
    assert!(fields.contains("503"), "top codes: {fields}");
    assert!(wait_until(Duration::from_secs(3), || {
        let m = metrics(port);
        metric(&m, "nginx_location_window_requests", &[("location", "be")]) == Some(45.0)
            && metric(&m, "nginx_location_alert_state", &[("location", "be")]) == Some(2.0)
    }));
    let ratio = metric(
        &metrics(port),
        "nginx_location_error_ratio",
        &[("location", "be")],
    );
    assert!((ratio.unwrap() - 40.0 / 45.0).abs() < 1e-9, "{ratio:?}");

    // Enough successes to fall between 5% and 10%: one WARNING.
    send(port, "/", 400);
    let msgs = hook.wait_for_messages(2, Duration::from_secs(5));
    assert_eq!(msgs.len(), 2, "{:?}", embed_titles(&msgs));
    assert!(
        title(&msgs[1], 0).starts_with("WARNING be: 5xx "),
        "{:?}",
        embed_titles(&msgs)
    );

    // Traffic stops; once the window has slid past the errors, one RESOLVED.
    let msgs = hook.wait_for_messages(3, Duration::from_secs(15));
    assert_eq!(msgs.len(), 3, "{:?}", embed_titles(&msgs));
    assert!(
        title(&msgs[2], 0).starts_with("RESOLVED be after"),
        "{:?}",
        embed_titles(&msgs)
    );

    // Nothing more: no duplicate from any of the four workers, accepted or not, over three
    // more evaluation rounds.
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        3,
        Duration::from_secs(10)
    ));
    let all = settle(QUIET, Duration::from_secs(10), || hook.all_titles());
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
    let sent = settle(QUIET, Duration::from_secs(10), || {
        notifications(port, "sent")
    });
    assert_eq!(sent, 3.0);
    assert_eq!(notifications(port, "failed"), 0.0);
}

#[test]
fn below_min_requests_nothing_is_sent() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(
        &config(Some(&hook.url()), "min_requests=20"),
        four_workers(),
    );
    send(nginx.port, "/err", 19);
    // Three evaluation rounds that saw the 19 requests, and nothing was posted.
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        3,
        Duration::from_secs(10)
    ));
    assert_eq!(hook.requests_count(), 0);
    let m = metrics(nginx.port);
    assert_eq!(
        metric(&m, "nginx_location_window_requests", &[("location", "be")]),
        Some(19.0)
    );
    assert_eq!(
        metric(&m, "nginx_location_error_ratio", &[("location", "be")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&m, "nginx_location_alert_state", &[("location", "be")]),
        Some(0.0)
    );
}

#[test]
fn firing_alert_repeats() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&config(Some(&hook.url()), "repeat=2s"), four_workers());
    send(nginx.port, "/err", 30);
    // Errors stay in the 10s window: CRITICAL, then a repeat about every 2s.
    let msgs = hook.wait_for_messages(3, Duration::from_secs(8));
    let t = embed_titles(&msgs);
    assert!(msgs.len() >= 3, "{t:?}");
    assert!(
        t[0].starts_with("CRITICAL be:") && !t[0].contains("still firing"),
        "{t:?}"
    );
    assert!(
        t[1].ends_with("(still firing)") && t[2].ends_with("(still firing)"),
        "{t:?}"
    );
    let times: Vec<Instant> = hook.messages_with_time().iter().map(|(t, _)| *t).collect();
    for w in times.windows(2).take(2) {
        let gap = w[1].duration_since(w[0]);
        assert!(
            gap >= Duration::from_millis(1500) && gap <= Duration::from_millis(3500),
            "repeat gap {gap:?}"
        );
    }
}

#[test]
fn rate_limited_post_is_retried_and_delivered_once() {
    require_module!();
    let hook = WebhookReceiver::start();
    hook.respond_with(vec![(
        429,
        vec![("Content-Type".into(), "application/json".into())],
        r#"{"message": "You are being rate limited.", "retry_after": 0.5, "global": false}"#.into(),
    )]);
    let nginx = Nginx::start(&config(Some(&hook.url()), "repeat=off"), four_workers());
    send(nginx.port, "/err", 30);
    let msgs = hook.wait_for_messages(1, Duration::from_secs(8));
    assert_eq!(msgs.len(), 1);
    // Every request, whatever was answered, once nothing more arrives.
    let reqs = settle(QUIET, Duration::from_secs(10), || hook.requests().len());
    assert_eq!(reqs, 2, "one 429, one accepted: {:?}", hook.all_titles());
    let reqs = hook.requests();
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_millis(450),
        "retry_after not honoured: {gap:?}"
    );
    assert_eq!(hook.messages().len(), 1, "delivered exactly once");
    let sent = settle(QUIET, Duration::from_secs(10), || {
        (
            notifications(nginx.port, "sent"),
            notifications(nginx.port, "retried"),
        )
    });
    assert_eq!(sent, (1.0, 1.0), "(sent, retried)");
}

#[test]
fn hanging_webhook_does_not_slow_requests() {
    require_module!();
    let hook = WebhookReceiver::start();
    hook.set_hang(true);
    let nginx = Nginx::start(&config(Some(&hook.url()), "repeat=off"), four_workers());
    send(nginx.port, "/err", 30);
    assert!(
        hook.wait_for_requests(1, Duration::from_secs(5)) >= 1,
        "no post was attempted"
    );
    // The webhook is now holding the notifier's connection open. A worker waiting for it
    // would hold its requests for the delivery timeout (seconds); a request is a millisecond.
    // Each request on a connection of its own, so that they spread over the four workers.
    // (How much slower requests get meanwhile is ci/bench's measure, not a test's.)
    let slowest = (0..200)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(http_get(nginx.port, "/").status, 200);
            t.elapsed()
        })
        .max()
        .unwrap_or_default();
    assert!(
        slowest < scaled(Duration::from_millis(500)),
        "a request took {slowest:?} while the webhook hung"
    );
    assert_eq!(notifications(nginx.port, "sent"), 0.0);
}

#[test]
fn unreachable_webhook_is_counted_as_failed_and_token_stays_secret() {
    require_module!();
    let dead = closed_port();
    let url = format!("http://127.0.0.1:{dead}/api/webhooks/987654/secret-token-xyz");
    let nginx = Nginx::start(&config(Some(&url), "repeat=off"), four_workers());
    send(nginx.port, "/err", 30);
    assert!(
        wait_until(Duration::from_secs(10), || notifications(
            nginx.port, "retried"
        ) >= 1.0),
        "no retry counted"
    );
    // Six attempts with 1, 2, 4, 8, 16s backoff (+-25%): failed within about 40s.
    assert!(
        wait_until(Duration::from_secs(60), || notifications(
            nginx.port, "failed"
        ) >= 1.0),
        "no failure counted; log:\n{}",
        nginx.error_log()
    );
    assert_eq!(http_get(nginx.port, "/").status, 200, "nginx keeps serving");
    let log = nginx.error_log();
    assert!(
        !log.contains("secret-token-xyz"),
        "token in the error log:\n{log}"
    );
    assert!(
        log.contains("/api/webhooks/987654/***"),
        "redacted URL expected:\n{log}"
    );
    let text = http_get(nginx.port, "/status_metrics").text();
    assert!(!text.contains("secret-token-xyz"));
    let json = http_get(nginx.port, "/status_metrics?format=json").text();
    assert!(!json.contains("secret-token-xyz"));
    assert!(!log.contains("[alert]") && !log.contains("[crit]") && !log.contains("panicked"));
}

#[test]
fn reload_while_critical_sends_no_second_critical() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&config(Some(&hook.url()), "repeat=off"), four_workers());
    send(nginx.port, "/err", 40);
    assert_eq!(hook.wait_for_messages(1, Duration::from_secs(8)).len(), 1);
    nginx.reload();
    // Three rounds of the new workers' evaluator: no second CRITICAL, accepted or not.
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        3,
        Duration::from_secs(10)
    ));
    let t = hook.all_titles();
    assert_eq!(t.len(), 1, "a reload must not repeat the alert: {t:?}");
    // The new workers carry the incident on: it resolves once, with its full duration.
    hook.wait_for_messages(2, Duration::from_secs(15));
    let t = settle(QUIET, Duration::from_secs(10), || hook.all_titles());
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t[1].starts_with("RESOLVED be after"), "{t:?}");
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
}

#[test]
fn without_webhook_alerts_go_to_the_error_log() {
    require_module!();
    let nginx = Nginx::start(&config(None, "repeat=off"), four_workers());
    send(nginx.port, "/err", 30);
    assert!(
        nginx.wait_for_log("[warn]", Duration::from_secs(5))
            && nginx.wait_for_log(
                "status_alert: CRITICAL be: 5xx 100.0% over 10s",
                Duration::from_secs(5)
            ),
        "{}",
        nginx.error_log()
    );
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        3,
        Duration::from_secs(10)
    ));
    let lines: Vec<String> = nginx
        .error_log()
        .lines()
        .filter(|l| l.contains("status_alert: CRITICAL"))
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 1, "one CRITICAL line, 3 rounds on: {lines:?}");
    assert!(lines[0].contains("[warn]"), "{}", lines[0]);
    assert!(lines[0].contains("30/30 requests"), "{}", lines[0]);
}

/// Threads of `pid` from /proc, 0 if the process is gone.
fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

#[test]
fn workers_stay_single_threaded_and_the_helper_exits_with_nginx() {
    require_module!();
    let hook = WebhookReceiver::start();
    let upstream = Upstream::start();
    let block = config(Some(&hook.url()), "repeat=off").replace(
        "return 200 \"ok\"; }",
        &format!(
            "status_alert_probe http://127.0.0.1:{}/health interval=1s timeout=500ms; \
             return 200 \"ok\"; }}",
            upstream.port
        ),
    );
    let mut nginx = Nginx::start(&block, four_workers());
    assert!(wait_until(Duration::from_secs(5), || upstream
        .hits("/health")
        >= 1));
    let workers = nginx.worker_pids();
    assert_eq!(workers.len(), 4);
    // The webhook thread lives in one helper process, nobody's child in nginx.
    let helpers = helper_processes(nginx.pid());
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    for w in &workers {
        assert!(children_of(*w).is_empty(), "worker {w} has children");
    }
    let helper = helpers[0];
    let comm = std::fs::read_to_string(format!("/proc/{helper}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "status-alert");
    let cmdline = std::fs::read(format!("/proc/{helper}/cmdline")).unwrap_or_default();
    let title = String::from_utf8_lossy(&cmdline);
    assert_eq!(
        title.trim_end_matches('\0'),
        "nginx: status alert helper",
        "what ps shows for the helper"
    );
    // Probes run on worker 0's event loop: the helper has its main thread and the notifier's,
    // and none per probe target.
    assert_eq!(threads(helper), 2, "helper main + notifier thread expected");
    for w in &workers {
        assert_eq!(threads(*w), 1, "worker {w} must stay single-threaded");
    }
    // The helper delivers alerts end to end.
    send(nginx.port, "/err", 30);
    assert_eq!(hook.wait_for_messages(1, Duration::from_secs(8)).len(), 1);

    let log_before_stop = nginx.error_log();
    // Gracefully: a stop that took SIGKILL would end the helper by force too.
    assert_eq!(nginx.stop(), Stopped::Gracefully, "{}", nginx.error_log());
    assert!(
        wait_until(Duration::from_secs(5), || !process_alive(helper)),
        "the helper process outlived nginx"
    );
    assert!(
        !log_before_stop.contains("unknown process"),
        "{log_before_stop}"
    );
}

#[test]
fn a_killed_helper_is_restarted_and_alerts_still_flow() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&config(Some(&hook.url()), "repeat=off"), four_workers());
    let helper = || helper_processes(nginx.pid());
    assert!(wait_until(Duration::from_secs(5), || helper().len() == 1));
    let first = helper()[0];
    assert!(send_signal(first, "KILL"));
    assert!(
        wait_until(Duration::from_secs(5), || {
            let now = helper();
            now.len() == 1 && now[0] != first
        }),
        "no new helper; log:\n{}",
        nginx.error_log()
    );
    assert!(nginx.wait_for_log("the helper process exited", Duration::from_secs(2)));
    assert!(nginx.wait_for_log("started a new helper process", Duration::from_secs(2)));
    assert!(!nginx.error_log().contains("unknown process"));
    send(nginx.port, "/err", 30);
    hook.wait_for_messages(1, Duration::from_secs(8));
    let t = settle(QUIET, Duration::from_secs(10), || hook.all_titles());
    assert_eq!(t.len(), 1, "{t:?}");
    assert!(t[0].starts_with("CRITICAL be:"), "{t:?}");
}

#[test]
fn each_destination_gets_its_format_and_its_own_counts() {
    require_module!();
    let discord = WebhookReceiver::start();
    let other = Upstream::start();
    other.set("/slack", 200, "ok");
    other.set("/json", 204, "");
    let block = config(None, "repeat=off").replace(
        "status_alert_interval",
        &format!(
            "status_alert_webhook {};\n        \
             status_alert_webhook {} format=slack;\n        \
             status_alert_webhook {} format=json;\n        status_alert_interval",
            discord.url(),
            other.url("/slack"),
            other.url("/json"),
        ),
    );
    let nginx = Nginx::start(&block, four_workers());
    send(nginx.port, "/err", 30);
    assert_eq!(
        discord.wait_for_messages(1, Duration::from_secs(8)).len(),
        1
    );
    assert!(wait_until(Duration::from_secs(5), || other.hits("/slack")
        >= 1
        && other.hits("/json") >= 1));
    let body = |path: &str| -> Value {
        let r = other
            .requests()
            .into_iter()
            .find(|r| r.path() == path)
            .expect("request");
        serde_json::from_slice(&r.body).expect("JSON body")
    };
    // Slack: one coloured attachment per event, no mention can ping.
    let slack = body("/slack");
    let attachment = &slack["attachments"][0];
    assert!(
        attachment["color"]
            .as_str()
            .is_some_and(|c| c.starts_with('#')),
        "{slack}"
    );
    assert!(slack.to_string().contains("CRITICAL be"), "{slack}");
    assert!(!slack.to_string().contains("<!"), "{slack}");
    // JSON: versioned, one object per event, everything the Discord message has.
    let json = body("/json");
    assert_eq!(json["version"], 1, "{json}");
    let event = &json["events"][0];
    assert_eq!(event["kind"], "location", "{json}");
    assert_eq!(event["name"], "be", "{json}");
    assert_eq!(event["level"], "critical", "{json}");
    // Counted per destination, labelled by format and position, never by URL.
    let sent = |d: &str| {
        metric(
            &metrics(nginx.port),
            "nginx_alert_notifications_total",
            &[("destination", d), ("result", "sent")],
        )
    };
    let counts = settle(QUIET, Duration::from_secs(10), || {
        ["discord-1", "slack-2", "json-3"].map(sent)
    });
    assert_eq!(counts, [Some(1.0); 3], "discord-1, slack-2, json-3");
    assert_eq!((other.hits("/slack"), other.hits("/json")), (1, 1));
    assert_eq!(discord.all_titles().len(), 1, "{:?}", discord.all_titles());
    let text = http_get(nginx.port, "/status_metrics").text();
    assert!(!text.contains("127.0.0.1"), "URLs stay out of the metrics");
}

#[test]
fn after_a_log_reopen_a_new_helper_writes_to_the_new_log_and_alerts_flow() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&config(Some(&hook.url()), "repeat=off"), four_workers());
    let helper = || helper_processes(nginx.pid());
    assert!(wait_until(Duration::from_secs(5), || helper().len() == 1));
    let first = helper()[0];
    let log = nginx.dir.join("error.log");
    std::fs::rename(&log, nginx.dir.join("error.log.1")).unwrap();
    assert!(nginx.signal("USR1"), "nginx -s reopen");
    assert!(
        wait_until(Duration::from_secs(5), || {
            let now = helper();
            now.len() == 1 && now[0] != first && !process_alive(first)
        }),
        "the helper still writes to the rotated log: {:?} (was {first})",
        helper()
    );
    let stderr = std::fs::read_link(format!("/proc/{}/fd/2", helper()[0])).unwrap();
    assert_eq!(
        stderr, log,
        "the new helper's stderr is the reopened error log"
    );
    assert!(nginx.wait_for_log("a new helper process takes over", Duration::from_secs(2)));
    send(nginx.port, "/err", 30);
    let msgs = hook.wait_for_messages(1, Duration::from_secs(8));
    assert!(embed_titles(&msgs)[0].starts_with("CRITICAL be:"));
    assert_eq!(
        metric(
            &metrics(nginx.port),
            "nginx_status_alert_helper_restarts_total",
            &[]
        ),
        Some(0.0),
        "a reopen is no restart"
    );
}
