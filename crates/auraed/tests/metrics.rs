//! Metrics end to end: calls made over the socket show up, with their codes, in what
//! `aurae metrics` and the `--metrics-listen` HTTP listener serve, as parsed by the
//! reference Prometheus parser (Python's `prometheus_client`); the store's commits grow;
//! reading metrics needs `metrics.read` (held by the built-in viewer role); `--log-format
//! json` writes one JSON object per line.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use aurae_client::AuraeClient;
use aurae_proto::v0 as pb;
use common::{Daemon, Layout, serving_daemon, wait_serving, wait_until};
use tonic::Code;

/// Parses an exposition with `prometheus_client.parser` and prints one JSON sample per
/// line: a text the reference parser rejects fails the test.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        print(json.dumps({"family": family.name, "type": family.type,
                          "name": sample.name, "labels": sample.labels,
                          "value": sample.value}))
"#;

/// One sample as the reference parser read it.
#[derive(Debug, serde::Deserialize)]
struct Sample {
    family: String,
    #[serde(rename = "type")]
    kind: String,
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    value: f64,
}

/// The samples of `text`, parsed by Python's `prometheus_client`.
fn parse(text: &str) -> Vec<Sample> {
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 (scripts/test installs it with prometheus_client)");
    child
        .stdin
        .take()
        .expect("python's stdin")
        .write_all(text.as_bytes())
        .expect("write the exposition to python");
    let out = child.wait_with_output().expect("python finished");
    assert!(
        out.status.success(),
        "prometheus_client could not parse the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON sample"))
        .collect()
}

/// The value of the sample `name` whose labels include `labels`, if there is one.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn calls(samples: &[Sample], service: &str, method: &str, code: &str) -> f64 {
    value(
        samples,
        "aurae_grpc_requests_total",
        &[("service", service), ("method", method), ("code", code)],
    )
    .unwrap_or(0.0)
}

fn commits(samples: &[Sample]) -> f64 {
    value(samples, "aurae_store_commits_total", &[]).expect("aurae_store_commits_total")
}

/// A client for `entity` (issued now) of `layout`'s node.
async fn client(layout: &Layout, entity: &str) -> AuraeClient {
    let pki = layout.pki_dir.to_str().expect("a UTF-8 temp path");
    layout.aurae_ok(&["pki", "issue", entity, "--pki-dir", pki]);
    AuraeClient::connect(&layout.target(Some(layout.identity(entity))))
        .await
        .expect("connect")
}

/// The address the daemon's log says its metrics listener bound.
fn listener_addr(daemon: &Daemon) -> SocketAddr {
    let mut addr = None;
    wait_until(
        Duration::from_secs(5),
        "the metrics listener's address in the log",
        || {
            addr = daemon
                .log_text()
                .lines()
                .filter(|line| line.contains("metrics listener bound"))
                .find_map(|line| {
                    line.split_whitespace()
                        .find_map(|word| word.strip_prefix("addr="))
                        .and_then(|a| a.parse().ok())
                });
            addr.is_some()
        },
    );
    addr.expect("found above")
}

/// `GET path` over plain HTTP/1.1: the status line, the headers and the body.
fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {response:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (
        status.to_owned(),
        headers.to_ascii_lowercase(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_show_up_with_their_codes_in_both_scrapes_and_store_commits_grow() {
    let layout = Layout::new();
    let mut cmd = layout.auraed_command();
    cmd.args(["--metrics-listen", "127.0.0.1:0"]);
    let daemon = Daemon::start_with(&layout, cmd);
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(5)).await;
    let before = parse(&layout.aurae_ok(&["metrics"]));
    let admin = layout.admin_client().await.unwrap();
    let storage = || admin.storage();
    for i in 0..3 {
        storage()
            .put(pb::PutRequest {
                path: format!("/metrics/test/{i}"),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let got = storage()
        .get(pb::GetRequest {
            path: "/metrics/test/0".into(),
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner().value, b"v");
    let missing = storage()
        .get(pb::GetRequest {
            path: "/metrics/none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let mallory = client(&layout, "mallory").await;
    let denied = mallory
        .storage()
        .get(pb::GetRequest {
            path: "/metrics/test/0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let after = parse(&layout.aurae_ok(&["metrics"]));
    let storage_service = "aurae.v0.Storage";
    let grown = |method, code| {
        calls(&after, storage_service, method, code) - calls(&before, storage_service, method, code)
    };
    assert_eq!(grown("Put", "OK"), 3.0);
    assert_eq!(grown("Get", "OK"), 1.0);
    assert_eq!(grown("Get", "NOT_FOUND"), 1.0);
    assert_eq!(grown("Get", "PERMISSION_DENIED"), 1.0);
    assert!(
        commits(&after) >= commits(&before) + 3.0,
        "three durable puts, three commits at least: {} then {}",
        commits(&before),
        commits(&after)
    );
    let scrapes = calls(&after, "aurae.v0.Metrics", "Scrape", "OK");
    assert!(scrapes >= 1.0, "the first scrape is counted by the second");
    let durations = value(
        &after,
        "aurae_grpc_request_duration_seconds_count",
        &[("service", storage_service), ("method", "Put")],
    );
    assert!(durations >= Some(3.0), "{durations:?}");
    for (capability, state) in [("storage", "enabled"), ("metrics", "enabled")] {
        let labels = [("capability", capability), ("state", state)];
        assert_eq!(value(&after, "aurae_capability_state", &labels), Some(1.0));
    }
    assert!(value(&after, "aurae_connections_open", &[]) >= Some(2.0));
    let log_syncs = value(&after, "aurae_store_log_sync_seconds_count", &[]);
    assert!(log_syncs >= Some(3.0), "{log_syncs:?}");
    let families: Vec<(&str, &str)> = after
        .iter()
        .map(|s| (s.family.as_str(), s.kind.as_str()))
        .collect();
    for family in [
        ("aurae_grpc_requests", "counter"),
        ("aurae_grpc_request_duration_seconds", "histogram"),
        ("aurae_store_commit_writes", "histogram"),
        ("aurae_uptime_seconds", "gauge"),
    ] {
        assert!(families.contains(&family), "{family:?} missing");
    }

    // The listener serves the same families to a plain HTTP client, and nothing else.
    let addr = listener_addr(&daemon);
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let (status, headers, body) = http_get(addr, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("content-type: text/plain; version=0.0.4"),
        "{headers}"
    );
    let scraped = parse(&body);
    assert_eq!(
        calls(&scraped, storage_service, "Put", "OK"),
        calls(&after, storage_service, "Put", "OK")
    );
    assert!(commits(&scraped) >= commits(&after));
    let (status, _, _) = http_get(addr, "/");
    assert!(status.contains(" 404 "), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_may_scrape_and_a_principal_without_metrics_read_may_not() {
    let (layout, _daemon) = serving_daemon().await;
    let nobody = client(&layout, "nobody").await;
    let denied = nobody
        .metrics()
        .scrape(pb::ScrapeRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("metrics.read"), "{denied:?}");

    let viewer = client(&layout, "watcher").await;
    layout.aurae_ok(&["grant", "watcher@node1@local", "viewer"]);
    let scrape = viewer
        .metrics()
        .scrape(pb::ScrapeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(scrape.content_type.starts_with("text/plain; version=0.0.4"));
    let samples = parse(&scrape.text);
    let labels = [
        ("service", "aurae.v0.Metrics"),
        ("method", "Scrape"),
        ("code", "PERMISSION_DENIED"),
    ];
    assert_eq!(
        value(&samples, "aurae_grpc_requests_total", &labels),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_collection_no_call_is_counted_but_the_node_is_still_described() {
    let layout = Layout::new();
    let mut cmd = layout.auraed_command();
    cmd.arg("--no-metrics");
    let _daemon = Daemon::start_with(&layout, cmd);
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(5)).await;
    let samples = parse(&layout.aurae_ok(&["metrics"]));
    assert!(
        !samples.iter().any(|s| s.family.starts_with("aurae_grpc_")),
        "calls were counted with --no-metrics"
    );
    assert_eq!(value(&samples, "aurae_store_open", &[]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let layout = Layout::new();
    let mut cmd = layout.auraed_command();
    cmd.args(["--log-format", "json"]);
    let mut daemon = Daemon::start_with(&layout, cmd);
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(5)).await;
    assert_eq!(daemon.terminate().code(), Some(0));
    let log = daemon.log_text();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(events.len() >= 3, "{log}");
    for event in &events {
        assert!(
            event.is_object()
                && event["timestamp"].is_string()
                && event["level"].is_string()
                && event["message"].is_string(),
            "{event}"
        );
    }
    let listening = events
        .iter()
        .find(|e| e["message"] == "auraed listening")
        .unwrap_or_else(|| panic!("no start event in {log}"));
    assert!(
        listening["socket"]
            .as_str()
            .is_some_and(|s| s.ends_with("aurae.sock")),
        "{listening}"
    );
}
