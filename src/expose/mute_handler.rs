//! FFI of the control requests of `status_metrics control=on`: `POST ?mute=...` and
//! `POST ?unmute=...` (parsing in `mute_control`, the change in `mute_apply`). Reached only
//! from the `status_metrics` handler, and only for a query naming mute or unmute.

use nginx_sys::{ngx_http_request_t, ngx_int_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf};

use super::handler::{add_header, arg, respond};
use super::mute_apply::apply;
use super::mute_control::{parse_control, ControlError};
use crate::conf::mute_lock::with_mutes;
use crate::conf::LocConf;
use crate::HttpStatusAlertModule as Module;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// Serves a control request: the switch, the method, the query, then the change under the
/// zone's lock; the answer is one line of text (JSON with `format=json`).
pub(super) fn serve_control(
    r: &mut ngx_http_request_t,
    query: &str,
) -> Result<ngx_int_t, ngx_int_t> {
    // SAFETY: valid request.
    let rc = unsafe { nginx_sys::ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return Err(rc);
    }
    let internal = NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    let control = Module::location_conf(r).is_some_and(|l: &LocConf| l.metrics_control);
    let mcf = Module::main_conf(r).ok_or(internal)?;
    let method = String::from_utf8_lossy(r.method_name.as_bytes()).into_owned();
    let is_known = |name: &str| mcf.names.iter().any(|n| n.name == name);
    let command = match parse_control(&method, control, query, is_known) {
        Ok(c) => c,
        Err(e) => {
            if e == ControlError::Method {
                add_header(r, "Allow", "POST");
            }
            return respond(r, usize::from(e.status()), TEXT, &format!("{e}\n"));
        }
    };
    let now = nginx_sys::ngx_timeofday();
    let now_ms = now.sec as u64 * 1000 + now.msec as u64;
    let Some(done) = with_mutes(mcf, |records| apply(&command, records, now_ms)) else {
        let why = "no shared zone: nothing is evaluated, so there is nothing to mute\n";
        return respond(r, 503, TEXT, why);
    };
    // SAFETY: a request's connection and its log live as long as the request.
    let log = unsafe { (*r.connection).log };
    match done {
        Ok(applied) => {
            notice!(log, "status_alert: {}", applied.text().trim_end());
            if arg(r, "format").as_deref() == Some("json") {
                respond(r, 200, JSON, &applied.json())
            } else {
                respond(r, 200, TEXT, &applied.text())
            }
        }
        Err(full) => {
            warn!(log, "status_alert: mute refused: {full}");
            respond(r, 503, TEXT, &format!("{full}; unmute one first\n"))
        }
    }
}
