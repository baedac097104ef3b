//! `linux` -> the cell's [`Isolation`] and [`Limits`].

use std::collections::HashSet;

use oci_spec::runtime::{
    Linux, LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxIdMapping, LinuxMemory,
    LinuxNamespaceType, LinuxResources,
};

use super::NotApplied;
use super::error::OciError;
use crate::spec::{
    AbsolutePath, CpuLimits, IdMapping, Isolation, Limits, MemoryLimits, NetworkMode,
};

/// The namespaces every cell gets, whether the bundle lists them or not.
const ALWAYS: &[(LinuxNamespaceType, &str)] = &[
    (LinuxNamespaceType::Pid, "pid"),
    (LinuxNamespaceType::Mount, "mount"),
    (LinuxNamespaceType::Ipc, "ipc"),
    (LinuxNamespaceType::Uts, "uts"),
];

/// What `linux` translates to.
pub(crate) struct Translated {
    pub(crate) isolation: Isolation,
    pub(crate) limits: Limits,
    pub(crate) masked_paths: Vec<AbsolutePath>,
    pub(crate) readonly_paths: Vec<AbsolutePath>,
}

/// Translates `linux`; a bundle without it shares every namespace with the host, which
/// aurae cannot do, so it is refused.
pub(crate) fn translate(
    linux: Option<&Linux>,
    not_applied: &mut Vec<NotApplied>,
) -> Result<Translated, OciError> {
    let linux = linux.ok_or_else(|| {
        OciError::unsupported(
            "linux",
            "without it the container would share the host's namespaces; aurae always \
             gives a cell its own pid, mount, ipc and uts namespaces, so list them",
        )
    })?;
    refuse_unenforceable(linux)?;
    let masked_paths = translate_paths("linux.maskedPaths", linux.masked_paths().as_deref())?;
    let readonly_paths = translate_paths("linux.readonlyPaths", linux.readonly_paths().as_deref())?;
    let isolation = translate_namespaces(linux)?;
    let limits = match linux.resources() {
        Some(resources) => translate_resources(resources, not_applied)?,
        None => Limits::default(),
    };
    Ok(Translated {
        isolation,
        limits,
        masked_paths,
        readonly_paths,
    })
}

fn refuse_unenforceable(linux: &Linux) -> Result<(), OciError> {
    let non_empty_map = |m: Option<usize>| m.is_some_and(|n| n > 0);
    let set = [
        (
            "linux.sysctl",
            non_empty_map(linux.sysctl().as_ref().map(|m| m.len())),
            "aurae does not set sysctls in cells",
        ),
        (
            "linux.seccomp",
            linux.seccomp().is_some(),
            "aurae does not install seccomp filters yet",
        ),
        (
            "linux.cgroupsPath",
            linux.cgroups_path().is_some(),
            "aurae places each cell in its own control group, named after the cell",
        ),
        (
            "linux.devices",
            non_empty_map(linux.devices().as_ref().map(|d| d.len())),
            "aurae gives cells a fixed minimal /dev and creates no other device nodes",
        ),
        (
            "linux.rootfsPropagation",
            linux.rootfs_propagation().is_some(),
            "aurae keeps a cell's mounts private",
        ),
        (
            "linux.mountLabel",
            linux.mount_label().is_some(),
            "aurae does not apply SELinux labels",
        ),
        (
            "linux.intelRdt",
            linux.intel_rdt().is_some(),
            "aurae does not manage Intel RDT",
        ),
        (
            "linux.personality",
            linux.personality().is_some(),
            "aurae does not set execution domains",
        ),
        (
            "linux.netDevices",
            non_empty_map(linux.net_devices().as_ref().map(|m| m.len())),
            "aurae does not move network devices into cells",
        ),
        (
            "linux.memoryPolicy",
            linux.memory_policy().is_some(),
            "aurae does not set NUMA memory policies",
        ),
        (
            "linux.timeOffsets",
            non_empty_map(linux.time_offsets().as_ref().map(|m| m.len())),
            "aurae does not create time namespaces",
        ),
    ];
    match set.into_iter().find(|(_, present, _)| *present) {
        Some((field, _, why)) => Err(OciError::unsupported(field, why)),
        None => Ok(()),
    }
}

/// Accepts a masked or read-only path list made only of the well-known defaults, which
/// aurae records as not applied; any other path is refused.
/// The paths of `linux.maskedPaths` or `linux.readonlyPaths`, each absolute and without
/// `..`.
fn translate_paths(field: &str, paths: Option<&[String]>) -> Result<Vec<AbsolutePath>, OciError> {
    paths
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, path)| {
            AbsolutePath::parse("path", path).map_err(|_| {
                OciError::invalid(
                    format!("{field}[{i}]"),
                    format!("'{path}' must be an absolute path without '..'"),
                )
            })
        })
        .collect()
}

fn translate_namespaces(linux: &Linux) -> Result<Isolation, OciError> {
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    let mut seen = HashSet::new();
    for (i, namespace) in namespaces.iter().enumerate() {
        if namespace.path().is_some() {
            return Err(OciError::unsupported(
                format!("linux.namespaces[{i}].path"),
                "aurae creates a cell's namespaces and does not join existing ones",
            ));
        }
        if namespace.typ() == LinuxNamespaceType::Time {
            return Err(OciError::unsupported(
                format!("linux.namespaces[{i}].type"),
                "aurae does not create time namespaces",
            ));
        }
        if !seen.insert(namespace.typ()) {
            return Err(OciError::invalid(
                format!("linux.namespaces[{i}].type"),
                format!("the {} namespace is listed twice", namespace.typ()),
            ));
        }
    }
    if let Some((_, name)) = ALWAYS.iter().find(|(typ, _)| !seen.contains(typ)) {
        return Err(OciError::unsupported(
            "linux.namespaces",
            format!(
                "it lacks the {name} namespace, so the container would share the host's; \
                 aurae always gives a cell its own pid, mount, ipc and uts namespaces, \
                 so add {{\"type\": \"{name}\"}}"
            ),
        ));
    }
    let network = if seen.contains(&LinuxNamespaceType::Network) {
        NetworkMode::Loopback
    } else {
        NetworkMode::Host
    };
    let user_namespace = if seen.contains(&LinuxNamespaceType::User) {
        Some(id_mapping(linux)?)
    } else {
        for (field, mappings) in [
            ("linux.uidMappings", linux.uid_mappings()),
            ("linux.gidMappings", linux.gid_mappings()),
        ] {
            if mappings.as_ref().is_some_and(|m| !m.is_empty()) {
                return Err(OciError::invalid(
                    field,
                    "id mappings need a user namespace; add {\"type\": \"user\"} to linux.namespaces",
                ));
            }
        }
        None
    };
    Ok(Isolation {
        network,
        user_namespace,
    })
}

/// The one mapping aurae supports: container ids 0.. onto one host range, the same for
/// users and groups.
fn id_mapping(linux: &Linux) -> Result<IdMapping, OciError> {
    let single = |field: &str, mappings: &Option<Vec<LinuxIdMapping>>| match mappings.as_deref() {
        Some([m]) if m.container_id() == 0 && m.size() > 0 => Ok(*m),
        _ => Err(OciError::unsupported(
            field,
            "aurae maps a user namespace with exactly one range starting at container \
                 id 0, e.g. [{\"containerID\": 0, \"hostID\": 100000, \"size\": 65536}]",
        )),
    };
    let uid = single("linux.uidMappings", linux.uid_mappings())?;
    let gid = single("linux.gidMappings", linux.gid_mappings())?;
    if uid.host_id() != gid.host_id() || uid.size() != gid.size() {
        return Err(OciError::unsupported(
            "linux.gidMappings",
            "aurae maps users and groups onto the same host range; make the gid mapping \
             equal to the uid mapping",
        ));
    }
    Ok(IdMapping {
        host_id: uid.host_id(),
        size: uid.size(),
    })
}

fn translate_resources(
    resources: &LinuxResources,
    not_applied: &mut Vec<NotApplied>,
) -> Result<Limits, OciError> {
    let non_empty = |n: Option<usize>| n.is_some_and(|n| n > 0);
    for (field, present) in [
        (
            "linux.resources.hugepageLimits",
            non_empty(resources.hugepage_limits().as_ref().map(|l| l.len())),
        ),
        ("linux.resources.network", resources.network().is_some()),
        (
            "linux.resources.rdma",
            non_empty(resources.rdma().as_ref().map(|m| m.len())),
        ),
        (
            "linux.resources.unified",
            non_empty(resources.unified().as_ref().map(|m| m.len())),
        ),
    ] {
        if present {
            return Err(OciError::unsupported(
                field,
                "aurae does not set this controller",
            ));
        }
    }
    check_devices(
        resources.devices().as_deref().unwrap_or_default(),
        not_applied,
    )?;
    let (cpu, cpuset) = match resources.cpu() {
        Some(cpu) => translate_cpu(cpu)?,
        None => (CpuLimits::default(), None),
    };
    let memory = match resources.memory() {
        Some(memory) => translate_memory(memory)?,
        None => MemoryLimits::default(),
    };
    let pids_max = match resources.pids().map(|p| p.limit()) {
        None | Some(0 | -1) => None,
        Some(limit) if limit > 0 => Some(limit as u64),
        Some(limit) => {
            return Err(OciError::invalid(
                "linux.resources.pids.limit",
                format!("{limit} is neither a positive count nor -1 (unlimited)"),
            ));
        }
    };
    let io_weight = match resources.block_io() {
        Some(block_io) => translate_block_io(block_io)?,
        None => None,
    };
    Ok(Limits {
        cpu,
        cpuset,
        memory,
        pids_max,
        io_weight,
    })
}

/// Accepts only deny rules for every device (`runc spec`'s `{"allow": false, "access":
/// "rwm"}`): cells get a fixed minimal /dev, so denying the rest holds by construction.
fn check_devices(
    rules: &[LinuxDeviceCgroup],
    not_applied: &mut Vec<NotApplied>,
) -> Result<(), OciError> {
    for (i, rule) in rules.iter().enumerate() {
        if rule.allow() {
            return Err(OciError::unsupported(
                format!("linux.resources.devices[{i}].allow"),
                "aurae gives cells a fixed minimal /dev (null, zero, full, random, urandom, \
                 tty) and grants no other devices",
            ));
        }
        let every_device = rule.typ().is_none_or(|t| t.as_str() == "a")
            && rule.major().is_none_or(|m| m == -1)
            && rule.minor().is_none_or(|m| m == -1)
            && rule.access().as_deref().is_none_or(|a| a == "rwm");
        if !every_device {
            return Err(OciError::unsupported(
                format!("linux.resources.devices[{i}]"),
                "aurae accepts only a rule denying every device, {\"allow\": false, \"access\": \"rwm\"}",
            ));
        }
    }
    if !rules.is_empty() {
        not_applied.push(NotApplied::new(
            "linux.resources.devices",
            "no device cgroup is set; the cell's minimal /dev holds the only devices it sees",
        ));
    }
    Ok(())
}

fn translate_cpu(cpu: &LinuxCpu) -> Result<(CpuLimits, Option<String>), OciError> {
    for (field, present) in [
        ("linux.resources.cpu.idle", cpu.idle().is_some()),
        ("linux.resources.cpu.burst", cpu.burst().is_some()),
        (
            "linux.resources.cpu.realtimeRuntime",
            cpu.realtime_runtime().is_some(),
        ),
        (
            "linux.resources.cpu.realtimePeriod",
            cpu.realtime_period().is_some(),
        ),
        (
            "linux.resources.cpu.mems",
            cpu.mems().as_deref().is_some_and(|m| !m.is_empty()),
        ),
    ] {
        if present {
            return Err(OciError::unsupported(field, "aurae does not set it"));
        }
    }
    let weight = match cpu.shares() {
        None | Some(0) => None,
        Some(shares @ 2..=262_144) => Some(shares_to_weight(shares)),
        Some(shares) => {
            return Err(OciError::invalid(
                "linux.resources.cpu.shares",
                format!("{shares} is outside cgroup v1's range 2-262144"),
            ));
        }
    };
    let quota_us = match cpu.quota() {
        None | Some(0 | -1) => None,
        Some(quota) if quota > 0 => Some(quota as u64),
        Some(quota) => {
            return Err(OciError::invalid(
                "linux.resources.cpu.quota",
                format!("{quota} is neither positive microseconds nor -1 (unlimited)"),
            ));
        }
    };
    let period_us = cpu.period().filter(|p| *p > 0);
    let cpuset = match cpu.cpus().as_deref() {
        None | Some("") => None,
        Some(cpus) if is_cpu_list(cpus) => Some(cpus.to_owned()),
        Some(cpus) => {
            return Err(OciError::invalid(
                "linux.resources.cpu.cpus",
                format!("'{cpus}' is not a CPU list such as 0-1,3"),
            ));
        }
    };
    Ok((
        CpuLimits {
            weight,
            quota_us,
            period_us,
        },
        cpuset,
    ))
}

/// cgroup v1 `cpu.shares` (2-262144) onto v2 `cpu.weight` (1-10000), as runc and crun
/// convert them.
pub(crate) fn shares_to_weight(shares: u64) -> u64 {
    1 + ((shares - 2) * 9999) / 262_142
}

/// cgroup v1 `blkio.weight` (10-1000) onto v2 `io.weight` (1-10000), as runc converts it.
pub(crate) fn blkio_to_io_weight(weight: u64) -> u64 {
    1 + ((weight - 10) * 9999) / 990
}

fn is_cpu_list(cpus: &str) -> bool {
    cpus.split(',').all(|part| {
        let mut bounds = part.splitn(2, '-');
        bounds.all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

fn translate_memory(memory: &LinuxMemory) -> Result<MemoryLimits, OciError> {
    for (field, present) in [
        (
            "linux.resources.memory.reservation",
            memory.reservation().is_some(),
        ),
        ("linux.resources.memory.kernel", memory.kernel().is_some()),
        (
            "linux.resources.memory.kernelTCP",
            memory.kernel_tcp().is_some(),
        ),
        (
            "linux.resources.memory.swappiness",
            memory.swappiness().is_some(),
        ),
        (
            "linux.resources.memory.disableOOMKiller",
            memory.disable_oom_killer() == Some(true),
        ),
    ] {
        if present {
            return Err(OciError::unsupported(
                field,
                "aurae does not set it; a cell has a hard limit, a throttle point and swap",
            ));
        }
    }
    let bytes = |field: &str, value: Option<i64>| match value {
        None | Some(-1) => Ok(None),
        Some(n) if n > 0 => Ok(Some(n as u64)),
        Some(n) => Err(OciError::invalid(
            field,
            format!("{n} is neither positive bytes nor -1 (unlimited)"),
        )),
    };
    let max = bytes("linux.resources.memory.limit", memory.limit())?;
    let total = bytes("linux.resources.memory.swap", memory.swap())?;
    let swap = match (total, max) {
        (None, _) => None,
        (Some(total), Some(max)) if total >= max => Some(total - max),
        (Some(total), Some(max)) => {
            return Err(OciError::invalid(
                "linux.resources.memory.swap",
                format!("{total} is memory plus swap and cannot be below memory.limit {max}"),
            ));
        }
        (Some(_), None) => {
            return Err(OciError::invalid(
                "linux.resources.memory.swap",
                "it is memory plus swap, so it needs linux.resources.memory.limit",
            ));
        }
    };
    Ok(MemoryLimits {
        max,
        high: None,
        swap,
    })
}

fn translate_block_io(block_io: &LinuxBlockIo) -> Result<Option<u64>, OciError> {
    let non_empty = |n: Option<usize>| n.is_some_and(|n| n > 0);
    for (field, present) in [
        (
            "linux.resources.blockIO.leafWeight",
            block_io.leaf_weight().is_some(),
        ),
        (
            "linux.resources.blockIO.weightDevice",
            non_empty(block_io.weight_device().as_ref().map(|d| d.len())),
        ),
        (
            "linux.resources.blockIO.throttleReadBpsDevice",
            non_empty(
                block_io
                    .throttle_read_bps_device()
                    .as_ref()
                    .map(|d| d.len()),
            ),
        ),
        (
            "linux.resources.blockIO.throttleWriteBpsDevice",
            non_empty(
                block_io
                    .throttle_write_bps_device()
                    .as_ref()
                    .map(|d| d.len()),
            ),
        ),
        (
            "linux.resources.blockIO.throttleReadIOPSDevice",
            non_empty(
                block_io
                    .throttle_read_iops_device()
                    .as_ref()
                    .map(|d| d.len()),
            ),
        ),
        (
            "linux.resources.blockIO.throttleWriteIOPSDevice",
            non_empty(
                block_io
                    .throttle_write_iops_device()
                    .as_ref()
                    .map(|d| d.len()),
            ),
        ),
    ] {
        if present {
            return Err(OciError::unsupported(
                field,
                "aurae sets one I/O weight per cell and no per-device limits",
            ));
        }
    }
    match block_io.weight() {
        None | Some(0) => Ok(None),
        Some(weight @ 10..=1000) => Ok(Some(blkio_to_io_weight(u64::from(weight)))),
        Some(weight) => Err(OciError::invalid(
            "linux.resources.blockIO.weight",
            format!("{weight} is outside cgroup v1's range 10-1000"),
        )),
    }
}
