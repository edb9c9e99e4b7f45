//! What each routed destination (`min_level=`, `after=`) knows of each incident, kept in the
//! zone so that a reload neither re-announces an incident to an `after=` destination nor loses
//! the RESOLVED it is owed.
//!
//! Why the zone and not the evaluating process: a reload starts new workers, and the new
//! evaluator would otherwise find an incident older than `after=` that it never announced and
//! announce it again (or, having forgotten that it did, skip the RESOLVED). The state is one
//! word per routed destination and alert kind in every NAME slot (and per routed destination in
//! every probe target), at most [`ROUTE_COLUMNS`] routed destinations, written only by the process holding the evaluation lease, like the alert levels
//! beside it; `notify::route::Escalation` is what the word holds.
//!
//! Columns: a destination's state sits in the column the header's directory gives its key (a
//! hash of its format and URL), so a reload that reorders, adds or removes destinations keeps
//! each one's state; a column whose destination is gone is cleared when the next evaluator
//! takes the lease ([`Zone::route_columns`]). A reload into a new zone copies directory and
//! cells with the rest of the state; a binary upgrade carries it in the evaluator's hand-over
//! state (`Zone::export_state`), by destination key and slot key.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{fnv1a64, Zone};

/// One destination's routing state of one incident: one plain word.
#[repr(C)]
#[derive(Default)]
pub struct RouteCell {
    word: AtomicU64,
}

impl RouteCell {
    /// The word (one writer: the evaluator).
    pub fn load(&self) -> u64 {
        self.word.load(Relaxed)
    }

    /// Stores the word.
    pub fn store(&self, word: u64) {
        self.word.store(word, Relaxed);
    }

    pub(super) fn copy_from(&self, o: &RouteCell) {
        self.store(o.load());
    }

    pub(super) fn reset(&self) {
        self.store(0);
    }
}

/// The directory key of a destination posting `format` to `url`; never 0 (a free column).
pub fn route_key(format: &str, url: &str) -> u64 {
    fnv1a64(format.bytes().chain([b' ']).chain(url.bytes())) | 1
}

impl Zone {
    /// The state column of each destination in `keys` ([`route_key`], or 0 for a destination
    /// that keeps no routing state), claiming free columns for new keys; columns of keys not in
    /// `keys` are cleared first, in every slot. Called by the evaluator when it takes the
    /// lease (only the lease holder writes routing state). `None` for a key that found no
    /// column (cannot happen: the configuration allows at most [`ROUTE_COLUMNS`] routed
    /// destinations).
    pub fn route_columns(&self, keys: &[u64]) -> Vec<Option<usize>> {
        let directory = &self.header().routes;
        for (column, entry) in directory.iter().enumerate() {
            let key = entry.load(Relaxed);
            if key != 0 && !keys.contains(&key) {
                self.clear_route_column(column);
                entry.store(0, Relaxed);
            }
        }
        keys.iter()
            .map(|&key| (key != 0).then(|| self.route_column_for(key)).flatten())
            .collect()
    }

    /// The column of `key`, claiming a free one (cleared) if it has none; `None` when full.
    pub(super) fn route_column_for(&self, key: u64) -> Option<usize> {
        let directory = &self.header().routes;
        if let Some(c) = directory.iter().position(|e| e.load(Relaxed) == key) {
            return Some(c);
        }
        let c = directory.iter().position(|e| e.load(Relaxed) == 0)?;
        self.clear_route_column(c);
        directory[c].store(key, Relaxed);
        Some(c)
    }

    fn clear_route_column(&self, column: usize) {
        for s in self.names() {
            s.routes[column].iter().for_each(RouteCell::reset);
        }
        for s in self.probes() {
            s.probe.routes[column].reset();
        }
    }

    /// Copies the directory of `old` (reload into another zone; the cells move with the
    /// slots).
    pub(super) fn copy_route_directory(&self, old: &Zone) {
        let (mine, theirs) = (&self.header().routes, &old.header().routes);
        for (d, s) in mine.iter().zip(theirs.iter()) {
            d.store(s.load(Relaxed), Relaxed);
        }
    }
}

/// Columns of routing state: the most destinations with `min_level=` or `after=` one
/// configuration may have (each costs 32 bytes per NAME).
pub const ROUTE_COLUMNS: usize = 8;
