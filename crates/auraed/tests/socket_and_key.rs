//! The socket (modes, stale takeover, live refusal) and the node key.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use aurae_proto::v0::Mode;
use common::{Daemon, Layout, is_socket, plaintext_status};

// Multi-threaded: the blocking wait in `terminate` must not stall our connections'
// background tasks, or the daemon's graceful shutdown waits for their GOAWAY answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_0600_and_removed_on_sigterm_with_exit_0() {
    let layout = Layout::new();
    let mut daemon = Daemon::start(&layout);
    let mode = std::fs::metadata(&layout.sock)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let status = daemon.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{}", daemon.log_text());
    assert!(!layout.sock.exists(), "socket left behind after shutdown");
}

#[tokio::test]
async fn sock_group_makes_the_socket_0660_for_that_group() {
    let layout = Layout::new();
    let mut cmd = layout.auraed_command();
    cmd.args(["--sock-group", "0"]);
    let _daemon = Daemon::start_with(&layout, cmd);
    let meta = std::fs::metadata(&layout.sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 0);
}

#[tokio::test]
async fn a_stale_socket_is_taken_over() {
    let layout = Layout::new();
    std::fs::create_dir_all(layout.sock.parent().unwrap()).unwrap();
    // A socket file whose listener is gone: what a killed daemon leaves.
    drop(std::os::unix::net::UnixListener::bind(&layout.sock).unwrap());
    assert!(is_socket(&layout.sock));
    let _daemon = Daemon::start(&layout);
    assert_eq!(
        plaintext_status(&layout).await.unwrap().mode(),
        Mode::EmptyLoop
    );
}

#[tokio::test]
async fn a_live_daemons_socket_is_never_stolen() {
    let layout = Layout::new();
    let mut first = Daemon::start(&layout);
    let first_pid = plaintext_status(&layout).await.unwrap().pid;

    let out = layout.auraed_command().output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("another live auraed"));
    assert!(first.is_running());
    assert_eq!(plaintext_status(&layout).await.unwrap().pid, first_pid);
}

#[tokio::test]
async fn a_regular_file_at_the_socket_path_is_left_alone() {
    let layout = Layout::new();
    std::fs::create_dir_all(layout.sock.parent().unwrap()).unwrap();
    std::fs::write(&layout.sock, "precious").unwrap();
    let out = layout.auraed_command().output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a socket"));
    assert_eq!(std::fs::read_to_string(&layout.sock).unwrap(), "precious");
}

// Multi-threaded: the blocking wait in `terminate` must not stall our connections'
// background tasks, or the daemon's graceful shutdown waits for their GOAWAY answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_generated_private_and_the_peer_id_is_stable() {
    let layout = Layout::new();
    let mut daemon = Daemon::start(&layout);
    let first = plaintext_status(&layout).await.unwrap().peer_id;
    assert!(first.starts_with("12D3KooW"), "{first}");
    let key_mode = std::fs::metadata(&layout.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(key_mode, 0o600);
    let public = std::fs::read_to_string(layout.key.with_file_name("id_aura.pub")).unwrap();
    assert!(public.starts_with("ssh-ed25519 "), "{public}");
    assert!(daemon.log_text().contains("generated a new node key"));
    daemon.terminate();

    let _again = Daemon::start(&layout);
    assert_eq!(plaintext_status(&layout).await.unwrap().peer_id, first);
}

#[tokio::test]
async fn a_key_made_by_ssh_keygen_gives_its_peer_id() {
    let layout = Layout::new();
    std::fs::create_dir_all(layout.key.parent().unwrap()).unwrap();
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&layout.key)
        .status()
        .expect("ssh-keygen (apt openssh-client) is needed for this test");
    assert!(keygen.success());
    let before = std::fs::read(&layout.key).unwrap();
    let _daemon = Daemon::start(&layout);
    let status = plaintext_status(&layout).await.unwrap();
    assert!(status.peer_id.starts_with("12D3KooW"));
    assert!(status.key_error.is_empty());
    assert_eq!(
        std::fs::read(&layout.key).unwrap(),
        before,
        "an existing key is never rewritten"
    );
}

#[tokio::test]
async fn a_corrupt_or_wrong_type_key_is_named_and_auraed_still_starts() {
    for (content, expect) in [
        ("garbage".to_owned(), "is not an OpenSSH private key"),
        (rsa_key(), "ed25519"),
    ] {
        let layout = Layout::new();
        std::fs::create_dir_all(layout.key.parent().unwrap()).unwrap();
        std::fs::write(&layout.key, &content).unwrap();
        // Private, so that it is refused for what it holds, not for who may read it.
        std::fs::set_permissions(&layout.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let daemon = Daemon::start(&layout);
        let status = plaintext_status(&layout).await.unwrap();
        assert!(status.peer_id.is_empty());
        assert!(
            status.key_error.contains(layout.key.to_str().unwrap()),
            "{}",
            status.key_error
        );
        assert!(status.key_error.contains(expect), "{}", status.key_error);
        assert_eq!(
            std::fs::read_to_string(&layout.key).unwrap(),
            content,
            "key left alone"
        );
        drop(daemon);
    }
}

fn rsa_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rsa");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen (apt openssh-client) is needed for this test")
        .success();
    assert!(ok);
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn a_client_mistake_never_stops_the_daemon() {
    let layout = Layout::new();
    let mut daemon = Daemon::start(&layout);
    // Garbage bytes, a half-open TLS hello, and an abrupt close.
    for payload in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        &[0x16, 0x03, 0x01, 0x00],
        &[0u8; 0],
    ] {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&layout.sock).unwrap();
        let _ = s.write_all(payload);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(daemon.is_running());
    assert_eq!(
        plaintext_status(&layout).await.unwrap().mode(),
        Mode::EmptyLoop
    );
}
