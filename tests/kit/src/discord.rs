//! What Discord accepts on "Execute Webhook", stated here independently of the module's Discord
//! renderer (which must stay within the same limits) so that a wrong limit in the module fails a
//! test instead of being copied into it. Limits count characters (code points),
//! not UTF-8 bytes. The one copy of these limits in the tests: the webhook receiver checks every
//! request with [`check_discord_payload`], and the module's property tests can call it too.

use serde_json::{json, Value};

// Execute Webhook, JSON params:
// <https://discord.com/developers/docs/resources/webhook#execute-webhook>

/// `content`: the message text.
pub const MAX_CONTENT: usize = 2000;
/// Number of `embeds`.
pub const MAX_EMBEDS: usize = 10;
/// `username` override; webhook names are 1-80 characters
/// (<https://discord.com/developers/docs/resources/webhook#create-webhook>).
pub const MAX_USERNAME: usize = 80;

// Embed limits: <https://discord.com/developers/docs/resources/message#embed-object-embed-limits>

/// `embeds[].title`.
pub const MAX_TITLE: usize = 256;
/// `embeds[].description`.
pub const MAX_DESCRIPTION: usize = 4096;
/// Number of `embeds[].fields`.
pub const MAX_FIELDS: usize = 25;
/// `embeds[].fields[].name`.
pub const MAX_FIELD_NAME: usize = 256;
/// `embeds[].fields[].value`.
pub const MAX_FIELD_VALUE: usize = 1024;
/// `embeds[].footer.text`.
pub const MAX_FOOTER_TEXT: usize = 2048;
/// `embeds[].author.name`.
pub const MAX_AUTHOR_NAME: usize = 256;
/// Sum of the title, description, field names and values, footer text and author name of all
/// embeds of one message.
pub const MAX_EMBEDS_TOTAL: usize = 6000;

/// `embeds[].color`: an RGB integer
/// (<https://discord.com/developers/docs/resources/message#embed-object-embed-structure>).
pub const MAX_COLOR: u64 = 0xFF_FFFF;

fn chars_of(v: Option<&Value>, what: &str, max: usize, non_empty: bool) -> Result<usize, String> {
    let s = match v {
        None | Some(Value::Null) if !non_empty => return Ok(0),
        None | Some(Value::Null) => return Err(format!("{what} is required")),
        Some(Value::String(s)) => s,
        Some(other) => return Err(format!("{what} must be a string, got {other}")),
    };
    // Discord limits count characters (code points), not UTF-8 bytes.
    let n = s.chars().count();
    if n > max {
        return Err(format!("{what} is {n} characters long (max {max})"));
    }
    // Discord refuses a required text that is empty or only blanks.
    if non_empty && s.trim().is_empty() {
        return Err(format!("{what} must not be empty or blank"));
    }
    Ok(n)
}

fn two_digits(b: &[u8], at: usize, max: u32) -> Option<u32> {
    let (hi, lo) = (*b.get(at)?, *b.get(at + 1)?);
    if !hi.is_ascii_digit() || !lo.is_ascii_digit() {
        return None;
    }
    let n = u32::from(hi - b'0') * 10 + u32::from(lo - b'0');
    (n <= max).then_some(n)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`: the shape of `embeds[].timestamp`
/// ("ISO8601 timestamp"). Our own lines rather than a date crate: RFC 3339 parsers also take a
/// lower-case `t`/`z` (some a space for `T`), and current `time` needs Rust 1.88, not 1.81.
pub fn is_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || !b[..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| b[i] != c) {
        return false;
    }
    let fields_ok = matches!(two_digits(b, 5, 12), Some(m) if m >= 1)
        && matches!(two_digits(b, 8, 31), Some(d) if d >= 1)
        && two_digits(b, 11, 23).is_some()
        && two_digits(b, 14, 59).is_some()
        && two_digits(b, 17, 59).is_some();
    if !fields_ok {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &frac[digits..];
    }
    match rest {
        b"Z" => true,
        [sign, ..] if (*sign == b'+' || *sign == b'-') && rest.len() == 6 && rest[3] == b':' => {
            two_digits(rest, 1, 23).is_some() && two_digits(rest, 4, 59).is_some()
        }
        _ => false,
    }
}

/// Checks one embed; returns its characters counted toward Discord's [`MAX_EMBEDS_TOTAL`].
fn check_embed(i: usize, embed: &Value) -> Result<usize, String> {
    let at = |key: &str| format!("embeds[{i}].{key}");
    let e = embed
        .as_object()
        .ok_or_else(|| format!("embeds[{i}] is not an object"))?;
    let mut total = chars_of(e.get("title"), &at("title"), MAX_TITLE, false)?;
    total += chars_of(
        e.get("description"),
        &at("description"),
        MAX_DESCRIPTION,
        false,
    )?;
    match e.get("fields") {
        None | Some(Value::Null) => {}
        Some(Value::Array(fields)) => {
            if fields.len() > MAX_FIELDS {
                return Err(format!(
                    "{} has {} entries (max {MAX_FIELDS})",
                    at("fields"),
                    fields.len()
                ));
            }
            for (j, field) in fields.iter().enumerate() {
                let f = field
                    .as_object()
                    .ok_or_else(|| format!("embeds[{i}].fields[{j}] is not an object"))?;
                total += chars_of(
                    f.get("name"),
                    &format!("embeds[{i}].fields[{j}].name"),
                    MAX_FIELD_NAME,
                    true,
                )?;
                total += chars_of(
                    f.get("value"),
                    &format!("embeds[{i}].fields[{j}].value"),
                    MAX_FIELD_VALUE,
                    true,
                )?;
                if let Some(inline) = f.get("inline") {
                    if !inline.is_boolean() && !inline.is_null() {
                        return Err(format!("embeds[{i}].fields[{j}].inline must be a boolean"));
                    }
                }
            }
        }
        Some(other) => return Err(format!("{} must be an array, got {other}", at("fields"))),
    }
    match e.get("footer") {
        None | Some(Value::Null) => {}
        Some(Value::Object(footer)) => {
            total += chars_of(
                footer.get("text"),
                &at("footer.text"),
                MAX_FOOTER_TEXT,
                true,
            )?;
        }
        Some(other) => return Err(format!("{} must be an object, got {other}", at("footer"))),
    }
    match e.get("author") {
        None | Some(Value::Null) => {}
        Some(Value::Object(author)) => {
            total += chars_of(
                author.get("name"),
                &at("author.name"),
                MAX_AUTHOR_NAME,
                true,
            )?;
        }
        Some(other) => return Err(format!("{} must be an object, got {other}", at("author"))),
    }
    match e.get("color") {
        None | Some(Value::Null) => {}
        Some(c) if c.as_u64().is_some_and(|c| c <= MAX_COLOR) => {}
        Some(c) => {
            return Err(format!(
                "{} must be an integer in 0..=0xFFFFFF, got {c}",
                at("color")
            ))
        }
    }
    match e.get("timestamp") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if is_iso8601(t) => {}
        Some(t) => {
            return Err(format!(
                "{} is not an ISO 8601 timestamp: {t}",
                at("timestamp")
            ))
        }
    }
    Ok(total)
}

/// `allowed_mentions` that lets no text in a message ping anyone: our rule, not Discord's
/// (whose default parses mentions in `content`).
/// <https://discord.com/developers/docs/resources/message#allowed-mentions-object>
pub fn no_pings() -> Value {
    json!({ "parse": [] })
}

/// Validates a webhook payload against Discord's limits and our "no pings" rule.
pub fn check_discord_payload(v: &Value) -> Result<(), String> {
    check_discord_payload_pinging(v, &[])
}

/// The `allowed_mentions` of a message that pings exactly `mentions` (`role:ID`, `user:ID`,
/// `here`, as `mention=` writes them): the roles and users listed, `everyone` parsed only for
/// `here` (Discord has no way to allow `@here` alone).
pub fn allowed_mentions_of(mentions: &[&str]) -> Value {
    let ids = |kind: &str| -> Vec<String> {
        mentions
            .iter()
            .filter_map(|m| m.strip_prefix(kind))
            .map(str::to_string)
            .collect()
    };
    let parse: Vec<&str> = if mentions.contains(&"here") {
        vec!["everyone"]
    } else {
        vec![]
    };
    json!({ "parse": parse, "roles": ids("role:"), "users": ids("user:") })
}

/// Who `payload` notifies under Discord's rules: `content` only (embeds never ping), the
/// mentions `allowed_mentions` allows. `everyone`/`here` for `@everyone`/`@here`, `role:ID`,
/// `user:ID`; sorted, without repeats.
pub fn discord_pings(payload: &Value) -> Vec<String> {
    let content = payload["content"].as_str().unwrap_or("");
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
        let (kind, key, rest) = match rest.as_bytes().first() {
            Some(b'&') => ("role", "roles", &rest[1..]),
            Some(b'!') => ("user", "users", &rest[1..]),
            _ => ("user", "users", rest),
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() || !rest[digits.len()..].starts_with('>') {
            continue;
        }
        if listed(key, &digits) || parse.contains(&key) {
            pinged.push(format!("{kind}:{digits}"));
        }
    }
    pinged.sort();
    pinged.dedup();
    pinged
}

/// Validates a webhook payload against Discord's limits, for a destination configured to ping
/// `mentions` (`mention=`): `allowed_mentions` is either `{"parse": []}` or lists exactly
/// those (see [`allowed_mentions_of`]), and what the message notifies is among them.
pub fn check_discord_payload_pinging(v: &Value, mentions: &[&str]) -> Result<(), String> {
    check_discord_limits(v)?;
    let allowed = v.get("allowed_mentions");
    let pinging = allowed_mentions_of(mentions);
    match allowed {
        None => {
            return Err(
                "allowed_mentions missing: must be {\"parse\": []} so nobody is pinged".into(),
            )
        }
        Some(am) if *am == no_pings() => {}
        Some(am) if !mentions.is_empty() && *am == pinging => {}
        Some(am) if mentions.is_empty() => {
            return Err(format!(
                "allowed_mentions must be exactly {{\"parse\": []}}, got {am}"
            ))
        }
        Some(am) => {
            return Err(format!(
                "allowed_mentions must be {{\"parse\": []}} or exactly {pinging}, got {am}"
            ))
        }
    }
    let pinged = discord_pings(v);
    let unexpected: Vec<&String> = pinged
        .iter()
        .filter(|p| !mentions.contains(&p.as_str()))
        .collect();
    if !unexpected.is_empty() {
        return Err(format!(
            "the message would ping {unexpected:?}, configured {mentions:?}"
        ));
    }
    Ok(())
}

/// Discord's limits on a payload, whoever it pings.
fn check_discord_limits(v: &Value) -> Result<(), String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("payload is not a JSON object: {v}"))?;
    let content = chars_of(obj.get("content"), "content", MAX_CONTENT, false)?;
    let embeds: &[Value] = match obj.get("embeds") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(a)) => a,
        Some(other) => return Err(format!("embeds must be an array, got {other}")),
    };
    if content == 0 && embeds.is_empty() {
        return Err("neither content nor embeds present: cannot send an empty message".into());
    }
    if embeds.len() > MAX_EMBEDS {
        return Err(format!(
            "embeds has {} entries (max {MAX_EMBEDS})",
            embeds.len()
        ));
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        total += check_embed(i, embed)?;
    }
    if total > MAX_EMBEDS_TOTAL {
        return Err(format!(
            "embeds total {total} characters (max {MAX_EMBEDS_TOTAL} across all embeds)"
        ));
    }
    if obj.contains_key("username") {
        chars_of(obj.get("username"), "username", MAX_USERNAME, true)?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A payload the module could send: every kind of field, within every limit.
    pub(crate) fn valid_payload() -> Value {
        json!({
            "content": "5xx ratio alert",
            "embeds": [{
                "title": "location /api: 5xx ratio 0.42",
                "description": "42 of 100 requests failed",
                "color": 0xE74C3C,
                "timestamp": "2025-01-02T03:04:05.678Z",
                "fields": [{"name": "server", "value": "edge-1", "inline": true}],
                "footer": {"text": "status-alert"}
            }],
            "allowed_mentions": {"parse": []}
        })
    }

    fn assert_rejected(v: &Value, needle: &str) {
        match check_discord_payload(v) {
            Ok(()) => panic!("payload should be rejected ({needle}): {v}"),
            Err(e) => assert!(e.contains(needle), "error {e:?} should mention {needle:?}"),
        }
    }

    #[test]
    fn a_pinging_payload_may_ping_exactly_the_configured_mentions() {
        let mentions = ["role:42", "user:7"];
        let mut p = valid_payload();
        p["content"] = json!("<@&42> <@7> CRITICAL api: @\u{200B}everyone");
        p["allowed_mentions"] = allowed_mentions_of(&mentions);
        assert_eq!(discord_pings(&p), ["role:42", "user:7"]);
        assert_eq!(check_discord_payload_pinging(&p, &mentions), Ok(()));
        // Not for a destination that pings nobody.
        assert!(check_discord_payload(&p).is_err());
        // A live @everyone with `here` configured would ping the whole server.
        let mut p = valid_payload();
        p["content"] = json!("@here CRITICAL @everyone");
        p["allowed_mentions"] = allowed_mentions_of(&["here"]);
        let err = check_discord_payload_pinging(&p, &["here"]).unwrap_err();
        assert!(err.contains("everyone"), "{err}");
        // Listing more than configured is refused.
        let mut p = valid_payload();
        p["allowed_mentions"] = allowed_mentions_of(&["role:42", "role:43"]);
        assert!(check_discord_payload_pinging(&p, &["role:42"]).is_err());
    }

    #[test]
    fn discord_payload_limits() {
        assert_eq!(check_discord_payload(&valid_payload()), Ok(()));

        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = valid_payload();
            f(&mut v);
            v
        };
        let embed = |title: &str| json!({ "title": title });

        assert_rejected(
            &with(&|v| v["embeds"][0]["title"] = json!("t".repeat(257))),
            "title",
        );
        assert_eq!(
            check_discord_payload(&with(&|v| v["embeds"][0]["title"] = json!("t".repeat(256)))),
            Ok(())
        );
        assert_rejected(
            &with(&|v| v["embeds"] = json!(vec![embed("x"); 11])),
            "max 10",
        );
        assert_eq!(
            check_discord_payload(&with(&|v| v["embeds"] = json!(vec![embed("x"); 10]))),
            Ok(())
        );
        assert_rejected(
            &with(&|v| v.as_object_mut().unwrap().clear()),
            "empty message",
        );
        assert_rejected(
            &json!({"content": "", "allowed_mentions": {"parse": []}}),
            "empty message",
        );
        assert_rejected(&json!("just a string"), "not a JSON object");

        // allowed_mentions: missing, or anything but exactly {"parse": []}.
        assert_rejected(
            &with(&|v| drop(v.as_object_mut().unwrap().remove("allowed_mentions"))),
            "allowed_mentions missing",
        );
        assert_rejected(
            &with(&|v| v["allowed_mentions"] = json!({"parse": ["everyone"]})),
            "allowed_mentions",
        );
        assert_rejected(
            &with(&|v| v["allowed_mentions"] = json!(null)),
            "allowed_mentions",
        );

        // 6000 characters across all embeds: 6 embeds of 1000-char descriptions plus 1 char.
        let big = |extra: usize| {
            let mut embeds: Vec<Value> = (0..6)
                .map(|_| json!({ "description": "d".repeat(1000) }))
                .collect();
            if extra > 0 {
                embeds.push(json!({ "title": "t".repeat(extra) }));
            }
            json!({ "embeds": embeds, "allowed_mentions": {"parse": []} })
        };
        assert_eq!(check_discord_payload(&big(0)), Ok(()));
        assert_rejected(&big(1), "6001 characters");
        // Field names, values and footer text count toward the total too.
        let mixed = json!({
            "embeds": [
                {"description": "d".repeat(4096), "footer": {"text": "f".repeat(1000)}},
                {"fields": [{"name": "n".repeat(256), "value": "v".repeat(649)}]}
            ],
            "allowed_mentions": {"parse": []}
        });
        assert_rejected(&mixed, "6001 characters");

        assert_rejected(
            &with(&|v| v["embeds"][0]["description"] = json!("d".repeat(4097))),
            "description",
        );
        let field = json!({"name": "n", "value": "v"});
        assert_rejected(
            &with(&|v| v["embeds"][0]["fields"] = json!(vec![field.clone(); 26])),
            "max 25",
        );
        assert_rejected(
            &with(&|v| v["embeds"][0]["fields"][0]["name"] = json!("")),
            "empty",
        );
        assert_rejected(
            &with(&|v| v["embeds"][0]["fields"][0]["name"] = json!("n".repeat(257))),
            "name",
        );
        assert_rejected(
            &with(&|v| v["embeds"][0]["fields"][0]["value"] = json!("")),
            "empty",
        );
        assert_rejected(
            &with(&|v| v["embeds"][0]["fields"][0]["value"] = json!("v".repeat(1025))),
            "value",
        );
        assert_rejected(
            &with(&|v| v["embeds"][0]["footer"]["text"] = json!("f".repeat(2049))),
            "footer",
        );
        for bad in [json!(0x100_0000), json!(-1), json!(1.5), json!("red")] {
            assert_rejected(&with(&|v| v["embeds"][0]["color"] = bad.clone()), "color");
        }
        assert_eq!(
            check_discord_payload(&with(&|v| v["embeds"][0]["color"] = json!(0xFF_FFFF))),
            Ok(())
        );
        for bad in [
            "2025-01-02 03:04:05Z",
            "2025-13-02T03:04:05Z",
            "2025-01-02T03:04:05",
            "yesterday",
        ] {
            assert_rejected(
                &with(&|v| v["embeds"][0]["timestamp"] = json!(bad)),
                "timestamp",
            );
        }
        for good in [
            "2025-01-02T03:04:05Z",
            "2025-01-02T03:04:05.123456+02:00",
            "2025-01-02T03:04:05-05:30",
        ] {
            assert!(is_iso8601(good), "{good}");
        }
    }

    #[test]
    fn discord_content_counts_unicode_characters() {
        let content =
            |n: usize| json!({ "content": "é".repeat(n), "allowed_mentions": {"parse": []} });
        // 2000 'é' are 4000 UTF-8 bytes but 2000 characters: Discord accepts them.
        assert_eq!(check_discord_payload(&content(2000)), Ok(()));
        assert_rejected(&content(2001), "2001 characters");
        // Embed limits count characters too: '→' is 3 bytes.
        let title = |n: usize| {
            let embeds = json!([{ "title": "→".repeat(n) }]);
            json!({ "embeds": embeds, "allowed_mentions": {"parse": []} })
        };
        assert_eq!(check_discord_payload(&title(256)), Ok(()));
        assert_rejected(&title(257), "title");
    }
}
