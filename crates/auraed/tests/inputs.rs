//! Inputs a client should never have sent: each is refused at once with the code that
//! says it was the client's mistake (INVALID_ARGUMENT, NOT_FOUND), never INTERNAL,
//! never a panic, never a hang.

mod common;

use std::time::Duration;

use aurae_client::AuraeClient;
use aurae_proto::v0::{MakeSymlinkRequest, PutRequest, SymlinkRequest, WatchRequest};
use common::{Layout, serving_daemon};
use prost::bytes::{Buf, BufMut};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Long enough for a daemon under load, far shorter than a hang.
const PROMPTLY: Duration = Duration::from_secs(10);

async fn admin(layout: &Layout) -> AuraeClient {
    layout.admin_client().await.unwrap()
}

/// Sends bytes as they are and takes whatever comes back: what a broken or hostile
/// client puts on the wire.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// A unary call of `method` on the Storage service with `body` as the request.
async fn raw_unary(layout: &Layout, method: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(admin(layout).await.channel());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(method);
    grpc.unary(tonic::Request::new(body), path, RawCodec)
        .await
        .expect_err("the daemon accepted bytes that are no request")
}

/// A GetRequest whose path (field 1, a string) holds bytes that are not UTF-8.
fn get_with_path_bytes(path: &[u8]) -> Vec<u8> {
    let mut message = vec![0x0a, u8::try_from(path.len()).unwrap()];
    message.extend_from_slice(path);
    message
}

fn assert_undecodable(status: &tonic::Status) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with(aurae_proto::codec::UNDECODABLE),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_an_invalid_argument() {
    let (layout, _daemon) = serving_daemon().await;
    let status = raw_unary(
        &layout,
        "/aurae.v0.Storage/Get",
        get_with_path_bytes(b"/a\xff\xfe"),
    )
    .await;
    assert_undecodable(&status);
}

#[tokio::test]
async fn garbage_protobuf_is_an_invalid_argument() {
    let (layout, _daemon) = serving_daemon().await;
    // A field 1 of wire type 7, which does not exist, then a length running past the end.
    for garbage in [vec![0x0f, 0xff], vec![0x0a, 0x7f, b'/'], vec![0xff; 11]] {
        let status = raw_unary(&layout, "/aurae.v0.Storage/Stat", garbage).await;
        assert_undecodable(&status);
    }
}

#[tokio::test]
async fn garbage_in_a_client_stream_is_an_invalid_argument() {
    let (layout, _daemon) = serving_daemon().await;
    let mut grpc = tonic::client::Grpc::new(admin(&layout).await.channel());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/aurae.v0.Storage/PutStream");
    let chunks = tokio_stream::iter([vec![0x0f, 0xff]]);
    let status = grpc
        .client_streaming(tonic::Request::new(chunks), path, RawCodec)
        .await
        .expect_err("PutStream took garbage");
    assert_undecodable(&status);
}

#[tokio::test]
async fn watch_after_the_last_possible_revision_names_the_current_one() {
    let (layout, _daemon) = serving_daemon().await;
    let client = admin(&layout).await;
    let revision = client
        .storage()
        .put(PutRequest {
            path: "/a".into(),
            value: b"1".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revision;
    let mut storage = client.storage();
    for after in [u64::MAX, revision + 1] {
        let watch = storage.watch(WatchRequest {
            prefix: "/".into(),
            after_revision: after,
            volume: String::new(),
        });
        let status = tokio::time::timeout(PROMPTLY, watch)
            .await
            .expect("Watch did not answer")
            .expect_err("Watch accepted a revision from the future");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status
                .message()
                .contains(&format!("current revision {revision}")),
            "{status:?}"
        );
    }
    let resumed = storage.watch(WatchRequest {
        prefix: "/".into(),
        after_revision: revision,
        volume: String::new(),
    });
    assert!(resumed.await.is_ok(), "resuming from now is fine");
}

#[tokio::test]
async fn watch_of_an_unknown_volume_is_not_found_at_once() {
    let (layout, _daemon) = serving_daemon().await;
    let mut storage = admin(&layout).await.storage();
    let watch = storage.watch(WatchRequest {
        prefix: "/".into(),
        after_revision: 0,
        volume: "nosuch".into(),
    });
    let status = tokio::time::timeout(PROMPTLY, watch)
        .await
        .expect("Watch of an unknown volume hung")
        .expect_err("Watch of an unknown volume was accepted");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("nosuch"), "{status:?}");
}

#[tokio::test]
async fn storage_and_filesystem_refuse_the_same_oversized_symlink_target() {
    let (layout, _daemon) = serving_daemon().await;
    let client = admin(&layout).await;
    let target = "t".repeat(5000);
    let by_path = client
        .storage()
        .symlink(SymlinkRequest {
            path: "/long".into(),
            target: target.clone(),
        })
        .await
        .expect_err("Storage took a 5000-byte target");
    let by_inode = client
        .filesystem()
        .make_symlink(MakeSymlinkRequest {
            volume: String::new(),
            parent: aurae_store::ROOT_INO,
            name: "long".into(),
            target,
            uid: 0,
            gid: 0,
        })
        .await
        .expect_err("Filesystem took a 5000-byte target");
    for status in [&by_path, &by_inode] {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(
            status.metadata().get("aurae-errno").unwrap(),
            "ENAMETOOLONG"
        );
    }
    assert_eq!(by_path.message(), by_inode.message());
    assert!(by_path.message().contains("4096"), "{by_path:?}");
}

/// Names a terminal would obey if printed raw: a forged line, a title change and a color.
const HOSTILE: [&str; 2] = ["/d/a\nforged line", "/d/\x1b]0;pwned\x07\x1b[31mred"];

#[tokio::test]
async fn kv_ls_and_watch_quote_names_that_would_drive_the_terminal() {
    let (layout, _daemon) = serving_daemon().await;
    let mut storage = admin(&layout).await.storage();
    let before = storage
        .put(PutRequest {
            path: "/before".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revision;
    for path in HOSTILE {
        let put = PutRequest {
            path: path.into(),
            value: b"x".to_vec(),
            ..Default::default()
        };
        storage.put(put).await.unwrap();
    }
    let expected = [
        "$'/d/\\x1b]0;pwned\\x07\\x1b[31mred'",
        "$'/d/a\\nforged line'",
    ];

    let out = layout.aurae(&["kv", "ls", "/d"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text:?}");
    for (line, name) in lines.iter().zip(expected) {
        assert!(line.ends_with(name), "{line:?} does not end with {name:?}");
    }
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    // Scripts get the names as they are.
    let out = layout.aurae(&["kv", "ls", "/d", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[1]["path"], HOSTILE[0]);

    let lines = watch_lines(&layout, &["/d", "--after", &before.to_string()], 3);
    assert!(lines[0].ends_with(" mkdir /d"), "{lines:?}");
    assert!(lines[1].ends_with(expected[1]), "{lines:?}");
    assert!(lines[2].ends_with(expected[0]), "{lines:?}");
}

/// The first `count` lines `aurae kv watch ARGS` prints; it is killed after.
fn watch_lines(layout: &Layout, args: &[&str], count: usize) -> Vec<String> {
    use std::io::BufRead;
    let mut child = layout
        .aurae_command()
        .args(["kv", "watch"])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().take(count) {
            let _ = tx.send(line.unwrap());
        }
    });
    let lines: Vec<String> = (0..count)
        .map_while(|_| rx.recv_timeout(PROMPTLY).ok())
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(lines.len(), count, "kv watch printed only {lines:?}");
    lines
}
