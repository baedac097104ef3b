//! Why a store operation failed, with the errno a filesystem would give for it.
//!
//! The errno belongs here because it is filesystem semantics (auraefs hands it to the
//! kernel); how an error travels over gRPC is the service layer's business.

use std::fmt;
use std::path::PathBuf;

use aurae_core::path::PathError;
use nix::libc;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening found the database file held by another process (an auraed on the same
    /// data directory, or one still shutting down).
    #[error(
        "the database {} is locked by another process (is another auraed running on the same --data-dir?)",
        path.display()
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// Opening found a file redb cannot read as a database (damaged, or not a database);
    /// it is left untouched.
    #[error("the database {} cannot be opened; it was left untouched", path.display())]
    Unopenable {
        /// The database file.
        path: PathBuf,
        /// What redb said.
        #[source]
        source: redb::DatabaseError,
    },
    /// The database file could not be created 0600, or an existing one made 0600.
    #[error("cannot make {} private (0600)", path.display())]
    Private {
        /// The database file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Opening found a schema written by a newer auraed.
    #[error(
        "the database {} has schema {found}, newer than this auraed's {supported}; upgrade auraed",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Schema found.
        found: u64,
        /// Newest schema this build knows.
        supported: u64,
    },
    /// A path handed in was malformed.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Nothing at the path or name.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// Something already at the path or name.
    #[error("{0}: already exists")]
    Exists(String),
    /// A component that must be a directory is not.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// A directory where a file was needed.
    #[error("{0}: is a directory")]
    IsADirectory(String),
    /// A symlink where a file was needed (the store never follows symlinks).
    #[error("{0}: is a symlink; read its target with stat")]
    IsASymlink(String),
    /// A non-empty directory removed without `recursive`, or replaced by a rename.
    #[error("{0}: directory not empty; pass recursive to remove it with its contents")]
    NotEmpty(String),
    /// A compare-and-swap found another version than the one expected.
    #[error("{path}: version is {actual}, not the expected {expected}; read it again and retry")]
    VersionMismatch {
        /// The path.
        path: String,
        /// The version asked for.
        expected: u64,
        /// The version found (0: absent).
        actual: u64,
    },
    /// A rename into its own subtree, or of the root.
    #[error("cannot move {from} to {to}: {why}")]
    InvalidMove {
        /// Source.
        from: String,
        /// Target.
        to: String,
        /// Why not.
        why: &'static str,
    },
    /// A watch asked for changes older than the change log keeps.
    #[error(
        "changes after revision {asked} are no longer kept (oldest kept: {oldest}); list again and watch from the current revision"
    )]
    Compacted {
        /// The revision asked for.
        asked: u64,
        /// The oldest revision still kept.
        oldest: u64,
    },
    /// No volume of that name.
    #[error("no volume named '{0}'; create it with CreateVolume (`aurae volume create {0}`)")]
    NoSuchVolume(String),
    /// A volume was created under a name that is taken (or reserved: "default").
    #[error("a volume named '{0}' already exists")]
    VolumeExists(String),
    /// No inode of that number in the volume (freed, or another volume's).
    #[error("inode {0}: no such file or directory in this volume")]
    NoSuchInode(u64),
    /// A write would exceed the volume's quota; nothing of it was applied.
    #[error("volume '{volume}' is full: its quota is {quota} bytes")]
    QuotaExceeded {
        /// The volume.
        volume: String,
        /// Its quota.
        quota: u64,
    },
    /// A quota was set below what the volume already uses; nothing was changed.
    #[error(
        "volume '{volume}' already uses {used} bytes, more than the quota of {quota} bytes asked for; remove files first or choose a larger quota"
    )]
    QuotaBelowUse {
        /// The volume.
        volume: String,
        /// The quota asked for.
        quota: u64,
        /// What it uses.
        used: u64,
    },
    /// The data filesystem is (nearly) full: a write that adds data was refused so that the
    /// space left stays for removals and for the checkpoint that empties the log. Nothing
    /// of it was applied; removing something frees space.
    #[error(
        "no space left on the data filesystem of {}: {available} bytes free, {reserve} kept for removals; remove something, or free space on that filesystem, and retry",
        dir.display()
    )]
    NoSpace {
        /// The data directory.
        dir: PathBuf,
        /// Bytes free when the write was refused.
        available: u64,
        /// Bytes kept free ([`crate::StoreConfig::space_reserve`]).
        reserve: u64,
    },
    /// An operation the namespace does not allow (hard-linking a directory, removing the
    /// root, a file larger than the largest offset).
    #[error("operation not permitted: {0}")]
    NotPermitted(&'static str),
    /// A directory entry or volume name is not valid.
    #[error("'{0}' is not a valid name: 1 to 255 bytes, no '/' or NUL, not '.' or '..'")]
    InvalidName(String),
    /// A value too large for Get to answer whole.
    #[error(
        "{path} holds {size} bytes, more than Get returns ({limit}); read it in chunks with Filesystem.Read (`aurae kv get` does)"
    )]
    TooLarge {
        /// The path.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An upload ended with another number of bytes than it announced.
    #[error("the upload announced {announced} bytes but carried {received}; nothing was written")]
    SizeMismatch {
        /// Bytes announced.
        announced: u64,
        /// Bytes received.
        received: u64,
    },
    /// A stored record could not be decoded: the database is damaged.
    #[error("the stored {record} is damaged")]
    Undecodable {
        /// Which record.
        record: RecordId,
        /// What the decoder said.
        #[source]
        source: prost::DecodeError,
    },
    /// A directory entry points at an inode record that is not there: the database is
    /// damaged.
    #[error("a directory entry points at inode {0}, which is missing")]
    MissingInode(u64),
    /// An inode record points at a content file that is not there, even after reading
    /// the record again: the data directory is damaged.
    #[error("the content file of inode {0} is missing")]
    MissingContent(u64),
    /// A content file could not be created, read, written or synced.
    #[error("{action} the content of inode {ino}")]
    Content {
        /// What was being done.
        action: ContentAction,
        /// Whose content (0: a staged value not yet linked to an inode).
        ino: u64,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The directory of content files could not be created, listed or synced.
    #[error("{action} {}", dir.display())]
    ContentDir {
        /// What was being done.
        action: ContentAction,
        /// The directory.
        dir: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The write-ahead log could not be opened, read, written or synced; a write that
    /// failed here was not applied.
    #[error("cannot {action} the write-ahead log {}", path.display())]
    Log {
        /// What was being done.
        action: LogAction,
        /// The log file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A single transaction's changes exceed what one log frame holds (4 GiB).
    #[error("a transaction of {0} bytes is larger than the write-ahead log takes (4 GiB)")]
    TransactionTooLarge(usize),
    /// redb failed: I/O, a full disk, a damaged page.
    #[error("database error")]
    Database(#[source] redb::Error),
    /// The writer thread could not be started when opening the store.
    #[error("cannot start the store's writer thread")]
    WriterNotStarted(#[source] std::io::Error),
    /// The writer thread is gone (the store is closing): the write was not applied.
    #[error("the store's writer thread has stopped")]
    WriterStopped,
}

/// A record of the database, as errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordId {
    /// The record of an inode.
    Inode(u64),
    /// The record of a volume.
    Volume(String),
    /// The change log entry of a revision.
    Changes(u64),
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inode(ino) => write!(f, "record of inode {ino}"),
            Self::Volume(name) => write!(f, "record of volume '{name}'"),
            Self::Changes(revision) => write!(f, "change log of revision {revision}"),
        }
    }
}

/// What was being done to a content file or their directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentAction {
    /// Creating it.
    Create,
    /// Opening it.
    Open,
    /// Reading it.
    Read,
    /// Writing it.
    Write,
    /// Changing its length.
    Resize,
    /// Syncing it to disk.
    Sync,
    /// Listing the directory.
    List,
}

impl fmt::Display for ContentAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Create => "creating",
            Self::Open => "opening",
            Self::Read => "reading",
            Self::Write => "writing",
            Self::Resize => "resizing",
            Self::Sync => "syncing",
            Self::List => "listing",
        })
    }
}

/// What was being done to the write-ahead log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogAction {
    /// Opening or creating it.
    Open,
    /// Reading it at open.
    Read,
    /// Zero-filling it to a new capacity.
    Size,
    /// Appending a frame.
    Append,
    /// Syncing it.
    Sync,
    /// Moving its head back (a checkpoint, or an undone append).
    Reset,
}

impl fmt::Display for LogAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Read => "read",
            Self::Size => "size",
            Self::Append => "append to",
            Self::Sync => "sync",
            Self::Reset => "reset",
        })
    }
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                StoreError::Database(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::SetDurabilityError
);

impl StoreError {
    /// The errno a filesystem would return for this error.
    pub fn errno(&self) -> &'static str {
        match self {
            Self::NotFound(_) | Self::NoSuchInode(_) | Self::NoSuchVolume(_) => "ENOENT",
            Self::VolumeExists(_) => "EEXIST",
            Self::QuotaExceeded { .. } | Self::NoSpace { .. } => "ENOSPC",
            Self::NotPermitted(_) => "EPERM",
            Self::InvalidName(_) | Self::SizeMismatch { .. } => "EINVAL",
            Self::TooLarge { .. } => "EFBIG",
            Self::Exists(_) | Self::IsASymlink(_) => "EEXIST",
            Self::NotADirectory(_) => "ENOTDIR",
            Self::IsADirectory(_) => "EISDIR",
            Self::NotEmpty(_) => "ENOTEMPTY",
            Self::Path(
                PathError::NameTooLong(_) | PathError::TooLong(_) | PathError::TargetTooLong(_),
            ) => "ENAMETOOLONG",
            Self::Path(_) | Self::InvalidMove { .. } => "EINVAL",
            Self::VersionMismatch { .. } => "ESTALE",
            _ if self.os_error() == Some(libc::ENOSPC) => "ENOSPC",
            _ if self.os_error() == Some(libc::EFBIG) => "EFBIG",
            _ => "EIO",
        }
    }

    /// The OS error number behind a failed file operation (a content file, the log, the
    /// database file), if that is what failed; ENOSPC for a write refused for lack of space.
    pub fn os_error(&self) -> Option<i32> {
        match self {
            Self::NoSpace { .. } => Some(libc::ENOSPC),
            Self::Content { source, .. }
            | Self::ContentDir { source, .. }
            | Self::Log { source, .. } => source.raw_os_error(),
            Self::Database(redb::Error::Io(source)) => source.raw_os_error(),
            _ => None,
        }
    }
}
