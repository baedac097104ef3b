//! The `aurae` CLI on its own: PKI files and modes, name validation, completions, help.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn aurae(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aurae"))
        .args(args)
        .env("HOME", home)
        .env_remove("AURAE_SOCKET")
        .env_remove("AURAE_CONFIG")
        .output()
        .expect("run aurae")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn pki_init_writes_private_keys_and_a_client_config() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let out = aurae(
        dir.path(),
        &[
            "--sock",
            "/tmp/x.sock",
            "pki",
            "init",
            "--pki-dir",
            pki.to_str().unwrap(),
            "--domain",
            "example.org",
            "--peer",
            "node1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&pki), 0o700);
    assert_eq!(mode(&pki.join("ca.key")), 0o600);
    assert_eq!(mode(&pki.join("server.key")), 0o600);
    assert_eq!(mode(&pki.join("ca.crt")), 0o644);
    let client = dir.path().join(".aurae");
    assert_eq!(mode(&client), 0o700);
    assert_eq!(mode(&client.join("admin.key")), 0o600);
    assert_eq!(mode(&client.join("config.toml")), 0o600);
    let config = std::fs::read_to_string(client.join("config.toml")).unwrap();
    assert!(config.contains("socket = \"/tmp/x.sock\""), "{config}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin@node1@example.org"));

    // A second init refuses to replace the CA.
    let again = aurae(
        dir.path(),
        &["pki", "init", "--pki-dir", pki.to_str().unwrap()],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
}

#[test]
fn pki_issue_validates_the_entity_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let pki = pki.to_str().unwrap();
    assert!(
        aurae(dir.path(), &["pki", "init", "--pki-dir", pki])
            .status
            .success()
    );
    for bad in ["../evil", "Alice", "a/b", ""] {
        let out = aurae(dir.path(), &["pki", "issue", bad, "--pki-dir", pki]);
        assert!(!out.status.success(), "{bad:?} was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("entity name"),
            "{bad:?}"
        );
    }
    let out = aurae(dir.path(), &["pki", "issue", "nginx", "--pki-dir", pki]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&dir.path().join(".aurae/nginx.key")), 0o600);
}

#[test]
fn pki_issue_without_a_ca_says_to_run_init() {
    let dir = tempfile::tempdir().unwrap();
    let out = aurae(
        dir.path(),
        &[
            "pki",
            "issue",
            "nginx",
            "--pki-dir",
            dir.path().join("none").to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("aurae pki init"));
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = aurae(dir.path(), &["completions", shell]);
        assert!(out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("capabilities"),
            "{shell}"
        );
    }
}

#[test]
fn status_without_a_daemon_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let out = aurae(dir.path(), &["--sock", sock.to_str().unwrap(), "status"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is auraed running"), "{stderr}");
}
