//! Test support: a real auraed on a temporary socket, volumes created over gRPC, and real
//! auraefs mounts that are always unmounted when a test ends, pass or fail.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aurae_client::{AuraeClient, ConnectOptions, Identity};
use aurae_proto::v0::{CreateVolumeRequest, Mode, StatusRequest};

/// The auraefs binary under test.
pub fn auraefs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_auraefs"))
}

/// A workspace binary next to auraefs, built now if this run did not build it
/// (`cargo nextest run -p auraefs` builds only this package's binaries).
pub fn sibling_bin(name: &str, package: &str) -> PathBuf {
    let path = auraefs_bin().with_file_name(name);
    if !path.exists() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .args(["build", "--manifest-path"])
            .arg(&manifest)
            .args(["-p", package]);
        if path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|dir| dir == "release")
        {
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

/// The auraed binary.
pub fn auraed_bin() -> PathBuf {
    sibling_bin("auraed", "auraed")
}

/// The aurae CLI binary.
pub fn aurae_bin() -> PathBuf {
    sibling_bin("aurae", "aurae-cli")
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

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the auraefs integration tests mount filesystems: run them as root"
    );
}

/// A serving auraed with its own socket, PKI, data and admin home.
pub struct Node {
    pub root: tempfile::TempDir,
    pub sock: PathBuf,
    pub home: PathBuf,
    child: Child,
    log: PathBuf,
}

impl Node {
    fn spawn_auraed(root: &Path, home: &Path, sock: &Path, log: &Path) -> Child {
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(auraed_bin())
            .arg("--sock")
            .arg(sock)
            .arg("--pki-dir")
            .arg(root.join("pki"))
            .arg("--data-dir")
            .arg(root.join("data"))
            .arg("--key")
            .arg(home.join(".ssh/id_aura"))
            .env("HOME", home)
            .env_remove("AURAE_SOCKET")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("spawn auraed");
        wait_until(Duration::from_secs(10), "the auraed socket", || {
            std::fs::symlink_metadata(sock).is_ok_and(|m| m.file_type().is_socket())
                && std::os::unix::net::UnixStream::connect(sock).is_ok()
        });
        child
    }

    fn start_unregistered() -> Self {
        require_root();
        let root = tempfile::tempdir().expect("temp dir");
        let home = root.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let sock = root.path().join("run/aurae.sock");
        let log = root.path().join("auraed.log");
        let child = Self::spawn_auraed(root.path(), &home, &sock, &log);
        Self {
            root,
            sock,
            home,
            child,
            log,
        }
    }

    /// Starts auraed, registers its PKI with `aurae pki init`, waits until it serves.
    pub fn start() -> Self {
        let node = Self::start_unregistered();
        let pki = node.root.path().join("pki");
        let out = node.aurae(&[
            "pki",
            "init",
            "--pki-dir",
            pki.to_str().unwrap(),
            "--peer",
            "node1",
        ]);
        assert!(
            out.status.success(),
            "pki init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        node.wait_serving();
        node
    }

    /// Starts auraed without PKI: it stays in its empty loop.
    pub fn start_empty_loop() -> Self {
        Self::start_unregistered()
    }

    /// Kills auraed with SIGKILL (no chance to flush anything) and starts it again on
    /// the same socket, data and PKI.
    pub fn crash_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.child = Self::spawn_auraed(self.root.path(), &self.home, &self.sock, &self.log);
        self.wait_serving();
    }

    fn runtime() -> tokio::runtime::Runtime {
        let _ = rustls::crypto::ring::default_provider().install_default();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn admin(&self) -> Identity {
        let dir = self.home.join(".aurae");
        Identity {
            ca_cert: dir.join("ca.crt"),
            client_cert: dir.join("admin.crt"),
            client_key: dir.join("admin.key"),
        }
    }

    async fn client(&self) -> Result<AuraeClient, String> {
        let options = ConnectOptions {
            socket: Some(self.sock.clone()),
            config: Some(self.home.join("no-config.toml")),
            ..Default::default()
        };
        let mut target = options.resolve().map_err(|e| e.to_string())?;
        target.identity = Some(self.admin());
        AuraeClient::connect(&target)
            .await
            .map_err(|e| e.to_string())
    }

    fn wait_serving(&self) {
        let runtime = Self::runtime();
        let start = Instant::now();
        loop {
            let serving = runtime.block_on(async {
                let client = self.client().await.ok()?;
                let status = client.system().status(StatusRequest {}).await.ok()?;
                Some(status.into_inner().mode() == Mode::Serving)
            });
            if serving == Some(true) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "auraed did not serve; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Creates a volume with the Storage CreateVolume RPC (quota 0: none).
    pub fn create_volume(&self, name: &str, quota_bytes: u64) {
        Self::runtime().block_on(async {
            let client = self.client().await.expect("connect as admin");
            client
                .storage()
                .create_volume(CreateVolumeRequest {
                    name: name.to_owned(),
                    quota_bytes,
                })
                .await
                .expect("CreateVolume");
        });
    }

    /// Runs the aurae CLI as this node's admin.
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

    /// An auraefs command as this node's admin (socket and client config set).
    pub fn auraefs(&self) -> Command {
        let mut cmd = Command::new(auraefs_bin());
        cmd.arg("--sock")
            .arg(&self.sock)
            .env("HOME", &self.home)
            .env_remove("AURAE_SOCKET")
            .env_remove("AURAE_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// A fresh empty directory to mount on.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        let dir = self.root.path().join("mnt").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Mounts `volume` on a fresh directory with `options`, asserting success.
    pub fn mount(&self, volume: &str, options: &str) -> Mount {
        let dir = self.mountpoint(volume);
        self.mount_on(volume, &dir, options)
    }

    /// Mounts `volume` on `dir` with `options`, asserting success.
    pub fn mount_on(&self, volume: &str, dir: &Path, options: &str) -> Mount {
        let log = self.root.path().join(format!("auraefs-{volume}.log"));
        let mut cmd = self.auraefs();
        cmd.arg("mount").arg(volume).arg(dir);
        let mut all = format!("log={}", log.display());
        if !options.is_empty() {
            all = format!("{all},{options}");
        }
        cmd.arg("-o").arg(all);
        let out = cmd.output().expect("run auraefs mount");
        let mount = Mount {
            path: dir.canonicalize().unwrap(),
            log,
        };
        assert!(
            out.status.success(),
            "auraefs mount {volume} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            mount.is_mounted(),
            "auraefs returned before the mount was live"
        );
        mount
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mount points this process sees.
pub fn mount_points() -> Vec<(PathBuf, String)> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            Some((
                PathBuf::from(fields.get(4)?.replace("\\040", " ")),
                (*fields.get(dash + 1)?).to_owned(),
            ))
        })
        .collect()
}

/// A live auraefs mount, unmounted (lazily if need be) when dropped.
pub struct Mount {
    pub path: PathBuf,
    pub log: PathBuf,
}

impl Mount {
    pub fn is_mounted(&self) -> bool {
        mount_points().iter().any(|(p, _)| *p == self.path)
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Unmounts with `auraefs umount` and waits until the mount is gone.
    pub fn unmount(&self) {
        let out = Command::new(auraefs_bin())
            .arg("umount")
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "auraefs umount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_until(Duration::from_secs(5), "the mount to go", || {
            !self.is_mounted()
        });
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.is_mounted() {
            let normal = nix::mount::umount2(&self.path, nix::mount::MntFlags::empty());
            if normal.is_err() {
                let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
}

/// Runs a shell command line, asserting success; returns its stdout.
pub fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
