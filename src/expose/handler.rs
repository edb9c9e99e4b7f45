//! FFI of the `status_metrics` endpoint: its directive (beside the handler it installs, as in
//! nginx's stub_status) and the content handler.

use core::ffi::{c_char, c_void};

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_command_t, ngx_conf_t, ngx_http_request_t, ngx_int_t, ngx_str_t,
    ngx_table_elt_t, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_NOT_ALLOWED, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

use super::collect;
use super::encoding::{accepts_gzip, gzip};
use super::html::{render_html, HtmlOptions};
use super::metrics;
use super::negotiate::{choose_format, parse_refresh, Format};
use super::page_filter::parse_page_filter;
use crate::conf::directives::handle;
use crate::conf::ConfError;
use crate::conf::LocConf;
use crate::HttpStatusAlertModule as Module;

/// What `status_metrics` takes as its one argument.
const CONTROL_VALUES: &str = "\"control=on\" or \"control=off\"";

/// `status_metrics [control=on|off]`: serve the metrics from this location (and, with
/// `control=on`, take mutes).
pub extern "C" fn set_metrics(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    handle(cf, conf, |cf, lcf: &mut LocConf| {
        if lcf.metrics {
            return Err(ConfError::Duplicate);
        }
        // SAFETY: cf.args holds the directive and its arguments.
        let args: &[ngx_str_t] = unsafe { (*cf.args).as_slice() };
        if let Some(arg) = args.get(1) {
            lcf.metrics_control = match arg.as_bytes() {
                b"control=on" => true,
                b"control=off" => false,
                _ => {
                    let message = format!("invalid parameter \"{arg}\", expected {CONTROL_VALUES}");
                    return Err(ConfError::Invalid {
                        directive: "status_metrics",
                        message,
                    });
                }
            };
        }
        lcf.metrics = true;
        let clcf = NgxHttpCoreModule::location_conf_mut(cf).expect("http core loc conf");
        clcf.handler = Some(metrics_handler);
        Ok(())
    })
}

/// The value of query argument `name`, if present.
pub(super) fn arg(r: &mut ngx_http_request_t, name: &str) -> Option<String> {
    let mut value = ngx_str_t::empty();
    let mut key = name.as_bytes().to_vec();
    // SAFETY: valid request; ngx_http_arg only reads the args and writes `value`.
    let found = unsafe { nginx_sys::ngx_http_arg(r, key.as_mut_ptr(), key.len(), &mut value) };
    (found == NGX_OK as ngx_int_t).then(|| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// The request header `name` (lower case), if any.
fn header_in(r: &ngx_http_request_t, name: &str) -> Option<String> {
    // SAFETY: the request's header list is valid for the request's lifetime.
    let headers = unsafe { ngx::http::list_iterator(&r.headers_in.headers) };
    for (key, value) in headers {
        if key.as_bytes().eq_ignore_ascii_case(name.as_bytes()) {
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
pub(super) fn add_header(r: &mut ngx_http_request_t, key: &str, value: &str) {
    // SAFETY: `Request` is a transparent wrapper of a valid ngx_http_request_t.
    let request = unsafe { ngx::http::Request::from_ngx_http_request(r) };
    let _ = request.add_header_out(key, value);
}

fn serve_metrics(r: &mut ngx_http_request_t) -> Result<ngx_int_t, ngx_int_t> {
    // Only a query naming mute or unmute is a control request; everything else is served as
    // before.
    let query = String::from_utf8_lossy(r.args.as_bytes()).into_owned();
    if super::mute_control::is_control_request(&query) {
        return super::mute_handler::serve_control(r, &query);
    }
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
    let mut m = collect(mcf, now_ms);
    let records = crate::conf::mute_lock::copy_mutes(mcf);
    let mutes = crate::evaluate::muted::Mutes {
        maintenance: &mcf.maintenance,
        records: &records,
        local_offset_secs: crate::conf::mute_lock::local_offset_secs(),
    };
    super::mute_view::collect_mutes(&mut m, mcf, &mutes, now_ms);
    let format = choose_format(
        arg(r, "format").as_deref(),
        header_in(r, "accept").as_deref(),
    );
    let body = match format {
        Format::Json => {
            let mut buf = Vec::new();
            metrics::write_json(&m, &mut buf);
            buf
        }
        Format::Html => {
            // Only the page filters; a bad filter is the client's mistake, said in one line.
            let filter = match parse_page_filter(&query) {
                Ok(f) => f,
                Err(e) => {
                    return respond(r, 400, "text/plain; charset=utf-8", &format!("{e}\n"));
                }
            };
            let opts = HtmlOptions {
                filter,
                refresh: parse_refresh(arg(r, "refresh").as_deref()),
                // SAFETY: ngx_cycle is this process's current cycle.
                host: unsafe { (*nginx_sys::ngx_cycle).hostname.to_string() },
                now_unix: now_ms / 1000,
            };
            render_html(&m, &opts).into_bytes()
        }
        Format::Prometheus => {
            let mut s = String::with_capacity(256 + m.names.len() * 2048);
            metrics::render_prometheus(&m, &mut s)
                .map_err(|_| NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t)?;
            s.into_bytes()
        }
    };
    drop(m);
    // gzip when the client takes it; a body that cannot be compressed goes out plain.
    let packed = accepts_gzip(header_in(r, "accept-encoding").as_deref())
        .then(|| gzip(&body))
        .flatten();
    match packed {
        Some(packed) if set_content_encoding_gzip(r) => {
            send(r, 200, format.content_type(), &packed, Coding::Negotiated)
        }
        _ => send(r, 200, format.content_type(), &body, Coding::Negotiated),
    }
}

/// Whether a response's coding depends on the request's `Accept-Encoding`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Coding {
    /// Always plain (short answers, errors).
    Fixed,
    /// gzip when the client takes it: the response says `Vary: Accept-Encoding`.
    Negotiated,
}

/// Marks the response as gzip-coded: `Content-Encoding: gzip`, set as nginx's own
/// `headers_out.content_encoding` too, which is how nginx's gzip filter (when the operator
/// turned it on here) knows the body is coded already and leaves it alone. False when the
/// header cannot be added (then the body goes out plain).
fn set_content_encoding_gzip(r: &mut ngx_http_request_t) -> bool {
    const KEY: &str = "Content-Encoding";
    const VALUE: &str = "gzip";
    // SAFETY: the list belongs to the request; ngx_list_push returns an element allocated
    // from the request pool, or null.
    let h: *mut ngx_table_elt_t =
        unsafe { nginx_sys::ngx_list_push(&mut r.headers_out.headers) }.cast();
    if h.is_null() {
        return false;
    }
    // SAFETY: `h` is a new element of the list, ours alone. Zeroed first, so that fields some
    // nginx versions have beyond these (`next`, `lowcase_key`) are null; the key and value
    // point to static strings, which nginx only reads.
    unsafe {
        core::ptr::write_bytes(h, 0, 1);
        (*h).hash = 1;
        (*h).key = ngx_str_t {
            len: KEY.len(),
            data: KEY.as_ptr().cast_mut(),
        };
        (*h).value = ngx_str_t {
            len: VALUE.len(),
            data: VALUE.as_ptr().cast_mut(),
        };
    }
    r.headers_out.content_encoding = h;
    true
}

/// Sends `body` with `status` and `content_type` (a static string).
pub(super) fn respond(
    r: &mut ngx_http_request_t,
    status: usize,
    content_type: &'static str,
    body: &str,
) -> Result<ngx_int_t, ngx_int_t> {
    send(r, status, content_type, body.as_bytes(), Coding::Fixed)
}

/// Sends `body` (already coded as the headers say) with `status` and `content_type`.
fn send(
    r: &mut ngx_http_request_t,
    status: usize,
    content_type: &'static str,
    body: &[u8],
    coding: Coding,
) -> Result<ngx_int_t, ngx_int_t> {
    let content_type = ngx_str_t {
        len: content_type.len(),
        data: content_type.as_ptr().cast_mut(),
    };

    r.headers_out.status = status;
    r.headers_out.content_length_n = body.len() as i64;
    r.headers_out.content_type_len = content_type.len;
    r.headers_out.content_type = content_type;
    add_header(r, "Cache-Control", "no-store");
    // The answer depends on Accept: caches must not hand a browser's HTML to Prometheus.
    add_header(r, "Vary", "Accept");
    if coding == Coding::Negotiated {
        // And on Accept-Encoding, coded or not: a cache must not hand gzip to a client
        // that did not ask for it, nor plain text to one that did.
        add_header(r, "Vary", "Accept-Encoding");
    }

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
