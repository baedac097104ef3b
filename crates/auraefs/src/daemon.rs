//! Going to the background the way mount(8) expects: the command returns once the mount
//! is live, with the mount's error and exit code if it failed.
//!
//! The process forks before it starts any thread; the child becomes the daemon (new
//! session, cwd `/`) and reports over a pipe: one byte of exit code, then the message.
//! The parent waits for that report and exits with it. This module must be used while
//! the process is still single-threaded.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use nix::unistd::ForkResult;

use crate::error::{AuraefsError, Exit};

/// What the waiting parent learns from the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The exit code to end with.
    pub code: u8,
    /// The error message; empty on success.
    pub message: String,
}

/// Which side of the fork this process is on.
#[derive(Debug)]
pub enum Role {
    /// The command the user ran: print the report and exit with its code.
    Parent(Report),
    /// The daemon: mount, then say so through the [`Readiness`].
    Daemon(Readiness),
}

/// How the daemon tells the waiting command that the mount is live (or why not).
#[derive(Debug)]
pub struct Readiness {
    pipe: Option<File>,
}

impl Readiness {
    /// For `--foreground`: nobody waits; readiness is only logged.
    pub fn foreground() -> Self {
        Self { pipe: None }
    }

    /// Whether this process is a daemon whose parent still waits.
    pub fn is_waited_for(&self) -> bool {
        self.pipe.is_some()
    }

    /// The mount is live: release the parent and detach from its terminal.
    pub fn ready(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(&[Exit::Ok as u8]);
            drop(pipe);
            detach_stdio();
        }
    }

    /// The mount failed: hand the parent the error and its exit code.
    pub fn fail(&mut self, error: &AuraefsError) {
        if let Some(mut pipe) = self.pipe.take() {
            let mut report = vec![error.exit() as u8];
            report.extend_from_slice(error.to_string().as_bytes());
            let _ = pipe.write_all(&report);
        }
    }
}

/// Points stdin, stdout and stderr at /dev/null: the terminal belongs to the user again.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// Forks: the parent waits for the daemon's report, the child becomes the daemon.
///
/// Must be called before any thread is started (no tokio runtime yet).
#[allow(unsafe_code)] // fork(2) is unsafe in a threaded process; see the SAFETY comment
pub fn detach() -> Result<Role, AuraefsError> {
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| AuraefsError::Start(e.into()))?;
    // SAFETY: auraefs calls this from main before it creates a runtime or any other
    // thread, so the child is a complete copy of a single-threaded process and may run
    // arbitrary code, not only async-signal-safe functions.
    let forked = unsafe { nix::unistd::fork() }.map_err(|e| AuraefsError::Start(e.into()))?;
    match forked {
        ForkResult::Parent { .. } => {
            drop(write_end);
            Ok(Role::Parent(wait_for_report(File::from(read_end))))
        }
        ForkResult::Child => {
            drop(read_end);
            // A session of its own: the terminal's hangup and Ctrl-C no longer reach it.
            let _ = nix::unistd::setsid();
            // Holding no directory busy (the mountpoint is already absolute).
            let _ = std::env::set_current_dir("/");
            Ok(Role::Daemon(Readiness {
                pipe: Some(File::from(write_end)),
            }))
        }
    }
}

fn wait_for_report(mut pipe: File) -> Report {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes);
    match bytes.split_first() {
        Some((&code, message)) => Report {
            code,
            message: String::from_utf8_lossy(message).into_owned(),
        },
        None => Report {
            code: Exit::Failure as u8,
            message: "the mount daemon exited before the mount was live; run with --foreground (or -o log=FILE) to see why".to_owned(),
        },
    }
}
