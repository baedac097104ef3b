//! A real kernel under QEMU (TCG) booting an image from `scripts/qemu-pid1-image`, read
//! through its serial console: for the tests where auraed is a machine's init.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The QEMU binary the tests run (apt `qemu-system-x86`).
pub const QEMU: &str = "qemu-system-x86_64";

/// How a guest is booted.
#[derive(Debug, Clone, Copy)]
pub struct Boot<'a> {
    /// The guest's memory, as QEMU's `-m` takes it (`512M`, `1G`).
    pub memory: &'a str,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// Expose QEMU's human monitor on `<dir>/monitor.sock` (to send keys).
    pub monitor: bool,
}

/// A running QEMU, killed when dropped so that no failure path leaves it behind.
#[derive(Debug)]
pub struct Qemu {
    child: Child,
    serial: PathBuf,
    stderr: PathBuf,
}

impl Qemu {
    /// Boots `image` (its `vmlinuz` and `initramfs.cpio.gz`), with the serial console and
    /// QEMU's own output in files under `dir`.
    pub fn boot(image: &Path, dir: &Path, boot: Boot<'_>) -> Self {
        let serial = dir.join("serial.log");
        let stderr = dir.join("qemu.log");
        let output = std::fs::File::create(&stderr).expect("create qemu.log");
        let mut command = Command::new(QEMU);
        command
            .args([
                "-M",
                "pc",
                "-accel",
                "tcg",
                "-cpu",
                "max",
                "-m",
                boot.memory,
            ])
            .args(["-nodefaults", "-display", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()));
        if boot.monitor {
            command.arg("-monitor").arg(format!(
                "unix:{},server,nowait",
                dir.join("monitor.sock").display()
            ));
        }
        let child = command
            .arg("-kernel")
            .arg(image.join("vmlinuz"))
            .arg("-initrd")
            .arg(image.join("initramfs.cpio.gz"))
            .args(["-append", boot.cmdline])
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("share qemu.log"))
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
    pub fn console(&self) -> String {
        console_of(&self.serial)
    }

    /// What a failure message should show: the console and QEMU's own output.
    pub fn report(&self) -> String {
        report_of(&self.serial, &self.stderr)
    }

    /// Polls until `text` is on the console; fails if QEMU exits or `timeout` passes.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) {
        let start = Instant::now();
        while !self.console().contains(text) {
            if let Some(status) = self.child.try_wait().expect("poll QEMU") {
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

    /// Waits for QEMU to exit by itself (the guest powered off); `why` says what was
    /// expected, for the failure message.
    pub fn wait_exit(&mut self, timeout: Duration, why: &str) -> ExitStatus {
        let (serial, stderr) = (self.serial.clone(), self.stderr.clone());
        crate::wait_for_exit(&mut self.child, timeout, || {
            format!(
                "QEMU still runs {timeout:?} after {why}{}",
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

/// Removes ANSI escape sequences (`ESC [ ... final byte`) from tracing's coloured output.
pub fn strip_ansi(text: &str) -> String {
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
