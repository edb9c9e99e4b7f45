//! Request-time FFI: the log-phase counter and the `status_metrics` content handler.

use core::sync::atomic::Ordering::Relaxed;

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_http_request_t, ngx_int_t, ngx_str_t, ngx_variable_value_t,
    NGX_DECLINED, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_NOT_ALLOWED, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};
use ngx::ngx_string;

use crate::conf::{AlertSetting, MainConf, NameConf};
use crate::event::Level;
use crate::html::{render_html, HtmlOptions};
use crate::metrics::{
    self, LocationDetail, LocationHealth, LocationMetrics, Metrics, ProbeDetail, ProbeDown,
    ProbeMetrics,
};
use crate::negotiate::{choose_format, parse_refresh, Format};
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

/// Log phase: counts the finished request under its NAME. Always declines; never fails or
/// delays the request. Request path: a few pointer loads, then three relaxed adds.
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
    // SAFETY: NameConfs live as long as the cycle; slot is null or points into the zone.
    let Some(slot) = nc.and_then(|nc| unsafe { (*nc).slot.as_ref() }) else {
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
    let elapsed_ms =
        ((now.sec - r.start_sec) * 1000 + (now.msec as i64 - r.start_msec as i64)).max(0) as u64;
    slot.counters
        .record_in(status, elapsed_ms, mcf.bucket_ms.as_slice());
    NGX_DECLINED as ngx_int_t
}

/// Copies the zone's values for every configured NAME and probe at `now_ms`.
pub fn collect(mcf: &MainConf, now_ms: u64) -> Metrics {
    let mut m = Metrics {
        bucket_bounds: mcf.bucket_bounds(),
        peers_down: crate::mark_down::kept_out(mcf),
        ..Metrics::default()
    };
    for n in &mcf.names {
        // SAFETY: slots point into the mapped zone once it is initialised.
        let Some(slot) = (unsafe { n.slot.as_ref() }) else {
            continue;
        };
        let p = &n.params;
        let since = slot.alert.incident_since_ms.load(Relaxed);
        let level = Level::from_u8(slot.alert.level.load(Relaxed) as u8);
        m.location_details.insert(
            n.name.clone(),
            LocationDetail {
                error_share_history: slot.window.share_history(now_ms, p.window_ms),
                level_since_unix: (level != Level::Ok && since != 0).then_some(since / 1000),
                window_secs: Some(p.window_ms / 1000),
                warn_pct: p.warn_pct,
                crit_pct: Some(p.crit_pct),
                link: p.link.clone(),
                runbook: p.runbook.clone(),
                ..LocationDetail::default()
            },
        );
        m.health.push(LocationHealth {
            name: n.name.clone(),
            latency: p
                .latency
                .as_ref()
                .map(|l| (l.quantile_label(), slot.latency.estimate_seconds())),
            slo: p.slo_pct.map(|pct| {
                let labels = crate::slo::burn_windows_ms(p.window_ms).map(crate::slo::window_label);
                (pct, labels.into_iter().zip(slot.slo.rates()).collect())
            }),
            incidents: slot.incident_summary(now_ms),
        });
        m.locations.push(LocationMetrics {
            name: n.name.clone(),
            counters: slot.counters.snapshot(),
            window_requests: slot.alert.window().0,
            window_errors: slot.alert.window().1,
            level: Level::from_u8(slot.alert.level.load(Relaxed) as u8),
        });
    }
    for p in &mcf.probes {
        // SAFETY: as above.
        let Some(slot) = (unsafe { p.slot.as_ref() }) else {
            continue;
        };
        let s = &slot.probe;
        let mut failures = [0u64; 6];
        for (d, f) in failures.iter_mut().zip(s.failures.iter()) {
            *d = f.load(Relaxed);
        }
        let since = s.since_ms.load(Relaxed);
        let status = s.last_status.load(Relaxed) as u16;
        let status = (status != 0).then_some(status);
        let reason = s
            .last_reason
            .load(Relaxed)
            .checked_sub(1)
            .and_then(crate::probe::Reason::from_index);
        m.probe_details.insert(
            (p.spec.name.clone(), p.spec.target.display()),
            ProbeDetail {
                since_unix: (since != 0).then_some(since / 1000),
                last_reason: reason.map(|r| r.words(status)),
                // The page shows it as part of the last failure: only an unexpected status.
                last_status: status.filter(|_| reason == Some(crate::probe::Reason::Status)),
            },
        );
        m.probe_down.push(ProbeDown {
            name: p.spec.name.clone(),
            target: p.spec.target.display(),
            seconds: s.down_seconds(now_ms),
        });
        m.probes.push(ProbeMetrics {
            name: p.spec.name.clone(),
            target: p.spec.target.display(),
            up: crate::probe::is_up(s),
            duration_seconds: s.last_duration_us.load(Relaxed) as f64 / 1e6,
            failures,
        });
    }
    if let Some(zone) = &mcf.zone {
        let h = zone.header();
        for (d, n) in m.notifications.iter_mut().zip(h.notifications.iter()) {
            *d = n.load(Relaxed);
        }
        for (i, (d, counts)) in mcf
            .destinations
            .iter()
            .zip(&h.destination_notifications)
            .enumerate()
        {
            m.destinations
                .push((d.label(i), counts.each_ref().map(|c| c.load(Relaxed))));
        }
        m.queue_depth = h.queue_depth.load(Relaxed);
    }
    m
}

/// The value of query argument `name`, if present.
fn arg(r: &mut ngx_http_request_t, name: &str) -> Option<String> {
    let mut value = ngx_str_t::empty();
    let mut key = name.as_bytes().to_vec();
    // SAFETY: valid request; ngx_http_arg only reads the args and writes `value`.
    let found = unsafe { nginx_sys::ngx_http_arg(r, key.as_mut_ptr(), key.len(), &mut value) };
    (found == NGX_OK as ngx_int_t).then(|| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// The request's `Accept` header, if any.
fn accept(r: &ngx_http_request_t) -> Option<String> {
    // SAFETY: the request's header list is valid for the request's lifetime.
    let headers = unsafe { ngx::http::list_iterator(&r.headers_in.headers) };
    for (key, value) in headers {
        if key.as_bytes().eq_ignore_ascii_case(b"accept") {
            return Some(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
    }
    None
}

/// `status_metrics` content handler: Prometheus text by default, JSON on request.
pub unsafe extern "C" fn metrics_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx passes a valid request to content handlers.
    let r = unsafe { &mut *r };
    match serve_metrics(r) {
        Ok(rc) | Err(rc) => rc,
    }
}

/// Adds a response header; on allocation failure the header is simply missing.
fn add_header(r: &mut ngx_http_request_t, key: &str, value: &str) {
    // SAFETY: `Request` is a transparent wrapper of a valid ngx_http_request_t.
    let request = unsafe { ngx::http::Request::from_ngx_http_request(r) };
    let _ = request.add_header_out(key, value);
}

fn serve_metrics(r: &mut ngx_http_request_t) -> Result<ngx_int_t, ngx_int_t> {
    if r.method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize == 0 {
        add_header(r, "Allow", "GET, HEAD");
        return Err(NGX_HTTP_NOT_ALLOWED as ngx_int_t);
    }
    // SAFETY: valid request.
    let rc = unsafe { nginx_sys::ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return Err(rc);
    }

    let mcf = Module::main_conf(r).ok_or(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t)?;
    let now = nginx_sys::ngx_timeofday();
    let now_ms = now.sec as u64 * 1000 + now.msec as u64;
    let m = collect(mcf, now_ms);
    let format = choose_format(arg(r, "format").as_deref(), accept(r).as_deref());
    let body = match format {
        Format::Json => metrics::render_json(&m),
        Format::Html => {
            let opts = HtmlOptions {
                refresh: parse_refresh(arg(r, "refresh").as_deref()),
                // SAFETY: ngx_cycle is this process's current cycle.
                host: unsafe { (*nginx_sys::ngx_cycle).hostname.to_string() },
                now_unix: now_ms / 1000,
            };
            render_html(&m, &opts)
        }
        Format::Prometheus => {
            let mut s = String::with_capacity(256 + m.locations.len() * 2048);
            metrics::render_prometheus(&m, &mut s)
                .map_err(|_| NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t)?;
            s
        }
    };
    let content_type = format.content_type();
    let content_type = ngx_str_t {
        len: content_type.len(),
        data: content_type.as_ptr().cast_mut(),
    };

    r.headers_out.status = 200;
    r.headers_out.content_length_n = body.len() as i64;
    r.headers_out.content_type_len = content_type.len;
    r.headers_out.content_type = content_type;
    add_header(r, "Cache-Control", "no-store");
    // The answer depends on Accept: caches must not hand a browser's HTML to Prometheus.
    add_header(r, "Vary", "Accept");

    // SAFETY: valid request.
    let rc = unsafe { nginx_sys::ngx_http_send_header(r) };
    if rc == nginx_sys::NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
        return Ok(rc);
    }

    // SAFETY: the buffer and chain link come from the request pool and live as long as it.
    unsafe {
        let b: *mut ngx_buf_t = nginx_sys::ngx_create_temp_buf(r.pool, body.len().max(1));
        if b.is_null() {
            return Err(NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t);
        }
        core::ptr::copy_nonoverlapping(body.as_ptr(), (*b).last, body.len());
        (*b).last = (*b).last.add(body.len());
        (*b).set_last_buf(core::ptr::eq(r.main, r) as u32);
        (*b).set_last_in_chain(1);
        let mut out = ngx_chain_t {
            buf: b,
            next: core::ptr::null_mut(),
        };
        Ok(nginx_sys::ngx_http_output_filter(r, &mut out))
    }
}
