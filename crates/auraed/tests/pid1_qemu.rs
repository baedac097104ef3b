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
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::auraed_bin;

const QEMU: &str = "qemu-system-x86_64";
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

/// A running QEMU, killed when dropped so that no failure path leaves it behind.
struct Qemu {
    child: Child,
    serial: PathBuf,
    stderr: PathBuf,
}

impl Qemu {
    fn boot(image: &Path, dir: &Path) -> Self {
        let serial = dir.join("serial.log");
        let stderr = dir.join("qemu.log");
        let output = std::fs::File::create(&stderr).unwrap();
        let child = Command::new(QEMU)
            .args(["-M", "pc", "-accel", "tcg", "-cpu", "max", "-m", "512M"])
            .args(["-nodefaults", "-display", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-monitor")
            .arg(format!(
                "unix:{},server,nowait",
                dir.join("monitor.sock").display()
            ))
            .arg("-kernel")
            .arg(image.join("vmlinuz"))
            .arg("-initrd")
            .arg(image.join("initramfs.cpio.gz"))
            .args(["-append", CMDLINE])
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {QEMU}: {e}"));
        Self {
            child,
            serial,
            stderr,
        }
    }

    /// The serial console so far, without ANSI colours and carriage returns.
    fn console(&self) -> String {
        console_of(&self.serial)
    }

    /// What a failure message should show: the console and QEMU's own output.
    fn report(&self) -> String {
        report_of(&self.serial, &self.stderr)
    }

    /// Polls until `text` is on the console; fails if QEMU exits or `timeout` passes.
    fn wait_for(&mut self, text: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.console().contains(text) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "QEMU exited ({status}) before `{text}` appeared{}",
                    self.report()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "no `{text}` on the console after {timeout:?}{}",
                self.report()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for QEMU to exit by itself.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let (serial, stderr) = (self.serial.clone(), self.stderr.clone());
        common::wait_for_exit(&mut self.child, timeout, || {
            format!(
                "QEMU still runs {timeout:?} after Ctrl-Alt-Del: the guest did not power off{}",
                report_of(&serial, &stderr)
            )
        })
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

/// Removes ANSI escape sequences (`ESC [ ... final byte`) from tracing's coloured output.
/// The serial console in `serial`, without ANSI colours and carriage returns.
fn console_of(serial: &Path) -> String {
    let raw = std::fs::read(serial).unwrap_or_default();
    strip_ansi(&String::from_utf8_lossy(&raw)).replace('\r', "")
}

/// The console and QEMU's own output, for a failure message.
fn report_of(serial: &Path, stderr: &Path) -> String {
    let qemu = std::fs::read_to_string(stderr).unwrap_or_default();
    format!(
        "\n--- serial console ---\n{}\n--- qemu output ---\n{qemu}",
        console_of(serial)
    )
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('\x40'..='\x7e').contains(&c) {
                    break;
                }
            }
        }
    }
    out
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
    let mut qemu = Qemu::boot(dir.path(), dir.path());
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
    let status = qemu.wait_exit(POWER_OFF_TIMEOUT);
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
