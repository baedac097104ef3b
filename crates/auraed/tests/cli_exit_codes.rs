//! The `aurae` CLI against a real auraed: one exit code per class of failure, the
//! messages that go with them, and output that survives a closed pipe or a terminal.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

use common::{Daemon, Layout, serving_daemon};

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn each_class_of_failure_has_its_own_exit_code() {
    let (layout, _daemon) = serving_daemon().await;

    let out = layout.aurae(&["volume", "rm", "nosuch"]);
    assert_eq!(code(&out), Some(5), "not found: {}", stderr(&out));

    let out = layout.aurae(&["volume", "create", "data"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = layout.aurae(&["volume", "create", "data"]);
    assert_eq!(code(&out), Some(6), "exists: {}", stderr(&out));

    let out = layout.aurae(&["kv", "put", "/a/../b", "x"]);
    assert_eq!(code(&out), Some(7), "invalid path: {}", stderr(&out));

    let out = layout.aurae(&["capabilities", "disable", "storage"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let out = layout.aurae(&["volume", "list"]);
    assert_eq!(code(&out), Some(8), "disabled: {}", stderr(&out));
    assert!(stderr(&out).contains("capabilities enable storage"));
}

#[tokio::test]
async fn a_principal_without_the_right_exits_with_permission_denied() {
    let (layout, _daemon) = serving_daemon().await;
    let pki = layout.pki_dir.to_str().unwrap();
    let out = layout.aurae(&["pki", "issue", "alice", "--pki-dir", pki]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let alice = layout.identity("alice");
    let out = layout.aurae(&[
        "--cert",
        alice.client_cert.to_str().unwrap(),
        "--key",
        alice.client_key.to_str().unwrap(),
        "volume",
        "list",
    ]);
    assert_eq!(code(&out), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("alice@node1@local lacks storage.read"));
}

#[test]
fn a_user_shut_out_of_the_socket_is_told_how_to_get_in() {
    let layout = Layout::new();
    let _daemon = Daemon::start(&layout);
    // The way to the socket is open; the socket itself (0600, root's) is not.
    for dir in [layout.root.path(), layout.sock.parent().unwrap()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = Command::new(common::aurae_bin())
        .arg("--sock")
        .arg(&layout.sock)
        .args(["--config", "/nonexistent/config.toml", "status"])
        .env("HOME", "/nonexistent")
        .env_remove("AURAE_SOCKET")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run aurae as nobody");
    let text = stderr(&out);
    assert_eq!(code(&out), Some(4), "{text}");
    assert!(
        text.contains("the socket exists but is closed to you"),
        "{text}"
    );
    assert!(text.contains("--sock-group GROUP"), "{text}");
    assert!(text.contains("sudo"), "{text}");
    assert!(!text.contains("is auraed running"), "{text}");
}

#[tokio::test]
async fn calls_to_a_daemon_in_its_empty_loop_say_so_and_exit_unavailable() {
    let (serving, _daemon) = serving_daemon().await;
    let layout = Layout::new();
    let _empty = Daemon::start(&layout);
    let admin = serving.admin();
    let out = layout.aurae(&[
        "--ca",
        admin.ca_cert.to_str().unwrap(),
        "--cert",
        admin.client_cert.to_str().unwrap(),
        "--key",
        admin.client_key.to_str().unwrap(),
        "volume",
        "list",
    ]);
    let text = stderr(&out);
    assert_eq!(code(&out), Some(8), "{text}");
    assert!(text.contains("empty loop"), "{text}");
    assert!(text.contains("aurae pki init --pki-dir"), "{text}");
}

#[tokio::test]
async fn volume_listing_survives_a_closed_pipe() {
    let (layout, _daemon) = serving_daemon().await;
    for args in [&["volume", "list"][..], &["kv", "ls", "/"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = layout
            .aurae_command()
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run aurae");
        let text = stderr(&out);
        assert!(!text.contains("panicked"), "{args:?}: {text}");
        assert_eq!(code(&out), Some(0), "{args:?}: {text}");
    }
}

#[tokio::test]
async fn volume_sizes_are_human_on_a_terminal_and_bytes_otherwise() {
    let (layout, _daemon) = serving_daemon().await;
    let out = layout.aurae(&["volume", "create", "data", "--quota", "1.5G"]);
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));

    let out = layout.aurae(&["volume", "list", "--json"]);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("\"quota_bytes\": 1610612736"), "{json}");

    let out = layout.aurae(&["volume", "list"]);
    let piped = String::from_utf8_lossy(&out.stdout);
    assert!(piped.contains(" 1610612736 "), "{piped}");

    // script(1) gives the command a terminal as its standard output.
    let line = format!(
        "{} --sock {} volume list",
        common::aurae_bin().display(),
        layout.sock.display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("HOME", &layout.home)
        .env_remove("AURAE_SOCKET")
        .env_remove("AURAE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run script(1) from util-linux");
    let terminal = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), Some(0), "{terminal}");
    assert!(terminal.contains("1.5 GiB"), "{terminal}");
}
