//! auraed as the init of a real machine: Debian's cloud kernel boots under QEMU (TCG)
//! into an initramfs whose only program is auraed. On a real kernel auraed must mount
//! /proc, /sys, /dev, /run and the cgroup2 tree itself, serve its empty loop, take SIGINT
//! on Ctrl-Alt-Del and power the machine off.
//!
//! Needs root, `qemu-system-x86_64`, `cpio` and apt (for the kernel package); `.ci/run`
//! installs them. `scripts/qemu-pid1-image` builds the kernel and initramfs.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::auraed_bin;
use common::qemu::{Boot, QEMU, Qemu, strip_ansi};

/// Booting to `auraed listening` takes about 4 s under TCG here.
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
const POWER_OFF_TIMEOUT: Duration = Duration::from_secs(30);

/// The early mounts auraed owes a bare kernel, as (target, fstype).
const EARLY_MOUNTS: [(&str, &str); 5] = [
    ("/proc", "proc"),
    ("/sys", "sysfs"),
    ("/dev", "devtmpfs"),
    ("/run", "tmpfs"),
    ("/sys/fs/cgroup", "cgroup2"),
];

/// The kernel command line: auraed is PID 1 itself, its flags follow `--`.
const CMDLINE: &str = "console=ttyS0 quiet panic=-1 rdinit=/auraed -- \
    --sock /run/aurae.sock --pki-dir /etc/aurae/pki --data-dir /var/lib/aurae \
    --key /root/.ssh/id_aura";

/// Runs one command on QEMU's human monitor and returns the monitor's reply.
fn monitor(socket: &Path, command: &str) -> String {
    let mut stream = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("cannot reach the QEMU monitor at {}: {e}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reply = String::new();
    // The greeting ends with a prompt; the reply to the command ends with the next one.
    let read_prompt = |stream: &mut UnixStream, reply: &mut String| {
        let mut buf = [0u8; 4096];
        let before = reply.matches("(qemu)").count();
        while reply.matches("(qemu)").count() == before {
            let n = stream
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("QEMU monitor: {e}; so far: {reply:?}"));
            assert!(n > 0, "QEMU monitor closed; so far: {reply:?}");
            reply.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    };
    read_prompt(&mut stream, &mut reply);
    writeln!(stream, "{command}").unwrap();
    read_prompt(&mut stream, &mut reply);
    strip_ansi(&reply)
}

/// The kernel and initramfs with auraed as init, built by `scripts/qemu-pid1-image`.
fn build_image(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/qemu-pid1-image");
    let out = Command::new(&script)
        .arg(auraed_bin())
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}): no kernel or initramfs for the QEMU test; .ci/run installs what \
         it needs (cpio, apt lists for linux-image-cloud-amd64)\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts that the `needles` appear on the console in this order.
fn assert_in_order(console: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match console[from..].find(needle) {
            Some(at) => from += at + needle.len(),
            None => panic!("`{needle}` is missing, or out of order in {needles:?}:\n{console}"),
        }
    }
}

#[test]
fn as_the_machines_init_auraed_mounts_serves_and_powers_off_on_ctrl_alt_del() {
    let has_qemu = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_qemu,
        "{QEMU} is missing: this test boots a real kernel under QEMU; .ci/run installs it \
         (apt-get install qemu-system-x86 cpio)"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    build_image(dir.path());

    let started = Instant::now();
    let mut qemu = Qemu::boot(
        dir.path(),
        dir.path(),
        Boot {
            memory: "512M",
            cmdline: CMDLINE,
            monitor: true,
        },
    );
    qemu.wait_for("auraed listening", BOOT_TIMEOUT);
    let booted = started.elapsed();

    let console = qemu.console();
    for (target, fstype) in EARLY_MOUNTS {
        let line = format!("mounted target=\"{target}\" fstype=\"{fstype}\"");
        assert!(
            console.contains(&line),
            "auraed did not mount {target} ({fstype}) as init{}",
            qemu.report()
        );
    }
    for bad in [
        "mount failed",
        "cannot take over Ctrl-Alt-Del",
        "Kernel panic",
    ] {
        assert!(
            !console.contains(bad),
            "`{bad}` on the console{}",
            qemu.report()
        );
    }
    assert!(
        console.contains("generated a new node key key=/root/.ssh/id_aura"),
        "auraed did not create its node key in the initramfs{}",
        qemu.report()
    );

    // With Ctrl-Alt-Del taken over the kernel sends SIGINT to PID 1 instead of rebooting.
    let reply = monitor(&dir.path().join("monitor.sock"), "sendkey ctrl-alt-delete");
    let status = qemu.wait_exit(
        POWER_OFF_TIMEOUT,
        "Ctrl-Alt-Del: the guest did not power off",
    );
    let console = qemu.console();
    assert!(
        status.success(),
        "QEMU exited with {status} (monitor: {reply:?}){}",
        qemu.report()
    );
    // -no-reboot also ends QEMU on a reboot or panic: only the kernel's line tells a power-off.
    assert_in_order(
        &console,
        &[
            "auraed listening",
            "SIGINT: shutting down",
            "powering off",
            "reboot: Power down",
        ],
    );
    assert!(
        !console.contains("Kernel panic"),
        "the kernel panicked{}",
        qemu.report()
    );
    eprintln!(
        "booted to `auraed listening` in {booted:?}; QEMU powered off {:?} after start",
        started.elapsed()
    );
}
