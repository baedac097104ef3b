//! An independent client (Python grpcio over unix://) proves auraed speaks standard gRPC,
//! to a stock client with its default options.
//!
//! On a `unix:` target grpcio sends the %-encoded socket path as `:authority`, which h2
//! refuses; auraed repairs it below h2 (`server/authority.rs`). These tests are the proof
//! that it does, in the empty loop and inside mutual TLS.

mod common;

use std::path::Path;

use aurae_proto::v0::{Mode, StatusResponse};
use common::{Daemon, Layout, serving_daemon};
use prost::Message;

/// `HealthCheckResponse{status: SERVING}` and `{status: NOT_SERVING}` on the wire.
const SERVING: &str = "0801";
const NOT_SERVING: &str = "0802";

/// Runs `grpc_client.py` on the layout's socket with `args`; its JSON reply.
fn grpcio(layout: &Layout, args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/grpc_client.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&layout.sock)
        .args(args)
        .output()
        .expect("python3 is needed for this test");
    assert!(
        out.status.success(),
        "the Python client failed (needs `pip install grpcio grpcio-reflection protobuf`, as \
         scripts/test does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the client prints JSON")
}

/// The Status reply the client printed as hex.
fn status_of(reply: &serde_json::Value) -> StatusResponse {
    let hex = reply["status_raw"].as_str().expect("status_raw");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    StatusResponse::decode(bytes.as_slice()).expect("a StatusResponse")
}

/// The admin's certificate material, as `--tls` arguments.
fn tls_args(layout: &Layout) -> Vec<String> {
    let admin = layout.admin();
    [admin.ca_cert, admin.client_cert, admin.client_key]
        .iter()
        .map(|p| p.to_str().expect("UTF-8 temp paths").to_owned())
        .collect()
}

#[test]
fn python_grpcio_with_default_options_gets_health_and_status_from_the_empty_loop() {
    let layout = Layout::new();
    let _daemon = Daemon::start(&layout);
    // No options at all: grpcio sends `:authority: <%-encoded socket path>`.
    let reply = grpcio(&layout, &[]);
    assert_eq!(
        reply["health"], NOT_SERVING,
        "health is NOT_SERVING in the empty loop"
    );
    assert_eq!(
        reply["health_again"], NOT_SERVING,
        "a later call on the same connection"
    );
    let status = status_of(&reply);
    assert_eq!(status.mode(), Mode::EmptyLoop);
    assert!(!status.fix_command.is_empty(), "{status:?}");
}

#[test]
fn python_grpcio_with_a_default_authority_still_gets_status_from_the_empty_loop() {
    let layout = Layout::new();
    let _daemon = Daemon::start(&layout);
    let reply = grpcio(&layout, &["--option", "grpc.default_authority=localhost"]);
    assert_eq!(reply["health"], NOT_SERVING);
    assert_eq!(status_of(&reply).mode(), Mode::EmptyLoop);
}

/// Over TLS grpcio cannot use its defaults on a `unix:` target, and no server certificate
/// could change that: it takes the %-encoded socket path (`tmp%2F…%2Faurae.sock`) as the
/// TLS server name too, sends it as SNI and would verify the certificate against it.
/// rustls refuses such an SNI outright (it is no DNS name: "Illegal SNI hostname",
/// `ServerNameMustContainOneHostName`), and no certificate can carry it as a DNS SAN. So
/// grpcio needs `grpc.ssl_target_name_override` naming one of the server certificate's
/// names (`auraed` or `localhost`), which is the only option this test sets. With it
/// grpcio also sends that name as `:authority`, which h2 accepts.
#[tokio::test]
async fn python_grpcio_discovers_and_calls_auraed_over_mtls_with_only_the_name_override() {
    let (layout, _daemon) = serving_daemon().await;
    let tls = tls_args(&layout);
    let mut args: Vec<&str> = vec!["--tls"];
    args.extend(tls.iter().map(String::as_str));
    args.extend([
        "--reflect",
        "--option",
        "grpc.ssl_target_name_override=auraed",
    ]);
    let reply = grpcio(&layout, &args);
    assert_eq!(reply["health"], SERVING, "health is SERVING");
    let services = reply["services"].as_array().unwrap();
    assert!(
        services.iter().any(|s| s == "aurae.v0.System"),
        "{services:?}"
    );
    let status = &reply["status"];
    assert_eq!(status["mode"], "MODE_SERVING");
    assert_eq!(status["principal"], "admin@node1@local");
    assert!(status["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
    assert_eq!(status_of(&reply).principal, "admin@node1@local");
}

/// The repair sits inside TLS too: a client that sends the %-encoded socket path as
/// `:authority` over mTLS (what grpc-java or grpc-swift do with a name override for TLS
/// alone; grpcio does it when told to) is served.
#[tokio::test]
async fn python_grpcio_sending_the_encoded_socket_path_as_authority_is_served_over_mtls() {
    let (layout, _daemon) = serving_daemon().await;
    let tls = tls_args(&layout);
    let encoded = layout
        .sock
        .to_str()
        .expect("a UTF-8 temp path")
        .trim_start_matches('/')
        .replace('/', "%2F");
    let authority = format!("grpc.default_authority={encoded}");
    let mut args: Vec<&str> = vec!["--tls"];
    args.extend(tls.iter().map(String::as_str));
    args.extend([
        "--option",
        "grpc.ssl_target_name_override=auraed",
        "--option",
        &authority,
    ]);
    let reply = grpcio(&layout, &args);
    assert_eq!(reply["health"], SERVING);
    assert_eq!(reply["health_again"], SERVING);
    let status = status_of(&reply);
    assert_eq!(status.mode(), Mode::Serving);
    assert_eq!(status.principal, "admin@node1@local");
}
