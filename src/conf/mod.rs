//! Configuration: the per-level structs the directives fill, value parsing (`params`,
//! `probe_spec`), the checks made once the `http` block is read, and the directive table
//! (`directives`, FFI).
//!
//! Everything here but `directives` is plain Rust, unit-tested without nginx.

#[cfg(not(test))]
pub(crate) mod directives;
pub mod params;
pub mod probe_spec;

use params::{AlertParams, WebhookTarget};
use probe_spec::ProbeSpec;

use crate::zone::counters::BucketBounds;
use crate::zone::{NameSlot, ProbeSlot, Zone};

/// One distinct `status_alert` NAME of the configuration.
///
/// `repr(C)` with the NAME's bytes first: a pointer to a `NameConf` is also the value of the
/// binding variable, which is how a request remembers its NAME across internal redirects.
#[repr(C)]
pub struct NameConf {
    /// The NAME's bytes (`name.len()` of them are valid).
    pub label: [u8; crate::conf::params::MAX_NAME_LEN],
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
    /// `status_alert_webhook`.
    pub webhook: Option<WebhookTarget>,
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

    /// Where alerts go.
    pub fn webhook(&self) -> &WebhookTarget {
        static OFF: WebhookTarget = WebhookTarget::Off;
        self.webhook.as_ref().unwrap_or(&OFF)
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
