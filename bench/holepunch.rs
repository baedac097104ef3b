//! Hole punching benchmark: in the endpoint-independent NAT testbed of
//! `crates/auraed/tests/netns` (a public relay/bootstrap auraed and two private hosts
//! behind NAT routers), how long two private nodes take from starting to a direct,
//! hole-punched connection, and how often they get there.
//!
//! Each try builds a fresh testbed and starts a fresh relay and fresh nodes `a` and `b`
//! (new keys; no NAT mapping, socket or DHT routing entry of an earlier try helps or
//! hinders: a relay that still lists the nodes of earlier tries makes name lookups and
//! publications wait on dead peers),
//! waits for their relay slots and for b's name record to name its circuit, then pings
//! b from a by name (which connects through the relay) and polls `aurae peer ls`
//! on a until b shows as `hole-punched` (at most 30 s). Prints, per try and overall
//! (median, p90, max): the time from start to hole-punched, and the hole punch alone
//! (from the relayed connection to the direct one); and the success rate beside the
//! target (100%). It measures; it does not assert. Needs root, `ip` and `nft`.
//! `AURAE_BENCH_TRIES` sets the number of tries (20).
//!
//! Run: `cargo bench -p auraed --bench holepunch`.

#[path = "../crates/auraed/tests/peer_nat.rs"]
mod peer_nat;

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use peer_nat::netns::{NatMode, Node, Testbed};
use peer_nat::{
    NatNode, PUNCH_TIMEOUT, relay_args, resolve_with_circuit, start_private_pair, traversal_log,
    wait_reserved,
};

/// The listen port of the private nodes.
const PORT: u16 = 4001;

/// The timings of one successful try, each from the start of the try.
struct Try {
    reserved: Duration,
    resolved: Duration,
    relayed: Duration,
    punched: Duration,
}

/// One try in `testbed` with a running relay: fresh a and b; `Err` says where and why it
/// failed.
fn one_try(testbed: &Testbed, relay: &NatNode) -> Result<Try, String> {
    let start = Instant::now();
    let (a, b) = start_private_pair(testbed, relay, PORT, "");
    wait_reserved(&a);
    wait_reserved(&b);
    let reserved = start.elapsed();
    resolve_with_circuit(&a, &b);
    let resolved = start.elapsed();
    let ping = a.aurae(&["peer", "ping", &b.name, "--json"]);
    if !ping.status.success() {
        return Err(format!(
            "a could not reach {}: {}\na:\n{}b:\n{}relay:\n{}",
            b.name,
            String::from_utf8_lossy(&ping.stderr).trim(),
            traversal_log(&a),
            traversal_log(&b),
            traversal_log(relay)
        ));
    }
    let relayed = start.elapsed();
    let deadline = relayed + PUNCH_TIMEOUT;
    loop {
        match a.connection_to(&b.peer_id).as_deref() {
            Some("hole-punched") => break,
            Some(_) | None if start.elapsed() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => {
                let dcutr: Vec<String> = [&a, &b]
                    .iter()
                    .flat_map(|n| {
                        n.log()
                            .lines()
                            .filter(|l| l.contains("DCUtR") || l.contains("hole-punch"))
                            .map(|l| format!("{}: {l}", n.name))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                return Err(format!(
                    "no hole-punched connection within {PUNCH_TIMEOUT:?} (a sees b as {other:?}); DCUtR:\n{}",
                    dcutr.join("\n")
                ));
            }
        }
    }
    Ok(Try {
        reserved,
        resolved,
        relayed,
        punched: start.elapsed(),
    })
}

/// The `p` percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn summary(what: &str, mut times: Vec<Duration>) {
    if times.is_empty() {
        println!("{what:<34} no successful try");
        return;
    }
    times.sort();
    println!(
        "{what:<34} median {:>8.1} ms   p90 {:>8.1} ms   max {:>8.1} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter we do not use.
    let tries: u16 = std::env::var("AURAE_BENCH_TRIES")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(20);
    println!("hole punching: {tries} tries, each in a fresh endpoint-independent NAT testbed");
    println!(
        "{:>3}  {:>10} {:>10} {:>10} {:>12} {:>10}",
        "try", "reserved", "resolved", "relayed", "hole-punched", "punch"
    );
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for i in 0..tries {
        let testbed = Testbed::up(NatMode::EndpointIndependent);
        let relay = NatNode::start(&testbed, Node::Pub, "relay", &relay_args());
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| one_try(&testbed, &relay)))
            .unwrap_or_else(|panic| {
                Err(panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "the try panicked".to_owned()))
            });
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
        match outcome {
            Ok(t) => {
                println!(
                    "{:>3}  {:>10} {:>10} {:>10} {:>12} {:>10}",
                    i + 1,
                    ms(t.reserved),
                    ms(t.resolved),
                    ms(t.relayed),
                    ms(t.punched),
                    ms(t.punched - t.relayed)
                );
                done.push(t);
            }
            Err(why) => {
                println!("{:>3}  FAILED: {}", i + 1, why.lines().next().unwrap_or(""));
                failures.push((i + 1, why));
            }
        }
        drop(relay);
        testbed.down();
    }
    println!();
    summary(
        "start -> hole-punched",
        done.iter().map(|t| t.punched).collect(),
    );
    summary(
        "relayed -> hole-punched (DCUtR)",
        done.iter().map(|t| t.punched - t.relayed).collect(),
    );
    summary(
        "start -> both relay slots",
        done.iter().map(|t| t.reserved).collect(),
    );
    println!(
        "success rate: {}/{} = {:.0}%   (target: 100%)",
        done.len(),
        tries,
        100.0 * done.len() as f64 / f64::from(tries.max(1))
    );
    for (i, why) in &failures {
        println!("\ntry {i} failed:\n{why}");
    }
}
