//! cgroup v1 files: making a cell's directory in each hierarchy (a cpuset cgroup copies
//! its parent's CPUs and memory nodes, or no process could join it), writing limits in
//! v1's units, and the v1 freezer.
//!
//! It writes only in directories below the runtime root that the caller names.

use std::collections::BTreeSet;
use std::path::Path;

use super::limits::{self, Capabilities};
use super::{CellDir, CgroupError, CgroupVersion, FreezerState, files};
use crate::spec::Limits;

/// Readies a freshly made cgroup directory `dir` of a hierarchy carrying `controllers`: a
/// cpuset cgroup starts with no CPUs and no memory nodes (unless `cgroup.clone_children`
/// is set), so it gets its parent's.
pub(crate) fn init_dir(dir: &Path, controllers: &[String]) -> Result<(), CgroupError> {
    if controllers.iter().any(|c| c == "cpuset") {
        copy_cpuset_from_parent(dir)?;
    }
    Ok(())
}

fn copy_cpuset_from_parent(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let value = files::read(&parent.join(file))?;
        files::write(&dir.join(file), value.trim())?;
    }
    Ok(())
}

/// What cells can get on a v1 host, measured on the runtime roots.
pub(crate) fn capabilities(roots: &[CellDir], hybrid: bool) -> Capabilities {
    let dir_of = |controller: &str| {
        roots
            .iter()
            .find(|r| r.controllers.iter().any(|c| c == controller))
            .map(|r| r.path.as_path())
    };
    let controllers: BTreeSet<String> = ["cpu", "cpuset", "memory", "pids", "blkio"]
        .into_iter()
        .filter(|c| dir_of(c).is_some())
        .map(str::to_owned)
        .collect();
    let io_weight = dir_of("blkio").is_some_and(|d| blkio_weight_file(d).is_some());
    let swap = dir_of("memory").is_some_and(|d| d.join("memory.memsw.limit_in_bytes").exists());
    let cpus = dir_of("cpuset").and_then(|d| {
        ["cpuset.effective_cpus", "cpuset.cpus"]
            .iter()
            .find_map(|f| files::read(&d.join(f)).ok())
            .and_then(|text| limits::parse_cpu_list(&text))
    });
    Capabilities {
        version: CgroupVersion::V1 { hybrid },
        controllers,
        io_weight,
        swap,
        cpus,
    }
}

/// The weight file of a blkio cgroup: CFQ's `blkio.weight` on old kernels, BFQ's
/// `blkio.bfq.weight` on newer ones.
fn blkio_weight_file(dir: &Path) -> Option<&'static str> {
    ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| dir.join(f).exists())
}

/// Writes the set fields of `limits` into a cell's directories, converted to v1's units.
pub(crate) fn write_limits(dirs: &[CellDir], limits: &Limits) -> Result<(), CgroupError> {
    let dir_of = |controller: &str| super::dir_with(dirs, controller);
    if let Some(cpu) = dir_of("cpu") {
        write_cpu(cpu, limits)?;
    }
    if let (Some(dir), Some(cpus)) = (dir_of("cpuset"), &limits.cpuset) {
        files::write(&dir.join("cpuset.cpus"), cpus)?;
    }
    if let Some(dir) = dir_of("memory") {
        let memory = &limits.memory;
        if let Some(max) = memory.max {
            files::write(&dir.join("memory.limit_in_bytes"), &max.to_string())?;
            if let Some(swap) = memory.swap {
                let both = max.saturating_add(swap);
                files::write(&dir.join("memory.memsw.limit_in_bytes"), &both.to_string())?;
            }
        }
    }
    if let (Some(dir), Some(pids)) = (dir_of("pids"), limits.pids_max) {
        files::write(&dir.join("pids.max"), &pids.to_string())?;
    }
    if let (Some(dir), Some(weight)) = (dir_of("blkio"), limits.io_weight)
        && let Some(file) = blkio_weight_file(dir)
    {
        let value = limits::blkio_weight_from_weight(weight);
        files::write(&dir.join(file), &value.to_string())?;
    }
    Ok(())
}

fn write_cpu(dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
    let cpu = &limits.cpu;
    if let Some(weight) = cpu.weight {
        let shares = limits::shares_from_weight(weight);
        files::write(&dir.join("cpu.shares"), &shares.to_string())?;
    }
    if let Some(period) = cpu.period_us {
        files::write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
    }
    if let Some(quota) = cpu.quota_us {
        files::write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
    }
    Ok(())
}

/// Asks the v1 freezer to freeze or thaw the cgroup and its descendants.
pub(crate) fn set_state(dir: &Path, state: FreezerState) -> Result<(), CgroupError> {
    let value = match state {
        FreezerState::Frozen => "FROZEN",
        FreezerState::Thawed => "THAWED",
    };
    files::write(&dir.join("freezer.state"), value)
}

/// Whether the v1 freezer reports the cgroup frozen (by itself or an ancestor); a cgroup
/// still `FREEZING` is not frozen yet.
pub(crate) fn frozen(dir: &Path) -> Result<bool, CgroupError> {
    Ok(files::read(&dir.join("freezer.state"))?.trim() == "FROZEN")
}

/// The `oom_kill` count of `memory.oom_control` (Linux 4.13+); 0 where it is absent.
pub(crate) fn oom_kills(dir: &Path) -> Result<u64, CgroupError> {
    let file = dir.join("memory.oom_control");
    if !file.exists() {
        return Ok(0);
    }
    Ok(files::keyed(&files::read(&file)?, "oom_kill").unwrap_or(0))
}

/// `memory.usage_in_bytes`.
pub(crate) fn memory_current(dir: &Path) -> Result<Option<u64>, CgroupError> {
    files::read_number_if_present(&dir.join("memory.usage_in_bytes"))
}
