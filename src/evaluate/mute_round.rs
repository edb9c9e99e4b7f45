//! A round's events under mutes: what is sent, what is held back, and what a mute that ended
//! releases (see `muting` for the rules). Runs in the evaluating process after
//! `evaluate_with` and the probe results, over the same NAME slots.
//!
//! - A muted NAME's events are held back (logged by the caller, never routed); its ongoing
//!   incidents are marked muted in the incident history.
//! - Each alert kind of each NAME keeps a [`MuteGate`] in its slot, so that what was held
//!   back survives a reload. When a NAME is no longer muted, its gates say what to announce:
//!   an incident still firing ("still firing", at its current level, with the figures of the
//!   last evaluation) and the RESOLVED of one announced before the mute.
//! - Certificates: a probe target's follows its NAME's mute (held back like its DOWN, and
//!   announced again by the daily repeat); a certificate a server serves belongs to no NAME
//!   and is never held back.
//! - Probe DOWN/UP events of a muted NAME are held back too. A target whose DOWN was held back
//!   and that is still down when the mute ends is announced then ([`HeldDowns`], kept by the
//!   evaluating process: a reload during the mute forgets it, and the target shows as DOWN on
//!   the page and in the metrics only); its UP is sent as usual.

use core::sync::atomic::Ordering::Relaxed;

use super::muting::MuteGate;
use super::slo::{burn_windows_ms, window_label};
use super::Watched;
use crate::vocab::event::{
    AlertEvent, ErrorRatioEvent, EventDetail, LatencyEvent, Level, SloEvent,
};
use crate::vocab::traffic::TrafficEvent;
use crate::zone::incidents::IncidentKind;
use crate::zone::{LevelState, NameSlot};

/// A round's events, split.
#[derive(Debug, Default)]
pub struct Gated {
    /// To announce.
    pub send: Vec<AlertEvent>,
    /// Held back by a mute: logged, not sent.
    pub held: Vec<AlertEvent>,
}

/// The alert kind of an event; `None` for a probe's.
fn kind_of(e: &AlertEvent) -> Option<IncidentKind> {
    match e.detail {
        EventDetail::ErrorRatio(_) => Some(IncidentKind::Errors),
        EventDetail::Latency(_) => Some(IncidentKind::Latency),
        EventDetail::Slo(_) => Some(IncidentKind::Slo),
        EventDetail::Traffic(_) => Some(IncidentKind::Traffic),
        EventDetail::Probe(_) | EventDetail::Certificate(_) => None,
    }
}

/// Level and incident start (Unix seconds) an event speaks of.
fn level_and_since(e: &AlertEvent) -> (Level, u64) {
    match &e.detail {
        EventDetail::ErrorRatio(d) => (d.level, d.since_unix),
        EventDetail::Latency(d) => (d.level, d.since_unix),
        EventDetail::Slo(d) => (d.level, d.since_unix),
        EventDetail::Traffic(d) => (d.level, d.since_unix),
        EventDetail::Certificate(d) => (d.level, d.since_unix),
        EventDetail::Probe(d) => (Level::Ok, d.since_unix),
    }
}

/// Current level and incident start (ms, 0 while ok) of `kind` in `slot`.
fn state_of(slot: &NameSlot, kind: IncidentKind) -> (Level, u64) {
    let read = |level: u32, since: u64| {
        let level = Level::from_u8(level as u8);
        (level, if level == Level::Ok { 0 } else { since })
    };
    let of = |s: &LevelState| read(s.level.load(Relaxed), s.incident_since_ms.load(Relaxed));
    match kind {
        IncidentKind::Errors => read(
            slot.alert.level.load(Relaxed),
            slot.alert.incident_since_ms.load(Relaxed),
        ),
        IncidentKind::Latency => of(&slot.latency.state),
        IncidentKind::Slo => of(&slot.slo.state),
        IncidentKind::Traffic => of(&slot.traffic.state),
    }
}

/// Splits `events` (this round's, in order) into what is sent and what is held back, for NAMEs
/// `muted` says are muted at `now_ms`, and adds what ended mutes release. Gates are kept for
/// the NAMEs of `watched`; probe events of other NAMEs are held back too when muted.
pub fn gate_round(
    watched: &[Watched<'_>],
    events: Vec<AlertEvent>,
    muted: impl Fn(&str) -> bool,
    now_ms: u64,
) -> Gated {
    let mut out = Gated::default();
    let mut rest = events;
    for w in watched {
        let is_muted = muted(w.name);
        let (mine, others): (Vec<_>, Vec<_>) = rest.into_iter().partition(|e| e.name == w.name);
        rest = others;
        for kind in IncidentKind::ALL {
            let mut gate = MuteGate::from_words(w.slot.mute_gates.load(kind));
            let (level, since_ms) = state_of(w.slot, kind);
            // Gates compare incident starts to the second, as events carry them.
            let since_key = since_ms / 1000 * 1000;
            let this_round: Vec<&AlertEvent> =
                mine.iter().filter(|e| kind_of(e) == Some(kind)).collect();
            if is_muted && level != Level::Ok {
                w.slot.incidents.mark_muted(kind, since_ms);
            }
            // The mute ended in the round the incident resolved, and nothing of it was ever
            // announced: its RESOLVED is held back too.
            let silent_end = |e: &AlertEvent| {
                let (level, since_unix) = level_and_since(e);
                level == Level::Ok && gate.never_announced(since_unix * 1000)
            };
            let silent: Vec<bool> = this_round.iter().map(|e| silent_end(e)).collect();
            if !is_muted {
                let after = gate.after_mute(level, since_key);
                if let Some(since) = after.resolved_since_ms {
                    out.send
                        .extend(released(w, kind, Level::Ok, since / 1000, now_ms));
                }
                if let Some(level) = after.still_firing {
                    if this_round.iter().all(|e| level_and_since(e).0 == Level::Ok) {
                        out.send
                            .extend(released(w, kind, level, since_ms / 1000, now_ms));
                    }
                }
            }
            for (e, silent) in this_round.into_iter().zip(silent) {
                let (level, since_unix) = level_and_since(e);
                if gate.pass(is_muted || silent, level, since_unix * 1000) {
                    out.send.push(e.clone());
                } else {
                    if level == Level::Ok {
                        w.slot.incidents.mark_muted(kind, since_unix * 1000);
                    }
                    out.held.push(e.clone());
                }
            }
            w.slot.mute_gates.store(kind, gate.to_words());
        }
        for e in mine.into_iter().filter(|e| kind_of(e).is_none()) {
            if is_muted {
                out.held.push(e);
            } else {
                out.send.push(e);
            }
        }
    }
    for e in rest {
        if muted(&e.name) && !e.detail.is_served_certificate() {
            out.held.push(e);
        } else {
            out.send.push(e);
        }
    }
    out
}

/// Probe targets, by NAME and target, whose DOWN a mute held back and that no event since has
/// told about.
#[derive(Debug, Default)]
pub struct HeldDowns(Vec<(String, String)>);

impl HeldDowns {
    /// Notes what a round held back and sent.
    pub fn note(&mut self, gated: &Gated) {
        let probe = |e: &AlertEvent| match &e.detail {
            EventDetail::Probe(p) => Some(((e.name.clone(), p.target.clone()), p.up)),
            _ => None,
        };
        for (key, up) in gated.held.iter().filter_map(probe) {
            self.0.retain(|k| *k != key);
            if !up {
                self.0.push(key);
            }
        }
        for (key, _) in gated.send.iter().filter_map(probe) {
            self.0.retain(|k| *k != key);
        }
    }

    /// True when nothing is held back.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The DOWN events to send now: of the targets held back whose NAME `muted` no longer
    /// says is muted, those still down in `firing` (what fires now, `firing::firing_now`).
    pub fn release(
        &mut self,
        muted: impl Fn(&str) -> bool,
        firing: &[AlertEvent],
    ) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        self.0.retain(|(name, target)| {
            if muted(name) {
                return true;
            }
            out.extend(firing.iter().filter(|e| {
                &e.name == name
                    && matches!(&e.detail, EventDetail::Probe(p) if !p.up && &p.target == target)
            }).cloned());
            false
        });
        out
    }
}

/// The event a mute's end releases for `kind` of `w`: `level` Ok for the RESOLVED of the
/// incident that began at `since_unix`, else a "still firing" repeat at `level`, with the
/// figures of the last evaluation. `None` for a kind the NAME no longer configures.
fn released(
    w: &Watched<'_>,
    kind: IncidentKind,
    level: Level,
    since_unix: u64,
    now_ms: u64,
) -> Option<AlertEvent> {
    let p = w.params;
    let slot = w.slot;
    let resolved = level == Level::Ok;
    // The level the resolved incident reached (its RESOLVED says what it was).
    let previous = if resolved {
        slot.incident_summary(now_ms)
            .recent
            .iter()
            .find(|i| i.kind == kind && i.start_ms / 1000 == since_unix)
            .map_or(Level::Warning, |i| i.peak_level)
    } else {
        level
    };
    let (total, errors) = slot.alert.window();
    let detail = match kind {
        IncidentKind::Errors => EventDetail::ErrorRatio(ErrorRatioEvent {
            level,
            previous,
            repeat: !resolved,
            errors,
            total,
            window_secs: p.window_ms / 1000,
            warn_pct: p.warn_pct,
            crit_pct: p.crit_pct,
            top_codes: Vec::new(),
            top_peers: Vec::new(),
            since_unix,
        }),
        IncidentKind::Latency => {
            let l = p.latency?;
            EventDetail::Latency(LatencyEvent {
                level,
                previous,
                repeat: !resolved,
                percentile: l.label(),
                estimate_ms: slot.latency.estimate_seconds().map(|s| s * 1000.0),
                warn_ms: l.warn_ms,
                crit_ms: l.crit_ms,
                requests: total,
                window_secs: p.window_ms / 1000,
                top_peers: Vec::new(),
                since_unix,
            })
        }
        IncidentKind::Slo => {
            let slo_pct = p.slo_pct?;
            let rates = slot.slo.rates();
            let windows = burn_windows_ms(p.window_ms);
            EventDetail::Slo(SloEvent {
                level,
                previous,
                repeat: !resolved,
                slo_pct,
                // As the title reports it: the lower of the pair that fires, the shortest
                // window's once resolved.
                burn_rate: if resolved {
                    rates[0]
                } else {
                    rates[0].min(rates[1])
                },
                windows: windows
                    .iter()
                    .zip(rates)
                    .map(|(ms, r)| (window_label(*ms), r))
                    .collect(),
                errors,
                total,
                top_peers: Vec::new(),
                since_unix,
            })
        }
        IncidentKind::Traffic => EventDetail::Traffic(TrafficEvent {
            level,
            previous,
            repeat: !resolved,
            requests: total,
            usual: slot.traffic.usual(),
            params: p.traffic?,
            window_secs: p.window_ms / 1000,
            since_unix,
        }),
    };
    Some(AlertEvent {
        name: w.name.to_string(),
        at_unix: now_ms / 1000,
        link: p.link.clone(),
        runbook: p.runbook.clone(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::alert_params::AlertParams;
    use crate::evaluate::evaluate;
    use crate::vocab::title::title;
    use crate::zone::{zone_size, Zone};
    use std::alloc::{alloc_zeroed, Layout};

    fn zone() -> Zone {
        let size = zone_size(1, 0);
        let layout = Layout::from_size_align(size, 64).unwrap();
        // SAFETY: non-zero size; leaked for the test's lifetime.
        let z = unsafe { Zone::from_raw(alloc_zeroed(layout), size) }.unwrap();
        z.claim(&[b"be".as_slice()], &[], |_| false).unwrap();
        z
    }

    fn params() -> AlertParams {
        AlertParams {
            window_ms: 10_000,
            repeat_ms: None,
            ..AlertParams::default()
        }
    }

    /// Runs seconds `from..to` with `errors` of 20 requests a second failing, muted while
    /// `mute` holds; returns the titles sent and held, with their second.
    #[allow(clippy::type_complexity)]
    fn run(
        z: &Zone,
        p: &AlertParams,
        secs: core::ops::Range<u64>,
        errors: impl Fn(u64) -> u64,
        mute: impl Fn(u64) -> bool,
    ) -> (Vec<(u64, String)>, Vec<(u64, String)>) {
        let slot = &z.names()[0];
        let w = [Watched {
            name: "be",
            params: p,
            slot,
        }];
        let (mut sent, mut held) = (Vec::new(), Vec::new());
        for s in secs {
            let e = errors(s);
            for _ in 0..20 - e {
                slot.counters.record(200, 1);
            }
            for _ in 0..e {
                slot.counters.record(502, 1);
            }
            let now = 1_000_000 + s * 1000;
            let g = gate_round(&w, evaluate(&w, now, 1000), |_| mute(s), now);
            sent.extend(g.send.iter().map(|e| (s, title(e))));
            held.extend(g.held.iter().map(|e| (s, title(e))));
        }
        (sent, held)
    }

    #[test]
    fn an_incident_inside_a_mute_is_recorded_not_sent() {
        let z = zone();
        let p = params();
        let (sent, held) = run(
            &z,
            &p,
            0..60,
            |s| if (10..20).contains(&s) { 20 } else { 0 },
            |s| s < 45,
        );
        assert!(sent.is_empty(), "{sent:?}");
        let held: Vec<&str> = held.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(held.len(), 2, "{held:?}");
        assert!(held[0].starts_with("CRITICAL be") && held[1].starts_with("RESOLVED be"));
        let recent = z.names()[0].incident_summary(1_100_000).recent;
        assert_eq!(recent.len(), 1);
        assert!(recent[0].muted && recent[0].end_ms.is_some(), "{recent:?}");
    }

    #[test]
    fn still_firing_at_the_end_of_a_mute_is_announced_then() {
        let z = zone();
        let p = params();
        // Errors from second 10 on; muted until second 30.
        let (sent, _) = run(&z, &p, 0..40, |s| if s >= 10 { 20 } else { 0 }, |s| s < 30);
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].0, 30);
        assert!(
            sent[0]
                .1
                .starts_with("CRITICAL be: 5xx 100.0% over 10s (still firing)"),
            "{sent:?}"
        );
        // Its end is sent as usual, once.
        let (sent, _) = run(&z, &p, 40..60, |_| 0, |_| false);
        let titles: Vec<&str> = sent.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(titles.len(), 1, "{titles:?}");
        assert!(titles[0].starts_with("RESOLVED be after"), "{titles:?}");
    }

    #[test]
    fn announced_before_and_resolved_during_gets_its_resolved_at_the_end() {
        let z = zone();
        let p = params();
        let (sent, held) = run(
            &z,
            &p,
            0..60,
            |s| if (5..15).contains(&s) { 20 } else { 0 },
            |s| (10..40).contains(&s),
        );
        let titles: Vec<(u64, &str)> = sent.iter().map(|(s, t)| (*s, t.as_str())).collect();
        assert_eq!(titles.len(), 2, "{titles:?}");
        assert!(titles[0].1.starts_with("CRITICAL be") && titles[0].0 == 5);
        assert_eq!(titles[1].0, 40, "{titles:?}");
        assert!(titles[1].1.starts_with("RESOLVED be after"), "{titles:?}");
        assert_eq!(held.len(), 1, "{held:?}");
    }

    #[test]
    fn an_incident_that_ends_as_the_mute_ends_is_never_announced() {
        let z = zone();
        let p = params();
        // Errors in seconds 10..20 have left the 10s window at second 29, when the mute ends.
        let (sent, held) = run(
            &z,
            &p,
            0..45,
            |s| if (10..20).contains(&s) { 20 } else { 0 },
            |s| s < 29,
        );
        assert!(sent.is_empty(), "{sent:?}");
        assert_eq!(held.len(), 2, "{held:?}");
        assert_eq!(held[1].0, 29, "{held:?}");
        assert!(held[1].1.starts_with("RESOLVED be"), "{held:?}");
    }

    #[test]
    fn a_probe_still_down_when_the_mute_ends_is_announced_then() {
        let probe = |name: &str, up: bool| AlertEvent {
            name: name.into(),
            at_unix: 1,
            link: None,
            runbook: None,
            detail: EventDetail::Probe(crate::vocab::event::samples::probe(up, None, None)),
        };
        let mut held = HeldDowns::default();
        held.note(&Gated {
            send: Vec::new(),
            held: vec![probe("be", false), probe("db", false), probe("db", true)],
        });
        assert_eq!(held.0.len(), 1, "db came back up during the mute");
        let firing = [probe("be", false), probe("db", false)];
        assert!(held.release(|_| true, &firing).is_empty(), "still muted");
        let released = held.release(|_| false, &firing);
        assert_eq!(released, vec![probe("be", false)]);
        assert!(held.is_empty());
        // Up again by the time the mute ends: nothing.
        held.note(&Gated {
            send: Vec::new(),
            held: vec![probe("be", false)],
        });
        assert!(held.release(|_| false, &[]).is_empty());
    }

    #[test]
    fn probe_events_of_a_muted_name_are_held() {
        let z = zone();
        let p = params();
        let slot = &z.names()[0];
        let w = [Watched {
            name: "be",
            params: &p,
            slot,
        }];
        let probe = |name: &str| AlertEvent {
            name: name.into(),
            at_unix: 1,
            link: None,
            runbook: None,
            detail: EventDetail::Probe(crate::vocab::event::samples::probe(false, None, None)),
        };
        let g = gate_round(&w, vec![probe("be"), probe("other")], |n| n == "be", 1_000);
        assert_eq!((g.send.len(), g.held.len()), (1, 1));
        assert_eq!(g.send[0].name, "other");
    }
}
