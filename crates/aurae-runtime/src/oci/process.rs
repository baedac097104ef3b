//! `process` -> [`ExecutableSpec`].

use nix::sys::resource::Resource;
use oci_spec::runtime::{LinuxCapabilities, PosixRlimit, PosixRlimitType, Process};

use super::error::OciError;
use super::{EXECUTABLE_NAME, NotApplied, STOP_GRACE};
use crate::capabilities::CapabilitySets;
use crate::spec::{AbsolutePath, ExecutableSpec, RestartPolicy, Rlimit};

/// What `process` translates to.
pub(crate) struct Translated {
    pub(crate) executable: ExecutableSpec,
    pub(crate) terminal: bool,
}

/// Translates `process`, refusing what the executable spec cannot hold.
pub(crate) fn translate(
    process: &Process,
    not_applied: &mut Vec<NotApplied>,
) -> Result<Translated, OciError> {
    refuse_unenforceable(process)?;
    let argv = match process.args() {
        Some(args) if !args.is_empty() => args.clone(),
        _ => {
            return Err(OciError::invalid(
                "process.args",
                "give the program and its arguments, e.g. [\"sh\"]",
            ));
        }
    };
    let env = process
        .env()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, entry)| parse_env(i, entry))
        .collect::<Result<_, _>>()?;
    let cwd = AbsolutePath::parse("process.cwd", process.cwd().clone()).map_err(|_| {
        OciError::invalid(
            "process.cwd",
            format!(
                "'{}' must be an absolute path without '..'",
                process.cwd().display()
            ),
        )
    })?;
    let rlimits = process
        .rlimits()
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, rlimit)| translate_rlimit(i, rlimit))
        .collect::<Result<_, _>>()?;
    note_unenforced(process, not_applied);
    let executable = ExecutableSpec {
        name: EXECUTABLE_NAME.parse()?,
        argv,
        env,
        cwd: Some(cwd),
        uid: Some(process.user().uid()),
        gid: Some(process.user().gid()),
        restart: RestartPolicy::No,
        stop_signal: None,
        stop_grace: STOP_GRACE,
        rlimits,
        // A bundle's terminal is reported in `Bundle::terminal`; its output is logged.
        tty: false,
        stdin: false,
        no_new_privileges: process.no_new_privileges() == Some(true),
        capabilities: process
            .capabilities()
            .as_ref()
            .map(|caps| translate_capabilities(caps, not_applied))
            .transpose()?,
    };
    executable.validate()?;
    Ok(Translated {
        executable,
        terminal: process.terminal().unwrap_or(false),
    })
}

fn refuse_unenforceable(process: &Process) -> Result<(), OciError> {
    let user = process.user();
    let set = [
        (
            "process.user.additionalGids",
            user.additional_gids()
                .as_ref()
                .is_some_and(|g| !g.is_empty()),
            "an aurae executable runs with its uid and gid only",
        ),
        (
            "process.user.umask",
            user.umask().is_some(),
            "aurae does not set an executable's umask",
        ),
        (
            "process.user.username",
            user.username().is_some(),
            "it names a Windows user; give process.user.uid and gid",
        ),
        (
            "process.commandLine",
            process.command_line().is_some(),
            "it is for Windows; give process.args",
        ),
        (
            "process.apparmorProfile",
            process.apparmor_profile().is_some(),
            "aurae does not apply AppArmor profiles",
        ),
        (
            "process.selinuxLabel",
            process.selinux_label().is_some(),
            "aurae does not apply SELinux labels",
        ),
        (
            "process.oomScoreAdj",
            process.oom_score_adj().is_some(),
            "aurae does not adjust OOM scores",
        ),
        (
            "process.ioPriority",
            process.io_priority().is_some(),
            "aurae does not set I/O priorities; use linux.resources.blockIO.weight",
        ),
        (
            "process.scheduler",
            process.scheduler().is_some(),
            "aurae does not set scheduling policies",
        ),
        (
            "process.execCPUAffinity",
            process.exec_cpu_affinity().is_some(),
            "aurae does not pin executables; use linux.resources.cpu.cpus",
        ),
    ];
    match set.into_iter().find(|(_, present, _)| *present) {
        Some((field, _, why)) => Err(OciError::unsupported(field, why)),
        None => Ok(()),
    }
}

/// `process.capabilities` as bitmasks; a set left out is empty, as in runc. An ambient
/// capability must also be permitted and inheritable, or the kernel refuses to raise it:
/// such ones are left out and noted (runc warns and goes on likewise).
fn translate_capabilities(
    caps: &LinuxCapabilities,
    not_applied: &mut Vec<NotApplied>,
) -> Result<CapabilitySets, OciError> {
    let set = |field: &str, set: &Option<oci_spec::runtime::Capabilities>| {
        let names: Vec<String> = set.iter().flatten().map(|c| c.to_string()).collect();
        crate::capabilities::mask(names.iter().map(String::as_str)).map_err(|name| {
            OciError::unsupported(
                format!("process.capabilities.{field}"),
                format!("this kernel numbering has no capability {name}"),
            )
        })
    };
    let mut sets = CapabilitySets {
        bounding: set("bounding", caps.bounding())?,
        effective: set("effective", caps.effective())?,
        permitted: set("permitted", caps.permitted())?,
        inheritable: set("inheritable", caps.inheritable())?,
        ambient: set("ambient", caps.ambient())?,
    };
    let raisable = sets.ambient & sets.permitted & sets.inheritable;
    if raisable != sets.ambient {
        not_applied.push(NotApplied::new(
            "process.capabilities.ambient",
            "ambient capabilities that are not also permitted and inheritable are left out: \
             the kernel refuses to raise them",
        ));
        sets.ambient = raisable;
    }
    Ok(sets)
}

/// Records the fields that `runc spec` writes by default and aurae accepts without
/// applying them.
fn note_unenforced(process: &Process, not_applied: &mut Vec<NotApplied>) {
    if process.terminal() == Some(true) {
        not_applied.push(NotApplied::new(
            "process.terminal",
            "the executable gets no terminal; its output goes to the cell's logs",
        ));
    }
    if process.console_size().is_some() {
        not_applied.push(NotApplied::new(
            "process.consoleSize",
            "the executable gets no terminal",
        ));
    }
}

fn parse_env(i: usize, entry: &str) -> Result<(String, String), OciError> {
    match entry.split_once('=') {
        Some((key, value)) if !key.is_empty() && !key.contains('\0') && !value.contains('\0') => {
            Ok((key.to_owned(), value.to_owned()))
        }
        _ => Err(OciError::invalid(
            format!("process.env[{i}]"),
            format!("'{entry}' is not KEY=VALUE with a non-empty KEY and no NUL"),
        )),
    }
}

fn translate_rlimit(i: usize, rlimit: &PosixRlimit) -> Result<Rlimit, OciError> {
    if rlimit.soft() > rlimit.hard() {
        return Err(OciError::invalid(
            format!("process.rlimits[{i}]"),
            format!(
                "soft limit {} is above hard limit {}",
                rlimit.soft(),
                rlimit.hard()
            ),
        ));
    }
    Ok(Rlimit {
        resource: resource_number(rlimit.typ()),
        soft: rlimit.soft(),
        hard: rlimit.hard(),
    })
}

/// The setrlimit(2) number of an OCI rlimit name, as this host's C library numbers it.
fn resource_number(typ: PosixRlimitType) -> u32 {
    let resource = match typ {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    };
    resource as u32
}
