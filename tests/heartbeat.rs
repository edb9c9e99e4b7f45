//! The dead man's switch (`status_alert_heartbeat`) with a real nginx: beats follow evaluation
//! rounds (GET, about once per interval), stop while worker 0 is stopped and resume after, are
//! counted as destination `heartbeat`; alerts never go to the monitor and still reach the error
//! log or the webhook as without a heartbeat.

use std::thread;
use std::time::{Duration, Instant};

use status_alert_testkit::*;

/// Path of the monitor's ping URL.
const PING: &str = "/ping";

/// `be` on `/` (200) and `/err` (503), metrics, 1 s evaluation, and `directives` before.
fn config(directives: &str) -> String {
    format!(
        r#"
        status_alert_interval 1s;
        {directives}
        server {{
            listen 127.0.0.1:{{PORT}};
            location / {{ status_alert be window=10s repeat=off; return 200 "ok"; }}
            location /err {{ status_alert be window=10s repeat=off; return 503; }}
            location = /status_metrics {{ status_alert off; status_metrics; }}
        }}
        "#
    )
}

/// Arrival times of the beats the monitor received.
fn beats(monitor: &Upstream) -> Vec<Instant> {
    monitor
        .requests()
        .into_iter()
        .filter(|r| r.path() == PING)
        .map(|r| r.at)
        .collect()
}

/// Every request the monitor got is a GET of the ping URL without a body.
fn assert_only_pings(monitor: &Upstream) {
    for r in monitor.requests() {
        assert_eq!((r.method.as_str(), r.path()), ("GET", PING), "{r:?}");
        assert!(r.body.is_empty(), "{r:?}");
    }
}

/// `nginx_alert_notifications_total{destination, result}`, 0 when absent.
fn notifications(nginx: &Nginx, destination: &str, result: &str) -> f64 {
    metric(
        &prom(nginx),
        "nginx_alert_notifications_total",
        &[("destination", destination), ("result", result)],
    )
    .unwrap_or(0.0)
}

/// Pid of the evaluating process, from its `status_alert: evaluating ... in this process` line.
fn evaluating_pid(nginx: &Nginx) -> u32 {
    let needle = "in this process";
    assert!(
        nginx.wait_for_log(needle, Duration::from_secs(5)),
        "{}",
        nginx.error_log()
    );
    let log = nginx.error_log();
    let line = log
        .lines()
        .find(|l| l.contains("status_alert: evaluating") && l.contains(needle))
        .expect("the evaluating line");
    // `2026/11/22 00:34:14 [notice] 30547#30547: status_alert: evaluating ...`
    line.split("] ")
        .nth(1)
        .and_then(|rest| rest.split('#').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// Sends SIGCONT to a stopped process when dropped, so that a failing test leaves none behind.
struct Continue(u32);

impl Drop for Continue {
    fn drop(&mut self) {
        send_signal(self.0, "CONT");
    }
}

#[test]
fn beats_follow_evaluation_and_stop_while_worker_0_is_stopped() {
    require_module!();
    let monitor = Upstream::start();
    let nginx = Nginx::start(
        &config(&format!(
            "status_alert_heartbeat {} interval=1s;",
            monitor.url(PING)
        )),
        NginxOpts::default(),
    );

    // Beats arrive, one per evaluation round and interval: about one a second.
    assert!(
        wait_until(Duration::from_secs(10), || beats(&monitor).len() >= 5),
        "beats: {:?}\n{}",
        beats(&monitor),
        nginx.error_log()
    );
    let first = beats(&monitor);
    for pair in first.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= Duration::from_millis(800) && gap <= Duration::from_millis(2500),
            "gap {gap:?} between beats: {first:?}"
        );
    }
    assert_only_pings(&monitor);

    // Worker 0 stopped: no evaluation, no beat (one already handed to the helper may still
    // arrive in the first moment).
    let worker_0 = evaluating_pid(&nginx);
    assert!(
        nginx.worker_pids().contains(&worker_0),
        "{worker_0} is no worker of {:?}",
        nginx.worker_pids()
    );
    let stopped = Continue(worker_0);
    assert!(send_signal(worker_0, "STOP"));
    thread::sleep(Duration::from_millis(1500));
    let frozen = beats(&monitor).len();
    thread::sleep(Duration::from_secs(5));
    assert_eq!(
        beats(&monitor).len(),
        frozen,
        "beats while worker 0 was stopped"
    );

    // Continued: the beats resume.
    drop(stopped);
    assert!(
        wait_until(Duration::from_secs(5), || beats(&monitor).len()
            >= frozen + 2),
        "no beats after SIGCONT: {} then {}",
        frozen,
        beats(&monitor).len()
    );
    assert_only_pings(&monitor);

    // Each beat is counted as sent to destination "heartbeat", and the URL stays out.
    let counted = |n: usize| notifications(&nginx, "heartbeat", "sent") >= n as f64;
    let received = beats(&monitor).len();
    assert!(
        wait_until(Duration::from_secs(3), || counted(received)),
        "{} beats received, {} counted",
        received,
        notifications(&nginx, "heartbeat", "sent")
    );
    let sent = notifications(&nginx, "heartbeat", "sent");
    assert!(
        sent <= beats(&monitor).len() as f64,
        "{sent} counted as sent, {} received",
        beats(&monitor).len()
    );
    assert_eq!(notifications(&nginx, "heartbeat", "failed"), 0.0);
    let text = http_get(nginx.port, "/status_metrics").text();
    assert!(
        !text.contains(PING),
        "the ping URL is in the metrics:\n{text}"
    );
}

#[test]
fn with_only_a_heartbeat_alerts_still_go_to_the_error_log() {
    require_module!();
    let monitor = Upstream::start();
    let nginx = Nginx::start(
        &config(&format!(
            "status_alert_heartbeat {} interval=1s;",
            monitor.url(PING)
        )),
        NginxOpts::default(),
    );
    let statuses = hammer(nginx.port, "/err", 30, 4);
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    let needle = "status_alert: CRITICAL be: 5xx 100.0% over 10s";
    assert!(
        nginx.wait_for_log(needle, Duration::from_secs(8)),
        "{}",
        nginx.error_log()
    );
    let log = nginx.error_log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("[warn]"), "{}", lines[0]);
    assert!(!lines[0].contains("queued for delivery"), "{}", lines[0]);
    assert!(wait_until(Duration::from_secs(3), || !beats(&monitor).is_empty()));
    assert_only_pings(&monitor);
    nginx.assert_log_clean();
}

#[test]
fn a_webhook_gets_the_alerts_and_keeps_its_label_the_monitor_only_beats() {
    require_module!();
    let monitor = Upstream::start();
    let hook = WebhookReceiver::start();
    // The heartbeat comes first in the configuration; the webhook is still `discord-1`.
    let nginx = Nginx::start(
        &config(&format!(
            "status_alert_heartbeat {} interval=1s;\n        status_alert_webhook {};",
            monitor.url(PING),
            hook.url()
        )),
        NginxOpts::default(),
    );
    let statuses = hammer(nginx.port, "/err", 30, 4);
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    let messages = hook.wait_for_messages(1, Duration::from_secs(8));
    assert_eq!(embed_titles(&messages).len(), 1, "{messages:?}");
    assert!(embed_titles(&messages)[0].starts_with("CRITICAL be:"));
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
    assert!(wait_until(Duration::from_secs(3), || !beats(&monitor).is_empty()));
    assert_only_pings(&monitor);
    assert!(
        wait_until(Duration::from_secs(3), || notifications(
            &nginx,
            "discord-1",
            "sent"
        ) == 1.0
            && notifications(&nginx, "heartbeat", "sent") >= 1.0),
        "{}",
        http_get(nginx.port, "/status_metrics").text()
    );
    nginx.assert_log_clean();
}
