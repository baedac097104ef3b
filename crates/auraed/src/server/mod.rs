//! The socket server: one Unix socket, two faces.
//!
//! Every accepted connection is routed by the current [`material::Mode`]: in the empty
//! loop it is served in plaintext by a router that knows only health and status; once
//! material is registered it must complete mutual TLS (with the material current at
//! accept time, so rotation needs no restart) and is served by the full router behind
//! the authorization layer. A client's misbehaviour ends its connection, never the loop.

pub mod authz;
pub mod connection;
pub mod material;
pub mod registry;
pub mod socket;

use std::sync::Arc;
use std::time::Duration;

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
use material::Mode;
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
    let (plain_tx, plain_rx) = mpsc::channel::<UnixStream>(config.handoff_queue);
    let (tls_tx, tls_rx) = mpsc::channel::<AuthenticatedStream>(config.handoff_queue);

    let empty_loop = empty_loop_router(daemon.clone(), plain_rx, stopped(shutdown.clone()));
    let serving = serving_router(daemon.clone(), tls_rx, stopped(shutdown.clone()));
    let accept = accept_loop(listener, daemon.clone(), plain_tx, tls_tx, shutdown);
    let (empty_loop, serving, ()) = tokio::join!(empty_loop, serving, accept);
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
    rx: mpsc::Receiver<UnixStream>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    Server::builder()
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
    Server::builder()
        // Large flow-control windows: a 1 MiB write or read streams without waiting on
        // window updates.
        .initial_stream_window_size(window)
        .initial_connection_window_size(window.saturating_mul(4))
        .layer(authz::AuthzLayer::new(daemon.capabilities.clone()))
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(incoming(rx), shutdown)
        .await?;
    Ok(())
}

async fn accept_loop(
    listener: UnixListener,
    daemon: Arc<Daemon>,
    plain_tx: mpsc::Sender<UnixStream>,
    tls_tx: mpsc::Sender<AuthenticatedStream>,
    shutdown: watch::Receiver<bool>,
) {
    let stop = stopped(shutdown);
    tokio::pin!(stop);
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
        let current = daemon.mode.borrow().clone();
        match current {
            Mode::EmptyLoop(_) => {
                let _ = plain_tx.send(stream).await;
            }
            Mode::Serving(config) => {
                let tls_tx = tls_tx.clone();
                let deadline = daemon.config.server.handshake_timeout;
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tls_tx.send(AuthenticatedStream::new(tls)).await;
                        }
                        Ok(Err(e)) => tracing::info!(error = %e, "TLS handshake refused"),
                        Err(_) => tracing::info!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
}
