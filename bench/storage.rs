//! Storage benchmark: durable `kv put` throughput (one client, and 16 concurrent
//! clients) against SQLite in WAL mode with synchronous=FULL doing the same inserts.
//!
//! Run with `bench/run` (or `cargo bench -p auraed --bench storage`). Prints one table
//! with the ratios; it measures, it does not assert.

#[path = "common.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use aurae_client::AuraeClient;
use aurae_proto::v0::PutRequest;
use common::{serving_auraed, setup};

const VALUE_BYTES: usize = 100;
const SINGLE_PUTS: usize = 2000;
const CLIENTS: usize = 16;
const PUTS_PER_CLIENT: usize = 250;

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

fn verdict(ok: bool) -> &'static str {
    if ok { "meets target" } else { "MISSES target" }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("storage: bench");
        return;
    }
    let setup = setup();
    let sock = setup.root.join("aurae.sock");
    let mut daemon = serving_auraed(env!("CARGO_BIN_EXE_auraed"), &setup, &sock).await;

    let kv_single = single_client_rate(&sock, &setup.admin);
    let kv_many = kv_rate(&sock, &setup.admin, CLIENTS, PUTS_PER_CLIENT, "many").await;
    let _ = daemon.kill();
    let _ = daemon.wait();
    let sqlite_single = sqlite_rate(&setup.root, 1, SINGLE_PUTS);
    let sqlite_many = sqlite_rate(&setup.root, CLIENTS, PUTS_PER_CLIENT);

    println!();
    println!(
        "Aurae storage benchmark: puts of {VALUE_BYTES} B, each answered only once durable (fsync)"
    );
    println!(
        "{:<36} {:>14} {:>14} {:>8}",
        "workload", "aurae kv put/s", "SQLite put/s", "ratio"
    );
    for (name, kv, sqlite) in [
        ("1 client, sequential".to_owned(), kv_single, sqlite_single),
        (
            format!("{CLIENTS} concurrent clients"),
            kv_many,
            sqlite_many,
        ),
    ] {
        let ratio = kv / sqlite;
        println!(
            "{name:<36} {kv:>14.0} {sqlite:>14.0} {:>7.2}x   target >= 1x: {}",
            ratio,
            verdict(ratio >= 1.0)
        );
    }
    println!("(SQLite: WAL, synchronous=FULL, one connection per client, Python's sqlite3 module)");
}
