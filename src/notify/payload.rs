//! Webhook request bodies in each destination's format (`status_alert_webhook ... format=`).

use crate::conf::params::WebhookFormat;
use crate::vocab::event::AlertEvent;

/// JSON bodies to POST for `events`, in order: Discord and Slack split large batches over several
/// messages to stay within their limits; the JSON event is one message per batch. No events, no
/// bodies; none ever for Alertmanager (built apart) and the heartbeat (no alerts).
pub fn webhook_bodies(format: WebhookFormat, events: &[AlertEvent], host: &str) -> Vec<String> {
    match format {
        WebhookFormat::Discord => crate::notify::discord::build_payloads(events, host)
            .iter()
            .map(|p| p.to_string())
            .collect(),
        WebhookFormat::Slack => crate::notify::slack::build_payloads(events, host)
            .iter()
            .map(|p| p.to_string())
            .collect(),
        WebhookFormat::Json => crate::notify::json_event::build_payload(events, host)
            .map(|p| p.to_string())
            .into_iter()
            .collect(),
        // Alertmanager wants what fires now, not only what changed: see alertmanager.rs.
        WebhookFormat::Alertmanager => Vec::new(),
        // A heartbeat monitor gets beats (evaluate/heartbeat.rs), never alerts.
        WebhookFormat::Heartbeat => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::event::{EventDetail, ProbeEvent};

    fn down(name: &str) -> AlertEvent {
        AlertEvent {
            name: name.into(),
            at_unix: 1_795_308_505,
            link: None,
            runbook: None,
            detail: EventDetail::Probe(ProbeEvent {
                up: false,
                target: "tcp://10.0.0.7:5432".into(),
                reason: Some("connection refused".into()),
                status: None,
                duration_ms: 1,
                since_unix: 1_795_308_505,
            }),
        }
    }

    #[test]
    fn each_format_has_its_shape() {
        let events: Vec<AlertEvent> = (0..25).map(|i| down(&format!("db{i}"))).collect();
        let parse = |s: &String| serde_json::from_str::<serde_json::Value>(s).unwrap();
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
        assert!(
            webhook_bodies(WebhookFormat::Heartbeat, &events, "h").is_empty(),
            "no alert goes to the heartbeat monitor"
        );
    }
}
