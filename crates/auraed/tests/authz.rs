//! Authorization beyond admin, end to end through the socket: roles and bindings made with
//! the CLI, enforced on another principal's open connection, kept across a restart.

mod common;

use aurae_client::AuraeClient;
use aurae_proto::v0 as pb;
use common::{Daemon, Layout, serving_daemon, wait_serving};
use tonic::Code;

fn aurae_err(layout: &Layout, args: &[&str]) -> String {
    let out = layout.aurae(args);
    assert!(!out.status.success(), "aurae {args:?} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Creates role `reader` (`storage.read:/services/`) and grants it to alice, with the CLI.
fn grant_alice_reader(layout: &Layout) {
    layout.aurae_ok(&[
        "role",
        "create",
        "reader",
        "--allow",
        "storage.read:/services/",
    ]);
    layout.aurae_ok(&["grant", "alice@node1@local", "reader"]);
}

async fn client(layout: &Layout, entity: &str) -> AuraeClient {
    let pki = layout.pki_dir.to_str().unwrap();
    layout.aurae_ok(&["pki", "issue", entity, "--pki-dir", pki]);
    AuraeClient::connect(&layout.target(Some(layout.identity(entity))))
        .await
        .unwrap()
}

async fn get(client: &AuraeClient, path: &str) -> Result<Vec<u8>, tonic::Status> {
    client
        .storage()
        .get(pb::GetRequest { path: path.into() })
        .await
        .map(|r| r.into_inner().value)
}

async fn put(client: &AuraeClient, path: &str, value: &[u8]) -> Result<(), tonic::Status> {
    client
        .storage()
        .put(pb::PutRequest {
            path: path.into(),
            value: value.to_vec(),
            ..Default::default()
        })
        .await
        .map(|_| ())
}

async fn whoami(client: &AuraeClient) -> pb::WhoAmIResponse {
    client
        .authz()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn permissions(who: &pb::WhoAmIResponse) -> Vec<String> {
    who.permissions
        .iter()
        .map(|p| {
            if p.scope.is_empty() {
                p.permission.clone()
            } else {
                format!("{}:{}", p.permission, p.scope)
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_scoped_to_a_path_is_enforced_on_an_open_connection_and_changes_apply_at_once() {
    let (layout, daemon) = serving_daemon().await;
    let admin = layout.admin_client().await.unwrap();
    put(&admin, "/services/web/port", b"80").await.unwrap();
    put(&admin, "/secrets/key", b"hunter2").await.unwrap();
    let alice = client(&layout, "alice").await;

    // Nothing by default, and the denial says what is missing and how to grant it.
    let denied = get(&alice, "/services/web/port").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied
            .message()
            .contains("alice@node1@local lacks storage.read")
            && denied.message().contains("aurae grant alice@node1@local"),
        "{denied:?}"
    );
    let who = whoami(&alice).await;
    assert_eq!(who.principal, "alice@node1@local");
    assert!(!who.node_admin && who.bindings.is_empty() && who.permissions.is_empty());

    grant_alice_reader(&layout);

    // The same connection, without reconnecting.
    assert_eq!(get(&alice, "/services/web/port").await.unwrap(), b"80");
    let listed = alice
        .storage()
        .list(pb::ListRequest {
            path: "/services".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let secret = get(&alice, "/secrets/key").await.unwrap_err();
    assert_eq!(secret.code(), Code::PermissionDenied);
    assert!(
        secret.message().contains("storage.read on /secrets/key")
            && secret
                .message()
                .contains("--allow storage.read:/secrets/key/"),
        "{secret:?}"
    );
    let write = put(&alice, "/services/web/port", b"8080")
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::PermissionDenied);
    assert!(write.message().contains("storage.write"), "{write:?}");
    assert!(
        daemon
            .log_text()
            .contains("request denied: permission missing"),
        "denials are logged"
    );
    let who = whoami(&alice).await;
    assert_eq!(permissions(&who), ["storage.read:/services/"]);
    assert_eq!(who.bindings[0].role, "reader");

    // Granting write takes effect on the open connection; ungranting takes it away.
    layout.aurae_ok(&[
        "role",
        "create",
        "deployer",
        "--allow",
        "storage.write:/services/",
    ]);
    layout.aurae_ok(&["grant", "alice@node1@local", "deployer"]);
    put(&alice, "/services/web/port", b"8080").await.unwrap();
    assert_eq!(get(&admin, "/services/web/port").await.unwrap(), b"8080");
    assert_eq!(
        put(&alice, "/secrets/key", b"x").await.unwrap_err().code(),
        Code::PermissionDenied
    );
    layout.aurae_ok(&["ungrant", "alice@node1@local", "deployer"]);
    assert_eq!(
        put(&alice, "/services/web/port", b"1")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(get(&admin, "/secrets/key").await.unwrap(), b"hunter2");

    // A bound role cannot be removed; the store's own records stay out of a `/` scope.
    let err = aurae_err(&layout, &["role", "rm", "reader"]);
    assert!(err.contains("still granted to alice@node1@local"), "{err}");
    layout.aurae_ok(&["role", "create", "everything", "--allow", "storage.write:/"]);
    layout.aurae_ok(&["grant", "alice@node1@local", "everything"]);
    put(&alice, "/anywhere", b"1").await.unwrap();
    let own = put(&alice, "/.aurae/authz/bindings/alice@node1@local", b"{}")
        .await
        .unwrap_err();
    assert_eq!(own.code(), Code::PermissionDenied, "{own:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_pattern_covers_the_nodes_entities_and_whoami_tells_the_truth() {
    let (layout, _daemon) = serving_daemon().await;
    let bob = client(&layout, "bob").await;
    let status = bob.system().status(pb::StatusRequest {}).await.unwrap_err();
    assert!(status.message().contains("system.read"), "{status:?}");

    layout.aurae_ok(&["grant", "*@node1@local", "viewer"]);
    let status = bob
        .system()
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.principal, "bob@node1@local");
    assert!(
        status.pki_dir.is_empty(),
        "the daemon's paths stay the admin's"
    );
    let who = whoami(&bob).await;
    assert_eq!(who.bindings.len(), 1);
    assert_eq!(who.bindings[0].pattern, "*@node1@local");
    assert!(permissions(&who).contains(&"storage.read".to_owned()));
    assert!(!permissions(&who).iter().any(|p| p.contains("write")));
    assert_eq!(
        put(&bob, "/x", b"1").await.unwrap_err().code(),
        Code::PermissionDenied
    );

    let json = layout.aurae_ok(&["whoami", "--json"]);
    let admin: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(admin["principal"], "admin@node1@local");
    assert_eq!(admin["node_admin"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_admins_admin_binding_cannot_be_removed_and_bad_input_is_named() {
    let (layout, _daemon) = serving_daemon().await;
    let err = aurae_err(&layout, &["ungrant", "admin@node1@local", "admin"]);
    assert!(err.contains("lock everyone out"), "{err}");
    let err = aurae_err(&layout, &["role", "rm", "admin"]);
    assert!(err.contains("built in"), "{err}");
    let err = aurae_err(&layout, &["role", "create", "x", "--allow", "storage.frob"]);
    assert!(
        err.contains("no capability declares a permission 'storage.frob'"),
        "{err}"
    );
    let err = aurae_err(
        &layout,
        &["role", "create", "x", "--allow", "storage.read:services"],
    );
    assert!(
        err.contains("'services' is not a scope of storage.read"),
        "{err}"
    );
    let err = aurae_err(&layout, &["grant", "alice", "viewer"]);
    assert!(err.contains("'alice' is not a principal pattern"), "{err}");
    let err = aurae_err(&layout, &["grant", "alice@node1@local", "nobody"]);
    assert!(err.contains("no role named 'nobody'"), "{err}");
    let listed = layout.aurae_ok(&["grants"]);
    assert!(listed.contains("admin@node1@local"), "{listed}");
}

/// A method that reaches the server but that its capability never declared is refused to
/// everyone, the node's admin included, before any service sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_without_a_declared_permission_is_refused_even_to_the_admin() {
    let (layout, _daemon) = serving_daemon().await;
    let admin = layout.admin_client().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(admin.channel());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/aurae.v0.Storage/Frobnicate");
    let codec: tonic_prost::ProstCodec<pb::GetRequest, pb::GetResponse> =
        tonic_prost::ProstCodec::default();
    let refused = grpc
        .unary(tonic::Request::new(pb::GetRequest::default()), path, codec)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("declares no permission"),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_grants_survive_a_restart() {
    let (layout, mut daemon) = serving_daemon().await;
    grant_alice_reader(&layout);
    let admin = layout.admin_client().await.unwrap();
    put(&admin, "/services/a", b"1").await.unwrap();
    drop(admin);
    assert!(daemon.terminate().success());

    let _daemon = Daemon::start(&layout);
    wait_serving(&layout, std::time::Duration::from_secs(10)).await;
    let alice = client(&layout, "alice").await;
    assert_eq!(get(&alice, "/services/a").await.unwrap(), b"1");
    let shown = layout.aurae_ok(&["role", "show", "reader"]);
    assert!(
        shown.contains("storage.read:/services/") && shown.contains("alice@node1@local"),
        "{shown}"
    );
}
