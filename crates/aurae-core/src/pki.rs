//! The node's certificate authority: creating it, issuing server and client certificates,
//! and reading a caller's principal back out of a certificate.
//!
//! This replaces the openssl scripts other runtimes need. It never overwrites a CA unless
//! asked to, because that invalidates every certificate issued before.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::fsutil::{self, PUBLIC_MODE, SECRET_MODE};
use crate::ledger::{self, CertKind, IssuedCert, Ledger};
use crate::name::{DomainName, EntityName, NameError, PeerName, Principal};

/// The DNS name in the server certificate; clients verify the daemon against it.
pub const SERVER_NAME: &str = "auraed";

/// File names inside a PKI directory.
pub mod files {
    /// The CA certificate, trusted by the daemon for client certificates.
    pub const CA_CERT: &str = "ca.crt";
    /// The CA private key, needed only to issue certificates.
    pub const CA_KEY: &str = "ca.key";
    /// The daemon's certificate.
    pub const SERVER_CERT: &str = "server.crt";
    /// The daemon's private key.
    pub const SERVER_KEY: &str = "server.key";
    /// The node's peer and domain names, for issuing principals.
    pub const NODE_NAMES: &str = "node.toml";
    /// What the daemon needs to serve over mTLS.
    pub const SERVING: [&str; 3] = [CA_CERT, SERVER_CERT, SERVER_KEY];
}

/// The peer and domain under which a CA issues principals, kept beside it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeNames {
    /// This node's peer name.
    pub peer: PeerName,
    /// This node's domain.
    pub domain: DomainName,
}

impl NodeNames {
    /// The principal `<entity>@<peer>@<domain>` of this node.
    pub fn principal(&self, entity: EntityName) -> Principal {
        Principal {
            entity,
            peer: self.peer.clone(),
            domain: self.domain.clone(),
        }
    }

    /// Reads `node.toml` of a PKI directory.
    pub fn load(paths: &PkiPaths) -> Result<Self, PkiError> {
        let path = paths.file(files::NODE_NAMES);
        toml::from_str(&read(&path)?).map_err(|e| PkiError::Io {
            action: "cannot parse",
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })
    }

    fn save(&self, paths: &PkiPaths) -> Result<(), PkiError> {
        let text = toml::to_string(self).map_err(|e| PkiError::Io {
            action: "cannot serialize",
            path: paths.file(files::NODE_NAMES),
            source: std::io::Error::other(e.to_string()),
        })?;
        write(&paths.file(files::NODE_NAMES), text.as_bytes(), PUBLIC_MODE)
    }
}

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done ("cannot read", "cannot write").
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// A private key is readable by its group or others: refused until it is closed.
    #[error(transparent)]
    KeyTooOpen(#[from] fsutil::TooOpen),
    /// Certificate generation or parsing failed.
    #[error("certificate error in {what}: {source}")]
    Certificate {
        /// Which certificate or key.
        what: String,
        /// What rcgen said.
        source: rcgen::Error,
    },
    /// `init` found a CA already there.
    #[error(
        "a CA already exists at {path}; pass --force to replace it (every certificate it issued stops working)"
    )]
    AlreadyExists {
        /// The existing CA certificate.
        path: PathBuf,
    },
    /// A certificate could not be parsed as X.509.
    #[error("client certificate is not valid X.509: {0}")]
    BadX509(String),
    /// A client certificate has no `aurae:` URI SAN.
    #[error("client certificate names no principal (no URI SAN starting with 'aurae:')")]
    NoPrincipal,
    /// A client certificate's principal is malformed.
    #[error("client certificate names an invalid principal: {0}")]
    BadPrincipal(#[from] NameError),
}

/// Where the files of a PKI directory live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    dir: PathBuf,
}

impl PkiPaths {
    /// The PKI directory `dir` (by default `/etc/aurae/pki`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file of this directory, by name (see [`files`]).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Which of the files the daemon needs to serve are missing.
    pub fn missing_for_serving(&self) -> Vec<&'static str> {
        files::SERVING
            .into_iter()
            .filter(|f| !self.file(f).exists())
            .collect()
    }
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Valid from an hour ago (clock skew) for `days` days.
    pub fn days(days: i64) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(days),
        }
    }
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// Its serial number, what a revocation list names.
    pub serial: Vec<u8>,
    /// End of its validity.
    pub not_after: OffsetDateTime,
}

impl CertifiedKey {
    /// Its entry for the ledger of issued certificates.
    pub fn issued(&self, kind: CertKind, subject: String) -> IssuedCert {
        IssuedCert {
            serial: ledger::serial_hex(&self.serial),
            kind,
            subject,
            not_after: self.not_after.unix_timestamp(),
            revoked_at: None,
        }
    }

    /// Writes the certificate (0644) and key (0600) atomically.
    pub fn write(&self, cert: &Path, key: &Path) -> Result<(), PkiError> {
        write(key, self.key_pem.as_bytes(), SECRET_MODE)?;
        write(cert, self.cert_pem.as_bytes(), PUBLIC_MODE)
    }
}

/// Writes a file of the PKI directory atomically with `mode`.
pub(crate) fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    fsutil::write_atomic(path, bytes, mode).map_err(|source| PkiError::Io {
        action: "cannot write",
        path: path.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        action: "cannot read",
        path: path.to_owned(),
        source,
    })
}

/// Reads a private key, refusing one its group or others may read.
fn read_key(path: &Path) -> Result<String, PkiError> {
    fsutil::read_private(path).map_err(|e| match e {
        fsutil::PrivateReadError::TooOpen(e) => e.into(),
        fsutil::PrivateReadError::Io { path, source } => PkiError::Io {
            action: "cannot read",
            path,
            source,
        },
    })
}

fn cert_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError::Certificate { what, source }
}

/// A CA able to issue certificates: its certificate and key.
pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl CertificateAuthority {
    /// A new self-signed CA for `domain`, valid ten years.
    pub fn generate(domain: &DomainName) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(cert_err("new CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(&format!("Aurae CA for {domain}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let validity = Validity::days(3650);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params.self_signed(&key).map_err(cert_err("new CA"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads the CA of a PKI directory (`ca.crt` and `ca.key`).
    pub fn load(paths: &PkiPaths) -> Result<Self, PkiError> {
        let cert_pem = read(&paths.file(files::CA_CERT))?;
        let key_pem = read_key(&paths.file(files::CA_KEY))?;
        let key = KeyPair::from_pem(&key_pem).map_err(cert_err(files::CA_KEY))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(cert_err(files::CA_CERT))?;
        Ok(Self { cert_pem, issuer })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues the daemon's server certificate (DNS SAN [`SERVER_NAME`]).
    pub fn issue_server(&self, validity: Validity) -> Result<CertifiedKey, PkiError> {
        let mut params =
            CertificateParams::new(vec![SERVER_NAME.to_owned(), "localhost".to_owned()])
                .map_err(cert_err("server certificate"))?;
        params.distinguished_name = dn(SERVER_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, validity, "server certificate")
    }

    /// Issues a client certificate naming `principal` in its URI SAN.
    pub fn issue_client(
        &self,
        principal: &Principal,
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        let what = format!("client certificate for {principal}");
        self.issue(client_params(principal, &what)?, validity, &what)
    }

    /// Issues the client certificate of a cell's principal. It carries the
    /// organizational unit [`CELL_UNIT`], which tells the daemon to accept it only while
    /// the cell lives and only with this serial (a live lookup instead of a revocation
    /// list that would grow with every cell ever made).
    pub fn issue_cell(
        &self,
        principal: &Principal,
        validity: Validity,
    ) -> Result<CertifiedKey, PkiError> {
        let what = format!("cell certificate for {principal}");
        let mut params = client_params(principal, &what)?;
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, CELL_UNIT);
        self.issue(params, validity, &what)
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        validity: Validity,
        what: &str,
    ) -> Result<CertifiedKey, PkiError> {
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        let serial = ledger::new_serial();
        params.serial_number = Some(serial.clone().into());
        let key = KeyPair::generate().map_err(cert_err(what))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(cert_err(what))?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
            not_after: validity.not_after,
        })
    }

    /// Signs a revocation list.
    pub fn sign_crl(&self, params: &CertificateRevocationListParams) -> Result<String, PkiError> {
        let crl = params
            .signed_by(&self.issuer)
            .map_err(cert_err("revocation list"))?;
        crl.pem().map_err(cert_err("revocation list"))
    }
}

/// A client certificate's parameters: `principal` in its URI SAN and common name,
/// for client authentication.
fn client_params(principal: &Principal, what: &str) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let uri = principal.to_uri().try_into().map_err(cert_err(what))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.distinguished_name = dn(&principal.to_string());
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Aurae");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Whether `init` may replace an existing CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse when a CA is already there.
    Refuse,
    /// Replace it.
    Replace,
}

/// Creates a CA and the server certificate in a PKI directory (keys 0600, directory 0700).
pub fn init_server_material(
    paths: &PkiPaths,
    names: &NodeNames,
    overwrite: Overwrite,
) -> Result<CertificateAuthority, PkiError> {
    let domain = &names.domain;
    let ca_cert = paths.file(files::CA_CERT);
    if overwrite == Overwrite::Refuse && ca_cert.exists() {
        return Err(PkiError::AlreadyExists { path: ca_cert });
    }
    fsutil::create_dir_with_mode(paths.dir(), fsutil::PRIVATE_DIR_MODE)
        .and_then(|()| fsutil::narrow_dir(paths.dir()))
        .map_err(|source| PkiError::Io {
            action: "cannot create",
            path: paths.dir().to_owned(),
            source,
        })?;
    let ca = CertificateAuthority::generate(domain)?;
    let server = ca.issue_server(Validity::days(825))?;
    // The CA first, the server certificate last: a daemon watching the directory sees
    // complete material only once the final file lands.
    write(
        &paths.file(files::CA_KEY),
        ca.issuer.key().serialize_pem().as_bytes(),
        SECRET_MODE,
    )?;
    write(&ca_cert, ca.cert_pem.as_bytes(), PUBLIC_MODE)?;
    names.save(paths)?;
    // A new CA issued nothing yet: its ledger starts with the server certificate.
    Ledger::reset(paths)?;
    Ledger::record(
        paths,
        server.issued(CertKind::Server, SERVER_NAME.to_owned()),
    )?;
    server.write(
        &paths.file(files::SERVER_CERT),
        &paths.file(files::SERVER_KEY),
    )?;
    Ok(ca)
}

/// The principal a client certificate (DER) names in its `aurae:` URI SAN.
pub fn principal_of(cert_der: &[u8]) -> Result<Principal, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::BadX509(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::BadX509(e.to_string()))?
        .ok_or(PkiError::NoPrincipal)?;
    san.value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => Principal::from_uri(uri),
            _ => None,
        })
        .ok_or(PkiError::NoPrincipal)?
        .map_err(PkiError::from)
}

/// The organizational unit of a cell's certificate (see
/// [`CertificateAuthority::issue_cell`]).
pub const CELL_UNIT: &str = "aurae cell";

/// The serial of a cell's certificate, `None` for any other certificate (or one that
/// does not parse).
pub fn cell_serial_of(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let is_cell = cert
        .subject()
        .iter_organizational_unit()
        .any(|unit| unit.as_str() == Ok(CELL_UNIT));
    is_cell.then(|| cert.raw_serial().to_vec())
}

/// [`cell_serial_of`] for a PEM certificate (as a cell's `cert.pem` holds it).
pub fn cell_serial_of_pem(pem: &[u8]) -> Option<Vec<u8>> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    cell_serial_of(&pem.contents)
}

/// Test support: node names for tests of other modules.
#[cfg(test)]
pub(crate) fn test_names() -> NodeNames {
    NodeNames {
        peer: "node1".parse().expect("valid peer"),
        domain: DomainName::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, pem::PemObject};

    #[test]
    fn client_certificate_names_its_principal() {
        let ca = CertificateAuthority::generate(&DomainName::default()).unwrap();
        let principal: Principal = "admin@node1@example.org".parse().unwrap();
        let client = ca.issue_client(&principal, Validity::days(1)).unwrap();
        let der = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
        assert_eq!(principal_of(&der).unwrap(), principal);
    }

    #[test]
    fn init_refuses_to_replace_a_ca_unless_told() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path().join("pki"));
        assert_eq!(paths.missing_for_serving().len(), 3);
        let names = NodeNames {
            peer: "node1".parse().unwrap(),
            domain: DomainName::default(),
        };
        init_server_material(&paths, &names, Overwrite::Refuse).unwrap();
        assert!(paths.missing_for_serving().is_empty());
        assert_eq!(NodeNames::load(&paths).unwrap(), names);
        let err = init_server_material(&paths, &names, Overwrite::Refuse);
        assert!(matches!(err, Err(PkiError::AlreadyExists { .. })));
        let loaded = CertificateAuthority::load(&paths).unwrap();
        assert!(loaded.cert_pem().contains("BEGIN CERTIFICATE"));
        init_server_material(&paths, &names, Overwrite::Replace).unwrap();
    }

    #[test]
    fn a_ca_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        init_server_material(&paths, &test_names(), Overwrite::Refuse).unwrap();
        let key = paths.file(files::CA_KEY);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CertificateAuthority::load(&paths).err().expect("refused");
        assert!(matches!(err, PkiError::KeyTooOpen(_)), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn only_a_cell_certificate_has_a_cell_serial() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path().join("pki"));
        let names = test_names();
        let ca = init_server_material(&paths, &names, Overwrite::Refuse).unwrap();
        let principal = names.principal("web".parse().unwrap());
        let cell = ca.issue_cell(&principal, Validity::days(1)).unwrap();
        let der = pem_der(&cell.cert_pem);
        assert_eq!(cell_serial_of(&der), Some(cell.serial.clone()));
        assert_eq!(principal_of(&der).unwrap(), principal);
        let client = ca.issue_client(&principal, Validity::days(1)).unwrap();
        assert_eq!(cell_serial_of(&pem_der(&client.cert_pem)), None);
        assert_eq!(cell_serial_of(b"not a certificate"), None);
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }
}
