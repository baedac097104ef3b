//! Why auraefs could not mount or unmount, each with what to do about it, and the
//! process exit code that tells the failures apart.

use std::path::PathBuf;

use aurae_client::ClientError;

use crate::mount_options::OptionError;
use crate::volume::VolumeNameError;

/// auraefs's exit codes, so that scripts and mount(8) can tell failures apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Mounted (the daemon runs on), or unmounted.
    Ok = 0,
    /// Anything not listed below (e.g. the runtime could not start).
    Failure = 1,
    /// Bad command line or mount options (clap uses 2 as well).
    Usage = 2,
    /// auraed is unreachable, in its empty loop, or refused this client.
    Daemon = 3,
    /// The volume does not exist or cannot be mounted from here.
    Volume = 4,
    /// The mount point is missing, not a directory, or already mounted.
    Mountpoint = 5,
    /// mount(2) or the FUSE session failed.
    Mount = 6,
    /// The unmount failed: not mounted, busy, or not permitted.
    Unmount = 7,
}

/// Everything that stops a mount or an unmount.
#[derive(Debug, thiserror::Error)]
pub enum AuraefsError {
    /// The `-o` options could not be parsed.
    #[error(transparent)]
    Options(#[from] OptionError),
    /// The volume name is not a volume name.
    #[error(transparent)]
    VolumeName(#[from] VolumeNameError),
    /// auraed could not be reached or refused the handshake.
    #[error(transparent)]
    Connect(#[from] ClientError),
    /// auraed answers, but only in its empty loop: it has no certificate material.
    #[error(
        "auraed at {0} is in its empty loop (no PKI yet), so it serves no volumes: run `aurae pki init`, then mount again"
    )]
    EmptyLoop(PathBuf),
    /// auraed refused or failed the ListVolumes call.
    #[error("auraed would not list its volumes: {0}")]
    ListVolumes(String),
    /// The volume does not exist.
    #[error(
        "no volume named '{volume}' on this node (volumes: {existing}); create it with `aurae volume create {volume}`"
    )]
    NoSuchVolume {
        /// The volume asked for.
        volume: String,
        /// The volumes that exist, comma-separated.
        existing: String,
    },
    /// The mount point does not exist.
    #[error("mount point {} does not exist; create it with `mkdir -p {}`", .0.display(), .0.display())]
    MountpointMissing(PathBuf),
    /// The mount point is a file.
    #[error("mount point {} is not a directory", .0.display())]
    MountpointNotDirectory(PathBuf),
    /// The mount point is already a mount point.
    #[error(
        "{} is already a mount point ({fstype} from '{from}'); unmount it first (`auraefs umount {}`) or pick another directory",
        path.display(), path.display()
    )]
    AlreadyMounted {
        /// The mount point.
        path: PathBuf,
        /// What is mounted there.
        fstype: String,
        /// Its source.
        from: String,
    },
    /// A FUSE mount whose daemon died sits at the mount point.
    #[error("{} is a FUSE mount whose daemon is gone; clear it with `auraefs umount --lazy {}`", .0.display(), .0.display())]
    DeadMount(PathBuf),
    /// The mount point cannot be examined.
    #[error("cannot use mount point {}: {reason}", path.display())]
    MountpointInaccessible {
        /// The mount point.
        path: PathBuf,
        /// What stat said.
        reason: std::io::Error,
    },
    /// /dev/fuse cannot be opened.
    #[error("cannot open /dev/fuse: {0}; is FUSE available (`modprobe fuse`)?")]
    FuseDevice(std::io::Error),
    /// mount(2) or the FUSE handshake failed.
    #[error("cannot mount {volume} on {}: {reason}", path.display())]
    Mount {
        /// The volume.
        volume: String,
        /// The mount point.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Nothing is mounted at the path.
    #[error("{} is not a mount point", .0.display())]
    NotMounted(PathBuf),
    /// Something other than FUSE is mounted at the path.
    #[error("{} is a {fstype} mount, not auraefs; use umount(8)", path.display())]
    NotAuraefs {
        /// The mount point.
        path: PathBuf,
        /// What is mounted there.
        fstype: String,
    },
    /// The mount is in use.
    #[error("{} is busy (open files or a shell inside); close them, or detach now with `auraefs umount --lazy {}`", .0.display(), .0.display())]
    Busy(PathBuf),
    /// Unmounting needs privileges the caller lacks.
    #[error("unmounting {} needs root; as its owner use `fusermount3 -u {}`", .0.display(), .0.display())]
    UnmountNotPermitted(PathBuf),
    /// umount2(2) failed otherwise.
    #[error("cannot unmount {}: {reason}", path.display())]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// What umount2 said.
        reason: std::io::Error,
    },
    /// mount(2) with MS_REMOUNT failed.
    #[error("cannot remount {}: {reason}", path.display())]
    Remount {
        /// The mount point.
        path: PathBuf,
        /// What mount(2) said.
        reason: std::io::Error,
    },
    /// The process could not set itself up (runtime, fork, threads).
    #[error("cannot start: {0}")]
    Start(std::io::Error),
}

impl AuraefsError {
    /// The exit code this failure ends the process with.
    pub fn exit(&self) -> Exit {
        match self {
            Self::Options(_) => Exit::Usage,
            Self::VolumeName(_) | Self::NoSuchVolume { .. } => Exit::Volume,
            Self::Connect(_) | Self::EmptyLoop(_) | Self::ListVolumes(_) => Exit::Daemon,
            Self::MountpointMissing(_)
            | Self::MountpointNotDirectory(_)
            | Self::AlreadyMounted { .. }
            | Self::DeadMount(_)
            | Self::MountpointInaccessible { .. } => Exit::Mountpoint,
            Self::FuseDevice(_) | Self::Mount { .. } | Self::Remount { .. } => Exit::Mount,
            Self::NotMounted(_)
            | Self::NotAuraefs { .. }
            | Self::Busy(_)
            | Self::UnmountNotPermitted(_)
            | Self::Unmount { .. } => Exit::Unmount,
            Self::Start(_) => Exit::Failure,
        }
    }
}
