//! The CLI's overall timeout against a real daemon: it bounds calls, never a stream of
//! data that lasts as long as the user wants it to.

mod common;

use std::io::BufRead;
use std::time::{Duration, Instant};

use aurae_proto::v0::PutRequest;
use common::{Layout, serving_daemon};

/// Sets `timeout` (seconds) in the admin's client config.
fn config_timeout(layout: &Layout, seconds: &str) {
    let config = layout.home.join(".aurae/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}timeout = {seconds}\n")).unwrap();
}

#[tokio::test]
async fn kv_watch_outlives_the_overall_timeout_of_the_config() {
    let (layout, _daemon) = serving_daemon().await;
    config_timeout(&layout, "1");
    assert!(layout.aurae(&["kv", "mkdir", "/w"]).status.success());
    let mut watch = layout
        .aurae_command()
        .args(["kv", "watch", "/w"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Longer than the timeout; then a change must still arrive.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(watch.try_wait().unwrap().is_none(), "kv watch was cut");
    let put = PutRequest {
        path: "/w/x".into(),
        value: b"1".to_vec(),
        ..Default::default()
    };
    let client = layout.admin_client().await.unwrap();
    client.storage().put(put).await.unwrap();
    let stdout = watch.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .next()
            .map(Result::unwrap)
    });
    let line = tokio::time::timeout(Duration::from_secs(10), line)
        .await
        .expect("no change printed")
        .unwrap();
    watch.kill().unwrap();
    watch.wait().unwrap();
    let line = line.unwrap_or_default();
    assert!(line.ends_with(" put /w/x"), "{line:?}");
    // Calls still fit in it.
    let out = layout.aurae(&["kv", "ls", "/w"]);
    assert!(out.status.success(), "{out:?}");
}

#[tokio::test]
async fn kv_watch_with_timeout_watches_that_long() {
    let (layout, _daemon) = serving_daemon().await;
    let start = Instant::now();
    let out = layout.aurae(&["kv", "watch", "/", "--timeout", "1"]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(10), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("overall timeout (1s)"),
        "{out:?}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
}
