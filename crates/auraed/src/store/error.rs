//! Errors of the store, each with the errno a filesystem would give and its gRPC code.

use aurae_core::path::PathError;
use nix::libc;
use tonic::{Code, Status};

/// Metadata key under which Storage errors carry their errno name.
pub const ERRNO_METADATA: &str = "aurae-errno";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file is held by another process.
    #[error(
        "the database {path} is locked by another process (is another auraed running on the same --data-dir?)"
    )]
    Locked {
        /// The database file.
        path: String,
    },
    /// The database file cannot be opened as a database.
    #[error("the database {path} cannot be opened: {reason}; it was left untouched")]
    Unopenable {
        /// The database file.
        path: String,
        /// What redb said.
        reason: String,
    },
    /// The database was written by a newer auraed.
    #[error(
        "the database {path} has schema {found}, newer than this auraed's {supported}; upgrade auraed"
    )]
    NewerSchema {
        /// The database file.
        path: String,
        /// Schema found.
        found: u64,
        /// Newest schema this build knows.
        supported: u64,
    },
    /// A path was malformed.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Nothing at the path.
    #[error("{0}: no such file or directory")]
    NotFound(String),
    /// Something already at the path.
    #[error("{0}: already exists")]
    Exists(String),
    /// A component that must be a directory is not.
    #[error("{0}: not a directory")]
    NotADirectory(String),
    /// A directory where a file was needed.
    #[error("{0}: is a directory")]
    IsADirectory(String),
    /// A symlink where a file was needed (the Storage API never follows symlinks).
    #[error("{0}: is a symlink; read its target with stat")]
    IsASymlink(String),
    /// A non-empty directory without `recursive`.
    #[error("{0}: directory not empty; pass recursive to remove it with its contents")]
    NotEmpty(String),
    /// Compare-and-swap failed.
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
    /// A watch asked for changes older than the retained log.
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
    /// A volume name is taken.
    #[error("a volume named '{0}' already exists")]
    VolumeExists(String),
    /// No inode of that number in the volume.
    #[error("inode {0}: no such file or directory in this volume")]
    NoSuchInode(u64),
    /// A write would exceed the volume's quota.
    #[error("volume '{volume}' is full: its quota is {quota} bytes")]
    QuotaExceeded {
        /// The volume.
        volume: String,
        /// Its quota.
        quota: u64,
    },
    /// An operation the namespace does not allow.
    #[error("operation not permitted: {0}")]
    NotPermitted(&'static str),
    /// A directory entry name is not valid.
    #[error("'{0}' is not a valid name: 1 to 255 bytes, no '/' or NUL, not '.' or '..'")]
    InvalidName(String),
    /// A value too large to be answered whole.
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
    /// A stored record could not be decoded.
    #[error("stored record for inode {ino} is damaged: {reason}")]
    Damaged {
        /// The inode.
        ino: u64,
        /// What the decoder said.
        reason: String,
    },
    /// A content file could not be read or written.
    #[error("{what}: {source}")]
    Content {
        /// What was being done.
        what: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// redb failed (I/O, storage full, ...).
    #[error("database error: {0}")]
    Database(String),
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                StoreError::Database(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

impl StoreError {
    /// The errno a filesystem would return for this error.
    pub fn errno(&self) -> &'static str {
        match self {
            Self::NotFound(_) | Self::NoSuchInode(_) | Self::NoSuchVolume(_) => "ENOENT",
            Self::VolumeExists(_) => "EEXIST",
            Self::QuotaExceeded { .. } => "ENOSPC",
            Self::NotPermitted(_) => "EPERM",
            Self::InvalidName(_) => "EINVAL",
            Self::TooLarge { .. } => "EFBIG",
            Self::Exists(_) | Self::IsASymlink(_) => "EEXIST",
            Self::NotADirectory(_) => "ENOTDIR",
            Self::IsADirectory(_) => "EISDIR",
            Self::NotEmpty(_) => "ENOTEMPTY",
            Self::Path(PathError::NameTooLong(_) | PathError::TooLong(_)) => "ENAMETOOLONG",
            Self::Path(_) | Self::InvalidMove { .. } => "EINVAL",
            Self::VersionMismatch { .. } => "ESTALE",
            Self::Content { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => "ENOSPC",
            Self::Content { source, .. } if source.raw_os_error() == Some(libc::EFBIG) => "EFBIG",
            _ => "EIO",
        }
    }

    fn code(&self) -> Code {
        match self {
            Self::NotFound(_) | Self::NoSuchInode(_) | Self::NoSuchVolume(_) => Code::NotFound,
            Self::Exists(_) | Self::VolumeExists(_) => Code::AlreadyExists,
            Self::Path(_) | Self::InvalidMove { .. } | Self::InvalidName(_) => {
                Code::InvalidArgument
            }
            Self::QuotaExceeded { .. } => Code::ResourceExhausted,
            Self::NotPermitted(_) => Code::PermissionDenied,
            Self::TooLarge { .. } => Code::FailedPrecondition,
            Self::NotADirectory(_)
            | Self::IsADirectory(_)
            | Self::IsASymlink(_)
            | Self::NotEmpty(_) => Code::FailedPrecondition,
            Self::VersionMismatch { .. } => Code::Aborted,
            Self::Compacted { .. } => Code::OutOfRange,
            Self::Locked { .. } | Self::Unopenable { .. } | Self::NewerSchema { .. } => {
                Code::Unavailable
            }
            Self::Content { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => {
                Code::ResourceExhausted
            }
            Self::Content { source, .. } if source.raw_os_error() == Some(libc::EFBIG) => {
                Code::OutOfRange
            }
            Self::Damaged { .. } | Self::Database(_) | Self::Content { .. } => Code::Internal,
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        let mut status = Status::new(e.code(), e.to_string());
        status.metadata_mut().insert(
            ERRNO_METADATA,
            tonic::metadata::MetadataValue::from_static(e.errno()),
        );
        status
    }
}
