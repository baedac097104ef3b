//! Tuning values of the daemon, as config structs with documented defaults (the
//! rust-libp2p style): one place to read what a number is and why it is what it is.
//! Each capability with tuning of its own keeps it in its folder and has a field here.

use std::time::Duration;

/// Every tuning value of one daemon run.
#[derive(Debug, Clone, Default)]
pub struct DaemonConfig {
    /// The socket server.
    pub server: ServerConfig,
    /// The storage capability and the store under it.
    pub storage: crate::storage::StorageConfig,
}

/// Tuning of the socket server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a client may take to complete the TLS handshake. Default 10 s: a
    /// handshake takes milliseconds; this bounds what a stalled client holds.
    pub handshake_timeout: Duration,
    /// Connections handed over by the accept loop but not yet picked up by a router.
    /// Default 128, the kernel's default listen backlog.
    pub handoff_queue: usize,
    /// HTTP/2 flow-control window of one stream, in bytes (the connection gets four
    /// times as much). Default 8 MiB: a 1 MiB write or read streams without waiting on
    /// window updates.
    pub flow_window: u32,
    /// How often the certificate material is checked for changes. Default 500 ms: new
    /// material is served within a second, and a stat of three files costs nothing.
    pub material_poll: Duration,
    /// How long open connections get to finish when shutting down. Default 5 s.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            handoff_queue: 128,
            flow_window: 8 << 20,
            material_poll: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}
