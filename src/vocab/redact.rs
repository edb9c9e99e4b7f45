//! URL redaction: webhook, heartbeat and Alertmanager URLs carry secrets (a token in the path,
//! `user:password@`), and neither the error log, the metrics nor `nginx -t` may show them.

/// Secrets shorter than this are not scrubbed from error text, to avoid mangling it.
const SECRET_MIN_LEN: usize = 4;

/// Shows a webhook URL without its secret: Discord keeps `.../webhooks/ID/***`, others `/***`.
pub fn redact_url(url: &str) -> String {
    let parts = split_url(url);
    let mut out = String::new();
    if let Some(scheme) = parts.scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(parts.hostport);
    match discord_prefix(parts.rest) {
        Some(kept) => {
            out.push_str(kept);
            out.push_str("/***");
        }
        None if parts.rest.is_empty() || parts.rest == "/" => out.push_str(parts.rest),
        None => out.push_str("/***"),
    }
    out
}

/// The pieces of a URL that redaction cares about; no validation beyond that.
struct UrlParts<'a> {
    scheme: Option<&'a str>,
    userinfo: Option<&'a str>,
    hostport: &'a str,
    /// Path, query and fragment, starting with `/`, `?` or `#` when not empty.
    rest: &'a str,
}

fn split_url(url: &str) -> UrlParts<'_> {
    let url = url.trim();
    // Only a well-formed scheme counts, so a "://" inside a query cannot shift the host.
    let (scheme, after) = match url.find("://") {
        Some(i)
            if i > 0
                && url[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            (Some(&url[..i]), &url[i + 3..])
        }
        _ => (None, url),
    };
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    UrlParts {
        scheme,
        userinfo,
        hostport,
        rest,
    }
}

/// For a Discord-style `.../webhooks/ID/TOKEN` path, the part up to and including the ID.
fn discord_prefix(rest: &str) -> Option<&str> {
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let path = &rest[..path_end];
    let mut offset = 0;
    let mut previous_was_webhooks = false;
    for segment in path.split('/') {
        let end = offset + segment.len();
        // Snowflake IDs are decimal; anything else might be the token itself, so it is hidden.
        if previous_was_webhooks
            && !segment.is_empty()
            && segment.len() <= 25
            && segment.bytes().all(|b| b.is_ascii_digit())
        {
            return Some(&path[..end]);
        }
        previous_was_webhooks = segment.eq_ignore_ascii_case("webhooks");
        offset = end + 1;
    }
    None
}

/// Substrings of `url` that must never reach a log line, longest first.
pub fn url_secrets(url: &str) -> Vec<String> {
    let parts = split_url(url);
    let hidden = match discord_prefix(parts.rest) {
        Some(kept) => &parts.rest[kept.len()..],
        None => parts.rest,
    };
    let mut secrets = Vec::new();
    let hidden = hidden.trim_start_matches('/');
    secrets.push(hidden.to_string());
    let without_query = hidden.find(['?', '#']).map_or(hidden, |i| &hidden[..i]);
    secrets.push(without_query.trim_end_matches('/').to_string());
    if let Some(userinfo) = parts.userinfo {
        secrets.push(userinfo.to_string());
        if let Some((_, password)) = userinfo.split_once(':') {
            secrets.push(password.to_string());
        }
    }
    secrets.retain(|s| s.len() >= SECRET_MIN_LEN);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// Replaces the webhook URL and its secret parts in `text` (e.g. a ureq error message).
pub fn scrub(text: &str, url: &str, redacted: &str, secrets: &[String]) -> String {
    let mut out = if url.is_empty() {
        text.to_string()
    } else {
        text.replace(url, redacted)
    };
    for secret in secrets {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    out
}

/// Never echo a possible secret back into error messages: credentials (`user:pass@`) become
/// `***@`, and at most the first 24 characters are kept (a path may hold a token).
pub fn redact_for_error(value: &str) -> String {
    let value = match value.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://***{}", &rest[at..]),
                None => value.to_string(),
            }
        }
        None => value.to_string(),
    };
    match value.char_indices().nth(24) {
        Some((i, _)) => format!("{}...", &value[..i]),
        None => value.to_string(),
    }
}

/// Hides credentials when echoing a URL back in an error: everything up to the last `@`, as
/// the probe URL parser splits userinfo at the last `@` (a password may contain one).
pub fn hide_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(a)) if a > s => format!("{}***{}", &url[..s + 3], &url[a..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Path secret used in the test URLs.
    const TOKEN: &str = "tok3n-SECRET-abc";

    #[test]
    fn redacts_discord_urls() {
        assert_eq!(
            redact_url("https://discord.com/api/webhooks/123456789012345678/AbC-dEf_123"),
            "https://discord.com/api/webhooks/123456789012345678/***"
        );
        assert_eq!(
            redact_url("https://discord.com/api/webhooks/123/AbC-dEf_123?wait=true&thread_id=9"),
            "https://discord.com/api/webhooks/123/***"
        );
        assert_eq!(
            redact_url("https://discordapp.com/api/v10/webhooks/42/secret/slack"),
            "https://discordapp.com/api/v10/webhooks/42/***"
        );
        // Without a numeric ID the segment could be the token itself.
        assert_eq!(
            redact_url("https://discord.com/api/webhooks/secret"),
            "https://discord.com/***"
        );
    }

    #[test]
    fn redacts_other_urls() {
        assert_eq!(
            redact_url("http://127.0.0.1:9000/hook"),
            "http://127.0.0.1:9000/***"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9000/"),
            "http://127.0.0.1:9000/"
        );
        assert_eq!(redact_url("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(
            redact_url("https://h.example/?key=s3cret"),
            "https://h.example/***"
        );
        assert_eq!(
            redact_url("https://user:pa55word@hooks.example:8443/a/b?c"),
            "https://hooks.example:8443/***"
        );
        assert_eq!(redact_url("http://[::1]:8080/x"), "http://[::1]:8080/***");
    }

    #[test]
    fn scrub_hides_url_token_and_password() {
        let url = format!("https://u:pa55word@discord.com/api/webhooks/77/{TOKEN}?wait=true");
        let redacted = redact_url(&url);
        let secrets = url_secrets(&url);
        let text = format!("bad uri: {url}; also {TOKEN} and pa55word alone");
        let clean = scrub(&text, &url, &redacted, &secrets);
        assert!(!clean.contains(TOKEN), "{clean}");
        assert!(!clean.contains("pa55word"), "{clean}");
        assert!(
            clean.contains("https://discord.com/api/webhooks/77/***"),
            "{clean}"
        );
    }
}
