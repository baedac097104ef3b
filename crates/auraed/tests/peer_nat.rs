//! NAT traversal end to end, in the network-namespace testbed of `tests/netns`: a public
//! relay/bootstrap auraed (10.77.0.1, `--relay-server`) and two private nodes `a` and `b`,
//! each behind its own NAT router. The private nodes reserve a slot on the relay, find
//! each other by name (`aurae resolve nodeb@local`, whose signed record names the relay
//! circuit), connect through the relay, and then:
//! - behind endpoint-independent NATs, upgrade to a direct connection by hole punching
//!   (DCUtR): `aurae peer ls` reports `hole-punched` on both sides;
//! - behind symmetric NATs, stay `relayed` (hole punching gives up).
//!
//! Either way a remote API call (`aurae --peer nodeb status`) works once b trusts a.
//! Needs root, `ip` and `nft`. `bench/holepunch.rs` reuses the helpers of this file.
#![allow(dead_code)]

mod common;
pub mod netns;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, Layout, wait_serving_blocking};
use netns::{Node, Testbed};

/// The Kademlia protocol of the test nodes (kept apart from the IPFS DHT).
const KAD_PROTOCOL: &str = "/aurae-test/kad/1.0.0";
/// The relay's TCP port on the public segment.
const RELAY_PORT: u16 = 4001;
/// How long hole punching may take once the nodes are connected through the relay.
pub const PUNCH_TIMEOUT: Duration = Duration::from_secs(30);

fn text(out: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `cmd` (a command of [`Layout::auraed_command`]) run inside `node`'s namespace, with the
/// same arguments and environment.
fn in_namespace(testbed: &Testbed, node: Node, cmd: &Command) -> Command {
    let mut wrapped = testbed.command(node, cmd.get_program());
    wrapped.args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    wrapped.stdin(Stdio::null());
    wrapped
}

/// One auraed with the peer capability on, running in a testbed namespace; its socket
/// and files are in the root namespace's file system, so the CLI reaches it from here.
pub struct NatNode {
    /// Where it keeps its files.
    pub layout: Layout,
    daemon: Daemon,
    /// Its peer name (`<name>@local`).
    pub name: String,
    /// Its PeerId.
    pub peer_id: String,
    /// The testbed node it runs in.
    pub node: Node,
}

impl NatNode {
    /// Starts auraed in `node`'s namespace with `peer_args`, names it `name` and enables
    /// the peer capability; returns once the swarm answers `aurae peer id`.
    pub fn start(testbed: &Testbed, node: Node, name: &str, peer_args: &[String]) -> Self {
        let layout = Layout::new();
        let mut cmd = layout.auraed_command();
        cmd.args(["--no-mdns", "--kad-protocol", KAD_PROTOCOL])
            .args(peer_args)
            .env(
                "RUST_LOG",
                "info,libp2p_dcutr=debug,libp2p_relay=debug,libp2p_swarm=info",
            );
        let daemon = Daemon::start_with(&layout, in_namespace(testbed, node, &cmd));
        let pki = layout.pki_dir.to_str().expect("a UTF-8 path").to_owned();
        layout.aurae_ok(&["pki", "init", "--pki-dir", &pki, "--name", name]);
        wait_serving_blocking(&layout, Duration::from_secs(10));
        layout.aurae_ok(&["capabilities", "enable", "peer"]);
        let mut started = Self {
            layout,
            daemon,
            name: name.to_owned(),
            peer_id: String::new(),
            node,
        };
        let id = started.wait_for(Duration::from_secs(20), "the peer network to start", |n| {
            n.json(&["peer", "id", "--json"])
        });
        started.peer_id = id["peer_id"].as_str().expect("a peer id").to_owned();
        started
    }

    /// Runs the aurae CLI on this node.
    pub fn aurae(&self, args: &[&str]) -> Output {
        self.layout.aurae(args)
    }

    /// Runs the aurae CLI on this node, asserting success (with the node's log if not).
    pub fn aurae_ok(&self, args: &[&str]) -> String {
        let out = self.aurae(args);
        assert!(
            out.status.success(),
            "aurae {args:?} failed on {}: {}\n--- log of {}:\n{}",
            self.name,
            text(&out),
            self.name,
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The JSON an aurae command printed, if it succeeded.
    pub fn json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let out = self.aurae(args);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.daemon.log_text()
    }

    /// How this node is connected to `peer_id` (`aurae peer ls`): "direct", "relayed",
    /// "hole-punched", or "" when not connected; `None` if it does not know the peer.
    pub fn connection_to(&self, peer_id: &str) -> Option<String> {
        let peers = self.json(&["peer", "ls", "--json"])?;
        peers.as_array()?.iter().find_map(|p| {
            (p["peer_id"] == peer_id).then(|| p["connection"].as_str().unwrap_or("").to_owned())
        })
    }

    /// The addresses `aurae peer id` reports as external.
    pub fn external_addrs(&self) -> Vec<String> {
        self.json(&["peer", "id", "--json"])
            .and_then(|id| {
                id["external_addrs"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// Polls `check` every 200 ms until it gives a value; panics after `timeout` with
    /// this node's log.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what} on {}\n--- log of {}:\n{}",
                self.name,
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The relay/bootstrap node's flags: listen on the public address (TCP and QUIC) and
/// serve as a circuit relay.
pub fn relay_args() -> Vec<String> {
    let ip = Node::Pub.addr();
    vec![
        "--relay-server".to_owned(),
        "--peer-listen".to_owned(),
        format!("/ip4/{ip}/tcp/{RELAY_PORT}"),
        "--peer-listen".to_owned(),
        format!("/ip4/{ip}/udp/{RELAY_PORT}/quic-v1"),
    ]
}

/// The relay's TCP multiaddr with its PeerId.
pub fn relay_addr(relay: &NatNode) -> String {
    format!(
        "/ip4/{}/tcp/{RELAY_PORT}/p2p/{}",
        Node::Pub.addr(),
        relay.peer_id
    )
}

/// A private node's flags: listen on every interface at `port` (TCP and QUIC), join the
/// DHT through the relay and reserve a slot on it.
pub fn private_args(relay: &NatNode, port: u16) -> Vec<String> {
    let relay = relay_addr(relay);
    vec![
        "--peer-listen".to_owned(),
        format!("/ip4/0.0.0.0/tcp/{port}"),
        "--peer-listen".to_owned(),
        format!("/ip4/0.0.0.0/udp/{port}/quic-v1"),
        "--peer-bootstrap".to_owned(),
        relay.clone(),
        "--peer-relay".to_owned(),
        relay,
    ]
}

/// Starts the private nodes a (`nodea<suffix>`) and b (`nodeb<suffix>`) at once, listening
/// on `port`. A name belongs to the first peer that claims it on the DHT: fresh nodes on
/// a relay that saw earlier ones need a fresh `suffix`.
pub fn start_private_pair(
    testbed: &Testbed,
    relay: &NatNode,
    port: u16,
    suffix: &str,
) -> (NatNode, NatNode) {
    let args = private_args(relay, port);
    let (name_a, name_b) = (format!("nodea{suffix}"), format!("nodeb{suffix}"));
    std::thread::scope(|scope| {
        let a = scope.spawn(|| NatNode::start(testbed, Node::A, &name_a, &args));
        let b = scope.spawn(|| NatNode::start(testbed, Node::B, &name_b, &args));
        (
            a.join().expect("starting node a panicked"),
            b.join().expect("starting node b panicked"),
        )
    })
}

/// Waits until `node` has a relay slot: its circuit address is announced as external.
pub fn wait_reserved(node: &NatNode) -> String {
    node.wait_for(Duration::from_secs(20), "a relay reservation", |n| {
        n.external_addrs()
            .into_iter()
            .find(|a| a.contains("/p2p-circuit"))
    })
}

/// Resolves `other`'s name on `node` until its record names a relay circuit; the
/// resolved addresses.
pub fn resolve_with_circuit(node: &NatNode, other: &NatNode) -> Vec<String> {
    let name = format!("{}@local", other.name);
    node.wait_for(
        Duration::from_secs(30),
        &format!("{name}'s record with a circuit address"),
        |n| {
            let resolved = n.json(&["resolve", &name, "--json"])?;
            assert_eq!(
                resolved["peer_id"], other.peer_id,
                "{name} resolved to another peer"
            );
            let addrs: Vec<String> = resolved["addrs"]
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            addrs
                .iter()
                .any(|a| a.contains("/p2p-circuit"))
                .then_some(addrs)
        },
    )
}

/// Whether `node`'s log shows a connection to `peer_id` made through a relay circuit.
pub fn log_shows_relayed_connection(node: &NatNode, peer_id: &str) -> bool {
    node.log().lines().any(|line| {
        line.contains("connected") && line.contains(peer_id) && line.contains("kind=\"relayed\"")
    })
}

/// The NAT traversal lines of `node`'s log (connections, relay slots, DCUtR), for the
/// test's output.
pub fn traversal_log(node: &NatNode) -> String {
    node.log()
        .lines()
        .filter(|line| {
            [
                "connected",
                "relay slot",
                "DCUtR",
                "hole-punch",
                "external address",
                "ircuit",
            ]
            .iter()
            .any(|word| line.contains(word))
        })
        .map(|line| format!("  {line}\n"))
        .collect()
}

/// The relay and the two private nodes of one testbed, b trusting a as an admin.
struct Meeting {
    relay: NatNode,
    a: NatNode,
    b: NatNode,
}

/// Everything both NAT modes share: the relay up, a and b reserved, found by name,
/// trusted, and a first remote call from a to b (which connects them, through the relay
/// at first).
fn private_nodes_meet(testbed: &Testbed) -> Meeting {
    let relay = NatNode::start(testbed, Node::Pub, "relay", &relay_args());
    let relay_external = relay.external_addrs();
    assert!(
        relay_external
            .iter()
            .any(|a| a.starts_with(&format!("/ip4/{}/tcp/", Node::Pub.addr()))),
        "the relay does not announce its public address: {relay_external:?}"
    );
    let (a, b) = start_private_pair(testbed, &relay, 4001, "");

    for node in [&a, &b] {
        let circuit = wait_reserved(node);
        assert!(
            circuit.contains(&relay.peer_id),
            "{}'s circuit is not through the relay: {circuit}",
            node.name
        );
        // A private node does not claim its private addresses are reachable from outside.
        let external = node.external_addrs();
        assert!(
            !external
                .iter()
                .any(|a| a.contains("/ip4/192.168.") || a.contains("/ip4/127.")),
            "{} announces a private address as external: {external:?}",
            node.name
        );
    }

    // Each finds the other by name; the signed record names the relay circuit.
    let b_addrs = resolve_with_circuit(&a, &b);
    println!("nodeb@local resolves on a to {b_addrs:?}");
    let a_addrs = resolve_with_circuit(&b, &a);
    println!("nodea@local resolves on b to {a_addrs:?}");

    b.aurae_ok(&[
        "peer",
        "trust",
        &a.peer_id,
        "--as",
        "node@nodea@local",
        "--role",
        "admin",
    ]);
    // The call dials b at its record's addresses: only the circuit can answer.
    let status = a.aurae_ok(&["--peer", "nodeb", "status"]);
    assert!(
        status.contains(&b.peer_id),
        "status came from the wrong node: {status}"
    );
    assert!(
        log_shows_relayed_connection(&a, &b.peer_id),
        "a did not connect to b through the relay\n--- log of a:\n{}",
        a.log()
    );
    Meeting { relay, a, b }
}

#[test]
fn private_nodes_behind_endpoint_independent_nats_hole_punch_a_direct_connection() {
    let testbed = Testbed::up(netns::NatMode::EndpointIndependent);
    let Meeting { relay, a, b } = private_nodes_meet(&testbed);

    let started = Instant::now();
    a.wait_for(PUNCH_TIMEOUT, "a hole-punched connection to b", |a| {
        (a.connection_to(&b.peer_id)? == "hole-punched").then_some(())
    });
    println!("a: hole-punched to b after {:?}", started.elapsed());
    b.wait_for(
        Duration::from_secs(5),
        "b to see the hole-punched connection",
        |b| (b.connection_to(&a.peer_id)? == "hole-punched").then_some(()),
    );
    let dcutr_ok = |n: &NatNode| n.log().contains("DCUtR: hole punched");
    assert!(
        dcutr_ok(&a) || dcutr_ok(&b),
        "neither node logged a DCUtR success\n--- a:\n{}\n--- b:\n{}",
        a.log(),
        b.log()
    );

    // The remote API still works, now over the direct connection too.
    let status = a.aurae_ok(&["--peer", "nodeb", "status"]);
    assert!(status.contains(&b.peer_id), "{status}");
    println!("a:\n{}b:\n{}", traversal_log(&a), traversal_log(&b));
    drop((a, b, relay));
    testbed.down();
}

#[test]
fn private_nodes_behind_symmetric_nats_stay_relayed_and_still_call_each_other() {
    let testbed = Testbed::up(netns::NatMode::Symmetric);
    let Meeting { relay, a, b } = private_nodes_meet(&testbed);

    // b (which accepted the relayed connection) drives the hole punch and reports when it
    // gives up; until then, and after, the connection must stay relayed.
    let started = Instant::now();
    b.wait_for(
        Duration::from_secs(120),
        "b to give up hole punching",
        |b| {
            assert_ne!(
                b.connection_to(&a.peer_id).as_deref(),
                Some("hole-punched"),
                "hole punching cannot work through a symmetric NAT"
            );
            b.log()
                .contains("DCUtR: hole punching failed")
                .then_some(())
        },
    );
    println!("b gave up hole punching after {:?}", started.elapsed());
    assert_eq!(a.connection_to(&b.peer_id).as_deref(), Some("relayed"));
    assert_eq!(b.connection_to(&a.peer_id).as_deref(), Some("relayed"));

    let status = a.aurae_ok(&["--peer", "nodeb", "status"]);
    assert!(status.contains(&b.peer_id), "{status}");
    assert_eq!(a.connection_to(&b.peer_id).as_deref(), Some("relayed"));
    println!("a:\n{}b:\n{}", traversal_log(&a), traversal_log(&b));
    drop((a, b, relay));
    testbed.down();
}
