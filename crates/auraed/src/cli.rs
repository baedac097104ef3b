//! Command-line flags of `auraed`.

use std::path::PathBuf;

use clap::{ArgAction, Parser};

/// The Aurae daemon: owns this machine and serves its capabilities over mutual TLS
/// on a Unix socket.
///
/// auraed always starts. Without certificate material in --pki-dir it runs an empty
/// loop: it holds the socket, answers health checks and `aurae status` with what is
/// missing, and nothing else. Create the material with `aurae pki init`; auraed picks
/// it up within two seconds, without a restart.
#[derive(Debug, Clone, Parser)]
#[command(name = "auraed", version, about, long_about)]
pub struct Args {
    /// Unix socket to serve on.
    #[arg(long, env = aurae_core::config::SOCKET_ENV, default_value = aurae_core::config::DEFAULT_SOCKET)]
    pub sock: PathBuf,

    /// Group allowed to use the socket (name or gid): the socket becomes 0660 instead of 0600.
    #[arg(long, value_name = "GROUP")]
    pub sock_group: Option<String>,

    /// The node's ed25519 private key in OpenSSH format; generated if missing.
    /// Its libp2p PeerId is the node's peer identity. [default: $HOME/.ssh/id_aura]
    #[arg(long, env = "AURAE_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Directory of the certificate material: ca.crt, server.crt, server.key.
    #[arg(long, env = "AURAE_PKI_DIR", default_value = "/etc/aurae/pki")]
    pub pki_dir: PathBuf,

    /// Directory of the daemon's persistent state.
    #[arg(long, env = "AURAE_DATA_DIR", default_value = "/var/lib/aurae")]
    pub data_dir: PathBuf,

    /// Close a client connection that carried no request for this many seconds (with
    /// none in flight); clients reconnect on their next call. It bounds how long a
    /// forgotten or hostile connection holds one of the daemon's file descriptors.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::config::DEFAULT_IDLE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,

    /// Leave the host's cgroup mount options as they are. By default the runtime turns on
    /// the kernel's `favordynmods` option on one cgroup hierarchy, so that putting a
    /// process into a cell's cgroup stops waiting for an RCU grace period (about 8 ms per
    /// start), at the cost of slightly slower fork and exit everywhere on the host.
    #[arg(long)]
    pub no_favordynmods: bool,

    /// Log every allowed request (principal, method, permission) as well as every denial.
    /// Denials are always logged; allowed calls are not by default, as they can be many.
    #[arg(long)]
    pub audit: bool,

    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
}

impl Args {
    /// The key path, with the `$HOME/.ssh/id_aura` default resolved. A kernel starts
    /// init with `HOME=/`: there, as without HOME, root's home `/root` is meant.
    pub fn key_path(&self) -> PathBuf {
        self.key.clone().unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty() && h.as_encoded_bytes() != b"/")
                .unwrap_or_else(|| "/root".into());
            PathBuf::from(home).join(".ssh/id_aura")
        })
    }
}
