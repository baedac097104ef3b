//! The fields of `config.json` that aurae knows, level by level. The oci-spec parser drops
//! fields it does not know; this check refuses them first, so that nothing a bundle asks
//! for is silently ignored.

use serde_json::Value;

use super::error::OciError;

const TOP: &[&str] = &[
    "ociVersion",
    "root",
    "mounts",
    "process",
    "hostname",
    "domainname",
    "hooks",
    "annotations",
    "linux",
    "solaris",
    "windows",
    "vm",
    "zos",
];
const PROCESS: &[&str] = &[
    "terminal",
    "consoleSize",
    "user",
    "args",
    "commandLine",
    "env",
    "cwd",
    "capabilities",
    "rlimits",
    "noNewPrivileges",
    "apparmorProfile",
    "oomScoreAdj",
    "selinuxLabel",
    "ioPriority",
    "scheduler",
    "execCPUAffinity",
];
const USER: &[&str] = &["uid", "gid", "umask", "additionalGids", "username"];
const ROOT: &[&str] = &["path", "readonly"];
const MOUNT: &[&str] = &[
    "destination",
    "type",
    "source",
    "options",
    "uidMappings",
    "gidMappings",
];
const LINUX: &[&str] = &[
    "uidMappings",
    "gidMappings",
    "sysctl",
    "resources",
    "cgroupsPath",
    "namespaces",
    "devices",
    "seccomp",
    "rootfsPropagation",
    "maskedPaths",
    "readonlyPaths",
    "mountLabel",
    "intelRdt",
    "personality",
    "netDevices",
    "memoryPolicy",
    "timeOffsets",
];
const NAMESPACE: &[&str] = &["type", "path"];
const RESOURCES: &[&str] = &[
    "devices",
    "memory",
    "cpu",
    "pids",
    "blockIO",
    "hugepageLimits",
    "network",
    "rdma",
    "unified",
];
const MEMORY: &[&str] = &[
    "limit",
    "reservation",
    "swap",
    "kernel",
    "kernelTCP",
    "swappiness",
    "disableOOMKiller",
    "useHierarchy",
    "checkBeforeUpdate",
];
const CPU: &[&str] = &[
    "shares",
    "quota",
    "burst",
    "period",
    "realtimeRuntime",
    "realtimePeriod",
    "cpus",
    "mems",
    "idle",
];
const PIDS: &[&str] = &["limit"];
const BLOCK_IO: &[&str] = &[
    "weight",
    "leafWeight",
    "weightDevice",
    "throttleReadBpsDevice",
    "throttleWriteBpsDevice",
    "throttleReadIOPSDevice",
    "throttleWriteIOPSDevice",
];
const DEVICE_RULE: &[&str] = &["allow", "type", "major", "minor", "access"];

/// Refuses, by its JSON path, the first field of `config` that aurae does not know.
pub(crate) fn check_known(config: &Value) -> Result<(), OciError> {
    check(config, "", TOP)?;
    if let Some(process) = config.get("process") {
        check(process, "process", PROCESS)?;
        if let Some(user) = process.get("user") {
            check(user, "process.user", USER)?;
        }
    }
    if let Some(root) = config.get("root") {
        check(root, "root", ROOT)?;
    }
    each(config.get("mounts"), "mounts", MOUNT)?;
    let Some(linux) = config.get("linux") else {
        return Ok(());
    };
    check(linux, "linux", LINUX)?;
    each(linux.get("namespaces"), "linux.namespaces", NAMESPACE)?;
    let Some(resources) = linux.get("resources") else {
        return Ok(());
    };
    check(resources, "linux.resources", RESOURCES)?;
    for (key, known) in [
        ("memory", MEMORY),
        ("cpu", CPU),
        ("pids", PIDS),
        ("blockIO", BLOCK_IO),
    ] {
        if let Some(value) = resources.get(key) {
            check(value, &format!("linux.resources.{key}"), known)?;
        }
    }
    each(
        resources.get("devices"),
        "linux.resources.devices",
        DEVICE_RULE,
    )
}

fn each(list: Option<&Value>, path: &str, known: &[&str]) -> Result<(), OciError> {
    let Some(Value::Array(items)) = list else {
        return Ok(());
    };
    for (i, item) in items.iter().enumerate() {
        check(item, &format!("{path}[{i}]"), known)?;
    }
    Ok(())
}

fn check(value: &Value, path: &str, known: &[&str]) -> Result<(), OciError> {
    let Value::Object(map) = value else {
        return Ok(());
    };
    match map.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => {
            let field = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            Err(OciError::unsupported(
                field,
                "it is not a field of the OCI runtime spec (1.0 to 1.2) that aurae knows",
            ))
        }
        None => Ok(()),
    }
}
