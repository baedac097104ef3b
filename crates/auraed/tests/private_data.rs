//! Private data at any umask: the data directory and everything auraed keeps in it are
//! its own (0700 and 0600), and keys that others may read are refused with the `chmod`
//! that fixes them.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aurae_proto::v0::Mode;
use common::{Daemon, Layout, plaintext_status, wait_serving};

/// `cmd` run through `sh -c 'umask 000; exec ...'`, so that everything it creates gets
/// the widest mode the umask allows.
fn under_umask_000(cmd: &Command) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"umask 000; exec "$0" "$@""#)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => sh.env(key, value),
            None => sh.env_remove(key),
        };
    }
    sh.stdin(std::process::Stdio::null());
    sh
}

/// Every file and directory under `dir` (itself included) with its permission bits.
fn modes_under(dir: &Path) -> Vec<(String, bool, u32)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
        found.push((
            path.display().to_string(),
            meta.is_dir(),
            meta.mode() & 0o7777,
        ));
    }
    found
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn under_umask_000_a_0755_data_dir_and_all_in_it_become_0700_and_0600() {
    let layout = Layout::new();
    std::fs::create_dir_all(&layout.data_dir).unwrap();
    chmod(&layout.data_dir, 0o755);
    let daemon = Daemon::start_with(&layout, under_umask_000(&layout.auraed_command()));
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(5)).await;
    let small = layout.aurae(&["kv", "put", "/small", "value"]);
    assert!(small.status.success(), "{small:?}");
    // Larger than the inline limit: its content goes to a file under extents/.
    let large = "x".repeat(64 << 10);
    let large = layout.aurae(&["kv", "put", "/large", &large]);
    assert!(large.status.success(), "{large:?}");
    let disabled = layout.aurae(&["capabilities", "disable", "reflection"]);
    assert!(disabled.status.success(), "{disabled:?}");

    let found = modes_under(&layout.data_dir);
    let names: Vec<_> = found.iter().map(|(path, ..)| path.as_str()).collect();
    for expected in ["aurae.redb", "aurae.wal", "extents"] {
        assert!(
            names.iter().any(|n| n.ends_with(expected)),
            "{expected} missing: {names:?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|(p, dir, _)| p.contains("extents/") && !dir),
        "no content file: {names:?}"
    );
    for (path, is_dir, mode) in &found {
        let want = if *is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{path} is {mode:04o}, not {want:04o}");
    }
    assert!(
        daemon
            .log_text()
            .contains("data directory entry was open to other users"),
        "the narrowing is logged:\n{}",
        daemon.log_text()
    );
}

#[tokio::test]
async fn a_node_key_others_can_read_is_refused_with_the_chmod_and_auraed_runs_on() {
    let layout = Layout::new();
    let mut daemon = Daemon::start(&layout);
    assert!(!plaintext_status(&layout).await.unwrap().peer_id.is_empty());
    daemon.kill();
    chmod(&layout.key, 0o644);

    let mut daemon = Daemon::start(&layout);
    let status = plaintext_status(&layout).await.unwrap();
    let key = layout.key.display();
    assert!(status.peer_id.is_empty(), "{}", status.peer_id);
    assert_eq!(
        status.key_error,
        format!("permissions 0644 for '{key}' are too open; run `chmod 600 {key}`")
    );
    assert!(daemon.is_running());
    assert_eq!(
        std::fs::metadata(&layout.key).unwrap().mode() & 0o777,
        0o644,
        "the key is neither replaced nor changed"
    );
}

#[tokio::test]
async fn a_server_key_others_can_read_keeps_auraed_in_the_empty_loop_until_chmod() {
    let layout = Layout::new();
    let _daemon = Daemon::start(&layout);
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(5)).await;

    let key = layout.pki_dir.join("server.key");
    chmod(&key, 0o640);
    // The daemon sees the chmod within its poll; until then it still asks for mTLS.
    let start = std::time::Instant::now();
    let status = loop {
        if let Ok(status) = plaintext_status(&layout).await {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no empty loop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.mode(), Mode::EmptyLoop);
    let shown = key.display();
    assert!(
        status.reason.contains(&format!(
            "permissions 0640 for '{shown}' are too open; run `chmod 600 {shown}`"
        )),
        "{}",
        status.reason
    );
    assert_eq!(status.fix_command, format!("chmod 600 {shown}"));

    chmod(&key, 0o600);
    wait_serving(&layout, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn the_cli_refuses_a_client_key_others_can_read() {
    let layout = Layout::new();
    let _daemon = Daemon::start(&layout);
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(5)).await;
    let key = layout.admin().client_key;
    chmod(&key, 0o644);
    let out = layout.aurae(&["kv", "get", "/anything"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let shown = key.display();
    assert!(
        stderr.contains(&format!(
            "permissions 0644 for '{shown}' are too open; run `chmod 600 {shown}`"
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_pki_directory_open_to_others_is_narrowed_to_0700_by_auraed_and_by_pki_init() {
    use std::os::unix::fs::PermissionsExt;
    let layout = Layout::new();
    std::fs::create_dir_all(&layout.pki_dir).unwrap();
    chmod(&layout.pki_dir, 0o755);
    let _daemon = Daemon::start_with(&layout, under_umask_000(&layout.auraed_command()));
    let mode = || {
        std::fs::metadata(&layout.pki_dir)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode(), 0o700, "auraed narrows it at start");
    chmod(&layout.pki_dir, 0o755);
    layout.pki_init(&[]);
    assert_eq!(mode(), 0o700, "pki init narrows it");
    wait_serving(&layout, Duration::from_secs(5)).await;
}
