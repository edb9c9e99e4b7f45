//! Slack incoming-webhook payloads for alert events (`status_alert_webhook ... format=slack`).
//!
//! One message per batch of events: `text` is the one-line summary (the same as Discord's
//! `content`), and each event is a legacy attachment with a colour bar (critical and down red,
//! warning amber, resolved and up green), the event title, a one-sentence description and the
//! fields of the Discord embed. Titles and descriptions are the Discord ones, so every destination
//! tells the same story.
//!
//! No text can ping anyone: Slack only turns `<!channel>`, `<!here>`, `<@U123>` and links into
//! anything when they are written with angle brackets, and every untrusted string has `&`, `<`
//! and `>` escaped as `&amp;`, `&lt;`, `&gt;` (Slack's own formatting rules). `parse: "none"` and
//! `link_names: false` keep a bare `@here` plain text too.
//!
//! Limits (in characters, after escaping, cut without splitting an escape or a UTF-8 sequence):
//! - `text` <= 3000: Slack truncates at 40,000 and splits messages above 4,000; a summary has no
//!   reason to be long.
//! - <= 20 attachments per message (Slack's recommended maximum; it rejects more than 100);
//!   further events go into further messages, in order, never dropped.
//! - attachment `title` <= 256, `text` <= 3000 (Block Kit's text limit; Slack shows
//!   attachment text above 700 characters behind "Show more" and cuts it near 8000),
//!   <= 10 fields, field `title` <= 150 and field `value` <= 2000 (Block Kit's section field
//!   limit; legacy fields have no documented limit, so the nearest documented one is used),
//!   `fallback` <= 300, `footer` <= 300.

use serde_json::{json, Value};

use crate::notify::describe::{event_description, event_fields};
use crate::notify::discord::{event_color, BOT_NAME};
use crate::vocab::event::AlertEvent;
use crate::vocab::text::{iso8601, truncate_chars};
use crate::vocab::title::{kind_label, title};

const MAX_TEXT: usize = 3000;
const MAX_ATTACHMENTS: usize = 20;
const MAX_TITLE: usize = 256;
const MAX_ATTACHMENT_TEXT: usize = 3000;
const MAX_FIELDS: usize = 10;
const MAX_FIELD_TITLE: usize = 150;
const MAX_FIELD_VALUE: usize = 2000;
const MAX_FALLBACK: usize = 300;
const MAX_FOOTER: usize = 300;
// Names in the multi-event summary line; twenty of them fit in `text` together.
const TEXT_NAME: usize = 100;

/// Escapes `s` for Slack text and cuts it to at most `max` characters after escaping.
///
/// Control characters become spaces so that a value stays on its line. A cut string ends with
/// `…`; an escape sequence is never split.
pub fn escape_slack(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max * 4));
    let mut len = 0;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let piece = match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => " ".to_owned(),
            c => c.to_string(),
        };
        let piece_len = piece.chars().count();
        // Leave room for the ellipsis unless this is the last character.
        let room = if chars.peek().is_some() {
            max.saturating_sub(1)
        } else {
            max
        };
        if len + piece_len > room {
            if max > 0 {
                out.push('…');
            }
            return out;
        }
        out.push_str(&piece);
        len += piece_len;
    }
    out
}

/// Cuts Slack text that is already escaped (by [`escape_slack`]) to at most `max` characters
/// without splitting an entity (`&amp;`, `&lt;`, `&gt;`); a cut text ends with `…`, as
/// [`escape_slack`] ends one.
pub fn cut_escaped(s: &str, max: usize) -> String {
    let cut = truncate_chars(s, max);
    let Some(kept) = cut.strip_suffix('…').filter(|_| cut != s) else {
        return cut;
    };
    let kept = match kept.rfind('&') {
        Some(at) if !kept[at..].contains(';') => &kept[..at],
        _ => kept,
    };
    format!("{kept}…")
}

fn field(title: &str, value: &str, short: bool) -> Value {
    let value = escape_slack(value, MAX_FIELD_VALUE);
    json!({
        "title": escape_slack(title, MAX_FIELD_TITLE),
        "value": if value.trim().is_empty() { "-".to_owned() } else { value },
        "short": short,
    })
}

/// The attachment for one event.
fn attachment(event: &AlertEvent, host: &str) -> Value {
    let fields: Vec<Value> = event_fields(event, host, iso8601)
        .into_iter()
        .take(MAX_FIELDS)
        .map(|(name, value, short)| field(name, &value, short))
        .collect();
    let title = title(event);
    json!({
        "fallback": escape_slack(&title, MAX_FALLBACK),
        "color": format!("#{:06X}", event_color(event)),
        "title": escape_slack(&title, MAX_TITLE),
        "text": escape_slack(&event_description(event, &event.name), MAX_ATTACHMENT_TEXT),
        "fields": fields,
        "footer": escape_slack(&format!("{BOT_NAME} · {host}"), MAX_FOOTER),
        "ts": event.at_unix,
        // Plain text everywhere: a NAME with *stars* or `ticks` is shown as written.
        "mrkdwn_in": [],
    })
}

/// The one-line `text` of a message: the title for one event, a short list for several.
fn summary(events: &[AlertEvent]) -> String {
    match events {
        [one] => escape_slack(&title(one), MAX_TEXT),
        _ => {
            let list: Vec<String> = events
                .iter()
                .map(|e| {
                    let name = truncate_chars(&e.name, TEXT_NAME);
                    format!("{} {name}", kind_label(e))
                })
                .collect();
            let line = format!("{} alerts: {}", events.len(), list.join(", "));
            escape_slack(&line, MAX_TEXT)
        }
    }
}

/// Builds Slack incoming-webhook payloads for `events`, in order: one message per 20 events.
pub fn build_payloads(events: &[AlertEvent], host: &str) -> Vec<Value> {
    events
        .chunks(MAX_ATTACHMENTS)
        .map(|batch| {
            let attachments: Vec<Value> = batch.iter().map(|e| attachment(e, host)).collect();
            json!({
                "text": summary(batch),
                "username": BOT_NAME,
                "parse": "none",
                "link_names": false,
                "unfurl_links": false,
                "unfurl_media": false,
                "attachments": attachments,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::event::{ErrorRatioEvent, EventDetail, Level, ProbeEvent};

    const AT: u64 = 1_795_308_505;

    fn location(name: &str, level: Level) -> AlertEvent {
        AlertEvent {
            name: name.into(),
            at_unix: AT,
            link: Some("https://logs.example.com/be?a=1&b=2".into()),
            runbook: None,
            detail: EventDetail::ErrorRatio(ErrorRatioEvent {
                level,
                previous: Level::Ok,
                repeat: false,
                errors: 123,
                total: 1000,
                window_secs: 300,
                warn_pct: Some(5.0),
                crit_pct: 10.0,
                top_codes: vec![("502".into(), 100), ("504".into(), 23)],
                top_peers: Vec::new(),
                since_unix: AT - 430,
            }),
        }
    }

    fn probe_down(name: &str) -> AlertEvent {
        AlertEvent {
            name: name.into(),
            at_unix: AT,
            link: None,
            runbook: None,
            detail: EventDetail::Probe(ProbeEvent {
                up: false,
                target: "http://10.0.0.5:8080/health".into(),
                reason: Some("connection refused".into()),
                status: None,
                duration_ms: 3,
                since_unix: AT,
            }),
        }
    }

    fn field_value<'a>(a: &'a Value, title: &str) -> Option<&'a str> {
        a["fields"]
            .as_array()?
            .iter()
            .find(|f| f["title"] == title)?["value"]
            .as_str()
    }

    /// Every string in the payload, recursively.
    fn strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
            Value::Object(o) => o.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }

    fn assert_slack_limits(p: &Value) {
        let len = |v: &Value| v.as_str().unwrap().chars().count();
        assert!(len(&p["text"]) <= MAX_TEXT);
        let attachments = p["attachments"].as_array().unwrap();
        assert!(!attachments.is_empty() && attachments.len() <= MAX_ATTACHMENTS);
        for a in attachments {
            assert!(len(&a["title"]) <= MAX_TITLE);
            assert!(len(&a["text"]) <= MAX_ATTACHMENT_TEXT);
            assert!(len(&a["fallback"]) <= MAX_FALLBACK);
            assert!(len(&a["footer"]) <= MAX_FOOTER);
            let fields = a["fields"].as_array().unwrap();
            assert!(fields.len() <= MAX_FIELDS);
            for f in fields {
                assert!(len(&f["title"]) <= MAX_FIELD_TITLE);
                assert!((1..=MAX_FIELD_VALUE).contains(&len(&f["value"])));
            }
        }
        assert_eq!(p["parse"], "none");
        assert_eq!(p["link_names"], false);
    }

    #[test]
    fn escaping_follows_slack_rules() {
        assert_eq!(
            escape_slack("<!channel> & @here", 100),
            "&lt;!channel&gt; &amp; @here"
        );
        assert_eq!(escape_slack("a\nb\tc", 100), "a b c");
        // Cuts count escaped characters and never split an escape.
        assert_eq!(escape_slack("abc", 3), "abc");
        assert_eq!(escape_slack("abcd", 3), "ab…");
        assert_eq!(escape_slack("a<b", 4), "a…");
        assert_eq!(escape_slack("a<", 5), "a&lt;");
        assert_eq!(escape_slack("ééé", 2), "é…");
        assert_eq!(escape_slack("abc", 0), "");
    }

    #[test]
    fn one_attachment_per_event_with_colours() {
        let events = vec![
            location("api", Level::Critical),
            location("api", Level::Warning),
            location("api", Level::Ok),
            probe_down("db"),
        ];
        let payloads = build_payloads(&events, "web-1");
        assert_eq!(payloads.len(), 1);
        let p = &payloads[0];
        assert_slack_limits(p);
        let colors: Vec<&str> = p["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["color"].as_str().unwrap())
            .collect();
        assert_eq!(colors, ["#E01E5A", "#F2A900", "#2EB67D", "#E01E5A"]);
        assert_eq!(
            p["text"],
            "4 alerts: CRITICAL api, WARNING api, RESOLVED api, DOWN db"
        );
    }

    #[test]
    fn location_fields() {
        let p = &build_payloads(&[location("api", Level::Critical)], "web-1")[0];
        assert_eq!(p["text"], "CRITICAL api: 5xx 12.3% over 5m");
        let a = &p["attachments"][0];
        assert_eq!(a["title"], "CRITICAL api: 5xx 12.3% over 5m");
        assert_eq!(a["fallback"], "CRITICAL api: 5xx 12.3% over 5m");
        assert_eq!(
            a["text"],
            "5xx share of api crossed the critical threshold (10%)."
        );
        assert_eq!(field_value(a, "5xx / total"), Some("123 / 1000"));
        assert_eq!(field_value(a, "Thresholds"), Some("warn 5% · crit 10%"));
        assert_eq!(field_value(a, "Window"), Some("5m"));
        assert_eq!(
            field_value(a, "Top status codes"),
            Some("502 × 100, 504 × 23")
        );
        assert_eq!(field_value(a, "Since"), Some("2026-11-22T00:41:15Z"));
        assert_eq!(field_value(a, "Host"), Some("web-1"));
        assert_eq!(
            field_value(a, "Link"),
            Some("https://logs.example.com/be?a=1&amp;b=2")
        );
        assert_eq!(field_value(a, "Runbook"), None);
        assert_eq!(a["ts"], AT);
        assert_eq!(a["footer"], "nginx-status-alert · web-1");
    }

    #[test]
    fn probe_fields() {
        let a = &build_payloads(&[probe_down("db")], "web-1")[0]["attachments"][0];
        assert_eq!(
            a["title"],
            "DOWN db: http://10.0.0.5:8080/health (connection refused)"
        );
        assert_eq!(
            field_value(a, "Target"),
            Some("http://10.0.0.5:8080/health")
        );
        assert_eq!(field_value(a, "Reason"), Some("connection refused"));
        assert_eq!(field_value(a, "Probe duration"), Some("3 ms"));
    }

    #[test]
    fn names_cannot_ping_or_inject_markup() {
        let evil = "<!channel> <!here> <@U123> <https://evil|click> @here";
        let mut e = location(evil, Level::Critical);
        e.runbook = Some("<!everyone>".into());
        let payloads = build_payloads(&[e, probe_down(evil)], "<!channel>");
        let mut all = Vec::new();
        strings(&payloads[0], &mut all);
        for s in &all {
            assert!(!s.contains('<') && !s.contains('>'), "unescaped: {s}");
        }
        assert!(all.iter().any(|s| s.contains("&lt;!channel&gt;")));
    }

    #[test]
    fn many_events_split_in_order() {
        let events: Vec<AlertEvent> = (0..45)
            .map(|i| location(&format!("n{i}"), Level::Warning))
            .collect();
        let payloads = build_payloads(&events, "h");
        assert_eq!(payloads.len(), 3);
        let counts: Vec<usize> = payloads
            .iter()
            .map(|p| p["attachments"].as_array().unwrap().len())
            .collect();
        assert_eq!(counts, [20, 20, 5]);
        assert!(payloads[2]["text"]
            .as_str()
            .unwrap()
            .starts_with("5 alerts: WARNING n40"));
        payloads.iter().for_each(assert_slack_limits);
        assert!(build_payloads(&[], "h").is_empty());
    }

    #[test]
    fn huge_values_respect_limits() {
        let name = "&".repeat(5000);
        let mut e = location(&name, Level::Critical);
        e.link = Some(format!("https://x/{}", "<".repeat(5000)));
        if let EventDetail::ErrorRatio(l) = &mut e.detail {
            l.top_codes = (0..500).map(|i| (format!("{i}"), i)).collect();
        }
        let events = vec![e; 20];
        let payloads = build_payloads(&events, &"é".repeat(1000));
        assert_eq!(payloads.len(), 1);
        assert_slack_limits(&payloads[0]);
    }
}
