//! TLS for https probes on nginx's OpenSSL (nginx built with SSL): the client context, the
//! handshake with SNI, the certificate check, and dropping a connection's TLS state.

use core::ffi::{c_int, c_void};
use core::ptr;

use nginx_sys::{ngx_connection_t, ngx_int_t, ngx_log_t, ngx_ssl_t, ngx_str_t, NGX_AGAIN, NGX_OK};

use super::{on_conn_event, with_target, Step, Target};
use crate::vocab::reason::Reason;

/// The process's TLS context of the probes.
pub(super) type Context = ngx_ssl_t;

/// An `ngx_ssl_t` for client connections, trusting the system's certificate store.
pub(super) fn context(log: *mut ngx_log_t) -> Option<Box<Context>> {
    // SAFETY: all-zero is the state nginx's configuration code starts an ngx_ssl_t from.
    let mut ssl: Box<ngx_ssl_t> = Box::new(unsafe { core::mem::zeroed() });
    ssl.log = log;
    let protocols = (nginx_sys::NGX_SSL_TLSv1_2 | nginx_sys::NGX_SSL_TLSv1_3) as _;
    // SAFETY: a zeroed ngx_ssl_t with a valid log; OpenSSL was initialised by nginx.
    if unsafe { nginx_sys::ngx_ssl_create(&mut *ssl, protocols, ptr::null_mut()) }
        != NGX_OK as ngx_int_t
    {
        return None;
    }
    // Certificates are checked after the handshake (unless tls_verify=off), so that a bad
    // one fails the probe as `tls` with nginx's verification result, like proxy_ssl_verify.
    // SAFETY: ctx was just created.
    if unsafe { nginx_sys::SSL_CTX_set_default_verify_paths(ssl.ctx.cast()) } != 1 {
        return None;
    }
    Some(ssl)
}

/// Drops the TLS state of a probe connection about to be closed, without a close_notify
/// exchange (nothing waits for it).
///
/// # Safety
/// `c` is a live connection.
pub(super) unsafe fn drop_session(c: *mut ngx_connection_t) {
    // SAFETY: the caller's; c->ssl is set while it is a TLS connection.
    unsafe {
        if !(*c).ssl.is_null() {
            (*(*c).ssl).set_no_wait_shutdown(1);
            (*(*c).ssl).set_no_send_shutdown(1);
            nginx_sys::ngx_ssl_shutdown(c);
        }
    }
}

impl Target {
    /// Starts the TLS handshake on the connected socket; then the request.
    pub(super) fn handshake(&mut self) {
        let c = self.conn;
        if self.ssl.is_null() {
            self.finish(Some(Reason::Tls));
            return;
        }
        self.step = Step::Handshake;
        // SAFETY: c is our live connection with a pool; ssl is the process's TLS context.
        let rc = unsafe {
            nginx_sys::ngx_ssl_create_connection(self.ssl, c, nginx_sys::NGX_SSL_CLIENT as _)
        };
        if rc != NGX_OK as ngx_int_t {
            self.finish(Some(Reason::Tls));
            return;
        }
        // SAFETY: c->ssl was just created; the name outlives the handshake.
        unsafe {
            if let Some(sni) = &self.sni {
                nginx_sys::SSL_ctrl(
                    (*(*c).ssl).connection.cast(),
                    nginx_sys::SSL_CTRL_SET_TLSEXT_HOSTNAME as c_int,
                    nginx_sys::TLSEXT_NAMETYPE_host_name as _,
                    sni.as_ptr().cast_mut().cast::<c_void>(),
                );
            }
        }
        // SAFETY: as above.
        let rc = unsafe { nginx_sys::ngx_ssl_handshake(c) };
        if rc == NGX_AGAIN as ngx_int_t {
            // SAFETY: c->ssl is live; nginx calls this when the handshake ends.
            unsafe { (*(*c).ssl).handler = Some(on_handshake) };
            return;
        }
        self.handshake_done();
    }

    fn handshake_done(&mut self) {
        let c = self.conn;
        // SAFETY: c is our live connection; c->ssl is set while it is a TLS connection.
        let ok = unsafe { !(*c).ssl.is_null() && (*(*c).ssl).handshaked() != 0 };
        if !ok {
            self.finish(Some(Reason::Tls));
            return;
        }
        // The target's certificate is watched whether or not it is verified (expiry matters
        // for a self-signed internal service too).
        self.note_certificate();
        if self.spec.tls_verify && !self.certificate_ok() {
            self.finish(Some(Reason::Tls));
            return;
        }
        // SAFETY: the handshake handler replaced ours; take the events back.
        unsafe {
            (*(*c).read).handler = Some(on_conn_event);
            (*(*c).write).handler = Some(on_conn_event);
        }
        self.step = Step::Writing;
        self.write();
    }

    /// Stores the expiry of the leaf certificate the target sent in its slot.
    fn note_certificate(&mut self) {
        let c = self.conn;
        // SAFETY: c->ssl is a completed TLS connection; the reference taken is released below.
        let cert = unsafe { nginx_sys::SSL_get1_peer_certificate((*(*c).ssl).connection.cast()) };
        if cert.is_null() {
            return;
        }
        // SAFETY: cert is a live X509; a null output pointer asks for the length only.
        let len = unsafe { nginx_sys::i2d_X509(cert, ptr::null_mut()) };
        let mut der = vec![0u8; usize::try_from(len).unwrap_or(0)];
        let mut out = der.as_mut_ptr();
        // SAFETY: der has room for len bytes; i2d_X509 writes them and advances out.
        let written = unsafe { nginx_sys::i2d_X509(cert, &mut out) };
        // SAFETY: the reference SSL_get1_peer_certificate took.
        unsafe { nginx_sys::X509_free(cert) };
        if written != len || len <= 0 {
            return;
        }
        let not_after = openssl::x509::X509::from_der(&der)
            .ok()
            .and_then(|x| crate::conf::certificate_file::leaf_not_after(&x).ok());
        // SAFETY: the slot points into the mapped zone (null before it is set up).
        if let (Some(slot), Some(not_after)) = (unsafe { self.slot.as_ref() }, not_after) {
            slot.certificate
                .not_after_unix
                .store(not_after, core::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The chain verified against the system store and, for a host name, names it. An IP
    /// address target (every `upstream=` target) has no name to check: only the chain counts.
    fn certificate_ok(&mut self) -> bool {
        let c = self.conn;
        // SAFETY: c->ssl is a completed TLS connection.
        let verified = unsafe { nginx_sys::SSL_get_verify_result((*(*c).ssl).connection.cast()) };
        if verified != nginx_sys::X509_V_OK as core::ffi::c_long {
            return false;
        }
        if self.sni.is_none() {
            return true;
        }
        let mut host = self.spec.target.host.clone().into_bytes();
        let mut name = ngx_str_t {
            len: host.len(),
            data: host.as_mut_ptr(),
        };
        // SAFETY: as above; name is valid for the call.
        unsafe { nginx_sys::ngx_ssl_check_host(c, &mut name) == NGX_OK as ngx_int_t }
    }
}

/// nginx's handshake handler calls this when the TLS handshake ends, either way.
extern "C" fn on_handshake(c: *mut ngx_connection_t) {
    // SAFETY: c is the probe connection whose data is the target.
    let t = unsafe { (*c).data.cast::<Target>() };
    with_target(t, |t| {
        if t.step == Step::Handshake && t.conn == c {
            t.handshake_done();
        }
    });
}
