//! What `status_metrics` shows of mutes and reliability: which NAMEs are muted, until when and
//! why (`nginx_location_muted`, the page's "muted until T (reason)"), and how long each NAME
//! has been evaluated, the time MTBF is measured over. Added to a collected [`Metrics`] by
//! [`collect_mute`]; pure (the runtime mutes come in as a copy taken under the zone's lock).

use crate::conf::NameConf;
use crate::evaluate::muted::Mutes;
use crate::evaluate::reliability::observed_secs;
use crate::expose::metrics::{Metrics, MuteView};

/// Adds NAME `n`'s mute (if muted) and observed time to `m`, at `now_ms`.
pub fn collect_mute(m: &mut Metrics, n: &NameConf, mutes: &Mutes<'_>, now_ms: u64) {
    if let Some(s) = mutes.status(&n.name, now_ms) {
        m.mutes.insert(
            n.name.clone(),
            MuteView {
                until_unix: s.until_ms.div_ceil(1000),
                reason: s.reason,
            },
        );
    }
    // SAFETY: slots point into the mapped zone once it is initialised.
    if let Some(slot) = unsafe { n.slot.as_ref() } {
        m.observed_secs
            .insert(n.name.clone(), observed_secs(slot, now_ms));
    }
}
