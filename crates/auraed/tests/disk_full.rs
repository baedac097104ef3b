//! A full data filesystem: writes that do not fit answer RESOURCE_EXHAUSTED (ENOSPC),
//! reads go on, a remove frees space, writes work again once there is room (no restart),
//! and an auraed started on the full disk serves reads.
//!
//! Each test mounts a small tmpfs of its own on the layout's data directory (root only,
//! as every test of this crate that starts auraed runs as root).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aurae_client::AuraeClient;
use aurae_proto::v0::{GetRequest, PutRequest, RemoveRequest};
use common::{Daemon, Layout, sh, wait_serving};
use tonic::Code;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        sh(&format!(
            "mount -t tmpfs -o size={size},mode=0700 aurae-disk-full '{}'",
            dir.display()
        ));
        Self {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a daemon still being killed may hold files open.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// Fills the filesystem of `dir` with a file until a write fails for lack of space.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5a; 4096];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = file.sync_all();
    path
}

async fn admin(layout: &Layout) -> AuraeClient {
    AuraeClient::connect(&layout.target(Some(layout.admin())))
        .await
        .unwrap()
}

async fn put(client: &AuraeClient, path: &str, value: Vec<u8>) -> Result<u64, tonic::Status> {
    let request = PutRequest {
        path: path.to_owned(),
        value,
        ..Default::default()
    };
    Ok(client.storage().put(request).await?.into_inner().revision)
}

async fn get(client: &AuraeClient, path: &str) -> Result<Vec<u8>, tonic::Status> {
    let request = GetRequest {
        path: path.to_owned(),
    };
    Ok(client.storage().get(request).await?.into_inner().value)
}

async fn remove(client: &AuraeClient, path: &str) -> Result<(), tonic::Status> {
    let request = RemoveRequest {
        path: path.to_owned(),
        ..Default::default()
    };
    client.storage().remove(request).await.map(|_| ())
}

fn assert_no_space(result: Result<u64, tonic::Status>, what: &str) {
    let status = result.expect_err(what);
    assert_eq!(status.code(), Code::ResourceExhausted, "{what}: {status:?}");
    assert_eq!(
        status
            .metadata()
            .get("aurae-errno")
            .map(|v| v.to_str().unwrap()),
        Some("ENOSPC"),
        "{what}: {status:?}"
    );
}

/// A serving daemon whose data directory is a fresh tmpfs of `size`.
async fn daemon_on_tmpfs(size: &str) -> (Layout, Tmpfs, Daemon) {
    let layout = Layout::new();
    let disk = Tmpfs::mount(&layout.data_dir, size);
    let daemon = Daemon::start(&layout);
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(5)).await;
    (layout, disk, daemon)
}

#[tokio::test]
async fn a_full_disk_refuses_writes_serves_reads_frees_by_remove_and_recovers_without_restart() {
    let (layout, _disk, daemon) = daemon_on_tmpfs("8m").await;
    let client = admin(&layout).await;
    put(&client, "/small", b"kept".to_vec()).await.unwrap();
    let big = vec![7u8; 1 << 20];
    put(&client, "/big", big.clone()).await.unwrap();
    let filler = fill(&layout.data_dir);
    // Past the idle checkpoint, which must not break the store on a full disk.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    assert_no_space(put(&client, "/new", b"small".to_vec()).await, "a small put");
    assert_no_space(
        put(&client, "/new-big", vec![1; 256 << 10]).await,
        "a large put",
    );
    assert_eq!(get(&client, "/small").await.unwrap(), b"kept");
    assert_eq!(get(&client, "/big").await.unwrap(), big);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(&client, "/small").await.unwrap(), b"kept");

    remove(&client, "/big")
        .await
        .expect("a remove on a full disk");
    remove(&client, "/small")
        .await
        .expect("a second remove on a full disk");
    assert_eq!(
        get(&client, "/big").await.unwrap_err().code(),
        Code::NotFound
    );

    std::fs::remove_file(&filler).unwrap();
    put(&client, "/after", b"room again".to_vec())
        .await
        .expect("a put once space is freed, without restart");
    put(&client, "/after-big", big.clone())
        .await
        .expect("a large put once space is freed");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(&client, "/after").await.unwrap(), b"room again");
    assert_eq!(get(&client, "/after-big").await.unwrap(), big);
    drop(daemon);
}

#[tokio::test]
async fn auraed_restarted_on_a_full_disk_serves_reads() {
    let (layout, _disk, mut daemon) = daemon_on_tmpfs("8m").await;
    let client = admin(&layout).await;
    for i in 0..50 {
        put(
            &client,
            &format!("/k/{i}"),
            format!("value {i}").into_bytes(),
        )
        .await
        .unwrap();
    }
    put(&client, "/big", vec![3u8; 512 << 10]).await.unwrap();
    fill(&layout.data_dir);
    // Acknowledged writes the last checkpoint does not hold: the restart must replay them.
    for i in 50..60 {
        let _ = put(
            &client,
            &format!("/k/{i}"),
            format!("value {i}").into_bytes(),
        )
        .await;
    }
    daemon.kill();
    drop(client);

    let daemon = Daemon::start(&layout);
    wait_serving(&layout, Duration::from_secs(5)).await;
    let client = admin(&layout).await;
    for i in 0..50 {
        assert_eq!(
            get(&client, &format!("/k/{i}")).await.unwrap(),
            format!("value {i}").into_bytes(),
            "log:\n{}",
            daemon.log_text()
        );
    }
    assert_eq!(get(&client, "/big").await.unwrap(), vec![3u8; 512 << 10]);
    assert_no_space(
        put(&client, "/more", b"x".to_vec()).await,
        "a put after restarting on a full disk",
    );
    remove(&client, "/big")
        .await
        .expect("a remove after restarting on a full disk");
    drop(daemon);
}

#[tokio::test]
async fn puts_that_fill_the_disk_end_in_enospc_and_a_remove_makes_room() {
    let (layout, _disk, daemon) = daemon_on_tmpfs("8m").await;
    let client = admin(&layout).await;
    put(&client, "/small", b"kept".to_vec()).await.unwrap();
    let value = vec![9u8; 256 << 10];
    let mut stored = 0;
    let refused = loop {
        match put(&client, &format!("/fill/{stored}"), value.clone()).await {
            Ok(_) => stored += 1,
            Err(status) => break status,
        }
        assert!(stored < 64, "8 MiB never filled up");
    };
    assert!(stored > 0, "nothing fitted: {refused:?}");
    assert_no_space(Err(refused), "the put that did not fit");
    assert_no_space(
        put(&client, "/another", value.clone()).await,
        "another put that does not fit",
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(&client, "/small").await.unwrap(), b"kept");
    assert_eq!(get(&client, "/fill/0").await.unwrap(), value);

    for i in 0..stored {
        remove(&client, &format!("/fill/{i}"))
            .await
            .expect("a remove on a full disk");
    }
    put(&client, "/tiny", b"t".to_vec())
        .await
        .expect("a put once removes made room");
    put(&client, "/again", value.clone())
        .await
        .expect("a large put once removes made room");
    assert_eq!(get(&client, "/again").await.unwrap(), value);
    drop(daemon);
}
