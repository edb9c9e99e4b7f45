//! Whether a NAME is muted at a moment, until when and why: its `status_alert_maintenance`
//! windows and the runtime mutes (`POST ?mute=`) taken together. The evaluator asks it every
//! round; `status_metrics` asks it for `nginx_location_muted` and the status page.
//!
//! Pure: the runtime mutes come in as a copy of the zone's table (taken under the zone's
//! lock by the caller), nginx's offset from UTC for `tz=local` as a number.

use crate::conf::maintenance::Maintenance;
use crate::zone::mutes::{mute_of, MuteRecord};

/// Why a NAME is muted and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MuteStatus {
    /// End of the mute, ms since the epoch (the later end when both kinds mute).
    pub until_ms: u64,
    /// The runtime mute's reason, or "maintenance window".
    pub reason: String,
}

/// Everything that can mute a NAME.
#[derive(Clone, Copy, Debug)]
pub struct Mutes<'a> {
    /// `status_alert_maintenance` windows.
    pub maintenance: &'a Maintenance,
    /// The runtime mutes, as copied from the zone.
    pub records: &'a [MuteRecord],
    /// nginx's offset from UTC, seconds (for `tz=local`).
    pub local_offset_secs: i32,
}

/// Reason shown for a NAME muted by a window only.
pub const MAINTENANCE_REASON: &str = "maintenance window";

impl Mutes<'_> {
    /// The mute holding `name` at `now_ms`, if any: whichever of its window and its runtime
    /// mute lasts longer, with that one's reason (an empty runtime reason reads "muted").
    pub fn status(&self, name: &str, now_ms: u64) -> Option<MuteStatus> {
        let window = self
            .maintenance
            .muted_until(name, now_ms / 1000, self.local_offset_secs)
            .map(|s| MuteStatus {
                until_ms: s.saturating_mul(1000),
                reason: MAINTENANCE_REASON.to_string(),
            });
        let runtime = mute_of(self.records, name.as_bytes(), now_ms).map(|r| MuteStatus {
            until_ms: r.until_ms(),
            reason: r.reason(),
        });
        match (window, runtime) {
            (Some(w), Some(r)) => Some(if r.until_ms >= w.until_ms { r } else { w }),
            (w, r) => w.or(r),
        }
    }

    /// True when `name` is muted at `now_ms`.
    pub fn is_muted(&self, name: &str, now_ms: u64) -> bool {
        self.status(name, now_ms).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::maintenance::parse_maintenance;

    /// 2024-01-01T10:00:00Z, a Monday.
    const NOW_MS: u64 = 1_704_103_200_000;

    #[test]
    fn windows_and_runtime_mutes_combine() {
        let maintenance = Maintenance {
            windows: vec![parse_maintenance(&["api", "mon", "09:00-11:00"]).unwrap()],
        };
        let records = [
            MuteRecord::new(b"api", NOW_MS, NOW_MS + 30 * 60_000, "deploy").unwrap(),
            MuteRecord::new(b"be", NOW_MS, NOW_MS + 60_000, "").unwrap(),
        ];
        let m = Mutes {
            maintenance: &maintenance,
            records: &records,
            local_offset_secs: 0,
        };
        // The window (until 11:00) outlasts the runtime mute (until 10:30).
        let api = m.status("api", NOW_MS).unwrap();
        assert_eq!(api.until_ms, NOW_MS + 3_600_000);
        assert_eq!(api.reason, MAINTENANCE_REASON);
        assert_eq!(m.status("be", NOW_MS).unwrap().until_ms, NOW_MS + 60_000);
        assert!(!m.is_muted("db", NOW_MS));
        assert!(!m.is_muted("be", NOW_MS + 60_000));
        let none = Mutes {
            maintenance: &maintenance,
            records: &records[..1],
            local_offset_secs: 0,
        };
        assert_eq!(none.status("api", NOW_MS + 3_600_000), None);
        // A runtime mute longer than the window wins, with its reason.
        let long = [MuteRecord::new(b"api", NOW_MS, NOW_MS + 7_200_000, "db").unwrap()];
        let m = Mutes {
            records: &long,
            ..none
        };
        assert_eq!(m.status("api", NOW_MS).unwrap().reason, "db");
    }
}
