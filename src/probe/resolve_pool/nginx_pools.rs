//! `server ... resolve` pools (FFI): on every tick of the evaluating process, reads the
//! addresses nginx resolved each pool's server to from the upstream's zone and gives the
//! pool's slots to them ([`super::assign`]).

use core::cell::RefCell;
use std::net::SocketAddr;

use nginx_sys::ngx_log_t;

use super::Pool;
use crate::conf::MainConf;
use crate::probe::upstream as upstream_probe;

thread_local! {
    // The pools (built once per process) and, per pool, the addresses last left without a
    // slot, so that the log says so once per change.
    static POOLS: RefCell<Option<Vec<Pool>>> = const { RefCell::new(None) };
    static LEFT: RefCell<Vec<Vec<SocketAddr>>> = const { RefCell::new(Vec::new()) };
}

/// Makes every pool's slots hold the addresses its server resolves to now. Call only while
/// holding the evaluation lease (one writer), before the probes of the tick start.
pub fn sync(mcf: &MainConf, log: *mut ngx_log_t) {
    let pools = POOLS.with(|p| {
        p.borrow_mut()
            .get_or_insert_with(|| super::pools(&mcf.probes))
            .clone()
    });
    if pools.is_empty() {
        return;
    }
    // Each upstream's zone is read once per tick, however many pools it has.
    let mut resolved: Vec<(&str, upstream_probe::ResolvedServers)> = Vec::new();
    LEFT.with(|left| {
        let mut left = left.borrow_mut();
        left.resize(pools.len(), Vec::new());
        for (pool, last_left) in pools.iter().zip(left.iter_mut()) {
            if !resolved.iter().any(|(u, _)| *u == pool.upstream) {
                let now = upstream_probe::find_in_cycle(&pool.upstream)
                    // SAFETY: a live upstream configuration of the current cycle.
                    .map(|u| upstream_probe::resolved_now(unsafe { &*u }))
                    .unwrap_or_default();
                resolved.push((&pool.upstream, now));
            }
            let wanted = resolved
                .iter()
                .find(|(u, _)| *u == pool.upstream)
                .and_then(|(_, servers)| servers.iter().find(|(s, _)| *s == pool.server))
                .map(|(_, addrs)| addrs.as_slice())
                .unwrap_or_default();
            let slots: Vec<_> = pool
                .members
                .iter()
                // SAFETY: slots point into the mapped zone.
                .filter_map(|i| unsafe { mcf.probes.get(*i)?.slot.as_ref() })
                .collect();
            let held: Vec<Option<SocketAddr>> = slots.iter().map(|s| s.address.get()).collect();
            let (now, unprobed) = super::assign(&held, wanted);
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
