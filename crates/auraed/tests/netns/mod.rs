//! Test support: the NAT traversal testbed of `testbed.sh` (a public segment and two private
//! hosts behind NAT routers, in network namespaces) as a guard that tears it down on drop.
//!
//! Use it from an integration test with `mod netns;`. It never touches the host's own
//! namespace: everything lives in the five namespaces named by [`Testbed::ns`].
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How the NAT routers map a private host's flows to their WAN address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatMode {
    /// Plain `masquerade`: one inside endpoint keeps one outside port whatever it talks to,
    /// so hole punching can work.
    EndpointIndependent,
    /// `masquerade fully-random`: every new flow gets a random outside port ("symmetric"
    /// NAT), so hole punching fails and peers need a relay.
    Symmetric,
}

/// A node of the testbed; its namespace is `<prefix>-<name>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    /// The public segment, 10.77.0.1 (the relay/bootstrap node runs here).
    Pub,
    /// The NAT router of `A`: WAN 10.77.0.11, LAN 192.168.1.1.
    Nat1,
    /// The NAT router of `B`: WAN 10.77.0.12, LAN 192.168.2.1.
    Nat2,
    /// A private host behind `Nat1`, 192.168.1.2.
    A,
    /// A private host behind `Nat2`, 192.168.2.2.
    B,
}

impl Node {
    /// Every node, in the order the testbed builds them.
    pub const ALL: [Node; 5] = [Node::Pub, Node::Nat1, Node::Nat2, Node::A, Node::B];

    /// The namespace suffix `testbed.sh` uses.
    pub fn name(self) -> &'static str {
        match self {
            Node::Pub => "pub",
            Node::Nat1 => "nat1",
            Node::Nat2 => "nat2",
            Node::A => "a",
            Node::B => "b",
        }
    }

    /// The node's address that peers dial (the WAN address for routers).
    pub fn addr(self) -> &'static str {
        match self {
            Node::Pub => "10.77.0.1",
            Node::Nat1 => "10.77.0.11",
            Node::Nat2 => "10.77.0.12",
            Node::A => "192.168.1.2",
            Node::B => "192.168.2.2",
        }
    }
}

/// A testbed that is up; dropping it runs `testbed.sh down` (also when the test panics).
pub struct Testbed {
    prefix: String,
    mode: NatMode,
    down: bool,
}

/// The path of `testbed.sh`.
pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/netns/testbed.sh")
}

/// Panics with an install hint unless `program --version`-like `args` runs.
fn require(program: &str, args: &[&str], package: &str) {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(err) => panic!(
            "the NAT testbed needs `{program}` ({err}); install it: apt-get install -y {package} \
             (scripts/test does)"
        ),
    }
}

/// A short prefix (at most 6 characters, as `testbed.sh` requires) unique to this call.
fn unique_prefix(mode: NatMode) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(40_503))
        .wrapping_add(nanos);
    let letter = match mode {
        NatMode::EndpointIndependent => 'e',
        NatMode::Symmetric => 's',
    };
    format!("{letter}{:05x}", seed & 0xf_ffff)
}

/// Runs `testbed.sh` with `args`; its output.
fn run(args: &[&str]) -> Output {
    Command::new(script())
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {}: {err}", script().display()))
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Testbed {
    /// Brings a testbed up under a fresh unique prefix; panics (loudly, with the script's
    /// output) if a tool is missing or anything fails.
    pub fn up(mode: NatMode) -> Testbed {
        require("ip", &["-V"], "iproute2");
        require("nft", &["--version"], "nftables");
        let prefix = unique_prefix(mode);
        let mut args = vec!["up", prefix.as_str()];
        if mode == NatMode::Symmetric {
            args.push("--symmetric");
        }
        let out = run(&args);
        // Guard first: a half-built testbed is removed by `up` itself, but be sure.
        let testbed = Testbed {
            prefix,
            mode,
            down: false,
        };
        assert!(
            out.status.success(),
            "testbed.sh up failed: {}",
            describe(&out)
        );
        testbed
    }

    /// The prefix of every namespace of this testbed.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The NAT mode it was built with.
    pub fn mode(&self) -> NatMode {
        self.mode
    }

    /// The namespace of `node` (for `ip netns exec`).
    pub fn ns(&self, node: Node) -> String {
        format!("{}-{}", self.prefix, node.name())
    }

    /// A command that runs `program` inside `node`'s namespace.
    pub fn command(&self, node: Node, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec"]).arg(self.ns(node)).arg(program);
        cmd
    }

    /// Runs `testbed.sh check`, panicking with its report if any check failed; the report.
    pub fn check(&self) -> String {
        require("python3", &["--version"], "python3");
        require("ping", &["-V"], "iputils-ping");
        let out = run(&["check", &self.prefix]);
        let report = String::from_utf8_lossy(&out.stdout).into_owned();
        println!("{report}");
        assert!(
            out.status.success(),
            "testbed.sh check failed: {}",
            describe(&out)
        );
        report
    }

    /// Tears the testbed down now, panicking if that fails (`Drop` only warns).
    pub fn down(mut self) {
        self.down = true;
        let out = run(&["down", &self.prefix]);
        assert!(
            out.status.success(),
            "testbed.sh down failed: {}",
            describe(&out)
        );
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if self.down {
            return;
        }
        match Command::new(script()).args(["down", &self.prefix]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!("testbed.sh down {} failed: {}", self.prefix, describe(&out)),
            Err(err) => eprintln!("cannot run testbed.sh down {}: {err}", self.prefix),
        }
    }
}

/// Whether the namespace `name` exists.
pub fn ns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}
