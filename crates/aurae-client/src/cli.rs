//! The connection flags every Aurae command line shares, so that `--sock`, `--config`,
//! `--ca`, `--cert` and `--key` (and `AURAE_SOCKET`, `AURAE_CONFIG`) mean the same in
//! `aurae`, `auraefs` and the tools to come.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::ConnectOptions;

/// How to reach auraed.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectArgs {
    /// auraed's Unix socket [default: from the config, else /run/aurae.sock].
    #[arg(long, global = true, env = aurae_core::config::SOCKET_ENV, value_name = "PATH")]
    pub sock: Option<PathBuf>,
    /// Client config file [default: ~/.aurae/config.toml].
    #[arg(long, global = true, env = aurae_core::config::CONFIG_ENV, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// CA certificate that signed auraed's certificate.
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Client certificate.
    #[arg(long, global = true, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client private key.
    #[arg(long, global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Seconds to wait for auraed to answer a connection; 0: no limit [default: from the
    /// config, else 10].
    #[arg(long, global = true, value_name = "SECONDS", value_parser = parse_seconds)]
    pub connect_timeout: Option<Duration>,
    /// Seconds the command's calls may take in all; 0: no limit. Streams (kv watch, large
    /// kv get and put) are not bounded unless this flag is given [default: from the
    /// config, else 60].
    #[arg(long, global = true, value_name = "SECONDS", value_parser = parse_seconds)]
    pub timeout: Option<Duration>,
    /// Send the command to another peer's auraed, through this node's peer network:
    /// `<peer>[@<domain>]` or a PeerId. It then behaves exactly like the same command
    /// run there (that node decides what this node may do).
    #[arg(long, global = true, env = "AURAE_PEER", value_name = "PEER")]
    pub peer: Option<String>,
}

/// A number of seconds, whole or not (`10`, `0.5`).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("'{text}' is not a number of seconds such as 10 or 0.5"))
}

impl ConnectArgs {
    /// The options in the client library's terms.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            socket: self.sock.clone(),
            config: self.config.clone(),
            ca_cert: self.ca.clone(),
            client_cert: self.cert.clone(),
            client_key: self.key.clone(),
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
            peer: self.peer.clone(),
        }
    }
}
