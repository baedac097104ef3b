//! The orphan reaper: frees every exited child of auraed that no [`SupervisedChild`] tracks.
//!
//! It runs on a thread of its own with a small event loop, so that neither a busy socket
//! thread nor a restarted daemon runtime (as PID 1, after a panic) ever stops it. The same
//! loop drives the readiness of every tracked child's pidfd. It must never reap a tracked
//! child, never block the daemon, and never stop: a failed pass is logged and the next
//! SIGCHLD, owner's wake-up or sweep tries again. The module doc of `supervisor.rs` argues
//! why a pass cannot race with a spawn or an owner.
//!
//! [`SupervisedChild`]: crate::init::supervisor::SupervisedChild

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::MissedTickBehavior;

use super::supervisor::{Shared, SupervisorError};
use super::sys::{self, Mode, Target};

/// How often the reaper looks for zombies without being woken: a safety net for wake-ups
/// that never come (a SIGCHLD disposition changed behind our back, say).
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Starts the reaper thread and returns the handle of its event loop once it watches SIGCHLD.
pub(super) fn start(shared: Arc<Shared>) -> Result<tokio::runtime::Handle, SupervisorError> {
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("auraed-reaper".into())
        .spawn(move || run(&shared, &ready_tx))
        .map_err(SupervisorError::Thread)?;
    ready_rx.recv().unwrap_or(Err(SupervisorError::ReaperLost))
}

type Ready = mpsc::SyncSender<Result<tokio::runtime::Handle, SupervisorError>>;

/// The reaper thread: reaps, then sleeps until SIGCHLD, an owner's wake-up or the sweep.
fn run(shared: &Shared, ready: &Ready) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(SupervisorError::Runtime(e)));
            return;
        }
    };
    runtime.block_on(async {
        let mut sigchld = match signal(SignalKind::child()) {
            Ok(sigchld) => sigchld,
            Err(e) => {
                let _ = ready.send(Err(SupervisorError::Sigchld(e)));
                return;
            }
        };
        let _ = ready.send(Ok(tokio::runtime::Handle::current()));
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            reap_orphans_logged(shared);
            tokio::select! {
                received = sigchld.recv() => {
                    // The signal driver lives as long as this loop; should it ever close,
                    // fall back to sweeping rather than spinning.
                    if received.is_none() {
                        sweep.tick().await;
                    }
                }
                _ = sweep.tick() => {}
                () = shared.wake.notified() => {}
            }
        }
    });
}

/// One reaping pass that cannot take the thread down with it.
fn reap_orphans_logged(shared: &Shared) {
    match std::panic::catch_unwind(AssertUnwindSafe(|| reap_orphans(shared))) {
        Ok(0) => {}
        Ok(reaped) => tracing::debug!(reaped, "orphans reaped"),
        Err(_) => tracing::error!("the orphan reaper panicked; it goes on"),
    }
}

/// Reaps every exited untracked child that is waiting now; returns how many.
fn reap_orphans(shared: &Shared) -> usize {
    let mut reaped = 0;
    loop {
        let zombie = match sys::waitid(Target::Any, Mode::Peek) {
            Ok(Some(zombie)) => zombie,
            // No exited child, or no child at all (ECHILD).
            Ok(None) | Err(_) => return reaped,
        };
        if reap_if_untracked(shared, zombie.pid) {
            reaped += 1;
        } else {
            // A tracked zombie heads the kernel's list and hides what is behind it.
            return reaped + reap_listed_children(shared);
        }
    }
}

/// Reaps `pid` if it is an exited child that nobody tracks. Safe for any pid: the gate keeps
/// spawns out between the check and the `waitid`, so an untracked pid cannot become a
/// tracked child in between.
fn reap_if_untracked(shared: &Shared, pid: i32) -> bool {
    let _gate = shared.reap_gate();
    if shared.is_tracked(pid) {
        return false;
    }
    match sys::waitid(Target::Pid(pid), Mode::Reap) {
        Ok(Some(orphan)) => {
            shared.count_orphan();
            tracing::trace!(pid, exit = %orphan.exit, "orphan reaped");
            true
        }
        Ok(None) | Err(_) => false,
    }
}

/// The slow path: reaps untracked zombies found through `/proc`, past a tracked zombie.
fn reap_listed_children(shared: &Shared) -> usize {
    let candidates = listed_children().unwrap_or_else(scanned_zombie_children);
    candidates
        .into_iter()
        .filter(|&pid| reap_if_untracked(shared, pid))
        .count()
}

/// Our children, from each thread's `/proc/self/task/<tid>/children`; `None` if the kernel
/// does not offer that file (it needs `CONFIG_PROC_CHILDREN`).
fn listed_children() -> Option<Vec<i32>> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let mut children = Vec::new();
    for task in tasks.flatten() {
        match std::fs::read_to_string(task.path().join("children")) {
            Ok(list) => children.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && task_exists(&task.path()) => {
                return None;
            }
            // The thread ended while we read: it has no children left to list.
            Err(_) => {}
        }
    }
    Some(children)
}

fn task_exists(task: &Path) -> bool {
    task.join("stat").exists()
}

/// Zombies whose parent is this process, found by reading every `/proc/<pid>/stat`.
fn scanned_zombie_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| zombie_parent(&stat).map(str::to_owned))
                .is_some_and(|parent| parent == me)
        })
        .collect()
}

/// The parent pid in a `/proc/<pid>/stat` line, if that process is a zombie. The command
/// name may hold spaces and parentheses, so fields are counted after its last `)`.
fn zombie_parent(stat: &str) -> Option<&str> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    let parent = fields.next()?;
    (state == "Z").then_some(parent)
}

#[cfg(test)]
mod tests {
    use super::zombie_parent;

    #[test]
    fn a_stat_line_names_the_parent_of_a_zombie_only() {
        assert_eq!(zombie_parent("42 (sleep) Z 7 42 7 0 -1"), Some("7"));
        assert_eq!(zombie_parent("42 (sleep) S 7 42 7 0 -1"), None);
        assert_eq!(zombie_parent("42 (a) Z (b)) Z 9 1 1"), Some("9"));
        assert_eq!(zombie_parent("garbage"), None);
    }
}
