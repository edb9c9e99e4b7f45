//! Configuration time: the probes' targets, with their addresses or the `resolver` that looks
//! them up before every probe.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use nginx_sys::ngx_http_core_loc_conf_t;

use crate::conf::{ConfError, MainConf, ProbeResolver};

/// Configuration time: expands `upstream=` probes into one target per address, then gives
/// every URL probe with a host name the `resolver` of its level (looked up before every
/// probe) or, without one, resolves the name once. A host that does not resolve is not an
/// error (a probe exists to notice what is broken): it is logged, and each interval fails as
/// `dns` until a reload.
pub fn prepare(cf: &mut nginx_sys::ngx_conf_t, mcf: &mut MainConf) -> Result<(), ConfError> {
    if mcf.probes.iter().any(|p| p.spec.upstream.is_some()) {
        crate::probe::upstream::expand(cf, mcf)?;
    }
    for p in &mut mcf.probes {
        // A `server ... resolve` slot gets its address at run time (`probe::resolve_pool`).
        if !p.addrs.is_empty() || p.resolve.is_some() {
            continue;
        }
        let t = &p.spec.target;
        if let Ok(ip) = t.host.parse::<IpAddr>() {
            p.addrs = vec![SocketAddr::new(ip, t.port)];
            continue;
        }
        // SAFETY: null, or the core configuration of the directive's level, merged by now
        // (postconfiguration runs after the http block is merged) and alive with this cycle.
        if let Some(r) = unsafe { configured_resolver(p.core_loc_conf.cast()) } {
            p.resolver = Some(r);
            continue;
        }
        p.addrs = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default();
        if p.addrs.is_empty() {
            warn!(
                cf.log,
                "status_alert_probe: host not found in \"{}\" in {}, probes fail as \"dns\" \
                 until the configuration is reloaded",
                t.display(),
                p.place
            );
        }
    }
    Ok(())
}

/// The `resolver` of a merged core location configuration, unless it has none: nginx then
/// holds a resolver without servers (`connections.nelts == 0`, which `ngx_resolve_start`
/// answers with `NGX_NO_RESOLVER` and `proxy_pass` reports as "no resolver defined").
///
/// # Safety
/// `clcf` is null or a valid, merged `ngx_http_core_loc_conf_t`.
unsafe fn configured_resolver(clcf: *const ngx_http_core_loc_conf_t) -> Option<ProbeResolver> {
    // SAFETY: per the contract.
    let clcf = unsafe { clcf.as_ref() }?;
    // SAFETY: null or the resolver nginx created for this configuration.
    let r = unsafe { clcf.resolver.as_ref() }?;
    (r.connections.nelts > 0).then_some(ProbeResolver {
        resolver: clcf.resolver,
        timeout_ms: clcf.resolver_timeout,
    })
}
