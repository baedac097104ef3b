//! Exhaustion benchmark: the admin's `System/Status` on an idle daemon against the same
//! under attack, with auraed limited to 1,024 descriptors (soft = hard, as many hosts
//! default): 1,100 idle mTLS connections of a principal without rights plus 1,100 raw
//! connections that never send a byte, and then the same attacker reconnecting
//! whatever the daemon closes. Target: admin Status p50 under attack within 2x of idle,
//! with no call failing (p99 is printed beside it).
//!
//! Run with `bench/run` (or `cargo bench -p auraed --bench exhaustion`). Prints one table
//! with the ratios; it measures, it does not assert.

#[path = "common.rs"]
mod common;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aurae_client::{AuraeClient, Identity};
use aurae_core::pki::SERVER_NAME;
use aurae_proto::v0::StatusRequest;
use common::{healthy, issue, percentile, quiet_auraed, setup};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use rustls::pki_types::ServerName;
use tokio::net::UnixStream;
use tokio_rustls::TlsConnector;

const FD_LIMIT: u64 = 1024;
/// Connections of each kind the attacker opens.
const ATTACK: usize = 1_100;
/// Admin Status calls on a fresh connection each, as `aurae status` makes them.
const FRESH_CALLS: usize = 200;
/// Admin Status calls on one warm connection.
const WARM_CALLS: usize = 2_000;
/// A call slower than this counts as timed out.
const CALL_DEADLINE: Duration = Duration::from_secs(5);

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// auraed under `prlimit --nofile=1024:1024`: it raises soft to hard, so both are set.
fn spawn_limited(root: &Path, sock: &Path) -> Child {
    let mut prlimit = Command::new("prlimit");
    prlimit
        .arg(format!("--nofile={FD_LIMIT}:{FD_LIMIT}"))
        .arg(env!("CARGO_BIN_EXE_auraed"));
    quiet_auraed(prlimit, root, sock)
        .spawn()
        .expect("spawn auraed under prlimit (util-linux)")
}

/// A principal without rights, issued by the bench's CA.
fn mallory(root: &Path) -> Identity {
    issue(root, "mallory@bench@local", "mallory")
}

fn connector(identity: &Identity) -> TlsConnector {
    aurae_testkit::tls_connector(identity)
}

/// What one admin measurement saw: sorted latencies of the calls that answered in time,
/// and how many did not.
struct Calls {
    times: Vec<Duration>,
    failed: usize,
}

impl Calls {
    fn row(&self, what: &str, idle: Option<&Calls>) {
        if self.times.is_empty() {
            println!(
                "{what:<52} {:>10} {:>10}   all {} calls failed",
                "-", "-", self.failed
            );
            return;
        }
        let (p50, p99) = (percentile(&self.times, 0.5), percentile(&self.times, 0.99));
        let mut line = format!("{what:<52} {:>10} {:>10}", millis(p50), millis(p99));
        if let Some(idle) = idle {
            let r50 = p50.as_secs_f64() / percentile(&idle.times, 0.5).as_secs_f64();
            let r99 = p99.as_secs_f64() / percentile(&idle.times, 0.99).as_secs_f64();
            // The target is the issue's: p50 within 2x of idle, and no call lost; p99 is
            // shown beside it.
            let ok = r50 <= 2.0 && self.failed == 0;
            line.push_str(&format!(
                "   p50 {r50:.1}x (p99 {r99:.1}x) of idle, {} failed: {}",
                self.failed,
                if ok { "meets target" } else { "MISSES target" }
            ));
        }
        println!("{line}");
    }
}

/// Admin Status on a fresh connection per call (connect, handshake, call).
async fn fresh_status(sock: &Path, admin: &Identity) -> Calls {
    let mut calls = Calls {
        times: Vec::with_capacity(FRESH_CALLS),
        failed: 0,
    };
    for _ in 0..FRESH_CALLS {
        let start = Instant::now();
        let call = async {
            let channel = aurae_client::connect_mtls(sock, admin).await.ok()?;
            let mut system = AuraeClient::from_channel(channel).system();
            system.status(StatusRequest {}).await.ok()
        };
        match tokio::time::timeout(CALL_DEADLINE, call).await {
            Ok(Some(_)) => calls.times.push(start.elapsed()),
            _ => calls.failed += 1,
        }
    }
    calls.times.sort();
    calls
}

/// Admin Status on one warm connection.
async fn warm_status(sock: &Path, admin: &Identity) -> Calls {
    let channel = aurae_client::connect_mtls(sock, admin)
        .await
        .expect("connect");
    let mut system = AuraeClient::from_channel(channel).system();
    for _ in 0..100 {
        system.status(StatusRequest {}).await.expect("status");
    }
    let mut calls = Calls {
        times: Vec::with_capacity(WARM_CALLS),
        failed: 0,
    };
    for _ in 0..WARM_CALLS {
        let start = Instant::now();
        match tokio::time::timeout(CALL_DEADLINE, system.status(StatusRequest {})).await {
            Ok(Ok(_)) => calls.times.push(start.elapsed()),
            _ => calls.failed += 1,
        }
    }
    calls.times.sort();
    calls
}

/// An attacker on a thread of its own (so that it does not share the measuring
/// client's thread), stopped and joined on drop.
struct Attacker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Connections it opened (handshakes completed, for mTLS).
    opened: Arc<AtomicUsize>,
}

/// How the attacker behaves once its connections are open.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Holds what it opened.
    Hold,
    /// Keeps opening new connections, dropping its oldest beyond `ATTACK` of each kind.
    Reconnect,
}

impl Attacker {
    /// Opens `ATTACK` idle mTLS connections as `mallory` and `ATTACK` raw ones; returns
    /// once they are open.
    fn start(sock: PathBuf, mallory: Identity, behaviour: Behaviour) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop2, opened2) = (stop.clone(), opened.clone());
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("attacker runtime")
                .block_on(attack(sock, mallory, behaviour, stop2, opened2, ready_tx));
        });
        ready_rx
            .recv()
            .expect("the attacker opened its connections");
        Self {
            stop,
            thread: Some(thread),
            opened,
        }
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn tls_once(sock: &Path, connector: &TlsConnector) -> Option<impl Sized + use<>> {
    let open = async {
        let stream = UnixStream::connect(sock).await.ok()?;
        let name = ServerName::try_from(SERVER_NAME).ok()?;
        connector.connect(name, stream).await.ok()
    };
    tokio::time::timeout(Duration::from_secs(2), open)
        .await
        .ok()
        .flatten()
}

async fn raw_once(sock: &Path) -> Option<UnixStream> {
    tokio::time::timeout(Duration::from_millis(200), UnixStream::connect(sock))
        .await
        .ok()?
        .ok()
}

async fn attack(
    sock: PathBuf,
    mallory: Identity,
    behaviour: Behaviour,
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicUsize>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let connector = connector(&mallory);
    let mut tls = VecDeque::new();
    let mut raw = VecDeque::new();
    for _ in 0..ATTACK {
        if let Some(stream) = tls_once(&sock, &connector).await {
            tls.push_back(stream);
            opened.fetch_add(1, Ordering::Relaxed);
        }
    }
    for _ in 0..ATTACK {
        if let Some(stream) = raw_once(&sock).await {
            raw.push_back(stream);
            opened.fetch_add(1, Ordering::Relaxed);
        }
    }
    let _ = ready.send(());
    while !stop.load(Ordering::SeqCst) {
        if behaviour == Behaviour::Hold {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        if let Some(stream) = tls_once(&sock, &connector).await {
            tls.push_back(stream);
            opened.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(stream) = raw_once(&sock).await {
            raw.push_back(stream);
            opened.fetch_add(1, Ordering::Relaxed);
        }
        while tls.len() > ATTACK {
            tls.pop_front();
        }
        while raw.len() > ATTACK {
            raw.pop_front();
        }
    }
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(Iterator::count)
        .unwrap_or(0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("exhaustion: bench");
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise the bench's own limit");
    let setup = setup();
    let mallory = mallory(&setup.root);
    let sock = setup.root.join("aurae.sock");
    let mut daemon = spawn_limited(&setup.root, &sock);
    while !healthy(&sock, &setup.admin).await {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let idle_fresh = fresh_status(&sock, &setup.admin).await;
    let idle_warm = warm_status(&sock, &setup.admin).await;

    let holding = Attacker::start(sock.clone(), mallory.clone(), Behaviour::Hold);
    let held_fds = open_descriptors(daemon.id());
    let held_fresh = fresh_status(&sock, &setup.admin).await;
    let held_warm = warm_status(&sock, &setup.admin).await;
    let held_opened = holding.opened.load(Ordering::Relaxed);
    drop(holding);

    let reconnecting = Attacker::start(sock.clone(), mallory, Behaviour::Reconnect);
    let before = reconnecting.opened.load(Ordering::Relaxed);
    let started = Instant::now();
    let churn_fresh = fresh_status(&sock, &setup.admin).await;
    let churn_warm = warm_status(&sock, &setup.admin).await;
    let churn_rate = (reconnecting.opened.load(Ordering::Relaxed) - before) as f64
        / started.elapsed().as_secs_f64();
    let churn_fds = open_descriptors(daemon.id());
    drop(reconnecting);
    let alive = daemon.try_wait().ok().flatten().is_none();
    let _ = daemon.kill();
    let _ = daemon.wait();

    println!();
    println!(
        "Aurae exhaustion benchmark (auraed at {FD_LIMIT} descriptors; attacker: {ATTACK} idle \
         zero-rights mTLS + {ATTACK} raw connections)"
    );
    println!("{:<52} {:>10} {:>10}", "admin System/Status", "p50", "p99");
    idle_fresh.row(
        &format!("idle, fresh connection per call ({FRESH_CALLS})"),
        None,
    );
    idle_warm.row(&format!("idle, warm connection ({WARM_CALLS})"), None);
    held_fresh.row("held attack, fresh connection per call", Some(&idle_fresh));
    held_warm.row("held attack, warm connection", Some(&idle_warm));
    churn_fresh.row(
        "reconnecting attack, fresh connection per call",
        Some(&idle_fresh),
    );
    churn_warm.row("reconnecting attack, warm connection", Some(&idle_warm));
    println!(
        "attacker opened {held_opened} connections (held); auraed then held {held_fds} descriptors"
    );
    println!(
        "reconnecting attacker opened {churn_rate:.0} connections/s; auraed then held {churn_fds} \
         descriptors; auraed {}",
        if alive { "still up" } else { "DIED" }
    );
}
