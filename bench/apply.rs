//! Node config benchmark: `aurae apply` of a document with 1,000 objects (volumes with
//! quotas, roles and grants) on a fresh node, then the same document again, which must
//! change nothing, then a dry run. Times the whole RPC as the CLI makes it (one call,
//! the document sent whole), best of a few runs each on fresh nodes.
//!
//! Run with `bench/run` (or `cargo bench -p auraed --bench apply`); it measures, it does
//! not assert, except that the second apply changes nothing.

#[path = "common.rs"]
mod common;

use std::fmt::Write;
use std::time::{Duration, Instant};

use aurae_client::AuraeClient;
use aurae_proto::v0::ApplyRequest;
use common::{serving_auraed, setup};

const VOLUMES: usize = 400;
const ROLES: usize = 300;
const GRANTS: usize = 300;
const RUNS: usize = 3;

/// A document of `VOLUMES + ROLES + GRANTS` objects.
fn document() -> String {
    let mut text = String::from("[capabilities]\nruntime = true\n\n");
    for v in 0..VOLUMES {
        let _ = writeln!(text, "[volumes.vol{v}]\nquota = \"{}M\"\n", 64 + v);
    }
    for r in 0..ROLES {
        let _ = writeln!(
            text,
            "[roles.role{r}]\nallow = [\"storage.read:/data/{r}/\", \"storage.write:volume:vol{}\", \"system.read\"]\n",
            r % VOLUMES
        );
    }
    text.push_str("[grants]\n");
    for g in 0..GRANTS {
        let _ = writeln!(
            text,
            "\"user{g}@bench@local\" = [\"role{}\", \"viewer\"]",
            g % ROLES
        );
    }
    text
}

struct Timings {
    first: Duration,
    second: Duration,
    dry_run: Duration,
    changes: usize,
}

async fn one_run(auraed: &str, text: &str) -> Timings {
    let setup = setup();
    let sock = setup.root.join("aurae.sock");
    let mut daemon = serving_auraed(auraed, &setup, &sock).await;
    let channel = aurae_client::connect_mtls(&sock, &setup.admin)
        .await
        .expect("connect");
    let mut service = AuraeClient::from_channel(channel).node_config();
    let request = || ApplyRequest {
        document: text.to_owned(),
        file_name: "bench.toml".into(),
        prune: false,
    };
    let start = Instant::now();
    let first = service.apply(request()).await.expect("apply").into_inner();
    let first_time = start.elapsed();
    assert!(first.applied, "the first apply applied nothing");
    let start = Instant::now();
    let second = service.apply(request()).await.expect("apply").into_inner();
    let second_time = start.elapsed();
    assert!(
        second.changes.is_empty() && !second.applied,
        "the second apply changed {} objects",
        second.changes.len()
    );
    let start = Instant::now();
    service.plan(request()).await.expect("plan");
    let dry_run = start.elapsed();
    let _ = daemon.kill();
    let _ = daemon.wait();
    Timings {
        first: first_time,
        second: second_time,
        dry_run,
        changes: first.changes.len(),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("apply: bench");
        return;
    }
    let auraed = env!("CARGO_BIN_EXE_auraed");
    let text = document();
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        runs.push(one_run(auraed, &text).await);
    }
    let best = |f: fn(&Timings) -> Duration| runs.iter().map(f).min().unwrap_or_default();
    let median = |f: fn(&Timings) -> Duration| {
        let mut all: Vec<Duration> = runs.iter().map(f).collect();
        all.sort();
        all[all.len() / 2]
    };
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    println!(
        "\nnode config apply: {} objects ({VOLUMES} volumes, {ROLES} roles, {GRANTS} grants, 1 capability), {} KiB of TOML, {RUNS} fresh nodes",
        runs[0].changes,
        text.len() / 1024
    );
    println!("{:<44} {:>12} {:>12}", "", "best", "median");
    for (name, f) in [
        (
            "first apply (creates everything)",
            (|t: &Timings| t.first) as fn(&Timings) -> Duration,
        ),
        ("second apply (no change)", |t: &Timings| t.second),
        ("dry run of the same document", |t: &Timings| t.dry_run),
    ] {
        println!("{name:<44} {:>12} {:>12}", ms(best(f)), ms(median(f)));
    }
}
