//! Property tests: every directive-value parser and every renderer fed hostile input (any
//! string, any bytes, huge numbers, long strings, control characters, multi-byte UTF-8).
//!
//! Parsers never panic, and what they accept round-trips or stays within the documented bounds.
//! Renderers never panic, and their output stays valid: Prometheus text checked by the test
//! kit's strict exposition checker (and by `promtool check metrics` for a few cases), JSON
//! re-parsed with serde_json, Discord payloads checked by the kit against Discord's documented
//! limits, which the kit states independently of the module's own constants.
//!
//! A unit-test module (compiled only for `cargo test`), so that it reaches the pure modules
//! without linking the FFI glue, which needs the nginx binary's symbols.

use std::collections::BTreeSet;

use crate::conf::alert_params::{check_window, parse_alert_params};
use crate::conf::destination::parse_webhook_url;
use crate::conf::params::{
    fmt_pct, parse_interval, parse_percent, parse_size, parse_time_ms, validate_name, validate_url,
    ParamError, MAX_NAME_LEN, MAX_WINDOW_MS,
};
use crate::conf::probe_spec::{self, parse_expect, parse_target, Scheme};
use crate::expose::metrics::{render_json, render_prometheus, Metrics, NameMetrics, ProbeMetrics};
use crate::notify::discord::build_payloads;
use crate::vocab::event::{AlertEvent, ErrorRatioEvent, EventDetail, Level, ProbeEvent};
use crate::vocab::title::{log_line, title};
use crate::zone::counters::{CountersSnapshot, BUCKETS, BUCKET_SLOTS, STATUS_SLOTS};
use proptest::prelude::*;
use serde_json::{json, Value};
use status_alert_testkit::{
    check_discord_payload, check_exposition, promtool_check, Sample, MAX_TITLE,
};

const CASES: u32 = 256;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // No regression files next to the tests: a failure prints the minimal input instead.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile input
// ---------------------------------------------------------------------------------------------

/// Any string, with a bias towards what breaks parsers and renderers.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        // Printable text, the characters that matter to URLs, labels and JSON, and controls.
        "[ -~]{0,40}",
        "[\\x00-\\x1f\\x7f\u{80}-\u{9f}\u{2028}\u{2029}\u{feff} a0:@/?#%\\[\\]\"\\\\{}=,.-]{0,40}",
        // Multi-byte UTF-8: two-, three- and four-byte sequences, a combining mark, the maximum.
        "[é€😀\u{301}\u{10ffff}a\n]{0,300}",
        // Arbitrary bytes, made into a string the way nginx text would be (lossily).
        prop::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        // Long: a short piece repeated up to thousands of times.
        ("[a😀\n\"\\\\é ]{1,3}", 0usize..3000).prop_map(|(s, n)| s.repeat(n)),
    ]
}

/// Digits, possibly far too many for any integer type.
fn digits() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,5}",
        "[0-9]{15,25}",
        any::<u64>().prop_map(|n| n.to_string())
    ]
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

// ---------------------------------------------------------------------------------------------
// params.rs
// ---------------------------------------------------------------------------------------------

/// nginx time units, most significant first, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = crate::conf::params::TIME_UNITS;

/// A well-formed time: some units in order, each once, maybe a trailing bare number
/// (seconds), maybe spaces after units; with the value it means (`None` on u64 overflow).
fn time_value() -> impl Strategy<Value = (String, Option<u64>)> {
    let part = prop_oneof![0u64..100, 0u64..100_000, any::<u64>()];
    (
        prop::collection::vec((any::<bool>(), part.clone(), any::<bool>()), UNITS.len()),
        prop::option::of(part),
    )
        .prop_filter_map("empty time", |(units, bare)| {
            let mut text = String::new();
            let mut total = Some(0u64);
            for ((unit, factor), (on, n, space)) in UNITS.iter().zip(units) {
                if on {
                    text.push_str(&format!("{n}{unit}"));
                    if space {
                        text.push(' ');
                    }
                    total = total.and_then(|t| t.checked_add(n.checked_mul(*factor)?));
                }
            }
            if let Some(n) = bare {
                text.push_str(&n.to_string());
                total = total.and_then(|t| t.checked_add(n.checked_mul(1000)?));
            }
            let text = text.trim_end().to_string();
            (!text.is_empty()).then_some((text, total))
        })
}

/// Time-like text: digits and unit letters in any order, any count.
fn time_like() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile(),
        time_value().prop_map(|(t, _)| t),
        "([0-9]{0,22}(M|w|d|h|m|s|ms|y|x|)[ ]?){1,5}",
    ]
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn time_never_panics_and_accepts_only_time_syntax(s in time_like()) {
        if let Some(ms) = parse_time_ms(&s) {
            // As in nginx, spaces may follow a unit, also the last one; nothing may lead.
            prop_assert!(!s.is_empty() && !s.starts_with(' '), "{s:?}");
            prop_assert!(
                s.bytes().all(|b| b.is_ascii_digit() || b" Mwdhms".contains(&b)),
                "{s:?} -> {ms}"
            );
        }
    }

    #[test]
    fn time_round_trips((text, want) in time_value()) {
        prop_assert_eq!(parse_time_ms(&text), want, "{:?}", text);
    }

    #[test]
    fn interval_within_documented_range(s in time_like()) {
        if let Ok(ms) = parse_interval(&s) {
            prop_assert!((1000..=MAX_WINDOW_MS).contains(&ms), "{s:?} -> {ms}");
            prop_assert_eq!(Some(ms), parse_time_ms(&s));
        }
    }

    #[test]
    fn window_check_means_two_evaluations(window in any::<u64>(), interval in 0u64..1 << 62) {
        prop_assert_eq!(check_window(window, interval).is_ok(), window >= 2 * interval);
    }

    #[test]
    fn size_never_panics_and_round_trips(
        s in prop_oneof![hostile(), "[0-9]{0,25}[kKmMgGx]?"],
        n in any::<u64>(),
        unit in 0usize..7,
    ) {
        if let Some(bytes) = parse_size(&s) {
            let digits = s.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
            prop_assert!(!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
            prop_assert!(s.len() - digits.len() <= 1, "{s:?}");
            prop_assert!(bytes as u128 >= digits.parse::<u128>().unwrap_or(u128::MAX));
        }
        let (suffix, factor) = [("", 1u64), ("k", 1 << 10), ("K", 1 << 10), ("m", 1 << 20),
            ("M", 1 << 20), ("g", 1 << 30), ("G", 1 << 30)][unit];
        let want = n.checked_mul(factor).and_then(|b| usize::try_from(b).ok());
        prop_assert_eq!(parse_size(&format!("{n}{suffix}")), want);
    }

    #[test]
    fn percent_in_range(
        s in prop_oneof![hostile(), "[0-9.]{0,8}%?", digits()],
        x in prop_oneof![0.0f64..=100.0, 0.0f64..1e-6, 99.999f64..100.001],
    ) {
        if let Ok(p) = parse_percent("warn", &s) {
            prop_assert!(p > 0.0 && p <= 100.0, "{s:?} -> {p}");
            let number = s.strip_suffix('%').unwrap_or(&s);
            prop_assert!(number.bytes().all(|b| b.is_ascii_digit() || b == b'.'), "{s:?}");
        }
        // Rust prints an f64 as a plain decimal that parses back to the same value.
        let written = format!("{x}%");
        match parse_percent("crit", &written) {
            Ok(p) => prop_assert_eq!(p, x),
            Err(_) => prop_assert!(!(x > 0.0 && x <= 100.0), "{written} rejected"),
        }
    }

    #[test]
    fn pct_formatting_parses_back(x in 0.001f64..=100.0) {
        let text = fmt_pct(x);
        let p = parse_percent("warn", &text);
        prop_assert!(p.is_ok(), "{x} -> {text}");
        prop_assert!((p.unwrap_or(0.0) - x).abs() <= 0.0005 + 1e-9, "{x} -> {text}");
    }

    #[test]
    fn names_match_charset_and_length(
        s in prop_oneof![hostile(), "[a-zA-Z0-9._/-]{0,70}", "[a-z./_-]{60,68}"],
    ) {
        let allowed = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        prop_assert_eq!(validate_name(&s).is_ok(), allowed, "{:?}", s);
        prop_assert_eq!(MAX_NAME_LEN, 64);
        if let Err(e) = validate_name(&s) {
            prop_assert_eq!(e, ParamError::InvalidName(s.clone()));
        }
    }

    #[test]
    fn urls_are_absolute_http_without_blanks(
        s in prop_oneof![hostile(), "(https?://|ftp://|http:/|)[ -~\u{a0}\u{85}\t\n]{0,20}"],
    ) {
        if validate_url("link", &s).is_ok() {
            let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
            prop_assert!(rest.is_some_and(|r| !r.is_empty()), "{s:?}");
            prop_assert!(!s.chars().any(|c| c.is_whitespace() || c.is_control()), "{s:?}");
        }
    }

    #[test]
    fn webhook_urls_are_trimmed_and_tokens_stay_out_of_errors(
        s in prop_oneof![hostile(), "[ \n]?(https?://|discord.com)[ -~]{0,40}[ \n]?"],
        prefix in "(https?://|http:/|discord\\.com)[a-z./]{24,30}",
        token in "[A-Za-z0-9_]{16,40}",
        tail in "( |\n|\t|)",
    ) {
        match parse_webhook_url(&s) {
            Ok(u) => {
                prop_assert_eq!(u.as_str(), s.trim());
                prop_assert!(validate_url("webhook", &u).is_ok());
            }
            Err(e) => prop_assert!(e.to_string().starts_with("invalid webhook value")),
        }
        // A rejected URL whose token comes after the first 24 characters never shows it.
        let bad = format!("{prefix}{token} x{tail}");
        let err = parse_webhook_url(&bad);
        prop_assert!(err.is_err(), "{bad:?} accepted");
        if let Err(e) = err {
            prop_assert!(!e.to_string().contains(&token), "token leaked: {e}");
        }
    }
}

/// Well-formed `status_alert` parameters, with what they mean.
#[derive(Debug, Clone)]
struct AlertCase {
    args: Vec<String>,
    warn: Option<Option<f64>>,
    crit: Option<f64>,
    window_s: Option<u64>,
    min_requests: Option<u64>,
    repeat_s: Option<Option<u64>>,
    link: Option<String>,
}

fn alert_case() -> impl Strategy<Value = AlertCase> {
    (
        prop::option::of(prop::option::of(1u32..1000)),
        prop::option::of(1u32..=1000),
        prop::option::of(1u64..=86_400),
        prop::option::of(any::<u64>()),
        prop::option::of(prop::option::of(1u64..10_000_000)),
        prop::option::of("https?://[a-z0-9./?=&%-]{1,60}"),
        any::<prop::sample::Index>(),
    )
        .prop_map(
            |(warn, crit, window_s, min_requests, repeat_s, link, order)| {
                // Percentages in tenths so that they print exactly.
                let warn = warn.map(|w| w.map(|t| f64::from(t) / 10.0));
                let crit = crit.map(|t| f64::from(t) / 10.0);
                let mut args = Vec::new();
                if let Some(w) = warn {
                    args.push(w.map_or("warn=off".into(), |w| format!("warn={w}%")));
                }
                if let Some(c) = crit {
                    args.push(format!("crit={c}"));
                }
                if let Some(s) = window_s {
                    args.push(format!("window={s}s"));
                }
                if let Some(n) = min_requests {
                    args.push(format!("min_requests={n}"));
                }
                if let Some(r) = repeat_s {
                    args.push(r.map_or("repeat=off".into(), |s| format!("repeat={s}")));
                }
                if let Some(l) = &link {
                    args.push(format!("link={l}"));
                }
                if !args.is_empty() {
                    let i = order.index(args.len());
                    args.rotate_left(i);
                }
                AlertCase {
                    args,
                    warn,
                    crit,
                    window_s,
                    min_requests,
                    repeat_s,
                    link,
                }
            },
        )
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn alert_params_within_bounds(
        args in prop::collection::vec(
            prop_oneof![
                hostile(),
                (
                    "(warn|crit|window|min_requests|repeat|link|runbook|x)",
                    prop_oneof![hostile(), time_like(), "[0-9.]{1,6}%?", digits(), "off"],
                )
                    .prop_map(|(k, v)| format!("{k}={v}")),
            ],
            0..6,
        ),
    ) {
        if let Ok(p) = parse_alert_params(args.iter().map(String::as_str)) {
            prop_assert!(p.crit_pct > 0.0 && p.crit_pct <= 100.0);
            if let Some(w) = p.warn_pct {
                prop_assert!(w > 0.0 && w < p.crit_pct, "warn {w} crit {}", p.crit_pct);
            }
            prop_assert!((1000..=MAX_WINDOW_MS).contains(&p.window_ms));
            prop_assert!(p.repeat_ms.map_or(true, |r| r >= 1000));
            for url in [&p.link, &p.runbook].into_iter().flatten() {
                prop_assert!(validate_url("link", url).is_ok(), "{url:?}");
            }
            let keys: Vec<&str> = args.iter().filter_map(|a| a.split_once('=')).map(|kv| kv.0)
                .collect();
            let distinct: BTreeSet<&str> = keys.iter().copied().collect();
            prop_assert_eq!(keys.len(), distinct.len(), "duplicate accepted");
        }
    }

    #[test]
    fn alert_params_round_trip(case in alert_case()) {
        let got = parse_alert_params(case.args.iter().map(String::as_str));
        let warn = case.warn.unwrap_or(Some(5.0));
        let crit = case.crit.unwrap_or(10.0);
        if warn.is_some_and(|w| w >= crit) {
            prop_assert!(matches!(got, Err(ParamError::Conflict(_))), "{case:?}: {got:?}");
            return Ok(());
        }
        let window_ms = case.window_s.unwrap_or(300) * 1000;
        let window_ok = (1000..=MAX_WINDOW_MS).contains(&window_ms);
        prop_assert_eq!(got.is_ok(), window_ok, "{:?}", case);
        let Ok(p) = got else { return Ok(()) };
        prop_assert_eq!(p.warn_pct, warn);
        prop_assert_eq!(p.crit_pct, crit);
        prop_assert_eq!(p.window_ms, window_ms);
        prop_assert_eq!(p.min_requests, case.min_requests.unwrap_or(20));
        prop_assert_eq!(p.repeat_ms, case.repeat_s.unwrap_or(Some(1800)).map(|s| s * 1000));
        prop_assert_eq!(p.link, case.link);
    }
}

// ---------------------------------------------------------------------------------------------
// probe_spec.rs
// ---------------------------------------------------------------------------------------------

/// URL-like text: a scheme or not, userinfo or not, brackets, ports, paths.
fn url_like() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile(),
        (
            "(http://|https://|tcp://|ftp://|http:/|)",
            "([a-z:@]{0,6}@)?",
            "(\\[[0-9a-f:]{0,8}\\]?|[a-z0-9.\\[\\]-]{0,10})",
            "(:[0-9+-]{0,6}|:)?",
            "([/?][ -~]{0,10})?",
        )
            .prop_map(|(a, b, c, d, e)| format!("{a}{b}{c}{d}{e}")),
    ]
}

/// The `host[:port]` of a URL as written (after the last `@` of the authority).
fn written_hostport(url: &str) -> &str {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn targets_never_panic_and_display_clean(url in url_like()) {
        let Ok(t) = parse_target(&url) else { return Ok(()) };
        let shown = t.display();
        prop_assert!(!shown.chars().any(|c| c.is_whitespace() || c.is_control()), "{shown:?}");
        prop_assert!(!t.host.is_empty() && t.port > 0);
        let scheme = match t.scheme {
            Scheme::Http => "http://",
            Scheme::Https => "https://",
            Scheme::Tcp => "tcp://",
        };
        prop_assert!(url.starts_with(scheme) && shown.starts_with(scheme));
        match t.scheme {
            Scheme::Tcp => prop_assert!(t.path.is_empty() && t.explicit_port),
            _ => prop_assert!(t.path.starts_with('/')),
        }
        // What is shown parses back to the same target, minus the credentials.
        let again = parse_target(&shown);
        prop_assert_eq!(again, Ok(probe_spec::Target { userinfo: None, ..t.clone() }));
        // Nothing written in host[:port] is ignored: it is the host, then at most a port.
        let hostport = written_hostport(&url);
        let host_written = if hostport.starts_with('[') {
            format!("[{}]", t.host)
        } else {
            t.host.clone()
        };
        let port_written = hostport.strip_prefix(host_written.as_str());
        prop_assert!(port_written.is_some(), "{url:?}: host {:?}", t.host);
        let port_written = port_written.unwrap_or_default();
        if t.explicit_port {
            let digits = port_written.strip_prefix(':').unwrap_or("x");
            prop_assert!(
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
                "{url:?}: port written as {port_written:?}"
            );
            prop_assert_eq!(digits.parse::<u64>().ok(), Some(u64::from(t.port)));
        } else {
            prop_assert_eq!(port_written, "", "{:?}: ignored {:?}", url, port_written);
        }
    }

    #[test]
    fn probe_credentials_never_shown(
        scheme in "(http|https|tcp|ftp)",
        user in "[a-z]{1,8}",
        secret in "[A-Z]{6,10}(@[A-Z]{6,10})?(:[A-Z]{6,10})?",
        host in "([a-z][a-z0-9.-]{0,12}|\\[[0-9a-f:]{2,10}\\])",
        port in prop::option::of(prop_oneof![1u32..65536, 65536u32..100_000]),
        path in "([/?][a-z0-9/=&?.-]{0,12})?",
        spoil in "( |\t|\n|)",
    ) {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let url = format!("{scheme}://{user}:{secret}@{host}{port}{path}{spoil}");
        // Everything else is lower case: no upper-case run of the password may show anywhere.
        let pieces: Vec<&str> = secret.split(['@', ':']).collect();
        let leaks = |text: &str| pieces.iter().any(|p| text.contains(p));
        match parse_target(&url) {
            Ok(t) => {
                prop_assert!(!leaks(&t.display()), "{url} shown as {}", t.display());
                prop_assert!(!leaks(&t.authority()));
                prop_assert_eq!(t.userinfo, Some(format!("{user}:{secret}")));
            }
            Err(e) => prop_assert!(!leaks(&e.to_string()), "{url}: {e}"),
        }
        let args = vec![url.clone(), "interval=1s".to_string()];
        if let Err(e) = probe_spec::parse(&args, false) {
            prop_assert!(!leaks(&e.to_string()), "{url}: {e}");
        }
    }

    #[test]
    fn expect_codes_are_valid_ranges(
        s in prop_oneof![hostile(), "([0-9]{1,4}(-[0-9]{1,4})?,?){0,4}", digits()],
        codes in prop::collection::vec((100u16..=599, 0u16..100), 1..6),
    ) {
        if let Ok(ranges) = parse_expect(&s) {
            prop_assert!(!ranges.is_empty());
            for (lo, hi) in ranges {
                prop_assert!(100 <= lo && lo <= hi && hi <= 599, "{s:?}: {lo}-{hi}");
            }
        }
        let want: Vec<(u16, u16)> = codes.iter().map(|(lo, w)| (*lo, (lo + w).min(599))).collect();
        let text: Vec<String> = want
            .iter()
            .map(|(lo, hi)| if lo == hi { lo.to_string() } else { format!("{lo}-{hi}") })
            .collect();
        prop_assert_eq!(parse_expect(&text.join(",")), Ok(want));
    }

    #[test]
    fn probe_specs_within_bounds(
        url in prop_oneof![url_like(), "(http|https|tcp)://h:1(/x)?"],
        params in prop::collection::vec(
            prop_oneof![
                hostile(),
                (
                    "(name|interval|timeout|fails|passes|expect|tls_verify|x)",
                    prop_oneof![hostile(), time_like(), digits(), "(on|off|be|200-399)"],
                )
                    .prop_map(|(k, v)| format!("{k}={v}")),
            ],
            0..6,
        ),
        name_required in any::<bool>(),
    ) {
        let mut args = vec![url];
        args.extend(params);
        let Ok(s) = probe_spec::parse(&args, name_required) else { return Ok(()) };
        prop_assert!((1000..=86_400_000).contains(&s.interval_ms), "{args:?}");
        prop_assert!(s.timeout_ms >= 1 && s.timeout_ms <= 3_600_000);
        prop_assert!(s.timeout_ms < s.interval_ms);
        prop_assert!(s.fails >= 1 && s.passes >= 1);
        prop_assert!(s.name.is_empty() || validate_name(&s.name).is_ok());
        prop_assert!(!name_required || !s.name.is_empty());
        prop_assert!(!s.expect.is_empty());
        for (lo, hi) in &s.expect {
            prop_assert!(100 <= *lo && lo <= hi && *hi <= 599);
        }
        if s.target.scheme == Scheme::Tcp {
            prop_assert_eq!(&s.expect, &vec![(200, 399)]);
        }
    }

    #[test]
    fn probe_specs_round_trip(
        name in "[a-zA-Z0-9._/-]{1,64}",
        interval_s in 1u64..=86_400,
        timeout in 1u64..=3_600_000,
        fails in 1u32..,
        passes in 1u32..,
        tls in any::<bool>(),
    ) {
        let args: Vec<String> = vec![
            "https://u:p@h:8443/x".into(),
            format!("tls_verify={}", if tls { "on" } else { "off" }),
            format!("passes={passes}"),
            format!("timeout={timeout}ms"),
            format!("name={name}"),
            format!("interval={interval_s}s"),
            format!("fails={fails}"),
        ];
        let got = probe_spec::parse(&args, true);
        if timeout >= interval_s * 1000 {
            prop_assert!(got.is_err());
            return Ok(());
        }
        let s = got.map_err(|e| TestCaseError::fail(format!("{args:?}: {e}")))?;
        prop_assert_eq!(s.name, name);
        prop_assert_eq!((s.interval_ms, s.timeout_ms), (interval_s * 1000, timeout));
        prop_assert_eq!((s.fails, s.passes, s.tls_verify), (fails, passes, tls));
        prop_assert_eq!(s.target.display(), "https://h:8443/x");
    }
}

// ---------------------------------------------------------------------------------------------
// expose/metrics/prometheus.rs: a strict checker for the Prometheus text format 0.0.4
// ---------------------------------------------------------------------------------------------

/// Counters small enough that their sums cannot overflow u64 (2^54 each, still huge).
fn counter() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..1000, 0u64..=u64::MAX >> 10]
}

fn location_metrics() -> impl Strategy<Value = NameMetrics> {
    (
        hostile(),
        prop::collection::vec((0..STATUS_SLOTS, counter()), 0..8),
        prop::array::uniform12(counter()),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u8>(),
    )
        .prop_map(|(name, codes, buckets, sum, requests, errors, level)| {
            let mut status = [0u64; STATUS_SLOTS];
            for (i, n) in codes {
                status[i] = n;
            }
            // The default bounds (`Metrics::default()`): their BUCKETS slots, the rest unused.
            let mut slots = [0u64; BUCKET_SLOTS];
            slots[..BUCKETS].copy_from_slice(&buckets);
            NameMetrics {
                name,
                counters: CountersSnapshot {
                    status,
                    buckets: slots,
                    duration_us_sum: sum,
                },
                window_requests: requests,
                window_errors: errors,
                level: Level::from_u8(level),
            }
        })
}

fn probe_metrics() -> impl Strategy<Value = ProbeMetrics> {
    (
        hostile(),
        hostile(),
        prop::option::of(any::<bool>()),
        prop_oneof![
            0.0f64..100.0,
            Just(0.0),
            prop::num::f64::POSITIVE
                | prop::num::f64::NORMAL
                | prop::num::f64::SUBNORMAL
                | prop::num::f64::ZERO
        ],
        prop::array::uniform9(any::<u64>()),
    )
        .prop_map(
            |(name, target, up, duration_seconds, failures)| ProbeMetrics {
                name,
                target,
                up,
                duration_seconds,
                failures,
            },
        )
}

fn metrics() -> impl Strategy<Value = Metrics> {
    (
        prop::collection::vec(location_metrics(), 0..5),
        prop::collection::vec(probe_metrics(), 0..4),
        prop::array::uniform4(any::<u64>()),
        any::<u64>(),
    )
        .prop_map(|(names, probes, notifications, queue_depth)| Metrics {
            names,
            probes,
            notifications,
            queue_depth,
            ..Metrics::default()
        })
}

/// The value of label `name` of a sample.
fn label<'a>(s: &'a Sample, name: &str) -> Option<&'a str> {
    s.1.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn prometheus(m: &Metrics) -> String {
    let mut out = String::new();
    render_prometheus(m, &mut out).expect("rendering into a String cannot fail");
    out
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn prometheus_output_is_valid_and_carries_the_input(m in metrics()) {
        let text = prometheus(&m);
        let samples = check_exposition(&text).map_err(TestCaseError::fail)?;
        let of = |name: &'static str| samples.iter().filter(move |s| s.0 == name);
        // Every NAME comes back unchanged through escaping, in order.
        let names: Vec<&str> =
            of("nginx_location_window_requests").filter_map(|s| label(s, "location")).collect();
        let want: Vec<&str> = m.names.iter().map(|l| l.name.as_str()).collect();
        prop_assert_eq!(names, want);
        // Values are f64 as Prometheus stores them; a u64 rounds the same way both ways.
        let values: Vec<f64> = of("nginx_location_window_requests").map(|s| s.2).collect();
        let want: Vec<f64> = m.names.iter().map(|l| l.window_requests as f64).collect();
        prop_assert_eq!(values, want);
        // Every probe and target likewise.
        let probes: Vec<(&str, &str)> = of("nginx_probe_duration_seconds")
            .map(|s| (label(s, "probe").unwrap_or("?"), label(s, "target").unwrap_or("?")))
            .collect();
        let want: Vec<(&str, &str)> =
            m.probes.iter().map(|p| (p.name.as_str(), p.target.as_str())).collect();
        prop_assert_eq!(probes, want);
        prop_assert_eq!(
            of("nginx_probe_up").count(),
            m.probes.iter().filter(|p| p.up.is_some()).count()
        );
        // Histograms, one run of buckets per location: cumulative, +Inf last and equal to the
        // count.
        let buckets: Vec<&Sample> =
            of("nginx_location_request_duration_seconds_bucket").collect();
        let counts: Vec<&Sample> =
            of("nginx_location_request_duration_seconds_count").collect();
        prop_assert_eq!(buckets.len(), m.names.len() * BUCKETS);
        prop_assert_eq!(counts.len(), m.names.len());
        for ((l, run), count) in m.names.iter().zip(buckets.chunks(BUCKETS)).zip(counts) {
            let total: u64 = l.counters.buckets.iter().sum();
            let values: Vec<f64> = run.iter().map(|s| s.2).collect();
            prop_assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
            prop_assert!(run.iter().all(|s| label(s, "location") == Some(l.name.as_str())));
            prop_assert_eq!(label(run[BUCKETS - 1], "le"), Some("+Inf"));
            prop_assert_eq!(values[BUCKETS - 1], total as f64);
            prop_assert_eq!(count.2, total as f64);
        }
        let depth = of("nginx_alert_queue_depth").map(|s| s.2).collect::<Vec<_>>();
        prop_assert_eq!(depth, vec![m.queue_depth as f64]);
    }

    #[test]
    fn json_output_parses_and_carries_the_input(m in metrics()) {
        let text = render_json(&m);
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        let names: BTreeSet<&str> = v["locations"]
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let want: BTreeSet<&str> = m.names.iter().map(|l| l.name.as_str()).collect();
        prop_assert_eq!(names, want);
        for l in &m.names {
            let total: u64 = l.counters.status.iter().sum();
            // With a NAME given twice the last one wins; compare with that one.
            let last = m.names.iter().rev().find(|o| o.name == l.name).unwrap_or(l);
            let j = &v["locations"][&l.name];
            prop_assert_eq!(&j["window"]["requests"], &json!(last.window_requests));
            prop_assert_eq!(&j["window"]["errors"], &json!(last.window_errors));
            if std::ptr::eq(last, l) {
                prop_assert_eq!(&j["requests_total"], &json!(total));
            }
        }
        let probes = v["probes"].as_array().cloned().unwrap_or_default();
        prop_assert_eq!(probes.len(), m.probes.len());
        for (j, p) in probes.iter().zip(&m.probes) {
            prop_assert_eq!(&j["probe"], &json!(p.name));
            prop_assert_eq!(&j["target"], &json!(p.target));
            prop_assert_eq!(&j["up"], &json!(p.up));
            // serde_json parses floats to within an ulp unless its float_roundtrip is on.
            let d = j["duration_seconds"].as_f64().unwrap_or(f64::NAN);
            let close = (d - p.duration_seconds).abs()
                <= p.duration_seconds * 1e-12 + f64::MIN_POSITIVE;
            prop_assert!(close, "{d} for {}", p.duration_seconds);
        }
        let sent = &v["notifications"]["sent"];
        prop_assert_eq!(sent, &json!(m.notifications[0]));
        prop_assert_eq!(&v["queue_depth"], &json!(m.queue_depth));
    }
}

proptest! {
    // promtool is a separate process: a handful of cases is enough.
    #![proptest_config(config(8))]

    #[test]
    fn promtool_accepts_the_output(m in metrics()) {
        let text = prometheus(&m);
        if let Err(e) = promtool_check(&text) {
            prop_assert!(false, "{e}\n{text}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// notify/discord.rs: Discord's documented limits (the test kit's checker), counted in characters
// ---------------------------------------------------------------------------------------------

/// Unix seconds: plausible, or absurd.
fn unix() -> impl Strategy<Value = u64> {
    prop_oneof![
        1_700_000_000u64..1_900_000_000,
        any::<u64>(),
        Just(u64::MAX)
    ]
}

fn level() -> impl Strategy<Value = Level> {
    any::<u8>().prop_map(|v| Level::from_u8(v % 3))
}

fn percent() -> impl Strategy<Value = f64> {
    prop_oneof![0.1f64..=100.0, any::<f64>()]
}

fn location_event() -> impl Strategy<Value = EventDetail> {
    (
        (level(), level(), any::<bool>()),
        (any::<u64>(), any::<u64>(), any::<u64>()),
        (prop::option::of(percent()), percent()),
        prop::collection::vec((hostile(), any::<u64>()), 0..40),
        unix(),
    )
        .prop_map(
            |(
                (level, previous, repeat),
                (errors, total, window_secs),
                (warn, crit),
                top,
                since,
            )| {
                EventDetail::ErrorRatio(ErrorRatioEvent {
                    level,
                    previous,
                    repeat,
                    errors,
                    total,
                    window_secs,
                    warn_pct: warn,
                    crit_pct: crit,
                    top_codes: top,
                    top_peers: Vec::new(),
                    since_unix: since,
                })
            },
        )
}

fn probe_event() -> impl Strategy<Value = EventDetail> {
    (
        any::<bool>(),
        hostile(),
        prop::option::of(hostile()),
        prop::option::of(any::<u16>()),
        any::<u64>(),
        unix(),
    )
        .prop_map(|(up, target, reason, status, duration_ms, since_unix)| {
            EventDetail::Probe(ProbeEvent {
                up,
                target,
                reason,
                status,
                duration_ms,
                since_unix,
            })
        })
}

fn alert_event() -> impl Strategy<Value = AlertEvent> {
    (
        hostile(),
        unix(),
        prop::option::of(hostile()),
        prop::option::of(hostile()),
        prop_oneof![location_event(), probe_event()],
    )
        .prop_map(|(name, at_unix, link, runbook, detail)| AlertEvent {
            name,
            at_unix,
            link,
            runbook,
            detail,
        })
}

proptest! {
    #![proptest_config(config(CASES))]

    #[test]
    fn discord_payloads_within_limits(
        events in prop::collection::vec(alert_event(), 0..24),
        host in hostile(),
    ) {
        let payloads = build_payloads(&events, &host);
        let mut embeds = 0;
        for p in &payloads {
            check_discord_payload(p).map_err(TestCaseError::fail)?;
            embeds += p["embeds"].as_array().map_or(0, Vec::len);
        }
        // No event is dropped, and they keep their order.
        prop_assert_eq!(embeds, events.len());
        let titles: Vec<String> = payloads
            .iter()
            .flat_map(|p| p["embeds"].as_array().cloned().unwrap_or_default())
            .map(|e| e["title"].as_str().unwrap_or_default().to_string())
            .collect();
        let want: Vec<String> = events.iter().map(title).collect();
        prop_assert_eq!(titles, want);
    }

    #[test]
    fn titles_and_log_lines_stay_on_one_short_line(event in alert_event(), host in hostile()) {
        let t = title(&event);
        prop_assert!(t.chars().count() <= MAX_TITLE, "{} chars", t.chars().count());
        prop_assert!(!has_control(&t), "{t:?}");
        let line = log_line(&event, &host);
        prop_assert!(line.starts_with("status_alert: "));
        prop_assert!(!has_control(&line), "{line:?}");
        prop_assert!(!line.contains(['\u{2028}', '\u{2029}']), "{line:?}");
        // The module keeps log lines to 1024 characters so that nginx's 2048-byte error
        // message buffer keeps what matters.
        prop_assert!(line.chars().count() <= 1024, "{} chars", line.chars().count());
    }

    #[test]
    fn ratio_is_a_share(errors in any::<u64>(), total in any::<u64>()) {
        let l = ErrorRatioEvent {
            level: Level::Critical,
            previous: Level::Ok,
            repeat: false,
            errors: errors.min(total),
            total,
            window_secs: 300,
            warn_pct: None,
            crit_pct: 10.0,
            top_codes: Vec::new(),
            top_peers: Vec::new(),
            since_unix: 0,
        };
        // errors * 100 / total in floating point: at most an ulp above 100 when all failed.
        let r = l.ratio_pct();
        prop_assert!(r.is_finite() && (0.0..=100.0 + 1e-9).contains(&r), "{r}");
        let shown = format!("{r:.1}");
        prop_assert!(shown.parse::<f64>().is_ok_and(|p| p <= 100.0), "{shown}");
    }
}

// ---------------------------------------------------------------------------------------------
// The other renderers: HTML page, Slack, the JSON event, Alertmanager
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(CASES))]

    /// Whatever the NAMEs and targets are, they stay text: no element, no attribute escape.
    #[test]
    fn html_page_escapes_every_configured_and_probed_string(
        m in metrics(),
        host in hostile(),
        refresh in prop::option::of(any::<u32>()),
    ) {
        let opts = crate::expose::html::HtmlOptions {
            refresh,
            host,
            now_unix: 1_800_000_000,
            filter: Default::default(),
        };
        let page = crate::expose::html::render_html(&m, &opts);
        prop_assert!(page.starts_with("<!DOCTYPE html>"));
        prop_assert!(!page.to_ascii_lowercase().contains("<script"), "script element");
        for l in &m.names {
            let escaped = crate::expose::html::escape_html(&l.name);
            prop_assert!(page.contains(&escaped), "NAME {:?} missing", l.name);
        }
        for p in &m.probes {
            prop_assert!(page.contains(&crate::expose::html::escape_html(&p.target)));
        }
    }

    /// Any query string: a filter or a one-line error, never a panic; a filter built from it
    /// keeps the page within its budget and its strings escaped.
    #[test]
    fn page_filters_parse_any_query(query in hostile(), m in metrics()) {
        match crate::expose::page_filter::parse_page_filter(&query) {
            Ok(filter) => {
                let opts = crate::expose::html::HtmlOptions {
                    filter,
                    ..Default::default()
                };
                let page = crate::expose::html::render_html(&m, &opts);
                prop_assert!(!page.to_ascii_lowercase().contains("<script"), "script element");
            }
            Err(e) => prop_assert!(!e.to_string().contains('\n')),
        }
    }

    /// Slack: valid JSON, every event kept, no raw `<` or `>` from input (no mention can ping).
    #[test]
    fn slack_payloads_keep_every_event_and_escape_mentions(
        events in prop::collection::vec(alert_event(), 0..24),
        host in hostile(),
    ) {
        let payloads = crate::notify::slack::build_payloads(&events, &host);
        let mut attachments = 0;
        for p in &payloads {
            let text = p.to_string();
            prop_assert!(serde_json::from_str::<Value>(&text).is_ok());
            let n = p["attachments"].as_array().map_or(0, Vec::len);
            attachments += n;
            for a in p["attachments"].as_array().into_iter().flatten() {
                let body = a.to_string();
                prop_assert!(!body.contains("<!") && !body.contains("<@"), "{body}");
            }
        }
        prop_assert_eq!(attachments, events.len());
    }

    /// The JSON event: one object per event, versioned, parseable.
    #[test]
    fn json_events_are_versioned_and_complete(
        events in prop::collection::vec(alert_event(), 0..24),
        host in hostile(),
    ) {
        match crate::notify::json_event::build_payload(&events, &host) {
            None => prop_assert!(events.is_empty()),
            Some(v) => {
                let back: Value = serde_json::from_str(&v.to_string()).unwrap();
                prop_assert_eq!(&back["version"], &json!(1));
                prop_assert_eq!(back["events"].as_array().map_or(0, Vec::len), events.len());
            }
        }
    }

    /// Alertmanager: an array of alerts whose labels and annotations are all strings, and
    /// whose start is never after its end.
    #[test]
    fn alertmanager_payloads_are_well_formed(
        firing in prop::collection::vec(alert_event(), 0..12),
        events in prop::collection::vec(alert_event(), 0..12),
        host in hostile(),
        now in unix(),
    ) {
        let Some(v) = crate::notify::alertmanager::build_payload(&firing, &events, &host, now)
        else {
            return Ok(());
        };
        for a in v.as_array().expect("an array") {
            for key in ["labels", "annotations"] {
                for (_, val) in a[key].as_object().expect("an object") {
                    prop_assert!(val.is_string(), "{key}: {val}");
                }
            }
            let (s, e) = (a["startsAt"].as_str().unwrap(), a["endsAt"].as_str().unwrap());
            prop_assert!(s <= e, "{s} > {e}");
            prop_assert!(a["labels"]["alertname"].is_string());
        }
    }
}
