//! A probe target's host name looked up with nginx's `resolver` before every probe, on this
//! event loop and inside the probe's deadline; a failed lookup fails the probe as `dns`.

use core::cell::Cell;
use core::ffi::c_int;
use core::ptr;
use std::net::{IpAddr, SocketAddr};

use nginx_sys::{ngx_int_t, ngx_resolver_ctx_t, ngx_str_t, NGX_OK};

use super::{with_target, Step, Target, RESOLVED_NOW, RESOLVING};
use crate::conf::ProbeResolver;
use crate::vocab::reason::Reason;

/// `ngx_resolve_start`'s answer when the resolver has no server (`NGX_NO_RESOLVER`).
const NGX_NO_RESOLVER: *mut ngx_resolver_ctx_t = usize::MAX as *mut ngx_resolver_ctx_t;

/// What a lookup found: the addresses (port 0), or nothing (any `NGX_RESOLVE_*` error).
pub(super) type Lookup = Vec<IpAddr>;

impl Target {
    /// Looks the host name up with nginx's resolver; [`Target::resolved`] goes on from there.
    pub(super) fn resolve(&mut self, r: ProbeResolver) {
        self.step = Step::Resolving;
        // SAFETY: the resolver of this cycle's configuration; no temp context (the host is
        // not an IP address: those never get a resolver).
        let ctx = unsafe { nginx_sys::ngx_resolve_start(r.resolver, ptr::null_mut()) };
        if ctx.is_null() || ctx == NGX_NO_RESOLVER {
            self.finish(Some(Reason::Dns));
            return;
        }
        let me: *mut Target = self;
        // SAFETY: a fresh context from ngx_resolve_start. The name points into this boxed
        // target, which outlives the context: every way out ends it (`resolved`, `end`).
        unsafe {
            (*ctx).name = ngx_str_t {
                len: self.host.len(),
                data: self.host.as_mut_ptr(),
            };
            (*ctx).handler = Some(on_resolved);
            (*ctx).data = me.cast();
            (*ctx).timeout = r.timeout_ms;
            // A lookup in flight never holds up a graceful shutdown.
            (*ctx).set_cancelable(1);
        }
        self.rctx = ctx;
        RESOLVING.with(|c| c.set(me));
        // SAFETY: the context is set up as nginx's own callers do. On an error nginx frees
        // the context; otherwise on_resolved runs (maybe before this returns) and ends it.
        let rc = unsafe { nginx_sys::ngx_resolve_name(ctx) };
        RESOLVING.with(|c| c.set(ptr::null()));
        let now = RESOLVED_NOW.with(Cell::take);
        if rc != NGX_OK as ngx_int_t {
            self.rctx = ptr::null_mut();
            self.finish(Some(Reason::Dns));
            return;
        }
        if let Some(found) = now {
            // Answered from the cache, on this stack: the context is already ended.
            self.rctx = ptr::null_mut();
            self.resolved(found);
        }
        // Otherwise nginx calls on_resolved when the answer comes or resolver_timeout passes.
    }

    /// The lookup ended (its context is already done): connect, or fail as `dns`.
    fn resolved(&mut self, found: Lookup) {
        if self.step != Step::Resolving {
            return;
        }
        if found.is_empty() {
            self.finish(Some(Reason::Dns));
            return;
        }
        let port = self.spec.target.port;
        self.addrs = found
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect();
        self.addr_i = 0;
        self.connect();
    }

    /// Ends the lookup in flight, if any: nginx forgets the context and never calls back.
    pub(super) fn cancel_lookup(&mut self) {
        let ctx = core::mem::replace(&mut self.rctx, ptr::null_mut());
        if !ctx.is_null() {
            // SAFETY: a context of ours that nginx has not ended yet (its handler clears
            // `rctx` first); this removes it from the waiting list and frees it.
            unsafe { nginx_sys::ngx_resolve_name_done(ctx) };
        }
    }
}

/// nginx's resolver handler: the lookup of a target's host name ended (answer, error or
/// `resolver_timeout`). Called from the event loop, or from inside `ngx_resolve_name` when the
/// answer is cached (then the target is told through `RESOLVED_NOW`).
extern "C" fn on_resolved(ctx: *mut ngx_resolver_ctx_t) {
    // SAFETY: nginx passes one of our contexts, not yet ended; its addresses are valid until
    // this returns, so they are copied before the context is ended.
    let (t, found) = unsafe {
        let ctx = &*ctx;
        let found = if ctx.state == NGX_OK as ngx_int_t && !ctx.addrs.is_null() {
            core::slice::from_raw_parts(ctx.addrs, ctx.naddrs)
                .iter()
                .filter_map(|a| ip_of(a.sockaddr))
                .collect()
        } else {
            Vec::new()
        };
        (ctx.data.cast::<Target>(), found)
    };
    // SAFETY: as above; nginx does not use the context after its handler ends it.
    unsafe { nginx_sys::ngx_resolve_name_done(ctx) };
    if RESOLVING.with(Cell::get) == t.cast_const() {
        RESOLVED_NOW.with(|c| c.set(Some(found)));
        return;
    }
    with_target(t, |t| {
        if t.rctx != ctx {
            return;
        }
        t.rctx = ptr::null_mut();
        t.resolved(found);
    });
}

/// The IP address of a socket address nginx's resolver returned.
///
/// # Safety
/// `sa` is null or points at a `sockaddr_in` or `sockaddr_in6` per its family.
unsafe fn ip_of(sa: *const nginx_sys::sockaddr) -> Option<IpAddr> {
    // SAFETY: per the contract.
    let family = c_int::from(unsafe { sa.as_ref() }?.sa_family);
    match family {
        libc::AF_INET => {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin = unsafe { &*sa.cast::<libc::sockaddr_in>() };
            Some(IpAddr::from(
                u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
            ))
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 address is a sockaddr_in6.
            let sin6 = unsafe { &*sa.cast::<libc::sockaddr_in6>() };
            Some(IpAddr::from(sin6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}
