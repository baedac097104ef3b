//! The Storage capability through the socket: the CLI, Watch, and durability under kill -9.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aurae_client::AuraeClient;
use aurae_proto::v0::{
    ChangeKind, GetRequest, PutChunk, PutHeader, PutRequest, StatRequest, WatchRequest,
};
use common::{Daemon, Layout, serving_daemon, wait_serving};

async fn admin(layout: &Layout) -> AuraeClient {
    AuraeClient::connect(&layout.target(Some(layout.admin())))
        .await
        .unwrap()
}

fn kv(layout: &Layout, args: &[&str]) -> (bool, String, String) {
    let mut full = vec!["kv"];
    full.extend_from_slice(args);
    let out = layout.aurae(&full);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_reads_and_writes_the_namespace() {
    let (layout, _daemon) = serving_daemon().await;
    assert!(kv(&layout, &["put", "/services/nginx/port", "80"]).0);
    let (ok, out, _) = kv(&layout, &["get", "/services/nginx/port"]);
    assert!(ok);
    assert_eq!(out, "80");
    let (_, out, _) = kv(&layout, &["ls", "/services"]);
    assert!(out.contains("/services/nginx"), "{out}");
    assert!(out.starts_with('d'), "{out}");

    assert!(kv(&layout, &["mv", "/services/nginx", "/services/web"]).0);
    let (_, json, _) = kv(&layout, &["get", "/services/web/port", "--json"]);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["value"], "80");
    assert_eq!(value["kind"], "file");

    let (ok, _, err) = kv(&layout, &["rm", "/services"]);
    assert!(!ok);
    assert!(
        err.contains("not empty") && err.contains("ENOTEMPTY"),
        "{err}"
    );
    assert!(kv(&layout, &["rm", "-r", "/services"]).0);
    let (ok, _, err) = kv(&layout, &["get", "/services/web/port"]);
    assert!(!ok);
    assert!(err.contains("ENOENT"), "{err}");

    let (ok, _, err) = kv(&layout, &["put", "/../etc/passwd", "x"]);
    assert!(!ok);
    assert!(
        err.contains("InvalidArgument") && err.contains("'..'"),
        "{err}"
    );
}

#[tokio::test]
async fn compare_and_swap_refuses_a_stale_version() {
    let (layout, _daemon) = serving_daemon().await;
    let mut storage = admin(&layout).await.storage();
    let put = |value: &str, if_version| PutRequest {
        path: "/counter".into(),
        value: value.into(),
        mode: None,
        if_version,
        no_parents: false,
    };
    let first = storage.put(put("1", Some(0))).await.unwrap().into_inner();
    let version = first.stat.unwrap().version;
    storage.put(put("2", Some(version))).await.unwrap();
    let lost = storage.put(put("3", Some(version))).await.unwrap_err();
    assert_eq!(lost.code(), tonic::Code::Aborted);
    let value = storage
        .get(GetRequest {
            path: "/counter".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .value;
    assert_eq!(value, b"2");
}

#[tokio::test]
async fn watch_streams_changes_and_resumes_from_a_revision() {
    let (layout, _daemon) = serving_daemon().await;
    let client = admin(&layout).await;
    let mut storage = client.storage();
    let mut watch = storage
        .watch(WatchRequest {
            prefix: "/services".into(),
            after_revision: 0,
            volume: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(kv(&layout, &["put", "/other", "x"]).0);
    assert!(kv(&layout, &["put", "/services/a", "1"]).0);
    assert!(kv(&layout, &["mv", "/services/a", "/services/b"]).0);

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("a change within 5 s")
            .unwrap()
            .unwrap();
        seen.push(event);
    }
    let kinds: Vec<(ChangeKind, &str)> = seen
        .iter()
        .map(|e| (ChangeKind::try_from(e.kind).unwrap(), e.path.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (ChangeKind::Mkdir, "/services"),
            (ChangeKind::Put, "/services/a"),
            (ChangeKind::Rename, "/services/a")
        ]
    );
    assert_eq!(seen[2].to, "/services/b");

    // A new watcher resuming after the first change replays the rest.
    let mut resumed = storage
        .watch(WatchRequest {
            prefix: "/services".into(),
            after_revision: seen[0].revision,
            volume: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let replayed = tokio::time::timeout(Duration::from_secs(5), resumed.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(replayed.revision, seen[2].revision);
    assert_eq!(replayed.kind, ChangeKind::Rename as i32);
}

/// Writes each writer of the kill -9 test attempts: far more than land before the kill.
const WRITES_PER_WRITER: usize = 20_000;

// Multi-threaded: the writers must keep going while this thread kills the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_kill_9() {
    let (layout, mut daemon) = serving_daemon().await;
    let client = admin(&layout).await;
    let landed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut storage = client.storage();
            let landed = landed.clone();
            tokio::spawn(async move {
                let mut acknowledged = BTreeMap::new();
                for i in 0..WRITES_PER_WRITER {
                    let path = format!("/crash/w{w}/k{i:04}");
                    // Values of varying size, several chunks for some.
                    let value = format!("{path}:").repeat(1 + (i % 7) * 3000).into_bytes();
                    let request = PutRequest {
                        path: path.clone(),
                        value: value.clone(),
                        mode: None,
                        if_version: None,
                        no_parents: false,
                    };
                    match storage.put(request).await {
                        Ok(_) => {
                            acknowledged.insert(path, value);
                            landed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    // Kill -9 in the middle of the stream: once some writes landed, long before all did.
    common::wait_until(Duration::from_secs(20), "200 acknowledged writes", || {
        landed.load(std::sync::atomic::Ordering::Relaxed) >= 200
    });
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let mut acknowledged = BTreeMap::new();
    for writer in writers {
        acknowledged.extend(writer.await.unwrap());
    }
    assert!(
        acknowledged.len() > 10,
        "too few writes landed before the kill to test anything"
    );
    assert!(
        acknowledged.len() < 4 * WRITES_PER_WRITER,
        "the kill came after every write finished"
    );
    drop(client);

    let _daemon = Daemon::start(&layout);
    wait_serving(&layout, Duration::from_secs(2)).await;
    let mut storage = admin(&layout).await.storage();
    for (path, value) in &acknowledged {
        let stored = storage
            .get(GetRequest { path: path.clone() })
            .await
            .unwrap_or_else(|e| panic!("acknowledged {path} lost: {e}"))
            .into_inner()
            .value;
        assert!(
            stored == *value,
            "{path} holds other bytes than acknowledged"
        );
    }
    // The figure the hardening work keeps: `--no-capture` shows it.
    println!(
        "kill -9 during writes: {} acknowledged, 0 lost",
        acknowledged.len()
    );
    // The write each writer had in flight at the kill is all or nothing: if it is there,
    // it is whole. (Each writer stops at its first failed write.)
    for w in 0..4 {
        let i = (0..WRITES_PER_WRITER)
            .find(|i| !acknowledged.contains_key(&format!("/crash/w{w}/k{i:04}")))
            .expect("the kill came before the end");
        let path = format!("/crash/w{w}/k{i:04}");
        if let Ok(reply) = storage.get(GetRequest { path: path.clone() }).await {
            let expected = format!("{path}:").repeat(1 + (i % 7) * 3000).into_bytes();
            assert!(
                reply.into_inner().value == expected,
                "{path} is half-written"
            );
        }
    }
}

// Multi-threaded: this thread blocks while the first daemon shuts down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_is_reported_then_taken_over_when_its_holder_exits() {
    let (layout, mut first) = serving_daemon().await;
    // A watcher of the first daemon: its shutdown must not wait for the stream to end.
    let mut watch = admin(&layout)
        .await
        .storage()
        .watch(WatchRequest {
            prefix: "/".into(),
            after_revision: 0,
            volume: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    // A second daemon on the same data directory and PKI, another socket.
    let second = Layout {
        root: tempfile::tempdir().unwrap(),
        sock: layout.root.path().join("second.sock"),
        pki_dir: layout.pki_dir.clone(),
        data_dir: layout.data_dir.clone(),
        key: layout.key.clone(),
        home: layout.home.clone(),
    };
    let mut second_daemon = Daemon::start(&second);
    let channel = aurae_client::connect_mtls(&second.sock, &layout.admin())
        .await
        .unwrap();
    let err = AuraeClient::from_channel(channel)
        .storage()
        .stat(StatRequest { path: "/".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains("locked"), "{}", err.message());
    assert!(second_daemon.is_running());

    let started = std::time::Instant::now();
    assert_eq!(first.terminate().code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown waited {:?} for an open Watch stream",
        started.elapsed()
    );
    assert!(
        matches!(watch.message().await, Ok(None) | Err(_)),
        "the watch ended"
    );
    // The second daemon takes the database over once the first let go of it.
    let channel = aurae_client::connect_mtls(&second.sock, &layout.admin())
        .await
        .unwrap();
    let mut storage = AuraeClient::from_channel(channel).storage();
    let mut opened = false;
    for _ in 0..50 {
        if storage.stat(StatRequest { path: "/".into() }).await.is_ok() {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        opened,
        "the second daemon never opened the released database"
    );
}

#[tokio::test]
async fn a_bad_volume_name_is_refused_at_the_edge_with_the_volume_rule() {
    use aurae_proto::v0::CreateVolumeRequest;
    let (layout, _daemon) = serving_daemon().await;
    let client = admin(&layout).await;
    for name in ["Data", "a/b", "", "../etc"] {
        let err = client
            .storage()
            .create_volume(CreateVolumeRequest {
                name: name.into(),
                quota_bytes: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{name}: {err}");
        assert!(
            err.message().contains("volume"),
            "{name}: {}",
            err.message()
        );
        assert!(
            !err.message().contains("255 bytes"),
            "{name}: the file-name rule was quoted: {}",
            err.message()
        );
    }
}

#[tokio::test]
async fn volumes_are_served_by_inode_with_streamed_io_and_quotas() {
    use aurae_proto::v0::{
        CreateVolumeRequest, EntryKind, MakeNodeRequest, ReadRequest, WriteChunk,
    };
    let (layout, _daemon) = serving_daemon().await;
    let client = admin(&layout).await;
    let volume = client
        .storage()
        .create_volume(CreateVolumeRequest {
            name: "data".into(),
            quota_bytes: 3 << 20,
        })
        .await
        .unwrap()
        .into_inner();
    let mut fs = client.filesystem();
    let file = fs
        .make_node(MakeNodeRequest {
            volume: "data".into(),
            parent: volume.root_inode,
            name: "blob".into(),
            kind: EntryKind::File as i32,
            mode: 0o600,
            uid: 1000,
            gid: 1000,
            rdev: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .stat
        .unwrap();
    assert_eq!((file.mode, file.uid), (0o600, 1000));

    // 2 MiB in 256 KiB messages of one Write stream.
    let payload: Vec<u8> = (0..2 << 20).map(|i: u32| (i % 253) as u8).collect();
    let chunks: Vec<WriteChunk> = payload
        .chunks(256 << 10)
        .enumerate()
        .map(|(i, data)| WriteChunk {
            volume: if i == 0 { "data".into() } else { String::new() },
            inode: file.inode,
            offset: 0,
            data: data.to_vec(),
            lazy: false,
        })
        .collect();
    let written = fs
        .write(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(written.written, payload.len() as u64);

    let mut stream = fs
        .read(ReadRequest {
            volume: "data".into(),
            inode: file.inode,
            offset: 1000,
            length: 1 << 20,
        })
        .await
        .unwrap()
        .into_inner();
    let mut read = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        read.extend(chunk.data);
    }
    assert!(
        read == payload[1000..1000 + (1 << 20)],
        "read back other bytes"
    );

    // Past the 3 MiB quota: ENOSPC, and nothing of the refused write lands.
    let too_much = WriteChunk {
        volume: "data".into(),
        inode: file.inode,
        offset: 2 << 20,
        data: vec![1; 2 << 20],
        lazy: false,
    };
    let err = fs.write(tokio_stream::iter([too_much])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert_eq!(err.metadata().get("aurae-errno").unwrap(), "ENOSPC");

    let out = layout.aurae(&["volume", "ls", "--json"]);
    let volumes: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let data = volumes
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "data")
        .unwrap();
    assert_eq!(data["used_bytes"], 2 << 20);
}

#[tokio::test]
async fn large_values_stream_through_the_cli_and_replace_atomically() {
    use std::io::Write;
    let (layout, _daemon) = serving_daemon().await;
    let (ok, before, _) = kv(&layout, &["put", "/big/blob", "small"]);
    assert!(ok);
    let before = version_of(&before);
    let big: Vec<u8> = (0..(24u32 << 20)).map(|i| (i % 241) as u8).collect();
    let mut put = layout
        .aurae_command()
        .args(["kv", "put", "/big/blob"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin.take().unwrap().write_all(&big).unwrap();
    let out = put.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        version_of(&String::from_utf8_lossy(&out.stdout)),
        before + 1,
        "a streamed value lands in one revision"
    );

    let got = layout.aurae(&["kv", "get", "/big/blob"]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert!(
        got.stdout == big,
        "streamed value differs ({} bytes back)",
        got.stdout.len()
    );
    let (_, listing, _) = kv(&layout, &["ls", "/big"]);
    assert_eq!(
        listing.lines().count(),
        1,
        "the upload left a temporary entry: {listing}"
    );
    assert_eq!(
        content_files(&layout).len(),
        1,
        "one content file: the value's"
    );
}

/// The version `aurae kv put` printed ("PATH version N").
fn version_of(out: &str) -> u64 {
    out.trim().rsplit(' ').next().unwrap().parse().unwrap()
}

/// The content files in the data directory.
fn content_files(layout: &Layout) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(layout.data_dir.join("extents"))
        .map(|dir| {
            dir.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn header(path: &str, if_version: Option<u64>, size: Option<u64>) -> PutChunk {
    PutChunk {
        header: Some(PutHeader {
            path: path.into(),
            mode: None,
            if_version,
            no_parents: false,
            size,
        }),
        data: Vec::new(),
        last: false,
    }
}

fn data(bytes: Vec<u8>, last: bool) -> PutChunk {
    PutChunk {
        header: None,
        data: bytes,
        last,
    }
}

async fn value_of(layout: &Layout, path: &str) -> Vec<u8> {
    admin(layout)
        .await
        .storage()
        .get(GetRequest { path: path.into() })
        .await
        .unwrap()
        .into_inner()
        .value
}

#[tokio::test]
async fn a_streamed_put_with_a_stale_version_is_refused_and_changes_nothing() {
    let (layout, _daemon) = serving_daemon().await;
    let mut storage = admin(&layout).await.storage();
    let old = storage
        .put(PutRequest {
            path: "/cas".into(),
            value: b"old".to_vec(),
            mode: None,
            if_version: None,
            no_parents: false,
        })
        .await
        .unwrap()
        .into_inner();
    let version = old.stat.unwrap().version;
    let before = content_files(&layout);
    // Refused at the first message, before the data travels.
    let chunks = vec![
        header("/cas", Some(version + 7), Some(8 << 20)),
        data(vec![1; 4 << 20], false),
        data(vec![2; 4 << 20], true),
    ];
    let err = storage
        .put_stream(tokio_stream::iter(chunks))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");
    assert_eq!(value_of(&layout, "/cas").await, b"old");
    assert_eq!(content_files(&layout), before);
    // The right version, for any size, lands in one revision.
    // 3.5 MiB: streamed in two chunks, read back whole with one Get.
    let value: Vec<u8> = (0..(7u32 << 19)).map(|i| (i % 251) as u8).collect();
    let chunks = vec![
        header("/cas", Some(version), Some(value.len() as u64)),
        data(value[..3 << 20].to_vec(), false),
        data(value[3 << 20..].to_vec(), true),
    ];
    let put = storage
        .put_stream(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(put.revision, old.revision + 1);
    assert!(value_of(&layout, "/cas").await == value);
    // A stream that carries another number of bytes than announced is refused too.
    let chunks = vec![header("/cas", None, Some(10)), data(vec![9; 11], true)];
    let err = storage
        .put_stream(tokio_stream::iter(chunks))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(value_of(&layout, "/cas").await == value);
}

/// Opens a PutStream of a large value to `path` and sends its first 3 MiB: the caller
/// holds the sender (dropping it without a last chunk ends the stream unfinished).
fn start_stream(
    layout: &Layout,
    client: &AuraeClient,
    path: &str,
) -> (
    tokio::sync::mpsc::Sender<PutChunk>,
    tokio::task::JoinHandle<Result<tonic::Response<aurae_proto::v0::PutResponse>, tonic::Status>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut storage = client.storage();
    let call = tokio::spawn(async move {
        storage
            .put_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let before = content_files(layout).len();
    let first = [
        header(path, None, Some(64 << 20)),
        data(vec![7; 1 << 20], false),
        data(vec![7; 1 << 20], false),
        data(vec![7; 1 << 20], false),
    ];
    for chunk in first {
        tx.try_send(chunk).unwrap();
    }
    common::wait_until(Duration::from_secs(5), "the upload's content file", || {
        content_files(layout).len() > before
    });
    (tx, call)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_a_stream_midway_leaves_the_old_value_and_no_file() {
    let (layout, _daemon) = serving_daemon().await;
    assert!(kv(&layout, &["put", "/dropped", "old"]).0);
    let before = content_files(&layout);
    let client = admin(&layout).await;
    // Gone mid-value: the call is dropped, the stream broken off.
    let (tx, call) = start_stream(&layout, &client, "/dropped");
    call.abort();
    let _ = call.await;
    drop(tx);
    common::wait_until(Duration::from_secs(5), "the upload's file to go", || {
        content_files(&layout) == before
    });
    assert_eq!(value_of(&layout, "/dropped").await, b"old");
    // A CLI killed mid-put: its connection goes, and the upload with it.
    let mut put = layout
        .aurae_command()
        .args(["kv", "put", "/dropped"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = put.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, &vec![5u8; 6 << 20]).unwrap();
    common::wait_until(Duration::from_secs(5), "the CLI's upload file", || {
        content_files(&layout).len() > before.len()
    });
    put.kill().unwrap();
    put.wait().unwrap();
    drop(stdin);
    common::wait_until(
        Duration::from_secs(5),
        "the CLI's upload file to go",
        || content_files(&layout) == before,
    );
    assert_eq!(value_of(&layout, "/dropped").await, b"old");
    // Ended without its last chunk: refused, and nothing is left either.
    let (tx, call) = start_stream(&layout, &client, "/dropped");
    drop(tx);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(content_files(&layout), before);
    assert_eq!(value_of(&layout, "/dropped").await, b"old");
}

// Multi-threaded: this thread blocks while killing and restarting the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_kill_9_of_auraed_leaves_the_old_value_after_restart() {
    let (layout, mut daemon) = serving_daemon().await;
    let old: Vec<u8> = vec![3; 3 << 20];
    let mut storage = admin(&layout).await.storage();
    storage
        .put(PutRequest {
            path: "/killed".into(),
            value: old.clone(),
            mode: None,
            if_version: None,
            no_parents: false,
        })
        .await
        .unwrap();
    let before = content_files(&layout);
    let client = admin(&layout).await;
    let (tx, call) = start_stream(&layout, &client, "/killed");
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    assert!(call.await.unwrap().is_err());
    drop(tx);
    assert!(
        content_files(&layout).len() > before.len(),
        "the upload was under way"
    );

    let _daemon = Daemon::start(&layout);
    wait_serving(&layout, Duration::from_secs(2)).await;
    assert!(value_of(&layout, "/killed").await == old);
    assert_eq!(
        content_files(&layout),
        before,
        "the unfinished upload's file is swept at start"
    );
}

// Multi-threaded: this thread blocks while killing and restarting the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_filesystem_writes_survive_kill_9_of_auraed() {
    use aurae_proto::v0::{EntryKind, FsyncRequest, MakeNodeRequest, ReadRequest, WriteChunk};
    let (layout, mut daemon) = serving_daemon().await;
    let client = admin(&layout).await;
    let mut fs = client.filesystem();
    let file = fs
        .make_node(MakeNodeRequest {
            volume: String::new(),
            parent: 1,
            name: "lazy".into(),
            kind: EntryKind::File as i32,
            mode: 0o644,
            uid: 0,
            gid: 0,
            rdev: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .stat
        .unwrap();
    let chunk = |offset: u64, data: &[u8]| WriteChunk {
        volume: String::new(),
        inode: file.inode,
        offset,
        data: data.to_vec(),
        lazy: true,
    };
    fs.write(tokio_stream::iter([chunk(0, b"acknowledged, ")]))
        .await
        .unwrap();
    fs.fsync(FsyncRequest {
        volume: String::new(),
        inode: file.inode,
    })
    .await
    .unwrap();
    fs.write(tokio_stream::iter([chunk(14, b"then lazy")]))
        .await
        .unwrap();
    drop(fs);
    drop(client);
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();

    let _daemon = Daemon::start(&layout);
    wait_serving(&layout, Duration::from_secs(2)).await;
    let mut stream = admin(&layout)
        .await
        .filesystem()
        .read(ReadRequest {
            volume: String::new(),
            inode: file.inode,
            offset: 0,
            length: 100,
        })
        .await
        .unwrap()
        .into_inner();
    let mut content = Vec::new();
    while let Some(piece) = stream.message().await.unwrap() {
        content.extend(piece.data);
    }
    assert_eq!(content, b"acknowledged, then lazy");
}
