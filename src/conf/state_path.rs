//! `status_alert_state_path` (FFI): the module's private state directory is registered with
//! nginx like a temp path, so the master creates it in every cycle (mode 0700, owned by the
//! worker user) before any process uses it, and checked once nginx has done so.

use core::ptr::{self, NonNull};

use nginx_sys::{ngx_conf_t, ngx_core_conf_t, ngx_path_t, NGX_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};

use super::state_dir;
use super::{MainConf, SetupError};

/// The directory's name beside the client body temp path when no path is configured.
const DEFAULT_NAME: &str = "status_alert";

/// Marks our path in nginx's list, so that a temp path of the same name is refused.
static PATH_TAG: u8 = 0;

/// Postconfiguration: works out the state directory and registers it with nginx.
pub fn prepare(cf: &mut ngx_conf_t, mcf: &mut MainConf) -> Result<(), SetupError> {
    // SAFETY: cf.cycle is the cycle being configured.
    let prefix = unsafe { (*cf.cycle).prefix }.to_string();
    let path = match &mcf.state_path {
        Some((p, _)) if p.starts_with('/') => p.clone(),
        Some((p, _)) => format!("{prefix}{p}"),
        None => state_dir::sibling(&client_body_temp_path(cf, &prefix), DEFAULT_NAME),
    };
    register(cf, &path, mcf.state_path.is_some())?;
    mcf.state_dir = path;
    mcf.cycle = NonNull::new(cf.cycle);
    Ok(())
}

/// The client body temp path in force at http level: the http block's own, else the one the
/// first server merged (nginx's compiled-in default), else nginx's usual default.
fn client_body_temp_path(cf: &mut ngx_conf_t, prefix: &str) -> String {
    let own =
        NgxHttpCoreModule::location_conf(cf).map_or(ptr::null_mut(), |c| c.client_body_temp_path);
    // SAFETY: null or a path nginx allocated for this configuration.
    if let Some(p) = unsafe { own.as_ref() } {
        return p.name.to_string();
    }
    let first_server = NgxHttpCoreModule::main_conf(cf).and_then(|cmcf| {
        // SAFETY: servers is an array of server configuration pointers, each with its
        // location configurations, merged before postconfiguration.
        unsafe {
            let servers = cmcf
                .servers
                .as_slice::<*mut nginx_sys::ngx_http_core_srv_conf_t>();
            let srv = servers.first()?.as_ref()?;
            let index = nginx_sys::ngx_http_core_module.ctx_index;
            let clcf =
                (*(*srv.ctx).loc_conf.add(index)).cast::<nginx_sys::ngx_http_core_loc_conf_t>();
            clcf.as_ref()?
                .client_body_temp_path
                .as_ref()
                .map(|p| p.name.to_string())
        }
    });
    first_server.unwrap_or_else(|| format!("{prefix}client_body_temp"))
}

/// Adds `path` to the cycle's paths: nginx creates it with mode 0700 and gives it to the
/// worker user, as it does for its temp paths.
fn register(cf: &mut ngx_conf_t, path: &str, configured: bool) -> Result<(), SetupError> {
    let fail = || SetupError::StatePath(path.to_string());
    // SAFETY: allocations from the configuration pool, which lives as long as the cycle.
    unsafe {
        let p = nginx_sys::ngx_pcalloc(cf.pool, core::mem::size_of::<ngx_path_t>())
            .cast::<ngx_path_t>();
        let name = nginx_sys::ngx_pnalloc(cf.pool, path.len() + 1).cast::<u8>();
        if p.is_null() || name.is_null() {
            return Err(fail());
        }
        ptr::copy_nonoverlapping(path.as_ptr(), name, path.len());
        *name.add(path.len()) = 0;
        (*p).name.data = name;
        (*p).name.len = path.len();
        (*p).data = ptr::from_ref(&PATH_TAG).cast_mut().cast();
        if configured {
            if let Some(f) = cf.conf_file.as_ref() {
                (*p).conf_file = f.file.name.data;
                (*p).line = f.line;
            }
        }
        let mut slot = p;
        if nginx_sys::ngx_add_path(cf, &mut slot) != NGX_OK as nginx_sys::ngx_int_t {
            return Err(fail());
        }
    }
    Ok(())
}

/// Once nginx has created the directory (zone initialisation, also under `nginx -t`): refuses
/// one that other users can write or that belongs to someone else.
pub fn check(mcf: &MainConf) -> Result<(), SetupError> {
    // SAFETY: geteuid has no preconditions.
    let mut owners = vec![unsafe { libc::geteuid() }];
    if let Some(cycle) = mcf.cycle {
        // SAFETY: the cycle being initialised; the core module's configuration was read.
        let user = unsafe {
            let ctx = (*cycle.as_ptr()).conf_ctx;
            let ccf = (*ctx.add(nginx_sys::ngx_core_module.index)).cast::<ngx_core_conf_t>();
            ccf.as_ref().map(|c| c.user)
        };
        owners.extend(user.filter(|u| *u != u32::MAX));
    }
    state_dir::check_dir(&mcf.state_dir, &owners).map_err(|source| SetupError::StateDir {
        source,
        at: mcf.state_path.as_ref().map_or(String::new(), |(_, place)| {
            format!(" (status_alert_state_path in {place})")
        }),
    })
}
