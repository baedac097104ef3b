//! The specs of cells and executables: validated plain data, written to the store before
//! anything is acted on, so that a restarted daemon knows what it was asked to run.
//!
//! Every name and path here was checked when it was parsed; nothing downstream re-checks.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use aurae_core::name::{EntityName, NameError};
use serde::{Deserialize, Serialize};

/// How deep cells may nest (`a/b/c/d`).
pub const MAX_CELL_DEPTH: usize = 4;

/// Why a spec was refused; each message names the field and what a valid value looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A cell or executable name was not valid.
    #[error("invalid {what} name: {source}")]
    Name {
        /// Which name was being parsed.
        what: &'static str,
        /// What was wrong with it.
        source: NameError,
    },
    /// A cell path had too many levels.
    #[error("cell '{name}' is nested {depth} deep; at most {MAX_CELL_DEPTH} levels are allowed")]
    TooDeep {
        /// The refused name.
        name: String,
        /// Its depth.
        depth: usize,
    },
    /// A name that belongs to someone else was asked for.
    #[error("cell name '{name}' is reserved; choose another")]
    Reserved {
        /// The refused name.
        name: String,
    },
    /// A field held a value outside its range.
    #[error("{field} = {value} is out of range: {why}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The refused value.
        value: String,
        /// The valid range.
        why: &'static str,
    },
    /// A path was not absolute or tried to leave its root.
    #[error("{field} '{path}' must be an absolute path without '..' or NUL")]
    BadPath {
        /// The field.
        field: &'static str,
        /// The refused path.
        path: String,
    },
    /// A field was empty that must not be.
    #[error("{field} is empty: {why}")]
    Empty {
        /// The field.
        field: &'static str,
        /// What to put there.
        why: &'static str,
    },
}

/// A cell's name: one or more labels separated by `/`, the parent first (`web/api`).
/// Each label follows the entity-name rule, so a cell name can never escape a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellName(Vec<EntityName>);

impl CellName {
    /// The labels, parent first.
    pub fn labels(&self) -> &[EntityName] {
        &self.0
    }

    /// The parent cell, if this one is nested.
    pub fn parent(&self) -> Option<CellName> {
        (self.0.len() > 1).then(|| CellName(self.0[..self.0.len() - 1].to_vec()))
    }

    /// Whether `other` is this cell or one nested inside it.
    pub fn contains(&self, other: &CellName) -> bool {
        other.0.starts_with(&self.0)
    }

    /// The relative path of this cell below a runtime root (`web/api`).
    pub fn relative_path(&self) -> PathBuf {
        self.0.iter().map(EntityName::as_str).collect()
    }

    /// The entity of the cell's own principal: its labels joined by `.` (`web.api`), so
    /// that `web.api@node1@example.org` is the identity of cell `web/api`.
    pub fn principal_entity(&self) -> String {
        let labels: Vec<&str> = self.0.iter().map(EntityName::as_str).collect();
        labels.join(".")
    }

    /// The cell a principal entity names, if it is a cell's (`web.api` -> `web/api`).
    pub fn from_principal_entity(entity: &str) -> Option<CellName> {
        entity.replace('.', "/").parse().ok()
    }
}

impl FromStr for CellName {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let labels = s
            .split('/')
            .map(|label| {
                label
                    .parse::<EntityName>()
                    .map_err(|source| SpecError::Name {
                        what: "cell",
                        source,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if labels.len() > MAX_CELL_DEPTH {
            return Err(SpecError::TooDeep {
                name: s.to_owned(),
                depth: labels.len(),
            });
        }
        if labels[0].as_str() == aurae_core::name::Principal::ADMIN {
            return Err(SpecError::Reserved { name: s.to_owned() });
        }
        Ok(Self(labels))
    }
}

impl fmt::Display for CellName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.relative_path().to_string_lossy())
    }
}

impl Serialize for CellName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for CellName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An executable's name within its cell (`nginx`); one label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutableName(EntityName);

impl ExecutableName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl FromStr for ExecutableName {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self).map_err(|source| SpecError::Name {
            what: "executable",
            source,
        })
    }
}

impl fmt::Display for ExecutableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An absolute path that cannot climb out of whatever root it is resolved under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "PathBuf", into = "PathBuf")]
pub struct AbsolutePath(PathBuf);

impl AbsolutePath {
    /// Checks `path` for `field`.
    pub fn parse(field: &'static str, path: impl Into<PathBuf>) -> Result<Self, SpecError> {
        let path = path.into();
        let text = path.to_string_lossy();
        let clean = path.is_absolute()
            && !text.contains('\0')
            && path
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if clean {
            Ok(Self(path))
        } else {
            Err(SpecError::BadPath {
                field,
                path: text.into_owned(),
            })
        }
    }

    /// The path.
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl TryFrom<PathBuf> for AbsolutePath {
    type Error = SpecError;

    fn try_from(path: PathBuf) -> Result<Self, Self::Error> {
        Self::parse("path", path)
    }
}

impl From<AbsolutePath> for PathBuf {
    fn from(path: AbsolutePath) -> Self {
        path.0
    }
}

/// CPU limits. Weights follow cgroup v2's scale (1-10000, default 100); on v1 they are
/// converted to `cpu.shares`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuLimits {
    /// Relative share of CPU time under contention.
    pub weight: Option<u64>,
    /// Microseconds of CPU time allowed per period (a hard cap).
    pub quota_us: Option<u64>,
    /// The period the quota applies to; 100 ms when unset.
    pub period_us: Option<u64>,
}

/// Memory limits in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryLimits {
    /// The hard limit: above it the kernel reclaims, then OOM-kills inside the cell.
    pub max: Option<u64>,
    /// The throttle point: above it the cell is slowed and reclaimed (cgroup v2 only).
    pub high: Option<u64>,
    /// Swap the cell may use on top of `max`.
    pub swap: Option<u64>,
}

/// A cell's resource limits; unset fields inherit the parent cell's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// CPU time.
    pub cpu: CpuLimits,
    /// CPUs the cell may run on, in the kernel's list format (`0-1,3`).
    pub cpuset: Option<String>,
    /// Memory.
    pub memory: MemoryLimits,
    /// The most processes and threads the cell may hold at once.
    pub pids_max: Option<u64>,
    /// Relative share of block I/O (1-10000), where the host has an I/O controller.
    pub io_weight: Option<u64>,
}

/// Which network a cell's processes see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// A network namespace of its own with only loopback (the default).
    #[default]
    Loopback,
    /// The host's network namespace.
    Host,
}

/// A filesystem mount made inside a cell's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Where it appears inside the cell.
    pub destination: AbsolutePath,
    /// What is mounted there.
    pub kind: MountKind,
}

/// What a [`Mount`] mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MountKind {
    /// A host path bound in.
    Bind {
        /// The host path.
        source: AbsolutePath,
        /// Whether the cell may only read it.
        read_only: bool,
    },
    /// A fresh tmpfs.
    Tmpfs {
        /// Its size limit in bytes (the kernel's default, half of RAM, when unset).
        size: Option<u64>,
    },
    /// A procfs of the cell's pid namespace.
    Proc,
}

/// Which namespaces a cell gets. Pid, mount, uts, ipc and cgroup namespaces are always
/// private; the network follows [`NetworkMode`]; a user namespace is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolation {
    /// The network the cell sees.
    pub network: NetworkMode,
    /// Map the cell's root to an unprivileged host uid/gid range (rootless).
    pub user_namespace: Option<IdMapping>,
}

/// A user namespace's id mapping: cell ids 0.. map to host ids `host_id..host_id+size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    /// First host uid and gid.
    pub host_id: u32,
    /// How many ids are mapped.
    pub size: u32,
}

/// What a cell is: its limits, isolation and optional root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellSpec {
    /// Its name (`parent/child` for a nested cell).
    pub name: CellName,
    /// Resource limits.
    pub limits: Limits,
    /// Namespaces.
    pub isolation: Isolation,
    /// A directory its processes pivot_root into; without one they see the host's files
    /// read-only, with a private `/tmp`.
    pub rootfs: Option<AbsolutePath>,
    /// Whether the root filesystem is mounted read-only.
    pub rootfs_read_only: bool,
    /// Extra mounts, made in order after the root is set up.
    pub mounts: Vec<Mount>,
    /// The hostname inside the cell; the cell's last label when unset.
    pub hostname: Option<String>,
    /// Paths inside the cell hidden from its processes (an empty read-only directory, or
    /// `/dev/null` over a file), as an OCI bundle's `linux.maskedPaths`: `/proc/kcore` and
    /// the like. Missing ones are skipped.
    #[serde(default)]
    pub masked_paths: Vec<AbsolutePath>,
    /// Paths inside the cell made read-only (`linux.readonlyPaths`: `/proc/sys` and the
    /// like). Missing ones are skipped.
    #[serde(default)]
    pub readonly_paths: Vec<AbsolutePath>,
}

/// When an executable that exited is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "policy")]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// After a non-zero exit or a killing signal, at most `max_retries` times in a row.
    OnFailure {
        /// How many restarts in a row before giving up.
        max_retries: u32,
    },
    /// After every exit, until it is stopped.
    Always,
}

/// The delay before restart number `attempt` (1-based): 100 ms doubled each time, capped
/// at 30 s, so a crashing workload costs the host little.
pub fn restart_backoff(attempt: u32) -> Duration {
    const FIRST: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(30);
    FIRST
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(CAP)
}

/// A resource limit set with setrlimit(2) before the executable starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// The resource, as setrlimit numbers it (`RLIMIT_NOFILE` = 7).
    pub resource: u32,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// What an executable is: a process started in a cell, and how it is kept running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutableSpec {
    /// Its name within the cell.
    pub name: ExecutableName,
    /// The program and its arguments; the program is looked up on the cell's PATH.
    pub argv: Vec<String>,
    /// Environment variables (`KEY`, `value`), added to a minimal default environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside the cell; `/` when unset.
    pub cwd: Option<AbsolutePath>,
    /// User id to run as (root when unset).
    pub uid: Option<u32>,
    /// Group id to run as (root when unset).
    pub gid: Option<u32>,
    /// When it is started again after it exits.
    pub restart: RestartPolicy,
    /// The signal that asks it to stop (SIGTERM = 15 when unset).
    pub stop_signal: Option<i32>,
    /// How long a stop waits after the stop signal before SIGKILL.
    pub stop_grace: Duration,
    /// Resource limits set before it starts.
    pub rlimits: Vec<Rlimit>,
    /// Give it a pseudo-terminal as stdin, stdout, stderr and controlling terminal.
    #[serde(default)]
    pub tty: bool,
    /// Keep its stdin open for input through the API (otherwise it reads `/dev/null`).
    #[serde(default)]
    pub stdin: bool,
    /// Set `no_new_privs` before exec, so that neither it nor its children can gain
    /// privileges through setuid programs or file capabilities (an OCI bundle's
    /// `process.noNewPrivileges`).
    #[serde(default)]
    pub no_new_privileges: bool,
    /// The capability sets it runs with (an OCI bundle's `process.capabilities`); `None`
    /// keeps those of its user (all of them for root).
    #[serde(default)]
    pub capabilities: Option<crate::capabilities::CapabilitySets>,
}

impl ExecutableSpec {
    /// Checks the fields that a name type cannot.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(SpecError::Empty {
                field: "argv",
                why: "give the program to run, e.g. `-- sleep 10`",
            });
        }
        if self.argv.iter().any(|a| a.contains('\0')) {
            return Err(SpecError::OutOfRange {
                field: "argv",
                value: "an argument with NUL".to_owned(),
                why: "arguments cannot hold NUL bytes",
            });
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(SpecError::OutOfRange {
                    field: "env",
                    value: key.clone(),
                    why: "variable names are non-empty and hold no '=' or NUL",
                });
            }
        }
        if let Some(signal) = self.stop_signal
            && !(1..=64).contains(&signal)
        {
            return Err(SpecError::OutOfRange {
                field: "stop_signal",
                value: signal.to_string(),
                why: "a signal number is 1-64",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_names_nest_and_map_to_principals() {
        let name: CellName = "web/api".parse().unwrap();
        assert_eq!(name.parent().unwrap().to_string(), "web");
        assert_eq!(name.principal_entity(), "web.api");
        assert_eq!(
            CellName::from_principal_entity("web.api"),
            Some(name.clone())
        );
        assert!(name.parent().unwrap().contains(&name));
        assert!(!name.contains(&name.parent().unwrap()));
    }

    #[test]
    fn cell_names_refuse_traversal_and_reserved_names() {
        for bad in [
            "",
            "..",
            "a/../b",
            "/a",
            "a/",
            "A",
            "admin",
            "a/b/c/d/e",
            "a b",
        ] {
            assert!(bad.parse::<CellName>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn absolute_paths_refuse_climbing() {
        assert!(AbsolutePath::parse("cwd", "/srv/app").is_ok());
        for bad in ["srv", "/srv/../etc", ""] {
            assert!(
                AbsolutePath::parse("cwd", bad).is_err(),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(restart_backoff(1), Duration::from_millis(100));
        assert_eq!(restart_backoff(2), Duration::from_millis(200));
        assert_eq!(restart_backoff(40), Duration::from_secs(30));
    }
}
