//! Prometheus text exposition format 0.0.4: a strict line parser, a strict check of a whole
//! exposition (families, HELP and TYPE), a lookup by name and labels, and
//! `promtool check metrics`.
//!
//! Our own parser rather than a crate: the point is to reject what Prometheus would reject
//! (label escapes, names, values, trailing tokens, samples outside their family), and the
//! parsing crates are lenient scrape readers. The one Prometheus checker of the tests: the
//! module's property tests can call [`check_exposition`] and [`promtool_check`] too.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;

use crate::env::under_ci;

/// (metric name, labels in order, value). Values are f64, as Prometheus stores them: integers
/// above 2^53 lose precision.
pub type Sample = (String, Labels, f64);

/// Label names and unescaped values, in order.
pub type Labels = Vec<(String, String)>;

fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// A sample value as Prometheus' parser (Go's `strconv.ParseFloat`) reads it: a decimal
/// number, `+Inf`, `-Inf` or `NaN`.
fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" | "Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        "NaN" => return Ok(f64::NAN),
        _ => {}
    }
    let body = v.strip_prefix(['+', '-']).unwrap_or(v);
    let (mantissa, exp) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let decimal = !(int.is_empty() && frac.is_empty())
        && all_digits(int)
        && all_digits(frac)
        && exp.map_or(true, |e| !e.is_empty() && all_digits(e));
    match v.parse::<f64>() {
        Ok(f) if decimal => Ok(f),
        _ => Err(format!("bad sample value {v:?}")),
    }
}

/// Parses `{k="v",...}` at the start of `s` (after optional spaces around the parts); returns
/// the labels with unescaped values and the rest.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels: Labels = Vec::new();
    let mut rest = s.strip_prefix('{').ok_or("no {")?.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let name = rest[..eq].trim_end();
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} twice"));
        }
        let mut chars = rest[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("unquoted value of label {name}"))?
            .chars();
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {name}")),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("invalid escape \\{other:?} in label {name}")),
                },
                Some(c) => value.push(c),
            }
        }
        labels.push((name.to_string(), value));
        rest = chars.as_str().trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {name}"));
        }
    }
}

/// One sample line: name, optional labels, value, optional integer timestamp.
fn parse_sample_line(line: &str) -> Result<Sample, String> {
    let end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..end];
    if name.is_empty() {
        return Err("missing metric name".into());
    }
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let rest = line[end..].trim_start_matches([' ', '\t']);
    let (labels, rest) = if rest.starts_with('{') {
        parse_labels(rest)?
    } else {
        (Vec::new(), rest)
    };
    let mut tokens = rest.split_whitespace();
    let value = parse_value(tokens.next().ok_or("missing sample value")?)?;
    if let Some(ts) = tokens.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if let Some(extra) = tokens.next() {
        return Err(format!("unexpected trailing {extra:?}"));
    }
    Ok((name.to_string(), labels, value))
}

/// Parses the sample lines of a Prometheus text exposition (`#` lines and blank lines are
/// skipped); errors name the line.
pub fn try_parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(parse_sample_line(line).map_err(|e| format!("line {}: {e}: {raw:?}", i + 1))?);
    }
    Ok(samples)
}

/// [`try_parse_prometheus`] that panics (showing the text) on malformed input.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    try_parse_prometheus(text)
        .unwrap_or_else(|e| panic!("invalid Prometheus text: {e}\n--- text ---\n{text}"))
}

/// Checks a whole exposition as the module must write it, beyond what Prometheus tolerates:
/// a final newline; no blank lines or other comments; at most one HELP (with valid escapes)
/// and one TYPE per family; every sample after its family's TYPE and inside it (a histogram's
/// `_bucket`, `_sum`, `_count`); `le` on buckets and only there; no NaN or -Inf. Returns the
/// samples; errors name the line.
pub fn check_exposition(text: &str) -> Result<Vec<Sample>, String> {
    let body = text.strip_suffix('\n').ok_or("no final newline")?;
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashSet<String> = HashSet::new();
    let mut family: Option<(String, String)> = None;
    let mut samples = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if let Some(help) = line.strip_prefix("# HELP ") {
            let (name, doc) = help
                .split_once(' ')
                .ok_or_else(|| at("HELP without text".into()))?;
            if !is_metric_name(name) || !helps.insert(name.to_string()) {
                return Err(at("bad or repeated HELP".into()));
            }
            let mut chars = doc.chars();
            while let Some(c) = chars.next() {
                if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
                    return Err(at("bad escape in HELP".into()));
                }
            }
        } else if let Some(ty) = line.strip_prefix("# TYPE ") {
            let (name, kind) = ty
                .split_once(' ')
                .ok_or_else(|| at("TYPE without type".into()))?;
            let known = ["counter", "gauge", "histogram", "summary", "untyped"];
            if !is_metric_name(name) || !known.contains(&kind) {
                return Err(at("bad TYPE".into()));
            }
            if types.insert(name.to_string(), kind.to_string()).is_some() {
                return Err(at("repeated TYPE".into()));
            }
            family = Some((name.to_string(), kind.to_string()));
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("unexpected comment or blank line".into()));
        } else {
            let sample = parse_sample_line(line).map_err(at)?;
            let (name, labels, value) = &sample;
            if value.is_nan() || *value == f64::NEG_INFINITY {
                return Err(at(format!("value {value}")));
            }
            let (fam, kind) = family
                .as_ref()
                .ok_or_else(|| at("sample before TYPE".into()))?;
            let belongs = name == fam
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(fam)));
            if !belongs {
                return Err(at(format!("sample outside its family {fam}")));
            }
            if name.ends_with("_bucket") != labels.iter().any(|(n, _)| n == "le") {
                return Err(at("le label on a non-bucket or missing on a bucket".into()));
            }
            samples.push(sample);
        }
    }
    Ok(samples)
}

/// Value of the first sample named `name` whose labels include all of `labels`.
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|(n, ls, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| *v)
}

/// `promtool` on PATH, else Debian's `/usr/bin/promtool`.
fn promtool() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .chain([PathBuf::from("/usr/bin/promtool")])
        .find(|p| p.is_file())
}

/// Runs `promtool check metrics` on `text` (stdin). Err with promtool's output when it finds
/// problems. When promtool is missing: Err("promtool not installed"), or Ok when
/// `STATUS_ALERT_SKIP_PROMTOOL=1` waives it, which CI ([`under_ci`]) does not allow.
pub fn promtool_check(text: &str) -> Result<(), String> {
    let Some(promtool) = promtool() else {
        let waived = std::env::var("STATUS_ALERT_SKIP_PROMTOOL").as_deref() == Ok("1");
        if waived && !under_ci() {
            eprintln!("promtool not installed: check waived by STATUS_ALERT_SKIP_PROMTOOL=1");
            return Ok(());
        }
        return Err("promtool not installed (ci/deps installs it)".to_string());
    };
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", promtool.display()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_string();
    // Feed stdin from another thread so a chatty promtool can't deadlock us on full pipes.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child
        .wait_with_output()
        .map_err(|e| format!("promtool: {e}"))?;
    let _ = writer.join();
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "promtool check metrics failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// nginx's `/status_metrics`, checked with [`check_exposition`] and parsed (the tests' usual
/// metrics location).
pub fn prom(nginx: &crate::Nginx) -> Vec<Sample> {
    let resp = crate::http_get(nginx.port, "/status_metrics");
    assert_eq!(resp.status, 200, "/status_metrics: {}", resp.text());
    let text = resp.text();
    check_exposition(&text)
        .unwrap_or_else(|e| panic!("invalid exposition: {e}\n--- text ---\n{text}"))
}

/// `nginx_status_alert_evaluations_total` at `/status_metrics`: evaluation rounds nginx has
/// completed (0 before the first).
pub fn evaluations(nginx: &crate::Nginx) -> f64 {
    metric(&prom(nginx), "nginx_status_alert_evaluations_total", &[]).unwrap_or(0.0)
}

/// Waits until nginx has completed `rounds` evaluation rounds after the count `since` (from
/// [`evaluations`]), so that a check that nothing happened ("no alert", "no second message")
/// follows rounds that would have done it rather than a fixed sleep. False on `timeout` (times
/// [`crate::time_scale`]).
pub fn wait_for_evaluations(
    nginx: &crate::Nginx,
    since: f64,
    rounds: u32,
    timeout: std::time::Duration,
) -> bool {
    crate::wait_until(timeout, || evaluations(nginx) >= since + f64::from(rounds))
}

/// `nginx_probe_up{probe,target}`; `None` while absent.
pub fn probe_up(nginx: &crate::Nginx, probe: &str, target: &str) -> Option<f64> {
    metric(
        &prom(nginx),
        "nginx_probe_up",
        &[("probe", probe), ("target", target)],
    )
}

/// `nginx_probe_failures_total{probe,target,reason}` (0 when absent).
pub fn probe_failures(nginx: &crate::Nginx, probe: &str, target: &str, reason: &str) -> f64 {
    metric(
        &prom(nginx),
        "nginx_probe_failures_total",
        &[("probe", probe), ("target", target), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_parser_and_promtool() {
        let text = r#"# HELP http_requests_total Requests by status.
# TYPE http_requests_total counter
http_requests_total{location="/api",status="5xx"} 42
http_requests_total{location="/a\"b\\c\nd", status="2xx",} 7 1700000000000

# TYPE up gauge
up 1
latency_seconds_bucket{le="+Inf"} +Inf
ratio{loc="x"} 1.5e-3
"#;
        let samples = parse_prometheus(text);
        assert_eq!(samples.len(), 5);
        assert_eq!(
            metric(&samples, "http_requests_total", &[("status", "5xx")]),
            Some(42.0)
        );
        assert_eq!(
            metric(
                &samples,
                "http_requests_total",
                &[("location", "/a\"b\\c\nd")]
            ),
            Some(7.0)
        );
        assert_eq!(
            samples[1].1[0],
            ("location".to_string(), "/a\"b\\c\nd".to_string())
        );
        assert_eq!(metric(&samples, "up", &[]), Some(1.0));
        assert_eq!(
            metric(&samples, "latency_seconds_bucket", &[("le", "+Inf")]),
            Some(f64::INFINITY)
        );
        assert_eq!(metric(&samples, "ratio", &[]), Some(0.0015));
        assert_eq!(
            metric(&samples, "http_requests_total", &[("status", "4xx")]),
            None
        );
        assert_eq!(metric(&samples, "missing", &[]), None);
        for bad in [
            "x{a=\"1} 2",
            "x{a=1} 2",
            "x 1 2 3",
            "x{a=\"\\t\"} 1",
            "{a=\"1\"} 1",
            "x",
            "x{a=\"1\",a=\"2\"} 1",
            "x 0x10",
            "x inf",
            "1x 1",
        ] {
            assert!(
                try_parse_prometheus(bad).is_err(),
                "{bad:?} should not parse"
            );
        }

        let good = "# HELP status_alert_requests_total Requests.\n\
                    # TYPE status_alert_requests_total counter\n\
                    status_alert_requests_total{location=\"/\"} 3\n";
        if promtool().is_none() {
            // Without promtool the check is an error unless explicitly waived outside CI.
            let waived = std::env::var("STATUS_ALERT_SKIP_PROMTOOL").as_deref() == Ok("1");
            let expected = if waived && !under_ci() {
                Ok(())
            } else {
                Err("promtool not installed (ci/deps installs it)".to_string())
            };
            assert_eq!(promtool_check(good), expected);
            crate::skip(crate::test_name!(), "promtool not installed");
            return;
        }
        assert_eq!(promtool_check(good), Ok(()));
        // No HELP and a counter without _total: promtool's linter must complain.
        let err = promtool_check("# TYPE requests counter\nrequests 3\n").unwrap_err();
        assert!(err.contains("requests"), "{err}");
    }

    #[test]
    fn an_exposition_is_checked_family_by_family() {
        let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\n\
                    h_sum 0.7\nh_count 2\n";
        let samples = check_exposition(good).unwrap();
        assert_eq!(samples.len(), 5);
        assert_eq!(metric(&samples, "h_bucket", &[("le", "+Inf")]), Some(2.0));
        for (bad, why) in [
            ("# TYPE a counter\na 1", "no final newline"),
            ("a 1\n", "sample before TYPE"),
            ("# TYPE a counter\nb 1\n", "outside its family"),
            ("# TYPE a counter\n\na 1\n", "blank line"),
            ("# TYPE a counter\n# TYPE a counter\n", "repeated TYPE"),
            ("# TYPE a thing\n", "bad TYPE"),
            ("# HELP a x\\y\n", "bad escape in HELP"),
            ("# TYPE h histogram\nh_bucket 1\n", "le label"),
            ("# TYPE a gauge\na{le=\"1\"} 1\n", "le label"),
            ("# TYPE a gauge\na NaN\n", "value NaN"),
        ] {
            let err = check_exposition(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
