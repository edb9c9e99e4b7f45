//! Routing options of a destination: `min_level=warning|critical`, `after=TIME` and
//! `mention=ID,...` on `status_alert_webhook` (and `min_level=`/`after=` on
//! `status_alert_alertmanager`). Pure parsing; the decision per event is `notify::route`, the
//! mention text `notify::mention`.
//!
//! Parsing takes two steps because what `mention=` accepts depends on `format=`, which the
//! webhook parser reads: [`take_route_args`] takes the routing options out of a directive's
//! arguments (the rest goes to `parse_webhook_args` unchanged), then [`RouteArgs::rules_for`]
//! checks them against the destination's format.
//!
//! Depends on [`ParamError`] and [`parse_time_ms`] (`conf::params`), [`WebhookFormat`], and
//! [`Level`] of the event vocabulary.

use crate::conf::destination::WebhookFormat;
use crate::conf::params::{parse_time_ms, ParamError, MAX_WINDOW_MS};
use crate::vocab::event::Level;

/// Most mentions one destination may list: they all go before the summary line, which must
/// keep most of Discord's 2000 characters (25 role mentions take at most 600).
pub const MAX_MENTIONS: usize = 25;

/// Who a CRITICAL message pings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mention {
    /// Discord `role:ID`: `<@&ID>`.
    DiscordRole(u64),
    /// Discord `user:ID`: `<@ID>`.
    DiscordUser(u64),
    /// Slack user ID (`U...`, `W...`): `<@U123>`.
    SlackUser(String),
    /// Slack user group ID (`S...`): `<!subteam^S123>`.
    SlackGroup(String),
    /// `here`: Discord `@here`, Slack `<!here>` (members of the channel who are active).
    Here,
}

/// How one destination is routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRules {
    /// Events below this level are not sent (their RESOLVED follows the incident, see
    /// `notify::route`). `Warning` (the default) sends everything.
    pub min_level: Level,
    /// An incident reaches this destination only once it has fired this long, ms; 0 (the
    /// default) at once.
    pub after_ms: u64,
    /// Pinged by CRITICAL messages, in the order configured.
    pub mentions: Vec<Mention>,
}

impl Default for RouteRules {
    fn default() -> Self {
        RouteRules {
            min_level: Level::Warning,
            after_ms: 0,
            mentions: Vec::new(),
        }
    }
}

impl RouteRules {
    /// True when this destination gets every event as it happens (no `min_level=critical`,
    /// no `after=`), as destinations did before routing existed.
    pub fn gets_everything(&self) -> bool {
        self.min_level <= Level::Warning && self.after_ms == 0
    }
}

/// The routing options as written, before they are checked against the destination's format.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteArgs {
    min_level: Option<Level>,
    after_ms: Option<u64>,
    /// The value of `mention=` and the whole argument (for errors).
    mention: Option<(String, String)>,
}

impl RouteArgs {
    /// True when no routing option was given (`status_alert_webhook off` takes none).
    pub fn is_empty(&self) -> bool {
        *self == RouteArgs::default()
    }

    /// The rules for a destination of `format`: `mention=` needs Discord or Slack; no routing
    /// option goes with a heartbeat.
    pub fn rules_for(self, format: WebhookFormat) -> Result<RouteRules, ParamError> {
        if format == WebhookFormat::Heartbeat && !self.is_empty() {
            return Err(ParamError::Conflict(
                "min_level=, after= and mention= are for alert destinations, not the heartbeat"
                    .into(),
            ));
        }
        let mentions = match (&self.mention, format) {
            (None, _) => Vec::new(),
            (Some((value, arg)), WebhookFormat::Discord | WebhookFormat::Slack) => {
                parse_mentions(value, arg, format)?
            }
            (Some(_), WebhookFormat::Alertmanager) => {
                return Err(ParamError::Conflict(
                    "mention= is not supported for Alertmanager: its receivers decide whom to \
                     notify"
                        .into(),
                ))
            }
            (Some(_), _) => {
                return Err(ParamError::Conflict(format!(
                    "mention= needs format=discord or format=slack, not format={}",
                    format.name()
                )))
            }
        };
        Ok(RouteRules {
            min_level: self.min_level.unwrap_or(Level::Warning),
            after_ms: self.after_ms.unwrap_or(0),
            mentions,
        })
    }
}

fn invalid(key: &str, value: &str, expected: &str) -> ParamError {
    ParamError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.to_string(),
    }
}

/// Takes `min_level=`, `after=` and `mention=` out of a destination's arguments; returns them
/// and the other arguments in their order.
pub fn take_route_args<'a>(args: &[&'a str]) -> Result<(RouteArgs, Vec<&'a str>), ParamError> {
    let mut route = RouteArgs::default();
    let mut rest = Vec::with_capacity(args.len());
    for &arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            rest.push(arg);
            continue;
        };
        let duplicate = match key {
            "min_level" => route.min_level.is_some(),
            "after" => route.after_ms.is_some(),
            "mention" => route.mention.is_some(),
            _ => {
                rest.push(arg);
                continue;
            }
        };
        if duplicate {
            return Err(ParamError::Duplicate(key.to_string()));
        }
        match key {
            "min_level" => {
                route.min_level = Some(match value {
                    "warning" => Level::Warning,
                    "critical" => Level::Critical,
                    _ => return Err(invalid(key, value, "warning or critical")),
                });
            }
            "after" => {
                route.after_ms = Some(
                    parse_time_ms(value)
                        .filter(|ms| (1000..=MAX_WINDOW_MS).contains(ms))
                        .ok_or_else(|| invalid(key, value, "a time between 1s and 24h"))?,
                );
            }
            _ => route.mention = Some((value.to_string(), arg.to_string())),
        }
    }
    Ok((route, rest))
}

const EXPECTED_DISCORD: &str = "role:ID, user:ID or here for Discord";
const EXPECTED_SLACK: &str = "a user ID (U... or W...), a user group ID (S...) or here for Slack";

/// Parses the comma list of `mention=` for a destination of `format` (Discord or Slack).
fn parse_mentions(
    value: &str,
    arg: &str,
    format: WebhookFormat,
) -> Result<Vec<Mention>, ParamError> {
    let mut mentions = Vec::new();
    for item in value.split(',') {
        let mention = match format {
            WebhookFormat::Slack => slack_mention(item),
            _ => discord_mention(item),
        };
        let Some(mention) = mention else {
            let expected = match format {
                WebhookFormat::Slack => EXPECTED_SLACK,
                _ => EXPECTED_DISCORD,
            };
            return Err(ParamError::InvalidPart {
                what: "mention",
                part: item.to_string(),
                arg: arg.to_string(),
                expected,
            });
        };
        if mentions.contains(&mention) {
            return Err(ParamError::Conflict(format!(
                "mention \"{item}\" is listed twice in \"{arg}\""
            )));
        }
        if mentions.len() == MAX_MENTIONS {
            return Err(ParamError::Conflict(format!(
                "too many mentions in \"{arg}\", at most {MAX_MENTIONS}"
            )));
        }
        mentions.push(mention);
    }
    Ok(mentions)
}

/// `role:ID`, `user:ID` (ID a Discord snowflake: decimal, non-zero, fits 64 bits) or `here`.
fn discord_mention(item: &str) -> Option<Mention> {
    if item == "here" {
        return Some(Mention::Here);
    }
    let (kind, id) = item.split_once(':')?;
    let ok = !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit());
    let id = id.parse::<u64>().ok().filter(|id| ok && *id != 0)?;
    match kind {
        "role" => Some(Mention::DiscordRole(id)),
        "user" => Some(Mention::DiscordUser(id)),
        _ => None,
    }
}

/// `U...`/`W...` (user), `S...` (user group): upper-case letters and digits, or `here`.
fn slack_mention(item: &str) -> Option<Mention> {
    if item == "here" {
        return Some(Mention::Here);
    }
    let ok = (2..=32).contains(&item.len())
        && item
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    match item.as_bytes().first() {
        Some(b'U' | b'W') if ok => Some(Mention::SlackUser(item.to_string())),
        Some(b'S') if ok => Some(Mention::SlackGroup(item.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(args: &[&str], format: WebhookFormat) -> Result<(RouteRules, Vec<String>), String> {
        let (route, rest) = take_route_args(args).map_err(|e| e.to_string())?;
        let rules = route.rules_for(format).map_err(|e| e.to_string())?;
        Ok((rules, rest.iter().map(|s| s.to_string()).collect()))
    }

    #[test]
    fn routing_options_are_taken_out_and_the_rest_kept_in_order() {
        let url = "https://discord.com/api/webhooks/1/tok?wait=true";
        let args = [
            url,
            "min_level=critical",
            "format=discord",
            "after=15m",
            "mention=role:123456789012345678,user:42,here",
        ];
        let (r, rest) = rules(&args, WebhookFormat::Discord).unwrap();
        assert_eq!(rest, [url, "format=discord"]);
        assert_eq!(r.min_level, Level::Critical);
        assert_eq!(r.after_ms, 900_000);
        assert_eq!(
            r.mentions,
            [
                Mention::DiscordRole(123_456_789_012_345_678),
                Mention::DiscordUser(42),
                Mention::Here
            ]
        );
        assert!(!r.gets_everything());
        // Defaults: everything, at once, nobody pinged.
        let (r, rest) = rules(&["file=/etc/nginx/hook.url"], WebhookFormat::Json).unwrap();
        assert_eq!(r, RouteRules::default());
        assert!(r.gets_everything());
        assert_eq!(rest, ["file=/etc/nginx/hook.url"]);
        let (r, _) = rules(
            &["min_level=warning", "after=1s"],
            WebhookFormat::Alertmanager,
        )
        .unwrap();
        assert_eq!((r.min_level, r.after_ms), (Level::Warning, 1000));
        assert!(take_route_args(&["off"]).unwrap().0.is_empty());
        assert!(!take_route_args(&["after=5s"]).unwrap().0.is_empty());
    }

    #[test]
    fn slack_mentions() {
        let args = ["mention=U012AB3CD,W0G7LCKS1,S0614TZR7,here"];
        let (r, _) = rules(&args, WebhookFormat::Slack).unwrap();
        assert_eq!(
            r.mentions,
            [
                Mention::SlackUser("U012AB3CD".into()),
                Mention::SlackUser("W0G7LCKS1".into()),
                Mention::SlackGroup("S0614TZR7".into()),
                Mention::Here
            ]
        );
    }

    #[test]
    fn bad_values_read_like_nginx() {
        let d = WebhookFormat::Discord;
        let s = WebhookFormat::Slack;
        let cases: [(&[&str], WebhookFormat, &str); 22] = [
            (
                &["min_level=info"],
                d,
                "invalid min_level value \"info\", expected warning or critical",
            ),
            (&["min_level=ok"], d, "invalid min_level value \"ok\""),
            (
                &["min_level=Critical"],
                d,
                "invalid min_level value \"Critical\"",
            ),
            (
                &["after=soon"],
                d,
                "invalid after value \"soon\", expected a time between 1s and 24h",
            ),
            (&["after=0s"], d, "invalid after value \"0s\""),
            (&["after=500ms"], d, "invalid after value \"500ms\""),
            (&["after=25h"], d, "invalid after value \"25h\""),
            (
                &["after=1m", "after=2m"],
                d,
                "duplicate parameter \"after\"",
            ),
            (
                &["mention=here", "mention=here"],
                d,
                "duplicate parameter \"mention\"",
            ),
            (
                &["mention=@everyone"],
                d,
                "invalid mention \"@everyone\" in \"mention=@everyone\", expected role:ID, \
                 user:ID or here for Discord",
            ),
            (&["mention="], d, "invalid mention \"\" in \"mention=\""),
            (&["mention=role:"], d, "invalid mention \"role:\""),
            (&["mention=role:0"], d, "invalid mention \"role:0\""),
            (&["mention=role:12a"], d, "invalid mention \"role:12a\""),
            (
                &["mention=role:99999999999999999999"],
                d,
                "invalid mention \"role:99999999999999999999\"",
            ),
            (&["mention=channel:1"], d, "invalid mention \"channel:1\""),
            (
                &["mention=here,"],
                d,
                "invalid mention \"\" in \"mention=here,\"",
            ),
            (
                &["mention=user:1,user:1"],
                d,
                "mention \"user:1\" is listed twice in \"mention=user:1,user:1\"",
            ),
            (
                &["mention=role:1"],
                s,
                "invalid mention \"role:1\" in \"mention=role:1\", expected a user ID (U... or \
                 W...), a user group ID (S...) or here for Slack",
            ),
            (&["mention=u012ab3cd"], s, "invalid mention \"u012ab3cd\""),
            (&["mention=C012AB3CD"], s, "invalid mention \"C012AB3CD\""),
            (&["mention=<!channel>"], s, "invalid mention \"<!channel>\""),
        ];
        for (args, format, msg) in cases {
            let err = rules(args, format).unwrap_err();
            assert!(err.starts_with(msg), "{args:?}: {err}");
        }
        let many: Vec<String> = (1..=26).map(|i| format!("user:{i}")).collect();
        let arg = format!("mention={}", many.join(","));
        let err = rules(&[&arg], d).unwrap_err();
        assert!(
            err.starts_with("too many mentions in \"mention=user:1,"),
            "{err}"
        );
        assert!(err.ends_with("\", at most 25"), "{err}");
        let arg = format!("mention={}", many[..25].join(","));
        assert_eq!(rules(&[&arg], d).unwrap().0.mentions.len(), 25);
    }

    #[test]
    fn mentions_need_a_format_that_can_ping() {
        let err = rules(&["mention=here"], WebhookFormat::Json).unwrap_err();
        assert_eq!(
            err,
            "mention= needs format=discord or format=slack, not format=json"
        );
        let err = rules(&["mention=here"], WebhookFormat::Alertmanager).unwrap_err();
        assert!(
            err.starts_with("mention= is not supported for Alertmanager"),
            "{err}"
        );
        let err = rules(&["after=1m"], WebhookFormat::Heartbeat).unwrap_err();
        assert!(
            err.starts_with("min_level=, after= and mention= are for alert"),
            "{err}"
        );
        assert!(rules(&[], WebhookFormat::Heartbeat).is_ok());
    }
}
