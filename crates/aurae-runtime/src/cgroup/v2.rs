//! cgroup v2 files: preparing the runtime root and the cells under the no-internal-process
//! rule, writing a cell's limits, and the freeze and kill files (which a hybrid host's
//! unified mount offers too).
//!
//! It writes only below the daemon's own cgroup: the `daemon` leaf it moves the daemon's
//! processes into, the runtime root, the cells and their `_procs` leaves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::detect::V2Own;
use super::{CgroupError, FreezerState, files};
use crate::spec::Limits;

/// The controllers cells get where the host offers them.
pub(crate) const CONTROLLERS: &[&str] = &["cpu", "cpuset", "io", "memory", "pids"];

/// The leaf the daemon's own processes move into when its cgroup is not the root.
pub(crate) const DAEMON_LEAF: &str = "daemon";

/// The leaf below each cell's directory that holds the cell's own processes, so that the
/// cell's directory may enable controllers for its nested cells. No cell label can be
/// `_procs`: labels start with a lowercase letter or a digit.
pub(crate) const CELL_LEAF: &str = "_procs";

/// Prepares `<own>/<name>` as the runtime root: moves the daemon's processes into the
/// `daemon` leaf when its own cgroup is not the root, then enables every controller of
/// [`CONTROLLERS`] the host offers in the own cgroup's and the runtime root's
/// `cgroup.subtree_control`. Returns the root and the controllers cells get.
pub(crate) fn prepare_root(
    own: &V2Own,
    name: &str,
) -> Result<(PathBuf, BTreeSet<String>), CgroupError> {
    let available = words(&files::read(&own.dir.join("cgroup.controllers"))?);
    let wanted: Vec<&str> = CONTROLLERS
        .iter()
        .copied()
        .filter(|c| available.contains(*c))
        .collect();
    if !own.is_root {
        move_into_leaf(&own.dir, DAEMON_LEAF)?;
    }
    enable(&own.dir, &wanted)?;
    let root = own.dir.join(name);
    files::make_dir_if_missing(&root)?;
    enable(&root, &wanted)?;
    let enabled = words(&files::read(&root.join("cgroup.subtree_control"))?);
    Ok((root, enabled))
}

/// Moves every process of `dir` into its child `leaf` (made if missing), so that `dir` may
/// enable controllers for its children: the daemon's own cgroup into `daemon`, and a cell
/// made before cells had a leaf into `_procs`.
pub(crate) fn move_into_leaf(dir: &Path, leaf: &str) -> Result<(), CgroupError> {
    let leaf = dir.join(leaf);
    // Processes may fork while they are moved; a few rounds catch the stragglers.
    for _ in 0..8 {
        let pids = files::read_pids(&dir.join("cgroup.procs"))?;
        if pids.is_empty() {
            return Ok(());
        }
        files::make_dir_if_missing(&leaf)?;
        for pid in pids {
            files::write_pid_if_alive(&leaf.join("cgroup.procs"), pid)?;
        }
    }
    Ok(())
}

/// Enables `controllers` in `dir/cgroup.subtree_control`, each on its own so that a
/// refusal names the controller.
pub(crate) fn enable(dir: &Path, controllers: &[&str]) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = words(&files::read(&file)?);
    for controller in controllers {
        if !enabled.contains(*controller) {
            files::write(&file, &format!("+{controller}"))?;
        }
    }
    Ok(())
}

/// Writes the set fields of `limits` into a cell's directory; unset fields keep the
/// kernel's defaults, so a nested cell is bounded by its parent's limits.
pub(crate) fn write_limits(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let cpu = &limits.cpu;
    if let Some(weight) = cpu.weight {
        files::write(&dir.join("cpu.weight"), &weight.to_string())?;
    }
    if cpu.quota_us.is_some() || cpu.period_us.is_some() {
        let quota = cpu.quota_us.map_or("max".to_owned(), |q| q.to_string());
        let period = cpu.period_us.unwrap_or(100_000);
        files::write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
    }
    if let Some(cpus) = &limits.cpuset {
        files::write(&dir.join("cpuset.cpus"), cpus)?;
    }
    let memory = &limits.memory;
    if let Some(max) = memory.max {
        files::write(&dir.join("memory.max"), &max.to_string())?;
    }
    if let Some(high) = memory.high {
        files::write(&dir.join("memory.high"), &high.to_string())?;
    }
    if let Some(swap) = memory.swap {
        files::write(&dir.join("memory.swap.max"), &swap.to_string())?;
    }
    if let Some(pids) = limits.pids_max {
        files::write(&dir.join("pids.max"), &pids.to_string())?;
    }
    if let Some(weight) = limits.io_weight {
        files::write(&dir.join("io.weight"), &format!("default {weight}"))?;
    }
    Ok(())
}

/// Whether `dir` offers the v2 freezer (`cgroup.freeze`, Linux 5.2+).
pub(crate) fn can_freeze(dir: &Path) -> bool {
    dir.join("cgroup.freeze").exists()
}

/// Whether `dir` offers `cgroup.kill` (Linux 5.14+).
pub(crate) fn can_kill(dir: &Path) -> bool {
    dir.join("cgroup.kill").exists()
}

/// Asks the kernel to freeze or thaw the cgroup and its descendants.
pub(crate) fn set_state(dir: &Path, state: FreezerState) -> Result<(), CgroupError> {
    let value = match state {
        FreezerState::Frozen => "1",
        FreezerState::Thawed => "0",
    };
    files::write(&dir.join("cgroup.freeze"), value)
}

/// Whether every process of the cgroup is frozen (`frozen 1` in `cgroup.events`).
pub(crate) fn frozen(dir: &Path) -> Result<bool, CgroupError> {
    event(dir, "frozen").map(|v| v == Some(1))
}

/// SIGKILLs every process of the cgroup and its descendants at once.
pub(crate) fn kill(dir: &Path) -> Result<(), CgroupError> {
    files::write(&dir.join("cgroup.kill"), "1")
}

/// The OOM kills in the cell at `dir` and below it. The cell's own processes live in its
/// leaf, so they are counted in `memory.events`, which is hierarchical (it also keeps
/// the count of a nested cell since removed), rather than in `memory.events.local`. Where
/// cgroup2 is mounted with `memory_localevents`, `memory.events` counts only the cgroup
/// itself; the `.local` counts of every cgroup of the subtree, added up, stand in for it
/// then: the larger of the two is the answer either way.
pub(crate) fn oom_kills(dir: &Path) -> Result<u64, CgroupError> {
    let hierarchical = oom_kill_count(&dir.join("memory.events"))?;
    let mut local: u64 = 0;
    for cgroup in files::tree(dir)? {
        local = local.saturating_add(oom_kill_count(&cgroup.join("memory.events.local"))?);
    }
    Ok(hierarchical.max(local))
}

/// The `oom_kill` count of a `memory.events` file; 0 where it is absent.
fn oom_kill_count(file: &Path) -> Result<u64, CgroupError> {
    if !file.exists() {
        return Ok(0);
    }
    Ok(files::keyed(&files::read(file)?, "oom_kill").unwrap_or(0))
}

/// `memory.current`, if the memory controller is enabled for the cgroup.
pub(crate) fn memory_current(dir: &Path) -> Result<Option<u64>, CgroupError> {
    files::read_number_if_present(&dir.join("memory.current"))
}

fn event(dir: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    Ok(files::keyed(&files::read(&dir.join("cgroup.events"))?, key))
}

fn words(text: &str) -> BTreeSet<String> {
    text.split_whitespace().map(str::to_owned).collect()
}
