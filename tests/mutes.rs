//! Maintenance windows and runtime mutes with a real nginx (1s interval, 10s windows) and a
//! local webhook receiver: a muted NAME is evaluated and its incidents recorded, but nothing is
//! sent; what still fires when the mute ends is announced then; `status_metrics control=on`
//! takes mutes and refuses what it must (403, 405, 400); mutes survive reloads and a binary
//! upgrade; `nginx_location_muted` and the page say so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use status_alert_testkit::*;

/// `be` on `/` (200) and `/err` (503); `/status_metrics` takes mutes, `/status_ro` does not.
/// `extra` goes in the http block (maintenance windows, a zone size).
fn config(webhook: &str, extra: &str) -> String {
    format!(
        r#"
        status_alert_webhook {webhook};
        status_alert_interval 1s;
        {extra}
        server {{
            listen 127.0.0.1:{{PORT}};
            location / {{ status_alert be window=10s repeat=off; return 200; }}
            location /err {{ status_alert be window=10s repeat=off; return 503; }}
            location = /status_metrics {{ status_alert off; status_metrics control=on; }}
            location = /status_ro {{ status_alert off; status_metrics; }}
        }}
        "#
    )
}

fn send(port: u16, path: &str, n: usize) {
    let statuses = hammer(port, path, n, 4);
    assert!(
        statuses.iter().all(|s| *s != 0),
        "transport errors on {path}"
    );
}

/// 503s on `/err`, 20 a second, until dropped: an incident that keeps firing however long the
/// test takes.
struct Errors {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Errors {
    fn start(port: u16) -> Errors {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let _ = try_http_request(port, "GET", "/err", &[], None);
                thread::sleep(Duration::from_millis(50));
            }
        });
        send(port, "/err", 40);
        Errors {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn post(port: u16, path: &str) -> Response {
    http_request(port, "POST", path, &[], None)
}

fn muted(port: u16) -> Option<f64> {
    let m = parse_prometheus(&http_get(port, "/status_metrics").text());
    metric(&m, "nginx_location_muted", &[("location", "be")])
}

/// Waits for three evaluation rounds, then returns every title the webhook got.
fn titles_after_three_rounds(nginx: &Nginx, hook: &WebhookReceiver) -> Vec<String> {
    let rounds = evaluations(nginx);
    assert!(
        wait_for_evaluations(nginx, rounds, 3, Duration::from_secs(10)),
        "no evaluation rounds\n{}",
        nginx.error_log()
    );
    hook.all_titles()
}

/// An incident of `be` while it is muted: evaluated (the level is critical, the incident is
/// recorded and marked muted) but nothing sent; the log says what was held back. The errors go
/// on until the returned load is dropped.
fn incident_while_muted(nginx: &Nginx, hook: &WebhookReceiver) -> Errors {
    let errors = Errors::start(nginx.port);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let m = parse_prometheus(&http_get(nginx.port, "/status_metrics").text());
            metric(&m, "nginx_location_alert_state", &[("location", "be")]) == Some(2.0)
        }),
        "not evaluated\n{}",
        nginx.error_log()
    );
    let t = titles_after_three_rounds(nginx, hook);
    assert!(t.is_empty(), "a muted NAME alerted: {t:?}");
    assert!(nginx.error_log().contains("(muted, not sent)"));
    let json = http_get(nginx.port, "/status_metrics?format=json").json();
    let recent = &json["locations"]["be"]["incidents"]["recent"];
    assert_eq!(recent[0]["muted"], true, "{json}");
    errors
}

/// `HH:MM` of a time of day in seconds.
fn hhmm(secs: u64) -> String {
    format!("{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60)
}

/// A window on every day, UTC, from the minute before now to four minutes after.
fn window_around_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = (now % 86_400) / 60 * 60 + 86_400 - 60;
    format!(
        "status_alert_maintenance be * {}-{} tz=UTC;",
        hhmm(start),
        hhmm(start + 300)
    )
}

#[test]
fn a_runtime_mute_holds_back_alerts_and_its_end_announces_what_still_fires() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&config(&hook.url(), ""), NginxOpts::default());
    let port = nginx.port;
    assert_eq!(muted(port), Some(0.0));

    let r = post(port, "/status_metrics?mute=be&for=1m&reason=deploy+v2");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.text().starts_with("muted be until ") && r.text().ends_with(" (deploy v2)\n"),
        "{}",
        r.text()
    );
    assert_eq!(muted(port), Some(1.0));
    let page = http_get(port, "/status_metrics?format=html").text();
    assert!(
        page.contains("muted until <time") && page.contains("(deploy v2)</p>"),
        "{page}"
    );
    let json = http_get(port, "/status_metrics?format=json").json();
    assert_eq!(json["locations"]["be"]["muted"]["reason"], "deploy v2");

    let errors = incident_while_muted(&nginx, &hook);

    // Unmuted while it still fires: announced now, as still firing; then resolved as usual.
    let r = post(port, "/status_metrics?unmute=be");
    assert_eq!((r.status, r.text().as_str()), (200, "unmuted be\n"));
    assert_eq!(muted(port), Some(0.0));
    assert!(
        wait_until(Duration::from_secs(5), || !hook.all_titles().is_empty()),
        "nothing announced at the end of the mute\n{}",
        nginx.error_log()
    );
    drop(errors);
    // The errors leave the 10s window, then the incident resolves.
    wait_until(Duration::from_secs(20), || hook.all_titles().len() >= 2);
    let t = settle(Duration::from_secs(2), Duration::from_secs(10), || {
        hook.all_titles()
    });
    assert!(
        t.len() == 2
            && t[0].starts_with("CRITICAL be: 5xx ")
            && t[0].ends_with("(still firing)")
            && t[1].starts_with("RESOLVED be after"),
        "{t:?}"
    );
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
    let r = post(port, "/status_metrics?unmute=be");
    assert_eq!(r.text(), "be was not muted\n");
}

#[test]
fn a_mute_that_runs_out_during_an_incident_announces_it_then() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&config(&hook.url(), ""), NginxOpts::default());
    let r = post(nginx.port, "/status_metrics?mute=*&for=6s");
    assert_eq!(r.status, 200, "{}", r.text());
    let muted_at = std::time::Instant::now();
    let _errors = Errors::start(nginx.port);
    assert!(wait_until(Duration::from_secs(10), || muted(nginx.port) == Some(0.0)));
    assert!(muted_at.elapsed() >= Duration::from_secs(5));
    assert!(
        wait_until(Duration::from_secs(5), || !hook.all_titles().is_empty()),
        "{}",
        nginx.error_log()
    );
    let t = hook.all_titles();
    assert!(t[0].ends_with("(still firing)"), "{t:?}");
}

#[test]
fn an_incident_resolved_during_a_mute_gets_its_resolved_when_the_mute_ends() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&config(&hook.url(), ""), NginxOpts::default());
    let port = nginx.port;
    send(port, "/err", 40);
    assert!(
        wait_until(Duration::from_secs(5), || hook.all_titles().len() == 1),
        "{}",
        nginx.error_log()
    );
    let r = post(port, "/status_metrics?mute=be&for=1m&reason=fixing");
    assert_eq!(r.status, 200, "{}", r.text());
    // The burst leaves the 10s window: the incident resolves while muted.
    assert!(wait_until(Duration::from_secs(15), || {
        let m = parse_prometheus(&http_get(port, "/status_metrics").text());
        metric(&m, "nginx_location_alert_state", &[("location", "be")]) == Some(0.0)
    }));
    let t = titles_after_three_rounds(&nginx, &hook);
    assert_eq!(t.len(), 1, "the RESOLVED was sent during the mute: {t:?}");
    post(port, "/status_metrics?unmute=be");
    assert!(
        wait_until(Duration::from_secs(5), || hook.all_titles().len() == 2),
        "{}",
        nginx.error_log()
    );
    let t = titles_after_three_rounds(&nginx, &hook);
    assert!(
        t.len() == 2 && t[0].starts_with("CRITICAL be") && t[1].starts_with("RESOLVED be after"),
        "{t:?}"
    );
}

#[test]
fn a_probe_down_held_back_by_a_mute_is_announced_when_it_ends() {
    require_module!();
    let hook = WebhookReceiver::start();
    // Up while the listener is bound (the kernel completes the handshake), refused once dropped.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("tcp://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let probe = format!("status_alert_probe {target} name=be interval=1s timeout=500ms;");
    let nginx = Nginx::start(&config(&hook.url(), &probe), NginxOpts::default());
    assert!(
        wait_until(Duration::from_secs(5), || probe_up(&nginx, "be", &target)
            == Some(1.0)),
        "{}",
        nginx.error_log()
    );
    let r = post(nginx.port, "/status_metrics?mute=be&for=1m");
    assert_eq!(r.status, 200, "{}", r.text());
    drop(listener);
    assert!(wait_until(Duration::from_secs(5), || probe_up(
        &nginx, "be", &target
    ) == Some(0.0)));
    let t = titles_after_three_rounds(&nginx, &hook);
    assert!(t.is_empty(), "sent while muted: {t:?}");
    post(nginx.port, "/status_metrics?unmute=be");
    assert!(
        wait_until(Duration::from_secs(5), || !hook.all_titles().is_empty()),
        "{}",
        nginx.error_log()
    );
    let t = titles_after_three_rounds(&nginx, &hook);
    assert_eq!(t, [format!("DOWN be: {target} (connection refused)")]);
}

#[test]
fn control_requests_need_the_switch_post_and_good_input() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&config(&hook.url(), ""), NginxOpts::default());
    let port = nginx.port;
    // Off: 403 whatever the method.
    for method in ["POST", "GET"] {
        let r = http_request(port, method, "/status_ro?mute=be&for=1m", &[], None);
        assert_eq!(r.status, 403, "{method}");
        assert_eq!(
            r.text(),
            "mute and unmute need \"status_metrics control=on\"\n"
        );
    }
    // Other methods than POST: 405 with Allow: POST.
    for method in ["GET", "PUT", "DELETE"] {
        let r = http_request(port, method, "/status_metrics?unmute=be", &[], None);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("POST"), "{method}");
    }
    // Bad input: 400 saying what is wrong.
    for (query, says) in [
        (
            "mute=be&for=8d",
            "invalid for value \"8d\", expected a time between 1s and 7d",
        ),
        ("mute=be", "\"for\" is required with \"mute\""),
        ("mute=db&for=1m", "unknown NAME \"db\""),
        ("mute=be&fro=1h", "invalid parameter \"fro\""),
        ("mute=be&for=1m&reason=a%0Ab", "reason must be one line"),
    ] {
        let r = post(port, &format!("/status_metrics?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert!(r.text().starts_with(says), "{query}: {}", r.text());
    }
    assert_eq!(muted(port), Some(0.0), "nothing was muted");
    // Everything else is served as before.
    assert_eq!(http_get(port, "/status_metrics").status, 200);
    assert_eq!(http_get(port, "/status_ro?format=json").status, 200);
    let r = post(port, "/status_metrics");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let r = post(port, "/status_metrics?mute=be&for=1m&format=json");
    assert_eq!(r.json()["muted"], "be");
    assert!(nginx.error_log().contains("status_alert: muted be until "));
}

#[test]
fn mutes_survive_reloads_and_a_binary_upgrade() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&config(&hook.url(), ""), NginxOpts::default());
    let port = nginx.port;
    let r = post(port, "/status_metrics?mute=be&for=5m&reason=upgrade");
    assert_eq!(r.status, 200, "{}", r.text());

    // A reload keeping the zone, then one moving to a zone of another size.
    for extra in ["", "status_alert_zone 1m;"] {
        nginx.write_config(&config(&hook.url(), extra));
        nginx.reload();
        assert!(
            wait_until(Duration::from_secs(5), || {
                nginx.worker_pids().len() == 2 && muted(port) == Some(1.0)
            }),
            "the mute was lost by a reload ({extra:?})\n{}",
            nginx.error_log()
        );
    }

    // A binary upgrade: the new master's evaluator takes the mutes over with the lease from
    // the old one (which holds it once it evaluates).
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        2,
        Duration::from_secs(10)
    ));
    let new = MasterGuard(nginx.start_upgrade());
    assert!(nginx.signal("WINCH"));
    assert!(wait_until(Duration::from_secs(10), || nginx
        .old_workers(new.0)
        .is_empty()));
    assert!(
        wait_until(Duration::from_secs(10), || muted(port) == Some(1.0)),
        "the mute was lost by the upgrade\n{}",
        nginx.error_log()
    );
    let json = http_get(port, "/status_metrics?format=json").json();
    assert_eq!(json["locations"]["be"]["muted"]["reason"], "upgrade");
    drop(incident_while_muted(&nginx, &hook));
    assert!(nginx.signal("QUIT"));
    assert!(wait_until(Duration::from_secs(5), || !process_alive(
        nginx.pid()
    )));
    drop(new);
}

#[test]
fn a_maintenance_window_covering_now_mutes_and_its_end_announces_what_still_fires() {
    require_module!();
    let hook = WebhookReceiver::start();
    let window = window_around_now();
    let nginx = Nginx::start(&config(&hook.url(), &window), NginxOpts::default());
    assert_eq!(muted(nginx.port), Some(1.0), "{window}");
    let page = http_get(nginx.port, "/status_metrics?format=html").text();
    assert!(page.contains("(maintenance window)</p>"), "{page}");

    let _errors = incident_while_muted(&nginx, &hook);

    // The window ends (a reload that drops it; a window's natural end is a minute boundary,
    // checked by the unit tests) while the incident fires: it is announced then.
    nginx.write_config(&config(&hook.url(), ""));
    nginx.reload();
    assert!(
        wait_until(Duration::from_secs(8), || !hook.all_titles().is_empty()),
        "nothing announced at the end of the window\n{}",
        nginx.error_log()
    );
    let t = hook.all_titles();
    assert!(
        t[0].starts_with("CRITICAL be: 5xx ") && t[0].ends_with("(still firing)"),
        "{t:?}"
    );
    assert_eq!(muted(nginx.port), Some(0.0));
}
