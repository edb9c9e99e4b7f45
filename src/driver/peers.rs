//! The peers behind a 5xx, latency or SLO alert: worker 0 samples each peer group's failed
//! tries at every evaluation tick (`evaluate/peer_window.rs`) and names the largest shares of
//! the NAME's window in those events (the SLO's shortest burn window is `window=` too).

use crate::conf::peers::PeerGroup;
use crate::evaluate::peer_window::{top_shares, PeerWindow, TOP_PEERS};
use crate::vocab::event::{AlertEvent, Level};
use crate::zone::peers::PeerClass;

use super::evaluator::Evaluator;

/// Failed tries (5xx and no answer) of each of the group's cells, cumulative.
fn failed(group: &PeerGroup) -> Vec<u64> {
    group
        .cell_ptrs()
        .map(|c| {
            // SAFETY: cells point into the mapped zone (null: not claimed).
            unsafe { c.as_ref() }.map_or(0, |c| {
                let n = c.snapshot();
                n[PeerClass::S5xx as usize] + n[PeerClass::Error as usize]
            })
        })
        .collect()
}

/// How long the peer windows keep samples: the longest `window=` of any NAME (once per
/// configuration).
pub(super) fn peer_keep_ms(mcf: &crate::conf::MainConf) -> u64 {
    mcf.names
        .iter()
        .map(|n| n.params.window_ms)
        .max()
        .unwrap_or(0)
}

impl Evaluator {
    /// Samples every peer group's failed tries at the start of an evaluation round.
    pub(super) fn record_peers(&mut self, now: u64) {
        let keep_ms = self.peer_keep_ms;
        let groups: Vec<&PeerGroup> = self.mcf.all_peer_groups().collect();
        self.peer_windows
            .resize_with(groups.len(), PeerWindow::default);
        for (w, g) in self.peer_windows.iter_mut().zip(groups) {
            // The cells are read only when a sample is due.
            w.record(now, || failed(g), keep_ms);
        }
    }

    /// Gives each firing 5xx, latency or SLO event the peers of its NAME's upstream with the
    /// largest shares of the window's failed tries.
    pub(super) fn name_peers(&self, events: &mut [AlertEvent], now: u64) {
        for e in events.iter_mut() {
            if e.detail.level() == Level::Ok {
                continue;
            }
            let Some(top_peers) = e.detail.top_peers_mut() else {
                continue;
            };
            let Some(nc) = self
                .mcf
                .name_index
                .get(&e.name)
                .and_then(|i| self.mcf.names.get(*i))
            else {
                continue;
            };
            let Some(group) = nc.peers else {
                continue;
            };
            let Some((g, w)) = self
                .mcf
                .all_peer_groups()
                .zip(&self.peer_windows)
                .find(|(g, _)| core::ptr::eq(*g, group.as_ptr()))
            else {
                continue;
            };
            let in_window = w.failed_in_window(&failed(g), now, nc.params.window_ms);
            let labels = g.labels_now();
            let labels = labels.iter().map(|l| l.as_deref().unwrap_or(""));
            *top_peers = top_shares(labels, &in_window, TOP_PEERS);
        }
    }
}
