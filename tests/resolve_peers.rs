//! Integration tests of `server ... resolve` peers under `status_alert_probe upstream=`
//! (docs/directives.md, status_alert_probe; SPEC section 15): nginx 1.27.3 and later
//! re-resolves such a server at run time, and the probes follow: each address it resolves to
//! now is a target, a new address's series appear and a vanished one's disappear, at most
//! 8 addresses per server are probed (the rest are logged), and `mark_down=on` keeps a DOWN
//! resolved peer out and still fails open when every peer is DOWN.
//!
//! The kit's DNS server ([`DnsServer`], UDP on 127.0.0.1:0) answers `app.test A` with the
//! addresses the test gives it; nginx's `resolver ... valid=1s` asks again every second. The
//! peers are test upstreams on 127.0.0.1 and 127.0.0.2 with the same port, since a `server`
//! line names one port.

use status_alert_testkit::*;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

/// The name the DNS server knows.
const NAME: &str = "app.test";
/// How long to wait for what should come: a re-resolution (1 s), a probe (1 s), `fails=`.
const PATIENCE: Duration = Duration::from_secs(10);

/// `status_alert be` in `/` proxying to `backend`, whose servers are `servers` (lines), then
/// `app.test:PORT resolve`, probed with `probe`; metrics.
fn http_block(webhook: &str, dns_port: u16, port: u16, servers: &str, probe: &str) -> String {
    format!(
        r#"
status_alert_webhook {webhook};
status_alert_interval 1s;
resolver 127.0.0.1:{dns_port} valid=1s ipv6=off;
upstream backend {{
    zone backend 64k;
{servers}    server {NAME}:{port} resolve;
}}
server {{
    listen 127.0.0.1:{{PORT}};
    location / {{
        status_alert be;
        status_alert_probe {probe};
        proxy_pass http://backend;
    }}
    location = /status_metrics {{
        status_alert off;
        status_metrics;
    }}
}}
"#
    )
}

/// A test upstream on 127.0.0.1 and one on 127.0.0.2 with the same port.
fn two_peers() -> (Upstream, Upstream) {
    let a = Upstream::start();
    let b = Upstream::start_on(SocketAddr::from(([127, 0, 0, 2], a.port)))
        .expect("a test upstream on 127.0.0.2 with the port of one on 127.0.0.1");
    (a, b)
}

/// The probe of `backend` in every test (one adds `mark_down=on`).
const PROBE: &str = "upstream=backend uri=/health interval=1s timeout=500ms";

/// nginx with `workers` workers and [`http_block`] (`servers`, `probe`) for peers on `port`,
/// resolving [`NAME`] with a DNS server that answers `answer` (keep it while nginx runs: nginx
/// asks it again every second), alerting a webhook receiver.
fn start_nginx(
    port: u16,
    answer: &[[u8; 4]],
    servers: &str,
    probe: &str,
    workers: u32,
) -> (DnsServer, WebhookReceiver, Nginx) {
    let dns = DnsServer::start(NAME, answer);
    let rx = WebhookReceiver::start();
    let nginx = Nginx::start(
        &http_block(&rx.url(), dns.port, port, servers, probe),
        NginxOpts::workers(workers),
    );
    (dns, rx, nginx)
}

/// `http://IP:PORT/health`.
fn target(ip: &str, port: u16) -> String {
    format!("http://{ip}:{port}/health")
}

/// Every `target` label of probe `be` in any series, with the series' names.
fn series_by_target(nginx: &Nginx) -> Vec<(String, String)> {
    prom(nginx)
        .into_iter()
        .filter(|s| s.1.iter().any(|(k, v)| k == "probe" && v == "be"))
        .filter_map(|s| {
            let t = s.1.iter().find(|(k, _)| k == "target")?.1.clone();
            Some((t, s.0))
        })
        .collect()
}

/// The targets of probe `be` in the metrics.
fn targets(nginx: &Nginx) -> BTreeSet<String> {
    series_by_target(nginx)
        .into_iter()
        .map(|(t, _)| t)
        .collect()
}

fn report(nginx: &Nginx, rx: &WebhookReceiver) -> String {
    let log = nginx.error_log();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    format!(
        "\n--- targets ---\n{:?}\n--- embed titles ---\n{}\n--- last lines of error.log ---\n{}",
        targets(nginx),
        rx.titles().join("\n"),
        tail.join("\n")
    )
}

/// The probes follow the DNS answer: 127.0.0.1 is a target; when the answer becomes
/// 127.0.0.2 the new address is probed and every series of the old one goes; two addresses
/// are two targets; ten addresses are eight targets, and the log names the two left out.
#[test]
fn probes_follow_the_dns_answer_as_nginx_re_resolves() {
    require_module!();
    require_nginx_with!(nginx_at_least("1.27.3", "server ... resolve in upstream"));
    let (a, b) = two_peers();
    let port = a.port;
    let (dns, rx, nginx) = start_nginx(port, &[[127, 0, 0, 1]], "", PROBE, 2);
    let (ta, tb) = (target("127.0.0.1", port), target("127.0.0.2", port));
    assert!(
        wait_until(PATIENCE, || probe_up(&nginx, "be", &ta) == Some(1.0)),
        "127.0.0.1 never probed{}",
        report(&nginx, &rx)
    );
    assert_eq!(targets(&nginx), BTreeSet::from([ta.clone()]));
    assert!(a.hits("/health") >= 1);
    assert_eq!(
        b.hits("/health"),
        0,
        "127.0.0.2 probed before it was resolved"
    );

    // The answer changes: the probes move to the new address, the old one's series go.
    dns.set_addrs(&[[127, 0, 0, 2]]);
    assert!(
        wait_until(PATIENCE, || probe_up(&nginx, "be", &tb) == Some(1.0)
            && targets(&nginx) == BTreeSet::from([tb.clone()])),
        "the probes did not follow the answer{}",
        report(&nginx, &rx)
    );
    let old: Vec<(String, String)> = series_by_target(&nginx)
        .into_iter()
        .filter(|(t, _)| *t == ta)
        .collect();
    assert!(old.is_empty(), "series of the vanished address: {old:?}");
    assert!(b.hits("/health") >= 1, "127.0.0.2 never got a probe");
    let hits_a = a.hits("/health");
    thread::sleep(Duration::from_millis(2500));
    assert!(
        a.hits("/health") <= hits_a + 1,
        "the vanished address is still probed"
    );
    assert!(nginx
        .error_log()
        .contains(&format!("no longer resolves to 127.0.0.1:{port}")));
    // Not a DOWN: the address went away, it did not fail.
    assert!(
        !rx.titles().iter().any(|t| t.starts_with("DOWN")),
        "{}",
        report(&nginx, &rx)
    );

    // Both: two targets.
    dns.set_addrs(&[[127, 0, 0, 1], [127, 0, 0, 2]]);
    assert!(
        wait_until(PATIENCE, || probe_up(&nginx, "be", &ta) == Some(1.0)
            && probe_up(&nginx, "be", &tb) == Some(1.0)),
        "not both probed{}",
        report(&nginx, &rx)
    );

    // Ten addresses: eight slots per server, the other two are logged, not probed.
    let ten: Vec<[u8; 4]> = (1..=10).map(|i| [127, 0, 0, i]).collect();
    dns.set_addrs(&ten);
    assert!(
        wait_until(PATIENCE, || targets(&nginx).len() == 8),
        "not eight targets{}",
        report(&nginx, &rx)
    );
    assert!(
        nginx.wait_for_log("resolves to more than 8 addresses", PATIENCE),
        "{}",
        report(&nginx, &rx)
    );
    // The two that were probed keep their slots.
    let now = targets(&nginx);
    assert!(now.contains(&ta) && now.contains(&tb), "{now:?}");
    nginx.assert_log_clean();
}

/// `/x` through the proxy, `n` times; panics on anything but 200.
fn proxied(nginx: &Nginx, n: usize) {
    let mut client = KeepAliveClient::new(nginx.port);
    for _ in 0..n {
        assert_eq!(client.get("/x").status, 200);
    }
}

fn peer_down_metric(nginx: &Nginx, ip: &str, port: u16) -> Option<f64> {
    metric(
        &prom(nginx),
        "nginx_upstream_peer_down",
        &[("upstream", "backend"), ("peer", &format!("{ip}:{port}"))],
    )
}

/// `mark_down=on` with a server resolved to two addresses: the DOWN one gets no requests
/// until it is UP again; when both are DOWN, both are used (fail open) and the DOWN message
/// says so.
#[test]
fn mark_down_keeps_a_down_resolve_peer_out_and_fails_open() {
    require_module!();
    require_nginx_with!(nginx_at_least("1.27.3", "server ... resolve in upstream"));
    let (a, b) = two_peers();
    let port = a.port;
    for p in [&a, &b] {
        p.set("/x", 200, "x");
    }
    b.set("/health", 503, "sick");
    let (_dns, rx, nginx) = start_nginx(
        port,
        &[[127, 0, 0, 1], [127, 0, 0, 2]],
        "",
        &format!("{PROBE} mark_down=on"),
        2,
    );
    assert!(
        wait_until(PATIENCE, || peer_down_metric(&nginx, "127.0.0.2", port)
            == Some(1.0)),
        "127.0.0.2 never marked down{}",
        report(&nginx, &rx)
    );
    assert_eq!(peer_down_metric(&nginx, "127.0.0.1", port), Some(0.0));
    let want = format!(
        "DOWN be: {} (unexpected status 503)",
        target("127.0.0.2", port)
    );
    assert!(
        wait_until(PATIENCE, || rx.titles().contains(&want)),
        "no {want:?}{}",
        report(&nginx, &rx)
    );
    // The worker that evaluates applies the flag on its tick.
    thread::sleep(Duration::from_millis(600));
    let before = b.hits("/x");
    proxied(&nginx, 30);
    assert_eq!(b.hits("/x"), before, "a DOWN resolve peer got requests");
    assert!(a.hits("/x") >= 30);

    // Back UP: back in rotation.
    b.set("/health", 200, "ok");
    assert!(
        wait_until(PATIENCE, || peer_down_metric(&nginx, "127.0.0.2", port)
            == Some(0.0)),
        "127.0.0.2 never back{}",
        report(&nginx, &rx)
    );
    thread::sleep(Duration::from_millis(600));
    let before = b.hits("/x");
    proxied(&nginx, 30);
    assert!(b.hits("/x") > before, "an UP resolve peer got no requests");

    // Both DOWN: both are used (fail open).
    for p in [&a, &b] {
        p.set("/health", 503, "sick");
    }
    assert!(
        nginx.wait_for_log("mark_down fails open", PATIENCE),
        "no fail-open notice{}",
        report(&nginx, &rx)
    );
    assert!(
        wait_until(PATIENCE, || rx.titles().iter().any(|t| t
            .starts_with("DOWN be: ")
            && t.contains("; fail open, every peer"))),
        "no DOWN message says fail open{}",
        report(&nginx, &rx)
    );
    thread::sleep(Duration::from_millis(600));
    let before = [a.hits("/x"), b.hits("/x")];
    proxied(&nginx, 30);
    assert!(
        a.hits("/x") > before[0],
        "127.0.0.1 unused while failing open"
    );
    assert!(
        b.hits("/x") > before[1],
        "127.0.0.2 unused while failing open"
    );
    for ip in ["127.0.0.1", "127.0.0.2"] {
        assert_eq!(peer_down_metric(&nginx, ip, port), Some(0.0), "{ip}");
    }
    nginx.assert_log_clean();
}

/// A name resolving to a fixed server's address and to a new one, in an upstream with both:
/// each address is one target with one series, whichever line it comes from.
#[test]
fn an_address_of_a_fixed_server_and_a_resolved_name_is_one_target() {
    require_module!();
    require_nginx_with!(nginx_at_least("1.27.3", "server ... resolve in upstream"));
    let (a, _b) = two_peers();
    let port = a.port;
    let fixed = format!("    server 127.0.0.1:{port};\n");
    let (_dns, rx, nginx) = start_nginx(port, &[[127, 0, 0, 1], [127, 0, 0, 2]], &fixed, PROBE, 1);
    let (ta, tb) = (target("127.0.0.1", port), target("127.0.0.2", port));
    assert!(
        wait_until(PATIENCE, || probe_up(&nginx, "be", &tb) == Some(1.0)),
        "127.0.0.2 never probed{}",
        report(&nginx, &rx)
    );
    // Two more ticks of re-resolution and probes.
    thread::sleep(Duration::from_secs(2));
    let ups: Vec<String> = series_by_target(&nginx)
        .into_iter()
        .filter(|(_, name)| name == "nginx_probe_up")
        .map(|(t, _)| t)
        .collect();
    assert_eq!(ups, vec![ta.clone(), tb.clone()], "{}", report(&nginx, &rx));

    // A reload keeps the targets; reading the configuration looked up no host of its own for
    // the resolve server's slots (their address comes at run time).
    let probes_before = a.hits("/health");
    nginx.reload();
    assert!(
        wait_until(PATIENCE, || a.hits("/health") > probes_before + 1),
        "no probes after the reload{}",
        report(&nginx, &rx)
    );
    assert_eq!(targets(&nginx), BTreeSet::from([ta, tb]));
    assert!(
        !nginx.error_log().contains("host not found"),
        "{}",
        report(&nginx, &rx)
    );
    nginx.assert_log_clean();
}

/// `nginx_upstream_peer_responses_total{upstream, peer, class}` of `backend`, if present.
fn peer_tries(nginx: &Nginx, peer: &str, class: &str) -> Option<f64> {
    metric(
        &prom(nginx),
        "nginx_upstream_peer_responses_total",
        &[("upstream", "backend"), ("peer", peer), ("class", class)],
    )
}

/// The tries of requests to `server ... resolve` peers count under the address they went
/// to, not `other`; when the name stops resolving to an address, its series go.
#[test]
fn tries_of_resolve_peers_count_under_their_address() {
    require_module!();
    require_nginx_with!(nginx_at_least("1.27.3", "server ... resolve in upstream"));
    let (a, b) = two_peers();
    let port = a.port;
    let (dns, rx, nginx) = start_nginx(port, &[[127, 0, 0, 1], [127, 0, 0, 2]], "", PROBE, 2);
    let (pa, pb) = (format!("127.0.0.1:{port}"), format!("127.0.0.2:{port}"));
    // Their series appear (with zeros) once the evaluator has given them cells.
    assert!(
        wait_until(PATIENCE, || peer_tries(&nginx, &pa, "2xx").is_some()
            && peer_tries(&nginx, &pb, "2xx").is_some()),
        "no series of the resolved peers{}",
        report(&nginx, &rx)
    );
    proxied(&nginx, 20);
    let counted = |p: &str| peer_tries(&nginx, p, "2xx").unwrap_or(0.0);
    assert!(
        wait_until(PATIENCE, || counted(&pa) + counted(&pb) == 20.0),
        "{} + {} tries counted of 20{}",
        counted(&pa),
        counted(&pb),
        report(&nginx, &rx)
    );
    assert_eq!(counted(&pa), a.hits("/x") as f64);
    assert_eq!(counted(&pb), b.hits("/x") as f64);
    assert!(counted(&pa) > 0.0 && counted(&pb) > 0.0);
    assert_eq!(peer_tries(&nginx, "other", "2xx"), Some(0.0));

    // 127.0.0.1 goes: its series go, tries count under 127.0.0.2.
    dns.set_addrs(&[[127, 0, 0, 2]]);
    assert!(
        wait_until(PATIENCE, || peer_tries(&nginx, &pa, "2xx").is_none()),
        "the vanished address's series stay{}",
        report(&nginx, &rx)
    );
    let before = counted(&pb);
    proxied(&nginx, 10);
    assert!(
        wait_until(PATIENCE, || counted(&pb) == before + 10.0),
        "{}",
        report(&nginx, &rx)
    );
    nginx.assert_log_clean();
}
