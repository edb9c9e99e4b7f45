//! Counting and `status_metrics` with a real nginx: exact counts across workers, shared NAMEs,
//! error_page, reloads, and the exposition format checked by promtool.

use std::collections::HashSet;
use std::time::Duration;

use status_alert_testkit::*;

fn scrape_once(port: u16) -> Vec<Sample> {
    let r = http_get(port, "/status_metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    parse_prometheus(&r.text())
}

/// Metrics once `requests` requests have been counted. A request is counted in the log phase,
/// just after its response is sent, so a scrape served by the other worker can arrive a moment
/// before it: poll until the total is reached, then until the metrics stop changing, so that a
/// request counted twice (or under the wrong NAME) still shows up in the exact checks.
fn scrape(port: u16, requests: u64) -> Vec<Sample> {
    let total = |m: &[Sample]| -> u64 {
        m.iter()
            .filter(|(n, _, _)| n == "nginx_location_requests_total")
            .map(|(_, _, v)| *v as u64)
            .sum()
    };
    let reached = wait_until(Duration::from_secs(5), || {
        total(&scrape_once(port)) >= requests
    });
    let mut m = Vec::new();
    settle(Duration::from_millis(300), Duration::from_secs(5), || {
        m = scrape_once(port);
        m.iter()
            .filter(|(n, _, _)| n == "nginx_location_requests_total")
            .map(|(_, l, v)| (l.clone(), *v as u64))
            .collect::<Vec<_>>()
    });
    assert!(
        reached,
        "only {} of {requests} requests were counted",
        total(&m)
    );
    m
}

fn count(samples: &[Sample], name: &str, status: &str) -> u64 {
    metric(
        samples,
        "nginx_location_requests_total",
        &[("location", name), ("status", status)],
    )
    .unwrap_or(0.0) as u64
}

const METRICS_LOCATION: &str = "location = /status_metrics { status_alert off; status_metrics; }";

#[test]
fn exact_counts_across_two_workers_under_concurrency() {
    require_module!();
    // Answers 120 ms and 300 ms late: requests whose duration falls in a known bucket.
    let timed = Upstream::start();
    timed.set_delay("/d120", Duration::from_millis(120));
    timed.set_delay("/d300", Duration::from_millis(300));
    let nginx = Nginx::start(
        &format!(
            r#"
            server {{
                listen 127.0.0.1:{{PORT}} reuseport;
                add_header X-Worker $pid always;
                location /ok {{ status_alert api; return 200 "ok"; }}
                location /err {{ status_alert api; return 503; }}
                location /missing {{ status_alert api; return 404; }}
                location /slow {{ status_alert slow; proxy_pass http://127.0.0.1:{{PORT2}}; }}
                location /timed/ {{ status_alert timed; proxy_pass http://127.0.0.1:{up}/; }}
                {METRICS_LOCATION}
            }}
            server {{
                listen 127.0.0.1:{{PORT2}};
                location / {{ return 200; }}
            }}
            "#,
            up = timed.port
        ),
        NginxOpts {
            worker_processes: 2,
            ..Default::default()
        },
    );
    let port = nginx.port;

    // Both workers must take part, or the test would not show that counters are shared.
    let mut workers = HashSet::new();
    for _ in 0..200 {
        if let Some(w) = http_get(port, "/ok").header("X-Worker") {
            workers.insert(w.to_string());
        }
    }
    assert_eq!(
        workers.len(),
        2,
        "requests did not reach both workers: {workers:?}"
    );

    let ok = hammer(port, "/ok", 3000, 8);
    let err = hammer(port, "/err", 1000, 8);
    let missing = hammer(port, "/missing", 500, 4);
    let slow = hammer(port, "/slow", 300, 4);
    let t120 = hammer(port, "/timed/d120", 20, 4);
    let t300 = hammer(port, "/timed/d300", 12, 4);
    assert!(
        t120.iter().chain(&t300).all(|s| *s == 200),
        "{t120:?} {t300:?}"
    );
    assert!(ok.iter().all(|s| *s == 200), "transport errors in /ok");
    assert!(err.iter().all(|s| *s == 503));
    assert!(missing.iter().all(|s| *s == 404));
    assert!(slow.iter().all(|s| *s == 200));

    let m = scrape(port, 5032);
    assert_eq!(count(&m, "api", "200"), 3200); // + the 200 worker-discovery requests
    assert_eq!(count(&m, "api", "503"), 1000);
    assert_eq!(count(&m, "api", "404"), 500);
    assert_eq!(count(&m, "slow", "200"), 300);
    assert_eq!(
        count(&m, "api", "500"),
        0,
        "codes never seen are not exported"
    );
    assert!(
        !m.iter()
            .any(|(n, l, _)| n == "nginx_location_requests_total"
                && l.iter().any(|(k, v)| k == "status" && v == "500")),
        "a code that was never seen must not appear"
    );

    // Histograms, bucket by bucket. Request time is nginx's cached millisecond clock, read when
    // the request starts and when it is logged: a `return` is answered within one pass of the
    // event loop, so it takes 0 ms; a proxied request takes at least its upstream's delay
    // (and well under the next bound up).
    let h = "nginx_location_request_duration_seconds";
    let bucket = |name: &str, le: &str| {
        metric(
            &m,
            &format!("{h}_bucket"),
            &[("location", name), ("le", le)],
        )
        .unwrap_or_else(|| panic!("bucket {name} le={le} missing"))
    };
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    let api: Vec<f64> = bounds.iter().map(|le| bucket("api", le)).collect();
    assert_eq!(
        api,
        vec![4700.0; bounds.len()],
        "api: every request in le=0.005"
    );
    let timed: Vec<f64> = bounds.iter().map(|le| bucket("timed", le)).collect();
    let want = [
        0.0, 0.0, 0.0, 0.0, 0.0, 20.0, 32.0, 32.0, 32.0, 32.0, 32.0, 32.0,
    ];
    assert_eq!(timed, want, "timed: 20 in (0.1, 0.25], 12 in (0.25, 0.5]");
    for (name, n) in [("api", 4700.0), ("timed", 32.0)] {
        assert_eq!(
            metric(&m, &format!("{h}_count"), &[("location", name)]),
            Some(n)
        );
    }
    let sum = metric(&m, &format!("{h}_sum"), &[("location", "timed")]).unwrap_or(0.0);
    assert!(
        (20.0 * 0.12 + 12.0 * 0.3..32.0 * 0.5).contains(&sum),
        "timed: _sum {sum}"
    );
    nginx.assert_log_clean();
}

#[test]
fn shared_name_off_and_unnamed_locations() {
    require_module!();
    let nginx = Nginx::start(
        &format!(
            r#"
            server {{
                listen 127.0.0.1:{{PORT}};
                location /a {{ status_alert shop; return 200; }}
                location /b {{ status_alert shop; return 500; }}
                location /off {{ status_alert off; return 200; }}
                location /none {{ return 200; }}
                {METRICS_LOCATION}
            }}
            "#
        ),
        NginxOpts::default(),
    );
    for path in ["/a", "/a", "/b", "/off", "/none", "/none"] {
        http_get(nginx.port, path);
    }
    let m = scrape(nginx.port, 3);
    assert_eq!(count(&m, "shop", "200"), 2);
    assert_eq!(count(&m, "shop", "500"), 1);
    let total: f64 = m
        .iter()
        .filter(|(n, _, _)| n == "nginx_location_requests_total")
        .map(|(_, _, v)| v)
        .sum();
    assert_eq!(total, 3.0, "only the two shop locations count");
}

#[test]
fn error_page_counts_the_final_status_once_under_the_first_name() {
    require_module!();
    let upstream = Upstream::start();
    upstream.set("/boom", 502, "bad gateway");
    let nginx = Nginx::start(
        &format!(
            r#"
            server {{
                listen 127.0.0.1:{{PORT}};
                location /api/ {{
                    status_alert api;
                    proxy_pass http://127.0.0.1:{up}/;
                    proxy_intercept_errors on;
                    error_page 502 /50x.html;
                }}
                location /soft/ {{
                    status_alert soft;
                    proxy_pass http://127.0.0.1:{up}/;
                    proxy_intercept_errors on;
                    error_page 502 =200 /fallback;
                }}
                location = /50x.html {{ status_alert static; return 503 "sorry"; }}
                location = /fallback {{ return 200 "cached copy"; }}
                location /old {{ rewrite ^ /api/ok last; }}
                {METRICS_LOCATION}
            }}
            "#,
            up = upstream.port
        ),
        NginxOpts::default(),
    );
    // Without "=code" the error page is served with the original status.
    let r = http_get(nginx.port, "/api/boom");
    assert_eq!((r.status, r.text().as_str()), (502, "sorry"));
    let r = http_get(nginx.port, "/soft/boom");
    assert_eq!((r.status, r.text().as_str()), (200, "cached copy"));
    assert_eq!(http_get(nginx.port, "/old").status, 200);

    let m = scrape(nginx.port, 3);
    // Counted once, under the API the client asked for, not under the error page's NAME.
    assert_eq!(count(&m, "api", "502"), 1);
    assert_eq!(count(&m, "static", "502") + count(&m, "static", "503"), 0);
    // "=200": the client got 200, so 200 is what counts.
    assert_eq!(count(&m, "soft", "200"), 1);
    // A location without a NAME that rewrites into one is counted there.
    assert_eq!(count(&m, "api", "200"), 1);
}

#[test]
fn reload_keeps_counters_when_names_are_added_removed_or_the_zone_resized() {
    require_module!();
    let block = |extra: &str, zone: &str| {
        format!(
            r#"
            {zone}
            server {{
                listen 127.0.0.1:{{PORT}};
                location /a {{ status_alert a; return 200; }}
                location /b {{ status_alert b; return 500; }}
                {extra}
                {METRICS_LOCATION}
            }}
            "#
        )
    };
    let nginx = Nginx::start(&block("", ""), NginxOpts::default());
    for _ in 0..5 {
        http_get(nginx.port, "/a");
    }
    http_get(nginx.port, "/b");

    // Add a NAME: the zone keeps its size (headroom) and is reused in place.
    nginx.write_config(&block("location /c { status_alert c; return 404; }", ""));
    nginx.reload();
    http_get(nginx.port, "/c");
    let m = scrape(nginx.port, 7);
    assert_eq!((count(&m, "a", "200"), count(&m, "b", "500")), (5, 1));
    assert_eq!(count(&m, "c", "404"), 1);

    // Resize the zone: a new zone is created and counters are copied into it by NAME.
    nginx.write_config(&block(
        "location /c { status_alert c; return 404; }",
        "status_alert_zone 4m;",
    ));
    nginx.reload();
    let m = scrape(nginx.port, 7);
    assert_eq!((count(&m, "a", "200"), count(&m, "b", "500")), (5, 1));
    assert_eq!(count(&m, "c", "404"), 1);

    // Remove "b", then bring it back: its counters come back with it.
    let without_b = block("", "status_alert_zone 4m;").replace(
        "location /b { status_alert b; return 500; }",
        "location /b { return 500; }",
    );
    nginx.write_config(&without_b);
    nginx.reload();
    let m = scrape(nginx.port, 5);
    assert_eq!(count(&m, "b", "500"), 0, "removed NAMEs are not exported");
    assert_eq!(count(&m, "a", "200"), 5);
    nginx.write_config(&block("", "status_alert_zone 4m;"));
    nginx.reload();
    let m = scrape(nginx.port, 6);
    assert_eq!(count(&m, "b", "500"), 1);
    nginx.assert_log_clean();
}

#[test]
fn metrics_formats_methods_and_promtool() {
    require_module!();
    let nginx = Nginx::start(
        &format!(
            r#"
            server {{
                listen 127.0.0.1:{{PORT}};
                location /y {{ status_alert api.v2/users; return 418; }}
                {METRICS_LOCATION}
            }}
            "#
        ),
        NginxOpts::default(),
    );
    http_get(nginx.port, "/y");
    http_get(nginx.port, "/y");
    // Exact output checks below: first let both /y be counted.
    assert_eq!(count(&scrape(nginx.port, 2), "api.v2/users", "418"), 2);

    let r = http_get(nginx.port, "/status_metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    assert!(text.contains("# TYPE nginx_location_requests_total counter"));
    assert!(text.contains("# HELP nginx_location_request_duration_seconds "));
    assert!(
        text.contains("nginx_location_requests_total{location=\"api.v2/users\",status=\"418\"} 2")
    );
    // The evaluator's own families (it watches itself), with the default
    // status_alert_interval.
    for family in [
        "# TYPE nginx_status_alert_evaluations_total counter",
        "# TYPE nginx_status_alert_last_evaluation_timestamp_seconds gauge",
        "# TYPE nginx_status_alert_helper_restarts_total counter",
        "nginx_status_alert_interval_seconds 10\n",
    ] {
        assert!(text.contains(family), "no {family:?} in:\n{text}");
    }
    promtool_check(&text).expect("promtool check metrics");

    let j = http_get(nginx.port, "/status_metrics?format=json");
    assert_eq!(j.header("Content-Type"), Some("application/json"));
    let v = j.json();
    assert_eq!(v["locations"]["api.v2/users"]["requests"]["418"], 2);
    assert_eq!(v["locations"]["api.v2/users"]["requests_total"], 2);
    assert_eq!(v["alerting"]["interval_seconds"], 10.0, "{v:#}");
    for key in ["running", "evaluated_elsewhere"] {
        assert!(v["alerting"][key].is_boolean(), "{key}: {v:#}");
    }

    let accept = http_request(
        nginx.port,
        "GET",
        "/status_metrics",
        &[("Accept", "application/json")],
        None,
    );
    assert_eq!(
        accept.json()["locations"]["api.v2/users"]["requests"]["418"],
        2
    );

    let head = http_request(nginx.port, "HEAD", "/status_metrics", &[], None);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    let post = http_request(nginx.port, "POST", "/status_metrics", &[], Some(b"x=1"));
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
}

#[test]
fn invalid_name_is_rejected_with_file_and_line() {
    require_module!();
    let (ok, err) = Nginx::test_config(
        "server {\n    listen 127.0.0.1:{PORT};\n    location / { status_alert \"bad name\"; }\n}\n",
        NginxOpts::default(),
    );
    assert!(!ok);
    assert!(
        err.contains("status_alert: invalid name \"bad name\""),
        "{err}"
    );
    let line = http_block_line(&NginxOpts::default(), 3);
    assert!(
        err.contains(&format!("nginx.conf:{line}")),
        "line {line}: {err}"
    );
}

#[test]
fn counting_survives_a_worker_crash() {
    require_module!();
    let nginx = Nginx::start(
        &format!(
            "server {{ listen 127.0.0.1:{{PORT}}; location / {{ status_alert a; return 200; }} \
             {METRICS_LOCATION} }}"
        ),
        NginxOpts::default(),
    );
    for _ in 0..10 {
        http_get(nginx.port, "/");
    }
    // A worker counts a request in its log phase, just after sending the response: wait until
    // all 10 are counted, or the kill can land in between and take one with it.
    scrape(nginx.port, 10);
    let before = nginx.worker_pids();
    assert!(send_signal(before[0], "KILL"));
    assert!(wait_until(Duration::from_secs(5), || {
        let now = nginx.worker_pids();
        now.len() == before.len() && now != before
    }));
    for _ in 0..10 {
        http_get(nginx.port, "/");
    }
    assert_eq!(count(&scrape(nginx.port, 20), "a", "200"), 20);
}

#[test]
fn requests_rejected_before_any_location_count_under_the_server_name() {
    require_module!();
    let nginx = Nginx::start(
        &format!(
            "server {{ listen 127.0.0.1:{{PORT}}; status_alert srv; \
             location / {{ status_alert api; return 200; }} {METRICS_LOCATION} }}"
        ),
        NginxOpts::default(),
    );
    let mut conn = RawConnection::open(nginx.port).unwrap();
    conn.send(b"BAD REQUEST LINE\r\n\r\n").unwrap();
    let raw = conn.read_response("GET").unwrap();
    assert!(
        raw.bytes.starts_with(b"HTTP/1.1 400 "),
        "{:?}",
        raw.response
    );
    assert!(!raw.keep_alive, "nginx closes after a bad request");
    drop(conn);
    let m = scrape(nginx.port, 1);
    assert_eq!(count(&m, "srv", "400"), 1);
    assert_eq!(count(&m, "api", "400"), 0);
}

#[test]
fn status_alert_name_variable_follows_the_binding_and_cannot_be_set() {
    require_module!();
    let block = r#"
        log_format names "$uri $status_alert_name";
        server {
            listen 127.0.0.1:{PORT};
            access_log {DIR}/names.log names;
            location /api/ { status_alert api; error_page 502 /50x.html; return 502; }
            location = /50x.html { status_alert pages; return 200 "sorry"; }
            location /plain/ { return 200; }
        }
    "#;
    let nginx = Nginx::start(block, NginxOpts::default());
    let r = http_get(nginx.port, "/api/x");
    assert_eq!((r.status, r.text().as_str()), (502, "sorry"));
    assert_eq!(http_get(nginx.port, "/plain/x").status, 200);
    let log_path = nginx.dir.join("names.log");
    assert!(wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.lines().count() >= 2)
    }));
    let log = std::fs::read_to_string(&log_path).unwrap();
    // The error page's location has a NAME too, but the request was bound to "api" first.
    assert!(log.contains("/50x.html api\n"), "{log}");
    assert!(log.contains("/plain/x -\n"), "{log}");
    // Only the module binds a request: configuration cannot set the variable.
    let (ok, out) = Nginx::test_config(
        "server { listen 127.0.0.1:{PORT}; set $status_alert_name x; }",
        NginxOpts::default(),
    );
    assert!(!ok, "{out}");
}
