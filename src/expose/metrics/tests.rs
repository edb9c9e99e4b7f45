//! Both encodings of the same metrics: every family, the values they share, and promtool.

use serde_json::Value;

use super::prometheus::escape_label;
use super::*;
use crate::zone::counters::{bucket_index, status_index, BUCKET_SLOTS, STATUS_SLOTS};
use crate::zone::incidents::IncidentKind;

fn loc(name: &str, records: &[(usize, u64)]) -> NameMetrics {
    let mut c = CountersSnapshot {
        status: [0; STATUS_SLOTS],
        buckets: [0; BUCKET_SLOTS],
        duration_us_sum: 0,
    };
    for (status, ms) in records {
        c.status[status_index(*status)] += 1;
        c.buckets[bucket_index(*ms)] += 1;
        c.duration_us_sum += ms * 1000;
    }
    NameMetrics {
        name: name.into(),
        counters: c,
        window_requests: 10,
        window_errors: 1,
        level: Level::Warning,
    }
}

fn render(m: &Metrics) -> String {
    let mut s = String::new();
    render_prometheus(m, &mut s).unwrap();
    s
}

#[test]
fn upstream_peer_down() {
    let mut m = Metrics::default();
    assert!(!render(&m).contains("nginx_upstream_peer_down"));
    m.peers_down = vec![
        ("backend".into(), "127.0.0.1:81".into(), false),
        ("backend".into(), "[::1]:82".into(), true),
    ];
    let text = render(&m);
    assert!(text.contains("# TYPE nginx_upstream_peer_down gauge\n"));
    assert!(
        text.contains("nginx_upstream_peer_down{upstream=\"backend\",peer=\"127.0.0.1:81\"} 0\n")
    );
    assert!(text.contains("nginx_upstream_peer_down{upstream=\"backend\",peer=\"[::1]:82\"} 1\n"));
}

#[test]
fn prometheus_counts_and_histogram() {
    let m = Metrics {
        names: vec![loc("be", &[(200, 3), (200, 30), (503, 20_000), (0, 1)])],
        ..Default::default()
    };
    let text = render(&m);
    assert!(text.contains("nginx_location_requests_total{location=\"be\",status=\"200\"} 2\n"));
    assert!(text.contains("nginx_location_requests_total{location=\"be\",status=\"503\"} 1\n"));
    assert!(text.contains("status=\"other\"} 1\n"));
    assert!(!text.contains("status=\"404\""), "only codes seen");
    let b = "nginx_location_request_duration_seconds_bucket{location=\"be\"";
    assert!(text.contains(&format!("{b},le=\"0.005\"}} 2\n")));
    assert!(text.contains(&format!("{b},le=\"0.05\"}} 3\n")));
    assert!(text.contains(&format!("{b},le=\"10\"}} 3\n")));
    assert!(text.contains(&format!("{b},le=\"+Inf\"}} 4\n")));
    assert!(text.contains("nginx_location_request_duration_seconds_count{location=\"be\"} 4\n"));
    assert!(text.contains("nginx_location_request_duration_seconds_sum{location=\"be\"} 20.034\n"));
    assert!(text.contains("nginx_location_error_ratio{location=\"be\"} 0.1\n"));
    assert!(text.contains("nginx_location_alert_state{location=\"be\"} 1\n"));
    assert!(text.contains("# TYPE nginx_location_request_duration_seconds histogram\n"));
    assert!(text.contains("nginx_alert_notifications_total{result=\"dropped\"} 0\n"));
    assert!(text.ends_with("nginx_alert_queue_depth 0\n"));
}

#[test]
fn bucket_labels() {
    let labels: Vec<String> = crate::zone::counters::BUCKET_BOUNDS_MS
        .iter()
        .map(|ms| le_label(*ms))
        .collect();
    assert_eq!(
        labels,
        ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10"]
    );
}

#[test]
fn label_escaping() {
    let mut s = String::new();
    escape_label(&mut s, "a\"b\\c\nd").unwrap();
    assert_eq!(s, "a\\\"b\\\\c\\nd");
}

#[test]
fn probes_render_only_known_state() {
    let mut m = Metrics::default();
    m.probes.push(ProbeMetrics {
        name: "be".into(),
        target: "http://127.0.0.1:1/h".into(),
        up: None,
        duration_seconds: 0.0,
        failures: [1, 0, 0, 0, 0, 0, 0, 0, 0],
    });
    let text = render(&m);
    assert!(!text.contains("nginx_probe_up{"));
    assert!(text.contains("nginx_probe_failures_total{probe=\"be\",target=\"http://127.0.0.1:1/h\",reason=\"refused\"} 1\n"));
    m.probes[0].up = Some(false);
    assert!(render(&m).contains("nginx_probe_up{probe=\"be\",target=\"http://127.0.0.1:1/h\"} 0\n"));
}

#[test]
fn quantiles_interpolate_like_prometheus() {
    let bounds = [0.1, 0.5, 1.0];
    // 10 in [0, 0.1], 10 in (0.1, 0.5], 0 in (0.5, 1], 0 above.
    let cum = [10, 20, 20, 20];
    assert_eq!(histogram_quantile(0.5, &bounds, &cum), Some(0.1));
    assert_eq!(histogram_quantile(0.25, &bounds, &cum), Some(0.05));
    let p75 = histogram_quantile(0.75, &bounds, &cum).unwrap();
    assert!((p75 - 0.3).abs() < 1e-12, "{p75}");
    assert_eq!(histogram_quantile(0.0, &bounds, &cum), Some(0.0));
    // Rank in +Inf: the highest finite bound, as Prometheus does.
    assert_eq!(histogram_quantile(0.99, &bounds, &[0, 0, 1, 10]), Some(1.0));
    assert_eq!(histogram_quantile(0.5, &bounds, &[0, 0, 0, 0]), None);
    assert_eq!(histogram_quantile(1.5, &bounds, &cum), None);
    assert_eq!(histogram_quantile(f64::NAN, &bounds, &cum), None);
    assert_eq!(histogram_quantile(0.5, &bounds, &cum[..3]), None);
}

#[test]
fn duration_quantile_uses_the_module_buckets() {
    let l = loc("be", &[(200, 3), (200, 3), (200, 30), (200, 30)]);
    // Two in le=0.005, two in (0.025, 0.05]: the median is the top of the first bucket.
    let default = BucketBounds::default();
    assert_eq!(duration_quantile(&l.counters, &default, 0.5), Some(0.005));
    let p95 = duration_quantile(&l.counters, &default, 0.95).unwrap();
    assert!((p95 - 0.0475).abs() < 1e-12, "{p95}");
}

#[test]
fn json_carries_the_same_data() {
    let m = Metrics {
        names: vec![loc("be", &[(200, 3), (502, 3)])],
        notifications: [3, 1, 0, 0],
        ..Default::default()
    };
    let v: Value = serde_json::from_str(&render_json(&m)).unwrap();
    let be = &v["locations"]["be"];
    assert_eq!(be["requests"]["200"], 1);
    assert_eq!(be["requests"]["502"], 1);
    assert_eq!(be["requests_total"], 2);
    assert_eq!(be["duration_seconds"]["count"], 2);
    assert_eq!(be["duration_seconds"]["buckets"]["+Inf"], 2);
    assert_eq!(be["window"]["error_ratio"], 0.1);
    assert_eq!(be["alert_state"], "warning");
    assert_eq!(v["notifications"]["sent"], 3);
    assert_eq!(v["queue_depth"], 0);
}

fn health() -> NameHealth {
    use crate::zone::incidents::Incident;
    NameHealth {
        name: "api".into(),
        latency: Some(("0.95".into(), Some(2.4))),
        slo: Some((
            99.9,
            vec![
                ("5m".into(), 15.2),
                ("30m".into(), 7.5),
                ("1h".into(), 14.5),
                ("6h".into(), 2.0),
            ],
        )),
        traffic: Some(TrafficHealth {
            thresholds: "warn below 50% of usual".into(),
            level: Level::Warning,
            usual: Some(412.5),
            known_windows: 12,
        }),
        incidents: IncidentSummary {
            opened: [3, 1, 0, 2],
            firing_seconds: [420, 180, 0, 600],
            recent: vec![Incident {
                kind: IncidentKind::Latency,
                start_ms: 1_700_000_000_000,
                end_ms: None,
                peak_level: Level::Critical,
                peak_value: 2.4,
                muted: false,
            }],
        },
    }
}

fn full() -> Metrics {
    let mut m = Metrics {
        names: vec![loc("api", &[(200, 3), (503, 700)])],
        health: vec![health()],
        probe_down: vec![ProbeDown {
            name: "api".into(),
            target: "http://10.0.0.5/health".into(),
            seconds: 95,
        }],
        alerting: Some(running()),
        ..Default::default()
    };
    m.probes.push(ProbeMetrics {
        name: "api".into(),
        target: "http://10.0.0.5/health".into(),
        up: Some(false),
        duration_seconds: 0.5,
        failures: [0, 2, 0, 0, 0, 0, 0, 0, 0],
    });
    m.upstream_peers = peers();
    m
}

fn peers() -> Vec<PeerMetrics> {
    let peer = |upstream: &str, peer: &str, classes| PeerMetrics {
        upstream: upstream.into(),
        peer: peer.into(),
        classes,
    };
    vec![
        peer("backend", "10.0.0.3:8080", [7, 0, 1, 41, 0]),
        peer("backend", "[::1]:8080", [50, 0, 0, 0, 2]),
        peer("backend", "other", [0; 5]),
        peer("-", "other", [3, 0, 0, 0, 0]),
    ]
}

#[test]
fn upstream_peer_tries_in_both_encodings() {
    let mut m = Metrics::default();
    assert!(!render(&m).contains("nginx_upstream_peer_responses_total"));
    assert_eq!(
        serde_json::from_str::<Value>(&render_json(&m)).unwrap()["upstream_peers"],
        serde_json::json!({})
    );
    m.upstream_peers = peers();
    let text = render(&m);
    assert!(text.contains("# TYPE nginx_upstream_peer_responses_total counter\n"));
    let line = |u: &str, p: &str, c: &str, n: u64| {
        format!(
            "nginx_upstream_peer_responses_total{{upstream=\"{u}\",peer=\"{p}\",class=\"{c}\"}} {n}\n"
        )
    };
    for want in [
        line("backend", "10.0.0.3:8080", "5xx", 41),
        line("backend", "10.0.0.3:8080", "2xx", 7),
        line("backend", "[::1]:8080", "error", 2),
        line("backend", "other", "3xx", 0),
        line("-", "other", "2xx", 3),
    ] {
        assert!(text.contains(&want), "{want} in\n{text}");
    }
    let json: Value = serde_json::from_str(&render_json(&m)).unwrap();
    let peers = &json["upstream_peers"];
    assert_eq!(peers["backend"]["10.0.0.3:8080"]["5xx"], 41);
    assert_eq!(peers["backend"]["[::1]:8080"]["error"], 2);
    assert_eq!(peers["backend"]["other"]["4xx"], 0);
    assert_eq!(peers["-"]["other"]["2xx"], 3);
    assert!(json["locations"].is_object(), "other members stay");
}

#[test]
fn prometheus_health_families() {
    let text = render(&full());
    for line in [
        "# TYPE nginx_location_incidents_total counter\n",
        "nginx_location_incidents_total{location=\"api\",kind=\"errors\"} 3\n",
        "nginx_location_incidents_total{location=\"api\",kind=\"slo\"} 0\n",
        "nginx_location_incident_seconds_total{location=\"api\",kind=\"latency\"} 180\n",
        "# TYPE nginx_location_latency_seconds summary\n",
        "nginx_location_latency_seconds{location=\"api\",quantile=\"0.95\"} 2.4\n",
        "nginx_location_slo_burn_rate{location=\"api\",window=\"5m\"} 15.2\n",
        "nginx_location_slo_burn_rate{location=\"api\",window=\"6h\"} 2\n",
        "nginx_location_incidents_total{location=\"api\",kind=\"traffic\"} 2\n",
        "nginx_location_incident_seconds_total{location=\"api\",kind=\"traffic\"} 600\n",
        "# TYPE nginx_location_traffic_usual_requests gauge\n",
        "nginx_location_traffic_usual_requests{location=\"api\"} 412.5\n",
        "# TYPE nginx_probe_down_seconds_total counter\n",
        "nginx_probe_down_seconds_total{probe=\"api\",target=\"http://10.0.0.5/health\"} 95\n",
    ] {
        assert!(text.contains(line), "missing {line}");
    }
    // Without latency=/slo= (or without requests) those families are absent.
    let mut m = full();
    m.health[0].latency = Some(("0.95".into(), None));
    m.health[0].slo = None;
    m.health[0].traffic.as_mut().unwrap().usual = None;
    let text = render(&m);
    assert!(!text.contains("nginx_location_traffic_usual_requests"));
    assert!(!text.contains("nginx_location_latency_seconds"));
    assert!(!text.contains("nginx_location_slo_burn_rate"));
    assert!(text.contains("nginx_location_incidents_total{"));
    assert!(!render(&Metrics::default()).contains("incidents"));
}

#[test]
fn configured_buckets_render_their_bounds() {
    let mut l = loc("api", &[]);
    l.counters.buckets[0] = 2; // <= 100ms
    l.counters.buckets[2] = 1; // +Inf with two bounds
    let m = Metrics {
        names: vec![l],
        bucket_bounds: BucketBounds::new(&[100, 2500]).unwrap(),
        ..Default::default()
    };
    let text = render(&m);
    let b = "nginx_location_request_duration_seconds_bucket{location=\"api\"";
    assert!(text.contains(&format!("{b},le=\"0.1\"}} 2\n")));
    assert!(text.contains(&format!("{b},le=\"2.5\"}} 2\n")));
    assert!(text.contains(&format!("{b},le=\"+Inf\"}} 3\n")));
    assert!(!text.contains("le=\"0.005\""));
    let v: Value = serde_json::from_str(&render_json(&m)).unwrap();
    assert_eq!(
        v["locations"]["api"]["duration_seconds"]["buckets"]["2.5"],
        2
    );
}

#[test]
fn json_health() {
    let v: Value = serde_json::from_str(&render_json(&full())).unwrap();
    let api = &v["locations"]["api"];
    assert_eq!(api["latency"]["quantile"], "0.95");
    assert_eq!(api["latency"]["seconds"], 2.4);
    assert_eq!(api["slo"]["objective_percent"], 99.9);
    assert_eq!(api["slo"]["burn_rates"]["1h"], 14.5);
    assert_eq!(api["incidents"]["total"]["errors"], 3);
    assert_eq!(api["incidents"]["seconds_total"]["latency"], 180);
    let recent = &api["incidents"]["recent"][0];
    assert_eq!(recent["kind"], "latency");
    assert_eq!(recent["start"], 1_700_000_000u64);
    assert_eq!(recent["end"], Value::Null);
    assert_eq!(recent["peak_level"], "critical");
    assert_eq!(api["incidents"]["total"]["traffic"], 2);
    assert_eq!(api["traffic"]["usual_requests"], 412.5);
    assert_eq!(api["traffic"]["known_windows"], 12);
    assert_eq!(api["traffic"]["alert_state"], "warning");
    assert_eq!(v["probes"][0]["down_seconds_total"], 95);
}

/// An evaluator that completed its last round 4 s ago, every 10 s.
fn running() -> AlertingStatus {
    AlertingStatus {
        evaluations: 1234,
        last_evaluation_ms: 1_795_308_501_250,
        interval_ms: 10_000,
        helper_restarts: 2,
        stalled_since_ms: None,
        evaluated_elsewhere: false,
        reason: StallReason::Unknown,
    }
}

#[test]
fn alerting_families_while_running() {
    let text = render(&Metrics {
        alerting: Some(running()),
        ..Default::default()
    });
    for line in [
        "# TYPE nginx_status_alert_evaluations_total counter\n",
        "nginx_status_alert_evaluations_total 1234\n",
        "# TYPE nginx_status_alert_last_evaluation_timestamp_seconds gauge\n",
        "nginx_status_alert_last_evaluation_timestamp_seconds 1795308501.25\n",
        "# TYPE nginx_status_alert_interval_seconds gauge\n",
        "nginx_status_alert_interval_seconds 10\n",
        "# TYPE nginx_status_alert_helper_restarts_total counter\n",
        "nginx_status_alert_helper_restarts_total 2\n",
    ] {
        assert!(text.contains(line), "missing {line}");
    }
    for name in [
        "nginx_status_alert_evaluations_total",
        "nginx_status_alert_last_evaluation_timestamp_seconds",
        "nginx_status_alert_interval_seconds",
        "nginx_status_alert_helper_restarts_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
    }
    let v: Value = serde_json::from_str(&render_json(&Metrics {
        alerting: Some(running()),
        ..Default::default()
    }))
    .unwrap();
    let a = &v["alerting"];
    assert_eq!(a["evaluations"], 1234);
    assert_eq!(a["last_evaluation"], 1_795_308_501u64);
    assert_eq!(a["interval_seconds"], 10.0);
    assert_eq!(a["helper_restarts"], 2);
    assert_eq!(a["running"], true);
    assert_eq!(a["stalled_since"], Value::Null);
    assert_eq!(a["evaluated_elsewhere"], false);
    assert_eq!(a["reason"], Value::Null);
}

#[test]
fn alerting_stalled_before_the_first_evaluation() {
    let stalled = AlertingStatus {
        evaluations: 0,
        last_evaluation_ms: 0,
        interval_ms: 1_500,
        helper_restarts: 0,
        stalled_since_ms: Some(1_795_308_400_000),
        evaluated_elsewhere: false,
        reason: StallReason::StateDirectory,
    };
    let m = Metrics {
        alerting: Some(stalled),
        ..Default::default()
    };
    let text = render(&m);
    assert!(text.contains("nginx_status_alert_evaluations_total 0\n"));
    assert!(text.contains("nginx_status_alert_last_evaluation_timestamp_seconds 0\n"));
    assert!(text.contains("nginx_status_alert_interval_seconds 1.5\n"));
    let v: Value = serde_json::from_str(&render_json(&m)).unwrap();
    let a = &v["alerting"];
    assert_eq!(a["last_evaluation"], Value::Null, "no round yet");
    assert_eq!(a["interval_seconds"], 1.5);
    assert_eq!(a["running"], false);
    assert_eq!(a["stalled_since"], 1_795_308_400u64);
    assert_eq!(
        a["reason"],
        "the state directory or its lease file is unusable"
    );
}

#[test]
fn alerting_absent_without_a_zone() {
    let m = Metrics::default();
    assert!(!render(&m).contains("nginx_status_alert_"));
    let v: Value = serde_json::from_str(&render_json(&m)).unwrap();
    assert_eq!(v["alerting"], Value::Null);
}

#[test]
fn promtool_accepts_every_family() {
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        eprintln!("promtool not installed; skipped");
        return;
    };
    use std::io::Write as _;
    let text = render(&full());
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && report.trim().is_empty(),
        "{report}\n{text}"
    );
}
