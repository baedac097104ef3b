//! The logs of executables: their stdout and stderr, timestamped, in a bounded and rotated
//! log per executable in the daemon's data directory, and the reading of them (tail N, since
//! T, follow).
//!
//! # What it owns
//!
//! One directory per executable, holding:
//! - `stdout.fifo` and `stderr.fifo`, two named pipes (mode 0600) that are the workload's
//!   stdout and stderr ([`workload_stdio`] opens them for the child);
//! - `current.log`, the log being written, and `1.log` .. `N.log`, the rotated ones, `1.log`
//!   the newest (mode 0600, at most [`LogConfig::max_files`] rotated files of about
//!   [`LogConfig::max_file_bytes`] each).
//!
//! A [`LogPump`] ([`start_pump`]) is the only writer: one thread per executable reads both
//! pipes in big chunks and appends records to `current.log`, rotating when it is full.
//! Readers ([`read`], [`LogFollower`]) read the files on their own.
//!
//! # What it must never do
//!
//! - Block the workload on a reader: the writer never waits for, nor knows about, readers. A
//!   follower only learns *that* something was written (a [`tokio::sync::watch`] counter the
//!   writer bumps without waiting) and reads the files itself; one that is never polled costs
//!   the writer nothing.
//! - Lose the workload's output, or kill the workload, when the daemon dies.
//! - Spawn processes (auraed's supervisor owns children) or `fsync` (the page cache is enough
//!   for logs, and fsync would put the disk's latency into the workload's writes).
//!
//! # Why named pipes opened read-write
//!
//! The workload's stdout and stderr are named pipes that outlive the daemon, not anonymous
//! pipes whose read end dies with it. The workload gets them opened `O_RDWR`: on Linux that
//! never blocks, and it makes the workload itself count as a reader of its own pipe, so when
//! no daemon runs (killed, restarting) its writes never raise `SIGPIPE`; they fill the pipe
//! buffer (enlarged to 1 MiB) and then wait. A new daemon starts a pump on the same directory
//! and reading resumes where the pipe stands: no byte is lost or repeated, except what the
//! dead daemon had read but not yet written (a chunk in flight, a line fragment waiting for
//! its newline). A pipe keeps its bytes only while someone has it open: what a workload
//! writes and then exits while no daemon runs is lost with it.
//!
//! # The record format
//!
//! Text, one record a line, the CRI format Kubernetes uses:
//!
//! ```text
//! 2024-05-01T12:00:00.123456789Z stdout F hello world
//! 2024-05-01T12:00:00.123456789Z stderr P the first 16 KiB of a longer line
//! ```
//!
//! The RFC 3339 UTC time (with nanoseconds) at which the chunk holding the line was read, the
//! stream, `F` for a full line or `P` for a part of one (a line longer than
//! [`MAX_LINE_BYTES`], or a line without its newline that stayed alone in the pipe for a
//! moment), then the line's bytes as written, without its newline.

mod fifo;
mod pump;
mod read;
mod time;

use std::path::PathBuf;
use std::time::SystemTime;

pub use fifo::workload_stdio;
pub use pump::{LogPump, start_pump};
pub use read::{LogFollower, parse_record, read};

/// The longest line a record holds; longer lines become several partial (`P`) records.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// The file name of the stdout pipe in an executable's log directory.
pub const STDOUT_FIFO: &str = "stdout.fifo";
/// The file name of the stderr pipe in an executable's log directory.
pub const STDERR_FIFO: &str = "stderr.fifo";
/// The file name of the log being written in an executable's log directory.
pub const CURRENT_LOG: &str = "current.log";

/// How big an executable's log may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The size at which `current.log` is rotated, in bytes. Default: 8 MiB.
    pub max_file_bytes: u64,
    /// How many rotated files (`1.log` .. `N.log`) are kept; older ones are deleted. Default: 4.
    /// The log takes at most about `max_file_bytes * (max_files + 1)` on disk.
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 8 * 1024 * 1024,
            max_files: 4,
        }
    }
}

/// Which output of the workload a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The workload's standard output.
    Stdout,
    /// The workload's standard error.
    Stderr,
}

impl Stream {
    /// The stream's name as the record format spells it (`stdout`, `stderr`).
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line (or part of one) of the workload's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// When the daemon read it from the pipe.
    pub time: SystemTime,
    /// Which output it came from.
    pub stream: Stream,
    /// Whether this is a part of a longer line whose rest follows in later records.
    pub partial: bool,
    /// The line's bytes as written, without the newline.
    pub line: Vec<u8>,
}

/// Which records a reader wants; both bounds apply together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    /// Only records read at or after this time.
    pub since: Option<SystemTime>,
    /// Only the last this many records (after `since` is applied).
    pub tail: Option<usize>,
}

/// Why a log could not be set up, written or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Creating a named pipe failed, for instance because the directory does not exist or
    /// is not writable, or a file that is not a pipe has the pipe's name.
    #[error("cannot create the pipe {path}: {source}")]
    CreateFifo {
        /// The pipe's path.
        path: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// Opening a named pipe failed, usually because the directory is missing or the daemon
    /// lacks permission.
    #[error("cannot open the pipe {path}: {source}")]
    OpenFifo {
        /// The pipe's path.
        path: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// Creating, opening, renaming or reading a log file failed: the data directory is
    /// missing, not writable, or the disk is full.
    #[error("cannot {action} the log file {path}: {source}")]
    File {
        /// What was being done (`open`, `rotate`, `read`, ...).
        action: &'static str,
        /// The file's path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The pump's thread could not be started, because the system is out of threads or
    /// memory.
    #[error("cannot start the log pump's thread: {0}")]
    Thread(std::io::Error),
    /// The pump's thread died unexpectedly; the log may lack the output of its last moments.
    #[error("the log pump's thread died unexpectedly; the log may be incomplete")]
    PumpDied,
}

#[cfg(test)]
mod tests;
