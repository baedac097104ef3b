//! The capability set: listing, switching, and persistence across restarts.

mod common;

use std::time::Duration;

use aurae_client::AuraeClient;
use aurae_proto::v0::{DisableCapabilityRequest, EnableCapabilityRequest, ListCapabilitiesRequest};
use common::{Daemon, Layout, serving_daemon, wait_serving};
use tokio_stream::StreamExt;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn admin(layout: &Layout) -> AuraeClient {
    AuraeClient::connect(&layout.target(Some(layout.admin())))
        .await
        .unwrap()
}

/// Lists services through gRPC reflection.
async fn reflected_services(layout: &Layout) -> Result<Vec<String>, tonic::Status> {
    let channel = aurae_client::connect_mtls(&layout.sock, &layout.admin())
        .await
        .unwrap();
    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let reply = stream.next().await.expect("one reply")?;
    match reply.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => {
            Ok(list.service.into_iter().map(|s| s.name).collect())
        }
        other => panic!("unexpected reflection reply {other:?}"),
    }
}

async fn enabled(client: &AuraeClient, name: &str) -> bool {
    let list = client
        .capabilities()
        .list(ListCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    list.iter()
        .find(|c| c.name == name)
        .expect("capability listed")
        .enabled
}

#[tokio::test]
async fn reflection_lists_the_aurae_services() {
    let (layout, _daemon) = serving_daemon().await;
    let services = reflected_services(&layout).await.unwrap();
    for expected in [
        "aurae.v0.System",
        "aurae.v0.Capabilities",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|s| s == expected),
            "{expected} missing from {services:?}"
        );
    }
}

// Multi-threaded: the blocking wait in `terminate` must not stall our connections'
// background tasks, or the daemon's graceful shutdown waits for their GOAWAY answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_capability_stays_disabled_across_restart() {
    let (layout, mut daemon) = serving_daemon().await;
    let client = admin(&layout).await;
    assert!(enabled(&client, "reflection").await);

    client
        .capabilities()
        .disable(DisableCapabilityRequest {
            name: "reflection".into(),
        })
        .await
        .unwrap();
    let refused = reflected_services(&layout).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
    assert!(
        refused
            .message()
            .contains("aurae capabilities enable reflection"),
        "{}",
        refused.message()
    );

    assert_eq!(daemon.terminate().code(), Some(0));
    let _daemon = Daemon::start(&layout);
    wait_serving(&layout, Duration::from_secs(2)).await;
    let client = admin(&layout).await;
    assert!(
        !enabled(&client, "reflection").await,
        "the choice was lost in the restart"
    );
    assert!(reflected_services(&layout).await.is_err());

    let out = layout.aurae(&["capabilities", "enable", "reflection"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(reflected_services(&layout).await.is_ok());
}

#[tokio::test]
async fn core_and_unknown_capabilities_get_clear_errors() {
    let (layout, _daemon) = serving_daemon().await;
    let client = admin(&layout).await;
    let err = client
        .capabilities()
        .disable(DisableCapabilityRequest {
            name: "system".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    let err = client
        .capabilities()
        .enable(EnableCapabilityRequest {
            name: "../../etc".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(
        err.message().contains("known capabilities"),
        "{}",
        err.message()
    );

    let out = layout.aurae(&["capabilities", "list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), auraed::CAPABILITIES.len());
}

#[tokio::test]
async fn health_follows_the_capability_switch() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    let (layout, _daemon) = serving_daemon().await;
    let client = admin(&layout).await;
    let status = |service: &'static str| {
        let mut health = client.health();
        async move {
            health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status()
        }
    };
    assert_eq!(status("aurae.v0.Storage").await, ServingStatus::Serving);
    assert_eq!(status("aurae.v0.System").await, ServingStatus::Serving);
    client
        .capabilities()
        .disable(DisableCapabilityRequest {
            name: "storage".into(),
        })
        .await
        .unwrap();
    assert_eq!(status("aurae.v0.Storage").await, ServingStatus::NotServing);
    assert_eq!(
        status("aurae.v0.Filesystem").await,
        ServingStatus::NotServing
    );
    client
        .capabilities()
        .enable(EnableCapabilityRequest {
            name: "storage".into(),
        })
        .await
        .unwrap();
    assert_eq!(status("aurae.v0.Storage").await, ServingStatus::Serving);
}

#[tokio::test]
async fn a_service_no_capability_declares_is_refused() {
    let (layout, _daemon) = serving_daemon().await;
    let channel = aurae_client::connect_mtls(&layout.sock, &layout.admin())
        .await
        .unwrap();
    // Any unary path works: the request is refused before a codec would look at it.
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/aurae.v0.Undeclared/Call");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let err = grpc
        .unary(tonic::Request::new(()), path, codec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(
        err.message().contains("no capability of this node serves"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn a_capability_set_left_in_the_old_file_moves_into_the_store() {
    let layout = Layout::new();
    std::fs::create_dir_all(&layout.data_dir).unwrap();
    let old = layout.data_dir.join("capabilities.json");
    std::fs::write(
        &old,
        r#"{"version": 1, "enabled": [], "disabled": ["reflection"]}"#,
    )
    .unwrap();
    let _daemon = Daemon::start(&layout);
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(5)).await;
    let client = admin(&layout).await;
    assert!(
        !enabled(&client, "reflection").await,
        "the old choice was lost"
    );
    assert!(!old.exists(), "the old file stayed beside the store");
    let out = layout.aurae(&["kv", "get", "/.aurae/capabilities.json"]);
    let stored = String::from_utf8_lossy(&out.stdout);
    assert!(stored.contains("reflection"), "{stored}");
}
