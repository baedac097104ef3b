//! Bootstrap peers from DNS against a real DNS server: dnsmasq inside a private network
//! namespace, reached over a veth pair on a private /30. Nothing outside this machine is asked.
//!
//! Needs root, `ip` (iproute2) and `dnsmasq` (Debian package `dnsmasq-base`); fails loudly
//! without them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aurae_core::name::DomainName;
use auraed::peer::dnsaddr::{DnsaddrError, DnsaddrResolver, EntryError};
use libp2p::{Multiaddr, PeerId};
use tonic::Code;

/// The zone dnsmasq answers for itself (NXDOMAIN for names it does not know).
const ZONE: &str = "aurae.test";

fn peer(seed: u8) -> PeerId {
    libp2p::identity::Keypair::ed25519_from_bytes([seed; 32])
        .expect("a 32-byte seed is a valid ed25519 key")
        .public()
        .to_peer_id()
}

fn addr(text: &str) -> Multiaddr {
    text.parse()
        .unwrap_or_else(|e| panic!("test multiaddr {text}: {e}"))
}

fn domain(text: &str) -> DomainName {
    text.parse()
        .unwrap_or_else(|e| panic!("test domain {text}: {e}"))
}

/// Runs a command to completion, panicking with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fails loudly when a tool the test needs is missing.
fn require(program: &str, hint: &str) {
    let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|dir| Path::new(dir).join(program).exists());
    assert!(found, "`{program}` is missing: {hint}");
}

/// A network namespace with dnsmasq in it, joined to ours by a veth pair. Dropping it kills
/// dnsmasq and deletes the veth pair and the namespace, whatever happened before.
struct DnsNet {
    netns: String,
    veth: String,
    server: Ipv4Addr,
    dnsmasq: Option<Child>,
}

impl DnsNet {
    /// Claims a free /30 in 10.78.0.0/16: `ip netns add` is atomic, so the namespace name
    /// (which carries the subnet number) is the claim, and parallel tests never share one.
    fn claim() -> Self {
        let start = std::process::id() as usize;
        for i in 0..250 {
            let n = (start + i) % 250 + 1;
            let netns = format!("aurae-dnsaddr-{n}");
            let added = Command::new("ip")
                .args(["netns", "add", &netns])
                .output()
                .unwrap_or_else(|e| panic!("cannot run `ip netns add`: {e}"));
            if added.status.success() {
                return Self {
                    netns,
                    veth: format!("adns{n}h"),
                    server: Ipv4Addr::new(10, 78, n as u8, 2),
                    dnsmasq: None,
                };
            }
        }
        panic!("no free aurae-dnsaddr-<n> network namespace (see `ip netns list`)");
    }

    /// Wires the namespace up and starts dnsmasq with `records` (name, text) as its TXT
    /// records, answered in this order.
    fn start(records: &[(String, String)]) -> Self {
        require("ip", "install iproute2");
        require(
            "dnsmasq",
            "install the Debian package dnsmasq-base (apt-get install dnsmasq-base)",
        );
        let mut net = Self::claim();
        let [_, _, n, _] = net.server.octets();
        let inner = format!("adns{n}p");
        let host_ip = format!("10.78.{n}.1/30");
        let server_ip = format!("10.78.{n}.2/30");
        let ns = net.netns.clone();
        run(
            "ip",
            &[
                "link", "add", &net.veth, "type", "veth", "peer", "name", &inner, "netns", &ns,
            ],
        );
        run("ip", &["addr", "add", &host_ip, "dev", &net.veth]);
        run("ip", &["link", "set", &net.veth, "up"]);
        run("ip", &["-n", &ns, "addr", "add", &server_ip, "dev", &inner]);
        run("ip", &["-n", &ns, "link", "set", &inner, "up"]);
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);

        let listen = net.server.to_string();
        let mut args = vec![
            "netns".to_owned(),
            "exec".to_owned(),
            ns,
            "dnsmasq".to_owned(),
            "--keep-in-foreground".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--pid-file".to_owned(),
            "--no-resolv".to_owned(),
            "--no-hosts".to_owned(),
            "--port=53".to_owned(),
            format!("--listen-address={listen}"),
            "--bind-interfaces".to_owned(),
            format!("--local=/{ZONE}/"),
            "--log-facility=-".to_owned(),
        ];
        // dnsmasq answers a name's TXT records last-configured first, so they are passed in
        // reverse to be answered in the order written in each test.
        args.extend(
            records
                .iter()
                .rev()
                // No shell: the text goes as is (dnsmasq would keep quotes as part of it).
                .map(|(name, text)| format!("--txt-record={name},{text}")),
        );
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start dnsmasq: {e}"));
        net.dnsmasq = Some(child);
        net.wait_ready();
        net
    }

    /// Waits until dnsmasq accepts TCP on port 53 (it binds UDP first), or fails.
    fn wait_ready(&mut self) {
        let target = SocketAddr::V4(SocketAddrV4::new(self.server, 53));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = self.dnsmasq.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("dnsmasq exited at start ({status}); its messages are above");
            }
            if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not listen on {target} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn resolver(&self) -> DnsaddrResolver {
        DnsaddrResolver::with_nameserver(SocketAddr::V4(SocketAddrV4::new(self.server, 53)))
    }
}

impl Drop for DnsNet {
    fn drop(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Deleting one end of a veth pair deletes both; it may not exist if setup failed.
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

fn txt(name: &str, text: String) -> (String, String) {
    (format!("_dnsaddr.{name}.{ZONE}"), text)
}

#[tokio::test]
async fn a_domain_yields_its_peers_in_order_with_nested_names_resolved() {
    let (a, b, c) = (peer(1), peer(2), peer(3));
    let net = DnsNet::start(&[
        txt("alpha", format!("dnsaddr=/ip4/10.1.0.1/tcp/4001/p2p/{a}")),
        txt(
            "alpha",
            format!("dnsaddr=/dnsaddr/nested.alpha.{ZONE}/p2p/{b}"),
        ),
        txt(
            "nested.alpha",
            format!("dnsaddr=/ip4/10.1.0.2/tcp/4001/p2p/{b}"),
        ),
        // A different peer under the nested name: the /p2p/<b> suffix filters it out.
        txt(
            "nested.alpha",
            format!("dnsaddr=/ip4/10.1.0.3/tcp/4001/p2p/{c}"),
        ),
        txt(
            "nested.alpha",
            format!("dnsaddr=/ip4/10.1.0.2/udp/4001/quic-v1/p2p/{b}"),
        ),
    ]);
    let peers = net
        .resolver()
        .bootstrap_peers(&domain(&format!("alpha.{ZONE}")))
        .await
        .expect("alpha publishes two peers");
    assert_eq!(
        peers,
        vec![
            (a, addr(&format!("/ip4/10.1.0.1/tcp/4001/p2p/{a}"))),
            (b, addr(&format!("/ip4/10.1.0.2/tcp/4001/p2p/{b}"))),
            (b, addr(&format!("/ip4/10.1.0.2/udp/4001/quic-v1/p2p/{b}"))),
        ]
    );

    // The nested name alone yields all three (no suffix to filter on).
    let nested = net
        .resolver()
        .bootstrap_peers(&domain(&format!("nested.alpha.{ZONE}")))
        .await
        .expect("the nested name publishes three addresses");
    let ids: Vec<PeerId> = nested.iter().map(|(p, _)| *p).collect();
    assert_eq!(ids, vec![b, c, b]);
}

#[tokio::test]
async fn malformed_entries_are_skipped_and_refused_when_nothing_else_is_left() {
    let (d, e) = (peer(4), peer(5));
    let net = DnsNet::start(&[
        txt("mixed", format!("dnsaddr=/ip4/10.2.0.1/tcp/4001/p2p/{d}")),
        txt("mixed", "dnsaddr=/ip4/not-an-ip/tcp/4001".to_owned()),
        txt("mixed", "v=spf1 -all".to_owned()),
        txt("mixed", "dnsaddr=/ip4/10.2.0.2/tcp/4001".to_owned()),
        txt("mixed", format!("dnsaddr=/ip4/10.2.0.3/tcp/4001/p2p/{e}")),
        txt("broken", "dnsaddr=/ip4/10.3.0.1/tcp/4001".to_owned()),
        txt("broken", "hello".to_owned()),
    ]);
    let resolver = net.resolver();
    let peers = resolver
        .bootstrap_peers(&domain(&format!("mixed.{ZONE}")))
        .await
        .expect("mixed has two good entries");
    assert_eq!(
        peers,
        vec![
            (d, addr(&format!("/ip4/10.2.0.1/tcp/4001/p2p/{d}"))),
            (e, addr(&format!("/ip4/10.2.0.3/tcp/4001/p2p/{e}"))),
        ]
    );

    let err = resolver
        .bootstrap_peers(&domain(&format!("broken.{ZONE}")))
        .await
        .expect_err("broken has no usable entry");
    let DnsaddrError::Malformed { name, reason, .. } = &err else {
        panic!("expected Malformed, got {err:?}");
    };
    assert_eq!(name, &format!("_dnsaddr.broken.{ZONE}"));
    assert!(
        matches!(
            reason,
            EntryError::NoPeerId { .. } | EntryError::MissingPrefix
        ),
        "{reason:?}"
    );
    assert_eq!(err.to_status().code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_domain_without_records_is_not_found_and_says_what_to_publish() {
    let net = DnsNet::start(&[txt(
        "other",
        format!("dnsaddr=/ip4/10.4.0.1/tcp/1/p2p/{}", peer(6)),
    )]);
    let resolver = net.resolver();
    let err = resolver
        .bootstrap_peers(&domain(&format!("empty.{ZONE}")))
        .await
        .expect_err("empty publishes nothing");
    assert_eq!(
        err,
        DnsaddrError::NoRecords {
            name: format!("_dnsaddr.empty.{ZONE}")
        }
    );
    let status = err.to_status();
    assert_eq!(status.code(), Code::NotFound);
    assert!(
        status
            .message()
            .contains(&format!("_dnsaddr.empty.{ZONE}. 300 IN TXT \"dnsaddr=")),
        "{}",
        status.message()
    );

    // A name outside the server's zone is refused (no upstream): a lookup failure.
    let err = resolver
        .bootstrap_peers(&domain("outside.example"))
        .await
        .expect_err("the server answers only for its zone");
    assert!(
        matches!(&err, DnsaddrError::LookupFailed { name, .. } if name == "_dnsaddr.outside.example"),
        "{err:?}"
    );
    assert_eq!(err.to_status().code(), Code::Unavailable);
}

#[tokio::test]
async fn nested_loops_and_deep_chains_are_cut_off() {
    let f = peer(7);
    let mut records = vec![
        // loop -> loop2 -> loop, with one good address beside the loop.
        txt("loop", format!("dnsaddr=/dnsaddr/loop2.{ZONE}")),
        txt("loop2", format!("dnsaddr=/dnsaddr/loop.{ZONE}")),
        txt("loop2", format!("dnsaddr=/ip4/10.5.0.1/tcp/4001/p2p/{f}")),
        // A self-loop with nothing else.
        txt("self", format!("dnsaddr=/dnsaddr/self.{ZONE}")),
    ];
    // deep -> d1 -> ... -> d5 -> an address: five nested levels, one too many.
    records.push(txt("deep", format!("dnsaddr=/dnsaddr/d1.{ZONE}")));
    for level in 1..5 {
        records.push(txt(
            &format!("d{level}"),
            format!("dnsaddr=/dnsaddr/d{}.{ZONE}", level + 1),
        ));
    }
    records.push(txt("d5", format!("dnsaddr=/ip4/10.5.0.2/tcp/4001/p2p/{f}")));
    // Resolved from d1 instead, the same chain is four nested levels: allowed.
    let net = DnsNet::start(&records);
    let resolver = net.resolver();

    let peers = resolver
        .bootstrap_peers(&domain(&format!("loop.{ZONE}")))
        .await
        .expect("the loop is cut and the good address kept");
    assert_eq!(
        peers,
        vec![(f, addr(&format!("/ip4/10.5.0.1/tcp/4001/p2p/{f}")))]
    );

    let err = resolver
        .bootstrap_peers(&domain(&format!("self.{ZONE}")))
        .await
        .expect_err("a self-loop yields nothing");
    assert!(
        matches!(&err, DnsaddrError::Loop { chain } if chain.len() == 2),
        "{err:?}"
    );
    assert_eq!(err.to_status().code(), Code::InvalidArgument);

    let err = resolver
        .bootstrap_peers(&domain(&format!("deep.{ZONE}")))
        .await
        .expect_err("five nested levels are too many");
    assert!(
        matches!(&err, DnsaddrError::RecursionTooDeep { chain } if chain.len() == 6),
        "{err:?}"
    );

    let four_deep = resolver
        .bootstrap_peers(&domain(&format!("d1.{ZONE}")))
        .await
        .expect("four nested levels are allowed");
    assert_eq!(
        four_deep,
        vec![(f, addr(&format!("/ip4/10.5.0.2/tcp/4001/p2p/{f}")))]
    );
}

#[tokio::test]
async fn a_silent_server_fails_within_the_short_timeouts() {
    // A server on loopback that takes queries and never answers: UDP datagrams are left
    // unread, TCP connections are accepted and left hanging.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket");
    let port = udp.local_addr().expect("its address").port();
    let tcp = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind TCP on the same loopback port");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = tcp.accept().await {
            held.push(stream);
        }
    });
    let resolver = DnsaddrResolver::with_nameserver(SocketAddr::from(([127, 0, 0, 1], port)));

    let started = Instant::now();
    let err = resolver
        .bootstrap_peers(&domain(&format!("alpha.{ZONE}")))
        .await
        .expect_err("nobody answers");
    let took = started.elapsed();
    hold.abort();
    drop(udp);

    assert!(
        matches!(&err, DnsaddrError::LookupFailed { name, .. } if name == &format!("_dnsaddr.alpha.{ZONE}")),
        "{err:?}"
    );
    assert_eq!(err.to_status().code(), Code::Unavailable);
    // 2 s per try and a bounded number of tries (UDP, TCP, one retry: about 6 s here), not
    // hickory's 5 s defaults.
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "gave up after {took:?}"
    );
}
