//! Worker 0's side of mutes: each round's events pass the mutes (maintenance windows and the
//! runtime mutes in the zone) before they are announced, and the runtime mutes travel with
//! the evaluator's state to the other master of a binary upgrade.

use crate::conf::mute_lock::{copy_mutes, local_offset_secs, with_mutes};
use crate::evaluate::firing::{self, WatchedProbe};
use crate::evaluate::mute_round::gate_round;
use crate::evaluate::muted::Mutes;
use crate::evaluate::reliability::observe;
use crate::vocab::event::AlertEvent;
use crate::vocab::title::log_line;
use crate::zone::mute_table;

use super::evaluator::Evaluator;

impl Evaluator {
    /// The round's `events` that may be sent at `now` (with what ended mutes release); what a
    /// mute holds back is logged instead.
    pub(super) fn pass_mutes(&mut self, events: Vec<AlertEvent>, now: u64) -> Vec<AlertEvent> {
        let records = copy_mutes(self.mcf);
        let mutes = Mutes {
            maintenance: &self.mcf.maintenance,
            records: &records,
            local_offset_secs: local_offset_secs(),
        };
        let mut held_downs = core::mem::take(&mut self.held_downs);
        let watched = self.watched();
        for w in &watched {
            observe(w.slot, now);
        }
        let is_muted = |name: &str| mutes.is_muted(name, now);
        let mut gated = gate_round(&watched, events, is_muted, now);
        for e in &gated.held {
            notice!(self.log, "{} (muted, not sent)", log_line(e, &self.host));
        }
        held_downs.note(&gated);
        if !held_downs.is_empty() {
            let probes: Vec<WatchedProbe<'_>> = (0..self.mcf.probes.len())
                .filter_map(|i| self.watched_probe(i))
                .collect();
            let firing = firing::firing_now(&watched, &probes, now);
            gated.send.extend(held_downs.release(is_muted, &firing));
        }
        self.held_downs = held_downs;
        gated.send
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
