//! Certificate expiry in the crate's vocabulary: what a certificate alert is about (a
//! certificate nginx serves, or an HTTPS probe target's) and the event it announces, with the
//! words every format shares (`expires in 14 days (2026-12-16)`, and the renewal nginx does not
//! serve yet). The levels are `evaluate::certificate`.

use crate::vocab::event::Level;
use crate::vocab::text::{clip, iso8601};

/// Whose certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateSubject {
    /// One `ssl_certificate` file of a server nginx serves.
    Served {
        /// The server's name.
        server: String,
        /// The file.
        file: String,
    },
    /// The leaf certificate an HTTPS probe target served last.
    Probe {
        /// The probe's NAME.
        probe: String,
        /// The target URL, without credentials.
        target: String,
    },
}

/// A certificate's expiry alert: level change (or repeat) with the dates behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateEvent {
    /// Level now; `Level::Ok` means resolved.
    pub level: Level,
    /// Level before this event (equal to `level` for a repeat).
    pub previous: Level,
    /// True when this re-posts a level that is still firing.
    pub repeat: bool,
    /// Whose certificate.
    pub subject: CertificateSubject,
    /// When the certificate served (or seen) expires, Unix seconds.
    pub not_after_unix: u64,
    /// A later certificate in the file nginx does not serve yet: its expiry and since when the
    /// file holds it, Unix seconds.
    pub renewal: Option<(u64, u64)>,
    /// Start of the incident (first non-ok evaluation), Unix seconds.
    pub since_unix: u64,
}

impl CertificateEvent {
    /// What the alert is about in a title: `cert example.com` or `cert api
    /// https://10.0.0.5/health`, the server or probe name clipped to `name_max` characters and
    /// the target to `target_max`, each flattened to one line.
    pub fn what(&self, name_max: usize, target_max: usize) -> String {
        match &self.subject {
            CertificateSubject::Served { server, .. } => format!("cert {}", clip(server, name_max)),
            CertificateSubject::Probe { probe, target } => format!(
                "cert {} {}",
                clip(probe, name_max),
                clip(target, target_max)
            ),
        }
    }

    /// `expires in 14 days (2026-12-16)`, `expires today (2026-12-02)`, `expired 3 days ago
    /// (2026-11-29)`, at `now_unix` (days counted down in whole days from the expiry).
    pub fn expiry_words(&self, now_unix: u64) -> String {
        expiry_words(self.not_after_unix, now_unix)
    }

    /// The renewal nginx does not serve yet, in words, if there is one.
    pub fn renewal_words(&self) -> Option<String> {
        self.renewal
            .map(|(_, since)| renewal_sentence(&iso8601(since)))
    }
}

/// The sentence about a renewal nginx does not serve yet; `since` is when the file changed, in
/// the caller's format (ISO 8601 in alerts, the status page's own time format there).
pub fn renewal_sentence(since: &str) -> String {
    format!("a renewed certificate is on disk since {since}: reload nginx to serve it")
}

/// Days left until `not_after_unix` at `now_unix`, rounded down; negative once expired
/// (`-1` within the first day after).
pub fn days_left(not_after_unix: u64, now_unix: u64) -> i64 {
    let secs = not_after_unix as i128 - now_unix as i128;
    (secs.div_euclid(86_400)) as i64
}

/// See [`CertificateEvent::expiry_words`].
pub fn expiry_words(not_after_unix: u64, now_unix: u64) -> String {
    let date = &iso8601(not_after_unix)[..10];
    match days_left(not_after_unix, now_unix) {
        d if d >= 2 => format!("expires in {d} days ({date})"),
        1 => format!("expires in 1 day ({date})"),
        0 => format!("expires today ({date})"),
        -1 => format!("expired less than a day ago ({date})"),
        d => {
            let ago = -d - 1;
            if ago == 1 {
                format!("expired 1 day ago ({date})")
            } else {
                format!("expired {ago} days ago ({date})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    /// 2026-12-02T00:00:00Z.
    const NOW: u64 = 1_796_169_600;

    #[test]
    fn days_left_rounds_down() {
        assert_eq!(days_left(10 * DAY, 0), 10);
        assert_eq!(days_left(10 * DAY - 1, 0), 9);
        assert_eq!(days_left(0, 1), -1);
        assert_eq!(days_left(0, DAY), -1);
        assert_eq!(days_left(0, DAY + 1), -2);
        assert_eq!(days_left(u64::MAX, 0), (u64::MAX / DAY) as i64);
    }

    #[test]
    fn words_for_every_distance() {
        assert_eq!(
            expiry_words(NOW + 14 * DAY, NOW),
            "expires in 14 days (2026-12-16)"
        );
        assert_eq!(
            expiry_words(NOW + DAY + 5, NOW),
            "expires in 1 day (2026-12-03)"
        );
        assert_eq!(expiry_words(NOW + 3600, NOW), "expires today (2026-12-02)");
        assert_eq!(
            expiry_words(NOW - 3600, NOW),
            "expired less than a day ago (2026-12-01)"
        );
        assert_eq!(
            expiry_words(NOW - DAY - 1, NOW),
            "expired 1 day ago (2026-11-30)"
        );
        assert_eq!(
            expiry_words(NOW - 3 * DAY - 1, NOW),
            "expired 3 days ago (2026-11-28)"
        );
    }

    #[test]
    fn subjects_and_renewals() {
        let e = CertificateEvent {
            level: Level::Warning,
            previous: Level::Ok,
            repeat: false,
            subject: CertificateSubject::Served {
                server: "example.com".into(),
                file: "/etc/ssl/a.pem".into(),
            },
            not_after_unix: NOW + 14 * DAY,
            renewal: Some((NOW + 90 * DAY, NOW - 3600)),
            since_unix: NOW,
        };
        assert_eq!(e.what(64, 64), "cert example.com");
        assert_eq!(e.what(4, 64), "cert exa…");
        assert_eq!(
            e.renewal_words().unwrap(),
            "a renewed certificate is on disk since 2026-12-01T23:00:00Z: reload nginx to serve it"
        );
        let p = CertificateEvent {
            subject: CertificateSubject::Probe {
                probe: "api".into(),
                target: "https://10.0.0.5/health".into(),
            },
            renewal: None,
            ..e
        };
        assert_eq!(p.what(64, 64), "cert api https://10.0.0.5/health");
        assert_eq!(p.renewal_words(), None);
    }
}
