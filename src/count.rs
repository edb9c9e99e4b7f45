//! The request path (FFI): binds each request to its NAME, serves `$status_alert_name`, and
//! counts the finished request in the log phase.

use nginx_sys::{
    ngx_http_request_t, ngx_int_t, ngx_str_t, ngx_variable_value_t, NGX_DECLINED, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};
use ngx::ngx_string;

use crate::conf::{AlertSetting, MainConf, NameConf};
use crate::HttpStatusAlertModule as Module;

// `ngx_variable_value_t` packs `len:28, valid:1, no_cacheable:1, not_found:1, escape:1` into one
// 32-bit word (least significant bit first on little-endian targets). bindgen's accessors move
// these bits one at a time, which cost about 600 instructions per request; the request path
// reads and writes the word at once instead.
#[cfg(target_endian = "big")]
compile_error!("the variable bitfield layout below assumes a little-endian target");
const VAR_LEN_MASK: u32 = (1 << 28) - 1;
const VAR_VALID: u32 = 1 << 28;
const VAR_NOT_FOUND: u32 = 1 << 30;

fn var_flags(v: &ngx_variable_value_t) -> u32 {
    // SAFETY: _bitfield_1 is the 4-byte, 4-aligned storage of the value's bitfields.
    unsafe { core::ptr::addr_of!(v._bitfield_1).cast::<u32>().read() }
}

/// The request's bound NAME in its variable array, if any.
///
/// # Safety
/// `r` is a request of a cycle whose MainConf has `name_var_index` set.
unsafe fn bound_name(r: &ngx_http_request_t, mcf: &MainConf) -> Option<*const NameConf> {
    // SAFETY: r.variables has one entry per configured variable; our index is among them.
    let v = unsafe { &*r.variables.add(mcf.name_var_index) };
    let flags = var_flags(v);
    (flags & (VAR_VALID | VAR_NOT_FOUND) == VAR_VALID && !v.data.is_null())
        .then_some(v.data as *const NameConf)
}

/// Binds the request to the NAME of the first location it enters that has one, so internal
/// redirects (error_page, try_files, rewrite ... last) do not move it to another NAME.
pub unsafe extern "C" fn bind_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a valid request to phase handlers.
    let r = unsafe { &mut *r };
    if !core::ptr::eq(r.main, r) {
        return NGX_DECLINED as ngx_int_t;
    }
    let Some(AlertSetting::Name(nc)) = Module::location_conf(r).map(|l| l.alert) else {
        return NGX_DECLINED as ngx_int_t;
    };
    let Some(mcf) = Module::main_conf(r) else {
        return NGX_DECLINED as ngx_int_t;
    };
    // SAFETY: see bound_name; the entry is plain memory owned by the request.
    let v = unsafe { &mut *r.variables.add(mcf.name_var_index) };
    if var_flags(v) & VAR_VALID == 0 {
        // SAFETY: nc points at a live NameConf whose first bytes are the NAME.
        let len = unsafe { &*nc }.name.len();
        set_name_value(v, nc, len);
    }
    NGX_DECLINED as ngx_int_t
}

/// Makes `v` the NAME of `nc`: valid, cacheable, found, in one store.
fn set_name_value(v: &mut ngx_variable_value_t, nc: *const NameConf, len: usize) {
    v.data = nc as *mut u8;
    let word = (len as u32 & VAR_LEN_MASK) | VAR_VALID;
    // SAFETY: as in var_flags.
    unsafe {
        core::ptr::addr_of_mut!(v._bitfield_1)
            .cast::<u32>()
            .write(word)
    };
    debug_assert!(v.valid() == 1 && v.not_found() == 0 && v.len() as usize == len);
}

/// Name of the variable that holds a request's binding (see lib.rs, preconfiguration).
pub const BINDING_VARIABLE: ngx_str_t = ngx_string!("status_alert binding");

/// The binding variable read before the request is bound: not found.
pub unsafe extern "C" fn binding_variable(
    _r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a valid value slot to variable handlers.
    unsafe { (*v).set_not_found(1) };
    NGX_OK as ngx_int_t
}

/// Set handler of both variables: writes from other modules are ignored.
pub unsafe extern "C" fn ignore_variable_write(
    _r: *mut ngx_http_request_t,
    _v: *mut ngx_variable_value_t,
    _data: usize,
) {
}

/// `$status_alert_name`: the request's bound NAME, or before it is bound the NAME of the
/// current location.
pub unsafe extern "C" fn name_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a valid request and value slot to variable handlers.
    let (r, v) = unsafe { (&*r, &mut *v) };
    let bound = Module::main_conf(r)
        .filter(|mcf| !mcf.names.is_empty())
        // SAFETY: the binding index is set whenever there are NAMEs.
        .and_then(|mcf| unsafe { bound_name(r, mcf) });
    let current = || match Module::location_conf(r)?.alert {
        AlertSetting::Name(nc) => Some(nc),
        _ => None,
    };
    match bound.or_else(current) {
        Some(nc) => {
            // SAFETY: nc points at a live NameConf.
            let len = unsafe { &*nc }.name.len();
            set_name_value(v, nc, len);
        }
        None => v.set_not_found(1),
    }
    NGX_OK as ngx_int_t
}

/// Log phase: counts the finished request under its NAME, and a proxied one's tries per peer
/// (`count_peers`). Always declines; never fails or delays the request. Request path: a few
/// pointer loads, then three relaxed adds (and one per try).
pub unsafe extern "C" fn log_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a valid request to phase handlers.
    let r = unsafe { &*r };
    // Subrequests are part of their main request, which is counted once.
    if !core::ptr::eq(r.main, r) {
        return NGX_DECLINED as ngx_int_t;
    }
    let Some(mcf) = Module::main_conf(r) else {
        return NGX_DECLINED as ngx_int_t;
    };
    // The NAME bound when the request entered its first location; requests finalised before
    // any location (e.g. 400 on a bad header) fall back to the current configuration.
    // SAFETY: mcf belongs to this request's cycle.
    let nc = unsafe { bound_name(r, mcf) }.or_else(|| match Module::location_conf(r)?.alert {
        AlertSetting::Name(nc) => Some(nc),
        _ => None,
    });
    // SAFETY: NameConfs live as long as the cycle.
    let Some(nc) = nc.map(|nc| unsafe { &*nc }) else {
        return NGX_DECLINED as ngx_int_t;
    };
    // SAFETY: slot is null or points into the zone.
    let Some(slot) = (unsafe { nc.slot.as_ref() }) else {
        return NGX_DECLINED as ngx_int_t;
    };
    // The status the client got, as $status computes it.
    let status = if r.err_status != 0 {
        r.err_status
    } else {
        r.headers_out.status
    };
    // Request time from nginx's cached clock, like $request_time: no syscall.
    let now = nginx_sys::ngx_timeofday();
    let elapsed_ms = (now.sec - r.start_sec) * 1000 + (now.msec as i64 - r.start_msec as i64);
    if elapsed_ms > 0 {
        slot.counters
            .record_in(status, elapsed_ms as u64, mcf.bucket_ms.as_slice());
    } else {
        // Within the millisecond (or the clock stepped back): the first bucket whatever the
        // bounds, so they are not even read (one branch, where `max(0)` then a test of zero
        // made the compiler compute both ways).
        slot.counters.record_in(status, 0, &[]);
    }
    // Proxied requests only: the tries per peer, out of line, as a tail call (so that this
    // function needs no stack frame for it).
    if !r.upstream.is_null() {
        // SAFETY: a main request in its log phase, with an upstream, of mcf's cycle.
        return unsafe { crate::count_peers::count_tries(r, nc, mcf) };
    }
    NGX_DECLINED as ngx_int_t
}
