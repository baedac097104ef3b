//! A TLS connection that knows who is on the other end.
//!
//! The principal is read from the client certificate once, when the handshake is done,
//! instead of parsing the certificate again for every request the connection carries.
//! The stream belongs to an admitted connection of the
//! [`ConnectionRegistry`](super::connections::ConnectionRegistry): once the registry
//! closes it, every read and write fails, and dropping it leaves the registry.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aurae_core::name::Principal;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio_rustls::server::TlsStream;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt as _};
use tonic::transport::server::Connected;

use super::authority::AuthorityRepair;
use super::connections::{ConnectionState, OpenConnection, Role};

/// Who a connection authenticated as, or why it has no principal, and the connection's
/// live state; every request on the connection finds it in its extensions.
#[derive(Debug, Clone)]
pub struct ConnectionPrincipal {
    principal: Arc<Result<Principal, String>>,
    connection: Arc<ConnectionState>,
}

impl ConnectionPrincipal {
    /// The principal, or why there is none.
    pub fn get(&self) -> Result<&Principal, &str> {
        self.principal.as_ref().as_ref().map_err(String::as_str)
    }

    /// The principal's role on this node, decided at the handshake.
    pub fn role(&self) -> Role {
        self.connection.info().role
    }

    /// The connection's live state: requests mark it active.
    pub fn connection(&self) -> &Arc<ConnectionState> {
        &self.connection
    }
}

/// What a client certificate says: the leaf certificate, and the principal it names or
/// why it names none. `None` when the client presented no certificate.
pub fn client_of(
    tls: &TlsStream<UnixStream>,
) -> Option<(CertificateDer<'static>, Result<Principal, String>)> {
    let leaf = tls.get_ref().1.peer_certificates()?.first()?;
    let principal = aurae_core::pki::principal_of(leaf).map_err(|e| e.to_string());
    Some((leaf.clone().into_owned(), principal))
}

/// The bytes under an authenticated connection.
#[derive(Debug)]
enum Transport {
    /// mTLS on the socket. The HTTP/2 bytes inside TLS have their client's `:authority`
    /// repaired for h2 (see [`AuthorityRepair`]).
    Tls(Box<AuthorityRepair<TlsStream<UnixStream>>>),
    /// A remote peer's libp2p stream (`/aurae/grpc/1.0.0`), encrypted and authenticated
    /// by the swarm's noise handshake.
    Peer(Compat<libp2p::Stream>),
}

/// An authenticated connection with its principal, admitted to the connection registry:
/// an mTLS connection on the socket, or a remote peer's stream.
#[derive(Debug)]
pub struct AuthenticatedStream {
    inner: Transport,
    principal: ConnectionPrincipal,
    /// Leaves the registry when the stream is dropped.
    open: OpenConnection,
}

impl AuthenticatedStream {
    /// `inner`, whose client certificate names `principal` (or why it names none),
    /// admitted to the registry as `open`.
    pub fn new(
        inner: TlsStream<UnixStream>,
        principal: Result<Principal, String>,
        open: OpenConnection,
    ) -> Self {
        Self::with_transport(
            Transport::Tls(Box::new(AuthorityRepair::new(inner))),
            principal,
            open,
        )
    }

    /// A remote peer's stream, whose PeerId is trusted as `principal` (or why not),
    /// admitted to the registry as `open`.
    pub fn remote(
        stream: libp2p::Stream,
        principal: Result<Principal, String>,
        open: OpenConnection,
    ) -> Self {
        Self::with_transport(Transport::Peer(stream.compat()), principal, open)
    }

    fn with_transport(
        inner: Transport,
        principal: Result<Principal, String>,
        open: OpenConnection,
    ) -> Self {
        Self {
            inner,
            principal: ConnectionPrincipal {
                principal: Arc::new(principal),
                connection: open.state().clone(),
            },
            open,
        }
    }

    fn closed() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "connection closed by the daemon",
        )
    }
}

impl Connected for AuthenticatedStream {
    type ConnectInfo = ConnectionPrincipal;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.principal.clone()
    }
}

impl AsyncRead for AuthenticatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // The server always waits on a read: register there, so a close wakes it.
        let state = self.open.state();
        state.register_waker(cx.waker());
        if state.is_closed() {
            return Poll::Ready(Err(Self::closed()));
        }
        match &mut self.inner {
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Transport::Peer(peer) => Pin::new(peer).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for AuthenticatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.open.state().is_closed() {
            return Poll::Ready(Err(Self::closed()));
        }
        match &mut self.inner {
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Transport::Peer(peer) => Pin::new(peer).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Transport::Peer(peer) => Pin::new(peer).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Transport::Peer(peer) => Pin::new(peer).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.open.state().is_closed() {
            return Poll::Ready(Err(Self::closed()));
        }
        match &mut self.inner {
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
            Transport::Peer(peer) => Pin::new(peer).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Transport::Tls(tls) => tls.is_write_vectored(),
            Transport::Peer(peer) => peer.is_write_vectored(),
        }
    }
}
