//! What an event says in a sentence and in fields: the description and the facts shared by
//! Discord embeds, Slack attachments and the JSON event. Values are untrusted and not yet cut
//! or escaped for any destination; each format does that.

use crate::notify::traffic_text::traffic_description;
use crate::vocab::certificate::{CertificateEvent, CertificateSubject};
use crate::vocab::event::{
    AlertEvent, ErrorRatioEvent, EventDetail, LatencyEvent, Level, ProbeEvent, SloEvent,
};
use crate::vocab::text::{clip, fmt_pct, format_duration, format_window, non_blank};
use crate::vocab::title::{
    fmt_burn_windows, fmt_latency, fmt_threshold_ms, fmt_top, latency_thresholds, peers_text,
    traffic_thresholds, whole_requests,
};

// Pieces of descriptions; the embed budget may shorten them further.
const DESCRIPTION_REASON: usize = 500;

/// One-sentence explanation for a 5xx-ratio event.
fn error_ratio_description(name: &str, l: &ErrorRatioEvent) -> String {
    let crit = fmt_pct(l.crit_pct);
    let warn = l.warn_pct.map(fmt_pct);
    let still = l.repeat || l.previous == l.level;
    match l.level {
        Level::Ok => format!(
            "{name} recovered: 5xx share {:.1}% is below {}%.",
            l.ratio_pct(),
            warn.unwrap_or(crit)
        ),
        Level::Critical if still => {
            format!("5xx share of {name} is still above the critical threshold ({crit}%).")
        }
        Level::Critical => {
            format!("5xx share of {name} crossed the critical threshold ({crit}%).")
        }
        Level::Warning => {
            let warn = warn.map_or_else(|| "warning threshold".to_owned(), |w| format!("{w}%"));
            if still {
                format!("5xx share of {name} is still above the warning threshold ({warn}).")
            } else if l.previous == Level::Critical {
                format!(
                    "5xx share of {name} fell below the critical threshold ({crit}%) \
                     but is still above the warning threshold ({warn})."
                )
            } else {
                format!("5xx share of {name} crossed the warning threshold ({warn}).")
            }
        }
    }
}

/// One-sentence explanation for a latency event.
fn latency_description(name: &str, l: &LatencyEvent) -> String {
    let p = clip(&l.percentile, 8);
    let est = fmt_latency(l.estimate_ms);
    let warn = fmt_threshold_ms(l.warn_ms);
    let still = l.repeat || l.previous == l.level;
    match (l.level, l.crit_ms.map(fmt_threshold_ms)) {
        (Level::Ok, _) => format!("{name} recovered: {p} request time {est} is below {warn}."),
        (Level::Critical, Some(crit)) if still => {
            format!("{p} request time of {name} ({est}) is still above the critical threshold ({crit}).")
        }
        (Level::Critical, crit) => format!(
            "{p} request time of {name} ({est}) crossed the critical threshold ({}).",
            crit.unwrap_or(warn)
        ),
        (Level::Warning, _) if still => {
            format!(
                "{p} request time of {name} ({est}) is still above the warning threshold ({warn})."
            )
        }
        (Level::Warning, _) if l.previous == Level::Critical => format!(
            "{p} request time of {name} ({est}) fell below the critical threshold but is still \
             above the warning threshold ({warn})."
        ),
        (Level::Warning, _) => {
            format!("{p} request time of {name} ({est}) crossed the warning threshold ({warn}).")
        }
    }
}

/// One-sentence explanation for an error-budget event.
fn slo_description(name: &str, l: &SloEvent) -> String {
    let slo = fmt_pct(l.slo_pct);
    // Windows are shortest first: x1, x6, x12, x72 (5m, 30m, 1h, 6h by default).
    let window = |i: usize| {
        l.windows
            .get(i)
            .map_or("?".to_owned(), |(w, _)| clip(w, 16))
    };
    let pair = match l.level {
        Level::Ok => {
            return format!(
                "{name} recovered: its error budget ({slo}% SLO) is no longer burning fast."
            )
        }
        Level::Critical => (window(0), window(2)),
        Level::Warning => (window(1), window(3)),
    };
    format!(
        "{name} is burning its error budget ({slo}% SLO) at least {:.1}x as fast as allowed over \
         both {} and {}.",
        l.burn_rate, pair.0, pair.1
    )
}

/// One-sentence explanation for a probe event.
fn probe_description(name: &str, at_unix: u64, p: &ProbeEvent) -> String {
    if p.up {
        let down = format_duration(at_unix.saturating_sub(p.since_unix));
        return format!("Health probe {name} is healthy again after {down} down.");
    }
    match (non_blank(&p.reason), p.status) {
        (Some(r), _) => format!(
            "Health probe {name} failed: {}.",
            clip(r, DESCRIPTION_REASON)
        ),
        (None, Some(s)) => format!("Health probe {name} got unexpected status {s}."),
        (None, None) => format!("Health probe {name} failed."),
    }
}

/// One-sentence explanation of an event; `name` is the (possibly shortened) NAME to mention.
pub fn event_description(event: &AlertEvent, name: &str) -> String {
    match &event.detail {
        EventDetail::ErrorRatio(l) => error_ratio_description(name, l),
        EventDetail::Probe(p) => probe_description(name, event.at_unix, p),
        EventDetail::Latency(l) => latency_description(name, l),
        EventDetail::Slo(l) => slo_description(name, l),
        EventDetail::Traffic(l) => traffic_description(name, l),
        EventDetail::Certificate(c) => certificate_description(event.at_unix, c),
    }
}

/// `The certificate of example.com (/etc/ssl/a.pem) expires in 14 days (2026-12-16).`, with
/// the renewal nginx does not serve yet when there is one.
fn certificate_description(at_unix: u64, c: &CertificateEvent) -> String {
    let whose = match &c.subject {
        CertificateSubject::Served { server, file } => format!(
            "The certificate of {} ({})",
            clip(server, DESCRIPTION_REASON),
            clip(file, DESCRIPTION_REASON * 2)
        ),
        CertificateSubject::Probe { probe, target } => format!(
            "The certificate probe {} sees at {}",
            clip(probe, DESCRIPTION_REASON),
            clip(target, DESCRIPTION_REASON * 2)
        ),
    };
    let mut d = format!("{whose} {}.", c.expiry_words(at_unix));
    if let Some(words) = c.renewal_words() {
        d.push_str(&format!(" Note: {words}."));
    }
    d
}

/// The "Peers" field (`5xx mostly from ...`) while the alert fires and the peers are known.
fn push_peers(
    fields: &mut Vec<(&'static str, String, bool)>,
    peers: &[(String, f64)],
    level: Level,
) {
    if let (Some(peers), false) = (peers_text(peers), level == Level::Ok) {
        fields.push(("Peers", peers, false));
    }
}

/// The facts of an event as (name, value, inline) fields, shared by Discord embeds and Slack
/// attachments; `time` formats the "Since" value for the destination. Values are untrusted and
/// not yet cut or escaped.
pub fn event_fields(
    event: &AlertEvent,
    host: &str,
    time: fn(u64) -> String,
) -> Vec<(&'static str, String, bool)> {
    let mut fields = Vec::new();
    match &event.detail {
        EventDetail::ErrorRatio(l) => {
            fields.push(("5xx / total", format!("{} / {}", l.errors, l.total), true));
            let crit = format!("crit {}%", fmt_pct(l.crit_pct));
            let thresholds = match l.warn_pct {
                Some(w) => format!("warn {}% · {crit}", fmt_pct(w)),
                None => crit,
            };
            fields.push(("Thresholds", thresholds, true));
            fields.push(("Window", format_window(l.window_secs), true));
            if !l.top_codes.is_empty() {
                fields.push(("Top status codes", fmt_top(&l.top_codes), false));
            }
            push_peers(&mut fields, &l.top_peers, l.level);
            fields.push(("Since", time(l.since_unix), true));
        }
        EventDetail::Probe(p) => {
            fields.push(("Target", p.target.clone(), false));
            if !p.up {
                if let Some(r) = non_blank(&p.reason) {
                    fields.push(("Reason", r.to_owned(), true));
                }
            }
            if let Some(s) = p.status {
                fields.push(("Status", s.to_string(), true));
            }
            fields.push(("Probe duration", format!("{} ms", p.duration_ms), true));
            fields.push(("Since", time(p.since_unix), true));
        }
        EventDetail::Latency(l) => {
            let p = clip(&l.percentile, 8);
            let estimate = format!("{p} {}", fmt_latency(l.estimate_ms));
            fields.push(("Percentile", estimate, true));
            fields.push(("Thresholds", latency_thresholds(l), true));
            fields.push(("Window", format_window(l.window_secs), true));
            fields.push(("Requests", l.requests.to_string(), true));
            push_peers(&mut fields, &l.top_peers, l.level);
            fields.push(("Since", time(l.since_unix), true));
        }
        EventDetail::Slo(l) => {
            fields.push(("Burn rate", fmt_burn_windows(&l.windows), false));
            fields.push(("SLO", format!("{}%", fmt_pct(l.slo_pct)), true));
            fields.push(("5xx / total", format!("{} / {}", l.errors, l.total), true));
            push_peers(&mut fields, &l.top_peers, l.level);
            fields.push(("Since", time(l.since_unix), true));
        }
        EventDetail::Certificate(c) => {
            match &c.subject {
                CertificateSubject::Served { server, file } => {
                    fields.push(("Server", server.clone(), true));
                    fields.push(("File", file.clone(), false));
                }
                CertificateSubject::Probe { target, .. } => {
                    fields.push(("Target", target.clone(), false));
                }
            }
            fields.push(("Expires", time(c.not_after_unix), true));
            if let Some((renewed, since)) = c.renewal {
                fields.push((
                    "Renewed on disk",
                    format!(
                        "expires {}, on disk since {}: reload nginx to serve it",
                        time(renewed),
                        time(since)
                    ),
                    false,
                ));
            }
            fields.push(("Since", time(c.since_unix), true));
        }
        EventDetail::Traffic(l) => {
            fields.push(("Requests", l.requests.to_string(), true));
            let usual = l.usual.map_or_else(
                || "not known yet".to_string(),
                |u| whole_requests(u).to_string(),
            );
            fields.push(("Usually", usual, true));
            fields.push(("Thresholds", traffic_thresholds(l), true));
            fields.push(("Window", format_window(l.window_secs), true));
            fields.push(("Since", time(l.since_unix), true));
        }
    }
    fields.push(("Host", host.to_owned(), true));
    // Links go into fields, not the embed `url`: Discord rejects the whole call for a URL it
    // considers malformed, whereas a field value is just text.
    if let Some(link) = non_blank(&event.link) {
        fields.push(("Link", link.to_owned(), false));
    }
    if let Some(runbook) = non_blank(&event.runbook) {
        fields.push(("Runbook", runbook.to_owned(), false));
    }
    fields
}
