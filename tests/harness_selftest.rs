//! Self-test of tests/common: the fakes must be right before module tests can trust them.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

fn valid_payload() -> Value {
    json!({
        "content": "5xx ratio alert",
        "embeds": [{
            "title": "location /api: 5xx ratio 0.42",
            "description": "42 of 100 requests failed",
            "color": 0xE74C3C,
            "timestamp": "2025-01-02T03:04:05.678Z",
            "fields": [{"name": "server", "value": "edge-1", "inline": true}],
            "footer": {"text": "status-alert"}
        }],
        "allowed_mentions": {"parse": []}
    })
}

fn post_json(port: u16, path: &str, body: &str) -> Response {
    http_request(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
}

fn assert_rejected(v: &Value, needle: &str) {
    match check_discord_payload(v) {
        Ok(()) => panic!("payload should be rejected ({needle}): {v}"),
        Err(e) => assert!(e.contains(needle), "error {e:?} should mention {needle:?}"),
    }
}

#[test]
fn ports_paths_and_polling() {
    let ports = free_ports(50);
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ports.len(),
        "free_port returned a duplicate: {ports:?}"
    );
    assert!(ports.iter().all(|&p| p != 0));

    let port = closed_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let err = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).expect_err("connected");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);

    let module = module_path();
    match std::env::var_os("STATUS_ALERT_MODULE").filter(|m| !m.is_empty()) {
        // A module built elsewhere (ci/test-debian): taken as given.
        Some(m) => assert_eq!(module, std::path::PathBuf::from(m)),
        None => {
            assert!(module.ends_with("libngx_http_status_alert_module.so"));
            let exe = std::env::current_exe().unwrap();
            // The module this cargo test run built sits next to the test executable in deps/.
            assert_eq!(module.parent(), exe.parent());
        }
    }

    let start = Instant::now();
    let mut calls = 0;
    assert!(wait_until(Duration::from_secs(2), || {
        calls += 1;
        calls == 3
    }));
    assert!(start.elapsed() >= Duration::from_millis(100));
    let start = Instant::now();
    assert!(!wait_until(Duration::from_millis(200), || false));
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[test]
fn webhook_accepts_valid_payload() {
    let hook = WebhookReceiver::start();
    assert!(hook
        .url()
        .starts_with(&format!("http://127.0.0.1:{}/api/webhooks/", hook.port)));
    let before = Instant::now();
    let path = hook
        .url()
        .split_once(&format!(":{}", hook.port))
        .unwrap()
        .1
        .to_string();
    let resp = post_json(hook.port, &path, &valid_payload().to_string());
    assert_eq!(resp.status, 204, "body: {}", resp.text());
    assert!(resp.body.is_empty());
    assert_eq!(hook.messages(), vec![valid_payload()]);
    let timed = hook.messages_with_time();
    assert!(timed[0].0 >= before && timed[0].0 <= Instant::now());
    assert!(hook.violations().is_empty());
    assert_eq!(hook.requests_count(), 1);
    assert_eq!(hook.wait_for_messages(1, Duration::from_secs(1)).len(), 1);
}

#[test]
fn webhook_rejects_bad_requests_over_http() {
    let hook = WebhookReceiver::start();
    let body = valid_payload().to_string();
    // (method, path, headers, body, word the violation must contain)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, String, &'a str);
    let cases: Vec<Case> = vec![
        (
            "PUT",
            WEBHOOK_PATH,
            vec![("Content-Type", "application/json")],
            body.clone(),
            "method",
        ),
        (
            "POST",
            "/api/hooks/1/x",
            vec![("Content-Type", "application/json")],
            body.clone(),
            "path",
        ),
        (
            "POST",
            WEBHOOK_PATH,
            vec![("Content-Type", "text/plain")],
            body.clone(),
            "Content-Type",
        ),
        ("POST", WEBHOOK_PATH, vec![], body.clone(), "Content-Type"),
        (
            "POST",
            WEBHOOK_PATH,
            vec![("Content-Type", "application/json")],
            "{".into(),
            "JSON",
        ),
        (
            "POST",
            WEBHOOK_PATH,
            vec![("Content-Type", "application/json")],
            "[1]".into(),
            "object",
        ),
    ];
    for (i, (method, path, headers, body, needle)) in cases.iter().enumerate() {
        let resp = http_request(hook.port, method, path, headers, Some(body.as_bytes()));
        assert_eq!(resp.status, 400, "case {i} ({needle}) should be rejected");
        let err = resp.json();
        assert_eq!(err["code"], 50035);
        assert!(
            err["message"].as_str().unwrap().contains(needle),
            "case {i}: {err}"
        );
        assert_eq!(hook.violations().len(), i + 1);
    }
    // Parameters after the media type are fine.
    let ok = http_request(
        hook.port,
        "POST",
        &format!("{WEBHOOK_PATH}?wait=true"),
        &[("Content-Type", "application/json; charset=utf-8")],
        Some(body.as_bytes()),
    );
    assert_eq!(ok.status, 204);
    assert_eq!(
        hook.messages().len(),
        1,
        "only the valid request is a message"
    );
    assert_eq!(hook.requests_count(), cases.len() + 1);
}

#[test]
fn discord_payload_limits() {
    assert_eq!(check_discord_payload(&valid_payload()), Ok(()));

    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = valid_payload();
        f(&mut v);
        v
    };
    let embed = |title: &str| json!({ "title": title });

    assert_rejected(
        &with(&|v| v["embeds"][0]["title"] = json!("t".repeat(257))),
        "title",
    );
    assert_eq!(
        check_discord_payload(&with(&|v| v["embeds"][0]["title"] = json!("t".repeat(256)))),
        Ok(())
    );
    assert_rejected(
        &with(&|v| v["embeds"] = json!(vec![embed("x"); 11])),
        "max 10",
    );
    assert_eq!(
        check_discord_payload(&with(&|v| v["embeds"] = json!(vec![embed("x"); 10]))),
        Ok(())
    );
    assert_rejected(
        &with(&|v| v.as_object_mut().unwrap().clear()),
        "empty message",
    );
    assert_rejected(
        &json!({"content": "", "allowed_mentions": {"parse": []}}),
        "empty message",
    );
    assert_rejected(&json!("just a string"), "not a JSON object");

    // allowed_mentions: missing, or anything but exactly {"parse": []}.
    assert_rejected(
        &with(&|v| drop(v.as_object_mut().unwrap().remove("allowed_mentions"))),
        "allowed_mentions missing",
    );
    assert_rejected(
        &with(&|v| v["allowed_mentions"] = json!({"parse": ["everyone"]})),
        "allowed_mentions",
    );
    assert_rejected(
        &with(&|v| v["allowed_mentions"] = json!(null)),
        "allowed_mentions",
    );

    // 6000 characters across all embeds: 6 embeds of 1000-char descriptions plus 1 char.
    let big = |extra: usize| {
        let mut embeds: Vec<Value> = (0..6)
            .map(|_| json!({ "description": "d".repeat(1000) }))
            .collect();
        if extra > 0 {
            embeds.push(json!({ "title": "t".repeat(extra) }));
        }
        json!({ "embeds": embeds, "allowed_mentions": {"parse": []} })
    };
    assert_eq!(check_discord_payload(&big(0)), Ok(()));
    assert_rejected(&big(1), "6001 characters");
    // Field names, values and footer text count toward the total too.
    let mixed = json!({
        "embeds": [
            {"description": "d".repeat(4096), "footer": {"text": "f".repeat(1000)}},
            {"fields": [{"name": "n".repeat(256), "value": "v".repeat(649)}]}
        ],
        "allowed_mentions": {"parse": []}
    });
    assert_rejected(&mixed, "6001 characters");

    assert_rejected(
        &with(&|v| v["embeds"][0]["description"] = json!("d".repeat(4097))),
        "description",
    );
    let field = json!({"name": "n", "value": "v"});
    assert_rejected(
        &with(&|v| v["embeds"][0]["fields"] = json!(vec![field.clone(); 26])),
        "max 25",
    );
    assert_rejected(
        &with(&|v| v["embeds"][0]["fields"][0]["name"] = json!("")),
        "empty",
    );
    assert_rejected(
        &with(&|v| v["embeds"][0]["fields"][0]["name"] = json!("n".repeat(257))),
        "name",
    );
    assert_rejected(
        &with(&|v| v["embeds"][0]["fields"][0]["value"] = json!("")),
        "empty",
    );
    assert_rejected(
        &with(&|v| v["embeds"][0]["fields"][0]["value"] = json!("v".repeat(1025))),
        "value",
    );
    assert_rejected(
        &with(&|v| v["embeds"][0]["footer"]["text"] = json!("f".repeat(2049))),
        "footer",
    );
    for bad in [json!(0x100_0000), json!(-1), json!(1.5), json!("red")] {
        assert_rejected(&with(&|v| v["embeds"][0]["color"] = bad.clone()), "color");
    }
    assert_eq!(
        check_discord_payload(&with(&|v| v["embeds"][0]["color"] = json!(0xFF_FFFF))),
        Ok(())
    );
    for bad in [
        "2025-01-02 03:04:05Z",
        "2025-13-02T03:04:05Z",
        "2025-01-02T03:04:05",
        "yesterday",
    ] {
        assert_rejected(
            &with(&|v| v["embeds"][0]["timestamp"] = json!(bad)),
            "timestamp",
        );
    }
    for good in [
        "2025-01-02T03:04:05Z",
        "2025-01-02T03:04:05.123456+02:00",
        "2025-01-02T03:04:05-05:30",
    ] {
        assert!(is_iso8601(good), "{good}");
    }
}

#[test]
fn discord_content_counts_unicode_characters() {
    let content = |n: usize| json!({ "content": "é".repeat(n), "allowed_mentions": {"parse": []} });
    // 2000 'é' are 4000 UTF-8 bytes but 2000 characters: Discord accepts them.
    assert_eq!(check_discord_payload(&content(2000)), Ok(()));
    assert_rejected(&content(2001), "2001 characters");
    // Embed limits count characters too: '→' is 3 bytes.
    let title = |n: usize| {
        let embeds = json!([{ "title": "→".repeat(n) }]);
        json!({ "embeds": embeds, "allowed_mentions": {"parse": []} })
    };
    assert_eq!(check_discord_payload(&title(256)), Ok(()));
    assert_rejected(&title(257), "title");
}

#[test]
fn webhook_scripted_429_then_204_on_one_connection() {
    let hook = WebhookReceiver::start();
    hook.respond_with(vec![(
        429,
        vec![
            ("Retry-After".to_string(), "1".to_string()),
            ("Content-Type".to_string(), "application/json".to_string()),
        ],
        r#"{"message": "You are being rate limited.", "retry_after": 1.0, "global": false}"#
            .to_string(),
    )]);
    let body = valid_payload().to_string();
    let headers = [("Content-Type", "application/json")];
    let mut client = KeepAliveClient::new(hook.port);
    let first = client
        .try_request("POST", WEBHOOK_PATH, &headers, Some(body.as_bytes()))
        .unwrap();
    assert_eq!(first.status, 429);
    assert_eq!(first.header("retry-after"), Some("1"));
    assert_eq!(first.json()["retry_after"], 1.0);
    assert!(
        hook.messages().is_empty(),
        "a rate-limited payload was not accepted"
    );
    let second = client
        .try_request("POST", WEBHOOK_PATH, &headers, Some(body.as_bytes()))
        .unwrap();
    assert_eq!(second.status, 204);
    assert_eq!(client.connects(), 1, "the receiver must support keep-alive");
    assert_eq!(hook.messages().len(), 1);
    let statuses: Vec<Option<u16>> = hook.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Some(429), Some(204)]);
    assert!(hook.violations().is_empty());
}

#[test]
fn webhook_hang_and_hanging_listener_time_out_clients() {
    let hook = WebhookReceiver::start();
    hook.set_hang(true);
    let body = valid_payload().to_string();
    let headers = [("Content-Type", "application/json")];
    let t = Instant::now();
    let err = try_http_request_timeout(
        hook.port,
        "POST",
        WEBHOOK_PATH,
        &headers,
        Some(body.as_bytes()),
        Duration::from_millis(300),
    )
    .expect_err("a hanging receiver must not answer");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(hook.wait_for_requests(1, Duration::from_secs(1)), 1);
    assert!(hook.messages().is_empty());
    hook.set_hang(false);
    assert_eq!(post_json(hook.port, WEBHOOK_PATH, &body).status, 204);

    let (port, listener) = hanging_listener();
    let err = try_http_request_timeout(port, "GET", "/", &[], None, Duration::from_millis(300))
        .expect_err("a hanging listener must not answer");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert_eq!(listener.accepted(), 1);
    drop(listener);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still listening"
    );
}

#[test]
fn upstream_routes_hits_delay_and_keepalive() {
    let up = Upstream::start();
    let resp = http_get(up.port, "/anything?x=1");
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    assert_eq!(up.hits("/anything"), 1);

    up.set("/err", 503, "down");
    up.set_headers("/err", &[("Retry-After", "3")]);
    let resp = http_get(up.port, "/err");
    assert_eq!((resp.status, resp.text().as_str()), (503, "down"));
    assert_eq!(resp.header("RETRY-AFTER"), Some("3"));
    up.set("/err", 200, "back");
    assert_eq!(http_get(up.port, "/err").text(), "back");
    assert_eq!(up.hits("/err"), 2);

    up.set_delay("/slow", Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(http_get(up.port, "/slow").status, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    let head = http_request(up.port, "HEAD", "/err", &[], None);
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("4"))
    );
    assert!(head.body.is_empty());

    let post = http_request(up.port, "POST", "/p", &[], Some(b"payload"));
    assert_eq!(post.status, 200);
    assert_eq!(up.requests().last().unwrap().body, b"payload");

    let mut client = KeepAliveClient::new(up.port);
    for _ in 0..5 {
        assert_eq!(client.get("/ka").status, 200);
    }
    assert_eq!(client.connects(), 1);
    assert_eq!(up.hits("/ka"), 5);

    // nginx talks HTTP/1.0 to upstreams by default: answer, then close.
    let mut s = TcpStream::connect(("127.0.0.1", up.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /old HTTP/1.0\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(
        raw.starts_with("HTTP/1.1 200 OK\r\n") && raw.ends_with("\r\n\r\nok"),
        "{raw:?}"
    );

    let statuses = hammer(up.port, "/h", 60, 4);
    assert_eq!(statuses.len(), 60);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    assert_eq!(up.hits("/h"), 60);
}

#[test]
fn http_client_decodes_chunked_bodies() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(
            b"HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n\
              5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: x\r\n\r\n",
        )
        .unwrap();
    });
    let resp = http_get(port, "/");
    server.join().unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hello, world");
    assert_eq!(resp.header("x-a"), Some("1"));

    let ds: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
    assert_eq!(percentile(&ds, 50.0), Duration::from_millis(50));
    assert_eq!(percentile(&ds, 99.0), Duration::from_millis(99));
    assert_eq!(percentile(&ds, 100.0), Duration::from_millis(100));
    assert_eq!(percentile(&ds, 0.0), Duration::from_millis(1));
}

#[test]
fn prometheus_parser_and_promtool() {
    let text = r#"# HELP http_requests_total Requests by status.
# TYPE http_requests_total counter
http_requests_total{location="/api",status="5xx"} 42
http_requests_total{location="/a\"b\\c\nd", status="2xx",} 7 1700000000000

# TYPE up gauge
up 1
latency_seconds_bucket{le="+Inf"} +Inf
ratio{loc="x"} 1.5e-3
"#;
    let samples = parse_prometheus(text);
    assert_eq!(samples.len(), 5);
    assert_eq!(
        metric(&samples, "http_requests_total", &[("status", "5xx")]),
        Some(42.0)
    );
    assert_eq!(
        metric(
            &samples,
            "http_requests_total",
            &[("location", "/a\"b\\c\nd")]
        ),
        Some(7.0)
    );
    assert_eq!(
        samples[1].1[0],
        ("location".to_string(), "/a\"b\\c\nd".to_string())
    );
    assert_eq!(metric(&samples, "up", &[]), Some(1.0));
    assert_eq!(
        metric(&samples, "latency_seconds_bucket", &[("le", "+Inf")]),
        Some(f64::INFINITY)
    );
    assert_eq!(metric(&samples, "ratio", &[]), Some(0.0015));
    assert_eq!(
        metric(&samples, "http_requests_total", &[("status", "4xx")]),
        None
    );
    assert_eq!(metric(&samples, "missing", &[]), None);
    for bad in [
        "x{a=\"1} 2",
        "x{a=1} 2",
        "x 1 2 3",
        "x{a=\"\\t\"} 1",
        "{a=\"1\"} 1",
        "x",
    ] {
        assert!(
            try_parse_prometheus(bad).is_err(),
            "{bad:?} should not parse"
        );
    }

    let good = "# HELP status_alert_requests_total Requests.\n\
                # TYPE status_alert_requests_total counter\n\
                status_alert_requests_total{location=\"/\"} 3\n";
    if !have_promtool() {
        // Without promtool the check is an error unless explicitly waived.
        let waived = std::env::var("STATUS_ALERT_SKIP_PROMTOOL").as_deref() == Ok("1");
        let expected = if waived {
            Ok(())
        } else {
            Err("promtool not installed".to_string())
        };
        assert_eq!(promtool_check(good), expected);
        eprintln!("SKIP promtool part: promtool not installed");
        return;
    }
    assert_eq!(promtool_check(good), Ok(()));
    // No HELP and a counter without _total: promtool's linter must complain.
    let err = promtool_check("# TYPE requests counter\nrequests 3\n").unwrap_err();
    assert!(err.contains("requests"), "{err}");
}

#[test]
fn nginx_start_reload_stop() {
    if !have_nginx("nginx_start_reload_stop") {
        return;
    }
    let block = r#"
    server {
        listen 127.0.0.1:{PORT};
        keepalive_requests 7;
        location / { return 200 "hi"; }
        location = /dir { return 200 "{DIR}"; }
    }"#;
    let mut nginx = Nginx::start(block, NginxOpts::plain());
    let resp = http_get(nginx.port, "/");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "hi"),
        "{}",
        nginx.error_log()
    );
    assert_eq!(
        http_get(nginx.port, "/dir").text(),
        nginx.dir.display().to_string()
    );
    let head = http_request(nginx.port, "HEAD", "/", &[], None);
    assert_eq!((head.status, head.body.len()), (200, 0));

    // keepalive_requests 7 makes nginx close connections; hammer must reconnect transparently.
    let statuses = hammer(nginx.port, "/", 100, 4);
    assert_eq!(statuses.len(), 100);
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    let lat = latencies(nginx.port, "/", 30);
    assert!(percentile(&lat, 99.0) < Duration::from_secs(1), "{lat:?}");

    let master = nginx.pid();
    let before = nginx.worker_pids();
    assert_eq!(before.len(), 2, "worker_processes 2");
    nginx.reload();
    let after = nginx.worker_pids();
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
    assert!(before.iter().all(|&p| !process_alive(p)));
    assert_eq!(http_get(nginx.port, "/").text(), "hi");

    nginx.write_config("server { listen 127.0.0.1:{PORT}; location / { return 201 \"new\"; } }");
    nginx.reload();
    assert_eq!(http_get(nginx.port, "/").status, 201);
    nginx.assert_log_clean();

    nginx.stop();
    assert!(!nginx.is_running());
    assert!(!process_alive(master));
    assert!(
        after.iter().all(|&p| !process_alive(p)),
        "workers survived stop"
    );
    let err = try_http_request(nginx.port, "GET", "/", &[], None).expect_err("still serving");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    let dir = nginx.dir.clone();
    drop(nginx);
    assert!(!dir.exists(), "temp dir of a passing test must be removed");

    // Single-process mode starts and stops too.
    let opts = NginxOpts {
        master_process: false,
        ..NginxOpts::plain()
    };
    let mut single = Nginx::start(block, opts);
    assert_eq!(http_get(single.port, "/").text(), "hi");
    single.stop();
    assert!(!single.is_running());

    if !have_module("nginx_start_reload_stop (module part)") {
        return;
    }
    let with_module = Nginx::start(block, NginxOpts::default());
    assert!(with_module.conf().contains("load_module"));
    assert_eq!(http_get(with_module.port, "/").text(), "hi");
    with_module.assert_log_clean();
}

#[test]
fn nginx_test_config_names_file_and_line() {
    if !have_nginx("nginx_test_config_names_file_and_line") {
        return;
    }
    let opts = NginxOpts::plain();
    let (ok, out) = Nginx::test_config("server { listen 127.0.0.1:{PORT}; }", opts.clone());
    assert!(ok, "{out}");

    let block = "server {\n    listen 127.0.0.1:{PORT};\n    no_such_directive on;\n}";
    let (ok, out) = Nginx::test_config(block, opts.clone());
    assert!(!ok, "nginx -t accepted an unknown directive:\n{out}");
    let line = http_block_line(&opts, 3);
    assert!(
        out.contains("unknown directive \"no_such_directive\""),
        "{out}"
    );
    assert!(
        out.contains(&format!("nginx.conf:{line}")),
        "expected nginx.conf:{line} in {out}"
    );

    // extra_main lines shift the http block; http_block_line must follow.
    let opts = NginxOpts {
        extra_main: "worker_rlimit_nofile 4096;\n".into(),
        ..opts
    };
    let (ok, out) = Nginx::test_config(block, opts.clone());
    assert!(!ok);
    assert!(
        out.contains(&format!("nginx.conf:{}", http_block_line(&opts, 3))),
        "{out}"
    );
}
