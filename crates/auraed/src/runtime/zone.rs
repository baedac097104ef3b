//! A cell's namespaces: made once with the cell's init, joined by every executable.
//!
//! # How a process gets into a cell, still auraed's own child
//! A pid namespace can only be entered by a new process: `unshare` and `setns` with
//! `CLONE_NEWPID` change where the caller's *next child* goes. So each spawn runs on a
//! short-lived thread of its own that first moves its children's pid namespace (a new
//! one for the cell's init, the init's for an executable), then forks through the
//! [supervisor](crate::init::supervisor), which tracks the child by pidfd like any
//! other. The thread ends with the spawn, so no other spawn of auraed ever lands in a
//! cell. In the child, before `exec`, the rest happens: joining the cell's cgroups
//! (writing `0`, "myself", to each `cgroup.procs`), then the other namespaces (`unshare`
//! for the init, `setns` through the init's pidfd for an executable), then the working
//! directory, ids and rlimits of the executable. Only system calls run there: every
//! path, string and file is prepared before the fork.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use aurae_runtime::spec::ExecutableSpec;
use nix::sched::CloneFlags;
use nix::unistd::{Gid, Uid};

use super::cell_init::{self, InitPlan};
use crate::init::supervisor::{AdoptedProcess, SupervisedChild, Supervisor};

/// The PATH of a cell's executables: the aurae CLI first, then the usual places.
pub const CELL_PATH: &str =
    "/run/aurae/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a cell's namespaces or one of its processes could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ZoneError {
    /// The spawning thread could not be started or did not finish.
    #[error("cannot start a thread to spawn into the cell: {0}")]
    Thread(std::io::Error),
    /// The new pid namespace, or entering the cell's, failed.
    #[error("cannot {action} the cell's pid namespace: {source}")]
    PidNamespace {
        /// Create or enter.
        action: &'static str,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// A cgroup.procs file could not be opened.
    #[error("cannot open {path} to join the cell's cgroup: {source}")]
    Cgroup {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// fork or exec failed (the process never ran).
    #[error("cannot start {program} in the cell: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        reason: String,
    },
    /// The cell's init could not set the cell's filesystem up.
    #[error("the cell's init failed: {0}")]
    Init(String),
}

/// The standard streams of an executable's process.
#[derive(Debug)]
pub struct ProcessStdio {
    /// Its stdin; `/dev/null` when `None`.
    pub stdin: Option<OwnedFd>,
    /// Its stdout.
    pub stdout: OwnedFd,
    /// Its stderr.
    pub stderr: OwnedFd,
    /// stdin is a terminal that becomes its controlling terminal (in a new session).
    pub controlling_terminal: bool,
}

/// A cell's namespaces, held by its init process (pid 1 of the cell).
#[derive(Debug)]
pub struct Zone {
    init: tokio::sync::Mutex<Init>,
    /// The init's pidfd, through which executables enter the namespaces.
    pidfd: OwnedFd,
    /// The namespaces an executable joins besides the pid one.
    join: CloneFlags,
}

/// A cell's init: started by this daemon, or found again after a restart.
#[derive(Debug)]
enum Init {
    Child(SupervisedChild),
    Adopted(AdoptedProcess),
}

/// The namespaces of a cell besides its pid namespace.
fn namespaces(host_network: bool) -> CloneFlags {
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if !host_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    flags
}

/// The `cgroup.procs` files of a cell, opened for writing before any fork.
fn open_procs(files: &[PathBuf]) -> Result<Vec<File>, ZoneError> {
    files
        .iter()
        .map(|path| {
            OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|source| ZoneError::Cgroup {
                    path: path.clone(),
                    source,
                })
        })
        .collect()
}

/// In the child: joins the cell's cgroups.
fn join_cgroups(procs: &[File]) -> std::io::Result<()> {
    for mut file in procs {
        file.write_all(b"0")?;
    }
    Ok(())
}

/// Runs `spawn` on a thread of its own whose children go to another pid namespace, set by
/// `enter` first.
fn on_spawn_thread<T: Send>(
    enter: impl FnOnce() -> Result<(), ZoneError> + Send,
    spawn: impl FnOnce() -> Result<T, ZoneError> + Send,
) -> Result<T, ZoneError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cell-spawn".to_owned())
            .spawn_scoped(scope, || {
                enter()?;
                spawn()
            })
            .map_err(ZoneError::Thread)?
            .join()
            .unwrap_or_else(|_| {
                Err(ZoneError::Thread(std::io::Error::other(
                    "the spawning thread panicked",
                )))
            })
    })
}

/// A cell's init started ahead of its cell: in new pid, mount, uts, ipc and (unless the
/// host's network is wanted) network namespaces, exec'd, waiting for its plan on stdin.
///
/// Starting one (a fork and an exec of this binary) is most of what making a cell costs,
/// so the runtime keeps one ready. It sits in auraed's own cgroup until a cell claims it:
/// [`PendingInit::configure`] is called once it was moved into the cell's cgroup, and the
/// init makes its cgroup namespace only then, rooted at the cell's cgroup. An init whose
/// daemon died reads the end of its stdin and exits: a spare never outlives its daemon.
#[derive(Debug)]
pub struct PendingInit {
    init: SupervisedChild,
    plan_in: std::process::ChildStdin,
    report: BufReader<std::process::ChildStdout>,
    host_network: bool,
}

impl PendingInit {
    /// Starts an init in new namespaces. Blocks for a fork and an exec: call it off the
    /// socket thread.
    pub fn start(supervisor: &Supervisor, host_network: bool) -> Result<Self, ZoneError> {
        let unshare = namespaces(host_network).difference(CloneFlags::CLONE_NEWCGROUP);
        let mut command = Command::new("/proc/self/exe");
        command
            .arg0(cell_init::ARGV0)
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // SAFETY: the closure makes one system call (no allocation, no locks).
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                nix::sched::unshare(unshare)?;
                Ok(())
            });
        }
        let mut init = on_spawn_thread(
            || {
                nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(|source| {
                    ZoneError::PidNamespace {
                        action: "create",
                        source,
                    }
                })
            },
            || {
                supervisor
                    .spawn(&mut command)
                    .map_err(|e| ZoneError::Spawn {
                        program: cell_init::ARGV0.to_owned(),
                        reason: e.to_string(),
                    })
            },
        )?;
        let (Some(plan_in), Some(report)) = (init.stdin.take(), init.stdout.take()) else {
            let _ = init.signal(nix::sys::signal::Signal::SIGKILL);
            return Err(ZoneError::Init(
                "its stdin and stdout are not pipes".to_owned(),
            ));
        };
        Ok(Self {
            init,
            plan_in,
            report: BufReader::new(report),
            host_network,
        })
    }

    /// The init's pid (in auraed's pid namespace), to move it into the cell's cgroup.
    pub fn pid(&self) -> i32 {
        self.init.pid()
    }

    /// Whether it runs in the host's network namespace.
    pub fn host_network(&self) -> bool {
        self.host_network
    }

    /// Gives the init (already in the cell's cgroup) its plan and waits until it has built
    /// the cell's filesystem view. Kills it if it fails. Blocks.
    pub fn configure(mut self, plan: &InitPlan) -> Result<Zone, ZoneError> {
        let sent = serde_json::to_string(plan)
            .map_err(std::io::Error::other)
            .and_then(|json| {
                self.plan_in.write_all(json.as_bytes())?;
                self.plan_in.write_all(b"\n")?;
                self.plan_in.flush()
            });
        let mut report = String::new();
        if sent.is_ok() {
            let _ = self.report.read_line(&mut report);
        }
        if report.trim_end() != "ready" {
            self.discard();
            let why = report
                .trim_end()
                .strip_prefix("error: ")
                .unwrap_or("it exited before it was ready")
                .to_owned();
            return Err(ZoneError::Init(why));
        }
        Zone::holding(Init::Child(self.init), self.host_network)
    }

    /// Kills the init (its cell was never made). The supervisor reaps it.
    pub fn discard(self) {
        let _ = self.init.signal(nix::sys::signal::Signal::SIGKILL);
    }
}

impl Zone {
    /// Takes over the namespaces of a cell whose init an earlier daemon started.
    pub fn adopt(
        supervisor: &Supervisor,
        init_pid: i32,
        host_network: bool,
    ) -> Result<Zone, ZoneError> {
        let init = supervisor.adopt(init_pid).map_err(|e| ZoneError::Spawn {
            program: cell_init::ARGV0.to_owned(),
            reason: format!("cannot adopt pid {init_pid}: {e}"),
        })?;
        Zone::holding(Init::Adopted(init), host_network)
    }

    /// The zone whose namespaces `init` holds, with a pidfd of its own to enter them by.
    fn holding(init: Init, host_network: bool) -> Result<Zone, ZoneError> {
        let pidfd = match &init {
            Init::Child(child) => child.pidfd(),
            Init::Adopted(process) => process.pidfd(),
        }
        .try_clone_to_owned()
        .map_err(|e| ZoneError::Spawn {
            program: cell_init::ARGV0.to_owned(),
            reason: format!("cannot keep its pidfd: {e}"),
        })?;
        Ok(Zone {
            init: tokio::sync::Mutex::new(init),
            pidfd,
            join: namespaces(host_network),
        })
    }

    /// Waits until the cell's init has exited (after its cgroup was killed).
    pub async fn wait_init(&self) {
        match &mut *self.init.lock().await {
            Init::Child(init) => {
                if let Err(e) = init.wait().await {
                    tracing::warn!(error = %e, "cannot wait for a cell's init");
                }
            }
            Init::Adopted(init) => init.exited().await,
        }
    }

    /// Starts `exe` inside the cell with `stdout`/`stderr` as its output. Blocks for as
    /// long as fork and exec take.
    pub fn spawn(
        &self,
        supervisor: &Supervisor,
        exe: &ExecutableSpec,
        cgroup_procs: &[PathBuf],
        environment: &[(String, String)],
        stdio: ProcessStdio,
    ) -> Result<SupervisedChild, ZoneError> {
        let procs = open_procs(cgroup_procs)?;
        let program = exe.argv[0].clone();
        let spawn_error = |reason: String| ZoneError::Spawn {
            program: program.clone(),
            reason,
        };
        let mut command = Command::new(&exe.argv[0]);
        command
            .args(&exe.argv[1..])
            .env_clear()
            .envs(environment.iter().map(|(k, v)| (k, v)))
            .envs(exe.env.iter().map(|(k, v)| (k, v)))
            .stdin(stdio.stdin.map_or_else(Stdio::null, Stdio::from))
            .stdout(Stdio::from(stdio.stdout))
            .stderr(Stdio::from(stdio.stderr));
        let controlling_terminal = stdio.controlling_terminal;
        let cwd = CString::new(exe.cwd.as_ref().map_or_else(
            || "/".to_owned(),
            |cwd| cwd.as_path().to_string_lossy().into_owned(),
        ))
        .map_err(|e| spawn_error(e.to_string()))?;
        let uid = exe.uid.map(Uid::from_raw);
        let gid = exe.gid.map(Gid::from_raw);
        let rlimits = exe.rlimits.clone();
        let no_new_privileges = exe.no_new_privileges;
        let capabilities = exe.capabilities;
        let last_capability = super::privileges::last_capability();
        let pidfd: OwnedFd = self
            .pidfd
            .try_clone()
            .map_err(|e| spawn_error(e.to_string()))?;
        let join = self.join;
        let child_pidfd = pidfd.try_clone().map_err(|e| spawn_error(e.to_string()))?;
        // SAFETY: the closure only makes system calls on values prepared before the fork
        // (no allocation, no locks).
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                join_cgroups(&procs)?;
                if controlling_terminal {
                    take_terminal()?;
                }
                nix::sched::setns(child_pidfd.as_fd(), join)?;
                nix::unistd::chdir(cwd.as_c_str())?;
                if let Some(sets) = &capabilities {
                    super::privileges::before_user_change(sets, last_capability)?;
                }
                if let Some(gid) = gid {
                    nix::unistd::setgroups(&[])?;
                    nix::unistd::setgid(gid)?;
                }
                if let Some(uid) = uid {
                    nix::unistd::setuid(uid)?;
                }
                for limit in &rlimits {
                    set_rlimit(limit)?;
                }
                if let Some(sets) = &capabilities {
                    super::privileges::after_user_change(sets, last_capability)?;
                }
                if no_new_privileges {
                    nix::sys::prctl::set_no_new_privs()?;
                }
                Ok(())
            });
        }
        on_spawn_thread(
            || {
                nix::sched::setns(pidfd.as_fd(), CloneFlags::CLONE_NEWPID).map_err(|source| {
                    ZoneError::PidNamespace {
                        action: "enter",
                        source,
                    }
                })
            },
            || {
                supervisor
                    .spawn(&mut command)
                    .map_err(|e| spawn_error(e.to_string()))
            },
        )
    }
}

/// In the child: a new session whose controlling terminal is stdin (a pty slave).
#[allow(unsafe_code)]
fn take_terminal() -> std::io::Result<()> {
    nix::unistd::setsid()?;
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal) and touches no memory.
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// setrlimit(2) with the raw resource number an OCI bundle names.
#[allow(unsafe_code)]
fn set_rlimit(limit: &aurae_runtime::spec::Rlimit) -> std::io::Result<()> {
    let value = libc::rlimit {
        rlim_cur: limit.soft,
        rlim_max: limit.hard,
    };
    // SAFETY: `value` is a valid rlimit that lives across the call; an unknown resource
    // number makes the kernel answer EINVAL, nothing worse.
    let rc = unsafe { libc::setrlimit(limit.resource as libc::__rlimit_resource_t, &value) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
