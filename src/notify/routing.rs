//! Which destination gets which body: the events of one round in each destination's format
//! (`status_alert_webhook ... format=`), what fires now for the Alertmanagers, nothing for the
//! heartbeat monitor (it gets beats, never alerts). Pure: worker 0's driver queues what this
//! returns.

use crate::conf::destination::Destination;
use crate::conf::destination::WebhookFormat;
use crate::notify::{alertmanager, discord, json_event, slack};
use crate::vocab::event::AlertEvent;

/// One body to post, by the index of its destination in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    /// Index in `MainConf::destinations`.
    pub destination: usize,
    /// The JSON body.
    pub body: String,
}

/// True when some destination wants what fires now besides what changed (an Alertmanager),
/// so that the caller reads it from the zone only then.
pub fn wants_firing(destinations: &[Destination]) -> bool {
    destinations
        .iter()
        .any(|d| d.format == WebhookFormat::Alertmanager)
}

/// JSON bodies to POST for `events` in `format`, in order: Discord and Slack split large
/// batches over several messages to stay within their limits; the JSON event is one message
/// per batch. No events, no bodies; none for Alertmanager (built from what fires, see
/// [`route`]) and the heartbeat.
pub fn webhook_bodies(format: WebhookFormat, events: &[AlertEvent], host: &str) -> Vec<String> {
    match format {
        WebhookFormat::Discord => discord::build_payloads(events, host)
            .iter()
            .map(|p| p.to_string())
            .collect(),
        WebhookFormat::Slack => slack::build_payloads(events, host)
            .iter()
            .map(|p| p.to_string())
            .collect(),
        WebhookFormat::Json => json_event::build_payload(events, host)
            .map(|p| p.to_string())
            .into_iter()
            .collect(),
        WebhookFormat::Alertmanager | WebhookFormat::Heartbeat => Vec::new(),
    }
}

/// What every destination gets for the `events` of one round, destinations in configuration
/// order: webhooks the events in their format; Alertmanagers what fires now (`firing`, also
/// what did not change) and the end of what `events` ended, in one body; the heartbeat
/// nothing.
pub fn route(
    destinations: &[Destination],
    events: &[AlertEvent],
    firing: &[AlertEvent],
    host: &str,
    now_unix: u64,
) -> Vec<Post> {
    let mut posts = Vec::new();
    for (destination, d) in destinations.iter().enumerate() {
        let bodies = match d.format {
            WebhookFormat::Alertmanager => {
                alertmanager::build_payload(firing, events, host, now_unix)
                    .map(|v| v.to_string())
                    .into_iter()
                    .collect()
            }
            format => webhook_bodies(format, events, host),
        };
        posts.extend(bodies.into_iter().map(|body| Post { destination, body }));
    }
    posts
}

/// The periodic re-post of what fires (`firing`) to every Alertmanager, so that Alertmanager
/// keeps it open; nothing when nothing fires.
pub fn resend(
    destinations: &[Destination],
    firing: &[AlertEvent],
    host: &str,
    now_unix: u64,
) -> Vec<Post> {
    let Some(body) = alertmanager::build_payload(firing, &[], host, now_unix) else {
        return Vec::new();
    };
    let body = body.to_string();
    destinations
        .iter()
        .enumerate()
        .filter(|(_, d)| d.format == WebhookFormat::Alertmanager)
        .map(|(destination, _)| Post {
            destination,
            body: body.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::event::samples::{critical, event, probe};
    use crate::vocab::event::EventDetail;

    fn down(name: &str) -> AlertEvent {
        event(
            name,
            EventDetail::Probe(probe(false, Some("connection refused"), None)),
        )
    }

    fn to(format: WebhookFormat) -> Destination {
        Destination {
            url: format!("https://{}.example/hook", format.name()),
            format,
        }
    }

    fn parse(body: &str) -> serde_json::Value {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn each_format_has_its_shape() {
        let events: Vec<AlertEvent> = (0..25).map(|i| down(&format!("db{i}"))).collect();
        let discord = webhook_bodies(WebhookFormat::Discord, &events, "h");
        assert_eq!(discord.len(), 3, "10 embeds per message");
        assert!(parse(&discord[0])["embeds"].is_array());
        let slack = webhook_bodies(WebhookFormat::Slack, &events, "h");
        assert_eq!(slack.len(), 2, "20 attachments per message");
        assert!(parse(&slack[0])["attachments"].is_array());
        let json = webhook_bodies(WebhookFormat::Json, &events, "h");
        assert_eq!(json.len(), 1, "one message per batch");
        assert_eq!(parse(&json[0])["events"].as_array().unwrap().len(), 25);
        for f in [
            WebhookFormat::Discord,
            WebhookFormat::Slack,
            WebhookFormat::Json,
        ] {
            assert!(webhook_bodies(f, &[], "h").is_empty());
        }
    }

    #[test]
    fn every_destination_gets_the_round_in_its_format_but_the_heartbeat() {
        let destinations = [
            to(WebhookFormat::Discord),
            to(WebhookFormat::Alertmanager),
            to(WebhookFormat::Slack),
            to(WebhookFormat::Json),
            to(WebhookFormat::Heartbeat),
        ];
        assert!(wants_firing(&destinations));
        let events = [critical("be"), down("db")];
        let posts = route(&destinations, &events, &events, "h", 1_000);
        let to: Vec<usize> = posts.iter().map(|p| p.destination).collect();
        assert_eq!(
            to,
            [0, 1, 2, 3],
            "in configuration order, none to the heartbeat"
        );
        assert_eq!(parse(&posts[0].body)["embeds"].as_array().unwrap().len(), 2);
        let alerts = parse(&posts[1].body);
        assert_eq!(alerts.as_array().unwrap().len(), 2, "what fires now");
        assert_eq!(alerts[0]["labels"]["alertname"], "NginxLocationErrorRatio");
        assert_eq!(alerts[1]["labels"]["alertname"], "NginxProbeDown");
        assert!(parse(&posts[2].body)["attachments"].is_array());
        assert_eq!(parse(&posts[3].body)["events"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn alertmanagers_get_what_fires_also_when_it_did_not_change() {
        let destinations = [to(WebhookFormat::Discord), to(WebhookFormat::Alertmanager)];
        let up = event("db", EventDetail::Probe(probe(true, None, None)));
        // The round ended the probe's incident while the NAME still fires.
        let posts = route(
            &destinations,
            std::slice::from_ref(&up),
            &[critical("be")],
            "h",
            1_000,
        );
        assert_eq!(posts.len(), 2);
        let alerts = parse(&posts[1].body);
        let names: Vec<&str> = alerts
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["labels"]["alertname"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["NginxProbeDown", "NginxLocationErrorRatio"]);
        assert_eq!(alerts[0]["endsAt"], "1970-01-01T00:16:40Z", "ended now");
        let webhook = parse(&posts[0].body);
        assert_eq!(
            webhook["embeds"].as_array().unwrap().len(),
            1,
            "only the change"
        );
    }

    #[test]
    fn nothing_to_say_posts_nothing() {
        let destinations = [
            to(WebhookFormat::Discord),
            to(WebhookFormat::Alertmanager),
            to(WebhookFormat::Heartbeat),
        ];
        assert!(route(&destinations, &[], &[], "h", 1_000).is_empty());
        assert!(resend(&destinations, &[], "h", 1_000).is_empty());
        let heartbeat_only = [to(WebhookFormat::Heartbeat)];
        assert!(!wants_firing(&heartbeat_only));
        assert!(route(&heartbeat_only, &[down("db")], &[], "h", 1_000).is_empty());
    }

    #[test]
    fn resends_go_to_every_alertmanager_and_nowhere_else() {
        let destinations = [
            to(WebhookFormat::Alertmanager),
            to(WebhookFormat::Discord),
            Destination {
                url: "https://am2.example/api/v2/alerts".into(),
                format: WebhookFormat::Alertmanager,
            },
            to(WebhookFormat::Heartbeat),
        ];
        let posts = resend(&destinations, &[critical("be")], "h", 1_000);
        let to: Vec<usize> = posts.iter().map(|p| p.destination).collect();
        assert_eq!(to, [0, 2], "an HA cluster is posted to in full");
        assert_eq!(posts[0].body, posts[1].body);
        assert_eq!(parse(&posts[0].body)[0]["labels"]["severity"], "critical");
    }
}
