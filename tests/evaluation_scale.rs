//! An evaluation round of 10,000 NAMEs is spread over turns of worker 0's event loop
//! (src/driver/round.rs): a client of the same worker keeps being served promptly while rounds
//! run, and an alert still goes out within an interval of its threshold crossing.
//!
//! The bound here is loose: 20 ms for any request, on a debug build, beyond the longest wait of
//! the same client of a vanilla nginx pinged at the same time (on a busy machine both wait for
//! a CPU now and then; an unsliced round of 10,000 NAMEs held the worker for 700 ms). The few
//! milliseconds a slice takes on a release build are what `ci/bench --only scale` shows.

use std::thread;
use std::time::{Duration, Instant};

use status_alert_testkit::*;

/// NAMEs, each in its own location.
const NAMES: usize = 10_000;
/// The longest any request of the other client may take.
const STALL_BOUND: Duration = Duration::from_millis(20);

fn name(i: usize) -> String {
    format!("n-{i:05}")
}

fn evaluations(port: u16) -> f64 {
    let text = http_get(port, "/status_metrics").text();
    metric(
        &parse_prometheus(&text),
        "nginx_status_alert_evaluations_total",
        &[],
    )
    .unwrap_or(-1.0)
}

#[test]
fn ten_thousand_names_evaluate_without_stalling_the_worker() {
    require_module!();
    let hook = WebhookReceiver::start();
    // The last NAME fails: its CRITICAL comes from the last slice of a round.
    let failing = NAMES - 1;
    let mut locations = String::with_capacity(NAMES * 90);
    for i in 0..NAMES {
        let n = name(i);
        let status = if i == failing { 503 } else { 200 };
        locations.push_str(&format!(
            "location = /{n} {{ status_alert {n} window=10s; return {status}; }}\n"
        ));
    }
    let block = format!(
        r#"
        status_alert_interval 1s;
        status_alert_webhook {hook};
        server {{
            listen 127.0.0.1:{{PORT}};
            {locations}
            location = /ping {{ return 204; }}
            location = /status_metrics {{ status_alert off; status_metrics; }}
        }}
        "#,
        hook = hook.url()
    );
    // One worker: it evaluates and serves the pinging client.
    let nginx = Nginx::start(&block, NginxOpts::workers(1));
    let port = nginx.port;
    assert!(
        wait_until(Duration::from_secs(20), || evaluations(port) >= 2.0),
        "no evaluation rounds; log:\n{}",
        nginx.error_log()
    );

    // Nothing else touches the worker while the client pings (a scrape of 10,000 NAMEs is
    // long work of its own): the evaluation count is read before and after.
    let vanilla = Nginx::start(
        "server { listen 127.0.0.1:{PORT}; location = /ping { return 204; } }",
        NginxOpts {
            worker_processes: 1,
            ..NginxOpts::plain()
        },
    );
    let before = evaluations(port);
    let every = Duration::from_millis(1);
    let pinger = Pinger::start(port, "/ping", 204, every).expect("connect");
    let control = Pinger::start(vanilla.port, "/ping", 204, every).expect("connect");
    thread::sleep(Duration::from_millis(1500));
    let statuses = hammer(port, &format!("/{}", name(failing)), 30, 2);
    let crossed = Instant::now();
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    thread::sleep(Duration::from_millis(3500));
    let pings = pinger.stop();
    let control = control.stop();
    let rounds = evaluations(port) - before;
    eprintln!("during {rounds} evaluation rounds: {}", pings.summary());
    eprintln!("vanilla nginx meanwhile: {}", control.summary());

    assert!(pings.failures.is_empty(), "{:?}", pings.failures);
    assert!(rounds >= 4.0, "only {rounds} rounds in 5 s");
    assert!(
        pings.round_trips.len() > 1000,
        "only {} requests in 5 s",
        pings.round_trips.len()
    );
    assert!(control.failures.is_empty(), "{:?}", control.failures);
    let bound = scaled(STALL_BOUND) + control.max();
    assert!(
        pings.max() <= bound,
        "a request waited {:?} (> {bound:?}, vanilla nginx's longest wait {:?} + \
         {STALL_BOUND:?}) while {NAMES} NAMEs were evaluated; {} waited longer than that",
        pings.max(),
        control.max(),
        pings.longer_than(bound)
    );

    // The alert of the last NAME went out within an interval (and a little) of the crossing.
    let msgs = hook.wait_for_messages(1, Duration::from_secs(10));
    assert!(!msgs.is_empty(), "no CRITICAL; log:\n{}", nginx.error_log());
    let (received, first) = hook.messages_with_time()[0].clone();
    let title = first["embeds"][0]["title"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        title.starts_with(&format!("CRITICAL {}: 5xx", name(failing))),
        "{title}"
    );
    let delay = received.saturating_duration_since(crossed);
    assert!(
        delay <= scaled(Duration::from_secs(3)),
        "CRITICAL {delay:?} after the crossing"
    );
    nginx.assert_log_clean();
}
