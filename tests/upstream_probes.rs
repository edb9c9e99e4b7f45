//! Integration tests of probes on nginx's event loop (README, Directives >
//! status_alert_probe):
//! `status_alert_probe upstream=NAME` probes every server of the upstream as its own target,
//! `nginx -t` rejects what cannot work, a silent peer fails as `timeout` without delaying
//! requests, HTTPS runs on nginx's own OpenSSL, and no nginx process runs a thread for probes.
//!
//! Every probe runs every second with a 500ms timeout, so DOWN and UP happen within seconds;
//! every wait is bounded.

use status_alert_testkit::*;
use std::fs;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

/// How long to wait for a message that should come.
const PATIENCE: Duration = Duration::from_secs(8);

/// `status_alert be` in `/` (proxying to `backend`) with `probe`, a plain location, metrics.
fn http_block(webhook: &str, upstream: &str, probe: &str) -> String {
    format!(
        r#"
status_alert_webhook {webhook};
status_alert_interval 1s;
{upstream}
server {{
    listen 127.0.0.1:{{PORT}};
    location / {{
        status_alert be;
        status_alert_probe {probe};
        proxy_pass http://backend;
    }}
    location = /plain {{
        status_alert off;
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

/// `upstream backend { server 127.0.0.1:P; ... }`.
fn upstream_block(ports: &[u16], extra: &str) -> String {
    let servers: String = ports
        .iter()
        .map(|p| format!("    server 127.0.0.1:{p};\n"))
        .collect();
    format!("upstream backend {{\n{extra}{servers}}}")
}

fn report(nginx: &Nginx, rx: &WebhookReceiver) -> String {
    let log = nginx.error_log();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!(
        "\n--- embed titles ---\n{}\n--- last lines of error.log ---\n{}",
        rx.titles().join("\n"),
        tail.join("\n")
    )
}

/// `Threads:` of /proc/PID/status.
fn threads_of(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn upstream_probe_downs_only_the_failing_peer() {
    require_module!();
    let peers = [Upstream::start(), Upstream::start(), Upstream::start()];
    peers[1].set("/health", 503, "sick");
    let ports: Vec<u16> = peers.iter().map(|p| p.port).collect();
    let rx = WebhookReceiver::start();
    let nginx = Nginx::start(
        &http_block(
            &rx.url(),
            &upstream_block(&ports, ""),
            "upstream=backend uri=/health interval=1s timeout=500ms",
        ),
        NginxOpts::workers(2),
    );
    let target = |i: usize| format!("http://127.0.0.1:{}/health", ports[i]);
    let want = format!("DOWN be: {} (unexpected status 503)", target(1));
    assert!(
        wait_until(PATIENCE, || rx.titles().contains(&want)),
        "no {want:?}{}",
        report(&nginx, &rx)
    );
    // Three more probe rounds: still exactly that one message.
    thread::sleep(Duration::from_secs(3));
    assert_eq!(rx.titles(), vec![want], "{}", report(&nginx, &rx));
    assert_eq!(probe_up(&nginx, "be", &target(0)), Some(1.0));
    assert_eq!(probe_up(&nginx, "be", &target(1)), Some(0.0));
    assert_eq!(probe_up(&nginx, "be", &target(2)), Some(1.0));
    assert!(probe_failures(&nginx, "be", &target(1), "status") >= 3.0);
    for (i, p) in peers.iter().enumerate() {
        assert!(
            p.hits("/health") >= 3,
            "peer {i}: {} probes",
            p.hits("/health")
        );
        for r in p.requests().iter().filter(|r| r.path() == "/health") {
            assert_eq!(r.method, "GET");
            assert_eq!(r.header("host"), Some(&*format!("127.0.0.1:{}", ports[i])));
            assert_eq!(r.header("connection"), Some("close"));
            let ua = r.header("user-agent").unwrap_or("");
            assert!(ua.starts_with("nginx-status-alert/"), "{ua:?}");
        }
    }
    // The peer recovers: one UP.
    peers[1].set("/health", 200, "ok");
    let up = format!("UP be: {}", target(1));
    assert!(
        wait_until(PATIENCE, || rx.titles().iter().any(|t| t.starts_with(&up))),
        "no UP{}",
        report(&nginx, &rx)
    );
    nginx.assert_log_clean();
}

#[test]
fn silent_peer_times_out_without_delaying_requests() {
    require_module!();
    let healthy = Upstream::start();
    let (hang_port, hanging) = hanging_listener();
    let rx = WebhookReceiver::start();
    // One worker: it runs the probes and serves every request.
    let nginx = Nginx::start(
        &http_block(
            &rx.url(),
            &upstream_block(&[healthy.port, hang_port], ""),
            "upstream=backend uri=/health interval=1s timeout=500ms",
        ),
        NginxOpts::workers(1),
    );
    let target = format!("http://127.0.0.1:{hang_port}/health");
    let want = format!("DOWN be: {target} (timed out)");
    assert!(
        wait_until(PATIENCE, || rx.titles().contains(&want)),
        "no {want:?}{}",
        report(&nginx, &rx)
    );
    assert!(probe_failures(&nginx, "be", &target, "timeout") >= 1.0);
    let duration = metric(
        &prom(&nginx),
        "nginx_probe_duration_seconds",
        &[("probe", "be"), ("target", &target)],
    )
    .expect("nginx_probe_duration_seconds");
    assert!(
        (0.45..1.0).contains(&duration),
        "a probe of a silent peer took {duration}s with timeout=500ms"
    );
    // Requests every 10ms over two intervals, so some land while a probe hangs.
    let accepted = hanging.accepted();
    let slowest = slowest_plain_request(&nginx);
    assert!(
        hanging.accepted() > accepted,
        "no probe reached the silent peer"
    );
    eprintln!("silent_peer_times_out_without_delaying_requests: slowest request {slowest:?}");
    assert!(
        slowest < Duration::from_millis(250),
        "a request took {slowest:?} while a probe hung: is the event loop blocked?"
    );
    assert_eq!(probe_up(&nginx, "be", &healthy.url("/health")), Some(1.0));
    nginx.assert_log_clean();
}

#[test]
fn no_nginx_process_runs_a_thread_for_probes() {
    require_module!();
    let peers = [Upstream::start(), Upstream::start(), Upstream::start()];
    let ports: Vec<u16> = peers.iter().map(|p| p.port).collect();
    let rx = WebhookReceiver::start();
    // Three kinds of probe in one location: the upstream's, a URL and a TCP one (the last
    // `;` comes from http_block).
    let probes = format!(
        "upstream=backend uri=/health interval=1s timeout=500ms;\n        \
         status_alert_probe {} interval=1s timeout=500ms;\n        \
         status_alert_probe tcp://127.0.0.1:{} interval=1s timeout=500ms",
        peers[0].url("/other"),
        ports[2]
    );
    let block = http_block(&rx.url(), &upstream_block(&ports, ""), &probes);
    let nginx = Nginx::start(&block, NginxOpts::workers(2));
    assert!(
        wait_until(PATIENCE, || peers.iter().all(|p| p.hits("/health") >= 2)),
        "every peer probed twice{}",
        report(&nginx, &rx)
    );
    let workers = nginx.worker_pids();
    assert_eq!(workers.len(), 2);
    let helpers = helper_processes(nginx.pid());
    let mut seen = Vec::new();
    for pid in std::iter::once(nginx.pid()).chain(workers.iter().copied()) {
        let n = threads_of(pid).expect("Threads: in /proc/PID/status");
        seen.push((pid, n));
        assert_eq!(n, 1, "nginx process {pid} runs {n} threads");
    }
    let helper_threads: Vec<_> = helpers.iter().map(|p| (*p, threads_of(*p))).collect();
    eprintln!(
        "no_nginx_process_runs_a_thread_for_probes: master+workers {seen:?}, helper \
         {helper_threads:?}"
    );
    // The helper only delivers webhooks now: its threads do not grow with the targets.
    for (pid, n) in helper_threads {
        assert!(n.unwrap_or(0) <= 3, "helper {pid} runs {n:?} threads");
    }
    assert_eq!(
        probe_up(&nginx, "be", &format!("tcp://127.0.0.1:{}", ports[2])),
        Some(1.0)
    );
    nginx.assert_log_clean();
}

/// A self-signed certificate for `localhost` in `dir`, made with the openssl command:
/// (cert, key) paths.
fn self_signed(dir: &std::path::Path) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn https_probes_use_nginx_tls_and_verify_certificates() {
    require_module!();
    require_nginx_with!(nginx_with_ssl());
    require!(program_ready("openssl"));
    let tmp = temp_dir("tls");
    let (cert, key) = self_signed(tmp.path());
    let rx = WebhookReceiver::start();
    // nginx probes its own TLS listener: once without verification (UP), once with (the
    // self-signed certificate is not trusted: DOWN, tls).
    let block = format!(
        r#"
status_alert_webhook {webhook};
status_alert_interval 1s;
server {{
    listen 127.0.0.1:{{PORT}};
    location / {{
        status_alert be;
        status_alert_probe https://localhost:{{PORT2}}/ok interval=1s timeout=500ms tls_verify=off;
        status_alert_probe https://localhost:{{PORT2}}/ok?v interval=1s timeout=500ms;
        return 200 "ok";
    }}
    location = /status_metrics {{
        status_alert off;
        status_metrics;
    }}
}}
server {{
    listen 127.0.0.1:{{PORT2}} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location = /ok {{ status_alert off; return 204; }}
}}
"#,
        webhook = rx.url()
    );
    let nginx = Nginx::start(&block, NginxOpts::workers(1));
    let port2 = nginx.conf().lines().find_map(|l| {
        l.trim()
            .strip_prefix("listen 127.0.0.1:")?
            .strip_suffix(" ssl;")?
            .parse::<u16>()
            .ok()
    });
    let port2 = port2.expect("TLS listener port in nginx.conf");
    let lax = format!("https://localhost:{port2}/ok");
    let strict = format!("https://localhost:{port2}/ok?v");
    assert!(
        wait_until(PATIENCE, || probe_up(&nginx, "be", &lax) == Some(1.0)),
        "https probe with tls_verify=off never up{}",
        report(&nginx, &rx)
    );
    let want = format!("DOWN be: {strict} (TLS error)");
    assert!(
        wait_until(PATIENCE, || rx.titles().contains(&want)),
        "no {want:?}{}",
        report(&nginx, &rx)
    );
    assert!(probe_failures(&nginx, "be", &strict, "tls") >= 1.0);
    assert_eq!(probe_failures(&nginx, "be", &lax, "tls"), 0.0);
    nginx.assert_log_clean();
}

#[test]
fn nginx_t_checks_upstream_probes() {
    require_module!();
    let probe = |args: &str, upstream: &str| {
        format!(
            "{upstream}\nserver {{\n    listen 127.0.0.1:{{PORT}};\n    location / {{\n        \
             status_alert be;\n        status_alert_probe {args};\n        \
             proxy_pass http://backend;\n    }}\n}}\n"
        )
    };
    let plain = "upstream backend { server 127.0.0.1:9; server 127.0.0.1:10; }";
    let zoned = "upstream backend { zone backend 64k; server 127.0.0.1:9; }";
    let valid = [
        probe("upstream=backend", plain),
        probe("upstream=backend scheme=tcp fails=2", plain),
        probe("upstream=backend mark_down=on", zoned),
    ];
    // scheme=https without SSL in nginx: tests/directives.rs (https_probes_need_nginx_with_ssl).
    let https = probe(
        "upstream=backend uri=/health scheme=https tls_verify=off",
        plain,
    );
    let valid: Vec<String> = valid
        .into_iter()
        .chain(nginx_with_ssl().is_ok().then_some(https))
        .collect();
    for block in &valid {
        let (ok, out) = Nginx::test_config(block, NginxOpts::default());
        assert!(ok, "expected valid:\n{block}\n{out}");
    }
    let invalid = [
        (probe("upstream=other", plain), "unknown upstream \"other\""),
        (
            probe("upstream=backend uri=health", plain),
            "invalid uri value \"health\"",
        ),
        (
            probe("upstream=backend scheme=tcp uri=/x", plain),
            "uri= applies to scheme=http and https only",
        ),
        (
            probe("upstream=backend scheme=tcp expect=200", plain),
            "expect= applies to",
        ),
        (
            probe("upstream=backend scheme=ftp", plain),
            "invalid scheme value",
        ),
        (
            probe("upstream=backend mark_down=on", plain),
            "mark_down=on requires \"zone\" in upstream \"backend\"",
        ),
        (
            probe(
                "upstream=backend",
                "upstream backend { server unix:/nonexistent/sock; }",
            ),
            "upstream \"backend\" has no server with an IP address",
        ),
    ];
    for (block, want) in &invalid {
        let (ok, out) = Nginx::test_config(block, NginxOpts::default());
        assert!(!ok, "expected invalid:\n{block}\n{out}");
        assert!(out.contains(want), "want {want:?} in:\n{out}");
        assert!(out.contains("status_alert_probe"), "{out}");
    }
}

/// `/x` through the proxy, `n` times; panics on anything but 200.
fn proxied(nginx: &Nginx, n: usize) {
    let mut client = KeepAliveClient::new(nginx.port);
    for _ in 0..n {
        assert_eq!(client.get("/x").status, 200);
    }
}

fn peer_down_metric(nginx: &Nginx, port: u16) -> Option<f64> {
    metric(
        &prom(nginx),
        "nginx_upstream_peer_down",
        &[
            ("upstream", "backend"),
            ("peer", &format!("127.0.0.1:{port}")),
        ],
    )
}

#[test]
fn mark_down_takes_a_down_peer_out_of_rotation_and_fails_open() {
    require_module!();
    let peers = [Upstream::start(), Upstream::start(), Upstream::start()];
    for p in &peers {
        p.set("/x", 200, "x");
    }
    peers[1].set("/health", 503, "sick");
    let ports: Vec<u16> = peers.iter().map(|p| p.port).collect();
    let rx = WebhookReceiver::start();
    let probe = "upstream=backend uri=/health interval=1s timeout=500ms mark_down=on";
    let block = http_block(
        &rx.url(),
        &upstream_block(&ports, "    zone backend 64k;\n"),
        probe,
    );
    let nginx = Nginx::start(&block, NginxOpts::workers(2));
    assert!(
        wait_until(PATIENCE, || peer_down_metric(&nginx, ports[1]) == Some(1.0)),
        "peer never marked down{}",
        report(&nginx, &rx)
    );
    assert_eq!(peer_down_metric(&nginx, ports[0]), Some(0.0));
    // Round robin over the other two only, in every worker.
    let before = peers[1].hits("/x");
    proxied(&nginx, 30);
    assert_eq!(peers[1].hits("/x"), before, "a DOWN peer got requests");
    assert!(peers[0].hits("/x") > 0 && peers[2].hits("/x") > 0);

    // Back UP: back in rotation.
    peers[1].set("/health", 200, "ok");
    assert!(
        wait_until(PATIENCE, || peer_down_metric(&nginx, ports[1]) == Some(0.0)),
        "peer never back{}",
        report(&nginx, &rx)
    );
    // The worker that evaluates applies the flag on its next tick.
    thread::sleep(Duration::from_millis(600));
    let before = peers[1].hits("/x");
    proxied(&nginx, 30);
    assert!(peers[1].hits("/x") > before, "an UP peer got no requests");

    // Every peer DOWN: all are used (fail open).
    for p in &peers {
        p.set("/health", 503, "sick");
    }
    assert!(
        nginx.wait_for_log("mark_down fails open", PATIENCE),
        "no fail-open notice{}",
        report(&nginx, &rx)
    );
    // The DOWN message says so.
    assert!(
        wait_until(PATIENCE, || rx.titles().iter().any(|t| t
            .starts_with("DOWN be: ")
            && t.contains("; fail open, every peer"))),
        "no DOWN message says fail open{}",
        report(&nginx, &rx)
    );
    thread::sleep(Duration::from_millis(600));
    let before: Vec<usize> = peers.iter().map(|p| p.hits("/x")).collect();
    proxied(&nginx, 30);
    for (i, p) in peers.iter().enumerate() {
        assert!(
            p.hits("/x") > before[i],
            "peer {i} unused while failing open"
        );
        assert_eq!(peer_down_metric(&nginx, ports[i]), Some(0.0));
    }
    nginx.assert_log_clean();
}

#[test]
fn mark_down_leaves_no_peer_down_after_the_directive_is_removed() {
    require_module!();
    let peers = [Upstream::start(), Upstream::start()];
    for p in &peers {
        p.set("/x", 200, "x");
    }
    peers[0].set("/health", 503, "sick");
    let ports: Vec<u16> = peers.iter().map(|p| p.port).collect();
    let rx = WebhookReceiver::start();
    let upstream = upstream_block(&ports, "    zone backend 64k;\n");
    let marking = "upstream=backend uri=/health interval=1s timeout=500ms mark_down=on";
    let nginx = Nginx::start(
        &http_block(&rx.url(), &upstream, marking),
        NginxOpts::workers(2),
    );
    assert!(
        wait_until(PATIENCE, || peer_down_metric(&nginx, ports[0]) == Some(1.0)),
        "peer never marked down{}",
        report(&nginx, &rx)
    );
    let before = peers[0].hits("/x");
    proxied(&nginx, 20);
    assert_eq!(peers[0].hits("/x"), before);

    // Reload without mark_down (the probe stays): the peer is used again at once.
    let observing = "upstream=backend uri=/health interval=1s timeout=500ms";
    nginx.write_config(&http_block(&rx.url(), &upstream, observing));
    nginx.reload();
    assert!(
        wait_until(PATIENCE, || {
            let before = peers[0].hits("/x");
            proxied(&nginx, 10);
            peers[0].hits("/x") > before
        }),
        "peer still out of rotation after mark_down was removed{}",
        report(&nginx, &rx)
    );
    assert_eq!(peer_down_metric(&nginx, ports[0]), None);
    nginx.assert_log_clean();
}

#[test]
fn unresolvable_host_fails_as_dns_every_interval() {
    require_module!();
    let peer = Upstream::start();
    let rx = WebhookReceiver::start();
    let target = "http://no-such-host.invalid:8080/health";
    let block = http_block(
        &rx.url(),
        &upstream_block(&[peer.port], ""),
        &format!("{target} interval=1s timeout=500ms"),
    );
    // Not an error: `nginx -t` passes and warns.
    let (ok, out) = Nginx::test_config(&block, NginxOpts::workers(1));
    assert!(ok, "{out}");
    assert!(
        out.contains("[warn]") && out.contains(&format!("host not found in \"{target}\"")),
        "{out}"
    );
    let nginx = Nginx::start(&block, NginxOpts::workers(1));
    let want = format!("DOWN be: {target} (DNS lookup failed)");
    assert!(
        wait_until(PATIENCE, || rx.titles().contains(&want)),
        "no {want:?}{}",
        report(&nginx, &rx)
    );
    // One failure per interval (1s): over 4 s from one failure, 3 to 5 more.
    assert!(wait_until(PATIENCE, || probe_failures(
        &nginx, "be", target, "dns"
    ) >= 1.0));
    let first = probe_failures(&nginx, "be", target, "dns");
    let from = Instant::now();
    thread::sleep(Duration::from_secs(4));
    let more = probe_failures(&nginx, "be", target, "dns") - first;
    assert!(
        (3.0..=5.0).contains(&more),
        "{more} dns failures in {:?} with interval=1s{}",
        from.elapsed(),
        report(&nginx, &rx)
    );
}

#[test]
fn quit_during_a_hanging_probe_is_prompt_and_clean() {
    require_module!();
    let (hang_port, hanging) = hanging_listener();
    let rx = WebhookReceiver::start();
    // A long timeout, so that the quit lands while the probe hangs.
    let mut nginx = Nginx::start(
        &http_block(
            &rx.url(),
            &upstream_block(&[hang_port], ""),
            "upstream=backend uri=/health interval=20s timeout=10s",
        ),
        NginxOpts::workers(2),
    );
    assert!(
        wait_until(Duration::from_secs(5), || hanging.accepted() >= 1),
        "no probe reached the silent peer{}",
        report(&nginx, &rx)
    );
    let pid = nginx.pid();
    let t = Instant::now();
    nginx.stop();
    let took = t.elapsed();
    assert!(!process_alive(pid));
    eprintln!("quit_during_a_hanging_probe_is_prompt_and_clean: quit took {took:?}");
    assert!(
        took < Duration::from_secs(3),
        "nginx -s quit waited {took:?} for a hanging probe"
    );
    nginx.assert_log_clean();
}

/// A peer that reads the request, then misbehaves with `answer` on its own thread per
/// connection; stops (and closes) when dropped.
struct BadPeer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl BadPeer {
    fn start(answer: fn(&mut std::net::TcpStream, &std::sync::atomic::AtomicBool)) -> BadPeer {
        use std::io::Read;
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let flag = flag.clone();
                        thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                            let mut buf = [0u8; 4096];
                            let _ = s.read(&mut buf);
                            answer(&mut s, &flag);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        BadPeer { port, stop }
    }
}

impl Drop for BadPeer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One byte every 100 ms, for as long as the prober listens.
fn trickle(s: &mut std::net::TcpStream, stop: &std::sync::atomic::AtomicBool) {
    use std::io::Write;
    for b in b"HTTP/1.1 200 OK\r\nX-Slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'))
    {
        if stop.load(std::sync::atomic::Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A status line, then a 1 MiB header.
fn flood(s: &mut std::net::TcpStream, _stop: &std::sync::atomic::AtomicBool) {
    use std::io::Write;
    let mut head = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
    head.extend(std::iter::repeat(b'a').take(1 << 20));
    head.extend_from_slice(b"\r\n\r\n");
    let _ = s.write_all(&head);
}

#[test]
fn trickling_and_flooding_peers_time_out_without_delaying_requests() {
    require_module!();
    let (slow, big) = (BadPeer::start(trickle), BadPeer::start(flood));
    let rx = WebhookReceiver::start();
    let nginx = Nginx::start(
        &http_block(
            &rx.url(),
            &upstream_block(&[slow.port, big.port], ""),
            "upstream=backend uri=/health interval=1s timeout=500ms",
        ),
        NginxOpts::workers(1),
    );
    for port in [slow.port, big.port] {
        let target = format!("http://127.0.0.1:{port}/health");
        assert!(
            wait_until(PATIENCE, || probe_up(&nginx, "be", &target) == Some(0.0)),
            "{target} never DOWN{}",
            report(&nginx, &rx)
        );
        assert!(
            probe_failures(&nginx, "be", &target, "timeout") >= 1.0,
            "{target}: not a timeout{}",
            report(&nginx, &rx)
        );
    }
    // Plain requests while the probes read and give up: never held up.
    let slowest = slowest_plain_request(&nginx);
    assert!(
        slowest < Duration::from_millis(250),
        "a request took {slowest:?}"
    );
    nginx.assert_log_clean();
}

/// The slowest of `/plain` requests sent every 10 ms for 2 s on one keep-alive connection (over
/// two probe intervals, so some land while probes are in flight).
fn slowest_plain_request(nginx: &Nginx) -> Duration {
    let mut client = KeepAliveClient::new(nginx.port);
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        let t = Instant::now();
        assert_eq!(client.get("/plain").status, 200);
        slowest = slowest.max(t.elapsed());
        thread::sleep(Duration::from_millis(10));
    }
    slowest
}

/// A `server ... resolve` (nginx 1.27.3 and later) holds a placeholder address until nginx
/// resolves it at run time: it is never probed there. Until the name resolves (here never: no
/// DNS server answers) only the fixed address is a target; an upstream of `resolve` servers
/// only is valid. Following the name's addresses: tests/resolve_peers.rs.
#[test]
fn resolve_servers_are_not_probed_at_a_placeholder() {
    require_module!();
    require_nginx_with!(nginx_at_least("1.27.3", "server ... resolve in upstream"));
    let up = Upstream::start();
    let rx = WebhookReceiver::start();
    let dead_dns = closed_port();
    let upstream = format!(
        "resolver 127.0.0.1:{dead_dns} valid=1s;\nupstream backend {{\n    zone backend 64k;\n    \
         server 127.0.0.1:{};\n    server localhost:{} resolve;\n}}",
        up.port, up.port
    );
    let nginx = Nginx::start(
        &http_block(
            &rx.url(),
            &upstream,
            "upstream=backend interval=1s timeout=500ms",
        ),
        NginxOpts::workers(1),
    );
    let fixed = format!("http://127.0.0.1:{}/", up.port);
    assert!(
        wait_until(PATIENCE, || probe_up(&nginx, "be", &fixed) == Some(1.0)),
        "{}",
        report(&nginx, &rx)
    );
    // Three more probe rounds.
    thread::sleep(Duration::from_secs(3));
    let targets: Vec<String> = prom(&nginx)
        .into_iter()
        .filter(|s| s.0 == "nginx_probe_duration_seconds")
        .filter_map(|s| {
            s.1.iter()
                .find(|(k, _)| k == "target")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(targets, vec![fixed], "only the fixed address is a target");

    let only = format!(
        "resolver 127.0.0.1:{dead_dns};\nupstream backend {{\n    zone backend 64k;\n    \
         server localhost:{} resolve;\n}}",
        up.port
    );
    let (ok, out) = Nginx::test_config(
        &http_block(&rx.url(), &only, "upstream=backend mark_down=on"),
        NginxOpts::default(),
    );
    assert!(ok, "{out}");
}
