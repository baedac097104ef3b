//! What auraefs writes to its standard error when that is not a terminal.

use std::process::Command;

#[test]
fn logs_to_a_pipe_or_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let mountpoint = dir.path().join("mnt");
    std::fs::create_dir(&mountpoint).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_auraefs"))
        .arg("--sock")
        .arg(dir.path().join("none.sock"))
        .args(["mount", "--foreground", "vol"])
        .arg(&mountpoint)
        .env("HOME", dir.path())
        .env("RUST_LOG", "trace")
        .env_remove("AURAE_CONFIG")
        .output()
        .expect("run auraefs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("TRACE"), "nothing was logged: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr:?}");
}
