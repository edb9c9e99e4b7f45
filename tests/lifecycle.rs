//! Lifecycle under load (README, "Reloads, upgrades and crashes"): reloads of every kind, with
//! client threads sending requests through each reload. After each step the master and a full
//! set of workers run, no request failed, the counters of every NAME that persists equal the
//! requests answered, and nothing was logged at `[alert]`, `[crit]` or `[emerg]`.
//!
//! `ci/memcheck` runs these tests with nginx under valgrind (the kit's launcher hook).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use status_alert_testkit::*;

const METRICS: &str = "location = /status_metrics { status_alert off; status_metrics; }";

/// Client threads sending GETs round-robin over paths until stopped, counting answers per path.
///
/// Each request has a connection of its own and is never sent again, so every failure is
/// nginx's. (On a kept-alive connection, a request can meet nginx closing that connection as
/// idle at a reload; HTTP lets clients resend such requests, which would hide a request nginx
/// really dropped.)
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    answered: Arc<Mutex<HashMap<String, u64>>>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl Load {
    fn start(port: u16, paths: &[&str], clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(Mutex::new(HashMap::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|i| {
                let (stop, answered, failures) = (stop.clone(), answered.clone(), failures.clone());
                let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
                thread::spawn(move || {
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        let path = &paths[n % paths.len()];
                        n += 1;
                        match try_http_request(port, "GET", path, &[], None) {
                            Ok(r) if r.status == 200 => {
                                *answered.lock().unwrap().entry(path.clone()).or_default() += 1;
                            }
                            Ok(r) => failures
                                .lock()
                                .unwrap()
                                .push(format!("{path}: {}", r.status)),
                            Err(e) => failures.lock().unwrap().push(format!("{path}: {e}")),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            answered,
            failures,
        }
    }

    /// Stops the clients; returns answers per path and the failures.
    fn finish(mut self) -> (HashMap<String, u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().expect("load thread panicked");
        }
        let answered = self.answered.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (answered, failures)
    }
}

/// `nginx_location_requests_total` summed over status codes, per NAME.
fn counted(port: u16) -> HashMap<String, u64> {
    let r = http_get(port, "/status_metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut out = HashMap::new();
    for (name, labels, value) in parse_prometheus(&r.text()) {
        if name != "nginx_location_requests_total" {
            continue;
        }
        let location = labels
            .iter()
            .find(|(k, _)| k == "location")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        *out.entry(location).or_default() += value as u64;
    }
    out
}

/// A server with `names` locations `/n/<name>` counted under `<name>`, plus metrics.
fn block(names: &[String], zone: &str) -> String {
    let locations: String = names
        .iter()
        .map(|n| format!("location = /n/{n} {{ status_alert {n}; return 200; }}\n"))
        .collect();
    format!("{zone}\nserver {{\n listen 127.0.0.1:{{PORT}};\n{locations}\n{METRICS}\n}}\n",)
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Waits until every persisting NAME's counter has reached what the clients got and stays put,
/// then compares exactly.
fn assert_exact(nginx: &Nginx, answered: &HashMap<String, u64>, persisting: &[String], step: &str) {
    let want: HashMap<String, u64> = persisting
        .iter()
        .map(|n| {
            (
                n.clone(),
                answered.get(&format!("/n/{n}")).copied().unwrap_or(0),
            )
        })
        .collect();
    wait_until(Duration::from_secs(5), || {
        let got = counted(nginx.port);
        want.iter()
            .all(|(n, w)| got.get(n).copied().unwrap_or(0) >= *w)
    });
    // A request counted twice shows only once nothing moves any more.
    let got = settle(Duration::from_millis(300), Duration::from_secs(5), || {
        counted(nginx.port)
    });
    for (n, w) in &want {
        assert_eq!(
            got.get(n).copied().unwrap_or(0),
            *w,
            "{step}: NAME {n} counted != answered (all counted: {got:?})"
        );
    }
}

fn assert_alive(nginx: &Nginx, step: &str) {
    assert!(
        nginx.is_running(),
        "{step}: the master died\n{}",
        nginx.error_log()
    );
    assert!(
        wait_until(Duration::from_secs(5), || nginx.worker_pids().len() == 2),
        "{step}: workers {:?}\n{}",
        nginx.worker_pids(),
        nginx.error_log()
    );
}

/// Applies each (step, configuration) by a reload while clients send requests to the `few`
/// NAMEs; after each step the master and both workers run, no request failed and the counters
/// of the `few` NAMEs equal the requests answered so far.
fn reloads_under_load(nginx: &Nginx, few: &[String], steps: &[(String, String)]) {
    let paths: Vec<String> = few.iter().map(|n| format!("/n/{n}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let mut answered: HashMap<String, u64> = HashMap::new();
    for (step, conf) in steps {
        let load = Load::start(nginx.port, &paths, 4);
        // Requests before, during and after the reload.
        thread::sleep(Duration::from_millis(100));
        nginx.write_config(conf);
        nginx.reload();
        thread::sleep(Duration::from_millis(200));
        let (now, failures) = load.finish();
        assert_alive(nginx, step);
        assert!(failures.is_empty(), "{step}: failed requests: {failures:?}");
        assert!(
            now.values().sum::<u64>() > 0,
            "{step}: no request answered during the step"
        );
        for (path, n) in now {
            *answered.entry(path).or_default() += n;
        }
        assert_exact(nginx, &answered, few, step);
    }
}

/// Rounds of grow / same / shrink in
/// [`grow_same_shrink_reloads_under_load_keep_nginx_up_and_counts_exact`]:
/// `STATUS_ALERT_RELOAD_ROUNDS` (ci/memcheck runs 1, or 8 for its long run), default 3.
fn reload_rounds() -> usize {
    std::env::var("STATUS_ALERT_RELOAD_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(3)
}

/// The crash reported by operators: grow past the zone, the same configuration again, shrink;
/// the whole sequence three times, under load.
#[test]
fn grow_same_shrink_reloads_under_load_keep_nginx_up_and_counts_exact() {
    require_module!();
    let few = names("svc", 3);
    let many = names("svc", 40);
    let nginx = Nginx::start(&block(&few, ""), NginxOpts::default());
    let mut steps: Vec<(String, String)> = Vec::new();
    for round in 0..reload_rounds() {
        steps.push((
            format!("round {round}: grow past the zone"),
            block(&many, ""),
        ));
        steps.push((format!("round {round}: same again"), block(&many, "")));
        steps.push((format!("round {round}: shrink"), block(&few, "")));
    }
    reloads_under_load(&nginx, &few, &steps);
    assert_no_alerts(&nginx);
}

/// Renames and `status_alert_zone` changes under load, then a reload that fails validation.
#[test]
fn renames_zone_sizes_and_a_refused_reload_under_load_keep_counts_exact() {
    require_module!();
    let few = names("svc", 3);
    let nginx = Nginx::start(&block(&few, ""), NginxOpts::default());
    let mut renamed = few.clone();
    renamed.extend(names("renamed", 5));
    let steps: Vec<(String, String)> = vec![
        ("rename".into(), block(&renamed, "")),
        ("zone 2m".into(), block(&renamed, "status_alert_zone 2m;")),
        ("zone 1m".into(), block(&renamed, "status_alert_zone 1m;")),
        (
            "zone 1m again".into(),
            block(&renamed, "status_alert_zone 1m;"),
        ),
        ("zone automatic".into(), block(&few, "")),
    ];
    reloads_under_load(&nginx, &few, &steps);

    // A reload that fails validation keeps the running configuration, and its counters.
    let before = counted(nginx.port);
    nginx.write_config(&block(&few, "status_alert_zone 1k;"));
    assert!(nginx.signal("HUP"));
    assert!(
        nginx.wait_for_log("invalid zone size", Duration::from_secs(5)),
        "{}",
        nginx.error_log()
    );
    assert_alive(&nginx, "failed reload");
    assert_eq!(
        counted(nginx.port),
        before,
        "the refused reload changed counters"
    );
    assert_no_alerts(&nginx);
}

/// Nothing at `[alert]`, `[crit]` or `[emerg]` in the error log, except the one `[emerg]` a
/// test provoked on purpose with an invalid configuration.
fn assert_no_alerts(nginx: &Nginx) {
    let log = nginx.error_log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[alert]") || l.contains("[crit]") || l.contains("[emerg]"))
        .filter(|l| !l.contains("invalid zone size"))
        .collect();
    assert!(bad.is_empty(), "error log:\n{}", bad.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Crashes, stops and binary upgrades: alerts exactly once
// ---------------------------------------------------------------------------------------------

/// `be` counts `/` (200) and `/err` (503) with a 10 s window, evaluated every second.
fn alerting(webhook: &str) -> String {
    format!(
        r#"
        status_alert_webhook {webhook};
        status_alert_interval 1s;
        server {{
            listen 127.0.0.1:{{PORT}};
            location / {{ status_alert be window=10s repeat=off; return 200; }}
            location /err {{ status_alert be window=10s repeat=off; return 503; }}
            {METRICS}
        }}
        "#
    )
}

/// Sends `n` requests to `path`; all must be answered.
fn send(port: u16, path: &str, n: usize) {
    let statuses = hammer(port, path, n, 4);
    assert!(
        statuses.iter().all(|s| *s != 0),
        "transport errors on {path}"
    );
}

/// Waits until the webhook has `n` titles, then until no more arrive for three intervals;
/// returns every title received, also of payloads it did not accept.
fn titles_once_settled(hook: &WebhookReceiver, n: usize) -> Vec<String> {
    wait_until(Duration::from_secs(15), || hook.all_titles().len() >= n);
    settle(Duration::from_secs(3), Duration::from_secs(15), || {
        hook.all_titles()
    })
}

/// Waits for three evaluation rounds of the evaluator serving `nginx.port` from now, then
/// returns every title received: a repeated alert would have been sent in those rounds.
fn titles_after_three_rounds(nginx: &Nginx, hook: &WebhookReceiver) -> Vec<String> {
    let rounds = evaluations(nginx);
    assert!(
        wait_for_evaluations(nginx, rounds, 3, Duration::from_secs(10)),
        "no evaluation rounds\n{}",
        nginx.error_log()
    );
    hook.all_titles()
}

fn kill_all_workers(nginx: &Nginx) {
    let before = nginx.worker_pids();
    for w in &before {
        assert!(send_signal(*w, "KILL"));
    }
    assert!(
        wait_until(Duration::from_secs(5), || {
            let now = nginx.worker_pids();
            now.len() == 2 && now.iter().all(|p| !before.contains(p))
        }),
        "workers were not respawned\n{}",
        nginx.error_log()
    );
}

/// `[alert]`/`[crit]`/`[emerg]` lines not caused by the test itself (nginx reports a worker
/// killed with -9 at `[alert]`, which is the test's doing), and any `unknown process`.
fn module_trouble(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("[alert]") || l.contains("[crit]") || l.contains("[emerg]"))
        .filter(|l| !l.contains("exited on signal 9"))
        .chain(log.lines().filter(|l| l.contains("unknown process")))
        .map(str::to_string)
        .collect()
}

#[test]
fn kill_9_of_every_worker_neither_repeats_nor_swallows_an_alert() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&alerting(&hook.url()), NginxOpts::default());

    // During an incident: the killed evaluator's successor carries it on, then resolves it.
    send(nginx.port, "/err", 40);
    assert!(wait_until(Duration::from_secs(5), || hook.titles().len() == 1));
    kill_all_workers(&nginx);
    let t = titles_after_three_rounds(&nginx, &hook);
    assert_eq!(t.len(), 1, "a crash repeated the alert: {t:?}");
    let t = titles_once_settled(&hook, 2);
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(
        t[0].starts_with("CRITICAL be:") && t[1].starts_with("RESOLVED be"),
        "{t:?}"
    );

    // Between incidents: the next one alerts exactly once.
    kill_all_workers(&nginx);
    send(nginx.port, "/err", 40);
    let t = titles_once_settled(&hook, 3);
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t[2].starts_with("CRITICAL be:"), "{t:?}");
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
    let trouble = module_trouble(&nginx.error_log());
    assert!(trouble.is_empty(), "{trouble:#?}");
}

#[test]
fn a_killed_helper_takes_nothing_uncounted_with_it() {
    require_module!();
    let hook = WebhookReceiver::start();
    hook.set_hang(true);
    let nginx = Nginx::start(&alerting(&hook.url()), NginxOpts::default());
    send(nginx.port, "/err", 40);
    // The alert is in flight to a webhook that never answers.
    assert!(hook.wait_for_requests(1, Duration::from_secs(8)) >= 1);
    let helpers = helper_processes(nginx.pid());
    assert_eq!(helpers.len(), 1, "{helpers:?}");
    assert!(send_signal(helpers[0], "KILL"));
    assert!(
        nginx.wait_for_log(
            "helper process exited before delivering",
            Duration::from_secs(5)
        ),
        "{}",
        nginx.error_log()
    );
    // The one alert it held is counted as dropped, once, and as nothing else.
    let count = |result: &str| {
        metric(
            &parse_prometheus(&http_get(nginx.port, "/status_metrics").text()),
            "nginx_alert_notifications_total",
            &[("destination", "discord-1"), ("result", result)],
        )
        .unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(3), || count("dropped") >= 1.0),
        "not counted"
    );
    let counts = settle(Duration::from_secs(2), Duration::from_secs(10), || {
        ["dropped", "sent", "failed"].map(count)
    });
    assert_eq!(counts, [1.0, 0.0, 0.0], "dropped, sent, failed");
    assert_eq!(
        hook.all_titles().len(),
        1,
        "the dropped alert was not sent again: {:?}",
        hook.all_titles()
    );
    assert!(wait_until(Duration::from_secs(5), || helper_processes(
        nginx.pid()
    )
    .len()
        == 1));
    hook.set_hang(false);
    let trouble = module_trouble(&nginx.error_log());
    assert!(trouble.is_empty(), "{trouble:#?}");
}

/// Time from signalling the master until it has exited.
fn time_to_exit(nginx: &Nginx, sig: &str) -> Duration {
    let pid = nginx.pid();
    let start = std::time::Instant::now();
    assert!(nginx.signal(sig));
    assert!(wait_until(Duration::from_secs(20), || !process_alive(pid)));
    start.elapsed()
}

#[test]
fn quit_and_stop_return_promptly_with_a_hung_webhook() {
    require_module!();
    for sig in ["QUIT", "TERM"] {
        let hook = WebhookReceiver::start();
        hook.set_hang(true);
        let nginx = Nginx::start(&alerting(&hook.url()), NginxOpts::default());
        send(nginx.port, "/err", 40);
        assert!(hook.wait_for_requests(1, Duration::from_secs(8)) >= 1);
        // A second incident queued behind the hung one.
        let helper = helper_processes(nginx.pid());
        let took = time_to_exit(&nginx, sig);
        assert!(
            took < scaled(Duration::from_secs(3)),
            "{sig}: nginx took {took:?} to exit"
        );
        // The helper gives up within its grace period and says what it dropped.
        assert!(
            wait_until(Duration::from_secs(8), || helper
                .iter()
                .all(|p| !process_alive(*p))),
            "{sig}: the helper outlived its grace period"
        );
        let log = nginx.error_log();
        assert!(
            log.contains("after worker 0 exited") && log.contains("abandoned"),
            "{sig}: the undelivered alert is not logged as dropped:\n{log}"
        );
        let trouble = module_trouble(&log);
        assert!(trouble.is_empty(), "{sig}: {trouble:#?}");
        hook.set_hang(false);
    }
}

#[test]
fn binary_upgrade_announces_each_event_once() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&alerting(&hook.url()), NginxOpts::default());
    send(nginx.port, "/err", 40);
    assert!(wait_until(Duration::from_secs(5), || hook.titles().len() == 1));

    let new = MasterGuard(nginx.start_upgrade());
    // Old workers finish; the new master's evaluator takes the incident over and does not
    // announce it again, then resolves it once.
    assert!(nginx.signal("WINCH"));
    assert!(wait_until(Duration::from_secs(10), || nginx
        .old_workers(new.0)
        .is_empty()));
    let t = titles_after_three_rounds(&nginx, &hook);
    assert_eq!(t.len(), 1, "the upgrade repeated the alert: {t:?}");
    let t = titles_once_settled(&hook, 2);
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t[1].starts_with("RESOLVED be"), "{t:?}");
    assert!(nginx.signal("QUIT"));
    assert!(wait_until(Duration::from_secs(5), || !process_alive(
        nginx.pid()
    )));

    // The new master alerts on the next incident, once.
    send(nginx.port, "/err", 40);
    let t = titles_once_settled(&hook, 3);
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t[2].starts_with("CRITICAL be:"), "{t:?}");
    let trouble = module_trouble(&nginx.error_log());
    assert!(trouble.is_empty(), "{trouble:#?}");
    drop(new);
}

#[test]
fn binary_upgrade_rolled_back_announces_each_event_once() {
    require_module!();
    let hook = WebhookReceiver::start();
    let nginx = Nginx::start(&alerting(&hook.url()), NginxOpts::default());
    let new = MasterGuard(nginx.start_upgrade());
    assert!(nginx.signal("WINCH"));
    assert!(wait_until(Duration::from_secs(10), || nginx
        .old_workers(new.0)
        .is_empty()));
    // An incident while only the new master serves.
    send(nginx.port, "/err", 40);
    assert!(wait_until(Duration::from_secs(5), || hook.titles().len() == 1));
    // Roll back: the old master starts workers again, the new one quits.
    assert!(nginx.signal("HUP"));
    assert!(wait_until(Duration::from_secs(10), || nginx
        .old_workers(new.0)
        .len()
        >= 2));
    assert!(send_signal(new.0, "QUIT"));
    assert!(wait_until(Duration::from_secs(10), || !process_alive(
        new.0
    )));
    let t = titles_after_three_rounds(&nginx, &hook);
    assert_eq!(t.len(), 1, "the rollback repeated the alert: {t:?}");
    let t = titles_once_settled(&hook, 2);
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t[1].starts_with("RESOLVED be"), "{t:?}");
    let trouble = module_trouble(&nginx.error_log());
    assert!(trouble.is_empty(), "{trouble:#?}");
}

/// A scrape's client that goes away, or stops reading: a client that closes right after its
/// request (the scrape is still being made, in slices), one that reads a little and closes,
/// and one that stops reading until nginx's `send_timeout` ends it. Each scrape's memory (the
/// body nginx sends from) goes with its request: the workers stay up, the next scrape is whole,
/// nothing is logged above `info`, and under `ci/memcheck` nothing leaks or is read after
/// being freed.
#[test]
fn scrapes_abandoned_by_their_clients_leave_nothing_behind() {
    require_module!();
    const N: usize = 1_000;
    let all = names("s", N);
    let locations: String = all
        .iter()
        .map(|n| format!("location = /n/{n} {{ status_alert {n}; return 200; }}\n"))
        .collect();
    // A small send buffer and a short send_timeout: a client that stops reading blocks nginx's
    // writes within a few KB, and nginx gives up on it within a second.
    let block = format!(
        "server {{\n listen 127.0.0.1:{{PORT}} sndbuf=16k;\n send_timeout 1s;\n{locations}\n\
         {METRICS}\n}}\n"
    );
    let nginx = Nginx::start(&block, NginxOpts::default());
    let workers = nginx.worker_pids();
    let port = nginx.port;
    let whole = |nginx: &Nginx| {
        let v = http_get(nginx.port, "/status_metrics?format=json").json();
        v["locations"].as_object().map_or(0, |l| l.len())
    };
    assert_eq!(whole(&nginx), N);

    for (k, path) in ["/status_metrics", "/status_metrics?format=json"]
        .into_iter()
        .enumerate()
    {
        for gzip in [false, true] {
            let headers: &[(&str, &str)] = if gzip {
                &[("Accept-Encoding", "gzip")]
            } else {
                &[]
            };
            // Gone at once.
            let mut c = RawConnection::open(port).expect("connect");
            c.send_request("GET", path, headers, None).expect("send");
            drop(c);
            // Reads a little, then goes.
            let mut c = RawConnection::open(port).expect("connect");
            c.send_request("GET", path, headers, None).expect("send");
            let mut first = [0u8; 1024];
            let _ = std::io::Read::read(&mut c.stream(), &mut first);
            drop(c);
        }
        // Stops reading, and stays: nginx's send_timeout ends it.
        let mut c = RawConnection::open(port).expect("connect");
        c.send_request("GET", path, &[], None).expect("send");
        let timed_out = || nginx.error_log().matches("client timed out").count() > k;
        assert!(
            wait_until(scaled(Duration::from_secs(10)), timed_out),
            "{path}: nginx never gave up on the client that stopped reading:\n{}",
            nginx.error_log()
        );
        drop(c);
    }

    assert_eq!(nginx.worker_pids(), workers, "a worker was replaced");
    assert_eq!(whole(&nginx), N);
    let log = nginx.error_log();
    let trouble = module_trouble(&log);
    assert!(trouble.is_empty(), "{trouble:#?}");
    nginx.assert_log_clean();
}
