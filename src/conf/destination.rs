//! Where alerts go: the destinations of `status_alert_webhook`, `status_alert_alertmanager` and
//! `status_alert_heartbeat`, their payload formats and the parsing of those directives' values.
//! Pure Rust, no nginx types. A destination's URL is a secret: errors show it only redacted.

use thiserror::Error;

use super::params::{invalid, parse_interval, validate_url, ParamError};
use super::route::{take_route_args, RouteRules};
use crate::vocab::redact::redact_for_error;

/// Most destinations (webhooks, Alertmanagers and the heartbeat together) one configuration
/// may have.
pub const MAX_DESTINATIONS: usize = crate::zone::MAX_DESTINATIONS;

/// One place alerts are posted to.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    /// The URL, secret included: never logged or exported as is.
    pub url: String,
    /// Payload format.
    pub format: WebhookFormat,
    /// Which events it gets, and whom CRITICAL messages ping (`min_level=`, `after=`,
    /// `mention=`).
    pub route: RouteRules,
}

impl Destination {
    /// A destination of `format` at `url` that gets every event and pings nobody.
    pub fn new(url: String, format: WebhookFormat) -> Destination {
        Destination {
            url,
            format,
            route: RouteRules::default(),
        }
    }

    /// True when routing keeps state for it (`min_level=critical` or `after=`; see
    /// `zone/routes.rs`).
    pub fn is_routed(&self) -> bool {
        self.format.carries_alerts() && !self.route.gets_everything()
    }

    /// True when `other` posts the same format to the same URL, whatever its routing.
    pub fn same_place(&self, other: &Destination) -> bool {
        self.url == other.url && self.format == other.format
    }

    /// The `destination` label of destination number `i` (0-based): format and position,
    /// never the URL (which holds the token); `heartbeat` alone, as there is at most one.
    pub fn label(&self, i: usize) -> String {
        match self.format {
            WebhookFormat::Heartbeat => self.format.name().to_string(),
            format => format!("{}-{}", format.name(), i + 1),
        }
    }
}

/// A destination that cannot be added to the configuration.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum DestinationError {
    /// `status_alert_webhook off` was given (where), so no alert destination may be.
    #[error("alerts are turned off by \"status_alert_webhook off\" in {0}")]
    AlertsOff(String),
    /// The same URL (redacted here) and format twice.
    #[error("{0} is duplicate")]
    Duplicate(String),
    /// More than [`MAX_DESTINATIONS`].
    #[error("at most {max} destinations", max = MAX_DESTINATIONS)]
    TooMany,
    /// More than `zone::routes::ROUTE_COLUMNS` destinations with `min_level=` or `after=`.
    #[error(
        "at most {max} destinations with min_level= or after=",
        max = crate::zone::routes::ROUTE_COLUMNS
    )]
    TooManyRouted,
    /// `status_alert_webhook off` beside other destinations.
    #[error("\"off\" cannot be combined with other destinations")]
    OffWithOthers,
}

/// Payload format of a webhook destination, from `format=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WebhookFormat {
    /// Discord webhook payload (embeds); the default.
    #[default]
    Discord,
    /// Slack incoming-webhook payload (attachments).
    Slack,
    /// The versioned JSON event of `json_event`.
    Json,
    /// Prometheus Alertmanager API v2 (`status_alert_alertmanager`; not a `format=` value).
    Alertmanager,
    /// A heartbeat monitor's ping URL (`status_alert_heartbeat`; not a `format=` value): it
    /// gets a GET now and then, never an alert.
    Heartbeat,
}

impl WebhookFormat {
    /// Parses a `format=` value.
    pub fn parse(value: &str) -> Result<WebhookFormat, ParamError> {
        match value {
            "discord" => Ok(WebhookFormat::Discord),
            "slack" => Ok(WebhookFormat::Slack),
            "json" => Ok(WebhookFormat::Json),
            _ => Err(invalid("format", value, "discord, slack or json")),
        }
    }

    /// The `format=` value naming this format.
    pub fn name(self) -> &'static str {
        match self {
            WebhookFormat::Discord => "discord",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Json => "json",
            WebhookFormat::Alertmanager => "alertmanager",
            WebhookFormat::Heartbeat => "heartbeat",
        }
    }

    /// True for the formats that alert events are sent in: all but the heartbeat.
    pub fn carries_alerts(self) -> bool {
        self != WebhookFormat::Heartbeat
    }
}

/// Validates a URL that may hold a secret (`https://...` or `http://...` for local receivers);
/// errors call it `key` and show it only as [`redact_for_error`] does.
fn parse_secret_url(key: &str, value: &str) -> Result<String, ParamError> {
    let value = value.trim();
    validate_url(key, value)
        .map_err(|_| invalid(key, &redact_for_error(value), "an http:// or https:// URL"))?;
    Ok(value.to_string())
}

/// The URL given as `URL` or as `file=PATH` (read with `read_file`, see
/// [`parse_webhook_args`]), validated by [`parse_secret_url`] under `key`.
fn url_or_file(
    key: &str,
    arg: &str,
    read_file: impl FnOnce(&str) -> Result<String, ParamError>,
) -> Result<String, ParamError> {
    let Some(path) = arg.strip_prefix("file=") else {
        return parse_secret_url(key, arg);
    };
    if path.is_empty() {
        return Err(invalid("file", path, "a path"));
    }
    let text = read_file(path)?;
    parse_secret_url(key, &text).map_err(|e| ParamError::InFile {
        error: Box::new(e),
        path: path.to_string(),
    })
}

/// Splits the arguments of a destination directive into the one destination (a URL,
/// `file=PATH` or `off`, as written) and the value of its one option `option=` (parsed by
/// `parse`), in either order. A second destination is an unknown parameter, shown redacted.
fn destination_and_option<'a, T>(
    args: &[&'a str],
    option: &str,
    parse: impl Fn(&str) -> Result<T, ParamError>,
) -> Result<(Option<&'a str>, Option<T>), ParamError> {
    let mut destination = None;
    let mut value = None;
    for arg in args {
        if let Some(v) = arg.strip_prefix(option).and_then(|r| r.strip_prefix('=')) {
            if value.is_some() {
                return Err(ParamError::Duplicate(option.into()));
            }
            value = Some(parse(v)?);
        } else if destination.is_some() {
            return Err(ParamError::UnknownParameter(redact_for_error(arg)));
        } else {
            destination = Some(*arg);
        }
    }
    Ok((destination, value))
}

/// Parses the arguments of `status_alert_webhook URL | file=PATH [format=...]
/// [min_level=...] [after=...] [mention=...] | off`: the destination, or `None` for `off`.
///
/// The destination and the options may come in any order. `read_file` is called with the
/// `file=` path as written and returns the file's text or why it could not be read; the
/// configuration glue resolves the path and does the I/O, so this stays pure. Errors never echo
/// more than the first 24 characters of a URL (it may carry the webhook token).
pub fn parse_webhook_args(
    args: &[&str],
    read_file: impl FnOnce(&str) -> Result<String, ParamError>,
) -> Result<Option<Destination>, ParamError> {
    let (route, args) = take_route_args(args)?;
    let (destination, format) = destination_and_option(&args, "format", WebhookFormat::parse)?;
    let Some(destination) = destination else {
        return Err(ParamError::Conflict(
            "a webhook URL, \"file=PATH\" or \"off\" is required".into(),
        ));
    };
    if destination == "off" {
        if format.is_some() || !route.is_empty() {
            return Err(ParamError::Conflict(
                "\"off\" takes no other parameters".into(),
            ));
        }
        return Ok(None);
    }
    let format = format.unwrap_or_default();
    let route = route.rules_for(format)?;
    Ok(Some(Destination {
        url: url_or_file("webhook", destination, read_file)?,
        format,
        route,
    }))
}

/// Default `interval=` of `status_alert_heartbeat`.
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 60_000;

/// Parses the arguments of `status_alert_heartbeat URL | file=PATH [interval=TIME]`: the ping
/// URL and the interval in ms (1s to 24h, default [`DEFAULT_HEARTBEAT_INTERVAL_MS`]).
///
/// The URL and `interval=` may come in either order; `file=` and the errors are as for
/// [`parse_webhook_args`] (the URL is as secret as a webhook's).
pub fn parse_heartbeat_args(
    args: &[&str],
    read_file: impl FnOnce(&str) -> Result<String, ParamError>,
) -> Result<(String, u64), ParamError> {
    let (destination, interval_ms) = destination_and_option(args, "interval", parse_interval)?;
    let Some(destination) = destination else {
        return Err(ParamError::Conflict(
            "a heartbeat URL or \"file=PATH\" is required".into(),
        ));
    };
    let url = url_or_file("heartbeat", destination, read_file)?;
    Ok((url, interval_ms.unwrap_or(DEFAULT_HEARTBEAT_INTERVAL_MS)))
}

/// Validates a webhook URL (`https://...`, or `http://...` for local receivers); errors never
/// show its secret.
pub fn parse_webhook_url(value: &str) -> Result<String, ParamError> {
    parse_secret_url("webhook", value)
}

/// The `POST /api/v2/alerts` URL of an Alertmanager given as `http://host:9093` (or already
/// with a path); errors never echo the URL's credentials.
pub fn parse_alertmanager_url(value: &str) -> Result<String, ParamError> {
    let url = parse_webhook_url(value)?;
    let after_scheme = url.split_once("://").map_or("", |(_, rest)| rest);
    let has_path = after_scheme
        .find('/')
        .is_some_and(|i| i + 1 < after_scheme.len());
    Ok(if has_path {
        url
    } else {
        format!("{}/api/v2/alerts", url.trim_end_matches('/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alertmanager_urls_get_the_v2_alerts_path() {
        let url = |v: &str| parse_alertmanager_url(v).unwrap();
        assert_eq!(url("http://am1:9093"), "http://am1:9093/api/v2/alerts");
        assert_eq!(url("http://am1:9093/"), "http://am1:9093/api/v2/alerts");
        assert_eq!(
            url("https://am.example/x/api/v2/alerts"),
            "https://am.example/x/api/v2/alerts"
        );
        assert!(parse_alertmanager_url("am1:9093").is_err());
    }

    #[test]
    fn webhook_errors_never_show_credentials() {
        let e = parse_webhook_url("ftp://user:hunter2@example.com/x").unwrap_err();
        let text = e.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("user"),
            "{text}"
        );
        assert!(text.contains("ftp://***@example.com"), "{text}");
    }

    #[test]
    fn webhook_urls() {
        assert_eq!(
            parse_webhook_url(" https://discord.com/api/webhooks/1/abc\n"),
            Ok("https://discord.com/api/webhooks/1/abc".into())
        );
        let err = parse_webhook_url("discord.com/api/webhooks/1/supersecrettokenvalue123")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("supersecrettokenvalue123"),
            "token leaked: {err}"
        );
    }

    fn no_file(path: &str) -> Result<String, ParamError> {
        panic!("unexpected read of {path}")
    }

    #[test]
    fn webhook_args_accepted() {
        let url = "https://hooks.slack.com/services/T0/B0/secret";
        let to = |url: &str, format| Some(Destination::new(url.into(), format));
        let cases: [(&[&str], Option<Destination>); 6] = [
            (&[url], to(url, WebhookFormat::Discord)),
            (&[url, "format=slack"], to(url, WebhookFormat::Slack)),
            (&["format=json", url], to(url, WebhookFormat::Json)),
            (&[url, "format=discord"], to(url, WebhookFormat::Discord)),
            (&["off"], None),
            (
                &["http://127.0.0.1:9000/hook"],
                to("http://127.0.0.1:9000/hook", WebhookFormat::Discord),
            ),
        ];
        for (args, want) in cases {
            assert_eq!(parse_webhook_args(args, no_file), Ok(want), "{args:?}");
        }
        let read = |path: &str| {
            assert_eq!(path, "/etc/nginx/slack.url");
            Ok(format!("{url}\n"))
        };
        assert_eq!(
            parse_webhook_args(&["file=/etc/nginx/slack.url", "format=slack"], read),
            Ok(to(url, WebhookFormat::Slack))
        );
    }

    #[test]
    fn webhook_args_rejected() {
        let secret = "https://discord.com/api/webhooks/1/supersecrettokenvalue123";
        let cases: [(&[&str], &str); 9] = [
            (&[], "a webhook URL, \"file=PATH\" or \"off\" is required"),
            (
                &["format=slack"],
                "a webhook URL, \"file=PATH\" or \"off\" is required",
            ),
            (&["off", "format=json"], "\"off\" takes no other parameters"),
            (
                &["https://a/b", "format=teams"],
                "invalid format value \"teams\", expected discord, slack or json",
            ),
            (&["https://a/b", "format="], "invalid format value \"\""),
            (
                &["https://a/b", "format=json", "format=slack"],
                "duplicate parameter \"format\"",
            ),
            (&["https://a/b", "foo=1"], "invalid parameter \"foo=1\""),
            (&["file="], "invalid file value \"\", expected a path"),
            (&["ftp://a/b"], "invalid webhook value \"ftp://a/b\""),
        ];
        for (args, msg) in cases {
            let err = parse_webhook_args(args, no_file).unwrap_err().to_string();
            assert!(err.starts_with(msg), "{args:?}: {err}");
        }
        // A second URL is an unknown parameter, shown without its token.
        let err = parse_webhook_args(&["https://a/b", secret], no_file)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid parameter \"https://discord.com/api/"),
            "{err}"
        );
        assert!(!err.contains("supersecrettokenvalue123"), "{err}");
        // File errors: the reader's reason, or the bad content without its token.
        let err = parse_webhook_args(&["file=x"], |_| {
            Err(ParamError::UnreadableFile {
                what: "webhook",
                path: "x".into(),
                reason: "gone".into(),
            })
        })
        .unwrap_err()
        .to_string();
        assert_eq!(err, "cannot read webhook URL from \"x\": gone");
        let err = parse_webhook_args(&["file=x"], |_| Ok(secret.replace("https://", "")))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("(read from \"x\")"), "{err}");
        assert!(!err.contains("supersecrettokenvalue123"), "{err}");
    }

    #[test]
    fn heartbeat_args_accepted() {
        let url = "https://hc-ping.com/0b1c2d3e-uuid";
        let cases: [(&[&str], u64); 4] = [
            (&[url], DEFAULT_HEARTBEAT_INTERVAL_MS),
            (&[url, "interval=30s"], 30_000),
            (&["interval=1s", url], 1000),
            (&[url, "interval=1h"], 3_600_000),
        ];
        for (args, interval) in cases {
            assert_eq!(
                parse_heartbeat_args(args, no_file),
                Ok((url.to_string(), interval)),
                "{args:?}"
            );
        }
        let kuma = "https://kuma.example.com/api/push/pushTok3n?status=up&msg=OK&ping=";
        let read = |path: &str| {
            assert_eq!(path, "hb.url");
            Ok(format!("{kuma}\n"))
        };
        assert_eq!(
            parse_heartbeat_args(&["file=hb.url", "interval=2m"], read),
            Ok((kuma.to_string(), 120_000))
        );
    }

    #[test]
    fn heartbeat_args_rejected() {
        let secret = "https://hc-ping.com/supersecretuuidvalue1234";
        let cases: [(&[&str], &str); 9] = [
            (&[], "a heartbeat URL or \"file=PATH\" is required"),
            (
                &["interval=10s"],
                "a heartbeat URL or \"file=PATH\" is required",
            ),
            (
                &["ftp://a/b"],
                "invalid heartbeat value \"ftp://a/b\", expected an http:// or https:// URL",
            ),
            (&["off"], "invalid heartbeat value \"off\""),
            (
                &["https://a/b", "interval=500ms"],
                "invalid interval value \"500ms\", expected a time between 1s and 24h",
            ),
            (
                &["https://a/b", "interval=often"],
                "invalid interval value \"often\"",
            ),
            (
                &["https://a/b", "interval=1m", "interval=2m"],
                "duplicate parameter \"interval\"",
            ),
            (
                &["https://a/b", "format=json"],
                "invalid parameter \"format=json\"",
            ),
            (&["file="], "invalid file value \"\", expected a path"),
        ];
        for (args, msg) in cases {
            let err = parse_heartbeat_args(args, no_file).unwrap_err().to_string();
            assert!(err.starts_with(msg), "{args:?}: {err}");
        }
        // Neither a second URL nor a bad URL read from a file shows its secret.
        let err = parse_heartbeat_args(&["https://a/b", secret], no_file)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("supersecretuuidvalue1234"), "{err}");
        let err = parse_heartbeat_args(&["file=x"], |_| Ok(secret.replace("https://", "")))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("(read from \"x\")"), "{err}");
        assert!(err.starts_with("invalid heartbeat value"), "{err}");
        assert!(!err.contains("supersecretuuidvalue1234"), "{err}");
        let err = parse_heartbeat_args(&["file=x"], |_| {
            Err(ParamError::UnreadableFile {
                what: "heartbeat",
                path: "x".into(),
                reason: "gone".into(),
            })
        })
        .unwrap_err()
        .to_string();
        assert_eq!(err, "cannot read heartbeat URL from \"x\": gone");
    }

    #[test]
    fn webhook_format_names() {
        for f in [
            WebhookFormat::Discord,
            WebhookFormat::Slack,
            WebhookFormat::Json,
        ] {
            assert_eq!(WebhookFormat::parse(f.name()), Ok(f));
        }
        assert!(
            WebhookFormat::parse("Slack").is_err(),
            "values are lower case like nginx's"
        );
        // Not `format=` values: they have directives of their own.
        for f in [WebhookFormat::Alertmanager, WebhookFormat::Heartbeat] {
            assert!(WebhookFormat::parse(f.name()).is_err(), "{f:?}");
        }
        assert!(!WebhookFormat::Heartbeat.carries_alerts());
        assert!(WebhookFormat::Alertmanager.carries_alerts());
    }
}
