//! The errno a failed gRPC call means to the kernel.
//!
//! auraed puts the errno name in the `aurae-errno` metadata of every filesystem error
//! (`ENOTEMPTY`, `EISDIR`, ...); when it is missing the gRPC code decides. This module
//! only translates: it never logs, retries or hides an error.

use fuser::Errno;
use nix::libc;
use tonic::{Code, Status};

/// The metadata key under which auraed sends the errno name.
pub const ERRNO_METADATA: &str = "aurae-errno";

/// The errno for a failed call: the `aurae-errno` metadata first, the gRPC code second.
pub fn errno_of(status: &Status) -> Errno {
    status
        .metadata()
        .get(ERRNO_METADATA)
        .and_then(|value| value.to_str().ok())
        .and_then(errno_named)
        .unwrap_or_else(|| errno_of_code(status.code()))
}

/// The errno for a gRPC code, when the server sent no errno of its own.
pub fn errno_of_code(code: Code) -> Errno {
    match code {
        Code::NotFound => Errno::ENOENT,
        Code::AlreadyExists => Errno::EEXIST,
        Code::PermissionDenied | Code::Unauthenticated => Errno::EACCES,
        Code::ResourceExhausted => Errno::ENOSPC,
        Code::InvalidArgument => Errno::EINVAL,
        Code::DeadlineExceeded => Errno::ETIMEDOUT,
        _ => Errno::EIO,
    }
}

/// The errno of a symbolic name such as `ENOTEMPTY`; `None` for names we do not know.
pub fn errno_named(name: &str) -> Option<Errno> {
    let code = match name {
        "EPERM" => libc::EPERM,
        "ENOENT" => libc::ENOENT,
        "EIO" => libc::EIO,
        "EBADF" => libc::EBADF,
        "EAGAIN" => libc::EAGAIN,
        "ENOMEM" => libc::ENOMEM,
        "EACCES" => libc::EACCES,
        "EBUSY" => libc::EBUSY,
        "EEXIST" => libc::EEXIST,
        "EXDEV" => libc::EXDEV,
        "ENOTDIR" => libc::ENOTDIR,
        "EISDIR" => libc::EISDIR,
        "EINVAL" => libc::EINVAL,
        "EFBIG" => libc::EFBIG,
        "ENOSPC" => libc::ENOSPC,
        "EROFS" => libc::EROFS,
        "EMLINK" => libc::EMLINK,
        "ERANGE" => libc::ERANGE,
        "ENAMETOOLONG" => libc::ENAMETOOLONG,
        "ENOSYS" => libc::ENOSYS,
        "ENOTEMPTY" => libc::ENOTEMPTY,
        "ELOOP" => libc::ELOOP,
        "EOVERFLOW" => libc::EOVERFLOW,
        "EILSEQ" => libc::EILSEQ,
        "EOPNOTSUPP" | "ENOTSUP" => libc::EOPNOTSUPP,
        "EDQUOT" => libc::EDQUOT,
        "ESTALE" => libc::ESTALE,
        "ETIMEDOUT" => libc::ETIMEDOUT,
        _ => return None,
    };
    Some(Errno::from_i32(code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn with_errno(code: Code, errno: &'static str) -> Status {
        let mut status = Status::new(code, "failed");
        status
            .metadata_mut()
            .insert(ERRNO_METADATA, MetadataValue::from_static(errno));
        status
    }

    #[test]
    fn the_errno_metadata_wins_over_the_grpc_code() {
        let cases = [
            (Code::FailedPrecondition, "ENOTEMPTY", libc::ENOTEMPTY),
            (Code::FailedPrecondition, "EISDIR", libc::EISDIR),
            (Code::FailedPrecondition, "ENOTDIR", libc::ENOTDIR),
            (Code::InvalidArgument, "ENAMETOOLONG", libc::ENAMETOOLONG),
            (Code::NotFound, "ENOENT", libc::ENOENT),
            (Code::AlreadyExists, "EEXIST", libc::EEXIST),
            (Code::ResourceExhausted, "ENOSPC", libc::ENOSPC),
            (Code::PermissionDenied, "EPERM", libc::EPERM),
            (Code::PermissionDenied, "EACCES", libc::EACCES),
            (Code::InvalidArgument, "EINVAL", libc::EINVAL),
            (Code::Aborted, "ESTALE", libc::ESTALE),
        ];
        for (code, name, expected) in cases {
            assert_eq!(
                errno_of(&with_errno(code, name)).code(),
                expected,
                "{name} with {code:?}"
            );
        }
    }

    #[test]
    fn without_metadata_the_grpc_code_decides() {
        let cases = [
            (Code::NotFound, libc::ENOENT),
            (Code::AlreadyExists, libc::EEXIST),
            (Code::PermissionDenied, libc::EACCES),
            (Code::ResourceExhausted, libc::ENOSPC),
            (Code::InvalidArgument, libc::EINVAL),
            (Code::Unavailable, libc::EIO),
            (Code::Internal, libc::EIO),
            (Code::Unknown, libc::EIO),
        ];
        for (code, expected) in cases {
            assert_eq!(
                errno_of(&Status::new(code, "x")).code(),
                expected,
                "{code:?}"
            );
        }
    }

    #[test]
    fn an_unknown_errno_name_falls_back_on_the_code() {
        let status = with_errno(Code::NotFound, "EWHATEVER");
        assert_eq!(errno_of(&status).code(), libc::ENOENT);
        assert_eq!(errno_named("EWHATEVER"), None);
    }
}
