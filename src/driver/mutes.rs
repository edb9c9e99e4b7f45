//! Worker 0's side of mutes: each round's events pass the mutes (maintenance windows and the
//! runtime mutes in the zone) before they are announced, a slice of the round at a time, and the runtime mutes travel with
//! the evaluator's state to the other master of a binary upgrade.

use std::collections::HashSet;

use crate::conf::mute_lock::{copy_mutes, local_offset_secs, with_mutes};
use crate::evaluate::firing::{self, WatchedProbe};
use crate::evaluate::mute_round::{gate_round, HeldDowns};
use crate::evaluate::muted::Mutes;
use crate::evaluate::reliability::observe;
use crate::evaluate::Watched;
use crate::vocab::event::AlertEvent;
use crate::vocab::title::log_line;
use crate::zone::mute_table;

use super::evaluator::Evaluator;

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
        let records = copy_mutes(self.mcf);
        let mutes = Mutes {
            maintenance: &self.mcf.maintenance,
            records: &records,
            local_offset_secs: local_offset_secs(),
        };
        for w in watched {
            observe(w.slot, now);
        }
        let gated = gate_round(watched, events, |name| mutes.is_muted(name, now), now);
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
        let records = copy_mutes(self.mcf);
        let mutes = Mutes {
            maintenance: &self.mcf.maintenance,
            records: &records,
            local_offset_secs: local_offset_secs(),
        };
        let probes: Vec<WatchedProbe<'_>> = (0..self.mcf.probes.len())
            .filter_map(|i| self.watched_probe(i))
            .collect();
        let firing = firing::firing_now(&self.watched(), &probes, now);
        let mut held_downs = core::mem::take(&mut self.held_downs);
        let released = held_downs.release(|name| mutes.is_muted(name, now), &firing);
        self.held_downs = held_downs;
        released
    }

    /// `events` without those of NAMEs muted at `now` (what fires, for the Alertmanagers).
    pub(super) fn without_muted(&self, events: Vec<AlertEvent>, now: u64) -> Vec<AlertEvent> {
        let records = copy_mutes(self.mcf);
        let mutes = Mutes {
            maintenance: &self.mcf.maintenance,
            records: &records,
            local_offset_secs: local_offset_secs(),
        };
        events
            .into_iter()
            .filter(|e| e.detail.is_served_certificate() || !mutes.is_muted(&e.name, now))
            .collect()
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
