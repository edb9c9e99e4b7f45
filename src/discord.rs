//! Discord webhook payloads and error-log lines for alert events.
//!
//! Everything here is pure formatting: no I/O, no nginx, no panics. Discord rejects a whole
//! webhook call (HTTP 400) when any single limit is exceeded, so every string that reaches a
//! payload goes through [`truncate_chars`] and the embed budget logic below; an alert that is
//! merely shortened is far better than one that is never delivered.
//!
//! Title formats (shared by embeds, single-event `content` and log lines):
//!
//! - firing: `CRITICAL be: 5xx 12.3% over 5m`, `WARNING be: 5xx 6.0% over 5m`
//! - repeat of a firing level: `CRITICAL be: 5xx 12.3% over 5m (still firing)`
//! - resolved: `RESOLVED be after 7m 10s`
//! - probe down: `DOWN be: http://10.0.0.5:8080/health (connection refused)`; without a reason
//!   but with an HTTP status: `DOWN be: http://10.0.0.5:8080/health (status 503)`; with neither:
//!   `DOWN be: http://10.0.0.5:8080/health`
//! - probe up: `UP be: http://10.0.0.5:8080/health after 3m 5s`
//! - latency (`latency=`): `CRITICAL api: p95 2.4s over 5m` (`480ms` below a second),
//!   `RESOLVED api latency after 3m`
//! - error budget (`slo=`): `CRITICAL api: error budget burning 15.2x (slo 99.9%)`,
//!   `RESOLVED api error budget after 3m`

use serde_json::{json, Value};

use crate::event::{
    AlertEvent, EventDetail, LatencyEvent, Level, LocationEvent, ProbeEvent, SloEvent,
};

/// Webhook `username` and embed footer text.
pub(crate) const BOT_NAME: &str = "nginx-status-alert";

/// Red for critical alerts and failed probes.
const COLOR_RED: u32 = 0xE0_1E_5A;
/// Amber for warnings.
const COLOR_AMBER: u32 = 0xF2_A9_00;
/// Green for resolved alerts and recovered probes.
const COLOR_GREEN: u32 = 0x2E_B6_7D;

// Discord's documented limits, in Unicode scalar values.
const MAX_CONTENT: usize = 2000;
const MAX_EMBEDS: usize = 10;
const MAX_TITLE: usize = 256;
const MAX_DESCRIPTION: usize = 4096;
const MAX_FIELDS: usize = 25;
const MAX_FIELD_NAME: usize = 256;
const MAX_FIELD_VALUE: usize = 1024;
const MAX_FOOTER: usize = 2048;
const MAX_EMBED_TOTAL: usize = 6000;

// Per-piece caps inside titles, so that a huge name cannot push the figures out of the title.
const TITLE_NAME: usize = 80;
const TITLE_TARGET: usize = 100;
const TITLE_REASON: usize = 60;
// Names in the multi-event summary line: ten of them must fit in `content` together.
const CONTENT_NAME: usize = 100;
// Pieces of descriptions; the embed budget may shorten them further.
const DESCRIPTION_NAME: usize = 200;
const DESCRIPTION_REASON: usize = 500;
// Log lines: nginx cuts error-log messages at NGX_MAX_ERROR_STR (2048 bytes) anyway, so keep
// the interesting parts short enough that they all survive.
const LOG_URL: usize = 300;
const LOG_TOP: usize = 200;
const LOG_MAX: usize = 1024;

/// Truncates `s` to at most `max` characters, ending a cut string with `…`.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    // Find the byte offset of the char that would be the (max+1)-th; none means it fits.
    match s.char_indices().nth(max) {
        None => s.to_owned(),
        Some(_) if max == 0 => String::new(),
        Some(_) => {
            // Keep max-1 chars so that the ellipsis brings the total back to exactly `max`.
            let cut = s.char_indices().nth(max - 1).map_or(s.len(), |(i, _)| i);
            let mut out = String::with_capacity(cut + '…'.len_utf8());
            out.push_str(&s[..cut]);
            out.push('…');
            out
        }
    }
}

/// Replaces control characters (including `\n`, `\r`, `\t`) and Unicode line/paragraph
/// separators with spaces, so that any input stays on one line.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Truncates and flattens untrusted input in one step (truncating first keeps the work small).
pub(crate) fn clip(s: &str, max: usize) -> String {
    one_line(&truncate_chars(s, max))
}

/// Treats an empty or whitespace-only optional string as absent.
pub(crate) fn non_blank(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|v| !v.trim().is_empty())
}

/// Formats an elapsed time with its two most significant units, e.g. `7m 10s`, `2h 3m`, `1d 2h`.
pub fn format_duration(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(i) = UNITS.iter().position(|&(u, _)| secs >= u) else {
        return "0s".to_owned();
    };
    let (unit, suffix) = UNITS[i];
    let mut out = format!("{}{}", secs / unit, suffix);
    // A zero second unit is noise ("2h 0m"); leave it out.
    if let Some(&(next, next_suffix)) = UNITS.get(i + 1) {
        let rest = secs % unit / next;
        if rest > 0 {
            out.push_str(&format!(" {rest}{next_suffix}"));
        }
    }
    out
}

/// Formats a window length compactly as in the configuration, e.g. `5m`, `10s`, `1h30m`.
pub fn format_window(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3_600, "h"),
        (secs % 3_600 / 60, "m"),
        (secs % 60, "s"),
    ];
    parts
        .iter()
        .filter(|(v, _)| *v > 0)
        .map(|(v, s)| format!("{v}{s}"))
        .collect()
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// Howard Hinnant's `civil_from_days`, in unsigned arithmetic because Unix time here is never
/// negative; eras are 400-year cycles starting on 0000-03-01 so leap days fall at year end.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // u64::MAX / 86400 + 719468 is far below u64::MAX, so nothing here can overflow.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Formats Unix seconds as ISO 8601 UTC, e.g. `2026-11-22T10:15:30Z`.
pub fn iso8601(unix: u64) -> String {
    let (y, mo, d) = civil_from_days(unix / 86_400);
    let rem = unix % 86_400;
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Last second of 9999-12-31: Discord only accepts four-digit years in `timestamp`.
pub(crate) const MAX_TIMESTAMP: u64 = 253_402_300_799;

/// Formats a percentage without trailing zeros: `5`, `12.5`, `0.25`.
pub(crate) fn fmt_pct(v: f64) -> String {
    let s = format!("{v:.3}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        // NaN and infinities have no fraction to trim.
        s
    }
}

/// A request time in titles: `480ms` below a second, else seconds with one decimal (`2.4s`).
fn fmt_latency(ms: Option<f64>) -> String {
    match ms {
        None => "n/a".to_owned(),
        Some(ms) if ms < 1000.0 => format!("{ms:.0}ms"),
        Some(ms) => format!("{:.1}s", ms / 1000.0),
    }
}

/// A configured threshold: `500ms`, `2s`, `1.5s`.
fn fmt_threshold_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", fmt_pct(ms as f64 / 1000.0))
    }
}

/// `warn 500ms · crit 2s` for a latency alert.
fn latency_thresholds(l: &LatencyEvent) -> String {
    let warn = format!("warn {}", fmt_threshold_ms(l.warn_ms));
    match l.crit_ms {
        Some(c) => format!("{warn} · crit {}", fmt_threshold_ms(c)),
        None => warn,
    }
}

/// `5m 15.2x · 30m 7.0x · 1h 14.6x · 6h 3.1x`.
fn fmt_burn_windows(windows: &[(String, f64)]) -> String {
    windows
        .iter()
        .map(|(w, r)| format!("{} {r:.1}x", clip(w, 16)))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The embed colour of a level.
fn level_color(level: Level) -> u32 {
    match level {
        Level::Critical => COLOR_RED,
        Level::Warning => COLOR_AMBER,
        Level::Ok => COLOR_GREEN,
    }
}

/// Formats top status codes as `502 × 120, 504 × 30`.
fn fmt_top(codes: &[(String, u64)]) -> String {
    codes
        .iter()
        .map(|(code, n)| format!("{} × {n}", clip(code, 32)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Short upper-case word for the event kind, used in the multi-event summary line.
pub(crate) fn kind_label(event: &AlertEvent) -> &'static str {
    match &event.detail {
        EventDetail::Location(l) if l.level == Level::Ok => "RESOLVED",
        EventDetail::Location(l) => l.level.label(),
        EventDetail::Probe(p) if p.up => "UP",
        EventDetail::Probe(_) => "DOWN",
        EventDetail::Latency(l) if l.level == Level::Ok => "RESOLVED",
        EventDetail::Latency(l) => l.level.label(),
        EventDetail::Slo(l) if l.level == Level::Ok => "RESOLVED",
        EventDetail::Slo(l) => l.level.label(),
    }
}

/// One-line title of an event (see the module docs for the formats), at most 256 characters.
pub fn title(event: &AlertEvent) -> String {
    let name = clip(&event.name, TITLE_NAME);
    let t = match &event.detail {
        EventDetail::Location(l) if l.level == Level::Ok => format!(
            "RESOLVED {name} after {}",
            format_duration(event.at_unix.saturating_sub(l.since_unix))
        ),
        EventDetail::Location(l) => {
            let mut t = format!(
                "{} {name}: 5xx {:.1}% over {}",
                l.level.label(),
                l.ratio_pct(),
                format_window(l.window_secs)
            );
            if l.repeat {
                t.push_str(" (still firing)");
            }
            t
        }
        EventDetail::Probe(p) => {
            let target = clip(&p.target, TITLE_TARGET);
            if p.up {
                format!(
                    "UP {name}: {target} after {}",
                    format_duration(event.at_unix.saturating_sub(p.since_unix))
                )
            } else {
                let mut t = format!("DOWN {name}: {target}");
                // The reason is the most telling; a bare status stands in when there is none.
                match (non_blank(&p.reason), p.status) {
                    (Some(r), _) => t.push_str(&format!(" ({})", clip(r, TITLE_REASON))),
                    (None, Some(s)) => t.push_str(&format!(" (status {s})")),
                    (None, None) => {}
                }
                t
            }
        }
        EventDetail::Latency(l) if l.level == Level::Ok => format!(
            "RESOLVED {name} latency after {}",
            format_duration(event.at_unix.saturating_sub(l.since_unix))
        ),
        EventDetail::Latency(l) => {
            let mut t = format!(
                "{} {name}: {} {} over {}",
                l.level.label(),
                clip(&l.percentile, 8),
                fmt_latency(l.estimate_ms),
                format_window(l.window_secs)
            );
            if l.repeat {
                t.push_str(" (still firing)");
            }
            t
        }
        EventDetail::Slo(l) if l.level == Level::Ok => format!(
            "RESOLVED {name} error budget after {}",
            format_duration(event.at_unix.saturating_sub(l.since_unix))
        ),
        EventDetail::Slo(l) => {
            let mut t = format!(
                "{} {name}: error budget burning {:.1}x (slo {}%)",
                l.level.label(),
                l.burn_rate,
                fmt_pct(l.slo_pct)
            );
            if l.repeat {
                t.push_str(" (still firing)");
            }
            t
        }
    };
    truncate_chars(&t, MAX_TITLE)
}

/// One-sentence explanation for a location event.
fn location_description(name: &str, l: &LocationEvent) -> String {
    let crit = fmt_pct(l.crit_pct);
    let warn = l.warn_pct.map(fmt_pct);
    let still = l.repeat || l.previous == l.level;
    match l.level {
        Level::Ok => format!(
            "{name} recovered: 5xx share {:.1}% is below {}%.",
            l.ratio_pct(),
            warn.unwrap_or(crit)
        ),
        Level::Critical if still => {
            format!("5xx share of {name} is still above the critical threshold ({crit}%).")
        }
        Level::Critical => {
            format!("5xx share of {name} crossed the critical threshold ({crit}%).")
        }
        Level::Warning => {
            let warn = warn.map_or_else(|| "warning threshold".to_owned(), |w| format!("{w}%"));
            if still {
                format!("5xx share of {name} is still above the warning threshold ({warn}).")
            } else if l.previous == Level::Critical {
                format!(
                    "5xx share of {name} fell below the critical threshold ({crit}%) \
                     but is still above the warning threshold ({warn})."
                )
            } else {
                format!("5xx share of {name} crossed the warning threshold ({warn}).")
            }
        }
    }
}

/// One-sentence explanation for a latency event.
fn latency_description(name: &str, l: &LatencyEvent) -> String {
    let p = clip(&l.percentile, 8);
    let est = fmt_latency(l.estimate_ms);
    let warn = fmt_threshold_ms(l.warn_ms);
    let still = l.repeat || l.previous == l.level;
    match (l.level, l.crit_ms.map(fmt_threshold_ms)) {
        (Level::Ok, _) => format!("{name} recovered: {p} request time {est} is below {warn}."),
        (Level::Critical, Some(crit)) if still => {
            format!("{p} request time of {name} ({est}) is still above the critical threshold ({crit}).")
        }
        (Level::Critical, crit) => format!(
            "{p} request time of {name} ({est}) crossed the critical threshold ({}).",
            crit.unwrap_or(warn)
        ),
        (Level::Warning, _) if still => {
            format!(
                "{p} request time of {name} ({est}) is still above the warning threshold ({warn})."
            )
        }
        (Level::Warning, _) if l.previous == Level::Critical => format!(
            "{p} request time of {name} ({est}) fell below the critical threshold but is still \
             above the warning threshold ({warn})."
        ),
        (Level::Warning, _) => {
            format!("{p} request time of {name} ({est}) crossed the warning threshold ({warn}).")
        }
    }
}

/// One-sentence explanation for an error-budget event.
fn slo_description(name: &str, l: &SloEvent) -> String {
    let slo = fmt_pct(l.slo_pct);
    // Windows are shortest first: x1, x6, x12, x72 (5m, 30m, 1h, 6h by default).
    let window = |i: usize| {
        l.windows
            .get(i)
            .map_or("?".to_owned(), |(w, _)| clip(w, 16))
    };
    let pair = match l.level {
        Level::Ok => {
            return format!(
                "{name} recovered: its error budget ({slo}% SLO) is no longer burning fast."
            )
        }
        Level::Critical => (window(0), window(2)),
        Level::Warning => (window(1), window(3)),
    };
    format!(
        "{name} is burning its error budget ({slo}% SLO) at least {:.1}x as fast as allowed over \
         both {} and {}.",
        l.burn_rate, pair.0, pair.1
    )
}

/// One-sentence explanation for a probe event.
fn probe_description(name: &str, at_unix: u64, p: &ProbeEvent) -> String {
    if p.up {
        let down = format_duration(at_unix.saturating_sub(p.since_unix));
        return format!("Health probe {name} is healthy again after {down} down.");
    }
    match (non_blank(&p.reason), p.status) {
        (Some(r), _) => format!(
            "Health probe {name} failed: {}.",
            clip(r, DESCRIPTION_REASON)
        ),
        (None, Some(s)) => format!("Health probe {name} got unexpected status {s}."),
        (None, None) => format!("Health probe {name} failed."),
    }
}

/// An embed field before serialisation; names are fixed ASCII, values are untrusted.
struct Field {
    name: &'static str,
    value: String,
    inline: bool,
}

impl Field {
    /// Builds a field whose value is one line and never empty (Discord rejects empty values).
    fn new(name: &'static str, value: &str, inline: bool) -> Field {
        let value = clip(value, MAX_FIELD_VALUE);
        let value = if value.trim().is_empty() {
            "-".to_owned()
        } else {
            value
        };
        Field {
            name,
            value,
            inline,
        }
    }
}

/// An embed before serialisation, kept structured so that its size can be budgeted.
struct Embed {
    title: String,
    description: String,
    color: u32,
    timestamp: Option<String>,
    fields: Vec<Field>,
}

impl Embed {
    /// Characters Discord counts towards the 6000 total if every free text is cut to `cap`.
    fn size_with_cap(&self, cap: usize) -> usize {
        let len = |s: &str, max: usize| s.chars().count().min(max).min(cap);
        self.title.chars().count()
            + len(&self.description, MAX_DESCRIPTION)
            + self
                .fields
                .iter()
                .map(|f| f.name.chars().count() + len(&f.value, MAX_FIELD_VALUE))
                .sum::<usize>()
            + BOT_NAME.chars().count()
    }

    /// Characters Discord counts towards the 6000 total.
    fn size(&self) -> usize {
        self.size_with_cap(usize::MAX)
    }

    /// Shortens the description and field values, longest first, until the embed fits alone.
    fn fit(&mut self) {
        if self.size() <= MAX_EMBED_TOTAL {
            return;
        }
        // Find the largest common cap that fits; capping every text at the same length cuts the
        // longest ones first and leaves short, informative values (counts, status) intact. A cap
        // of 1 always fits: title <= 256, at most 8 short field names, and 1 char per text.
        let (mut lo, mut hi) = (1, MAX_DESCRIPTION);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if self.size_with_cap(mid) <= MAX_EMBED_TOTAL {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        self.description = truncate_chars(&self.description, lo);
        for f in &mut self.fields {
            f.value = truncate_chars(&f.value, lo);
        }
    }

    /// Serialises the embed, re-applying every per-item limit as a last line of defence.
    fn to_json(&self) -> Value {
        let fields: Vec<Value> = self
            .fields
            .iter()
            .take(MAX_FIELDS)
            .map(|f| {
                json!({
                    "name": truncate_chars(f.name, MAX_FIELD_NAME),
                    "value": truncate_chars(&f.value, MAX_FIELD_VALUE),
                    "inline": f.inline,
                })
            })
            .collect();
        let mut embed = json!({
            "title": truncate_chars(&self.title, MAX_TITLE),
            "description": truncate_chars(&self.description, MAX_DESCRIPTION),
            "color": self.color,
            "fields": fields,
            "footer": { "text": truncate_chars(BOT_NAME, MAX_FOOTER) },
        });
        if let (Some(ts), Some(obj)) = (&self.timestamp, embed.as_object_mut()) {
            obj.insert("timestamp".to_owned(), Value::String(ts.clone()));
        }
        embed
    }
}

/// Discord's dynamic timestamp markup, rendered in each reader's local time zone.
fn discord_time(unix: u64) -> String {
    format!("<t:{unix}:f>")
}

/// Colour of an event: critical and down red, warning amber, resolved and up green (for
/// latency and error-budget events too).
pub(crate) fn event_color(event: &AlertEvent) -> u32 {
    match &event.detail {
        EventDetail::Location(l) => level_color(l.level),
        EventDetail::Latency(l) => level_color(l.level),
        EventDetail::Slo(l) => level_color(l.level),
        EventDetail::Probe(p) if p.up => COLOR_GREEN,
        EventDetail::Probe(_) => COLOR_RED,
    }
}

/// One-sentence explanation of an event; `name` is the (possibly shortened) NAME to mention.
pub(crate) fn event_description(event: &AlertEvent, name: &str) -> String {
    match &event.detail {
        EventDetail::Location(l) => location_description(name, l),
        EventDetail::Probe(p) => probe_description(name, event.at_unix, p),
        EventDetail::Latency(l) => latency_description(name, l),
        EventDetail::Slo(l) => slo_description(name, l),
    }
}

/// The facts of an event as (name, value, inline) fields, shared by Discord embeds and Slack
/// attachments; `time` formats the "Since" value for the destination. Values are untrusted and
/// not yet cut or escaped.
pub(crate) fn event_fields(
    event: &AlertEvent,
    host: &str,
    time: fn(u64) -> String,
) -> Vec<(&'static str, String, bool)> {
    let mut fields = Vec::new();
    match &event.detail {
        EventDetail::Location(l) => {
            fields.push(("5xx / total", format!("{} / {}", l.errors, l.total), true));
            let crit = format!("crit {}%", fmt_pct(l.crit_pct));
            let thresholds = match l.warn_pct {
                Some(w) => format!("warn {}% · {crit}", fmt_pct(w)),
                None => crit,
            };
            fields.push(("Thresholds", thresholds, true));
            fields.push(("Window", format_window(l.window_secs), true));
            if !l.top_codes.is_empty() {
                fields.push(("Top status codes", fmt_top(&l.top_codes), false));
            }
            fields.push(("Since", time(l.since_unix), true));
        }
        EventDetail::Probe(p) => {
            fields.push(("Target", p.target.clone(), false));
            if !p.up {
                if let Some(r) = non_blank(&p.reason) {
                    fields.push(("Reason", r.to_owned(), true));
                }
            }
            if let Some(s) = p.status {
                fields.push(("Status", s.to_string(), true));
            }
            fields.push(("Probe duration", format!("{} ms", p.duration_ms), true));
            fields.push(("Since", time(p.since_unix), true));
        }
        EventDetail::Latency(l) => {
            let p = clip(&l.percentile, 8);
            let estimate = format!("{p} {}", fmt_latency(l.estimate_ms));
            fields.push(("Percentile", estimate, true));
            fields.push(("Thresholds", latency_thresholds(l), true));
            fields.push(("Window", format_window(l.window_secs), true));
            fields.push(("Requests", l.requests.to_string(), true));
            fields.push(("Since", time(l.since_unix), true));
        }
        EventDetail::Slo(l) => {
            fields.push(("Burn rate", fmt_burn_windows(&l.windows), false));
            fields.push(("SLO", format!("{}%", fmt_pct(l.slo_pct)), true));
            fields.push(("5xx / total", format!("{} / {}", l.errors, l.total), true));
            fields.push(("Since", time(l.since_unix), true));
        }
    }
    fields.push(("Host", host.to_owned(), true));
    // Links go into fields, not the embed `url`: Discord rejects the whole call for a URL it
    // considers malformed, whereas a field value is just text.
    if let Some(link) = non_blank(&event.link) {
        fields.push(("Link", link.to_owned(), false));
    }
    if let Some(runbook) = non_blank(&event.runbook) {
        fields.push(("Runbook", runbook.to_owned(), false));
    }
    fields
}

/// Builds the (not yet budgeted) embed for one event.
fn build_embed(event: &AlertEvent, host: &str) -> Embed {
    let name = clip(&event.name, DESCRIPTION_NAME);
    let fields = event_fields(event, host, discord_time)
        .into_iter()
        .map(|(name, value, inline)| Field::new(name, &value, inline))
        .collect();
    let mut embed = Embed {
        title: title(event),
        description: truncate_chars(&event_description(event, &name), MAX_DESCRIPTION),
        color: event_color(event),
        // Discord rejects five-digit years; the embed is still useful without a timestamp.
        timestamp: (event.at_unix <= MAX_TIMESTAMP).then(|| iso8601(event.at_unix)),
        fields,
    };
    embed.fit();
    embed
}

/// The one-line `content` of a payload: the title for one event, a short list for several.
fn summary(events: &[&AlertEvent]) -> String {
    let line = match events {
        [one] => title(one),
        _ => {
            let list: Vec<String> = events
                .iter()
                .map(|e| format!("{} {}", kind_label(e), clip(&e.name, CONTENT_NAME)))
                .collect();
            format!("{} alerts: {}", events.len(), list.join(", "))
        }
    };
    truncate_chars(&line, MAX_CONTENT)
}

/// Builds one webhook payload from its events and their already budgeted embeds.
fn payload(events: &[&AlertEvent], embeds: &[Value]) -> Value {
    json!({
        "content": summary(events),
        "username": BOT_NAME,
        // Names and reasons are untrusted: never let them ping @everyone, roles or users.
        "allowed_mentions": { "parse": [] },
        "embeds": embeds,
    })
}

/// Builds Discord webhook payloads for `events`, in order, each within all of Discord's limits.
///
/// A payload holds at most 10 embeds and at most 6000 counted characters; an event that does not
/// fit starts the next payload, so events are never dropped, only shortened.
pub fn build_payloads(events: &[AlertEvent], host: &str) -> Vec<Value> {
    let mut payloads = Vec::new();
    let mut batch_events: Vec<&AlertEvent> = Vec::new();
    let mut batch_embeds: Vec<Value> = Vec::new();
    let mut batch_size = 0;
    for event in events {
        let embed = build_embed(event, host);
        let size = embed.size();
        let full = batch_embeds.len() >= MAX_EMBEDS || batch_size + size > MAX_EMBED_TOTAL;
        if full && !batch_embeds.is_empty() {
            payloads.push(payload(&batch_events, &batch_embeds));
            batch_events.clear();
            batch_embeds.clear();
            batch_size = 0;
        }
        batch_events.push(event);
        batch_embeds.push(embed.to_json());
        batch_size += size;
    }
    if !batch_embeds.is_empty() {
        payloads.push(payload(&batch_events, &batch_embeds));
    }
    payloads
}

/// The single error-log line for `event` when no webhook is configured (never contains newlines).
pub fn log_line(event: &AlertEvent, host: &str) -> String {
    // The host is implicit in nginx's own log; it is accepted for symmetry with the webhook.
    let _ = host;
    let mut line = format!("status_alert: {}", title(event));
    let since = match &event.detail {
        EventDetail::Location(l) => {
            line.push_str(&format!(" ({}/{} requests", l.errors, l.total));
            if let Some(w) = l.warn_pct {
                line.push_str(&format!(", warn {}%", fmt_pct(w)));
            }
            line.push_str(&format!(", crit {}%", fmt_pct(l.crit_pct)));
            if !l.top_codes.is_empty() {
                let top = truncate_chars(&fmt_top(&l.top_codes), LOG_TOP);
                line.push_str(&format!(", top {top}"));
            }
            line.push(')');
            l.since_unix
        }
        EventDetail::Probe(p) => {
            line.push_str(&format!(", probe took {} ms", p.duration_ms));
            // The title shows the reason when there is one; keep the status visible as well.
            if let (false, Some(_), Some(s)) = (p.up, non_blank(&p.reason), p.status) {
                line.push_str(&format!(", status {s}"));
            }
            p.since_unix
        }
        EventDetail::Latency(l) => {
            line.push_str(&format!(
                " ({} {} over {} requests, {})",
                clip(&l.percentile, 8),
                fmt_latency(l.estimate_ms),
                l.requests,
                latency_thresholds(l)
            ));
            l.since_unix
        }
        EventDetail::Slo(l) => {
            let windows = truncate_chars(&fmt_burn_windows(&l.windows), LOG_TOP);
            line.push_str(&format!(
                " (burn {windows}, {}/{} requests)",
                l.errors, l.total
            ));
            l.since_unix
        }
    };
    line.push_str(&format!(", since {}", iso8601(since)));
    if let Some(link) = non_blank(&event.link) {
        line.push_str(&format!(", link {}", truncate_chars(link, LOG_URL)));
    }
    if let Some(runbook) = non_blank(&event.runbook) {
        line.push_str(&format!(", runbook {}", truncate_chars(runbook, LOG_URL)));
    }
    clip(&line, LOG_MAX)
}

/// Asserts every Discord webhook limit on one payload built by [`build_payloads`].
#[cfg(test)]
pub(crate) fn assert_discord_limits(payload: &Value) {
    let chars = |v: &Value| v.as_str().map(|s| s.chars().count());
    let content = chars(&payload["content"]).expect("content is a string");
    assert!(content <= MAX_CONTENT, "content has {content} chars");
    assert_eq!(payload["allowed_mentions"], json!({ "parse": [] }));
    assert_eq!(payload["username"], json!(BOT_NAME));
    let embeds = payload["embeds"].as_array().expect("embeds is an array");
    assert!(
        !embeds.is_empty() && embeds.len() <= MAX_EMBEDS,
        "{} embeds",
        embeds.len()
    );
    let mut total = 0;
    for embed in embeds {
        let title = chars(&embed["title"]).expect("title");
        let description = chars(&embed["description"]).expect("description");
        let footer = chars(&embed["footer"]["text"]).expect("footer");
        assert!(title <= MAX_TITLE, "title has {title} chars");
        assert!(
            description <= MAX_DESCRIPTION,
            "description has {description} chars"
        );
        assert!(footer <= MAX_FOOTER, "footer has {footer} chars");
        assert!(embed["color"].is_u64());
        total += title + description + footer;
        let fields = embed["fields"].as_array().expect("fields is an array");
        assert!(fields.len() <= MAX_FIELDS, "{} fields", fields.len());
        for field in fields {
            let name = chars(&field["name"]).expect("field name");
            let value = chars(&field["value"]).expect("field value");
            assert!(
                (1..=MAX_FIELD_NAME).contains(&name),
                "field name has {name} chars"
            );
            assert!(
                (1..=MAX_FIELD_VALUE).contains(&value),
                "field value has {value} chars"
            );
            let text = field["value"].as_str().unwrap_or_default();
            assert!(!text.trim().is_empty(), "blank field value");
            total += name + value;
        }
        if let Some(ts) = embed.get("timestamp") {
            assert_eq!(chars(ts), Some(20), "timestamp {ts}");
        }
    }
    assert!(
        total <= MAX_EMBED_TOTAL,
        "payload embeds total {total} chars"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: u64 = 1_795_342_530; // 2026-11-22T10:15:30Z

    fn loc(level: Level, errors: u64, total: u64) -> LocationEvent {
        LocationEvent {
            level,
            previous: Level::Ok,
            repeat: false,
            errors,
            total,
            window_secs: 300,
            warn_pct: Some(5.0),
            crit_pct: 10.0,
            top_codes: vec![("502".into(), 120), ("504".into(), 3)],
            since_unix: AT - 430,
        }
    }

    fn probe(up: bool, reason: Option<&str>, status: Option<u16>) -> ProbeEvent {
        ProbeEvent {
            up,
            target: "http://10.0.0.5:8080/health".into(),
            reason: reason.map(str::to_owned),
            status,
            duration_ms: 5003,
            since_unix: AT - 185,
        }
    }

    fn event(name: &str, detail: EventDetail) -> AlertEvent {
        AlertEvent {
            name: name.into(),
            at_unix: AT,
            link: Some("https://logs.example/be".into()),
            runbook: Some("https://wiki.example/runbook".into()),
            detail,
        }
    }

    fn critical(name: &str) -> AlertEvent {
        event(name, EventDetail::Location(loc(Level::Critical, 123, 1000)))
    }

    fn field<'a>(embed: &'a Value, name: &str) -> Option<&'a str> {
        embed["fields"]
            .as_array()?
            .iter()
            .find(|f| f["name"] == name)
            .and_then(|f| f["value"].as_str())
    }

    fn only_embed(ev: &AlertEvent) -> Value {
        let payloads = build_payloads(std::slice::from_ref(ev), "web-1");
        assert_eq!(payloads.len(), 1);
        assert_discord_limits(&payloads[0]);
        payloads[0]["embeds"][0].clone()
    }

    #[test]
    fn title_critical_and_warning() {
        assert_eq!(title(&critical("be")), "CRITICAL be: 5xx 12.3% over 5m");
        let warn = event("be", EventDetail::Location(loc(Level::Warning, 60, 1000)));
        assert_eq!(title(&warn), "WARNING be: 5xx 6.0% over 5m");
    }

    #[test]
    fn title_repeat_is_still_firing() {
        let mut l = loc(Level::Critical, 123, 1000);
        l.repeat = true;
        l.previous = Level::Critical;
        l.window_secs = 5400;
        let ev = event("be", EventDetail::Location(l));
        assert_eq!(
            title(&ev),
            "CRITICAL be: 5xx 12.3% over 1h30m (still firing)"
        );
    }

    #[test]
    fn title_resolved_with_duration() {
        let mut l = loc(Level::Ok, 8, 1000);
        l.previous = Level::Critical;
        let ev = event("be", EventDetail::Location(l));
        assert_eq!(title(&ev), "RESOLVED be after 7m 10s");
        let embed = only_embed(&ev);
        assert_eq!(
            embed["description"],
            "be recovered: 5xx share 0.8% is below 5%."
        );
    }

    #[test]
    fn title_probe_down_variants() {
        let url = "http://10.0.0.5:8080/health";
        let refused = event(
            "be",
            EventDetail::Probe(probe(false, Some("connection refused"), None)),
        );
        assert_eq!(
            title(&refused),
            format!("DOWN be: {url} (connection refused)")
        );
        let status = event("be", EventDetail::Probe(probe(false, None, Some(503))));
        assert_eq!(title(&status), format!("DOWN be: {url} (status 503)"));
        let both = event(
            "be",
            EventDetail::Probe(probe(false, Some("timeout"), Some(503))),
        );
        assert_eq!(title(&both), format!("DOWN be: {url} (timeout)"));
        let blank = event("be", EventDetail::Probe(probe(false, Some("  "), None)));
        assert_eq!(title(&blank), format!("DOWN be: {url}"));
    }

    #[test]
    fn title_probe_up_with_downtime() {
        let ev = event("be", EventDetail::Probe(probe(true, None, Some(200))));
        assert_eq!(title(&ev), "UP be: http://10.0.0.5:8080/health after 3m 5s");
    }

    #[test]
    fn ratio_has_exactly_one_decimal() {
        let cases = [
            (1, 8, "12.5"),
            (1, 3, "33.3"),
            (2, 3, "66.7"),
            (9999, 10000, "100.0"),
        ];
        for (errors, total, want) in cases {
            let ev = event(
                "x",
                EventDetail::Location(loc(Level::Critical, errors, total)),
            );
            assert_eq!(title(&ev), format!("CRITICAL x: 5xx {want}% over 5m"));
        }
        let empty = event("x", EventDetail::Location(loc(Level::Warning, 0, 0)));
        assert_eq!(title(&empty), "WARNING x: 5xx 0.0% over 5m");
    }

    #[test]
    fn colours_by_kind() {
        let colour = |detail| only_embed(&event("be", detail))["color"].as_u64();
        let red = Some(u64::from(COLOR_RED));
        let green = Some(u64::from(COLOR_GREEN));
        assert_eq!(
            colour(EventDetail::Location(loc(Level::Critical, 1, 2))),
            red
        );
        let amber = Some(u64::from(COLOR_AMBER));
        assert_eq!(
            colour(EventDetail::Location(loc(Level::Warning, 1, 2))),
            amber
        );
        assert_eq!(colour(EventDetail::Location(loc(Level::Ok, 0, 2))), green);
        assert_eq!(colour(EventDetail::Probe(probe(false, None, None))), red);
        assert_eq!(colour(EventDetail::Probe(probe(true, None, None))), green);
    }

    #[test]
    fn payload_envelope_always_present() {
        let events = vec![critical("be"); 12];
        for p in build_payloads(&events, "h") {
            assert_eq!(p["allowed_mentions"], json!({ "parse": [] }));
            assert_eq!(p["username"], "nginx-status-alert");
            assert_eq!(
                p["embeds"][0]["footer"],
                json!({ "text": "nginx-status-alert" })
            );
        }
        assert!(build_payloads(&[], "h").is_empty());
    }

    #[test]
    fn iso8601_known_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(iso8601(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(iso8601(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(iso8601(AT), "2026-11-22T10:15:30Z");
        assert_eq!(iso8601(MAX_TIMESTAMP), "9999-12-31T23:59:59Z");
        // Absurd input must not panic.
        assert!(iso8601(u64::MAX).ends_with('Z'));
        assert_eq!(
            only_embed(&critical("be"))["timestamp"],
            "2026-11-22T10:15:30Z"
        );
        let mut far = critical("be");
        far.at_unix = u64::MAX;
        assert!(only_embed(&far).get("timestamp").is_none());
    }

    #[test]
    fn durations_windows_and_percentages() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(430), "7m 10s");
        assert_eq!(format_duration(7_380), "2h 3m");
        assert_eq!(format_duration(7_205), "2h");
        assert_eq!(format_duration(93_600), "1d 2h");
        assert_eq!(format_window(300), "5m");
        assert_eq!(format_window(10), "10s");
        assert_eq!(format_window(3_600), "1h");
        assert_eq!(format_window(5_400), "1h30m");
        assert_eq!(format_window(150), "2m30s");
        assert_eq!(fmt_pct(5.0), "5");
        assert_eq!(fmt_pct(12.5), "12.5");
        assert_eq!(fmt_pct(0.25), "0.25");
    }

    #[test]
    fn location_fields_present() {
        let embed = only_embed(&critical("be"));
        assert_eq!(field(&embed, "5xx / total"), Some("123 / 1000"));
        assert_eq!(field(&embed, "Thresholds"), Some("warn 5% · crit 10%"));
        assert_eq!(field(&embed, "Window"), Some("5m"));
        assert_eq!(
            field(&embed, "Top status codes"),
            Some("502 × 120, 504 × 3")
        );
        assert_eq!(field(&embed, "Since"), Some("<t:1795342100:f>"));
        assert_eq!(field(&embed, "Host"), Some("web-1"));
        assert_eq!(field(&embed, "Link"), Some("https://logs.example/be"));
        assert_eq!(
            field(&embed, "Runbook"),
            Some("https://wiki.example/runbook")
        );
        assert_eq!(
            embed["description"],
            "5xx share of be crossed the critical threshold (10%)."
        );
    }

    #[test]
    fn optional_fields_absent() {
        let mut l = loc(Level::Critical, 5, 40);
        l.warn_pct = None;
        l.crit_pct = 12.5;
        l.top_codes.clear();
        let mut ev = event("be", EventDetail::Location(l));
        ev.link = None;
        ev.runbook = Some(String::new());
        let embed = only_embed(&ev);
        assert_eq!(field(&embed, "Thresholds"), Some("crit 12.5%"));
        assert_eq!(field(&embed, "Top status codes"), None);
        assert_eq!(field(&embed, "Link"), None);
        assert_eq!(field(&embed, "Runbook"), None);
    }

    #[test]
    fn probe_fields() {
        let down = only_embed(&event(
            "be",
            EventDetail::Probe(probe(false, Some("connection refused"), Some(503))),
        ));
        assert_eq!(field(&down, "Target"), Some("http://10.0.0.5:8080/health"));
        assert_eq!(field(&down, "Reason"), Some("connection refused"));
        assert_eq!(field(&down, "Status"), Some("503"));
        assert_eq!(field(&down, "Probe duration"), Some("5003 ms"));
        assert_eq!(field(&down, "Since"), Some("<t:1795342345:f>"));
        assert_eq!(field(&down, "Host"), Some("web-1"));
        let up = only_embed(&event("be", EventDetail::Probe(probe(true, None, None))));
        assert_eq!(field(&up, "Reason"), None);
        assert_eq!(field(&up, "Status"), None);
        assert!(field(&up, "Link").is_some());
    }

    #[test]
    fn empty_host_gives_non_empty_field() {
        let payloads = build_payloads(&[critical("")], " \n ");
        assert_discord_limits(&payloads[0]);
        assert_eq!(field(&payloads[0]["embeds"][0], "Host"), Some("-"));
    }

    #[test]
    fn twenty_five_events_make_three_payloads_in_order() {
        let events: Vec<AlertEvent> = (0..25).map(|i| critical(&format!("loc{i}"))).collect();
        let payloads = build_payloads(&events, "h");
        let sizes: Vec<usize> = payloads
            .iter()
            .map(|p| p["embeds"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [10, 10, 5]);
        let titles: Vec<&str> = payloads
            .iter()
            .flat_map(|p| p["embeds"].as_array().into_iter().flatten())
            .filter_map(|e| e["title"].as_str())
            .collect();
        let want: Vec<String> = events.iter().map(title).collect();
        assert_eq!(titles, want);
        for p in &payloads {
            assert_discord_limits(p);
        }
        assert!(payloads[2]["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("5 alerts: CRITICAL loc20, CRITICAL loc21")));
    }

    #[test]
    fn content_summaries() {
        let resolved = event("api", EventDetail::Location(loc(Level::Ok, 0, 10)));
        let down = event(
            "ai",
            EventDetail::Probe(probe(false, Some("timeout"), None)),
        );
        let one = build_payloads(std::slice::from_ref(&down), "h");
        assert_eq!(one[0]["content"], title(&down));
        let many = build_payloads(&[critical("be"), resolved, down], "h");
        assert_eq!(
            many[0]["content"],
            "3 alerts: CRITICAL be, RESOLVED api, DOWN ai"
        );
    }

    #[test]
    fn hostile_multibyte_names_respect_limits() {
        for unit in ["é", "😀", "\u{301}", "a\n"] {
            let name = unit.repeat(10_000);
            let mut l = loc(Level::Critical, 1, 3);
            l.top_codes = vec![(name.clone(), 1); 30];
            let kinds = [
                event(&name, EventDetail::Location(l)),
                event(
                    &name,
                    EventDetail::Probe(probe(false, Some(&name), Some(500))),
                ),
                event(&name, EventDetail::Probe(probe(true, None, None))),
            ];
            let events: Vec<AlertEvent> = kinds.iter().cycle().take(12).cloned().collect();
            let payloads = build_payloads(&events, &name);
            let embeds: usize = payloads
                .iter()
                .map(|p| p["embeds"].as_array().map_or(0, Vec::len))
                .sum();
            assert_eq!(embeds, 12, "no event may be dropped");
            for p in &payloads {
                assert_discord_limits(p);
                assert!(serde_json::to_string(p).is_ok());
            }
            let t = title(&events[0]);
            assert!(
                t.ends_with("5xx 33.3% over 5m"),
                "figures survive a huge name: {t}"
            );
        }
    }

    #[test]
    fn huge_links_and_runbooks_split_payloads() {
        let mut ev = critical("be");
        ev.link = Some(format!("https://logs.example/{}", "q".repeat(5_000)));
        ev.runbook = Some(format!("https://wiki.example/{}", "€".repeat(5_000)));
        let embed = only_embed(&ev);
        let link = field(&embed, "Link").unwrap_or_default();
        assert!(link.starts_with("https://logs.example/q") && link.ends_with('…'));
        // Each embed is near 2300 chars, so only two fit in one 6000-char payload.
        let events = vec![ev; 10];
        let payloads = build_payloads(&events, "h");
        assert!(payloads.len() >= 4);
        let total: usize = payloads
            .iter()
            .map(|p| p["embeds"].as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(total, 10);
        payloads.iter().for_each(assert_discord_limits);
    }

    #[test]
    fn single_oversized_embed_is_shrunk_to_fit() {
        let huge = "x".repeat(50_000);
        let mut l = loc(Level::Critical, 1, 3);
        l.top_codes = (0..30).map(|i| (format!("{i}{huge}"), i)).collect();
        let mut ev = event(
            &huge,
            EventDetail::Probe(probe(false, Some(&huge), Some(1))),
        );
        ev.link = Some(huge.clone());
        ev.runbook = Some(huge.clone());
        let loc_ev = AlertEvent {
            detail: EventDetail::Location(l),
            ..ev.clone()
        };
        for e in [ev, loc_ev] {
            let embed = only_embed(&e);
            assert!(
                field(&embed, "Probe duration").is_some() || field(&embed, "Window") == Some("5m")
            );
        }
    }

    #[test]
    fn thirty_top_codes_fit() {
        let mut l = loc(Level::Warning, 60, 1000);
        l.top_codes = (0..30)
            .map(|i| (format!("{}", 500 + i), 1000 - i))
            .collect();
        let ev = event("be", EventDetail::Location(l));
        let embed = only_embed(&ev);
        let top = field(&embed, "Top status codes").unwrap_or_default();
        assert!(top.starts_with("500 × 1000, 501 × 999"));
        assert!(top.ends_with("529 × 971"));
        assert!(log_line(&ev, "h").contains("top 500 × 1000, 501 × 999"));
    }

    #[test]
    fn truncate_chars_never_splits_sequences() {
        assert_eq!(truncate_chars("abc", 3), "abc");
        assert_eq!(truncate_chars("abcd", 3), "ab…");
        assert_eq!(truncate_chars("abcd", 0), "");
        assert_eq!(truncate_chars("😀😀😀😀", 2), "😀…");
        assert_eq!(truncate_chars("ééé", 1), "…");
        for max in 0..12 {
            let s = truncate_chars(&"a😀é".repeat(5), max);
            assert!(s.chars().count() <= max);
        }
    }

    #[test]
    fn log_line_location() {
        assert_eq!(
            log_line(&critical("be"), "h"),
            "status_alert: CRITICAL be: 5xx 12.3% over 5m (123/1000 requests, warn 5%, crit 10%, \
             top 502 × 120, 504 × 3), since 2026-11-22T10:08:20Z, link https://logs.example/be, \
             runbook https://wiki.example/runbook"
        );
    }

    #[test]
    fn log_line_probe() {
        let mut ev = event(
            "be",
            EventDetail::Probe(probe(false, Some("connection refused"), None)),
        );
        ev.link = None;
        ev.runbook = None;
        assert_eq!(
            log_line(&ev, "h"),
            "status_alert: DOWN be: http://10.0.0.5:8080/health (connection refused), \
             probe took 5003 ms, since 2026-11-22T10:12:25Z"
        );
    }

    #[test]
    fn log_line_never_has_newlines() {
        let nasty = "be\nINJECTED\r\nline\u{2028}x".repeat(2_000);
        let mut ev = event(
            &nasty,
            EventDetail::Probe(probe(false, Some(&nasty), Some(5))),
        );
        ev.link = Some(nasty.clone());
        let mut l = loc(Level::Critical, 1, 2);
        l.top_codes = vec![(nasty.clone(), 1)];
        let loc_ev = AlertEvent {
            detail: EventDetail::Location(l),
            ..ev.clone()
        };
        for e in [ev, loc_ev] {
            let line = log_line(&e, &nasty);
            assert!(!line.contains(['\n', '\r', '\u{2028}']));
            assert!(line.starts_with("status_alert: "));
            assert!(line.chars().count() <= LOG_MAX);
            assert!(!title(&e).contains('\n'));
        }
    }

    fn latency(level: Level, estimate_ms: Option<f64>) -> LatencyEvent {
        LatencyEvent {
            level,
            previous: Level::Ok,
            repeat: false,
            percentile: "p95".into(),
            estimate_ms,
            warn_ms: 500,
            crit_ms: Some(2000),
            requests: 1200,
            window_secs: 300,
            since_unix: AT - 180,
        }
    }

    fn slo(level: Level, burn_rate: f64) -> SloEvent {
        SloEvent {
            level,
            previous: Level::Ok,
            repeat: false,
            slo_pct: 99.9,
            burn_rate,
            windows: vec![
                ("5m".into(), 20.0),
                ("30m".into(), 16.0),
                ("1h".into(), 15.234),
                ("6h".into(), 3.0),
            ],
            errors: 20,
            total: 1000,
            since_unix: AT - 180,
        }
    }

    #[test]
    fn latency_titles() {
        let crit = event(
            "api",
            EventDetail::Latency(latency(Level::Critical, Some(2400.0))),
        );
        assert_eq!(title(&crit), "CRITICAL api: p95 2.4s over 5m");
        let warn = event(
            "api",
            EventDetail::Latency(latency(Level::Warning, Some(480.4))),
        );
        assert_eq!(title(&warn), "WARNING api: p95 480ms over 5m");
        let mut l = latency(Level::Critical, Some(2400.0));
        l.repeat = true;
        l.previous = Level::Critical;
        let repeat = event("api", EventDetail::Latency(l));
        assert_eq!(
            title(&repeat),
            "CRITICAL api: p95 2.4s over 5m (still firing)"
        );
        let mut l = latency(Level::Ok, Some(120.0));
        l.previous = Level::Warning;
        let resolved = event("api", EventDetail::Latency(l));
        assert_eq!(title(&resolved), "RESOLVED api latency after 3m");
        let embed = only_embed(&crit);
        assert_eq!(embed["color"], COLOR_RED);
        assert_eq!(field(&embed, "Percentile"), Some("p95 2.4s"));
        assert_eq!(field(&embed, "Thresholds"), Some("warn 500ms · crit 2s"));
        assert_eq!(field(&embed, "Requests"), Some("1200"));
        assert_eq!(
            embed["description"],
            "p95 request time of api (2.4s) crossed the critical threshold (2s)."
        );
        assert_eq!(only_embed(&resolved)["color"], COLOR_GREEN);
        assert_eq!(
            log_line(&crit, "h"),
            "status_alert: CRITICAL api: p95 2.4s over 5m (p95 2.4s over 1200 requests, \
             warn 500ms · crit 2s), since 2026-11-22T10:12:30Z, \
             link https://logs.example/be, runbook https://wiki.example/runbook"
        );
    }

    #[test]
    fn slo_titles() {
        let crit = event("api", EventDetail::Slo(slo(Level::Critical, 15.234)));
        assert_eq!(
            title(&crit),
            "CRITICAL api: error budget burning 15.2x (slo 99.9%)"
        );
        let mut l = slo(Level::Ok, 0.5);
        l.previous = Level::Critical;
        let resolved = event("api", EventDetail::Slo(l));
        assert_eq!(title(&resolved), "RESOLVED api error budget after 3m");
        let embed = only_embed(&crit);
        assert_eq!(embed["color"], COLOR_RED);
        assert_eq!(
            field(&embed, "Burn rate"),
            Some("5m 20.0x · 30m 16.0x · 1h 15.2x · 6h 3.0x")
        );
        assert_eq!(field(&embed, "SLO"), Some("99.9%"));
        assert_eq!(
            embed["description"],
            "api is burning its error budget (99.9% SLO) at least 15.2x as fast as allowed over \
             both 5m and 1h."
        );
        assert!(log_line(&crit, "h").contains("(burn 5m 20.0x · 30m 16.0x · 1h 15.2x · 6h 3.0x"));
        let warn = event("api", EventDetail::Slo(slo(Level::Warning, 6.5)));
        assert_eq!(only_embed(&warn)["color"], COLOR_AMBER);
        let both = build_payloads(&[crit, warn, resolved], "h");
        assert_eq!(
            both[0]["content"],
            "3 alerts: CRITICAL api, WARNING api, RESOLVED api"
        );
    }
}
