//! `mark_down=on` (FFI): sets nginx's own `down` flag on the peers that `mark_down` keeps out
//! of rotation, in the upstream's shared zone, so that every worker stops choosing them.
//!
//! Stateless on purpose: on every tick the evaluator makes each peer's flag what the probe
//! states and the `server ... down` lines say it should be. So a crash of the evaluator, a
//! take-over by another process or a reload (nginx copies fresh peers from the configuration
//! into a new upstream zone on every reload) never leaves a peer down by mistake, and removing
//! the directive and reloading brings every peer back.

use core::cell::RefCell;
use std::borrow::Cow;
use std::net::SocketAddr;

use nginx_sys::{ngx_http_upstream_rr_peer_t, ngx_http_upstream_rr_peers_t, ngx_log_t};

use super::{FailOpen, PeerGroup};
use crate::conf::probe_spec::ProbeSpec;
use crate::conf::MainConf;
use crate::probe::upstream as upstream_probe;

thread_local! {
    // The groups (built once per process, unless `server ... resolve` slots change them) and
    // the upstreams that failed open at the last tick, for logging.
    static GROUPS: RefCell<Option<Vec<PeerGroup>>> = const { RefCell::new(None) };
    static FAILED_OPEN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// The groups as they stand: with the address each `server ... resolve` slot holds now.
fn current_groups(mcf: &MainConf) -> Vec<PeerGroup> {
    let specs: Vec<(usize, Cow<'_, ProbeSpec>)> = mcf
        .probes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.current()?)))
        .collect();
    super::groups(specs.iter().map(|(i, s)| (*i, &**s)))
}

/// Makes every `mark_down=on` peer's `down` flag match its probes. Call only while holding
/// the evaluation lease (one writer), after the tick's probe results are applied. Returns the
/// upstreams that fail open (every peer DOWN), for the DOWN messages to say so.
pub fn sync(mcf: &MainConf, log: *mut ngx_log_t) -> Vec<FailOpen> {
    let groups = if mcf.probes.iter().any(|p| p.resolve.is_some()) {
        current_groups(mcf)
    } else {
        GROUPS.with(|g| {
            g.borrow_mut()
                .get_or_insert_with(|| current_groups(mcf))
                .clone()
        })
    };
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
    FAILED_OPEN.with(|failed| {
        let mut failed = failed.borrow_mut();
        // An upstream with no group now (its resolved addresses are all gone) starts afresh.
        failed.retain(|u| groups.iter().any(|g| g.upstream == *u));
        for g in &groups {
            let d = super::decide(g, up);
            let before = failed.contains(&g.upstream);
            if d.fail_open {
                fail_open.push(FailOpen {
                    upstream: g.upstream.clone(),
                    targets: g
                        .peers
                        .iter()
                        .flat_map(|(_, probes)| probes.iter())
                        .filter_map(|i| mcf.probes.get(*i)?.current())
                        .map(|p| p.target.display())
                        .collect(),
                });
                if !before {
                    warn!(
                        log,
                        "status_alert: every peer of upstream \"{}\" is DOWN, all are used \
                         again (mark_down fails open)",
                        g.upstream
                    );
                    failed.push(g.upstream.clone());
                }
            } else if before {
                failed.retain(|u| *u != g.upstream);
            }
            let keep_out: Vec<(SocketAddr, bool)> = g
                .peers
                .iter()
                .zip(&d.keep_out)
                .filter_map(|((peer, _), out)| Some((peer.parse().ok()?, *out)))
                .collect();
            apply(&g.upstream, &keep_out, log);
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
            let configured_down = template_down(peers, p).unwrap_or_else(|| {
                configured
                    .iter()
                    .any(|(a, down)| Some(*a) == addr_of(p) && *down)
            });
            update(
                &mut peers.tries,
                p,
                keep_out,
                configured_down,
                upstream,
                log,
            );
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
    configured_down: bool,
    upstream: &str,
    log: *mut ngx_log_t,
) {
    let Some(addr) = addr_of(p) else {
        return;
    };
    let Some(out) = keep_out.iter().find(|(a, _)| *a == addr).map(|k| k.1) else {
        return;
    };
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

/// A peer's address.
fn addr_of(p: &ngx_http_upstream_rr_peer_t) -> Option<SocketAddr> {
    upstream_probe::socket_addr(p.sockaddr.cast())
}

/// For a peer nginx resolved at run time, the `down` of its `server ... resolve` line (its
/// template in the list's `resolve`, whose `host` it shares); `None` for other peers.
#[cfg(ngx_upstream_resolve)]
fn template_down(
    peers: &ngx_http_upstream_rr_peers_t,
    p: &ngx_http_upstream_rr_peer_t,
) -> Option<bool> {
    if p.host.is_null() {
        return None;
    }
    let mut t = peers.resolve;
    // SAFETY: the list's templates, stable while its lock is held.
    while let Some(tp) = unsafe { t.as_ref() } {
        if tp.host == p.host {
            return Some(tp.down != 0);
        }
        t = tp.next;
    }
    None
}

/// No peer is resolved at run time before nginx 1.27.3.
#[cfg(not(ngx_upstream_resolve))]
fn template_down(
    _peers: &ngx_http_upstream_rr_peers_t,
    _p: &ngx_http_upstream_rr_peer_t,
) -> Option<bool> {
    None
}

/// `(upstream, peer, kept out)` of every `mark_down=on` peer, for `nginx_upstream_peer_down`.
pub fn kept_out(mcf: &MainConf) -> Vec<(String, String, bool)> {
    let groups = current_groups(mcf);
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
