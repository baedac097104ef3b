//! The connection flags every Aurae command line shares, so that `--sock`, `--config`,
//! `--ca`, `--cert` and `--key` (and `AURAE_SOCKET`, `AURAE_CONFIG`) mean the same in
//! `aurae`, `auraefs` and the tools to come.

use std::path::PathBuf;

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
        }
    }
}
