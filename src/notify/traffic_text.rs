//! Title and description of a traffic-drop event (`traffic=`, SPEC 14), shared by every
//! destination as the other kinds' texts are:
//!
//! - firing: `CRITICAL api: traffic 3 requests in 5m, usually 412`; before the usual traffic
//!   is known (an absolute threshold fired): `CRITICAL api: traffic 0 requests in 5m, expected
//!   at least 100`
//! - repeat of a firing level: `... (still firing)`
//! - resolved: `RESOLVED api traffic after 7m 10s`
//!
//! Depends on [`TrafficEvent`] (`evaluate::traffic`; it joins `EventDetail` when wired) and on
//! the text helpers of `notify::discord` (`clip`, `truncate_chars`, `format_window`,
//! `format_duration`), which move to the vocabulary layer. Wiring: `discord::title`,
//! `kind_label`, `event_description` and `log_line` get an `EventDetail::Traffic` arm calling
//! these.

use crate::conf::traffic::TrafficThreshold;
use crate::evaluate::traffic::{threshold_requests, TrafficEvent, USUAL_WINDOWS};
use crate::vocab::event::Level;
use crate::vocab::text::{clip, format_duration, format_window, truncate_chars};

/// Longest title (Discord's embed title limit; Slack's is the same).
const MAX_TITLE: usize = 256;
/// A NAME's share of a title, so that the figures always fit.
const TITLE_NAME: usize = 80;
/// A NAME's share of a description.
const DESCRIPTION_NAME: usize = 200;

/// `1 request`, `3 requests`.
fn requests(n: u64) -> String {
    if n == 1 {
        "1 request".to_string()
    } else {
        format!("{n} requests")
    }
}

/// A count of requests as shown: whole numbers, rounded (a median of an even number of
/// windows may end in .5).
fn whole(v: f64) -> u64 {
    v.round().max(0.0) as u64
}

/// One-line title of a traffic event, at most 256 characters; `at_unix` is the event's time.
pub fn traffic_title(name: &str, at_unix: u64, e: &TrafficEvent) -> String {
    let name = clip(name, TITLE_NAME);
    let t = if e.level == Level::Ok {
        format!(
            "RESOLVED {name} traffic after {}",
            format_duration(at_unix.saturating_sub(e.since_unix))
        )
    } else {
        let mut t = format!(
            "{} {name}: traffic {} in {}",
            e.level.label(),
            requests(e.requests),
            format_window(e.window_secs)
        );
        match (e.usual, e.crossed_requests()) {
            (Some(usual), _) => t.push_str(&format!(", usually {}", whole(usual))),
            (None, Some(floor)) => t.push_str(&format!(", expected at least {}", whole(floor))),
            (None, None) => {}
        }
        if e.repeat {
            t.push_str(" (still firing)");
        }
        t
    };
    truncate_chars(&t, MAX_TITLE)
}

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
    use crate::conf::traffic::TrafficParams;
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
    fn titles_as_in_the_spec() {
        let e = event(Level::Critical, 3, Some(412.0));
        assert_eq!(
            traffic_title("api", AT, &e),
            "CRITICAL api: traffic 3 requests in 5m, usually 412"
        );
        let mut e = event(Level::Warning, 1, Some(411.5));
        e.repeat = true;
        assert_eq!(
            traffic_title("api", AT, &e),
            "WARNING api: traffic 1 request in 5m, usually 412 (still firing)"
        );
        let e = event(Level::Ok, 380, Some(412.0));
        assert_eq!(
            traffic_title("api", AT, &e),
            "RESOLVED api traffic after 7m 10s"
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
            traffic_title("api", AT, &e),
            "CRITICAL api: traffic 0 requests in 1m, expected at least 1"
        );
        assert_eq!(
            traffic_description("api", &e),
            "api had 0 requests in the last 1m. Warning below 100, critical below 1."
        );
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
    fn hostile_names_stay_on_one_line_and_within_limits() {
        let name = "é\n".repeat(500);
        let e = event(Level::Critical, 3, Some(412.0));
        let t = traffic_title(&name, AT, &e);
        assert!(t.chars().count() <= MAX_TITLE && !t.contains('\n'), "{t}");
        assert!(
            t.ends_with(": traffic 3 requests in 5m, usually 412"),
            "{t}"
        );
        let d = traffic_description(&name, &e);
        assert!(!d.contains('\n'));
    }
}
