//! aurae-store: Aurae's database, the node's source of truth, and the filesystem-like
//! namespace on top of it. It knows nothing of gRPC: the daemon's services convert its
//! types to their wire messages and its errors to their status codes.
//!
//! # What is stored where
//!
//! One [redb] file in the data directory holds inodes (with the content of small files),
//! directory entries, volumes, and a bounded log of changes for Watch. File content
//! larger than [`StoreConfig::inline_max`] lives in content files beside it, one per
//! inode, named by generation ([`EXTENTS_DIR`]). The default namespace (volume "") is
//! addressed by path ([`namespace`]); every volume also by inode, for FUSE ([`inodes`]).
//! The store never follows symlinks.
//!
//! # Why a write-ahead log sits in front of redb
//!
//! A durable redb commit costs several syncs of its file. Writes here go through a
//! write-ahead log instead ([`Store::write`]): one writer thread takes every write that
//! queued up while the previous commit was on disk, runs them in one transaction, appends
//! that transaction's changes to the log as one frame, and makes it durable with one
//! fdatasync of a file whose size does not change: many concurrent writers share one
//! append and one sync (group commit). redb then commits the transaction in memory only;
//! a checkpoint (a durable redb commit, after which the log is emptied) follows when the
//! log has grown past [`StoreConfig::checkpoint_bytes`] or the store has been idle for
//! [`StoreConfig::checkpoint_idle`]. A caller is answered only once its write is in the
//! synced log ([`Durability::Durable`]), or, if it asked for less, once it is appended
//! ([`Durability::Logged`]): that survives a crash of the process, and a power cut after
//! the next sync ([`Store::flush`]).
//!
//! # Recovery
//!
//! After a crash redb holds the last checkpoint, and the log holds every acknowledged
//! write after it, as physical changes to the tables, each frame checksummed and tagged
//! with its revision. [`Store::open`] replays the frames whose revisions are newer than
//! redb's last one in one transaction committed in memory, and the log keeps them until
//! the first checkpoint, so that opening writes nothing (and works on a full disk); a torn
//! frame at the end (a write the crash interrupted, never acknowledged) fails its checksum
//! and is dropped.
//! Content files no record points at (a large value written but never committed) are
//! deleted. A write either fully happened or left nothing behind.
//!
//! # Writing
//!
//! Every write is an operation built by [`namespace`], [`inodes`] or [`volumes`] and run
//! by [`Store::write`] with the [`Durability`] the caller needs; reads are methods of
//! [`Store`].
//!
//! [redb]: https://docs.rs/redb
#![deny(missing_docs)]

/// Group commit: the writer thread.
mod commit;
/// Tuning, with documented defaults.
pub mod config;
/// Why an operation failed, with its errno.
pub mod error;
/// Content files beside the database.
mod extents;
/// Any volume by inode, for FUSE: reads, and write operations.
pub mod inodes;
/// The default namespace by path: reads, and write operations.
pub mod namespace;
/// Opening: schema, log replay, migrations, sweeping.
mod open;
/// The on-disk records.
mod record;
/// Disk space: refusing growth on a full disk, backing checkpoints.
mod space;
/// Values on their way into a Put.
pub mod staging;
/// Counters of the store's own work, for the daemon's metrics.
pub mod stats;
/// The store handle and its single way to write.
mod store;
/// The tables and the reads every module shares.
mod tables;
/// The store's vocabulary.
pub mod types;
/// Volumes: creating, deleting, listing.
pub mod volumes;
/// The write-ahead log.
mod wal;
/// Watching changes.
pub mod watch;
/// One write transaction's primitives.
mod writer;

#[cfg(test)]
mod tests;

pub use config::StoreConfig;
pub use error::StoreError;
pub use extents::EXTENTS_DIR;
pub use staging::{Content, Staged, Upload};
pub use stats::{StatsSnapshot, StoreStats};
pub use store::Store;
pub use tables::{DB_FILE, DEFAULT_VOLUME, ROOT_INO, SCHEMA_VERSION, WAL_FILE, volume_key};
pub use types::{
    Change, ChangeKind, Committed, Durability, EntryKind, NewNode, Parents, PutOptions, Replace,
    SetAttr, Stat, UnlinkKind, VolumeInfo,
};
pub use watch::WatchFilter;
pub use writer::{Writer, check_name};
