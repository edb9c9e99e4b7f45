//! `mark_down=on` (FFI): sets nginx's own `down` flag on the peers that `mark_down` keeps out
//! of rotation, in the upstream's shared zone, so that every worker stops choosing them.
//!
//! Stateless on purpose: on every tick the evaluator makes each peer's flag what the probe
//! states and the `server ... down` lines say it should be. So a crash of the evaluator, a
//! take-over by another process or a reload (nginx copies fresh peers from the configuration
//! into a new upstream zone on every reload) never leaves a peer down by mistake, and removing
//! the directive and reloading brings every peer back.

use core::cell::RefCell;
use std::net::SocketAddr;

use nginx_sys::{ngx_http_upstream_rr_peer_t, ngx_http_upstream_rr_peers_t, ngx_log_t};

use super::{FailOpen, PeerGroup};
use crate::conf::MainConf;
use crate::probe::upstream as upstream_probe;

thread_local! {
    // The groups (built once per process) and the last decision per group, for logging.
    static GROUPS: RefCell<Option<Vec<PeerGroup>>> = const { RefCell::new(None) };
    static LAST: RefCell<Vec<(Vec<bool>, bool)>> = const { RefCell::new(Vec::new()) };
}

/// Makes every `mark_down=on` peer's `down` flag match its probes. Call only while holding
/// the evaluation lease (one writer), after the tick's probe results are applied. Returns the
/// upstreams that fail open (every peer DOWN), for the DOWN messages to say so.
pub fn sync(mcf: &MainConf, log: *mut ngx_log_t) -> Vec<FailOpen> {
    let groups = GROUPS.with(|g| {
        g.borrow_mut()
            .get_or_insert_with(|| super::groups(mcf.probes.iter().map(|p| &p.spec)))
            .clone()
    });
    let mut fail_open = Vec::new();
    if groups.is_empty() {
        return fail_open;
    }
    let up = |i: usize| {
        let probe = mcf.probes.get(i)?;
        // SAFETY: slots point into the mapped zone.
        let slot = unsafe { probe.slot.as_ref() }?;
        crate::probe::is_up(&slot.probe)
    };
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        last.resize(groups.len(), (Vec::new(), false));
        for (g, prev) in groups.iter().zip(last.iter_mut()) {
            let d = super::decide(g, up);
            if d.fail_open {
                fail_open.push(FailOpen {
                    upstream: g.upstream.clone(),
                    targets: g
                        .peers
                        .iter()
                        .flat_map(|(_, probes)| probes.iter())
                        .filter_map(|i| mcf.probes.get(*i))
                        .map(|p| p.spec.target.display())
                        .collect(),
                });
            }
            if d.fail_open && !prev.1 {
                warn!(
                    log,
                    "status_alert: every peer of upstream \"{}\" is DOWN, all are used again \
                     (mark_down fails open)",
                    g.upstream
                );
            }
            let keep_out: Vec<(SocketAddr, bool)> = g
                .peers
                .iter()
                .zip(&d.keep_out)
                .filter_map(|((peer, _), out)| Some((peer.parse().ok()?, *out)))
                .collect();
            apply(&g.upstream, &keep_out, log);
            *prev = (d.keep_out, d.fail_open);
        }
    });
    fail_open
}

/// Sets the flags of one upstream's peers: down if kept out or configured `down`.
fn apply(upstream: &str, keep_out: &[(SocketAddr, bool)], log: *mut ngx_log_t) {
    let Some(uscf) = upstream_probe::find_in_cycle(upstream) else {
        return;
    };
    // SAFETY: a live upstream configuration of the current cycle.
    let uscf = unsafe { &*uscf };
    let configured = upstream_probe::configured_down(uscf);
    let mut list = uscf.peer.data.cast::<ngx_http_upstream_rr_peers_t>();
    // The primary peers, then the backup ones; each list has its own lock.
    // SAFETY: null or a peer list of this upstream, in its shared zone for the cycle's life.
    while let Some(peers) = unsafe { list.as_mut() } {
        if peers.shpool.is_null() {
            // Not in a zone (checked by nginx -t): flags would not reach the other workers.
            return;
        }
        // SAFETY: the upstream zone's peers, shared by every worker; nginx's own code changes
        // them only under this write lock.
        unsafe { nginx_sys::ngx_rwlock_wlock(&mut peers.rwlock) };
        let mut peer = peers.peer;
        // SAFETY: the list is stable while the write lock is held.
        while let Some(p) = unsafe { peer.as_mut() } {
            update(&mut peers.tries, p, keep_out, &configured, upstream, log);
            peer = p.next;
        }
        // SAFETY: taken above.
        unsafe { nginx_sys::ngx_rwlock_unlock(&mut peers.rwlock) };
        list = peers.next;
    }
}

/// One peer, under its list's write lock.
fn update(
    tries: &mut nginx_sys::ngx_uint_t,
    p: &mut ngx_http_upstream_rr_peer_t,
    keep_out: &[(SocketAddr, bool)],
    configured: &[(SocketAddr, bool)],
    upstream: &str,
    log: *mut ngx_log_t,
) {
    let Some(addr) = upstream_probe::socket_addr(p.sockaddr.cast()) else {
        return;
    };
    let Some(out) = keep_out.iter().find(|(a, _)| *a == addr).map(|k| k.1) else {
        return;
    };
    let configured_down = configured.iter().any(|(a, down)| *a == addr && *down);
    let want = out || configured_down;
    if (p.down != 0) == want {
        return;
    }
    p.down = want.into();
    // nginx counts the tries of a list over its peers that are not down.
    if want {
        *tries = tries.saturating_sub(1);
    } else {
        *tries += 1;
    }
    if out {
        notice!(
            log,
            "status_alert: upstream \"{upstream}\" peer {addr} is DOWN, no new requests go to it"
        );
    } else {
        notice!(
            log,
            "status_alert: upstream \"{upstream}\" peer {addr} is back in rotation"
        );
    }
}

/// `(upstream, peer, kept out)` of every `mark_down=on` peer, for `nginx_upstream_peer_down`.
pub fn kept_out(mcf: &MainConf) -> Vec<(String, String, bool)> {
    let groups = super::groups(mcf.probes.iter().map(|p| &p.spec));
    let up = |i: usize| {
        let probe = mcf.probes.get(i)?;
        // SAFETY: slots point into the mapped zone.
        let slot = unsafe { probe.slot.as_ref() }?;
        crate::probe::is_up(&slot.probe)
    };
    let mut out = Vec::new();
    for g in &groups {
        let d = super::decide(g, up);
        for ((peer, _), k) in g.peers.iter().zip(d.keep_out) {
            out.push((g.upstream.clone(), peer.clone(), k));
        }
    }
    out
}
