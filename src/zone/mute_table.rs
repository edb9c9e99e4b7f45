//! Where the zone keeps runtime mutes and what each NAME keeps for muting: the table of
//! [`MuteRecord`]s in the header, written by the control handler of whichever worker a POST
//! lands in, and per NAME the muting gates of its alert kinds, written by the evaluator.
//!
//! The table is plain bytes, not atomics (a record is a key and a reason), so every access goes
//! through [`MuteTable::records`], which the caller may use only while holding the zone's lock
//! (nginx's lock of the zone's slab pool, taken in `conf/mute_lock.rs`). Nothing read from it
//! is trusted: records are bounded however damaged, and copies into another zone or out to the
//! hand-over state go through [`MuteRecord::new`] again.
//!
//! A gate is three words per alert kind (the evaluator's `evaluate::muting::MuteGate`, which
//! this layer cannot name), atomics like the rest of a NAME's slot.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde_json::Value;

use super::incidents::IncidentKind;
use super::mutes::{self, MuteRecord};

/// Runtime mutes a zone holds at once.
pub const MUTE_TABLE_LEN: usize = 32;

/// The runtime mutes of a zone; all zero is an empty table.
#[repr(C)]
pub struct MuteTable {
    records: UnsafeCell<[MuteRecord; MUTE_TABLE_LEN]>,
}

impl MuteTable {
    /// The records, to read or change.
    ///
    /// # Safety
    /// The caller holds the zone's lock for as long as the slice is used, and takes no other
    /// reference to the table meanwhile.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn records(&self) -> &mut [MuteRecord] {
        &mut *self.records.get()
    }
}

/// The active records of `records` at `now_ms`, checked like records read back from the
/// hand-over state (a damaged record is left out).
pub fn active(records: &[MuteRecord], now_ms: u64) -> Vec<MuteRecord> {
    records
        .iter()
        .filter(|r| r.is_active(now_ms))
        .filter_map(|r| MuteRecord::new(r.key(), r.set_ms(), r.until_ms(), &r.reason()))
        .collect()
}

/// Takes over `incoming` (another zone's or another master's mutes): a key keeps whichever of
/// its mutes was set last, so that an unmute or a newer mute here is not undone. Records that
/// do not fit are left out; returns how many were.
pub fn merge(records: &mut [MuteRecord], incoming: &[MuteRecord], now_ms: u64) -> usize {
    let mut left_out = 0;
    for r in incoming.iter().filter(|r| r.is_active(now_ms)) {
        let newer_here = records
            .iter()
            .any(|h| h.key() == r.key() && h.until_ms() != 0 && h.set_ms() >= r.set_ms());
        if !newer_here && mutes::set(records, *r, now_ms).is_err() {
            left_out += 1;
        }
    }
    left_out
}

/// The hand-over form of the active mutes (see `Zone::export_state`).
pub fn export(records: &[MuteRecord], now_ms: u64) -> Value {
    Value::Array(
        active(records, now_ms)
            .iter()
            .map(|r| r.to_json())
            .collect(),
    )
}

/// Mutes read back from the hand-over form; anything malformed is left out.
pub fn import(state: &Value) -> Vec<MuteRecord> {
    state
        .as_array()
        .map(|a| a.iter().filter_map(MuteRecord::from_json).collect())
        .unwrap_or_default()
}

/// Gates of one NAME, one per alert kind, in the order of [`IncidentKind::ALL`].
#[repr(C)]
pub struct MuteGates {
    words: [[AtomicU64; 3]; IncidentKind::ALL.len()],
}

impl MuteGates {
    /// The gate of `kind`, as stored by [`Self::store`].
    pub fn load(&self, kind: IncidentKind) -> [u64; 3] {
        self.words[kind as usize]
            .each_ref()
            .map(|w| w.load(Relaxed))
    }

    /// Stores the gate of `kind` (one writer: the evaluator).
    pub fn store(&self, kind: IncidentKind, words: [u64; 3]) {
        for (d, w) in self.words[kind as usize].iter().zip(words) {
            d.store(w, Relaxed);
        }
    }

    pub(super) fn copy_from(&self, o: &MuteGates) {
        for (d, s) in self.words.iter().flatten().zip(o.words.iter().flatten()) {
            d.store(s.load(Relaxed), Relaxed);
        }
    }

    pub(super) fn reset(&self) {
        self.words
            .iter()
            .flatten()
            .for_each(|w| w.store(0, Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: u64 = 1_700_000_000_000;

    fn mute(key: &str, set: u64, until: u64) -> MuteRecord {
        MuteRecord::new(key.as_bytes(), set, until, "r").unwrap()
    }

    #[test]
    fn merging_keeps_the_latest_word_per_key() {
        let mut here = [MuteRecord::default(); 3];
        mutes::set(&mut here, mute("api", NOW + 10, NOW + 60_000), NOW).unwrap();
        let incoming = [
            mute("api", NOW, NOW + 90_000),   // older than ours: ignored
            mute("be", NOW, NOW + 30_000),    // new key: taken
            mute("db", NOW - 10, NOW - 1),    // ended: ignored
            mute("*", NOW + 20, NOW + 5_000), // new key: taken
            mute("extra", NOW, NOW + 5_000),  // no room left
        ];
        assert_eq!(merge(&mut here, &incoming, NOW), 1);
        assert_eq!(
            mutes::mute_of(&here, b"api", NOW).unwrap().until_ms(),
            NOW + 60_000
        );
        assert!(mutes::mute_of(&here, b"be", NOW).is_some());
        assert!(here.iter().all(|r| r.key() != b"db" && r.key() != b"extra"));
    }

    #[test]
    fn hand_over_form_round_trips_active_mutes_only() {
        let mut t = [MuteRecord::default(); 4];
        mutes::set(&mut t, mute("api", NOW, NOW + 60_000), NOW).unwrap();
        mutes::set(&mut t, mute("old", NOW - 9, NOW - 1), NOW - 10).unwrap();
        let v = export(&t, NOW);
        assert_eq!(v.as_array().unwrap().len(), 1);
        assert_eq!(import(&v), vec![mute("api", NOW, NOW + 60_000)]);
        assert!(import(&json!({"api": 1})).is_empty());
        assert!(import(&json!([1, {"key": ""}])).is_empty());
    }

    #[test]
    fn gates_store_per_kind() {
        // SAFETY: all-zero bytes are valid atomics.
        let g: Box<MuteGates> = unsafe { Box::new(core::mem::zeroed()) };
        g.store(IncidentKind::Latency, [1, 2, 3]);
        assert_eq!(g.load(IncidentKind::Latency), [1, 2, 3]);
        assert_eq!(g.load(IncidentKind::Errors), [0; 3]);
        g.reset();
        assert_eq!(g.load(IncidentKind::Latency), [0; 3]);
    }
}
