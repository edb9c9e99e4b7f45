//! The certificates nginx serves (FFI): every `ssl_certificate` of every server that has an
//! SSL listener (`listen ... ssl`), read from nginx's own configuration once the `http` block
//! is merged, with the `status_alert_certificates` setting in force in that server.
//!
//! Servers come from the listening addresses (`ngx_http_core_main_conf_t.ports`), not from the
//! list of servers: a server that inherits `ssl_certificate` from `http` but listens without
//! `ssl` serves no certificate and is not watched. Certificates chosen through variables
//! (`ssl_certificate $ssl_server_name.crt`) are only known per handshake; they are returned
//! apart, to be listed as unchecked.

use nginx_sys::{ngx_conf_t, ngx_http_core_srv_conf_t, ngx_str_t};
use ngx::http::HttpModule;

use super::certificate_file;
use super::certificates::CertificateParams;
use super::{LocConf, MainConf, WatchedCertificate};
use crate::HttpStatusAlertModule;

/// One certificate file a server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedFile {
    /// The server's name (its first `server_name`, else its first SSL listen address).
    pub server: String,
    /// The file, with nginx's configuration prefix applied to a relative path.
    pub file: String,
    /// The thresholds in force in that server.
    pub params: CertificateParams,
}

/// What the configuration serves: files to watch, and servers whose certificates come from
/// variables (`server` and the value as written).
#[derive(Debug, Default)]
pub struct Served {
    /// Files to watch, each (server, file) once.
    pub files: Vec<ServedFile>,
    /// Certificates chosen through variables, not checked.
    pub unchecked: Vec<(String, String)>,
}

/// Walks the SSL listeners of the merged `http` block.
#[cfg(ngx_feature = "http_ssl")]
pub fn served(cf: &mut ngx_conf_t) -> Served {
    use nginx_sys::{
        ngx_http_conf_addr_t, ngx_http_conf_port_t, ngx_http_ssl_module, ngx_http_ssl_srv_conf_t,
    };
    use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule};

    let mut out = Served::default();
    let Some(cmcf) = NgxHttpCoreModule::main_conf(cf) else {
        return out;
    };
    // SAFETY: null or the array of listening ports nginx built from `listen` directives.
    let Some(ports) = (unsafe { cmcf.ports.as_ref() }) else {
        return out;
    };
    // SAFETY: the elements are ngx_http_conf_port_t.
    let ports: &[ngx_http_conf_port_t] = unsafe { ports.as_slice() };
    let mut seen: Vec<*mut ngx_http_core_srv_conf_t> = Vec::new();
    for port in ports {
        // SAFETY: each port's addrs holds ngx_http_conf_addr_t.
        let addrs: &[ngx_http_conf_addr_t] = unsafe { port.addrs.as_slice() };
        for addr in addrs.iter().filter(|a| a.opt.ssl() != 0) {
            // SAFETY: servers holds pointers to the core server configurations.
            let servers: &[*mut ngx_http_core_srv_conf_t] = unsafe { addr.servers.as_slice() };
            for &cscf in servers {
                if cscf.is_null() || seen.contains(&cscf) {
                    continue;
                }
                seen.push(cscf);
                // SAFETY: a live, merged core server configuration of this cycle.
                let s = unsafe { &*cscf };
                let server = server_label(s, &addr.opt.addr_text);
                // SAFETY: every server context has a srv_conf per HTTP module, the SSL
                // module's being an ngx_http_ssl_srv_conf_t.
                let sscf = unsafe {
                    let ctx = &*s.ctx;
                    *ctx.srv_conf.add(ngx_http_ssl_module.ctx_index)
                }
                .cast::<ngx_http_ssl_srv_conf_t>();
                // SAFETY: as above; merged before postconfiguration.
                let Some(sscf) = (unsafe { sscf.as_ref() }) else {
                    continue;
                };
                // SAFETY: the server context's loc_conf array holds this module's LocConf at
                // its ctx_index (create_loc_conf), merged by now.
                let ours = unsafe {
                    let index = HttpStatusAlertModule::module().ctx_index;
                    (*(*s.ctx).loc_conf.add(index)).cast::<LocConf>().as_ref()
                };
                let Some(params) = ours.and_then(LocConf::certificate_params) else {
                    continue;
                };
                // SAFETY: null or an array of ngx_str_t, the values as written.
                let Some(files) = (unsafe { sscf.certificates.as_ref() }) else {
                    continue;
                };
                // SAFETY: as above.
                let files: &[ngx_str_t] = unsafe { files.as_slice() };
                let variables = !sscf.certificate_values.is_null();
                for f in files {
                    let written = f.to_string();
                    if variables && written.contains('$') {
                        out.unchecked.push((server.clone(), written));
                        continue;
                    }
                    let file = full_name(cf, &written);
                    if !out
                        .files
                        .iter()
                        .any(|x| x.server == server && x.file == file)
                    {
                        out.files.push(ServedFile {
                            server: server.clone(),
                            file,
                            params,
                        });
                    }
                }
            }
        }
    }
    out
}

/// Without SSL in nginx nothing is served over TLS.
#[cfg(not(ngx_feature = "http_ssl"))]
pub fn served(_cf: &mut ngx_conf_t) -> Served {
    Served::default()
}

/// A server's first `server_name`, else the listen address it was found on.
fn server_label(s: &ngx_http_core_srv_conf_t, addr_text: &ngx_str_t) -> String {
    let name = s.server_name.to_string();
    if name.is_empty() {
        addr_text.to_string()
    } else {
        name
    }
}

/// `path` as nginx opens it: relative paths are relative to the configuration prefix.
fn full_name(cf: &ngx_conf_t, path: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    // SAFETY: cf.cycle is the cycle being configured; conf_prefix is set at start-up.
    let prefix = unsafe { (*cf.cycle).conf_prefix }.to_string();
    format!("{prefix}{path}")
}

/// Postconfiguration: finds the certificates served and reads each file once, as nginx has
/// just loaded it (the master reads it, with the rights nginx loaded it with). Only when the
/// module is in use (a NAME, probe or destination): a configuration that uses none of its
/// directives is left alone. Certificates chosen through variables are listed at `notice`.
pub fn prepare(cf: &mut ngx_conf_t, mcf: &mut MainConf) {
    for p in &mut mcf.probes {
        // SAFETY: null, or this module's configuration of the probe's level, merged by now
        // and alive with this cycle.
        let level = unsafe { p.loc_conf.as_ref() };
        p.certificates = level.map_or(Some(Default::default()), LocConf::certificate_params);
    }
    let in_use = !mcf.names.is_empty()
        || !mcf.probes.is_empty()
        || !mcf.destinations.is_empty()
        || mcf.heartbeat.is_some();
    if !in_use {
        return;
    }
    let served = served(cf);
    for (server, value) in &served.unchecked {
        notice!(
            cf.log,
            "status_alert_certificates: the certificate \"{value}\" of server \"{server}\" is \
             chosen through variables and is not checked"
        );
    }
    mcf.certificates = served
        .files
        .into_iter()
        .map(|f| WatchedCertificate {
            served: certificate_file::read(std::path::Path::new(&f.file)),
            server: f.server,
            file: f.file,
            params: f.params,
            slot: core::ptr::null(),
        })
        .collect();
    for c in &mcf.certificates {
        if let Err(e) = &c.served {
            warn!(
                cf.log,
                "status_alert_certificates: server \"{}\": {e}", c.server
            );
        }
    }
}
