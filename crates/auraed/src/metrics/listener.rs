//! The listener for scrapers (`auraed --metrics-listen ADDR`): `GET /metrics` over plain
//! HTTP/1.1, answered with the same text as `aurae metrics`; 404 for any other path.
//!
//! It is off unless asked for. It has no authentication, so an address other than
//! loopback exposes the node's metrics to whoever can reach it: that must be given
//! explicitly on the command line, and is said in the log. It runs on a thread and a
//! runtime of its own, never on the socket server's (which is single-threaded): a slow or
//! hostile scraper can never stall a gRPC call. It holds at most
//! [`MAX_CONNECTIONS`] connections, closes each after one response, and drops a client
//! that does not send its request headers within [`HEADER_TIMEOUT`], so it cannot be
//! made to hold the daemon's file descriptors.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, oneshot};

use super::MetricsError;
use super::render;
use crate::context::Daemon;

/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 16;

/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The path scrapers read.
pub const PATH: &str = "/metrics";

/// The running listener; dropping it stops it (and waits for its thread).
#[derive(Debug)]
pub struct MetricsListener {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsListener {
    /// Binds `addr` now (so that a bad address is reported at once, and port 0 is
    /// resolved) and serves `daemon`'s metrics there from a thread of its own.
    pub fn start(addr: SocketAddr, daemon: Arc<Daemon>) -> Result<Self, MetricsError> {
        let bind_failed = |source| MetricsError::Bind { addr, source };
        let listener = std::net::TcpListener::bind(addr).map_err(bind_failed)?;
        listener.set_nonblocking(true).map_err(bind_failed)?;
        let bound = listener.local_addr().map_err(bind_failed)?;
        if !bound.ip().is_loopback() {
            tracing::warn!(
                addr = %bound,
                "metrics listener on a non-loopback address: anyone who can reach it reads the node's metrics (RPC counts, capabilities, store activity) without authentication"
            );
        }
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("metrics-http".to_owned())
            .spawn(move || run(listener, daemon, stopped))
            .map_err(MetricsError::Thread)?;
        tracing::info!(addr = %bound, path = PATH, "metrics listener bound");
        Ok(Self {
            addr: bound,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port resolved when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsListener {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the listener on `addr` when one is given. A failure is logged and the daemon
/// serves on without it: the metrics stay readable with `aurae metrics`.
pub fn start_if_asked(addr: Option<SocketAddr>, daemon: &Arc<Daemon>) -> Option<MetricsListener> {
    match MetricsListener::start(addr?, daemon.clone()) {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::error!(error = %e, "metrics listener not started; metrics stay readable with `aurae metrics`");
            None
        }
    }
}

/// The listener thread: its own single-threaded runtime, until `stopped`.
fn run(listener: std::net::TcpListener, daemon: Arc<Daemon>, stopped: oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return tracing::error!(error = %e, "cannot start the metrics listener's runtime; metrics stay readable with `aurae metrics`");
        }
    };
    runtime.block_on(accept_loop(listener, daemon, stopped));
}

async fn accept_loop(
    listener: std::net::TcpListener,
    daemon: Arc<Daemon>,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => return tracing::error!(error = %e, "metrics listener cannot serve"),
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => return,
        };
        let daemon = daemon.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let daemon = daemon.clone();
                async move { Ok::<_, Infallible>(answer(&request, &daemon)) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
            drop(slot);
        });
    }
}

/// The response to one request.
fn answer(request: &Request<Incoming>, daemon: &Daemon) -> Response<Full<Bytes>> {
    if request.uri().path() != PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at GET /metrics\n",
        );
    }
    if request.method() != Method::GET {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
        return response;
    }
    match render::render(daemon) {
        Ok(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(render::CONTENT_TYPE),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render the metrics");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the metrics\n",
            )
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
