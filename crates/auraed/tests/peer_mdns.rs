//! mDNS discovery between two auraed nodes in two network namespaces joined by a veth
//! pair (rust-libp2p's mDNS ignores loopback, so a real link is needed): neither is told
//! about the other, and each finds the other and connects.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, Layout, wait_serving};

/// Two namespaces and the veth pair between them, removed when dropped.
struct Link {
    namespaces: [String; 2],
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (apt-get install iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Link {
    fn up() -> Self {
        let tag = std::process::id() % 100_000;
        let namespaces = [format!("aurae-mdns-a{tag}"), format!("aurae-mdns-b{tag}")];
        let link = Self { namespaces };
        let [a, b] = &link.namespaces;
        ip(&["netns", "add", a]);
        ip(&["netns", "add", b]);
        let (va, vb) = (format!("md{tag}a"), format!("md{tag}b"));
        ip(&[
            "link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b,
        ]);
        for (ns, dev, addr) in [(a, &va, "10.79.0.1/24"), (b, &vb, "10.79.0.2/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up", "multicast", "on"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        link
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// auraed inside namespace `ns`, with mDNS on (the default) and no bootstrap peer.
fn start_in(ns: &str, layout: &Layout) -> Daemon {
    let base = layout.auraed_command();
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(base.get_program())
        .args(base.get_args())
        .args([
            "--peer-listen",
            "/ip4/0.0.0.0/tcp/4001",
            "--kad-protocol",
            "/aurae-mdns-test/kad/1.0.0",
        ]);
    for (key, value) in base.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    Daemon::start_with(layout, cmd)
}

fn peer_id(layout: &Layout) -> String {
    let start = Instant::now();
    loop {
        let out = layout.aurae(&["peer", "id", "--json"]);
        if out.status.success() {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            return json["peer_id"].as_str().expect("peer id").to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the peer network did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_on_one_link_find_each_other_by_mdns() {
    let link = Link::up();
    let mut nodes = Vec::new();
    for (i, ns) in link.namespaces.iter().enumerate() {
        let layout = Layout::new();
        let daemon = start_in(ns, &layout);
        let pki = layout.pki_dir.to_str().expect("utf-8").to_owned();
        layout.aurae_ok(&[
            "pki",
            "init",
            "--pki-dir",
            &pki,
            "--name",
            &format!("mdns{i}"),
        ]);
        wait_serving(&layout, Duration::from_secs(5)).await;
        layout.aurae_ok(&["capabilities", "enable", "peer"]);
        let id = peer_id(&layout);
        nodes.push((layout, daemon, id));
    }
    let start = Instant::now();
    for (i, (layout, daemon, _)) in nodes.iter().enumerate() {
        let other = &nodes[1 - i].2;
        loop {
            let out = layout.aurae(&["peer", "ls", "--json"]);
            let listed = String::from_utf8_lossy(&out.stdout).into_owned();
            if listed.contains(other.as_str()) && listed.contains("\"direct\"") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "node {i} did not find {other} by mDNS: {listed}\nlog: {}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    drop(nodes);
    drop(link);
}
