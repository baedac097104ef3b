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

/// An accepted mTLS connection with its principal, admitted to the connection registry.
/// The HTTP/2 bytes inside TLS have their client's `:authority` repaired for h2 (see
/// [`AuthorityRepair`]).
#[derive(Debug)]
pub struct AuthenticatedStream {
    inner: AuthorityRepair<TlsStream<UnixStream>>,
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
        Self {
            inner: AuthorityRepair::new(inner),
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.open.state().is_closed() {
            return Poll::Ready(Err(Self::closed()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
