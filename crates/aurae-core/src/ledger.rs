//! What the node's CA has issued, and what it has revoked.
//!
//! Every certificate `aurae pki init` and `aurae pki issue` make is recorded in
//! `issued.toml` beside the CA (serial, principal, expiry), so that `aurae pki ls` can show
//! them and `aurae pki revoke <entity>` can find them. Revoking writes `ca.crl`, an X.509
//! revocation list signed by the CA, which auraed checks on every new connection and
//! applies to open ones when it changes. A new CA (`pki init --force`) starts a new
//! ledger and drops the old list: nothing the old CA signed verifies any more anyway.

use std::path::Path;

use rand_core::{OsRng, RngCore};
use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::fsutil::PUBLIC_MODE;
use crate::name::Principal;
use crate::pki::{CertificateAuthority, PkiError, PkiPaths};

/// File names of the ledger and the revocation list inside a PKI directory.
pub mod files {
    /// The record of issued certificates.
    pub const ISSUED: &str = "issued.toml";
    /// The revocation list, PEM.
    pub const CRL: &str = "ca.crl";
}

/// How long a revocation list is declared valid; `aurae pki revoke` writes a new one.
/// auraed does not enforce the date (an expired list still revokes), so this only
/// informs other tools.
const CRL_VALIDITY_DAYS: i64 = 365;

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// auraed's own server certificate.
    Server,
    /// A client's certificate, naming a principal.
    Client,
}

/// One certificate the CA issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    /// Serial number, lowercase hex: what the revocation list names.
    pub serial: String,
    /// Server or client.
    pub kind: CertKind,
    /// The principal of a client certificate (`admin@node1@local`); the server name for
    /// the server's.
    pub subject: String,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
    /// When it was revoked, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

impl IssuedCert {
    /// Whether the certificate is still good at `now`: not revoked, not expired.
    pub fn is_valid_at(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.not_after > now
    }
}

/// The ledger of a PKI directory.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Number of the last revocation list written: each new one counts up.
    #[serde(default)]
    pub crl_number: u64,
    /// Every certificate recorded, oldest first.
    #[serde(default, rename = "cert")]
    pub certs: Vec<IssuedCert>,
}

/// A fresh serial number: 16 random bytes, positive as X.509 asks.
pub fn new_serial() -> Vec<u8> {
    let mut serial = [0u8; 16];
    OsRng.fill_bytes(&mut serial);
    serial[0] &= 0x7f;
    serial[0] |= 0x01; // never a leading zero byte, so the hex form is canonical
    serial.to_vec()
}

/// Lowercase hex of a serial number.
pub fn serial_hex(serial: &[u8]) -> String {
    serial.iter().map(|b| format!("{b:02x}")).collect()
}

fn serial_bytes(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl Ledger {
    /// The ledger of `paths`; none yet is an empty one.
    pub fn load(paths: &PkiPaths) -> Result<Self, PkiError> {
        let path = paths.file(files::ISSUED);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| PkiError::Io {
                action: "cannot parse",
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(PkiError::Io {
                action: "cannot read",
                path,
                source,
            }),
        }
    }

    /// Writes the ledger atomically.
    pub fn save(&self, paths: &PkiPaths) -> Result<(), PkiError> {
        let path = paths.file(files::ISSUED);
        let text = toml::to_string(self).map_err(|e| PkiError::Io {
            action: "cannot serialize",
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        write(&path, text.as_bytes())
    }

    /// Adds an issued certificate to the ledger of `paths` and saves it.
    pub fn record(paths: &PkiPaths, cert: IssuedCert) -> Result<(), PkiError> {
        let mut ledger = Self::load(paths)?;
        ledger.certs.push(cert);
        ledger.save(paths)
    }

    /// Marks every valid client certificate of `principal` revoked; returns them.
    pub fn revoke(&mut self, principal: &Principal) -> Vec<IssuedCert> {
        let (now, subject) = (now(), principal.to_string());
        self.certs
            .iter_mut()
            .filter(|c| c.kind == CertKind::Client && c.subject == subject && c.is_valid_at(now))
            .map(|c| {
                c.revoked_at = Some(now);
                c.clone()
            })
            .collect()
    }

    /// Writes `ca.crl` naming every revoked certificate that has not expired yet, signed
    /// by `ca`, and saves the ledger with the list's new number.
    pub fn publish_crl(
        &mut self,
        ca: &CertificateAuthority,
        paths: &PkiPaths,
    ) -> Result<(), PkiError> {
        let now = now();
        let revoked_certs = self
            .certs
            .iter()
            .filter(|c| c.not_after > now)
            .filter_map(|c| Some((serial_bytes(&c.serial)?, c.revoked_at?)))
            .map(|(serial, at)| RevokedCertParams {
                serial_number: serial.into(),
                revocation_time: OffsetDateTime::from_unix_timestamp(at)
                    .unwrap_or_else(|_| OffsetDateTime::now_utc()),
                reason_code: Some(RevocationReason::CessationOfOperation),
                invalidity_date: None,
            })
            .collect();
        self.crl_number += 1;
        let this_update = OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update,
            next_update: this_update + time::Duration::days(CRL_VALIDITY_DAYS),
            crl_number: self.crl_number.into(),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = ca.sign_crl(&params)?;
        // The ledger first: a crash between the two leaves a list one number behind,
        // which the next revocation rewrites.
        self.save(paths)?;
        write(&paths.file(files::CRL), crl.as_bytes())
    }

    /// Forgets everything: a new CA issued none of these.
    pub fn reset(paths: &PkiPaths) -> Result<(), PkiError> {
        for name in [files::CRL, files::ISSUED] {
            let path = paths.file(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(PkiError::Io {
                        action: "cannot remove",
                        path,
                        source,
                    });
                }
            }
        }
        Ok(())
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    crate::pki::write(path, bytes, PUBLIC_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Overwrite, Validity, init_server_material, test_names};

    #[test]
    fn serials_are_positive_and_round_trip_through_hex() {
        for _ in 0..100 {
            let serial = new_serial();
            assert!(serial[0] & 0x80 == 0 && serial[0] != 0);
            assert_eq!(serial_bytes(&serial_hex(&serial)), Some(serial));
        }
    }

    #[test]
    fn revoking_marks_only_the_valid_certificates_of_that_principal_and_signs_a_list() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path().join("pki"));
        let names = test_names();
        let ca = init_server_material(&paths, &names, Overwrite::Refuse).unwrap();
        let alice = names.principal("alice".parse().unwrap());
        let bob = names.principal("bob".parse().unwrap());
        for principal in [&alice, &alice, &bob] {
            let cert = ca.issue_client(principal, Validity::days(1)).unwrap();
            Ledger::record(&paths, cert.issued(CertKind::Client, principal.to_string())).unwrap();
        }
        let mut ledger = Ledger::load(&paths).unwrap();
        let revoked = ledger.revoke(&alice);
        assert_eq!(revoked.len(), 2);
        assert!(
            ledger.revoke(&alice).is_empty(),
            "revoking twice finds nothing"
        );
        ledger.publish_crl(&ca, &paths).unwrap();
        let reread = Ledger::load(&paths).unwrap();
        assert_eq!(reread.crl_number, 1);
        let bob_cert = reread.certs.iter().find(|c| c.subject == bob.to_string());
        assert!(bob_cert.unwrap().revoked_at.is_none());

        let pem = std::fs::read_to_string(paths.file(files::CRL)).unwrap();
        assert!(pem.contains("BEGIN X509 CRL"), "{pem}");
    }

    #[test]
    fn the_client_verifier_refuses_revoked_certificates_and_keeps_the_others() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, UnixTime};
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path().join("pki"));
        let names = test_names();
        let ca = init_server_material(&paths, &names, Overwrite::Refuse).unwrap();
        let mut der = std::collections::BTreeMap::new();
        for entity in ["alice", "bob"] {
            let principal = names.principal(entity.parse().unwrap());
            let cert = ca.issue_client(&principal, Validity::days(1)).unwrap();
            Ledger::record(&paths, cert.issued(CertKind::Client, principal.to_string())).unwrap();
            der.insert(
                entity,
                CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap(),
            );
        }
        let verify = |entity: &str| {
            crate::tls::client_verifier(&paths)
                .unwrap()
                .verify_client_cert(&der[entity], &[], UnixTime::now())
                .map(|_| ())
        };
        assert!(verify("alice").is_ok(), "no list yet: everything verifies");
        let mut ledger = Ledger::load(&paths).unwrap();
        ledger.revoke(&names.principal("alice".parse().unwrap()));
        ledger.publish_crl(&ca, &paths).unwrap();
        let refused = verify("alice").unwrap_err();
        assert!(
            refused.to_string().to_lowercase().contains("revoked"),
            "{refused}"
        );
        assert!(verify("bob").is_ok());
    }
}
