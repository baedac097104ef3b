//! One mount from start to end: checks, connection, mount(2), the FUSE session, unmount.
//!
//! Everything that can be checked before mounting is: the volume name, the mount point,
//! auraed (reachable, past its empty loop, accepting this client) and the volume's
//! existence, each failure with its own message. The session then runs until the mount
//! is unmounted (`auraefs umount`, umount(8), `fusermount3 -u`) or SIGTERM/SIGINT/SIGHUP
//! unmounts it. This module never touches the database: only auraed's socket.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aurae_client::{AuraeClient, ConnectOptions, Reached, Target};
use aurae_proto::v0::ListVolumesRequest;
use fuser::{Config, Session};
use nix::libc;

use crate::attr::InodeMap;
use crate::attr_cache::AttrCache;
use crate::daemon::Readiness;
use crate::error::AuraefsError;
use crate::fs::{AuraeFs, WriteCaching};
use crate::invalidate::{self, OwnChanges};
use crate::known_dirs::KnownDirs;
use crate::mount_options::{Access, MountSettings};
use crate::mountpoint::{self, UnmountMode};
use crate::transport::GrpcTransport;
use crate::volume::VolumeSpec;

/// Session threads reading kernel requests (each blocks on one call at a time).
const SESSION_THREADS: usize = 4;

/// Everything decided before the mount: what, where, how, and how to reach auraed.
#[derive(Debug, Clone)]
pub struct MountPlan {
    /// The volume.
    pub volume: VolumeSpec,
    /// The mount point, canonical.
    pub mountpoint: PathBuf,
    /// The `-o` options.
    pub settings: MountSettings,
    /// How to reach auraed (flags and config, with `-o sock=` etc. applied).
    pub connect: ConnectOptions,
}

impl MountPlan {
    /// Checks what can be checked without auraed: the volume name, the options and the
    /// mount point.
    pub fn new<S: AsRef<str>>(
        volume: &str,
        mountpoint: &Path,
        options: &[S],
        connect: ConnectOptions,
    ) -> Result<Self, AuraefsError> {
        let volume: VolumeSpec = volume.parse()?;
        let settings = MountSettings::parse(options)?;
        let mountpoint = mountpoint::check(mountpoint)?;
        let from_options = settings.connect.clone();
        let connect = ConnectOptions {
            socket: from_options.socket.or(connect.socket),
            config: from_options.config.or(connect.config),
            ca_cert: from_options.ca_cert.or(connect.ca_cert),
            client_cert: from_options.client_cert.or(connect.client_cert),
            client_key: from_options.client_key.or(connect.client_key),
            // A remote volume: every call goes to that peer, through the local auraed.
            peer: volume.peer().or(connect.peer),
            ..connect
        };
        Ok(Self {
            volume,
            mountpoint,
            settings,
            connect,
        })
    }

    /// The source shown in /proc/mounts: `fsname=`, else the volume as written.
    pub fn fsname(&self) -> String {
        self.settings
            .fsname
            .clone()
            .unwrap_or_else(|| self.volume.to_string())
    }

    fn mount_error(&self, reason: impl std::fmt::Display) -> AuraefsError {
        AuraefsError::Mount {
            volume: self.volume.to_string(),
            path: self.mountpoint.clone(),
            reason: reason.to_string(),
        }
    }
}

/// Connects to auraed with this client's own identity; the empty loop is an error.
pub async fn connect(options: &ConnectOptions) -> Result<(AuraeClient, Target), AuraefsError> {
    let target = options.resolve()?;
    match aurae_client::connect_any(&target).await? {
        (client, Reached::MutualTls) => Ok((client, target)),
        (_, Reached::EmptyLoop) => Err(AuraefsError::EmptyLoop(target.socket)),
    }
}

/// Read-ahead of the mount, in KiB: FUSE starts at 128 KiB, too little to keep a
/// sequential read of a file that is not cached busy end to end.
const READ_AHEAD_KB: u32 = 4096;

/// Raises the mount's read-ahead (a sysfs setting of its device, root only); a hint, so
/// failing it is only logged.
fn widen_readahead(mountpoint: &Path) {
    let Some(mount) = mountpoint::mount_at(mountpoint) else {
        return;
    };
    let setting = PathBuf::from("/sys/class/bdi")
        .join(&mount.device)
        .join("read_ahead_kb");
    if let Err(e) = std::fs::write(&setting, format!("{READ_AHEAD_KB}\n")) {
        tracing::debug!(setting = %setting.display(), error = %e, "read-ahead left as it was");
    }
}

/// The volume `volume` names (its root inode and quota), or why it cannot be mounted.
pub async fn find_volume(
    client: &AuraeClient,
    volume: &VolumeSpec,
) -> Result<aurae_proto::v0::Volume, AuraefsError> {
    let volumes = client
        .storage()
        .list_volumes(ListVolumesRequest {})
        .await
        .map_err(|status| AuraefsError::ListVolumes(status.message().to_owned()))?
        .into_inner()
        .volumes;
    let wanted = volume.listed_name();
    volumes
        .iter()
        .find(|v| v.name == wanted || (wanted == "default" && v.name.is_empty()))
        .cloned()
        .ok_or_else(|| AuraefsError::NoSuchVolume {
            volume: wanted.to_owned(),
            existing: volumes
                .iter()
                .map(|v| v.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A session and, when auraefs called mount(2) itself, the duty to unmount.
struct Mounted {
    session: Session<AuraeFs<GrpcTransport>>,
    guard: Option<UnmountGuard>,
}

/// Unmounts (lazily) a mount this process made if it is still there when the process
/// leaves, so that a failure never leaves a dead mount behind.
struct UnmountGuard {
    path: PathBuf,
    fstype: String,
    source: String,
}

impl UnmountGuard {
    fn still_mounted(&self) -> bool {
        mountpoint::mount_at(&self.path)
            .is_some_and(|m| m.fstype == self.fstype && m.source == self.source)
    }
}

impl Drop for UnmountGuard {
    fn drop(&mut self) {
        if self.still_mounted() {
            let _ = mountpoint::unmount(&self.path, UnmountMode::Lazy);
        }
    }
}

fn session_config(plan: &MountPlan) -> Config {
    let mut config = Config::default();
    config.acl = plan.settings.acl();
    config.n_threads = Some(SESSION_THREADS);
    config.clone_fd = true;
    config
}

/// Mounts with mount(2) as `fuse.<subtype>`; falls back on fusermount3 when mount(2)
/// is not permitted (an unprivileged user).
fn kernel_mount(plan: &MountPlan, fs: AuraeFs<GrpcTransport>) -> Result<Mounted, AuraefsError> {
    let device = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(AuraefsError::FuseDevice)?;
    let rootmode = std::fs::metadata(&plan.mountpoint)
        .map_err(|e| plan.mount_error(e))?
        .mode()
        & libc::S_IFMT;
    let mut data = format!(
        "fd={},rootmode={rootmode:o},user_id={},group_id={}",
        device.as_raw_fd(),
        nix::unistd::getuid(),
        nix::unistd::getgid()
    );
    for option in plan.settings.kernel_options() {
        data.push(',');
        data.push_str(option);
    }
    let source = plan.fsname();
    let fstype = plan.settings.fstype();
    let mounted = nix::mount::mount(
        Some(source.as_str()),
        &plan.mountpoint,
        Some(fstype.as_str()),
        plan.settings.ms_flags(),
        Some(data.as_str()),
    );
    match mounted {
        Ok(()) => {
            let guard = UnmountGuard {
                path: plan.mountpoint.clone(),
                fstype,
                source,
            };
            let session = Session::from_fd(
                fs,
                OwnedFd::from(device),
                plan.settings.acl(),
                session_config(plan),
            )
            .map_err(|e| plan.mount_error(format!("FUSE handshake failed: {e}")))?;
            Ok(Mounted {
                session,
                guard: Some(guard),
            })
        }
        Err(nix::errno::Errno::EPERM) => {
            drop(device);
            tracing::info!("mount(2) is not permitted; mounting through fusermount3");
            let mut config = session_config(plan);
            config.mount_options = plan.settings.fuser_options(&plan.fsname());
            let session = Session::new(fs, &plan.mountpoint, &config).map_err(|e| {
                plan.mount_error(format!(
                    "{e} (as a user, auraefs needs fusermount3; as root it mounts directly)"
                ))
            })?;
            Ok(Mounted {
                session,
                guard: None,
            })
        }
        Err(errno) => Err(plan.mount_error(format!("mount(2): {}", errno.desc()))),
    }
}

/// The signals that unmount, taken over from their default action (which would kill
/// auraefs and leave a dead mount behind).
struct UnmountSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl UnmountSignals {
    /// Installs the handlers now, inside `runtime`: before the mount exists, so that a
    /// SIGTERM arriving as soon as the mount appears is never a kill.
    fn install(runtime: &tokio::runtime::Runtime) -> Option<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let _inside = runtime.enter();
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Some(Self { term, int, hup }),
            _ => {
                tracing::warn!("cannot handle signals; unmount with `auraefs umount`");
                None
            }
        }
    }
}

/// Unmounts on SIGTERM, SIGINT or SIGHUP: normally, else lazily when busy.
async fn unmount_on_signal(path: PathBuf, signals: UnmountSignals) {
    let UnmountSignals {
        mut term,
        mut int,
        mut hup,
    } = signals;
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => "SIGHUP",
        };
        tracing::info!(signal = name, mountpoint = %path.display(), "unmounting");
        match mountpoint::unmount(&path, UnmountMode::Normal) {
            Ok(()) => {}
            Err(AuraefsError::Busy(_)) => {
                tracing::info!(mountpoint = %path.display(), "busy: detaching; it ends when the last file closes");
                let _ = mountpoint::unmount(&path, UnmountMode::Lazy);
            }
            Err(e) => tracing::warn!(error = %e, "unmount on signal failed"),
        }
    }
}

/// Mounts `plan` and serves it until it is unmounted; tells `readiness` once it is live.
pub fn run(plan: &MountPlan, readiness: &mut Readiness) -> Result<(), AuraefsError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("auraefs-rt")
        .enable_all()
        .build()
        .map_err(AuraefsError::Start)?;
    let (client, target, volume) = runtime.block_on(async {
        let (client, target) = connect(&plan.connect).await?;
        let volume = find_volume(&client, &plan.volume).await?;
        Ok::<_, AuraefsError>((client, target, volume))
    })?;
    let root = volume.root_inode;
    // The kernel's writeback cache batches writes, but then reports a full volume only at
    // close(2) or fsync(2): a volume with a quota keeps write(2) synchronous, so that
    // ENOSPC comes from the write that does not fit.
    let caching = if volume.quota_bytes == 0 {
        WriteCaching::Writeback
    } else {
        WriteCaching::WriteThrough
    };
    // The mount point may have been taken while we connected.
    mountpoint::check(&plan.mountpoint)?;
    let transport = Arc::new(
        GrpcTransport::new(client, plan.volume.api_name()).with_thread_connections(target),
    );
    let own = Arc::new(OwnChanges::default());
    let attrs = Arc::new(AttrCache::new(crate::fs::TTL));
    let known = Arc::new(KnownDirs::default());
    let fs = AuraeFs::new(
        transport.clone(),
        runtime.handle().clone(),
        root,
        own.clone(),
        caching,
        attrs.clone(),
        known.clone(),
    );
    if plan.settings.access != Access::Owner && !plan.settings.default_permissions {
        tracing::warn!(
            "allow_other without default_permissions: every user gets the mounting user's rights; add -o default_permissions to check mode bits"
        );
    }
    let signals = UnmountSignals::install(&runtime);
    let Mounted { session, guard } = kernel_mount(plan, fs)?;
    widen_readahead(&plan.mountpoint);
    invalidate::start(
        runtime.handle(),
        transport,
        session.notifier(),
        InodeMap::new(root),
        own,
        attrs,
        known,
    )
    .map_err(AuraefsError::Start)?;
    if let Some(signals) = signals {
        runtime.spawn(unmount_on_signal(plan.mountpoint.clone(), signals));
    }
    tracing::info!(
        volume = %plan.volume,
        mountpoint = %plan.mountpoint.display(),
        root_inode = root,
        "mounted"
    );
    readiness.ready();
    let result = session.run();
    drop(guard);
    runtime.shutdown_timeout(Duration::from_secs(2));
    tracing::info!(mountpoint = %plan.mountpoint.display(), "unmounted");
    result.map_err(|e| plan.mount_error(format!("the FUSE session ended with an error: {e}")))
}
