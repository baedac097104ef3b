//! OCI runtime bundles (`config.json` plus a root filesystem, as `runc spec`, Podman or
//! a Docker export with `runc spec` make them), translated into a [`CellSpec`] and the one
//! [`ExecutableSpec`] that runs in it.
//!
//! This module only reads and translates; it never mounts, spawns or touches a cgroup.
//! Every field aurae cannot enforce is refused by its JSON path
//! ([`OciError::Unsupported`]), except the few that `runc spec` writes by default: those
//! are accepted so that its bundles run unchanged, and each one is listed in
//! [`Bundle::not_applied`] for the caller to log. A field unknown to aurae is refused too.
//!
//! # Translated fields
//!
//! | config.json | aurae |
//! |---|---|
//! | `ociVersion` 1.0.x-1.2.x | checked only |
//! | `process.args` (required) | [`ExecutableSpec::argv`] |
//! | `process.env` (`KEY=VALUE`) | [`ExecutableSpec::env`] |
//! | `process.cwd` | [`ExecutableSpec::cwd`] |
//! | `process.user.uid` / `gid` | [`ExecutableSpec::uid`] / `gid` |
//! | `process.rlimits` (`RLIMIT_*`) | [`ExecutableSpec::rlimits`], numbered as this host's C library numbers them |
//! | `process.terminal` | [`Bundle::terminal`]; no terminal is attached yet |
//! | `process.noNewPrivileges` | [`ExecutableSpec::no_new_privileges`] |
//! | `process.capabilities` (bounding, effective, permitted, inheritable, ambient) | [`ExecutableSpec::capabilities`]; a set left out is empty |
//! | `root.path` (relative to the bundle) | [`CellSpec::rootfs`], canonicalized; must be a directory |
//! | `root.readonly` | [`CellSpec::rootfs_read_only`] |
//! | `hostname` (1-64 of `a-z0-9-.`) | [`CellSpec::hostname`] |
//! | `mounts[]` type `proc` | [`MountKind::Proc`] |
//! | `mounts[]` type `tmpfs` (`size=` in bytes, k, m, g) | [`MountKind::Tmpfs`] |
//! | `mounts[]` type `bind` or option `bind`/`rbind` (`ro`) | [`MountKind::Bind`]; a relative source is resolved against the bundle |
//! | `linux.namespaces` | must hold pid, mount, ipc and uts; `network` -> [`NetworkMode::Loopback`], absent -> [`NetworkMode::Host`]; `cgroup` accepted (always private) |
//! | `linux.namespaces` `user` + `linux.uidMappings`/`gidMappings` | [`Isolation::user_namespace`]: one range from container id 0, the same for uids and gids |
//! | `linux.resources.memory.limit` | [`MemoryLimits::max`] |
//! | `linux.resources.memory.swap` (memory + swap) | [`MemoryLimits::swap`] = swap - limit |
//! | `linux.resources.cpu.shares` (2-262144) | [`CpuLimits::weight`] = 1 + (shares - 2) * 9999 / 262142 |
//! | `linux.resources.cpu.quota` / `period` | [`CpuLimits::quota_us`] / `period_us` |
//! | `linux.resources.cpu.cpus` | [`Limits::cpuset`] |
//! | `linux.resources.pids.limit` | [`Limits::pids_max`] |
//! | `linux.resources.blockIO.weight` (10-1000) | [`Limits::io_weight`] = 1 + (weight - 10) * 9999 / 990 |
//! | `linux.maskedPaths` / `linux.readonlyPaths` | [`CellSpec::masked_paths`] / [`CellSpec::readonly_paths`] (absolute, no `..`) |
//! | `annotations` | ignored: the spec defines them as metadata |
//!
//! A limit of -1 (or 0 where runc reads 0 as unset) leaves the limit unset, so the cell
//! inherits its parent's.
//!
//! # Accepted but not applied (the defaults of `runc spec`)
//!
//! Each of these lands in [`Bundle::not_applied`] when present:
//!
//! - `process.terminal: true`: no terminal yet (`aurae exec -t` will use [`Bundle::terminal`]);
//!   `process.consoleSize` likewise.
//! - The mounts of `/dev` (tmpfs), `/dev/pts` (devpts), `/dev/mqueue` (mqueue), `/sys`
//!   (sysfs) and `/sys/fs/cgroup` (cgroup, cgroup2): the runtime sets up the cell's `/dev`,
//!   `/proc` and `/tmp` itself; these are skipped. Only at exactly these destinations;
//!   devpts, mqueue, sysfs or cgroup anywhere else is refused. (`/dev/shm`, a tmpfs,
//!   is translated.)
//! - The mount options `nosuid`, `nodev`, `noexec`, `strictatime`, `relatime`, `noatime`,
//!   `nodiratime`, `mode=`, and propagation flags.
//! - `linux.resources.devices` made only of deny-every-device rules: no device cgroup is
//!   set; the cell's minimal `/dev` holds the only devices it sees.
//!
//! # Refused when set (or non-empty)
//!
//! `process.user.additionalGids`, `umask`, `username`; `process.commandLine`,
//! `apparmorProfile`, `selinuxLabel`, `oomScoreAdj`, `ioPriority`, `scheduler`,
//! `execCPUAffinity`; `domainname`; `hooks`; `solaris`, `windows`, `vm`, `zos`; mount
//! `uidMappings`/`gidMappings` and types other than proc, tmpfs and bind; `linux.sysctl`,
//! `seccomp`, `cgroupsPath`, `devices`, `rootfsPropagation`, `mountLabel`, `intelRdt`,
//! `personality`, `netDevices`, `memoryPolicy`, `timeOffsets`; namespaces with a `path`
//! and the `time` namespace; `linux.resources.hugepageLimits`, `network`, `rdma`,
//! `unified`; device rules that allow anything; `memory.reservation`, `kernel`,
//! `kernelTCP`, `swappiness`, `disableOOMKiller: true`; `cpu.idle`, `burst`,
//! `realtimeRuntime`, `realtimePeriod`, `mems`; `blockIO.leafWeight`, `weightDevice` and
//! the throttle lists.

mod error;
mod keys;
mod linux;
mod mounts;
mod process;

use std::path::Path;
use std::time::Duration;

use oci_spec::runtime::Spec;

pub use error::OciError;

use crate::spec::{CellName, CellSpec, ExecutableSpec};
#[cfg(doc)]
use crate::spec::{CpuLimits, Isolation, Limits, MemoryLimits, MountKind, NetworkMode};

/// The name of the executable a bundle's process becomes in its cell.
pub const EXECUTABLE_NAME: &str = "main";

/// How long stopping a bundle's executable waits after SIGTERM before SIGKILL; the OCI
/// spec has no field for it, so Docker's default is taken.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A bundle, translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The cell the bundle's container becomes.
    pub cell: CellSpec,
    /// Its process, named [`EXECUTABLE_NAME`].
    pub executable: ExecutableSpec,
    /// Whether `process.terminal` asked for a terminal; aurae does not attach one yet.
    pub terminal: bool,
    /// Fields accepted without being applied (see the module docs), for the caller to
    /// log or show.
    pub not_applied: Vec<NotApplied>,
}

/// A field of `config.json` that was accepted but is not enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplied {
    /// The field, as a JSON path (`process.capabilities`).
    pub field: String,
    /// What happens instead.
    pub why: String,
}

impl NotApplied {
    fn new(field: impl Into<String>, why: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            why: why.into(),
        }
    }
}

/// Reads `bundle_dir/config.json` and translates it into the cell `cell` and its
/// executable; see the module docs for what each field becomes.
pub fn load_bundle(bundle_dir: &Path, cell: CellName) -> Result<Bundle, OciError> {
    let path = bundle_dir.join("config.json");
    let text = std::fs::read(&path).map_err(|source| OciError::ReadConfig {
        path: path.clone(),
        source,
    })?;
    let parse_error = |e: serde_json::Error| OciError::Parse {
        path: path.clone(),
        message: e.to_string(),
    };
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(parse_error)?;
    keys::check_known(&value)?;
    let spec: Spec = serde_json::from_value(value).map_err(parse_error)?;
    translate(bundle_dir, cell, &spec)
}

fn translate(bundle_dir: &Path, name: CellName, spec: &Spec) -> Result<Bundle, OciError> {
    check_version(spec.version())?;
    refuse_top_level(spec)?;
    let mut not_applied = Vec::new();
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| OciError::invalid("process", "a bundle names the process to run"))?;
    let process = process::translate(process, &mut not_applied)?;
    let (rootfs, rootfs_read_only) = mounts::translate_root(bundle_dir, spec.root().as_ref())?;
    let mounts = mounts::translate_mounts(
        bundle_dir,
        spec.mounts().as_deref().unwrap_or_default(),
        &mut not_applied,
    )?;
    let linux = linux::translate(spec.linux().as_ref(), &mut not_applied)?;
    let hostname = spec.hostname().as_deref().map(check_hostname).transpose()?;
    Ok(Bundle {
        cell: CellSpec {
            name,
            limits: linux.limits,
            isolation: linux.isolation,
            rootfs: Some(rootfs),
            rootfs_read_only,
            mounts,
            hostname,
            masked_paths: linux.masked_paths,
            readonly_paths: linux.readonly_paths,
        },
        executable: process.executable,
        terminal: process.terminal,
        not_applied,
    })
}

fn check_version(version: &str) -> Result<(), OciError> {
    let mut parts = version.split(['.', '-', '+']);
    let supported = parts.next() == Some("1")
        && matches!(parts.next(), Some("0" | "1" | "2"))
        && parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if supported {
        Ok(())
    } else {
        Err(OciError::unsupported(
            "ociVersion",
            format!("aurae reads runtime spec versions 1.0.x to 1.2.x, not '{version}'"),
        ))
    }
}

fn refuse_top_level(spec: &Spec) -> Result<(), OciError> {
    if let Some(hooks) = spec.hooks() {
        let kinds = [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
            ("startContainer", hooks.start_container()),
            ("poststart", hooks.poststart()),
            ("poststop", hooks.poststop()),
        ];
        let set: Vec<&str> = kinds
            .iter()
            .filter(|(_, list)| list.as_ref().is_some_and(|l| !l.is_empty()))
            .map(|(kind, _)| *kind)
            .collect();
        if !set.is_empty() {
            return Err(OciError::unsupported(
                "hooks",
                format!(
                    "aurae runs no host programs around a cell's life ({} set)",
                    set.join(", ")
                ),
            ));
        }
    }
    let set = [
        (
            "domainname",
            spec.domainname().is_some(),
            "aurae sets a cell's hostname only",
        ),
        ("solaris", spec.solaris().is_some(), "aurae runs on Linux"),
        ("windows", spec.windows().is_some(), "aurae runs on Linux"),
        (
            "vm",
            spec.vm().is_some(),
            "aurae runs cells, not virtual machines",
        ),
        ("zos", spec.zos().is_some(), "aurae runs on Linux"),
    ];
    match set.into_iter().find(|(_, present, _)| *present) {
        Some((field, _, why)) => Err(OciError::unsupported(field, why)),
        None => Ok(()),
    }
}

fn check_hostname(hostname: &str) -> Result<String, OciError> {
    let valid = (1..=64).contains(&hostname.len())
        && hostname
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !hostname.starts_with(['-', '.']);
    if valid {
        Ok(hostname.to_owned())
    } else {
        Err(OciError::invalid(
            "hostname",
            format!(
                "'{hostname}' must be 1-64 characters of a-z, 0-9, '-' and '.', not starting with '-' or '.'"
            ),
        ))
    }
}

#[cfg(test)]
mod tests;
