//! One executable's life: start it in its cell, capture its output, wait for it, restart
//! it per its policy with back-off, stop it with its signal and then SIGKILL.
//!
//! Each executable has one task that owns its current process (a supervised child, so
//! its exit status is read from its pidfd and from nowhere else); everything else talks
//! to the task through its [`ExecutableHandle`]. The task must never leave a process
//! running that nobody tracks.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aurae_runtime::cgroup::Cgroup;
use aurae_runtime::logs::{self, LogConfig, LogPump};
use aurae_runtime::spec::{CellName, ExecutableSpec, RestartPolicy, restart_backoff};
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, oneshot, watch};

use super::stdio;
use super::zone::Zone;
use crate::init::supervisor::{AdoptedProcess, Exit, SupervisedChild, Supervisor};

/// The file in an executable's log directory naming its current process (`<pid>
/// <start time>`), so that a restarted daemon finds it again and never mistakes a newer
/// process that reused the pid for it.
pub const PROCESS_FILE: &str = "process";

/// An executable's current process: auraed's child, or one an earlier auraed started.
#[derive(Debug)]
pub enum Process {
    /// Started by this daemon: its exit status is ours to read.
    Child(SupervisedChild),
    /// Found again after a restart: we see it end, but not how.
    Adopted(AdoptedProcess),
}

impl Process {
    fn pid(&self) -> i32 {
        match self {
            Process::Child(child) => child.pid(),
            Process::Adopted(process) => process.pid(),
        }
    }

    fn signal(&self, signal: Signal) -> Result<(), String> {
        match self {
            Process::Child(child) => child.signal(signal).map_err(|e| e.to_string()),
            Process::Adopted(process) => process.signal(signal).map_err(|e| e.to_string()),
        }
    }

    /// Waits for the end; the exit status when it is ours to know.
    async fn wait(&mut self) -> Option<Exit> {
        match self {
            Process::Child(child) => child.wait().await.ok(),
            Process::Adopted(process) => {
                process.exited().await;
                None
            }
        }
    }
}

/// The start time of `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19)?.parse().ok()
}

/// Remembers `pid` as the executable's current process.
fn remember(log_dir: &std::path::Path, pid: i32) {
    let Some(started) = start_time(pid) else {
        return;
    };
    let path = log_dir.join(PROCESS_FILE);
    if let Err(error) = std::fs::write(&path, format!("{pid} {started}\n")) {
        tracing::warn!(path = %path.display(), %error, "cannot remember the process; a restarted daemon will not find it");
    }
}

/// The process an earlier daemon remembered for `log_dir`, if it still runs.
pub fn remembered(log_dir: &std::path::Path) -> Option<i32> {
    let text = std::fs::read_to_string(log_dir.join(PROCESS_FILE)).ok()?;
    let mut parts = text.split_whitespace();
    let pid: i32 = parts.next()?.parse().ok()?;
    let started: u64 = parts.next()?.parse().ok()?;
    (start_time(pid) == Some(started)).then_some(pid)
}

/// A run that lasted this long resets the back-off: the workload was healthy.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// Where an executable is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutableState {
    /// A process runs.
    Running,
    /// The process exited; a restart follows after the back-off.
    Backoff,
    /// The process exited and is not restarted.
    Exited,
    /// It was stopped through the API (or its cell freed).
    Stopped,
}

/// What an executable is doing, as published to readers.
#[derive(Debug, Clone)]
pub struct ExecutableStatus {
    /// Its state.
    pub state: ExecutableState,
    /// The current process's pid on the host.
    pub pid: Option<i32>,
    /// How the last process ended.
    pub last_exit: Option<Exit>,
    /// The last process was killed by the OOM killer.
    pub oom_killed: bool,
    /// Restarts so far.
    pub restarts: u32,
    /// When the current (or last) process started.
    pub started_at: Option<SystemTime>,
    /// Why the last start failed, if it did.
    pub start_error: Option<String>,
}

impl ExecutableStatus {
    /// Whether the executable is done (nothing runs and nothing will).
    pub fn finished(&self) -> bool {
        matches!(
            self.state,
            ExecutableState::Exited | ExecutableState::Stopped
        )
    }
}

/// What may be asked of an executable's task.
enum Control {
    Signal(Signal, oneshot::Sender<Result<(), String>>),
    /// Stop, with this grace instead of the spec's when given.
    Stop(Option<Duration>, oneshot::Sender<()>),
}

/// The handle of one executable: its spec, its status and the way to its task.
#[derive(Debug)]
pub struct ExecutableHandle {
    /// The cell it runs in.
    pub cell: CellName,
    /// What it is.
    pub spec: ExecutableSpec,
    /// Its log directory.
    pub log_dir: PathBuf,
    status: watch::Receiver<ExecutableStatus>,
    control: mpsc::UnboundedSender<Control>,
    log_progress: Mutex<Option<watch::Receiver<u64>>>,
    input: InputSlot,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Control::Signal(..) => "Signal",
            Control::Stop(..) => "Stop",
        })
    }
}

/// Everything an executable's task needs from its cell.
pub struct Launch {
    /// The cell's name.
    pub cell: CellName,
    /// The cell's namespaces.
    pub zone: Arc<Zone>,
    /// The cell's cgroup.
    pub cgroup: Arc<Cgroup>,
    /// The daemon's supervisor.
    pub supervisor: Supervisor,
    /// The environment every executable of the cell gets.
    pub environment: Vec<(String, String)>,
    /// Its log directory (created by the caller, FIFOs included).
    pub log_dir: PathBuf,
    /// Log rotation.
    pub log_config: LogConfig,
    /// Where input for the current process goes (when its spec keeps stdin open).
    pub input: InputSlot,
    /// Heard when the current process's terminal output is all in the log.
    pub relay_done: Arc<Mutex<Option<tokio::sync::oneshot::Receiver<()>>>>,
}

/// How long an exited process's terminal output may take to reach the log (a child it
/// left behind may hold the terminal open for longer; its later output is still logged).
const RELAY_DRAIN: Duration = Duration::from_secs(1);

/// The input of an executable's current process, replaced at each start.
pub type InputSlot = Arc<Mutex<Option<stdio::Input>>>;

impl ExecutableHandle {
    /// Starts the executable's task; the first process is started before this returns,
    /// so a spawn failure is the caller's error.
    pub async fn start(spec: ExecutableSpec, launch: Launch) -> Result<Arc<Self>, String> {
        Self::begin(spec, launch, None).await
    }

    /// Takes over `process`, started by an earlier daemon, and carries on with its
    /// policy when it ends.
    pub async fn adopt(
        spec: ExecutableSpec,
        launch: Launch,
        process: AdoptedProcess,
    ) -> Result<Arc<Self>, String> {
        Self::begin(spec, launch, Some(process)).await
    }

    async fn begin(
        spec: ExecutableSpec,
        launch: Launch,
        adopted: Option<AdoptedProcess>,
    ) -> Result<Arc<Self>, String> {
        let pump = logs::start_pump(&launch.log_dir, &launch.log_config)
            .map_err(|e| format!("cannot capture the output: {e}"))?;
        let progress = pump.subscribe();
        let first = match adopted {
            Some(process) => Ok(Process::Adopted(process)),
            None => spawn(&spec, &launch).await.map(Process::Child),
        };
        let child = match first {
            Ok(child) => child,
            Err(why) => {
                let _ = tokio::task::spawn_blocking(move || pump.stop()).await;
                return Err(why);
            }
        };
        let (status_tx, status_rx) = watch::channel(ExecutableStatus {
            state: ExecutableState::Running,
            pid: Some(child.pid()),
            last_exit: None,
            oom_killed: false,
            restarts: 0,
            started_at: Some(SystemTime::now()),
            start_error: None,
        });
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let handle = Arc::new(Self {
            cell: launch.cell.clone(),
            spec: spec.clone(),
            log_dir: launch.log_dir.clone(),
            status: status_rx,
            control: control_tx,
            log_progress: Mutex::new(Some(progress)),
            input: launch.input.clone(),
        });
        tokio::spawn(run(spec, launch, child, status_tx, control_rx, pump));
        Ok(handle)
    }

    /// Its status now.
    pub fn status(&self) -> ExecutableStatus {
        self.status.borrow().clone()
    }

    /// Waits until it is finished and returns its last status.
    pub async fn wait(&self) -> ExecutableStatus {
        let mut status = self.status.clone();
        match status.wait_for(ExecutableStatus::finished).await {
            Ok(status) => status.clone(),
            Err(_) => self.status(),
        }
    }

    /// Where input for its current process goes; `None` if its stdin is not open.
    pub fn input(&self) -> InputSlot {
        self.input.clone()
    }

    /// Sends `signal` to its current process.
    pub async fn signal(&self, signal: Signal) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Signal(signal, tx))
            .map_err(|_| "it is not running".to_owned())?;
        rx.await.map_err(|_| "it is not running".to_owned())?
    }

    /// Stops it: the stop signal, SIGKILL after the grace; returns its final status.
    pub async fn stop(&self) -> ExecutableStatus {
        self.stop_within(None).await
    }

    /// Kills it at once (SIGKILL, no grace, no restart); returns once its task knows.
    pub async fn kill(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .control
            .send(Control::Stop(Some(Duration::ZERO), tx))
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    async fn stop_within(&self, grace: Option<Duration>) -> ExecutableStatus {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Stop(grace, tx)).is_ok() {
            let _ = rx.await;
        }
        self.wait().await
    }

    /// A receiver that changes whenever new output was logged; its sender is gone once the
    /// executable is finished and its log complete.
    pub fn log_progress(&self) -> Option<watch::Receiver<u64>> {
        self.log_progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

async fn spawn(spec: &ExecutableSpec, launch: &Launch) -> Result<SupervisedChild, String> {
    let child = spawn_process(spec, launch).await?;
    let (dir, pid) = (launch.log_dir.clone(), child.pid());
    let _ = tokio::task::spawn_blocking(move || remember(&dir, pid)).await;
    Ok(child)
}

async fn spawn_process(spec: &ExecutableSpec, launch: &Launch) -> Result<SupervisedChild, String> {
    let (zone, supervisor, spec, procs, environment, log_dir) = (
        launch.zone.clone(),
        launch.supervisor.clone(),
        spec.clone(),
        launch.cgroup.procs_files(),
        launch.environment.clone(),
        launch.log_dir.clone(),
    );
    let (child, input, relay_done) = tokio::task::spawn_blocking(move || {
        let prepared = stdio::prepare(&spec, &log_dir)?;
        let child = zone
            .spawn(&supervisor, &spec, &procs, &environment, prepared.stdio)
            .map_err(|e| e.to_string())?;
        let relay_done = prepared.relay.and_then(stdio::start_relay);
        Ok::<_, String>((child, prepared.input, relay_done))
    })
    .await
    .map_err(|e| format!("the spawn did not finish: {e}"))??;
    *launch
        .input
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = input;
    *launch
        .relay_done
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = relay_done;
    Ok(child)
}

/// The task: waits for each process, restarts per policy, obeys controls.
async fn run(
    spec: ExecutableSpec,
    launch: Launch,
    first: Process,
    status: watch::Sender<ExecutableStatus>,
    mut control: mpsc::UnboundedReceiver<Control>,
    pump: LogPump,
) {
    let mut child = Some(first);
    let mut failures_in_a_row = 0u32;
    let mut backoff_attempt = 0u32;
    loop {
        let Some(mut current) = child.take() else {
            break;
        };
        let started = Instant::now();
        let oom_before = launch.cgroup.oom_kills().unwrap_or(0);
        let (exit, stopped) = watch_process(&spec, &mut current, &mut control).await;
        let relay = launch
            .relay_done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(relay) = relay {
            let _ = tokio::time::timeout(RELAY_DRAIN, relay).await;
        }
        let oom = exit
            .as_ref()
            .is_some_and(|e| e.signal() == Some(libc::SIGKILL))
            && launch.cgroup.oom_kills().unwrap_or(0) > oom_before;
        let success = exit.as_ref().is_some_and(Exit::success);
        status.send_modify(|s| {
            s.pid = None;
            s.last_exit = exit;
            s.oom_killed = oom;
        });
        if stopped {
            status.send_modify(|s| s.state = ExecutableState::Stopped);
            break;
        }
        failures_in_a_row = if success { 0 } else { failures_in_a_row + 1 };
        let restart = match spec.restart {
            RestartPolicy::No => false,
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure { max_retries } => {
                !success && failures_in_a_row <= max_retries
            }
        };
        if !restart {
            status.send_modify(|s| s.state = ExecutableState::Exited);
            break;
        }
        backoff_attempt = if started.elapsed() >= HEALTHY_RUN {
            1
        } else {
            backoff_attempt + 1
        };
        status.send_modify(|s| s.state = ExecutableState::Backoff);
        if wait_backoff(restart_backoff(backoff_attempt), &mut control).await {
            status.send_modify(|s| s.state = ExecutableState::Stopped);
            break;
        }
        match spawn(&spec, &launch).await {
            Ok(next) => {
                status.send_modify(|s| {
                    s.state = ExecutableState::Running;
                    s.pid = Some(next.pid());
                    s.restarts += 1;
                    s.started_at = Some(SystemTime::now());
                    s.start_error = None;
                });
                child = Some(Process::Child(next));
            }
            Err(why) => {
                tracing::warn!(cell = %launch.cell, executable = %spec.name, %why, "restart failed");
                status.send_modify(|s| {
                    s.state = ExecutableState::Exited;
                    s.start_error = Some(why);
                });
            }
        }
    }
    let _ = tokio::task::spawn_blocking(move || pump.stop()).await;
    // Release waiters of `Stop` that raced the end.
    control.close();
    while let Ok(message) = control.try_recv() {
        match message {
            Control::Stop(_, done) => {
                let _ = done.send(());
            }
            Control::Signal(_, reply) => {
                let _ = reply.send(Err("it is not running".to_owned()));
            }
        }
    }
}

/// Waits for `child` to exit, serving controls meanwhile. Returns its exit (None if it
/// could not be read) and whether a stop was asked for.
async fn watch_process(
    spec: &ExecutableSpec,
    child: &mut Process,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> (Option<Exit>, bool) {
    let mut stop_replies = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    let mut open = true;
    let exit = loop {
        let kill_at = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            exit = child.wait() => break exit,
            message = control.recv(), if open => match message {
                Some(Control::Signal(signal, reply)) => {
                    let _ = reply.send(child.signal(signal));
                }
                Some(Control::Stop(grace, done)) => {
                    let grace = grace.unwrap_or(spec.stop_grace);
                    if grace.is_zero() {
                        let _ = child.signal(Signal::SIGKILL);
                    } else if deadline.is_none() {
                        let signal = spec
                            .stop_signal
                            .and_then(|s| Signal::try_from(s).ok())
                            .unwrap_or(Signal::SIGTERM);
                        let _ = child.signal(signal);
                        deadline = Some(tokio::time::Instant::now() + grace);
                    }
                    // Answered once the process is gone: a kill must not race a restart.
                    stop_replies.push(done);
                }
                None => open = false,
            },
            () = kill_at => {
                let _ = child.signal(Signal::SIGKILL);
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
            }
        }
    };
    let stopped = !stop_replies.is_empty();
    for done in stop_replies {
        let _ = done.send(());
    }
    (exit, stopped)
}

/// Sleeps the back-off; true if a stop came meanwhile.
async fn wait_backoff(delay: Duration, control: &mut mpsc::UnboundedReceiver<Control>) -> bool {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            () = &mut sleep => return false,
            message = control.recv() => match message {
                Some(Control::Stop(_, done)) => {
                    let _ = done.send(());
                    return true;
                }
                Some(Control::Signal(_, reply)) => {
                    let _ = reply.send(Err("it is waiting to restart; no process runs".to_owned()));
                }
                None => return true,
            },
        }
    }
}
