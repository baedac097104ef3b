//! The empty loop's plaintext connections: a bounded set, oldest out first.
//!
//! Without certificate material auraed answers health and status to anyone who can open
//! the socket, in plaintext. Anyone can also open connections and never close them; each
//! holds a descriptor. So the empty loop keeps at most a bounded number of them, and a
//! new connection closes the oldest one (a status call takes milliseconds, so the oldest
//! is the likeliest to be idle): a person asking `aurae status` among thousands of
//! silent connections still gets an answer. This module never decides what a connection
//! may ask; it only bounds how many stay open.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

use super::authority::AuthorityRepair;

/// The open plaintext connections, at most `limit` at once.
#[derive(Debug, Clone)]
pub struct PlainConnections {
    shared: Arc<Mutex<Open>>,
    limit: usize,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    /// By arrival: the first entry is the oldest.
    streams: BTreeMap<u64, Arc<Eviction>>,
}

/// Whether a connection was closed to make room, and who to wake when it is.
#[derive(Debug, Default)]
struct Eviction {
    evicted: AtomicBool,
    reader: Mutex<Option<Waker>>,
}

impl Eviction {
    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        let reader = self
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(reader) = reader {
            reader.wake();
        }
    }

    fn is_evicted(&self) -> bool {
        self.evicted.load(Ordering::Acquire)
    }
}

impl PlainConnections {
    /// An empty set holding at most `limit` (at least one) connections.
    pub fn new(limit: usize) -> Self {
        Self {
            shared: Arc::default(),
            limit: limit.max(1),
        }
    }

    /// Admits `stream`, closing the oldest open connection if the set is full.
    pub fn admit(&self, stream: UnixStream) -> PlainStream {
        let mut open = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        while open.streams.len() >= self.limit {
            if let Some((_, oldest)) = open.streams.pop_first() {
                oldest.evict();
            }
        }
        let id = open.next;
        open.next += 1;
        let eviction = Arc::new(Eviction::default());
        open.streams.insert(id, eviction.clone());
        PlainStream {
            inner: AuthorityRepair::new(stream),
            id,
            eviction,
            shared: self.shared.clone(),
        }
    }

    /// How many connections are open now.
    pub fn len(&self) -> usize {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .streams
            .len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One plaintext connection of the empty loop: it fails its reads and writes once a newer
/// connection evicted it, and leaves the set when dropped. Its client's `:authority` is
/// repaired for h2 (see [`AuthorityRepair`]).
#[derive(Debug)]
pub struct PlainStream {
    inner: AuthorityRepair<UnixStream>,
    id: u64,
    eviction: Arc<Eviction>,
    shared: Arc<Mutex<Open>>,
}

impl PlainStream {
    fn evicted() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "closed to make room for a newer connection",
        )
    }
}

impl Drop for PlainStream {
    fn drop(&mut self) {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .streams
            .remove(&self.id);
    }
}

impl Connected for PlainStream {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for PlainStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // The server always waits on a read: register there, so an eviction wakes it.
        *self
            .eviction
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
        if self.eviction.is_evicted() {
            return Poll::Ready(Err(Self::evicted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PlainStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.eviction.is_evicted() {
            return Poll::Ready(Err(Self::evicted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_full_set_closes_its_oldest_connection_and_keeps_the_rest() {
        let plain = PlainConnections::new(2);
        let mut peers = Vec::new();
        let mut admitted = Vec::new();
        for _ in 0..3 {
            let (ours, theirs) = UnixStream::pair().unwrap();
            peers.push(theirs);
            admitted.push(plain.admit(ours));
        }
        assert_eq!(plain.len(), 2);
        let mut buf = [0u8; 1];
        let oldest = admitted[0].read(&mut buf).await.unwrap_err();
        assert_eq!(oldest.kind(), std::io::ErrorKind::ConnectionAborted);
        let quick = std::time::Duration::from_millis(50);
        assert!(
            tokio::time::timeout(quick, admitted[1].read(&mut buf))
                .await
                .is_err(),
            "a younger connection stays open (its read just waits)"
        );
        admitted.clear();
        assert!(plain.is_empty(), "closed connections leave the set");
    }
}
