//! The named pipes that are a workload's stdout and stderr, and their opening: read-write for
//! the workload (so it never sees `SIGPIPE` while no daemon runs), and for the pump.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::stat::{Mode, SFlag, stat};
use nix::unistd::mkfifo;

use super::{LogError, STDERR_FIFO, STDOUT_FIFO};

/// The pipe buffer asked for, so that a workload keeps writing for a while when no daemon
/// reads (a restart) and the pump can read big chunks.
const PIPE_BYTES: i32 = 1024 * 1024;

/// Opens the executable's stdout and stderr pipes in `dir` for the workload, creating them
/// (mode 0600) if they are missing; the caller `dup2`s them onto 1 and 2 in the child.
///
/// They are opened `O_RDWR | O_CLOEXEC`: on Linux that never blocks, and the workload then
/// counts as a reader of its own pipes, so its writes never raise `SIGPIPE` while no daemon
/// reads; they wait once the 1 MiB pipe buffer is full, until a pump reads again.
pub fn workload_stdio(dir: &Path) -> Result<(OwnedFd, OwnedFd), LogError> {
    let stdout = open_fifo(&dir.join(STDOUT_FIFO), OFlag::empty())?;
    let stderr = open_fifo(&dir.join(STDERR_FIFO), OFlag::empty())?;
    Ok((stdout, stderr))
}

/// Opens both pipes in `dir` for the pump: read-write too (so that the pump never sees an end
/// of file, and never spins on one, when the workload exits before the pump is stopped) and
/// non-blocking.
pub(super) fn pump_ends(dir: &Path) -> Result<(OwnedFd, OwnedFd), LogError> {
    let stdout = open_fifo(&dir.join(STDOUT_FIFO), OFlag::O_NONBLOCK)?;
    let stderr = open_fifo(&dir.join(STDERR_FIFO), OFlag::O_NONBLOCK)?;
    Ok((stdout, stderr))
}

/// Creates the pipe at `path` unless a pipe is already there, opens it `O_RDWR | O_CLOEXEC |
/// extra` and enlarges its buffer (an unprivileged daemon above the system's limit keeps the
/// default size).
fn open_fifo(path: &Path, extra: OFlag) -> Result<OwnedFd, LogError> {
    ensure_fifo(path)?;
    let flags = OFlag::O_RDWR | OFlag::O_CLOEXEC | extra;
    let fd = open(path, flags, Mode::empty()).map_err(|source| LogError::OpenFifo {
        path: path.to_owned(),
        source,
    })?;
    match fcntl(&fd, FcntlArg::F_SETPIPE_SZ(PIPE_BYTES)) {
        Ok(_) | Err(Errno::EPERM) => {}
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "cannot enlarge the pipe buffer");
        }
    }
    Ok(fd)
}

/// Creates a named pipe (mode 0600) at `path`, unless one is there already.
fn ensure_fifo(path: &Path) -> Result<(), LogError> {
    let failed = |source| LogError::CreateFifo {
        path: PathBuf::from(path),
        source,
    };
    match mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => {
            let found = stat(path).map_err(failed)?;
            if SFlag::from_bits_truncate(found.st_mode) & SFlag::S_IFMT == SFlag::S_IFIFO {
                Ok(())
            } else {
                Err(failed(Errno::EEXIST))
            }
        }
        Err(error) => Err(failed(error)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    use super::*;

    #[test]
    fn pipes_are_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = workload_stdio(dir.path()).unwrap();
        let again = workload_stdio(dir.path()).unwrap();
        drop((first, again));
        for name in [STDOUT_FIFO, STDERR_FIFO] {
            let meta = std::fs::metadata(dir.path().join(name)).unwrap();
            assert!(meta.file_type().is_fifo());
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn a_regular_file_in_the_pipes_place_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STDOUT_FIFO), b"not a pipe").unwrap();
        let error = workload_stdio(dir.path()).unwrap_err();
        assert!(matches!(error, LogError::CreateFifo { .. }), "{error}");
    }
}
