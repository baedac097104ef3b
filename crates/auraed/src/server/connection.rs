//! A TLS connection that knows who is on the other end.
//!
//! The principal is read from the client certificate once, when the handshake is done,
//! instead of parsing the certificate again for every request the connection carries.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use aurae_core::name::Principal;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

/// Who a connection authenticated as, or why it has no principal; every request on the
/// connection finds it in its extensions.
#[derive(Debug, Clone)]
pub struct ConnectionPrincipal(Arc<Result<Principal, String>>);

impl ConnectionPrincipal {
    /// The principal, or why there is none.
    pub fn get(&self) -> Result<&Principal, &str> {
        self.0.as_ref().as_ref().map_err(String::as_str)
    }
}

/// An accepted mTLS connection with its principal.
#[derive(Debug)]
pub struct AuthenticatedStream {
    inner: TlsStream<UnixStream>,
    principal: ConnectionPrincipal,
}

impl AuthenticatedStream {
    /// Reads the principal of `inner`'s client certificate.
    pub fn new(inner: TlsStream<UnixStream>) -> Self {
        let principal = inner
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .ok_or_else(|| "no client certificate".to_owned())
            .and_then(|leaf| aurae_core::pki::principal_of(leaf).map_err(|e| e.to_string()));
        Self {
            inner,
            principal: ConnectionPrincipal(Arc::new(principal)),
        }
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthenticatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
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
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
