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
pub mod socket;

use std::sync::Arc;
use std::time::Duration;

use aurae_proto::v0::capabilities_server::CapabilitiesServer;
use aurae_proto::v0::filesystem_server::FilesystemServer;
use aurae_proto::v0::storage_server::StorageServer;
use aurae_proto::v0::system_server::SystemServer;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::capabilities::CapabilitiesService;
use crate::storage::FilesystemService;
use crate::storage::StorageService;
use crate::system::{Node, SystemService};
use connection::AuthenticatedStream;
use material::Mode;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handed over but not yet picked up by a router.
const HANDOFF_QUEUE: usize = 128;

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A router failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptors.
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves the socket until `shutdown` turns true.
pub async fn serve(
    listener: UnixListener,
    node: Arc<Node>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let (plain_tx, plain_rx) = mpsc::channel::<UnixStream>(HANDOFF_QUEUE);
    let (tls_tx, tls_rx) = mpsc::channel::<AuthenticatedStream>(HANDOFF_QUEUE);

    let empty_loop = empty_loop_router(node.clone(), plain_rx, stopped(shutdown.clone()));
    let serving = serving_router(node.clone(), tls_rx, stopped(shutdown.clone()));
    let accept = accept_loop(listener, node.mode.clone(), plain_tx, tls_tx, shutdown);
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
    node: Arc<Node>,
    rx: mpsc::Receiver<UnixStream>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    Server::builder()
        .add_service(health)
        .add_service(SystemServer::new(SystemService::new(node)))
        .serve_with_incoming_shutdown(incoming(rx), shutdown)
        .await?;
    Ok(())
}

/// HTTP/2 flow-control window of one stream, in bytes.
const FLOW_WINDOW: u32 = 8 << 20;

/// Every enabled capability, over mTLS, behind the authorization layer.
async fn serving_router(
    node: Arc<Node>,
    rx: mpsc::Receiver<AuthenticatedStream>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<SystemServer<SystemService>>().await;
    reporter
        .set_serving::<CapabilitiesServer<CapabilitiesService>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(aurae_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Server::builder()
        // Large flow-control windows: a 1 MiB write or read streams without waiting on
        // window updates.
        .initial_stream_window_size(FLOW_WINDOW)
        .initial_connection_window_size(FLOW_WINDOW * 4)
        .layer(authz::AuthzLayer::new(node.capabilities.clone()))
        .add_service(health)
        .add_service(SystemServer::new(SystemService::new(node.clone())))
        .add_service(CapabilitiesServer::new(CapabilitiesService::new(
            node.capabilities.clone(),
        )))
        .add_service(StorageServer::new(StorageService::new(node.store.clone())))
        .add_service(FilesystemServer::new(FilesystemService::new(
            node.store.clone(),
        )))
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .serve_with_incoming_shutdown(incoming(rx), shutdown)
        .await?;
    Ok(())
}

async fn accept_loop(
    listener: UnixListener,
    mode: watch::Receiver<Mode>,
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
        let current = mode.borrow().clone();
        match current {
            Mode::EmptyLoop(_) => {
                let _ = plain_tx.send(stream).await;
            }
            Mode::Serving(config) => {
                let tls_tx = tls_tx.clone();
                tokio::spawn(async move {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
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
