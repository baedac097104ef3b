//! The Debian package and what it hands to systemd: the man pages it ships are current,
//! auraed reports readiness, status and shutdown over sd_notify, and the package builds,
//! installs into a scratch root, passes `systemd-analyze verify` and removes cleanly
//! (packaging/check-deb).

mod common;

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aurae_proto::v0::Mode;
use clap::CommandFactory;
use common::{Daemon, Layout, plaintext_status};

/// `packaging/man/auraed.8`; the pages of `aurae` and `auraefs` are checked by their crates.
#[test]
fn the_man_page_of_auraed_is_current() {
    let pages = aurae_manpages::render(
        auraed::cli::Args::command(),
        aurae_manpages::Section::Administration,
    );
    let dir = aurae_manpages::committed_dir(env!("CARGO_MANIFEST_DIR"));
    if let Err(stale) = aurae_manpages::check_or_update(&dir, "auraed", &pages) {
        panic!("{stale}");
    }
}

/// The workspace root, where `scripts/` and `packaging/` are.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What CI checks of the package: scripts/package builds it from the binaries this test
/// run built (debug: no build of its own, so no wait on cargo's lock), and
/// packaging/check-deb installs it into a scratch root, checks the files, runs
/// `systemd-analyze verify` on the unit, and removes it.
#[test]
fn the_debian_package_installs_into_a_scratch_root_and_removes_cleanly() {
    let auraed = common::auraed_bin();
    common::aurae_bin();
    common::workspace_bin("auraefs", "auraefs");
    let bins = auraed.parent().expect("auraed lives in a directory");
    let out = tempfile::tempdir().expect("temp dir");
    let package = Command::new(workspace().join("scripts/package"))
        .arg("--fast")
        .arg("--bins")
        .arg(bins)
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run scripts/package");
    assert!(
        package.status.success(),
        "scripts/package failed:\n{}",
        String::from_utf8_lossy(&package.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&package.stdout).trim());
    assert!(
        deb.is_file() && deb.starts_with(out.path()),
        "scripts/package printed {deb:?}, not a .deb in {:?}",
        out.path()
    );
    let check = Command::new(workspace().join("packaging/check-deb"))
        .arg(&deb)
        .output()
        .expect("run packaging/check-deb");
    assert!(
        check.status.success(),
        "packaging/check-deb failed:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

/// The systemd side: a datagram socket standing in for systemd's `NOTIFY_SOCKET`.
struct Notifications {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Notifications {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        Self {
            socket,
            _dir: dir,
            path,
        }
    }

    /// The next datagram, as its `KEY=value` lines; fails after 10 s without one.
    fn next(&self, waiting_for: &str) -> Vec<String> {
        let mut buf = vec![0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification while waiting for {waiting_for}: {e}"));
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn status_of(lines: &[String]) -> &str {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= in {lines:?}"))
}

#[test]
fn auraed_tells_systemd_it_is_ready_its_mode_and_that_it_stops() {
    let layout = Layout::new();
    let notify = Notifications::new();
    let log = layout.root.path().join("auraed.log");
    let log_file = std::fs::File::create(&log).expect("create the log");
    let child = layout
        .auraed_command()
        .env("NOTIFY_SOCKET", &notify.path)
        .stdout(log_file.try_clone().expect("clone the log"))
        .stderr(log_file)
        .spawn()
        .expect("spawn auraed");
    let mut daemon = Daemon { child, log };

    // READY=1 promises a socket that answers: connect at once, without waiting.
    let ready = notify.next("READY=1");
    assert!(ready.contains(&"READY=1".to_owned()), "{ready:?}");
    assert!(
        UnixStream::connect(&layout.sock).is_ok(),
        "READY=1 came before the socket accepted connections; log:\n{}",
        daemon.log_text()
    );
    let status = status_of(&ready);
    assert!(
        status.starts_with(
            "empty loop: no certificate material: ca.crt, server.crt, server.key missing in"
        ),
        "{status}"
    );
    assert!(
        status.contains("(fix: aurae pki init --pki-dir "),
        "{status}"
    );

    // pki init writes its files one by one: the status follows each step the watcher
    // sees, ending at serving.
    layout.pki_init(&[]);
    loop {
        let update = notify.next("the serving status");
        assert!(
            !update.contains(&"READY=1".to_owned()),
            "ready twice: {update:?}"
        );
        let status = status_of(&update);
        if status == "serving over mTLS" {
            break;
        }
        assert!(status.starts_with("empty loop: "), "{status}");
    }

    assert!(daemon.terminate().success(), "log:\n{}", daemon.log_text());
    let stopping = notify.next("STOPPING=1");
    assert!(stopping.contains(&"STOPPING=1".to_owned()), "{stopping:?}");
}

#[test]
fn a_notify_socket_nobody_listens_on_does_not_stop_auraed() {
    let layout = Layout::new();
    let mut cmd = layout.auraed_command();
    cmd.env(
        "NOTIFY_SOCKET",
        layout.root.path().join("nobody-listens.sock"),
    );
    let mut daemon = Daemon::start_with(&layout, cmd);
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
        .block_on(plaintext_status(&layout))
        .expect("status in the empty loop");
    assert_eq!(status.mode(), Mode::EmptyLoop);
    assert!(daemon.terminate().success(), "log:\n{}", daemon.log_text());
}
