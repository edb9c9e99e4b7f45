//! Latency and error-budget alerts, histogram buckets and incident history with a real nginx,
//! a real slow upstream and a local webhook receiver (README, status_alert: latency= and slo=;
//! status_alert_buckets; Metrics).

use std::thread;
use std::time::{Duration, Instant};

use status_alert_testkit::*;

/// Waits until a title starting with `prefix` arrives; returns how long it took.
fn wait_title(hook: &WebhookReceiver, prefix: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    assert!(
        wait_until(timeout, || hook
            .titles()
            .iter()
            .any(|t| t.starts_with(prefix))),
        "no {prefix:?} within {timeout:?}: {:?}",
        hook.titles()
    );
    start.elapsed()
}

fn send(port: u16, path: &str, n: usize) {
    let statuses = hammer(port, path, n, 4);
    assert!(statuses.iter().all(|s| *s != 0), "transport errors");
}

#[test]
fn latency_warning_critical_resolved_each_once() {
    require_module!();
    let upstream = Upstream::start();
    let hook = WebhookReceiver::start();
    let block = format!(
        r#"
        status_alert_webhook {hook};
        status_alert_interval 1s;
        server {{
            listen 127.0.0.1:{{PORT}};
            location /slow {{
                status_alert api window=4s min_requests=5 repeat=off warn=off crit=100%
                             latency=p95:200ms:600ms;
                proxy_pass http://127.0.0.1:{up};
            }}
            location = /status_metrics {{ status_alert off; status_metrics; }}
        }}
        "#,
        hook = hook.url(),
        up = upstream.port
    );
    let nginx = Nginx::start(&block, NginxOpts::default());

    upstream.set_delay("/slow", Duration::from_millis(300));
    send(nginx.port, "/slow", 12);
    let took = wait_title(&hook, "WARNING api: p95", Duration::from_secs(4));
    assert!(took <= Duration::from_secs(3), "interval + 2 s: {took:?}");

    upstream.set_delay("/slow", Duration::from_millis(900));
    send(nginx.port, "/slow", 12);
    wait_title(&hook, "CRITICAL api: p95", Duration::from_secs(4));
    let text = http_get(nginx.port, "/status_metrics").text();
    let q = metric(
        &parse_prometheus(&text),
        "nginx_location_latency_seconds",
        &[("location", "api"), ("quantile", "0.95")],
    )
    .expect("latency gauge");
    assert!(q >= 0.6, "p95 {q}");

    // No more traffic: once the window has passed, below min_requests: resolved.
    upstream.set_delay("/slow", Duration::ZERO);
    wait_title(&hook, "RESOLVED api latency", Duration::from_secs(8));
    let t = settle(Duration::from_secs(3), Duration::from_secs(10), || {
        hook.all_titles()
    });
    assert_eq!(t.len(), 3, "each event once: {t:?}");
    assert!(
        t[0].starts_with("WARNING") && t[1].starts_with("CRITICAL"),
        "{t:?}"
    );
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
    promtool_check(&http_get(nginx.port, "/status_metrics").text()).unwrap();
}

#[test]
fn slo_burn_pages_on_a_burst_and_stays_quiet_on_a_trickle() {
    require_module!();
    let hook = WebhookReceiver::start();
    // window=2s: burn-rate windows 2s, 12s, 24s, 144s. The 5xx-share alert is out of the way.
    let block = format!(
        r#"
        status_alert_webhook {hook};
        status_alert_interval 1s;
        server {{
            listen 127.0.0.1:{{PORT}};
            location /ok {{ status_alert svc window=2s min_requests=5 warn=off crit=100%
                                           slo=99% repeat=off; return 200; }}
            location /err {{ status_alert svc window=2s min_requests=5 warn=off crit=100%
                                            slo=99% repeat=off; return 503; }}
            location = /status_metrics {{ status_alert off; status_metrics; }}
        }}
        "#,
        hook = hook.url()
    );
    let nginx = Nginx::start(&block, NginxOpts::default());
    // A trickle below the budget: 0.5 % errors, burn 0.5.
    for _ in 0..3 {
        send(nginx.port, "/ok", 199);
        send(nginx.port, "/err", 1);
        thread::sleep(Duration::from_millis(700));
    }
    // Two evaluation rounds after the last of it: still nothing.
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        2,
        Duration::from_secs(10)
    ));
    assert!(hook.all_titles().is_empty(), "{:?}", hook.all_titles());
    let m = parse_prometheus(&http_get(nginx.port, "/status_metrics").text());
    let burn = metric(
        &m,
        "nginx_location_slo_burn_rate",
        &[("location", "svc"), ("window", "24s")],
    );
    assert!(burn.is_some_and(|b| b < 1.0), "{burn:?}");

    // A burst: half the requests fail, burn 50 over the short and the long window.
    send(nginx.port, "/ok", 300);
    send(nginx.port, "/err", 300);
    let took = wait_title(
        &hook,
        "CRITICAL svc: error budget burning",
        Duration::from_secs(5),
    );
    assert!(took <= Duration::from_secs(3), "interval + 2 s: {took:?}");
    // One page for the burst; as it leaves the short windows the level may step down later
    // (WARNING, RESOLVED), but never pages again.
    let t = settle(Duration::from_secs(3), Duration::from_secs(10), || {
        hook.all_titles()
    });
    let pages = t.iter().filter(|t| t.starts_with("CRITICAL svc:")).count();
    assert_eq!(pages, 1, "{t:?}");
    assert!(
        t[0].starts_with("CRITICAL svc:") && t[0].contains("(slo 99%)"),
        "{t:?}"
    );
}

#[test]
fn incidents_are_counted_and_buckets_change_by_reload() {
    require_module!();
    let block = |buckets: &str| {
        format!(
            r#"
            {buckets}
            status_alert_interval 1s;
            server {{
                listen 127.0.0.1:{{PORT}};
                location /ok {{ status_alert be window=2s min_requests=5; return 200; }}
                location /err {{ status_alert be window=2s min_requests=5; return 503; }}
                location = /status_metrics {{ status_alert off; status_metrics; }}
            }}
            "#
        )
    };
    let nginx = Nginx::start(&block(""), NginxOpts::default());
    let level = || {
        metric(
            &parse_prometheus(&http_get(nginx.port, "/status_metrics").text()),
            "nginx_location_alert_state",
            &[("location", "be")],
        )
        .unwrap_or(-1.0)
    };
    for _ in 0..2 {
        send(nginx.port, "/err", 20);
        assert!(wait_until(Duration::from_secs(4), || level() == 2.0));
        assert!(wait_until(Duration::from_secs(6), || level() == 0.0));
    }
    let text = http_get(nginx.port, "/status_metrics").text();
    let m = parse_prometheus(&text);
    let kind = [("location", "be"), ("kind", "errors")];
    assert_eq!(
        metric(&m, "nginx_location_incidents_total", &kind),
        Some(2.0),
        "{text}"
    );
    let secs = metric(&m, "nginx_location_incident_seconds_total", &kind).unwrap_or(0.0);
    assert!(secs >= 2.0, "{secs}");
    let json = http_get(nginx.port, "/status_metrics?format=json").json();
    assert!(json.to_string().contains("incidents"), "{json}");
    promtool_check(&text).unwrap();

    // Other buckets: the histogram starts from zero, said at notice; counts stay.
    nginx.write_config(&block("status_alert_buckets 1ms 1s;"));
    nginx.reload();
    assert!(nginx.wait_for_log("counts with new histogram buckets", Duration::from_secs(3)));
    let m = parse_prometheus(&http_get(nginx.port, "/status_metrics").text());
    let bucket = |le: &str| {
        metric(
            &m,
            "nginx_location_request_duration_seconds_bucket",
            &[("location", "be"), ("le", le)],
        )
    };
    assert_eq!(bucket("1"), Some(0.0), "histogram restarted");
    assert_eq!(bucket("0.005"), None, "old bounds gone");
    let total: f64 = m
        .iter()
        .filter(|(n, l, _)| {
            n == "nginx_location_requests_total"
                && l.iter().any(|(k, v)| k == "location" && v == "be")
        })
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(total, 40.0, "request counters survive");
    nginx.assert_log_clean();
}
