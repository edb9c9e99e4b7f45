//! `body_regex=` of `status_alert_probe` (FFI): the pattern compiled once, at configuration
//! time, by nginx's own PCRE (`ngx_regex_compile`, as `location ~` and `if` use it), so that a
//! bad pattern fails `nginx -t` with PCRE's own words and a probe only runs the compiled code.
//! The match itself is `probe::net` (`ngx_regex_exec` on the body read).

use core::ffi::c_void;

use nginx_sys::ngx_conf_t;

/// Compiles `pattern` in the configuration's pool; returns the `ngx_regex_t` (valid for the
/// cycle's life), or PCRE's error message.
#[cfg(ngx_feature = "pcre")]
pub fn compile(cf: &mut ngx_conf_t, pattern: &str) -> Result<*const c_void, String> {
    use nginx_sys::{ngx_pnalloc, ngx_regex_compile, ngx_regex_compile_t, ngx_str_t, NGX_OK};

    let mut err = [0u8; nginx_sys::NGX_MAX_CONF_ERRSTR as usize];
    // SAFETY: cf.pool is the configuration's live pool; the copy is as long as the pattern.
    let data = unsafe { ngx_pnalloc(cf.pool, pattern.len()) }.cast::<u8>();
    if data.is_null() {
        return Err("out of memory".to_string());
    }
    // SAFETY: data has room for pattern.len() bytes and does not overlap the pattern.
    unsafe { core::ptr::copy_nonoverlapping(pattern.as_ptr(), data, pattern.len()) };
    // SAFETY: all-zero is an empty compile request; the fields nginx reads are set below.
    let mut rc: ngx_regex_compile_t = unsafe { core::mem::zeroed() };
    rc.pattern = ngx_str_t {
        len: pattern.len(),
        data,
    };
    rc.pool = cf.pool;
    rc.err = ngx_str_t {
        len: err.len(),
        data: err.as_mut_ptr(),
    };
    // SAFETY: rc is fully set up: pattern and pool live for the cycle, err is our buffer.
    if unsafe { ngx_regex_compile(&mut rc) } != NGX_OK as nginx_sys::ngx_int_t {
        let n = rc.err.len.min(err.len());
        return Err(String::from_utf8_lossy(&err[..n]).into_owned());
    }
    Ok(rc.regex.cast_const().cast())
}

/// Without PCRE in nginx there is nothing to compile with.
#[cfg(not(ngx_feature = "pcre"))]
pub fn compile(_cf: &mut ngx_conf_t, _pattern: &str) -> Result<*const c_void, String> {
    Err("body_regex= needs nginx built with PCRE".to_string())
}
