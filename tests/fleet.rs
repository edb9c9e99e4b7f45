//! A fleet end to end: two nginx hosts with the module, a real Prometheus scraping both and
//! evaluating the shipped rules (deploy/prometheus/rules.yml), a real Alertmanager with the
//! shipped routing tree (deploy/alertmanager/alertmanager.yml), and a local HTTP server standing
//! in for Discord. Both hosts fail on `api`; Alertmanager must hold `NginxLocationErrorRatio`
//! for location="api" (one alert per host) and post exactly one notification for the two.
//! Then every query of the shipped Grafana dashboard runs against that Prometheus.
//!
//! For speed the test runs copies of the shipped files with these changes (nothing else):
//! - rules: every `[5m]` range becomes `[10s]` and every `for:` becomes `for: 2s`
//!   (Prometheus scrapes and evaluates every second);
//! - Alertmanager: `group_wait: 30s` becomes `group_wait: 3s` and the Discord placeholder
//!   `webhook_url` points at the stand-in.
//!
//! Needs /usr/bin/prometheus and /usr/bin/prometheus-alertmanager (Debian packages `prometheus`,
//! `prometheus-alertmanager`); prints SKIP and passes without them, or fails under CI.
//! Everything listens on 127.0.0.1 ports chosen by the OS; processes are killed by pid when the
//! test ends or panics.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use status_alert_testkit::*;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
const DISCORD_PATH: &str = "/api/webhooks/424242/fleet-token";

/// A child process killed (by its pid) and reaped when dropped, also on panic.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = fs::File::create(&log).expect("create process log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child, log }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the process log unless GET `ready_path` answers 200 within 30s.
    fn wait_ready(&mut self, port: u16, ready_path: &str) {
        let up = wait_until(Duration::from_secs(30), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
                || try_http_request(port, "GET", ready_path, &[], None)
                    .map(|r| r.status == 200)
                    .unwrap_or(false)
        });
        let exited = self.child.try_wait().ok().flatten();
        assert!(
            up && exited.is_none(),
            "{} did not become ready on 127.0.0.1:{port} (exit: {exited:?})\n--- log ---\n{}",
            self.name,
            self.log_text()
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's pid only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The shipped rules with short windows (see the file comment).
fn fast_rules() -> String {
    let rules = repo_file("deploy/prometheus/rules.yml").replace("[5m]", "[10s]");
    let mut out = String::new();
    for line in rules.lines() {
        if let Some(indent) = line.strip_suffix(line.trim_start()) {
            if line.trim_start().starts_with("for: ") {
                out.push_str(&format!("{indent}for: 2s\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(out.contains("[10s]") && out.contains("for: 2s"));
    out
}

/// The shipped Alertmanager config pointed at the stand-in, with a short group_wait.
fn test_alertmanager_config(receiver_url: &str) -> String {
    let shipped = repo_file("deploy/alertmanager/alertmanager.yml");
    let placeholder = "https://discord.com/api/webhooks/REPLACE_ID/REPLACE_TOKEN";
    assert!(
        shipped.contains(placeholder),
        "placeholder webhook_url not found"
    );
    assert!(
        shipped.contains("group_wait: 30s"),
        "group_wait: 30s not found"
    );
    shipped
        .replace(placeholder, receiver_url)
        .replace("group_wait: 30s", "group_wait: 3s")
}

fn nginx_host() -> Nginx {
    Nginx::start(
        r#"
        status_alert_interval 1s;
        server {
            listen 127.0.0.1:{PORT};
            location /api { status_alert api; return 500; }
            location = /metrics { status_alert off; status_metrics; }
        }
        "#,
        NginxOpts::default(),
    )
}

/// Alertmanager's active `NginxLocationErrorRatio` alerts for location="api".
fn api_alerts(am_port: u16) -> Vec<Value> {
    let Ok(resp) = try_http_request(am_port, "GET", "/api/v2/alerts", &[], None) else {
        return Vec::new();
    };
    if resp.status != 200 {
        return Vec::new();
    }
    resp.json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| {
            a["labels"]["alertname"] == "NginxLocationErrorRatio"
                && a["labels"]["location"] == "api"
        })
        .collect()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs every panel query of the shipped dashboard against the live Prometheus (Grafana's
/// variables replaced: all instances, all locations, a 1m rate interval). Each must succeed;
/// returns (panel title, number of series) per query.
fn run_dashboard_queries(prom_port: u16) -> Vec<(String, usize)> {
    let dash: Value = serde_json::from_str(&repo_file("deploy/grafana/nginx-status-alert.json"))
        .expect("dashboard JSON");
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            let query = expr
                .replace("$__rate_interval", "1m")
                .replace("$instance", ".*")
                .replace("$location", ".*");
            let path = format!("/api/v1/query?query={}", percent_encode(&query));
            let resp = http_get(prom_port, &path);
            let body = resp.json();
            assert_eq!(body["status"], "success", "query {query:?} failed: {body}");
            let n = body["data"]["result"].as_array().map_or(0, Vec::len);
            out.push((panel["title"].as_str().unwrap_or_default().to_string(), n));
        }
    }
    out
}

#[test]
fn two_hosts_one_incident_one_notification() {
    require_module!();
    require!(program_ready(PROMETHEUS));
    require!(program_ready(ALERTMANAGER));

    let dir = unique_temp_dir("fleet");
    let discord = Upstream::start();
    let web1 = nginx_host();
    let web2 = nginx_host();

    // Alertmanager, no clustering.
    let (am, am_port) =
        start_alertmanager(&dir, test_alertmanager_config(&discord.url(DISCORD_PATH)));

    // Prometheus scraping both hosts every second.
    let prom_port = free_port();
    fs::create_dir_all(dir.join("prom-data")).unwrap();
    fs::write(dir.join("rules.yml"), fast_rules()).unwrap();
    fs::write(
        dir.join("prometheus.yml"),
        format!(
            r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {rules}
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
scrape_configs:
  - job_name: nginx
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:{p1}", "127.0.0.1:{p2}"]
"#,
            rules = dir.join("rules.yml").display(),
            p1 = web1.port,
            p2 = web2.port,
        ),
    )
    .unwrap();
    let mut prom = Proc::spawn(
        "prometheus",
        Command::new(PROMETHEUS)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        &dir,
    );
    prom.wait_ready(prom_port, "/-/ready");

    // Both hosts fail every `api` request until Alertmanager holds the alert of both.
    let start = Instant::now();
    let mut alerts = Vec::new();
    while start.elapsed() < Duration::from_secs(90) {
        for host in [&web1, &web2] {
            assert!(hammer(host.port, "/api", 10, 2).iter().all(|s| *s == 500));
        }
        alerts = api_alerts(am_port);
        if alerts.len() >= 2 {
            break;
        }
        thread::sleep(Duration::from_millis(300));
    }
    let instances: Vec<String> = alerts
        .iter()
        .map(|a| {
            a["labels"]["instance"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let diagnostics = || {
        format!(
            "\n(test dir, kept on failure: {})\n--- prometheus alerts ---\n{}\n--- alertmanager log ---\n{}\n--- prometheus log ---\n{}",
            dir.display(),
            try_http_request(prom_port, "GET", "/api/v1/alerts", &[], None)
                .map(|r| r.text())
                .unwrap_or_default(),
            am.log_text(),
            prom.log_text()
        )
    };
    assert_eq!(
        alerts.len(),
        2,
        "Alertmanager should hold NginxLocationErrorRatio{{location=\"api\"}} once per host: {alerts:?}{}",
        diagnostics()
    );
    for a in &alerts {
        // 100% 5xx: critical only (the warning rule excludes the critical range).
        assert_eq!(a["labels"]["severity"], "critical", "{a}");
        assert_eq!(a["labels"]["job"], "nginx", "{a}");
    }
    for port in [web1.port, web2.port] {
        let want = format!("127.0.0.1:{port}");
        assert!(
            instances.contains(&want),
            "no alert for {want}: {instances:?}"
        );
    }

    // One group (alertname + location) -> one notification for both hosts. (100% 5xx also
    // burns the error budget, so NginxLocationErrorBudgetBurn has a group and a notification
    // of its own: also exactly one.)
    let notifications = || -> Vec<Value> {
        discord
            .requests()
            .into_iter()
            .filter(|r| r.path() == DISCORD_PATH)
            .map(|r| {
                serde_json::from_slice(&r.body).unwrap_or_else(|e| {
                    panic!(
                        "notification is not JSON ({e}): {}",
                        String::from_utf8_lossy(&r.body)
                    )
                })
            })
            .collect()
    };
    let title = |n: &Value| {
        n["embeds"][0]["title"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let about_api = |n: &Value| title(n).contains("NginxLocationErrorRatio api");
    assert!(
        wait_until(Duration::from_secs(30), || notifications()
            .iter()
            .any(about_api)),
        "the Discord stand-in got no NginxLocationErrorRatio notification: {:#?}{}",
        notifications(),
        diagnostics()
    );
    // Longer than group_wait, shorter than group_interval (5m): a second notification for the
    // same group here would mean the two hosts were not deduplicated.
    let sent = settle(
        Duration::from_secs(6),
        Duration::from_secs(30),
        notifications,
    );
    let titles: Vec<String> = sent.iter().map(title).collect();
    let api: Vec<&Value> = sent.iter().filter(|n| about_api(n)).collect();
    assert_eq!(
        api.len(),
        1,
        "expected one NginxLocationErrorRatio notification: {titles:#?}"
    );
    // Discord payload of Alertmanager's default template: "[FIRING:2] NginxLocationErrorRatio
    // api (nginx critical)" with both alerts' labels in the description.
    assert!(
        titles.iter().all(|t| t.starts_with("[FIRING:")),
        "{titles:?}"
    );
    assert!(title(api[0]).starts_with("[FIRING:2]"), "{titles:?}");
    let mut unique = titles.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        titles.len(),
        "a group was notified twice: {titles:#?}"
    );
    let description = api[0]["embeds"][0]["description"]
        .as_str()
        .unwrap_or_default();
    for port in [web1.port, web2.port] {
        assert!(
            description.contains(&format!("instance = 127.0.0.1:{port}")),
            "the notification should list host 127.0.0.1:{port}: {description}"
        );
    }

    // The dashboard's queries run against real data; the panels fed by this traffic show it.
    let results = run_dashboard_queries(prom_port);
    for panel in [
        "Requests/s",
        "5xx share",
        "Locations firing",
        "Request rate per location",
        "5xx share per location",
        "Request time p50 / p95 / p99",
        "Alert state per location",
        "Notification queue depth",
    ] {
        assert!(
            results.iter().any(|(t, n)| t == panel && *n > 0),
            "dashboard panel {panel:?} has no data: {results:?}"
        );
    }

    drop(prom);
    drop(am);
    let _ = fs::remove_dir_all(&dir);
}

/// Starts Alertmanager (no clustering) with `config`; returns it and its port.
fn start_alertmanager(dir: &Path, config: String) -> (Proc, u16) {
    let port = free_port();
    fs::create_dir_all(dir.join("am-data")).unwrap();
    fs::write(dir.join("alertmanager.yml"), config).unwrap();
    let mut am = Proc::spawn(
        "alertmanager",
        Command::new(ALERTMANAGER)
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address="),
        dir,
    );
    am.wait_ready(port, "/-/ready");
    (am, port)
}

/// Titles of the Discord stand-in's notifications, oldest first.
fn discord_titles(discord: &Upstream) -> Vec<String> {
    discord
        .requests()
        .into_iter()
        .filter(|r| r.path() == DISCORD_PATH)
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .map(|n| {
            n["embeds"][0]["title"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn module_alerts_reach_alertmanager_once_per_fleet_and_respect_silences() {
    require_module!();
    require!(program_ready(ALERTMANAGER));
    let dir = unique_temp_dir("fleet-am");
    let discord = Upstream::start();
    // The shipped routing tree, with a group interval short enough to see the resolution.
    let config = test_alertmanager_config(&discord.url(DISCORD_PATH))
        .replace("group_interval: 5m", "group_interval: 2s");
    assert!(config.contains("group_interval: 2s"));
    let (am, am_port) = start_alertmanager(&dir, config);
    let host = || {
        Nginx::start(
            &format!(
                r#"
                status_alert_interval 1s;
                status_alert_alertmanager http://127.0.0.1:{am_port};
                server {{
                    listen 127.0.0.1:{{PORT}};
                    location /ok {{ status_alert api window=8s min_requests=5 repeat=off
                                    runbook=https://wiki.example.com/api; return 200; }}
                    location /err {{ status_alert api window=8s min_requests=5 repeat=off
                                     runbook=https://wiki.example.com/api; return 500; }}
                    location = /status_metrics {{ status_alert off; status_metrics; }}
                }}
                "#
            ),
            NginxOpts::default(),
        )
    };
    let (web1, web2) = (host(), host());
    let about_api = |t: &String| t.contains("NginxLocationErrorRatio api");
    // window=8s: an incident fires for 8 s, longer than group_wait (3 s). A shorter one can be
    // resolved before Alertmanager flushes its group, and a group never notified as firing is
    // not notified as resolved either.

    // One incident on both hosts: one notification, then one resolved.
    for h in [&web1, &web2] {
        hammer(h.port, "/err", 20, 2);
    }
    let mut alerts = Vec::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            alerts = api_alerts(am_port);
            !alerts.is_empty()
        }),
        "Alertmanager got no alert\n{}",
        am.log_text()
    );
    assert!(
        wait_until(Duration::from_secs(20), || discord_titles(&discord)
            .iter()
            .any(about_api)),
        "no notification: {:?}\n{}",
        discord_titles(&discord),
        am.log_text()
    );
    let a = &alerts[0];
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(
        a["annotations"]["runbook_url"],
        "https://wiki.example.com/api"
    );
    assert!(wait_until(Duration::from_secs(20), || {
        discord_titles(&discord)
            .iter()
            .any(|t| t.starts_with("[RESOLVED]") && about_api(t))
    }));
    // Nothing more for the group once it is quiet for longer than group_interval (2s).
    let titles = settle(Duration::from_secs(4), Duration::from_secs(20), || {
        discord_titles(&discord)
    });
    let firing = titles
        .iter()
        .filter(|t| t.starts_with("[FIRING") && about_api(t))
        .count();
    let resolved = titles
        .iter()
        .filter(|t| t.starts_with("[RESOLVED]") && about_api(t))
        .count();
    assert_eq!((firing, resolved), (1, 1), "{titles:#?}");

    // Deliveries are counted per destination, without the URL: each host posted its firing
    // alert and its resolution (and may re-post while firing).
    let sent = |h: &Nginx| {
        metric(
            &parse_prometheus(&http_get(h.port, "/status_metrics").text()),
            "nginx_alert_notifications_total",
            &[("destination", "alertmanager-1"), ("result", "sent")],
        )
        .unwrap_or(0.0)
    };
    let before_silence = [sent(&web1), sent(&web2)];
    assert!(
        before_silence.iter().all(|n| *n >= 2.0),
        "sent by web1, web2: {before_silence:?}"
    );

    // A silence on the location keeps the next incident out of Discord.
    let silence = serde_json::json!({
        "matchers": [{"name": "location", "value": "api", "isRegex": false, "isEqual": true}],
        "startsAt": "2000-01-01T00:00:00Z",
        "endsAt": "2999-01-01T00:00:00Z",
        "createdBy": "fleet test",
        "comment": "maintenance",
    })
    .to_string();
    let r = http_request(
        am_port,
        "POST",
        "/api/v2/silences",
        &[("Content-Type", "application/json")],
        Some(silence.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let before = discord_titles(&discord).len();
    for h in [&web1, &web2] {
        hammer(h.port, "/err", 20, 2);
    }
    // Both hosts post (counted as sent), Alertmanager holds it back.
    assert!(
        wait_until(Duration::from_secs(10), || {
            sent(&web1) > before_silence[0] && sent(&web2) > before_silence[1]
        }),
        "a host did not post the silenced incident: sent by web1, web2 {:?} -> {:?}",
        before_silence,
        [sent(&web1), sent(&web2)]
    );
    assert!(wait_until(Duration::from_secs(10), || api_alerts(am_port)
        .iter()
        .any(|a| a["status"]["state"] == "suppressed")));
    // Longer than group_wait (3s) and group_interval (2s): a notification would be out.
    let titles = settle(Duration::from_secs(5), Duration::from_secs(20), || {
        discord_titles(&discord)
    });
    assert_eq!(titles.len(), before, "{titles:#?}");
    drop(am);
    let _ = fs::remove_dir_all(&dir);
}
