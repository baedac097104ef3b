//! Connection exhaustion: neither a principal without rights nor anyone who can open the
//! socket may keep the node's admin out, even under a 1,024 file-descriptor limit.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aurae_client::{AuraeClient, Identity};
use aurae_proto::v0::StatusRequest;
use common::{Daemon, Layout, status_as, wait_serving};
use hyper_util::rt::TokioIo;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// A common default soft and hard limit; auraed raises soft to hard, so both are set.
const FD_LIMIT: u64 = 1024;
/// More connections than the daemon has descriptors.
const ATTACK: usize = 1_100;
/// How long one admin Status may take under attack.
const ADMIN_DEADLINE: Duration = Duration::from_secs(2);

/// The test process itself holds thousands of sockets: raise its own soft limit.
fn raise_own_fd_limit() {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
}

/// auraed on `layout` under `prlimit --nofile=1024:1024`, with `extra` flags; the
/// material exists before it starts.
async fn limited_daemon(layout: &Layout, extra: &[&str]) -> Daemon {
    layout.pki_init(&[]);
    let daemon = Daemon::start_with(layout, limited_command(layout, extra));
    wait_serving(layout, Duration::from_secs(5)).await;
    daemon
}

/// The auraed command of `layout` under `prlimit --nofile=1024:1024`, with `extra` flags.
fn limited_command(layout: &Layout, extra: &[&str]) -> Command {
    let auraed = layout.auraed_command();
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={FD_LIMIT}:{FD_LIMIT}"))
        .arg(auraed.get_program())
        .args(auraed.get_args())
        .args(extra)
        .stdin(Stdio::null());
    for (key, value) in auraed.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    cmd
}

/// How many descriptors process `pid` holds.
fn open_descriptors(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the daemon's descriptors")
        .count()
}

/// A zero-rights principal's identity, issued with `aurae pki issue`.
fn mallory(layout: &Layout) -> Identity {
    let pki = layout.pki_dir.to_str().expect("a UTF-8 temp path");
    let out = layout.aurae(&["pki", "issue", "mallory", "--pki-dir", pki]);
    assert!(
        out.status.success(),
        "pki issue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    layout.identity("mallory")
}

/// Completes one mTLS handshake as `identity` and returns the idle stream.
async fn tls_connection(
    sock: &std::path::Path,
    connector: TlsConnector,
) -> std::io::Result<TlsStream<UnixStream>> {
    let stream = UnixStream::connect(sock).await?;
    let name = ServerName::try_from(aurae_core::pki::SERVER_NAME).expect("a DNS name");
    connector.connect(name, stream).await
}

fn connector(identity: &Identity) -> TlsConnector {
    aurae_testkit::tls_connector(identity)
}

/// Opens `count` idle mTLS connections as `identity`, 32 at a time; returns those the
/// daemon completed (it may refuse some).
async fn idle_tls_connections(
    sock: &std::path::Path,
    identity: &Identity,
    count: usize,
) -> Vec<TlsStream<UnixStream>> {
    let connector = connector(identity);
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    let mut set = JoinSet::new();
    for _ in 0..count {
        let (sock, connector, permits) = (sock.to_owned(), connector.clone(), permits.clone());
        set.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            tokio::time::timeout(Duration::from_secs(5), tls_connection(&sock, connector))
                .await
                .ok()
                .and_then(Result::ok)
        });
    }
    let mut held = Vec::new();
    while let Some(done) = set.join_next().await {
        held.extend(done.expect("connection task"));
    }
    held
}

/// Opens `count` raw connections that never send a byte; returns those that connected.
async fn raw_connections(sock: &std::path::Path, count: usize) -> Vec<UnixStream> {
    let mut held = Vec::new();
    for _ in 0..count {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(200), UnixStream::connect(sock)).await
        {
            held.push(stream);
        }
    }
    held
}

/// Admin Status, as `aurae status` makes it (a fresh connection), `calls` times; each
/// must succeed within [`ADMIN_DEADLINE`]. Returns the slowest.
async fn admin_calls_succeed_quickly(layout: &Layout, calls: usize) -> Duration {
    let mut slowest = Duration::ZERO;
    for call in 0..calls {
        let start = Instant::now();
        let result = tokio::time::timeout(ADMIN_DEADLINE, status_as(layout, layout.admin())).await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("admin Status {call} failed under attack: {e}"),
            Err(_) => panic!("admin Status {call} took over {ADMIN_DEADLINE:?} under attack"),
        }
        slowest = slowest.max(start.elapsed());
    }
    slowest
}

#[tokio::test]
async fn the_admin_is_served_while_idle_and_raw_connections_hold_every_descriptor() {
    raise_own_fd_limit();
    let layout = Layout::new();
    let mut daemon = limited_daemon(&layout, &[]).await;
    let mallory = mallory(&layout);

    let tls = idle_tls_connections(&layout.sock, &mallory, ATTACK).await;
    let raw = raw_connections(&layout.sock, ATTACK).await;
    let slowest = admin_calls_succeed_quickly(&layout, 10).await;
    assert!(
        daemon.is_running(),
        "auraed died under attack; log:\n{}",
        daemon.log_text()
    );
    let daemon_fds = open_descriptors(daemon.pid());
    eprintln!(
        "opened {} mTLS and {} raw connections; auraed holds {daemon_fds} descriptors; \
         slowest admin Status {slowest:?}",
        tls.len(),
        raw.len()
    );
    assert!(
        daemon_fds < FD_LIMIT as usize / 2,
        "auraed holds {daemon_fds} of its {FD_LIMIT} descriptors under attack"
    );
    drop((tls, raw));
}

#[tokio::test]
async fn a_connection_that_never_speaks_is_dropped_at_the_handshake_deadline() {
    let (layout, _daemon) = common::serving_daemon().await;
    let mut raw = UnixStream::connect(&layout.sock).await.expect("connect");
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), raw.read(&mut buf)).await;
    let elapsed = start.elapsed();
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "the silent connection was not closed within 20 s: {read:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(9),
        "closed after {elapsed:?}, before the 10 s handshake deadline"
    );
}

/// A channel as `identity` that counts how often it dialled the daemon: a channel
/// reconnects silently, so the count is what tells whether its connection was closed.
async fn counting_channel(
    sock: &std::path::Path,
    identity: &Identity,
) -> (Channel, Arc<AtomicUsize>) {
    let dials = Arc::new(AtomicUsize::new(0));
    let (sock, connector, counter) = (sock.to_owned(), connector(identity), dials.clone());
    let channel = Endpoint::from_static("http://auraed")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            counter.fetch_add(1, Ordering::SeqCst);
            let (sock, connector) = (sock.clone(), connector.clone());
            async move { tls_connection(&sock, connector).await.map(TokioIo::new) }
        }))
        .await
        .expect("connect");
    (channel, dials)
}

#[tokio::test]
async fn an_idle_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_kept() {
    let layout = Layout::new();
    layout.pki_init(&[]);
    let mut cmd = layout.auraed_command();
    cmd.args(["--idle-timeout", "1"]);
    let _daemon = Daemon::start_with(&layout, cmd);
    wait_serving(&layout, Duration::from_secs(5)).await;
    let mallory = mallory(&layout);

    let mut idle = tls_connection(&layout.sock, connector(&mallory))
        .await
        .expect("handshake");
    let opened = Instant::now();
    let (channel, dials) = counting_channel(&layout.sock, &layout.admin()).await;
    let busy = async {
        let mut system = AuraeClient::from_channel(channel).system();
        while opened.elapsed() < Duration::from_secs(3) {
            system
                .status(StatusRequest {})
                .await
                .expect("status on the busy connection");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let closed = async {
        let mut buf = [0u8; 64];
        loop {
            // Session tickets may come first; the end of the stream is what counts.
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => return opened.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let ((), closed_after) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(busy, closed)
    })
    .await
    .expect("the idle connection was never closed");
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(3),
        "the idle connection was closed after {closed_after:?}, not about 1 s"
    );
    assert_eq!(
        dials.load(Ordering::SeqCst),
        1,
        "the busy connection was closed and dialled again"
    );
}

#[tokio::test]
async fn the_empty_loop_answers_status_while_silent_connections_outnumber_its_descriptors() {
    raise_own_fd_limit();
    let layout = Layout::new();
    let daemon = Daemon::start_with(&layout, limited_command(&layout, &[]));
    let held = raw_connections(&layout.sock, ATTACK).await;
    assert!(
        held.len() >= 1_000,
        "only {} connections opened",
        held.len()
    );
    for call in 0..10 {
        let answer = tokio::time::timeout(ADMIN_DEADLINE, common::plaintext_status(&layout)).await;
        match answer {
            Ok(Ok(status)) => assert!(!status.fix_command.is_empty()),
            Ok(Err(e)) => panic!("empty-loop Status {call} failed under attack: {e}"),
            Err(_) => panic!("empty-loop Status {call} took over {ADMIN_DEADLINE:?}"),
        }
    }
    let descriptors = open_descriptors(daemon.pid());
    assert!(descriptors < 512, "auraed holds {descriptors} descriptors");
}
