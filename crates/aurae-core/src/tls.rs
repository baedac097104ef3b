//! rustls configurations for both ends of the socket, built from PEM files.
//!
//! Every config here names its crypto provider (ring) explicitly, so the process-wide
//! default never matters, and every failure names the file and what to do about it.
//! Both ends speak only mutual TLS with ALPN `h2`, as gRPC requires.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::fsutil::PrivateReadError;
use crate::ledger;
use crate::pki::{PkiPaths, SERVER_NAME, files};

/// Why TLS material could not be turned into a working configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file was unreadable, empty or malformed.
    #[error("{path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A private key is readable by its group or others: refused, so that a key that may
    /// have been copied is never used without a word.
    #[error(transparent)]
    KeyTooOpen(#[from] crate::fsutil::TooOpen),
    /// The material is readable but does not fit together (wrong CA, expired, key mismatch).
    #[error("{what}: {source}")]
    Rejected {
        /// Which check failed.
        what: String,
        /// What rustls said.
        source: rustls::Error,
    },
    /// The client verifier could not be built from the CA.
    #[error("cannot trust {path} for client certificates: {reason}")]
    Verifier {
        /// The CA file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::BadFile {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".to_owned()));
    }
    Ok(certs)
}

/// Reads a private key, refusing one its group or others may read.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = match crate::fsutil::read_private(path) {
        Ok(pem) => pem,
        Err(PrivateReadError::TooOpen(e)) => return Err(e.into()),
        Err(PrivateReadError::Io { source, .. }) => {
            return Err(TlsError::BadFile {
                path: path.to_owned(),
                reason: source.to_string(),
            });
        }
    };
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::BadFile {
        path: path.to_owned(),
        reason: format!("no usable PEM private key ({e})"),
    })
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).map_err(|source| TlsError::Rejected {
            what: format!("{} is not a usable CA certificate", ca.display()),
            source,
        })?;
    }
    Ok(roots)
}

fn h2() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec()]
}

/// The daemon's mTLS configuration from a PKI directory.
///
/// Checks that the server certificate chains to `ca.crt`, is valid now for
/// [`SERVER_NAME`], and matches `server.key`, so that broken material is refused
/// here, with a reason, rather than at every client's handshake.
pub fn server_config(paths: &PkiPaths) -> Result<Arc<ServerConfig>, TlsError> {
    let ca = paths.file(files::CA_CERT);
    let roots = Arc::new(roots(&ca)?);
    let chain = read_certs(&paths.file(files::SERVER_CERT))?;
    let key = read_key(&paths.file(files::SERVER_KEY))?;

    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| TlsError::Verifier {
            path: ca.clone(),
            reason: e.to_string(),
        })?;
    let name = ServerName::try_from(SERVER_NAME).expect("SERVER_NAME is a valid DNS name");
    server_verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .map_err(|source| TlsError::Rejected {
            what: format!(
                "{} is not valid for '{SERVER_NAME}' under {}",
                paths.file(files::SERVER_CERT).display(),
                ca.display()
            ),
            source,
        })?;

    let client_verifier = verifier_for_clients(paths, roots)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rejected {
            what: "protocol versions".to_owned(),
            source,
        })?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rejected {
            what: format!(
                "{} does not match {}",
                paths.file(files::SERVER_KEY).display(),
                paths.file(files::SERVER_CERT).display()
            ),
            source,
        })?;
    config.alpn_protocols = h2();
    Ok(Arc::new(config))
}

/// The verifier of client certificates a PKI directory describes: chained to `ca.crt`
/// and, when `ca.crl` exists, not revoked by it. auraed uses it for new connections and
/// to check open ones again when the material changes.
pub fn client_verifier(paths: &PkiPaths) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = Arc::new(roots(&paths.file(files::CA_CERT))?);
    verifier_for_clients(paths, roots)
}

fn verifier_for_clients(
    paths: &PkiPaths,
    roots: Arc<RootCertStore>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider());
    let crl = paths.file(ledger::files::CRL);
    if crl.exists() {
        let list =
            CertificateRevocationListDer::from_pem_file(&crl).map_err(|e| TlsError::BadFile {
                path: crl.clone(),
                reason: format!("no usable revocation list ({e}); `aurae pki revoke` rewrites it"),
            })?;
        // Our CA signs only end-entity certificates, and the list covers all of them.
        builder = builder.with_crls([list]).only_check_end_entity_revocation();
    }
    builder.build().map_err(|e| TlsError::Verifier {
        path: paths.file(files::CA_CERT),
        reason: e.to_string(),
    })
}

/// A client's mTLS configuration: trust `ca`, present `cert` with `key`.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = roots(ca)?;
    let chain = read_certs(cert)?;
    let key_der = read_key(key)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rejected {
            what: "protocol versions".to_owned(),
            source,
        })?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)
        .map_err(|source| TlsError::Rejected {
            what: format!("{} does not match {}", key.display(), cert.display()),
            source,
        })?;
    config.alpn_protocols = h2();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{self, Overwrite};

    #[test]
    fn fresh_material_builds_a_server_config() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        pki::init_server_material(&paths, &pki::test_names(), Overwrite::Refuse).unwrap();
        server_config(&paths).unwrap();
    }

    #[test]
    fn server_certificate_from_another_ca_is_rejected_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        let other_paths = PkiPaths::new(other.path());
        pki::init_server_material(&paths, &pki::test_names(), Overwrite::Refuse).unwrap();
        pki::init_server_material(&other_paths, &pki::test_names(), Overwrite::Refuse).unwrap();
        std::fs::copy(other_paths.file(files::CA_CERT), paths.file(files::CA_CERT)).unwrap();
        let err = server_config(&paths).unwrap_err();
        assert!(matches!(err, TlsError::Rejected { .. }), "{err}");
        assert!(err.to_string().contains("server.crt"), "{err}");
    }

    #[test]
    fn garbage_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        pki::init_server_material(&paths, &pki::test_names(), Overwrite::Refuse).unwrap();
        std::fs::write(paths.file(files::SERVER_KEY), "garbage").unwrap();
        let err = server_config(&paths).unwrap_err();
        assert!(err.to_string().contains("server.key"), "{err}");
    }

    #[test]
    fn a_server_or_client_key_others_can_read_is_refused_with_the_chmod() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        pki::init_server_material(&paths, &pki::test_names(), Overwrite::Refuse).unwrap();
        let key = paths.file(files::SERVER_KEY);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = server_config(&paths).unwrap_err();
        assert!(matches!(err, TlsError::KeyTooOpen(_)), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("run `chmod 600 {}`", key.display())),
            "{err}"
        );
        let err = client_config(
            &paths.file(files::CA_CERT),
            &paths.file(files::SERVER_CERT),
            &key,
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::KeyTooOpen(_)), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        server_config(&paths).unwrap();
    }
}
