//! FFI of the `status_metrics` endpoint: its directive (beside the handler it installs, as in
//! nginx's stub_status) and the content handler.

use core::ffi::{c_char, c_void};

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_command_t, ngx_conf_t, ngx_http_request_t, ngx_int_t, ngx_str_t,
    ngx_table_elt_t, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_NOT_ALLOWED, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

use super::encoding::accepts_gzip;
use super::html::HtmlOptions;
use super::negotiate::{choose_format, parse_refresh, Format};
use super::page_filter::parse_page_filter;
use super::scrape::{Document, Scrape};
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

/// An `ngx_str_t` of a static string, which nginx only reads.
fn static_str(s: &'static str) -> ngx_str_t {
    ngx_str_t {
        len: s.len(),
        data: s.as_ptr().cast_mut(),
    }
}

/// Adds a response header of static strings and returns it; on allocation failure the header
/// is missing (`None`).
pub(super) fn add_header(
    r: &mut ngx_http_request_t,
    key: &'static str,
    value: &'static str,
) -> Option<*mut ngx_table_elt_t> {
    // SAFETY: the list belongs to the request; ngx_list_push returns an element allocated
    // from the request pool, or null.
    let h: *mut ngx_table_elt_t =
        unsafe { nginx_sys::ngx_list_push(&mut r.headers_out.headers) }.cast();
    if h.is_null() {
        return None;
    }
    // SAFETY: `h` is a new element of the list, ours alone. Zeroed first, so that fields some
    // nginx versions have beyond these (`next`, `lowcase_key`) are null; the key and value
    // are static strings, which nginx only reads.
    unsafe {
        core::ptr::write_bytes(h, 0, 1);
        (*h).hash = 1;
        (*h).key = static_str(key);
        (*h).value = static_str(value);
    }
    Some(h)
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
    let format = choose_format(
        arg(r, "format").as_deref(),
        header_in(r, "accept").as_deref(),
    );
    let document = match format {
        Format::Json => Document::Json,
        Format::Html => {
            // Only the page filters; a bad filter is the client's mistake, said in one line.
            let filter = match parse_page_filter(&query) {
                Ok(f) => f,
                Err(e) => {
                    return respond(r, 400, "text/plain; charset=utf-8", &format!("{e}\n"));
                }
            };
            Document::Html(HtmlOptions {
                filter,
                refresh: parse_refresh(arg(r, "refresh").as_deref()),
                // SAFETY: ngx_cycle is this process's current cycle.
                host: unsafe { (*nginx_sys::ngx_cycle).hostname.to_string() },
                now_unix: now_ms / 1000,
            })
        }
        Format::Prometheus => Document::Prometheus,
    };
    // gzip when the client takes it; a body that cannot be compressed goes out plain.
    let gzip = accepts_gzip(header_in(r, "accept-encoding").as_deref());
    let scrape = Scrape::new(mcf, now_ms, document, gzip);
    super::scrape_event::start(r, mcf, scrape, format.content_type())
}

/// A response's coding, and whether it depends on the request's `Accept-Encoding`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    /// Always plain (short answers, errors).
    Fixed,
    /// Plain, for a client that takes no gzip: the response says `Vary: Accept-Encoding`.
    Plain,
    /// gzip, for a client that takes it: `Content-Encoding: gzip`, `Vary: Accept-Encoding`.
    Gzip,
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
    if let Some(rc) = send_header(r, status, content_type, body.len(), coding) {
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

/// Sets the status and headers of a body of `len` bytes and sends them; `Some(rc)` when
/// that is the end of the response (an error, or a HEAD request), `None` when the body is to
/// follow.
pub(super) fn send_header(
    r: &mut ngx_http_request_t,
    status: usize,
    content_type: &'static str,
    len: usize,
    coding: Coding,
) -> Option<ngx_int_t> {
    r.headers_out.status = status;
    r.headers_out.content_length_n = len as i64;
    r.headers_out.content_type_len = content_type.len();
    r.headers_out.content_type = static_str(content_type);
    add_header(r, "Cache-Control", "no-store");
    // The answer depends on Accept: caches must not hand a browser's HTML to Prometheus.
    add_header(r, "Vary", "Accept");
    if coding != Coding::Fixed {
        // And on Accept-Encoding, coded or not: a cache must not hand gzip to a client
        // that did not ask for it, nor plain text to one that did.
        add_header(r, "Vary", "Accept-Encoding");
    }
    if coding == Coding::Gzip {
        // Also nginx's own `headers_out.content_encoding`: that is how nginx's gzip filter
        // (when the operator turned it on here) knows the body is coded already and leaves
        // it alone. Without the header (no memory) the response fails rather than lie.
        match add_header(r, "Content-Encoding", "gzip") {
            Some(h) => r.headers_out.content_encoding = h,
            None => return Some(nginx_sys::NGX_ERROR as ngx_int_t),
        }
    }

    // SAFETY: valid request.
    let rc = unsafe { nginx_sys::ngx_http_send_header(r) };
    if rc == nginx_sys::NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
        return Some(rc);
    }
    None
}
