//! Integration tests of per-peer accounting (docs/metrics.md,
//! `nginx_upstream_peer_responses_total`): every upstream try of a NAME's request counts where
//! it went, by class; a refused connection is an `error`; a `proxy_pass` with variables that
//! resolves to an address counts under upstream `-`, peer `other`; a reload that removes a peer
//! removes its series; a 5xx, SLO or latency alert names the failing peer, and the status page's card
//! lists it. Each fake upstream counts what it received, so the expected counts are exact
//! whichever worker and peer round-robin picked.

use std::time::Duration;

use status_alert_testkit::*;

const PATIENCE: Duration = Duration::from_secs(8);
const FAMILY: &str = "nginx_upstream_peer_responses_total";

/// `upstream backend { EXTRA server S; ... }`: `extra` (lines) first, then a `server` line per
/// entry of `servers` (an address, maybe with parameters after it).
fn upstream_block(servers: &[String], extra: &str) -> String {
    let servers: String = servers
        .iter()
        .map(|s| format!("    server {s};\n"))
        .collect();
    format!("upstream backend {{\n{extra}{servers}}}")
}

/// `upstream backend` with `servers`, a NAME proxying to it on `/` (default retries), on
/// `/retry/` (also on 503) and on `/var/` through a variable, and the metrics.
fn http_block(servers: &[String], var_target: &str) -> String {
    let upstream = upstream_block(servers, "");
    format!(
        r#"
{upstream}
server {{
    listen 127.0.0.1:{{PORT}};
    location / {{
        status_alert be;
        proxy_pass http://backend;
    }}
    location /retry/ {{
        status_alert be;
        proxy_pass http://backend;
        proxy_next_upstream error http_503;
    }}
    location /var/ {{
        status_alert be;
        set $target "{var_target}";
        proxy_pass http://$target;
    }}
    location = /status_metrics {{
        status_alert off;
        status_metrics;
    }}
}}
"#
    )
}

fn addr(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Three fake upstreams, the second answering 503 on `sick_path`, and their addresses.
fn three_peers(sick_path: &str) -> ([Upstream; 3], Vec<String>) {
    let peers = [Upstream::start(), Upstream::start(), Upstream::start()];
    peers[1].set(sick_path, 503, "sick");
    let servers = peers.iter().map(|p| addr(p.port)).collect();
    (peers, servers)
}

/// The peer's count of `class` (0 when absent).
fn tries(m: &[Sample], upstream: &str, peer: &str, class: &str) -> u64 {
    metric(
        m,
        FAMILY,
        &[("upstream", upstream), ("peer", peer), ("class", class)],
    )
    .unwrap_or(0.0) as u64
}

/// Every series of the family: `(upstream, peer)`, once each.
fn series(m: &[Sample]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = m
        .iter()
        .filter(|(n, _, _)| n == FAMILY)
        .map(|(_, l, _)| {
            let get = |k: &str| l.iter().find(|(lk, _)| lk == k).map(|(_, v)| v.clone());
            (get("upstream").unwrap(), get("peer").unwrap())
        })
        .collect();
    out.dedup();
    out
}

fn total(m: &[Sample]) -> u64 {
    m.iter()
        .filter(|(n, _, _)| n == FAMILY)
        .map(|(_, _, v)| *v as u64)
        .sum()
}

/// The metrics once `n` tries are counted (a request is counted just after its response).
fn scrape_tries(nginx: &Nginx, n: u64) -> Vec<Sample> {
    let mut m = Vec::new();
    let reached = wait_until(PATIENCE, || {
        m = prom(nginx);
        total(&m) >= n
    });
    assert!(reached, "only {} of {n} tries counted", total(&m));
    m
}

/// A webhook, `upstream backend` with `servers` (each line's extra parameters after the
/// address), a NAME `be` with `alert` proxying to it on `/` (`location_extra` inside that
/// location), and the metrics.
fn alert_block(
    hook: &WebhookReceiver,
    servers: &[String],
    alert: &str,
    location_extra: &str,
) -> String {
    let upstream = upstream_block(servers, "");
    format!(
        r#"
status_alert_webhook {hook};
status_alert_interval 1s;
{upstream}
server {{
    listen 127.0.0.1:{{PORT}};
    location / {{
        status_alert be {alert};
        proxy_pass http://backend;
        {location_extra}
    }}
    location = /status_metrics {{
        status_alert off;
        status_metrics;
    }}
}}
"#,
        hook = hook.url()
    )
}

/// The Discord "Peers" field of the first CRITICAL whose title starts with `title`, once it
/// has arrived.
fn peers_field_of_critical(hook: &WebhookReceiver, title: &str) -> serde_json::Value {
    let critical = wait_until(PATIENCE, || {
        hook.titles().iter().any(|t| t.starts_with(title))
    });
    assert!(critical, "no {title}: {:?}", hook.titles());
    let msg = hook
        .messages()
        .into_iter()
        .find(|m| embed_titles(std::slice::from_ref(m))[0].starts_with(title))
        .unwrap();
    let fields = msg["embeds"][0]["fields"].as_array().unwrap().clone();
    fields
        .iter()
        .find(|f| f["name"] == "Peers")
        .unwrap_or_else(|| panic!("no Peers field: {fields:?}"))["value"]
        .clone()
}

#[test]
fn each_peer_counts_its_own_answers() {
    require_module!();
    let (peers, servers) = three_peers("/");
    let nginx = Nginx::start(&http_block(&servers, "127.0.0.1:1"), NginxOpts::workers(2));
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(http_get(nginx.port, "/").status);
    }
    let m = scrape_tries(&nginx, 30);
    assert_eq!(total(&m), 30, "one try per request");
    for (i, p) in peers.iter().enumerate() {
        let (ok, bad) = (
            tries(&m, "backend", &servers[i], "2xx"),
            tries(&m, "backend", &servers[i], "5xx"),
        );
        if i == 1 {
            assert_eq!((ok, bad), (0, p.hits("/") as u64), "peer {i}");
            assert!(bad > 0, "round-robin reached the 503 peer");
        } else {
            assert_eq!((ok, bad), (p.hits("/") as u64, 0), "peer {i}");
        }
    }
    let answered_503 = statuses.iter().filter(|s| **s == 503).count() as u64;
    assert_eq!(tries(&m, "backend", &servers[1], "5xx"), answered_503);
    // Every peer of the NAME's upstream has its series, and `other`, from the start.
    let mut want: Vec<(String, String)> = servers
        .iter()
        .chain(["other".to_string()].iter())
        .map(|p| ("backend".to_string(), p.clone()))
        .collect();
    want.sort();
    let mut got = series(&m);
    got.sort();
    assert_eq!(got, want);
    nginx.assert_log_clean();
}

#[test]
fn a_retry_chain_counts_each_try_where_it_went() {
    require_module!();
    let (peers, servers) = three_peers("/retry/x");
    let nginx = Nginx::start(&http_block(&servers, "127.0.0.1:1"), NginxOpts::workers(2));
    for _ in 0..12 {
        // The 503 peer's requests go on to the next peer, which answers.
        assert_eq!(http_get(nginx.port, "/retry/x").status, 200);
    }
    let retried = peers[1].hits("/retry/x") as u64;
    assert!(retried > 0, "round-robin reached the 503 peer");
    let m = scrape_tries(&nginx, 12 + retried);
    assert_eq!(total(&m), 12 + retried);
    assert_eq!(tries(&m, "backend", &servers[1], "5xx"), retried);
    for i in [0, 2] {
        assert_eq!(
            tries(&m, "backend", &servers[i], "2xx"),
            peers[i].hits("/retry/x") as u64,
            "peer {i}"
        );
    }
    assert_eq!(tries(&m, "backend", "other", "2xx"), 0);
}

#[test]
fn a_refused_connection_is_an_error_and_a_variable_upstream_is_other() {
    require_module!();
    let live = Upstream::start();
    let dead = free_port();
    let servers = vec![addr(dead), addr(live.port)];
    let var = Upstream::start();
    let nginx = Nginx::start(
        &http_block(&servers, &addr(var.port)),
        NginxOpts::workers(2),
    );
    for _ in 0..6 {
        // The refused try goes on to the live peer (`proxy_next_upstream error` by default).
        assert_eq!(http_get(nginx.port, "/").status, 200);
    }
    assert_eq!(http_get(nginx.port, "/var/x").status, 200);
    assert_eq!(var.hits("/var/x"), 1);
    // A request is counted just after its response, and each worker may have tried the dead
    // peer once: wait for the last two requests' own counts, not for a total (8 tries can be
    // 6 + 2 refused before the variable's try is counted).
    let mut m = Vec::new();
    let counted = wait_until(PATIENCE, || {
        m = prom(&nginx);
        tries(&m, "backend", &servers[1], "2xx") >= 6 && tries(&m, "-", "other", "2xx") >= 1
    });
    assert!(counted, "not counted: {m:?}");
    let refused = tries(&m, "backend", &servers[0], "error");
    assert!(refused >= 1, "the dead peer was tried");
    for class in ["2xx", "3xx", "4xx", "5xx"] {
        assert_eq!(tries(&m, "backend", &servers[0], class), 0, "{class}");
    }
    assert_eq!(tries(&m, "backend", &servers[1], "2xx"), 6);
    assert_eq!(tries(&m, "-", "other", "2xx"), 1, "the variable's try");
    assert_eq!(total(&m), 6 + refused + 1);
}

#[test]
fn a_reload_that_removes_a_peer_removes_its_series() {
    require_module!();
    let peers = [Upstream::start(), Upstream::start(), Upstream::start()];
    let servers: Vec<String> = peers.iter().map(|p| addr(p.port)).collect();
    let nginx = Nginx::start(&http_block(&servers, "127.0.0.1:1"), NginxOpts::workers(2));
    for _ in 0..9 {
        assert_eq!(http_get(nginx.port, "/").status, 200);
    }
    let before = scrape_tries(&nginx, 9);
    assert!(series(&before).contains(&("backend".into(), servers[2].clone())));
    nginx.write_config(&http_block(&servers[..2], "127.0.0.1:1"));
    nginx.reload();
    let mut after = Vec::new();
    let gone = wait_until(PATIENCE, || {
        after = prom(&nginx);
        !series(&after).contains(&("backend".into(), servers[2].clone()))
    });
    assert!(gone, "{:?}", series(&after));
    // The peers that stay keep their counts.
    for s in &servers[..2] {
        assert_eq!(
            tries(&after, "backend", s, "2xx"),
            tries(&before, "backend", s, "2xx"),
            "{s}"
        );
    }
    assert_eq!(series(&after).len(), 3, "two peers and other");
}

#[test]
fn an_upstream_with_a_zone_and_an_implicit_upstream_count_alike() {
    require_module!();
    // With `zone`, nginx copies the peers' names into shared memory: they are found by their
    // bytes rather than by address. `proxy_pass http://ADDRESS` makes an implicit upstream.
    let peers = [Upstream::start(), Upstream::start()];
    peers[0].set("/", 500, "broken");
    let direct = Upstream::start();
    let servers: Vec<String> = peers.iter().map(|p| addr(p.port)).collect();
    let upstream = upstream_block(&servers, "    zone backend 64k;\n");
    let block = format!(
        r#"
{upstream}
server {{
    listen 127.0.0.1:{{PORT}};
    location / {{
        status_alert be;
        proxy_pass http://backend;
    }}
    location /direct/ {{
        status_alert direct;
        proxy_pass http://{};
    }}
    location = /status_metrics {{
        status_alert off;
        status_metrics;
    }}
}}
"#,
        addr(direct.port)
    );
    let nginx = Nginx::start(&block, NginxOpts::workers(2));
    for _ in 0..8 {
        http_get(nginx.port, "/");
    }
    for _ in 0..3 {
        assert_eq!(http_get(nginx.port, "/direct/x").status, 200);
    }
    let m = scrape_tries(&nginx, 11);
    assert_eq!(total(&m), 11);
    assert_eq!(
        tries(&m, "backend", &servers[0], "5xx"),
        peers[0].hits("/") as u64
    );
    assert_eq!(
        tries(&m, "backend", &servers[1], "2xx"),
        peers[1].hits("/") as u64
    );
    assert_eq!(tries(&m, "backend", "other", "2xx"), 0);
    let implicit = addr(direct.port);
    assert_eq!(tries(&m, &implicit, &implicit, "2xx"), 3);
    assert!(
        !series(&m).iter().any(|(u, _)| u == "-"),
        "{:?}",
        series(&m)
    );
}

#[test]
fn a_5xx_alert_names_the_peers_behind_it() {
    require_module!();
    let (peers, servers) = three_peers("/");
    let hook = WebhookReceiver::start();
    let block = alert_block(
        &hook,
        &servers,
        "window=10s warn=off crit=20% min_requests=5",
        "",
    );
    let nginx = Nginx::start(&block, NginxOpts::workers(2));
    for _ in 0..30 {
        http_get(nginx.port, "/");
    }
    // Every failed try went to the 503 peer.
    assert_eq!(
        peers_field_of_critical(&hook, "CRITICAL be: 5xx"),
        format!("5xx mostly from {} (100 %)", servers[1])
    );

    // The status page's CRITICAL card lists the upstream's peers: the 503 peer's row carries
    // every try it received as 5xx (default retries: a 503 is not retried), share 100 %.
    let html = http_get(nginx.port, "/status_metrics?format=html").text();
    let card = &html[html
        .find("aria-label=\"be\"")
        .unwrap_or_else(|| panic!("no card for be:\n{html}"))..];
    let card = &card[..card.find("</section>").unwrap()];
    assert!(
        card.contains("<h3>Upstream peers <small>(<code>backend</code>"),
        "{card}"
    );
    let row = |peer: &str| -> String {
        let at = card
            .find(&format!("<code>{peer}</code></td>"))
            .unwrap_or_else(|| panic!("no row for {peer}:\n{card}"));
        card[at..at + card[at..].find("</tr>").unwrap()].to_owned()
    };
    let sick = row(&servers[1]);
    let hits = peers[1].total_hits();
    assert!(hits > 0);
    assert!(
        sick.contains(&format!("<td data-label=\"5xx\" class=\"num\">{hits}</td>")),
        "{hits} tries: {sick}"
    );
    assert!(
        sick.contains("<td data-label=\"5xx + error\" class=\"num\">100.0%</td>"),
        "{sick}"
    );
    for healthy in [0, 2] {
        let r = row(&servers[healthy]);
        assert!(
            r.contains("<td data-label=\"5xx + error\" class=\"num\">0.0%</td>"),
            "{r}"
        );
    }
}

#[test]
fn an_slo_alert_names_the_peers_behind_it() {
    require_module!();
    let (_peers, servers) = three_peers("/");
    let hook = WebhookReceiver::start();
    // crit=100%: only the error budget (slo=99%) alerts; a third of the answers are 503.
    let alert = "window=2s min_requests=5 warn=off crit=100% slo=99% repeat=off";
    let nginx = Nginx::start(
        &alert_block(&hook, &servers, alert, ""),
        NginxOpts::workers(2),
    );
    for _ in 0..60 {
        http_get(nginx.port, "/");
    }
    assert_eq!(
        peers_field_of_critical(&hook, "CRITICAL be: error budget burning"),
        format!("5xx mostly from {} (100 %)", servers[1])
    );
}

#[test]
fn a_latency_alert_names_the_peer_that_timed_out() {
    require_module!();
    let peers = [Upstream::start(), Upstream::start()];
    // The second peer never answers in time: each of its tries times out (class error) after
    // 400 ms and is retried on the first, so half the requests take that long (max_fails=0:
    // nginx keeps sending it its turn).
    peers[1].set_delay("/", Duration::from_millis(1500));
    let servers: Vec<String> = peers.iter().map(|p| addr(p.port)).collect();
    let hook = WebhookReceiver::start();
    let lines = [servers[0].clone(), format!("{} max_fails=0", servers[1])];
    let alert = "window=10s min_requests=5 warn=off crit=100% repeat=off latency=p95:100ms:300ms";
    let block = alert_block(&hook, &lines, alert, "proxy_read_timeout 400ms;");
    let nginx = Nginx::start(&block, NginxOpts::workers(2));
    for _ in 0..12 {
        assert_eq!(http_get(nginx.port, "/").status, 200);
    }
    // Each timed-out try is an error of the slow peer, each retry a 2xx of the other.
    let slow = peers[1].total_hits() as u64;
    assert!(slow >= 5, "{slow} tries of the slow peer");
    let m = scrape_tries(&nginx, 12 + slow);
    assert_eq!(tries(&m, "backend", &servers[1], "error"), slow);
    assert_eq!(tries(&m, "backend", &servers[0], "2xx"), 12);
    assert_eq!(
        peers_field_of_critical(&hook, "CRITICAL be: p95"),
        format!("5xx mostly from {} (100 %)", servers[1])
    );
}
