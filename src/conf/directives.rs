//! The directive table and its handlers: nginx's arguments in, the structs of `conf` out,
//! errors reported the way nginx reports them (`nginx: [emerg] ... in file:line`).

use core::ffi::{c_char, c_void};
use core::ptr;

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_str_t, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_ANY,
    NGX_CONF_NOARGS, NGX_CONF_TAKE1, NGX_CONF_TAKE12, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_string;

use super::alert_params;
use super::certificates;
use super::destination::{self, Destination, DestinationError, WebhookFormat};
use super::maintenance;
use super::params::{self, ParamError};
use super::probe_spec::{self, ProbeSpecError, Scheme};
use super::route::take_route_args;
use super::{AlertSetting, ConfError, LocConf, MainConf, NameConf, ProbeConf};
use crate::zone::counters::BucketBounds;
use crate::HttpStatusAlertModule;

/// nginx's `NGX_CONF_DUPLICATE` (a string macro, so not in nginx-sys): returned by a handler,
/// nginx prints `"<directive>" directive is duplicate` itself.
const NGX_CONF_DUPLICATE: *mut c_char = c"is duplicate".as_ptr().cast_mut();

/// Turns `err` into what `nginx -t` prints for the directive being parsed (nginx appends
/// `in file:line`).
fn conf_error(cf: *mut ngx_conf_t, err: ConfError) -> *mut c_char {
    if err == ConfError::Duplicate {
        return NGX_CONF_DUPLICATE;
    }
    ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", err);
    NGX_CONF_ERROR
}

/// `file:line` of the directive being parsed.
fn place(cf: &ngx_conf_t) -> String {
    // SAFETY: conf_file is set while a configuration file is being parsed.
    match unsafe { cf.conf_file.as_ref() } {
        Some(f) => format!("{}:{}", f.file.name, f.line),
        None => "(command line)".to_string(),
    }
}

/// The directive's arguments after its name, as UTF-8 strings.
fn args(cf: &ngx_conf_t, directive: &'static str) -> Result<Vec<String>, ConfError> {
    // SAFETY: cf.args is an array of ngx_str_t holding the directive and its arguments.
    let all: &[ngx_str_t] = unsafe { (*cf.args).as_slice() };
    all.iter()
        .skip(1)
        .map(|a| {
            a.to_str()
                .map(str::to_string)
                .map_err(|_| ConfError::Invalid {
                    directive,
                    message: format!("invalid value \"{a}\": not UTF-8"),
                })
        })
        .collect()
}

/// Runs a directive handler body with references made from nginx's pointers.
pub(crate) fn handle<C>(
    cf: *mut ngx_conf_t,
    conf: *mut c_void,
    body: impl FnOnce(&mut ngx_conf_t, &mut C) -> Result<(), ConfError>,
) -> *mut c_char {
    // SAFETY: nginx calls directive handlers with a valid cf and the configuration struct of
    // the level selected by the command's `conf` offset, which is a `C` by construction.
    let (cfr, conf) = unsafe { (&mut *cf, &mut *conf.cast::<C>()) };
    match body(cfr, conf) {
        Ok(()) => NGX_CONF_OK,
        Err(e) => conf_error(cf, e),
    }
}

fn main_conf(cf: &mut ngx_conf_t) -> &'static mut MainConf {
    // Always present: the module's create_main_conf ran before any directive.
    HttpStatusAlertModule::main_conf_mut(cf).expect("status_alert main conf")
}

extern "C" fn set_status_alert(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert";
    handle(cf, conf, |cf, lcf: &mut LocConf| {
        let err = |message: String| ConfError::Invalid {
            directive: D,
            message,
        };
        if !matches!(lcf.alert, AlertSetting::Unset) {
            return Err(ConfError::Duplicate);
        }
        let args = args(cf, D)?;
        let name = args[0].as_str();
        if name == "off" {
            if args.len() > 1 {
                return Err(err(format!(
                    "\"off\" takes no parameters, got \"{}\"",
                    args[1]
                )));
            }
            lcf.alert = AlertSetting::Off;
            return Ok(());
        }
        params::validate_name(name).map_err(|source| ConfError::Param {
            directive: D,
            source,
        })?;
        let p = alert_params::parse_alert_params(args[1..].iter().map(String::as_str)).map_err(
            |source| ConfError::NameParam {
                directive: D,
                name: name.to_string(),
                source,
            },
        )?;
        let here = place(cf);
        let mcf = main_conf(cf);
        let existing = mcf.name_index.get(name).map(|&i| &mcf.names[i]);
        let nc: *const NameConf = match existing {
            Some(n) if n.params != p => {
                return Err(err(format!(
                    "\"{name}\" is already defined with different parameters in {}",
                    n.place
                )))
            }
            Some(n) => &**n,
            None => {
                let mut label = [0u8; params::MAX_NAME_LEN];
                label[..name.len()].copy_from_slice(name.as_bytes());
                let nc = Box::new(NameConf {
                    label,
                    name: name.to_string(),
                    params: p,
                    place: here,
                    slot: ptr::null(),
                    peers: None,
                });
                let p: *const NameConf = &*nc;
                mcf.name_index.insert(name.to_string(), mcf.names.len());
                mcf.names.push(nc);
                p
            }
        };
        lcf.alert = AlertSetting::Name(nc);
        Ok(())
    })
}

extern "C" fn set_status_alert_probe(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert_probe";
    handle(cf, conf, |cf, lcf: &mut LocConf| {
        let args = args(cf, D)?;
        // In a location the NAME may come from `status_alert` (also one written later in the
        // block or inherited), so it is resolved when the location is merged.
        let in_location = cf.cmd_type == NGX_HTTP_LOC_CONF as ngx_uint_t;
        let spec = probe_spec::parse(&args, !in_location)?;
        if spec.target.scheme == Scheme::Https && !cfg!(ngx_feature = "ssl") {
            return Err(ProbeSpecError::HttpsWithoutSsl.into());
        }
        let body_regex = match &spec.checks.body_regex {
            Some(pattern) => {
                super::regex::compile(cf, pattern).map_err(|why| ConfError::Invalid {
                    directive: D,
                    message: format!("invalid body_regex \"{pattern}\": {why}"),
                })?
            }
            None => ptr::null(),
        };
        // The core configuration of this level: its `resolver`, known once the block is
        // merged, is the one the probe's host name is looked up with.
        let core_loc_conf =
            NgxHttpCoreModule::location_conf(cf).map_or(ptr::null(), |c| ptr::from_ref(c).cast());
        let probe = ProbeConf {
            spec,
            place: place(cf),
            slot: ptr::null(),
            addrs: Vec::new(),
            core_loc_conf,
            resolver: None,
            body_regex,
            loc_conf: ptr::from_ref(lcf),
            certificates: None,
            resolve: None,
        };
        if probe.spec.name.is_empty() {
            lcf.pending_probes.push(probe);
            return Ok(());
        }
        main_conf(cf).add_probe(probe)
    })
}

extern "C" fn set_webhook(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert_webhook";
    handle(cf, conf, |cf, mcf: &mut MainConf| {
        let refused = |source| ConfError::Destination {
            directive: D,
            source,
        };
        let args = args(cf, D)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let destination = destination::parse_webhook_args(&args, url_file_reader(cf, "webhook"))
            .map_err(|source| ConfError::Param {
                directive: D,
                source,
            })?;
        match destination {
            None => {
                if mcf.has_alert_destinations() || mcf.webhook_off.is_some() {
                    return Err(refused(DestinationError::OffWithOthers));
                }
                mcf.webhook_off = Some(place(cf));
                Ok(())
            }
            Some(destination) => mcf.add_destination(destination).map_err(refused),
        }
    })
}

extern "C" fn set_alertmanager(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert_alertmanager";
    handle(cf, conf, |cf, mcf: &mut MainConf| {
        let err = |message: String| ConfError::Invalid {
            directive: D,
            message,
        };
        let param = |source| ConfError::Param {
            directive: D,
            source,
        };
        let args = args(cf, D)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (route, args) = take_route_args(&args).map_err(param)?;
        let route = route
            .rules_for(WebhookFormat::Alertmanager)
            .map_err(param)?;
        let mut urls = Vec::new();
        for arg in args {
            match arg.strip_prefix("file=") {
                Some(path) => {
                    let full = full_conf_path(cf, path);
                    let text = std::fs::read_to_string(&full).map_err(|e| {
                        err(format!(
                            "cannot read Alertmanager URLs from \"{full}\": {e}"
                        ))
                    })?;
                    urls.extend(text.split_whitespace().map(str::to_string));
                }
                None => urls.push(arg.to_string()),
            }
        }
        if urls.is_empty() {
            return Err(err("needs at least one URL".into()));
        }
        for url in urls {
            let url = destination::parse_alertmanager_url(&url).map_err(param)?;
            let format = WebhookFormat::Alertmanager;
            let route = route.clone();
            mcf.add_destination(Destination { url, format, route })
                .map_err(|source| ConfError::Destination {
                    directive: D,
                    source,
                })?;
        }
        Ok(())
    })
}

extern "C" fn set_heartbeat(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert_heartbeat";
    handle(cf, conf, |cf, mcf: &mut MainConf| {
        if mcf.heartbeat.is_some() {
            return Err(ConfError::Duplicate);
        }
        let args = args(cf, D)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (url, interval_ms) =
            destination::parse_heartbeat_args(&args, url_file_reader(cf, "heartbeat")).map_err(
                |source| ConfError::Param {
                    directive: D,
                    source,
                },
            )?;
        mcf.set_heartbeat(url, interval_ms, place(cf))
    })
}

/// Reads the URL of a `file=PATH` parameter, the path resolved like [`full_conf_path`];
/// `what` names the URL in the error.
fn url_file_reader<'a>(
    cf: &'a ngx_conf_t,
    what: &'static str,
) -> impl FnOnce(&str) -> Result<String, ParamError> + 'a {
    move |path| {
        let full = full_conf_path(cf, path);
        std::fs::read_to_string(&full).map_err(|e| ParamError::UnreadableFile {
            what,
            path: full,
            reason: e.to_string(),
        })
    }
}

/// Resolves a relative path against nginx's configuration prefix, like `ssl_certificate`.
fn full_conf_path(cf: &ngx_conf_t, path: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    // SAFETY: cf.cycle is valid during configuration parsing.
    let prefix = unsafe { (*cf.cycle).conf_prefix };
    format!("{prefix}{path}")
}

extern "C" fn set_interval(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert_interval";
    handle(cf, conf, |cf, mcf: &mut MainConf| {
        if mcf.interval_ms.is_some() {
            return Err(ConfError::Duplicate);
        }
        let value = args(cf, D)?.remove(0);
        let interval = params::parse_interval(&value).map_err(|source| ConfError::Param {
            directive: D,
            source,
        })?;
        mcf.interval_ms = Some(interval);
        Ok(())
    })
}

extern "C" fn set_certificates(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert_certificates";
    handle(cf, conf, |cf, lcf: &mut LocConf| {
        if lcf.certificates.is_some() {
            return Err(ConfError::Duplicate);
        }
        let args = args(cf, D)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let params = certificates::parse(&args).map_err(|source| ConfError::Param {
            directive: D,
            source,
        })?;
        lcf.certificates = Some(params);
        Ok(())
    })
}

extern "C" fn set_buckets(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert_buckets";
    handle(cf, conf, |cf, mcf: &mut MainConf| {
        let err = |message: String| ConfError::Invalid {
            directive: D,
            message,
        };
        if mcf.buckets.is_some() {
            return Err(ConfError::Duplicate);
        }
        let args = args(cf, D)?;
        let ms =
            alert_params::parse_buckets(args.iter().map(String::as_str)).map_err(|source| {
                ConfError::Param {
                    directive: D,
                    source,
                }
            })?;
        let bounds = BucketBounds::new(&ms)
            .ok_or_else(|| err("expects 1 to 30 increasing times".to_string()))?;
        mcf.buckets = Some((bounds, place(cf)));
        Ok(())
    })
}

extern "C" fn set_zone(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert_zone";
    handle(cf, conf, |cf, mcf: &mut MainConf| {
        let err = |message: String| ConfError::Invalid {
            directive: D,
            message,
        };
        if mcf.zone_size.is_some() {
            return Err(ConfError::Duplicate);
        }
        let value = args(cf, D)?.remove(0);
        let size = params::parse_size(&value)
            .filter(|s| *s >= 64 * 1024)
            .ok_or_else(|| {
                err(format!(
                    "invalid zone size \"{value}\", expected at least 64k"
                ))
            })?;
        mcf.zone_size = Some((size, place(cf)));
        Ok(())
    })
}

extern "C" fn set_state_path(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert_state_path";
    handle(cf, conf, |cf, mcf: &mut MainConf| {
        if mcf.state_path.is_some() {
            return Err(ConfError::Duplicate);
        }
        let value = args(cf, D)?.remove(0);
        if value.is_empty() || value.contains('\0') {
            return Err(ConfError::Invalid {
                directive: D,
                message: format!("invalid path \"{value}\""),
            });
        }
        mcf.state_path = Some((value, place(cf)));
        Ok(())
    })
}

extern "C" fn set_maintenance(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert_maintenance";
    handle(cf, conf, |cf, mcf: &mut MainConf| {
        let args = args(cf, D)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let window = maintenance::parse_maintenance(&args).map_err(|source| ConfError::Param {
            directive: D,
            source,
        })?;
        // Whether the NAME exists is known once the http block is read (`MainConf::validate`).
        mcf.maintenance.windows.push(window);
        mcf.maintenance_places.push(place(cf));
        Ok(())
    })
}

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

/// A directive's handler, as nginx calls it.
type SetHandler =
    unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

/// One entry of the directive table: `name` at the levels and arities `type_`, handled by `set`
/// with the configuration at offset `conf`.
const fn command(name: ngx_str_t, type_: u32, set: SetHandler, conf: usize) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf: conf as ngx_uint_t,
        offset: 0,
        post: ptr::null_mut(),
    }
}

/// The module's directives.
pub static mut COMMANDS: [ngx_command_t; 13] = [
    command(
        ngx_string!("status_alert"),
        ANY_LEVEL | NGX_CONF_1MORE,
        set_status_alert,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("status_alert_probe"),
        ANY_LEVEL | NGX_CONF_1MORE,
        set_status_alert_probe,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("status_alert_webhook"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
        set_webhook,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("status_alert_alertmanager"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
        set_alertmanager,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("status_alert_heartbeat"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE12,
        set_heartbeat,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("status_alert_interval"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        set_interval,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("status_alert_certificates"),
        NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_CONF_ANY,
        set_certificates,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    command(
        ngx_string!("status_alert_buckets"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
        set_buckets,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("status_alert_zone"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        set_zone,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("status_alert_state_path"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
        set_state_path,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("status_alert_maintenance"),
        NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
        set_maintenance,
        NGX_HTTP_MAIN_CONF_OFFSET,
    ),
    command(
        ngx_string!("status_metrics"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS | NGX_CONF_TAKE1,
        crate::expose::handler::set_metrics,
        NGX_HTTP_LOC_CONF_OFFSET,
    ),
    ngx_command_t::empty(),
];
