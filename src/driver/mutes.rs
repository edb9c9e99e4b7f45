//! Worker 0's side of mutes: each round's events pass the mutes (maintenance windows and the
//! runtime mutes in the zone) before they are announced, a slice of the round at a time, and
//! the runtime mutes travel with the evaluator's state to the other master of a binary upgrade.

use std::collections::HashSet;

use crate::conf::mute_lock::{copy_mutes, local_offset_secs, with_mutes};
use crate::conf::MainConf;
use crate::evaluate::firing;
use crate::evaluate::mute_round::{gate_round, HeldDowns};
use crate::evaluate::muted::Mutes;
use crate::evaluate::reliability::observe;
use crate::evaluate::Watched;
use crate::vocab::event::AlertEvent;
use crate::vocab::title::log_line;
use crate::zone::mute_table;

use super::evaluator::Evaluator;

/// Calls `f` with the mutes in force: the maintenance windows and a copy of the zone's runtime
/// mutes (taken under the zone's lock, so `f` runs without it).
fn in_force<T>(mcf: &MainConf, f: impl FnOnce(&Mutes<'_>) -> T) -> T {
    let records = copy_mutes(mcf);
    f(&Mutes {
        maintenance: &mcf.maintenance,
        records: &records,
        local_offset_secs: local_offset_secs(),
    })
}

impl Evaluator {
    /// Of `events` about the NAMEs of `watched` (a slice of a round, or the NAMEs a tick's
    /// events name), those that may be sent at `now`, with what mutes that ended release for
    /// those NAMEs. What a mute holds back is logged instead; probe DOWNs it holds back are
    /// noted in `held_downs`.
    pub(super) fn gate(
        &self,
        held_downs: &mut HeldDowns,
        watched: &[Watched<'_>],
        events: Vec<AlertEvent>,
        now: u64,
    ) -> Vec<AlertEvent> {
        for w in watched {
            observe(w.slot, now);
        }
        let gated = in_force(self.mcf, |mutes| {
            gate_round(watched, events, |name| mutes.is_muted(name, now), now)
        });
        for e in &gated.held {
            notice!(self.log, "{} (muted, not sent)", log_line(e, &self.host));
        }
        held_downs.note(&gated);
        gated.send
    }

    /// The NAMEs `events` name, with their slots (the NAMEs a tick's events gate).
    pub(super) fn watched_of(&self, events: &[AlertEvent]) -> Vec<Watched<'_>> {
        let named: HashSet<&str> = events.iter().map(|e| e.name.as_str()).collect();
        let mut watched = self.watched();
        watched.retain(|w| named.contains(w.name));
        watched
    }

    /// The held-back DOWNs of targets still down whose NAME's mute has ended.
    pub(super) fn release_held_downs(&mut self, now: u64) -> Vec<AlertEvent> {
        if self.held_downs.is_empty() {
            return Vec::new();
        }
        let firing = firing::firing_now(&self.watched(), &self.watched_probes(), now);
        let held_downs = &mut self.held_downs;
        in_force(self.mcf, |mutes| {
            held_downs.release(|name| mutes.is_muted(name, now), &firing)
        })
    }

    /// `events` without those of NAMEs muted at `now` (what fires, for the Alertmanagers).
    pub(super) fn without_muted(&self, events: Vec<AlertEvent>, now: u64) -> Vec<AlertEvent> {
        in_force(self.mcf, |mutes| {
            events
                .into_iter()
                .filter(|e| e.detail.is_served_certificate() || !mutes.is_muted(&e.name, now))
                .collect()
        })
    }

    /// The runtime mutes for the hand-over state.
    pub(super) fn export_mutes(&self, now: u64) -> serde_json::Value {
        mute_table::export(&copy_mutes(self.mcf), now)
    }

    /// Takes over the runtime mutes of a hand-over state (`mutes` of [`Self::export_mutes`]).
    pub(super) fn import_mutes(&self, state: &serde_json::Value, now: u64) {
        let incoming = mute_table::import(state);
        if incoming.is_empty() {
            return;
        }
        notice!(
            self.log,
            "status_alert: took over {} mutes from the previous evaluator",
            incoming.len()
        );
        let left_out = with_mutes(self.mcf, |ours| mute_table::merge(ours, &incoming, now));
        if let Some(n @ 1..) = left_out {
            warn!(
                self.log,
                "status_alert: {n} mutes of the previous evaluator did not fit and were dropped"
            );
        }
    }
}
