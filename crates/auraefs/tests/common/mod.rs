//! Test support: a serving auraed from the shared test kit, volumes created over gRPC,
//! and real auraefs mounts that are always unmounted when a test ends, pass or fail.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aurae_proto::v0::CreateVolumeRequest;
use aurae_testkit::{Daemon, Layout};
pub use aurae_testkit::{sh, wait_until};

/// The auraefs binary under test.
pub fn auraefs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_auraefs"))
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the auraefs integration tests mount filesystems: run them as root"
    );
}

/// A serving auraed with its own socket, PKI, data and admin home.
pub struct Node {
    /// Its directories (`layout.root` holds everything).
    pub layout: Layout,
    /// The daemon's socket.
    pub sock: PathBuf,
    daemon: Daemon,
}

impl Node {
    fn start_unregistered() -> Self {
        require_root();
        let layout = Layout::new();
        let daemon = Daemon::start(&layout);
        Self {
            sock: layout.sock.clone(),
            layout,
            daemon,
        }
    }

    /// Starts auraed, registers its PKI with `aurae pki init`, waits until it serves.
    pub fn start() -> Self {
        let node = Self::start_unregistered();
        node.layout.pki_init(&[]);
        aurae_testkit::wait_serving_blocking(&node.layout, Duration::from_secs(10));
        node
    }

    /// Starts auraed without PKI: it stays in its empty loop.
    pub fn start_empty_loop() -> Self {
        Self::start_unregistered()
    }

    /// The temporary root of everything this node uses.
    pub fn root(&self) -> &Path {
        self.layout.root.path()
    }

    /// The admin user's home.
    pub fn home(&self) -> &Path {
        &self.layout.home
    }

    /// Kills auraed with SIGKILL (no chance to flush anything) and starts it again on
    /// the same socket, data and PKI.
    pub fn crash_and_restart(&mut self) {
        self.daemon.kill();
        self.daemon = Daemon::start(&self.layout);
        aurae_testkit::wait_serving_blocking(&self.layout, Duration::from_secs(10));
    }

    /// Creates a volume with the Storage CreateVolume RPC (quota 0: none).
    pub fn create_volume(&self, name: &str, quota_bytes: u64) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let client = self.layout.admin_client().await.expect("connect as admin");
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
        self.layout.aurae(args)
    }

    /// An auraefs command as this node's admin (socket and client config set).
    pub fn auraefs(&self) -> Command {
        let mut cmd = Command::new(auraefs_bin());
        cmd.arg("--sock")
            .arg(&self.sock)
            .env("HOME", &self.layout.home)
            .env_remove("AURAE_SOCKET")
            .env_remove("AURAE_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// A fresh empty directory to mount on.
    pub fn mountpoint(&self, name: &str) -> PathBuf {
        let dir = self.root().join("mnt").join(name);
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
        let log = self.root().join(format!("auraefs-{volume}.log"));
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
