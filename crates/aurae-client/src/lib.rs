//! Connecting to auraed: find the socket and the caller's identity, then open a gRPC
//! channel over the Unix socket, with mutual TLS or (for the empty loop) without.
//!
//! Every Aurae client binary (`aurae`, `auraefs`, `ascp`, `assh`) connects through
//! here, so flags, environment and `~/.aurae/config.toml` mean the same everywhere.
//! Remote peers will be a second transport behind the same [`AuraeClient`].
#![deny(missing_docs)]

/// Connection flags shared by every command line (feature `clap`).
#[cfg(feature = "clap")]
pub mod cli;
/// Calls served by another peer through the local daemon (`--peer`).
pub mod peer;
/// The command-line reference in `docs/cli/`, generated from the clap definitions.
#[cfg(feature = "clap")]
pub mod reference;

pub use peer::Channel;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aurae_core::config::{self, ClientConfig, ConfigError};
use aurae_core::pki::SERVER_NAME;
use aurae_core::tls::{self, TlsError};
use aurae_proto::v0::authz_client::AuthzClient;
use aurae_proto::v0::capabilities_client::CapabilitiesClient;
use aurae_proto::v0::filesystem_client::FilesystemClient;
use aurae_proto::v0::metrics_client::MetricsClient;
use aurae_proto::v0::node_config_client::NodeConfigClient;
use aurae_proto::v0::storage_client::StorageClient;
use aurae_proto::v0::system_client::SystemClient;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::UnixStream;
use tonic::transport::{Endpoint, Uri};
use tonic_health::pb::health_client::HealthClient;
use tower::service_fn;

/// Why a client could not reach auraed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client configuration could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The client's certificate material is unusable.
    #[error("client certificate material: {0}")]
    Tls(#[from] TlsError),
    /// Nothing answers on the socket.
    #[error(
        "cannot connect to {socket}: {reason}; is auraed running? (start it with `auraed --sock {socket}`, or pass --sock)"
    )]
    Unreachable {
        /// The socket tried.
        socket: PathBuf,
        /// What the connection attempt said.
        reason: String,
    },
    /// The socket, or a directory on the way to it, is closed to this user: auraed may well
    /// be running, but only root and the members of its `--sock-group` may connect.
    #[error(
        "you may not connect to {socket}: {what} (permission denied). auraed admits root and the members of its --sock-group: ask an administrator to start auraed with `--sock-group GROUP` and to add you to GROUP, or run this command with sudo"
    )]
    PermissionDenied {
        /// The socket tried.
        socket: PathBuf,
        /// Which part is closed: the socket itself or a directory on the way.
        what: &'static str,
    },
    /// auraed answers, but in its empty loop: it has no certificate material yet, so it
    /// serves health and status only and every other call has to wait for `aurae pki init`.
    #[error(
        "auraed at {socket} is in its empty loop (health and status only): {reason}; fix: `{fix_command}`"
    )]
    EmptyLoop {
        /// The socket tried.
        socket: PathBuf,
        /// Why auraed is in its empty loop, as it says itself.
        reason: String,
        /// The command auraed says fixes it.
        fix_command: String,
    },
    /// auraed answered but the mutual TLS handshake failed.
    #[error(
        "auraed at {socket} refused the TLS handshake: {reason}; check that your client certificate was issued by this node's CA (`aurae pki issue`)"
    )]
    Handshake {
        /// The socket tried.
        socket: PathBuf,
        /// What the handshake said.
        reason: String,
    },
    /// Connecting took longer than the connect timeout: something accepts connections on
    /// the socket but does not answer them (a hung auraed, or another program).
    #[error(
        "auraed at {socket} did not answer within the connect timeout ({}s): the socket accepts connections but nothing answers on it (is auraed hung, or is another program listening there?); wait longer with --connect-timeout SECONDS or connect_timeout in the client config",
        after.as_secs_f64()
    )]
    ConnectTimeout {
        /// The socket tried.
        socket: PathBuf,
        /// The connect timeout that expired.
        after: Duration,
    },
    /// `--peer` did not name a peer.
    #[error("--peer: {0}")]
    BadPeer(String),
    /// No client identity is configured but the call needs one.
    #[error(
        "no client certificate configured: run `aurae pki init` (writes {config}) or pass --config / --cert / --key / --ca"
    )]
    NoIdentity {
        /// The config file that was looked for.
        config: String,
    },
}

/// Where the caller's certificate material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// CA that signed the daemon's certificate.
    pub ca_cert: PathBuf,
    /// The caller's certificate.
    pub client_cert: PathBuf,
    /// The caller's key.
    pub client_key: PathBuf,
}

/// What the caller said on the command line (and in the environment); `None` = not said.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// `--sock` / `AURAE_SOCKET`.
    pub socket: Option<PathBuf>,
    /// `--config` / `AURAE_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--ca`.
    pub ca_cert: Option<PathBuf>,
    /// `--cert`.
    pub client_cert: Option<PathBuf>,
    /// `--key`.
    pub client_key: Option<PathBuf>,
    /// `--connect-timeout` (zero: no limit).
    pub connect_timeout: Option<Duration>,
    /// `--timeout` (zero: no limit).
    pub timeout: Option<Duration>,
    /// `--peer`.
    pub peer: Option<String>,
}

/// How long a client waits for auraed; `None` is no limit. Flags override the client
/// config, which overrides the defaults ([`Timeouts::default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For a connection to be answered: the socket, the TLS handshake, and for `aurae
    /// status` the empty-loop probe. A socket that accepts but never answers fails here.
    pub connect: Option<Duration>,
    /// For a command's calls in all. Streams of data (Watch, large reads and writes) are
    /// not bounded by it: they last as long as there is data, or as long as asked.
    pub call: Option<Duration>,
}

/// Default [`Timeouts::connect`]: auraed answers a local connection in milliseconds,
/// even under load; ten seconds is a hung daemon, not a busy one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`Timeouts::call`]: a generous bound on calls that take milliseconds, so that
/// a recursive removal of a large tree still fits, and a stuck call still ends.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Some(DEFAULT_CONNECT_TIMEOUT),
            call: Some(DEFAULT_CALL_TIMEOUT),
        }
    }
}

/// A zero duration means no limit.
fn limit(duration: Duration) -> Option<Duration> {
    (!duration.is_zero()).then_some(duration)
}

/// The socket and identity to use, after flags, environment and config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The caller's identity, if one is configured.
    pub identity: Option<Identity>,
    /// The config file consulted.
    pub config_path: String,
    /// How long to wait for auraed.
    pub timeouts: Timeouts,
    /// The peer whose auraed serves the calls (`--peer`); the local daemon when `None`.
    pub peer: Option<String>,
}

impl ConnectOptions {
    /// The timeouts the flags say, over those of `file`, over the defaults.
    pub fn timeouts(&self, file: Option<&ClientConfig>) -> Timeouts {
        let defaults = Timeouts::default();
        let pick = |flag: Option<Duration>, from_file: Option<Duration>, default| {
            flag.or(from_file).map_or(default, limit)
        };
        Timeouts {
            connect: pick(
                self.connect_timeout,
                file.and_then(|f| f.connect_timeout),
                defaults.connect,
            ),
            call: pick(self.timeout, file.and_then(|f| f.timeout), defaults.call),
        }
    }

    /// Resolves flags over the config file over the defaults.
    pub fn resolve(&self) -> Result<Target, ClientError> {
        let config_path = match &self.config {
            Some(path) => Some(path.clone()),
            None => config::default_config_path().ok(),
        };
        let file = match &config_path {
            Some(path) => ClientConfig::load(path)?,
            None => None,
        };
        let socket = self
            .socket
            .clone()
            .or_else(|| file.as_ref().map(|f| f.socket.clone()))
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_SOCKET));
        let pick = |flag: &Option<PathBuf>, from_file: fn(&ClientConfig) -> &PathBuf| {
            flag.clone()
                .or_else(|| file.as_ref().map(|f| from_file(f).clone()))
        };
        let identity = match (
            pick(&self.ca_cert, |f| &f.ca_cert),
            pick(&self.client_cert, |f| &f.client_cert),
            pick(&self.client_key, |f| &f.client_key),
        ) {
            (Some(ca_cert), Some(client_cert), Some(client_key)) => Some(Identity {
                ca_cert,
                client_cert,
                client_key,
            }),
            _ => None,
        };
        Ok(Target {
            socket,
            identity,
            config_path: config_path
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "~/.aurae/config.toml".to_owned()),
            timeouts: self.timeouts(file.as_ref()),
            peer: self.peer.clone(),
        })
    }
}

fn endpoint() -> Endpoint {
    // The URI is never dialled: the connector below opens the Unix socket.
    Endpoint::from_static("http://auraed")
        // Large flow-control windows: bulk reads and writes stream without waiting on
        // window updates.
        .initial_stream_window_size(FLOW_WINDOW)
        .initial_connection_window_size(FLOW_WINDOW * 4)
}

/// HTTP/2 flow-control window of one stream, in bytes.
const FLOW_WINDOW: u32 = 8 << 20;

/// A failure inside the connector, kept typed so that "nothing listens" can be told
/// apart from "the handshake failed" once tonic has wrapped it.
#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("{0}")]
    Socket(std::io::Error),
    #[error("{0}")]
    Handshake(std::io::Error),
}

fn dial_error(socket: &Path, e: &tonic::transport::Error) -> ClientError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(dial) = err.downcast_ref::<DialError>() {
            return match dial {
                DialError::Socket(io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
                    ClientError::PermissionDenied {
                        socket: socket.to_owned(),
                        what: closed_part(socket),
                    }
                }
                DialError::Socket(io) => ClientError::Unreachable {
                    socket: socket.to_owned(),
                    reason: io.to_string(),
                },
                DialError::Handshake(io) => ClientError::Handshake {
                    socket: socket.to_owned(),
                    reason: io.to_string(),
                },
            };
        }
        source = err.source();
    }
    ClientError::Handshake {
        socket: socket.to_owned(),
        reason: error_chain(e),
    }
}

/// Which part of the way to `socket` refused a connection with EACCES: the socket exists
/// (its mode or group shuts the caller out) or a directory cannot be searched.
fn closed_part(socket: &Path) -> &'static str {
    match std::fs::symlink_metadata(socket) {
        Ok(_) => "the socket exists but is closed to you",
        Err(_) => "a directory on the way to it is closed to you",
    }
}

/// Runs `connecting` within the connect timeout `limit` (`None`: no limit).
async fn within<T>(
    socket: &Path,
    limit: Option<Duration>,
    connecting: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    let Some(limit) = limit else {
        return connecting.await;
    };
    tokio::time::timeout(limit, connecting)
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::ConnectTimeout {
                socket: socket.to_owned(),
                after: limit,
            })
        })
}

/// Opens a plaintext channel: only the empty loop answers on it. Bounded by
/// [`DEFAULT_CONNECT_TIMEOUT`].
pub async fn connect_plaintext(socket: &Path) -> Result<tonic::transport::Channel, ClientError> {
    within(
        socket,
        Some(DEFAULT_CONNECT_TIMEOUT),
        dial_plaintext(socket),
    )
    .await
}

async fn dial_plaintext(socket: &Path) -> Result<tonic::transport::Channel, ClientError> {
    let path = socket.to_owned();
    endpoint()
        .connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                UnixStream::connect(path)
                    .await
                    .map(TokioIo::new)
                    .map_err(DialError::Socket)
            }
        }))
        .await
        .map_err(|e| dial_error(socket, &e))
}

/// Opens a mutual-TLS channel with `identity`, bounded by [`DEFAULT_CONNECT_TIMEOUT`].
pub async fn connect_mtls(
    socket: &Path,
    identity: &Identity,
) -> Result<tonic::transport::Channel, ClientError> {
    within(
        socket,
        Some(DEFAULT_CONNECT_TIMEOUT),
        dial_mtls(socket, identity),
    )
    .await
}

async fn dial_mtls(
    socket: &Path,
    identity: &Identity,
) -> Result<tonic::transport::Channel, ClientError> {
    let config = tls::client_config(
        &identity.ca_cert,
        &identity.client_cert,
        &identity.client_key,
    )?;
    dial_with_config(socket, config).await
}

/// Opens a mutual-TLS channel with a ready rustls configuration, bounded by
/// [`DEFAULT_CONNECT_TIMEOUT`].
pub async fn connect_with_config(
    socket: &Path,
    config: Arc<rustls::ClientConfig>,
) -> Result<tonic::transport::Channel, ClientError> {
    within(
        socket,
        Some(DEFAULT_CONNECT_TIMEOUT),
        dial_with_config(socket, config),
    )
    .await
}

async fn dial_with_config(
    socket: &Path,
    config: Arc<rustls::ClientConfig>,
) -> Result<tonic::transport::Channel, ClientError> {
    let path = socket.to_owned();
    let connector = tokio_rustls::TlsConnector::from(config);
    let server_name = ServerName::try_from(SERVER_NAME).expect("SERVER_NAME is a DNS name");
    endpoint()
        .connect_with_connector(service_fn(move |_: Uri| {
            let (path, connector, server_name) =
                (path.clone(), connector.clone(), server_name.clone());
            async move {
                let stream = UnixStream::connect(path).await.map_err(DialError::Socket)?;
                let tls = connector
                    .connect(server_name, stream)
                    .await
                    .map_err(DialError::Handshake)?;
                Ok::<_, DialError>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| dial_error(socket, &e))
}

/// An error and its causes on one line, each said once: many errors already put their
/// cause in their own message (`cannot read FILE: Permission denied`) and also return it as
/// their source, and a person should not read it twice. Every client binary prints its
/// errors with this.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let cause = inner.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = inner.source();
    }
    text
}

/// A connected client with one accessor per service.
#[derive(Debug, Clone)]
pub struct AuraeClient {
    channel: Channel,
}

impl AuraeClient {
    /// Connects with mutual TLS using the resolved target's identity, within its connect
    /// timeout. A refused handshake is told apart from a daemon in its empty loop (which
    /// speaks no TLS at all), so that the caller hears what is really wrong.
    pub async fn connect(target: &Target) -> Result<Self, ClientError> {
        let identity = target
            .identity
            .as_ref()
            .ok_or_else(|| ClientError::NoIdentity {
                config: target.config_path.clone(),
            })?;
        let socket = &target.socket;
        match within(socket, target.timeouts.connect, dial_mtls(socket, identity)).await {
            Ok(channel) => {
                let client = Self::from_channel(channel);
                match &target.peer {
                    Some(peer) => client.to_peer(peer),
                    None => Ok(client),
                }
            }
            Err(e @ ClientError::Handshake { .. }) => Err(empty_loop(socket).await.unwrap_or(e)),
            Err(e) => Err(e),
        }
    }

    /// Wraps an open channel: calls are served by the daemon at its other end.
    pub fn from_channel(channel: tonic::transport::Channel) -> Self {
        Self {
            channel: Channel::local(channel),
        }
    }

    /// The same connection, with every call served by `peer` (`<peer>[@<domain>]` or a
    /// PeerId) instead: the daemon forwards it over its peer network.
    pub fn to_peer(&self, peer: &str) -> Result<Self, ClientError> {
        let address: aurae_core::address::PeerAddress = peer
            .parse()
            .map_err(|e: aurae_core::address::AddressError| ClientError::BadPeer(e.to_string()))?;
        let channel = Channel::to_peer(self.channel.inner_channel(), &address.to_string())
            .ok_or_else(|| ClientError::BadPeer(format!("'{peer}' cannot be sent as a header")))?;
        Ok(Self { channel })
    }

    /// The connection, for any service's generated client (`FooClient::new(client.channel())`):
    /// a new capability needs no accessor here.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The `aurae.v0.System` service.
    pub fn system(&self) -> SystemClient<Channel> {
        SystemClient::new(self.channel.clone())
    }

    /// The `aurae.v0.Capabilities` service.
    pub fn capabilities(&self) -> CapabilitiesClient<Channel> {
        CapabilitiesClient::new(self.channel.clone())
    }

    /// The `aurae.v0.Authz` service: who may do what on the node (roles and the
    /// principals they are granted to), and what the caller itself may do.
    pub fn authz(&self) -> AuthzClient<Channel> {
        AuthzClient::new(self.channel.clone())
    }

    /// The `aurae.v0.NodeConfig` service: apply a declarative node config, export the node.
    pub fn node_config(&self) -> NodeConfigClient<Channel> {
        NodeConfigClient::new(self.channel.clone())
    }

    /// The `aurae.v0.Filesystem` service (the store by volume and inode).
    pub fn filesystem(&self) -> FilesystemClient<Channel> {
        FilesystemClient::new(self.channel.clone())
    }

    /// The `aurae.v0.Metrics` service: the node's metrics in the Prometheus text format.
    pub fn metrics(&self) -> MetricsClient<Channel> {
        MetricsClient::new(self.channel.clone())
    }

    /// The `aurae.v0.Storage` service.
    pub fn storage(&self) -> StorageClient<Channel> {
        StorageClient::new(self.channel.clone())
    }

    /// The standard `grpc.health.v1.Health` service.
    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }
}

/// How long the empty-loop probe after a failed handshake may take.
const EMPTY_LOOP_PROBE: std::time::Duration = std::time::Duration::from_secs(2);

/// Asks `socket` in plaintext whether auraed is in its empty loop; the error that says so,
/// or `None` if it is not (or does not answer in time).
async fn empty_loop(socket: &Path) -> Option<ClientError> {
    let probe = async {
        let client = AuraeClient::from_channel(connect_plaintext(socket).await.ok()?);
        let status = client
            .system()
            .status(aurae_proto::v0::StatusRequest {})
            .await
            .ok()?
            .into_inner();
        (status.mode() == aurae_proto::v0::Mode::EmptyLoop).then(|| ClientError::EmptyLoop {
            socket: socket.to_owned(),
            reason: status.reason,
            fix_command: status.fix_command,
        })
    };
    tokio::time::timeout(EMPTY_LOOP_PROBE, probe)
        .await
        .ok()
        .flatten()
}

/// How a status call reached the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// Over mutual TLS: the daemon is serving.
    MutualTls,
    /// In plaintext: the daemon is in its empty loop.
    EmptyLoop,
}

/// Connects the way that works now: mTLS if an identity is configured and the daemon
/// serves, else plaintext to the empty loop, all within the target's connect timeout.
/// For `aurae status`, which must explain an empty loop as well as report on a serving
/// daemon.
pub async fn connect_any(target: &Target) -> Result<(AuraeClient, Reached), ClientError> {
    within(&target.socket, target.timeouts.connect, dial_any(target)).await
}

async fn dial_any(target: &Target) -> Result<(AuraeClient, Reached), ClientError> {
    if target.peer.is_some() {
        // Another peer is reached only through a serving local daemon.
        return Ok((AuraeClient::connect(target).await?, Reached::MutualTls));
    }
    let tls_error = match &target.identity {
        Some(identity) => match dial_mtls(&target.socket, identity).await {
            Ok(channel) => return Ok((AuraeClient::from_channel(channel), Reached::MutualTls)),
            Err(e @ (ClientError::Unreachable { .. } | ClientError::PermissionDenied { .. })) => {
                return Err(e);
            }
            Err(e) => Some(e),
        },
        None => None,
    };
    let channel = dial_plaintext(&target.socket).await?;
    let client = AuraeClient::from_channel(channel);
    // A serving daemon drops plaintext connections at its TLS handshake: probe once.
    match client
        .system()
        .status(aurae_proto::v0::StatusRequest {})
        .await
    {
        Ok(_) => Ok((client, Reached::EmptyLoop)),
        Err(status) => Err(tls_error.unwrap_or_else(|| match &target.identity {
            None => ClientError::NoIdentity {
                config: target.config_path.clone(),
            },
            Some(_) => ClientError::Handshake {
                socket: target.socket.clone(),
                reason: status.message().to_owned(),
            },
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /x/config.toml: {source}")]
    struct SaysItsCause {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("loading the config")]
    struct Context(#[source] SaysItsCause);

    #[test]
    fn error_chain_says_each_cause_once() {
        let denied = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let text = error_chain(&SaysItsCause { source: denied() });
        assert_eq!(text, format!("cannot read /x/config.toml: {}", denied()));
        let text = error_chain(&Context(SaysItsCause { source: denied() }));
        assert_eq!(
            text,
            format!(
                "loading the config: cannot read /x/config.toml: {}",
                denied()
            )
        );
    }
}
