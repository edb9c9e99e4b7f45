//! Scrapes as Prometheus makes them (SPEC 12): gzip when the client takes it (q-values
//! honoured), plain otherwise, `Vary: Accept-Encoding` either way, HEAD alike without a body,
//! and no second compression when nginx's own gzip filter is on for the location.

use std::io::Read;
use std::time::Duration;

use flate2::read::GzDecoder;
use serde_json::Value;
use status_alert_testkit::*;

/// NAMEs of these tests: enough for a document worth compressing.
const NAMES: usize = 300;
const GZIP: &[(&str, &str)] = &[("Accept-Encoding", "gzip")];

/// `NAMES` NAMEs, each in its own location (every 7th answering 503), and `status_metrics`
/// with `extra` directives.
fn block(extra: &str) -> String {
    let mut locations = String::new();
    for i in 0..NAMES {
        let status = if i % 7 == 0 { 503 } else { 200 };
        locations.push_str(&format!(
            "location = /n-{i:03} {{ status_alert n-{i:03} window=1m; return {status}; }}\n"
        ));
    }
    format!(
        r#"
        status_alert_interval 1s;
        server {{
            listen 127.0.0.1:{{PORT}};
            {locations}
            location = /status_metrics {{ status_alert off; status_metrics; {extra} }}
        }}
        "#
    )
}

/// Starts nginx with `extra` on the metrics location, sends traffic to every 10th NAME and
/// waits until the location series stop changing (the evaluator has seen the traffic).
fn start(extra: &str) -> Nginx {
    let nginx = Nginx::start(&block(extra), NginxOpts::default());
    for i in (0..NAMES).step_by(10) {
        hammer(nginx.port, &format!("/n-{i:03}"), 5, 1);
    }
    settle(Duration::from_secs(2), Duration::from_secs(20), || {
        steady(&http_get(nginx.port, "/status_metrics").text())
    });
    nginx
}

fn gunzip(body: &[u8]) -> String {
    let mut text = String::new();
    GzDecoder::new(body)
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("not gzip ({e}): {} bytes", body.len()));
    text
}

/// Values that move between two scrapes with nothing else happening: the evaluator's own
/// series and the firing seconds of an ongoing incident.
fn moves(name: &str) -> bool {
    name.starts_with("nginx_status_alert_") || name == "nginx_location_incident_seconds_total"
}

/// The exposition's samples, checked as the module must write them, with the values that
/// move set to 0 (their series still count).
fn steady(text: &str) -> Vec<Sample> {
    let mut samples = check_exposition(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, _, value) in &mut samples {
        if moves(name) {
            *value = 0.0;
        }
    }
    samples
}

/// The JSON document without the parts that move (see [`moves`]).
fn steady_json(text: &str) -> Value {
    let mut doc: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    doc["alerting"] = Value::Null;
    for (_, location) in doc["locations"]
        .as_object_mut()
        .expect("locations")
        .iter_mut()
    {
        location["incidents"]["seconds_total"] = Value::Null;
    }
    doc
}

fn varies_by_encoding(r: &Response) -> bool {
    r.header_all("Vary")
        .iter()
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("Accept-Encoding"))
}

#[test]
fn gzip_when_the_client_takes_it() {
    require_module!();
    let nginx = start("");
    let get = |path: &str, headers: &[(&str, &str)]| {
        let r = http_request(nginx.port, "GET", path, headers, None);
        assert_eq!(r.status, 200, "{path} {headers:?}");
        assert!(
            varies_by_encoding(&r),
            "{path} {headers:?}: {:?}",
            r.headers
        );
        r
    };

    // No Accept-Encoding: plain text.
    let plain = get("/status_metrics", &[]);
    assert_eq!(plain.header("Content-Encoding"), None);
    let series = steady(&plain.text());
    assert!(series.len() > NAMES * 10, "{} samples", series.len());

    // Prometheus's Accept-Encoding: the same series, gzip-coded.
    let packed = get("/status_metrics", GZIP);
    assert_eq!(packed.header_all("Content-Encoding"), vec!["gzip"]);
    assert_eq!(
        packed.header("Content-Length"),
        Some(packed.body.len().to_string().as_str())
    );
    assert!(
        packed.body.len() * 5 < plain.body.len(),
        "{} bytes gzip, {} plain",
        packed.body.len(),
        plain.body.len()
    );
    assert_eq!(steady(&gunzip(&packed.body)), series);

    // q-values: gzip;q=0 is a no, a lower q still a yes, `*` stands for gzip when unnamed.
    for (accept_encoding, gzip) in [
        ("gzip;q=0", false),
        ("gzip;q=0, *", false),
        ("identity", false),
        ("br, deflate", false),
        ("br;q=1.0, gzip;q=0.5", true),
        ("*", true),
        ("x-gzip", true),
    ] {
        let r = get("/status_metrics", &[("Accept-Encoding", accept_encoding)]);
        let coded = r.header("Content-Encoding") == Some("gzip");
        assert_eq!(coded, gzip, "{accept_encoding}");
        let text = if coded { gunzip(&r.body) } else { r.text() };
        assert_eq!(steady(&text), series, "{accept_encoding}");
    }

    // JSON and the page likewise.
    let json = get("/status_metrics?format=json", &[]);
    assert_eq!(json.header("Content-Encoding"), None);
    let json_packed = get("/status_metrics?format=json", GZIP);
    assert_eq!(json_packed.header("Content-Encoding"), Some("gzip"));
    assert_eq!(
        steady_json(&gunzip(&json_packed.body)),
        steady_json(&json.text())
    );
    let page = get("/status_metrics?format=html", GZIP);
    assert_eq!(page.header("Content-Encoding"), Some("gzip"));
    assert!(gunzip(&page.body).contains("n-000"));

    // HEAD: the same headers, no body.
    let head = http_request(nginx.port, "HEAD", "/status_metrics", GZIP, None);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Content-Encoding"), Some("gzip"));
    assert!(varies_by_encoding(&head));
    assert!(head.body.is_empty());
    let length: usize = head
        .header("Content-Length")
        .and_then(|l| l.parse().ok())
        .expect("Content-Length");
    assert!(length > 0 && length * 5 < plain.body.len(), "{length}");
    let head = http_request(nginx.port, "HEAD", "/status_metrics", &[], None);
    assert_eq!(head.header("Content-Encoding"), None);
    assert!(head.body.is_empty());
    // The plain length, give or take the digits of values that moved since.
    let length: usize = head
        .header("Content-Length")
        .and_then(|l| l.parse().ok())
        .expect("Content-Length");
    assert!(length.abs_diff(plain.body.len()) < 100, "{length}");
    nginx.assert_log_clean();
}

#[test]
fn nginx_gzip_on_does_not_compress_twice() {
    require_module!();
    // nginx's gzip filter on for the location, for any type (`text/plain` alone would not
    // match the Prometheus type: nginx matches the type with its parameters up to `charset`),
    // at any size, with its own Vary. Our Content-Encoding is set as nginx's
    // headers_out.content_encoding, which is what tells the filter to leave the body alone;
    // without it the JSON came out gzip-coded twice.
    let nginx = start("gzip on; gzip_types *; gzip_min_length 1; gzip_vary on;");
    let plain = http_get(nginx.port, "/status_metrics");
    assert_eq!(plain.header("Content-Encoding"), None);
    let series = steady(&plain.text());
    for path in ["/status_metrics", "/status_metrics?format=json"] {
        let r = http_request(nginx.port, "GET", path, GZIP, None);
        assert_eq!(r.status, 200);
        // One coding, ours: one gunzip gives the document.
        assert_eq!(r.header_all("Content-Encoding"), vec!["gzip"], "{path}");
        let text = gunzip(&r.body);
        if path.ends_with("json") {
            let plain = http_get(nginx.port, path).text();
            assert_eq!(steady_json(&text), steady_json(&plain));
        } else {
            assert_eq!(steady(&text), series);
        }
        assert!(varies_by_encoding(&r));
    }
    nginx.assert_log_clean();
}
