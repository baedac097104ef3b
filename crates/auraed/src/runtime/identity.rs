//! A cell's own identity: a client certificate for `<cell>@<peer>@<domain>` issued by the
//! node's CA, with the CA certificate and a client config, in a directory the cell sees
//! read-only at `/run/aurae/`. The certificate works only while the cell lives
//! ([`super::credentials`]); freeing the cell deletes the directory.
//!
//! It must never hand a cell anything of the CA but its certificate.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aurae_core::config::ClientConfig;
use aurae_core::ledger::Ledger;
use aurae_core::name::{EntityName, Principal};
use aurae_core::pki::{CertificateAuthority, NodeNames, PkiError, PkiPaths, Validity};
use aurae_runtime::spec::CellName;

/// Where the identity appears inside the cell.
pub const CELL_IDENTITY_DIR: &str = "/run/aurae";
/// The client config inside the cell (`AURAE_CONFIG`).
pub const CELL_CONFIG: &str = "/run/aurae/config.toml";

/// Serializes this daemon's changes to the ledger of issued certificates (a file that is
/// read, changed and written back); only revocation of an older daemon's cell
/// certificates changes it now.
static LEDGER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long a cell's certificate is valid; freeing the cell revokes it long before.
const VALIDITY_DAYS: i64 = 3650;

/// Why a cell's identity could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The node's CA or names could not be loaded, or the certificate not issued.
    #[error("cannot issue the cell's certificate: {0}")]
    Pki(#[from] PkiError),
    /// The cell's name does not make a valid principal.
    #[error("cell '{0}' does not make a principal name: {1}")]
    Name(String, aurae_core::name::NameError),
    /// The identity directory could not be written.
    #[error("cannot write the cell's identity to {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The principal a cell's processes act as.
pub fn principal_of(pki: &PkiPaths, cell: &CellName) -> Result<Principal, IdentityError> {
    let names = NodeNames::load(pki)?;
    let entity: EntityName = cell
        .principal_entity()
        .parse()
        .map_err(|e| IdentityError::Name(cell.to_string(), e))?;
    Ok(names.principal(entity))
}

/// Makes the cell's empty identity directory `dir` (replacing a stale one), with the
/// mount point of the aurae CLI, so that the cell's init can bind it before the
/// certificate is in it. Blocking.
pub fn prepare(dir: &Path) -> Result<(), IdentityError> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(io_at(dir))?;
    }
    fs::DirBuilder::new()
        .mode(0o755)
        .recursive(true)
        .create(dir.join("bin"))
        .map_err(io_at(dir))?;
    // The mount point of the aurae CLI, which the cell's init binds over it.
    write_new(&dir.join("bin/aurae"), b"", 0o644)
}

/// Issues the cell's certificate into the directory [`prepare`] made. Returns the
/// principal and the certificate's serial, which [`super::credentials`] accepts while the
/// cell lives. Blocking.
///
/// Nothing is recorded in the ledger or ever put on the revocation list: the certificate
/// works only while the live lookup knows it. The files are not synced: they live as
/// long as the cell's init, and a host that crashes makes every cell anew, with a new
/// certificate.
pub fn issue(
    pki: &PkiPaths,
    cell: &CellName,
    dir: &Path,
) -> Result<(Principal, Vec<u8>), IdentityError> {
    let principal = principal_of(pki, cell)?;
    let ca = CertificateAuthority::load(pki)?;
    let cert = ca.issue_cell(&principal, Validity::days(VALIDITY_DAYS))?;
    write_new(&dir.join("key.pem"), cert.key_pem.as_bytes(), 0o600)?;
    write_new(&dir.join("cert.pem"), cert.cert_pem.as_bytes(), 0o644)?;
    write_new(&dir.join("ca.pem"), ca.cert_pem().as_bytes(), 0o644)?;
    let config = ClientConfig {
        socket: aurae_core::config::DEFAULT_SOCKET.into(),
        ca_cert: Path::new(CELL_IDENTITY_DIR).join("ca.pem"),
        client_cert: Path::new(CELL_IDENTITY_DIR).join("cert.pem"),
        client_key: Path::new(CELL_IDENTITY_DIR).join("key.pem"),
        connect_timeout: None,
        timeout: None,
    };
    let config_path = dir.join("config.toml");
    let text = toml::to_string(&config).map_err(|e| IdentityError::Io {
        path: config_path.clone(),
        source: std::io::Error::other(e),
    })?;
    write_new(&config_path, text.as_bytes(), 0o644)?;
    Ok((principal, cert.serial))
}

/// The serial of the cell certificate in `dir` (to accept it again after a restart of
/// the daemon); `None` when there is none, or it is not a cell certificate (one an older
/// daemon issued, which the ledger still revokes).
pub fn serial_in(dir: &Path) -> Option<Vec<u8>> {
    aurae_core::pki::cell_serial_of_pem(&fs::read(dir.join("cert.pem")).ok()?)
}

/// Writes a file that must not exist yet with exactly `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IdentityError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_at(path))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_at(path))?;
    file.write_all(bytes).map_err(io_at(path))
}

/// Deletes the cell's identity directory, and revokes the certificates of its principal
/// that the ledger holds: only ones an older daemon issued to the cell (a cell
/// certificate of now is stopped by [`super::credentials`] instead). Returns whether a
/// new revocation list was published, which the daemon must then load. Blocking.
pub fn revoke(pki: &PkiPaths, principal: &Principal, dir: &Path) -> Result<bool, IdentityError> {
    let published = {
        let _ledger = LEDGER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut ledger = Ledger::load(pki)?;
        let revoked = !ledger.revoke(principal).is_empty();
        if revoked {
            let ca = CertificateAuthority::load(pki)?;
            ledger.publish_crl(&ca, pki)?;
        }
        revoked
    };
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(io_at(dir))?;
    }
    Ok(published)
}
