//! Mounting and unmounting a real auraefs on a real auraed: fail-fast checks with their
//! messages and exit codes, the mount(8) helper, and unmounts that leave nothing behind.

mod common;

use std::os::unix::fs::symlink;
use std::process::Command;
use std::time::Duration;

use common::{Node, mount_points, wait_until};

fn failure(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("run auraefs");
    assert!(!out.status.success(), "auraefs unexpectedly succeeded");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn mounting_a_missing_volume_fails_fast_naming_the_volume() {
    let node = Node::start();
    let dir = node.mountpoint("missing");
    let started = std::time::Instant::now();
    let (code, stderr) = failure(node.auraefs().args(["mount", "nosuch"]).arg(&dir));
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("no volume named 'nosuch'"), "{stderr}");
    assert!(stderr.contains("aurae volume create nosuch"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        !mount_points()
            .iter()
            .any(|(p, _)| *p == dir.canonicalize().unwrap())
    );
}

#[test]
fn mounting_on_a_busy_mountpoint_fails_fast() {
    let node = Node::start();
    node.create_volume("busy", 0);
    let mount = node.mount("busy", "");
    let (code, stderr) = failure(node.auraefs().args(["mount", "busy"]).arg(&mount.path));
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("is already a mount point"), "{stderr}");
    assert!(stderr.contains("fuse.auraefs"), "{stderr}");
}

#[test]
fn mounting_on_a_missing_directory_or_a_file_fails_fast() {
    let node = Node::start();
    node.create_volume("vol", 0);
    let missing = node.root().join("does-not-exist");
    let (code, stderr) = failure(node.auraefs().args(["mount", "vol"]).arg(&missing));
    assert_eq!(code, 5, "{stderr}");
    assert!(
        stderr.contains("does not exist") && stderr.contains("mkdir -p"),
        "{stderr}"
    );
    let file = node.root().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let (code, stderr) = failure(node.auraefs().args(["mount", "vol"]).arg(&file));
    assert_eq!(code, 5, "{stderr}");
    assert!(stderr.contains("is not a directory"), "{stderr}");
}

#[test]
fn an_unreachable_auraed_is_reported_with_the_socket() {
    let node = Node::start();
    let dir = node.mountpoint("x");
    let nowhere = node.root().join("nobody-listens.sock");
    let (code, stderr) = failure(
        node.auraefs()
            .args(["mount", "default"])
            .arg(&dir)
            .arg("-o")
            .arg(format!("sock={}", nowhere.display())),
    );
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("is auraed running?"), "{stderr}");
}

#[test]
fn an_auraed_in_its_empty_loop_is_reported_with_the_fix() {
    let node = Node::start_empty_loop();
    let dir = node.mountpoint("x");
    let (code, stderr) = failure(node.auraefs().args(["mount", "default"]).arg(&dir));
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("empty loop") || stderr.contains("aurae pki init"),
        "{stderr}"
    );
}

#[test]
fn a_remote_volume_needs_the_peer_capability() {
    let node = Node::start();
    let dir = node.mountpoint("remote");
    let (code, stderr) = failure(
        node.auraefs()
            .args(["mount", "data@node2@example.org"])
            .arg(&dir),
    );
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("peer"), "{stderr}");
    let (code, stderr) = failure(node.auraefs().args(["mount", "data@No de"]).arg(&dir));
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("the peer part 'No de'"), "{stderr}");
}

#[test]
fn an_unknown_mount_option_is_a_usage_error() {
    let node = Node::start();
    let dir = node.mountpoint("opts");
    let (code, stderr) = failure(
        node.auraefs()
            .args(["mount", "default"])
            .arg(&dir)
            .args(["-o", "rw,bogus"]),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown mount option 'bogus'"), "{stderr}");
}

#[test]
fn auraefs_umount_leaves_no_mount_and_the_daemon_exits() {
    let node = Node::start();
    node.create_volume("gone", 0);
    let mount = node.mount("gone", "");
    std::fs::write(mount.join("f"), b"x").unwrap();
    // Busy while a file is open: a clear refusal, the mount stays.
    let file = std::fs::File::open(mount.join("f")).unwrap();
    let out = Command::new(common::auraefs_bin())
        .arg("umount")
        .arg(&mount.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("busy"));
    assert!(mount.is_mounted());
    drop(file);
    mount.unmount();
    wait_until(Duration::from_secs(5), "the daemon to log its end", || {
        mount.log_text().contains("unmounted")
    });
    // A second unmount says there is nothing mounted.
    let out = Command::new(common::auraefs_bin())
        .arg("umount")
        .arg(&mount.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a mount point"));
}

#[test]
fn umount8_and_fusermount3_unmount_cleanly() {
    let node = Node::start();
    node.create_volume("plain", 0);
    let mount = node.mount("plain", "");
    let status = Command::new("umount").arg(&mount.path).status().unwrap();
    assert!(status.success());
    wait_until(Duration::from_secs(5), "umount(8)", || !mount.is_mounted());
    wait_until(Duration::from_secs(5), "the daemon to end", || {
        mount.log_text().contains("unmounted")
    });
    let again = node.mount_on("plain", &mount.path, "");
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(&again.path)
        .status()
        .expect("fusermount3 (apt fuse3) is installed");
    assert!(status.success());
    wait_until(Duration::from_secs(5), "fusermount3 -u", || {
        !again.is_mounted()
    });
}

#[test]
fn sigterm_unmounts_a_foreground_mount() {
    let node = Node::start();
    node.create_volume("fg", 0);
    let dir = node.mountpoint("fg");
    let mut child = node
        .auraefs()
        .args(["mount", "fg"])
        .arg(&dir)
        .arg("--foreground")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let path = dir.canonicalize().unwrap();
    let guard = common::Mount {
        path: path.clone(),
        log: node.root().join("unused.log"),
    };
    wait_until(Duration::from_secs(10), "the foreground mount", || {
        guard.is_mounted()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    wait_until(Duration::from_secs(5), "SIGTERM to unmount", || {
        !guard.is_mounted()
    });
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn the_mount_helper_mounts_with_mount8_syntax_and_type_fuse_auraefs() {
    let node = Node::start();
    node.create_volume("helper", 0);
    let bin_dir = node.root().join("sbin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let helper = bin_dir.join("mount.fuse.auraefs");
    symlink(common::auraefs_bin(), &helper).unwrap();
    let dir = node.mountpoint("helper");
    let path = dir.canonicalize().unwrap();
    let guard = common::Mount {
        path: path.clone(),
        log: node.root().join("helper.log"),
    };
    // As mount(8) runs it, with fstab-style options naming the socket.
    let out = Command::new(&helper)
        .arg("helper")
        .arg(&dir)
        .arg("-n")
        .arg("-o")
        .arg(format!(
            "rw,nosuid,nodev,_netdev,defaults,sock={},default_permissions,log={}",
            node.sock.display(),
            guard.log.display()
        ))
        .env("HOME", node.home())
        .env_remove("AURAE_SOCKET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = mount_points()
        .into_iter()
        .find(|(p, _)| *p == path)
        .expect("mounted by the helper");
    assert_eq!(entry.1, "fuse.auraefs");
    std::fs::write(guard.join("hello"), b"from the helper").unwrap();
    assert_eq!(
        std::fs::read(guard.join("hello")).unwrap(),
        b"from the helper"
    );
    guard.unmount();
}

#[test]
fn remount_switches_a_live_mount_between_read_only_and_read_write() {
    let node = Node::start();
    node.create_volume("flip", 0);
    let mount = node.mount("flip", "default_permissions");
    std::fs::write(mount.join("kept"), b"k").unwrap();
    // As mount.fuse3 runs it for `mount -o remount,ro <dir>`: options copied from mountinfo.
    let remount = |flag: &str| {
        let out = Command::new(common::auraefs_bin())
            .arg("flip")
            .arg(&mount.path)
            .arg("-o")
            .arg(format!(
                "remount,{flag},user_id=0,group_id=0,default_permissions"
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    remount("ro");
    let err = std::fs::write(mount.join("new"), b"n").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS));
    assert_eq!(std::fs::read(mount.join("kept")).unwrap(), b"k");
    remount("rw");
    std::fs::write(mount.join("new"), b"n").unwrap();
}
