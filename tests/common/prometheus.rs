//! Prometheus text exposition format 0.0.4: a strict parser of the sample lines, a lookup by
//! name and labels, and `promtool check metrics` when promtool is installed.
//!
//! Our own parser rather than a crate: the point is to reject what Prometheus would reject
//! (label escapes, names, trailing tokens), and the parsing crates are lenient scrape readers.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;

/// (metric name, labels in order, value).
pub type Sample = (String, Vec<(String, String)>, f64);

struct Cursor {
    chars: Vec<char>,
    i: usize,
}

impl Cursor {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek();
        self.i += usize::from(c.is_some());
        c
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.i += 1;
        }
    }

    fn take_while(&mut self, mut f: impl FnMut(usize, char) -> bool) -> String {
        let start = self.i;
        while let Some(c) = self.peek() {
            if !f(self.i - start, c) {
                break;
            }
            self.i += 1;
        }
        self.chars[start..self.i].iter().collect()
    }

    fn expect(&mut self, want: char) -> Result<(), String> {
        match self.bump() {
            Some(c) if c == want => Ok(()),
            Some(c) => Err(format!(
                "expected {want:?} at column {}, found {c:?}",
                self.i
            )),
            None => Err(format!("expected {want:?}, found end of line")),
        }
    }
}

fn parse_prom_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("bad sample value {s:?}")),
    }
}

fn parse_sample_line(line: &str) -> Result<Sample, String> {
    let mut c = Cursor {
        chars: line.chars().collect(),
        i: 0,
    };
    let name = c.take_while(|n, ch| {
        ch.is_ascii_alphabetic() || ch == '_' || ch == ':' || (n > 0 && ch.is_ascii_digit())
    });
    if name.is_empty() {
        return Err("missing metric name".into());
    }
    c.skip_ws();
    let mut labels = Vec::new();
    if c.peek() == Some('{') {
        c.bump();
        loop {
            c.skip_ws();
            if c.peek() == Some('}') {
                c.bump();
                break;
            }
            let key = c.take_while(|n, ch| {
                ch.is_ascii_alphabetic() || ch == '_' || (n > 0 && ch.is_ascii_digit())
            });
            if key.is_empty() {
                return Err(format!("bad label name at column {}", c.i));
            }
            c.skip_ws();
            c.expect('=')?;
            c.skip_ws();
            c.expect('"')?;
            let mut value = String::new();
            loop {
                match c.bump() {
                    None => return Err(format!("unterminated value of label {key}")),
                    Some('"') => break,
                    Some('\\') => match c.bump() {
                        Some('n') => value.push('\n'),
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        other => return Err(format!("invalid escape \\{other:?} in label {key}")),
                    },
                    Some(ch) => value.push(ch),
                }
            }
            labels.push((key, value));
            c.skip_ws();
            match c.bump() {
                Some(',') => {}
                Some('}') => break,
                other => return Err(format!("expected ',' or '}}' after label, found {other:?}")),
            }
        }
    }
    let rest: String = c.chars[c.i..].iter().collect();
    let mut tokens = rest.split_whitespace();
    let value = parse_prom_value(tokens.next().ok_or("missing sample value")?)?;
    if let Some(ts) = tokens.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?}"))?;
    }
    if let Some(extra) = tokens.next() {
        return Err(format!("unexpected trailing {extra:?}"));
    }
    Ok((name, labels, value))
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

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether `promtool` is on PATH.
pub fn have_promtool() -> bool {
    find_on_path("promtool").is_some()
}

/// Runs `promtool check metrics` on `text` (stdin). Err with promtool's output when it finds
/// problems; Err("promtool not installed") when it is missing, unless
/// STATUS_ALERT_SKIP_PROMTOOL=1 (then Ok).
pub fn promtool_check(text: &str) -> Result<(), String> {
    let Some(promtool) = find_on_path("promtool") else {
        if std::env::var("STATUS_ALERT_SKIP_PROMTOOL").as_deref() == Ok("1") {
            return Ok(());
        }
        return Err("promtool not installed".to_string());
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

/// nginx's `/status_metrics`, parsed (the tests' usual metrics location).
pub fn prom(nginx: &super::Nginx) -> Vec<Sample> {
    let resp = super::http_get(nginx.port, "/status_metrics");
    assert_eq!(resp.status, 200, "/status_metrics: {}", resp.text());
    parse_prometheus(&resp.text())
}

/// `nginx_probe_up{probe,target}`; `None` while absent.
pub fn probe_up(nginx: &super::Nginx, probe: &str, target: &str) -> Option<f64> {
    metric(
        &prom(nginx),
        "nginx_probe_up",
        &[("probe", probe), ("target", target)],
    )
}

/// `nginx_probe_failures_total{probe,target,reason}` (0 when absent).
pub fn probe_failures(nginx: &super::Nginx, probe: &str, target: &str, reason: &str) -> f64 {
    metric(
        &prom(nginx),
        "nginx_probe_failures_total",
        &[("probe", probe), ("target", target), ("reason", reason)],
    )
    .unwrap_or(0.0)
}
