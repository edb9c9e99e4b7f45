//! Which upstream a NAME's location passes requests to, and that upstream's peers (FFI, while
//! locations are merged). The groups and the lookup are plain Rust in `conf/peers.rs`.
//!
//! nginx keeps a location's upstream in the location configuration of the module that passes
//! to it (`proxy_pass`, `grpc_pass`, ...), which is private to that module. Each of them starts
//! with an `ngx_http_upstream_conf_t`, whose first member is the upstream
//! (`ngx_http_upstream_srv_conf_t *`), in every nginx since 1.x: that first pointer is all this
//! file reads. Those modules are found by name, so a build without one of them still loads.

use core::ffi::{c_void, CStr};
use core::ptr::NonNull;

use nginx_sys::{
    ngx_addr_t, ngx_conf_t, ngx_http_conf_ctx_t, ngx_http_upstream_server_t,
    ngx_http_upstream_srv_conf_t, ngx_uint_t,
};

use super::peers::PeerGroup;
use super::{LocConf, MainConf, RESOLVE_POOL};

/// Modules whose location configuration begins with an `ngx_http_upstream_conf_t`.
const PASSING_MODULES: [&str; 6] = [
    "ngx_http_proxy_module",
    "ngx_http_grpc_module",
    "ngx_http_fastcgi_module",
    "ngx_http_uwsgi_module",
    "ngx_http_scgi_module",
    "ngx_http_memcached_module",
];

/// Makes the peer group of the upstream a NAME's location passes requests to, the first time
/// it is seen, and gives it to the NAME when it has none yet. Called as each location is merged:
/// the passing modules come before this dynamic module, so their configurations are merged
/// already.
pub fn bind(cf: &ngx_conf_t, conf: &LocConf, mcf: &mut MainConf) {
    let Some(name) = conf.name().map(|n| n.name.clone()) else {
        return;
    };
    let indexes = mcf
        .passing_modules
        .get_or_insert_with(|| passing_module_indexes(cf))
        .clone();
    let Some(uscf) = location_upstream(cf, &indexes) else {
        return;
    };
    // SAFETY: a live upstream configuration of the cycle being configured.
    let group = mcf.peer_group_for(uscf.as_ptr().cast(), || describe(unsafe { uscf.as_ref() }));
    if let Some(nc) = mcf
        .name_index
        .get(&name)
        .and_then(|i| mcf.names.get_mut(*i))
    {
        nc.peers.get_or_insert(group);
    }
}

/// `ctx_index` of each passing module in this nginx.
fn passing_module_indexes(cf: &ngx_conf_t) -> Vec<ngx_uint_t> {
    // SAFETY: cf.cycle is the cycle being configured; its module list is set before the
    // configuration is read.
    let cycle = unsafe { &*cf.cycle };
    if cycle.modules.is_null() {
        return Vec::new();
    }
    // SAFETY: `modules` holds `modules_n` module pointers.
    let modules = unsafe { core::slice::from_raw_parts(cycle.modules, cycle.modules_n) };
    modules
        .iter()
        .filter_map(|m| {
            // SAFETY: each entry is a loaded module, whose name is a C string or null.
            let m = unsafe { m.as_ref() }?;
            // SAFETY: as above.
            let name = unsafe { m.name.as_ref() }.map(|n| unsafe { CStr::from_ptr(n) })?;
            let passing = PASSING_MODULES
                .iter()
                .any(|p| p.as_bytes() == name.to_bytes());
            passing.then_some(m.ctx_index)
        })
        .collect()
}

/// The upstream the location being merged passes requests to, if it does (a `proxy_pass` with
/// variables has none until run time).
fn location_upstream(
    cf: &ngx_conf_t,
    indexes: &[ngx_uint_t],
) -> Option<NonNull<ngx_http_upstream_srv_conf_t>> {
    // SAFETY: while a location is merged, cf.ctx is an http configuration context whose
    // loc_conf array is that location's, one entry per http module.
    let loc_conf = unsafe { (*cf.ctx.cast::<ngx_http_conf_ctx_t>()).loc_conf };
    if loc_conf.is_null() {
        return None;
    }
    indexes.iter().find_map(|&i| {
        // SAFETY: i is the ctx_index of an http module, so within the array.
        let conf = unsafe { *loc_conf.add(i) };
        if conf.is_null() {
            return None;
        }
        // SAFETY: the module's location configuration begins with ngx_http_upstream_conf_t,
        // which begins with the upstream pointer (see the module doc).
        NonNull::new(unsafe { *conf.cast::<*mut ngx_http_upstream_srv_conf_t>() })
    })
}

/// The group of an upstream: its label and the names of its peers as `$upstream_addr` prints
/// them, with nginx's bytes of each name (the round-robin peers of an upstream without a zone
/// point at these very bytes).
fn describe(uscf: &ngx_http_upstream_srv_conf_t) -> PeerGroup {
    let explicit = uscf.flags & nginx_sys::NGX_HTTP_UPSTREAM_CREATE as ngx_uint_t != 0;
    let upstream = if explicit || uscf.port == 0 {
        uscf.host.to_string()
    } else {
        format!("{}:{}", uscf.host, uscf.port)
    };
    let mut peers = Vec::new();
    let mut resolved = 0;
    // SAFETY: `servers` is null or an array of ngx_http_upstream_server_t.
    if let Some(servers) = unsafe { uscf.servers.as_ref() } {
        // SAFETY: as above.
        let servers: &[ngx_http_upstream_server_t] = unsafe { servers.as_slice() };
        resolved = servers.iter().filter(|s| resolved_at_run_time(s)).count();
        for s in servers
            .iter()
            .filter(|s| !s.addrs.is_null() && !resolved_at_run_time(s))
        {
            // SAFETY: addrs holds naddrs addresses.
            let addrs: &[ngx_addr_t] = unsafe { core::slice::from_raw_parts(s.addrs, s.naddrs) };
            for a in addrs.iter().filter(|a| !a.name.data.is_null()) {
                peers.push((a.name.to_string(), a.name.data.cast_const()));
            }
        }
    }
    // The addresses of `server ... resolve` peers get cells as nginx resolves them.
    PeerGroup::new(upstream, core::ptr::from_ref(uscf).cast::<c_void>(), &peers)
        .with_resolved(resolved * RESOLVE_POOL)
}

/// True for a `server ... resolve` (nginx 1.27.3 and later) whose name nginx resolves at run
/// time: its only address at configuration time is a placeholder that keeps the port, never a
/// peer to probe; its tries count in the cells of the address they went to (`with_resolved`).
#[cfg(ngx_upstream_resolve)]
pub fn resolved_at_run_time(s: &ngx_http_upstream_server_t) -> bool {
    s.host.len > 0
}

/// Older nginx resolves every server when it reads the configuration.
#[cfg(not(ngx_upstream_resolve))]
pub fn resolved_at_run_time(_s: &ngx_http_upstream_server_t) -> bool {
    false
}
