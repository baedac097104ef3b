//! The storage capability's errors and their gRPC status: the code a client branches on,
//! and the errno a filesystem client hands to the kernel, in the `aurae-errno` metadata.

use aurae_store::StoreError;
use nix::libc;
use tonic::{Code, Status};

/// Metadata key under which Storage and Filesystem errors carry their errno name.
pub const ERRNO_METADATA: &str = "aurae-errno";

/// Why a Storage or Filesystem call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The store refused or failed the operation.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database is not open: another process holds it, or it could not be opened.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// A request that no store operation could carry out as asked.
    #[error("{0}")]
    InvalidRequest(String),
    /// A blocking store call panicked or was cancelled on its thread.
    #[error("storage call did not finish: {0}")]
    Interrupted(#[from] tokio::task::JoinError),
}

/// The gRPC code of a store error.
fn code(e: &StoreError) -> Code {
    match e {
        StoreError::NotFound(_) | StoreError::NoSuchInode(_) | StoreError::NoSuchVolume(_) => {
            Code::NotFound
        }
        StoreError::Exists(_) | StoreError::VolumeExists(_) => Code::AlreadyExists,
        StoreError::Path(_)
        | StoreError::InvalidMove { .. }
        | StoreError::InvalidName(_)
        | StoreError::SizeMismatch { .. } => Code::InvalidArgument,
        StoreError::QuotaExceeded { .. } => Code::ResourceExhausted,
        StoreError::NotPermitted(_) => Code::PermissionDenied,
        StoreError::TooLarge { .. }
        | StoreError::NotADirectory(_)
        | StoreError::IsADirectory(_)
        | StoreError::IsASymlink(_)
        | StoreError::NotEmpty(_)
        | StoreError::QuotaBelowUse { .. } => Code::FailedPrecondition,
        StoreError::VersionMismatch { .. } => Code::Aborted,
        StoreError::Compacted { .. } => Code::OutOfRange,
        StoreError::Locked { .. }
        | StoreError::Unopenable { .. }
        | StoreError::NewerSchema { .. }
        | StoreError::WriterStopped => Code::Unavailable,
        _ if e.os_error() == Some(libc::ENOSPC) => Code::ResourceExhausted,
        _ if e.os_error() == Some(libc::EFBIG) => Code::OutOfRange,
        _ => Code::Internal,
    }
}

/// The message of an error: its own and its sources', so that the system's reason (a
/// full disk, a damaged page) reaches the client.
pub(crate) fn message(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

impl From<StorageError> for Status {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Store(e) => {
                let mut status = Status::new(code(&e), message(&e));
                status.metadata_mut().insert(
                    ERRNO_METADATA,
                    tonic::metadata::MetadataValue::from_static(e.errno()),
                );
                status
            }
            StorageError::Unavailable(_) => Status::unavailable(e.to_string()),
            StorageError::InvalidRequest(_) => Status::invalid_argument(e.to_string()),
            StorageError::Interrupted(_) => Status::internal(e.to_string()),
        }
    }
}

/// The status of a store error.
pub fn status(e: StoreError) -> Status {
    StorageError::Store(e).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_carries_its_code_errno_and_causes() {
        let status = status(StoreError::NotEmpty("/a".into()));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.metadata().get(ERRNO_METADATA).unwrap(), "ENOTEMPTY");
        let full = StoreError::Content {
            action: aurae_store::error::ContentAction::Write,
            ino: 7,
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let status = super::status(full);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.metadata().get(ERRNO_METADATA).unwrap(), "ENOSPC");
        assert!(status.message().contains("inode 7"), "{}", status.message());
        assert!(status.message().contains("space"), "{}", status.message());
    }

    #[test]
    fn a_full_log_or_a_refused_write_is_resource_exhausted_with_enospc() {
        let log = StoreError::Log {
            action: aurae_store::error::LogAction::Append,
            path: "/data/aurae.wal".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        let refused = StoreError::NoSpace {
            dir: "/data".into(),
            available: 0,
            reserve: 1 << 20,
        };
        for e in [log, refused] {
            let status = status(e);
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            assert_eq!(status.metadata().get(ERRNO_METADATA).unwrap(), "ENOSPC");
        }
    }
}
