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

    /// The node config applied at start (capabilities, volumes, roles, grants; see
    /// `aurae apply`). A missing file is no config, unless the flag names it.
    /// [default: /etc/aurae/node.toml]
    #[arg(long, env = "AURAE_NODE_CONFIG", value_name = "FILE")]
    pub node_config: Option<PathBuf>,

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

    /// How log lines are written to stderr: `human` (one readable line per event) or
    /// `json` (one JSON object per line, for log shippers).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// Serve the metrics (as `aurae metrics` prints them) to scrapers over plain HTTP at
    /// `GET http://ADDR/metrics`, e.g. 127.0.0.1:9464. Off by default. There is no
    /// authentication: an address other than loopback exposes the metrics to whoever
    /// can reach it (logged as a warning). Port 0 picks a free port; the log names it.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Do not measure calls: the RPC metrics layer is not installed (for measuring its
    /// overhead). Store, capability and process metrics are still served.
    #[arg(long)]
    pub no_metrics: bool,

    /// Where the peer network listens (repeatable), once the `peer` capability is
    /// enabled. [default: /ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/udp/4001/quic-v1]
    #[arg(long, value_name = "MULTIADDR", help_heading = "Peer network")]
    pub peer_listen: Vec<libp2p::Multiaddr>,

    /// A peer to join the network through, ending in /p2p/<PeerId> (repeatable).
    #[arg(long, value_name = "MULTIADDR", help_heading = "Peer network")]
    pub peer_bootstrap: Vec<libp2p::Multiaddr>,

    /// A domain whose `_dnsaddr.<domain>` TXT records name bootstrap peers (repeatable).
    #[arg(long, value_name = "DOMAIN", help_heading = "Peer network")]
    pub peer_domain: Vec<aurae_core::name::DomainName>,

    /// A relay (ending in /p2p/<PeerId>) to reserve a slot on, to be reachable from
    /// behind a NAT (repeatable).
    #[arg(long, value_name = "MULTIADDR", help_heading = "Peer network")]
    pub peer_relay: Vec<libp2p::Multiaddr>,

    /// Serve as a circuit relay for other peers.
    #[arg(long, help_heading = "Peer network")]
    pub relay_server: bool,

    /// No mDNS discovery on the local network.
    #[arg(long, help_heading = "Peer network")]
    pub no_mdns: bool,

    /// The Kademlia protocol: /ipfs/kad/1.0.0 joins the IPFS DHT; another name keeps a
    /// private DHT.
    #[arg(long, value_name = "PROTOCOL", default_value = crate::peer::settings::IPFS_KAD, help_heading = "Peer network")]
    pub kad_protocol: String,

    /// The DNS server (IP:PORT) for `_dnsaddr` lookups, instead of the system's.
    #[arg(long, value_name = "ADDR", help_heading = "Peer network")]
    pub dns_server: Option<std::net::SocketAddr>,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Readable lines, colored on a terminal.
    Human,
    /// One JSON object per line.
    Json,
}

/// Where the node config is read from when `--node-config` is not given.
pub const DEFAULT_NODE_CONFIG: &str = "/etc/aurae/node.toml";

impl Args {
    /// The node config file, and whether it must exist (it was named explicitly).
    pub fn node_config_path(&self) -> (PathBuf, bool) {
        match &self.node_config {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from(DEFAULT_NODE_CONFIG), false),
        }
    }

    /// The peer network's settings from the flags.
    pub fn peer_settings(&self) -> crate::peer::settings::PeerSettings {
        let defaults = crate::peer::settings::PeerSettings::default();
        crate::peer::settings::PeerSettings {
            listen: if self.peer_listen.is_empty() {
                defaults.listen
            } else {
                self.peer_listen.clone()
            },
            bootstrap: self.peer_bootstrap.clone(),
            bootstrap_domains: self.peer_domain.clone(),
            mdns: !self.no_mdns,
            relay_server: self.relay_server,
            relay_client: true,
            relays: self.peer_relay.clone(),
            kad_protocol: self.kad_protocol.clone(),
            dns_server: self.dns_server,
            ..defaults
        }
    }

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
