//! Configuration: the per-level structs the directives fill, the parsing of their values
//! (`params` for the syntax, `alert_params`, `destination`, `probe_spec`), the checks made once
//! the `http` block is read, the private state directory (`state_dir`), and the FFI that ties
//! them to nginx: the directive table (`directives`), the state path (`state_path`), the
//! shared zones (`zone_setup`) and probes' `body_regex=` (`regex`).
//!
//! Everything here but those four FFI files is plain Rust, unit-tested without nginx.

pub mod alert_params;
pub mod certificate_file;
pub mod certificates;
pub mod destination;
#[cfg(not(test))]
pub(crate) mod directives;
pub mod maintenance;
#[cfg(not(test))]
pub(crate) mod mute_lock;
pub mod params;
pub mod peers;
pub mod probe_spec;
#[cfg(not(test))]
pub(crate) mod regex;
pub mod route;
#[cfg(not(test))]
pub(crate) mod ssl_servers;
pub mod state_dir;
#[cfg(not(test))]
pub(crate) mod state_path;
pub mod traffic;
#[cfg(not(test))]
pub(crate) mod upstream_peers;
#[cfg(not(test))]
pub(crate) mod zone_setup;

use alert_params::AlertParams;
use destination::{Destination, DestinationError, WebhookFormat, MAX_DESTINATIONS};
use params::ParamError;
use peers::PeerGroup;
use probe_spec::{ProbeSpec, ProbeSpecError};
use thiserror::Error;

use crate::vocab::redact::redact_url;
use crate::zone::counters::BucketBounds;
use crate::zone::{NameSlot, ProbeSlot, Zone, ZoneError};
use state_dir::StateDirError;

/// A configuration error, worded like nginx's own; `directives` turns it into `nginx -t` output.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfError {
    /// The directive was already given at this level (nginx words this one itself).
    #[error("is duplicate")]
    Duplicate,
    /// A bad value or a conflict found while the directive is parsed.
    #[error("{directive}: {message}")]
    Invalid {
        /// The directive.
        directive: &'static str,
        /// What is wrong, naming the bad value.
        message: String,
    },
    /// A value of the directive that does not parse.
    #[error("{directive}: {source}")]
    Param {
        /// The directive.
        directive: &'static str,
        /// What is wrong with the value.
        source: ParamError,
    },
    /// A parameter of `status_alert NAME` that does not parse.
    #[error("{directive}: \"{name}\": {source}")]
    NameParam {
        /// The directive.
        directive: &'static str,
        /// The NAME.
        name: String,
        /// What is wrong with the parameter.
        source: ParamError,
    },
    /// A `status_alert_probe` that cannot be accepted.
    #[error("status_alert_probe: {0}")]
    Probe(#[from] ProbeSpecError),
    /// A destination that cannot be added.
    #[error("{directive}: {source}")]
    Destination {
        /// The directive.
        directive: &'static str,
        /// Why not.
        source: DestinationError,
    },
    /// A conflict found once the `http` block is read, at a place the message names.
    #[error("{directive}: {message} in {place}")]
    At {
        /// The directive.
        directive: &'static str,
        /// What is wrong.
        message: String,
        /// `file:line` of the directive.
        place: String,
    },
    /// A NAME's parameters that do not fit the rest of the `http` block.
    #[error("{directive} \"{name}\": {source} in {place}")]
    Name {
        /// The directive.
        directive: &'static str,
        /// The NAME.
        name: String,
        /// What is wrong (boxed: it is the largest error, and rare).
        source: Box<ParamError>,
        /// `file:line` of the NAME, and of what it conflicts with.
        place: String,
    },
}

/// What stops a configuration from being set up once it is read: the state directory, the
/// shared zones (`nginx -t` prints it at `emerg`).
#[derive(Debug, Error)]
pub enum SetupError {
    /// A check made once the `http` block is read.
    #[error(transparent)]
    Conf(#[from] ConfError),
    /// nginx would not take the state directory as one of its paths.
    #[error("status_alert: could not register the state path \"{0}\"")]
    StatePath(String),
    /// The state directory is not safe from other users; `at` names the directive, if given.
    #[error("status_alert: {source}{at}")]
    StateDir {
        /// What is wrong with it.
        source: StateDirError,
        /// ` (status_alert_state_path in file:line)`, or empty for the default path.
        at: String,
    },
    /// The configuration does not fit the zone size it asks for.
    #[error(transparent)]
    ZoneSize(#[from] ZoneError),
    /// The zone's name could not be allocated.
    #[error("could not allocate the zone name")]
    ZoneName,
    /// nginx would not add the zone.
    #[error("could not add the shared memory zone {0}")]
    ZoneAdd(String),
    /// The zone's memory could not be allocated.
    #[error("status_alert: could not allocate {0} bytes in the shared zone")]
    ZoneAlloc(usize),
    /// A reused zone's payload is not where it can be.
    #[error(
        "status_alert: the shared zone \"{0}\" is damaged (its payload is not where it can \
         be); restart nginx"
    )]
    ZoneDamaged(String),
    /// The zone cannot hold the configuration's slots.
    #[error("status_alert: the shared zone {0}; raise status_alert_zone")]
    ZoneFull(ZoneError),
}

/// One distinct `status_alert` NAME of the configuration.
///
/// `repr(C)` with the NAME's bytes first: a pointer to a `NameConf` is also the value of the
/// binding variable, which is how a request remembers its NAME across internal redirects.
#[repr(C)]
pub struct NameConf {
    /// The NAME's bytes (`name.len()` of them are valid).
    pub label: [u8; params::MAX_NAME_LEN],
    /// The NAME.
    pub name: String,
    /// Its parameters (identical at every place that uses the NAME).
    pub params: AlertParams,
    /// `file:line` of the first `status_alert` with this NAME, for error messages.
    pub place: String,
    /// Its slot in the shared zone; set when the zone is initialised.
    pub slot: *const NameSlot,
    /// The peer group of the upstream the NAME's first proxying location passes requests to
    /// (in `MainConf::peer_groups`): the request path tries it first.
    pub peers: Option<core::ptr::NonNull<PeerGroup>>,
}

/// One `status_alert_probe` target.
pub struct ProbeConf {
    /// What to probe and how.
    pub spec: ProbeSpec,
    /// `file:line` of the directive.
    pub place: String,
    /// Its slot in the shared zone; set when the zone is initialised.
    pub slot: *const ProbeSlot,
    /// The target's addresses, resolved once the configuration is read (empty: not found, or
    /// resolved before every probe by `resolver`).
    pub addrs: Vec<std::net::SocketAddr>,
    /// The `ngx_http_core_loc_conf_t` of the level the directive is in (null in unit tests):
    /// once the `http` block is merged, its `resolver` and `resolver_timeout` are the probe's.
    pub core_loc_conf: *const core::ffi::c_void,
    /// nginx's `resolver` for a host name, set once the configuration is read when one is
    /// configured: the name is then looked up before every probe.
    pub resolver: Option<ProbeResolver>,
    /// The `ngx_regex_t` of `body_regex=`, compiled by nginx's PCRE when the directive is read
    /// (null: none; it lives as long as the configuration).
    pub body_regex: *const core::ffi::c_void,
    /// This module's configuration of the level the directive is in (null in unit tests):
    /// merged by postconfiguration, when its `status_alert_certificates` is read.
    pub loc_conf: *const LocConf,
    /// The certificate thresholds of an HTTPS target (`None`: off), set at postconfiguration.
    pub certificates: Option<certificates::CertificateParams>,
    /// Set for a slot of the pool of a `server ... resolve` peer: its target is whatever
    /// address the slot holds now (see [`ProbeConf::current`]).
    pub resolve: Option<ResolveMember>,
}

/// One of the probe slots reserved for a `server ... resolve` of an `upstream=` probe
/// ([`RESOLVE_POOL`] per server): the evaluator gives it to one of the addresses nginx
/// resolves the name to now (`probe/resolve_pool/mod.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolveMember {
    /// Which pool: the same for the slots of one server of one probe directive.
    pub pool: usize,
    /// The `server` as written (`app.internal:8080`).
    pub server: String,
    /// Its place in the pool, from 0.
    pub member: usize,
}

/// Probe slots reserved per `server ... resolve` of an `upstream=` probe: the addresses it is
/// probed at, at most. Beyond them an address is not probed (the evaluator logs which).
pub const RESOLVE_POOL: usize = 8;

/// The `resolver` a probe looks its host name up with, and `resolver_timeout`.
#[derive(Clone, Copy, Debug)]
pub struct ProbeResolver {
    /// nginx's resolver, owned by the cycle (it lives as long as this configuration).
    pub resolver: *mut nginx_sys::ngx_resolver_t,
    /// `resolver_timeout`, ms.
    pub timeout_ms: nginx_sys::ngx_msec_t,
}

impl ProbeConf {
    /// Key of the probe's slot: NAME, a space, the target without credentials. Whole: the
    /// zone shortens a long one without losing what tells it apart (`zone::slot_key`).
    pub fn key(&self) -> Vec<u8> {
        let mut k = self.spec.name.clone().into_bytes();
        k.push(b' ');
        k.extend_from_slice(self.spec.target.display().as_bytes());
        if let Some(r) = &self.resolve {
            k.extend_from_slice(format!(" resolve {} #{}", r.server, r.member).as_bytes());
        }
        k
    }

    /// The probe as it stands now: a fixed target's own, or for a slot of a `server ...
    /// resolve` pool the probe of the address the slot holds (`None` while it holds none).
    pub fn current(&self) -> Option<std::borrow::Cow<'_, ProbeSpec>> {
        if self.resolve.is_none() {
            return Some(std::borrow::Cow::Borrowed(&self.spec));
        }
        // SAFETY: slots point into the mapped zone once it is initialised.
        let slot = unsafe { self.slot.as_ref() }?;
        let addr = slot.address.get()?;
        Some(std::borrow::Cow::Owned(self.spec.for_peer(addr)))
    }
}

/// `http`-level configuration.
#[derive(Default)]
pub struct MainConf {
    /// Every NAME. Boxed: location configurations point at them while the Vec grows.
    #[allow(clippy::vec_box)]
    pub names: Vec<Box<NameConf>>,
    /// Index of each NAME in `names`, so that each `status_alert` finds its NAME at once (a
    /// search of `names` made 10,000 NAMEs 5 × 10^7 string comparisons).
    pub name_index: std::collections::HashMap<String, usize>,
    /// The certificates nginx serves, read once the `http` block is merged.
    pub certificates: Vec<WatchedCertificate>,
    /// Every probe target.
    pub probes: Vec<ProbeConf>,
    /// `status_alert_interval`, ms.
    pub interval_ms: Option<u64>,
    /// Where alerts are posted (`status_alert_webhook`, `status_alert_alertmanager`), in
    /// configuration order.
    pub destinations: Vec<Destination>,
    /// `status_alert_webhook off` was given (where).
    pub webhook_off: Option<String>,
    /// `status_alert_heartbeat`: its `interval=` in ms, and where it was set. Its URL is the
    /// last of `destinations` (see [`MainConf::heartbeat`]).
    pub heartbeat: Option<(u64, String)>,
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
    /// `status_alert_state_path` as written, and where.
    pub state_path: Option<(String, String)>,
    /// The state directory in force (absolute): set in postconfiguration.
    pub state_dir: String,
    /// The cycle this configuration belongs to (set in postconfiguration): its core
    /// configuration says, once read, which user the workers run as.
    pub cycle: Option<core::ptr::NonNull<nginx_sys::ngx_cycle_t>>,
    /// `status_alert_maintenance` windows, in configuration order.
    pub maintenance: maintenance::Maintenance,
    /// Where each window of `maintenance` was set.
    pub maintenance_places: Vec<String>,
    /// The slab pool of the primary zone, once initialised: its lock guards the mute table
    /// (see `conf/mute_lock.rs`).
    pub zone_pool: Option<core::ptr::NonNull<nginx_sys::ngx_slab_pool_t>>,
    /// The upstreams NAMEs' locations pass requests to, with their peers (`conf/peers.rs`).
    /// Boxed: locations point at them while the Vec grows.
    #[allow(clippy::vec_box)]
    pub peer_groups: Vec<Box<PeerGroup>>,
    /// Index of each group in `peer_groups` by its upstream's address (`PeerGroup::identity`):
    /// 10,000 NAMEs with an upstream each would otherwise search 5 × 10^7 times.
    pub peer_group_index: std::collections::HashMap<usize, usize>,
    /// Tries of NAMEs' requests to an upstream not in `peer_groups`; set with the first group.
    pub peer_catch_all: Option<Box<PeerGroup>>,
    /// `ctx_index` of the modules that pass requests to upstreams (`conf/upstream_peers.rs`),
    /// found once.
    pub passing_modules: Option<Vec<nginx_sys::ngx_uint_t>>,
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

    /// Zone keys of every NAME, and of the probe table: every probe, every watched
    /// certificate, then every upstream peer's cells ([`MainConf::all_peer_groups`]), each in
    /// configuration order.
    pub fn keys(&self) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let names = self
            .names
            .iter()
            .map(|n| n.name.as_bytes().to_vec())
            .collect();
        let probes = self.probes.iter().map(ProbeConf::key);
        let certificates = self.certificates.iter().map(WatchedCertificate::key);
        let peers = self.all_peer_groups().flat_map(PeerGroup::keys);
        (names, probes.chain(certificates).chain(peers).collect())
    }

    /// The peer groups, the catch-all last.
    pub fn all_peer_groups(&self) -> impl Iterator<Item = &PeerGroup> + '_ {
        self.peer_groups
            .iter()
            .chain(self.peer_catch_all.iter())
            .map(|g| &**g)
    }

    /// The group of the upstream `identity` (its `ngx_http_upstream_srv_conf_t`), made by
    /// `make` the first time; the catch-all group comes with the first.
    pub fn peer_group_for(
        &mut self,
        identity: *const core::ffi::c_void,
        make: impl FnOnce() -> PeerGroup,
    ) -> core::ptr::NonNull<PeerGroup> {
        self.peer_catch_all
            .get_or_insert_with(|| Box::new(PeerGroup::catch_all()));
        let next = self.peer_groups.len();
        let at = *self
            .peer_group_index
            .entry(identity as usize)
            .or_insert(next);
        if at == next {
            self.peer_groups.push(Box::new(make()));
        }
        core::ptr::NonNull::from(&*self.peer_groups[at])
    }

    /// The group a try of upstream `identity` counts in: its own, else the catch-all. The
    /// request path's slow way, for a request that went to another upstream than its NAME's
    /// (a `proxy_pass` with variables): a lookup in a map, no allocation.
    #[cold]
    #[inline(never)]
    pub fn peer_group_of(&self, identity: *const core::ffi::c_void) -> Option<&PeerGroup> {
        let own = (!identity.is_null())
            .then(|| self.peer_group_index.get(&(identity as usize)))
            .flatten()
            .and_then(|i| self.peer_groups.get(*i));
        own.or(self.peer_catch_all.as_ref()).map(|g| &**g)
    }

    /// Evaluation interval in ms.
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms.unwrap_or(params::DEFAULT_INTERVAL_MS)
    }

    /// Adds an alert destination, refusing the same URL and format twice and more than
    /// [`MAX_DESTINATIONS`]. It goes before the heartbeat, which stays last: alert
    /// destinations keep their labels (`discord-1`, ...) whether or not there is one.
    pub fn add_destination(&mut self, destination: Destination) -> Result<(), DestinationError> {
        if let Some(place) = &self.webhook_off {
            return Err(DestinationError::AlertsOff(place.clone()));
        }
        if self.destinations.iter().any(|d| d.same_place(&destination)) {
            return Err(DestinationError::Duplicate(redact_url(&destination.url)));
        }
        if self.destinations.len() >= MAX_DESTINATIONS {
            return Err(DestinationError::TooMany);
        }
        let routed = self.destinations.iter().filter(|d| d.is_routed()).count();
        if destination.is_routed() && routed >= crate::zone::routes::ROUTE_COLUMNS {
            return Err(DestinationError::TooManyRouted);
        }
        let at = self.heartbeat().map_or(self.destinations.len(), |(i, _)| i);
        self.destinations.insert(at, destination);
        Ok(())
    }

    /// Sets `status_alert_heartbeat`: `url` becomes the last destination (format
    /// [`WebhookFormat::Heartbeat`]), pinged every `interval_ms`. Not an alert destination, so
    /// `status_alert_webhook off` does not refuse it.
    pub fn set_heartbeat(
        &mut self,
        url: String,
        interval_ms: u64,
        place: String,
    ) -> Result<(), ConfError> {
        if self.heartbeat.is_some() {
            return Err(ConfError::Duplicate);
        }
        if self.destinations.len() >= MAX_DESTINATIONS {
            return Err(ConfError::Destination {
                directive: "status_alert_heartbeat",
                source: DestinationError::TooMany,
            });
        }
        self.destinations
            .push(Destination::new(url, WebhookFormat::Heartbeat));
        self.heartbeat = Some((interval_ms, place));
        Ok(())
    }

    /// The heartbeat's index in `destinations` and its interval in ms, if one is configured.
    pub fn heartbeat(&self) -> Option<(usize, u64)> {
        let (interval_ms, _) = self.heartbeat.as_ref()?;
        let index = self
            .destinations
            .iter()
            .position(|d| d.format == WebhookFormat::Heartbeat)?;
        Some((index, *interval_ms))
    }

    /// True when alerts are posted somewhere: a destination other than the heartbeat. Without
    /// one, alerts go to the error log at `warn`.
    pub fn has_alert_destinations(&self) -> bool {
        self.destinations.iter().any(|d| d.format.carries_alerts())
    }

    /// Adds a probe, refusing a second probe of the same target under the same NAME. Targets
    /// are compared as shown (without credentials): two probes differing only in `user:pass@`
    /// would share one metric series and one slot.
    pub fn add_probe(&mut self, probe: ProbeConf) -> Result<(), ConfError> {
        let spec = &probe.spec;
        if let Some(other) = self
            .probes
            .iter()
            .find(|o| o.spec.name == spec.name && o.spec.target.display() == spec.target.display())
        {
            return Err(ConfError::Invalid {
                directive: "status_alert_probe",
                message: format!(
                    "\"{}\" already probes {} at {}",
                    spec.name,
                    spec.target.display(),
                    other.place
                ),
            });
        }
        self.probes.push(probe);
        Ok(())
    }

    /// Checks what can only be checked once the whole `http` block is read.
    pub fn validate(&self) -> Result<(), ConfError> {
        if let Some((_, place)) = &self.heartbeat {
            // Without NAMEs or probes nothing is evaluated, and beats follow evaluations.
            if self.names.is_empty() && self.probes.is_empty() {
                return Err(ConfError::At {
                    directive: "status_alert_heartbeat",
                    message: "no \"status_alert\" or \"status_alert_probe\" is configured, so \
                              nothing is evaluated and no heartbeat would ever be sent"
                        .into(),
                    place: place.clone(),
                });
            }
        }
        for (w, place) in self
            .maintenance
            .windows
            .iter()
            .zip(&self.maintenance_places)
        {
            if let maintenance::MaintenanceTarget::Name(name) = &w.target {
                if !self.name_index.contains_key(name) {
                    return Err(ConfError::At {
                        directive: "status_alert_maintenance",
                        message: format!(
                            "\"{name}\" is not a NAME of any \"status_alert\" (\"*\" mutes them all)"
                        ),
                        place: place.clone(),
                    });
                }
            }
        }
        let interval = self.interval_ms();
        let bounds = self.bucket_bounds();
        for n in &self.names {
            alert_params::check_window(n.params.window_ms, interval).map_err(|source| {
                ConfError::Name {
                    directive: "status_alert",
                    name: n.name.clone(),
                    source: Box::new(source),
                    place: n.place.clone(),
                }
            })?;
            if let Some(latency) = &n.params.latency {
                alert_params::check_latency_buckets(latency, bounds.as_ms()).map_err(|source| {
                    let at = self.buckets.as_ref().map(|(_, p)| p.as_str());
                    ConfError::Name {
                        directive: "status_alert",
                        name: n.name.clone(),
                        source: Box::new(source),
                        place: format!(
                            "{}{}",
                            n.place,
                            at.map(|p| format!(" (status_alert_buckets in {p})"))
                                .unwrap_or_default()
                        ),
                    }
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

/// A certificate file a server serves, as read when the configuration was loaded.
#[derive(Clone, Debug)]
pub struct WatchedCertificate {
    /// The server's name.
    pub server: String,
    /// The file (absolute).
    pub file: String,
    /// The thresholds in force in that server.
    pub params: certificates::CertificateParams,
    /// What the file held when nginx loaded it: the certificate served until the next reload.
    pub served: Result<certificate_file::CertificateFile, certificate_file::CertificateFileError>,
    /// Its slot in the shared zone (in the probe table); set when the zone is initialised.
    pub slot: *const ProbeSlot,
}

impl WatchedCertificate {
    /// The zone key: `cert:SERVER FILE` (a probe key starts with a NAME, which has no `:`).
    pub fn key(&self) -> Vec<u8> {
        format!("cert:{} {}", self.server, self.file).into_bytes()
    }

    /// The served certificate's expiry, Unix seconds, if the file could be read.
    pub fn served_not_after(&self) -> Option<u64> {
        self.served.as_ref().ok().map(|f| f.not_after_unix)
    }
}

/// `http`, `server` and `location`-level configuration.
#[derive(Default)]
pub struct LocConf {
    /// Counting for this context.
    pub alert: AlertSetting,
    /// `status_metrics` handler enabled here.
    pub metrics: bool,
    /// `status_metrics control=on`: mutes may be set here.
    pub metrics_control: bool,
    /// Probes of this location that take their NAME from `status_alert`.
    pub pending_probes: Vec<ProbeConf>,
    /// `status_alert_certificates` at this level: `None` unset, `Some(None)` off.
    pub certificates: Option<Option<certificates::CertificateParams>>,
}

impl LocConf {
    /// Inherits from the enclosing level, then gives NAME-less probes this context's NAME.
    pub fn merge_into(&mut self, prev: &LocConf, mcf: &mut MainConf) -> Result<(), ConfError> {
        if let AlertSetting::Unset = self.alert {
            self.alert = prev.alert;
        }
        if self.certificates.is_none() {
            self.certificates = prev.certificates;
        }
        for mut probe in core::mem::take(&mut self.pending_probes) {
            let Some(name) = self.name().map(|n| n.name.clone()) else {
                return Err(ConfError::At {
                    directive: "status_alert_probe",
                    message: "name= is required outside a location with \"status_alert NAME\""
                        .into(),
                    place: probe.place,
                });
            };
            probe.spec.name = name;
            let place = probe.place.clone();
            mcf.add_probe(probe).map_err(|e| match e {
                ConfError::Invalid { directive, message } => ConfError::At {
                    directive,
                    message,
                    place,
                },
                e => e,
            })?;
        }
        Ok(())
    }
}

impl LocConf {
    /// The certificate thresholds in force here; `None` with `status_alert_certificates off`.
    pub fn certificate_params(&self) -> Option<certificates::CertificateParams> {
        self.certificates
            .unwrap_or(Some(certificates::CertificateParams::default()))
    }

    /// The NAME this context counts under, if any.
    pub fn name(&self) -> Option<&NameConf> {
        match self.alert {
            // SAFETY: NameConfs are boxed in the MainConf of the same cycle and live as long.
            AlertSetting::Name(n) => unsafe { n.as_ref() },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_upstream_gets_one_peer_group_and_others_count_in_the_catch_all() {
        let mut mcf = MainConf::default();
        assert!(mcf.peer_group_of(core::ptr::null()).is_none());
        let (a, b) = (8usize as *const core::ffi::c_void, 16usize as *const _);
        let peer = [("10.0.0.1:80".to_string(), b"10.0.0.1:80".as_ptr())];
        let first = mcf.peer_group_for(a, || PeerGroup::new("a".into(), a, &peer));
        let again = mcf.peer_group_for(a, || unreachable!("made once"));
        assert_eq!(first, again);
        mcf.peer_group_for(b, || PeerGroup::new("b".into(), b, &[]));
        assert_eq!(mcf.peer_group_of(b).unwrap().upstream, "b");
        assert_eq!(mcf.peer_group_of(a).unwrap().upstream, "a");
        let elsewhere = 24usize as *const _;
        assert_eq!(mcf.peer_group_of(elsewhere).unwrap().upstream, "-");
        assert_eq!(mcf.peer_group_of(core::ptr::null()).unwrap().upstream, "-");
        let (_, probes) = mcf.keys();
        let keys: Vec<String> = probes
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "peer:a 10.0.0.1:80",
                "peer:a other",
                "peer:b other",
                "peer:- other"
            ]
        );
    }

    #[test]
    fn errors_read_like_nginx() {
        let invalid = ConfError::Invalid {
            directive: "status_alert_zone",
            message: "invalid zone size \"1k\", expected at least 64k".into(),
        };
        assert_eq!(
            invalid.to_string(),
            "status_alert_zone: invalid zone size \"1k\", expected at least 64k"
        );
        let name = ConfError::Name {
            directive: "status_alert",
            name: "be".into(),
            source: Box::new(ParamError::Conflict(
                "window=10s is shorter than 2 intervals".into(),
            )),
            place: "nginx.conf:12".into(),
        };
        assert_eq!(
            name.to_string(),
            "status_alert \"be\": window=10s is shorter than 2 intervals in nginx.conf:12"
        );
    }

    #[test]
    fn the_heartbeat_is_one_last_destination_that_gets_no_alerts() {
        let mut mcf = MainConf::default();
        assert!(!mcf.has_alert_destinations());
        mcf.set_heartbeat("https://hc-ping.com/uuid".into(), 30_000, "a:1".into())
            .unwrap();
        assert_eq!(mcf.heartbeat(), Some((0, 30_000)));
        assert!(
            !mcf.has_alert_destinations(),
            "the heartbeat is no alert destination"
        );
        let again = mcf.set_heartbeat("https://hc-ping.com/other".into(), 1000, "a:2".into());
        assert_eq!(again, Err(ConfError::Duplicate));
        // Alert destinations given later go before it and keep their labels.
        let to = |url: &str, format| Destination::new(url.into(), format);
        mcf.add_destination(to("https://a/1", WebhookFormat::Discord))
            .unwrap();
        mcf.add_destination(to("https://a/2", WebhookFormat::Slack))
            .unwrap();
        assert_eq!(
            mcf.add_destination(to("https://a/2", WebhookFormat::Slack)),
            Err(DestinationError::Duplicate("https://a/***".into()))
        );
        assert!(mcf.has_alert_destinations());
        assert_eq!(mcf.heartbeat(), Some((2, 30_000)));
        let labels: Vec<String> = mcf
            .destinations
            .iter()
            .enumerate()
            .map(|(i, d)| d.label(i))
            .collect();
        assert_eq!(labels, ["discord-1", "slack-2", "heartbeat"]);
        // A heartbeat is no alert, so `status_alert_webhook off` does not refuse it.
        let mut off = MainConf {
            webhook_off: Some("a:3".into()),
            ..MainConf::default()
        };
        assert!(off
            .set_heartbeat("https://hc-ping.com/uuid".into(), 60_000, "a:4".into())
            .is_ok());
        assert!(!off.has_alert_destinations());
    }

    #[test]
    fn a_heartbeat_needs_something_to_evaluate() {
        let mut mcf = MainConf::default();
        mcf.set_heartbeat(
            "https://hc-ping.com/uuid".into(),
            60_000,
            "nginx.conf:7".into(),
        )
        .unwrap();
        let err = mcf.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("status_alert_heartbeat: no \"status_alert\""),
            "{err}"
        );
        assert!(err.ends_with(" in nginx.conf:7"), "{err}");
        let args = ["tcp://127.0.0.1:1".to_string(), "name=db".to_string()];
        mcf.add_probe(ProbeConf {
            spec: probe_spec::parse(&args, true).unwrap(),
            place: "nginx.conf:8".into(),
            slot: core::ptr::null(),
            addrs: Vec::new(),
            core_loc_conf: core::ptr::null(),
            resolver: None,
            body_regex: core::ptr::null(),
            loc_conf: core::ptr::null(),
            certificates: None,
            resolve: None,
        })
        .unwrap();
        assert!(mcf.validate().is_ok(), "a probe is evaluated");
    }

    #[test]
    fn a_second_probe_of_a_target_is_refused_and_a_nameless_probe_needs_a_name() {
        let spec = |args: &[&str]| {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            probe_spec::parse(&args, true).unwrap()
        };
        let probe = |spec, place: &str| ProbeConf {
            spec,
            place: place.into(),
            slot: core::ptr::null(),
            addrs: Vec::new(),
            core_loc_conf: core::ptr::null(),
            resolver: None,
            body_regex: core::ptr::null(),
            loc_conf: core::ptr::null(),
            certificates: None,
            resolve: None,
        };
        let mut mcf = MainConf::default();
        let args = ["http://127.0.0.1:1/health", "name=be"];
        mcf.add_probe(probe(spec(&args), "a:1")).unwrap();
        let err = mcf.add_probe(probe(spec(&args), "a:2")).unwrap_err();
        assert!(err.to_string().contains("already probes"), "{err}");

        let mut lcf = LocConf::default();
        let nameless = probe_spec::parse(&["http://127.0.0.1:1/".to_string()], false).unwrap();
        lcf.pending_probes.push(probe(nameless, "a:3"));
        let err = lcf.merge_into(&LocConf::default(), &mut mcf).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("status_alert_probe: name= is required"));
        assert!(err.to_string().ends_with(" in a:3"), "{err}");
    }

    #[test]
    fn probes_alike_in_their_first_512_bytes_keep_slots_of_their_own() {
        let path = "x".repeat(600);
        let mut mcf = MainConf::default();
        for last in ["1", "2"] {
            let url = format!("http://127.0.0.1:1/{path}{last}");
            let args = [url, "name=be".to_string()];
            mcf.add_probe(ProbeConf {
                spec: probe_spec::parse(&args, true).unwrap(),
                place: "a:1".into(),
                slot: core::ptr::null(),
                addrs: Vec::new(),
                core_loc_conf: core::ptr::null(),
                resolver: None,
                body_regex: core::ptr::null(),
                loc_conf: core::ptr::null(),
                certificates: None,
                resolve: None,
            })
            .unwrap();
        }
        let (_, probes) = mcf.keys();
        let probes: Vec<&[u8]> = probes.iter().map(Vec::as_slice).collect();
        let size = crate::zone::zone_size(0, 2);
        let layout = std::alloc::Layout::from_size_align(size, 64).unwrap();
        // SAFETY: non-zero size; freed below.
        let mem = unsafe { std::alloc::alloc_zeroed(layout) };
        // SAFETY: zeroed, aligned, freed after the last use.
        let zone = unsafe { Zone::from_raw(mem, size) }.unwrap();
        let first = zone.claim(&[], &probes, |_| false).unwrap().probes;
        let again = zone.claim(&[], &probes, |_| false).unwrap().probes;
        assert!(!core::ptr::eq(first[0], first[1]), "one slot each");
        assert!(core::ptr::eq(again[0], first[0]) && core::ptr::eq(again[1], first[1]));
        // SAFETY: allocated above with this layout; no slot is used after this.
        unsafe { std::alloc::dealloc(mem, layout) };
    }
}
