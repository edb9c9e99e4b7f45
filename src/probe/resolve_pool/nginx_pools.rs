//! `server ... resolve` pools (FFI): on every tick of the evaluating process, reads the
//! addresses nginx resolved each pool's server to from the upstream's zone and gives the
//! pool's slots to them ([`super::assign`]).

use core::cell::RefCell;
use std::net::SocketAddr;

use nginx_sys::ngx_log_t;

use super::{Pool, Shown};
use crate::conf::MainConf;
use crate::probe::upstream as upstream_probe;

thread_local! {
    // The pools (built once per process) and, per pool, the addresses last left without a
    // slot, so that the log says so once per change.
    static POOLS: RefCell<Option<(Vec<Pool>, Vec<Shown>)>> = const { RefCell::new(None) };
    static LEFT: RefCell<Vec<Vec<SocketAddr>>> = const { RefCell::new(Vec::new()) };
}

/// Makes every pool's slots hold the addresses its server resolves to now. Call only while
/// holding the evaluation lease (one writer), before the probes of the tick start.
pub fn sync(mcf: &MainConf, log: *mut ngx_log_t) {
    let (pools, fixed) = POOLS.with(|p| {
        p.borrow_mut()
            .get_or_insert_with(|| (super::pools(&mcf.probes), super::fixed_targets(&mcf.probes)))
            .clone()
    });
    if pools.is_empty() {
        return;
    }
    let slots_of = |pool: &Pool| -> Vec<&crate::zone::ProbeSlot> {
        pool.members
            .iter()
            // SAFETY: slots point into the mapped zone.
            .filter_map(|i| unsafe { mcf.probes.get(*i)?.slot.as_ref() })
            .collect()
    };
    // What each pool's slots show now; updated as each pool is synced.
    let mut shown: Vec<Vec<Shown>> = pools
        .iter()
        .map(|p| {
            let held = slots_of(p).into_iter().filter_map(|s| s.address.get());
            held.map(|a| p.shows(a)).collect()
        })
        .collect();
    // Each upstream's zone is read once per tick, however many pools it has.
    let mut resolved: Vec<(&str, upstream_probe::ResolvedServers)> = Vec::new();
    LEFT.with(|left| {
        let mut left = left.borrow_mut();
        left.resize(pools.len(), Vec::new());
        for (at, (pool, last_left)) in pools.iter().zip(left.iter_mut()).enumerate() {
            if !resolved.iter().any(|(u, _)| *u == pool.upstream) {
                let now = upstream_probe::find_in_cycle(&pool.upstream)
                    // SAFETY: a live upstream configuration of the current cycle.
                    .map(|u| upstream_probe::resolved_now(unsafe { &*u }))
                    .unwrap_or_default();
                resolved.push((&pool.upstream, now));
            }
            let resolved_now = resolved
                .iter()
                .find(|(u, _)| *u == pool.upstream)
                .and_then(|(_, servers)| servers.iter().find(|(s, _)| *s == pool.server))
                .map(|(_, addrs)| addrs.as_slice())
                .unwrap_or_default();
            let wanted = super::not_shown_elsewhere(&pools, at, resolved_now, &fixed, &shown);
            let slots = slots_of(pool);
            let held: Vec<Option<SocketAddr>> = slots.iter().map(|s| s.address.get()).collect();
            let (now, unprobed) = super::assign(&held, &wanted);
            shown[at] = now.iter().flatten().map(|a| pool.shows(*a)).collect();
            for ((slot, was), is) in slots.iter().zip(&held).zip(&now) {
                if was == is {
                    continue;
                }
                slot.hold(*is);
                if let Some(a) = was {
                    notice!(
                        log,
                        "status_alert: upstream \"{}\" server {} no longer resolves to {a}, \
                         not probed any more",
                        pool.upstream,
                        pool.server
                    );
                }
                if let Some(a) = is {
                    notice!(
                        log,
                        "status_alert: upstream \"{}\" server {} resolves to {a}, probed from now",
                        pool.upstream,
                        pool.server
                    );
                }
            }
            if unprobed != *last_left {
                if !unprobed.is_empty() {
                    let list: Vec<String> = unprobed.iter().map(|a| a.to_string()).collect();
                    warn!(
                        log,
                        "status_alert: upstream \"{}\" server {} resolves to more than {} \
                         addresses, these are not probed: {}",
                        pool.upstream,
                        pool.server,
                        slots.len(),
                        list.join(", ")
                    );
                }
                *last_left = unprobed;
            }
        }
    });
}

/// Gives the cells that count the tries of `server ... resolve` peers
/// (`nginx_upstream_peer_responses_total`, see `conf::peers`) to the addresses the upstream's
/// servers resolve to now, like the probe slots: an address keeps its cells while nginx keeps
/// the peer, a vanished one's are reset and freed. An address with no cell left, or one a fixed
/// `server` names too, is counted where it was before: `other`, or that server's cells. Call
/// only while holding the evaluation lease.
pub fn sync_peer_cells(mcf: &MainConf) {
    for g in &mcf.peer_groups {
        if g.resolved_slots().is_empty() {
            continue;
        }
        // SAFETY: the identity of a group is its upstream's configuration, of this cycle.
        let Some(uscf) = (unsafe {
            g.identity
                .cast::<nginx_sys::ngx_http_upstream_srv_conf_t>()
                .as_ref()
        }) else {
            continue;
        };
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for a in upstream_probe::resolved_now(uscf)
            .into_iter()
            .flat_map(|(_, a)| a)
        {
            if !addrs.contains(&a) && !g.peers.contains(&a.to_string()) {
                addrs.push(a);
            }
        }
        let slots: Vec<&crate::zone::ProbeSlot> = g
            .resolved_slots()
            .iter()
            // SAFETY: null, or a slot in the mapped zone.
            .filter_map(|s| unsafe { s.as_ref() })
            .collect();
        let held: Vec<Option<SocketAddr>> = slots.iter().map(|s| s.address.get()).collect();
        let (now, _) = super::assign(&held, &addrs);
        for ((slot, was), is) in slots.iter().zip(&held).zip(&now) {
            if was != is {
                slot.hold(*is);
            }
        }
    }
}
