//! Reading a certificate file as nginx loads it for `ssl_certificate`: every PEM certificate in
//! it (the leaf and the chain after it) and the earliest expiry among them, since a chain is
//! only valid while its every certificate is (an intermediate that expires before the leaf
//! breaks the chain first). X.509 is read by OpenSSL (the `openssl` crate, the library nginx
//! itself links); this file adds no parser of its own and needs no nginx.
//!
//! Used where the configuration is read (the certificates served) and, later, to re-read the
//! files and find a renewal nginx has not been reloaded to serve.

use std::path::Path;

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::nid::Nid;
use openssl::x509::X509;
use thiserror::Error;

/// What a certificate file says about its expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateFile {
    /// The earliest `notAfter` of the certificates in the file, Unix seconds (0 for one that
    /// expired before 1970, which no real certificate did).
    pub not_after_unix: u64,
    /// The leaf's subject common name (or its first DNS name), for messages; may be empty.
    pub subject: String,
    /// How many certificates the file holds.
    pub certificates: usize,
}

/// Why a certificate file cannot be read. Reported, never fatal: nginx itself decides whether
/// a file it loads is acceptable.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CertificateFileError {
    /// The file cannot be opened or read (missing, permissions, a directory).
    #[error("cannot read \"{path}\": {why}")]
    Unreadable {
        /// The file.
        path: String,
        /// The system's words.
        why: String,
    },
    /// The file holds no PEM certificate OpenSSL accepts (truncated, another format).
    #[error("no certificate in \"{path}\": {why}")]
    Unparsable {
        /// The file.
        path: String,
        /// OpenSSL's words, or what is missing.
        why: String,
    },
}

/// Reads and parses the certificate file at `path`.
pub fn read(path: &Path) -> Result<CertificateFile, CertificateFileError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| CertificateFileError::Unreadable {
        path: shown.clone(),
        why: e.to_string(),
    })?;
    parse(&bytes).map_err(|why| CertificateFileError::Unparsable { path: shown, why })
}

/// Parses PEM bytes (one certificate or a chain; a private key in the same file is skipped).
pub fn parse(pem: &[u8]) -> Result<CertificateFile, String> {
    let certs = X509::stack_from_pem(pem).map_err(|e| first_line(&e.to_string()))?;
    let Some(leaf) = certs.first() else {
        return Err("no \"BEGIN CERTIFICATE\" block".to_string());
    };
    let mut earliest = u64::MAX;
    for c in &certs {
        earliest = earliest.min(unix_seconds(c.not_after())?);
    }
    Ok(CertificateFile {
        not_after_unix: earliest,
        subject: subject(leaf),
        certificates: certs.len(),
    })
}

/// The `notAfter` of the leaf certificate in DER form (a probe target's), Unix seconds.
pub fn leaf_not_after(cert: &X509) -> Result<u64, String> {
    unix_seconds(cert.not_after())
}

/// An ASN.1 time as Unix seconds (times before 1970 as 0).
fn unix_seconds(t: &Asn1TimeRef) -> Result<u64, String> {
    let epoch = Asn1Time::from_unix(0).map_err(|e| e.to_string())?;
    let d = epoch.diff(t).map_err(|e| e.to_string())?;
    let secs = i64::from(d.days) * 86_400 + i64::from(d.secs);
    Ok(u64::try_from(secs).unwrap_or(0))
}

/// The common name of `cert`'s subject, else its first DNS subject alternative name.
fn subject(cert: &X509) -> String {
    let cn = cert
        .subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .and_then(|e| e.data().to_string().ok());
    cn.or_else(|| {
        cert.subject_alt_names()
            .and_then(|names| names.iter().find_map(|n| n.dnsname().map(str::to_string)))
    })
    .unwrap_or_default()
}

/// OpenSSL's error stacks are long; the first line says what matters.
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::x509::{X509Builder, X509NameBuilder};

    /// A self-signed certificate for `cn` valid until `not_after` (Unix seconds), as PEM.
    pub(crate) fn certificate(cn: &str, not_after: i64) -> Vec<u8> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
        let name = name.build();
        let mut b = X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(not_after - 90 * 86_400).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(not_after).unwrap())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build().to_pem().unwrap()
    }

    #[test]
    fn earliest_expiry_of_a_chain() {
        let leaf = certificate("example.com", 1_900_000_000);
        let intermediate = certificate("Intermediate CA", 1_800_000_000);
        let f = parse(&leaf).unwrap();
        assert_eq!(f.not_after_unix, 1_900_000_000);
        assert_eq!(f.subject, "example.com");
        assert_eq!(f.certificates, 1);
        // The intermediate expires first: the chain breaks then.
        let chain = [leaf.clone(), intermediate].concat();
        let f = parse(&chain).unwrap();
        assert_eq!(f.not_after_unix, 1_800_000_000);
        assert_eq!(f.subject, "example.com", "the leaf names it");
        assert_eq!(f.certificates, 2);
        // A key in the same file (a common layout) is skipped.
        let with_key = [
            b"-----BEGIN PRIVATE KEY-----\nMC4=\n-----END PRIVATE KEY-----\n".to_vec(),
            leaf,
        ]
        .concat();
        assert_eq!(parse(&with_key).unwrap().not_after_unix, 1_900_000_000);
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        let pem = certificate("example.com", 1_900_000_000);
        assert!(parse(&pem[..pem.len() / 2]).is_err(), "truncated");
        assert!(parse(b"").is_err());
        assert!(parse(b"hello").is_err());
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(matches!(e, CertificateFileError::Unreadable { .. }), "{e}");
        let e = read(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read") && e.contains("missing.pem"),
            "{e}"
        );
        let file = dir.path().join("cut.pem");
        std::fs::write(&file, &pem[..40]).unwrap();
        let e = read(&file).unwrap_err().to_string();
        assert!(e.starts_with("no certificate in"), "{e}");
    }
}
