//! Worker 0's certificate round: the certificates nginx serves and the HTTPS probe targets'
//! certificates, judged at every evaluation (`evaluate::certificate`) and announced like every
//! other event.

use crate::conf::probe_spec::Scheme;
use crate::evaluate::certificate::{self, WatchedCertificate};
use crate::vocab::certificate::{CertificateEvent, CertificateSubject};
use crate::vocab::event::{AlertEvent, EventDetail};

use super::evaluator::Evaluator;

impl Evaluator {
    /// Every watched certificate with its cell in the zone.
    fn watched_certificates(&self) -> Vec<WatchedCertificate<'_>> {
        let served = self.mcf.certificates.iter().filter_map(|c| {
            // SAFETY: slots point into the mapped zone.
            let slot = unsafe { c.slot.as_ref() }?;
            Some(WatchedCertificate {
                subject: CertificateSubject::Served {
                    server: c.server.clone(),
                    file: c.file.clone(),
                },
                params: c.params,
                watch: &slot.certificate,
                has_file: true,
            })
        });
        let probed = self.mcf.probes.iter().filter_map(|p| {
            if p.spec.target.scheme != Scheme::Https {
                return None;
            }
            // SAFETY: as above.
            let slot = unsafe { p.slot.as_ref() }?;
            // A `server ... resolve` slot: the address it holds now, if any.
            let spec = p.current()?;
            Some(WatchedCertificate {
                subject: CertificateSubject::Probe {
                    probe: spec.name.clone(),
                    target: spec.target.display(),
                },
                params: p.certificates?,
                watch: &slot.certificate,
                has_file: false,
            })
        });
        served.chain(probed).collect()
    }

    /// This evaluation's certificate events.
    pub(super) fn certificate_events(&self, now: u64) -> Vec<AlertEvent> {
        let certs = self.watched_certificates();
        if certs.is_empty() {
            return Vec::new();
        }
        certificate::evaluate(&certs, now)
            .into_iter()
            .map(|c| event(c, now))
            .collect()
    }

    /// The certificates firing now, for the Alertmanagers' re-posts.
    pub(super) fn certificates_firing(&self, now: u64) -> Vec<AlertEvent> {
        certificate::firing(&self.watched_certificates())
            .into_iter()
            .map(|c| event(c, now))
            .collect()
    }
}

/// The event of a certificate: under its server's name, or its probe's NAME.
fn event(c: CertificateEvent, now: u64) -> AlertEvent {
    let name = match &c.subject {
        CertificateSubject::Served { server, .. } => server.clone(),
        CertificateSubject::Probe { probe, .. } => probe.clone(),
    };
    AlertEvent {
        name,
        at_unix: now / 1000,
        link: None,
        runbook: None,
        detail: EventDetail::Certificate(c),
    }
}
