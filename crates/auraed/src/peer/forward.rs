//! Calls to other peers' APIs: a local client marks a request with the `aurae-peer`
//! header (`aurae --peer node2 ...`), and this layer, in front of the authorization
//! layer, sends it over a libp2p stream to that peer's auraed instead of serving it here.
//!
//! The caller needs `peer.forward` here; the remote node then authorizes the call as
//! the principal it trusts this node's PeerId as. The request and its reply (streams
//! included) pass through untouched, so a remote call behaves exactly like a local one.
//! A call that arrived from a remote peer is never forwarded again (one hop).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use libp2p::PeerId;
use tokio_util::compat::FuturesAsyncReadCompatExt as _;
use tonic::transport::{Channel, Endpoint};
use tower::{Layer, Service, ServiceExt as _};

use crate::context::Daemon;
use crate::server::authz::Decider;
use crate::server::connection::ConnectionPrincipal;

pub use aurae_core::address::PEER_HEADER;

/// How long a peer name resolved for forwarding is used before it is looked up again.
const NAME_TTL: Duration = Duration::from_secs(60);

/// One HTTP/2 connection per remote peer, made on first use and kept, and the peer names
/// recently resolved: a call to a known peer costs no lookup and no trip to the swarm.
#[derive(Debug, Default)]
pub struct Channels {
    open: Mutex<HashMap<PeerId, Channel>>,
    names: Mutex<HashMap<String, (PeerId, Instant)>>,
}

impl Channels {
    /// Drops every connection and resolved name (the swarm stopped).
    pub fn clear(&self) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Drops the connection to `peer` (it failed) and the names resolved to it.
    pub fn forget(&self, peer: &PeerId) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(peer);
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (id, _)| id != peer);
    }

    /// The open connection to `peer`, if there is one.
    fn existing(&self, peer: &PeerId) -> Option<Channel> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(peer)
            .cloned()
    }

    /// The PeerId `name` was resolved to within the last minute.
    fn resolved(&self, name: &str) -> Option<PeerId> {
        let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
        names
            .get(name)
            .filter(|(_, at)| at.elapsed() < NAME_TTL)
            .map(|(peer, _)| *peer)
    }

    fn remember(&self, name: &str, peer: PeerId) {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), (peer, Instant::now()));
    }

    /// The connection to `peer`, made lazily over the swarm of `daemon`.
    pub fn get(&self, daemon: &Arc<Daemon>, peer: PeerId) -> Channel {
        let daemon_window = daemon.config.server.flow_window;
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.entry(peer)
            .or_insert_with(|| {
                let daemon = daemon.clone();
                let connector = tower::service_fn(move |_: http::Uri| {
                    let daemon = daemon.clone();
                    async move {
                        let network = daemon
                            .peer
                            .network()
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        let stream = network
                            .open_grpc(peer)
                            .await
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        Ok::<_, std::io::Error>(TokioIo::new(stream.compat()))
                    }
                });
                Endpoint::from_static("http://aurae.peer")
                    // The same windows as the serving side's: a remote read or write
                    // streams without waiting on window updates (yamux has its own).
                    .initial_stream_window_size(daemon_window)
                    .initial_connection_window_size(daemon_window.saturating_mul(4))
                    .connect_with_connector_lazy(connector)
            })
            .clone()
    }
}

/// Puts [`Forward`] in front of a service.
#[derive(Debug, Clone)]
pub struct ForwardLayer {
    daemon: Arc<Daemon>,
    decider: Arc<Decider>,
}

impl ForwardLayer {
    /// Forwards with `daemon`'s swarm, authorizing with `decider`.
    pub fn new(daemon: Arc<Daemon>, decider: Arc<Decider>) -> Self {
        Self { daemon, decider }
    }
}

impl<S> Layer<S> for ForwardLayer {
    type Service = Forward<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Forward {
            inner,
            daemon: self.daemon.clone(),
            decider: self.decider.clone(),
        }
    }
}

/// Sends requests marked for another peer there; serves the rest with `inner`.
#[derive(Debug, Clone)]
pub struct Forward<S> {
    inner: S,
    daemon: Arc<Daemon>,
    decider: Arc<Decider>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> Service<http::Request<tonic::body::Body>> for Forward<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let Some(target) = request.headers_mut().remove(PEER_HEADER) else {
            let response = self.inner.call(request);
            return Box::pin(response);
        };
        let daemon = self.daemon.clone();
        let decider = self.decider.clone();
        Box::pin(async move {
            Ok(match forward(daemon, decider, target, request).await {
                Ok(response) => response,
                Err(status) => status.into_http(),
            })
        })
    }
}

async fn forward(
    daemon: Arc<Daemon>,
    decider: Arc<Decider>,
    target: http::HeaderValue,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<tonic::body::Body>, tonic::Status> {
    let from_remote = request
        .extensions()
        .get::<ConnectionPrincipal>()
        .is_some_and(|c| c.connection().info().remote_peer.is_some());
    if from_remote {
        return Err(tonic::Status::permission_denied(
            "a call from a remote peer cannot be forwarded to another peer (one hop only)",
        ));
    }
    decider
        .check_permission(
            request.extensions(),
            &super::CAPABILITY,
            &super::PEER_FORWARD,
        )
        .map_err(|status| {
            tonic::Status::new(
                status.code(),
                format!("calling another peer: {}", status.message()),
            )
        })?;
    let target = target.to_str().map_err(|_| {
        tonic::Status::invalid_argument(format!("the {PEER_HEADER} header is not text"))
    })?;
    let channels = &daemon.peer.channels;
    let known = channels
        .resolved(target)
        .and_then(|peer| channels.existing(&peer).map(|channel| (peer, channel)));
    let (peer, channel) = match known {
        Some(known) => known,
        None => {
            let address = super::parse_peer(target)?;
            let (peer, addrs, _, _) = super::resolve_peer(&daemon, &address).await?;
            let network = daemon.peer.network().map_err(|e| e.to_status())?;
            if peer == network.local_peer_id() {
                return Err(tonic::Status::invalid_argument(format!(
                    "'{target}' is this node; leave out --peer"
                )));
            }
            if channels.existing(&peer).is_none() {
                network
                    .dial_peer(peer, &addrs)
                    .await
                    .map_err(|e| e.to_status())?;
            }
            channels.remember(target, peer);
            (peer, channels.get(&daemon, peer))
        }
    };
    let (mut parts, body) = request.into_parts();
    parts.extensions = http::Extensions::new();
    let request = http::Request::from_parts(parts, body);
    match channel.oneshot(request).await {
        Ok(response) => Ok(response.map(tonic::body::Body::new)),
        Err(e) => {
            daemon.peer.channels.forget(&peer);
            Err(tonic::Status::unavailable(format!(
                "cannot reach peer '{target}' ({peer}): {e}"
            )))
        }
    }
}
