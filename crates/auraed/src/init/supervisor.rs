//! The process supervisor: the one owner of auraed's child processes.
//!
//! [`Supervisor::spawn`](crate::init::supervisor::Supervisor::spawn) is the **only** way auraed
//! starts a process. Elsewhere in auraed, `tokio::process::Command` and
//! `std::process::Command::{spawn, output, status}` must not be used: auraed reaps every
//! child it does not track (as PID 1 and as a child subreaper it inherits its workloads'
//! orphans and must free them), so the reaper would take the exit
//! status that `tokio::process` or std's `Child::wait` is waiting for, and they would fail
//! with `ECHILD`. Commands are still built with `std::process::Command` and handed to
//! `Supervisor::spawn`.
//!
//! # What it owns
//! - Each child it starts is tracked by a **pidfd** from the moment it exists. Its
//!   `SupervisedChild` handle signals it through the pidfd (`pidfd_send_signal`, which can
//!   never hit a newer process that reuses the pid) and awaits its exit through the pidfd,
//!   then reaps exactly that child with `waitid(P_PIDFD)`. The exit status, an exit code or
//!   the killing signal, goes to the handle's owner and to nobody else.
//! - Every other child is reaped by the orphan reaper (`reaper.rs`), which runs in a thread
//!   of its own, woken by SIGCHLD, by owners, and every few seconds. It **never reaps a tracked
//!   child**.
//! - When auraed is not PID 1 it makes itself a child subreaper, so orphans of its workloads
//!   come back to it instead of escaping to the host's init.
//!
//! # Why it is race-free
//! Two locks in the shared state carry the argument:
//! - the *gate*: a spawn holds it shared from `fork` until the new pid is tracked; the reaper
//!   holds it exclusively from "is this pid tracked?" until its `waitid` on that pid returns.
//!   A child that exits at once therefore stays a zombie, which no one else can reap and whose
//!   pid cannot be reused, until it is tracked; the reaper then skips it. Spawns do not wait
//!   for each other, and an owner's wait never waits for a spawn.
//! - the *tracked* multiset: a pid stays counted until its owner has reaped it (or dropped its
//!   handle). The reaper checks it under the gate, so "untracked" always means "nobody will
//!   ask for this status". It is a multiset because a pid, once reaped by its owner, may be
//!   reused by a newer tracked child before the former owner has uncounted it.
//!
//! # Finding orphans without touching tracked children
//! The reaper peeks with `waitid(P_ALL, WEXITED | WNOHANG | WNOWAIT)`: the kernel names the
//! first zombie child without freeing it, and an untracked one is then reaped by pid. This is
//! the whole cost while no tracked child sits unreaped. But a peek always names the *same*
//! first zombie, so a tracked zombie whose owner has not waited yet hides every zombie behind
//! it. Then the reaper lists its children from `/proc/self/task/*/children` (or, if the kernel
//! lacks that file, scans `/proc/*/stat` for zombies whose parent is auraed) and reaps each
//! untracked one by pid. Reaping tracked children too and forwarding their statuses through a
//! map would avoid `/proc`, but would free a tracked pid before its owner asked, so an owner
//! could never rely on its child's pid staying put until it waits, as with
//! `std::process::Child`.
//!
//! # Kernel
//! Needs Linux 5.4 (`waitid(P_PIDFD)`; `pidfd_open` is 5.3).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use nix::libc;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use super::reaper;
use super::sys::{self, Mode, Target};

/// The supervisor of this process, once started: the kernel keeps one list of children per
/// process, so there is exactly one tracker and one reaper per process.
static STARTED: Mutex<Option<Supervisor>> = Mutex::new(None);

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Exit {
    /// It exited by itself (returned from `main` or called `exit`) with this code (0-255).
    Code(i32),
    /// A signal ended it.
    Signal {
        /// The signal's number; real-time signals (`SIGRTMIN` and above) included.
        number: i32,
        /// Whether the kernel wrote a core dump.
        core_dumped: bool,
    },
}

impl Exit {
    /// Whether it exited by itself with code 0.
    pub fn success(&self) -> bool {
        *self == Exit::Code(0)
    }

    /// The exit code, if it exited by itself.
    pub fn code(&self) -> Option<i32> {
        match *self {
            Exit::Code(code) => Some(code),
            Exit::Signal { .. } => None,
        }
    }

    /// The number of the signal that ended it, if one did.
    pub fn signal(&self) -> Option<i32> {
        match *self {
            Exit::Code(_) => None,
            Exit::Signal { number, .. } => Some(number),
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exited with code {code}"),
            Exit::Signal {
                number,
                core_dumped,
            } => {
                write!(f, "killed by signal {number}")?;
                if let Ok(signal) = Signal::try_from(number) {
                    write!(f, " ({signal})")?;
                }
                if core_dumped {
                    write!(f, ", core dumped")?;
                }
                Ok(())
            }
        }
    }
}

/// Why the supervisor could not start. Without it auraed can neither start processes nor
/// reap orphans, so the daemon does not run without it.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The reaper's thread could not be created: the process is out of memory or threads.
    #[error("cannot start the reaper thread: {0}")]
    Thread(#[source] io::Error),
    /// The reaper thread's event loop could not be built: usually out of file descriptors
    /// (it needs an epoll instance and an eventfd).
    #[error("cannot build the reaper's event loop: {0}")]
    Runtime(#[source] io::Error),
    /// SIGCHLD could not be watched, so orphans would never be reaped.
    #[error("cannot watch SIGCHLD: {0}")]
    Sigchld(#[source] io::Error),
    /// The reaper thread stopped before it reported ready; it is not running.
    #[error("the reaper thread stopped while starting")]
    ReaperLost,
}

/// Why [`Supervisor::spawn`] started no tracked process.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program could not be started: not found, not executable, a bad working directory,
    /// or `fork` failed (out of memory or over the process limit).
    #[error("cannot start {program}: {source}")]
    Start {
        /// The program, as given to the command.
        program: String,
        /// What `Command::spawn` reported.
        #[source]
        source: io::Error,
    },
    /// The process started, but it could not be tracked: no pidfd (Linux older than 5.3, or
    /// out of file descriptors) or the supervisor's event loop refused it. It was killed with
    /// SIGKILL and is reaped as an orphan.
    #[error("started {program} as pid {pid} but cannot track it, so it was killed: {source}")]
    Track {
        /// The program, as given to the command.
        program: String,
        /// The pid the killed process had.
        pid: i32,
        /// The failed `pidfd_open` or event-loop registration.
        #[source]
        source: io::Error,
    },
}

/// Why [`SupervisedChild::signal`] did not deliver a signal.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The child has exited and been reaped: there is no process left to signal.
    #[error("process {pid} has already exited")]
    Exited {
        /// The pid it had.
        pid: i32,
    },
    /// The kernel refused (`EPERM` if the child changed its credentials out of reach).
    #[error("cannot signal process {pid}: {source}")]
    Io {
        /// The child's pid.
        pid: i32,
        /// What `pidfd_send_signal` reported.
        #[source]
        source: io::Error,
    },
}

/// Why [`SupervisedChild::wait`] or [`SupervisedChild::try_wait`] has no exit status.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// Someone else took the exit status: code in auraed reaped the child behind the
    /// supervisor's back (`waitpid(-1)`, `tokio::process`, std's `Child::wait`, all of which
    /// auraed must not use), or SIGCHLD was set to be ignored, which makes the kernel discard
    /// statuses.
    #[error("the exit status of process {pid} was taken by someone else")]
    Lost {
        /// The child's pid.
        pid: i32,
    },
    /// Waiting failed: the supervisor's event loop is gone, or `waitid` failed (`EINVAL` on
    /// Linux older than 5.4, which lacks `P_PIDFD`).
    #[error("cannot wait for process {pid}: {source}")]
    Io {
        /// The child's pid.
        pid: i32,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// State shared by the supervisor's handles, its children's handles and the reaper.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Shared by spawns from `fork` until the child is tracked; exclusive for the reaper
    /// from its "is it tracked?" check until it has reaped (or left) that pid.
    gate: RwLock<()>,
    /// How many live handles claim each pid (see the module doc for why it counts).
    tracked: Mutex<HashMap<i32, u32>>,
    /// Wakes the reaper: an owner has reaped or released a child.
    pub(super) wake: Notify,
    /// Orphans reaped since the start.
    orphans_reaped: AtomicU64,
}

impl Shared {
    fn spawn_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Taken by the reaper around each check-then-reap.
    pub(super) fn reap_gate(&self) -> RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn tracked(&self) -> MutexGuard<'_, HashMap<i32, u32>> {
        self.tracked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a live handle claims `pid`. Only meaningful under the reap gate.
    pub(super) fn is_tracked(&self, pid: i32) -> bool {
        self.tracked().contains_key(&pid)
    }

    fn track(&self, pid: i32) {
        *self.tracked().entry(pid).or_default() += 1;
    }

    fn untrack(&self, pid: i32) {
        let mut tracked = self.tracked();
        if let Some(count) = tracked.get_mut(&pid) {
            *count -= 1;
            if *count == 0 {
                tracked.remove(&pid);
            }
        }
        drop(tracked);
        // The child may have been the zombie that hid orphans from the reaper's peek.
        self.wake.notify_one();
    }

    /// Counts an orphan the reaper has freed.
    pub(super) fn count_orphan(&self) {
        self.orphans_reaped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The handle to the process supervisor: cheap to clone, one per process behind it.
#[derive(Debug, Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
    /// The reaper thread's event loop, which also watches every tracked child's pidfd, so
    /// that waiting works from any async context.
    reactor: tokio::runtime::Handle,
}

impl Supervisor {
    /// Starts the supervisor of this process: becomes a child subreaper unless PID 1, then
    /// starts the reaper thread. Called once by the daemon; a later call returns a handle to
    /// the same supervisor, because a process has one list of children.
    pub fn start() -> Result<Self, SupervisorError> {
        let mut started = STARTED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(supervisor) = started.as_ref() {
            return Ok(supervisor.clone());
        }
        if !super::is_pid1() {
            become_subreaper();
        }
        let shared = Arc::new(Shared::default());
        let reactor = reaper::start(Arc::clone(&shared))?;
        let supervisor = Supervisor { shared, reactor };
        *started = Some(supervisor.clone());
        Ok(supervisor)
    }

    /// Starts `command` as a tracked child. Its exit status goes only to the returned handle.
    ///
    /// Standard streams configured as `Stdio::piped()` are handed over in the handle. This
    /// blocks for as long as `fork` and `exec` take (as `Command::spawn` does): call it off
    /// the socket thread.
    pub fn spawn(&self, command: &mut Command) -> Result<SupervisedChild, SpawnError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let gate = self.shared.spawn_gate();
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(source) => return Err(SpawnError::Start { program, source }),
        };
        // A pid fits in an i32: the kernel's pid_max is at most 2^22.
        let pid = child.id() as i32;
        let readiness = match self.watch(pid) {
            Ok(readiness) => readiness,
            Err(source) => {
                // Untracked, so the reaper frees it once it is dead. Until the gate is
                // released it is an unreaped child of ours: the pid is still its own.
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                drop(gate);
                self.shared.wake.notify_one();
                return Err(SpawnError::Track {
                    program,
                    pid,
                    source,
                });
            }
        };
        self.shared.track(pid);
        drop(gate);
        tracing::debug!(pid, %program, "spawned");
        Ok(SupervisedChild {
            pid,
            readiness,
            exit: None,
            tracked: true,
            shared: Arc::clone(&self.shared),
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        })
    }

    /// Opens `pid`'s pidfd and registers it with the reaper thread's event loop.
    fn watch(&self, pid: i32) -> io::Result<AsyncFd<OwnedFd>> {
        let pidfd = sys::pidfd_open(pid)?;
        let _context = self.reactor.enter();
        sys::watch_pidfd(pidfd)
    }

    /// Watches a process that is not auraed's child (a workload an earlier auraed started,
    /// found again after a restart): it can be signalled and its exit noticed through its
    /// pidfd, but its exit status belongs to its parent.
    pub fn adopt(&self, pid: i32) -> io::Result<AdoptedProcess> {
        Ok(AdoptedProcess {
            pid,
            readiness: self.watch(pid)?,
        })
    }

    /// How many orphans (children nobody tracked) the reaper has freed since the start.
    pub fn orphans_reaped(&self) -> u64 {
        self.shared.orphans_reaped.load(Ordering::Relaxed)
    }

    /// How many started children are tracked: running, or exited and not yet waited for.
    pub fn tracked_children(&self) -> usize {
        self.shared.tracked().len()
    }
}

/// Asks the kernel to reparent the orphans of our descendants to us rather than to the
/// init of the PID namespace. A failure (Linux before 3.4) only means orphans go there.
fn become_subreaper() {
    match nix::sys::prctl::set_child_subreaper(true) {
        Ok(()) => tracing::debug!("auraed is a child subreaper"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot become a child subreaper; orphans of workloads go to the host's init")
        }
    }
}

/// Sends `signal` to the process `pidfd` names (`pid` is for the error only).
fn signal_pidfd(pid: i32, pidfd: BorrowedFd<'_>, signal: Signal) -> Result<(), SignalError> {
    sys::pidfd_send_signal(pidfd, signal as i32).map_err(|source| {
        if source.raw_os_error() == Some(libc::ESRCH) {
            SignalError::Exited { pid }
        } else {
            SignalError::Io { pid, source }
        }
    })
}

/// A process found again after a restart of auraed ([`Supervisor::adopt`]).
#[derive(Debug)]
pub struct AdoptedProcess {
    pid: i32,
    readiness: AsyncFd<OwnedFd>,
}

impl AdoptedProcess {
    /// Its pid, as of its adoption.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Its pidfd.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.readiness.get_ref().as_fd()
    }

    /// Sends `signal` through the pidfd.
    pub fn signal(&self, signal: Signal) -> Result<(), SignalError> {
        signal_pidfd(self.pid, self.pidfd(), signal)
    }

    /// Waits until it has exited (its pidfd turns readable).
    pub async fn exited(&self) {
        if let Ok(mut ready) = self.readiness.readable().await {
            ready.retain_ready();
        }
    }
}

/// A child started by the [`Supervisor`]: signal it and wait for its exit status.
///
/// Dropping the handle without waiting detaches the child, as with `std::process::Child`:
/// it keeps running and the orphan reaper frees it when it exits.
pub struct SupervisedChild {
    pid: i32,
    /// The child's pidfd, registered with the supervisor's event loop.
    readiness: AsyncFd<OwnedFd>,
    /// The exit status, once reaped.
    exit: Option<Exit>,
    /// Whether this handle still counts in the tracked set.
    tracked: bool,
    shared: Arc<Shared>,
    /// The child's standard input, if the command set `Stdio::piped()`.
    pub stdin: Option<ChildStdin>,
    /// The child's standard output, if the command set `Stdio::piped()`.
    pub stdout: Option<ChildStdout>,
    /// The child's standard error, if the command set `Stdio::piped()`.
    pub stderr: Option<ChildStderr>,
}

impl fmt::Debug for SupervisedChild {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisedChild")
            .field("pid", &self.pid)
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

impl SupervisedChild {
    /// The child's pid. It stays the child's own until the child is waited for (it is a
    /// zombie meanwhile); after that it may name another process, so act on the child
    /// through [`Self::pidfd`] or [`Self::signal`].
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The child's pidfd: it names this process and never a later one with the same pid.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.readiness.get_ref().as_fd()
    }

    /// Sends `signal` to the child through its pidfd, so it can never hit another process.
    /// A child that has exited but not been waited for still accepts (and ignores) signals.
    pub fn signal(&self, signal: Signal) -> Result<(), SignalError> {
        signal_pidfd(self.pid, self.pidfd(), signal)
    }

    /// The exit status if the child has exited, without blocking. Reaps the child then; the
    /// status is kept, so later calls return it again.
    pub fn try_wait(&mut self) -> Result<Option<Exit>, WaitError> {
        if let Some(exit) = self.exit {
            return Ok(Some(exit));
        }
        let pid = self.pid;
        if !self.tracked {
            return Err(WaitError::Lost { pid });
        }
        match sys::waitid(Target::Pidfd(self.pidfd()), Mode::Reap) {
            Ok(None) => Ok(None),
            Ok(Some(exited)) => {
                self.exit = Some(exited.exit);
                self.release();
                tracing::debug!(pid, exit = %exited.exit, "child exited");
                Ok(Some(exited.exit))
            }
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                self.release();
                Err(WaitError::Lost { pid })
            }
            Err(source) => Err(WaitError::Io { pid, source }),
        }
    }

    /// Waits for the child to exit and returns how it ended. Cancel-safe, and works from any
    /// async context: the supervisor's own thread watches the pidfd.
    pub async fn wait(&mut self) -> Result<Exit, WaitError> {
        loop {
            if let Some(exit) = self.try_wait()? {
                return Ok(exit);
            }
            let pid = self.pid;
            let mut ready = self
                .readiness
                .readable()
                .await
                .map_err(|source| WaitError::Io { pid, source })?;
            // Cleared before the next try_wait, so an exit after it still wakes us.
            ready.clear_ready();
        }
    }

    /// Takes this handle out of the tracked set (once).
    fn release(&mut self) {
        if std::mem::replace(&mut self.tracked, false) {
            self.shared.untrack(self.pid);
        }
    }
}

impl AsFd for SupervisedChild {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pidfd()
    }
}

impl Drop for SupervisedChild {
    fn drop(&mut self) {
        if self.tracked && self.exit.is_none() {
            tracing::debug!(pid = self.pid, "child detached; the reaper will free it");
        }
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    #[test]
    fn an_exit_reads_as_a_sentence() {
        assert_eq!(Exit::Code(7).to_string(), "exited with code 7");
        let killed = Exit::Signal {
            number: 9,
            core_dumped: false,
        };
        assert_eq!(killed.to_string(), "killed by signal 9 (SIGKILL)");
        let dumped = Exit::Signal {
            number: 11,
            core_dumped: true,
        };
        assert_eq!(
            dumped.to_string(),
            "killed by signal 11 (SIGSEGV), core dumped"
        );
        let realtime = Exit::Signal {
            number: 40,
            core_dumped: false,
        };
        assert_eq!(realtime.to_string(), "killed by signal 40");
    }

    #[test]
    fn only_code_zero_is_success() {
        assert!(Exit::Code(0).success());
        assert!(!Exit::Code(1).success());
        assert_eq!(Exit::Code(3).code(), Some(3));
        let killed = Exit::Signal {
            number: 15,
            core_dumped: false,
        };
        assert!(!killed.success());
        assert_eq!(killed.signal(), Some(15));
        assert_eq!(killed.code(), None);
    }
}
