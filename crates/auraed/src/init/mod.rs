//! PID 1 duties (early mounts, Ctrl-Alt-Del, powering off) and the process supervisor.
//!
//! When auraed is the init of its PID namespace every orphan is reparented to it; when it
//! is not, it makes itself a child subreaper so that its workloads' orphans still come
//! back to it. Either way it must reap them or the process table fills with zombies, and
//! it must not steal the exit status of the children it started itself:
//! [`supervisor`](crate::init::supervisor) does both, and is the only way auraed starts a process. This module must never make
//! the daemon exit on its own: as the real init, an exit panics the kernel.

/// The orphan reaper's thread.
mod reaper;
/// The one owner of child processes: spawns, tracks by pidfd, hands out exit statuses.
pub mod supervisor;
/// pidfd and `waitid` system calls: the supervisor's only `unsafe` code.
mod sys;

use std::path::Path;

use nix::mount::{MsFlags, mount};

/// The inode of the initial PID namespace (`PROC_PID_INIT_INO` in the kernel).
const INITIAL_PID_NAMESPACE_INODE: u64 = 0xEFFF_FFFC;

/// Whether this process is the init of its PID namespace.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Whether this process is the machine's real init (PID 1 of the initial namespace),
/// whose exit would panic the kernel and which should power off instead.
pub fn is_machine_init() -> bool {
    use std::os::unix::fs::MetadataExt;
    is_pid1()
        && std::fs::metadata("/proc/self/ns/pid")
            .is_ok_and(|m| m.ino() == INITIAL_PID_NAMESPACE_INODE)
}

struct EarlyMount {
    target: &'static str,
    fstype: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

const EARLY_MOUNTS: &[EarlyMount] = &[
    EarlyMount {
        target: "/proc",
        fstype: "proc",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
    EarlyMount {
        target: "/sys",
        fstype: "sysfs",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
    EarlyMount {
        target: "/dev",
        fstype: "devtmpfs",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    EarlyMount {
        target: "/run",
        fstype: "tmpfs",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
    EarlyMount {
        target: "/sys/fs/cgroup",
        fstype: "cgroup2",
        flags: MsFlags::MS_NOSUID
            .union(MsFlags::MS_NODEV)
            .union(MsFlags::MS_NOEXEC),
        data: None,
    },
];

fn is_mountpoint(target: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|info| {
        info.lines()
            .any(|line| line.split(' ').nth(4) == Some(target))
    })
}

/// Whether `target` is mounted: `/proc` by its own content (mountinfo lives there), the
/// others by `/proc/self/mountinfo`, never by files that an image may ship statically
/// (a `/dev/null` node in an initramfs is not a mounted `/dev`).
fn is_mounted(target: &str) -> bool {
    if target == "/proc" {
        Path::new("/proc/self/mountinfo").exists()
    } else {
        is_mountpoint(target)
    }
}

/// Mounts `/proc`, `/sys`, `/dev`, `/run` and the cgroup filesystem where they are absent.
/// Failures are logged and skipped: a missing mount limits the daemon, it does not stop it.
pub fn mount_early_filesystems() {
    for m in EARLY_MOUNTS {
        if is_mounted(m.target) {
            continue;
        }
        let _ = std::fs::create_dir_all(m.target);
        match mount(Some(m.fstype), m.target, Some(m.fstype), m.flags, m.data) {
            Ok(()) => tracing::info!(target = m.target, fstype = m.fstype, "mounted"),
            Err(e) => {
                tracing::warn!(target = m.target, fstype = m.fstype, error = %e, "mount failed")
            }
        }
    }
}

/// As the machine's init, asks the kernel to send SIGINT on Ctrl-Alt-Del instead of
/// rebooting at once, so that the keyboard (or a hypervisor's `sendkey`) shuts auraed
/// down gracefully like SIGTERM does.
pub fn take_ctrl_alt_del() {
    if let Err(e) = nix::sys::reboot::set_cad_enabled(false) {
        tracing::warn!(error = %e, "cannot take over Ctrl-Alt-Del");
    }
}

/// Flushes filesystems and powers the machine off. Only for the machine's real init.
pub fn power_off() -> ! {
    nix::unistd::sync();
    loop {
        let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
        tracing::error!(error = %e, "power off failed; retrying");
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
