//! nginx-status-alert: per-location status counters, 5xx ratio alerts, health probes, Discord
//! notifications and Prometheus metrics, inside nginx.
//!
//! This file only wires the module into nginx; each concern lives in its own folder, in layers
//! (lowest first): `vocab`; `zone` and `conf`; `probe` and `evaluate`; `notify` and `expose`;
//! `helper` and worker 0's `driver` (docs/development.md, "Layers", checked by `layers`).
//! Modules marked `cfg(not(test))` are FFI glue that only links inside nginx; everything else
//! is plain Rust, unit-tested by `cargo test` without nginx.

#[cfg(not(test))]
#[macro_use]
mod log;

pub mod conf;
#[cfg(not(test))]
mod count;
#[cfg(not(test))]
mod count_peers;
pub mod driver;
pub mod evaluate;
pub mod event;
pub mod expose;
pub mod helper;
#[cfg(test)]
mod layers;
pub mod notify;
pub mod probe;
#[cfg(test)]
mod properties;
pub mod vocab;
pub mod zone;

#[cfg(not(test))]
pub use wiring::{ngx_http_status_alert_module, HttpStatusAlertModule};

/// The module table, context and configuration callbacks nginx calls.
#[cfg(not(test))]
mod wiring {
    use core::ffi::{c_char, c_void};
    use core::ptr;

    use nginx_sys::{
        ngx_array_push, ngx_conf_t, ngx_http_handler_pt, ngx_http_module_t,
        ngx_http_phases_NGX_HTTP_LOG_PHASE, ngx_http_phases_NGX_HTTP_REWRITE_PHASE,
        ngx_http_request_t, ngx_int_t, ngx_module_t, ngx_uint_t, NGX_HTTP_MODULE,
        NGX_HTTP_VAR_NOCACHEABLE, NGX_HTTP_VAR_NOHASH,
    };
    use ngx::core::{Status, NGX_CONF_ERROR, NGX_CONF_OK};
    use ngx::ngx_string;

    type PhaseHandler = unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t;
    type VariableGetter = unsafe extern "C" fn(
        *mut ngx_http_request_t,
        *mut nginx_sys::ngx_variable_value_t,
        usize,
    ) -> ngx_int_t;
    use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

    use crate::conf::directives;
    use crate::conf::zone_setup;
    use crate::conf::{LocConf, MainConf};
    use crate::count;

    /// The module's type for ngx's configuration helpers.
    pub struct HttpStatusAlertModule;

    static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
        preconfiguration: Some(HttpStatusAlertModule::preconfiguration),
        postconfiguration: Some(HttpStatusAlertModule::postconfiguration),
        create_main_conf: Some(HttpStatusAlertModule::create_main_conf),
        init_main_conf: None,
        create_srv_conf: None,
        merge_srv_conf: None,
        create_loc_conf: Some(HttpStatusAlertModule::create_loc_conf),
        merge_loc_conf: Some(merge_loc_conf),
    };

    #[cfg(feature = "export-modules")]
    ngx::ngx_modules!(ngx_http_status_alert_module);

    /// The module definition nginx loads.
    #[used]
    #[allow(non_upper_case_globals)]
    #[cfg_attr(not(feature = "export-modules"), no_mangle)]
    pub static mut ngx_http_status_alert_module: ngx_module_t = ngx_module_t {
        ctx: ptr::addr_of!(MODULE_CTX).cast_mut().cast(),
        // SAFETY: only the address of the static is taken; nginx reads the table.
        commands: unsafe { ptr::addr_of_mut!(directives::COMMANDS[0]) },
        type_: NGX_HTTP_MODULE as ngx_uint_t,
        init_module: Some(zone_setup::init_module),
        init_process: Some(crate::driver::init_process),
        exit_process: Some(crate::driver::exit_process),
        ..ngx_module_t::default()
    };

    // SAFETY: the main configuration slot of this module holds a MainConf (create_main_conf).
    unsafe impl HttpModuleMainConf for HttpStatusAlertModule {
        type MainConf = MainConf;
    }

    // SAFETY: the location configuration slots of this module hold LocConfs (create_loc_conf).
    unsafe impl HttpModuleLocationConf for HttpStatusAlertModule {
        type LocationConf = LocConf;
    }

    impl HttpModule for HttpStatusAlertModule {
        fn module() -> &'static ngx_module_t {
            // SAFETY: the static is only written by nginx while loading modules.
            unsafe { &*ptr::addr_of!(ngx_http_status_alert_module) }
        }

        unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
            // `$status_alert_name`, derived on demand from the binding below; never cached,
            // since the binding can be made after a first read.
            let public = (
                ngx_string!("status_alert_name"),
                NGX_HTTP_VAR_NOCACHEABLE,
                count::name_variable as VariableGetter,
            );
            // The binding itself, in a variable slot because slots survive internal
            // redirects (request contexts do not). The space keeps the name out of reach of
            // configuration, NOHASH out of reach of lookups by name (njs `r.variables`), and
            // the no-op set handler out of reach of any module that sets variables through it.
            let binding = (
                count::BINDING_VARIABLE,
                NGX_HTTP_VAR_NOHASH,
                count::binding_variable as VariableGetter,
            );
            for (mut name, flags, get) in [public, binding] {
                // SAFETY: valid cf; nginx copies the name.
                let var = unsafe { nginx_sys::ngx_http_add_variable(cf, &mut name, flags as _) };
                // SAFETY: null or a variable owned by the configuration.
                let Some(var) = (unsafe { var.as_mut() }) else {
                    return Status::NGX_ERROR.into();
                };
                var.get_handler = Some(get);
                var.set_handler = Some(count::ignore_variable_write);
            }
            Status::NGX_OK.into()
        }

        unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
            // SAFETY: nginx calls postconfiguration with a valid cf.
            let cf = unsafe { &mut *cf };
            match set_up(cf) {
                Ok(()) => Status::NGX_OK.into(),
                Err(status) => status.into(),
            }
        }
    }

    /// Once the `http` block is read: the checks and set-up that need all of it (each error
    /// logged at `emerg`), then, when there are NAMEs, the request path's hooks.
    fn set_up(cf: &mut ngx_conf_t) -> Result<(), Status> {
        let mcf = HttpStatusAlertModule::main_conf_mut(cf).ok_or(Status::NGX_ERROR)?;
        let log = cf.log;
        let emerg = move |e: &dyn core::fmt::Display| {
            emerg!(log, "{e}");
            Status::NGX_ERROR
        };
        crate::probe::net::prepare(cf, mcf).map_err(|e| emerg(&e))?;
        crate::conf::ssl_servers::prepare(cf, mcf);
        // Before the early return: some checks are about what is missing.
        mcf.validate().map_err(|e| emerg(&e))?;
        if mcf.names.is_empty() && mcf.probes.is_empty() && mcf.certificates.is_empty() {
            return Ok(());
        }
        mcf.bucket_ms = mcf.bucket_bounds().as_ms().to_vec();
        crate::conf::state_path::prepare(cf, mcf)
            .and_then(|()| zone_setup::add_zone(cf, mcf))
            .map_err(|e| emerg(&e))?;
        if mcf.names.is_empty() {
            return Ok(());
        }
        hook_request_path(cf, mcf)
    }

    /// The binding variable's index and the rewrite- and log-phase handlers of `count`.
    fn hook_request_path(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), Status> {
        let mut name = count::BINDING_VARIABLE;
        // SAFETY: valid cf; the variable was added in preconfiguration.
        let index = unsafe { nginx_sys::ngx_http_get_variable_index(cf, &mut name) };
        mcf.name_var_index = usize::try_from(index).map_err(|_| Status::NGX_ERROR)?;
        let cmcf = NgxHttpCoreModule::main_conf_mut(cf).ok_or(Status::NGX_ERROR)?;
        let phases = [
            (
                ngx_http_phases_NGX_HTTP_REWRITE_PHASE,
                count::bind_handler as PhaseHandler,
            ),
            (ngx_http_phases_NGX_HTTP_LOG_PHASE, count::log_handler),
        ];
        for (phase, handler) in phases {
            let handlers = &mut cmcf.phases[phase as usize].handlers;
            // SAFETY: phases[].handlers is an ngx_array_t of ngx_http_handler_pt.
            let h = unsafe { ngx_array_push(handlers) } as *mut ngx_http_handler_pt;
            if h.is_null() {
                return Err(Status::NGX_ERROR);
            }
            // SAFETY: h points at the new, uninitialised array element.
            unsafe { *h = Some(handler) };
        }
        Ok(())
    }

    /// Merges a location into its parent, resolves probes that take the location's NAME and
    /// finds the upstream peers a NAME's location counts.
    unsafe extern "C" fn merge_loc_conf(
        cf: *mut ngx_conf_t,
        prev: *mut c_void,
        conf: *mut c_void,
    ) -> *mut c_char {
        // SAFETY: nginx passes the parent's and this level's LocConf and a valid cf.
        let (cf, prev, conf) = unsafe {
            (
                &mut *cf,
                &*prev.cast::<LocConf>(),
                &mut *conf.cast::<LocConf>(),
            )
        };
        let Some(mcf) = HttpStatusAlertModule::main_conf_mut(cf) else {
            return NGX_CONF_ERROR;
        };
        match conf.merge_into(prev, mcf) {
            Ok(()) => {
                crate::conf::upstream_peers::bind(cf, conf, mcf);
                NGX_CONF_OK
            }
            Err(e) => {
                emerg!(cf.log, "{e}");
                NGX_CONF_ERROR
            }
        }
    }
}
