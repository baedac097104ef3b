//! Storage benchmark: durable `kv put` throughput (one client, and 16 concurrent
//! clients) against two peers doing the same durable inserts of the same values:
//! PostgreSQL (fsync and synchronous_commit on, over its Unix socket, driven by pgbench)
//! and SQLite in WAL mode with synchronous=FULL (in process, from Python). Beside them
//! the floor of a durable put acknowledged over a socket: one fdatasync on this disk
//! plus one round trip to another process over a Unix socket.
//!
//! Run with `bench/run` (or `cargo bench -p auraed --bench storage`). Prints one table
//! with the ratios; it measures, it does not assert. It fails, naming the package, when
//! PostgreSQL's programs are missing.

#[path = "common.rs"]
mod common;
#[path = "postgres_peer.rs"]
mod postgres_peer;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aurae_client::AuraeClient;
use aurae_proto::v0::PutRequest;
use common::{EchoPeer, percentile, serve_echo_if_asked, serving_auraed, setup};

const VALUE_BYTES: usize = 100;
const SINGLE_PUTS: usize = 2000;
const CLIENTS: usize = 16;
const PUTS_PER_CLIENT: usize = 250;
/// Timed samples of each part of the floor.
const FLOOR_SAMPLES: usize = 500;
/// Untimed samples before them.
const FLOOR_WARMUP: usize = 50;
/// Bytes written per fdatasync and echoed per round trip: about one put's log frame,
/// and one put's request on the wire.
const FRAME_BYTES: usize = 256;

/// Puts per second of `clients` connections, each doing `puts` sequential durable puts.
async fn kv_rate(
    sock: &std::path::Path,
    admin: &aurae_client::Identity,
    clients: usize,
    puts: usize,
    tag: &str,
) -> f64 {
    let mut storages = Vec::new();
    for _ in 0..clients {
        let channel = aurae_client::connect_mtls(sock, admin)
            .await
            .expect("connect");
        storages.push(AuraeClient::from_channel(channel).storage());
    }
    let start = Instant::now();
    let tasks: Vec<_> = storages
        .into_iter()
        .enumerate()
        .map(|(c, mut storage)| {
            let tag = tag.to_owned();
            tokio::spawn(async move {
                for i in 0..puts {
                    let request = PutRequest {
                        path: format!("/bench/{tag}/c{c}/k{i}"),
                        value: vec![b'v'; VALUE_BYTES],
                        mode: None,
                        if_version: None,
                        no_parents: false,
                    };
                    storage.put(request).await.expect("put");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }
    (clients * puts) as f64 / start.elapsed().as_secs_f64()
}

/// Puts per second of one client driving its connection from a thread of its own, as a
/// single-threaded program (and the SQLite peer's single client) does.
fn single_client_rate(sock: &std::path::Path, admin: &aurae_client::Identity) -> f64 {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime")
                    .block_on(kv_rate(sock, admin, 1, SINGLE_PUTS, "single"))
            })
            .join()
            .expect("the single client")
    })
}

/// Puts per second of the SQLite peer (bench/sqlite_peer.py).
fn sqlite_rate(dir: &std::path::Path, clients: usize, puts: usize) -> f64 {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/sqlite_peer.py");
    let db = dir.join(format!("peer-{clients}.db"));
    let out = Command::new("python3")
        .arg(script)
        .arg(&db)
        .arg(clients.to_string())
        .arg(puts.to_string())
        .arg(VALUE_BYTES.to_string())
        .output()
        .expect("python3 runs the SQLite peer");
    assert!(
        out.status.success(),
        "SQLite peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a rate")
}

/// Median of `FLOOR_SAMPLES` durable small writes in `dir`, made the way the store's log
/// makes them: `FRAME_BYTES` written in place, one after the other, into a file written
/// full of zeros beforehand, then fdatasync (which need not flush the inode, since the
/// size does not change).
fn fdatasync_floor(dir: &Path) -> Duration {
    std::fs::create_dir_all(dir).expect("the store's directory");
    let path = dir.join("fdatasync-floor.probe");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .expect("create the probe file");
    let slots = FLOOR_WARMUP + FLOOR_SAMPLES;
    file.write_all(&vec![0u8; FRAME_BYTES * slots])
        .and_then(|()| file.sync_all())
        .expect("fill the probe file");
    let frame = [b'f'; FRAME_BYTES];
    let mut times = Vec::with_capacity(FLOOR_SAMPLES);
    for slot in 0..slots {
        let start = Instant::now();
        file.write_all_at(&frame, (slot * FRAME_BYTES) as u64)
            .and_then(|()| file.sync_data())
            .expect("write and fdatasync the probe file");
        if slot >= FLOOR_WARMUP {
            times.push(start.elapsed());
        }
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    times.sort();
    percentile(&times, 0.5)
}

/// Median round trip of `FRAME_BYTES` to an echo served by a second process.
fn echo_floor(dir: &Path) -> Duration {
    let times = EchoPeer::spawn(dir).round_trips(FRAME_BYTES, FLOOR_WARMUP, FLOOR_SAMPLES);
    percentile(&times, 0.5)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "meets target" } else { "MISSES target" }
}

fn micros(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

/// One row of a peer table: the rates, their ratio and, when there is one, the target.
fn peer_row(name: &str, kv: f64, peer: f64, target: Option<f64>) {
    let ratio = kv / peer;
    let target = match target {
        Some(t) => format!("   target >= {t}x: {}", verdict(ratio >= t)),
        None => String::new(),
    };
    println!("{name:<36} {kv:>14.0} {peer:>16.0} {ratio:>7.2}x{target}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    serve_echo_if_asked();
    if std::env::args().any(|a| a == "--list") {
        println!("storage: bench");
        return;
    }
    // Before anything is measured: without its peer the benchmark has no point.
    let postgres = postgres_peer::Binaries::find();
    let setup = setup();
    let sock = setup.root.join("aurae.sock");
    let mut daemon = serving_auraed(env!("CARGO_BIN_EXE_auraed"), &setup, &sock).await;

    let kv_single = single_client_rate(&sock, &setup.admin);
    let kv_many = kv_rate(&sock, &setup.admin, CLIENTS, PUTS_PER_CLIENT, "many").await;
    let _ = daemon.kill();
    let _ = daemon.wait();

    let sync = fdatasync_floor(&setup.root.join("data"));
    let echo = echo_floor(&setup.root);
    let floor = sync + echo;

    let sqlite_single = sqlite_rate(&setup.root, 1, SINGLE_PUTS);
    let sqlite_many = sqlite_rate(&setup.root, CLIENTS, PUTS_PER_CLIENT);

    let (pg_single, pg_many) = {
        let server = postgres_peer::Server::start(&postgres);
        let single = server.pgbench_rate(1, SINGLE_PUTS, VALUE_BYTES);
        let many = server.pgbench_rate(CLIENTS, PUTS_PER_CLIENT, VALUE_BYTES);
        (single, many)
    };

    let single = "1 client, sequential".to_owned();
    let many = format!("{CLIENTS} concurrent clients");
    println!();
    println!(
        "Aurae storage benchmark: puts of {VALUE_BYTES} B, each answered only once durable (fsync)"
    );
    println!(
        "{:<36} {:>14} {:>16} {:>8}",
        "workload", "aurae kv put/s", "PostgreSQL tx/s", "ratio"
    );
    peer_row(&single, kv_single, pg_single, Some(1.0));
    peer_row(&many, kv_many, pg_many, None);
    println!(
        "{:<36} {:>14} {:>16} {:>8}",
        "workload", "aurae kv put/s", "SQLite put/s", "ratio"
    );
    peer_row(&single, kv_single, sqlite_single, Some(0.8));
    peer_row(&many, kv_many, sqlite_many, Some(1.0));
    println!("floor of one durable put acknowledged over a socket (medians of {FLOOR_SAMPLES})");
    println!(
        "{:<52} {:>10}",
        format!("  fdatasync of {FRAME_BYTES} B written in place, store's dir"),
        micros(sync)
    );
    println!(
        "{:<52} {:>10}",
        format!("  Unix-socket round trip, 2 processes ({FRAME_BYTES} B)"),
        micros(echo)
    );
    println!(
        "{:<52} {:>10}   = {:.0} put/s",
        "  floor: their sum",
        micros(floor),
        1.0 / floor.as_secs_f64()
    );
    for (name, rate) in [
        ("  aurae, 1 client: one put (1 / put/s)", kv_single),
        ("  PostgreSQL, 1 client: one insert (1 / tx/s)", pg_single),
        ("  SQLite, 1 client: one insert (1 / put/s)", sqlite_single),
    ] {
        let per_op = Duration::from_secs_f64(1.0 / rate);
        println!(
            "{name:<52} {:>10}   {:.2}x the floor",
            micros(per_op),
            per_op.as_secs_f64() / floor.as_secs_f64()
        );
    }
    println!(
        "(PostgreSQL: {}, fsync=on, synchronous_commit=on, Unix socket; pgbench, prepared, \
         one upsert per transaction, 1 and 2 threads)",
        postgres.version
    );
    println!(
        "(SQLite: WAL, synchronous=FULL, one connection per client, Python's sqlite3 module, in process)"
    );
}
