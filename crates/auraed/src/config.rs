//! Tuning values of the daemon, as config structs with documented defaults (the
//! rust-libp2p style): one place to read what a number is and why it is what it is.
//! Each capability with tuning of its own keeps it in its folder and has a field here.

use std::time::Duration;

/// Default of [`ServerConfig::idle_timeout`] in seconds, also the default of `auraed
/// --idle-timeout`.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;

/// Every tuning value of one daemon run.
#[derive(Debug, Clone, Default)]
pub struct DaemonConfig {
    /// The socket server.
    pub server: ServerConfig,
    /// The storage capability and the store under it.
    pub storage: crate::storage::StorageConfig,
    /// The runtime capability: executables' logs (8 MiB files, 4 rotated ones kept).
    pub logs: aurae_runtime::logs::LogConfig,
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
    /// Connections accepted but not yet through their handshake, at most; a new one
    /// beyond it evicts the oldest. Default 64: a handshake takes milliseconds, so
    /// legitimate clients never have that many pending, and silent connections from
    /// anyone who can open the socket cannot hold more descriptors than this.
    pub max_pending_handshakes: usize,
    /// Plaintext connections the empty loop (no certificate material) keeps open; one
    /// beyond it closes the oldest. Default 64: the empty loop answers a few status
    /// calls, and silent connections must not take every descriptor.
    pub max_plain_connections: usize,
    /// Connections one principal may hold at once; a new one beyond it is closed right
    /// after its handshake. The node's admin is exempt. Default 64: a CLI holds one per
    /// command, an auraefs mount one; 64 leaves room for scripts running in parallel.
    pub max_connections_per_principal: usize,
    /// File descriptors kept for the node's admin, pending handshakes and the daemon's
    /// own files: all principals but the admin together hold at most the descriptor
    /// budget (the soft `RLIMIT_NOFILE`, raised to the hard limit at start) less this,
    /// and never less than half the budget. Default 256: more than
    /// `max_pending_handshakes`, the store's files and an admin's parallel commands.
    pub fd_reserve: usize,
    /// Concurrent requests (HTTP/2 streams) one connection may carry. Default 128: more
    /// than a FUSE mount keeps in flight, and it bounds the work one connection can
    /// queue on the daemon's single serving thread.
    pub max_concurrent_streams: u32,
    /// A connection that carried no request for this long, with none in flight, is
    /// closed (clients reconnect on their next call). Default 300 s: a person typing
    /// commands keeps theirs, a forgotten or hostile one stops holding a descriptor.
    /// `auraed --idle-timeout` sets it.
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            handoff_queue: 128,
            flow_window: 8 << 20,
            material_poll: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(5),
            max_pending_handshakes: 64,
            max_plain_connections: 64,
            max_connections_per_principal: 64,
            fd_reserve: 256,
            max_concurrent_streams: 128,
            idle_timeout: Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS),
        }
    }
}
