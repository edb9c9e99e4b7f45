//! The HTML status page of `status_metrics` (README, status_metrics): chosen by `?format=html`
//! or a browser's `Accept`, self-contained, every configured or probed string escaped.

use std::time::Duration;

use status_alert_testkit::*;

const HOSTILE: &str = r#"http://x/"><script>alert(1)</script>"#;

#[test]
fn html_page_is_negotiated_escaped_and_self_contained() {
    require_module!();
    let block = format!(
        r#"
        status_alert_interval 1s;
        server {{
            listen 127.0.0.1:{{PORT}};
            location /api/ {{ status_alert api window=10s link=https://logs.example.com/api;
                              return 503; }}
            location /web/ {{ status_alert web; return 200; }}
            location = /status_metrics {{
                status_alert off;
                status_metrics;
                status_alert_probe '{HOSTILE}' name=web interval=1s timeout=500ms;
            }}
        }}
        "#
    );
    let nginx = Nginx::start(&block, NginxOpts::default());
    hammer(nginx.port, "/api/x", 30, 2);
    hammer(nginx.port, "/web/x", 10, 2);

    // A browser's Accept gets HTML; Prometheus's and curl's get text; ?format= wins.
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let page = http_request(
        nginx.port,
        "GET",
        "/status_metrics",
        &[("Accept", browser)],
        None,
    );
    assert_eq!(page.status, 200);
    assert!(page
        .header("Content-Type")
        .unwrap_or_default()
        .starts_with("text/html"));
    assert_eq!(page.header("Vary"), Some("Accept"));
    let prom =
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let text = http_request(
        nginx.port,
        "GET",
        "/status_metrics",
        &[("Accept", prom)],
        None,
    );
    assert!(text
        .header("Content-Type")
        .unwrap_or_default()
        .starts_with("text/plain"));
    let plain = http_get(nginx.port, "/status_metrics");
    assert!(plain
        .header("Content-Type")
        .unwrap_or_default()
        .starts_with("text/plain"));
    let forced = http_request(
        nginx.port,
        "GET",
        "/status_metrics?format=html&refresh=15",
        &[("Accept", "application/json")],
        None,
    );
    let html = forced.text();
    assert!(
        html.contains(r#"<meta http-equiv="refresh" content="15">"#),
        "{html}"
    );

    // Once the window is evaluated, api is critical; the probe has failed (nothing listens).
    assert!(wait_until(Duration::from_secs(6), || {
        let h = http_get(nginx.port, "/status_metrics?format=html").text();
        h.contains("CRITICAL") && h.to_lowercase().contains("down")
    }));
    let html = http_get(nginx.port, "/status_metrics?format=html").text();
    assert!(html.contains("api") && html.contains("web"), "{html}");
    assert!(!html.contains("<script"), "unescaped probe URL:\n{html}");
    assert!(
        html.contains("&lt;script&gt;"),
        "the probe URL is shown as text:\n{html}"
    );
    // No resource from anywhere: no src= or stylesheet links, only the configured link= shown.
    assert!(!html.contains(" src="), "{html}");
    assert!(!html.contains("<link rel=\"stylesheet\""), "{html}");
    assert!(html.contains("https://logs.example.com/api"), "{html}");
    nginx.assert_log_clean();
}
