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
            "--name",
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
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?} was not refused as usage"
        );
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
    assert_eq!(out.status.code(), Some(3), "no socket: cannot connect");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is auraed running"), "{stderr}");

    // A socket file nobody listens on any more: connection refused.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let out = aurae(dir.path(), &["--sock", sock.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(3), "refused: cannot connect");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is auraed running"), "{stderr}");
}

/// Runs `aurae` with its standard output on a pipe whose reading end is already closed.
fn aurae_into_closed_pipe(home: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_aurae"))
        .args(args)
        .env("HOME", home)
        .env_remove("AURAE_SOCKET")
        .env_remove("AURAE_CONFIG")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run aurae")
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["completions", "bash"][..],
        &["--help"],
        &["pki", "--help"],
    ] {
        let out = aurae_into_closed_pipe(dir.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn the_help_describes_every_command_group_and_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = aurae(dir.path(), &["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "key/value",
        "volumes",
        "Exit codes:",
        "  3  cannot connect",
        "  5  not found",
    ] {
        assert!(help.contains(word), "{word:?} missing from:\n{help}");
    }
    let out = aurae(dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key/value"));
}

#[test]
fn a_bad_volume_name_is_told_the_volume_name_rule() {
    let dir = tempfile::tempdir().unwrap();
    let out = aurae(dir.path(), &["volume", "create", "Data"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("volume name 'Data'"), "{stderr}");
    assert!(stderr.contains("a-z, 0-9, '-' or '_'"), "{stderr}");
    assert!(!stderr.contains("255 bytes"), "{stderr}");
}

#[test]
fn a_bad_quota_is_refused_with_what_a_size_looks_like() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["lots", "1.5X", "1.2.3G"] {
        let out = aurae(dir.path(), &["volume", "create", "data", "--quota", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("e.g. 4096, 512M, 1.5G"), "{bad}: {stderr}");
    }
}

#[test]
fn a_config_error_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the config file should be: reading it fails with EISDIR.
    let config = dir.path().join("config.toml");
    std::fs::create_dir(&config).unwrap();
    let out = aurae(
        dir.path(),
        &["--config", config.to_str().unwrap(), "volume", "list"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cause = std::io::Error::from_raw_os_error(21).to_string();
    assert_eq!(stderr.matches(&cause).count(), 1, "{stderr}");
}

/// A socket that accepts every connection and never says a word: a hung auraed, or
/// another program on auraed's socket. It holds what it accepted until the test ends.
fn silent_socket(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    path
}

/// Runs `aurae` with `args` and says how long it took.
fn timed(home: &Path, args: &[&str]) -> (Output, std::time::Duration) {
    let start = std::time::Instant::now();
    let out = aurae(home, args);
    (out, start.elapsed())
}

/// Writes a client identity into `home`'s config (`aurae pki init` against a socket that
/// does not exist, so that it does not wait for a daemon to pick the material up).
fn client_identity(home: &Path) {
    let out = aurae(
        home,
        &[
            "--sock",
            home.join("absent.sock").to_str().unwrap(),
            "pki",
            "init",
            "--pki-dir",
            home.join("pki").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_socket_that_never_answers_fails_at_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let sock = silent_socket(dir.path());
    let sock = sock.to_str().unwrap();
    // No identity: status probes the empty loop in plaintext.
    let (out, took) = timed(
        dir.path(),
        &["status", "--sock", sock, "--connect-timeout", "1"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{stderr}");
    assert!(stderr.contains("connect timeout (1s)"), "{stderr}");
    assert!(stderr.contains("--connect-timeout"), "{stderr}");
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");

    // With an identity: the TLS handshake is never answered.
    client_identity(dir.path());
    for args in [
        &["status", "--sock", sock, "--connect-timeout", "1"][..],
        &["kv", "ls", "/", "--sock", sock, "--connect-timeout", "0.5"][..],
    ] {
        let (out, took) = timed(dir.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(10), "{args:?}: {stderr}");
        assert!(stderr.contains("connect timeout"), "{args:?}: {stderr}");
        assert!(
            took < std::time::Duration::from_secs(3),
            "{args:?} took {took:?}"
        );
    }
}

#[test]
fn the_client_config_sets_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let sock = silent_socket(dir.path());
    client_identity(dir.path());
    let config = dir.path().join(".aurae/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}connect_timeout = 0.5\n")).unwrap();
    let (out, took) = timed(
        dir.path(),
        &["volume", "list", "--sock", sock.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{stderr}");
    assert!(stderr.contains("connect timeout (0.5s)"), "{stderr}");
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
}

#[test]
fn the_overall_timeout_bounds_a_command_whose_connection_has_no_limit() {
    let dir = tempfile::tempdir().unwrap();
    let sock = silent_socket(dir.path());
    client_identity(dir.path());
    let (out, took) = timed(
        dir.path(),
        &[
            "kv",
            "stat",
            "/x",
            "--sock",
            sock.to_str().unwrap(),
            "--connect-timeout",
            "0",
            "--timeout",
            "1",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{stderr}");
    assert!(stderr.contains("overall timeout (1s)"), "{stderr}");
    assert!(stderr.contains("--timeout"), "{stderr}");
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_timeout_that_is_no_number_of_seconds_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = aurae(dir.path(), &["status", "--timeout", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("number of seconds"), "{stderr}");
}
