//! The daemon's Unix socket: binding it safely, and removing it on the way out.
//!
//! A stale socket left by a dead daemon is replaced; one that a live daemon answers on
//! is never taken, and a file that is not a socket is never deleted.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Group, chown};
use tokio::net::UnixListener;

/// Socket mode when no group is given: only the daemon's user.
pub const SOCKET_MODE: u32 = 0o600;
/// Socket mode with `--sock-group`: the user and that group.
pub const GROUP_SOCKET_MODE: u32 = 0o660;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// A live daemon answers on the path.
    #[error("{0} is served by another live auraed; stop it first, or pass another --sock")]
    InUse(PathBuf),
    /// Something that is not a socket is at the path.
    #[error("{0} exists and is not a socket; move it away or pass another --sock")]
    NotASocket(PathBuf),
    /// The socket group does not exist.
    #[error("--sock-group {0}: no such group")]
    NoSuchGroup(String),
    /// An OS call failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

/// The bound socket: its listener and the guard of its file.
#[derive(Debug)]
pub struct BoundSocket {
    listener: UnixListener,
    file: SocketFile,
}

impl BoundSocket {
    /// The listener to accept on, and the guard that removes the file when dropped.
    pub fn into_parts(self) -> (UnixListener, SocketFile) {
        (self.listener, self.file)
    }
}

/// Removes the socket file when dropped, if the file at the path is still ours.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    inode: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SocketError + 'a {
    move |source| SocketError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn resolve_group(group: &str) -> Result<Gid, SocketError> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(Gid::from_raw(gid));
    }
    match Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid),
        _ => Err(SocketError::NoSuchGroup(group.to_owned())),
    }
}

/// Removes a stale socket at `path`, refusing a live one or a non-socket.
fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("inspect", path)(e)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket(path.to_owned()));
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(SocketError::InUse(path.to_owned())),
        Err(_) => {
            tracing::info!(socket = %path.display(), "removing stale socket left by a dead daemon");
            std::fs::remove_file(path).map_err(io_err("remove stale socket", path))
        }
    }
}

/// Binds `path` with mode 0600 (0660 and `group` if given), creating its directory.
pub fn bind(path: &Path, group: Option<&str>) -> Result<BoundSocket, SocketError> {
    let gid = group.map(resolve_group).transpose()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err("create the directory of", path))?;
    }
    clear_stale(path)?;
    // The socket is created with the umask applied: make it private from its first instant,
    // then widen to the group only if asked.
    let previous = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(previous);
    let listener = bound.map_err(io_err("bind", path))?;
    let mode = match gid {
        Some(gid) => {
            chown(path, None, Some(gid)).map_err(|e| io_err("chown", path)(e.into()))?;
            GROUP_SOCKET_MODE
        }
        None => SOCKET_MODE,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("chmod", path))?;
    let inode = std::fs::symlink_metadata(path)
        .map_err(io_err("inspect", path))?
        .ino();
    Ok(BoundSocket {
        listener,
        file: SocketFile {
            path: path.to_owned(),
            inode,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn socket_is_private_and_a_regular_file_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/aurae.sock");
        let bound = bind(&path, None).unwrap();
        let mode = std::fs::metadata(&path).unwrap().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        assert!(matches!(bind(&path, None), Err(SocketError::InUse(_))));
        drop(bound);
        assert!(!path.exists(), "socket removed on drop");

        let file = dir.path().join("file");
        std::fs::write(&file, "keep me").unwrap();
        assert!(matches!(bind(&file, None), Err(SocketError::NotASocket(_))));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    }
}
