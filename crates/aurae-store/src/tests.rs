//! Unit tests of the namespace semantics, on a real database in a temporary directory.

use aurae_core::path::{PathError, StorePath};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::inodes::{self, Move};
use crate::namespace::{self, Removal};
use crate::open::CHUNK_SIZE;
use crate::record::Inode;
use crate::tables::{CHUNKS, DIRENTS, INODES, META, META_NEXT_INO, META_SCHEMA};
use crate::*;

const INLINE_MAX: usize = 4096;

fn p(s: &str) -> StorePath {
    s.parse().unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    (dir, store)
}

async fn try_put(
    store: &Store,
    path: &str,
    value: &[u8],
    options: PutOptions,
) -> Result<(Stat, u64), StoreError> {
    let op = namespace::put(p(path), Content::from(value.to_vec()), options);
    store.write(Durability::Durable, op).await
}

async fn put(store: &Store, path: &str, value: &[u8]) -> Stat {
    try_put(store, path, value, PutOptions::default())
        .await
        .unwrap()
        .0
}

async fn mkdir(store: &Store, path: &str, mode: u32, parents: Parents) -> Result<Stat, StoreError> {
    let op = namespace::mkdir(p(path), mode, parents);
    Ok(store.write(Durability::Durable, op).await?.0)
}

async fn remove(store: &Store, path: &str, removal: Removal) -> Result<u64, StoreError> {
    let op = namespace::remove(p(path), removal);
    Ok(store.write(Durability::Durable, op).await?.1)
}

async fn rename(store: &Store, from: &str, to: &str) -> Result<Stat, StoreError> {
    let op = namespace::rename(p(from), p(to));
    Ok(store.write(Durability::Durable, op).await?.0)
}

async fn write_at(
    store: &Store,
    volume: &str,
    ino: u64,
    offset: u64,
    data: &[u8],
) -> Result<Stat, StoreError> {
    let op = inodes::write_at(volume, ino, offset, data.to_vec());
    Ok(store.write(Durability::Durable, op).await?.0)
}

async fn set_attr(store: &Store, ino: u64, attr: SetAttr) -> Stat {
    let op = inodes::set_attr("", ino, attr);
    store.write(Durability::Durable, op).await.unwrap().0
}

async fn file_in(store: &Store, volume: &str, parent: u64, name: &str) -> u64 {
    let node = NewNode {
        kind: EntryKind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        rdev: 0,
    };
    let op = inodes::make_node(volume, parent, name.to_owned(), node);
    store.write(Durability::Durable, op).await.unwrap().0.inode
}

async fn unlink(
    store: &Store,
    volume: &str,
    parent: u64,
    name: &str,
    kind: UnlinkKind,
) -> Result<inodes::Unlinked, StoreError> {
    let op = inodes::unlink(volume, parent, name.to_owned(), kind);
    Ok(store.write(Durability::Durable, op).await?.0)
}

async fn move_entry(store: &Store, mv: Move) -> Result<(), StoreError> {
    let op = inodes::rename("", mv);
    store.write(Durability::Durable, op).await.map(|_| ())
}

async fn names(store: &Store, path: &str) -> Vec<String> {
    let (entries, _) = store.list(&p(path), "", 100).unwrap();
    entries.into_iter().map(|s| s.path).collect()
}

fn all() -> WatchFilter {
    WatchFilter::new("", StorePath::root())
}

#[tokio::test]
async fn put_creates_parents_and_get_reads_back() {
    let (_dir, store) = store();
    let stat = put(&store, "/services/nginx/port", b"80").await;
    assert_eq!(stat.size, 2);
    assert_eq!(stat.mode, 0o644);
    let (value, _) = store.get(&p("/services/nginx/port")).unwrap();
    assert_eq!(value, b"80");
    assert_eq!(
        store.stat(&p("/services")).unwrap().kind,
        EntryKind::Directory
    );
    assert!(matches!(
        store.get(&p("/services")),
        Err(StoreError::IsADirectory(_))
    ));
    assert!(matches!(
        store.get(&p("/nope")),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get(&p("/services/nginx/port/x")),
        Err(StoreError::NotADirectory(_))
    ));
}

fn content_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(EXTENTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn large_values_live_in_a_content_file_that_goes_when_replaced() {
    let (dir, store) = store();
    let big: Vec<u8> = (0..CHUNK_SIZE * 3 + 17).map(|i| (i % 251) as u8).collect();
    put(&store, "/big", &big).await;
    assert_eq!(store.get(&p("/big")).unwrap().0, big);
    assert_eq!(content_files(dir.path()).len(), 1);
    put(&store, "/big", b"small").await;
    assert_eq!(store.get(&p("/big")).unwrap().0, b"small");
    assert!(
        content_files(dir.path()).is_empty(),
        "a durable Put to an inline value deletes the old content file"
    );
    put(&store, "/big", &big).await;
    remove(&store, "/big", Removal::Single).await.unwrap();
    assert!(content_files(dir.path()).is_empty());
}

#[tokio::test]
async fn a_staged_value_is_put_in_place_and_a_failed_put_discards_it() {
    let (dir, store) = store();
    let big = vec![9u8; INLINE_MAX * 3];
    assert_eq!(
        store.stage(b"small".to_vec()).unwrap(),
        Content::Bytes(b"small".to_vec()),
        "small values stay inline"
    );
    let content = store.stage(big.clone()).unwrap();
    let staged = content.staged().expect("a content file");
    let op = namespace::put(p("/staged"), content, PutOptions::default());
    let (stat, _) = store.write(Durability::Durable, op).await.unwrap();
    assert_eq!(stat.size, big.len() as u64);
    assert_eq!(store.get(&p("/staged")).unwrap().0, big);
    assert_eq!(content_files(dir.path()), [staged.generation().to_string()]);
    // A put that fails (a stale version) leaves its staged file for the caller to drop.
    let again = store.stage(big.clone()).unwrap();
    let stale = PutOptions {
        if_version: Some(stat.version + 1),
        ..Default::default()
    };
    let discard = again.staged().expect("a content file");
    let failed = store
        .write(
            Durability::Durable,
            namespace::put(p("/staged"), again, stale),
        )
        .await;
    assert!(matches!(failed, Err(StoreError::VersionMismatch { .. })));
    store.discard(discard);
    assert_eq!(content_files(dir.path()), [staged.generation().to_string()]);
}

#[tokio::test]
async fn an_upload_is_put_whole_or_leaves_nothing() {
    let (dir, store) = store();
    put(&store, "/up", b"old").await;
    // Dropped midway: its content file goes.
    let mut upload = store.upload();
    upload.append(&vec![1u8; INLINE_MAX]).unwrap();
    upload.append(&[2u8; 10]).unwrap();
    assert_eq!(content_files(dir.path()).len(), 1);
    drop(upload);
    assert!(content_files(dir.path()).is_empty());
    assert_eq!(store.get(&p("/up")).unwrap().0, b"old");
    // Finished: put in place by one write.
    let mut upload = store.upload();
    let mut expected = Vec::new();
    for piece in 0..5u8 {
        let data = vec![piece; 3000];
        upload.append(&data).unwrap();
        expected.extend(data);
    }
    assert_eq!(upload.len(), expected.len() as u64);
    let content = upload.finish().unwrap();
    assert!(content.staged().is_some());
    let before = store.revision().unwrap();
    let op = namespace::put(p("/up"), content, PutOptions::default());
    let (_, revision) = store.write(Durability::Durable, op).await.unwrap();
    assert_eq!(revision, before + 1, "one revision for the whole value");
    assert_eq!(store.get(&p("/up")).unwrap().0, expected);
    // A small upload stays in memory and inline.
    let mut small = store.upload();
    small.append(b"tiny").unwrap();
    assert_eq!(small.finish().unwrap(), Content::Bytes(b"tiny".to_vec()));
}

#[tokio::test]
async fn check_put_refuses_early_what_the_put_would_refuse() {
    let (_dir, store) = store();
    let stat = put(&store, "/k", b"v").await;
    let ok = |if_version| PutOptions {
        if_version,
        ..Default::default()
    };
    store.check_put(&p("/k"), &ok(Some(stat.version))).unwrap();
    store.check_put(&p("/new/deep"), &ok(Some(0))).unwrap();
    assert!(matches!(
        store.check_put(&p("/k"), &ok(Some(stat.version + 1))),
        Err(StoreError::VersionMismatch { .. })
    ));
    assert!(matches!(
        store.check_put(&p("/"), &ok(None)),
        Err(StoreError::IsADirectory(_))
    ));
    let must_exist = PutOptions {
        parents: Parents::MustExist,
        ..Default::default()
    };
    assert!(matches!(
        store.check_put(&p("/no/parent"), &must_exist),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.check_put(&p("/k/under"), &ok(None)),
        Err(StoreError::NotADirectory(_))
    ));
}

#[tokio::test]
async fn a_small_write_to_a_large_file_stays_in_its_content_file() {
    let (dir, store) = store();
    let ino = file_in(&store, "", ROOT_INO, "f").await;
    write_at(&store, "", ino, 0, b"small").await.unwrap();
    assert!(
        content_files(dir.path()).is_empty(),
        "small files stay inline"
    );
    let big = vec![3u8; INLINE_MAX + 1];
    write_at(&store, "", ino, 0, &big).await.unwrap();
    let before = content_files(dir.path());
    assert_eq!(before.len(), 1);
    write_at(&store, "", ino, 100, b"x").await.unwrap();
    assert_eq!(content_files(dir.path()), before, "written in place");
    let content = store.read_at("", ino, 99, 3).unwrap();
    assert_eq!(content, [3, b'x', 3]);
}

#[tokio::test]
async fn a_schema_1_store_is_migrated_with_its_content() {
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<u8> = (0..CHUNK_SIZE * 2 + 5).map(|i| (i % 249) as u8).collect();
    {
        let db = Database::create(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert(META_SCHEMA, 1).unwrap();
            meta.insert(META_NEXT_INO, 4).unwrap();
            let mut inodes = txn.open_table(INODES).unwrap();
            let mut root = Inode::new(EntryKind::Directory, 0o755, "", 1, 0);
            root.parent = ROOT_INO;
            inodes
                .insert(ROOT_INO, root.encode_to_vec().as_slice())
                .unwrap();
            let mut dirents = txn.open_table(DIRENTS).unwrap();
            let mut chunks = txn.open_table(CHUNKS).unwrap();
            for (ino, name, content) in [(2, "old", &old[..]), (3, "tiny", &b"hello"[..])] {
                let mut file = Inode::new(EntryKind::File, 0o644, "", 1, 0);
                file.size = content.len() as u64;
                inodes.insert(ino, file.encode_to_vec().as_slice()).unwrap();
                dirents.insert((ROOT_INO, name), ino).unwrap();
                for (index, chunk) in content.chunks(CHUNK_SIZE).enumerate() {
                    chunks.insert((ino, index as u64), chunk).unwrap();
                }
            }
        }
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.get(&p("/old")).unwrap().0, old);
    assert_eq!(store.get(&p("/tiny")).unwrap().0, b"hello");
    assert_eq!(content_files(dir.path()).len(), 1);
    drop(store);
    let db = Database::open(dir.path().join(DB_FILE)).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META).unwrap();
    assert_eq!(
        meta.get(META_SCHEMA).unwrap().unwrap().value(),
        SCHEMA_VERSION
    );
    assert!(txn.open_table(CHUNKS).unwrap().is_empty().unwrap());
}

#[tokio::test]
async fn content_files_no_record_points_at_are_swept_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), StoreConfig::default()).unwrap());
    let stray = dir.path().join(EXTENTS_DIR).join("99.5");
    std::fs::write(&stray, b"left by a crash").unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert!(!stray.exists());
    put(&store, "/big", &vec![1u8; INLINE_MAX * 2]).await;
    // A value staged for a Put that never committed (the process died first).
    let staged = store.stage(vec![2u8; INLINE_MAX * 2]).unwrap();
    assert!(staged.staged().is_some());
    assert_eq!(content_files(dir.path()).len(), 2);
    drop(store);
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(content_files(dir.path()).len(), 1);
    assert_eq!(store.get(&p("/big")).unwrap().0, vec![1u8; INLINE_MAX * 2]);
}

#[tokio::test]
async fn compare_and_swap_on_version() {
    let (_dir, store) = store();
    let create_only = || PutOptions {
        if_version: Some(0),
        ..Default::default()
    };
    let (first, _) = try_put(&store, "/k", b"1", create_only()).await.unwrap();
    assert!(matches!(
        try_put(&store, "/k", b"2", create_only()).await,
        Err(StoreError::VersionMismatch { actual, .. }) if actual == first.version
    ));
    let swap = || PutOptions {
        if_version: Some(first.version),
        ..Default::default()
    };
    let (second, _) = try_put(&store, "/k", b"2", swap()).await.unwrap();
    assert!(second.version > first.version);
    assert!(
        try_put(&store, "/k", b"3", swap()).await.is_err(),
        "a stale version must lose"
    );
    assert_eq!(store.get(&p("/k")).unwrap().0, b"2");
}

#[tokio::test]
async fn list_pages_in_name_order() {
    let (_dir, store) = store();
    for name in ["c", "a", "b", "d"] {
        put(&store, &format!("/dir/{name}"), b"").await;
    }
    put(&store, "/dirx/z", b"").await;
    let (page, more) = store.list(&p("/dir"), "", 2).unwrap();
    assert_eq!(
        page.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        ["/dir/a", "/dir/b"]
    );
    assert!(more);
    let (page, more) = store.list(&p("/dir"), "b", 2).unwrap();
    assert_eq!(
        page.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        ["/dir/c", "/dir/d"]
    );
    assert!(!more);
    assert_eq!(names(&store, "/").await, ["/dir", "/dirx"]);
}

#[tokio::test]
async fn remove_needs_recursive_for_a_non_empty_directory() {
    let (_dir, store) = store();
    put(&store, "/a/b/c", b"x").await;
    assert!(matches!(
        remove(&store, "/a", Removal::Single).await,
        Err(StoreError::NotEmpty(_))
    ));
    remove(&store, "/a", Removal::Recursive).await.unwrap();
    assert!(matches!(
        store.stat(&p("/a/b/c")),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.stat(&p("/")).unwrap().nlink, 2);
    put(&store, "/a", b"again").await;
}

#[tokio::test]
async fn directory_link_counts_follow_subdirectories() {
    let (_dir, store) = store();
    mkdir(&store, "/d/e", 0o755, Parents::Create).await.unwrap();
    mkdir(&store, "/d/f", 0o700, Parents::MustExist)
        .await
        .unwrap();
    assert_eq!(store.stat(&p("/d")).unwrap().nlink, 4);
    assert_eq!(store.stat(&p("/d/f")).unwrap().mode, 0o700);
    assert!(matches!(
        mkdir(&store, "/d/f", 0o755, Parents::MustExist).await,
        Err(StoreError::Exists(_))
    ));
    mkdir(&store, "/d/f", 0o755, Parents::Create).await.unwrap();
    remove(&store, "/d/e", Removal::Single).await.unwrap();
    assert_eq!(store.stat(&p("/d")).unwrap().nlink, 3);
}

#[tokio::test]
async fn rename_follows_rename_2() {
    let (_dir, store) = store();
    put(&store, "/x/file", b"1").await;
    put(&store, "/y/other", b"2").await;
    // Over an existing file: replaced.
    rename(&store, "/x/file", "/y/other").await.unwrap();
    assert_eq!(store.get(&p("/y/other")).unwrap().0, b"1");
    assert!(store.stat(&p("/x/file")).is_err());
    // A directory into its own subtree: refused.
    assert!(matches!(
        rename(&store, "/y", "/y/sub").await,
        Err(StoreError::InvalidMove { .. })
    ));
    // A file over a directory, a directory over a file, a directory over a non-empty one.
    mkdir(&store, "/empty", 0o755, Parents::MustExist)
        .await
        .unwrap();
    assert!(matches!(
        rename(&store, "/y/other", "/empty").await,
        Err(StoreError::IsADirectory(_))
    ));
    assert!(matches!(
        rename(&store, "/empty", "/y/other").await,
        Err(StoreError::NotADirectory(_))
    ));
    assert!(matches!(
        rename(&store, "/x", "/y").await,
        Err(StoreError::NotEmpty(_))
    ));
    // A directory over an empty directory, across parents: replaced, link counts kept.
    rename(&store, "/y", "/empty").await.unwrap();
    assert_eq!(store.get(&p("/empty/other")).unwrap().0, b"1");
    assert_eq!(
        store.stat(&p("/")).unwrap().nlink,
        4,
        "/x and /empty remain"
    );
    // The target's parent must exist.
    assert!(matches!(
        rename(&store, "/empty", "/no/where").await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn symlinks_are_stored_not_followed() {
    let (_dir, store) = store();
    put(&store, "/real", b"data").await;
    let symlink = || namespace::symlink(p("/link"), "/real".to_owned());
    let stat = store.write(Durability::Durable, symlink()).await.unwrap().0;
    assert_eq!(stat.target, "/real");
    assert_eq!(stat.kind, EntryKind::Symlink);
    assert!(matches!(
        store.get(&p("/link")),
        Err(StoreError::IsASymlink(_))
    ));
    assert!(matches!(
        store.write(Durability::Durable, symlink()).await,
        Err(StoreError::Exists(_))
    ));
}

#[tokio::test]
async fn changes_are_logged_by_revision_and_prefix() {
    let (_dir, store) = store();
    let start = store.revision().unwrap();
    put(&store, "/a/one", b"1").await;
    put(&store, "/b/two", b"2").await;
    rename(&store, "/a/one", "/b/one").await.unwrap();
    remove(&store, "/b", Removal::Recursive).await.unwrap();
    let (events, last) = store
        .changes_after(start, &WatchFilter::new("", p("/b")))
        .unwrap();
    assert_eq!(last, store.revision().unwrap());
    let seen: Vec<(ChangeKind, &str)> = events.iter().map(|e| (e.kind, e.path.as_str())).collect();
    assert_eq!(
        seen,
        [
            (ChangeKind::Mkdir, "/b"),
            (ChangeKind::Put, "/b/two"),
            (ChangeKind::Rename, "/a/one"),
            (ChangeKind::Remove, "/b"),
        ]
    );
    // Removing an ancestor concerns a watcher of a deeper prefix.
    let (deep, _) = store
        .changes_after(start, &WatchFilter::new("", p("/b/two")))
        .unwrap();
    assert_eq!(deep.last().unwrap().kind, ChangeKind::Remove);
}

#[tokio::test]
async fn changes_after_the_last_possible_revision_are_none() {
    let (_dir, store) = store();
    put(&store, "/a", b"1").await;
    let (changes, last) = store.changes_after(u64::MAX, &all()).unwrap();
    assert!(changes.is_empty());
    assert_eq!(last, u64::MAX);
}

#[tokio::test]
async fn symlink_targets_longer_than_path_max_are_refused_by_path_and_by_inode() {
    let (_dir, store) = store();
    let long = "t".repeat(aurae_core::path::MAX_PATH_LEN + 1);
    let by_path = namespace::symlink(p("/long"), long.clone());
    let refused = store.write(Durability::Durable, by_path).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Path(PathError::TargetTooLong(4097))),
        "{refused:?}"
    );
    assert_eq!(refused.errno(), "ENAMETOOLONG");
    let by_inode = inodes::make_symlink("", ROOT_INO, "long".into(), long, 0, 0);
    let refused = store
        .write(Durability::Durable, by_inode)
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        StoreError::Path(PathError::TargetTooLong(4097))
    ));
    let empty = namespace::symlink(p("/empty"), String::new());
    let refused = store.write(Durability::Durable, empty).await.unwrap_err();
    assert!(matches!(refused, StoreError::Path(PathError::EmptyTarget)));
    let longest = "t".repeat(aurae_core::path::MAX_PATH_LEN);
    let stat = store
        .write(
            Durability::Durable,
            namespace::symlink(p("/longest"), longest),
        )
        .await
        .unwrap()
        .0;
    assert_eq!(stat.size, 4096);
}

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        put(&store, "/kept", b"yes").await;
    }
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.get(&p("/kept")).unwrap().0, b"yes");
}

#[test]
fn a_second_opener_gets_a_clear_locked_error() {
    let (dir, _store) = store();
    let err = Store::open(dir.path(), StoreConfig::default()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn a_corrupt_database_is_reported_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = vec![0x5a_u8; 8192];
    std::fs::write(dir.path().join(DB_FILE), &garbage).unwrap();
    let err = Store::open(dir.path(), StoreConfig::default()).unwrap_err();
    assert!(matches!(err, StoreError::Unopenable { .. }), "{err}");
    assert_eq!(std::fs::read(dir.path().join(DB_FILE)).unwrap(), garbage);
}

#[tokio::test]
async fn writes_touch_only_their_chunks_and_holes_read_as_zeros() {
    let (_dir, store) = store();
    let ino = file_in(&store, "", ROOT_INO, "f").await;
    let far = CHUNK_SIZE as u64 * 2 + 10;
    write_at(&store, "", ino, far, b"tail").await.unwrap();
    assert_eq!(store.getattr("", ino).unwrap().size, far + 4);
    let hole = store.read_at("", ino, 0, 16).unwrap();
    assert_eq!(hole, vec![0u8; 16]);
    write_at(&store, "", ino, CHUNK_SIZE as u64 - 2, b"span")
        .await
        .unwrap();
    let around = store.read_at("", ino, CHUNK_SIZE as u64 - 3, 6).unwrap();
    assert_eq!(around, b"\0span\0");
    assert_eq!(
        store.read_at("", ino, far, 100).unwrap(),
        b"tail",
        "short read at EOF"
    );
    assert!(store.read_at("", ino, far + 100, 10).unwrap().is_empty());
}

#[tokio::test]
async fn truncate_drops_bytes_for_good() {
    let (_dir, store) = store();
    let ino = file_in(&store, "", ROOT_INO, "f").await;
    write_at(&store, "", ino, 0, &vec![7u8; CHUNK_SIZE + 100])
        .await
        .unwrap();
    let shrink = SetAttr {
        size: Some(10),
        ..Default::default()
    };
    set_attr(&store, ino, shrink).await;
    let grow = SetAttr {
        size: Some(CHUNK_SIZE as u64 + 50),
        ..Default::default()
    };
    set_attr(&store, ino, grow).await;
    let content = store.read_at("", ino, 0, u64::MAX).unwrap();
    assert_eq!(content.len(), CHUNK_SIZE + 50);
    assert!(content[..10].iter().all(|b| *b == 7));
    assert!(
        content[10..].iter().all(|b| *b == 0),
        "old bytes came back after truncate"
    );
}

#[tokio::test]
async fn volumes_are_isolated_and_enforce_their_quota() {
    let (_dir, store) = store();
    let create = |name: &str, quota| volumes::create(name.parse().unwrap(), quota);
    let (volume, _) = store
        .write(Durability::Durable, create("data", 100))
        .await
        .unwrap();
    assert!(matches!(
        store.write(Durability::Durable, create("data", 0)).await,
        Err(StoreError::VolumeExists(_))
    ));
    let ino = file_in(&store, "data", volume.root_inode, "f").await;
    write_at(&store, "data", ino, 0, &[1u8; 60]).await.unwrap();
    let err = write_at(&store, "data", ino, 60, &[1u8; 60])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::QuotaExceeded { .. }), "{err}");
    assert_eq!(err.errno(), "ENOSPC");
    assert_eq!(
        store.getattr("data", ino).unwrap().size,
        60,
        "a refused write changes nothing"
    );
    // Inodes of one volume do not exist in another.
    assert!(matches!(
        store.getattr("", ino),
        Err(StoreError::NoSuchInode(_))
    ));
    assert!(store.lookup_at("", ROOT_INO, "f").is_err());
    let listed = store.volume("data").unwrap();
    assert_eq!((listed.used_bytes, listed.files), (60, 2));
    // Freeing space makes room again.
    unlink(&store, "data", volume.root_inode, "f", UnlinkKind::File)
        .await
        .unwrap();
    assert_eq!(store.volume("data").unwrap().used_bytes, 0);
    let delete = |name: &str| volumes::delete(name.to_owned());
    store
        .write(Durability::Durable, delete("data"))
        .await
        .unwrap();
    assert!(matches!(
        store.volume("data"),
        Err(StoreError::NoSuchVolume(_))
    ));
    assert!(
        store
            .write(Durability::Durable, delete("default"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn hard_links_share_content_and_outlive_one_name() {
    let (_dir, store) = store();
    let ino = file_in(&store, "", ROOT_INO, "a").await;
    write_at(&store, "", ino, 0, b"shared").await.unwrap();
    let link = |ino, name: &str| inodes::link("", ino, ROOT_INO, name.to_owned());
    store
        .write(Durability::Durable, link(ino, "b"))
        .await
        .unwrap();
    assert_eq!(store.getattr("", ino).unwrap().nlink, 2);
    let unlinked = unlink(&store, "", ROOT_INO, "a", UnlinkKind::File)
        .await
        .unwrap();
    assert_eq!((unlinked.inode, unlinked.links_left), (ino, 1));
    assert_eq!(store.get(&p("/b")).unwrap().0, b"shared");
    assert_eq!(store.getattr("", ino).unwrap().nlink, 1);
    let dir = mkdir(&store, "/d", 0o755, Parents::MustExist)
        .await
        .unwrap()
        .inode;
    let err = store
        .write(Durability::Durable, link(dir, "d2"))
        .await
        .unwrap_err();
    assert_eq!(err.errno(), "EPERM");
}

#[tokio::test]
async fn unlink_and_rmdir_refuse_the_wrong_kind() {
    let (_dir, store) = store();
    mkdir(&store, "/d/e", 0o755, Parents::Create).await.unwrap();
    put(&store, "/f", b"").await;
    let errno = async |name: &str, kind| {
        unlink(&store, "", ROOT_INO, name, kind)
            .await
            .unwrap_err()
            .errno()
    };
    assert_eq!(errno("d", UnlinkKind::File).await, "EISDIR");
    assert_eq!(errno("f", UnlinkKind::Directory).await, "ENOTDIR");
    assert_eq!(errno("d", UnlinkKind::Directory).await, "ENOTEMPTY");
    assert_eq!(errno("nope", UnlinkKind::File).await, "ENOENT");
    assert_eq!(errno("..", UnlinkKind::File).await, "EINVAL");
}

fn mv(parent: u64, name: &str, new_parent: u64, new_name: &str, replace: Replace) -> Move {
    Move {
        parent,
        name: name.to_owned(),
        new_parent,
        new_name: new_name.to_owned(),
        replace,
    }
}

#[tokio::test]
async fn rename_by_inode_refuses_cycles_and_honours_no_replace() {
    let (_dir, store) = store();
    let a = mkdir(&store, "/a/b/c", 0o755, Parents::Create)
        .await
        .unwrap()
        .inode;
    let top = store.stat(&p("/a")).unwrap().inode;
    let cycle = move_entry(&store, mv(ROOT_INO, "a", a, "a", Replace::Allowed)).await;
    assert_eq!(cycle.unwrap_err().errno(), "EINVAL");
    put(&store, "/x", b"1").await;
    put(&store, "/y", b"2").await;
    let kept = move_entry(&store, mv(ROOT_INO, "x", ROOT_INO, "y", Replace::Refused)).await;
    assert_eq!(kept.unwrap_err().errno(), "EEXIST");
    // A directory moved keeps its parent link right: moving it back under itself is still refused.
    move_entry(&store, mv(top, "b", ROOT_INO, "b", Replace::Allowed))
        .await
        .unwrap();
    let b = store.stat(&p("/b")).unwrap().inode;
    let cycle = move_entry(&store, mv(ROOT_INO, "b", a, "b", Replace::Allowed)).await;
    assert_eq!(cycle.unwrap_err().errno(), "EINVAL");
    assert_eq!(store.lookup_at("", b, "c").unwrap().inode, a);
}

#[tokio::test]
async fn renaming_a_link_onto_another_link_of_the_same_file_does_nothing() {
    let (_dir, store) = store();
    let ino = file_in(&store, "", ROOT_INO, "one").await;
    let link = inodes::link("", ino, ROOT_INO, "two".to_owned());
    store.write(Durability::Durable, link).await.unwrap();
    move_entry(
        &store,
        mv(ROOT_INO, "one", ROOT_INO, "two", Replace::Allowed),
    )
    .await
    .unwrap();
    assert_eq!(names(&store, "/").await, ["/one", "/two"]);
    assert_eq!(store.getattr("", ino).unwrap().nlink, 2);
}

#[tokio::test]
async fn events_carry_inodes_for_cache_invalidation() {
    let (_dir, store) = store();
    let start = store.revision().unwrap();
    let stat = put(&store, "/k", b"v").await;
    rename(&store, "/k", "/k2").await.unwrap();
    let (events, _) = store.changes_after(start, &all()).unwrap();
    let put_event = &events[0];
    assert_eq!(
        (
            put_event.inode,
            put_event.parent_inode,
            put_event.name.as_str()
        ),
        (stat.inode, ROOT_INO, "k")
    );
    let rename = events.last().unwrap();
    assert_eq!(
        (rename.to_parent_inode, rename.to_name.as_str()),
        (ROOT_INO, "k2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_write_in_a_group_takes_no_other_write_with_it() {
    let (_dir, store) = store();
    let store = std::sync::Arc::new(store);
    put(&store, "/taken", b"").await;
    let writers: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                if i % 8 == 0 {
                    // Fails after the group may already hold other writes.
                    let create_only = PutOptions {
                        if_version: Some(0),
                        ..Default::default()
                    };
                    try_put(&store, "/taken", b"lost", create_only)
                        .await
                        .is_err()
                } else {
                    try_put(&store, &format!("/g/k{i}"), b"kept", PutOptions::default())
                        .await
                        .is_ok()
                }
            })
        })
        .collect();
    for writer in writers {
        assert!(writer.await.unwrap(), "a write got the wrong answer");
    }
    let (entries, _) = store.list(&p("/g"), "", 100).unwrap();
    assert_eq!(entries.len(), 28);
    assert_eq!(store.get(&p("/taken")).unwrap().0, b"");
}

#[tokio::test]
async fn logged_writes_are_visible_at_once_and_kept_after_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ino = {
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let ino = file_in(&store, "", ROOT_INO, "lazy").await;
        let op = inodes::write_at("", ino, 0, b"not yet synced".to_vec());
        store.write(Durability::Logged, op).await.unwrap();
        assert_eq!(store.read_at("", ino, 0, 100).unwrap(), b"not yet synced");
        let op = inodes::write_at("", ino, 14, b", small".to_vec());
        store.write(Durability::LoggedSmall, op).await.unwrap();
        store.flush().await.unwrap();
        ino
    };
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(
        store.read_at("", ino, 0, 100).unwrap(),
        b"not yet synced, small"
    );
}

#[tokio::test]
async fn the_change_log_keeps_what_the_config_says() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default().with_changes_kept(3);
    let store = Store::open(dir.path(), config).unwrap();
    for i in 0..6 {
        put(&store, &format!("/k{i}"), b"v").await;
    }
    assert!(matches!(
        store.changes_after(0, &all()),
        Err(StoreError::Compacted { .. })
    ));
    let revision = store.revision().unwrap();
    let (kept, _) = store.changes_after(revision - 2, &all()).unwrap();
    assert_eq!(kept.len(), 2);
}

/// The changes after `start` as (kind, path).
fn changes_since(store: &Store, start: u64, filter: &WatchFilter) -> Vec<(ChangeKind, String)> {
    let (changes, _) = store.changes_after(start, filter).unwrap();
    changes.into_iter().map(|c| (c.kind, c.path)).collect()
}

#[tokio::test]
async fn changes_by_inode_carry_the_path_of_every_link() {
    let (_dir, store) = store();
    let web = mkdir(&store, "/services/web", 0o755, Parents::Create)
        .await
        .unwrap()
        .inode;
    let other = mkdir(&store, "/other", 0o755, Parents::Create)
        .await
        .unwrap()
        .inode;
    let start = store.revision().unwrap();
    let file = file_in(&store, "", web, "f").await;
    write_at(&store, "", file, 0, b"v").await.unwrap();
    let services = WatchFilter::new("", p("/services"));
    assert_eq!(
        changes_since(&store, start, &services),
        [
            (ChangeKind::Put, "/services/web/f".to_owned()),
            (ChangeKind::Put, "/services/web/f".to_owned()),
        ]
    );
    // A second link: a write is reported at both paths, each watcher sees its own.
    let link = inodes::link("", file, other, "g".to_owned());
    store.write(Durability::Durable, link).await.unwrap();
    let start = store.revision().unwrap();
    set_attr(
        &store,
        file,
        SetAttr {
            mode: Some(0o600),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        changes_since(&store, start, &all()),
        [
            (ChangeKind::Put, "/services/web/f".to_owned()),
            (ChangeKind::Put, "/other/g".to_owned()),
        ]
    );
    assert_eq!(
        changes_since(&store, start, &WatchFilter::new("", p("/other"))),
        [(ChangeKind::Put, "/other/g".to_owned())]
    );
    // Renaming the directory by inode renames the paths of what is under it.
    let start = store.revision().unwrap();
    let services_ino = store.stat(&p("/services")).unwrap().inode;
    let mv = mv(services_ino, "web", ROOT_INO, "www", Replace::Allowed);
    move_entry(&store, mv).await.unwrap();
    write_at(&store, "", file, 1, b"w").await.unwrap();
    unlink(&store, "", other, "g", UnlinkKind::File)
        .await
        .unwrap();
    write_at(&store, "", file, 2, b"x").await.unwrap();
    let (changes, _) = store.changes_after(start, &all()).unwrap();
    let rename = &changes[0];
    assert_eq!(
        (rename.kind, rename.path.as_str(), rename.to.as_str()),
        (ChangeKind::Rename, "/services/web", "/www")
    );
    assert_eq!(
        changes_since(&store, start, &all())[1..],
        [
            (ChangeKind::Put, "/www/f".to_owned()),
            (ChangeKind::Put, "/other/g".to_owned()),
            (ChangeKind::Remove, "/other/g".to_owned()),
            (ChangeKind::Put, "/www/f".to_owned()),
        ]
    );
    // The root is "/", and a volume's changes have no path.
    let start = store.revision().unwrap();
    set_attr(&store, ROOT_INO, SetAttr::default()).await;
    assert_eq!(
        changes_since(&store, start, &all()),
        [(ChangeKind::Put, "/".to_owned())]
    );
    let (volume, _) = store
        .write(
            Durability::Durable,
            volumes::create("data".parse().unwrap(), 0),
        )
        .await
        .unwrap();
    let start = store.revision().unwrap();
    let in_volume = file_in(&store, "data", volume.root_inode, "f").await;
    write_at(&store, "data", in_volume, 0, b"v").await.unwrap();
    let (changes, _) = store
        .changes_after(start, &WatchFilter::new("data", StorePath::root()))
        .unwrap();
    assert_eq!(changes.len(), 2);
    assert!(changes.iter().all(|c| c.path.is_empty()));
}

#[tokio::test]
async fn records_written_before_links_were_kept_are_filled_in_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (file, linked) = {
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let dir_ino = mkdir(&store, "/a/b", 0o755, Parents::Create)
            .await
            .unwrap()
            .inode;
        let file = file_in(&store, "", dir_ino, "f").await;
        let linked = file_in(&store, "", ROOT_INO, "l").await;
        let link = inodes::link("", linked, dir_ino, "l2".to_owned());
        store.write(Durability::Durable, link).await.unwrap();
        (file, linked)
    };
    // What an earlier version left: no names, no links, files without a parent.
    {
        let db = Database::open(dir.path().join(DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut inodes = txn.open_table(INODES).unwrap();
            let mut old = Vec::new();
            for entry in inodes.iter().unwrap() {
                let (key, value) = entry.unwrap();
                let mut inode = Inode::decode(value.value()).unwrap();
                if !inode.is_dir() {
                    inode.parent = 0;
                }
                inode.name.clear();
                inode.more_links.clear();
                old.push((key.value(), inode.encode_to_vec()));
            }
            for (ino, bytes) in old {
                inodes.insert(ino, bytes.as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let start = store.revision().unwrap();
    write_at(&store, "", file, 0, b"v").await.unwrap();
    write_at(&store, "", linked, 0, b"v").await.unwrap();
    let mut paths: Vec<String> = changes_since(&store, start, &all())
        .into_iter()
        .map(|(_, path)| path)
        .collect();
    paths.sort();
    assert_eq!(paths, ["/a/b/f", "/a/b/l2", "/l"]);
}
