//! The empty loop, registration of material without a restart, fallback and rotation.

mod common;

use std::time::Duration;

use aurae_client::AuraeClient;
use aurae_proto::v0::{ListCapabilitiesRequest, Mode};
use common::{
    Daemon, Layout, admin_status, health, plaintext_status, serving_daemon, wait_serving,
};
use tonic_health::pb::health_check_response::ServingStatus;

#[tokio::test]
async fn empty_loop_answers_health_and_status_and_refuses_everything_else() {
    let layout = Layout::new();
    let _daemon = Daemon::start(&layout);

    let channel = aurae_client::connect_plaintext(&layout.sock).await.unwrap();
    let client = AuraeClient::from_channel(channel);
    assert_eq!(health(&client).await.unwrap(), ServingStatus::NotServing);

    let status = plaintext_status(&layout).await.unwrap();
    assert_eq!(status.mode(), Mode::EmptyLoop);
    assert_eq!(status.missing_files, ["ca.crt", "server.crt", "server.key"]);
    assert!(
        status.fix_command.starts_with("aurae pki init --pki-dir"),
        "{}",
        status.fix_command
    );
    assert!(
        status.peer_id.starts_with("12D3KooW"),
        "peer id {:?}",
        status.peer_id
    );

    let refused = client
        .capabilities()
        .list(ListCapabilitiesRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn cli_status_in_the_empty_loop_prints_the_fix() {
    let layout = Layout::new();
    let _daemon = Daemon::start(&layout);
    let out = layout.aurae(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("EMPTY LOOP"), "{text}");
    assert!(text.contains("aurae pki init --pki-dir"), "{text}");

    let out = layout.aurae(&["status", "--json"]);
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("\"mode\": \"empty_loop\""), "{json}");
}

/// Runs a shell command line as a person would type it, with `aurae` on the PATH and
/// nothing but HOME to go on (no --sock, no AURAE_SOCKET).
fn run_as_typed(layout: &Layout, line: &str) -> std::process::Output {
    let bin_dir = common::aurae_bin().parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::process::Command::new("sh")
        .args(["-c", line])
        .env("PATH", path)
        .env("HOME", &layout.home)
        .env_remove("AURAE_SOCKET")
        .env_remove("AURAE_CONFIG")
        .output()
        .expect("run sh")
}

#[tokio::test]
async fn the_printed_fix_on_a_socket_of_its_own_works_as_printed() {
    let layout = Layout::new();
    let _daemon = Daemon::start(&layout);
    let fix = plaintext_status(&layout).await.unwrap().fix_command;
    assert!(
        fix.contains(&format!("--sock {}", layout.sock.display())),
        "{fix}"
    );

    let out = run_as_typed(&layout, &fix);
    assert!(
        out.status.success(),
        "{fix}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_as_typed(&layout, "aurae status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aurae status after `{fix}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("serving over mutual TLS"), "{text}");
}

#[tokio::test]
async fn registered_material_is_served_over_mtls_without_restart() {
    let layout = Layout::new();
    let mut daemon = Daemon::start(&layout);
    let pid = daemon.pid();
    layout.pki_init(&[]);
    let took = wait_serving(&layout, Duration::from_secs(2)).await;
    assert!(took <= Duration::from_secs(2), "took {took:?}");
    assert!(daemon.is_running());

    let status = admin_status(&layout).await.unwrap();
    assert_eq!(status.pid as i32, pid, "same process, no restart");
    assert_eq!(status.principal, "admin@node1@local");
    assert!(status.capabilities.contains(&"system".to_owned()));

    let client = AuraeClient::connect(&layout.target(Some(layout.admin())))
        .await
        .unwrap();
    assert_eq!(health(&client).await.unwrap(), ServingStatus::Serving);

    // Plaintext is no longer answered at all.
    assert!(plaintext_status(&layout).await.is_err());

    let out = layout.aurae(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serving over mutual TLS"), "{text}");
}

#[tokio::test]
async fn broken_material_falls_back_to_the_empty_loop_and_recovers() {
    let (layout, mut daemon) = serving_daemon().await;

    std::fs::write(layout.pki_dir.join("server.crt"), "not a certificate").unwrap();
    let mut status = None;
    for _ in 0..100 {
        if let Ok(s) = plaintext_status(&layout).await {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let status = status.expect("back in the empty loop within 2.5 s");
    assert_eq!(status.mode(), Mode::EmptyLoop);
    assert!(status.reason.contains("server.crt"), "{}", status.reason);
    assert!(
        status.fix_command.contains("--force"),
        "{}",
        status.fix_command
    );
    assert!(daemon.is_running(), "broken material must not stop auraed");

    layout.pki_init(&["--force"]);
    wait_serving(&layout, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn rotated_material_is_used_for_new_connections() {
    let (layout, _daemon) = serving_daemon().await;
    let old_ca = layout.root.path().join("old-ca");
    std::fs::create_dir_all(&old_ca).unwrap();
    let mut old = layout.admin();
    for (from, to) in [
        (&mut old.ca_cert, "ca.crt"),
        (&mut old.client_cert, "admin.crt"),
        (&mut old.client_key, "admin.key"),
    ] {
        std::fs::copy(&*from, old_ca.join(to)).unwrap();
        *from = old_ca.join(to);
    }

    layout.pki_init(&["--force"]);
    // The new admin gets in once the daemon has noticed; the old CA's admin never again.
    wait_serving(&layout, Duration::from_secs(2)).await;
    let refused = AuraeClient::connect(&layout.target(Some(old))).await;
    assert!(
        refused.is_err(),
        "a certificate of the replaced CA was accepted"
    );
}
