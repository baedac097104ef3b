//! The node's peer identity: an ed25519 key in OpenSSH format (`~/.ssh/id_aura`).
//!
//! The libp2p PeerId is derived from it, so the same file always gives the same PeerId,
//! here and in any other tool that reads `id_aura.pub`. This module never overwrites an
//! existing key: a key it cannot use is reported, not replaced.

use std::path::{Path, PathBuf};

use libp2p_identity::{Keypair, PeerId};
use ssh_key::{Algorithm, LineEnding, PrivateKey};

use crate::fsutil::{self, PUBLIC_MODE, PrivateReadError, SECRET_MODE};

/// Why the node key could not be loaded or created; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The key file exists but could not be read.
    #[error("cannot read key {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The key file is readable by its group or others: it is refused, as OpenSSH refuses
    /// it, because a key others could read may have been copied.
    #[error(transparent)]
    TooOpen(#[from] fsutil::TooOpen),
    /// The key file is not an OpenSSH private key.
    #[error(
        "key {path} is not an OpenSSH private key ({reason}); create one with `ssh-keygen -t ed25519 -N '' -f {path}` after moving this file away"
    )]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The key is of another algorithm than ed25519.
    #[error(
        "key {path} is a {algorithm} key; Aurae peer identities are ed25519: `ssh-keygen -t ed25519 -N '' -f <file>` and pass it with --key"
    )]
    WrongType {
        /// The key file.
        path: PathBuf,
        /// The algorithm found.
        algorithm: String,
    },
    /// The key is protected by a passphrase, which a daemon cannot type.
    #[error(
        "key {path} is encrypted with a passphrase; remove it with `ssh-keygen -p -N '' -f {path}` or pass another key with --key"
    )]
    Encrypted {
        /// The key file.
        path: PathBuf,
    },
    /// A new key could not be written.
    #[error("cannot write new key {path}: {source}")]
    Write {
        /// The key file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
}

/// Whether the key was found or made now, so that the daemon can say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The key file already existed.
    Loaded,
    /// The key file was missing and was generated.
    Generated,
}

/// The node's ed25519 keypair and the PeerId derived from it.
#[derive(Clone)]
pub struct NodeIdentity {
    keypair: Keypair,
    peer_id: PeerId,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Loads the key at `path`, or generates one (0600, with `.pub` beside it) if it is
    /// missing. A key its group or others may read is refused with the `chmod` that fixes it.
    pub fn load_or_generate(path: &Path) -> Result<(Self, KeyOrigin), IdentityError> {
        match fsutil::read_private(path) {
            Ok(text) => Ok((Self::from_openssh(path, &text)?, KeyOrigin::Loaded)),
            Err(PrivateReadError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok((Self::generate(path)?, KeyOrigin::Generated))
            }
            Err(PrivateReadError::Io { path, source }) => Err(IdentityError::Read { path, source }),
            Err(PrivateReadError::TooOpen(e)) => Err(e.into()),
        }
    }

    /// The libp2p PeerId of this node.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The libp2p keypair, for the peer-to-peer layer.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    fn from_openssh(path: &Path, text: &str) -> Result<Self, IdentityError> {
        let key = PrivateKey::from_openssh(text).map_err(|e| IdentityError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if key.is_encrypted() {
            return Err(IdentityError::Encrypted {
                path: path.to_owned(),
            });
        }
        let Some(ed) = key.key_data().ed25519() else {
            return Err(IdentityError::WrongType {
                path: path.to_owned(),
                algorithm: key.algorithm().to_string(),
            });
        };
        let mut secret = ed.private.to_bytes();
        let keypair =
            Keypair::ed25519_from_bytes(&mut secret).map_err(|e| IdentityError::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self::from_keypair(keypair))
    }

    fn from_keypair(keypair: Keypair) -> Self {
        let peer_id = keypair.public().to_peer_id();
        Self { keypair, peer_id }
    }

    fn generate(path: &Path) -> Result<Self, IdentityError> {
        let write_err = |source| IdentityError::Write {
            path: path.to_owned(),
            source,
        };
        let key = PrivateKey::random(&mut rand_core::OsRng, Algorithm::Ed25519)
            .map_err(|e| write_err(std::io::Error::other(e)))?;
        let private = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| write_err(std::io::Error::other(e)))?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| write_err(std::io::Error::other(e)))?;
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsutil::create_dir_with_mode(dir, fsutil::PRIVATE_DIR_MODE).map_err(write_err)?;
        }
        let mut pub_path = path.as_os_str().to_owned();
        pub_path.push(".pub");
        fsutil::write_atomic(
            Path::new(&pub_path),
            format!("{public}\n").as_bytes(),
            PUBLIC_MODE,
        )
        .map_err(write_err)?;
        fsutil::write_atomic(path, private.as_bytes(), SECRET_MODE).map_err(write_err)?;
        Self::from_openssh(path, &private)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn generated_key_is_private_and_gives_a_stable_peer_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh/id_aura");
        let (first, origin) = NodeIdentity::load_or_generate(&path).unwrap();
        assert_eq!(origin, KeyOrigin::Generated);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(dir.path().join("ssh/id_aura.pub").exists());
        let (second, origin) = NodeIdentity::load_or_generate(&path).unwrap();
        assert_eq!(origin, KeyOrigin::Loaded);
        assert_eq!(first.peer_id(), second.peer_id());
    }

    #[test]
    fn corrupt_key_is_reported_with_its_path_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_aura");
        fsutil::write_atomic(&path, b"not a key", SECRET_MODE).unwrap();
        let err = NodeIdentity::load_or_generate(&path).unwrap_err();
        assert!(matches!(err, IdentityError::Corrupt { .. }));
        assert!(err.to_string().contains(path.to_str().unwrap()));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key");
    }

    #[test]
    fn a_key_others_can_read_is_refused_with_the_chmod_and_left_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_aura");
        NodeIdentity::load_or_generate(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = NodeIdentity::load_or_generate(&path).unwrap_err();
        assert!(matches!(err, IdentityError::TooOpen(_)), "{err}");
        let p = path.display();
        assert_eq!(
            err.to_string(),
            format!("permissions 0644 for '{p}' are too open; run `chmod 600 {p}`")
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "never replaced");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
    }
}
