//! Discord webhook payloads for alert events.
//!
//! Everything here is pure formatting: no I/O, no nginx, no panics. Discord rejects a whole
//! webhook call (HTTP 400) when any single limit is exceeded, so every string that reaches a
//! payload goes through [`truncate_chars`] and the embed budget logic below; an alert that is
//! merely shortened is far better than one that is never delivered. Titles are the ones of
//! `vocab::title`, descriptions and fields those of `describe`, shared with Slack.

use serde_json::{json, Value};

use crate::notify::describe::{event_description, event_fields};
use crate::vocab::event::{AlertEvent, EventDetail, Level};
use crate::vocab::text::{clip, iso8601, truncate_chars, MAX_TIMESTAMP};
use crate::vocab::title::{kind_label, title};

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

// Names in the multi-event summary line: ten of them must fit in `content` together.
const CONTENT_NAME: usize = 100;
// Names in descriptions; the embed budget may shorten them further.
const DESCRIPTION_NAME: usize = 200;

/// The embed colour of a level.
fn level_color(level: Level) -> u32 {
    match level {
        Level::Critical => COLOR_RED,
        Level::Warning => COLOR_AMBER,
        Level::Ok => COLOR_GREEN,
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
        EventDetail::ErrorRatio(l) => level_color(l.level),
        EventDetail::Latency(l) => level_color(l.level),
        EventDetail::Slo(l) => level_color(l.level),
        EventDetail::Traffic(l) => level_color(l.level),
        EventDetail::Certificate(c) => level_color(c.level),
        EventDetail::Probe(p) if p.up => COLOR_GREEN,
        EventDetail::Probe(_) => COLOR_RED,
    }
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
    use crate::vocab::event::samples::*;
    use crate::vocab::title::log_line;

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
    fn title_resolved_with_duration() {
        let mut l = error_ratio(Level::Ok, 8, 1000);
        l.previous = Level::Critical;
        let ev = event("be", EventDetail::ErrorRatio(l));
        assert_eq!(title(&ev), "RESOLVED be after 7m 10s");
        let embed = only_embed(&ev);
        assert_eq!(
            embed["description"],
            "be recovered: 5xx share 0.8% is below 5%."
        );
    }

    #[test]
    fn colours_by_kind() {
        let colour = |detail| only_embed(&event("be", detail))["color"].as_u64();
        let red = Some(u64::from(COLOR_RED));
        let green = Some(u64::from(COLOR_GREEN));
        assert_eq!(
            colour(EventDetail::ErrorRatio(error_ratio(Level::Critical, 1, 2))),
            red
        );
        let amber = Some(u64::from(COLOR_AMBER));
        assert_eq!(
            colour(EventDetail::ErrorRatio(error_ratio(Level::Warning, 1, 2))),
            amber
        );
        assert_eq!(
            colour(EventDetail::ErrorRatio(error_ratio(Level::Ok, 0, 2))),
            green
        );
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
    fn timestamps_are_iso8601_within_four_digit_years() {
        assert_eq!(
            only_embed(&critical("be"))["timestamp"],
            "2026-11-22T10:15:30Z"
        );
        let mut far = critical("be");
        far.at_unix = u64::MAX;
        assert!(only_embed(&far).get("timestamp").is_none());
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
    fn the_peers_field_names_the_largest_shares() {
        let mut ev = critical("be");
        assert_eq!(field(&only_embed(&ev), "Peers"), None);
        if let EventDetail::ErrorRatio(l) = &mut ev.detail {
            l.top_peers = vec![
                ("10.0.0.3:8080".into(), 0.82),
                ("10.0.0.4:8080".into(), 0.18),
            ];
        }
        assert_eq!(
            field(&only_embed(&ev), "Peers"),
            Some("5xx mostly from 10.0.0.3:8080 (82 %), 10.0.0.4:8080 (18 %)")
        );
        // Latency and SLO alerts the same way.
        let peers = vec![("10.0.0.3:8080".to_string(), 1.0)];
        let mut lat = latency(Level::Critical, Some(2400.0));
        lat.top_peers = peers.clone();
        let mut burn = slo(Level::Critical, 20.0);
        burn.top_peers = peers;
        for detail in [EventDetail::Latency(lat), EventDetail::Slo(burn)] {
            let ev = event("be", detail);
            assert_eq!(
                field(&only_embed(&ev), "Peers"),
                Some("5xx mostly from 10.0.0.3:8080 (100 %)")
            );
        }
        let ev = event(
            "be",
            EventDetail::Latency(latency(Level::Critical, Some(2400.0))),
        );
        assert_eq!(field(&only_embed(&ev), "Peers"), None);
    }

    #[test]
    fn optional_fields_absent() {
        let mut l = error_ratio(Level::Critical, 5, 40);
        l.warn_pct = None;
        l.crit_pct = 12.5;
        l.top_codes.clear();
        let mut ev = event("be", EventDetail::ErrorRatio(l));
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
        let resolved = event(
            "api",
            EventDetail::ErrorRatio(error_ratio(Level::Ok, 0, 10)),
        );
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
            let mut l = error_ratio(Level::Critical, 1, 3);
            l.top_codes = vec![(name.clone(), 1); 30];
            let kinds = [
                event(&name, EventDetail::ErrorRatio(l)),
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
        let mut l = error_ratio(Level::Critical, 1, 3);
        l.top_codes = (0..30).map(|i| (format!("{i}{huge}"), i)).collect();
        let mut ev = event(
            &huge,
            EventDetail::Probe(probe(false, Some(&huge), Some(1))),
        );
        ev.link = Some(huge.clone());
        ev.runbook = Some(huge.clone());
        let loc_ev = AlertEvent {
            detail: EventDetail::ErrorRatio(l),
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
        let mut l = error_ratio(Level::Warning, 60, 1000);
        l.top_codes = (0..30)
            .map(|i| (format!("{}", 500 + i), 1000 - i))
            .collect();
        let ev = event("be", EventDetail::ErrorRatio(l));
        let embed = only_embed(&ev);
        let top = field(&embed, "Top status codes").unwrap_or_default();
        assert!(top.starts_with("500 × 1000, 501 × 999"));
        assert!(top.ends_with("529 × 971"));
        assert!(log_line(&ev, "h").contains("top 500 × 1000, 501 × 999"));
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
