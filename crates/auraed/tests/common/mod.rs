//! Test support: a real auraed on a temporary socket, and the real `aurae` CLI.
#![allow(dead_code)]

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use aurae_client::{AuraeClient, ConnectOptions, Identity, Target};
use aurae_proto::v0::{Mode, StatusRequest, StatusResponse};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

/// The auraed binary under test.
pub fn auraed_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_auraed"))
}

/// The aurae CLI binary, built beside auraed by `cargo nextest run --workspace`.
pub fn aurae_bin() -> PathBuf {
    let path = auraed_bin().with_file_name("aurae");
    assert!(
        path.exists(),
        "the aurae CLI is missing at {}: run the tests with `cargo nextest run --workspace`",
        path.display()
    );
    path
}

/// Polls `check` every 20 ms until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `child` exits; fails with `why()` after `timeout`.
pub fn wait_for_exit(child: &mut Child, timeout: Duration, why: impl Fn() -> String) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < timeout, "{}", why());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The directories one daemon uses; reusable across restarts.
#[derive(Debug)]
pub struct Layout {
    pub root: tempfile::TempDir,
    pub sock: PathBuf,
    pub pki_dir: PathBuf,
    pub data_dir: PathBuf,
    pub key: PathBuf,
    pub home: PathBuf,
}

impl Layout {
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let home = root.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        Self {
            sock: root.path().join("run/aurae.sock"),
            pki_dir: root.path().join("pki"),
            data_dir: root.path().join("data"),
            key: home.join(".ssh/id_aura"),
            home,
            root,
        }
    }

    /// The auraed command for this layout.
    pub fn auraed_command(&self) -> Command {
        let mut cmd = Command::new(auraed_bin());
        cmd.arg("--sock")
            .arg(&self.sock)
            .arg("--pki-dir")
            .arg(&self.pki_dir)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--key")
            .arg(&self.key)
            .env("HOME", &self.home)
            .env_remove("AURAE_SOCKET")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the aurae CLI as this layout's admin user.
    pub fn aurae(&self, args: &[&str]) -> Output {
        Command::new(aurae_bin())
            .arg("--sock")
            .arg(&self.sock)
            .args(args)
            .env("HOME", &self.home)
            .env_remove("AURAE_SOCKET")
            .env_remove("AURAE_CONFIG")
            .output()
            .expect("run aurae")
    }

    /// `aurae pki init` into this layout, asserting success.
    pub fn pki_init(&self, extra: &[&str]) {
        let pki = self.pki_dir.to_str().unwrap();
        let mut args = vec!["pki", "init", "--pki-dir", pki, "--peer", "node1"];
        args.extend_from_slice(extra);
        let out = self.aurae(&args);
        assert!(
            out.status.success(),
            "pki init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The admin identity written by `pki init`.
    pub fn admin(&self) -> Identity {
        self.identity("admin")
    }

    /// The identity of `entity`, as written by `pki init` or `pki issue`.
    pub fn identity(&self, entity: &str) -> Identity {
        let dir = self.home.join(".aurae");
        Identity {
            ca_cert: dir.join("ca.crt"),
            client_cert: dir.join(format!("{entity}.crt")),
            client_key: dir.join(format!("{entity}.key")),
        }
    }

    pub fn target(&self, identity: Option<Identity>) -> Target {
        let options = ConnectOptions {
            socket: Some(self.sock.clone()),
            config: Some(self.home.join("no-config.toml")),
            ..Default::default()
        };
        let mut target = options.resolve().unwrap();
        target.identity = identity;
        target
    }
}

/// A running auraed, killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts auraed on `layout` and waits until its socket accepts connections.
    pub fn start(layout: &Layout) -> Self {
        Self::start_with(layout, layout.auraed_command())
    }

    pub fn start_with(layout: &Layout, mut cmd: Command) -> Self {
        let log = layout
            .root
            .path()
            .join(format!("auraed-{}.log", std::process::id()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = cmd
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawn auraed");
        let mut daemon = Self { child, log };
        let sock = layout.sock.clone();
        wait_until(Duration::from_secs(10), "the auraed socket", || {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!(
                    "auraed exited early with {status}; log:\n{}",
                    daemon.log_text()
                );
            }
            std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket())
                && std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        daemon
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status (at most 10 s).
    pub fn terminate(&mut self) -> ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::SIGTERM,
        )
        .expect("send SIGTERM");
        self.wait(Duration::from_secs(10))
    }

    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let log = self.log.clone();
        wait_for_exit(&mut self.child, timeout, || {
            format!(
                "auraed did not exit; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Status over mTLS as `identity`; errors carry the gRPC code's name first.
pub async fn status_as(layout: &Layout, identity: Identity) -> Result<StatusResponse, String> {
    let client = AuraeClient::connect(&layout.target(Some(identity)))
        .await
        .map_err(|e| e.to_string())?;
    client
        .system()
        .status(StatusRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// Status over mTLS as the admin.
pub async fn admin_status(layout: &Layout) -> Result<StatusResponse, String> {
    status_as(layout, layout.admin()).await
}

/// The overall health a client sees.
pub async fn health(client: &AuraeClient) -> Result<ServingStatus, tonic::Status> {
    let request = HealthCheckRequest {
        service: String::new(),
    };
    Ok(client.health().check(request).await?.into_inner().status())
}

/// A daemon with registered material, serving over mTLS.
pub async fn serving_daemon() -> (Layout, Daemon) {
    let layout = Layout::new();
    let daemon = Daemon::start(&layout);
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(2)).await;
    (layout, daemon)
}

/// Status over plaintext (the empty loop).
pub async fn plaintext_status(layout: &Layout) -> Result<StatusResponse, String> {
    let channel = aurae_client::connect_plaintext(&layout.sock)
        .await
        .map_err(|e| e.to_string())?;
    AuraeClient::from_channel(channel)
        .system()
        .status(StatusRequest {})
        .await
        .map(|r| r.into_inner())
        .map_err(|s| s.to_string())
}

/// Waits until the admin sees the daemon serving over mTLS; returns how long it took.
pub async fn wait_serving(layout: &Layout, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(status) = admin_status(layout).await
            && status.mode() == Mode::Serving
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "auraed did not start serving within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Whether a path exists and is a socket.
pub fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}
