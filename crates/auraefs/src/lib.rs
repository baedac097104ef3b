//! auraefs: an Aurae volume as a POSIX filesystem, through FUSE.
//!
//! The library holds everything but the command line: the filesystem (kernel requests
//! to `aurae.v0.Filesystem` calls), the transport those calls go through, cache
//! invalidation from the volume's Watch stream, mount options, mount points and the
//! daemon's start-up. It reaches auraed only over its socket with the caller's own client
//! certificate, and never opens the database.
#![deny(missing_docs)]

/// Store stats and inodes as the kernel sees them.
pub mod attr;
/// Attributes learnt in the last TTL, for GETATTR without a call.
pub mod attr_cache;
/// Going to the background once the mount is live.
pub mod daemon;
/// gRPC errors as errnos.
pub mod errno;
/// Failures, their messages and exit codes.
pub mod error;
/// The FUSE filesystem (fuser callbacks).
pub mod fs;
/// Open files and directory streams; files unlinked while open.
pub mod handles;
/// Kernel cache invalidation from the volume's changes.
pub mod invalidate;
/// The names in the directories this mount made, for lookups without a call.
pub mod known_dirs;
/// One mount from checks to unmount.
pub mod mount;
/// `-o` mount options.
pub mod mount_options;
/// Mount points: checks, mountinfo, unmount.
pub mod mountpoint;
/// The calls to auraed (the only gRPC-aware module).
pub mod transport;
/// Volume names: local, default, and (later) remote.
pub mod volume;

pub use error::{AuraefsError, Exit};
