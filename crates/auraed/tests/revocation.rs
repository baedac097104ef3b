//! Revocation: `aurae pki revoke` refuses a principal's certificates on new connections
//! and closes the open ones; `aurae pki ls` shows what the CA issued.

mod common;

use std::time::Duration;

use common::{Layout, health, serving_daemon, status_as};

async fn connects_as(layout: &Layout, entity: &str) -> bool {
    let Ok(client) =
        aurae_client::AuraeClient::connect(&layout.target(Some(layout.identity(entity)))).await
    else {
        return false;
    };
    health(&client).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_principal_is_refused_at_the_handshake_and_others_are_not() {
    let (layout, _daemon) = serving_daemon().await;
    let pki = layout.pki_dir.to_str().unwrap();
    layout.aurae_ok(&["pki", "issue", "alice", "--pki-dir", pki]);
    layout.aurae_ok(&["pki", "issue", "bob", "--pki-dir", pki]);
    assert!(connects_as(&layout, "alice").await);

    let out = layout.aurae_ok(&["pki", "revoke", "alice", "--pki-dir", pki]);
    assert!(out.contains("revoked alice@node1@local"), "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while connects_as(&layout, "alice").await {
        assert!(
            std::time::Instant::now() < deadline,
            "alice still connects 3 s after her revocation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(connects_as(&layout, "bob").await, "bob was not revoked");
    assert!(status_as(&layout, layout.admin()).await.is_ok());

    let listing = layout.aurae_ok(&["pki", "ls", "--pki-dir", pki, "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&listing).unwrap();
    let state = |subject: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["subject"] == subject)
            .map(|r| r["state"].as_str().unwrap().to_owned())
    };
    assert_eq!(state("alice@node1@local").as_deref(), Some("revoked"));
    assert_eq!(state("bob@node1@local").as_deref(), Some("valid"));
    assert_eq!(state("admin@node1@local").as_deref(), Some("valid"));
    assert_eq!(state("auraed").as_deref(), Some("valid"));
}

#[tokio::test]
async fn revoking_the_admin_or_an_unknown_entity_needs_a_word_first() {
    let (layout, _daemon) = serving_daemon().await;
    let pki = layout.pki_dir.to_str().unwrap();
    let out = layout.aurae(&["pki", "revoke", "admin", "--pki-dir", pki]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = layout.aurae(&["pki", "revoke", "nobody", "--pki-dir", pki]);
    assert_eq!(out.status.code(), Some(5), "not found");
    assert!(status_as(&layout, layout.admin()).await.is_ok());
}

/// Polls `client`'s health until a call fails; fails the test after 3 s.
async fn until_refused(client: &aurae_client::AuraeClient, who: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while health(client).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{who}'s open connection still works 3 s later"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_connection_of_a_revoked_principal_is_closed() {
    let (layout, _daemon) = serving_daemon().await;
    let pki = layout.pki_dir.to_str().unwrap();
    layout.aurae_ok(&["pki", "issue", "alice", "--pki-dir", pki]);
    let alice = aurae_client::AuraeClient::connect(&layout.target(Some(layout.identity("alice"))))
        .await
        .unwrap();
    let admin = layout.admin_client().await.unwrap();
    assert!(health(&alice).await.is_ok());

    layout.aurae_ok(&["pki", "revoke", "alice", "--pki-dir", pki]);
    until_refused(&alice, "alice").await;
    assert!(health(&admin).await.is_ok(), "the admin's connection stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_ca_closes_connections_opened_under_the_old_one() {
    let (layout, _daemon) = serving_daemon().await;
    let old_admin = layout.admin_client().await.unwrap();
    let mut storage = old_admin.storage();
    storage
        .put(aurae_proto::v0::PutRequest {
            path: "/before".into(),
            value: b"1".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();

    layout.pki_init(&["--force"]);
    until_refused(&old_admin, "the old admin").await;
    let refused = storage
        .put(aurae_proto::v0::PutRequest {
            path: "/after".into(),
            value: b"2".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(refused.is_err(), "the old certificate still writes");
    // The new admin certificate works.
    assert!(status_as(&layout, layout.admin()).await.is_ok());
}
