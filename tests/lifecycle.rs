//! Lifecycle under load (README, "Reloads, upgrades and crashes"): reloads of every kind, with
//! client threads sending requests all the time. After each step the master and a full set of
//! workers run, no request failed, the counters of every NAME that persists equal the requests
//! answered, and nothing was logged at `[alert]`, `[crit]` or `[emerg]`.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::*;

const METRICS: &str = "location = /status_metrics { status_alert off; status_metrics; }";

/// Client threads sending GETs round-robin over paths until stopped, counting answers per path.
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
                    let mut client = KeepAliveClient::new(port);
                    let mut n = i;
                    while !stop.load(Ordering::Relaxed) {
                        let path = &paths[n % paths.len()];
                        n += 1;
                        match client.try_get(path) {
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

/// Waits until every persisting NAME's counter equals what the clients got, then compares.
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
    let mut got = HashMap::new();
    wait_until(Duration::from_secs(5), || {
        got = counted(nginx.port);
        want.iter()
            .all(|(n, w)| got.get(n).copied().unwrap_or(0) >= *w)
    });
    thread::sleep(Duration::from_millis(300));
    got = counted(nginx.port);
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

/// The crash reported by operators: grow past the zone, the same configuration again, shrink;
/// the whole sequence three times, under load. Then renames and `status_alert_zone` changes,
/// and a reload that fails validation.
#[test]
fn reload_sequences_under_load_keep_nginx_up_and_counts_exact() {
    if !have_module("reload_sequences_under_load") {
        return;
    }
    let few = names("svc", 3);
    let many = names("svc", 40);
    let nginx = Nginx::start(&block(&few, ""), NginxOpts::default());
    let paths: Vec<String> = few.iter().map(|n| format!("/n/{n}")).collect();
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    let load = Load::start(nginx.port, &paths, 4);

    let mut steps: Vec<(String, String)> = Vec::new();
    for round in 0..3 {
        steps.push((
            format!("round {round}: grow past the zone"),
            block(&many, ""),
        ));
        steps.push((format!("round {round}: same again"), block(&many, "")));
        steps.push((format!("round {round}: shrink"), block(&few, "")));
    }
    let mut renamed = few.clone();
    renamed.extend(names("renamed", 5));
    steps.push(("rename".into(), block(&renamed, "")));
    steps.push(("zone 2m".into(), block(&renamed, "status_alert_zone 2m;")));
    steps.push(("zone 1m".into(), block(&renamed, "status_alert_zone 1m;")));
    steps.push((
        "zone 1m again".into(),
        block(&renamed, "status_alert_zone 1m;"),
    ));
    steps.push(("zone automatic".into(), block(&few, "")));

    for (step, conf) in &steps {
        nginx.write_config(conf);
        nginx.reload();
        thread::sleep(Duration::from_millis(200));
        assert_alive(&nginx, step);
    }

    // A reload that fails validation keeps the running configuration.
    nginx.write_config(&block(&few, "status_alert_zone 1k;"));
    assert!(nginx.signal("HUP"));
    assert!(
        nginx.wait_for_log("invalid zone size", Duration::from_secs(5)),
        "{}",
        nginx.error_log()
    );
    assert_alive(&nginx, "failed reload");

    let (answered, failures) = load.finish();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        answered.values().sum::<u64>() > 100,
        "too little load: {answered:?}"
    );
    assert_exact(&nginx, &answered, &few, "after all reloads");
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
