//! The init of a cell: pid 1 of the cell's pid namespace, the holder of its namespaces.
//!
//! auraed starts it (its own binary, run as `aurae-cell-init`) in new mount, uts, ipc
//! and (unless the host's is asked for) network namespaces, moves it into the cell's
//! cgroup and sends it its plan; it then makes its cgroup namespace, builds the cell's
//! filesystem view, says `ready` (or why not) on its stdout, and then only reaps the
//! orphans that the cell's processes leave to it, as every pid 1 must. Executables join its namespaces from auraed (`zone.rs`); they are
//! auraed's children, never this process's. It must never touch the host's mounts (it
//! works in its own mount namespace, made private first) and never outlive its cell.
//!
//! # The view a cell gets
//! - With a root filesystem: that directory, pivot_root'ed into, read-only if asked.
//! - Without one: the host's files, every mount read-only (like systemd's
//!   `ProtectSystem=strict`), with the daemon's private directories hidden.
//! - Either way: a fresh `/proc` of the cell's pid namespace, a minimal `/dev` (null, zero,
//!   full, random, urandom, tty, a private `/dev/shm`), a private `/tmp`, and a private
//!   `/run` holding only the aurae socket (`/run/aurae.sock`) and the cell's read-only
//!   identity (`/run/aurae/`): the host's other sockets are out of reach.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aurae_runtime::spec::{Mount, MountKind};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use serde::{Deserialize, Serialize};

/// The `argv[0]` under which auraed's binary runs as a cell's init.
pub const ARGV0: &str = "aurae-cell-init";

/// Where the cell's view is assembled when it has no root filesystem of its own (inside
/// the cell's private `/tmp`, so nothing is made on the host).
const ASSEMBLY: &str = "/tmp/.aurae-root";

/// Everything the init needs, handed over as JSON in `argv[1]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitPlan {
    /// The hostname inside the cell.
    pub hostname: String,
    /// Bring up loopback (the cell has a network namespace of its own).
    pub loopback: bool,
    /// The root filesystem to pivot into; the host's, read-only, when `None`.
    pub rootfs: Option<PathBuf>,
    /// Mount the root filesystem read-only.
    pub rootfs_read_only: bool,
    /// The spec's own mounts.
    pub mounts: Vec<Mount>,
    /// The daemon's socket on the host.
    pub socket: PathBuf,
    /// The cell's identity directory on the host (certificate, CA, client config, bin/).
    pub identity: PathBuf,
    /// The `aurae` CLI, bound at `/run/aurae/bin/aurae`.
    pub cli: Option<PathBuf>,
    /// Host directories the cell must not see (the daemon's data and keys).
    pub hidden: Vec<PathBuf>,
    /// Paths inside the cell to hide (the spec's `masked_paths`).
    #[serde(default)]
    pub masked: Vec<PathBuf>,
    /// Paths inside the cell to make read-only (the spec's `readonly_paths`).
    #[serde(default)]
    pub read_only: Vec<PathBuf>,
}

/// Runs the init; never returns. Called from `main` before anything else when auraed is
/// started as [`ARGV0`].
///
/// It waits for its plan, one line of JSON on stdin, sent once auraed has moved it into
/// the cell's cgroup; the end of stdin first (its daemon is gone, or the cell was never
/// made) ends it.
pub fn main() -> ! {
    let mut line = String::new();
    let plan = match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => std::process::exit(0),
        Ok(_) => serde_json::from_str::<InitPlan>(&line)
            .map_err(|e| format!("no valid plan on stdin: {e}")),
    };
    let result = plan.and_then(|plan| {
        // Made now, in the cell's cgroup, so that the cell sees its cgroup as the root.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
            .map_err(sys("make the cell's cgroup namespace"))?;
        prepare(&plan)
    });
    let mut stdout = std::io::stdout();
    let report = match &result {
        Ok(()) => "ready\n".to_owned(),
        Err(why) => format!("error: {why}\n"),
    };
    let _ = stdout.write_all(report.as_bytes());
    let _ = stdout.flush();
    if result.is_err() {
        std::process::exit(1);
    }
    // Nobody reads our stdout any more: point it (and stderr) at /dev/null so that a
    // closed pipe can never matter.
    if let Ok(null) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    reap_forever()
}

/// Pid 1's duty: reap every child the cell's processes orphan. Signals that would stop
/// it are blocked; the cell ends when auraed kills its cgroup.
fn reap_forever() -> ! {
    let mut signals = SigSet::all();
    signals.remove(Signal::SIGKILL);
    signals.remove(Signal::SIGSTOP);
    let _ = signals.thread_block();
    let chld = SigSet::from(Signal::SIGCHLD);
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => {
                let _ = chld.wait();
            }
            Ok(_) => {}
        }
    }
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn sys(what: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// Host files the cell's view is made of, opened (`O_PATH`) before any mount could hide
/// them: a socket or root filesystem under `/tmp` would vanish behind the cell's own
/// `/tmp` otherwise. Mounts take them as `/proc/self/fd/<n>`.
struct HostFiles {
    socket: OwnedFd,
    identity: OwnedFd,
    cli: Option<OwnedFd>,
    rootfs: Option<OwnedFd>,
    binds: Vec<Option<OwnedFd>>,
}

fn open_path(path: &Path) -> Result<OwnedFd, String> {
    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys(format!("open {}", path.display())))
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

impl HostFiles {
    fn open(plan: &InitPlan) -> Result<Self, String> {
        Ok(Self {
            socket: open_path(&plan.socket)?,
            identity: open_path(&plan.identity)?,
            cli: plan.cli.as_deref().map(open_path).transpose()?,
            rootfs: plan.rootfs.as_deref().map(open_path).transpose()?,
            binds: plan
                .mounts
                .iter()
                .map(|m| match &m.kind {
                    MountKind::Bind { source, .. } => open_path(source.as_path()).map(Some),
                    _ => Ok(None),
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

fn prepare(plan: &InitPlan) -> Result<(), String> {
    let host = HostFiles::open(plan)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(sys("make the cell's mounts private"))?;
    nix::unistd::sethostname(&plan.hostname).map_err(sys("set the hostname"))?;
    if plan.loopback {
        crate::runtime::loopback::bring_up().map_err(io("bring up loopback"))?;
    }
    // The view is assembled in a private tmpfs over /tmp, so nothing is made on the host.
    tmpfs(Path::new("/tmp"), "mode=0755,size=64k")?;
    let root = PathBuf::from(ASSEMBLY);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&root)
        .map_err(io("create the cell's root"))?;
    match &host.rootfs {
        Some(rootfs) => bind(&fd_path(rootfs), &root, MsFlags::MS_REC)?,
        None => host_root_read_only(&root, &plan.hidden)?,
    }
    furnish(&root, &host)?;
    for (m, source) in plan.mounts.iter().zip(&host.binds) {
        mount_spec(&root, m, source.as_ref())?;
    }
    protect(&root, &plan.masked, &plan.read_only)?;
    if plan.rootfs.is_some() && plan.rootfs_read_only {
        remount_read_only(&root)?;
    }
    enter(&root)
}

/// Makes `root` a read-only copy of the host's mount tree, with the daemon's directories
/// hidden under empty read-only tmpfs mounts.
fn host_root_read_only(root: &Path, hidden: &[PathBuf]) -> Result<(), String> {
    bind(Path::new("/"), root, MsFlags::MS_REC)?;
    let inner = mount_points_under(root)?;
    for point in inner.iter().rev() {
        remount_read_only(point)?;
    }
    for dir in hidden {
        let target = inside(root, dir);
        if target.is_dir() {
            tmpfs(&target, "mode=0000,size=4k")?;
            remount_read_only(&target)?;
        }
    }
    Ok(())
}

/// Every mount point at or below `root`, parents first (the order of mountinfo).
fn mount_points_under(root: &Path) -> Result<Vec<PathBuf>, String> {
    let info = fs::read_to_string("/proc/self/mountinfo").map_err(io("read mountinfo"))?;
    let mut points = Vec::new();
    for line in info.lines() {
        let Some(point) = line.split(' ').nth(4) else {
            continue;
        };
        let point = PathBuf::from(unescape_mountinfo(point));
        if point.starts_with(root) {
            points.push(point);
        }
    }
    Ok(points)
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.by_ref().take(3).collect();
            if let Ok(byte) = u8::from_str_radix(&digits, 8) {
                out.push(byte as char);
                continue;
            }
            out.push('\\');
            out.push_str(&digits);
        } else {
            out.push(c);
        }
    }
    out
}

/// The fixed furniture of every cell: /proc, /dev, /tmp, /run with the socket and
/// identity.
fn furnish(root: &Path, host: &HostFiles) -> Result<(), String> {
    let proc_dir = dir_in(root, "/proc")?;
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(sys("mount the cell's /proc"))?;
    // A sysfs of the cell's own: it shows the network devices of the namespace that
    // mounts it, so the host's stay out of sight.
    let sys_dir = dir_in(root, "/sys")?;
    mount(
        Some("sysfs"),
        &sys_dir,
        Some("sysfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(sys("mount the cell's /sys"))?;
    let dev = dir_in(root, "/dev")?;
    tmpfs(&dev, "mode=0755,size=64k")?;
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let host = Path::new("/dev").join(node);
        let target = dev.join(node);
        fs::File::create(&target).map_err(io(format!("create /dev/{node}")))?;
        bind(&host, &target, MsFlags::empty())?;
    }
    for (link, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(to, dev.join(link)).map_err(io(format!("link /dev/{link}")))?;
    }
    let shm = dev.join("shm");
    fs::create_dir(&shm).map_err(io("create /dev/shm"))?;
    tmpfs(&shm, "mode=1777,size=64m")?;
    remount_read_only_keep(&dev, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC)?;
    tmpfs(&dir_in(root, "/tmp")?, "mode=1777")?;
    let run = dir_in(root, "/run")?;
    tmpfs(&run, "mode=0755,size=1m")?;
    let socket = run.join("aurae.sock");
    fs::File::create(&socket).map_err(io("create /run/aurae.sock"))?;
    bind(&fd_path(&host.socket), &socket, MsFlags::empty())?;
    let identity = run.join("aurae");
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&identity)
        .map_err(io("create /run/aurae"))?;
    bind(&fd_path(&host.identity), &identity, MsFlags::MS_REC)?;
    remount_read_only(&identity)?;
    if let Some(cli) = &host.cli {
        let target = identity.join("bin/aurae");
        bind(&fd_path(cli), &target, MsFlags::empty())?;
        remount_read_only(&target)?;
    }
    Ok(())
}

fn mount_spec(root: &Path, m: &Mount, host: Option<&OwnedFd>) -> Result<(), String> {
    let target = inside(root, m.destination.as_path());
    match (&m.kind, host) {
        (MountKind::Bind { source, read_only }, Some(host)) => {
            let source_is_dir = source.as_path().is_dir();
            let source = fd_path(host);
            if source_is_dir {
                fs::create_dir_all(&target).map_err(io(format!("create {}", target.display())))?;
            } else if !target.exists() {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent)
                        .map_err(io(format!("create {}", parent.display())))?;
                }
                fs::File::create(&target).map_err(io(format!("create {}", target.display())))?;
            }
            bind(&source, &target, MsFlags::MS_REC)?;
            if *read_only {
                remount_read_only(&target)?;
            }
        }
        (MountKind::Bind { source, .. }, None) => {
            return Err(format!(
                "bind source {} was not opened",
                source.as_path().display()
            ));
        }
        (MountKind::Tmpfs { size }, _) => {
            fs::create_dir_all(&target).map_err(io(format!("create {}", target.display())))?;
            let options = match size {
                Some(bytes) => format!("mode=0755,size={bytes}"),
                None => "mode=0755".to_owned(),
            };
            tmpfs(&target, &options)?;
        }
        (MountKind::Proc, _) => {
            fs::create_dir_all(&target).map_err(io(format!("create {}", target.display())))?;
            mount(
                Some("proc"),
                &target,
                Some("proc"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .map_err(sys(format!("mount proc at {}", target.display())))?;
        }
    }
    Ok(())
}

/// Hides each of `masked` under `root` (an empty read-only tmpfs over a directory,
/// `/dev/null` over anything else) and makes each of `read_only` read-only, as runc does
/// with a bundle's `maskedPaths` and `readonlyPaths`. Paths that do not exist are skipped;
/// one that resolves (through a symbolic link of the root filesystem) outside the cell's
/// view is refused, never mounted over on the host.
fn protect(root: &Path, masked: &[PathBuf], read_only: &[PathBuf]) -> Result<(), String> {
    let real_root = fs::canonicalize(root).map_err(io("resolve the cell's root"))?;
    for path in read_only {
        if let Some(target) = in_view(&real_root, &inside(root, path))? {
            bind(&target, &target, MsFlags::MS_REC)?;
            remount_read_only(&target)?;
        }
    }
    for path in masked {
        let Some(target) = in_view(&real_root, &inside(root, path))? else {
            continue;
        };
        if target.is_dir() {
            tmpfs(&target, "mode=0555,size=4k")?;
            remount_read_only(&target)?;
        } else {
            bind(Path::new("/dev/null"), &target, MsFlags::empty())?;
        }
    }
    Ok(())
}

/// Where `path` really is, if it exists; an error if that is outside `real_root`.
fn in_view(real_root: &Path, path: &Path) -> Result<Option<PathBuf>, String> {
    let Ok(real) = fs::canonicalize(path) else {
        return Ok(None);
    };
    if real.starts_with(real_root) {
        Ok(Some(real))
    } else {
        Err(format!(
            "{} resolves to {} outside the cell's root; masked and read-only paths must \
             stay inside it",
            path.display(),
            real.display()
        ))
    }
}

/// Makes `root` the cell's `/` and detaches the old root, so nothing of the host's tree
/// stays reachable.
///
/// A host whose root is the kernel's initramfs (auraed as init straight from it) cannot
/// pivot_root away from it (EINVAL); there the root is moved over `/` and chrooted into,
/// as switch_root does, in the cell's own mount namespace.
fn enter(root: &Path) -> Result<(), String> {
    nix::unistd::chdir(root).map_err(sys("enter the cell's root"))?;
    match nix::unistd::pivot_root(".", ".") {
        Ok(()) => {
            umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the host's root"))?;
        }
        Err(nix::Error::EINVAL) => {
            mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .map_err(sys("move the cell's root over an initramfs root"))?;
            nix::unistd::chroot(".").map_err(sys("chroot into the cell's root"))?;
        }
        Err(e) => return Err(format!("pivot_root into the cell's root: {e}")),
    }
    nix::unistd::chdir("/").map_err(sys("chdir /"))?;
    Ok(())
}

/// `path` (absolute, checked by the spec) under `root`.
fn inside(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// The directory `path` under `root`, created if the root filesystem lacks it.
fn dir_in(root: &Path, path: &str) -> Result<PathBuf, String> {
    let dir = inside(root, Path::new(path));
    if !dir.is_dir() {
        fs::create_dir_all(&dir).map_err(io(format!("create {path} in the cell's root")))?;
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
    }
    Ok(dir)
}

fn bind(source: &Path, target: &Path, extra: MsFlags) -> Result<(), String> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | extra,
        None::<&str>,
    )
    .map_err(sys(format!(
        "bind {} at {}",
        source.display(),
        target.display()
    )))
}

fn tmpfs(target: &Path, options: &str) -> Result<(), String> {
    mount(
        Some("tmpfs"),
        target,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options),
    )
    .map_err(sys(format!("mount a tmpfs at {}", target.display())))
}

fn remount_read_only(target: &Path) -> Result<(), String> {
    remount_read_only_keep(target, MsFlags::empty())
}

/// Remounts one mount read-only, keeping the nosuid/nodev/noexec flags it has (a bind
/// remount must repeat the locked ones).
fn remount_read_only_keep(target: &Path, extra: MsFlags) -> Result<(), String> {
    let current = nix::sys::statvfs::statvfs(target)
        .map_err(sys(format!("statvfs {}", target.display())))?
        .flags();
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | extra;
    use nix::sys::statvfs::FsFlags;
    for (has, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if current.contains(has) {
            flags |= keep;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
        .map_err(sys(format!("remount {} read-only", target.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_read_back() {
        assert_eq!(unescape_mountinfo(r"/a\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
