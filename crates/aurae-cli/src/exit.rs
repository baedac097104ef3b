//! Exit codes of `aurae`, one per class of failure, so that a script can tell "no daemon"
//! from "not allowed" from "not there" without reading the message. This module only
//! classifies errors; it never prints or exits.

use aurae_client::ClientError;
use tonic::Code;

use crate::commands::{InvalidInput, NotFound, RpcError};
use crate::deadline::TimedOut;

/// How a run of `aurae` ended. The numbers are an interface: never renumber one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Success; also when the reader of the output goes away early (`aurae ... | head`).
    Ok = 0,
    /// Any failure no other code names: local files, the config, auraed's internals.
    Failure = 1,
    /// Bad flags or arguments, refused before anything was sent (clap's own code).
    Usage = 2,
    /// Nothing answers on the socket: auraed is not running there.
    Unreachable = 3,
    /// Not allowed: the socket is closed to this user, no or an unknown client
    /// certificate, or the principal lacks the right (PERMISSION_DENIED, UNAUTHENTICATED).
    PermissionDenied = 4,
    /// What the command names does not exist (NOT_FOUND).
    NotFound = 5,
    /// It exists already, changed since it was read (`--if-version`), or its state forbids
    /// the change (ALREADY_EXISTS, ABORTED, FAILED_PRECONDITION).
    Conflict = 6,
    /// auraed refused an argument (INVALID_ARGUMENT, OUT_OF_RANGE).
    InvalidArgument = 7,
    /// auraed cannot do it now: its empty loop, a disabled capability, or a busy or
    /// stopping daemon (UNAVAILABLE, UNIMPLEMENTED).
    Unavailable = 8,
    /// Out of space: a volume's quota or the disk is full (RESOURCE_EXHAUSTED).
    NoSpace = 9,
    /// Timed out: auraed did not answer a connection within the connect timeout, or the
    /// command within the overall timeout (DEADLINE_EXCEEDED too). Something accepts on
    /// the socket but does not answer: unlike [`Self::Unreachable`], auraed may be there,
    /// hung or overloaded.
    Timeout = 10,
}

impl ExitCode {
    /// Every code, in order, for the help text.
    pub const ALL: [Self; 11] = [
        Self::Ok,
        Self::Failure,
        Self::Usage,
        Self::Unreachable,
        Self::PermissionDenied,
        Self::NotFound,
        Self::Conflict,
        Self::InvalidArgument,
        Self::Unavailable,
        Self::NoSpace,
        Self::Timeout,
    ];

    /// One line for `--help` and the README.
    pub fn meaning(self) -> &'static str {
        match self {
            Self::Ok => {
                "success (also when the reader of the output stops early, as `| head` does)"
            }
            Self::Failure => {
                "any other error (local files, the config, an internal error in auraed)"
            }
            Self::Usage => "bad flags or arguments, refused before anything was sent",
            Self::Unreachable => "cannot connect: nothing listens on the socket",
            Self::PermissionDenied => {
                "not allowed: no access to the socket, no or an unknown client certificate, or no right to the call"
            }
            Self::NotFound => "not found",
            Self::Conflict => {
                "conflict: already exists, changed since read (--if-version), or its state forbids it"
            }
            Self::InvalidArgument => {
                "auraed refused an argument (a bad path or name, out of range)"
            }
            Self::Unavailable => {
                "unavailable: auraed is in its empty loop, the capability is disabled, or auraed is busy"
            }
            Self::NoSpace => "out of space: the volume's quota or the disk is full",
            Self::Timeout => {
                "timed out: auraed did not answer within the connect timeout (--connect-timeout) or finish within the overall one (--timeout)"
            }
        }
    }

    /// The code for an error: the outermost cause this module knows decides.
    pub fn of(error: &anyhow::Error) -> Self {
        error
            .chain()
            .find_map(|cause| {
                if let Some(rpc) = cause.downcast_ref::<RpcError>() {
                    Some(Self::of_code(rpc.code()))
                } else if cause.is::<NotFound>() {
                    Some(Self::NotFound)
                } else if cause.is::<InvalidInput>() {
                    Some(Self::InvalidArgument)
                } else if cause.is::<TimedOut>() {
                    Some(Self::Timeout)
                } else if let Some(status) = cause.downcast_ref::<tonic::Status>() {
                    Some(Self::of_code(status.code()))
                } else {
                    cause.downcast_ref::<ClientError>().map(Self::of_client)
                }
            })
            .unwrap_or(Self::Failure)
    }

    /// The code for a gRPC status code.
    pub fn of_code(code: Code) -> Self {
        match code {
            Code::Ok => Self::Ok,
            Code::PermissionDenied | Code::Unauthenticated => Self::PermissionDenied,
            Code::NotFound => Self::NotFound,
            Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => Self::Conflict,
            Code::InvalidArgument | Code::OutOfRange => Self::InvalidArgument,
            Code::Unavailable | Code::Unimplemented => Self::Unavailable,
            Code::DeadlineExceeded => Self::Timeout,
            Code::ResourceExhausted => Self::NoSpace,
            Code::Cancelled | Code::Unknown | Code::Internal | Code::DataLoss => Self::Failure,
        }
    }

    /// The code for a failure to connect.
    pub fn of_client(error: &ClientError) -> Self {
        match error {
            ClientError::Unreachable { .. } => Self::Unreachable,
            ClientError::PermissionDenied { .. }
            | ClientError::Handshake { .. }
            | ClientError::NoIdentity { .. } => Self::PermissionDenied,
            ClientError::EmptyLoop { .. } => Self::Unavailable,
            ClientError::ConnectTimeout { .. } => Self::Timeout,
            ClientError::Config(_) | ClientError::Tls(_) => Self::Failure,
            ClientError::BadPeer(_) => Self::InvalidArgument,
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// The exit-code table shown after `aurae --help`.
pub fn help() -> String {
    let mut text = String::from("Exit codes:\n");
    for code in ExitCode::ALL {
        text.push_str(&format!("  {:<2} {}\n", code as u8, code.meaning()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_are_numbered_in_order_and_all_listed() {
        for (n, code) in ExitCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, n);
        }
        assert!(help().contains("\n  9  out of space"));
        assert!(help().contains("\n  10 timed out"));
    }

    #[test]
    fn rpc_failures_map_by_their_grpc_code() {
        let code = |c| {
            ExitCode::of(&anyhow::Error::new(RpcError::new(tonic::Status::new(
                c, "x",
            ))))
        };
        assert_eq!(code(Code::NotFound), ExitCode::NotFound);
        assert_eq!(code(Code::PermissionDenied), ExitCode::PermissionDenied);
        assert_eq!(code(Code::Unauthenticated), ExitCode::PermissionDenied);
        assert_eq!(code(Code::AlreadyExists), ExitCode::Conflict);
        assert_eq!(code(Code::Aborted), ExitCode::Conflict);
        assert_eq!(code(Code::FailedPrecondition), ExitCode::Conflict);
        assert_eq!(code(Code::InvalidArgument), ExitCode::InvalidArgument);
        assert_eq!(code(Code::Unimplemented), ExitCode::Unavailable);
        assert_eq!(code(Code::ResourceExhausted), ExitCode::NoSpace);
        assert_eq!(code(Code::Internal), ExitCode::Failure);
        assert_eq!(code(Code::DeadlineExceeded), ExitCode::Timeout);
    }

    #[test]
    fn context_does_not_hide_the_cause() {
        let error = anyhow::Error::new(RpcError::new(tonic::Status::not_found("gone")))
            .context("while listing");
        assert_eq!(ExitCode::of(&error), ExitCode::NotFound);
        assert_eq!(ExitCode::of(&anyhow::anyhow!("plain")), ExitCode::Failure);
    }

    #[test]
    fn connection_failures_map_by_kind() {
        let unreachable = ClientError::Unreachable {
            socket: "/run/x.sock".into(),
            reason: "No such file or directory".into(),
        };
        assert_eq!(ExitCode::of_client(&unreachable), ExitCode::Unreachable);
        let denied = ClientError::PermissionDenied {
            socket: "/run/x.sock".into(),
            what: "the socket exists but is closed to you",
        };
        assert_eq!(ExitCode::of_client(&denied), ExitCode::PermissionDenied);
        let empty = ClientError::EmptyLoop {
            socket: "/run/x.sock".into(),
            reason: String::new(),
            fix_command: String::new(),
        };
        assert_eq!(ExitCode::of_client(&empty), ExitCode::Unavailable);
        let hung = ClientError::ConnectTimeout {
            socket: "/run/x.sock".into(),
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(ExitCode::of_client(&hung), ExitCode::Timeout);
        let slow = anyhow::Error::new(TimedOut {
            after: std::time::Duration::from_secs(1),
        });
        assert_eq!(ExitCode::of(&slow), ExitCode::Timeout);
    }
}
