//! Mutual TLS at the handshake and authorization behind it.

mod common;

use std::sync::Arc;

use aurae_client::{AuraeClient, Identity};
use aurae_core::name::Principal;
use aurae_core::pki::{CertificateAuthority, PkiPaths, Validity};
use aurae_proto::v0::ListCapabilitiesRequest;
use common::{Layout, health, serving_daemon, status_as};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tonic_health::pb::health_check_response::ServingStatus;

/// Issues a certificate for `principal` from the layout's CA with `validity`.
fn issue(layout: &Layout, principal: &str, validity: Validity, name: &str) -> Identity {
    let ca = CertificateAuthority::load(&PkiPaths::new(&layout.pki_dir)).unwrap();
    let material = ca
        .issue_client(&principal.parse::<Principal>().unwrap(), validity)
        .unwrap();
    let dir = layout.root.path();
    let identity = Identity {
        ca_cert: layout.admin().ca_cert,
        client_cert: dir.join(format!("{name}.crt")),
        client_key: dir.join(format!("{name}.key")),
    };
    material
        .write(&identity.client_cert, &identity.client_key)
        .unwrap();
    identity
}

#[tokio::test]
async fn a_client_without_a_certificate_is_rejected_at_the_handshake() {
    let (layout, _daemon) = serving_daemon().await;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&layout.admin().ca_cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let result = match aurae_client::connect_with_config(&layout.sock, Arc::new(config)).await {
        Err(e) => Err(e.to_string()),
        Ok(channel) => health(&AuraeClient::from_channel(channel))
            .await
            .map_err(|s| s.to_string()),
    };
    assert!(result.is_err(), "a client without a certificate was served");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_rejected() {
    let (layout, _daemon) = serving_daemon().await;
    let other = Layout::new();
    other.pki_init(&[]);
    // Trust the right server CA, but present a client certificate of another CA.
    let mut identity = other.admin();
    identity.ca_cert = layout.admin().ca_cert;
    let err = status_as(&layout, identity).await.unwrap_err();
    // Refused by TLS, never answered by a service: with TLS 1.3 the client may learn of
    // the refusal at its first request (a reset or closed connection) rather than in its
    // own handshake, so any transport failure counts; a gRPC answer (PermissionDenied,
    // Unauthenticated) would mean the certificate got through.
    assert!(
        !err.starts_with("PermissionDenied") && !err.starts_with("Unauthenticated"),
        "the certificate of another CA reached the services: {err}"
    );
    assert!(
        [
            "handshake",
            "TLS",
            "transport",
            "Unavailable",
            "reset",
            "closed",
            "broken pipe"
        ]
        .iter()
        .any(|word| err.contains(word)),
        "{err}"
    );
}

#[tokio::test]
async fn an_expired_certificate_is_rejected() {
    let (layout, _daemon) = serving_daemon().await;
    let now = time::OffsetDateTime::now_utc();
    let expired = Validity {
        not_before: now - time::Duration::days(10),
        not_after: now - time::Duration::days(1),
    };
    let identity = issue(&layout, "admin@node1@local", expired, "expired");
    assert!(
        status_as(&layout, identity).await.is_err(),
        "an expired certificate was accepted"
    );

    // The same principal with a valid certificate gets in: the expiry was the reason.
    let identity = issue(&layout, "admin@node1@local", Validity::days(1), "fresh");
    assert_eq!(
        status_as(&layout, identity).await.unwrap().principal,
        "admin@node1@local"
    );
}

#[tokio::test]
async fn an_unknown_principal_is_denied_with_who_and_what() {
    let (layout, _daemon) = serving_daemon().await;
    let out = layout.aurae(&[
        "pki",
        "issue",
        "alice",
        "--pki-dir",
        layout.pki_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alice = layout.identity("alice");

    // Default deny: even the status needs a grant (system.read), and the refusal names
    // who, what, and the command that grants it.
    let err = status_as(&layout, alice.clone()).await.unwrap_err();
    assert!(
        err.contains("alice@node1@local lacks system.read")
            && err.contains("aurae grant alice@node1@local"),
        "{err}"
    );

    let client = AuraeClient::connect(&layout.target(Some(alice)))
        .await
        .unwrap();
    let err = client
        .capabilities()
        .list(ListCapabilitiesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    // Health is open to every authenticated principal.
    assert_eq!(health(&client).await.unwrap(), ServingStatus::Serving);

    let out = layout.aurae(&[
        "--cert",
        layout.identity("alice").client_cert.to_str().unwrap(),
        "--key",
        layout.identity("alice").client_key.to_str().unwrap(),
        "--ca",
        layout.identity("alice").ca_cert.to_str().unwrap(),
        "capabilities",
        "list",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("alice@node1@local lacks capabilities.read"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_admin_of_another_node_signed_by_this_ca_is_denied() {
    let (layout, _daemon) = serving_daemon().await;
    let foreign = issue(
        &layout,
        "admin@otherpeer@other.example",
        Validity::days(1),
        "foreign-admin",
    );
    let err = capabilities_as(&layout, foreign).await.unwrap_err();
    assert!(err.starts_with("PermissionDenied"), "{err}");
    assert!(err.contains("admin@otherpeer@other.example"), "{err}");
    let same_peer_other_domain = issue(
        &layout,
        "admin@node1@other.example",
        Validity::days(1),
        "other-domain-admin",
    );
    let err = capabilities_as(&layout, same_peer_other_domain)
        .await
        .unwrap_err();
    assert!(err.starts_with("PermissionDenied"), "{err}");
    assert!(capabilities_as(&layout, layout.admin()).await.is_ok());
}

/// Lists the capabilities (an admin-only call) as `identity`; the error as `Code: message`.
async fn capabilities_as(layout: &Layout, identity: aurae_client::Identity) -> Result<(), String> {
    let client = AuraeClient::connect(&layout.target(Some(identity)))
        .await
        .map_err(|e| e.to_string())?;
    client
        .capabilities()
        .list(ListCapabilitiesRequest {})
        .await
        .map(|_| ())
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))
}
