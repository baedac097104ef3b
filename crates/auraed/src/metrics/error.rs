//! The metrics capability's errors and their gRPC status.

use tonic::Status;

/// Why metrics could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Encoding the exposition failed (a formatter error: not expected with a String).
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
    /// The `--metrics-listen` address could not be bound (in use, or not an address of
    /// this machine).
    #[error(
        "cannot listen for metrics scrapers on {addr}: {source}; choose another address with --metrics-listen"
    )]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The listener's thread could not be started.
    #[error("cannot start the metrics listener's thread: {0}")]
    Thread(std::io::Error),
}

impl From<MetricsError> for Status {
    fn from(e: MetricsError) -> Self {
        Status::internal(e.to_string())
    }
}
