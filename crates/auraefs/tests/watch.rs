//! What `aurae kv watch` sees of changes made through a mount of the default namespace:
//! every change, at its full path, for every watcher whose prefix covers it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::Node;

/// `aurae kv watch PREFIX --json` of `node`, its lines arriving on a channel.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(node: &Node, prefix: &str) -> Self {
        let mut child = node
            .layout
            .aurae_command()
            .args(["kv", "watch", prefix, "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run aurae kv watch");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// Waits for a line holding `wanted`, returning it; panics after `timeout` with what
    /// came instead.
    fn expect(&self, wanted: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(wanted) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!("no change with {wanted} within {timeout:?}; saw {seen:#?}"),
            }
        }
    }

    /// Forgets the lines that arrived so far.
    fn drain(&self) {
        while self.lines.try_recv().is_ok() {}
    }

    /// Waits until the watch is subscribed: a `kv put` under `prefix` shows up.
    fn wait_subscribed(&self, node: &Node, prefix: &str) {
        let marker = format!("{prefix}/.watch-ready");
        for _ in 0..50 {
            let out = node.aurae(&["kv", "put", &marker, "x"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if self
                .lines
                .recv_timeout(Duration::from_millis(200))
                .is_ok_and(|line| line.contains(&marker))
            {
                return;
            }
        }
        panic!("the watch of {prefix} never started");
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_file_written_through_the_mount_is_watched_at_its_full_path() {
    let node = Node::start();
    let mount = node.mount("default", "");
    let services = Watch::start(&node, "/services");
    let everything = Watch::start(&node, "/");
    services.wait_subscribed(&node, "/services");
    everything.wait_subscribed(&node, "/services");

    let dir = mount.join("services/app");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config");
    std::fs::write(&file, b"first").unwrap();
    let path = r#""path":"/services/app/config""#;
    let timeout = Duration::from_secs(5);
    services.expect(r#""path":"/services/app""#, timeout);
    services.expect(path, timeout);
    everything.expect(path, timeout);

    // A write to the existing file, by inode: reported at its path too. Once the first
    // value is in and its changes have arrived, anything more is the second write's.
    common::wait_until(timeout, "the first value", || {
        node.aurae(&["kv", "get", "/services/app/config"]).stdout == b"first"
    });
    std::thread::sleep(Duration::from_millis(500));
    services.drain();
    let mut existing = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    existing.write_all(b"again").unwrap();
    existing.sync_all().unwrap();
    drop(existing);
    let written = services.expect(path, timeout);
    assert!(written.contains(r#""kind":"put""#), "{written}");
    assert_eq!(
        node.aurae(&["kv", "get", "/services/app/config"]).stdout,
        b"again"
    );
    mount.unmount();
}
