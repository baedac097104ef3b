//! The runtime's errors and the one place they become gRPC status codes.

use aurae_runtime::cgroup::CgroupError;
use aurae_runtime::logs::LogError;
use aurae_runtime::spec::SpecError;
use tonic::Status;

use super::identity::IdentityError;
use super::zone::ZoneError;
use crate::storage::error::StorageError;

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The host offers no cgroups the runtime can use (detected at start).
    #[error("this host offers no usable cgroups, so no cell can be made: {0}")]
    NoCgroups(String),
    /// A spec field was invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Something else in the request was invalid.
    #[error("{0}")]
    Invalid(String),
    /// A cgroup operation failed, or the host cannot enforce a limit.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The cell's certificate could not be issued or revoked.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The cell's namespaces or a process could not be made.
    #[error(transparent)]
    Zone(#[from] ZoneError),
    /// The cell or executable is not there.
    #[error("no {0}; `aurae cell ls` shows what exists")]
    NotFound(String),
    /// The name is taken.
    #[error("{0} exists already; free or stop it first, or choose another name")]
    Exists(String),
    /// The caller may not act on this cell.
    #[error(
        "you may not allocate or free cell '{0}': a cell's own identity may allocate and free only the cells nested in it, not its own cell"
    )]
    Denied(String),
    /// An executable could not be started.
    #[error("cannot start the executable: {0}")]
    Start(String),
    /// Its log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The spec could not be written to or removed from the store.
    #[error(transparent)]
    Store(#[from] StorageError),
    /// A bug or an unexpected host failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RuntimeError> for Status {
    fn from(e: RuntimeError) -> Self {
        let message = e.to_string();
        match e {
            RuntimeError::Spec(_) | RuntimeError::Invalid(_) => Status::invalid_argument(message),
            RuntimeError::Cgroup(c) => match c {
                CgroupError::Unsupported { .. } | CgroupError::OutOfRange { .. } => {
                    Status::invalid_argument(message)
                }
                CgroupError::Exists { .. } => Status::already_exists(message),
                CgroupError::ParentMissing { .. } => Status::not_found(message),
                _ => Status::internal(message),
            },
            RuntimeError::NoCgroups(_) => Status::failed_precondition(message),
            RuntimeError::Identity(_) => Status::failed_precondition(message),
            RuntimeError::Zone(_) | RuntimeError::Internal(_) | RuntimeError::Log(_) => {
                Status::internal(message)
            }
            RuntimeError::NotFound(_) => Status::not_found(message),
            RuntimeError::Exists(_) => Status::already_exists(message),
            RuntimeError::Denied(_) => Status::permission_denied(message),
            RuntimeError::Start(_) => Status::failed_precondition(message),
            RuntimeError::Store(s) => s.into(),
        }
    }
}
