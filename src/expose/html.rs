//! The HTML status page: one self-contained document rendered from a [`Metrics`] value.
//!
//! Self-contained means inline CSS and inline SVG only: no script, no font, no image, no style
//! sheet from anywhere else, so the page works on an air-gapped network and leaks nothing to third
//! parties. A `Content-Security-Policy` meta element enforces that in the browser as a second
//! line of defence. The only URLs in the page are the operator's own `link=` / `runbook=` links
//! (plain `<a href>`, http/https only) and probe targets shown as text.
//!
//! Every string that comes from configuration or from a probed target goes through
//! [`escape_html`]. Layout: a single column of cards on a 390 px phone, a grid on a desktop;
//! long names and URLs wrap instead of widening the page; tables turn into label/value lists on
//! narrow screens. Colours meet WCAG AA contrast for text (4.5:1), and every level is spelt out
//! in words next to its colour.

use core::fmt::Write;

use crate::conf::peers::OTHER_PEER;
use crate::evaluate::reliability::reliability;
use crate::expose::metrics::{
    duration_quantile, IncidentView, Metrics, NameDetail, NameMetrics, PeerMetrics, ProbeMetrics,
    TrafficHealth, NOTIFY_RESULT_LABELS,
};
use crate::expose::page_filter::{only_name_query, PageFilter};
use crate::vocab::event::Level;
use crate::vocab::text::{format_duration, format_window, iso8601};
use crate::vocab::traffic::USUAL_WINDOWS;
use crate::zone::peers::{PeerClass, PEER_CLASS_LABELS};

/// Longest auto-refresh period accepted, in seconds.
pub const MAX_REFRESH_SECS: u32 = 3600;
/// Sparkline points drawn at most (the newest are kept).
const MAX_SPARK_POINTS: usize = 512;
/// Incidents listed per NAME at most (the newest are kept).
const MAX_INCIDENTS: usize = 10;
/// The page's size bound at any number of NAMEs (with cards of ordinary size).
pub const PAGE_BUDGET: usize = 300 * 1024;
/// A full card starts only while the page is shorter than this; later ones go compact.
const CARDS_BUDGET: usize = 160 * 1024;
/// A compact row is written only while the page is shorter than this; the rest are counted.
const ROWS_BUDGET: usize = 280 * 1024;
/// Up to this many NAMEs listed (after the filters), every one gets its full card, as do the
/// probe targets; beyond it only firing NAMEs and DOWN targets do.
pub const FULL_DETAIL_UP_TO: usize = 50;
/// Probe rows in a NAME's card at most; its other targets join the probe list.
const CARD_PROBES: usize = 20;
/// Peer rows a NAME's card shows at most (the metrics have them all).
const CARD_PEERS: usize = 20;
/// Sparkline drawing area in SVG user units; CSS stretches it to the card's width.
const SPARK_W: f64 = 300.0;
const SPARK_H: f64 = 60.0;

/// Page-level settings that do not come from the counters.
#[derive(Clone, Debug, Default)]
pub struct HtmlOptions {
    /// `?refresh=N`: reload the page every N seconds (clamped to 1..=[`MAX_REFRESH_SECS`]).
    pub refresh: Option<u32>,
    /// Host name shown in the header and the page title.
    pub host: String,
    /// Current time, Unix seconds: "since" and "ongoing" durations are computed against it.
    pub now_unix: u64,
    /// `?name=` and `?state=`: which NAMEs and probe targets are listed.
    pub filter: PageFilter,
}

/// Escapes `s` for HTML text and for double- or single-quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The escaped `href` value for an operator URL, only for plain http(s) URLs (never
/// `javascript:` or `data:`); anything else is shown as text instead.
fn safe_href(url: &str) -> Option<String> {
    let url = url.trim();
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let http = lower.starts_with("http://") || lower.starts_with("https://");
    let clean = !url.chars().any(|c| c.is_whitespace() || c.is_control());
    (http && clean).then(|| escape_html(url))
}

/// CSS class and word for a level; the word is always shown next to the colour.
fn level_badge(level: Level) -> (&'static str, &'static str) {
    match level {
        Level::Ok => ("ok", "OK"),
        Level::Warning => ("warn", "WARNING"),
        Level::Critical => ("crit", "CRITICAL"),
    }
}

/// CSS class and word for a probe state.
fn probe_badge(up: Option<bool>) -> (&'static str, &'static str) {
    match up {
        Some(true) => ("ok", "UP"),
        Some(false) => ("crit", "DOWN"),
        None => ("unknown", "UNKNOWN"),
    }
}

/// A share (0..=1) as a percentage with one decimal; non-finite values read as 0.
fn fmt_share(share: f64) -> String {
    format!("{:.1}%", clamp_share(share) * 100.0)
}

fn clamp_share(share: f64) -> f64 {
    if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// A request time: `4.2 ms`, `480 ms`, `1.25 s`.
fn fmt_seconds(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        "–".to_owned()
    } else if secs < 0.01 {
        format!("{:.1} ms", secs * 1000.0)
    } else if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else {
        format!("{secs:.2} s")
    }
}

/// A point in time as UTC plus how long ago, e.g. `2026-11-22T10:15:30Z (7m 10s ago)`.
fn fmt_when(unix: u64, now: u64) -> String {
    let ago = now.saturating_sub(unix);
    format!(
        "<time datetime=\"{t}\">{t}</time> ({} ago)",
        format_duration(ago),
        t = iso8601(unix)
    )
}

/// The page's style sheet. Text colours were checked against their backgrounds: body text
/// #1a1a1a and muted #555 on white or #f5f6f8, links #0b57d0; badges white on #b00020 (7.3:1),
/// #1b7f3b (5.1:1) and #5f6368 (6.0:1), black on #ffb000 (11:1); dark mode likewise.
const CSS: &str = "\
:root{--bg:#fff;--card:#f5f6f8;--fg:#1a1a1a;--muted:#555;--line:#d0d4da;--link:#0b57d0;\
--crit:#b00020;--warn:#ffb000;--ok:#1b7f3b;--unknown:#5f6368;--spark:#0b57d0}\
@media (prefers-color-scheme:dark){:root{--bg:#121212;--card:#1e1e1e;--fg:#e8e8e8;\
--muted:#b0b0b0;--line:#3a3a3a;--link:#8ab4f8;--spark:#8ab4f8}}\
*{box-sizing:border-box}\
html{-webkit-text-size-adjust:100%}\
body{margin:0 auto;max-width:80rem;padding:1rem;background:var(--bg);color:var(--fg);\
font:16px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;overflow-wrap:break-word}\
code{overflow-wrap:anywhere}\
h1{font-size:1.4rem;margin:0 0 .25rem}h2{font-size:1.15rem;margin:0}\
h3{font-size:.95rem;margin:1rem 0 .35rem;color:var(--muted)}\
a{color:var(--link)}\
.muted,.note,figcaption,footer{color:var(--muted)}\
.note,figcaption,footer{font-size:.85rem}\
.summary{display:flex;flex-wrap:wrap;gap:.4rem;margin:.5rem 0 1rem;padding:0;list-style:none}\
main{display:grid;gap:1rem;grid-template-columns:repeat(auto-fill,minmax(min(100%,30rem),1fr))}\
.card{background:var(--card);border:1px solid var(--line);border-left:.4rem solid var(--ok);\
border-radius:.5rem;padding:.85rem 1rem;min-width:0}\
.card.warn{border-left-color:var(--warn)}.card.crit{border-left-color:var(--crit)}\
.card.plain{border-left-color:var(--line)}\
.head{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem;justify-content:space-between}\
.badge{display:inline-block;padding:.1rem .5rem;border-radius:1rem;font-size:.8rem;\
font-weight:700;letter-spacing:.03em;white-space:nowrap}\
.badge.ok{background:var(--ok);color:#fff}.badge.warn{background:var(--warn);color:#000}\
.badge.crit{background:var(--crit);color:#fff}.badge.unknown{background:var(--unknown);color:#fff}\
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(9rem,1fr));gap:.5rem;\
margin:.75rem 0 0}\
.stats div{min-width:0}.stats dt{font-size:.8rem;color:var(--muted)}\
.stats{align-items:end}\
.stats dd{margin:0;font-size:1.2rem;font-weight:600;font-variant-numeric:tabular-nums}\
figure{margin:.75rem 0 0}\
svg.spark{display:block;width:100%;height:60px;color:var(--spark)}\
.spark .w{stroke:var(--warn)}.spark .c{stroke:var(--crit)}\
table{width:100%;border-collapse:collapse;font-size:.9rem}\
th,td{text-align:left;padding:.3rem .4rem;border-bottom:1px solid var(--line);vertical-align:top}\
th{font-weight:600;color:var(--muted);overflow-wrap:normal}\
td.num{font-variant-numeric:tabular-nums}\
.links{display:flex;flex-wrap:wrap;gap:1rem;margin:.75rem 0 0}\
.stalled{margin:0 0 1rem;padding:.6rem 1rem;border-radius:.5rem;background:var(--crit);\
color:#fff;font-weight:600}\
footer{margin-top:1.5rem}\
.wide{grid-column:1/-1}\
table.compact td{padding:.15rem .4rem}\
@media (max-width:40rem){body{padding:.6rem}\
table:not(.compact) thead{position:absolute;width:1px;height:1px;overflow:hidden;\
clip:rect(0 0 0 0)}\
table:not(.compact) tr{display:block;border-bottom:1px solid var(--line);padding:.25rem 0}\
table:not(.compact) td{display:block;position:relative;border:0;padding:.1rem 0 .1rem 7rem;\
min-height:1.5rem}\
table:not(.compact) td::before{content:attr(data-label);position:absolute;left:0;width:6.5rem;font-weight:600;\
color:var(--muted)}}\
";

/// Renders the whole status page.
pub fn render_html(m: &Metrics, opts: &HtmlOptions) -> String {
    let mut out = String::with_capacity(8192 + m.names.len() * 4096 + m.probes.len() * 512);
    // Writing to a String cannot fail.
    let _ = write_page(&mut out, m, opts);
    out
}

fn write_page(out: &mut String, m: &Metrics, opts: &HtmlOptions) -> core::fmt::Result {
    let host = escape_html(&opts.host);
    let worst = m.names.iter().map(|l| l.level).max().unwrap_or(Level::Ok);
    let down = m.probes.iter().filter(|p| p.up == Some(false)).count();
    let tab = match (worst, down) {
        (Level::Ok, 0) => "OK".to_owned(),
        (Level::Ok, n) => format!("{n} DOWN"),
        (level, _) => level.label().to_owned(),
    };

    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">\n",
    );
    out.push_str("<meta name=\"referrer\" content=\"no-referrer\">\n");
    out.push_str("<meta name=\"robots\" content=\"noindex\">\n");
    if let Some(n) = opts.refresh.filter(|n| *n > 0) {
        let n = n.min(MAX_REFRESH_SECS);
        writeln!(out, "<meta http-equiv=\"refresh\" content=\"{n}\">")?;
    }
    // An empty icon stops the browser from asking nginx for /favicon.ico.
    out.push_str("<link rel=\"icon\" href=\"data:,\">\n");
    writeln!(out, "<title>{tab} · nginx status · {host}</title>")?;
    writeln!(out, "<style>{CSS}</style>\n</head>\n<body>")?;
    write_stalled(out, m, opts.now_unix)?;

    out.push_str("<header>\n<h1>nginx status</h1>\n");
    write!(
        out,
        "<p class=\"muted\">Host <strong>{host}</strong> · generated <time datetime=\"{t}\">{t}\
         </time> (UTC)",
        t = iso8601(opts.now_unix)
    )?;
    if let Some(n) = opts.refresh.filter(|n| *n > 0) {
        write!(
            out,
            " · refreshes every {}",
            format_duration(u64::from(n.min(MAX_REFRESH_SECS)))
        )?;
    }
    out.push_str("</p>\n");
    write_summary(out, m)?;
    write_filter_line(out, m, opts)?;
    out.push_str("</header>\n<main>\n");

    let listed = write_listing(out, m, opts)?;
    write_certificates(out, m, opts.now_unix)?;
    if m.names.is_empty() && m.probes.is_empty() {
        out.push_str("<p>No <code>status_alert</code> names or probes are configured.</p>\n");
    } else if listed == 0 {
        out.push_str("<p>No NAME or probe target matches the filter.</p>\n");
    }
    out.push_str("</main>\n");

    out.push_str("<footer>\n<p>Alert deliveries: ");
    let counts: Vec<String> = NOTIFY_RESULT_LABELS
        .iter()
        .zip(m.notifications.iter())
        .map(|(label, n)| format!("{label} {n}"))
        .collect();
    out.push_str(&counts.join(", "));
    writeln!(
        out,
        "; queue depth {}.</p>\n<p>nginx-status-alert</p>\n</footer>",
        m.queue_depth
    )?;
    out.push_str("</body>\n</html>\n");
    Ok(())
}

/// The red banner while alerting is not running (no evaluation for three intervals); nothing
/// while it runs.
fn write_stalled(out: &mut String, m: &Metrics, now: u64) -> core::fmt::Result {
    let Some(a) = &m.alerting else {
        return Ok(());
    };
    let Some(since_ms) = a.stalled_since_ms else {
        return Ok(());
    };
    write!(
        out,
        "<p class=\"stalled\" role=\"alert\">alerting is not running since {}",
        fmt_when(since_ms / 1000, now)
    )?;
    if let Some(reason) = a.reason_words() {
        write!(out, ": {}", escape_html(reason))?;
    }
    out.push_str(
        ". Levels below are not updated and no new alerts are raised until it runs again; see \
         the nginx error log.</p>\n",
    );
    Ok(())
}

/// What the filters keep, and how to see everything again; nothing without filters.
fn write_filter_line(out: &mut String, m: &Metrics, opts: &HtmlOptions) -> core::fmt::Result {
    let f = &opts.filter;
    if !f.is_active() {
        return Ok(());
    }
    let mut what = Vec::new();
    if let Some((_, text)) = &f.name {
        what.push(format!("name matches <code>{}</code>", escape_html(text)));
    }
    if let Some(state) = f.state {
        what.push(format!("state {}", state.word()));
    }
    let names = m
        .names
        .iter()
        .filter(|l| f.matches_name(&l.name, l.level))
        .count();
    let probes = m
        .probes
        .iter()
        .filter(|p| f.matches_probe(&p.name, p.up))
        .count();
    writeln!(
        out,
        "<p class=\"muted filter\">Filter: {}: {names} of {} NAMEs, {probes} of {} probe targets. \
         <a href=\"?{}\">Show all</a></p>",
        what.join(", "),
        m.names.len(),
        m.probes.len(),
        kept_query(opts).trim_start_matches('&')
    )
}

/// What the page's own links keep of its query (unescaped): `&refresh=N` when it refreshes
/// itself.
fn kept_query(opts: &HtmlOptions) -> String {
    match opts.refresh.filter(|n| *n > 0) {
        Some(n) => format!("&refresh={}", n.min(MAX_REFRESH_SECS)),
        None => String::new(),
    }
}

/// The NAMEs and probe targets the filters keep: full cards for firing NAMEs (critical
/// first) and for every NAME when few are listed, the others in a compact table; DOWN probe
/// targets in full, the others compact when many. Cards and rows stop at their byte budgets
/// and what is left out is counted, so the page stays under [`PAGE_BUDGET`] at any scale.
/// Returns how many NAMEs and targets were listed (cards, rows or counted).
fn write_listing(
    out: &mut String,
    m: &Metrics,
    opts: &HtmlOptions,
) -> Result<usize, core::fmt::Error> {
    let f = &opts.filter;
    let now = opts.now_unix;
    let mut names: Vec<&NameMetrics> = m
        .names
        .iter()
        .filter(|l| f.matches_name(&l.name, l.level))
        .collect();
    // Critical, then warning, then OK; configuration order within a level (stable sort).
    names.sort_by_key(|l| core::cmp::Reverse(l.level));
    let probes: Vec<usize> = (0..m.probes.len())
        .filter(|&i| f.matches_probe(&m.probes[i].name, m.probes[i].up))
        .collect();
    let few = names.len() <= FULL_DETAIL_UP_TO;
    // Which listed probe targets a card showed already.
    let mut in_card = vec![false; m.probes.len()];
    let mut compact: Vec<&NameMetrics> = Vec::new();
    for l in &names {
        if (few || l.level != Level::Ok) && out.len() < CARDS_BUDGET {
            let mine: Vec<usize> = probes
                .iter()
                .copied()
                .filter(|&i| m.probes[i].name == l.name)
                .take(CARD_PROBES)
                .collect();
            let shown: Vec<&ProbeMetrics> = mine.iter().map(|&i| &m.probes[i]).collect();
            write_location(out, m, l, &shown, now)?;
            for i in mine {
                in_card[i] = true;
            }
        } else {
            compact.push(l);
        }
    }
    let rest: Vec<&ProbeMetrics> = probes
        .iter()
        .filter(|&&i| !in_card[i])
        .map(|&i| &m.probes[i])
        .collect();
    let few_probes = rest.len() <= FULL_DETAIL_UP_TO;
    let (full, compact_probes): (Vec<&ProbeMetrics>, Vec<&ProbeMetrics>) =
        rest.iter().partition(|p| few_probes || p.up == Some(false));
    if !full.is_empty() {
        out.push_str("<section class=\"card plain\">\n<div class=\"head\"><h2>Probes</h2></div>\n");
        let left = write_probes(out, m, &full, now, true)?;
        write_left_out(out, left, "probe targets")?;
        out.push_str("</section>\n");
    }
    if !compact.is_empty() {
        // Leave the compact probe rows some room: about a row per target, at most 40 KiB.
        let reserve = (compact_probes.len() * 120).min(40 * 1024);
        let keep = escape_html(&kept_query(opts));
        write_compact_names(out, &mut compact, ROWS_BUDGET - reserve, &keep)?;
    }
    if !compact_probes.is_empty() {
        write_compact_probes(out, &compact_probes, &escape_html(&kept_query(opts)))?;
    }
    Ok(names.len() + probes.len())
}

/// How many NAMEs or targets the page left out, and how to see them.
fn write_left_out(out: &mut String, left: usize, what: &str) -> core::fmt::Result {
    if left == 0 {
        return Ok(());
    }
    writeln!(
        out,
        "<p class=\"note\">{left} more {what} not listed, to keep the page small: narrow the \
         list with <code>?name=REGEX</code> or <code>?state=firing|warning|ok</code>.</p>"
    )
}

/// A state in a compact row: the word alone when all is well, a badge otherwise.
fn compact_state((class, word): (&str, &str), calm: bool) -> String {
    if calm {
        word.to_owned()
    } else {
        format!("<span class=\"badge {class}\">{word}</span>")
    }
}

/// One row per NAME while the page is shorter than `budget`: name (a link listing only it,
/// with its card), state, the window's requests and 5xx; firing ones first, then those with the most 5xx, then the busiest.
fn write_compact_names(
    out: &mut String,
    names: &mut [&NameMetrics],
    budget: usize,
    keep: &str,
) -> core::fmt::Result {
    names.sort_by_key(|l| {
        (
            core::cmp::Reverse(l.level),
            core::cmp::Reverse(l.window_errors),
            core::cmp::Reverse(l.window_requests),
        )
    });
    writeln!(
        out,
        "<section class=\"card plain wide\" aria-label=\"Other NAMEs\">\n<div class=\"head\">\
         <h2>Other NAMEs ({})</h2></div>\n<p class=\"note\">A name lists only that NAME, with \
         its details.</p>",
        names.len()
    )?;
    out.push_str(
        "<table class=\"compact\">\n<thead><tr><th scope=\"col\">Name</th><th scope=\"col\">\
         State</th><th scope=\"col\">Requests</th><th scope=\"col\">5xx</th></tr></thead>\n\
         <tbody>\n",
    );
    let mut left = 0;
    for l in names.iter() {
        if out.len() >= budget {
            left += 1;
            continue;
        }
        // End tags of cells and rows are optional in HTML; leaving them out keeps rows short.
        writeln!(
            out,
            "<tr><td><a href=\"{}{keep}\">{}</a><td>{}<td class=\"num\">{}<td class=\"num\">{}",
            escape_html(&only_name_query(&l.name)),
            escape_html(&l.name),
            compact_state(level_badge(l.level), l.level == Level::Ok),
            l.window_requests,
            l.window_errors
        )?;
    }
    out.push_str("</tbody>\n</table>\n");
    write_left_out(out, left, "NAMEs")?;
    out.push_str("</section>\n");
    Ok(())
}

/// One row per probe target that is UP or not probed yet: NAME, target, state.
fn write_compact_probes(
    out: &mut String,
    probes: &[&ProbeMetrics],
    keep: &str,
) -> core::fmt::Result {
    writeln!(
        out,
        "<section class=\"card plain wide\" aria-label=\"Other probe targets\">\n\
         <div class=\"head\"><h2>Other probe targets ({})</h2></div>",
        probes.len()
    )?;
    out.push_str(
        "<table class=\"compact\">\n<thead><tr><th scope=\"col\">Name</th><th scope=\"col\">\
         Target</th><th scope=\"col\">State</th></tr></thead>\n<tbody>\n",
    );
    let mut left = 0;
    for p in probes {
        if out.len() >= ROWS_BUDGET {
            left += 1;
            continue;
        }
        writeln!(
            out,
            "<tr><td><a href=\"{}{keep}\">{}</a><td><code>{}</code><td>{}",
            escape_html(&only_name_query(&p.name)),
            escape_html(&p.name),
            escape_html(&p.target),
            compact_state(probe_badge(p.up), p.up != Some(false))
        )?;
    }
    out.push_str("</tbody>\n</table>\n");
    write_left_out(out, left, "probe targets")?;
    out.push_str("</section>\n");
    Ok(())
}

/// Counts per level and probe state, as badges with words.
fn write_summary(out: &mut String, m: &Metrics) -> core::fmt::Result {
    out.push_str("<ul class=\"summary\" aria-label=\"Summary\">");
    for level in [Level::Critical, Level::Warning, Level::Ok] {
        let n = m.names.iter().filter(|l| l.level == level).count();
        if n > 0 {
            let (class, word) = level_badge(level);
            write!(out, "<li class=\"badge {class}\">{n} {word}</li>")?;
        }
    }
    for up in [Some(false), Some(true), None] {
        let n = m.probes.iter().filter(|p| p.up == up).count();
        if n > 0 {
            let (class, word) = probe_badge(up);
            let noun = if n == 1 { "probe" } else { "probes" };
            write!(out, "<li class=\"badge {class}\">{n} {noun} {word}</li>")?;
        }
    }
    out.push_str("</ul>\n");
    Ok(())
}

fn write_location(
    out: &mut String,
    m: &Metrics,
    l: &NameMetrics,
    probes: &[&ProbeMetrics],
    now: u64,
) -> core::fmt::Result {
    let empty = NameDetail::default();
    let d = m.location_detail(&l.name).unwrap_or(&empty);
    let (class, word) = level_badge(l.level);
    let name = escape_html(&l.name);
    writeln!(
        out,
        "<section class=\"card {class}\" aria-label=\"{name}\">"
    )?;
    writeln!(
        out,
        "<div class=\"head\"><h2>{name}</h2><span class=\"badge {class}\">{word}</span></div>"
    )?;
    if let (Some(since), false) = (d.level_since_unix, l.level == Level::Ok) {
        writeln!(
            out,
            "<p class=\"muted\">{} since {}</p>",
            word.to_ascii_lowercase(),
            fmt_when(since, now)
        )?;
    }
    if let Some(mute) = m.mutes.get(&l.name) {
        let why = if mute.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", escape_html(&mute.reason))
        };
        writeln!(
            out,
            "<p class=\"muted\">muted until <time datetime=\"{t}\">{t}</time>{why}</p>",
            t = iso8601(mute.until_unix)
        )?;
    }

    let window = d.window_secs.map_or_else(
        || "window".to_owned(),
        |w| format!("{} window", format_window(w)),
    );
    let (p50, p95, estimated) = match (d.window_p50_seconds, d.window_p95_seconds) {
        (Some(a), Some(b)) => (Some(a), Some(b), false),
        _ => (
            duration_quantile(&l.counters, &m.bucket_bounds, 0.5),
            duration_quantile(&l.counters, &m.bucket_bounds, 0.95),
            true,
        ),
    };
    let q = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), fmt_seconds);
    out.push_str("<dl class=\"stats\">");
    write!(
        out,
        "<div><dt>Requests ({window})</dt><dd>{}</dd></div>",
        l.window_requests
    )?;
    write!(
        out,
        "<div><dt>5xx share</dt><dd>{} <small>({} 5xx)</small></dd></div>",
        fmt_share(l.error_ratio()),
        l.window_errors
    )?;
    write!(out, "<div><dt>p50</dt><dd>{}</dd></div>", q(p50))?;
    write!(out, "<div><dt>p95</dt><dd>{}</dd></div>", q(p95))?;
    out.push_str("</dl>\n");
    let mut notes = Vec::new();
    if estimated {
        notes.push(format!(
            "p50/p95 estimated from the request-time histogram over all {} requests counted \
             so far.",
            l.counters.total()
        ));
    }
    if let Some(crit) = d.crit_pct {
        let warn = d.warn_pct.map_or_else(
            || "warn off".to_owned(),
            |w| format!("warn {}%", trim_num(w)),
        );
        notes.push(format!("Thresholds: {warn}, crit {}%.", trim_num(crit)));
    }
    if !notes.is_empty() {
        writeln!(out, "<p class=\"note\">{}</p>", notes.join(" "))?;
    }
    let traffic = m.health.iter().find(|h| h.name == l.name);
    if let Some(t) = traffic.and_then(|h| h.traffic.as_ref()) {
        write_traffic(out, t)?;
    }

    write_sparkline(out, d, l.level)?;

    if !probes.is_empty() {
        out.push_str("<h3>Probes</h3>\n");
        write_probes(out, m, probes, now, false)?;
    }

    // Firing and warning cards only: 50 quiet cards with a table of 8 peers each would not fit
    // the cards' budget, and the question "which peer?" comes with an alert.
    if let (Some(upstream), false) = (&d.upstream, l.level == Level::Ok) {
        write_peers(out, m, upstream)?;
    }

    out.push_str("<h3>Recent incidents</h3>\n");
    write_incidents(out, l, d, now)?;
    write_reliability(out, m, &l.name)?;

    let links: Vec<String> = [("Logs", &d.link), ("Runbook", &d.runbook)]
        .into_iter()
        .filter_map(|(label, url)| {
            let url = url.as_deref().filter(|u| !u.trim().is_empty())?;
            Some(match safe_href(url) {
                Some(href) => format!("<a href=\"{href}\" rel=\"noopener noreferrer\">{label}</a>"),
                None => format!("{label}: {}", escape_html(url)),
            })
        })
        .collect();
    if !links.is_empty() {
        writeln!(out, "<p class=\"links\">{}</p>", links.join(" "))?;
    }
    out.push_str("</section>\n");
    Ok(())
}

/// The tries of each peer of `upstream` (the NAME's), by class, with each peer's 5xx + error
/// share; nothing until a try was counted. The `other` row only once it counted something.
fn write_peers(out: &mut String, m: &Metrics, upstream: &str) -> core::fmt::Result {
    let peers: Vec<&PeerMetrics> = m
        .upstream_peers
        .iter()
        .filter(|p| p.upstream == upstream)
        .filter(|p| p.peer != OTHER_PEER || p.classes != [0; 5])
        .collect();
    if peers.iter().all(|p| p.classes == [0; 5]) {
        return Ok(());
    }
    writeln!(
        out,
        "<h3>Upstream peers <small>(<code>{}</code>, tries since start)</small></h3>",
        escape_html(upstream)
    )?;
    out.push_str("<table>\n<thead><tr><th scope=\"col\">Peer</th>");
    for label in PEER_CLASS_LABELS {
        write!(out, "<th scope=\"col\">{label}</th>")?;
    }
    out.push_str("<th scope=\"col\">5xx + error</th></tr></thead>\n<tbody>\n");
    for p in peers.iter().take(CARD_PEERS) {
        write!(
            out,
            "<tr><td data-label=\"Peer\"><code>{}</code></td>",
            escape_html(&p.peer)
        )?;
        for (label, n) in PEER_CLASS_LABELS.iter().zip(p.classes) {
            write!(out, "<td data-label=\"{label}\" class=\"num\">{n}</td>")?;
        }
        let tries: u64 = p.classes.iter().sum();
        let failed = p.classes[PeerClass::S5xx as usize] + p.classes[PeerClass::Error as usize];
        let share = if tries == 0 {
            "–".to_owned()
        } else {
            fmt_share(failed as f64 / tries as f64)
        };
        writeln!(
            out,
            "<td data-label=\"5xx + error\" class=\"num\">{share}</td></tr>"
        )?;
    }
    out.push_str("</tbody>\n</table>\n");
    if peers.len() > CARD_PEERS {
        writeln!(
            out,
            "<p class=\"note\">{} more peers: see <code>nginx_upstream_peer_responses_total</code>.</p>",
            peers.len() - CARD_PEERS
        )?;
    }
    Ok(())
}

/// The `traffic=` line of a NAME: its alert when it fires, the usual traffic (or how much of
/// it is learnt), the thresholds.
fn write_traffic(out: &mut String, t: &TrafficHealth) -> core::fmt::Result {
    let state = if t.level == Level::Ok {
        String::new()
    } else {
        let (class, word) = level_badge(t.level);
        format!("<span class=\"badge {class}\">traffic {word}</span> ")
    };
    let usual = match t.usual {
        Some(u) => format!("usually {} requests per window", u.round()),
        None => format!(
            "learning the usual traffic ({} of {USUAL_WINDOWS} windows)",
            t.known_windows
        ),
    };
    writeln!(
        out,
        "<p class=\"note traffic\">Traffic: {state}{usual}; {}.</p>",
        escape_html(&t.thresholds)
    )
}

/// A percentage as configured: `5`, `12.5`.
fn trim_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Inline SVG line of the 5xx share with dashed threshold lines, or a note without history.
fn write_sparkline(out: &mut String, d: &NameDetail, level: Level) -> core::fmt::Result {
    let history = &d.error_share_history;
    if history.is_empty() {
        out.push_str("<p class=\"note\">No 5xx share history yet.</p>\n");
        return Ok(());
    }
    let points: Vec<f64> = history[history.len().saturating_sub(MAX_SPARK_POINTS)..]
        .iter()
        .map(|s| clamp_share(*s))
        .collect();
    let warn = d.warn_pct.map(|p| (p / 100.0).clamp(0.0, 1.0));
    let crit = d.crit_pct.map(|p| (p / 100.0).clamp(0.0, 1.0));
    let peak = points.iter().copied().fold(0.0, f64::max);
    // Leave headroom above the highest of data and thresholds; never zoom in below 1%.
    let top = [peak, warn.unwrap_or(0.0), crit.unwrap_or(0.0), 0.01]
        .into_iter()
        .fold(0.0, f64::max)
        * 1.15;
    let y = |s: f64| SPARK_H - s / top * SPARK_H;
    let step = if points.len() > 1 {
        SPARK_W / (points.len() - 1) as f64
    } else {
        0.0
    };
    let mut line = String::new();
    for (i, s) in points.iter().enumerate() {
        let _ = write!(line, "{:.1},{:.1} ", i as f64 * step, y(*s));
    }
    if points.len() == 1 {
        let _ = write!(line, "{SPARK_W:.1},{:.1}", y(points[0]));
    }
    let line = line.trim_end();
    let latest = *points.last().unwrap_or(&0.0);
    let label = format!(
        "5xx share over the window: latest {}, peak {}",
        fmt_share(latest),
        fmt_share(peak)
    );
    out.push_str("<figure>\n");
    write!(
        out,
        "<svg class=\"spark\" viewBox=\"0 0 {SPARK_W} {SPARK_H}\" preserveAspectRatio=\"none\" \
         role=\"img\" aria-label=\"{label}\"><title>{label}</title>"
    )?;
    for (class, threshold) in [("w", warn), ("c", crit)] {
        if let Some(t) = threshold {
            let ty = y(t);
            write!(
                out,
                "<line class=\"{class}\" x1=\"0\" y1=\"{ty:.1}\" x2=\"{SPARK_W}\" y2=\"{ty:.1}\" \
                 stroke-width=\"1\" stroke-dasharray=\"4 3\" vector-effect=\"non-scaling-stroke\"/>"
            )?;
        }
    }
    writeln!(
        out,
        "<polygon points=\"0,{SPARK_H} {line} {SPARK_W},{SPARK_H}\" fill=\"currentColor\" \
         fill-opacity=\"0.15\" stroke=\"none\"/>\
         <polyline points=\"{line}\" fill=\"none\" stroke=\"currentColor\" stroke-width=\"2\" \
         stroke-linejoin=\"round\" vector-effect=\"non-scaling-stroke\"/></svg>"
    )?;
    let mut caption = format!("{label} (level now {})", level.label().to_ascii_lowercase());
    if warn.is_some() || crit.is_some() {
        caption.push_str("; dashed lines: thresholds");
    }
    writeln!(out, "<figcaption>{caption}.</figcaption>\n</figure>")?;
    Ok(())
}

fn write_probes(
    out: &mut String,
    m: &Metrics,
    probes: &[&ProbeMetrics],
    now: u64,
    with_name: bool,
) -> Result<usize, core::fmt::Error> {
    out.push_str("<table>\n<thead><tr>");
    if with_name {
        out.push_str("<th scope=\"col\">Name</th>");
    }
    out.push_str(
        "<th scope=\"col\">Target</th><th scope=\"col\">State</th><th scope=\"col\">Since</th>\
         <th scope=\"col\">Last failure</th><th scope=\"col\">Duration</th></tr></thead>\n<tbody>\n",
    );
    let mut left = 0;
    for p in probes {
        if out.len() >= ROWS_BUDGET {
            left += 1;
            continue;
        }
        let detail = m.probe_detail(&p.name, &p.target);
        let (class, word) = probe_badge(p.up);
        out.push_str("<tr>");
        if with_name {
            write!(out, "<td data-label=\"Name\">{}</td>", escape_html(&p.name))?;
        }
        write!(
            out,
            "<td data-label=\"Target\"><code>{}</code></td>\
             <td data-label=\"State\"><span class=\"badge {class}\">{word}</span></td>",
            escape_html(&p.target)
        )?;
        let since = detail
            .and_then(|d| d.since_unix)
            .map_or_else(|| "–".to_owned(), |s| fmt_when(s, now));
        write!(out, "<td data-label=\"Since\">{since}</td>")?;
        let reason = detail.and_then(|d| {
            let reason = d.last_reason.as_deref().filter(|r| !r.trim().is_empty());
            match (reason, d.last_status) {
                (Some(r), Some(s)) => Some(format!("{} (status {s})", escape_html(r))),
                (Some(r), None) => Some(escape_html(r)),
                (None, Some(s)) => Some(format!("status {s}")),
                (None, None) => None,
            }
        });
        writeln!(
            out,
            "<td data-label=\"Last failure\">{}</td><td data-label=\"Duration\" class=\"num\">{}\
             </td></tr>",
            reason.as_deref().unwrap_or("–"),
            if p.up.is_some() {
                fmt_seconds(p.duration_seconds)
            } else {
                "–".to_owned()
            }
        )?;
    }
    out.push_str("</tbody>\n</table>\n");
    Ok(left)
}

/// The certificates nginx serves and those HTTPS probe targets served last: expiry, level,
/// and a renewal on disk nginx does not serve yet (or a file that cannot be read).
fn write_certificates(out: &mut String, m: &Metrics, now: u64) -> core::fmt::Result {
    if m.certificates.is_empty() && m.probe_certificates.is_empty() {
        return Ok(());
    }
    out.push_str(
        "<section class=\"card plain\">\n<div class=\"head\"><h2>Certificates</h2></div>\n\
         <table>\n<thead><tr><th scope=\"col\">Server or probe</th><th scope=\"col\">File or \
         target</th><th scope=\"col\">State</th><th scope=\"col\">Expires</th>\
         <th scope=\"col\">Note</th></tr></thead>\n<tbody>\n",
    );
    for c in &m.certificates {
        let (class, word) = level_badge(c.level);
        let expires = c.served.map_or_else(
            || "unknown".to_owned(),
            |e| escape_html(&crate::vocab::certificate::expiry_words(e, now)),
        );
        let note = match (&c.problem, c.renewed_since) {
            (Some(p), _) => escape_html(p),
            (None, Some(since)) => {
                crate::vocab::certificate::renewal_sentence(&fmt_when(since, now))
            }
            (None, None) => "–".to_owned(),
        };
        writeln!(
            out,
            "<tr><td data-label=\"Server or probe\">{}</td><td data-label=\"File or target\">\
             <code>{}</code></td><td data-label=\"State\"><span class=\"badge {class}\">{word}\
             </span></td><td data-label=\"Expires\">{expires}</td><td data-label=\"Note\">{note}\
             </td></tr>",
            escape_html(&c.server),
            escape_html(&c.file)
        )?;
    }
    for (probe, target, expiry, level) in &m.probe_certificates {
        let (class, word) = level_badge(*level);
        writeln!(
            out,
            "<tr><td data-label=\"Server or probe\">{}</td><td data-label=\"File or target\">\
             <code>{}</code></td><td data-label=\"State\"><span class=\"badge {class}\">{word}\
             </span></td><td data-label=\"Expires\">{}</td><td data-label=\"Note\">–</td></tr>",
            escape_html(probe),
            escape_html(target),
            escape_html(&crate::vocab::certificate::expiry_words(*expiry, now))
        )?;
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
    Ok(())
}

/// MTTR and MTBF per alert kind with incidents, or how long the NAME went without one.
fn write_reliability(out: &mut String, m: &Metrics, name: &str) -> core::fmt::Result {
    let Some(h) = m.health.iter().find(|h| h.name == name) else {
        return Ok(());
    };
    let observed = m.observed_secs.get(name).copied().unwrap_or(0);
    let figures: Vec<String> = reliability(&h.incidents, observed)
        .iter()
        .filter(|r| r.incidents > 0)
        .map(|r| {
            let secs = |v: Option<f64>| format_duration(v.unwrap_or(0.0).round() as u64);
            let noun = if r.incidents == 1 {
                "incident"
            } else {
                "incidents"
            };
            format!(
                "{}: MTTR {}, MTBF {} ({} {noun})",
                r.kind.label(),
                secs(r.mttr_secs),
                secs(r.mtbf_secs),
                r.incidents
            )
        })
        .collect();
    if figures.is_empty() {
        if observed > 0 {
            writeln!(
                out,
                "<p class=\"note\">No incident in {}.</p>",
                format_duration(observed)
            )?;
        }
        return Ok(());
    }
    writeln!(out, "<p class=\"note\">{}.</p>", figures.join("; "))
}

fn write_incidents(
    out: &mut String,
    l: &NameMetrics,
    d: &NameDetail,
    now: u64,
) -> core::fmt::Result {
    let mut incidents: Vec<IncidentView> = d.incidents.clone();
    // Until the zone keeps a history, the firing incident is known from level + since.
    if incidents.is_empty() && l.level != Level::Ok {
        if let Some(start) = d.level_since_unix {
            let peak = d
                .error_share_history
                .iter()
                .copied()
                .map(clamp_share)
                .fold(clamp_share(l.error_ratio()), f64::max);
            incidents.push(IncidentView {
                start_unix: start,
                end_unix: None,
                peak_level: l.level,
                peak_share: peak,
            });
        }
    }
    if incidents.is_empty() {
        out.push_str("<p class=\"note\">No incident recorded.</p>\n");
        return Ok(());
    }
    incidents.sort_by_key(|i| core::cmp::Reverse(i.start_unix));
    incidents.truncate(MAX_INCIDENTS);
    out.push_str(
        "<table>\n<thead><tr><th scope=\"col\">Start</th><th scope=\"col\">End</th>\
         <th scope=\"col\">Duration</th><th scope=\"col\">Peak level</th>\
         <th scope=\"col\">Peak 5xx</th></tr></thead>\n<tbody>\n",
    );
    for i in &incidents {
        let (class, word) = level_badge(i.peak_level);
        let (end, secs) = match i.end_unix {
            Some(e) => (
                format!("<time datetime=\"{t}\">{t}</time>", t = iso8601(e)),
                e.saturating_sub(i.start_unix),
            ),
            None => ("ongoing".to_owned(), now.saturating_sub(i.start_unix)),
        };
        writeln!(
            out,
            "<tr><td data-label=\"Start\"><time datetime=\"{s}\">{s}</time></td>\
             <td data-label=\"End\">{end}</td><td data-label=\"Duration\">{}</td>\
             <td data-label=\"Peak level\"><span class=\"badge {class}\">{word}</span></td>\
             <td data-label=\"Peak 5xx\" class=\"num\">{}</td></tr>",
            format_duration(secs),
            fmt_share(i.peak_share),
            s = iso8601(i.start_unix)
        )?;
    }
    out.push_str("</tbody>\n</table>\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expose::metrics::{AlertingStatus, ProbeDetail};
    use crate::zone::counters::{
        bucket_index, status_index, CountersSnapshot, BUCKET_SLOTS, STATUS_SLOTS,
    };
    use crate::zone::StallReason;

    const EVIL: &str = "\"><script>alert(1)</script>";
    const NOW: u64 = 1_795_308_505;

    fn loc(name: &str, level: Level, errors: u64, total: u64) -> NameMetrics {
        let mut c = CountersSnapshot {
            status: [0; STATUS_SLOTS],
            buckets: [0; BUCKET_SLOTS],
            duration_us_sum: 0,
        };
        for (status, ms, n) in [(200, 3, 90), (200, 300, 8), (503, 2000, 2)] {
            c.status[status_index(status)] += n;
            c.buckets[bucket_index(ms)] += n;
        }
        NameMetrics {
            name: name.into(),
            counters: c,
            window_requests: total,
            window_errors: errors,
            level,
        }
    }

    fn probe(name: &str, target: &str, up: Option<bool>) -> ProbeMetrics {
        ProbeMetrics {
            name: name.into(),
            target: target.into(),
            up,
            duration_seconds: 0.0042,
            failures: [0; crate::vocab::reason::Reason::COUNT],
        }
    }

    fn opts() -> HtmlOptions {
        HtmlOptions {
            refresh: None,
            host: "web-1".into(),
            now_unix: NOW,
            filter: PageFilter::default(),
        }
    }

    /// `count` NAMEs `loc-N` with five minutes of history each; `firing` of them (spread
    /// through the list, every other one critical) above OK; one probe target per 100 NAMEs,
    /// every tenth DOWN.
    fn many(count: usize, firing: usize) -> Metrics {
        let mut m = Metrics::default();
        for i in 0..count {
            let step = (count / firing.max(1)).max(1);
            let level = match (i % step, i / step) {
                (0, k) if k < firing && k % 2 == 0 => Level::Critical,
                (0, k) if k < firing => Level::Warning,
                _ => Level::Ok,
            };
            let name = format!("loc-{i}");
            m.names.push(loc(&name, level, (i % 7) as u64, 1000));
            m.name_details.insert(
                name.clone(),
                NameDetail {
                    error_share_history: vec![0.01; 30],
                    level_since_unix: (level != Level::Ok).then_some(NOW - 60),
                    window_secs: Some(300),
                    warn_pct: Some(5.0),
                    crit_pct: Some(10.0),
                    link: Some(format!("https://logs.example.com/{name}")),
                    upstream: Some("backend".into()),
                    ..Default::default()
                },
            );
            if i % 100 == 0 {
                let up = Some(i % 1000 != 500);
                m.probes.push(probe(
                    &name,
                    &format!("http://10.0.{}.1:8080/health", i / 100),
                    up,
                ));
            }
        }
        // Every NAME proxies to one upstream of 8 peers: the cards list them, the rows do not.
        for k in 0..8 {
            m.upstream_peers.push(PeerMetrics {
                upstream: "backend".into(),
                peer: format!("10.0.0.{k}:8080"),
                classes: [900_000, 10, 2_000, if k == 3 { 50_000 } else { 12 }, 3],
            });
        }
        m
    }

    fn with_filter(query: &str) -> HtmlOptions {
        HtmlOptions {
            filter: crate::expose::page_filter::parse_page_filter(query).unwrap(),
            ..opts()
        }
    }

    #[test]
    fn ten_thousand_names_fit_the_budget_firing_first() {
        let m = many(10_000, 10);
        let firing: Vec<&NameMetrics> = m.names.iter().filter(|l| l.level != Level::Ok).collect();
        assert_eq!(firing.len(), 10);
        let html = render_html(&m, &opts());
        assert!(html.len() <= PAGE_BUDGET, "{} bytes", html.len());
        assert!(
            html.len() > 200 * 1024,
            "the budget is used: {} bytes",
            html.len()
        );
        // Every firing NAME has its card, critical ones before warning ones, all before the
        // compact table.
        let table = html
            .find("<h2>Other NAMEs (9990)</h2>")
            .expect("compact table");
        let mut last_crit = 0;
        let mut first_warn = usize::MAX;
        for l in &firing {
            let card = format!(
                "<section class=\"card {}\" aria-label=\"{}\">",
                level_badge(l.level).0,
                l.name
            );
            let at = html
                .find(&card)
                .unwrap_or_else(|| panic!("no card for {}", l.name));
            assert!(at < table);
            match l.level {
                Level::Critical => last_crit = last_crit.max(at),
                _ => first_warn = first_warn.min(at),
            }
        }
        assert!(last_crit < first_warn);
        // Each card lists its upstream's peers; the compact table adds nothing.
        assert_eq!(html.matches("<h3>Upstream peers").count(), 10);
        assert!(html.rfind("<h3>Upstream peers").unwrap() < table);
        // OK NAMEs are rows, not cards, with a link listing only them.
        assert!(!html.contains("aria-label=\"loc-1\""));
        assert!(html.contains("<tr><td><a href=\"?name=%5Eloc-6%24\">loc-6</a><td>OK<td class=\"num\">1000<td class=\"num\">6\n"), "{}", &html[html.len() - 3000..]);
        // Rows are ordered by 5xx: a NAME with 6 comes before one with 0.
        assert!(html.find(">loc-6<").unwrap() < html.find(">loc-7<").unwrap_or(usize::MAX));
        // What did not fit is counted, with the way to see it.
        let note = html
            .split("<p class=\"note\">")
            .find(|p| p.contains("more NAMEs not listed"))
            .unwrap();
        let left: usize = note.split(' ').next().unwrap().parse().unwrap();
        let rows = html.matches("<tr><td><a href=\"?name=%5Eloc-").count();
        assert!(left > 0 && rows > 1000, "{left} left, {rows} rows");
        // DOWN probe targets in full (reason column), the UP ones compact.
        assert!(html.contains("<h2>Probes</h2>"));
        assert_eq!(
            html.matches("<span class=\"badge crit\">DOWN</span>")
                .count(),
            10
        );
        assert!(html.contains("<h2>Other probe targets (80)</h2>"));
        assert!(!html.contains("more probe targets not listed"));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn page_stays_bounded_when_everything_fires() {
        let m = many(10_000, 10_000);
        let html = render_html(&m, &opts());
        assert!(html.len() <= PAGE_BUDGET, "{} bytes", html.len());
        assert!(html.contains("more NAMEs not listed"));
    }

    #[test]
    fn few_names_keep_every_card() {
        let m = many(FULL_DETAIL_UP_TO, 2);
        let html = render_html(&m, &opts());
        assert!(!html.contains("Other NAMEs"));
        assert!(html.contains("aria-label=\"loc-1\""));
        // Firing first even so.
        assert!(
            html.find("aria-label=\"loc-0\"").unwrap() < html.find("aria-label=\"loc-1\"").unwrap()
        );
        assert!(
            html.find("aria-label=\"loc-25\"").unwrap()
                < html.find("aria-label=\"loc-1\"").unwrap()
        );
    }

    #[test]
    fn filters_list_what_they_match() {
        let m = many(10_000, 10);
        // One NAME by the link of its row: its full card.
        let html = render_html(&m, &with_filter("name=%5Eloc-1%24"));
        assert!(html.contains("aria-label=\"loc-1\""), "{html}");
        assert!(!html.contains("loc-10"));
        assert!(html.contains("Filter: name matches <code>^loc-1$</code>: 1 of 10000 NAMEs, 0 of 100 probe targets. <a href=\"?\">Show all</a>"));
        // A pattern matching a hundred NAMEs: too many for cards, all in the table.
        let html = render_html(&m, &with_filter("name=^loc-9[0-9]%7B2%7D$"));
        assert!(html.contains("<h2>Other NAMEs (100)</h2>"), "{html}");
        assert!(!html.contains("not listed"));
        // Firing only: cards, nothing compact; the DOWN targets.
        let html = render_html(&m, &with_filter("state=firing"));
        assert_eq!(
            html.matches("<section class=\"card crit\"").count()
                + html.matches("<section class=\"card warn\"").count(),
            10
        );
        assert!(!html.contains("Other NAMEs"));
        assert_eq!(html.matches(">DOWN<").count(), 10);
        let html = render_html(&m, &with_filter("state=warning"));
        assert_eq!(html.matches("<section class=\"card warn\"").count(), 5);
        assert!(!html.contains("<section class=\"card crit\""));
        assert!(!html.contains(">DOWN<"));
        // OK only: no firing card, the table.
        let html = render_html(&m, &with_filter("state=ok"));
        assert!(
            !html.contains("<section class=\"card crit\"")
                && !html.contains("<section class=\"card warn\"")
        );
        assert!(html.contains("<h2>Other NAMEs (9990)</h2>"));
        assert!(html.len() <= PAGE_BUDGET);
        // Nothing matches.
        let html = render_html(&m, &with_filter("name=nomatch"));
        assert!(html.contains("No NAME or probe target matches the filter."));
        // The page's links keep its refresh.
        let html = render_html(
            &m,
            &HtmlOptions {
                refresh: Some(30),
                ..with_filter("state=ok")
            },
        );
        assert!(html.contains("<a href=\"?name=%5Eloc-6%24&amp;refresh=30\">loc-6</a>"));
        assert!(html.contains("<a href=\"?refresh=30\">Show all</a>"));
        // The filter is shown escaped.
        let html = render_html(&m, &with_filter("name=%3Cb%3E"));
        assert!(html.contains("<code>&lt;b&gt;</code>"));
    }

    fn sample() -> Metrics {
        let mut m = Metrics {
            names: vec![
                loc("api", Level::Critical, 123, 1000),
                loc("shop", Level::Ok, 0, 50),
            ],
            probes: vec![
                probe("api", "http://10.0.0.5:8080/health", Some(false)),
                probe("db", "tcp://127.0.0.1:5432", None),
            ],
            notifications: [4, 1, 0, 2],
            queue_depth: 3,
            ..Default::default()
        };
        m.name_details.insert(
            "api".into(),
            NameDetail {
                error_share_history: vec![0.0, 0.02, 0.08, 0.123],
                level_since_unix: Some(NOW - 430),
                window_secs: Some(300),
                warn_pct: Some(5.0),
                crit_pct: Some(10.0),
                link: Some("https://logs.example.com/api?a=1&b=2".into()),
                runbook: Some("javascript:alert(1)".into()),
                ..Default::default()
            },
        );
        m.probe_details.insert(
            ("api".into(), "http://10.0.0.5:8080/health".into()),
            ProbeDetail {
                since_unix: Some(NOW - 65),
                last_reason: Some("connection refused".into()),
                last_status: None,
            },
        );
        m
    }

    /// Positions where a tag opened by `<` is still open at `i`.
    fn inside_tag(html: &str, i: usize) -> Option<&str> {
        let open = html[..i].rfind('<')?;
        match html[..i].rfind('>') {
            Some(close) if close > open => None,
            _ => Some(&html[open..i]),
        }
    }

    #[test]
    fn a_traffic_drop_and_learning_show_on_the_page() {
        use crate::expose::metrics::{NameHealth, TrafficHealth};
        let mut m = sample();
        let traffic = |name: &str, level, usual, known_windows| NameHealth {
            name: name.into(),
            traffic: Some(TrafficHealth {
                thresholds: "warn below 50% of usual · crit below 10 requests".into(),
                level,
                usual,
                known_windows,
            }),
            ..NameHealth::default()
        };
        m.health = vec![
            traffic("api", Level::Critical, Some(411.5), 12),
            traffic("shop", Level::Ok, None, 5),
        ];
        let html = render_html(&m, &opts());
        assert!(
            html.contains(
                "Traffic: <span class=\"badge crit\">traffic CRITICAL</span> usually 412 \
                 requests per window; warn below 50% of usual · crit below 10 requests."
            ),
            "{html}"
        );
        assert!(
            html.contains("Traffic: learning the usual traffic (5 of 12 windows);"),
            "{html}"
        );
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape_html(EVIL),
            "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(escape_html("a & b 'c'"), "a &amp; b &#39;c&#39;");
        assert_eq!(escape_html("é ✓"), "é ✓");
    }

    #[test]
    fn hostile_strings_never_become_markup() {
        let mut m = Metrics {
            names: vec![loc(EVIL, Level::Warning, 10, 100)],
            probes: vec![probe(EVIL, EVIL, Some(false)), probe("x", EVIL, Some(true))],
            ..Default::default()
        };
        m.name_details.insert(
            EVIL.into(),
            NameDetail {
                level_since_unix: Some(NOW - 5),
                link: Some(format!("https://x/{EVIL}")),
                runbook: Some(EVIL.into()),
                upstream: Some(EVIL.into()),
                ..Default::default()
            },
        );
        m.upstream_peers.push(PeerMetrics {
            upstream: EVIL.into(),
            peer: EVIL.into(),
            classes: [1, 0, 0, 1, 0],
        });
        m.probe_details.insert(
            (EVIL.into(), EVIL.into()),
            ProbeDetail {
                since_unix: Some(NOW),
                last_reason: Some(EVIL.into()),
                last_status: Some(503),
            },
        );
        let html = render_html(
            &m,
            &HtmlOptions {
                host: EVIL.into(),
                ..opts()
            },
        );
        assert!(!html.to_ascii_lowercase().contains("<script"), "{html}");
        assert!(!html.contains(EVIL), "raw markup in the page: {html}");
        assert!(html.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
        // The link with a hostile path is still a link, escaped inside its attribute.
        assert!(html.contains("href=\"https://x/&quot;&gt;&lt;script&gt;"));
    }

    #[test]
    fn cards_list_the_peers_of_their_upstream() {
        let mut m = sample();
        m.name_details.get_mut("api").unwrap().upstream = Some("api_backend".into());
        m.name_details.insert(
            "shop".into(),
            NameDetail {
                upstream: Some("shop_backend".into()),
                ..Default::default()
            },
        );
        let peer = |upstream: &str, peer: &str, classes| PeerMetrics {
            upstream: upstream.into(),
            peer: peer.into(),
            classes,
        };
        m.upstream_peers = vec![
            peer("api_backend", "10.0.0.3:8080", [20, 0, 1, 75, 4]),
            peer("api_backend", "10.0.0.4:8080", [98, 1, 1, 0, 0]),
            peer("api_backend", "10.0.0.5:8080", [0; 5]),
            peer("api_backend", "other", [0; 5]),
            peer("other_backend", "10.9.9.9:80", [0, 0, 0, 7, 0]),
            // An upstream without a counted try shows no table.
            peer("shop_backend", "10.0.1.1:8080", [0; 5]),
        ];
        let html = render_html(&m, &opts());
        let api = &html[html.find("aria-label=\"api\"").unwrap()..];
        let api = &api[..api.find("</section>").unwrap()];
        assert!(api.contains(
            "<h3>Upstream peers <small>(<code>api_backend</code>, tries since start)</small></h3>"
        ));
        assert!(api.contains(
            "<th scope=\"col\">Peer</th><th scope=\"col\">2xx</th><th scope=\"col\">3xx</th>\
             <th scope=\"col\">4xx</th><th scope=\"col\">5xx</th><th scope=\"col\">error</th>\
             <th scope=\"col\">5xx + error</th>"
        ));
        // 75 5xx + 4 errors of 100 tries; a peer without tries has no share.
        assert!(api.contains(
            "<tr><td data-label=\"Peer\"><code>10.0.0.3:8080</code></td>\
             <td data-label=\"2xx\" class=\"num\">20</td><td data-label=\"3xx\" class=\"num\">0</td>\
             <td data-label=\"4xx\" class=\"num\">1</td><td data-label=\"5xx\" class=\"num\">75</td>\
             <td data-label=\"error\" class=\"num\">4</td>\
             <td data-label=\"5xx + error\" class=\"num\">79.0%</td></tr>"
        ));
        assert!(api.contains("<code>10.0.0.4:8080</code>"));
        assert!(api.contains("class=\"num\">–</td></tr>"));
        assert!(!api.contains("10.9.9.9"));
        // `other` without a try is left out, shown once it counted.
        assert!(!api.contains("<code>other</code>"));
        m.upstream_peers[3].classes = [0, 0, 0, 0, 2];
        assert!(render_html(&m, &opts()).contains("<code>other</code>"));
        // Quiet NAMEs' cards show none.
        let shop = &html[html.find("aria-label=\"shop\"").unwrap()..];
        assert!(!shop.contains("Upstream peers"));
        m.names[0].level = Level::Ok;
        assert!(!render_html(&m, &opts()).contains("Upstream peers"));
        m.names[0].level = Level::Warning;
        assert!(render_html(&m, &opts()).contains("Upstream peers"));
        m.names[1].level = Level::Warning;
        let html = render_html(&m, &opts());
        let shop = &html[html.find("aria-label=\"shop\"").unwrap()..];
        assert!(!shop.contains("Upstream peers"), "no counted try, no table");
        // Past CARD_PEERS rows, the rest are counted.
        m.upstream_peers = (0..CARD_PEERS + 3)
            .map(|k| peer("api_backend", &format!("10.0.2.{k}:80"), [1, 0, 0, 0, 0]))
            .collect();
        let html = render_html(&m, &opts());
        assert_eq!(html.matches("<code>10.0.2.").count(), CARD_PEERS);
        assert!(html.contains("3 more peers"));
    }

    #[test]
    fn no_script_and_no_external_resources() {
        let html = render_html(&sample(), &opts());
        let lower = html.to_ascii_lowercase();
        for bad in [
            "<script",
            "<img",
            "<iframe",
            "<object",
            "<embed",
            "<form",
            "@import",
            "url(",
            " src=",
            "xlink:href",
            "href=\"javascript",
        ] {
            assert!(!lower.contains(bad), "found {bad}");
        }
        // No event handler attributes such as onload=.
        assert!(!lower.contains(" onload=") && !lower.contains(" onerror="));
        // <link> only for the empty data: icon.
        for (i, _) in lower.match_indices("<link") {
            assert!(lower[i..].starts_with("<link rel=\"icon\" href=\"data:,\">"));
        }
        // Every http(s):// is either text or the href of an operator link.
        for scheme in ["http://", "https://"] {
            for (i, _) in lower.match_indices(scheme) {
                if let Some(tag) = inside_tag(&lower, i) {
                    assert!(
                        tag.starts_with("<a ") && tag.ends_with("href=\""),
                        "URL inside a tag: {tag}"
                    );
                }
            }
        }
        // The configured link is a link; the javascript: runbook is not.
        assert!(html.contains(
            "<a href=\"https://logs.example.com/api?a=1&amp;b=2\" rel=\"noopener noreferrer\">Logs</a>"
        ));
        assert!(html.contains("Runbook: javascript:alert(1)"));
        assert!(html.contains("Content-Security-Policy"));
    }

    #[test]
    fn refresh_meta_only_when_asked() {
        let m = sample();
        assert!(!render_html(&m, &opts()).contains("http-equiv=\"refresh\""));
        let with = |n| {
            render_html(
                &m,
                &HtmlOptions {
                    refresh: Some(n),
                    ..opts()
                },
            )
        };
        assert!(with(30).contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(with(30).contains("refreshes every 30s"));
        assert!(with(999_999).contains("content=\"3600\""));
        assert!(!with(0).contains("http-equiv=\"refresh\""));
    }

    #[test]
    fn values_are_shown() {
        let html = render_html(&sample(), &opts());
        // Header, levels as colour class and word.
        assert!(html.contains("<strong>web-1</strong>"));
        assert!(html.contains("<title>CRITICAL · nginx status · web-1</title>"));
        assert!(html.contains("<section class=\"card crit\" aria-label=\"api\">"));
        assert!(html.contains("<span class=\"badge crit\">CRITICAL</span>"));
        assert!(html.contains("<span class=\"badge ok\">OK</span>"));
        assert!(html.contains("critical since <time datetime=\"2026-11-22T00:41:15Z\">"));
        assert!(html.contains("(7m 10s ago)"));
        // Window figures.
        assert!(html.contains("<dt>Requests (5m window)</dt><dd>1000</dd>"));
        assert!(html.contains("<dd>12.3% <small>(123 5xx)</small></dd>"));
        assert!(html.contains("Thresholds: warn 5%, crit 10%."));
        // p50 falls into the first bucket, p95 into (0.25, 0.5].
        assert!(html.contains("<dt>p50</dt><dd>2.8 ms</dd>"), "{html}");
        assert!(html.contains("<dt>p95</dt><dd>406 ms</dd>"), "{html}");
        assert!(html.contains("estimated from the request-time histogram over all 100"));
        // Sparkline.
        assert!(html.contains("<svg class=\"spark\""));
        assert!(html.contains("latest 12.3%, peak 12.3%"));
        assert!(html.contains("<polyline points=\"0.0,60.0 100.0,"));
        assert!(html.contains("No 5xx share history yet."));
        // Probes: down with reason and since; unknown.
        assert!(html.contains("<code>http://10.0.0.5:8080/health</code>"));
        assert!(html.contains("<span class=\"badge crit\">DOWN</span>"));
        assert!(html.contains("connection refused"));
        assert!(html.contains("(1m 5s ago)"));
        assert!(html.contains("<span class=\"badge unknown\">UNKNOWN</span>"));
        assert!(html.contains("4.2 ms"));
        // The probe without a status_alert NAME has its own section with a name column.
        assert!(html.contains("<h2>Probes</h2>"));
        assert!(html.contains("<td data-label=\"Name\">db</td>"));
        // The firing incident is shown from level + since.
        assert!(html.contains("<td data-label=\"End\">ongoing</td>"));
        assert!(html.contains("<td data-label=\"Duration\">7m 10s</td>"));
        assert!(html.contains("<td data-label=\"Peak 5xx\" class=\"num\">12.3%</td>"));
        assert!(html.contains("No incident recorded."));
        // Summary and footer.
        assert!(html.contains("<li class=\"badge crit\">1 CRITICAL</li>"));
        assert!(html.contains("<li class=\"badge crit\">1 probe DOWN</li>"));
        assert!(html.contains("sent 4, retried 1, failed 0, dropped 2; queue depth 3."));
    }

    #[test]
    fn recorded_incidents_newest_first() {
        let mut m = Metrics {
            names: vec![loc("api", Level::Ok, 0, 100)],
            ..Default::default()
        };
        m.name_details.insert(
            "api".into(),
            NameDetail {
                incidents: vec![
                    IncidentView {
                        start_unix: NOW - 7200,
                        end_unix: Some(NOW - 6600),
                        peak_level: Level::Warning,
                        peak_share: 0.06,
                    },
                    IncidentView {
                        start_unix: NOW - 600,
                        end_unix: Some(NOW - 120),
                        peak_level: Level::Critical,
                        peak_share: 0.5,
                    },
                ],
                ..Default::default()
            },
        );
        let html = render_html(&m, &opts());
        let newer = html.find("50.0%").unwrap();
        let older = html.find("6.0%").unwrap();
        assert!(newer < older);
        assert!(html.contains("<td data-label=\"Duration\">10m</td>"));
        assert!(html.contains("<span class=\"badge warn\">WARNING</span>"));
        assert!(!html.contains("ongoing"));
    }

    #[test]
    fn responsive_and_self_contained_layout() {
        let html = render_html(&sample(), &opts());
        assert!(html.contains("width=device-width, initial-scale=1"));
        assert!(
            html.contains("minmax(min(100%,30rem),1fr)"),
            "no fixed min width"
        );
        // Words wrap whole; only URLs and targets (in <code>) may break anywhere.
        assert!(html.contains("overflow-wrap:break-word"));
        assert!(html.contains("code{overflow-wrap:anywhere}"));
        assert!(html.contains("@media (max-width:40rem)"));
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.ends_with("</html>\n"));
    }

    #[test]
    fn sparkline_edge_cases() {
        let mut d = NameDetail {
            error_share_history: vec![f64::NAN, -1.0, 2.0],
            ..Default::default()
        };
        let mut out = String::new();
        write_sparkline(&mut out, &d, Level::Ok).unwrap();
        assert!(!out.contains("NaN") && !out.contains("inf"), "{out}");
        assert!(out.contains("peak 100.0%"));
        d.error_share_history = vec![0.5];
        out.clear();
        write_sparkline(&mut out, &d, Level::Ok).unwrap();
        assert!(
            out.contains("<polyline points=\"0.0,"),
            "a single point is a flat line"
        );
        d.error_share_history = vec![0.01; 5000];
        out.clear();
        write_sparkline(&mut out, &d, Level::Ok).unwrap();
        assert_eq!(
            out.split("<polyline points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .split(' ')
                .count(),
            MAX_SPARK_POINTS
        );
    }

    fn alerting(stalled_since_ms: Option<u64>, reason: StallReason) -> AlertingStatus {
        AlertingStatus {
            evaluations: 90,
            last_evaluation_ms: (NOW - 430) * 1000,
            interval_ms: 10_000,
            helper_restarts: 0,
            stalled_since_ms,
            evaluated_elsewhere: false,
            reason,
        }
    }

    #[test]
    fn stalled_alerting_shows_a_red_banner_first() {
        let mut m = sample();
        m.alerting = Some(alerting(Some((NOW - 430) * 1000), StallReason::Helper));
        let html = render_html(&m, &opts());
        let banner = "<p class=\"stalled\" role=\"alert\">alerting is not running since \
                      <time datetime=\"2026-11-22T00:41:15Z\">2026-11-22T00:41:15Z</time> \
                      (7m 10s ago): no helper process can be started. ";
        let at = html
            .find(banner)
            .unwrap_or_else(|| panic!("no banner: {html}"));
        assert!(
            at < html.find("<header>").unwrap(),
            "the banner comes first"
        );
        assert!(html.contains(".stalled{") && html.contains("background:var(--crit)"));
        // Without a known reason, the time alone.
        m.alerting = Some(alerting(Some((NOW - 430) * 1000), StallReason::Unknown));
        let html = render_html(&m, &opts());
        assert!(
            html.contains("(7m 10s ago). Levels below are not updated"),
            "{html}"
        );
    }

    #[test]
    fn running_alerting_shows_no_banner() {
        let mut m = sample();
        m.alerting = Some(alerting(None, StallReason::Unknown));
        assert!(!render_html(&m, &opts()).contains("not running"));
        // Another master evaluating (a binary upgrade) is not a stall either.
        m.alerting = Some(AlertingStatus {
            evaluated_elsewhere: true,
            ..alerting(None, StallReason::Unknown)
        });
        assert!(!render_html(&m, &opts()).contains("class=\"stalled\""));
        m.alerting = None;
        assert!(!render_html(&m, &opts()).contains("class=\"stalled\""));
    }

    #[test]
    fn empty_configuration() {
        let html = render_html(&Metrics::default(), &opts());
        assert!(html.contains("No <code>status_alert</code> names or probes are configured."));
        assert!(html.contains("<title>OK · nginx status · web-1</title>"));
    }

    /// WCAG 2 contrast ratio of two `#rrggbb` colours.
    fn contrast(a: &str, b: &str) -> f64 {
        let lum = |hex: &str| {
            let c = |i: usize| {
                let v = u8::from_str_radix(&hex[i..i + 2], 16).unwrap() as f64 / 255.0;
                if v <= 0.03928 {
                    v / 12.92
                } else {
                    ((v + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * c(1) + 0.7152 * c(3) + 0.0722 * c(5)
        };
        let (la, lb) = (lum(a), lum(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn text_colours_meet_wcag_aa() {
        // (text, background) pairs as used by the style sheet, light and dark.
        let pairs = [
            ("#1a1a1a", "#ffffff"),
            ("#1a1a1a", "#f5f6f8"),
            ("#555555", "#f5f6f8"),
            ("#0b57d0", "#f5f6f8"),
            ("#ffffff", "#b00020"),
            ("#000000", "#ffb000"),
            ("#ffffff", "#1b7f3b"),
            ("#ffffff", "#5f6368"),
            ("#e8e8e8", "#1e1e1e"),
            ("#b0b0b0", "#1e1e1e"),
            ("#8ab4f8", "#1e1e1e"),
        ];
        for (fg, bg) in pairs {
            assert!(
                contrast(fg, bg) >= 4.5,
                "{fg} on {bg}: {:.2}",
                contrast(fg, bg)
            );
        }
        for colour in [
            "#b00020", "#ffb000", "#1b7f3b", "#5f6368", "#0b57d0", "#555", "#f5f6f8",
        ] {
            assert!(CSS.contains(colour), "{colour} no longer in the CSS");
        }
    }

    #[test]
    fn number_formats() {
        assert_eq!(fmt_seconds(0.0042), "4.2 ms");
        assert_eq!(fmt_seconds(0.25), "250 ms");
        assert_eq!(fmt_seconds(1.5), "1.50 s");
        assert_eq!(fmt_seconds(f64::NAN), "–");
        assert_eq!(fmt_share(0.123), "12.3%");
        assert_eq!(fmt_share(f64::INFINITY), "0.0%");
        assert_eq!(trim_num(12.5), "12.5");
        assert_eq!(safe_href(" https://a/b "), Some("https://a/b".into()));
        assert_eq!(safe_href("HTTPS://a"), Some("HTTPS://a".into()));
        assert_eq!(safe_href("javascript:alert(1)"), None);
        assert_eq!(safe_href("https://a b"), None);
    }
}
