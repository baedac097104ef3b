//! The peer capability end to end, with real auraed nodes on loopback: identify and
//! connections, signed name records on the DHT, the remote API over `/aurae/grpc/1.0.0`
//! (status, kv get) behind the trust list, and a forged name record refused.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{Daemon, Layout, wait_serving};

/// One auraed node with the peer capability on, listening on loopback.
struct Node {
    layout: Layout,
    _daemon: Daemon,
    name: String,
    peer_id: String,
    addr: String,
}

fn text(out: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Node {
    async fn start(name: &str, bootstrap: Option<&Node>) -> Self {
        let layout = Layout::new();
        let mut cmd = layout.auraed_command();
        cmd.args([
            "--peer-listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--kad-protocol",
            "/aurae-test/kad/1.0.0",
        ]);
        if let Some(boot) = bootstrap {
            cmd.args(["--peer-bootstrap", &boot.addr]);
        }
        let daemon = Daemon::start_with(&layout, cmd);
        let pki = layout.pki_dir.to_str().expect("a UTF-8 path").to_owned();
        layout.aurae_ok(&["pki", "init", "--pki-dir", &pki, "--name", name]);
        wait_serving(&layout, Duration::from_secs(5)).await;
        layout.aurae_ok(&["capabilities", "enable", "peer"]);
        let id = wait_for(Duration::from_secs(20), "the peer network to start", || {
            let out = layout.aurae(&["peer", "id", "--json"]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        });
        let id: serde_json::Value = serde_json::from_str(&id).expect("peer id --json");
        let peer_id = id["peer_id"].as_str().expect("a peer id").to_owned();
        let addr = id["listen_addrs"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find_map(|v| v.as_str().filter(|s| s.contains("/tcp/")))
            })
            .map(|a| format!("{a}/p2p/{peer_id}"))
            .expect("a TCP listen address");
        Self {
            layout,
            _daemon: daemon,
            name: name.to_owned(),
            peer_id,
            addr,
        }
    }

    fn aurae(&self, args: &[&str]) -> Output {
        self.layout.aurae(args)
    }

    fn aurae_ok(&self, args: &[&str]) -> String {
        self.layout.aurae_ok(args)
    }
}

fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn remote_api_goes_through_the_trust_list() {
    let node1 = Node::start("node1", None).await;
    let node2 = Node::start("node2", Some(&node1)).await;
    // node2 bootstrapped to node1: both see each other, identified.
    wait_for(Duration::from_secs(20), "node1 to know node2", || {
        let out = node1.aurae(&["peer", "ls", "--json"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text.contains(&node2.peer_id) && text.contains("\"direct\"") && text.contains("auraed/"))
            .then_some(())
    });
    let ping = node1.aurae_ok(&["peer", "ping", &node2.peer_id, "--json"]);
    assert!(ping.contains("rtt_us"), "{ping}");

    // Untrusted: node2 refuses node1's calls and says why.
    let out = node1.aurae(&["--peer", &node2.peer_id, "status"]);
    assert!(
        !out.status.success(),
        "an untrusted peer was served: {}",
        text(&out)
    );
    let said = text(&out);
    assert!(
        said.contains("not trusted") && said.contains("aurae peer trust"),
        "{said}"
    );

    // Trusted with the admin role: status and kv get on node2, from node1, by PeerId
    // and by name (resolved from node2's signed record on the DHT).
    node2.aurae_ok(&["kv", "put", "/greeting", "hello from node2"]);
    let trusted = node2.aurae_ok(&[
        "peer",
        "trust",
        &node1.peer_id,
        "--as",
        "node@node1@local",
        "--role",
        "admin",
    ]);
    assert!(trusted.contains("node@node1@local"), "{trusted}");
    let status = node1.aurae_ok(&["--peer", &node2.peer_id, "status"]);
    assert!(
        status.contains(&node2.peer_id),
        "status came from the wrong node: {status}"
    );
    let value = wait_for(Duration::from_secs(20), "node2's name on the DHT", || {
        let out = node1.aurae(&["--peer", "node2", "kv", "get", "/greeting"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    assert_eq!(value.trim(), "hello from node2");
    let resolved = node1.aurae_ok(&["resolve", "node2@local", "--json"]);
    let resolved: serde_json::Value = serde_json::from_str(&resolved).expect("resolve --json");
    assert_eq!(resolved["peer_id"], node2.peer_id.as_str());
    assert_eq!(resolved["record"], "node2@local");

    // node2 sees the remote caller as the principal it trusted.
    let whoami = node1.aurae_ok(&["--peer", "node2", "whoami", "--json"]);
    assert!(whoami.contains("node@node1@local"), "{whoami}");

    // Untrusted again: refused at once.
    node2.aurae_ok(&["peer", "untrust", &node1.peer_id]);
    let out = node1.aurae(&["--peer", "node2", "kv", "get", "/greeting"]);
    assert!(
        !out.status.success(),
        "an untrusted peer was served: {}",
        text(&out)
    );
    assert_ne!(node1.name, node2.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_disabled_peer_network_is_explained() {
    let layout = Layout::new();
    let daemon = Daemon::start(&layout);
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(5)).await;
    let out = layout.aurae(&["peer", "id"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("peer"), "{}", text(&out));
    let out = layout.aurae(&["--peer", "no such peer", "status"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--peer"), "{}", text(&out));
    drop(daemon);
}
