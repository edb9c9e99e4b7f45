//! The description of a traffic-drop event (`traffic=`), shared by Discord, Slack and the JSON
//! event as the other kinds' descriptions are (`notify::describe`); its title and log line are
//! the vocabulary's (`vocab::title`).

use crate::vocab::event::Level;
use crate::vocab::text::{clip, format_window};
use crate::vocab::title::{fmt_requests as requests, whole_requests as whole};
use crate::vocab::traffic::{threshold_requests, TrafficEvent, TrafficThreshold, USUAL_WINDOWS};

/// A NAME's share of a description.
const DESCRIPTION_NAME: usize = 200;

/// A threshold in words: `100`, or `50% of usual (206)` / `50% of usual (once 12 windows are
/// known)`.
fn describe(t: TrafficThreshold, e: &TrafficEvent) -> String {
    match t {
        TrafficThreshold::Requests(n) => n.to_string(),
        TrafficThreshold::Percent(_) => match threshold_requests(t, e.usual) {
            Some(limit) => format!("{t} of usual ({})", whole(limit)),
            None => format!("{t} of usual (once {USUAL_WINDOWS} windows are known)"),
        },
    }
}

/// One-paragraph explanation of a traffic event for embeds and attachments.
pub fn traffic_description(name: &str, e: &TrafficEvent) -> String {
    let name = clip(name, DESCRIPTION_NAME);
    let window = format_window(e.window_secs);
    let counted = if e.level == Level::Ok {
        format!(
            "{name} is back to {} in the last {window}",
            requests(e.requests)
        )
    } else {
        format!("{name} had {} in the last {window}", requests(e.requests))
    };
    let usual = match e.usual {
        Some(u) => format!(
            "; it usually has {} (median of the last {USUAL_WINDOWS} windows)",
            whole(u)
        ),
        None => String::new(),
    };
    let mut thresholds = format!("Warning below {}", describe(e.params.warn, e));
    if let Some(crit) = e.params.crit {
        thresholds.push_str(&format!(", critical below {}", describe(crit, e)));
    }
    format!("{counted}{usual}. {thresholds}.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::traffic::TrafficParams;
    use TrafficThreshold::{Percent, Requests};

    const AT: u64 = 1_700_000_430;

    fn event(level: Level, requests: u64, usual: Option<f64>) -> TrafficEvent {
        TrafficEvent {
            level,
            previous: Level::Ok,
            repeat: false,
            requests,
            usual,
            params: TrafficParams {
                warn: Percent(50.0),
                crit: Some(Percent(10.0)),
            },
            window_secs: 300,
            since_unix: AT - 430,
        }
    }

    #[test]
    fn descriptions_explain_the_thresholds() {
        let e = event(Level::Critical, 3, Some(412.0));
        assert_eq!(
            traffic_description("api", &e),
            "api had 3 requests in the last 5m; it usually has 412 (median of the last 12 \
             windows). Warning below 50% of usual (206), critical below 10% of usual (41)."
        );
        let e = event(Level::Ok, 380, Some(412.0));
        assert!(traffic_description("api", &e).starts_with("api is back to 380 requests"));
        let e = event(Level::Ok, 0, None);
        assert!(
            traffic_description("api", &e).ends_with(
                "50% of usual (once 12 windows are known), \
                 critical below 10% of usual (once 12 windows are known)."
            ),
            "{}",
            traffic_description("api", &e)
        );
    }

    #[test]
    fn an_absolute_floor_before_the_usual_traffic_is_known() {
        let mut e = event(Level::Critical, 0, None);
        e.params = TrafficParams {
            warn: Requests(100),
            crit: Some(Requests(1)),
        };
        e.window_secs = 60;
        assert_eq!(
            traffic_description("api", &e),
            "api had 0 requests in the last 1m. Warning below 100, critical below 1."
        );
    }

    #[test]
    fn hostile_names_stay_on_one_line() {
        let name = "é\n".repeat(500);
        let e = event(Level::Critical, 3, Some(412.0));
        let d = traffic_description(&name, &e);
        assert!(!d.contains('\n'));
        assert!(d.ends_with("critical below 10% of usual (41)."), "{d}");
    }
}
