//! `status_alert_probe URL [name=] [interval=] [timeout=] [fails=] [passes=] [expect=]
//! [tls_verify=]` and `status_alert_probe upstream=NAME [uri=] [scheme=] [mark_down=] ...`:
//! pure parsing of the directive's values.

use thiserror::Error;

use crate::conf::params::{invalid, parse_time_ms, validate_name, ParamError};
use crate::vocab::redact::hide_credentials;

/// How a target is probed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `GET` over plain HTTP/1.1.
    Http,
    /// `GET` over HTTPS.
    Https,
    /// A TCP connect.
    Tcp,
}

/// A parsed probe URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Protocol.
    pub scheme: Scheme,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (scheme default when not written).
    pub port: u16,
    /// The port was written in the URL (always for `tcp://`).
    pub explicit_port: bool,
    /// Path and query for HTTP(S), `/` when not written; empty for TCP.
    pub path: String,
    /// `user:password` from the URL, sent as basic authentication; never displayed.
    pub userinfo: Option<String>,
}

impl Target {
    /// `host[:port]` as written in the URL, without credentials (IPv6 in brackets): what the
    /// request URL and `Host` header use.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.explicit_port {
            format!("{host}:{}", self.port)
        } else {
            host
        }
    }

    /// The URL without credentials, as shown in metrics and alerts.
    pub fn display(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Tcp => "tcp",
        };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }
}

/// One configured probe.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeSpec {
    /// NAME the probe reports under; empty until inherited from the location's `status_alert`.
    pub name: String,
    /// What is probed.
    pub target: Target,
    /// Time between probes.
    pub interval_ms: u64,
    /// Time a probe may take.
    pub timeout_ms: u64,
    /// Consecutive failures that make the target DOWN.
    pub fails: u32,
    /// Consecutive successes that make it UP again.
    pub passes: u32,
    /// Accepted HTTP status ranges (inclusive).
    pub expect: Vec<(u16, u16)>,
    /// Verify TLS certificates (HTTPS).
    pub tls_verify: bool,
    /// Set for `upstream=NAME` probes: the template's target has the upstream's name as host
    /// and port 0 until [`ProbeSpec::for_peer`] makes one target per address.
    pub upstream: Option<UpstreamRef>,
    /// What the answer must say besides its status (`body=`, `header=`, `max_time=`).
    pub checks: AnswerChecks,
}

/// Checks of an HTTP(S) probe's answer beyond its status: `body=TEXT`, `body_regex=REGEX`,
/// `header=NAME:TEXT`, `max_time=TIME`. The decision is `probe::http::ResponseReader::verdict`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerChecks {
    /// The body (its first [`MAX_BODY`] bytes, chunked framing removed) contains this text.
    pub body: Option<String>,
    /// The body matches this PCRE pattern (compiled by nginx when the directive is read).
    pub body_regex: Option<String>,
    /// A header of this name (case-insensitive) is present and its value contains the text
    /// (case-sensitive; empty: the header's presence is enough).
    pub header: Option<(String, String)>,
    /// The whole answer took at most this long, from the start of the probe.
    pub max_time_ms: Option<u64>,
}

impl AnswerChecks {
    /// True when the body must be kept for a check.
    pub fn need_body(&self) -> bool {
        self.body.is_some() || self.body_regex.is_some()
    }
}

/// Most bytes of an answer's body a probe reads (and checks `body=` against).
pub const MAX_BODY: usize = 64 * 1024;

/// The upstream an `upstream=` probe watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamRef {
    /// `upstream NAME { ... }`.
    pub name: String,
    /// `mark_down=on`: DOWN peers get no new requests.
    pub mark_down: bool,
    /// The peer's address as nginx names it (`10.0.0.5:8080`); empty in the template.
    pub peer: String,
}

impl ProbeSpec {
    /// The probe of one address of an upstream probe's template: `SCHEME://ADDRESS:PORT/PATH`.
    pub fn for_peer(&self, addr: std::net::SocketAddr) -> ProbeSpec {
        let mut spec = self.clone();
        spec.target.host = addr.ip().to_string();
        spec.target.port = addr.port();
        spec.target.explicit_port = true;
        if let Some(u) = &mut spec.upstream {
            u.peer = addr.to_string();
        }
        spec
    }

    /// True if `status` is one of the expected codes.
    pub fn expects(&self, status: u16) -> bool {
        self.expect
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }
}

/// A probe directive that cannot be accepted.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProbeSpecError {
    /// A parameter that does not parse.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// No URL or `upstream=` was given.
    #[error("a URL is required")]
    NoUrl,
    /// The URL (credentials hidden) does not parse.
    #[error("invalid URL \"{url}\": {why}")]
    InvalidUrl {
        /// The URL as written, without credentials.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `upstream=` names no upstream that could exist.
    #[error("invalid upstream name \"{0}\"")]
    InvalidUpstream(String),
    /// `timeout=` is not below `interval=` (each as written, or its default in words).
    #[error("{timeout} must be below {interval}")]
    TimeoutNotBelowInterval {
        /// `timeout=...` or `timeout (default 5s)`.
        timeout: String,
        /// `interval=...` or `interval (default 60s)`.
        interval: String,
    },
    /// `expect=` on a TCP probe.
    #[error("expect= applies to http:// and https:// probes only")]
    ExpectWithoutHttp,
    /// `uri=` on an upstream probe with `scheme=tcp`.
    #[error("uri= applies to scheme=http and https only")]
    UriWithoutHttp,
    /// A probe at `http` or `server` level without `name=`.
    #[error("name= is required outside a location with \"status_alert NAME\"")]
    NameRequired,
    /// `body=`, `header=` or `max_time=` on a TCP probe (the parameter as written).
    #[error("{0}= applies to http:// and https:// probes only")]
    CheckWithoutHttp(&'static str),
    /// `max_time=` not below `timeout=` (each as written, or its default in words).
    #[error("{max_time} must be below {timeout}")]
    MaxTimeNotBelowTimeout {
        /// `max_time=...`.
        max_time: String,
        /// `timeout=...` or `timeout (default 5s)`.
        timeout: String,
    },
    /// An HTTPS probe in an nginx built without SSL: the probes speak TLS with nginx's OpenSSL.
    #[error("https probes need nginx built with SSL (./configure --with-http_ssl_module)")]
    HttpsWithoutSsl,
}

/// `body=TEXT` and `body_regex=REGEX`: printable text (quote the argument in nginx.conf for
/// spaces), at most 1024 bytes.
fn parse_body_text(key: &str, value: &str) -> Result<String, ParamError> {
    if value.is_empty() || value.len() > 1024 || value.chars().any(char::is_control) {
        return Err(invalid(key, value, "1 to 1024 bytes of printable text"));
    }
    Ok(value.to_string())
}

/// `header=NAME:TEXT`: a header name (an HTTP token) and the text its value must contain
/// (printable, may be empty: then the header's presence is checked).
fn parse_header_check(value: &str) -> Result<(String, String), ParamError> {
    let expected = "NAME:TEXT, NAME a header name";
    let (name, text) = value
        .split_once(':')
        .ok_or_else(|| invalid("header", value, expected))?;
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let bad_text = text.len() > 1024 || text.chars().any(char::is_control);
    if name.is_empty() || !name.chars().all(token) || bad_text {
        return Err(invalid("header", value, expected));
    }
    Ok((name.to_string(), text.trim().to_string()))
}

/// Parses a probe URL.
pub fn parse_target(url: &str) -> Result<Target, ProbeSpecError> {
    let bad = |why: &'static str| ProbeSpecError::InvalidUrl {
        url: hide_credentials(url),
        why,
    };
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else if let Some(r) = url.strip_prefix("tcp://") {
        (Scheme::Tcp, r)
    } else {
        return Err(bad("unknown scheme, expected http://, https:// or tcp://"));
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains white space"));
    }
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed \"[\""))?;
        match after {
            "" => (h, None),
            _ => (
                h,
                Some(after.strip_prefix(':').ok_or_else(|| bad("invalid port"))?),
            ),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains(['[', ']']) {
        return Err(bad("invalid host"));
    }
    let explicit_port = port.is_some();
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0 && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad("invalid port"))?,
        None => match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
            Scheme::Tcp => return Err(bad("tcp:// needs a port")),
        },
    };
    let path = match scheme {
        Scheme::Tcp if !path.is_empty() && path != "/" => return Err(bad("tcp:// takes no path")),
        Scheme::Tcp => String::new(),
        _ if path.is_empty() => "/".to_string(),
        _ if path.starts_with('?') => format!("/{path}"),
        _ => path.to_string(),
    };
    Ok(Target {
        scheme,
        host: host.to_string(),
        port,
        explicit_port,
        path,
        userinfo,
    })
}

/// Parses `expect=` codes: `200`, `200-399`, `200,204,300-399`.
pub fn parse_expect(value: &str) -> Result<Vec<(u16, u16)>, ProbeSpecError> {
    let bad = || {
        ProbeSpecError::from(invalid(
            "expect",
            value,
            "status codes or ranges such as \"200,204,300-399\"",
        ))
    };
    let code = |s: &str| {
        s.parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c) && s.len() == 3)
            .ok_or_else(bad)
    };
    let mut out = Vec::new();
    for part in value.split(',') {
        let range = match part.split_once('-') {
            Some((lo, hi)) => (code(lo)?, code(hi)?),
            None => {
                let c = code(part)?;
                (c, c)
            }
        };
        if range.0 > range.1 {
            return Err(bad());
        }
        out.push(range);
    }
    Ok(out)
}

fn parse_count(key: &str, value: &str) -> Result<u32, ParamError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|n| *n >= 1 && value.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| invalid(key, value, "1 or more"))
}

/// Default `interval=`, as the README and error messages write it.
const DEFAULT_INTERVAL: &str = "60s";
/// Default `timeout=`.
const DEFAULT_TIMEOUT: &str = "5s";

/// Parses the directive's arguments. `name_required` is true at `http` and `server` level.
pub fn parse(args: &[String], name_required: bool) -> Result<ProbeSpec, ProbeSpecError> {
    let Some(url) = args.first() else {
        return Err(ProbeSpecError::NoUrl);
    };
    let upstream = url.strip_prefix("upstream=");
    let target = match upstream {
        Some(name) => {
            if name.is_empty() || name.contains(['/', ' ']) {
                return Err(ProbeSpecError::InvalidUpstream(name.to_string()));
            }
            Target {
                scheme: Scheme::Http,
                host: name.to_string(),
                port: 0,
                explicit_port: false,
                path: "/".to_string(),
                userinfo: None,
            }
        }
        None => parse_target(url)?,
    };
    let mut spec = ProbeSpec {
        name: String::new(),
        target,
        interval_ms: parse_time_ms(DEFAULT_INTERVAL).unwrap_or_default(),
        timeout_ms: parse_time_ms(DEFAULT_TIMEOUT).unwrap_or_default(),
        fails: 1,
        passes: 1,
        expect: vec![(200, 399)],
        tls_verify: true,
        upstream: upstream.map(|name| UpstreamRef {
            name: name.to_string(),
            mark_down: false,
            peer: String::new(),
        }),
        checks: AnswerChecks::default(),
    };
    let mut seen: Vec<&str> = Vec::new();
    for arg in &args[1..] {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(ParamError::UnknownParameter(arg.clone()).into());
        };
        if seen.contains(&key) {
            return Err(ParamError::Duplicate(key.to_string()).into());
        }
        let time = |max_ms: u64| {
            parse_time_ms(value)
                .filter(|ms| *ms >= 1 && *ms <= max_ms)
                .ok_or_else(|| invalid(key, value, "a time"))
        };
        match key {
            "name" => {
                validate_name(value)?;
                spec.name = value.to_string();
            }
            "interval" => spec.interval_ms = time(24 * 3600 * 1000)?.max(1000),
            "timeout" => spec.timeout_ms = time(3600 * 1000)?,
            "fails" => spec.fails = parse_count(key, value)?,
            "passes" => spec.passes = parse_count(key, value)?,
            "expect" => spec.expect = parse_expect(value)?,
            "body" => spec.checks.body = Some(parse_body_text(key, value)?),
            "body_regex" => spec.checks.body_regex = Some(parse_body_text(key, value)?),
            "header" => spec.checks.header = Some(parse_header_check(value)?),
            "max_time" => spec.checks.max_time_ms = Some(time(3600 * 1000)?),
            "tls_verify" => {
                spec.tls_verify = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(invalid(key, value, "\"on\" or \"off\"").into()),
                }
            }
            "uri" if spec.upstream.is_some() => {
                if !value.starts_with('/') || value.chars().any(|c| c.is_whitespace()) {
                    return Err(invalid(key, value, "a path starting with \"/\"").into());
                }
                spec.target.path = value.to_string();
            }
            "scheme" if spec.upstream.is_some() => {
                spec.target.scheme = match value {
                    "http" => Scheme::Http,
                    "https" => Scheme::Https,
                    "tcp" => Scheme::Tcp,
                    _ => {
                        let expected = "\"http\", \"https\" or \"tcp\"";
                        return Err(invalid(key, value, expected).into());
                    }
                }
            }
            "mark_down" if spec.upstream.is_some() => {
                let on = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(invalid(key, value, "\"on\" or \"off\"").into()),
                };
                if let Some(u) = &mut spec.upstream {
                    u.mark_down = on;
                }
            }
            _ => return Err(ParamError::UnknownParameter(arg.clone()).into()),
        }
        seen.push(key);
    }
    // The `key=value` argument as written, if any.
    let given = |key: &str| seen.iter().position(|k| *k == key).map(|i| &args[1 + i]);
    // A parameter as written, or its default in words.
    let written = |key: &str, default: &str| {
        given(key).map_or_else(|| format!("{key} (default {default})"), String::clone)
    };
    if let Some(arg) = given("interval") {
        let value = arg.split_once('=').map_or("", |kv| kv.1);
        if parse_time_ms(value).is_some_and(|ms| ms < 1000) {
            return Err(invalid("interval", value, "at least 1s").into());
        }
    }
    if spec.timeout_ms >= spec.interval_ms {
        return Err(ProbeSpecError::TimeoutNotBelowInterval {
            timeout: written("timeout", DEFAULT_TIMEOUT),
            interval: written("interval", DEFAULT_INTERVAL),
        });
    }
    if spec.target.scheme == Scheme::Tcp && seen.contains(&"expect") {
        return Err(ProbeSpecError::ExpectWithoutHttp);
    }
    if spec.target.scheme == Scheme::Tcp {
        if let Some(key) = ["body", "body_regex", "header", "max_time"]
            .into_iter()
            .find(|k| seen.contains(k))
        {
            return Err(ProbeSpecError::CheckWithoutHttp(key));
        }
    }
    if let Some(max_time) = spec.checks.max_time_ms {
        if max_time >= spec.timeout_ms {
            return Err(ProbeSpecError::MaxTimeNotBelowTimeout {
                max_time: written("max_time", ""),
                timeout: written("timeout", DEFAULT_TIMEOUT),
            });
        }
    }
    if spec.upstream.is_some() && spec.target.scheme == Scheme::Tcp {
        if seen.contains(&"uri") {
            return Err(ProbeSpecError::UriWithoutHttp);
        }
        spec.target.path = String::new();
    }
    if name_required && spec.name.is_empty() {
        return Err(ProbeSpecError::NameRequired);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str], name_required: bool) -> Result<ProbeSpec, ProbeSpecError> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v, name_required)
    }

    #[test]
    fn targets() {
        let t = parse_target("http://10.0.0.5:8080/health?x=1").unwrap();
        assert_eq!(
            (t.scheme, t.host.as_str(), t.port),
            (Scheme::Http, "10.0.0.5", 8080)
        );
        assert_eq!(t.path, "/health?x=1");
        assert_eq!(t.display(), "http://10.0.0.5:8080/health?x=1");
        let t = parse_target("https://user:secret@api.example.com").unwrap();
        assert_eq!((t.port, t.path.as_str()), (443, "/"));
        assert_eq!(t.userinfo.as_deref(), Some("user:secret"));
        assert_eq!(t.display(), "https://api.example.com/");
        let t = parse_target("http://backend/health").unwrap();
        assert_eq!(
            (t.port, t.display().as_str()),
            (80, "http://backend/health")
        );
        let t = parse_target("http://[fe80::1]/").unwrap();
        assert_eq!((t.port, t.display().as_str()), (80, "http://[fe80::1]/"));
        let t = parse_target("tcp://[::1]:5432").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 5432));
        assert_eq!(t.display(), "tcp://[::1]:5432");
    }

    #[test]
    fn bad_targets() {
        for (url, why) in [
            ("ftp://x/", "unknown scheme"),
            ("x:80", "unknown scheme"),
            ("tcp://db", "needs a port"),
            ("tcp://db:5432/x", "takes no path"),
            ("http://:80/", "no host"),
            ("http://h:0/", "invalid port"),
            ("http://h:99999/", "invalid port"),
            ("http://[::1/", "unclosed"),
            // Found by src/properties.rs: what followed "]" was ignored, probing port 80.
            ("http://[::1]8080/", "invalid port"),
            // Found by src/properties.rs: Rust's integer parsing takes a leading '+'.
            ("http://h:+80/", "invalid port"),
            // Found by src/properties.rs: brackets inside the host were kept as part of it.
            ("http://[[]", "invalid host"),
            ("http://[[::1]/", "invalid host"),
            ("http://a]b/", "invalid host"),
            ("tcp://[::1]:+5432", "invalid port"),
            ("tcp://[::1]x:5432", "invalid port"),
        ] {
            let e = parse_target(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
        let e = parse_target("ftp://u:topsecret@h/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("topsecret"), "{e}");
        // Found by src/properties.rs: a password holding an `@` leaked its tail.
        let e = parse_target("http://u:top@secret@h:99999/")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("secret"), "{e}");
        assert!(e.contains("\"http://***@h:99999/\""), "{e}");
    }

    #[test]
    fn defaults() {
        let s = p(&["http://127.0.0.1:8080/health"], false).unwrap();
        assert_eq!(s.name, "");
        assert_eq!(
            (s.interval_ms, s.timeout_ms, s.fails, s.passes),
            (60_000, 5_000, 1, 1)
        );
        assert_eq!(s.expect, vec![(200, 399)]);
        assert!(s.tls_verify);
        assert!(s.expects(204) && s.expects(399) && !s.expects(404));
    }

    #[test]
    fn all_parameters() {
        let s = p(
            &[
                "https://h/x",
                "name=be",
                "interval=10s",
                "timeout=500ms",
                "fails=3",
                "passes=2",
                "expect=200,204,300-302",
                "tls_verify=off",
            ],
            true,
        )
        .unwrap();
        assert_eq!(s.name, "be");
        assert_eq!(
            (s.interval_ms, s.timeout_ms, s.fails, s.passes),
            (10_000, 500, 3, 2)
        );
        assert_eq!(s.expect, vec![(200, 200), (204, 204), (300, 302)]);
        assert!(!s.tls_verify);
    }

    #[test]
    fn upstream_probes() {
        let s = p(
            &["upstream=backend", "uri=/health", "name=be", "fails=2"],
            true,
        )
        .unwrap();
        let u = s.upstream.clone().unwrap();
        assert_eq!((u.name.as_str(), u.mark_down), ("backend", false));
        assert_eq!(
            (s.target.scheme, s.target.path.as_str()),
            (Scheme::Http, "/health")
        );
        assert_eq!(s.fails, 2);
        let peer = s.for_peer("10.0.0.5:8080".parse().unwrap());
        assert_eq!(peer.target.display(), "http://10.0.0.5:8080/health");
        assert_eq!(peer.upstream.unwrap().peer, "10.0.0.5:8080");
        let peer = s.for_peer("[::1]:81".parse().unwrap());
        assert_eq!(peer.target.display(), "http://[::1]:81/health");

        let s = p(&["upstream=db", "scheme=tcp", "mark_down=on"], false).unwrap();
        assert!(s.upstream.as_ref().unwrap().mark_down);
        let peer = s.for_peer("127.0.0.1:5432".parse().unwrap());
        assert_eq!(peer.target.display(), "tcp://127.0.0.1:5432");

        let s = p(&["upstream=api", "scheme=https", "tls_verify=off"], false).unwrap();
        let peer = s.for_peer("127.0.0.1:443".parse().unwrap());
        assert_eq!(peer.target.display(), "https://127.0.0.1:443/");
        // A URL probe takes none of the upstream parameters.
        assert!(p(&["http://h/", "uri=/x"], false).is_err());
        assert!(p(&["http://h/", "mark_down=on"], false).is_err());
    }

    #[test]
    fn invalid_upstream_probes() {
        let cases: &[(&[&str], &str)] = &[
            (&["upstream="], "invalid upstream name"),
            (
                &["upstream=b", "uri=health"],
                "invalid uri value \"health\"",
            ),
            (&["upstream=b", "scheme=ftp"], "invalid scheme value"),
            (&["upstream=b", "scheme=tcp", "uri=/x"], "uri= applies to"),
            (
                &["upstream=b", "scheme=tcp", "expect=200"],
                "expect= applies to",
            ),
            (&["upstream=b", "mark_down=yes"], "invalid mark_down value"),
            (&["upstream=b", "uri=/a", "uri=/b"], "duplicate parameter"),
        ];
        for (args, want) in cases {
            let e = p(args, false).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn answer_checks() {
        let s = p(
            &[
                "http://h/",
                "body=ready",
                "header=X-A:b c",
                "max_time=1500ms",
            ],
            false,
        )
        .unwrap();
        assert_eq!(s.checks.body.as_deref(), Some("ready"));
        assert_eq!(
            s.checks.header,
            Some(("X-A".to_string(), "b c".to_string()))
        );
        assert_eq!(s.checks.max_time_ms, Some(1500));
        assert!(s.checks.need_body());
        let rx = p(&["http://h/", "body_regex=ok|ready"], false).unwrap();
        assert_eq!(rx.checks.body_regex.as_deref(), Some("ok|ready"));
        assert!(rx.checks.need_body());
        let up = p(&["upstream=b", "header=Server:"], false).unwrap();
        assert_eq!(
            up.checks.header,
            Some(("Server".to_string(), String::new()))
        );
        assert!(!up.checks.need_body());
        let cases: &[(&[&str], &str)] = &[
            (
                &["tcp://h:1", "body=x"],
                "body= applies to http:// and https://",
            ),
            (
                &["upstream=b", "scheme=tcp", "max_time=1s"],
                "max_time= applies to",
            ),
            (
                &["http://h/", "max_time=5s"],
                "max_time=5s must be below timeout (default 5s)",
            ),
            (
                &["http://h/", "timeout=2s", "max_time=3s"],
                "max_time=3s must be below timeout=2s",
            ),
            (&["http://h/", "header=X-A"], "invalid header value \"X-A\""),
            (&["http://h/", "header=X A:b"], "invalid header value"),
            (&["http://h/", "header=:b"], "invalid header value"),
            (&["http://h/", "body="], "invalid body value"),
            (&["http://h/", "body=a\tb"], "invalid body value"),
            (&["http://h/", "body=a", "body=b"], "duplicate"),
            (&["tcp://h:1", "body_regex=x"], "body_regex= applies to"),
            (&["http://h/", "body_regex="], "invalid body_regex value"),
        ];
        for (args, want) in cases {
            let e = p(args, false).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn invalid_parameters() {
        let cases: &[(&[&str], bool, &str)] = &[
            (&["http://h/"], true, "name= is required"),
            (
                &["http://h/", "fails=0"],
                false,
                "invalid fails value \"0\"",
            ),
            (&["http://h/", "passes=-1"], false, "invalid passes value"),
            (
                &["http://h/", "timeout=60s"],
                false,
                "must be below interval",
            ),
            (
                &["http://h/", "interval=5s", "timeout=5s"],
                false,
                "timeout=5s must be below interval=5s",
            ),
            (
                &["http://h/", "interval=3s"],
                false,
                "timeout (default 5s) must be below interval=3s",
            ),
            (
                &["http://h/", "timeout=2m"],
                false,
                "timeout=2m must be below interval (default 60s)",
            ),
            (
                &["http://h/", "interval=500ms", "timeout=100ms"],
                false,
                "at least 1s",
            ),
            (&["http://h/", "expect=2xx"], false, "invalid expect value"),
            (
                &["http://h/", "expect=300-200"],
                false,
                "invalid expect value",
            ),
            (&["http://h/", "expect=200,"], false, "invalid expect value"),
            (&["http://h/", "expect=99"], false, "invalid expect value"),
            (
                &["tcp://h:1", "expect=200"],
                false,
                "http:// and https:// probes only",
            ),
            (&["http://h/", "name=a b"], false, "invalid name"),
            (
                &["http://h/", "foo=1"],
                false,
                "invalid parameter \"foo=1\"",
            ),
            (
                &["http://h/", "fails=1", "fails=2"],
                false,
                "duplicate parameter",
            ),
            (
                &["http://h/", "tls_verify=maybe"],
                false,
                "invalid tls_verify value",
            ),
        ];
        for (args, req, want) in cases {
            let e = p(args, *req).unwrap_err().to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }
}
