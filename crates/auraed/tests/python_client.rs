//! An independent client (Python grpcio, mTLS over unix://) proves auraed speaks standard gRPC.

mod common;

use std::path::Path;

use common::serving_daemon;

#[tokio::test]
async fn python_grpcio_discovers_and_calls_auraed_over_mtls() {
    let (layout, _daemon) = serving_daemon().await;

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/grpc_client.py");
    let admin = layout.admin();
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(&layout.sock)
        .arg(&admin.ca_cert)
        .arg(&admin.client_cert)
        .arg(&admin.client_key)
        .output()
        .expect("python3 is needed for this test");
    assert!(
        out.status.success(),
        "the Python client failed (needs `pip install grpcio grpcio-reflection protobuf`, as .ci/run does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["health"], "0801", "health is SERVING");
    let services = reply["services"].as_array().unwrap();
    assert!(
        services.iter().any(|s| s == "aurae.v0.System"),
        "{services:?}"
    );
    let status = &reply["status"];
    assert_eq!(status["mode"], "MODE_SERVING");
    assert_eq!(status["principal"], "admin@node1@local");
    assert!(status["peer_id"].as_str().unwrap().starts_with("12D3KooW"));
}
