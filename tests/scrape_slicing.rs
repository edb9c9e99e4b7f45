//! Scrapes of 10,000 NAMEs are made in slices on the worker's event loop (src/expose/scrape.rs):
//! another client of the same worker keeps being served while they are made, in every format;
//! two scrapes at once each get a whole, valid document; a reload or a quit while a scrape is
//! under way lets it finish.
//!
//! The bound is loose, as in tests/evaluation_scale.rs: 20 ms on a debug build beyond the
//! longest wait of the same client of a vanilla nginx pinged at the same time, for all
//! requests but fewer than one per four scrapes (a busy machine delays a request now and then,
//! in either nginx), and 200 ms for every request. An unsliced JSON scrape of 10,000 NAMEs held
//! a debug worker for 450 ms. The few milliseconds a slice takes on a release build are what
//! `ci/bench --only scale` shows.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use status_alert_testkit::*;

/// NAMEs, each in its own location.
const NAMES: usize = 10_000;
/// See the file's comment.
const STALL_BOUND: Duration = Duration::from_millis(20);
const STALL_CEILING: Duration = Duration::from_millis(200);

fn name(i: usize) -> String {
    format!("n-{i:05}")
}

/// One worker with `NAMES` NAMEs (every 500th answering 503), evaluating every minute only, so
/// that what the pinging client sees is the scrapes; 200 NAMEs get traffic.
fn start() -> Nginx {
    let mut locations = String::with_capacity(NAMES * 90);
    for i in 0..NAMES {
        let n = name(i);
        let status = if i % 500 == 0 { 503 } else { 200 };
        locations.push_str(&format!(
            "location = /{n} {{ status_alert {n} window=5m; return {status}; }}\n"
        ));
    }
    let block = format!(
        r#"
        status_alert_interval 60s;
        server {{
            listen 127.0.0.1:{{PORT}};
            {locations}
            location = /ping {{ return 204; }}
            location = /status_metrics {{ status_alert off; status_metrics; }}
        }}
        "#
    );
    let nginx = Nginx::start(&block, NginxOpts::workers(1));
    for i in (0..NAMES).step_by(50) {
        hammer(nginx.port, &format!("/{}", name(i)), 2, 1);
    }
    nginx
}

/// A scrape as `accept` and `encoding` ask for it: the status and the (decoded) body.
fn scrape(port: u16, path: &str, gzip: bool) -> Result<(u16, Vec<u8>), String> {
    let headers: &[(&str, &str)] = if gzip {
        &[("Accept-Encoding", "gzip")]
    } else {
        &[]
    };
    let mut c = RawConnection::open(port).map_err(|e| e.to_string())?;
    let r = c
        .request("GET", path, headers, None)
        .map_err(|e| e.to_string())?
        .response;
    let body = if r.header("content-encoding") == Some("gzip") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut out)
            .map_err(|e| format!("not gzip: {e}"))?;
        out
    } else if gzip {
        return Err("gzip asked for, plain answered".into());
    } else {
        r.body
    };
    Ok((r.status, body))
}

/// Checks a whole Prometheus document of every NAME.
fn check_prometheus(body: &[u8]) {
    let text = String::from_utf8(body.to_vec()).expect("UTF-8");
    let samples = check_exposition(&text).unwrap_or_else(|e| panic!("{e}"));
    let states = samples
        .iter()
        .filter(|s| s.0 == "nginx_location_alert_state")
        .count();
    assert_eq!(states, NAMES, "alert states of {NAMES} NAMEs");
    promtool_check(&text).unwrap_or_else(|e| panic!("promtool: {e}"));
}

/// Checks a whole JSON document of every NAME.
fn check_json(body: &[u8]) {
    let v: Value = serde_json::from_slice(body).expect("a JSON document");
    let locations = v["locations"].as_object().expect("locations");
    assert_eq!(locations.len(), NAMES);
    assert!(locations[&name(NAMES - 1)]["requests_total"].is_u64());
    assert!(v["queue_depth"].is_u64(), "the document's tail is there");
}

#[test]
fn ten_thousand_name_scrapes_do_not_stall_the_worker() {
    require_module!();
    let nginx = start();
    let port = nginx.port;
    let vanilla = Nginx::start(
        "server { listen 127.0.0.1:{PORT}; location = /ping { return 204; } }",
        NginxOpts {
            worker_processes: 1,
            ..NginxOpts::plain()
        },
    );
    let every = Duration::from_millis(1);
    let pinger = Pinger::start(port, "/ping", 204, every).expect("connect");
    let control = Pinger::start(vanilla.port, "/ping", 204, every).expect("connect");
    thread::sleep(Duration::from_millis(300));
    let kinds = [
        ("/status_metrics", false),
        ("/status_metrics?format=json", false),
        ("/status_metrics", true),
        ("/status_metrics?format=json", true),
        ("/status_metrics?format=html", false),
    ];
    let mut scrapes = 0;
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(6) || scrapes < 2 * kinds.len() {
        let (path, gzip) = kinds[scrapes % kinds.len()];
        let (status, body) = scrape(port, path, gzip).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(status, 200, "{path}");
        if scrapes < kinds.len() {
            match path {
                "/status_metrics" => check_prometheus(&body),
                "/status_metrics?format=json" => check_json(&body),
                _ => assert!(body.len() <= 300 * 1024, "page of {} bytes", body.len()),
            }
        }
        scrapes += 1;
    }
    let pings = pinger.stop();
    let control = control.stop();
    eprintln!("during {scrapes} scrapes: {}", pings.summary());
    eprintln!("vanilla nginx meanwhile: {}", control.summary());

    assert!(pings.failures.is_empty(), "{:?}", pings.failures);
    assert!(control.failures.is_empty(), "{:?}", control.failures);
    assert!(
        pings.round_trips.len() > 1000,
        "only {} requests",
        pings.round_trips.len()
    );
    // An unsliced scrape stalls the worker once per scrape.
    let bound = scaled(STALL_BOUND) + control.max();
    let over = pings.longer_than(bound);
    assert!(
        over < scrapes / 4 && pings.max() <= scaled(STALL_CEILING) + control.max(),
        "{over} requests waited longer than {bound:?} (vanilla nginx's longest wait {:?} + \
         {STALL_BOUND:?}), the longest {:?}, during {scrapes} scrapes of {NAMES} NAMEs",
        control.max(),
        pings.max()
    );
    nginx.assert_log_clean();
}

#[test]
fn concurrent_scrapes_each_get_a_whole_document_and_a_reload_lets_them_finish() {
    require_module!();
    let nginx = start();
    let port = nginx.port;
    // Two at once, in each format and coding.
    for (path, gzip) in [
        ("/status_metrics", false),
        ("/status_metrics?format=json", true),
    ] {
        let others = thread::spawn(move || scrape(port, path, gzip));
        let (status, body) = scrape(port, path, gzip).expect("first scrape");
        let (other_status, other) = others.join().unwrap().expect("second scrape");
        assert_eq!((status, other_status), (200, 200));
        for body in [&body, &other] {
            if path.contains("json") {
                check_json(body);
            } else {
                check_prometheus(body);
            }
        }
    }

    // A reload and then a quit while scrapes are under way: the old worker finishes them.
    let worker = nginx.worker_pids();
    let json = thread::spawn(move || scrape(port, "/status_metrics?format=json", false));
    let text = thread::spawn(move || scrape(port, "/status_metrics", true));
    thread::sleep(Duration::from_millis(20));
    nginx.reload();
    let (status, body) = json.join().unwrap().expect("JSON scrape across a reload");
    assert_eq!(status, 200);
    check_json(&body);
    let (status, body) = text.join().unwrap().expect("gzip scrape across a reload");
    assert_eq!(status, 200);
    check_prometheus(&body);
    assert!(
        wait_until(scaled(Duration::from_secs(20)), || nginx.worker_pids()
            != worker),
        "no new worker after the reload"
    );
    let json = thread::spawn(move || scrape(port, "/status_metrics?format=json", false));
    thread::sleep(Duration::from_millis(20));
    let mut nginx = nginx;
    assert_eq!(nginx.stop(), Stopped::Gracefully);
    let (status, body) = json.join().unwrap().expect("JSON scrape across a quit");
    assert_eq!(status, 200);
    check_json(&body);
    nginx.assert_log_clean();
}
