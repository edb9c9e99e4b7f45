//! `status_alert_probe upstream=NAME`: finds `upstream NAME { ... }` in the configuration and
//! turns the directive into one probe per address of each of its `server`s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use nginx_sys::{ngx_addr_t, ngx_conf_t, ngx_http_upstream_server_t, ngx_http_upstream_srv_conf_t};
use ngx::http::{HttpModuleMainConf, NgxHttpUpstreamModule};

use crate::conf::upstream_peers::resolved_at_run_time;
use crate::conf::{ConfError, MainConf, ProbeConf};

/// Replaces every `upstream=` probe of `mcf` by the probes of its peers. Called once the
/// `http` block is read, when every `upstream` block is known.
pub fn expand(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), ConfError> {
    let upstreams = upstream_blocks(cf);
    let mut out: Vec<ProbeConf> = Vec::with_capacity(mcf.probes.len());
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
        if addrs.is_empty() {
            let why = if later.is_empty() {
                String::new()
            } else {
                " (servers with \"resolve\" are not probed)".to_string()
            };
            return Err(err(format!(
                "upstream \"{}\" has no server with a fixed address{why}",
                up.name
            )));
        }
        if !later.is_empty() {
            warn!(
                cf.log,
                "status_alert_probe: upstream \"{}\": servers with \"resolve\" are not probed: \
                 {} in {}",
                up.name,
                later.join(", "),
                probe.place
            );
        }
        for addr in addrs {
            let spec = probe.spec.for_peer(addr);
            let shown = spec.target.display();
            if out
                .iter()
                .any(|o| o.spec.name == spec.name && o.spec.target.display() == shown)
            {
                // The same address twice in one upstream (or in two probes): probe it once.
                continue;
            }
            out.push(ProbeConf {
                spec,
                place: probe.place.clone(),
                slot: core::ptr::null(),
                addrs: vec![addr],
                core_loc_conf: core::ptr::null(),
                resolver: None,
                body_regex: probe.body_regex,
                loc_conf: probe.loc_conf,
                certificates: probe.certificates,
            });
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
/// whose addresses nginx re-resolves at run time (`resolve`) have none at this point and are
/// not probed.
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

/// The `server ... resolve` names of an upstream, as written.
#[cfg(ngx_upstream_resolve)]
pub fn run_time_names(uscf: &ngx_http_upstream_srv_conf_t) -> Vec<String> {
    // SAFETY: `servers` is null or an array of ngx_http_upstream_server_t.
    let Some(servers) = (unsafe { uscf.servers.as_ref() }) else {
        return Vec::new();
    };
    // SAFETY: as above.
    let servers: &[ngx_http_upstream_server_t] = unsafe { servers.as_slice() };
    servers
        .iter()
        .filter(|s| resolved_at_run_time(s))
        .map(|s| s.name.to_string())
        .collect()
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
