//! `status_alert_probe upstream=NAME`: finds `upstream NAME { ... }` in the configuration and
//! turns the directive into one probe per address of each of its `server`s, and a pool of
//! probe slots per `server ... resolve`, whose addresses nginx finds at run time
//! ([`resolved_now`] reads them from the upstream's zone).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use nginx_sys::{ngx_addr_t, ngx_conf_t, ngx_http_upstream_server_t, ngx_http_upstream_srv_conf_t};
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};

use crate::conf::probe_spec::ProbeSpec;
use crate::conf::upstream_peers::resolved_at_run_time;
use crate::conf::{ConfError, MainConf, ProbeConf, ResolveMember, RESOLVE_POOL};

/// Replaces every `upstream=` probe of `mcf` by the probes of its peers. Called once the
/// `http` block is read, when every `upstream` block is known.
pub fn expand(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), ConfError> {
    let upstreams = upstream_blocks(cf);
    let mut out: Vec<ProbeConf> = Vec::with_capacity(mcf.probes.len());
    let mut next_pool = 0;
    for probe in core::mem::take(&mut mcf.probes) {
        let Some(up) = probe.spec.upstream.clone() else {
            out.push(probe);
            continue;
        };
        let err = |message: String| ConfError::At {
            directive: "status_alert_probe",
            message,
            place: probe.place.clone(),
        };
        let Some(uscf) = upstreams.iter().find(|u| u.0 == up.name).map(|u| u.1) else {
            return Err(err(format!("unknown upstream \"{}\"", up.name)));
        };
        // SAFETY: pointers from nginx's upstream main configuration, valid for this cycle.
        let uscf = unsafe { &*uscf };
        if up.mark_down && uscf.shm_zone.is_null() {
            return Err(err(format!(
                "mark_down=on requires \"zone\" in upstream \"{}\"",
                up.name
            )));
        }
        let addrs = server_addresses(uscf);
        let later = run_time_names(uscf);
        if addrs.is_empty() && later.is_empty() {
            return Err(err(format!(
                "upstream \"{}\" has no server with an IP address",
                up.name
            )));
        }
        let peer = |spec: ProbeSpec, addrs: Vec<SocketAddr>, resolve| ProbeConf {
            spec,
            place: probe.place.clone(),
            slot: core::ptr::null(),
            addrs,
            core_loc_conf: core::ptr::null(),
            resolver: None,
            body_regex: probe.body_regex,
            loc_conf: probe.loc_conf,
            certificates: probe.certificates,
            resolve,
        };
        for addr in addrs {
            let spec = probe.spec.for_peer(addr);
            let shown = spec.target.display();
            if out.iter().any(|o| {
                o.resolve.is_none() && o.spec.name == spec.name && o.spec.target.display() == shown
            }) {
                // The same address twice in one upstream (or in two probes): probe it once.
                continue;
            }
            out.push(peer(spec, vec![addr], None));
        }
        // A `server ... resolve`: a pool of slots, given to its addresses as nginx resolves
        // them (`probe/resolve_pool/mod.rs`).
        for server in later {
            let shown = probe.spec.target.display();
            let same = |o: &ProbeConf| {
                o.resolve.as_ref().is_some_and(|r| r.server == server)
                    && o.spec.name == probe.spec.name
                    && o.spec.target.display() == shown
            };
            if out.iter().any(same) {
                // The same server twice, or probed twice alike: one pool.
                continue;
            }
            let pool = next_pool;
            next_pool += 1;
            for member in 0..RESOLVE_POOL {
                let resolve = Some(ResolveMember {
                    pool,
                    server: server.clone(),
                    member,
                });
                out.push(peer(probe.spec.clone(), Vec::new(), resolve));
            }
        }
    }
    mcf.probes = out;
    Ok(())
}

/// Every explicit `upstream NAME {}` block (not those `proxy_pass` creates implicitly).
fn upstream_blocks(cf: &mut ngx_conf_t) -> Vec<(String, *const ngx_http_upstream_srv_conf_t)> {
    let Some(umcf) = NgxHttpUpstreamModule::main_conf(cf) else {
        return Vec::new();
    };
    // SAFETY: `upstreams` is an array of pointers to upstream server configurations.
    let blocks: &[*mut ngx_http_upstream_srv_conf_t] = unsafe { umcf.upstreams.as_slice() };
    blocks
        .iter()
        .filter_map(|u| {
            // SAFETY: each element points at a live upstream configuration.
            let u = unsafe { u.as_ref() }?;
            let explicit = u.flags & nginx_sys::NGX_HTTP_UPSTREAM_CREATE as nginx_sys::ngx_uint_t;
            (explicit != 0).then(|| (u.host.to_string(), u as *const _))
        })
        .collect()
}

/// The addresses of every `server` of an upstream block, in configuration order. Servers
/// whose addresses nginx re-resolves at run time (`resolve`) have none at this point: their
/// pools follow [`resolved_now`].
fn server_addresses(uscf: &ngx_http_upstream_srv_conf_t) -> Vec<SocketAddr> {
    // SAFETY: `servers` is null or an array of ngx_http_upstream_server_t.
    let Some(servers) = (unsafe { uscf.servers.as_ref() }) else {
        return Vec::new();
    };
    // SAFETY: as above.
    let servers: &[ngx_http_upstream_server_t] = unsafe { servers.as_slice() };
    let mut out = Vec::new();
    for s in servers.iter().filter(|s| !resolved_at_run_time(s)) {
        if s.addrs.is_null() {
            continue;
        }
        // SAFETY: addrs holds naddrs addresses.
        let addrs: &[ngx_addr_t] = unsafe { core::slice::from_raw_parts(s.addrs, s.naddrs) };
        out.extend(addrs.iter().filter_map(|a| socket_addr(a.sockaddr.cast())));
    }
    out
}

/// Each `server ... resolve` of an upstream (as written) with the addresses it resolves to.
pub type ResolvedServers = Vec<(String, Vec<SocketAddr>)>;

/// The `server ... resolve` names of an upstream, as written, each once.
#[cfg(ngx_upstream_resolve)]
pub fn run_time_names(uscf: &ngx_http_upstream_srv_conf_t) -> Vec<String> {
    // SAFETY: `servers` is null or an array of ngx_http_upstream_server_t.
    let Some(servers) = (unsafe { uscf.servers.as_ref() }) else {
        return Vec::new();
    };
    // SAFETY: as above.
    let servers: &[ngx_http_upstream_server_t] = unsafe { servers.as_slice() };
    let mut out: Vec<String> = Vec::new();
    for s in servers.iter().filter(|s| resolved_at_run_time(s)) {
        let name = s.name.to_string();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// The addresses nginx resolved each `server ... resolve` of the upstream to, as it stands
/// now: `(server as written, addresses)`, read from the upstream's zone under its read lock
/// (the peers nginx's resolver adds and removes, `ngx_http_upstream_zone_module.c`). Each
/// resolved peer points at the `host` of its server's template, in the list's `resolve`.
#[cfg(ngx_upstream_resolve)]
pub fn resolved_now(uscf: &ngx_http_upstream_srv_conf_t) -> ResolvedServers {
    use nginx_sys::{ngx_http_upstream_rr_peer_t, ngx_http_upstream_rr_peers_t};
    let mut out: Vec<(String, Vec<SocketAddr>)> = Vec::new();
    let mut list = uscf.peer.data.cast::<ngx_http_upstream_rr_peers_t>();
    // The primary peers, then the backup ones; each list has its own lock.
    // SAFETY: null or a peer list of this upstream, in its shared zone for the cycle's life.
    while let Some(peers) = unsafe { list.as_mut() } {
        if peers.shpool.is_null() {
            // Not in a zone: no server is resolved at run time (nginx -t requires one).
            break;
        }
        // SAFETY: nginx's resolver changes the list only under the write lock.
        unsafe { nginx_sys::ngx_rwlock_rlock(&mut peers.rwlock) };
        let mut templates = Vec::new();
        let mut t: *mut ngx_http_upstream_rr_peer_t = peers.resolve;
        // SAFETY: the lists are stable while the read lock is held.
        while let Some(tp) = unsafe { t.as_ref() } {
            templates.push((tp.host, tp.server.to_string()));
            t = tp.next;
        }
        let mut p: *mut ngx_http_upstream_rr_peer_t = peers.peer;
        // SAFETY: as above.
        while let Some(pp) = unsafe { p.as_ref() } {
            let server = templates
                .iter()
                .find(|(h, _)| !pp.host.is_null() && *h == pp.host);
            if let (Some((_, server)), Some(addr)) = (server, socket_addr(pp.sockaddr.cast())) {
                match out.iter_mut().find(|(s, _)| s == server) {
                    Some((_, addrs)) if !addrs.contains(&addr) => addrs.push(addr),
                    Some(_) => {}
                    None => out.push((server.clone(), vec![addr])),
                }
            }
            p = pp.next;
        }
        // SAFETY: taken above.
        unsafe { nginx_sys::ngx_rwlock_unlock(&mut peers.rwlock) };
        list = peers.next;
    }
    out
}

/// No `resolve` servers before nginx 1.27.3.
#[cfg(not(ngx_upstream_resolve))]
pub fn resolved_now(_uscf: &ngx_http_upstream_srv_conf_t) -> ResolvedServers {
    Vec::new()
}

/// No `resolve` servers before nginx 1.27.3.
#[cfg(not(ngx_upstream_resolve))]
pub fn run_time_names(_uscf: &ngx_http_upstream_srv_conf_t) -> Vec<String> {
    Vec::new()
}

/// The `down` flag of the `server` line each address comes from.
pub fn configured_down(uscf: &ngx_http_upstream_srv_conf_t) -> Vec<(SocketAddr, bool)> {
    // SAFETY: `servers` is null or an array of ngx_http_upstream_server_t.
    let Some(servers) = (unsafe { uscf.servers.as_ref() }) else {
        return Vec::new();
    };
    // SAFETY: as above.
    let servers: &[ngx_http_upstream_server_t] = unsafe { servers.as_slice() };
    let mut out = Vec::new();
    for s in servers
        .iter()
        .filter(|s| !s.addrs.is_null() && !resolved_at_run_time(s))
    {
        // SAFETY: addrs holds naddrs addresses.
        let addrs: &[ngx_addr_t] = unsafe { core::slice::from_raw_parts(s.addrs, s.naddrs) };
        out.extend(
            addrs
                .iter()
                .filter_map(|a| socket_addr(a.sockaddr.cast()))
                .map(|a| (a, s.down != 0)),
        );
    }
    out
}

/// The explicit `upstream NAME {}` block of the running cycle.
pub fn find_in_cycle(name: &str) -> Option<*mut ngx_http_upstream_srv_conf_t> {
    // SAFETY: ngx_cycle is this process's current cycle.
    let cycle = unsafe { &*nginx_sys::ngx_cycle };
    let umcf = NgxHttpUpstreamModule::main_conf(cycle)?;
    // SAFETY: `upstreams` is an array of pointers to upstream server configurations.
    let blocks: &[*mut ngx_http_upstream_srv_conf_t] = unsafe { umcf.upstreams.as_slice() };
    blocks.iter().copied().find(|u| {
        // SAFETY: each element points at a live upstream configuration.
        unsafe { u.as_ref() }.is_some_and(|u| {
            u.flags & nginx_sys::NGX_HTTP_UPSTREAM_CREATE as nginx_sys::ngx_uint_t != 0
                && u.host.to_string() == name
        })
    })
}

/// A Rust socket address from nginx's (IPv4 and IPv6; UNIX sockets are not probed).
pub fn socket_addr(sa: *const libc::sockaddr) -> Option<SocketAddr> {
    // SAFETY: sa is null or points at a socket address of its family.
    unsafe {
        let sa_ref = sa.as_ref()?;
        match sa_ref.sa_family as i32 {
            libc::AF_INET => {
                let sin = &*sa.cast::<libc::sockaddr_in>();
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
            }
            libc::AF_INET6 => {
                let sin6 = &*sa.cast::<libc::sockaddr_in6>();
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                Some(SocketAddr::new(
                    IpAddr::V6(ip),
                    u16::from_be(sin6.sin6_port),
                ))
            }
            _ => None,
        }
    }
}
