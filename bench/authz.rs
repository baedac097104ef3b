//! Authorization benchmark: the `System/Status` round trip of a principal bound to the
//! built-in `viewer` role, on a node whose store holds 1,000 roles and 10,000 bindings,
//! against the same call on a node holding only that one binding.
//!
//! Both daemons run at once on this machine; rounds alternate between them so that both
//! see the same conditions. The policy is written to each node's store before it starts
//! (`PolicyState::import`, as a bulk import would). Prints the ratio and the target
//! (under 3% slower); it measures, it does not assert. `AURAE_BENCH_AA=1` seeds both nodes
//! alike (one binding), to show the noise of the comparison itself.

#[path = "common.rs"]
mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aurae_client::{AuraeClient, Identity};
use aurae_proto::v0::StatusRequest;
use auraed::authz::policy::{PrincipalPattern, Role, RoleName, parse_grant};
use auraed::authz::{PolicyState, catalog};
use common::{issue, percentile, serving_auraed, setup};

const ROLES: usize = 1_000;
const BINDINGS: usize = 10_000;
const ROUNDS: usize = 10;
const CALLS_PER_ROUND: usize = 2_000;
const WARMUP_ROUNDS: usize = 4;

/// Writes the policy into the store of `data_dir`: `alice` bound to `viewer`, and, when
/// `loaded`, 1,000 roles and 10,000 more bindings.
async fn seed(data_dir: &Path, loaded: bool) {
    aurae_core::fsutil::make_private_tree(data_dir).expect("a private data directory");
    let store = Arc::new(
        aurae_store::Store::open(data_dir, aurae_store::StoreConfig::default())
            .expect("open the store"),
    );
    let state = PolicyState::new(catalog());
    state.attach_store(store.clone()).expect("attach");
    let catalog = catalog();
    let grant = |text: &str| parse_grant(&catalog, text).expect("a grant");
    let mut roles = Vec::new();
    let mut bindings = vec![(
        "alice@bench@local".parse::<PrincipalPattern>().unwrap(),
        BTreeSet::from(["viewer".parse::<RoleName>().unwrap()]),
    )];
    if loaded {
        for i in 0..ROLES {
            roles.push(Role {
                name: format!("role-{i:04}").parse().unwrap(),
                grants: vec![
                    grant(&format!("storage.read:/teams/{i}/")),
                    grant(&format!("storage.write:/teams/{i}/inbox/")),
                    grant(&format!("runtime.exec:team-{i}-*")),
                ],
                builtin: false,
            });
        }
        for i in 0..BINDINGS {
            let pattern = if i % 100 == 0 {
                format!("*@peer{i}@local")
            } else {
                format!("user{i}@bench@local")
            };
            let roles: BTreeSet<RoleName> = [i % ROLES, (i * 7) % ROLES]
                .iter()
                .map(|r| format!("role-{r:04}").parse().unwrap())
                .collect();
            bindings.push((pattern.parse().unwrap(), roles));
        }
    }
    state.import(roles, bindings).await.expect("import");
    store.flush().await.expect("flush");
}

async fn round(
    system: &mut aurae_proto::v0::system_client::SystemClient<aurae_client::Channel>,
    calls: usize,
    times: &mut Vec<Duration>,
) {
    for _ in 0..calls {
        let start = Instant::now();
        system.status(StatusRequest {}).await.expect("status");
        times.push(start.elapsed());
    }
}

async fn connect(
    sock: &Path,
    who: &Identity,
) -> aurae_proto::v0::system_client::SystemClient<aurae_client::Channel> {
    let channel = aurae_client::connect_mtls(sock, who)
        .await
        .expect("connect");
    AuraeClient::from_channel(channel).system()
}

fn micros(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("authz: bench");
        return;
    }
    let auraed = env!("CARGO_BIN_EXE_auraed");
    let (plain, loaded) = (setup(), setup());
    seed(&plain.root.join("data"), false).await;
    let seeding = Instant::now();
    seed(
        &loaded.root.join("data"),
        std::env::var_os("AURAE_BENCH_AA").is_none(),
    )
    .await;
    let seeded = seeding.elapsed();
    let alice_plain = issue(&plain.root, "alice@bench@local", "alice");
    let alice_loaded = issue(&loaded.root, "alice@bench@local", "alice");
    let (sock_plain, sock_loaded) = (plain.root.join("a.sock"), loaded.root.join("a.sock"));
    let mut daemons = vec![
        serving_auraed(auraed, &plain, &sock_plain).await,
        serving_auraed(auraed, &loaded, &sock_loaded).await,
    ];
    let mut a = connect(&sock_plain, &alice_plain).await;
    let mut b = connect(&sock_loaded, &alice_loaded).await;
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    // Warm-up rounds, discarded: right after start the node that imported the large
    // policy is still settling its store (its first thousands of calls are about 5%
    // slower, then the two nodes are alike).
    for _ in 0..WARMUP_ROUNDS {
        round(&mut a, CALLS_PER_ROUND, &mut Vec::new()).await;
        round(&mut b, CALLS_PER_ROUND, &mut Vec::new()).await;
    }
    for i in 0..ROUNDS {
        // Alternate which goes first, so neither always follows the other.
        if i % 2 == 0 {
            round(&mut a, CALLS_PER_ROUND, &mut ta).await;
            round(&mut b, CALLS_PER_ROUND, &mut tb).await;
        } else {
            round(&mut b, CALLS_PER_ROUND, &mut tb).await;
            round(&mut a, CALLS_PER_ROUND, &mut ta).await;
        }
    }
    for daemon in &mut daemons {
        let _ = daemon.kill();
        let _ = daemon.wait();
    }
    ta.sort();
    tb.sort();
    let (a50, b50) = (percentile(&ta, 0.5), percentile(&tb, 0.5));
    let (a99, b99) = (percentile(&ta, 0.99), percentile(&tb, 0.99));
    let mean = |t: &[Duration]| t.iter().sum::<Duration>() / t.len() as u32;
    let slower = (b50.as_secs_f64() / a50.as_secs_f64() - 1.0) * 100.0;
    println!();
    println!(
        "Aurae authorization benchmark ({} Status calls per node, in {ROUNDS} alternating rounds)",
        ROUNDS * CALLS_PER_ROUND
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "caller alice@bench@local (viewer)", "p50", "p99", "mean"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "policy: 1 binding",
        micros(a50),
        micros(a99),
        micros(mean(&ta))
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        format!("policy: {ROLES} roles, {} bindings", BINDINGS + 1),
        micros(b50),
        micros(b99),
        micros(mean(&tb))
    );
    println!(
        "{:<52} {:>10}   target < 3%: {}",
        "p50 slower with the large policy",
        format!("{slower:+.1}%"),
        if slower < 3.0 { "met" } else { "NOT met" }
    );
    println!(
        "{:<52} {:>10}",
        "writing the large policy to the store (import)",
        format!("{:.0} ms", seeded.as_secs_f64() * 1e3)
    );
}
