//! Dev-only test support shared by every crate's integration tests: a real `auraed` on a
//! temporary socket with its own PKI, data and admin home, and the real `aurae` CLI.
//!
//! One way to start a daemon, so that a test of auraefs and a test of auraed meet the
//! same daemon. Everything here panics with a readable message on failure: it is for
//! tests only and must never be a dependency of a shipped crate.
#![deny(missing_docs)]

pub mod qemu;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use aurae_client::{AuraeClient, ConnectOptions, Identity, Target};
use aurae_proto::v0::{Mode, StatusRequest, StatusResponse};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

/// A workspace binary of this build (`target/<profile>/<name>`), built now with
/// `cargo build -p <package>` if this test run did not build it (`cargo nextest run -p
/// auraefs` builds only that package's binaries).
pub fn workspace_bin(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let path = profile_dir.join(name);
    if !path.exists() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .args(["build", "--manifest-path"])
            .arg(&manifest)
            .args(["-p", package]);
        if profile_dir.file_name().is_some_and(|dir| dir == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building {package} for the tests failed");
    }
    assert!(
        path.exists(),
        "{} is missing after building {package}",
        path.display()
    );
    path
}

/// The auraed binary under test.
pub fn auraed_bin() -> PathBuf {
    workspace_bin("auraed", "auraed")
}

/// The aurae CLI binary under test.
pub fn aurae_bin() -> PathBuf {
    workspace_bin("aurae", "aurae-cli")
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
        if let Some(status) = child.try_wait().expect("poll the child") {
            return status;
        }
        assert!(start.elapsed() < timeout, "{}", why());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a path exists and is a socket.
pub fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// The children of process `parent` (read from `/proc`), and how many of them are
/// zombies: what a test of reaping asserts on.
pub fn children_of(parent: i32) -> (usize, usize) {
    let parent = parent.to_string();
    let mut all = 0;
    let mut zombies = 0;
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        if field("PPid:") == parent {
            all += 1;
            if field("State:").starts_with('Z') {
                zombies += 1;
            }
        }
    }
    (all, zombies)
}

/// The children of `daemon` that are spare cell inits: `aurae-cell-init` processes
/// outside every cell's cgroup, waiting for the next cell.
pub fn spare_cell_inits(daemon: i32) -> Vec<i32> {
    let parent = daemon.to_string();
    let mut spares = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let read = |file: &str| std::fs::read(format!("/proc/{pid}/{file}")).unwrap_or_default();
        let status = String::from_utf8_lossy(&read("status")).into_owned();
        let is_child = status
            .lines()
            .any(|l| l.strip_prefix("PPid:").map(str::trim) == Some(parent.as_str()));
        let is_init = read("cmdline").starts_with(b"aurae-cell-init\0");
        if is_child && is_init && !String::from_utf8_lossy(&read("cgroup")).contains("aurae-cells")
        {
            spares.push(pid);
        }
    }
    spares
}

/// Installs the TLS crypto provider once per process (tests may link two).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A raw TLS connector presenting `identity`, for tests that hold connections below gRPC
/// (idle, half-open, counted).
pub fn tls_connector(identity: &Identity) -> tokio_rustls::TlsConnector {
    install_crypto_provider();
    let config = aurae_core::tls::client_config(
        &identity.ca_cert,
        &identity.client_cert,
        &identity.client_key,
    )
    .expect("client config");
    tokio_rustls::TlsConnector::from(config)
}

/// The directories one daemon uses; reusable across restarts.
#[derive(Debug)]
pub struct Layout {
    /// Holds everything below; removed when the layout is dropped.
    pub root: tempfile::TempDir,
    /// The daemon's socket.
    pub sock: PathBuf,
    /// `--pki-dir`.
    pub pki_dir: PathBuf,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--key`.
    pub key: PathBuf,
    /// `HOME` of the admin user (client config and certificates under `.aurae`).
    pub home: PathBuf,
}

impl Default for Layout {
    fn default() -> Self {
        Self::new()
    }
}

impl Layout {
    /// Fresh directories under a new temporary root.
    pub fn new() -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        let home = root.path().join("home");
        std::fs::create_dir_all(&home).expect("create the admin's home");
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

    /// The aurae CLI as this layout's admin user, on this layout's socket.
    pub fn aurae_command(&self) -> Command {
        let mut cmd = Command::new(aurae_bin());
        cmd.arg("--sock")
            .arg(&self.sock)
            .env("HOME", &self.home)
            .env_remove("AURAE_SOCKET")
            .env_remove("AURAE_CONFIG");
        cmd
    }

    /// Runs the aurae CLI as this layout's admin user.
    pub fn aurae(&self, args: &[&str]) -> Output {
        self.aurae_command().args(args).output().expect("run aurae")
    }

    /// Runs the aurae CLI as this layout's admin user, asserting success; its stdout.
    pub fn aurae_ok(&self, args: &[&str]) -> String {
        let out = self.aurae(args);
        assert!(
            out.status.success(),
            "aurae {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `aurae pki init` into this layout (peer `node1`), asserting success.
    pub fn pki_init(&self, extra: &[&str]) {
        let pki = self.pki_dir.to_str().expect("a UTF-8 temp path");
        let mut args = vec!["pki", "init", "--pki-dir", pki, "--name", "node1"];
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

    /// A connection target on this socket with `identity` (none: plaintext).
    pub fn target(&self, identity: Option<Identity>) -> Target {
        let options = ConnectOptions {
            socket: Some(self.sock.clone()),
            config: Some(self.home.join("no-config.toml")),
            ..Default::default()
        };
        let mut target = options.resolve().expect("resolve the test target");
        target.identity = identity;
        target
    }

    /// A client connected as the admin.
    pub async fn admin_client(&self) -> Result<AuraeClient, String> {
        install_crypto_provider();
        AuraeClient::connect(&self.target(Some(self.admin())))
            .await
            .map_err(|e| e.to_string())
    }
}

/// A running auraed, killed when dropped.
#[derive(Debug)]
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts auraed on `layout` and waits until its socket accepts connections.
    pub fn start(layout: &Layout) -> Self {
        Self::start_with(layout, layout.auraed_command())
    }

    /// Starts `cmd` (an auraed command for `layout`) and waits for its socket.
    pub fn start_with(layout: &Layout, mut cmd: Command) -> Self {
        let log = layout
            .root
            .path()
            .join(format!("auraed-{}.log", std::process::id()));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the daemon's log");
        let child = cmd
            .stdout(log_file.try_clone().expect("clone the log file"))
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
            is_socket(&sock) && std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
        daemon
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pids fit in i32")
    }

    /// Everything it logged so far.
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

    /// Kills it with SIGKILL (no chance to flush anything) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for it to exit, failing with its log after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let log = self.log.clone();
        wait_for_exit(&mut self.child, timeout, || {
            format!(
                "auraed did not exit; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll auraed").is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Status over mTLS as `identity`; errors carry the gRPC code's name first.
pub async fn status_as(layout: &Layout, identity: Identity) -> Result<StatusResponse, String> {
    install_crypto_provider();
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

/// [`wait_serving`] for tests without an async runtime of their own.
pub fn wait_serving_blocking(layout: &Layout, timeout: Duration) -> Duration {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
        .block_on(wait_serving(layout, timeout))
}

/// A daemon with registered material, serving over mTLS.
pub async fn serving_daemon() -> (Layout, Daemon) {
    let layout = Layout::new();
    let daemon = Daemon::start(&layout);
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(2)).await;
    (layout, daemon)
}

/// Runs a shell command line, asserting success; returns its stdout.
pub fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
