//! Routing with a real nginx and local receivers: `min_level=` and `after=` give each
//! destination its share of an incident, in order; `mention=` pings exactly the configured IDs
//! (docs/directives.md#status_alert_webhook, docs/alerts.md#routing-and-escalation).

use std::time::Duration;

use status_alert_testkit::*;

/// How long a count must stay put before an "exactly N" check reads it.
const QUIET: Duration = Duration::from_secs(2);

fn send(port: u16, path: &str, n: usize) {
    let statuses = hammer(port, path, n, 4);
    assert!(statuses.iter().all(|s| *s != 0), "transport errors");
}

/// Waits until `hook` received a title starting with `prefix`.
fn wait_title(hook: &WebhookReceiver, prefix: &str, timeout: Duration) {
    assert!(
        wait_until(timeout, || hook
            .all_titles()
            .iter()
            .any(|t| t.starts_with(prefix))),
        "no {prefix:?} within {timeout:?}: {:?}",
        hook.all_titles()
    );
}

/// `be` on `/` (200) and `/err` (503) with `window`, the destinations given, metrics.
fn config(destinations: &str, window: &str) -> String {
    format!(
        r#"
        {destinations}
        status_alert_interval 1s;
        server {{
            listen 127.0.0.1:{{PORT}};
            location / {{ status_alert be window={window} repeat=off; return 200 "ok"; }}
            location /err {{ status_alert be window={window} repeat=off; return 503; }}
            location = /status_metrics {{ status_alert off; status_metrics; }}
        }}
        "#
    )
}

/// The titles each receiver got, once nothing arrives any more.
fn settled(hooks: &[&WebhookReceiver]) -> Vec<Vec<String>> {
    settle(QUIET, Duration::from_secs(10), || {
        hooks.iter().map(|h| h.all_titles()).collect::<Vec<_>>()
    })
}

#[test]
fn three_destinations_each_get_their_share_of_an_incident_in_order() {
    require_module!();
    let all = WebhookReceiver::start();
    let critical = WebhookReceiver::start();
    let second_tier = WebhookReceiver::start();
    let destinations = format!(
        "status_alert_webhook {};\n\
         status_alert_webhook {} min_level=critical;\n\
         status_alert_webhook {} after=5s;",
        all.url(),
        critical.url(),
        second_tier.url()
    );
    let nginx = Nginx::start(&config(&destinations, "10s"), NginxOpts::default());
    let port = nginx.port;
    // 7 of 107 are 5xx (6.5%): a warning.
    send(port, "/", 100);
    send(port, "/err", 7);
    wait_title(&all, "WARNING be: 5xx ", Duration::from_secs(5));
    // 20 more 5xx (27 of 127, 21%): critical. The incident began with the warning.
    send(port, "/err", 20);
    wait_title(&all, "CRITICAL be: 5xx ", Duration::from_secs(5));
    wait_title(&critical, "CRITICAL be: 5xx ", Duration::from_secs(5));
    // Five seconds after the warning, the second tier hears of what fires then.
    wait_title(&second_tier, "CRITICAL be: 5xx ", Duration::from_secs(8));
    // Once the window has slid past the errors: RESOLVED, to every destination that was told.
    wait_title(&all, "RESOLVED be after ", Duration::from_secs(15));
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        3,
        Duration::from_secs(10)
    ));
    let got = settled(&[&all, &critical, &second_tier]);
    let kinds = |titles: &[String]| -> Vec<String> {
        titles
            .iter()
            .map(|t| {
                let still = if t.ends_with("(still firing)") {
                    " (still firing)"
                } else {
                    ""
                };
                format!("{}{still}", t.split(' ').next().unwrap_or(""))
            })
            .collect()
    };
    assert_eq!(
        kinds(&got[0]),
        ["WARNING", "CRITICAL", "RESOLVED"],
        "{got:?}"
    );
    assert_eq!(kinds(&got[1]), ["CRITICAL", "RESOLVED"], "{got:?}");
    assert_eq!(
        kinds(&got[2]),
        ["CRITICAL (still firing)", "RESOLVED"],
        "{got:?}"
    );
    for h in [&all, &critical, &second_tier] {
        assert!(h.violations().is_empty(), "{:?}", h.violations());
    }
}

#[test]
fn a_short_incident_never_reaches_the_after_destination() {
    require_module!();
    let all = WebhookReceiver::start();
    let second_tier = WebhookReceiver::start();
    let destinations = format!(
        "status_alert_webhook {};\nstatus_alert_webhook {} after=5s;",
        all.url(),
        second_tier.url()
    );
    // window=2s: the errors leave the window, and the incident ends, about 2s after it began.
    let nginx = Nginx::start(&config(&destinations, "2s"), NginxOpts::default());
    send(nginx.port, "/err", 30);
    wait_title(&all, "CRITICAL be: 5xx ", Duration::from_secs(5));
    wait_title(&all, "RESOLVED be after ", Duration::from_secs(6));
    // Past the 5s the second tier would have waited, and three more rounds.
    std::thread::sleep(Duration::from_secs(4));
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        3,
        Duration::from_secs(10)
    ));
    let got = settled(&[&all, &second_tier]);
    assert_eq!(got[0].len(), 2, "{got:?}");
    assert!(got[1].is_empty(), "{got:?}");
    assert_eq!(second_tier.requests_count(), 0);
}

#[test]
fn reloads_neither_repeat_nor_lose_what_the_after_destination_is_owed() {
    require_module!();
    let all = WebhookReceiver::start();
    let second_tier = WebhookReceiver::start();
    let destinations = format!(
        "status_alert_webhook {};\nstatus_alert_webhook {} after=4s;",
        all.url(),
        second_tier.url()
    );
    let nginx = Nginx::start(&config(&destinations, "10s"), NginxOpts::default());
    send(nginx.port, "/err", 30);
    wait_title(&all, "CRITICAL be: 5xx ", Duration::from_secs(5));
    // A reload while the second tier waits: the new evaluator still owes it the start.
    nginx.reload();
    wait_title(&second_tier, "CRITICAL be: 5xx ", Duration::from_secs(8));
    // A reload after it was told: no second announcement, and the end still comes.
    nginx.reload();
    wait_title(&second_tier, "RESOLVED be after ", Duration::from_secs(15));
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        3,
        Duration::from_secs(10)
    ));
    let got = settled(&[&all, &second_tier]);
    assert_eq!(got[0].len(), 2, "{got:?}");
    assert_eq!(got[1].len(), 2, "{got:?}");
    assert!(got[1][0].ends_with("(still firing)"), "{got:?}");
}

#[test]
fn discord_mentions_ping_only_the_configured_ids_whatever_a_probe_url_says() {
    require_module!();
    let mentions = ["role:123456789012345678", "user:42"];
    let pinging = WebhookReceiver::start_pinging(&mentions);
    let plain = WebhookReceiver::start();
    // A probe whose URL tries to ping everyone: DOWN is CRITICAL, so it pings the configured
    // IDs, and only them. The NAME's own 5xx alert goes through the same door.
    let closed = closed_port();
    let block = format!(
        r#"
        status_alert_webhook {pinging} mention=role:123456789012345678,user:42;
        status_alert_webhook {plain};
        status_alert_interval 1s;
        server {{
            listen 127.0.0.1:{{PORT}};
            location / {{
                status_alert be window=10s repeat=off;
                status_alert_probe http://127.0.0.1:{closed}/@everyone/@here/%3C@&1%3E
                    interval=1s timeout=500ms fails=1;
                return 200 "ok";
            }}
            location /err {{ status_alert be window=10s repeat=off; return 503; }}
            location = /status_metrics {{ status_alert off; status_metrics; }}
        }}
        "#,
        pinging = pinging.url(),
        plain = plain.url()
    );
    let nginx = Nginx::start(&block, NginxOpts::default());
    wait_title(&pinging, "DOWN be: ", Duration::from_secs(8));
    // A warning pings nobody; a critical pings the configured IDs.
    send(nginx.port, "/", 100);
    send(nginx.port, "/err", 7);
    wait_title(&pinging, "WARNING be: 5xx ", Duration::from_secs(5));
    send(nginx.port, "/err", 20);
    wait_title(&pinging, "CRITICAL be: 5xx ", Duration::from_secs(5));
    wait_title(&plain, "CRITICAL be: 5xx ", Duration::from_secs(5));

    assert!(
        pinging.violations().is_empty(),
        "{:?}",
        pinging.violations()
    );
    assert!(plain.violations().is_empty(), "{:?}", plain.violations());
    let msgs = pinging.messages();
    let titles = |m: &serde_json::Value| embed_titles(std::slice::from_ref(m));
    for m in &msgs {
        let critical = titles(m)
            .iter()
            .any(|t| t.starts_with("DOWN ") || t.starts_with("CRITICAL "));
        let pings = discord_pings(m);
        if critical {
            assert_eq!(pings, mentions, "{m}");
            let content = m["content"].as_str().unwrap();
            assert!(
                content.starts_with("<@&123456789012345678> <@42> "),
                "{content}"
            );
            if content.contains("DOWN be: ") {
                // The URL's mentions reached the text, unable to ping.
                assert!(
                    content.contains("/@\u{200B}everyone/@\u{200B}here/"),
                    "{content}"
                );
            }
        } else {
            assert!(pings.is_empty(), "{m}");
            assert_eq!(m["allowed_mentions"], no_pings(), "{m}");
        }
    }
    // The destination without mention= pings nobody, as always.
    for m in plain.messages() {
        assert_eq!(m["allowed_mentions"], no_pings(), "{m}");
        assert!(discord_pings(&m).is_empty(), "{m}");
    }
}
