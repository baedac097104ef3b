//! Shared set-up of the benchmarks: PKI in a temporary directory, auraed started on a
//! temporary socket, percentiles, and the cross-process Unix-socket echo that is the
//! floor of any call answered over the socket.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aurae_client::{AuraeClient, Identity};
use aurae_core::name::Principal;
use aurae_core::pki::{self, NodeNames, Overwrite, PkiPaths, Validity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

/// A PKI directory with an admin identity, in a temporary directory.
pub struct Setup {
    pub _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub admin: Identity,
}

/// Creates the CA, server and admin certificates.
pub fn setup() -> Setup {
    setup_as("bench")
}

/// Creates the CA, server and admin certificates of node `<peer>@local`: several nodes
/// in one benchmark need names of their own.
pub fn setup_as(peer: &str) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_owned();
    let paths = PkiPaths::new(root.join("pki"));
    let names = NodeNames {
        peer: peer.parse().expect("a peer name"),
        domain: "local".parse().unwrap(),
    };
    pki::init_server_material(&paths, &names, Overwrite::Refuse).expect("pki");
    let admin = issue(&root, &format!("admin@{peer}@local"), "admin");
    Setup {
        _dir: dir,
        root,
        admin,
    }
}

/// Starts auraed (quiet) with material present.
pub fn spawn_auraed(auraed: &str, root: &Path, sock: &Path) -> Child {
    quiet_auraed(Command::new(auraed), root, sock)
        .spawn()
        .expect("spawn auraed")
}

/// `command` (auraed, or a wrapper such as prlimit followed by auraed) given the
/// daemon's flags for `root` and `sock`, logging only warnings, to nowhere.
pub fn quiet_auraed(mut command: Command, root: &Path, sock: &Path) -> Command {
    command
        .arg("--sock")
        .arg(sock)
        .arg("--pki-dir")
        .arg(root.join("pki"))
        .arg("--data-dir")
        .arg(root.join("data"))
        .arg("--key")
        .arg(root.join("id_aura"))
        .stdout(Stdio::null());
    // `AURAE_BENCH_DAEMON_LOG=FILE` keeps the daemon's debug log there, to see where time goes.
    match std::env::var_os("AURAE_BENCH_DAEMON_LOG").map(std::fs::File::create) {
        Some(Ok(file)) => command.env("RUST_LOG", "debug").stderr(file),
        _ => command.env("RUST_LOG", "warn").stderr(Stdio::null()),
    };
    command
}

/// A client identity for `principal`, issued by the CA under `root` into `<name>.crt`
/// and `<name>.key` there.
pub fn issue(root: &Path, principal: &str, name: &str) -> Identity {
    let paths = PkiPaths::new(root.join("pki"));
    let ca = pki::CertificateAuthority::load(&paths).expect("load the CA");
    let principal: Principal = principal.parse().expect("a principal");
    let identity = Identity {
        ca_cert: paths.file("ca.crt"),
        client_cert: root.join(format!("{name}.crt")),
        client_key: root.join(format!("{name}.key")),
    };
    ca.issue_client(&principal, Validity::days(1))
        .expect("issue a client certificate")
        .write(&identity.client_cert, &identity.client_key)
        .expect("write it");
    identity
}

/// Whether auraed answers SERVING over mTLS.
pub async fn healthy(sock: &Path, admin: &Identity) -> bool {
    let Ok(channel) = aurae_client::connect_mtls(sock, admin).await else {
        return false;
    };
    let reply = AuraeClient::from_channel(channel)
        .health()
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    reply.is_ok_and(|r| r.into_inner().status() == ServingStatus::Serving)
}

/// The `p` percentile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Starts auraed on `sock` and waits until it serves over mTLS.
pub async fn serving_auraed(auraed: &str, setup: &Setup, sock: &Path) -> Child {
    serving_auraed_with(auraed, setup, sock, &[]).await
}

/// Starts auraed with the flags `extra` besides the usual ones on `sock`, and waits (at
/// most 10 s) until it serves over mTLS.
pub async fn serving_auraed_with(
    auraed: &str,
    setup: &Setup,
    sock: &Path,
    extra: &[&str],
) -> Child {
    let mut command = Command::new(auraed);
    command.args(extra);
    let child = quiet_auraed(command, &setup.root, sock)
        .spawn()
        .expect("spawn auraed");
    let started = std::time::Instant::now();
    while !healthy(sock, &setup.admin).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "auraed never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child
}

/// Set (to a socket path) in the environment of a benchmark binary that [`EchoPeer`]
/// started again as its echo server.
pub const ECHO_SERVER_ENV: &str = "AURAE_BENCH_ECHO_SERVER";

/// First call of every benchmark's `main` that uses [`EchoPeer`]: in the process
/// [`EchoPeer::spawn`] started, serves the echo on the socket named by
/// [`ECHO_SERVER_ENV`] and exits; anywhere else returns at once.
pub fn serve_echo_if_asked() {
    let Some(path) = std::env::var_os(ECHO_SERVER_ENV) else {
        return;
    };
    let listener = UnixListener::bind(&path).expect("bind the echo socket");
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready")
        .and_then(|()| stdout.flush())
        .expect("tell the parent");
    let (mut conn, _) = listener.accept().expect("accept the echo client");
    echo_until_closed(&mut conn);
    std::process::exit(0);
}

/// Writes back everything `conn` sends until it closes (or fails): the echo servers of
/// the benchmarks' cross-process round-trip floors, over a Unix socket or TCP.
pub fn echo_until_closed(conn: &mut (impl Read + Write)) {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
}

/// A second process (this benchmark binary, started again with [`ECHO_SERVER_ENV`])
/// that echoes what it reads on a Unix socket: a round trip to it is what the kernel
/// charges for any request answered by another process over a socket, with nothing
/// else done.
pub struct EchoPeer {
    child: Child,
    conn: UnixStream,
}

impl EchoPeer {
    /// Starts the echo process on `dir/echo.sock` and connects to it.
    pub fn spawn(dir: &Path) -> Self {
        let path = dir.join("echo.sock");
        let _ = std::fs::remove_file(&path);
        let mut child = Command::new(std::env::current_exe().expect("this benchmark's path"))
            .env(ECHO_SERVER_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the echo process");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("the echo process's stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the echo process's readiness");
        assert_eq!(line.trim(), "ready", "the echo process did not start");
        let conn = UnixStream::connect(&path).expect("connect to the echo process");
        Self { child, conn }
    }

    /// Sorted durations of `calls` round trips of `bytes`-byte messages, after `warmup`
    /// untimed ones.
    pub fn round_trips(&mut self, bytes: usize, warmup: usize, calls: usize) -> Vec<Duration> {
        let message = vec![7u8; bytes];
        let mut reply = vec![0u8; bytes];
        let mut round_trip = || {
            self.conn
                .write_all(&message)
                .expect("send to the echo process");
            self.conn
                .read_exact(&mut reply)
                .expect("the echo process's reply");
        };
        for _ in 0..warmup {
            round_trip();
        }
        let mut times = Vec::with_capacity(calls);
        for _ in 0..calls {
            let start = Instant::now();
            round_trip();
            times.push(start.elapsed());
        }
        times.sort();
        times
    }
}

impl Drop for EchoPeer {
    fn drop(&mut self) {
        let _ = self.conn.shutdown(std::net::Shutdown::Both);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
