//! Interop between auraed's libp2p swarm and js-libp2p, an independent implementation
//! (crates/auraed/tests/js/peer.mjs), in one Kademlia DHT on `/ipfs/kad/1.0.0` on
//! loopback: identify and ping both ways, and provider records announced by one side and
//! found by the other.
//!
//! Needs npm on PATH: `scripts/js-deps` installs Node 22 and the pinned js-libp2p
//! packages; the tests fail (they never skip) when it cannot.

mod common;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use aurae_proto::v0::Mode;
use common::{Daemon, Layout, admin_status};

/// How many lines of each log a failure message carries.
const LOG_TAIL_LINES: usize = 120;

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn output_text(out: &Output) -> String {
    format!(
        "exit: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The node binary `scripts/js-deps` installed (once per test process).
fn node_bin() -> &'static Path {
    static NODE: OnceLock<PathBuf> = OnceLock::new();
    NODE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/js-deps");
        let out = Command::new(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "scripts/js-deps failed; the js-libp2p peer cannot run:\n{}",
            output_text(&out)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(
            path.is_file(),
            "scripts/js-deps printed {}, which is not a file",
            path.display()
        );
        path
    })
}

/// One auraed node with the peer capability on, listening on loopback, on the default
/// Kademlia protocol (`/ipfs/kad/1.0.0`).
struct Node {
    layout: Layout,
    daemon: Daemon,
    name: String,
    peer_id: String,
    /// Its TCP listen address, ending in `/p2p/<PeerId>`.
    addr: String,
}

impl Node {
    async fn start(name: &str, bootstrap: Option<&str>) -> Self {
        let layout = Layout::new();
        let mut cmd = layout.auraed_command();
        cmd.args(["--peer-listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"])
            // Kademlia's own debug lines: a failure message shows what the DHT did.
            .env("RUST_LOG", "info,libp2p_kad=debug,auraed::peer=debug");
        if let Some(boot) = bootstrap {
            cmd.args(["--peer-bootstrap", boot]);
        }
        let daemon = Daemon::start_with(&layout, cmd);
        let pki = layout.pki_dir.to_str().expect("a UTF-8 path").to_owned();
        layout.aurae_ok(&["pki", "init", "--pki-dir", &pki, "--name", name]);
        let started = Instant::now();
        while !admin_status(&layout)
            .await
            .is_ok_and(|s| s.mode() == Mode::Serving)
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{name} did not serve over mTLS within 20 s; log:\n{}",
                daemon.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        layout.aurae_ok(&["capabilities", "enable", "peer"]);
        let id = poll(Duration::from_secs(20), || {
            let out = layout.aurae(&["peer", "id", "--json"]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .unwrap_or_else(|| {
            panic!(
                "{name}'s peer network did not start; log:\n{}",
                daemon.log_text()
            )
        });
        let id: Value = serde_json::from_str(&id).expect("peer id --json");
        let peer_id = id["peer_id"].as_str().expect("a peer id").to_owned();
        let addr = id["listen_addrs"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find_map(|v| v.as_str().filter(|s| s.contains("/tcp/")))
            })
            .map(|a| format!("{a}/p2p/{peer_id}"))
            .unwrap_or_else(|| panic!("{name} has no TCP listen address: {id}"));
        Self {
            layout,
            daemon,
            name: name.to_owned(),
            peer_id,
            addr,
        }
    }

    fn aurae(&self, args: &[&str]) -> Output {
        self.layout.aurae(args)
    }

    /// Its peers as `aurae peer ls --json` lists them.
    fn peers(&self) -> Vec<Value> {
        let out = self.aurae(&["peer", "ls", "--json"]);
        assert!(
            out.status.success(),
            "{}: aurae peer ls failed: {}",
            self.name,
            output_text(&out)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_else(|| panic!("{}: peer ls --json: {}", self.name, output_text(&out)))
    }

    /// Its daemon log, for failure messages.
    fn report(&self) -> String {
        format!(
            "===== auraed {} ({}) log, last {LOG_TAIL_LINES} lines:\n{}",
            self.name,
            self.peer_id,
            tail(&self.daemon.log_text(), LOG_TAIL_LINES)
        )
    }
}

/// A js-libp2p node (peer.mjs) driven over its stdin/stdout JSON lines; killed when
/// dropped.
struct JsPeer {
    label: String,
    child: Child,
    stdin: ChildStdin,
    /// Every JSON line from stdout, in order.
    lines: mpsc::Receiver<Value>,
    /// Answers read while waiting for another id.
    early: HashMap<u64, Value>,
    /// Everything seen on stdout and stderr, for failure messages.
    transcript: Arc<Mutex<String>>,
    next_id: u64,
    peer_id: String,
    /// Its TCP listen address, ending in `/p2p/<PeerId>`.
    addr: String,
    ready: Value,
}

impl JsPeer {
    fn start(label: &str, bootstrap: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/peer.mjs");
        let mut cmd = Command::new(node_bin());
        cmd.arg(&script).args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
        for addr in bootstrap {
            cmd.args(["--bootstrap", addr]);
        }
        let mut child = cmd
            .env("DEBUG", "libp2p:kad-dht:rpc:handlers*")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} (peer.mjs): {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let transcript = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let seen = Arc::clone(&transcript);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                seen.lock()
                    .expect("transcript")
                    .push_str(&format!("stdout: {line}\n"));
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| json!({"unparsed": line, "error": e.to_string()}));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let seen = Arc::clone(&transcript);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                seen.lock().expect("transcript").push_str(&text);
            }
        });
        let mut peer = Self {
            label: label.to_owned(),
            child,
            stdin,
            lines,
            early: HashMap::new(),
            transcript,
            next_id: 1,
            peer_id: String::new(),
            addr: String::new(),
            ready: Value::Null,
        };
        // Bootstrap dials may take up to 30 s each, then up to 10 s for the routing table.
        let ready = peer.next_line(Duration::from_secs(45), "its ready line");
        assert_eq!(
            ready["event"],
            "ready",
            "{label} did not start:\n{}",
            peer.report()
        );
        peer.peer_id = ready["peerId"].as_str().expect("peerId").to_owned();
        peer.addr = ready["addrs"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find_map(|v| v.as_str().filter(|s| s.contains("/tcp/")))
            })
            .unwrap_or_else(|| panic!("{label} has no TCP address: {ready}"))
            .to_owned();
        peer.ready = ready;
        peer
    }

    fn next_line(&mut self, wait: Duration, what: &str) -> Value {
        match self.lines.recv_timeout(wait) {
            Ok(value) => value,
            Err(e) => panic!(
                "{} gave no {what} within {wait:?} ({e}):\n{}",
                self.label,
                self.report()
            ),
        }
    }

    /// Sends `cmd` (with a fresh id) and returns its answer, `ok` true or false.
    fn call(&mut self, mut cmd: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        cmd["id"] = json!(id);
        let timeout_ms = cmd["timeoutMs"].as_u64().unwrap_or(30_000);
        let line = format!("{cmd}\n");
        if let Err(e) = self
            .stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
        {
            panic!("{}: cannot send {cmd}: {e}\n{}", self.label, self.report());
        }
        if let Some(answer) = self.early.remove(&id) {
            return answer;
        }
        let deadline = Instant::now() + Duration::from_millis(timeout_ms + 10_000);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let value = self.next_line(left, &format!("answer to {cmd}"));
            match value["id"].as_u64() {
                Some(got) if got == id => return value,
                Some(other) => {
                    self.early.insert(other, value);
                }
                None => {}
            }
        }
    }

    /// Sends `cmd` and returns its answer, failing unless it is `ok`.
    fn call_ok(&mut self, cmd: Value) -> Value {
        let answer = self.call(cmd.clone());
        assert_eq!(
            answer["ok"],
            true,
            "{}: {cmd} failed: {answer}\n{}",
            self.label,
            self.report()
        );
        answer
    }

    /// Stops the node with the `stop` command and waits for the process to exit cleanly.
    fn stop(&mut self) {
        self.call_ok(json!({"cmd": "stop", "timeoutMs": 10_000}));
        let exited = poll(Duration::from_secs(15), || {
            self.child.try_wait().ok().flatten()
        });
        assert!(
            exited.is_some_and(|status| status.success()),
            "{} did not stop cleanly ({exited:?}):\n{}",
            self.label,
            self.report()
        );
    }

    /// Its stdout lines and stderr, for failure messages.
    fn report(&self) -> String {
        let text = self
            .transcript
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        format!(
            "===== js-libp2p {} ({}) output, last {LOG_TAIL_LINES} lines:\n{}",
            self.label,
            self.peer_id,
            tail(&text, LOG_TAIL_LINES)
        )
    }
}

impl Drop for JsPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 250 ms until it gives a value or `timeout` passes.
fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Every log of both sides, for a failure message.
fn reports(nodes: &[&Node], js: &[&JsPeer]) -> String {
    let mut text = String::new();
    for node in nodes {
        text.push_str(&node.report());
        text.push('\n');
    }
    for peer in js {
        text.push_str(&peer.report());
        text.push('\n');
    }
    text
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Checks js-libp2p's identify of `node`: our agent and the protocols it needs from us.
fn assert_js_identifies(js: &mut JsPeer, node: &Node) {
    let id = js.call_ok(json!({"cmd": "identify", "peer": node.peer_id}));
    let agent = id["agentVersion"].as_str().unwrap_or_default();
    let protocols = strings(&id["protocols"]);
    assert!(
        agent.starts_with("auraed/"),
        "{} sees {}'s agent as {agent:?}: {id}\n{}",
        js.label,
        node.name,
        reports(&[node], &[&*js])
    );
    for wanted in ["/ipfs/kad/1.0.0", "/ipfs/id/1.0.0", "/ipfs/ping/1.0.0"] {
        assert!(
            protocols.contains(&wanted),
            "{}'s identify of {} lacks {wanted}: {id}\n{}",
            js.label,
            node.name,
            reports(&[node], &[&*js])
        );
    }
}

/// Checks `aurae peer ping <target>` from `node` to `js`.
fn assert_auraed_pings(node: &Node, js: &JsPeer, target: &str) {
    let out = node.aurae(&["peer", "ping", target, "--json"]);
    let ping: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    let rtt = ping.as_ref().and_then(|p| p["rtt_us"].as_u64());
    assert!(
        out.status.success()
            && rtt.is_some_and(|us| us > 0)
            && ping
                .as_ref()
                .is_some_and(|p| p["peer_id"] == js.peer_id.as_str()),
        "{}: aurae peer ping {target} failed: {}\n{}",
        node.name,
        output_text(&out),
        reports(&[node], &[js])
    );
}

/// Checks js-libp2p's ping of `node`.
fn assert_js_pings(js: &mut JsPeer, node: &Node) {
    let ping = js.call_ok(json!({"cmd": "ping", "peer": node.peer_id}));
    assert!(
        ping["rttMs"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{}'s ping of {} gave no rtt: {ping}\n{}",
        js.label,
        node.name,
        reports(&[node], &[&*js])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn auraed_and_js_libp2p_identify_and_ping_each_other() {
    let node = Node::start("node1", None).await;
    // jsA dials node1; node1 dials jsB.
    let mut js_a = JsPeer::start("jsA", &[&node.addr]);
    let mut js_b = JsPeer::start("jsB", &[]);
    assert!(
        strings(&js_a.ready["bootstrapped"]).contains(&node.peer_id.as_str()),
        "jsA did not bootstrap to node1: {}\n{}",
        js_a.ready,
        reports(&[&node], &[&js_a])
    );
    let out = node.aurae(&["peer", "connect", &js_b.addr, "--json"]);
    let connected: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    assert!(
        out.status.success()
            && connected
                .as_ref()
                .is_some_and(|c| c["peer_id"] == js_b.peer_id.as_str()),
        "node1 cannot connect to jsB: {}\n{}",
        output_text(&out),
        reports(&[&node], &[&js_b])
    );

    // Identify, js -> auraed, on a connection each side opened.
    assert_js_identifies(&mut js_a, &node);
    assert_js_identifies(&mut js_b, &node);

    // Identify, auraed -> js: both js peers listed with their agent, connected directly.
    let js_agent = |p: &Value, js: &JsPeer| {
        p["peer_id"] == js.peer_id.as_str()
            && p["connection"] == "direct"
            && p["agent"]
                .as_str()
                .is_some_and(|a| a.starts_with("js-libp2p"))
    };
    let listed = poll(Duration::from_secs(20), || {
        let peers = node.peers();
        (peers.iter().any(|p| js_agent(p, &js_a)) && peers.iter().any(|p| js_agent(p, &js_b)))
            .then_some(())
    });
    assert!(
        listed.is_some(),
        "node1 does not list jsA ({}) and jsB ({}) with a js-libp2p agent: {:?}\n{}",
        js_a.peer_id,
        js_b.peer_id,
        node.peers(),
        reports(&[&node], &[&js_a, &js_b])
    );

    // Ping both ways: auraed by multiaddr and by PeerId, js by PeerId.
    assert_auraed_pings(&node, &js_a, &js_a.addr);
    assert_auraed_pings(&node, &js_b, &js_b.peer_id);
    assert_js_pings(&mut js_a, &node);
    assert_js_pings(&mut js_b, &node);
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_records_cross_between_auraed_and_js_libp2p() {
    // One DHT, a chain at first: node1 <- jsA <- node2 <- jsB.
    let node1 = Node::start("node1", None).await;
    let mut js_a = JsPeer::start("jsA", &[&node1.addr]);
    let node2 = Node::start("node2", Some(&js_a.addr)).await;
    let mut js_b = JsPeer::start("jsB", &[&node2.addr]);

    // auraed -> js: node1 announces its volume; jsB, three hops away at first, finds it.
    let made = node1.aurae(&["volume", "create", "data"]);
    assert!(
        made.status.success(),
        "volume create: {}",
        output_text(&made)
    );
    let wanted = format!("data@{}@local", node1.name);
    let mut last = Value::Null;
    let found = poll(Duration::from_secs(30), || {
        last = js_b.call(json!({
            "cmd": "findProviders", "name": wanted, "timeoutMs": 5_000, "count": 1
        }));
        // node1, with an address it listens at: what a js peer needs to reach it.
        last["providers"]
            .as_array()
            .is_some_and(|p| {
                p.iter().any(|p| {
                    p["peerId"] == node1.peer_id.as_str()
                        && strings(&p["addrs"]).iter().any(|a| {
                            *a == node1.addr || node1.addr.starts_with(&format!("{a}/p2p/"))
                        })
                })
            })
            .then_some(())
            .or_else(|| {
                // Not yet (node1 announces every 5 s): ask again in a while.
                std::thread::sleep(Duration::from_millis(750));
                None
            })
    });
    assert!(
        found.is_some(),
        "js-libp2p (jsB) never found node1 ({}, at {}) as a provider of {wanted}; \
         last answer: {last}\n{}",
        node1.peer_id,
        node1.addr,
        reports(&[&node1, &node2], &[&js_a, &js_b])
    );

    // The js nodes keep node1's record themselves: js-libp2p stores an ADD_PROVIDER only
    // when it carries an address, i.e. when node1 has an external address (its explicit
    // 127.0.0.1 listen address here; behind a wildcard listen, only once AutoNAT confirms).
    for js in [&mut js_a, &mut js_b] {
        let mut last = Value::Null;
        let stored = poll(Duration::from_secs(15), || {
            last = js.call(json!({"cmd": "localProviders", "name": wanted}));
            strings(&last["providers"])
                .contains(&node1.peer_id.as_str())
                .then_some(())
        });
        assert!(
            stored.is_some(),
            "{} did not store node1's provider record for {wanted} (look for 'no valid \
             addresses for provider' in its log); last answer: {last}\n{}",
            js.label,
            reports(&[&node1, &node2], &[&*js])
        );
    }

    // js -> auraed: jsB announces a name; node1, the auraed node farthest from it, finds it.
    let name = "web@jsnode@local";
    let provided = js_b.call_ok(json!({"cmd": "provide", "name": name}));
    assert!(
        !strings(&provided["sentTo"]).is_empty(),
        "jsB sent its provider record to nobody: {provided}\n{}",
        reports(&[&node1, &node2], &[&js_a, &js_b])
    );
    let mut last = String::new();
    let found = poll(Duration::from_secs(30), || {
        let out = node1.aurae(&["peer", "providers", name, "--json"]);
        last = output_text(&out);
        let reply: Value = serde_json::from_slice(&out.stdout).ok()?;
        (out.status.success() && strings(&reply["providers"]).contains(&js_b.peer_id.as_str()))
            .then_some(reply)
    });
    let Some(found) = found else {
        panic!(
            "node1 never found jsB ({}) as a provider of {name}; jsB's provide: {provided}; \
             last aurae peer providers: {last}\n{}",
            js_b.peer_id,
            reports(&[&node1, &node2], &[&js_a, &js_b])
        );
    };
    assert_eq!(found["name"], name, "{found}");

    // The record lives on the auraed nodes too: with both js nodes gone, node1 still finds
    // jsB as the provider (from its own store or node2's).
    js_a.stop();
    js_b.stop();
    let mut last = String::new();
    let kept = poll(Duration::from_secs(20), || {
        let out = node1.aurae(&["peer", "providers", name, "--json"]);
        last = output_text(&out);
        let reply: Value = serde_json::from_slice(&out.stdout).ok()?;
        (out.status.success() && strings(&reply["providers"]).contains(&js_b.peer_id.as_str()))
            .then_some(())
    });
    assert!(
        kept.is_some(),
        "with the js nodes stopped, no auraed node holds jsB's provider record for {name}; \
         last aurae peer providers: {last}\n{}",
        reports(&[&node1, &node2], &[&js_a, &js_b])
    );
}
