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

use core::sync::atomic::Ordering::Relaxed;

use super::alert::{advance, Transition};
use super::StateCells;
use crate::conf::certificates::CertificateParams;
use crate::vocab::certificate::{CertificateEvent, CertificateSubject};
use crate::vocab::event::Level;
use crate::zone::CertificateWatch;

/// One certificate to judge at an evaluation.
pub struct WatchedCertificate<'a> {
    /// Whose.
    pub subject: CertificateSubject,
    /// The thresholds in force for it.
    pub params: CertificateParams,
    /// Its cell in the zone: the expiry served (0 unknown), the file re-read, the alert.
    pub watch: &'a CertificateWatch,
    /// Whether the file on disk is worth comparing (a served certificate; a probe target's
    /// certificate has no file here).
    pub has_file: bool,
}

/// Judges every certificate at `now_ms`: each level change once (compare-and-swap in the
/// zone, so however many evaluators run), a firing level again every `repeat`, RESOLVED when
/// the certificate judged expires far enough away (a reload served a renewal, a probe target
/// now serves one). A certificate whose expiry is unknown (file unreadable when loaded, a
/// target not reached yet) is not judged.
pub fn evaluate(certs: &[WatchedCertificate<'_>], now_ms: u64) -> Vec<CertificateEvent> {
    let mut out = Vec::new();
    for c in certs {
        let not_after = c.watch.not_after_unix.load(Relaxed);
        if not_after == 0 {
            continue;
        }
        let cells = StateCells::of(&c.watch.alert);
        let old = cells.load();
        let (new, transition) = advance(
            old,
            level(not_after, now_ms, &c.params),
            now_ms,
            c.params.repeat_ms,
        );
        if new != old && !cells.store(old, new) {
            continue;
        }
        let on_disk = c.has_file.then(|| {
            (
                c.watch.on_disk_not_after_unix.load(Relaxed),
                c.watch.on_disk_since_unix.load(Relaxed),
            )
        });
        let renewal = renewal(not_after, on_disk.filter(|(d, _)| *d != 0));
        let told = &c.watch.renewal_told_unix;
        let (level, previous, repeat, since_ms) = match transition {
            Some(Transition::Changed { from, to }) => (to, from, false, new.incident_since_ms),
            Some(Transition::Repeat(l)) => (l, l, true, new.incident_since_ms),
            Some(Transition::Resolved { from, .. }) => {
                (Level::Ok, from, false, old.incident_since_ms)
            }
            // A renewal on disk nobody was told of yet, while firing: said at once (as a
            // repeat), not at the next daily repeat. The compare-and-swap says it once.
            None if new.level != Level::Ok => {
                let Some(r) = renewal else { continue };
                let last = told.load(Relaxed);
                if last == r.not_after_unix
                    || told
                        .compare_exchange(last, r.not_after_unix, Relaxed, Relaxed)
                        .is_err()
                {
                    continue;
                }
                (new.level, new.level, true, new.incident_since_ms)
            }
            None => continue,
        };
        // What the event tells of the renewal is remembered (nothing once resolved).
        let told_now = if level == Level::Ok { None } else { renewal };
        told.store(told_now.map_or(0, |r| r.not_after_unix), Relaxed);
        out.push(CertificateEvent {
            level,
            previous,
            repeat,
            subject: c.subject.clone(),
            not_after_unix: not_after,
            renewal: told_now.map(|r| (r.not_after_unix, r.since_unix)),
            since_unix: since_ms / 1000,
        });
    }
    out
}

/// What fires now, as repeat events (for the Alertmanagers' re-posts): every certificate at
/// warning or critical.
pub fn firing(certs: &[WatchedCertificate<'_>]) -> Vec<CertificateEvent> {
    certs
        .iter()
        .filter_map(|c| {
            let state = StateCells::of(&c.watch.alert).load();
            (state.level != Level::Ok).then(|| CertificateEvent {
                level: state.level,
                previous: state.level,
                repeat: true,
                subject: c.subject.clone(),
                not_after_unix: c.watch.not_after_unix.load(Relaxed),
                renewal: None,
                since_unix: state.incident_since_ms / 1000,
            })
        })
        .collect()
}

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
    fn each_level_once_repeats_and_resolves_on_a_newer_certificate() {
        let watch = CertificateWatch::default();
        let now = 1_800_000_000u64;
        let p = CertificateParams::default();
        let subject = CertificateSubject::Served {
            server: "a.test".into(),
            file: "/a.pem".into(),
        };
        let certs = [WatchedCertificate {
            subject,
            params: p,
            watch: &watch,
            has_file: true,
        }];
        let at = |secs: u64| secs * 1000;
        // Unknown expiry: nothing.
        assert!(evaluate(&certs, at(now)).is_empty());
        watch.not_after_unix.store(now + 10 * DAY, Relaxed);
        let e = evaluate(&certs, at(now));
        assert_eq!(
            (e.len(), e[0].level, e[0].previous),
            (1, Level::Warning, Level::Ok)
        );
        assert!(evaluate(&certs, at(now + 60)).is_empty(), "once");
        // Three days later: critical, once.
        let e = evaluate(&certs, at(now + 3 * DAY + 1));
        assert_eq!(
            (e[0].level, e[0].previous, e[0].repeat),
            (Level::Critical, Level::Warning, false)
        );
        assert!(evaluate(&certs, at(now + 3 * DAY + 60)).is_empty());
        // A day on: the daily repeat.
        let e = evaluate(&certs, at(now + 4 * DAY + 2));
        assert!(e[0].repeat && e[0].level == Level::Critical);
        // A renewed file is told of at once, once; the served certificate is still judged.
        watch.on_disk_not_after_unix.store(now + 90 * DAY, Relaxed);
        watch.on_disk_since_unix.store(now + 4 * DAY, Relaxed);
        let e = evaluate(&certs, at(now + 4 * DAY + 10));
        assert_eq!(e[0].renewal, Some((now + 90 * DAY, now + 4 * DAY)));
        assert!(e[0].repeat && e[0].level == Level::Critical);
        assert!(evaluate(&certs, at(now + 4 * DAY + 20)).is_empty());
        // The daily repeat says it too.
        let e = evaluate(&certs, at(now + 5 * DAY + 3));
        assert_eq!(e[0].renewal, Some((now + 90 * DAY, now + 4 * DAY)));
        // A reload serves it: RESOLVED once.
        watch.not_after_unix.store(now + 90 * DAY, Relaxed);
        let e = evaluate(&certs, at(now + 5 * DAY + 4));
        assert_eq!(
            (e[0].level, e[0].previous, e[0].renewal),
            (Level::Ok, Level::Critical, None)
        );
        assert!(evaluate(&certs, at(now + 5 * DAY + 5)).is_empty());
    }
}
