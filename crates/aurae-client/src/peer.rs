//! Calls for another peer: the same connection to the local auraed, with every request
//! marked with the `aurae-peer` header, which the daemon forwards over its libp2p swarm to
//! that peer's auraed. Every service's client works unchanged over it.

use std::task::{Context, Poll};

use http::HeaderValue;
use tower::Service;

pub use aurae_core::address::PEER_HEADER;

/// A connection to auraed: calls are served there, or by the peer it names.
#[derive(Debug, Clone)]
pub struct Channel {
    inner: tonic::transport::Channel,
    peer: Option<HeaderValue>,
}

impl Channel {
    /// Calls over `inner` served by the local daemon.
    pub fn local(inner: tonic::transport::Channel) -> Self {
        Self { inner, peer: None }
    }

    /// Calls over `inner` served by `peer` (`<peer>[@<domain>]` or a PeerId); `None` when
    /// the text cannot be a header value (the caller validated it first).
    pub fn to_peer(inner: tonic::transport::Channel, peer: &str) -> Option<Self> {
        Some(Self {
            inner,
            peer: Some(HeaderValue::from_str(peer).ok()?),
        })
    }

    /// The transport channel under it.
    pub fn inner_channel(&self) -> tonic::transport::Channel {
        self.inner.clone()
    }

    /// The peer calls go to, if not the local daemon.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_ref().and_then(|v| v.to_str().ok())
    }
}

impl Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = <tonic::transport::Channel as Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<http::Request<tonic::body::Body>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        if let Some(peer) = &self.peer {
            request.headers_mut().insert(PEER_HEADER, peer.clone());
        }
        self.inner.call(request)
    }
}
