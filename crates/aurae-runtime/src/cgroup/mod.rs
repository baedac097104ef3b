//! Control groups: the bounds of every cell, on cgroup v1, hybrid and pure v2 hosts, chosen
//! by what the host mounts ([`Hierarchy::detect`]).
//!
//! It owns the runtime root, `<the daemon's own cgroup>/<runtime dir>` in every hierarchy
//! it uses, and every cell's cgroup below it: creating them with their limits, placing
//! processes in them, freezing, killing and removing them. Nested cells nest as
//! directories (`web/api` lies inside `web`), so the kernel bounds a child by its parent.
//!
//! It must never write outside the daemon's own cgroup (on v2 it moves the daemon's
//! processes into an `<own>/daemon` leaf, as the no-internal-process rule demands, and
//! enables controllers in `<own>/cgroup.subtree_control`; nothing else above the runtime
//! root is touched), never spawn a process, never leave a half-made cgroup behind, and
//! never panic on anything the host returns.
//!
//! Layout, per host:
//! - pure v2: one directory per cell under `/sys/fs/cgroup/<own>/<runtime dir>`, and in
//!   it a leaf `_procs` holding the cell's own processes (see below);
//! - v1 (and hybrid): one directory per cell in each of the cpu, cpuacct, cpuset, memory,
//!   pids, freezer, blkio and devices hierarchies that are mounted; on a hybrid host also
//!   one in the unified cgroup2 tree, used only for `cgroup.freeze` and `cgroup.kill`.
//!
//! The `_procs` leaf (pure v2 only). cgroup v2's no-internal-process rule forbids a cgroup
//! other than the root from holding processes while it enables controllers in its
//! `cgroup.subtree_control`, and a nested cell (`web/api`) gets memory, cpu, pids, io and
//! cpuset limits only if its parent `web` enables them. So, as systemd does with its
//! services, a cell's own processes never live in the cell's directory: creating `web`
//! makes `<root>/web` (its limits written there, every controller enabled in its
//! `cgroup.subtree_control`) and the leaf `<root>/web/_procs` (no limits of its own, so
//! bounded by `web`'s), and [`Cgroup::procs_files`] names the leaf's `cgroup.procs`. A
//! nested cell `web/api` is then `<root>/web/api` with its own `_procs`, and can be made
//! while `web` runs processes. Everything that concerns the cell as a whole uses `<root>/web`:
//! `cgroup.freeze` and `cgroup.kill` act on the whole subtree, `memory.current` and
//! `memory.events` count it, and [`Cgroup::pids`] reads every `cgroup.procs` below it.
//! `_procs` can never clash with a cell, since a cell label cannot start with `_`, and
//! [`Hierarchy::list`] skips it. v1 has no such rule, and the unified tree of a hybrid
//! host enables no controllers, so there a cell's processes stay in its directories.

mod detect;
pub mod dynmods;
mod files;
mod limits;
mod v1;
mod v2;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub use limits::MEMORY_FLOOR;

use crate::spec::{CellName, Limits};
use detect::HostLayout;
use limits::Capabilities;

/// How long freezing, and killing every process of a cell, may take before it is an error.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a waiting operation looks again.
const POLL: Duration = Duration::from_millis(10);

/// Why a cgroup operation failed; each message says what was wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// At start: `/proc/self/mountinfo` shows neither a cgroup2 filesystem nor a v1
    /// hierarchy with a controller cells use.
    #[error(
        "no cgroup filesystem is mounted; mount cgroup2 (`mount -t cgroup2 none /sys/fs/cgroup`) \
         and start again"
    )]
    NoCgroupFs,
    /// At start: the daemon's own cgroup (from `/proc/self/cgroup`) lies outside the subtree
    /// a cgroup mount shows, as when a container mounts only part of a hierarchy.
    #[error(
        "this process's cgroup {cgroup} is not visible under the cgroup mount at \
         {mount_point}; run the daemon in a cgroup namespace rooted at that mount, or mount \
         the whole hierarchy"
    )]
    NotVisible {
        /// The own cgroup's path.
        cgroup: String,
        /// The mount that does not show it.
        mount_point: PathBuf,
    },
    /// At start: the runtime directory name was not one plain path component.
    #[error(
        "the runtime cgroup directory name {name:?} must be one plain path component other \
         than `daemon`, such as `aurae-cells`"
    )]
    BadRuntimeDir {
        /// The refused name.
        name: String,
    },
    /// Remounting a hierarchy with `favordynmods` failed (a kernel before 6.0 lacks it).
    #[error(
        "cannot remount {mount_point} with favordynmods: {source}; cells still start, each \
         paying a slower cgroup migration (Linux 6.0 or later has the option)"
    )]
    DynMods {
        /// The hierarchy's mount point.
        mount_point: PathBuf,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// Reading a cgroup or proc file failed (the filesystem went away, or no permission).
    #[error(
        "cannot read {path}: {source}; check that the cgroup filesystem is mounted and the \
         daemon runs as root"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The kernel refused a value written to a cgroup file: outside what the parent cgroup
    /// allows (a cpuset naming CPUs the parent lacks), a controller not enabled, or a
    /// process that cannot move.
    #[error(
        "the kernel refused {value:?} written to {path}: {source}; check the value against \
         the parent cgroup's limits and that its controller is enabled"
    )]
    Write {
        /// The file.
        path: PathBuf,
        /// The refused value.
        value: String,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// A cgroup file held something other than what the kernel writes there.
    #[error("unexpected content {content:?} in {path}; is a cgroup filesystem mounted there?")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// Creating a cgroup directory failed (not root, a read-only hierarchy, or the
    /// hierarchy's `cgroup.max.depth` or `cgroup.max.descendants` reached).
    #[error(
        "cannot create cgroup {path}: {source}; the daemon must run as root on a writable \
         cgroup hierarchy with room for more cgroups"
    )]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Removing a cgroup directory failed after retrying: a process or a nested cgroup the
    /// runtime does not know is still inside it.
    #[error(
        "cannot remove cgroup {path}: {source}; something is still inside it - look at its \
         cgroup.procs and subdirectories, kill or remove them, and retry"
    )]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Checking limits: the host cannot enforce a field (cgroup v1 lacks `memory.high`, a
    /// controller is missing, swap is not accounted).
    #[error("cannot enforce {field}: {why}")]
    Unsupported {
        /// The field, as the spec names it (`memory.high`).
        field: &'static str,
        /// Why, and what to do instead.
        why: String,
    },
    /// Checking limits: a field's value is outside what the kernel or the host accepts.
    #[error("{field} = {value} is out of range: expected {why}")]
    OutOfRange {
        /// The field, as the spec names it (`cpu.weight`).
        field: &'static str,
        /// The refused value.
        value: String,
        /// What a valid value looks like.
        why: String,
    },
    /// Creating a cell whose cgroup already exists (left by an earlier daemon, or created
    /// twice).
    #[error("the cgroup of cell {cell} already exists; adopt it with open() or remove it first")]
    Exists {
        /// The cell.
        cell: CellName,
    },
    /// Creating a nested cell whose parent cell has no cgroup.
    #[error(
        "cannot create cell {cell}: its parent cell {parent} does not exist; create {parent} first"
    )]
    ParentMissing {
        /// The cell asked for.
        cell: CellName,
        /// Its missing parent.
        parent: CellName,
    },
    /// Freezing a cell on a host with neither cgroup v2's `cgroup.freeze` (Linux 5.2+) nor a
    /// mounted v1 freezer hierarchy.
    #[error(
        "cell {cell} cannot be frozen: this host has neither cgroup v2's cgroup.freeze nor a \
         v1 freezer hierarchy; mount the freezer controller (or boot with cgroup v2)"
    )]
    NoFreezer {
        /// The cell.
        cell: CellName,
    },
    /// Freezing or killing did not finish within [`SETTLE_TIMEOUT`], usually because a
    /// process is stuck in uninterruptible sleep (state `D`).
    #[error(
        "cell {cell}: {what} did not finish within {waited:?}; processes {pids:?} may be \
         stuck in uninterruptible sleep (see `ps -o pid,stat,wchan -p <pid>`); retry later"
    )]
    Timeout {
        /// The cell.
        cell: CellName,
        /// What was waited for (`freezing`, `killing every process`).
        what: &'static str,
        /// How long.
        waited: Duration,
        /// The processes still in the cell.
        pids: Vec<i32>,
    },
    /// Sending SIGKILL to a process of the cell failed for a reason other than the process
    /// having exited already.
    #[error(
        "cannot send SIGKILL to process {pid} of cell {cell}: {source}; the daemon must run as root"
    )]
    Signal {
        /// The cell.
        cell: CellName,
        /// The process.
        pid: i32,
        /// The kernel's answer.
        source: Errno,
    },
}

/// Which cgroup version cells live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Controllers in v1 hierarchies.
    V1 {
        /// Whether a unified cgroup2 tree is mounted beside them (a "hybrid" host), whose
        /// `cgroup.freeze` and `cgroup.kill` the runtime uses.
        hybrid: bool,
    },
    /// One cgroup2 hierarchy for everything.
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 { hybrid: false } => "v1",
            Self::V1 { hybrid: true } => "v1 (hybrid)",
            Self::V2 => "v2",
        })
    }
}

/// One directory of a cell (or of the runtime root) and the controllers its hierarchy
/// carries.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CellDir {
    controllers: Vec<String>,
    path: PathBuf,
}

/// The directory among `dirs` whose hierarchy carries `controller`.
fn dir_with<'a>(dirs: &'a [CellDir], controller: &str) -> Option<&'a Path> {
    dirs.iter()
        .find(|d| d.controllers.iter().any(|c| c == controller))
        .map(|d| d.path.as_path())
}

/// What the host mounts, detected once at start, and the runtime root prepared in it.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    version: CgroupVersion,
    /// The runtime root in each hierarchy (one on v2).
    roots: Vec<CellDir>,
    /// The runtime root in the cgroup2 tree: the same directory as `roots[0]` on v2, the
    /// unified mount's on a hybrid host, none on pure v1.
    unified: Option<PathBuf>,
    caps: Capabilities,
}

impl Hierarchy {
    /// Detects the host's cgroup layout from `/proc/self/mountinfo` and `/proc/self/cgroup`
    /// and prepares the runtime root `<own cgroup>/<runtime_dir_name>` in every hierarchy
    /// (creating it if needed). On v2, when the daemon's own cgroup is not the root and
    /// holds processes, they move into `<own>/daemon` first; then `cpu`, `cpuset`, `io`,
    /// `memory` and `pids` (those the host offers) are enabled for the runtime root and
    /// for the cells below it.
    pub fn detect(runtime_dir_name: &str) -> Result<Hierarchy, CgroupError> {
        let mountinfo = files::read(Path::new("/proc/self/mountinfo"))?;
        let own = files::read(Path::new("/proc/self/cgroup"))?;
        Self::prepare(detect::parse(&mountinfo, &own)?, runtime_dir_name)
    }

    fn prepare(layout: HostLayout, runtime_dir_name: &str) -> Result<Hierarchy, CgroupError> {
        let mut components = Path::new(runtime_dir_name).components();
        let plain = matches!(
            (components.next(), components.next()),
            (Some(Component::Normal(_)), None)
        );
        if !plain || runtime_dir_name == v2::DAEMON_LEAF || runtime_dir_name.contains('/') {
            return Err(CgroupError::BadRuntimeDir {
                name: runtime_dir_name.to_owned(),
            });
        }
        let hierarchy = match layout {
            HostLayout::V2(own) => {
                let (root, controllers) = v2::prepare_root(&own, runtime_dir_name)?;
                let caps = v2_capabilities(&root, &controllers);
                Hierarchy {
                    version: CgroupVersion::V2,
                    roots: vec![CellDir {
                        controllers: controllers.into_iter().collect(),
                        path: root.clone(),
                    }],
                    unified: Some(root),
                    caps,
                }
            }
            HostLayout::V1 {
                hierarchies,
                unified,
            } => {
                let mut roots = Vec::new();
                for own in hierarchies {
                    let path = own.dir.join(runtime_dir_name);
                    if files::make_dir_if_missing(&path)? {
                        v1::init_dir(&path, &own.controllers)?;
                    }
                    roots.push(CellDir {
                        controllers: own.controllers,
                        path,
                    });
                }
                let unified = match unified {
                    Some(own) => {
                        let path = own.dir.join(runtime_dir_name);
                        files::make_dir_if_missing(&path)?;
                        Some(path)
                    }
                    None => None,
                };
                let caps = v1::capabilities(&roots, unified.is_some());
                Hierarchy {
                    version: caps.version,
                    roots,
                    unified,
                    caps,
                }
            }
        };
        tracing::info!(
            version = %hierarchy.version,
            roots = ?hierarchy.roots.iter().map(|r| &r.path).collect::<Vec<_>>(),
            controllers = ?hierarchy.caps.controllers,
            "cgroup runtime root ready"
        );
        Ok(hierarchy)
    }

    /// The cgroup version cells live in.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The runtime root's directory in every hierarchy (and the unified tree's, on a hybrid
    /// host).
    pub fn root_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.roots.iter().map(|r| r.path.clone()).collect();
        if let Some(unified) = &self.unified
            && !dirs.contains(unified)
        {
            dirs.push(unified.clone());
        }
        dirs
    }

    /// Refuses, before anything is created, limits this host cannot enforce, naming the
    /// field: `memory.high` on v1, a field whose controller is missing, a cpuset naming
    /// CPUs the host does not offer, `memory.max` below [`MEMORY_FLOOR`], weights outside
    /// 1-10000, a quota below 1000 µs, a period outside 1000-1000000 µs, swap where the
    /// host does not account it.
    pub fn check(&self, limits: &Limits) -> Result<(), CgroupError> {
        limits::check(&self.caps, limits)
    }

    /// Creates cell `name`'s cgroup in every hierarchy and writes its `limits` (unset
    /// fields keep the kernel's defaults, so a nested cell inherits its parent's bounds).
    /// Refuses a cell that exists or whose parent does not; on any failure it removes
    /// every directory it made, so no half-made cgroup remains.
    pub fn create(&self, name: &CellName, limits: &Limits) -> Result<Cgroup, CgroupError> {
        self.check(limits)?;
        self.create_checked(name, limits)
    }

    fn create_checked(&self, name: &CellName, limits: &Limits) -> Result<Cgroup, CgroupError> {
        if self.cgroup(name).exists() {
            return Err(CgroupError::Exists { cell: name.clone() });
        }
        if let Some(parent) = name.parent()
            && !self.cgroup(&parent).exists()
        {
            return Err(CgroupError::ParentMissing {
                cell: name.clone(),
                parent,
            });
        }
        let cgroup = self.cgroup(name);
        // The directories made so far, removed in reverse if a later step fails.
        let mut made = Vec::new();
        match self.build(&cgroup, limits, &mut made) {
            Ok(()) => {
                tracing::debug!(cell = %name, "cgroup created");
                Ok(cgroup)
            }
            Err(error) => {
                for dir in made.iter().rev() {
                    if let Err(e) = files::remove_dir(dir) {
                        tracing::warn!(cell = %name, error = %e, "could not undo a cgroup step");
                    }
                }
                Err(error)
            }
        }
    }

    fn build(
        &self,
        cgroup: &Cgroup,
        limits: &Limits,
        made: &mut Vec<PathBuf>,
    ) -> Result<(), CgroupError> {
        if self.version == CgroupVersion::V2 {
            self.prepare_parent(cgroup)?;
        }
        for dir in &cgroup.dirs {
            files::make_dir(&dir.path)?;
            made.push(dir.path.clone());
            if self.version != CgroupVersion::V2 {
                v1::init_dir(&dir.path, &dir.controllers)?;
            }
        }
        if let Some(unified) = &cgroup.unified
            && self.version != CgroupVersion::V2
        {
            files::make_dir(unified)?;
            made.push(unified.clone());
        }
        match self.version {
            CgroupVersion::V2 => {
                let dir = &cgroup.dirs[0].path;
                v2::write_limits(dir, limits)?;
                // The cell holds no process yet, so it may enable controllers for its
                // nested cells; its own processes go to the leaf.
                v2::enable(dir, &self.v2_controllers())?;
                let leaf = dir.join(v2::CELL_LEAF);
                files::make_dir(&leaf)?;
                made.push(leaf);
                Ok(())
            }
            CgroupVersion::V1 { .. } => v1::write_limits(&cgroup.dirs, limits),
        }
    }

    /// The controllers a v2 cell enables for what lies below it: the runtime root's.
    fn v2_controllers(&self) -> Vec<&str> {
        self.roots[0]
            .controllers
            .iter()
            .map(String::as_str)
            .collect()
    }

    /// On v2, a nested cell's parent must enable the controllers for its children and hold
    /// no process itself. A parent made by this module is so from the start; one made
    /// before cells had a `_procs` leaf (by an older daemon) may hold processes itself, so
    /// they move into its leaf first, as the no-internal-process rule demands, and it stays
    /// in the layout every cell has now.
    fn prepare_parent(&self, cgroup: &Cgroup) -> Result<(), CgroupError> {
        let (Some(_), Some(dir)) = (cgroup.name.parent(), cgroup.dirs[0].path.parent()) else {
            return Ok(());
        };
        v2::move_into_leaf(dir, v2::CELL_LEAF)?;
        v2::enable(dir, &self.v2_controllers())
    }

    /// The cgroup of cell `name` as paths, whether or not it exists.
    fn cgroup(&self, name: &CellName) -> Cgroup {
        let relative = name.relative_path();
        Cgroup {
            name: name.clone(),
            version: self.version,
            dirs: self
                .roots
                .iter()
                .map(|r| CellDir {
                    controllers: r.controllers.clone(),
                    path: r.path.join(&relative),
                })
                .collect(),
            unified: self.unified.as_ref().map(|u| u.join(&relative)),
        }
    }

    /// An existing cell's cgroup (to adopt it after a daemon restart): `Some` when its
    /// directory exists in any hierarchy, so a cgroup half-removed by a crash can still be
    /// removed. On v2, a cell made before cells had a `_procs` leaf (by an older daemon)
    /// gets its leaf here, so that its [`Cgroup::procs_files`] can be written; the
    /// processes it already holds stay where they are until a nested cell is created in it.
    pub fn open(&self, name: &CellName) -> Option<Cgroup> {
        let cgroup = self.cgroup(name);
        if !cgroup.exists() {
            return None;
        }
        let dir = &cgroup.dirs[0].path;
        if self.version == CgroupVersion::V2
            && dir.is_dir()
            && let Err(error) = files::make_dir_if_missing(&dir.join(v2::CELL_LEAF))
        {
            tracing::warn!(cell = %name, %error, "cannot give an adopted cell its _procs leaf");
        }
        Some(cgroup)
    }

    /// Every cell cgroup below the runtime root, parents before children. The cells'
    /// `_procs` leaves are not cells; other directories whose path is not a cell name are
    /// skipped with a warning.
    pub fn list(&self) -> Result<Vec<CellName>, CgroupError> {
        let root = &self.roots[0].path;
        let mut cells = Vec::new();
        for dir in files::tree(root)?.into_iter().skip(1) {
            if dir.file_name() == Some(OsStr::new(v2::CELL_LEAF)) {
                continue;
            }
            let Ok(relative) = dir.strip_prefix(root) else {
                continue;
            };
            let text = relative.to_string_lossy();
            match text.parse::<CellName>() {
                Ok(name) => cells.push(name),
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "skipping a cgroup that is not a cell")
                }
            }
        }
        cells.sort();
        Ok(cells)
    }

    /// Removes every cell (killing their processes) and the runtime root itself, in every
    /// hierarchy: for tests and for uninstalling, never for a daemon restart.
    pub fn remove_all(&self) -> Result<(), CgroupError> {
        for name in self.list()?.iter().rev() {
            self.cgroup(name).remove()?;
        }
        for dir in self.root_dirs() {
            files::remove_dir(&dir)?;
        }
        Ok(())
    }
}

fn v2_capabilities(root: &Path, controllers: &BTreeSet<String>) -> Capabilities {
    let cpus = ["cpuset.cpus.effective"]
        .iter()
        .map(|f| root.join(f))
        .chain([PathBuf::from("/sys/devices/system/cpu/online")])
        .find_map(|f| files::read(&f).ok())
        .and_then(|text| limits::parse_cpu_list(&text));
    Capabilities {
        version: CgroupVersion::V2,
        controllers: controllers.clone(),
        io_weight: root.join("io.weight").exists(),
        swap: root.join("memory.swap.max").exists(),
        cpus,
    }
}

/// One cell's cgroup, across all hierarchies.
#[derive(Debug, Clone)]
pub struct Cgroup {
    name: CellName,
    version: CgroupVersion,
    /// The cell's directory in each hierarchy (one on v2).
    dirs: Vec<CellDir>,
    /// Its directory in the cgroup2 tree (the same as `dirs[0]` on v2).
    unified: Option<PathBuf>,
}

impl Cgroup {
    /// The cell this cgroup bounds.
    pub fn name(&self) -> &CellName {
        &self.name
    }

    /// Every directory of the cell: one per v1 hierarchy plus the unified tree's, or the
    /// one directory on v2 (where the cell's own processes live in its `_procs` leaf).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self.dirs.iter().map(|d| d.path.clone()).collect();
        if let Some(unified) = &self.unified
            && !dirs.contains(unified)
        {
            dirs.push(unified.clone());
        }
        dirs
    }

    /// Every `cgroup.procs` file a new process must be written into to be wholly inside the
    /// cell: one per v1 hierarchy plus the unified tree's, or on v2 the one of the cell's
    /// `_procs` leaf.
    ///
    /// The spawner opens each with `O_WRONLY` before `fork`, and the child writes `"0"` to
    /// every descriptor before `exec`: the kernel reads pid 0 as "the writing process", so
    /// the child enters the cell before it runs a single instruction of the workload, and
    /// no fork can escape. (Writing needs no allocation, so it is safe after `fork`.)
    pub fn procs_files(&self) -> Vec<PathBuf> {
        if self.version == CgroupVersion::V2 {
            return vec![self.dirs[0].path.join(v2::CELL_LEAF).join("cgroup.procs")];
        }
        self.dirs()
            .into_iter()
            .map(|d| d.join("cgroup.procs"))
            .collect()
    }

    /// Whether the cell's directory exists in any hierarchy.
    fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.is_dir())
    }

    /// Moves process `pid` (all its threads) into the cell in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for procs in self.procs_files() {
            files::write(&procs, &pid.to_string())?;
        }
        Ok(())
    }

    /// Every process in this cell and its nested cells, in any hierarchy, sorted.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = BTreeSet::new();
        for dir in self.dirs() {
            for cgroup in files::tree(&dir)? {
                pids.extend(files::read_pids(&cgroup.join("cgroup.procs"))?);
            }
        }
        Ok(pids.into_iter().collect())
    }

    /// Whether no process is in this cell or its nested cells.
    pub fn is_empty(&self) -> Result<bool, CgroupError> {
        Ok(self.pids()?.is_empty())
    }

    /// How the cell is frozen: the cgroup2 `cgroup.freeze` when the cell has a cgroup2
    /// directory offering it (v2, and hybrid), else the v1 freezer.
    fn freezer(&self) -> Result<Freezer<'_>, CgroupError> {
        if let Some(unified) = &self.unified
            && v2::can_freeze(unified)
        {
            return Ok(Freezer::V2(unified));
        }
        dir_with(&self.dirs, "freezer")
            .map(Freezer::V1)
            .ok_or_else(|| CgroupError::NoFreezer {
                cell: self.name.clone(),
            })
    }

    /// Freezes every process of the cell and its nested cells, and waits until the kernel
    /// reports them frozen (at most [`SETTLE_TIMEOUT`]).
    pub fn freeze(&self) -> Result<(), CgroupError> {
        let freezer = self.freezer()?;
        freezer.set(FreezerState::Frozen)?;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while !freezer.frozen()? {
            if Instant::now() >= deadline {
                return Err(CgroupError::Timeout {
                    cell: self.name.clone(),
                    what: "freezing",
                    waited: SETTLE_TIMEOUT,
                    pids: self.pids().unwrap_or_default(),
                });
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Lets the cell's processes run again.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.freezer()?.set(FreezerState::Thawed)
    }

    /// Whether the cell is frozen (by itself or a frozen parent cell).
    pub fn frozen(&self) -> Result<bool, CgroupError> {
        self.freezer()?.frozen()
    }

    /// Kills every process in the cell and its nested cells so that none escapes: with
    /// `cgroup.kill` where the cell has it (v2, and hybrid's unified tree), else by
    /// freezing, SIGKILLing every process and thawing, again until the cell is empty.
    /// Fails with [`CgroupError::Timeout`] if processes remain after [`SETTLE_TIMEOUT`].
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        let kill_file = self.unified.as_deref().filter(|u| v2::can_kill(u));
        for round in 0.. {
            let pids = self.pids()?;
            if pids.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::Timeout {
                    cell: self.name.clone(),
                    what: "killing every process",
                    waited: SETTLE_TIMEOUT,
                    pids,
                });
            }
            match kill_file {
                Some(dir) if dir.exists() => v2::kill(dir)?,
                _ => self.kill_frozen(&pids)?,
            }
            // A process placed in the v1 hierarchies but not in the unified tree escapes
            // cgroup.kill; after the first round every process left gets its own SIGKILL.
            if round > 0 && kill_file.is_some() {
                self.kill_frozen(&pids)?;
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// One v1 round: freeze (so nothing forks), SIGKILL each process, thaw (so they die).
    fn kill_frozen(&self, pids: &[i32]) -> Result<(), CgroupError> {
        let freezer = dir_with(&self.dirs, "freezer");
        if let Some(dir) = freezer
            && let Err(error) = v1::set_state(dir, FreezerState::Frozen)
        {
            tracing::warn!(cell = %self.name, %error, "could not freeze before killing");
        }
        let mut result = Ok(());
        for &pid in pids {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => {
                    result = Err(CgroupError::Signal {
                        cell: self.name.clone(),
                        pid,
                        source,
                    });
                }
            }
        }
        if let Some(dir) = freezer {
            v1::set_state(dir, FreezerState::Thawed)?;
        }
        result
    }

    /// Kills every process, then removes the cell's directories (and any nested cell's,
    /// and the `_procs` leaves) leaf first in every hierarchy, retrying briefly while the
    /// kernel calls them busy. Removing a cell that is already gone succeeds. The parent
    /// cell keeps its controllers enabled: its processes live in its own leaf.
    pub fn remove(&self) -> Result<(), CgroupError> {
        self.kill_all()?;
        for dir in self.dirs() {
            for cgroup in files::tree(&dir)?.iter().rev() {
                files::remove_dir(cgroup)?;
            }
        }
        tracing::debug!(cell = %self.name, "cgroup removed");
        Ok(())
    }

    /// How many times the kernel's OOM killer has killed a process in the cell (and its
    /// nested cells); 0 where the host does not count it. On v2 it is read at the cell's
    /// directory, whose `memory.events` counts the `_procs` leaf and nested cells too.
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        match (self.version, dir_with(&self.dirs, "memory")) {
            (_, None) => Ok(0),
            (CgroupVersion::V2, Some(dir)) => v2::oom_kills(dir),
            (CgroupVersion::V1 { .. }, Some(dir)) => v1::oom_kills(dir),
        }
    }

    /// The memory the cell (and its nested cells) uses now, in bytes; `None` without a
    /// memory controller.
    pub fn memory_current(&self) -> Result<Option<u64>, CgroupError> {
        match (self.version, dir_with(&self.dirs, "memory")) {
            (_, None) => Ok(None),
            (CgroupVersion::V2, Some(dir)) => v2::memory_current(dir),
            (CgroupVersion::V1 { .. }, Some(dir)) => v1::memory_current(dir),
        }
    }
}

/// What a freezer is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FreezerState {
    Frozen,
    Thawed,
}

/// The freezer a cell uses.
enum Freezer<'a> {
    V2(&'a Path),
    V1(&'a Path),
}

impl Freezer<'_> {
    fn set(&self, state: FreezerState) -> Result<(), CgroupError> {
        match self {
            Freezer::V2(dir) => v2::set_state(dir, state),
            Freezer::V1(dir) => v1::set_state(dir, state),
        }
    }

    fn frozen(&self) -> Result<bool, CgroupError> {
        match self {
            Freezer::V2(dir) => v2::frozen(dir),
            Freezer::V1(dir) => v1::frozen(dir),
        }
    }
}

/// Real cgroups, as root, on whatever host runs the tests (this project's CI host is
/// hybrid; a pure v2 host runs the same tests and asserts the v2 answers).
#[cfg(test)]
mod tests {
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::spec::MemoryLimits;

    /// A runtime root of its own for one test, removed at the end (also when it panics).
    struct TestRoot(Hierarchy);

    impl TestRoot {
        fn new() -> TestRoot {
            TestRoot(Hierarchy::detect(&unique_name()).unwrap())
        }

        /// Removes everything and checks that nothing is left.
        fn finish(self) {
            let dirs = self.0.root_dirs();
            self.0.remove_all().unwrap();
            for dir in dirs {
                assert!(!dir.exists(), "{} was left behind", dir.display());
            }
        }
    }

    impl Drop for TestRoot {
        fn drop(&mut self) {
            if let Err(error) = self.0.remove_all() {
                eprintln!("cleaning up a test runtime root: {error}");
            }
        }
    }

    fn unique_name() -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        format!("aurae-test-{}-{n}", std::process::id())
    }

    fn cell(name: &str) -> CellName {
        name.parse().unwrap()
    }

    fn memory_limits(max: u64) -> Limits {
        Limits {
            memory: MemoryLimits {
                max: Some(max),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn sleeper() -> Child {
        Command::new("sleep").arg("30").spawn().unwrap()
    }

    /// Starts `sh` that enters the cell itself by writing "0" to every procs file (as the
    /// spawner's child does), then leaves two `sleep`s behind and exits.
    fn double_fork_into(cgroup: &Cgroup) {
        let mut script = String::new();
        for procs in cgroup.procs_files() {
            script.push_str(&format!("echo 0 > '{}' || exit 1; ", procs.display()));
        }
        script.push_str("sleep 100 & sleep 100 &");
        let status = Command::new("sh").arg("-c").arg(script).status().unwrap();
        assert!(status.success(), "sh could not enter the cell: {status}");
    }

    fn read(path: PathBuf) -> String {
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_owned()
    }

    fn assert_gone(cgroup: &Cgroup) {
        for dir in cgroup.dirs() {
            assert!(!dir.exists(), "{} was left behind", dir.display());
        }
    }

    #[test]
    fn a_cell_holds_a_process_within_its_memory_and_pids_limits() {
        let root = TestRoot::new();
        let limits = Limits {
            pids_max: Some(32),
            ..memory_limits(64 << 20)
        };
        let cgroup = root.0.create(&cell("mem"), &limits).unwrap();
        let mut child = sleeper();
        let pid = i32::try_from(child.id()).unwrap();
        cgroup.add_process(pid).unwrap();
        assert_eq!(cgroup.pids().unwrap(), vec![pid]);
        assert!(!cgroup.is_empty().unwrap());

        let memory = dir_with(&cgroup.dirs, "memory").unwrap();
        let pids = dir_with(&cgroup.dirs, "pids").unwrap();
        let limit_file = match root.0.version() {
            CgroupVersion::V2 => "memory.max",
            CgroupVersion::V1 { .. } => "memory.limit_in_bytes",
        };
        assert_eq!(read(memory.join(limit_file)), (64u64 << 20).to_string());
        assert_eq!(read(pids.join("pids.max")), "32");
        // On v1 a moved process's memory stays charged where it was, so the cell may read 0.
        assert!(cgroup.memory_current().unwrap().is_some());
        assert_eq!(cgroup.oom_kills().unwrap(), 0);
        for procs in cgroup.procs_files() {
            assert!(read(procs).lines().any(|l| l == pid.to_string()));
        }

        cgroup.remove().unwrap();
        child.wait().unwrap();
        assert_gone(&cgroup);
        assert!(root.0.open(&cell("mem")).is_none());
        cgroup.remove().unwrap();
        root.finish();
    }

    #[test]
    fn every_limit_reaches_its_file_in_the_host_units() {
        let root = TestRoot::new();
        let limits = Limits {
            cpu: crate::spec::CpuLimits {
                weight: Some(100),
                quota_us: Some(50_000),
                period_us: Some(100_000),
            },
            cpuset: Some("0".to_owned()),
            memory: MemoryLimits {
                max: Some(64 << 20),
                high: None,
                swap: Some(16 << 20),
            },
            pids_max: Some(10),
            io_weight: Some(100),
        };
        root.0.check(&limits).unwrap();
        let cgroup = root.0.create(&cell("all"), &limits).unwrap();
        let file = |controller: &str, name: &str| {
            read(dir_with(&cgroup.dirs, controller).unwrap().join(name))
        };
        match root.0.version() {
            CgroupVersion::V1 { .. } => {
                assert_eq!(file("cpu", "cpu.shares"), "2597");
                assert_eq!(file("cpu", "cpu.cfs_quota_us"), "50000");
                assert_eq!(file("cpu", "cpu.cfs_period_us"), "100000");
                assert_eq!(file("cpuset", "cpuset.cpus"), "0");
                assert_eq!(
                    file("memory", "memory.memsw.limit_in_bytes"),
                    (80u64 << 20).to_string()
                );
                assert_eq!(file("pids", "pids.max"), "10");
                let blkio = dir_with(&cgroup.dirs, "blkio").unwrap();
                let weight = ["blkio.weight", "blkio.bfq.weight"]
                    .iter()
                    .map(|f| blkio.join(f))
                    .find(|f| f.exists())
                    .unwrap();
                assert_eq!(read(weight), "19");
            }
            CgroupVersion::V2 => {
                assert_eq!(file("cpu", "cpu.weight"), "100");
                assert_eq!(file("cpu", "cpu.max"), "50000 100000");
                assert_eq!(file("cpuset", "cpuset.cpus"), "0");
                assert_eq!(file("memory", "memory.swap.max"), (16u64 << 20).to_string());
                assert!(file("io", "io.weight").contains("default 100"));
            }
        }
        cgroup.remove().unwrap();
        root.finish();
    }

    #[test]
    fn a_frozen_cell_reports_frozen_until_thawed() {
        let root = TestRoot::new();
        let cgroup = root.0.create(&cell("ice"), &Limits::default()).unwrap();
        let mut child = sleeper();
        cgroup
            .add_process(i32::try_from(child.id()).unwrap())
            .unwrap();
        assert!(!cgroup.frozen().unwrap());
        cgroup.freeze().unwrap();
        assert!(cgroup.frozen().unwrap());
        cgroup.thaw().unwrap();
        assert!(!cgroup.frozen().unwrap());
        cgroup.remove().unwrap();
        child.wait().unwrap();
        root.finish();
    }

    #[test]
    fn kill_all_kills_double_forked_processes_and_remove_leaves_nothing() {
        let root = TestRoot::new();
        let cgroup = root
            .0
            .create(&cell("forks"), &memory_limits(64 << 20))
            .unwrap();
        double_fork_into(&cgroup);
        assert_eq!(
            cgroup.pids().unwrap().len(),
            2,
            "the two sleeps are in the cell"
        );
        cgroup.kill_all().unwrap();
        assert!(cgroup.is_empty().unwrap());
        cgroup.remove().unwrap();
        assert_gone(&cgroup);
        root.finish();
    }

    #[test]
    fn without_cgroup_kill_the_v1_freezer_kills_every_process() {
        let root = TestRoot::new();
        if root.0.version() == CgroupVersion::V2 {
            // A pure v2 host has no v1 freezer; the cgroup.kill path is tested above.
            assert!(root.0.unified.is_some());
            return root.finish();
        }
        // The same hierarchies without the unified tree: a pure v1 host.
        let v1_only = Hierarchy {
            version: CgroupVersion::V1 { hybrid: false },
            unified: None,
            ..root.0.clone()
        };
        let cgroup = v1_only.create(&cell("old"), &Limits::default()).unwrap();
        assert!(cgroup.unified.is_none());
        double_fork_into(&cgroup);
        assert_eq!(cgroup.pids().unwrap().len(), 2);
        cgroup.freeze().unwrap();
        assert!(cgroup.frozen().unwrap());
        cgroup.kill_all().unwrap();
        assert!(!cgroup.frozen().unwrap(), "kill_all thaws what it froze");
        cgroup.remove().unwrap();
        assert_gone(&cgroup);
        root.finish();
    }

    #[test]
    fn kill_all_also_kills_a_process_outside_the_unified_tree() {
        let root = TestRoot::new();
        let cgroup = root.0.create(&cell("split"), &Limits::default()).unwrap();
        let mut child = sleeper();
        let pid = i32::try_from(child.id()).unwrap();
        // Only the first hierarchy: on a hybrid host cgroup.kill cannot see it.
        std::fs::write(&cgroup.procs_files()[0], pid.to_string()).unwrap();
        assert_eq!(cgroup.pids().unwrap(), vec![pid]);
        cgroup.kill_all().unwrap();
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "sleep was killed, not finished: {status}"
        );
        cgroup.remove().unwrap();
        root.finish();
    }

    #[test]
    fn memory_high_is_refused_on_v1_naming_the_field() {
        let root = TestRoot::new();
        let limits = Limits {
            memory: MemoryLimits {
                high: Some(64 << 20),
                ..Default::default()
            },
            ..Default::default()
        };
        let name = cell("high");
        match root.0.version() {
            CgroupVersion::V1 { .. } => {
                let error = root.0.create(&name, &limits).unwrap_err();
                assert!(
                    error.to_string().contains("memory.high needs cgroup v2"),
                    "{error}"
                );
                assert!(root.0.open(&name).is_none());
            }
            CgroupVersion::V2 => {
                root.0.create(&name, &limits).unwrap().remove().unwrap();
            }
        }
        root.finish();
    }

    #[test]
    fn a_failing_create_leaves_nothing_behind() {
        let root = TestRoot::new();
        let limits = Limits {
            cpuset: Some("0-999".to_owned()),
            ..memory_limits(64 << 20)
        };
        let name = cell("bad");
        let error = root.0.create(&name, &limits).unwrap_err();
        assert!(
            matches!(
                error,
                CgroupError::OutOfRange {
                    field: "cpuset",
                    ..
                }
            ),
            "{error}"
        );
        // Past the check, the kernel itself refuses the cpuset after the directories exist.
        let error = root.0.create_checked(&name, &limits).unwrap_err();
        assert!(matches!(error, CgroupError::Write { .. }), "{error}");
        assert!(root.0.open(&name).is_none());
        assert_gone(&root.0.cgroup(&name));
        assert_eq!(root.0.list().unwrap(), vec![]);
        root.finish();
    }

    #[test]
    fn nested_cells_nest_and_list_parents_first() {
        let root = TestRoot::new();
        let web = root
            .0
            .create(&cell("web"), &memory_limits(128 << 20))
            .unwrap();
        let api = root
            .0
            .create(&cell("web/api"), &memory_limits(64 << 20))
            .unwrap();
        for (parent, child) in web.dirs().iter().zip(api.dirs()) {
            assert_eq!(child.parent(), Some(parent.as_path()));
            assert!(child.is_dir());
        }
        assert_eq!(root.0.list().unwrap(), vec![cell("web"), cell("web/api")]);
        assert!(matches!(
            root.0.create(&cell("web"), &Limits::default()),
            Err(CgroupError::Exists { .. })
        ));
        assert!(matches!(
            root.0.create(&cell("db/main"), &Limits::default()),
            Err(CgroupError::ParentMissing { .. })
        ));

        let mut child = sleeper();
        let pid = i32::try_from(child.id()).unwrap();
        api.add_process(pid).unwrap();
        assert_eq!(
            web.pids().unwrap(),
            vec![pid],
            "a parent sees its nested cells"
        );
        web.freeze().unwrap();
        assert!(
            api.frozen().unwrap(),
            "freezing a parent freezes its nested cells"
        );
        web.thaw().unwrap();

        web.remove().unwrap();
        child.wait().unwrap();
        assert_gone(&api);
        assert_gone(&web);
        assert_eq!(root.0.list().unwrap(), vec![]);
        root.finish();
    }

    /// A runtime root on the cgroup2 tree alone, through the v2 code path: on a hybrid host
    /// its unified mount (which has no resource controllers, so no limits are set there).
    fn v2_root() -> TestRoot {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let v2_mounts: String = mountinfo
            .lines()
            .filter(|l| l.contains(" - cgroup2 "))
            .map(|l| format!("{l}\n"))
            .collect();
        let v2_own: String = own
            .lines()
            .filter(|l| l.starts_with("0::"))
            .map(|l| format!("{l}\n"))
            .collect();
        let layout = detect::parse(&v2_mounts, &v2_own).unwrap();
        let root = TestRoot(Hierarchy::prepare(layout, &unique_name()).unwrap());
        assert_eq!(root.0.version(), CgroupVersion::V2);
        root
    }

    /// The pids in one `cgroup.procs` file.
    fn procs_of(dir: &Path) -> Vec<i32> {
        files::read_pids(&dir.join("cgroup.procs")).unwrap()
    }

    #[test]
    fn the_v2_path_creates_freezes_kills_and_removes_on_the_cgroup2_tree() {
        let root = v2_root();
        assert_eq!(root.0.version().to_string(), "v2");

        let outer = root.0.create(&cell("outer"), &Limits::default()).unwrap();
        let inner = root
            .0
            .create(&cell("outer/inner"), &Limits::default())
            .unwrap();
        assert_eq!(inner.procs_files().len(), 1);
        double_fork_into(&inner);
        assert_eq!(outer.pids().unwrap().len(), 2);
        outer.freeze().unwrap();
        assert!(inner.frozen().unwrap());
        outer.thaw().unwrap();
        assert!(!inner.frozen().unwrap());
        outer.kill_all().unwrap();
        assert!(outer.is_empty().unwrap());
        assert_eq!(
            root.0.list().unwrap(),
            vec![cell("outer"), cell("outer/inner")]
        );
        inner.remove().unwrap();
        assert_eq!(root.0.list().unwrap(), vec![cell("outer")]);
        outer.remove().unwrap();
        assert_gone(&outer);
        root.finish();
    }

    /// The no-internal-process rule: a v2 cell's processes live in its `_procs` leaf, so a
    /// cell that runs processes can hold nested cells (which its controllers then bound).
    #[test]
    fn on_v2_a_cell_running_processes_gets_nested_cells() {
        let root = v2_root();
        let web = root.0.create(&cell("web"), &Limits::default()).unwrap();
        let [web_dir] = web.dirs().try_into().unwrap();
        let web_leaf = web_dir.join("_procs");
        assert_eq!(web.procs_files(), vec![web_leaf.join("cgroup.procs")]);
        let mut child = sleeper();
        let pid = i32::try_from(child.id()).unwrap();
        web.add_process(pid).unwrap();
        assert_eq!(procs_of(&web_leaf), vec![pid]);
        assert!(procs_of(&web_dir).is_empty(), "web itself holds no process");
        let subtree = read(web_dir.join("cgroup.subtree_control"));
        for controller in &root.0.roots[0].controllers {
            assert!(subtree.split(' ').any(|c| c == controller), "{subtree}");
        }

        let api = root.0.create(&cell("web/api"), &Limits::default()).unwrap();
        let [api_dir] = api.dirs().try_into().unwrap();
        assert_eq!(api_dir, web_dir.join("api"));
        assert_eq!(
            api.procs_files(),
            vec![api_dir.join("_procs").join("cgroup.procs")]
        );
        double_fork_into(&api);
        let api_pids = api.pids().unwrap();
        assert_eq!(api_pids.len(), 2, "the two sleeps are in web/api");
        assert!(procs_of(&api_dir).is_empty());
        let mut every = api_pids.clone();
        every.push(pid);
        every.sort_unstable();
        assert_eq!(web.pids().unwrap(), every, "web sees its own and api's");
        assert_eq!(root.0.list().unwrap(), vec![cell("web"), cell("web/api")]);

        web.freeze().unwrap();
        assert!(web.frozen().unwrap());
        assert!(api.frozen().unwrap(), "freezing web freezes api");
        web.thaw().unwrap();
        assert!(!api.frozen().unwrap());
        assert!(!web.frozen().unwrap());

        // Removing the nested cell leaves web, its controllers and its process alone.
        api.remove().unwrap();
        assert_gone(&api);
        assert_eq!(web.pids().unwrap(), vec![pid]);
        assert_eq!(read(web_dir.join("cgroup.subtree_control")), subtree);
        assert_eq!(root.0.list().unwrap(), vec![cell("web")]);
        let api = root.0.create(&cell("web/api"), &Limits::default()).unwrap();

        web.kill_all().unwrap();
        assert!(web.is_empty().unwrap());
        assert!(!child.wait().unwrap().success(), "the sleep was killed");
        web.remove().unwrap();
        assert_gone(&api);
        assert_gone(&web);
        assert!(!web_leaf.exists());
        assert_eq!(root.0.list().unwrap(), vec![]);
        root.finish();
    }

    /// A cell an older daemon made holds its processes in its own directory; adopting it
    /// gives it a leaf, and a nested cell moves its processes there.
    #[test]
    fn on_v2_a_cell_made_without_a_leaf_is_adopted_and_gets_nested_cells() {
        let root = v2_root();
        let old_dir = root.0.roots[0].path.join("old");
        std::fs::create_dir(&old_dir).unwrap();
        let mut child = sleeper();
        let pid = i32::try_from(child.id()).unwrap();
        std::fs::write(old_dir.join("cgroup.procs"), pid.to_string()).unwrap();

        let old = root.0.open(&cell("old")).unwrap();
        assert!(old_dir.join("_procs").is_dir(), "adopting made the leaf");
        assert_eq!(old.pids().unwrap(), vec![pid]);
        let new = root.0.create(&cell("old/new"), &Limits::default()).unwrap();
        assert!(procs_of(&old_dir).is_empty(), "old's process moved out");
        assert_eq!(procs_of(&old_dir.join("_procs")), vec![pid]);
        assert_eq!(root.0.list().unwrap(), vec![cell("old"), cell("old/new")]);

        old.remove().unwrap();
        child.wait().unwrap();
        assert_gone(&new);
        assert_gone(&old);
        root.finish();
    }

    #[test]
    fn the_runtime_directory_name_must_be_one_plain_component() {
        for bad in ["", "a/b", "..", "daemon", "/abs"] {
            assert!(
                matches!(
                    Hierarchy::detect(bad),
                    Err(CgroupError::BadRuntimeDir { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }
}
