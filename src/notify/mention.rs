//! `mention=`: CRITICAL messages ping exactly the configured IDs, and nothing else can
//! ping, whatever a NAME, probe URL or failure reason contains.
//!
//! **Discord.** Only a message's `content` notifies (embeds never do), and only the mentions
//! that `allowed_mentions` allows. Discord's documented mention types are `roles`, `users` and
//! `everyone`, and `everyone` controls both `@everyone` and `@here`: there is no way to allow
//! `@here` alone. So `here` must put `"everyone"` into `parse`, and from then on an `@everyone`
//! anywhere in `content` would ping the whole server. Hence two independent locks:
//! - `allowed_mentions` lists exactly the configured IDs
//!   (`{"parse": [], "roles": [...], "users": [...]}`, `"parse": ["everyone"]` only with
//!   `here`), and is `{"parse": []}` on every message that does not ping;
//! - every `@` of the text in `content` is followed by a zero-width space (U+200B), which
//!   Discord never reads as a mention (`@​everyone`, `<@​123>`); the prefix with the configured
//!   mentions is put in front afterwards, so it is the only mention syntax left in `content`.
//!
//! Embeds are left as built: their text cannot notify, and changing it here could break the
//! embed budget. To show no live-looking mention there either, the wiring may pass NAMEs and
//! reasons through [`neutralise_discord`] before the payload is built (budgets then hold).
//!
//! **Slack.** The payload's text is already escaped (`&`, `<`, `>`), and Slack only reads
//! mentions written with angle brackets (`<@U123>`, `<!subteam^S123>`, `<!here>`), so the
//! prefix is the only mention in a message. As a second lock any raw `<` or `>` left in `text`
//! is escaped before the prefix goes on.
//!
//! Which messages ping: CRITICAL ones ([`pings`]), including a probe DOWN, a repeat of a
//! critical level (a reminder nobody notices is no reminder) and a held critical released by
//! `after=`. Warnings, RESOLVED and UP never ping.
//!
//! Depends on [`Mention`] (`conf::route`), [`Level`], `truncate_chars` of the vocabulary and
//! Slack's own escaping rules (`notify::slack`: escaped text is cut by the same rule there and
//! here). `notify::routing` applies it to the payloads of a destination with `mention=`.

use serde_json::{json, Value};

use crate::conf::route::Mention;
use crate::notify::slack::cut_escaped;
use crate::vocab::event::Level;
use crate::vocab::text::truncate_chars;

/// Discord's `content` limit, in characters.
const DISCORD_MAX_CONTENT: usize = 2000;
/// Slack `text` limit used by `notify::slack`, in characters after escaping.
const SLACK_MAX_TEXT: usize = 3000;
/// Zero-width space: after an `@` it keeps Discord from reading a mention.
const ZWSP: char = '\u{200B}';

/// True for the events whose message pings the configured mentions: CRITICAL (and probe DOWN,
/// which is routed as CRITICAL).
pub fn pings(level: Level) -> bool {
    level == Level::Critical
}

/// Makes text unable to mention anyone on Discord: a zero-width space after every `@`.
pub fn neutralise_discord(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3 * text.matches('@').count());
    for c in text.chars() {
        out.push(c);
        if c == '@' {
            out.push(ZWSP);
        }
    }
    out
}

/// The Discord mentions put in front of `content`: `<@&ROLE> <@USER> @here`, as configured.
pub fn discord_prefix(mentions: &[Mention]) -> String {
    let parts: Vec<String> = mentions
        .iter()
        .filter_map(|m| match m {
            Mention::DiscordRole(id) => Some(format!("<@&{id}>")),
            Mention::DiscordUser(id) => Some(format!("<@{id}>")),
            Mention::Here => Some("@here".to_string()),
            Mention::SlackUser(_) | Mention::SlackGroup(_) => None,
        })
        .collect();
    parts.join(" ")
}

/// The `allowed_mentions` object: exactly the configured roles and users (and `everyone` for
/// `here`) when the message pings, `{"parse": []}` otherwise.
pub fn discord_allowed_mentions(mentions: &[Mention], ping: bool) -> Value {
    let roles: Vec<String> = mentions
        .iter()
        .filter_map(|m| match m {
            Mention::DiscordRole(id) => Some(id.to_string()),
            _ => None,
        })
        .collect();
    let users: Vec<String> = mentions
        .iter()
        .filter_map(|m| match m {
            Mention::DiscordUser(id) => Some(id.to_string()),
            _ => None,
        })
        .collect();
    let here = mentions.contains(&Mention::Here);
    if !ping || (roles.is_empty() && users.is_empty() && !here) {
        return json!({ "parse": [] });
    }
    let parse: &[&str] = if here { &["everyone"] } else { &[] };
    json!({ "parse": parse, "roles": roles, "users": users })
}

/// Makes a Discord payload built by `discord::build_payloads` ping `mentions` (when `ping`) and
/// nothing else: neutralises `content`, puts the mentions in front, keeps it within 2000
/// characters, and sets `allowed_mentions`.
pub fn apply_discord(payload: &mut Value, mentions: &[Mention], ping: bool) {
    let Some(object) = payload.as_object_mut() else {
        return;
    };
    let body = neutralise_discord(object.get("content").and_then(Value::as_str).unwrap_or(""));
    let prefix = if ping {
        discord_prefix(mentions)
    } else {
        String::new()
    };
    let content = if prefix.is_empty() {
        truncate_chars(&body, DISCORD_MAX_CONTENT)
    } else {
        let room = DISCORD_MAX_CONTENT.saturating_sub(prefix.chars().count() + 1);
        format!("{prefix} {}", truncate_chars(&body, room))
    };
    object.insert("content".into(), Value::String(content));
    object.insert(
        "allowed_mentions".into(),
        discord_allowed_mentions(mentions, ping),
    );
}

/// The Slack mentions put in front of `text`: `<@U123> <!subteam^S123> <!here>`.
pub fn slack_prefix(mentions: &[Mention]) -> String {
    let parts: Vec<String> = mentions
        .iter()
        .filter_map(|m| match m {
            Mention::SlackUser(id) => Some(format!("<@{id}>")),
            Mention::SlackGroup(id) => Some(format!("<!subteam^{id}>")),
            Mention::Here => Some("<!here>".to_string()),
            Mention::DiscordRole(_) | Mention::DiscordUser(_) => None,
        })
        .collect();
    parts.join(" ")
}

/// Makes a Slack payload built by `slack::build_payloads` ping `mentions` (when `ping`) and
/// nothing else: any raw `<`/`>` left in `text` is escaped, then the mentions go in front,
/// within 3000 characters.
pub fn apply_slack(payload: &mut Value, mentions: &[Mention], ping: bool) {
    let Some(object) = payload.as_object_mut() else {
        return;
    };
    let text = object.get("text").and_then(Value::as_str).unwrap_or("");
    let text = text.replace('<', "&lt;").replace('>', "&gt;");
    let prefix = if ping {
        slack_prefix(mentions)
    } else {
        String::new()
    };
    let text = if prefix.is_empty() {
        cut_escaped(&text, SLACK_MAX_TEXT)
    } else {
        let room = SLACK_MAX_TEXT.saturating_sub(prefix.chars().count() + 1);
        format!("{prefix} {}", cut_escaped(&text, room))
    };
    object.insert("text".into(), Value::String(text));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::{discord, slack};
    use crate::vocab::event::{AlertEvent, ErrorRatioEvent, EventDetail, ProbeEvent};

    const EVIL: &str = "@everyone <@123> <@!789> <@&456> <!here> <!channel> @here <@U999>";

    fn discord_mentions() -> Vec<Mention> {
        vec![
            Mention::DiscordRole(456),
            Mention::DiscordUser(222),
            Mention::Here,
        ]
    }

    fn slack_mentions() -> Vec<Mention> {
        vec![
            Mention::SlackUser("U0AB".into()),
            Mention::SlackGroup("S0CD".into()),
            Mention::Here,
        ]
    }

    fn location(name: &str, level: Level) -> AlertEvent {
        AlertEvent {
            name: name.into(),
            at_unix: 1_700_000_000,
            link: Some(format!("https://logs.example/{name}")),
            runbook: None,
            detail: EventDetail::ErrorRatio(ErrorRatioEvent {
                level,
                previous: Level::Ok,
                repeat: false,
                errors: 50,
                total: 100,
                window_secs: 300,
                warn_pct: Some(5.0),
                crit_pct: 10.0,
                top_codes: vec![("503".into(), 50)],
                top_peers: Vec::new(),
                since_unix: 1_699_999_000,
            }),
        }
    }

    fn probe_down(name: &str, target: &str) -> AlertEvent {
        AlertEvent {
            name: name.into(),
            at_unix: 1_700_000_000,
            link: None,
            runbook: None,
            detail: EventDetail::Probe(ProbeEvent {
                up: false,
                target: target.into(),
                reason: Some(EVIL.into()),
                status: None,
                duration_ms: 3,
                since_unix: 1_700_000_000,
            }),
        }
    }

    /// Discord's rules, as a stand-in server applies them: who `content` notifies under
    /// `allowed_mentions`. `everyone` and `here` for `@everyone`/`@here`, `role:ID`, `user:ID`.
    fn discord_pings(payload: &Value) -> Vec<String> {
        let content = payload["content"].as_str().unwrap();
        let allowed = &payload["allowed_mentions"];
        let parse: Vec<&str> = allowed["parse"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let listed = |key: &str, id: &str| {
            allowed[key]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(id)))
        };
        let mut pinged = Vec::new();
        let bytes = content.as_bytes();
        for (i, _) in content.match_indices('@') {
            let rest = &content[i + 1..];
            for word in ["everyone", "here"] {
                if rest.starts_with(word) && parse.contains(&"everyone") {
                    pinged.push(word.to_string());
                }
            }
            if i == 0 || bytes[i - 1] != b'<' {
                continue;
            }
            let (kind, rest) = match rest.as_bytes().first() {
                Some(b'&') => ("role", &rest[1..]),
                Some(b'!') => ("user", &rest[1..]),
                _ => ("user", rest),
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if digits.is_empty() || !rest[digits.len()..].starts_with('>') {
                continue;
            }
            let (key, all) = if kind == "role" {
                ("roles", "roles")
            } else {
                ("users", "users")
            };
            if listed(key, &digits) || parse.contains(&all) {
                pinged.push(format!("{kind}:{digits}"));
            }
        }
        pinged.sort();
        pinged.dedup();
        pinged
    }

    /// Slack's rules: the angle-bracket mentions in any string of the message.
    fn slack_pings(payload: &Value) -> Vec<String> {
        fn strings(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::String(s) => out.push(s.clone()),
                Value::Array(a) => a.iter().for_each(|v| strings(v, out)),
                Value::Object(o) => o.values().for_each(|v| strings(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        strings(payload, &mut all);
        let mut pinged = Vec::new();
        for s in all {
            for (i, _) in s.match_indices('<') {
                let Some(end) = s[i..].find('>') else {
                    continue;
                };
                let inner = &s[i + 1..i + end];
                if inner.starts_with('@') || inner.starts_with('!') {
                    pinged.push(inner.to_string());
                }
            }
        }
        pinged.sort();
        pinged.dedup();
        pinged
    }

    #[test]
    fn discord_prefix_and_allowed_mentions_list_exactly_the_configured_ids() {
        let m = discord_mentions();
        assert_eq!(discord_prefix(&m), "<@&456> <@222> @here");
        assert_eq!(
            discord_allowed_mentions(&m, true),
            json!({ "parse": ["everyone"], "roles": ["456"], "users": ["222"] })
        );
        // Without `here`, nothing may ping @everyone/@here.
        let m = [Mention::DiscordUser(1), Mention::DiscordUser(2)];
        assert_eq!(
            discord_allowed_mentions(&m, true),
            json!({ "parse": [], "roles": [], "users": ["1", "2"] })
        );
        // Not pinging, or nothing to ping: nobody.
        assert_eq!(
            discord_allowed_mentions(&discord_mentions(), false),
            json!({ "parse": [] })
        );
        assert_eq!(discord_allowed_mentions(&[], true), json!({ "parse": [] }));
        // Slack IDs are not Discord mentions.
        let slack = [Mention::SlackUser("U1".into())];
        assert_eq!(discord_prefix(&slack), "");
        assert_eq!(
            discord_allowed_mentions(&slack, true),
            json!({ "parse": [] })
        );
        assert!(pings(Level::Critical) && !pings(Level::Warning) && !pings(Level::Ok));
    }

    #[test]
    fn neutralised_text_has_no_mention_left() {
        assert_eq!(neutralise_discord("@everyone"), "@\u{200B}everyone");
        assert_eq!(
            neutralise_discord("<@123> <@&4>"),
            "<@\u{200B}123> <@\u{200B}&4>"
        );
        assert_eq!(neutralise_discord("no at sign"), "no at sign");
        let payload = json!({ "content": neutralise_discord(EVIL), "allowed_mentions": {
            "parse": ["everyone", "roles", "users"] } });
        assert!(discord_pings(&payload).is_empty(), "{payload}");
        // The stand-in does see live mentions.
        let live = json!({ "content": EVIL, "allowed_mentions": {
            "parse": ["everyone", "roles", "users"] } });
        assert_eq!(
            discord_pings(&live),
            ["everyone", "here", "role:456", "user:123", "user:789"]
        );
    }

    #[test]
    fn a_hostile_name_or_probe_url_pings_only_the_configured_ids_on_discord() {
        let url = format!("http://10.0.0.5/{EVIL}");
        let events = [
            location(EVIL, Level::Critical),
            probe_down(EVIL, &url),
            location(&format!("x{EVIL}"), Level::Warning),
        ];
        for batch in [&events[..1], &events[1..2], &events[..]] {
            for mut payload in discord::build_payloads(batch, EVIL) {
                apply_discord(&mut payload, &discord_mentions(), true);
                assert_eq!(
                    discord_pings(&payload),
                    ["here", "role:456", "user:222"],
                    "{payload}"
                );
                let content = payload["content"].as_str().unwrap();
                assert!(content.starts_with("<@&456> <@222> @here "), "{content}");
                assert!(content.chars().count() <= DISCORD_MAX_CONTENT);
                // Everything else Discord checks still holds.
                let mut plain = payload.clone();
                plain["allowed_mentions"] = json!({ "parse": [] });
                discord::assert_discord_limits(&plain);
            }
        }
        // A warning pings nobody, not even the configured role named in the NAME.
        for mut payload in discord::build_payloads(&events[2..], "h") {
            apply_discord(&mut payload, &discord_mentions(), false);
            assert_eq!(payload["allowed_mentions"], json!({ "parse": [] }));
            assert!(discord_pings(&payload).is_empty());
            assert!(!payload["content"].as_str().unwrap().starts_with("<@&456>"));
        }
    }

    #[test]
    fn discord_content_stays_within_its_limit() {
        let huge = "@".repeat(5000);
        let mut payload = json!({ "content": huge });
        apply_discord(&mut payload, &discord_mentions(), true);
        let content = payload["content"].as_str().unwrap();
        assert_eq!(content.chars().count(), DISCORD_MAX_CONTENT);
        assert!(content.starts_with("<@&456> <@222> @here @\u{200B}@"));
        assert!(content.ends_with('…'));
        // 25 long role IDs still leave room for the summary.
        let many: Vec<Mention> = (0..25)
            .map(|i| Mention::DiscordRole(u64::MAX - i))
            .collect();
        let mut payload = json!({ "content": "CRITICAL api: 5xx 50.0% over 5m" });
        apply_discord(&mut payload, &many, true);
        let content = payload["content"].as_str().unwrap();
        assert!(
            content.ends_with(" CRITICAL api: 5xx 50.0% over 5m"),
            "{content}"
        );
        assert!(content.chars().count() < 700);
        // Not an object: left alone.
        let mut odd = json!("x");
        apply_discord(&mut odd, &many, true);
        assert_eq!(odd, json!("x"));
    }

    #[test]
    fn a_hostile_name_or_probe_url_pings_only_the_configured_ids_on_slack() {
        let url = format!("http://10.0.0.5/{EVIL}");
        let events = [location(EVIL, Level::Critical), probe_down(EVIL, &url)];
        let expected = ["!here", "!subteam^S0CD", "@U0AB"];
        for mut payload in slack::build_payloads(&events, EVIL) {
            apply_slack(&mut payload, &slack_mentions(), true);
            assert_eq!(slack_pings(&payload), expected, "{payload}");
            let text = payload["text"].as_str().unwrap();
            assert!(
                text.starts_with("<@U0AB> <!subteam^S0CD> <!here> "),
                "{text}"
            );
            assert!(text.chars().count() <= SLACK_MAX_TEXT);
        }
        for mut payload in slack::build_payloads(&events, EVIL) {
            apply_slack(&mut payload, &slack_mentions(), false);
            assert!(slack_pings(&payload).is_empty(), "{payload}");
        }
        // Raw brackets that reached `text` some other way are escaped before the prefix.
        let mut payload = json!({ "text": "<!channel> hi" });
        apply_slack(&mut payload, &slack_mentions(), true);
        assert_eq!(slack_pings(&payload), expected);
        assert_eq!(slack_prefix(&discord_mentions()), "<!here>");
    }

    #[test]
    fn slack_text_is_cut_without_splitting_an_entity() {
        assert_eq!(cut_escaped("abc", 3), "abc");
        assert_eq!(cut_escaped("abcd", 3), "ab…");
        assert_eq!(cut_escaped("a&lt;b", 4), "a…");
        assert_eq!(cut_escaped("a&lt;b", 6), "a&lt;b");
        assert_eq!(cut_escaped("a&lt;bc", 7), "a&lt;bc");
        assert_eq!(cut_escaped("a&lt;bcd", 7), "a&lt;b…");
        assert_eq!(cut_escaped("&amp;&amp;", 7), "&amp;…");
        let mut payload = json!({ "text": "&lt;".repeat(1000) });
        apply_slack(&mut payload, &slack_mentions(), true);
        let text = payload["text"].as_str().unwrap();
        assert!(text.chars().count() <= SLACK_MAX_TEXT);
        assert!(text.ends_with("&lt;…"), "{}", &text[text.len() - 10..]);
    }
}
