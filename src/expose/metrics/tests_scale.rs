//! The encodings at many NAMEs: the direct JSON writer against the `Value` tree it replaced,
//! and (ignored, run by hand) what each encoding costs per scrape.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::json_tree::render_json_tree;
use super::*;
use super::{JsonSlices, PrometheusSlices};
use crate::vocab::event::Level;
use crate::zone::counters::{BUCKET_SLOTS, STATUS_SLOTS};
use crate::zone::incidents::{Incident, IncidentKind};

/// A NAME with traffic: a few status codes, most buckets used, sometimes "other".
fn name(i: usize) -> NameMetrics {
    let mut c = CountersSnapshot {
        status: [0; STATUS_SLOTS],
        buckets: [0; BUCKET_SLOTS],
        duration_us_sum: 1_234_567 + i as u64,
    };
    for (k, code) in [200usize, 204, 301, 404, 502, 503].iter().enumerate() {
        c.status[code - 100] = (i * 7 + k) as u64 % 50;
    }
    if i % 3 == 0 {
        c.status[STATUS_SLOTS - 1] = 2;
    }
    for (k, b) in c.buckets.iter_mut().enumerate().take(12) {
        *b = ((i + k) % 9) as u64;
    }
    NameMetrics {
        name: format!("n-{i:05}\"\\\n€"),
        counters: c,
        window_requests: i as u64 % 97,
        window_errors: i as u64 % 5,
        level: Level::from_u8((i % 3) as u8),
    }
}

/// Health of every other NAME, with every optional part in turn.
fn health(i: usize, name: &str) -> NameHealth {
    NameHealth {
        name: name.to_string(),
        latency: (i % 4 != 1).then(|| ("0.95".into(), (i % 4 != 2).then_some(0.25 * i as f64))),
        slo: (i % 5 != 0).then(|| {
            let rates = vec![
                ("5m".into(), 15.2),
                ("30m".into(), f64::NAN),
                ("1h".into(), 1.0 / 3.0),
                ("6h".into(), 2.0),
            ];
            (99.9, rates)
        }),
        traffic: (i % 3 == 0).then(|| TrafficHealth {
            thresholds: "warn below 50% of usual".into(),
            level: Level::Warning,
            usual: (i % 2 == 0).then_some(412.5),
            known_windows: i % 13,
        }),
        incidents: IncidentSummary {
            opened: [3, 1, 0, i as u64],
            firing_seconds: [420, 180, 0, 600],
            recent: vec![Incident {
                kind: IncidentKind::Latency,
                start_ms: 1_700_000_000_000 + i as u64,
                end_ms: (i % 2 == 0).then_some(1_700_000_100_000),
                peak_level: Level::Critical,
                peak_value: 2.4,
                muted: i % 2 == 1,
            }],
        },
    }
}

/// `n` NAMEs (in no key order, one duplicated), probes, certificates, destinations, mutes,
/// configured buckets when `custom_buckets`.
pub(crate) fn scrape(n: usize, custom_buckets: bool) -> Metrics {
    let mut m = Metrics::default();
    if custom_buckets {
        m.bucket_bounds = BucketBounds::new(&[3, 100, 250, 2500, 10_000, 60_000]).unwrap();
    }
    for i in (0..n).rev() {
        let l = name(i);
        if i % 2 == 0 {
            m.health.push(health(i, &l.name));
        }
        if i % 10 == 3 {
            let reason = format!("deploy \"{i}\"");
            let view = MuteView {
                until_unix: 1_800_000_000 + i as u64,
                reason,
            };
            m.mutes.insert(l.name.clone(), view);
        }
        m.names.push(l);
    }
    let mut twice = name(4);
    twice.window_requests = 1;
    m.names.push(twice);
    for i in 0..3 {
        m.probes.push(ProbeMetrics {
            name: format!("p{i}"),
            target: "http://10.0.0.5/health".into(),
            up: [Some(true), Some(false), None][i],
            duration_seconds: 0.5,
            failures: [i as u64, 2, 0, 0, 0, 0, 0, 0, 9],
        });
    }
    m.probe_down.push(ProbeDown {
        name: "p1".into(),
        target: "http://10.0.0.5/health".into(),
        seconds: 95,
    });
    m.destinations = vec![
        ("webhook-2".into(), [1, 2, 3, 4]),
        ("discord-1".into(), [5, 0, 0, 1]),
    ];
    m.notifications = [6, 2, 3, 5];
    m.queue_depth = 3;
    m.certificates.push(CertificateMetrics {
        server: "example.com".into(),
        file: "/etc/ssl/a.pem".into(),
        served: Some(1_800_000_000),
        on_disk: None,
        renewed_since: Some(1_790_000_000),
        problem: Some("cannot read \"/etc/ssl/a.pem\"".into()),
        level: Level::Critical,
    });
    m.probe_certificates.push((
        "p0".into(),
        "https://a".into(),
        1_800_000_000,
        Level::Warning,
    ));
    // Peers of two upstreams, out of order, one listed twice (the last counts), a catch-all.
    for (upstream, peer, first) in [
        ("b", "10.0.0.4:80", 1),
        ("a", "10.0.0.3:8080", 2),
        ("b", "10.0.0.2:80", 3),
        ("a", "10.0.0.3:8080", 4),
        ("-", "other", 5),
    ] {
        m.upstream_peers.push(PeerMetrics {
            upstream: upstream.into(),
            peer: peer.into(),
            classes: [first, 0, 1, 7, 2],
        });
    }
    m.alerting = Some(AlertingStatus {
        evaluations: 7,
        last_evaluation_ms: 1_795_308_501_250,
        interval_ms: 1_500,
        helper_restarts: 0,
        stalled_since_ms: Some(1_795_308_400_000),
        evaluated_elsewhere: true,
        reason: crate::zone::StallReason::Helper,
    });
    m
}

#[test]
fn json_writer_matches_the_tree_byte_for_byte() {
    for m in [
        Metrics::default(),
        scrape(60, false),
        scrape(60, true),
        Metrics {
            alerting: None,
            ..scrape(3, false)
        },
    ] {
        let direct = render_json(&m);
        let tree = render_json_tree(&m);
        assert_eq!(direct, tree);
        let parsed: Value = serde_json::from_str(&direct).unwrap();
        assert_eq!(parsed, serde_json::from_str::<Value>(&tree).unwrap());
    }
}

/// Shortest of `runs` calls of `f`.
fn fastest(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut size = 0;
    for _ in 0..runs {
        let t = Instant::now();
        size = f();
        best = best.min(t.elapsed());
    }
    (best, size)
}

/// `cargo test --release --lib render_cost -- --ignored --nocapture`: each encoding's time.
#[test]
#[ignore]
fn render_cost() {
    for n in [1_000, 10_000] {
        let m = scrape(n, false);
        let (prom, prom_size) = fastest(5, || {
            let mut s = String::new();
            render_prometheus(&m, &mut s).unwrap();
            s.len()
        });
        let (json, json_size) = fastest(5, || render_json(&m).len());
        let (tree, _) = fastest(2, || render_json_tree(&m).len());
        let opts = crate::expose::html::HtmlOptions::default();
        let (page, page_size) = fastest(5, || crate::expose::html::render_html(&m, &opts).len());
        eprintln!(
            "{n} NAMEs: Prometheus {prom:?} ({prom_size} B), JSON {json:?} ({json_size} B), \
             JSON as a tree {tree:?}, status page {page:?} ({page_size} B)"
        );
    }
}

/// `m` cut into batches of `count` NAMEs (and health entries, by index), as a scrape copies
/// them: each batch with every value that is not per NAME, and its own NAMEs' mutes and details.
fn batches(m: &Metrics, count: usize) -> Vec<Metrics> {
    let total = m.names.len().max(m.health.len());
    let mut out = Vec::new();
    let mut start = 0;
    while start < total {
        let end = (start + count).min(total);
        let mut b = m.clone();
        b.names = m
            .names
            .get(start..end.min(m.names.len()))
            .unwrap_or(&[])
            .to_vec();
        b.health = m
            .health
            .get(start..end.min(m.health.len()))
            .unwrap_or(&[])
            .to_vec();
        let mine = |n: &String| b.names.iter().any(|l| &l.name == n);
        b.mutes.retain(|n, _| mine(n));
        b.name_details.retain(|n, _| mine(n));
        b.observed_secs.retain(|n, _| mine(n));
        out.push(b);
        start = end;
    }
    out
}

/// [`scrape`]'s values as a scrape copies them: every NAME once, each with a health entry at
/// the same index (its own, or an empty one).
pub(crate) fn collected(n: usize, custom_buckets: bool) -> Metrics {
    let mut m = scrape(n, custom_buckets);
    m.names.pop(); // the NAME listed twice
    m.health = m
        .names
        .iter()
        .map(|l| {
            let own = m.health.iter().find(|h| h.name == l.name).cloned();
            own.unwrap_or_else(|| NameHealth {
                name: l.name.clone(),
                ..NameHealth::default()
            })
        })
        .collect();
    m
}

/// `m` with its NAMEs (and their health entries) in key order.
fn in_key_order(m: &Metrics) -> Metrics {
    let mut sorted = m.clone();
    let mut pairs: Vec<(NameMetrics, NameHealth)> = m
        .names
        .iter()
        .cloned()
        .zip(m.health.iter().cloned())
        .collect();
    pairs.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    (sorted.names, sorted.health) = pairs.into_iter().unzip();
    sorted
}

/// Every way `m` can be cut into batches of NAMEs gives the document written in one go.
#[test]
fn documents_written_in_batches_are_the_whole_document() {
    let mut short_health = scrape(20, false);
    short_health.health.truncate(7);
    let mut long_health = scrape(5, true);
    long_health.names.truncate(2);
    for m in [
        Metrics::default(),
        scrape(60, false),
        scrape(60, true),
        short_health,
        long_health,
    ] {
        let mut whole = String::new();
        render_prometheus(&m, &mut whole).unwrap();
        for count in [1, 7, 64] {
            let mut p = PrometheusSlices::new(&m);
            for b in batches(&m, count) {
                p.add(&b).unwrap();
            }
            let text = String::from_utf8(p.finish(&m).unwrap().concat()).unwrap();
            assert!(text == whole, "{count} NAMEs a batch");
        }
    }
    // JSON batches come in key order, each NAME with its health entry (as a scrape copies
    // them).
    for m in [
        Metrics::default(),
        collected(60, false),
        collected(60, true),
    ] {
        let json = render_json(&m);
        let sorted = in_key_order(&m);
        for count in [1, 7, 64] {
            let mut j = JsonSlices::new(&m);
            for b in batches(&sorted, count) {
                j.add(&b);
            }
            let text = String::from_utf8(j.finish(&m).concat()).unwrap();
            assert!(text == json, "{count} NAMEs a batch");
        }
    }
}
