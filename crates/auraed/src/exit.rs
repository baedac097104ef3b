//! Exit codes of `auraed`, so that an operator or a supervisor can tell failures apart.

/// Why auraed stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Shut down on request (SIGTERM or SIGINT).
    Ok = 0,
    /// Bad flags (clap's own code).
    Usage = 2,
    /// Another live auraed serves the socket; it was left alone.
    SocketInUse = 3,
    /// The socket could not be created (permissions, a non-socket file in the way, ...).
    SocketFailed = 4,
    /// The async runtime or signal handling could not be started.
    Runtime = 5,
    /// The gRPC server stopped without being asked to.
    ServeFailed = 6,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}
