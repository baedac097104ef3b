//! Wire messages to specs (validated here, at the edge) and model state to wire messages.

use std::time::{Duration, UNIX_EPOCH};

use aurae_proto::v0 as pb;
use aurae_runtime::spec::{
    AbsolutePath, CellName, CellSpec, CpuLimits, ExecutableName, ExecutableSpec, Isolation, Limits,
    MemoryLimits, Mount, MountKind, NetworkMode, RestartPolicy,
};

use super::cells::Cell;
use super::error::RuntimeError;
use super::executable::{ExecutableHandle, ExecutableState, ExecutableStatus};

/// The stop grace when the request leaves it unset.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);

/// Parses a cell name from a request field.
pub fn cell_name(text: &str) -> Result<CellName, RuntimeError> {
    if text.is_empty() {
        return Err(RuntimeError::Invalid(
            "no cell named: give a cell name such as 'web' or 'web/api'".to_owned(),
        ));
    }
    Ok(text.parse()?)
}

/// Parses an executable name from a request field.
pub fn executable_name(text: &str) -> Result<ExecutableName, RuntimeError> {
    Ok(text.parse()?)
}

fn hostname(text: &str) -> Result<Option<String>, RuntimeError> {
    if text.is_empty() {
        return Ok(None);
    }
    let valid = text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !text.starts_with(['-', '.']);
    if !valid {
        return Err(RuntimeError::Invalid(format!(
            "hostname '{text}' is not valid: use up to 64 of a-z, 0-9, '-' and '.'"
        )));
    }
    Ok(Some(text.to_owned()))
}

/// A cell spec from the wire.
pub fn cell_spec(spec: pb::CellSpec) -> Result<CellSpec, RuntimeError> {
    let limits = spec.limits.unwrap_or_default();
    let cpu = limits.cpu.unwrap_or_default();
    let memory = limits.memory.unwrap_or_default();
    let mounts = spec
        .binds
        .into_iter()
        .map(|b| {
            Ok(Mount {
                destination: AbsolutePath::parse("binds.destination", b.destination)?,
                kind: MountKind::Bind {
                    source: AbsolutePath::parse("binds.source", b.source)?,
                    read_only: b.read_only,
                },
            })
        })
        .collect::<Result<Vec<_>, RuntimeError>>()?;
    for mount in &mounts {
        if let MountKind::Bind { source, .. } = &mount.kind
            && !source.as_path().exists()
        {
            return Err(RuntimeError::Invalid(format!(
                "bind source {} does not exist on this host",
                source.as_path().display()
            )));
        }
    }
    Ok(CellSpec {
        name: cell_name(&spec.name)?,
        limits: Limits {
            cpu: CpuLimits {
                weight: cpu.weight,
                quota_us: cpu.quota_us,
                period_us: cpu.period_us,
            },
            cpuset: limits.cpuset.filter(|c| !c.is_empty()),
            memory: MemoryLimits {
                max: memory.max,
                high: memory.high,
                swap: memory.swap,
            },
            pids_max: limits.pids_max,
            io_weight: limits.io_weight,
        },
        isolation: Isolation {
            network: if spec.host_network {
                NetworkMode::Host
            } else {
                NetworkMode::Loopback
            },
            user_namespace: None,
        },
        rootfs: (!spec.rootfs.is_empty())
            .then(|| AbsolutePath::parse("rootfs", spec.rootfs))
            .transpose()?,
        rootfs_read_only: spec.rootfs_read_only,
        mounts,
        hostname: hostname(&spec.hostname)?,
        masked_paths: Vec::new(),
        readonly_paths: Vec::new(),
    })
}

/// A cell spec to the wire.
pub fn cell_spec_message(spec: &CellSpec) -> pb::CellSpec {
    let l = &spec.limits;
    pb::CellSpec {
        name: spec.name.to_string(),
        limits: Some(pb::CellLimits {
            cpu: Some(pb::CpuLimits {
                weight: l.cpu.weight,
                quota_us: l.cpu.quota_us,
                period_us: l.cpu.period_us,
            }),
            cpuset: l.cpuset.clone(),
            memory: Some(pb::MemoryLimits {
                max: l.memory.max,
                high: l.memory.high,
                swap: l.memory.swap,
            }),
            pids_max: l.pids_max,
            io_weight: l.io_weight,
        }),
        host_network: spec.isolation.network == NetworkMode::Host,
        rootfs: spec
            .rootfs
            .as_ref()
            .map(|r| r.as_path().to_string_lossy().into_owned())
            .unwrap_or_default(),
        rootfs_read_only: spec.rootfs_read_only,
        binds: spec
            .mounts
            .iter()
            .filter_map(|m| match &m.kind {
                MountKind::Bind { source, read_only } => Some(pb::BindMount {
                    source: source.as_path().to_string_lossy().into_owned(),
                    destination: m.destination.as_path().to_string_lossy().into_owned(),
                    read_only: *read_only,
                }),
                _ => None,
            })
            .collect(),
        hostname: spec.hostname.clone().unwrap_or_default(),
    }
}

/// An executable spec from the wire; `fresh` names it when the request did not.
pub fn executable_spec(
    spec: pb::ExecutableSpec,
    fresh: impl FnOnce() -> Result<ExecutableName, RuntimeError>,
) -> Result<ExecutableSpec, RuntimeError> {
    let name = if spec.name.is_empty() {
        fresh()?
    } else {
        executable_name(&spec.name)?
    };
    let restart = match pb::RestartPolicy::try_from(spec.restart) {
        Ok(pb::RestartPolicy::Unspecified | pb::RestartPolicy::No) => RestartPolicy::No,
        Ok(pb::RestartPolicy::OnFailure) => RestartPolicy::OnFailure {
            max_retries: spec.max_retries,
        },
        Ok(pb::RestartPolicy::Always) => RestartPolicy::Always,
        Err(_) => {
            return Err(RuntimeError::Invalid(format!(
                "restart policy {} is unknown: use no, on-failure or always",
                spec.restart
            )));
        }
    };
    let exe = ExecutableSpec {
        name,
        argv: spec.argv,
        env: spec.env.into_iter().map(|e| (e.key, e.value)).collect(),
        cwd: (!spec.cwd.is_empty())
            .then(|| AbsolutePath::parse("cwd", spec.cwd))
            .transpose()?,
        uid: spec.uid,
        gid: spec.gid,
        restart,
        stop_signal: (spec.stop_signal != 0).then_some(spec.stop_signal),
        stop_grace: if spec.stop_grace_ms == 0 {
            DEFAULT_STOP_GRACE
        } else {
            Duration::from_millis(spec.stop_grace_ms.into())
        },
        rlimits: Vec::new(),
        tty: spec.tty,
        stdin: spec.stdin || spec.tty,
        no_new_privileges: false,
        capabilities: None,
    };
    exe.validate()?;
    Ok(exe)
}

fn executable_spec_message(spec: &ExecutableSpec) -> pb::ExecutableSpec {
    let (restart, max_retries) = match spec.restart {
        RestartPolicy::No => (pb::RestartPolicy::No, 0),
        RestartPolicy::OnFailure { max_retries } => (pb::RestartPolicy::OnFailure, max_retries),
        RestartPolicy::Always => (pb::RestartPolicy::Always, 0),
    };
    pb::ExecutableSpec {
        name: spec.name.to_string(),
        argv: spec.argv.clone(),
        env: spec
            .env
            .iter()
            .map(|(key, value)| pb::EnvVar {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        cwd: spec
            .cwd
            .as_ref()
            .map(|c| c.as_path().to_string_lossy().into_owned())
            .unwrap_or_default(),
        uid: spec.uid,
        gid: spec.gid,
        restart: restart.into(),
        max_retries,
        stop_signal: spec.stop_signal.unwrap_or(0),
        stop_grace_ms: u32::try_from(spec.stop_grace.as_millis()).unwrap_or(u32::MAX),
        tty: spec.tty,
        stdin: spec.stdin,
    }
}

/// An executable's state to the wire.
pub fn executable_info(exe: &ExecutableHandle, status: &ExecutableStatus) -> pb::ExecutableInfo {
    let state = match status.state {
        ExecutableState::Running => pb::ExecutableState::Running,
        ExecutableState::Backoff => pb::ExecutableState::Backoff,
        ExecutableState::Exited => pb::ExecutableState::Exited,
        ExecutableState::Stopped => pb::ExecutableState::Stopped,
    };
    pb::ExecutableInfo {
        cell: exe.cell.to_string(),
        spec: Some(executable_spec_message(&exe.spec)),
        state: state.into(),
        pid: status.pid.unwrap_or(0),
        exit_code: status.last_exit.as_ref().and_then(|e| e.code()),
        signal: status.last_exit.as_ref().and_then(|e| e.signal()),
        oom_killed: status.oom_killed,
        restarts: status.restarts,
        started_at_ms: status
            .started_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
    }
}

/// A cell's state to the wire.
pub fn cell_info(cell: &Cell, cgroup_version: String) -> pb::CellInfo {
    let frozen = cell.cgroup.frozen().unwrap_or(false);
    pb::CellInfo {
        spec: Some(cell_spec_message(&cell.spec)),
        state: if frozen { "frozen" } else { "running" }.to_owned(),
        principal: cell.principal.to_string(),
        cgroup: cgroup_version,
        executables: cell
            .executables()
            .iter()
            .map(|exe| executable_info(exe, &exe.status()))
            .collect(),
        memory_current: cell.cgroup.memory_current().ok().flatten().unwrap_or(0),
    }
}
