//! Traffic drops (`status_alert NAME traffic=WARN[:CRIT]`) with a real nginx, a steady load
//! from the test and a local webhook receiver (docs/alerts.md#traffic-drops).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use status_alert_testkit::*;

/// How long a count must stay put before an "exactly N" check reads it.
const QUIET: Duration = Duration::from_secs(2);

/// A steady load of about 20 requests a second on one path until stopped.
struct Load {
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    fn start(port: u16, path: &'static str) -> Load {
        let running = Arc::new(AtomicBool::new(true));
        let flag = running.clone();
        let thread = thread::spawn(move || {
            while flag.load(Ordering::Relaxed) {
                let _ = try_http_request(port, "GET", path, &[], None);
                thread::sleep(Duration::from_millis(50));
            }
        });
        Load {
            running,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The titles received for NAME `name`, whatever the receiver answered.
fn titles_of(hook: &WebhookReceiver, name: &str) -> Vec<String> {
    let ours = |t: &String| {
        ["WARNING ", "CRITICAL ", "RESOLVED "]
            .iter()
            .any(|l| t.starts_with(&format!("{l}{name}:")) || t.starts_with(&format!("{l}{name} ")))
    };
    hook.all_titles().into_iter().filter(ours).collect()
}

/// Waits until a title of `name` starting with `prefix` arrives.
fn wait_title(hook: &WebhookReceiver, name: &str, prefix: &str, timeout: Duration) {
    assert!(
        wait_until(timeout, || titles_of(hook, name)
            .iter()
            .any(|t| t.starts_with(prefix))),
        "no {prefix:?} for {name} within {timeout:?}: {:?}",
        hook.all_titles()
    );
}

#[test]
fn a_stop_warns_then_pages_once_each_and_resolves_when_traffic_returns() {
    require_module!();
    let hook = WebhookReceiver::start();
    // window=5s at 20 req/s: about 100 requests a window, 20 more each second. Once the load
    // stops the window drains a second at a time: below 50 it warns, below 10 it pages.
    // min_requests=1000 plays no part in a traffic drop. "idle" never gets a request: an
    // absolute floor fires from its first whole window, without history.
    let block = format!(
        r#"
        status_alert_webhook {hook};
        status_alert_interval 1s;
        server {{
            listen 127.0.0.1:{{PORT}};
            location /steady {{
                status_alert steady window=5s traffic=50:10 min_requests=1000 repeat=off;
                return 200 "ok";
            }}
            location /idle {{ status_alert idle window=2s traffic=1 repeat=off; return 200; }}
            location = /status_metrics {{ status_alert off; status_metrics; }}
        }}
        "#,
        hook = hook.url()
    );
    let nginx = Nginx::start(&block, NginxOpts::default());
    let mut load = Load::start(nginx.port, "/steady");

    wait_title(
        &hook,
        "idle",
        "WARNING idle: traffic 0 requests in 2s, expected at least 1",
        Duration::from_secs(8),
    );
    // Two whole windows of steady load, then stop.
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        8,
        Duration::from_secs(15)
    ));
    assert!(
        titles_of(&hook, "steady").is_empty(),
        "{:?}",
        hook.all_titles()
    );
    load.stop();
    let stopped = Instant::now();
    wait_title(
        &hook,
        "steady",
        "CRITICAL steady: traffic ",
        Duration::from_secs(10),
    );
    eprintln!("load stopped -> CRITICAL: {:?}", stopped.elapsed());

    let mut load = Load::start(nginx.port, "/steady");
    wait_title(
        &hook,
        "steady",
        "RESOLVED steady traffic after ",
        Duration::from_secs(10),
    );
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        3,
        Duration::from_secs(10)
    ));
    load.stop();

    let steady = settle(QUIET, Duration::from_secs(10), || {
        titles_of(&hook, "steady")
    });
    assert_eq!(steady.len(), 3, "{steady:?}");
    assert!(
        steady[0].starts_with("WARNING steady: traffic ")
            && steady[0].ends_with(" requests in 5s, expected at least 50"),
        "{steady:?}"
    );
    assert!(
        steady[1].starts_with("CRITICAL steady: traffic ")
            && steady[1].ends_with(" in 5s, expected at least 10"),
        "{steady:?}"
    );
    assert!(steady[2].starts_with("RESOLVED steady traffic after "));
    assert_eq!(titles_of(&hook, "idle").len(), 1, "{:?}", hook.all_titles());
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());

    let m = prom(&nginx);
    let incidents = |location: &str| {
        metric(
            &m,
            "nginx_location_incidents_total",
            &[("location", location), ("kind", "traffic")],
        )
    };
    assert_eq!(incidents("steady"), Some(1.0));
    assert_eq!(incidents("idle"), Some(1.0));
    assert_eq!(
        metric(
            &m,
            "nginx_location_incidents_total",
            &[("location", "steady"), ("kind", "errors")],
        ),
        Some(0.0)
    );
    // The page says the idle NAME's traffic alert fires and that it is still learning.
    let page = http_get(nginx.port, "/status_metrics?format=html").text();
    assert!(
        page.contains("traffic WARNING</span> learning the usual traffic"),
        "{page}"
    );
}

#[test]
fn a_percentage_is_quiet_until_twelve_windows_are_known() {
    require_module!();
    let hook = WebhookReceiver::start();
    // window=2s at 20 req/s: about 40 requests a window; warn below 60% of the usual (24),
    // page below 10% (4). Twelve windows take 24s to learn.
    let block = format!(
        r#"
        status_alert_webhook {hook};
        status_alert_interval 1s;
        server {{
            listen 127.0.0.1:{{PORT}};
            location /pct {{ status_alert pct window=2s traffic=60%:10% repeat=off; return 200; }}
            location = /status_metrics {{ status_alert off; status_metrics; }}
        }}
        "#,
        hook = hook.url()
    );
    let nginx = Nginx::start(&block, NginxOpts::default());
    let usual = |nginx: &Nginx| {
        metric(
            &prom(nginx),
            "nginx_location_traffic_usual_requests",
            &[("location", "pct")],
        )
    };
    let mut load = Load::start(nginx.port, "/pct");
    thread::sleep(Duration::from_secs(5));
    // A stop while fewer than 12 windows are known: no usual traffic, no alert, though the
    // window is empty for a few rounds.
    load.stop();
    let rounds = evaluations(&nginx);
    assert!(wait_for_evaluations(
        &nginx,
        rounds,
        5,
        Duration::from_secs(10)
    ));
    assert_eq!(hook.requests_count(), 0, "{:?}", hook.all_titles());
    assert_eq!(usual(&nginx), None);

    let mut load = Load::start(nginx.port, "/pct");
    assert!(
        wait_until(Duration::from_secs(30), || usual(&nginx).is_some()),
        "no usual traffic after 30s"
    );
    assert_eq!(hook.requests_count(), 0, "{:?}", hook.all_titles());
    let learnt = usual(&nginx).unwrap();
    assert!((20.0..=50.0).contains(&learnt), "usual {learnt}");
    load.stop();
    wait_title(
        &hook,
        "pct",
        "CRITICAL pct: traffic ",
        Duration::from_secs(6),
    );
    let titles = titles_of(&hook, "pct");
    assert!(
        titles.len() <= 2 && titles[0].contains(", usually "),
        "{titles:?}"
    );
    assert!(hook.violations().is_empty(), "{:?}", hook.violations());
}
