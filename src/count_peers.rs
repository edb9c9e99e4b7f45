//! The request path's per-peer counting (FFI): every upstream try of a NAME's request, in the
//! cells of the peer it went to (`conf/peers.rs` finds them, `zone/peers.rs` classes a try).
//!
//! Called from the log phase only for requests that have an upstream, out of line, so that a
//! request that was not proxied pays one test of `r->upstream` and nothing else. The common
//! case (the NAME's own upstream, a peer named as configured) is a few loads and compares and
//! one relaxed add per try; everything else is in cold functions.

use nginx_sys::{
    ngx_http_request_t, ngx_http_upstream_state_t, ngx_int_t, ngx_msec_t, NGX_DECLINED,
};

use crate::conf::peers::PeerGroup;
use crate::conf::{MainConf, NameConf};
use crate::zone::peers::try_class;

/// Counts every try in `r->upstream_states` in its peer's cells: relaxed adds, no allocation,
/// no lock. Returns what the log handler returns (`NGX_DECLINED`), so that it is the log
/// handler's tail call and neither function needs a stack frame (see [`declined`]).
///
/// # Safety
/// `r` is a main request in its log phase whose `upstream` is not null, of the cycle `nc` and
/// `mcf` belong to.
#[inline(never)]
pub unsafe fn count_tries(r: &ngx_http_request_t, nc: &NameConf, mcf: &MainConf) -> ngx_int_t {
    // SAFETY: nginx keeps the request's states array (null before any try) and its upstream
    // until the request is freed, after the log phase.
    let Some(states) = (unsafe { r.upstream_states.as_ref() }) else {
        return declined();
    };
    // SAFETY: as above.
    let upstream = unsafe { (*r.upstream).upstream }.cast_const().cast();
    let tries = states.elts as *const ngx_http_upstream_state_t;
    let n = states.nelts;
    // SAFETY: groups are boxed in the MainConf of this cycle and live as long.
    let Some(group) = nc
        .peers
        .map(|g| unsafe { g.as_ref() })
        .filter(|g| g.identity == upstream)
    else {
        // SAFETY: the array holds `n` states, one per try.
        return unsafe { count_in_other_group(mcf, upstream, tries, n) };
    };
    // SAFETY: one past the last state.
    let end = unsafe { tries.add(n) };
    let mut at = tries;
    while at != end {
        // SAFETY: `at` is one of the `n` states.
        let t = unsafe { &*at };
        // SAFETY: one past `at` is at most `end`.
        at = unsafe { at.add(1) };
        // SAFETY: null, or the name of the peer tried, alive as long as the request.
        let Some(peer) = (unsafe { t.peer.as_ref() }) else {
            continue;
        };
        // A try that got no header keeps the header time nginx starts it with: -1.
        let Some(class) = try_class(t.status, t.header_time != ngx_msec_t::MAX) else {
            continue;
        };
        match group.find_by_address(peer.data) {
            Some(cells) => cells.record(class),
            None => {
                // SAFETY: `t` and `end` are within (or one past) the same array.
                let left = unsafe { end.offset_from(t) } as usize;
                // SAFETY: `t` and the `left - 1` tries after it are states of the request.
                return unsafe { count_by_name(group, t, left) };
            }
        }
    }
    declined()
}

/// `NGX_DECLINED`, made where the compiler cannot see it. A constant result would be folded
/// into the log handler, which would then call [`count_tries`] and return by itself, with a
/// stack frame that costs every request, proxied or not, 5 instructions; `black_box` would
/// cost 4 here, as it goes through the stack.
#[inline(always)]
fn declined() -> ngx_int_t {
    #[cfg(target_arch = "x86_64")]
    {
        const _: () = assert!(NGX_DECLINED as i64 == -5);
        let v: ngx_int_t;
        // SAFETY: moves a constant into a register; no memory, stack or flags are touched.
        unsafe {
            core::arch::asm!(
                "mov {0}, -5",
                out(reg) v,
                options(pure, nomem, nostack, preserves_flags)
            )
        };
        v
    }
    #[cfg(not(target_arch = "x86_64"))]
    core::hint::black_box(NGX_DECLINED as ngx_int_t)
}

/// The tries of a request that went to another upstream than its NAME's (a `proxy_pass` with
/// variables, a NAME whose locations pass to several): in that upstream's group, else in the
/// catch-all. Returns `NGX_DECLINED`, to be a tail call.
///
/// # Safety
/// `tries` holds `n` states of a request in its log phase.
#[cold]
#[inline(never)]
unsafe fn count_in_other_group(
    mcf: &MainConf,
    upstream: *const core::ffi::c_void,
    tries: *const ngx_http_upstream_state_t,
    n: usize,
) -> ngx_int_t {
    match mcf.peer_group_of(upstream) {
        // SAFETY: as promised by the caller.
        Some(group) => unsafe { count_by_name(group, tries, n) },
        None => declined(),
    }
}

/// Counts `n` tries (returning `NGX_DECLINED`, to be a tail call), each peer found by its address or its bytes (an upstream with a zone, a
/// re-resolved peer, no live peer), else in `other`.
///
/// # Safety
/// `tries` holds `n` states of a request in its log phase.
#[cold]
#[inline(never)]
unsafe fn count_by_name(
    group: &PeerGroup,
    tries: *const ngx_http_upstream_state_t,
    n: usize,
) -> ngx_int_t {
    for i in 0..n {
        // SAFETY: as promised by the caller.
        let t = unsafe { &*tries.add(i) };
        // SAFETY: null, or the name of the peer tried, alive as long as the request.
        let Some(peer) = (unsafe { t.peer.as_ref() }) else {
            continue;
        };
        let Some(class) = try_class(t.status, t.header_time != ngx_msec_t::MAX) else {
            continue;
        };
        let cells = group.find_by_address(peer.data).unwrap_or_else(|| {
            // SAFETY: `len` bytes at `data`, which is not null (a null one is found above).
            group.find_by_name(unsafe { core::slice::from_raw_parts(peer.data, peer.len) })
        });
        cells.record(class);
    }
    declined()
}
