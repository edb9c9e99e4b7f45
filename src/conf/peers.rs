//! The upstream peers whose tries are counted (`nginx_upstream_peer_responses_total`): one
//! [`PeerGroup`] per upstream a NAME's location passes requests to, learnt when the
//! configuration is read (`conf/upstream_peers.rs` reads them from nginx), and the lookup the
//! request path makes in it.
//!
//! Each peer, and an `other` per upstream for tries the configuration did not name (a peer
//! re-resolved at run time), has a probe-table slot keyed `peer:UPSTREAM PEER`. Tries of
//! requests that went to no known upstream (a `proxy_pass` with variables that resolves to an
//! address) count in the catch-all group, upstream `-`.

use std::net::SocketAddr;

use crate::zone::peers::PeerCounts;
use crate::zone::ProbeSlot;

/// The `peer` label of a group's cell for peers it does not name.
pub const OTHER_PEER: &str = "other";
/// The `upstream` label of the catch-all group.
pub const NO_UPSTREAM: &str = "-";

/// One peer as the request path compares it: 16 bytes, so a few peers fit in a cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct PeerRef {
    /// nginx's bytes of the peer's name (compared, never read): a try of an upstream without
    /// a shared zone names its peer with these very bytes, and nginx never makes another name
    /// start at them. Null for `other`.
    nginx_data: *const u8,
    /// Its cells: in the zone once it is claimed, [`UNCLAIMED`] before.
    counts: *const PeerCounts,
}

/// Where tries count before the zone is claimed (they never do: a request is counted only
/// once its NAME has a slot), so that the request path never tests for a missing cell.
static UNCLAIMED: PeerCounts = PeerCounts::new();

/// The peers of one upstream, with their cells.
#[derive(Debug)]
pub struct PeerGroup {
    /// The `upstream` label: the block's name, `HOST:PORT` of an implicit upstream, or
    /// [`NO_UPSTREAM`].
    pub upstream: String,
    /// nginx's `ngx_http_upstream_srv_conf_t` of the upstream (an identity, never read here;
    /// null for the catch-all group).
    pub identity: *const core::ffi::c_void,
    /// The peers' names as nginx prints them in `$upstream_addr`, in configuration order.
    pub peers: Vec<String>,
    /// One per peer, then `other`'s: never empty, which the request path's loop relies on.
    refs: Vec<PeerRef>,
    /// The slots whose cells count the tries of `server ... resolve` peers, each under the
    /// address it holds now (`probe/resolve_pool`): claimed with the configuration, given to
    /// addresses as nginx resolves them. Null before the zone is claimed.
    resolved: Vec<*const ProbeSlot>,
}

impl PeerGroup {
    /// A group of `peers`: `(name, nginx's bytes of the name)`; a name given twice is kept once.
    pub fn new(
        upstream: String,
        identity: *const core::ffi::c_void,
        peers: &[(String, *const u8)],
    ) -> PeerGroup {
        let mut g = PeerGroup {
            upstream,
            identity,
            peers: Vec::new(),
            refs: Vec::new(),
            resolved: Vec::new(),
        };
        let unclaimed = core::ptr::from_ref(&UNCLAIMED);
        for (name, data) in peers {
            if name.is_empty() || name == OTHER_PEER || g.peers.contains(name) || data.is_null() {
                continue;
            }
            g.refs.push(PeerRef {
                nginx_data: *data,
                counts: unclaimed,
            });
            g.peers.push(name.clone());
        }
        g.refs.push(PeerRef {
            nginx_data: core::ptr::null(),
            counts: unclaimed,
        });
        g
    }

    /// The catch-all group: no peers, only `other`.
    pub fn catch_all() -> PeerGroup {
        PeerGroup::new(NO_UPSTREAM.to_string(), core::ptr::null(), &[])
    }

    /// The group with `n` cells for the addresses of its `server ... resolve` peers.
    pub fn with_resolved(mut self, n: usize) -> PeerGroup {
        self.resolved = vec![core::ptr::null(); n];
        self
    }

    /// Zone keys of the group's cells: each peer's, `other`'s, then those of the cells for
    /// resolved addresses (`peer:UPSTREAM resolve #N`).
    pub fn keys(&self) -> impl Iterator<Item = Vec<u8>> + '_ {
        let resolved =
            (0..self.resolved.len()).map(|i| format!("peer:{} resolve #{i}", self.upstream));
        self.labels()
            .map(|peer| format!("peer:{} {peer}", self.upstream))
            .chain(resolved)
            .map(String::into_bytes)
    }

    /// The `peer` label of each cell now, in the order of [`PeerGroup::cell_ptrs`]: a cell for
    /// resolved addresses is labelled by the address it holds, `None` while it holds none.
    pub fn labels_now(&self) -> Vec<Option<String>> {
        let resolved = self.resolved.iter().map(|s| {
            // SAFETY: null, or a slot in the zone, mapped for as long as the configuration.
            let slot = unsafe { s.as_ref() }?;
            slot.address.get().map(|a| a.to_string())
        });
        self.labels()
            .map(|l| Some(l.to_string()))
            .chain(resolved)
            .collect()
    }

    /// The slots of the cells for resolved addresses (null: not claimed).
    pub fn resolved_slots(&self) -> &[*const ProbeSlot] {
        &self.resolved
    }

    /// The `peer` labels of the group's cells, in the order of [`PeerGroup::keys`].
    pub fn labels(&self) -> impl Iterator<Item = &str> + '_ {
        self.peers
            .iter()
            .map(String::as_str)
            .chain(core::iter::once(OTHER_PEER))
    }

    /// Number of cells (keys).
    pub fn cells(&self) -> usize {
        self.refs.len() + self.resolved.len()
    }

    /// Gives the group its cells, in the order of [`PeerGroup::keys`] (null: none).
    pub fn set_cells(&mut self, cells: &[*const PeerCounts]) {
        for (r, c) in self.refs.iter_mut().zip(cells) {
            r.counts = if c.is_null() { &UNCLAIMED } else { *c };
        }
    }

    /// Gives the cells for resolved addresses their slots, in order (null: none).
    pub fn set_resolved_slots(&mut self, slots: &[*const ProbeSlot]) {
        for (r, s) in self.resolved.iter_mut().zip(slots) {
            *r = *s;
        }
    }

    /// The cells of each label, in the order of [`PeerGroup::labels`], then those for resolved
    /// addresses (null: not claimed).
    pub fn cell_ptrs(&self) -> impl Iterator<Item = *const PeerCounts> + '_ {
        let fixed = self.refs.iter().map(|r| {
            if core::ptr::eq(r.counts, &UNCLAIMED) {
                core::ptr::null()
            } else {
                r.counts
            }
        });
        let resolved = self.resolved.iter().map(|s| {
            // SAFETY: null, or a slot in the zone, mapped for as long as the configuration.
            unsafe { s.as_ref() }.map_or(core::ptr::null(), |s| core::ptr::from_ref(&s.peer))
        });
        fixed.chain(resolved)
    }

    /// The cells of the peer whose name nginx holds at `nginx_data`, `other`'s for a null
    /// one: the request path's lookup, one comparison per peer (a try of an upstream without
    /// a zone names its peer with nginx's configuration bytes, which the group remembers).
    /// `None`: not found this way, see [`PeerGroup::find_by_name`].
    #[inline(always)]
    pub fn find_by_address(&self, nginx_data: *const u8) -> Option<&PeerCounts> {
        // A loop that tests at its end, as `refs` is never empty (`other`'s is last).
        let mut at = self.refs.as_ptr();
        // SAFETY: one past the last element.
        let end = unsafe { at.add(self.refs.len()) };
        loop {
            // SAFETY: `at` is within `refs`: the first element exists, and the test below
            // stops before `end`.
            let r = unsafe { &*at };
            if r.nginx_data == nginx_data {
                // SAFETY: cells point into the zone, mapped for as long as the configuration
                // lives, or at UNCLAIMED.
                return Some(unsafe { &*r.counts });
            }
            // SAFETY: at most one past the last element.
            at = unsafe { at.add(1) };
            if at == end {
                return None;
            }
        }
    }

    /// The cells of the peer named `name`, else `other`'s: peers of an upstream with a zone
    /// (nginx copies their names into it) and names the configuration did not have.
    #[cold]
    #[inline(never)]
    pub fn find_by_name(&self, name: &[u8]) -> &PeerCounts {
        let Some(at) = self.peers.iter().position(|p| p.as_bytes() == name) else {
            return self
                .find_resolved(name)
                .unwrap_or_else(|| self.other_cells());
        };
        let counts = self
            .refs
            .get(at)
            .map_or(&UNCLAIMED as *const _, |r| r.counts);
        // SAFETY: as above.
        unsafe { &*counts }
    }

    /// `other`'s cells.
    fn other_cells(&self) -> &PeerCounts {
        let counts = self
            .refs
            .last()
            .map_or(&UNCLAIMED as *const _, |r| r.counts);
        // SAFETY: cells point into the zone, mapped for as long as the configuration lives,
        // or at UNCLAIMED.
        unsafe { &*counts }
    }

    /// The cells of the resolved address named `name` (`10.0.0.7:8080`, `[::1]:80`), if a
    /// cell holds it now: a parse and a few reads of the zone, no allocation.
    fn find_resolved(&self, name: &[u8]) -> Option<&PeerCounts> {
        if self.resolved.is_empty() {
            return None;
        }
        let addr: SocketAddr = core::str::from_utf8(name).ok()?.parse().ok()?;
        self.resolved.iter().find_map(|s| {
            // SAFETY: null, or a slot in the zone, mapped for as long as the configuration.
            let slot = unsafe { s.as_ref() }?;
            (slot.address.get() == Some(addr)).then_some(&slot.peer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(peers: &[&str]) -> PeerGroup {
        let named: Vec<(String, *const u8)> =
            peers.iter().map(|p| (p.to_string(), p.as_ptr())).collect();
        PeerGroup::new("backend".into(), core::ptr::null(), &named)
    }

    #[test]
    fn keys_and_labels_name_each_peer_once_then_other() {
        let g = group(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.1:80", ""]);
        assert_eq!(g.cells(), 3);
        let keys: Vec<String> = g.keys().map(|k| String::from_utf8(k).unwrap()).collect();
        assert_eq!(
            keys,
            [
                "peer:backend 10.0.0.1:80",
                "peer:backend 10.0.0.2:80",
                "peer:backend other"
            ]
        );
        let all = PeerGroup::catch_all();
        assert_eq!(all.labels().collect::<Vec<_>>(), ["other"]);
        assert_eq!(all.upstream, "-");
    }

    #[test]
    fn a_try_finds_its_peer_by_address_or_bytes_else_other() {
        let names = ["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"];
        let mut g = group(&names);
        let cells: Vec<PeerCounts> = (0..4).map(|_| PeerCounts::default()).collect();
        let ptrs: Vec<*const PeerCounts> = cells.iter().map(core::ptr::from_ref).collect();
        let is = |found: Option<&PeerCounts>, i: usize| {
            assert!(core::ptr::eq(found.unwrap(), &cells[i]), "cell {i}");
        };
        // Before the zone is claimed tries count nowhere that shows.
        let nowhere = g.find_by_address(names[0].as_ptr()).unwrap();
        assert!(core::ptr::eq(nowhere, &UNCLAIMED));
        assert!(g.cell_ptrs().all(|c| c.is_null()));
        g.set_cells(&ptrs);
        // nginx's own bytes (an upstream without a zone).
        is(g.find_by_address(names[1].as_ptr()), 1);
        // A copy (the upstream's zone, or a name nginx built at run time).
        let copy = names[2].to_string();
        assert!(g.find_by_address(copy.as_ptr()).is_none());
        is(Some(g.find_by_name(copy.as_bytes())), 2);
        // Unknown peers, a prefix of a known one, nothing: other.
        is(Some(g.find_by_name(b"10.0.0.9:80")), 3);
        is(Some(g.find_by_name(b"10.0.0.1:8")), 3);
        is(Some(g.find_by_name(b"")), 3);
        is(g.find_by_address(core::ptr::null()), 3);
        assert_eq!(g.cell_ptrs().collect::<Vec<_>>(), ptrs);
    }

    #[test]
    fn a_resolved_address_counts_in_the_cells_that_hold_it() {
        let mut g = group(&["10.0.0.1:80"]).with_resolved(2);
        assert_eq!(g.cells(), 4);
        let keys: Vec<String> = g.keys().map(|k| String::from_utf8(k).unwrap()).collect();
        assert_eq!(
            keys,
            [
                "peer:backend 10.0.0.1:80",
                "peer:backend other",
                "peer:backend resolve #0",
                "peer:backend resolve #1"
            ]
        );
        let cells: Vec<PeerCounts> = (0..2).map(|_| PeerCounts::default()).collect();
        g.set_cells(&cells.iter().map(core::ptr::from_ref).collect::<Vec<_>>());
        // SAFETY: all-zero bytes are a free probe slot.
        let slots: Vec<Box<ProbeSlot>> = (0..2)
            .map(|_| unsafe { Box::new(core::mem::zeroed()) })
            .collect();
        let ptrs: Vec<*const ProbeSlot> = slots.iter().map(|s| core::ptr::from_ref(&**s)).collect();
        g.set_resolved_slots(&ptrs);
        slots[1].hold(Some("10.0.0.7:80".parse().unwrap()));
        assert!(core::ptr::eq(
            g.find_by_name(b"10.0.0.7:80"),
            &slots[1].peer
        ));
        // Not held (or not an address): other.
        assert!(core::ptr::eq(g.find_by_name(b"10.0.0.8:80"), &cells[1]));
        assert!(core::ptr::eq(
            g.find_by_name(b"no live upstreams"),
            &cells[1]
        ));
        assert_eq!(
            g.labels_now(),
            [
                Some("10.0.0.1:80".to_string()),
                Some("other".to_string()),
                None,
                Some("10.0.0.7:80".to_string())
            ]
        );
        assert_eq!(g.cell_ptrs().count(), 4);
    }
}
