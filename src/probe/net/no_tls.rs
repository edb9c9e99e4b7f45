//! Stands in for tls.rs when nginx is built without SSL (no `NGX_SSL`, so no OpenSSL in
//! nginx): `nginx -t` refuses https probes there, so none reaches a handshake.

use nginx_sys::{ngx_connection_t, ngx_log_t};

use super::Target;
use crate::vocab::reason::Reason;

/// No TLS context exists without SSL.
pub(super) enum Context {}

/// None: nginx has no OpenSSL to make one with.
pub(super) fn context(_log: *mut ngx_log_t) -> Option<Box<Context>> {
    None
}

/// Nothing to drop: no connection has TLS state.
///
/// # Safety
/// None needed; the signature is tls.rs's.
pub(super) unsafe fn drop_session(_c: *mut ngx_connection_t) {}

impl Target {
    /// Fails the probe as `tls`; not reached, as `nginx -t` refuses https probes here.
    pub(super) fn handshake(&mut self) {
        self.finish(Some(Reason::Tls));
    }
}
