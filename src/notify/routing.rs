//! Which destination gets which body: the events of one round in each destination's format
//! (`status_alert_webhook ... format=`), what fires now for the Alertmanagers, nothing for the
//! heartbeat monitor (it gets beats, never alerts). Each destination's `min_level=` and
//! `after=` decide which events it hears of ([`Escalation`], state kept in the zone through
//! [`Escalations`]); every tick [`releases`] tells an `after=` destination of an incident that
//! has now fired long enough; `mention=` makes CRITICAL messages ping (`notify::mention`).
//! Pure: worker 0's driver queues what this returns.

use crate::conf::destination::Destination;
use crate::conf::destination::WebhookFormat;
use crate::evaluate::firing::WatchedProbe;
use crate::evaluate::Watched;
use crate::notify::mention::{apply_discord, apply_slack, pings};
use crate::notify::route::{Escalation, Route, RoutedEvent};
use crate::notify::{alertmanager, discord, json_event, slack};
use crate::vocab::event::{AlertEvent, EventDetail};
use crate::zone::incidents::IncidentKind;
use crate::zone::routes::RouteCell;

/// Where routing keeps what each destination knows of each incident.
pub trait Escalations {
    /// The state of destination number `destination` about `event`'s incident; `None` when
    /// none is kept (a destination that gets everything, or an unknown NAME).
    fn cell(&self, destination: usize, event: &AlertEvent) -> Option<&RouteCell>;
}

/// No state at all: every destination decides from the event alone (tests, and destinations
/// that get everything).
pub struct Stateless;

impl Escalations for Stateless {
    fn cell(&self, _: usize, _: &AlertEvent) -> Option<&RouteCell> {
        None
    }
}

/// The routing state in the zone: per NAME slot and alert kind, per probe target, in the
/// column of each destination (`zone/routes.rs`).
pub struct ZoneEscalations<'a> {
    /// The NAMEs with their slots.
    pub names: &'a [Watched<'a>],
    /// The probe targets with their state.
    pub probes: &'a [WatchedProbe<'a>],
    /// The state column of each destination, by index; `None` keeps no state.
    pub columns: &'a [Option<usize>],
}

impl Escalations for ZoneEscalations<'_> {
    fn cell(&self, destination: usize, event: &AlertEvent) -> Option<&RouteCell> {
        let column = (*self.columns.get(destination)?)?;
        let kind = match &event.detail {
            EventDetail::Probe(p) => {
                let probe = self
                    .probes
                    .iter()
                    .find(|t| t.spec.name == event.name && t.spec.target.display() == p.target)?;
                return probe.health.routes.get(column);
            }
            EventDetail::ErrorRatio(_) => IncidentKind::Errors,
            EventDetail::Latency(_) => IncidentKind::Latency,
            EventDetail::Slo(_) => IncidentKind::Slo,
            EventDetail::Traffic(_) => IncidentKind::Traffic,
            // No escalation state of their own: routed by level and age alone.
            EventDetail::Certificate(_) => return None,
        };
        let name = self.names.iter().find(|n| n.name == event.name)?;
        name.slot.routes.get(column)?.get(kind as usize)
    }
}

/// `event` as routing sees it at `now_ms`. The peak of an incident that ended is taken as the
/// level it ended from: it only matters where the state was lost (see `notify::route`).
fn routed(event: &AlertEvent, now_ms: u64) -> RoutedEvent {
    let level = event.detail.level();
    RoutedEvent {
        level,
        since_ms: event.detail.since_unix().saturating_mul(1000),
        peak: level.max(event.detail.previous()),
        now_ms,
    }
}

/// What destination `i` does with `event`, remembered in its state.
fn decide(
    d: &Destination,
    i: usize,
    event: &AlertEvent,
    store: &dyn Escalations,
    now_ms: u64,
) -> Route {
    let cell = store.cell(i, event);
    let mut state = cell.map_or_else(Escalation::default, |c| Escalation::from_word(c.load()));
    let route = state.route(&d.route, &routed(event, now_ms));
    if let Some(c) = cell {
        c.store(state.to_word());
    }
    route
}

/// What of `firing` an Alertmanager with `d`'s rules gets: at or above `min_level`, fired for
/// `after=` (Alertmanager keeps its own state, so the check needs none here).
fn firing_for(d: &Destination, firing: &[AlertEvent], now_ms: u64) -> Vec<AlertEvent> {
    firing
        .iter()
        .filter(|e| {
            let since_ms = e.detail.since_unix().saturating_mul(1000);
            e.detail.level() >= d.route.min_level
                && now_ms.saturating_sub(since_ms) >= d.route.after_ms
        })
        .cloned()
        .collect()
}

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

/// The bodies `d` gets for `events` (its format; with `mention=`, CRITICAL messages ping the
/// configured IDs and nothing else can ping): runs of pinging and quiet events go in separate
/// messages, in order.
pub fn bodies_for(d: &Destination, events: &[AlertEvent], host: &str) -> Vec<String> {
    let mentions = &d.route.mentions;
    if mentions.is_empty() || !matches!(d.format, WebhookFormat::Discord | WebhookFormat::Slack) {
        return webhook_bodies(d.format, events, host);
    }
    let mut bodies = Vec::new();
    for run in events.chunk_by(|a, b| pings(a.detail.level()) == pings(b.detail.level())) {
        let ping = pings(run[0].detail.level());
        let payloads = match d.format {
            WebhookFormat::Slack => slack::build_payloads(run, host),
            _ => discord::build_payloads(run, host),
        };
        for mut p in payloads {
            match d.format {
                WebhookFormat::Slack => apply_slack(&mut p, mentions, ping),
                _ => apply_discord(&mut p, mentions, ping),
            }
            bodies.push(p.to_string());
        }
    }
    bodies
}

/// What every destination gets for the `events` of one round at `now_ms`, destinations in
/// configuration order: webhooks the events their rules let through, in their format;
/// Alertmanagers what fires now (`firing`, also what did not change, as far as their rules let
/// it through) and the end of what `events` ended, in one body; the heartbeat nothing. Each
/// routed destination's decision is remembered in `store`.
pub fn route(
    destinations: &[Destination],
    events: &[AlertEvent],
    firing: &[AlertEvent],
    host: &str,
    now_ms: u64,
    store: &dyn Escalations,
) -> Vec<Post> {
    let mut posts = Vec::new();
    for (destination, d) in destinations.iter().enumerate() {
        if !d.format.carries_alerts() {
            continue;
        }
        let heard: Vec<AlertEvent> = events
            .iter()
            .filter(|e| decide(d, destination, e, store, now_ms) == Route::Send)
            .cloned()
            .collect();
        let bodies = match d.format {
            WebhookFormat::Alertmanager => {
                let firing = firing_for(d, firing, now_ms);
                alertmanager::build_payload(&firing, &heard, host, now_ms / 1000)
                    .map(|v| v.to_string())
                    .into_iter()
                    .collect()
            }
            _ => bodies_for(d, &heard, host),
        };
        posts.extend(bodies.into_iter().map(|body| Post { destination, body }));
    }
    posts
}

/// What one `after=` destination hears of now: the incidents released and the bodies saying
/// so.
#[derive(Clone, Debug, PartialEq)]
pub struct Released {
    /// Index of the destination.
    pub destination: usize,
    /// The incidents it is told of, as repeat events.
    pub events: Vec<AlertEvent>,
    /// The bodies to post.
    pub posts: Vec<Post>,
}

/// Asked every tick while something fires: the incidents of `firing` (what fires now, as
/// repeat events) that an `after=` destination is to hear of now, because they have fired long
/// enough at or above its `min_level`. A webhook gets them as "still firing" messages, an
/// Alertmanager what fires now. Only a destination whose state is kept in `store` is asked:
/// without it, it could not remember that it was told.
pub fn releases(
    destinations: &[Destination],
    firing: &[AlertEvent],
    host: &str,
    now_ms: u64,
    store: &dyn Escalations,
) -> Vec<Released> {
    let mut released = Vec::new();
    for (destination, d) in destinations.iter().enumerate() {
        if d.route.after_ms == 0 || !d.format.carries_alerts() {
            continue;
        }
        let due: Vec<AlertEvent> = firing
            .iter()
            .filter(|e| {
                let Some(cell) = store.cell(destination, e) else {
                    return false;
                };
                let mut state = Escalation::from_word(cell.load());
                let since_ms = e.detail.since_unix().saturating_mul(1000);
                let due = state.release(&d.route, e.detail.level(), since_ms, now_ms);
                cell.store(state.to_word());
                due
            })
            .cloned()
            .collect();
        if due.is_empty() {
            continue;
        }
        let bodies = match d.format {
            WebhookFormat::Alertmanager => {
                let firing = firing_for(d, firing, now_ms);
                alertmanager::build_payload(&firing, &[], host, now_ms / 1000)
                    .map(|v| v.to_string())
                    .into_iter()
                    .collect()
            }
            _ => bodies_for(d, &due, host),
        };
        let posts = bodies
            .into_iter()
            .map(|body| Post { destination, body })
            .collect();
        released.push(Released {
            destination,
            events: due,
            posts,
        });
    }
    released
}

/// True when some destination waits for incidents to fire long enough (`after=`), so that the
/// caller asks [`releases`] every tick.
pub fn holds_back(destinations: &[Destination]) -> bool {
    destinations
        .iter()
        .any(|d| d.route.after_ms > 0 && d.format.carries_alerts())
}

/// The periodic re-post of what fires (`firing`) to every Alertmanager, so that Alertmanager
/// keeps it open, as far as its `min_level=` and `after=` let it through; nothing when nothing
/// fires.
pub fn resend(
    destinations: &[Destination],
    firing: &[AlertEvent],
    host: &str,
    now_ms: u64,
) -> Vec<Post> {
    destinations
        .iter()
        .enumerate()
        .filter(|(_, d)| d.format == WebhookFormat::Alertmanager)
        .filter_map(|(destination, d)| {
            let firing = firing_for(d, firing, now_ms);
            let body = alertmanager::build_payload(&firing, &[], host, now_ms / 1000)?;
            Some(Post {
                destination,
                body: body.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::event::samples::{critical, event, probe};
    use crate::vocab::event::{EventDetail, Level};

    fn down(name: &str) -> AlertEvent {
        event(
            name,
            EventDetail::Probe(probe(false, Some("connection refused"), None)),
        )
    }

    fn to(format: WebhookFormat) -> Destination {
        Destination::new(format!("https://{}.example/hook", format.name()), format)
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
        let posts = route(&destinations, &events, &events, "h", 1_000_000, &Stateless);
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
            1_000_000,
            &Stateless,
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
        assert!(route(&destinations, &[], &[], "h", 1_000_000, &Stateless).is_empty());
        assert!(resend(&destinations, &[], "h", 1_000_000).is_empty());
        let heartbeat_only = [to(WebhookFormat::Heartbeat)];
        assert!(!wants_firing(&heartbeat_only));
        assert!(route(
            &heartbeat_only,
            &[down("db")],
            &[],
            "h",
            1_000_000,
            &Stateless
        )
        .is_empty());
    }

    #[test]
    fn resends_go_to_every_alertmanager_and_nowhere_else() {
        let destinations = [
            to(WebhookFormat::Alertmanager),
            to(WebhookFormat::Discord),
            Destination::new(
                "https://am2.example/api/v2/alerts".into(),
                WebhookFormat::Alertmanager,
            ),
            to(WebhookFormat::Heartbeat),
        ];
        let posts = resend(&destinations, &[critical("be")], "h", 1_000_000);
        let to: Vec<usize> = posts.iter().map(|p| p.destination).collect();
        assert_eq!(to, [0, 2], "an HA cluster is posted to in full");
        assert_eq!(posts[0].body, posts[1].body);
        assert_eq!(parse(&posts[0].body)[0]["labels"]["severity"], "critical");
    }

    /// One incident's state per destination.
    struct Cells(Vec<RouteCell>);

    impl Escalations for Cells {
        fn cell(&self, destination: usize, _: &AlertEvent) -> Option<&RouteCell> {
            self.0.get(destination)
        }
    }

    fn routed_to(format: WebhookFormat, route: &str) -> Destination {
        let args: Vec<&str> = route.split_whitespace().collect();
        let (args, _) = crate::conf::route::take_route_args(&args).unwrap();
        Destination {
            route: args.rules_for(format).unwrap(),
            ..to(format)
        }
    }

    /// The 5xx event of "api" at `level`, `at` seconds into an incident that was at `previous`
    /// (a repeat when they are equal).
    fn ratio(level: Level, at: u64, previous: Level) -> AlertEvent {
        use crate::vocab::event::samples::{error_ratio, AT};
        let mut l = error_ratio(level, 200, 1000);
        l.since_unix = AT;
        l.previous = previous;
        l.repeat = level == previous;
        AlertEvent {
            at_unix: AT + at,
            ..event("api", EventDetail::ErrorRatio(l))
        }
    }

    #[test]
    fn three_destinations_each_get_their_share_in_order() {
        use crate::vocab::event::samples::AT;
        use Level::{Critical, Ok, Warning};
        let destinations = [
            to(WebhookFormat::Json),
            routed_to(WebhookFormat::Json, "min_level=critical"),
            routed_to(WebhookFormat::Json, "after=5s"),
            routed_to(WebhookFormat::Alertmanager, "min_level=critical"),
        ];
        assert!(holds_back(&destinations));
        let store = Cells((0..4).map(|_| RouteCell::default()).collect());
        let mut got: Vec<(usize, u64, String)> = Vec::new();
        // Warning at 0s, critical at 2s, resolved at 10s; a release check every second.
        let changes = [(0, Warning), (2, Critical), (10, Ok)];
        let mut level = Ok;
        for t in 0..=12u64 {
            let now_ms = (AT + t) * 1000;
            let mut events = Vec::new();
            if let Some(&(_, next)) = changes.iter().find(|(at, _)| *at == t) {
                events.push(ratio(next, t, level));
                level = next;
            }
            let firing: Vec<AlertEvent> = if level == Ok {
                Vec::new()
            } else {
                vec![ratio(level, t, level)]
            };
            // As the evaluator does: a round with events is announced, every tick released.
            let mut posts = Vec::new();
            if !events.is_empty() {
                posts = route(&destinations, &events, &firing, "h", now_ms, &store);
            }
            let released = releases(&destinations, &firing, "h", now_ms, &store);
            posts.extend(released.into_iter().flat_map(|r| r.posts));
            for p in posts {
                let v = parse(&p.body);
                let title = match v["events"][0]["title"].as_str() {
                    Some(t) => t.to_string(),
                    None => format!("am:{}", v.as_array().unwrap().len()),
                };
                got.push((p.destination, t, title));
            }
        }
        let of = |d: usize| -> Vec<(u64, &str)> {
            got.iter()
                .filter(|(to, ..)| *to == d)
                .map(|(_, t, title)| (*t, title.as_str()))
                .collect()
        };
        assert_eq!(
            of(0),
            [
                (0, "WARNING api: 5xx 20.0% over 5m"),
                (2, "CRITICAL api: 5xx 20.0% over 5m"),
                (10, "RESOLVED api after 10s"),
            ]
        );
        assert_eq!(
            of(1),
            [
                (2, "CRITICAL api: 5xx 20.0% over 5m"),
                (10, "RESOLVED api after 10s")
            ]
        );
        assert_eq!(
            of(2),
            [
                (5, "CRITICAL api: 5xx 20.0% over 5m (still firing)"),
                (10, "RESOLVED api after 10s"),
            ]
        );
        // The Alertmanager: the critical alert and the end of the warning it replaced (an end
        // of an alert Alertmanager never had notifies nobody), then the critical's end.
        assert_eq!(of(3), [(2, "am:2"), (10, "am:1")]);
    }

    #[test]
    fn a_short_incident_never_reaches_the_after_destination() {
        use crate::vocab::event::samples::AT;
        use Level::{Critical, Ok};
        let destinations = [routed_to(WebhookFormat::Discord, "after=5s")];
        let store = Cells(vec![RouteCell::default()]);
        let mut posts = Vec::new();
        for t in 0..=10u64 {
            let now_ms = (AT + t) * 1000;
            let events = match t {
                0 => vec![ratio(Critical, t, Ok)],
                4 => vec![ratio(Ok, t, Critical)],
                _ => Vec::new(),
            };
            let firing = if t < 4 {
                vec![ratio(Critical, t, Critical)]
            } else {
                Vec::new()
            };
            posts.extend(route(&destinations, &events, &firing, "h", now_ms, &store));
            assert!(releases(&destinations, &firing, "h", now_ms, &store).is_empty());
        }
        assert!(posts.is_empty(), "{posts:?}");
    }

    #[test]
    fn mentions_ping_on_critical_messages_only() {
        use Level::{Critical, Ok, Warning};
        let d = routed_to(WebhookFormat::Discord, "mention=role:42,user:7");
        let events = [
            ratio(Warning, 0, Ok),
            ratio(Critical, 1, Warning),
            down("db"),
            ratio(Warning, 2, Critical),
        ];
        let bodies: Vec<serde_json::Value> = bodies_for(&d, &events, "h")
            .iter()
            .map(|b| parse(b))
            .collect();
        assert_eq!(bodies.len(), 3, "quiet, pinging, quiet: {bodies:?}");
        assert_eq!(
            bodies[0]["allowed_mentions"],
            serde_json::json!({ "parse": [] })
        );
        assert_eq!(
            bodies[1]["allowed_mentions"],
            serde_json::json!({ "parse": [], "roles": ["42"], "users": ["7"] })
        );
        assert!(bodies[1]["content"]
            .as_str()
            .unwrap()
            .starts_with("<@&42> <@7> "));
        assert_eq!(bodies[1]["embeds"].as_array().unwrap().len(), 2);
        // Without mention= the payloads are as before.
        assert_eq!(
            bodies_for(&to(WebhookFormat::Discord), &events, "h"),
            webhook_bodies(WebhookFormat::Discord, &events, "h")
        );
    }
}
