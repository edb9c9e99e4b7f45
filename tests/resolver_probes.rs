//! Integration test of URL probes whose host name is looked up with nginx's `resolver`
//! (README, Directives > status_alert_probe): again before every probe, a
//! failed lookup is a `dns` failure, and a lookup still under way when the probe's `timeout=`
//! passes is one too.
//!
//! The kit's DNS server ([`DnsServer`], UDP on 127.0.0.1:0) answers `probe.test` with 127.0.0.1,
//! or NXDOMAIN, or nothing at all, as the test says.

use status_alert_testkit::*;
use std::thread;
use std::time::{Duration, Instant};

/// The name the DNS server knows.
const NAME: &str = "probe.test";

/// Probes `http://probe.test:PORT/health` through the resolver: UP; NXDOMAIN makes it fail
/// as `dns` and go DOWN; answering again brings it UP; a silent DNS server makes it `dns`
/// again, both when `resolver_timeout` passes first (the resolver ends the lookup) and when
/// the probe's `timeout=` does (the probe cancels the lookup). nginx then reloads and stops
/// promptly with lookups in flight, and its log is clean.
#[test]
fn host_name_is_resolved_by_nginx_resolver_every_interval() {
    require_module!();
    let dns = DnsServer::start(NAME, &[[127, 0, 0, 1]]);
    let up = Upstream::start();
    up.set("/health", 200, "ok");
    up.set("/health2", 200, "ok");
    let target = format!("http://{NAME}:{}/health", up.port);
    let target2 = format!("http://{NAME}:{}/health2", up.port);
    // Probe `be` waits for resolver_timeout (300ms) before its timeout (800ms); probe `be2`
    // has the default resolver_timeout (30s), so its timeout cancels the lookup.
    let http = format!(
        r#"
status_alert_interval 1s;
resolver 127.0.0.1:{dns} valid=1s;
server {{
    listen 127.0.0.1:{{PORT}};
    location / {{
        status_alert be;
        resolver_timeout 300ms;
        status_alert_probe {target} interval=1s timeout=800ms;
        return 200 "ok";
    }}
    location /two {{
        status_alert be2;
        status_alert_probe {target2} interval=1s timeout=800ms;
        return 200 "ok";
    }}
    location = /status_metrics {{
        status_alert off;
        status_metrics;
    }}
}}
"#,
        dns = dns.port
    );
    let mut nginx = Nginx::start(&http, NginxOpts::default());
    let both = |want: f64| {
        probe_up(&nginx, "be", &target) == Some(want)
            && probe_up(&nginx, "be2", &target2) == Some(want)
    };
    let context = |nginx: &Nginx| {
        format!(
            "DNS queries: {}; upstream hits: {}\n{}\n--- error.log ---\n{}",
            dns.queries(),
            up.total_hits(),
            http_get(nginx.port, "/status_metrics").text(),
            nginx.error_log()
        )
    };

    assert!(
        wait_until(Duration::from_secs(8), || both(1.0)),
        "probes of {NAME} never came UP\n{}",
        context(&nginx)
    );
    assert!(dns.queries() > 0, "nginx's resolver was not asked");
    assert!(up.hits("/health") > 0 && up.hits("/health2") > 0);
    // Asked again as probes go on: answers are valid for 1s (`valid=1s`, TTL 1) and both
    // probes run every second, so 4 s see 2 to 10 lookups (not one at load, not a flood).
    let (queries, from) = (dns.queries(), Instant::now());
    thread::sleep(Duration::from_secs(4));
    let more = dns.queries() - queries;
    assert!(
        (2..=10).contains(&more),
        "{more} DNS queries in {:?}\n{}",
        from.elapsed(),
        context(&nginx)
    );

    // Looked up again every interval: NXDOMAIN makes the probes fail as `dns`.
    dns.set_mode(DnsMode::NxDomain);
    assert!(
        wait_until(Duration::from_secs(10), || both(0.0)),
        "probes did not go DOWN on NXDOMAIN\n{}",
        context(&nginx)
    );
    for (probe, t) in [("be", &target), ("be2", &target2)] {
        assert!(
            probe_failures(&nginx, probe, t, "dns") >= 1.0,
            "{}",
            context(&nginx)
        );
        for other in ["refused", "timeout", "status", "reset", "tls"] {
            assert_eq!(probe_failures(&nginx, probe, t, other), 0.0, "{other}");
        }
    }

    dns.set_mode(DnsMode::Answer);
    assert!(
        wait_until(Duration::from_secs(10), || both(1.0)),
        "probes did not come back UP\n{}",
        context(&nginx)
    );

    // A silent server: `be` fails by resolver_timeout, `be2` by its own timeout=.
    let before = [
        probe_failures(&nginx, "be", &target, "dns"),
        probe_failures(&nginx, "be2", &target2, "dns"),
    ];
    dns.set_mode(DnsMode::Silent);
    assert!(
        wait_until(Duration::from_secs(12), || both(0.0)),
        "probes did not go DOWN with a silent DNS server\n{}",
        context(&nginx)
    );
    assert!(probe_failures(&nginx, "be", &target, "dns") > before[0]);
    assert!(probe_failures(&nginx, "be2", &target2, "dns") > before[1]);
    for (probe, t) in [("be", &target), ("be2", &target2)] {
        assert_eq!(
            probe_failures(&nginx, probe, t, "timeout"),
            0.0,
            "a lookup that does not end is `dns`, not `timeout`\n{}",
            context(&nginx)
        );
    }

    // A reload with lookups in flight: the old workers exit without waiting for them (reload()
    // fails after 10s otherwise), and the new ones look the name up again.
    let queries = dns.queries();
    nginx.reload();
    assert!(
        wait_until(Duration::from_secs(5), || dns.queries() > queries),
        "no lookup after the reload\n{}",
        context(&nginx)
    );

    // Graceful stop with lookups in flight: nothing waits for them.
    let workers = nginx.worker_pids();
    thread::sleep(Duration::from_millis(300));
    nginx.assert_log_clean();
    let pid = nginx.pid();
    nginx.signal("QUIT");
    assert!(
        wait_until(Duration::from_secs(3), || !process_alive(pid)
            && workers.iter().all(|&w| !process_alive(w))),
        "nginx did not stop within 3s with DNS lookups in flight\n{}",
        nginx.error_log()
    );
    nginx.stop();
    let log = nginx.error_log();
    for bad in ["[alert]", "[crit]", "[emerg]", "could not cancel"] {
        assert!(!log.contains(bad), "{bad} in error.log:\n{log}");
    }
}

/// Without `resolver`, a host name is still resolved once at load (the system resolver):
/// `localhost` works as before.
#[test]
fn without_resolver_the_name_is_resolved_at_load() {
    require_module!();
    let up = Upstream::start();
    up.set("/health", 200, "ok");
    let target = format!("http://localhost:{}/health", up.port);
    let http = format!(
        r#"
status_alert_interval 1s;
server {{
    listen 127.0.0.1:{{PORT}};
    location / {{
        status_alert be;
        status_alert_probe {target} interval=1s timeout=800ms;
        return 200 "ok";
    }}
    location = /status_metrics {{
        status_alert off;
        status_metrics;
    }}
}}
"#
    );
    let nginx = Nginx::start(&http, NginxOpts::default());
    assert!(
        wait_until(Duration::from_secs(8), || probe_up(&nginx, "be", &target)
            == Some(1.0)),
        "localhost probe never came UP\n{}",
        nginx.error_log()
    );
    nginx.assert_log_clean();
}
