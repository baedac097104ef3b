//! Shared set-up of the benchmarks: PKI in a temporary directory, auraed started on a
//! temporary socket, percentiles.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().to_owned();
    let paths = PkiPaths::new(root.join("pki"));
    let names = NodeNames {
        peer: "bench".parse().unwrap(),
        domain: "local".parse().unwrap(),
    };
    pki::init_server_material(&paths, &names, Overwrite::Refuse).expect("pki");
    let admin = issue(&root, "admin@bench@local", "admin");
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
    let child = spawn_auraed(auraed, &setup.root, sock);
    while !healthy(sock, &setup.admin).await {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child
}
