//! Certificate expiry (`status_alert_certificates`): the level a certificate's expiry calls
//! for, and whether the file on disk holds a renewal nginx does not serve yet. Pure: the
//! transitions are the shared alert machine ([`super::alert::advance`]).
//!
//! - WARNING from `warn` before the expiry, CRITICAL from `crit` before it and once expired;
//!   the level only changes with time or with the certificate served, so each level change is
//!   announced once and a firing level is repeated every `repeat`.
//! - RESOLVED comes when nginx serves a certificate that expires later (a reload): the served
//!   expiry is what is judged, never the file on disk.
//! - **Renewed but not served**: when the file, re-read, holds a certificate that expires later
//!   than the served one, the alert says so ("a renewed certificate is on disk since T: reload
//!   nginx to serve it"). That is the classic outage of a renewal tool that renewed the file
//!   but whose reload hook never ran.

use crate::conf::certificates::CertificateParams;
use crate::vocab::event::Level;

/// The level of a certificate expiring at `not_after_unix` at `now_ms`.
pub fn level(not_after_unix: u64, now_ms: u64, p: &CertificateParams) -> Level {
    let left_ms = not_after_unix.saturating_mul(1000).saturating_sub(now_ms);
    if left_ms <= p.crit_ms {
        Level::Critical
    } else if left_ms <= p.warn_ms {
        Level::Warning
    } else {
        Level::Ok
    }
}

/// What re-reading the file found, when it matters: a certificate that expires later than the
/// one served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// The renewed certificate's expiry, Unix seconds.
    pub not_after_unix: u64,
    /// Since when the file holds it (its modification time), Unix seconds.
    pub since_unix: u64,
}

/// The renewal on disk, if the file read at `on_disk` (expiry, modification time) holds a
/// certificate that expires later than the `served` one.
pub fn renewal(served_not_after: u64, on_disk: Option<(u64, u64)>) -> Option<Renewal> {
    let (not_after_unix, since_unix) = on_disk?;
    (not_after_unix > served_not_after).then_some(Renewal {
        not_after_unix,
        since_unix,
    })
}

/// Days left until `not_after_unix` at `now_unix`, rounded down; negative once expired
/// (`-1` within the first day after).
pub fn days_left(not_after_unix: u64, now_unix: u64) -> i64 {
    let secs = not_after_unix as i128 - now_unix as i128;
    (secs.div_euclid(86_400)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn levels_by_time_left() {
        let p = CertificateParams::default();
        let now = 1_800_000_000u64;
        let at = |days_left: i64| (now as i64 + days_left * DAY as i64) as u64;
        assert_eq!(level(at(60), now * 1000, &p), Level::Ok);
        assert_eq!(level(at(22), now * 1000, &p), Level::Ok);
        assert_eq!(level(at(21), now * 1000, &p), Level::Warning);
        assert_eq!(level(at(8), now * 1000, &p), Level::Warning);
        assert_eq!(level(at(7), now * 1000, &p), Level::Critical);
        assert_eq!(level(at(-3), now * 1000, &p), Level::Critical, "expired");
        assert_eq!(level(0, now * 1000, &p), Level::Critical);
        assert_eq!(level(u64::MAX, now * 1000, &p), Level::Ok);
    }

    #[test]
    fn renewals_only_when_later() {
        assert_eq!(renewal(100, None), None);
        assert_eq!(renewal(100, Some((100, 5))), None, "the same certificate");
        assert_eq!(renewal(100, Some((90, 5))), None, "an older file");
        assert_eq!(
            renewal(100, Some((200, 5))),
            Some(Renewal {
                not_after_unix: 200,
                since_unix: 5
            })
        );
    }

    #[test]
    fn days_left_rounds_down() {
        assert_eq!(days_left(10 * DAY, 0), 10);
        assert_eq!(days_left(10 * DAY - 1, 0), 9);
        assert_eq!(days_left(0, 1), -1);
        assert_eq!(days_left(0, DAY), -1);
        assert_eq!(days_left(0, DAY + 1), -2);
        assert_eq!(days_left(u64::MAX, 0), (u64::MAX / DAY) as i64);
    }
}
