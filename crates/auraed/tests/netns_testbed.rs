//! The NAT traversal testbed itself (tests/netns/testbed.sh), before any aurae node runs in
//! it: it comes up in both NAT modes, passes its own reachability and isolation checks (the
//! private hosts reach the public node, nothing reaches them unsolicited, and the NAT maps
//! ports as the mode says), and goes away without a trace. Needs root, `ip` and `nft`.

mod netns;

use netns::{NatMode, Node, Testbed, ns_exists};

fn comes_up_passes_its_checks_and_goes_down(mode: NatMode, mapping_line: &str) {
    let testbed = Testbed::up(mode);
    let namespaces: Vec<String> = Node::ALL.iter().map(|&n| testbed.ns(n)).collect();
    for ns in &namespaces {
        assert!(ns_exists(ns), "testbed.sh up did not create {ns}");
    }

    let report = testbed.check();
    assert!(
        report.contains(mapping_line),
        "the check did not verify the {mode:?} mapping:\n{report}"
    );

    let out = testbed
        .command(Node::A, "ip")
        .args(["-4", "route", "show", "default"])
        .output()
        .expect("ip netns exec");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("via 192.168.1.1"),
        "a's default route is not its NAT router: {}",
        String::from_utf8_lossy(&out.stdout)
    );

    testbed.down();
    for ns in &namespaces {
        assert!(!ns_exists(ns), "testbed.sh down left {ns} behind");
    }
}

#[test]
fn endpoint_independent_nat_testbed_isolates_private_hosts_and_keeps_their_ports() {
    comes_up_passes_its_checks_and_goes_down(
        NatMode::EndpointIndependent,
        "ok   endpoint-independent NAT: a's socket keeps port 40001 for every destination",
    );
}

#[test]
fn symmetric_nat_testbed_isolates_private_hosts_and_randomises_their_ports() {
    comes_up_passes_its_checks_and_goes_down(
        NatMode::Symmetric,
        "ok   symmetric NAT: a's one socket appears from different ports",
    );
}

#[test]
fn testbed_down_is_idempotent_and_up_refuses_a_bad_prefix() {
    let script = netns::script();
    for _ in 0..2 {
        let out = std::process::Command::new(&script)
            .args(["down", "zz0"])
            .output()
            .expect("run testbed.sh");
        assert!(
            out.status.success(),
            "down of an absent testbed failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for bad in ["toolong", "Caps", "a-b", ""] {
        let out = std::process::Command::new(&script)
            .args(["up", bad])
            .output()
            .expect("run testbed.sh");
        assert_eq!(out.status.code(), Some(2), "up accepted the prefix {bad:?}");
        assert!(
            !ns_exists(&format!("{bad}-pub")),
            "up {bad:?} created a namespace"
        );
    }
}
