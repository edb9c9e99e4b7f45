//! Configuration: directive table, handlers and the per-level configuration structs.
//!
//! Values are parsed by `params.rs`; this file only moves them between nginx and Rust and
//! reports errors the way nginx does (`nginx: [emerg] ... in file:line`).

use core::ffi::{c_char, c_void};
use core::{fmt, ptr};

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_str_t, ngx_uint_t, NGX_CONF_1MORE, NGX_CONF_NOARGS,
    NGX_CONF_TAKE1, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET, NGX_HTTP_MAIN_CONF,
    NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_EMERG,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_string;

use crate::counters::BucketBounds;
use crate::params::{self, AlertParams, WebhookFormat, WebhookTarget};
use crate::probe_spec::{self, ProbeSpec};
use crate::zone::{NameSlot, ProbeSlot, Zone};
use crate::HttpStatusAlertModule;

/// One distinct `status_alert` NAME of the configuration.
///
/// `repr(C)` with the NAME's bytes first: a pointer to a `NameConf` is also the value of the
/// binding variable, which is how a request remembers its NAME across internal redirects.
#[repr(C)]
pub struct NameConf {
    /// The NAME's bytes (`name.len()` of them are valid).
    pub label: [u8; crate::params::MAX_NAME_LEN],
    /// The NAME.
    pub name: String,
    /// Its parameters (identical at every place that uses the NAME).
    pub params: AlertParams,
    /// `file:line` of the first `status_alert` with this NAME, for error messages.
    pub place: String,
    /// Its slot in the shared zone; set when the zone is initialised.
    pub slot: *const NameSlot,
}

/// One `status_alert_probe` target.
pub struct ProbeConf {
    /// What to probe and how.
    pub spec: ProbeSpec,
    /// `file:line` of the directive.
    pub place: String,
    /// Its slot in the shared zone; set when the zone is initialised.
    pub slot: *const ProbeSlot,
    /// The target's addresses, resolved once the configuration is read (empty: not found).
    pub addrs: Vec<std::net::SocketAddr>,
}

impl ProbeConf {
    /// Key of the probe's slot: NAME, a space, the target without credentials.
    pub fn key(&self) -> Vec<u8> {
        let mut k = self.spec.name.clone().into_bytes();
        k.push(b' ');
        k.extend_from_slice(self.spec.target.display().as_bytes());
        k.truncate(crate::zone::PROBE_KEY_MAX);
        k
    }
}

/// `http`-level configuration.
#[derive(Default)]
pub struct MainConf {
    /// Every NAME. Boxed: location configurations point at them while the Vec grows.
    #[allow(clippy::vec_box)]
    pub names: Vec<Box<NameConf>>,
    /// Every probe target.
    pub probes: Vec<ProbeConf>,
    /// `status_alert_interval`, ms.
    pub interval_ms: Option<u64>,
    /// Where alerts are posted (`status_alert_webhook`, `status_alert_alertmanager`), in
    /// configuration order.
    pub destinations: Vec<Destination>,
    /// `status_alert_webhook off` was given (where).
    pub webhook_off: Option<String>,
    /// `status_alert_buckets`, and where it was set.
    pub buckets: Option<(BucketBounds, String)>,
    /// The bounds in ms as the request path reads them (set in postconfiguration).
    pub bucket_ms: Vec<u64>,
    /// `status_alert_zone`, bytes, and where it was set.
    pub zone_size: Option<(usize, String)>,
    /// The primary zone (this configuration counts into it), once initialised.
    pub zone: Option<Zone>,
    /// The configuration generation this configuration's slots were claimed under.
    pub generation: u64,
    /// The previous configuration's zones other than the primary; master only, until commit.
    pub old_zones: Vec<OldZone>,
    /// Zones older workers still count into: the evaluator moves their counts into the primary.
    pub draining: Vec<Draining>,
    /// The previous primary, if it is draining: its evaluator's last state is taken over.
    pub predecessor: Option<Zone>,
    /// Index of the binding variable (handler::BINDING_VARIABLE) in each request's variable
    /// array; set when there are NAMEs.
    pub name_var_index: usize,
}

/// Most alert destinations (webhooks and Alertmanagers together) one configuration may have.
pub const MAX_DESTINATIONS: usize = crate::zone::MAX_DESTINATIONS;

/// One place alerts are posted to.
#[derive(Clone, Debug, PartialEq)]
pub struct Destination {
    /// The URL, secret included: never logged or exported as is.
    pub url: String,
    /// Payload format.
    pub format: WebhookFormat,
}

impl Destination {
    /// The `destination` label of destination number `i` (0-based): format and position,
    /// never the URL (which holds the token).
    pub fn label(&self, i: usize) -> String {
        format!("{}-{}", self.format.name(), i + 1)
    }
}

/// A zone of the previous configuration.
pub struct OldZone {
    /// Its memory (mapped until the new configuration commits, longer if kept).
    pub zone: Zone,
    /// Registered again, because processes that count into it still live.
    pub kept: bool,
}

/// A zone older workers still count into.
pub struct Draining {
    /// Its memory.
    pub zone: Zone,
    /// (slot in the primary, slot in this zone) of every NAME in both.
    pub pairs: Vec<(*const NameSlot, *const NameSlot)>,
}

impl MainConf {
    /// Histogram bounds (`status_alert_buckets` or the default).
    pub fn bucket_bounds(&self) -> BucketBounds {
        self.buckets.as_ref().map(|(b, _)| *b).unwrap_or_default()
    }

    /// Zone keys of every NAME and every probe, in configuration order.
    pub fn keys(&self) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let names = self
            .names
            .iter()
            .map(|n| n.name.as_bytes().to_vec())
            .collect();
        let probes = self.probes.iter().map(ProbeConf::key).collect();
        (names, probes)
    }

    /// Evaluation interval in ms.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms.unwrap_or(params::DEFAULT_INTERVAL_MS)
    }

    /// Adds a destination, refusing the same URL and format twice and more than
    /// [`MAX_DESTINATIONS`].
    fn add_destination(&mut self, url: String, format: WebhookFormat) -> Result<(), String> {
        if let Some(place) = &self.webhook_off {
            return Err(format!(
                "alerts are turned off by \"status_alert_webhook off\" in {place}"
            ));
        }
        if self
            .destinations
            .iter()
            .any(|d| d.url == url && d.format == format)
        {
            return Err(format!(
                "{} is duplicate",
                crate::notifier::redact_url(&url)
            ));
        }
        if self.destinations.len() >= MAX_DESTINATIONS {
            return Err(format!("at most {MAX_DESTINATIONS} destinations"));
        }
        self.destinations.push(Destination { url, format });
        Ok(())
    }

    /// Adds a probe, refusing a second probe of the same target under the same NAME. Targets
    /// are compared as shown (without credentials): two probes differing only in `user:pass@`
    /// would share one metric series and one slot.
    pub fn add_probe(&mut self, probe: ProbeConf) -> Result<(), String> {
        let spec = &probe.spec;
        if let Some(other) = self
            .probes
            .iter()
            .find(|o| o.spec.name == spec.name && o.spec.target.display() == spec.target.display())
        {
            return Err(format!(
                "\"{}\" already probes {} at {}",
                spec.name,
                spec.target.display(),
                other.place
            ));
        }
        self.probes.push(probe);
        Ok(())
    }

    /// Checks what can only be checked once the whole `http` block is read.
    pub fn validate(&self) -> Result<(), String> {
        let interval = self.interval_ms();
        let bounds = self.bucket_bounds();
        for n in &self.names {
            params::check_window(n.params.window_ms, interval)
                .map_err(|e| format!("status_alert \"{}\": {e} in {}", n.name, n.place))?;
            if let Some(latency) = &n.params.latency {
                params::check_latency_buckets(latency, bounds.as_ms()).map_err(|e| {
                    let at = self.buckets.as_ref().map(|(_, p)| p.as_str());
                    format!(
                        "status_alert \"{}\": {e} in {}{}",
                        n.name,
                        n.place,
                        at.map(|p| format!(" (status_alert_buckets in {p})"))
                            .unwrap_or_default()
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// What `status_alert` says for a context.
#[derive(Clone, Copy, Debug, Default)]
pub enum AlertSetting {
    /// Not set here: inherit.
    #[default]
    Unset,
    /// `status_alert off`.
    Off,
    /// Count under this NAME.
    Name(*const NameConf),
}

/// `http`, `server` and `location`-level configuration.
#[derive(Default)]
pub struct LocConf {
    /// Counting for this context.
    pub alert: AlertSetting,
    /// `status_metrics` handler enabled here.
    pub metrics: bool,
    /// Probes of this location that take their NAME from `status_alert`.
    pub pending_probes: Vec<ProbeConf>,
}

impl LocConf {
    /// Inherits from the enclosing level, then gives NAME-less probes this context's NAME.
    pub fn merge_into(&mut self, prev: &LocConf, mcf: &mut MainConf) -> Result<(), String> {
        if let AlertSetting::Unset = self.alert {
            self.alert = prev.alert;
        }
        for mut probe in core::mem::take(&mut self.pending_probes) {
            let Some(name) = self.name().map(|n| n.name.clone()) else {
                return Err(format!(
                    "status_alert_probe: name= is required outside a location with \
                     \"status_alert NAME\" in {}",
                    probe.place
                ));
            };
            probe.spec.name = name;
            let place = probe.place.clone();
            mcf.add_probe(probe)
                .map_err(|e| format!("status_alert_probe: {e} in {place}"))?;
        }
        Ok(())
    }
}

impl LocConf {
    /// The NAME this context counts under, if any.
    pub fn name(&self) -> Option<&NameConf> {
        match self.alert {
            // SAFETY: NameConfs are boxed in the MainConf of the same cycle and live as long.
            AlertSetting::Name(n) => unsafe { n.as_ref() },
            _ => None,
        }
    }
}

/// A configuration error, printed as `<directive>: <message>`.
struct ConfError {
    directive: &'static str,
    message: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.directive, self.message)
    }
}

/// Reports `err` at the directive being parsed (nginx appends `in file:line`).
fn conf_error(cf: *mut ngx_conf_t, err: ConfError) -> *mut c_char {
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
            a.to_str().map(str::to_string).map_err(|_| ConfError {
                directive,
                message: format!("invalid value \"{a}\": not UTF-8"),
            })
        })
        .collect()
}

/// Runs a directive handler body with references made from nginx's pointers.
fn handle<C>(
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
        let err = |message: String| ConfError {
            directive: D,
            message,
        };
        if !matches!(lcf.alert, AlertSetting::Unset) {
            return Err(err("is duplicate".into()));
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
        params::validate_name(name).map_err(|e| err(e.to_string()))?;
        let p = params::parse_alert_params(args[1..].iter().map(String::as_str))
            .map_err(|e| err(format!("\"{name}\": {e}")))?;
        let here = place(cf);
        let mcf = main_conf(cf);
        let existing = mcf.names.iter().find(|n| n.name == name);
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
                });
                let p: *const NameConf = &*nc;
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
        let err = |message: String| ConfError {
            directive: D,
            message,
        };
        let args = args(cf, D)?;
        // In a location the NAME may come from `status_alert` (also one written later in the
        // block or inherited), so it is resolved when the location is merged.
        let in_location = cf.cmd_type == NGX_HTTP_LOC_CONF as ngx_uint_t;
        let spec = probe_spec::parse(&args, !in_location).map_err(|e| err(e.to_string()))?;
        let probe = ProbeConf {
            spec,
            place: place(cf),
            slot: ptr::null(),
            addrs: Vec::new(),
        };
        if probe.spec.name.is_empty() {
            lcf.pending_probes.push(probe);
            return Ok(());
        }
        main_conf(cf).add_probe(probe).map_err(err)
    })
}

extern "C" fn set_webhook(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_alert_webhook";
    handle(cf, conf, |cf, mcf: &mut MainConf| {
        let err = |message: String| ConfError {
            directive: D,
            message,
        };
        let args = args(cf, D)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let read = |path: &str| {
            let full = full_conf_path(cf, path);
            std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read webhook URL from \"{full}\": {e}"))
        };
        let (target, format) =
            params::parse_webhook_args(&args, read).map_err(|e| err(e.to_string()))?;
        match target {
            WebhookTarget::Off => {
                if !mcf.destinations.is_empty() || mcf.webhook_off.is_some() {
                    return Err(err(
                        "\"off\" cannot be combined with other destinations".into()
                    ));
                }
                mcf.webhook_off = Some(place(cf));
                Ok(())
            }
            WebhookTarget::Url(url) => mcf.add_destination(url, format).map_err(err),
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
        let err = |message: String| ConfError {
            directive: D,
            message,
        };
        let mut urls = Vec::new();
        for arg in args(cf, D)? {
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
                None => urls.push(arg),
            }
        }
        if urls.is_empty() {
            return Err(err("needs at least one URL".into()));
        }
        for url in urls {
            let url = params::parse_alertmanager_url(&url).map_err(|e| err(e.to_string()))?;
            mcf.add_destination(url, WebhookFormat::Alertmanager)
                .map_err(err)?;
        }
        Ok(())
    })
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
        let err = |message: String| ConfError {
            directive: D,
            message,
        };
        if mcf.interval_ms.is_some() {
            return Err(err("is duplicate".into()));
        }
        let value = args(cf, D)?.remove(0);
        mcf.interval_ms = Some(params::parse_interval(&value).map_err(|e| err(e.to_string()))?);
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
        let err = |message: String| ConfError {
            directive: D,
            message,
        };
        if mcf.buckets.is_some() {
            return Err(err("is duplicate".into()));
        }
        let args = args(cf, D)?;
        let ms = params::parse_buckets(args.iter().map(String::as_str))
            .map_err(|e| err(e.to_string()))?;
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
        let err = |message: String| ConfError {
            directive: D,
            message,
        };
        if mcf.zone_size.is_some() {
            return Err(err("is duplicate".into()));
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

extern "C" fn set_metrics(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    const D: &str = "status_metrics";
    handle(cf, conf, |cf, lcf: &mut LocConf| {
        if lcf.metrics {
            return Err(ConfError {
                directive: D,
                message: "is duplicate".into(),
            });
        }
        lcf.metrics = true;
        let clcf = NgxHttpCoreModule::location_conf_mut(cf).expect("http core loc conf");
        clcf.handler = Some(crate::handler::metrics_handler);
        Ok(())
    })
}

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

/// The module's directives.
pub static mut COMMANDS: [ngx_command_t; 9] = [
    ngx_command_t {
        name: ngx_string!("status_alert"),
        type_: (ANY_LEVEL | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(set_status_alert),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("status_alert_probe"),
        type_: (ANY_LEVEL | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(set_status_alert_probe),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("status_alert_webhook"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(set_webhook),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("status_alert_alertmanager"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(set_alertmanager),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("status_alert_interval"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set_interval),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("status_alert_buckets"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE) as ngx_uint_t,
        set: Some(set_buckets),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("status_alert_zone"),
        type_: (NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1) as ngx_uint_t,
        set: Some(set_zone),
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t {
        name: ngx_string!("status_metrics"),
        type_: (NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS) as ngx_uint_t,
        set: Some(set_metrics),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset: 0,
        post: ptr::null_mut(),
    },
    ngx_command_t::empty(),
];
