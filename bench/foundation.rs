//! Foundation benchmark: unary `System/Status` over mTLS on the socket against a raw
//! Unix-socket echo served by a second process (the floor of any call answered over the
//! socket), start-to-healthy time, and idle footprint of auraed.
//!
//! Run with `bench/run` (or `cargo bench -p auraed --bench foundation`). Prints one
//! table with the ratios and targets; it measures, it does not assert.

#[path = "common.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use aurae_client::{AuraeClient, Identity};
use aurae_proto::v0::StatusRequest;
use common::{EchoPeer, Setup, healthy, percentile, serve_echo_if_asked, setup, spawn_auraed};

const CALLS: usize = 10_000;
const WARMUP: usize = 500;
const STARTS: usize = 20;
/// Size of the echoed message: about the size of a Status reply.
const ECHO_BYTES: usize = 256;

fn micros(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Start auraed with material present until health says SERVING, `STARTS` times.
async fn start_to_healthy(setup: &Setup) -> Vec<Duration> {
    let mut times = Vec::with_capacity(STARTS);
    for i in 0..STARTS {
        let sock = setup.root.join(format!("start-{i}.sock"));
        let started = Instant::now();
        let mut child = spawn_auraed(env!("CARGO_BIN_EXE_auraed"), &setup.root, &sock);
        loop {
            if healthy(&sock, &setup.admin).await {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "auraed never became healthy"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        times.push(started.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort();
    times
}

async fn status_round_trips(sock: &Path, admin: &Identity) -> Vec<Duration> {
    let channel = aurae_client::connect_mtls(sock, admin)
        .await
        .expect("connect");
    let mut system = AuraeClient::from_channel(channel).system();
    for _ in 0..WARMUP {
        system.status(StatusRequest {}).await.expect("status");
    }
    let mut times = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let start = Instant::now();
        system.status(StatusRequest {}).await.expect("status");
        times.push(start.elapsed());
    }
    times.sort();
    times
}

/// Round trips of `ECHO_BYTES` to an echo served by a second process over a Unix
/// socket: the floor of any call answered by another process over the socket.
fn echo_round_trips(root: &Path) -> Vec<Duration> {
    EchoPeer::spawn(root).round_trips(ECHO_BYTES, WARMUP, CALLS)
}

/// Resident memory (kB) and CPU ticks of a process, from /proc.
fn footprint(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    let ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    (rss, ticks)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "meets target" } else { "MISSES target" }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    serve_echo_if_asked();
    if std::env::args().any(|a| a == "--list") {
        println!("foundation: bench");
        return;
    }
    let setup = setup();

    let starts = start_to_healthy(&setup).await;

    let sock = setup.root.join("aurae.sock");
    let mut daemon = spawn_auraed(env!("CARGO_BIN_EXE_auraed"), &setup.root, &sock);
    while !healthy(&sock, &setup.admin).await {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, ticks_before) = footprint(daemon.id());
    let idle = Duration::from_secs(3);
    tokio::time::sleep(idle).await;
    let (idle_rss_kb, ticks_after) = footprint(daemon.id());
    let tick_hz = 100.0; // USER_HZ on Linux
    let idle_cpu = (ticks_after - ticks_before) as f64 / tick_hz / idle.as_secs_f64() * 100.0;

    let status = status_round_trips(&sock, &setup.admin).await;
    let (rss_after_load_kb, _) = footprint(daemon.id());
    let _ = daemon.kill();
    let _ = daemon.wait();
    let echo = echo_round_trips(&setup.root);

    let (s50, s99) = (percentile(&status, 0.5), percentile(&status, 0.99));
    let (e50, e99) = (percentile(&echo, 0.5), percentile(&echo, 0.99));
    let ratio50 = s50.as_secs_f64() / e50.as_secs_f64();
    let ratio99 = s99.as_secs_f64() / e99.as_secs_f64();
    let start50 = percentile(&starts, 0.5);

    println!();
    println!("Aurae foundation benchmark ({CALLS} calls after {WARMUP} warm-up; {STARTS} starts)");
    println!("{:<44} {:>12} {:>12} {:>9}", "measure", "p50", "p99", "");
    println!(
        "{:<44} {:>12} {:>12}",
        "System/Status over mTLS on the socket",
        micros(s50),
        micros(s99)
    );
    println!(
        "{:<44} {:>12} {:>12}",
        format!("raw Unix-socket echo, 2 processes ({ECHO_BYTES} B)"),
        micros(e50),
        micros(e99)
    );
    println!(
        "{:<44} {:>12} {:>12}   target p50 <= 10x: {}",
        "ratio Status / echo",
        format!("{ratio50:.1}x"),
        format!("{ratio99:.1}x"),
        verdict(ratio50 <= 10.0)
    );
    println!(
        "{:<44} {:>12} {:>12}   target < 50 ms: {}",
        "start to healthy (SERVING, material present)",
        millis(start50),
        millis(percentile(&starts, 0.99)),
        verdict(start50 < Duration::from_millis(50))
    );
    println!(
        "{:<44} {:>12}   target < 15 MB: {}",
        "idle RSS of auraed (serving, after 4 s idle)",
        format!("{:.1} MB", idle_rss_kb as f64 / 1024.0),
        verdict(idle_rss_kb < 15 * 1024)
    );
    println!(
        "{:<44} {:>12}",
        "RSS after the 10,500 calls",
        format!("{:.1} MB", rss_after_load_kb as f64 / 1024.0)
    );
    println!(
        "{:<44} {:>12}",
        "idle CPU of auraed (3 s)",
        format!("{idle_cpu:.2} %")
    );
}
