//! Peer benchmark: discovery on a 64-node DHT against a 64-node js-libp2p network built
//! the same way in the same run, the DHT under churn, and a System/Status call forwarded
//! to another auraed over libp2p against the same call on the local socket.
//!
//! Run with `cargo bench -p auraed --bench peer` (release build; a few minutes to
//! compile). Needs npm on PATH: `scripts/js-deps` installs the pinned js-libp2p packages
//! and Node 22 under crates/auraed/tests/js/node_modules. Everything runs on loopback:
//! TCP on 127.0.0.1, mDNS off, private Kademlia protocol names. Prints one table per part
//! with the targets beside the numbers; it measures, it does not assert (it fails only
//! when something could not run at all).
//!
//! 1. 64 of auraed's swarms ([`Network`], crates/auraed/src/peer/swarm.rs) in this
//!    process, each on the thread and tokio runtime `Network::start` gives it; node i
//!    bootstraps to 3 random earlier nodes, publishes its name record `n<i>@bench` on its
//!    first connection (as auraed does) and provides `svc@n<i>@bench`. Lookups resolve a
//!    random node's `svc@n<j>@bench` from another random node as Discovery.Resolve does
//!    (name record, then providers). The js side (crates/auraed/tests/js/dht-bench.mjs)
//!    is 64 js-libp2p nodes in one Node process doing the same lookups (same pairs).
//! 2. Churn: 30% of our 64 nodes stopped; every survivor's service resolved from another.
//! 3. Two auraed daemons: Status on node 1's socket vs forwarded to node 2.

#[path = "common.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aurae_client::AuraeClient;
use aurae_proto::v0::peer_client::PeerClient;
use aurae_proto::v0::{
    EnableCapabilityRequest, PeerIdRequest, PingPeerRequest, StatusRequest, TrustPeerRequest,
};
use auraed::peer::records::{newest_per_peer, provider_key};
use auraed::peer::settings::PeerSettings;
use auraed::peer::swarm::{Network, SwarmStart};
use common::{Setup, percentile, serving_auraed_with, setup_as};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Nodes in each DHT.
const NODES: usize = 64;
/// Earlier nodes each node bootstraps to.
const FANOUT: usize = 3;
/// Timed resolves on each DHT.
const LOOKUPS: usize = 128;
/// Wait after the last node started, and again after the provider records went out.
const SETTLE: Duration = Duration::from_secs(5);
/// Share of the nodes stopped for the churn part.
const CHURN: f64 = 0.30;
/// The churn part's deadline for resolving every survivor.
const CHURN_DEADLINE: Duration = Duration::from_secs(30);
/// Our private Kademlia protocol (the js network has its own).
const KAD_PROTOCOL: &str = "/aurae-bench/kad/1.0.0";
/// Status calls timed each way, after `STATUS_WARMUP` untimed ones.
const STATUS_CALLS: usize = 1000;
const STATUS_WARMUP: usize = 200;
/// libp2p pings between the two daemons.
const PINGS: usize = 50;
/// Raw TCP echo round trips, and their size (about a Status reply).
const ECHO_CALLS: usize = 1000;
const ECHO_BYTES: usize = 256;
/// Set in the environment of this binary started again as a TCP echo server.
const TCP_ECHO_ENV: &str = "AURAE_BENCH_TCP_ECHO";

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "meets target" } else { "MISSES target" }
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// splitmix64: a seeded generator, so a run's topology and lookups can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// `k` distinct picks from `items`.
    fn sample(&mut self, items: &[usize], k: usize) -> Vec<usize> {
        let mut pool = items.to_vec();
        let mut picked = Vec::with_capacity(k);
        while picked.len() < k && !pool.is_empty() {
            picked.push(pool.swap_remove(self.below(pool.len())));
        }
        picked
    }

    /// A random pair of distinct members of `items`.
    fn pair(&mut self, items: &[usize]) -> (usize, usize) {
        let picked = self.sample(items, 2);
        (picked[0], picked[1])
    }
}

/// One of our DHT nodes.
struct DhtNode {
    network: Network,
    id: PeerId,
    addr: Multiaddr,
}

fn node_name(i: usize) -> String {
    format!("n{i}@bench")
}

/// Starts node `i`, bootstrapped to `bootstrap`.
async fn start_node(i: usize, bootstrap: Vec<Multiaddr>, rng: &mut Rng) -> DhtNode {
    let mut secret = [0u8; 32];
    for chunk in secret.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    let keypair = Keypair::ed25519_from_bytes(secret).expect("an ed25519 key");
    let settings = PeerSettings {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a multiaddr")],
        bootstrap,
        mdns: false,
        relay_client: false,
        kad_protocol: KAD_PROTOCOL.to_owned(),
        ..PeerSettings::default()
    };
    let start = SwarmStart {
        keypair,
        settings,
        name: node_name(i),
        extra_bootstrap: Vec::new(),
    };
    // Remote API streams are not part of this benchmark: nobody reads them.
    let (inbound, _) = tokio::sync::mpsc::channel(1);
    let network = Network::start(start, inbound)
        .await
        .unwrap_or_else(|e| panic!("node {i} did not start: {e}"));
    let id = network.local_peer_id();
    let listen = network.addresses().await.expect("its addresses").listen;
    let addr = listen
        .into_iter()
        .find(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))))
        .expect("a TCP listen address")
        .with(Protocol::P2p(id));
    DhtNode { network, id, addr }
}

/// One resolve of `svc@n<target>@bench`, as Discovery.Resolve does it.
#[derive(Debug, Clone)]
struct Resolved {
    name: Duration,
    providers: Duration,
    name_ok: bool,
    provided: bool,
    queried: u32,
}

impl Resolved {
    fn ok(&self) -> bool {
        self.name_ok && self.provided
    }

    fn total(&self) -> Duration {
        self.name + self.providers
    }
}

async fn resolve(from: &Network, target: usize, target_id: PeerId) -> Resolved {
    let name = node_name(target);
    let started = Instant::now();
    let lookup = from.get_name(&name).await.expect("the swarm runs");
    let name_time = started.elapsed();
    let queried = lookup.queried;
    let name_ok =
        matches!(newest_per_peer(lookup.records).as_slice(), [only] if only.peer == target_id);
    let started = Instant::now();
    let providers = from
        .providers(provider_key(&format!("svc@{name}")))
        .await
        .expect("the swarm runs");
    Resolved {
        name: name_time,
        providers: started.elapsed(),
        name_ok,
        provided: providers.contains(&target_id),
        queried,
    }
}

fn sorted(mut times: Vec<Duration>) -> Vec<Duration> {
    times.sort();
    times
}

/// Median and p99 of `times` (sorted here).
fn p50_p99(times: Vec<Duration>) -> (Duration, Duration) {
    let times = sorted(times);
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

/// The js-libp2p network's lookups: name and provider latency, and whether each found
/// the right peer.
struct JsRun {
    name: Vec<Duration>,
    providers: Vec<Duration>,
    name_found: usize,
    found: usize,
    routing_table: String,
    provide_phase: Duration,
    cpu_share: f64,
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

/// Runs dht-bench.mjs with `pairs` and reads its report; why not, when it failed.
fn run_js(pairs: &[(usize, usize)]) -> Result<JsRun, String> {
    let deps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/js-deps");
    let out = Command::new(&deps)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/js-deps");
    if !out.status.success() {
        return Err("scripts/js-deps failed: the js-libp2p side cannot run".to_owned());
    }
    let node = String::from_utf8(out.stdout).expect("a UTF-8 path");
    let pairs_json = serde_json::to_string(
        &pairs
            .iter()
            .map(|&(from, to)| [from, to])
            .collect::<Vec<_>>(),
    )
    .expect("pairs as JSON");
    let out = Command::new(node.trim())
        .arg(js_dir().join("dht-bench.mjs"))
        .args(["--nodes", &NODES.to_string()])
        .args(["--bootstrap", &FANOUT.to_string()])
        .args(["--settle-ms", &SETTLE.as_millis().to_string()])
        .args(["--pairs", &pairs_json])
        .stderr(Stdio::inherit())
        .output()
        .expect("run node dht-bench.mjs");
    if !out.status.success() {
        return Err(format!(
            "dht-bench.mjs failed ({}); its log is above",
            out.status
        ));
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("dht-bench.mjs printed no JSON report: {e}"))?;
    let lookups = report["lookups"].as_array().expect("lookups");
    let millis = |v: &serde_json::Value| Duration::from_secs_f64(v.as_f64().expect("ms") / 1e3);
    let table = &report["routingTable"];
    Ok(JsRun {
        name: lookups.iter().map(|l| millis(&l["nameMs"])).collect(),
        providers: lookups.iter().map(|l| millis(&l["providersMs"])).collect(),
        name_found: lookups
            .iter()
            .filter(|l| l["nameFound"].as_bool() == Some(true))
            .count(),
        found: lookups
            .iter()
            .filter(|l| l["found"].as_bool() == Some(true))
            .count(),
        provide_phase: millis(&report["providedMs"]),
        cpu_share: report["lookupCpuShare"].as_f64().unwrap_or(0.0),
        routing_table: format!("{}/{}/{}", table["min"], table["median"], table["max"]),
    })
}

/// CPU time (user + system) this process has used so far, from /proc/self/stat.
fn own_cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let after_comm = &stat[stat.rfind(')').expect("a comm field") + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10) // USER_HZ = 100 on Linux
}

/// min/median/max of the peers each node knows.
async fn known_peers(nodes: &[Option<DhtNode>]) -> String {
    let mut counts = Vec::new();
    for node in nodes.iter().flatten() {
        counts.push(node.network.peers().await.expect("the swarm runs").len());
    }
    counts.sort_unstable();
    format!(
        "{}/{}/{}",
        counts[0],
        counts[counts.len() / 2],
        counts[counts.len() - 1]
    )
}

/// "; missed n3, n17" for the nodes whose lookups failed, or nothing.
fn missed_note(missed: &[String]) -> String {
    if missed.is_empty() {
        return String::new();
    }
    format!("; missed {}", missed.join(", "))
}

fn row(measure: &str, p50: &str, p99: &str, target: &str, note: &str) {
    println!("{measure:<46} {p50:>11} {p99:>11}  {target:<22} {note}");
}

/// The js network's rows, and the ratios of `ours` (p50, p99 of name lookup, provider
/// lookup, full resolve) to them.
fn js_rows(js: &JsRun, ours: [(Duration, Duration); 3]) {
    let ran = js.name.len();
    let (js_name50, js_name99) = p50_p99(js.name.clone());
    let (js_prov50, js_prov99) = p50_p99(js.providers.clone());
    let (js_all50, js_all99) = p50_p99(
        js.name
            .iter()
            .zip(&js.providers)
            .map(|(a, b)| *a + *b)
            .collect(),
    );
    row(
        "js:   name record lookup (dht.get)",
        &ms(js_name50),
        &ms(js_name99),
        "",
        &format!("right peer {}/{ran}", js.name_found),
    );
    row(
        "js:   provider lookup (findProviders)",
        &ms(js_prov50),
        &ms(js_prov99),
        "",
        &format!("provider found {}/{ran}", js.found),
    );
    row(
        "js:   full resolve (name + providers)",
        &ms(js_all50),
        &ms(js_all99),
        "",
        "",
    );
    let [
        (our_name50, our_name99),
        (our_prov50, our_prov99),
        (our_all50, our_all99),
    ] = ours;
    let ratio_row = |what: &str, p50: f64, p99: f64| {
        row(
            &format!("ratio ours/js, {what}"),
            &format!("{p50:.2}x"),
            &format!("{p99:.2}x"),
            "<= 1.00x (no worse)",
            verdict(p50 <= 1.0),
        );
    };
    ratio_row(
        "name lookup",
        ratio(our_name50, js_name50),
        ratio(our_name99, js_name99),
    );
    ratio_row(
        "provider lookup",
        ratio(our_prov50, js_prov50),
        ratio(our_prov99, js_prov99),
    );
    ratio_row(
        "full resolve",
        ratio(our_all50, js_all50),
        ratio(our_all99, js_all99),
    );
}

/// Parts 1 and 2; whether the js side ran.
async fn dht_parts(rng: &mut Rng) -> bool {
    println!();
    println!("1. {NODES}-node DHT on loopback (one run, this machine)");
    println!(
        "   ours: {NODES} auraed swarms (peer::swarm::Network) in this benchmark process, each on"
    );
    println!(
        "         its own thread and tokio runtime; TCP on 127.0.0.1, mDNS off, kad protocol {KAD_PROTOCOL}"
    );
    println!(
        "   js:   {NODES} js-libp2p 3 nodes (kad-dht 16) in one Node 22 process (one event loop),"
    );
    println!("         same construction, kad protocol /aurae-bench-js/kad/1.0.0");
    println!(
        "   each node i bootstraps to {FANOUT} random earlier nodes, publishes n<i>@bench, provides svc@n<i>@bench;"
    );
    println!(
        "   {LOOKUPS} resolves of a random svc@n<j>@bench from a random other node (the same pairs"
    );
    println!(
        "   both sides), one at a time, each query run to its end: name record, then providers"
    );

    let mut nodes: Vec<Option<DhtNode>> = Vec::with_capacity(NODES);
    let started = Instant::now();
    for i in 0..NODES {
        let earlier: Vec<usize> = (0..i).collect();
        let bootstrap = rng
            .sample(&earlier, FANOUT)
            .into_iter()
            .map(|b| nodes[b].as_ref().expect("running").addr.clone())
            .collect();
        nodes.push(Some(start_node(i, bootstrap, rng).await));
    }
    let start_time = started.elapsed();
    tokio::time::sleep(SETTLE).await;
    for (i, node) in nodes.iter().enumerate() {
        let node = node.as_ref().expect("running");
        node.network
            .provide(provider_key(&format!("svc@{}", node_name(i))))
            .expect("the swarm runs");
    }
    tokio::time::sleep(SETTLE).await;
    let peers_known = known_peers(&nodes).await;

    let all: Vec<usize> = (0..NODES).collect();
    let pairs: Vec<(usize, usize)> = (0..LOOKUPS).map(|_| rng.pair(&all)).collect();
    let mut ours = Vec::with_capacity(LOOKUPS);
    let cpu_before = own_cpu_time();
    let lookups_started = Instant::now();
    for &(from, to) in &pairs {
        let from = &nodes[from].as_ref().expect("running").network;
        let target = nodes[to].as_ref().expect("running").id;
        ours.push(resolve(from, to, target).await);
    }
    let our_cpu_share =
        (own_cpu_time() - cpu_before).as_secs_f64() / lookups_started.elapsed().as_secs_f64();
    let name_missed: Vec<String> = pairs
        .iter()
        .zip(&ours)
        .filter(|(_, r)| !r.name_ok)
        .map(|((from, to), _)| format!("n{to} from n{from}"))
        .collect();

    // 2. Churn, on the same network.
    let stopped = rng.sample(&all, (NODES as f64 * CHURN).round() as usize);
    for &i in &stopped {
        nodes[i] = None;
    }
    let survivors: Vec<usize> = (0..NODES).filter(|i| nodes[*i].is_some()).collect();
    let churn_started = Instant::now();
    let churn = futures::future::join_all(survivors.iter().map(|&target| {
        let asker = loop {
            let pick = survivors[rng.below(survivors.len())];
            if pick != target {
                break pick;
            }
        };
        let from = &nodes[asker].as_ref().expect("a survivor").network;
        let id = nodes[target].as_ref().expect("a survivor").id;
        async move {
            let result = tokio::time::timeout(CHURN_DEADLINE, resolve(from, target, id)).await;
            (result.ok(), churn_started.elapsed())
        }
    }))
    .await;
    let churn_wall = churn_started.elapsed();
    drop(nodes);

    // The js network runs after ours has stopped, so the two never share the CPU.
    let js = run_js(&pairs);

    let ok = ours.iter().filter(|r| r.ok()).count();
    let name_ok = ours.iter().filter(|r| r.name_ok).count();
    let provided = ours.iter().filter(|r| r.provided).count();
    let (our_name50, our_name99) = p50_p99(ours.iter().map(|r| r.name).collect());
    let (our_prov50, our_prov99) = p50_p99(ours.iter().map(|r| r.providers).collect());
    let (our_all50, our_all99) = p50_p99(ours.iter().map(Resolved::total).collect());
    // A record the asking node holds itself counts 0 peers: those lookups say nothing
    // about hops, so they are counted apart.
    let local = ours.iter().filter(|r| r.name_ok && r.queried == 0).count();
    let mut hops: Vec<u32> = ours
        .iter()
        .filter(|r| r.name_ok && r.queried > 0)
        .map(|r| r.queried)
        .collect();
    hops.sort_unstable();
    let hop = |p: f64| {
        hops.get(((hops.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let target_hops = (NODES as f64).log2();

    println!(
        "   ours: started {NODES} nodes in {}; peers known per node (min/median/max) {peers_known};",
        ms(start_time)
    );
    println!("         CPU while the lookups ran: {our_cpu_share:.2} of one core (2 cores here)");
    if let Ok(js) = &js {
        println!(
            "   js:   routing table (min/median/max) {}; provide phase {}; CPU while the lookups ran:",
            js.routing_table,
            ms(js.provide_phase)
        );
        println!(
            "         {:.2} of one core (its one event loop: near 1.00 = saturated); {} of {LOOKUPS} lookups ran",
            js.cpu_share,
            js.name.len()
        );
    }
    println!();
    row("measure", "p50", "p99", "target", "");
    row(
        "ours: name record lookup (get_name)",
        &ms(our_name50),
        &ms(our_name99),
        "",
        &format!(
            "right peer {name_ok}/{LOOKUPS}{}",
            missed_note(&name_missed)
        ),
    );
    row(
        "ours: provider lookup (providers)",
        &ms(our_prov50),
        &ms(our_prov99),
        "",
        &format!("provider found {provided}/{LOOKUPS}"),
    );
    row(
        "ours: full resolve (name + providers)",
        &ms(our_all50),
        &ms(our_all99),
        "",
        &format!("resolved {ok}/{LOOKUPS}"),
    );
    match &js {
        Ok(js) => js_rows(
            js,
            [
                (our_name50, our_name99),
                (our_prov50, our_prov99),
                (our_all50, our_all99),
            ],
        ),
        Err(why) => println!("js:   NO NUMBERS: {why}"),
    }
    row(
        "ours: peers asked before the record (hops <=)",
        &hop(0.5).to_string(),
        &hop(0.99).to_string(),
        &format!("<= log2({NODES}) = {target_hops:.0}"),
        &format!(
            "{} (max {}; {} lookups, {local} more found the record locally)",
            verdict(f64::from(hop(0.5)) <= target_hops),
            hops.last().copied().unwrap_or(0),
            hops.len()
        ),
    );
    println!(
        "   hops = NameLookup.queried: peers that answered before the first valid record (3 queries"
    );
    println!(
        "   run in parallel, so it counts more peers than the hops of the path: an upper bound)."
    );
    println!(
        "   js-kad-dht takes the /aurae/name/ keys only with a validator for the `aurae` namespace:"
    );
    println!(
        "   dht-bench.mjs gives it one that accepts any non-empty value (no signature check)."
    );

    let churn_missed: Vec<String> = survivors
        .iter()
        .zip(&churn)
        .filter_map(|(target, (r, _))| {
            let why = match r {
                None => "timed out",
                Some(r) if !r.name_ok => "no name record",
                Some(r) if !r.provided => "no provider",
                Some(_) => return None,
            };
            Some(format!("n{target} ({why})"))
        })
        .collect();
    let resolved: Vec<Duration> = churn
        .iter()
        .filter(|(r, _)| r.as_ref().is_some_and(Resolved::ok))
        .map(|(_, at)| *at)
        .collect();
    let last_ok = resolved.iter().max().copied().unwrap_or_default();
    let churn_times: Vec<Duration> = churn
        .iter()
        .filter_map(|(r, _)| r.as_ref().map(Resolved::total))
        .collect();
    println!();
    println!(
        "2. Churn: {} of {NODES} nodes stopped (their Network handles dropped), then every survivor's",
        stopped.len()
    );
    println!(
        "   svc@n<i>@bench resolved from another survivor, all {} at once, {}s deadline",
        survivors.len(),
        CHURN_DEADLINE.as_secs()
    );
    let rate = resolved.len() as f64 / survivors.len() as f64 * 100.0;
    row(
        "resolved",
        &format!("{}/{}", resolved.len(), survivors.len()),
        &format!("{rate:.0}%"),
        "100%",
        verdict(resolved.len() == survivors.len()),
    );
    let (churn50, churn99) = if churn_times.is_empty() {
        (Duration::ZERO, Duration::ZERO)
    } else {
        p50_p99(churn_times)
    };
    row("one resolve (p50, p99)", &ms(churn50), &ms(churn99), "", "");
    row(
        "time until every answer was in (wall)",
        &ms(churn_wall),
        "",
        &format!("<= {} s", CHURN_DEADLINE.as_secs()),
        &format!(
            "{} (last success after {}){}",
            verdict(churn_wall <= CHURN_DEADLINE),
            ms(last_ok),
            missed_note(&churn_missed)
        ),
    );
    js.is_ok()
}

/// One auraed with the peer capability on.
struct Daemon {
    _setup: Setup,
    child: Child,
    client: AuraeClient,
    peer_id: String,
    addr: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_daemon(name: &str, bootstrap: Option<&str>) -> Daemon {
    let setup = setup_as(name);
    let sock = setup.root.join("aurae.sock");
    let mut flags = vec![
        "--peer-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--kad-protocol",
        KAD_PROTOCOL,
    ];
    if let Some(addr) = bootstrap {
        flags.extend(["--peer-bootstrap", addr]);
    }
    let child = serving_auraed_with(env!("CARGO_BIN_EXE_auraed"), &setup, &sock, &flags).await;
    let channel = aurae_client::connect_mtls(&sock, &setup.admin)
        .await
        .expect("connect as the admin");
    let client = AuraeClient::from_channel(channel);
    client
        .capabilities()
        .enable(EnableCapabilityRequest {
            name: "peer".to_owned(),
        })
        .await
        .expect("enable the peer capability");
    let mut peer = PeerClient::new(client.channel());
    let started = Instant::now();
    let id = loop {
        match peer.id(PeerIdRequest {}).await {
            Ok(reply) => break reply.into_inner(),
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "{name}'s peer network did not start: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let addr = id
        .listen_addrs
        .iter()
        .find(|a| a.contains("/tcp/"))
        .map(|a| format!("{a}/p2p/{}", id.peer_id))
        .expect("a TCP listen address");
    Daemon {
        _setup: setup,
        child,
        client,
        peer_id: id.peer_id,
        addr,
    }
}

async fn status_times(client: &AuraeClient) -> Vec<Duration> {
    let mut system = client.system();
    for _ in 0..STATUS_WARMUP {
        system.status(StatusRequest {}).await.expect("status");
    }
    let mut times = Vec::with_capacity(STATUS_CALLS);
    for _ in 0..STATUS_CALLS {
        let started = Instant::now();
        system.status(StatusRequest {}).await.expect("status");
        times.push(started.elapsed());
    }
    sorted(times)
}

/// In the process [`tcp_echo_round_trips`] started: echoes one TCP connection on
/// 127.0.0.1 and exits; anywhere else returns at once.
fn serve_tcp_echo_if_asked() {
    if std::env::var_os(TCP_ECHO_ENV).is_none() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the echo port");
    let port = listener.local_addr().expect("its address").port();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{port}")
        .and_then(|()| stdout.flush())
        .expect("tell the parent");
    let (mut conn, _) = listener.accept().expect("accept the echo client");
    let _ = conn.set_nodelay(true);
    common::echo_until_closed(&mut conn);
    std::process::exit(0);
}

/// Round trips of `ECHO_BYTES` over TCP on loopback to a second process: the network
/// round trip with nothing else done.
fn tcp_echo_round_trips() -> Vec<Duration> {
    let mut child = Command::new(std::env::current_exe().expect("this benchmark's path"))
        .env(TCP_ECHO_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the echo process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("its stdout"))
        .read_line(&mut line)
        .expect("read the echo port");
    let port: u16 = line.trim().parse().expect("the echo port");
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to the echo");
    conn.set_nodelay(true).expect("nodelay");
    let message = [7u8; ECHO_BYTES];
    let mut reply = [0u8; ECHO_BYTES];
    let mut times = Vec::with_capacity(ECHO_CALLS);
    for i in 0..ECHO_CALLS + STATUS_WARMUP {
        let started = Instant::now();
        conn.write_all(&message).expect("send to the echo");
        conn.read_exact(&mut reply).expect("the echo's reply");
        if i >= STATUS_WARMUP {
            times.push(started.elapsed());
        }
    }
    drop(conn);
    let _ = child.kill();
    let _ = child.wait();
    sorted(times)
}

async fn remote_part() {
    let node1 = start_daemon("node1", None).await;
    let node2 = start_daemon("node2", Some(&node1.addr)).await;
    PeerClient::new(node2.client.channel())
        .trust(TrustPeerRequest {
            peer_id: node1.peer_id.clone(),
            principal: "node@node1@local".to_owned(),
            roles: vec!["admin".to_owned()],
        })
        .await
        .expect("node2 trusts node1 as an admin");
    let remote = node1
        .client
        .to_peer(&node2.peer_id)
        .expect("node2's PeerId as a peer");
    let started = Instant::now();
    loop {
        match remote.system().status(StatusRequest {}).await {
            Ok(reply) => {
                let from = reply.into_inner().peer_id;
                assert_eq!(
                    from, node2.peer_id,
                    "the forwarded status came from elsewhere"
                );
                break;
            }
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "node1 could not reach node2: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let local = status_times(&node1.client).await;
    let forwarded = status_times(&remote).await;
    let mut peer = PeerClient::new(node1.client.channel());
    let mut pings = Vec::with_capacity(PINGS);
    for i in 0..PINGS + 5 {
        let reply = peer
            .ping(PingPeerRequest {
                peer: node2.peer_id.clone(),
            })
            .await
            .expect("ping node2")
            .into_inner();
        if i >= 5 {
            pings.push(Duration::from_micros(reply.rtt_us));
        }
    }
    let pings = sorted(pings);
    drop(node2);
    drop(node1);
    let echo = tcp_echo_round_trips();

    let (l50, l99) = (percentile(&local, 0.5), percentile(&local, 0.99));
    let (f50, f99) = (percentile(&forwarded, 0.5), percentile(&forwarded, 0.99));
    let (p50, p99) = (percentile(&pings, 0.5), percentile(&pings, 0.99));
    let (e50, e99) = (percentile(&echo, 0.5), percentile(&echo, 0.99));
    let bound = l50 * 2 + p50;
    println!();
    println!(
        "3. Remote status vs local: two auraed daemons (node1, node2) on loopback, peer capability on;"
    );
    println!(
        "   node2 trusts node1 as admin; System/Status over mTLS on node1's socket, and the same call"
    );
    println!(
        "   with aurae-peer: <node2 PeerId> (forwarded by node1 over libp2p); {STATUS_CALLS} calls each after {STATUS_WARMUP} warm-up"
    );
    row("measure", "p50", "p99", "target", "");
    row("Status, local (node1's socket)", &us(l50), &us(l99), "", "");
    row(
        "Status, forwarded to node2",
        &us(f50),
        &us(f99),
        &format!("<= {}", us(bound)),
        &format!("{} (2 x local p50 + RTT)", verdict(f50 <= bound)),
    );
    row(
        "RTT: libp2p ping node1 -> node2",
        &us(p50),
        &us(p99),
        "",
        &format!("{PINGS} pings (Peer.Ping)"),
    );
    row(
        &format!("RTT: raw TCP echo, 2 processes ({ECHO_BYTES} B)"),
        &us(e50),
        &us(e99),
        "",
        "",
    );
    println!(
        "   forwarded / local (p50): {:.2}x; forwarded p50 / (2 x local p50 + ping RTT p50): {:.2}x",
        ratio(f50, l50),
        ratio(f50, bound)
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    serve_tcp_echo_if_asked();
    if std::env::args().any(|a| a == "--list") {
        println!("peer: bench");
        return;
    }
    aurae_testkit::install_crypto_provider();
    let mut rng = Rng(0x5eed_0001);
    println!();
    println!("Aurae peer benchmark (everything on loopback, in one run on this machine)");
    let js_ran = dht_parts(&mut rng).await;
    remote_part().await;
    if !js_ran {
        eprintln!("peer benchmark: the js-libp2p side failed, so part 1 has no comparison");
        std::process::exit(1);
    }
}
