//! The socket server: one Unix socket, two faces.
//!
//! Every accepted connection is routed by the current [`material::Mode`]: in the empty
//! loop it is served in plaintext by a router that knows only health and status; once
//! material is registered it must complete mutual TLS (with the material current at
//! accept time, so rotation needs no restart), within the handshake deadline and among
//! a bounded number of pending handshakes, then be admitted to the connection registry
//! (per-principal and non-admin limits; the node's admin is always admitted), and is
//! served by the full router behind the authorization layer. Idle connections are
//! closed. A client's misbehaviour ends its connection, never the loop.

pub mod authority;
pub mod authz;
pub mod connection;
pub mod connections;
pub mod fd_limit;
pub mod handshakes;
pub mod material;
pub mod metrics;
pub mod permissions;
pub mod plain;
pub mod registry;
pub mod revalidate;
pub mod socket;

use std::sync::Arc;
use std::time::Duration;

use aurae_core::pki::NodeNames;
use aurae_proto::v0::system_server::SystemServer;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::context::Daemon;
use crate::system::SystemService;
use connection::AuthenticatedStream;
use connections::Role;
use handshakes::PendingHandshakes;
use material::Mode;
use plain::{PlainConnections, PlainStream};
use registry::RegisterError;

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A router failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A capability could not build its services.
    #[error(transparent)]
    Register(#[from] RegisterError),
}

/// Serves the socket until `shutdown` turns true.
pub async fn serve(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let config = &daemon.config.server;
    let (plain_tx, plain_rx) = mpsc::channel::<PlainStream>(config.handoff_queue);
    let (tls_tx, tls_rx) = mpsc::channel::<AuthenticatedStream>(config.handoff_queue);
    daemon.peer.set_inbox(tls_tx.clone());

    let empty_loop = empty_loop_router(daemon.clone(), plain_rx, stopped(shutdown.clone()));
    let serving = serving_router(daemon.clone(), tls_rx, stopped(shutdown.clone()));
    let idle = close_idle_connections(daemon.clone(), stopped(shutdown.clone()));
    let revalidate = revalidate::on_material_change(daemon.clone(), stopped(shutdown.clone()));
    let accept = accept_loop(listener, daemon.clone(), plain_tx, tls_tx, shutdown);
    let (empty_loop, serving, (), (), ()) =
        tokio::join!(empty_loop, serving, accept, idle, revalidate);
    empty_loop?;
    serving?;
    Ok(())
}

async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn incoming<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl tokio_stream::Stream<Item = Result<T, std::io::Error>> {
    ReceiverStream::new(rx).map(Ok)
}

/// Health (NOT_SERVING) and status, in plaintext, for the empty loop.
async fn empty_loop_router(
    daemon: Arc<Daemon>,
    rx: mpsc::Receiver<PlainStream>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    let metrics = tower::util::option_layer(daemon.metrics.rpc_layer());
    Server::builder()
        .layer(metrics)
        .add_service(health)
        .add_service(SystemServer::new(SystemService::new(daemon)))
        .serve_with_incoming_shutdown(incoming(rx), shutdown)
        .await?;
    Ok(())
}

/// Every registered capability over mTLS, behind the authorization layer, which refuses
/// the disabled ones and any service no capability declares.
async fn serving_router(
    daemon: Arc<Daemon>,
    rx: mpsc::Receiver<AuthenticatedStream>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let mut routes = RoutesBuilder::default();
    for capability in daemon.capabilities.known() {
        (capability.register)(&daemon, &mut routes)?;
    }
    daemon.report_all_health().await;
    let window = daemon.config.server.flow_window;
    let authz = authz::AuthzLayer::new(authz::Decider {
        registry: daemon.capabilities.clone(),
        cells: daemon.runtime.credentials(),
        policy: daemon.policy.clone(),
        audit: daemon.audit,
    });
    let forward = crate::peer::forward::ForwardLayer::new(daemon.clone(), authz.decider());
    Server::builder()
        // Large flow-control windows: a 1 MiB write or read streams without waiting on
        // window updates.
        .initial_stream_window_size(window)
        .initial_connection_window_size(window.saturating_mul(4))
        .max_concurrent_streams(daemon.config.server.max_concurrent_streams)
        // Outermost, so that calls the authorization layer refuses are counted too.
        .layer(tower::util::option_layer(daemon.metrics.rpc_layer()))
        // Calls for another peer leave here, checked for `peer.forward` only.
        .layer(forward)
        .layer(authz)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming(rx), shutdown)
        .await?;
    Ok(())
}

/// Closes connections idle for longer than the idle timeout, checking four times per
/// timeout (at most every 30 s), until `shutdown`.
async fn close_idle_connections(daemon: Arc<Daemon>, shutdown: impl Future<Output = ()>) {
    let timeout = daemon.config.server.idle_timeout;
    let every = (timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = &mut shutdown => return,
        }
        let closed = daemon.connections.close_idle(timeout);
        if closed > 0 {
            tracing::info!(
                closed,
                idle_timeout_s = timeout.as_secs_f64(),
                "closed idle connections"
            );
        }
    }
}

/// The names of the node whose admin holds every right: read from `node.toml` beside the
/// CA whenever the material changes, so that they always belong to the material served.
/// Unreadable names mean nobody is admin (fail closed), said in the log.
fn node_names(daemon: &Daemon) -> Option<Arc<NodeNames>> {
    match NodeNames::load(&daemon.pki) {
        Ok(names) => Some(Arc::new(names)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the node's names: no principal is admin until they can be read");
            None
        }
    }
}

async fn accept_loop(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    plain_tx: mpsc::Sender<PlainStream>,
    tls_tx: mpsc::Sender<AuthenticatedStream>,
    shutdown: watch::Receiver<bool>,
) {
    let stop = stopped(shutdown);
    tokio::pin!(stop);
    let pending = PendingHandshakes::new(daemon.config.server.max_pending_handshakes);
    let plain = PlainConnections::new(daemon.config.server.max_plain_connections);
    let mut mode = daemon.mode.clone();
    let mut names = None;
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning, never give up.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => return,
        };
        let changed = mode.has_changed().unwrap_or(false);
        let current = mode.borrow_and_update().clone();
        match current {
            Mode::EmptyLoop(_) => {
                names = None;
                let _ = plain_tx.send(plain.admit(stream)).await;
            }
            Mode::Serving(config) => {
                if changed || names.is_none() {
                    names = node_names(&daemon);
                }
                let handshake = Handshake {
                    daemon: daemon.clone(),
                    config,
                    names: names.clone(),
                    slot: pending.enter(),
                    tls_tx: tls_tx.clone(),
                };
                tokio::spawn(handshake.run(stream));
            }
        }
    }
}

/// One connection's way from accept to the serving router.
struct Handshake {
    daemon: Arc<Daemon>,
    config: Arc<rustls::ServerConfig>,
    names: Option<Arc<NodeNames>>,
    slot: handshakes::HandshakeSlot,
    tls_tx: mpsc::Sender<AuthenticatedStream>,
}

impl Handshake {
    /// Completes mutual TLS within the deadline (unless a newer connection evicts this
    /// one), admits the connection to the registry and hands it to the serving router.
    async fn run(self, stream: UnixStream) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config);
        let deadline = self.daemon.config.server.handshake_timeout;
        let tls = tokio::select! {
            done = tokio::time::timeout(deadline, acceptor.accept(stream)) => match done {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::info!(error = %e, "TLS handshake refused"),
                Err(_) => return tracing::info!("TLS handshake timed out"),
            },
            () = self.slot.evicted() => {
                return tracing::debug!("pending handshake evicted by a newer connection");
            }
        };
        drop(self.slot);
        let Some((certificate, principal)) = connection::client_of(&tls) else {
            return tracing::info!("TLS handshake without a client certificate");
        };
        let role = Role::of(principal.as_ref().ok(), self.names.as_deref());
        let admitted =
            self.daemon
                .connections
                .admit(principal.as_ref().ok().cloned(), certificate, role);
        match admitted {
            Ok(open) => {
                let stream = AuthenticatedStream::new(tls, principal, open);
                let _ = self.tls_tx.send(stream).await;
            }
            Err(refusal) => tracing::debug!(%refusal, "connection refused"),
        }
    }
}
