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

    // A local principal without peer.forward cannot use this node to call others.
    let pki = node1.layout.pki_dir.to_str().expect("utf-8").to_owned();
    node1.aurae_ok(&["pki", "issue", "alice", "--pki-dir", &pki]);
    let alice = node1.layout.identity("alice");
    let out = node1.aurae(&[
        "--cert",
        alice.client_cert.to_str().expect("utf-8"),
        "--key",
        alice.client_key.to_str().expect("utf-8"),
        "--peer",
        "node2",
        "status",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("peer.forward"), "{}", text(&out));

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

/// An auraefs mount, unmounted when dropped.
struct RemoteMount {
    path: std::path::PathBuf,
}

impl RemoteMount {
    fn is_mounted(&self) -> bool {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|line| line.split(' ').nth(4) == Some(self.path.to_str().unwrap_or("")))
    }
}

impl Drop for RemoteMount {
    fn drop(&mut self) {
        if self.is_mounted() {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status();
        }
    }
}

fn mount(node: &Node, volume: &str, dir: &std::path::Path) -> RemoteMount {
    std::fs::create_dir_all(dir).expect("mount point");
    let log = node
        .layout
        .root
        .path()
        .join(format!("auraefs-{}.log", volume.replace('@', "-")));
    let out = std::process::Command::new(aurae_testkit::workspace_bin("auraefs", "auraefs"))
        .arg("--sock")
        .arg(&node.layout.sock)
        .env("HOME", &node.layout.home)
        .env_remove("AURAE_SOCKET")
        .env_remove("AURAE_CONFIG")
        .args(["mount", volume])
        .arg(dir)
        .arg("-o")
        .arg(format!("log={}", log.display()))
        .output()
        .expect("run auraefs");
    assert!(
        out.status.success(),
        "auraefs mount {volume}: {}",
        text(&out)
    );
    let mount = RemoteMount {
        path: dir.canonicalize().expect("canonical mount point"),
    };
    assert!(
        mount.is_mounted(),
        "auraefs returned before the mount was live"
    );
    mount
}

#[tokio::test(flavor = "multi_thread")]
async fn three_nodes_resolve_each_other_and_mount_a_remote_volume() {
    let node1 = Node::start("node1", None).await;
    let node2 = Node::start("node2", Some(&node1)).await;
    let node3 = Node::start("node3", Some(&node1)).await;
    node2.aurae_ok(&["volume", "create", "data"]);

    // node3 never dialled node2: it finds node2's signed name record and the provider
    // record of its volume on the DHT, through node1.
    let resolved = wait_for(Duration::from_secs(30), "data@node2 on the DHT", || {
        let out = node3.aurae(&["resolve", "data@node2", "--json", "--timeout-ms", "5000"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (json["entity_provided"] == true).then_some(json)
    });
    assert_eq!(resolved["peer_id"], node2.peer_id.as_str(), "{resolved}");
    assert_eq!(resolved["record"], "node2@local", "{resolved}");
    let queried = resolved["queried"].as_u64().unwrap_or(u64::MAX);
    assert!(queried <= 2, "a 3-node DHT took {queried} hops: {resolved}");
    let providers = node1.aurae_ok(&["peer", "providers", "data@node2", "--json"]);
    assert!(providers.contains(&node2.peer_id), "{providers}");

    // node2 lets node3 in; node3 mounts node2's volume over the peer network.
    node2.aurae_ok(&[
        "peer",
        "trust",
        &node3.peer_id,
        "--as",
        "node@node3@local",
        "--role",
        "admin",
    ]);
    let dir = node3.layout.root.path().join("mnt/remote");
    let remote = mount(&node3, "data@node2", &dir);
    let here = node3.layout.root.path().join("hello.txt");
    std::fs::write(&here, "written on node3\n").expect("write a local file");
    common::sh(&format!(
        "cp {} {}/hello.txt",
        here.display(),
        remote.path.display()
    ));
    let listed = common::sh(&format!("ls {}", remote.path.display()));
    assert!(listed.contains("hello.txt"), "{listed}");
    // Seen on node2 itself, through its own local mount.
    let local_dir = node2.layout.root.path().join("mnt/local");
    let local = mount(&node2, "data", &local_dir);
    let there = std::fs::read_to_string(local.path.join("hello.txt")).expect("read on node2");
    assert_eq!(there, "written on node3\n");
    // A change made on node2 reaches node3's cached view (Watch events over the network).
    std::fs::write(local.path.join("from-node2.txt"), "hi").expect("write on node2");
    wait_for(Duration::from_secs(10), "node2's file on node3", || {
        std::fs::read_to_string(remote.path.join("from-node2.txt"))
            .ok()
            .filter(|t| t == "hi")
    });
    common::sh(&format!("rm {}/hello.txt", remote.path.display()));
    wait_for(Duration::from_secs(10), "the removal on node2", || {
        (!local.path.join("hello.txt").exists()).then_some(())
    });
    drop(remote);
    drop(local);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_name_record_is_refused() {
    use futures::StreamExt as _;
    use libp2p::{identity::Keypair, kad, noise, tcp, yamux};

    let node1 = Node::start("node1", None).await;
    let node2 = Node::start("node2", Some(&node1)).await;
    wait_for(Duration::from_secs(30), "node2's record", || {
        let out = node1.aurae(&["resolve", "node2@local", "--json", "--timeout-ms", "5000"]);
        out.status.success().then_some(())
    });

    // A peer of our own making joins the DHT and offers node1 two records for
    // "node2@local": one pointing at node2's PeerId but signed with its own key (a
    // forgery), and one honestly self-signed claiming the name for itself.
    let forger = Keypair::generate_ed25519();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(forger.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| {
            let id = key.public().to_peer_id();
            let config = kad::Config::new(libp2p::StreamProtocol::new("/aurae-test/kad/1.0.0"));
            kad::Behaviour::with_config(id, kad::store::MemoryStore::new(id), config)
        })
        .expect("behaviour")
        .build();
    swarm.behaviour_mut().set_mode(Some(kad::Mode::Server));
    let node1_addr: libp2p::Multiaddr = node1.addr.parse().expect("node1's address");
    let node1_id: libp2p::PeerId = node1.peer_id.parse().expect("node1's id");
    swarm
        .behaviour_mut()
        .add_address(&node1_id, node1_addr.clone());
    swarm.dial(node1_addr).expect("dial node1");

    let node2_id: libp2p::PeerId = node2.peer_id.parse().expect("node2's id");
    let forged = forge(&forger, "node2@local", &node2_id);
    let squat = auraed::peer::records::sign_name(&forger, "node2@local", &[], u64::MAX / 2);
    for value in [forged, squat] {
        let record = kad::Record::new(auraed::peer::records::name_key("node2@local"), value);
        swarm
            .behaviour_mut()
            .put_record_to(record, std::iter::once(node1_id), kad::Quorum::One);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout_at(deadline, swarm.select_next_some()).await;
    }

    // node1 still resolves node2 to node2 and says it refused the forgery.
    let out = node1.aurae(&["resolve", "node2@local", "--json", "--timeout-ms", "5000"]);
    let said = text(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    if out.status.success() {
        assert_eq!(json["peer_id"], node2.peer_id.as_str(), "{said}");
    } else {
        // If the squatter's own record is found too, the conflict is reported, never
        // settled for the squatter.
        assert!(
            said.contains("claimed by 2 peers") && said.contains(&node2.peer_id),
            "{said}"
        );
    }
    let log = node1._daemon.log_text();
    assert!(
        log.contains("refused a DHT record") && log.contains("signed by"),
        "node1's log: {log}"
    );
    assert!(
        log.contains("two peers claim one name"),
        "node1's log: {log}"
    );
}

/// A name record pointing `name` at `victim` but signed with `forger`'s key.
fn forge(forger: &libp2p::identity::Keypair, name: &str, victim: &libp2p::PeerId) -> Vec<u8> {
    use prost::Message as _;
    let record = aurae_proto::v0::NameRecord {
        name: name.to_owned(),
        peer_id: victim.to_bytes(),
        addrs: Vec::new(),
        sequence: u64::MAX / 2,
        expires: u64::MAX,
    }
    .encode_to_vec();
    let mut signed = b"aurae-name-record:".to_vec();
    signed.extend_from_slice(&record);
    aurae_proto::v0::SignedNameRecord {
        signature: forger.sign(&signed).expect("sign"),
        record,
        public_key: forger.public().encode_protobuf(),
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_and_trust_are_kept_in_the_store_and_bad_input_is_named() {
    let layout = Layout::new();
    let command = |layout: &Layout| {
        let mut cmd = layout.auraed_command();
        cmd.args(["--peer-listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"]);
        cmd
    };
    let mut daemon = Daemon::start_with(&layout, command(&layout));
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(5)).await;
    layout.aurae_ok(&["capabilities", "enable", "peer"]);
    let peer_id = |layout: &Layout| {
        wait_for(Duration::from_secs(20), "the peer network", || {
            let out = layout.aurae(&["peer", "id", "--json"]);
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            json["peer_id"].as_str().map(str::to_owned)
        })
    };
    let id = peer_id(&layout);

    // Bad input is refused with what was wrong, and nothing changes.
    let out = layout.aurae(&[
        "peer",
        "config",
        "set",
        "--bootstrap",
        "/ip4/127.0.0.1/tcp/1",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("/p2p/"), "{}", text(&out));
    let out = layout.aurae(&["peer", "trust", "not-a-peer-id"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert!(text(&out).contains("not a PeerId"), "{}", text(&out));
    let out = layout.aurae(&["peer", "trust", &id, "--as", "admin@node1@local"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "trusting a peer as the node's admin: {}",
        text(&out)
    );

    // Settings and a trust entry, then a restart: both are still there.
    layout.aurae_ok(&[
        "peer",
        "config",
        "set",
        "--kad-protocol",
        "/aurae-kept/kad/1.0.0",
        "--mdns",
        "off",
    ]);
    let other = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
        .to_string();
    layout.aurae_ok(&["peer", "trust", &other, "--role", "viewer"]);
    let same = peer_id(&layout);
    assert_eq!(same, id, "the PeerId is the node key's");
    daemon.terminate();
    drop(daemon);
    let _daemon = Daemon::start_with(&layout, command(&layout));
    wait_serving(&layout, Duration::from_secs(5)).await;
    assert_eq!(peer_id(&layout), id);
    let config = layout.aurae_ok(&["peer", "config", "show", "--json"]);
    assert!(config.contains("/aurae-kept/kad/1.0.0"), "{config}");
    let trusted = layout.aurae_ok(&["peer", "trusted", "--json"]);
    assert!(
        trusted.contains(&other) && trusted.contains("peer.invalid"),
        "{trusted}"
    );
    let grants = layout.aurae_ok(&["grants"]);
    assert!(
        grants.contains("peer.invalid") && grants.contains("viewer"),
        "{grants}"
    );
}
