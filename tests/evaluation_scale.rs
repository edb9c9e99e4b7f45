//! An evaluation round of 10,000 NAMEs is spread over turns of worker 0's event loop
//! (src/driver/round.rs): a client of the same worker keeps being served promptly while rounds
//! run, and an alert still goes out within an interval of its threshold crossing.
//!
//! The bound here is loose: 20 ms, on a debug build, beyond the longest wait of the same client
//! of a vanilla nginx pinged at the same time, for all requests but fewer than one per four
//! rounds (on a busy machine both wait for a CPU now and then, not at the same moments), and
//! 200 ms for every request; an unsliced round of 10,000 NAMEs held the worker for 700 ms once a
//! round. The few milliseconds a slice takes on a release build are what `ci/bench --only scale`
//! shows.

use std::thread;
use std::time::{Duration, Instant};

use status_alert_testkit::*;

/// NAMEs, each in its own location.
const NAMES: usize = 10_000;
/// The longest a request of the other client may take, beyond the control's longest wait, but
/// for a few (fewer than one per four rounds: the machine's hiccups).
const STALL_BOUND: Duration = Duration::from_millis(20);
/// The longest any request may take beyond the control's longest wait (an unsliced round of
/// 10,000 NAMEs took 700 ms on a debug build).
const STALL_CEILING: Duration = Duration::from_millis(200);

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
    // An unsliced round stalls the worker once per round; a busy machine delays one request
    // now and then, in either nginx but not at the same moment: a few requests over the bound
    // are the machine, one per round is the module.
    let bound = scaled(STALL_BOUND) + control.max();
    let over = pings.longer_than(bound);
    assert!(
        (over as f64) < rounds / 4.0 && pings.max() <= scaled(STALL_CEILING) + control.max(),
        "{over} requests waited longer than {bound:?} (vanilla nginx's longest wait {:?} + \
         {STALL_BOUND:?}), the longest {:?}, while {NAMES} NAMEs were evaluated in {rounds} \
         rounds",
        control.max(),
        pings.max()
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
