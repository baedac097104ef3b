//! Unit tests of the namespace semantics, on a real database in a temporary directory.

use super::*;
use aurae_proto::v0::ChangeKind;
use redb::ReadableTableMetadata;

fn p(s: &str) -> StorePath {
    s.parse().unwrap()
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn put(store: &Store, path: &str, value: &[u8]) -> Stat {
    store
        .put(&p(path), value, &PutOptions::default())
        .unwrap()
        .0
}

fn names(store: &Store, path: &str) -> Vec<String> {
    let (entries, _) = store.list(&p(path), "", 100).unwrap();
    entries.into_iter().map(|s| s.path).collect()
}

#[test]
fn put_creates_parents_and_get_reads_back() {
    let (_dir, store) = store();
    let stat = put(&store, "/services/nginx/port", b"80");
    assert_eq!(stat.size, 2);
    assert_eq!(stat.mode, 0o644);
    let (value, _) = store.get(&p("/services/nginx/port")).unwrap();
    assert_eq!(value, b"80");
    assert_eq!(
        store.stat(&p("/services")).unwrap().kind,
        EntryKind::Directory as i32
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
    let mut names: Vec<String> = std::fs::read_dir(dir.join(extents::EXTENTS_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn large_values_live_in_a_content_file_that_goes_when_replaced() {
    let (dir, store) = store();
    let big: Vec<u8> = (0..CHUNK_SIZE * 3 + 17).map(|i| (i % 251) as u8).collect();
    put(&store, "/big", &big);
    assert_eq!(store.get(&p("/big")).unwrap().0, big);
    assert_eq!(content_files(dir.path()).len(), 1);
    put(&store, "/big", b"small");
    assert_eq!(store.get(&p("/big")).unwrap().0, b"small");
    assert!(
        content_files(dir.path()).is_empty(),
        "a durable Put to an inline value deletes the old content file"
    );
    put(&store, "/big", &big);
    store.remove(&p("/big"), false).unwrap();
    assert!(content_files(dir.path()).is_empty());
}

#[test]
fn a_staged_value_is_put_in_place_and_a_failed_put_discards_it() {
    let (dir, store) = store();
    let big = vec![9u8; INLINE_MAX * 3];
    assert_eq!(
        store.stage(b"small").unwrap(),
        None,
        "small values stay inline"
    );
    let staged = store.stage(&big).unwrap().expect("a content file");
    let (stat, _) = store
        .write(Store::put_op(
            p("/staged"),
            big.clone(),
            PutOptions::default(),
            Some(staged),
        ))
        .unwrap();
    assert_eq!(stat.size, big.len() as u64);
    assert_eq!(store.get(&p("/staged")).unwrap().0, big);
    assert_eq!(content_files(dir.path()), [staged.to_string()]);
    // A put that fails (a stale version) leaves its staged file for the caller to drop.
    let again = store.stage(&big).unwrap().expect("a content file");
    let stale = PutOptions {
        if_version: Some(stat.version + 1),
        ..Default::default()
    };
    let failed = store.write(Store::put_op(p("/staged"), big.clone(), stale, Some(again)));
    assert!(matches!(failed, Err(StoreError::VersionMismatch { .. })));
    store.discard_staged(again);
    assert_eq!(content_files(dir.path()), [staged.to_string()]);
}

#[test]
fn a_small_write_to_a_large_file_stays_in_its_content_file() {
    let (dir, store) = store();
    let ino = file_in(&store, "", ROOT_INO, "f");
    store.write_at("", ino, 0, b"small").unwrap();
    assert!(
        content_files(dir.path()).is_empty(),
        "small files stay inline"
    );
    let big = vec![3u8; INLINE_MAX + 1];
    store.write_at("", ino, 0, &big).unwrap();
    let before = content_files(dir.path());
    assert_eq!(before.len(), 1);
    store.write_at("", ino, 100, b"x").unwrap();
    assert_eq!(content_files(dir.path()), before, "written in place");
    let content = store.read_at("", ino, 99, 3).unwrap();
    assert_eq!(content, [3, b'x', 3]);
}

#[test]
fn a_schema_1_store_is_migrated_with_its_content() {
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
    let store = Store::open(dir.path()).unwrap();
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

#[test]
fn content_files_no_record_points_at_are_swept_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let stray = dir.path().join(extents::EXTENTS_DIR).join("99.5");
    std::fs::write(&stray, b"left by a crash").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(!stray.exists());
    put(&store, "/big", &vec![1u8; INLINE_MAX * 2]);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get(&p("/big")).unwrap().0, vec![1u8; INLINE_MAX * 2]);
}

#[test]
fn compare_and_swap_on_version() {
    let (_dir, store) = store();
    let create_only = PutOptions {
        if_version: Some(0),
        ..Default::default()
    };
    let (first, _) = store.put(&p("/k"), b"1", &create_only).unwrap();
    assert!(matches!(
        store.put(&p("/k"), b"2", &create_only),
        Err(StoreError::VersionMismatch { actual, .. }) if actual == first.version
    ));
    let swap = PutOptions {
        if_version: Some(first.version),
        ..Default::default()
    };
    let (second, _) = store.put(&p("/k"), b"2", &swap).unwrap();
    assert!(second.version > first.version);
    assert!(
        store.put(&p("/k"), b"3", &swap).is_err(),
        "a stale version must lose"
    );
    assert_eq!(store.get(&p("/k")).unwrap().0, b"2");
}

#[test]
fn list_pages_in_name_order() {
    let (_dir, store) = store();
    for name in ["c", "a", "b", "d"] {
        put(&store, &format!("/dir/{name}"), b"");
    }
    put(&store, "/dirx/z", b"");
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
    assert_eq!(names(&store, "/"), ["/dir", "/dirx"]);
}

#[test]
fn remove_needs_recursive_for_a_non_empty_directory() {
    let (_dir, store) = store();
    put(&store, "/a/b/c", b"x");
    assert!(matches!(
        store.remove(&p("/a"), false),
        Err(StoreError::NotEmpty(_))
    ));
    store.remove(&p("/a"), true).unwrap();
    assert!(matches!(
        store.stat(&p("/a/b/c")),
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.stat(&p("/")).unwrap().nlink, 2);
    put(&store, "/a", b"again");
}

#[test]
fn directory_link_counts_follow_subdirectories() {
    let (_dir, store) = store();
    store.mkdir(&p("/d/e"), 0o755, Parents::Create).unwrap();
    store.mkdir(&p("/d/f"), 0o700, Parents::MustExist).unwrap();
    assert_eq!(store.stat(&p("/d")).unwrap().nlink, 4);
    assert_eq!(store.stat(&p("/d/f")).unwrap().mode, 0o700);
    assert!(matches!(
        store.mkdir(&p("/d/f"), 0o755, Parents::MustExist),
        Err(StoreError::Exists(_))
    ));
    store.mkdir(&p("/d/f"), 0o755, Parents::Create).unwrap();
    store.remove(&p("/d/e"), false).unwrap();
    assert_eq!(store.stat(&p("/d")).unwrap().nlink, 3);
}

#[test]
fn rename_follows_rename_2() {
    let (_dir, store) = store();
    put(&store, "/x/file", b"1");
    put(&store, "/y/other", b"2");
    // Over an existing file: replaced.
    store.rename(&p("/x/file"), &p("/y/other")).unwrap();
    assert_eq!(store.get(&p("/y/other")).unwrap().0, b"1");
    assert!(store.stat(&p("/x/file")).is_err());
    // A directory into its own subtree: refused.
    assert!(matches!(
        store.rename(&p("/y"), &p("/y/sub")),
        Err(StoreError::InvalidMove { .. })
    ));
    // A file over a directory, a directory over a file, a directory over a non-empty one.
    store
        .mkdir(&p("/empty"), 0o755, Parents::MustExist)
        .unwrap();
    assert!(matches!(
        store.rename(&p("/y/other"), &p("/empty")),
        Err(StoreError::IsADirectory(_))
    ));
    assert!(matches!(
        store.rename(&p("/empty"), &p("/y/other")),
        Err(StoreError::NotADirectory(_))
    ));
    assert!(matches!(
        store.rename(&p("/x"), &p("/y")),
        Err(StoreError::NotEmpty(_))
    ));
    // A directory over an empty directory, across parents: replaced, link counts kept.
    store.rename(&p("/y"), &p("/empty")).unwrap();
    assert_eq!(store.get(&p("/empty/other")).unwrap().0, b"1");
    assert_eq!(
        store.stat(&p("/")).unwrap().nlink,
        4,
        "/x and /empty remain"
    );
    // The target's parent must exist.
    assert!(matches!(
        store.rename(&p("/empty"), &p("/no/where")),
        Err(StoreError::NotFound(_))
    ));
}

#[test]
fn symlinks_are_stored_not_followed() {
    let (_dir, store) = store();
    put(&store, "/real", b"data");
    let stat = store.symlink(&p("/link"), "/real").unwrap().0;
    assert_eq!(stat.target, "/real");
    assert_eq!(stat.kind, EntryKind::Symlink as i32);
    assert!(matches!(
        store.get(&p("/link")),
        Err(StoreError::IsASymlink(_))
    ));
    assert!(matches!(
        store.symlink(&p("/link"), "/x"),
        Err(StoreError::Exists(_))
    ));
}

#[test]
fn changes_are_logged_by_revision_and_prefix() {
    let (_dir, store) = store();
    let start = store.revision().unwrap();
    put(&store, "/a/one", b"1");
    put(&store, "/b/two", b"2");
    store.rename(&p("/a/one"), &p("/b/one")).unwrap();
    store.remove(&p("/b"), true).unwrap();
    let (events, last) = store
        .changes_after(start, |e| concerns(e, "", &p("/b")))
        .unwrap();
    assert_eq!(last, store.revision().unwrap());
    let seen: Vec<(i32, &str)> = events.iter().map(|e| (e.kind, e.path.as_str())).collect();
    assert_eq!(
        seen,
        [
            (ChangeKind::Mkdir as i32, "/b"),
            (ChangeKind::Put as i32, "/b/two"),
            (ChangeKind::Rename as i32, "/a/one"),
            (ChangeKind::Remove as i32, "/b"),
        ]
    );
    // Removing an ancestor concerns a watcher of a deeper prefix.
    let (deep, _) = store
        .changes_after(start, |e| concerns(e, "", &p("/b/two")))
        .unwrap();
    assert_eq!(deep.last().unwrap().kind, ChangeKind::Remove as i32);
}

#[test]
fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        put(&store, "/kept", b"yes");
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get(&p("/kept")).unwrap().0, b"yes");
}

#[test]
fn a_second_opener_gets_a_clear_locked_error() {
    let (dir, _store) = store();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[test]
fn a_corrupt_database_is_reported_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = vec![0x5a_u8; 8192];
    std::fs::write(dir.path().join(DB_FILE), &garbage).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Unopenable { .. }), "{err}");
    assert_eq!(std::fs::read(dir.path().join(DB_FILE)).unwrap(), garbage);
}

fn file_in(store: &Store, volume: &str, parent: u64, name: &str) -> u64 {
    let name = name.to_owned();
    let (ino, _) = store
        .write_in(volume, move |w, vol| {
            let inode = w.fresh(vol, EntryKind::File, 0o644);
            w.create(vol, parent, &name, inode, None)
        })
        .unwrap();
    ino
}

#[test]
fn writes_touch_only_their_chunks_and_holes_read_as_zeros() {
    let (_dir, store) = store();
    let ino = file_in(&store, "", ROOT_INO, "f");
    let far = CHUNK_SIZE as u64 * 2 + 10;
    store.write_at("", ino, far, b"tail").unwrap();
    assert_eq!(store.getattr("", ino).unwrap().size, far + 4);
    let hole = store.read_at("", ino, 0, 16).unwrap();
    assert_eq!(hole, vec![0u8; 16]);
    store
        .write_at("", ino, CHUNK_SIZE as u64 - 2, b"span")
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

#[test]
fn truncate_drops_bytes_for_good() {
    let (_dir, store) = store();
    let ino = file_in(&store, "", ROOT_INO, "f");
    store
        .write_at("", ino, 0, &vec![7u8; CHUNK_SIZE + 100])
        .unwrap();
    let shrink = SetAttr {
        size: Some(10),
        ..Default::default()
    };
    store.setattr("", ino, shrink).unwrap();
    let grow = SetAttr {
        size: Some(CHUNK_SIZE as u64 + 50),
        ..Default::default()
    };
    store.setattr("", ino, grow).unwrap();
    let content = store.read_at("", ino, 0, u64::MAX).unwrap();
    assert_eq!(content.len(), CHUNK_SIZE + 50);
    assert!(content[..10].iter().all(|b| *b == 7));
    assert!(
        content[10..].iter().all(|b| *b == 0),
        "old bytes came back after truncate"
    );
}

#[test]
fn volumes_are_isolated_and_enforce_their_quota() {
    let (_dir, store) = store();
    let volume = store.create_volume("data", 100).unwrap();
    assert!(matches!(
        store.create_volume("data", 0),
        Err(StoreError::VolumeExists(_))
    ));
    assert!(matches!(
        store.create_volume("Bad/Name", 0),
        Err(StoreError::InvalidName(_))
    ));
    let ino = file_in(&store, "data", volume.root_inode, "f");
    store.write_at("data", ino, 0, &[1u8; 60]).unwrap();
    let err = store.write_at("data", ino, 60, &[1u8; 60]).unwrap_err();
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
    store
        .write_in("data", move |w, vol| {
            w.unlink(vol, volume.root_inode, "f", UnlinkKind::File, None)
        })
        .unwrap();
    assert_eq!(store.volume("data").unwrap().used_bytes, 0);
    store.delete_volume("data").unwrap();
    assert!(matches!(
        store.volume("data"),
        Err(StoreError::NoSuchVolume(_))
    ));
    assert!(store.delete_volume("default").is_err());
}

#[test]
fn hard_links_share_content_and_outlive_one_name() {
    let (_dir, store) = store();
    let ino = file_in(&store, "", ROOT_INO, "a");
    store.write_at("", ino, 0, b"shared").unwrap();
    store
        .write_in("", move |w, vol| w.link(vol, ino, ROOT_INO, "b"))
        .unwrap();
    assert_eq!(store.getattr("", ino).unwrap().nlink, 2);
    store
        .write_in("", move |w, vol| {
            w.unlink(vol, ROOT_INO, "a", UnlinkKind::File, None)
        })
        .unwrap();
    assert_eq!(store.get(&p("/b")).unwrap().0, b"shared");
    assert_eq!(store.getattr("", ino).unwrap().nlink, 1);
    let dir = store
        .mkdir(&p("/d"), 0o755, Parents::MustExist)
        .unwrap()
        .0
        .inode;
    let err = store
        .write_in("", move |w, vol| w.link(vol, dir, ROOT_INO, "d2"))
        .unwrap_err();
    assert_eq!(err.errno(), "EPERM");
}

#[test]
fn unlink_and_rmdir_refuse_the_wrong_kind() {
    let (_dir, store) = store();
    store.mkdir(&p("/d/e"), 0o755, Parents::Create).unwrap();
    put(&store, "/f", b"");
    let unlink = |name: &str, kind| {
        let name = name.to_owned();
        store.write_in("", move |w, vol| w.unlink(vol, ROOT_INO, &name, kind, None))
    };
    assert_eq!(unlink("d", UnlinkKind::File).unwrap_err().errno(), "EISDIR");
    assert_eq!(
        unlink("f", UnlinkKind::Directory).unwrap_err().errno(),
        "ENOTDIR"
    );
    assert_eq!(
        unlink("d", UnlinkKind::Directory).unwrap_err().errno(),
        "ENOTEMPTY"
    );
    assert_eq!(
        unlink("nope", UnlinkKind::File).unwrap_err().errno(),
        "ENOENT"
    );
    assert_eq!(
        unlink("..", UnlinkKind::File).unwrap_err().errno(),
        "EINVAL"
    );
}

#[test]
fn rename_by_inode_refuses_cycles_and_honours_no_replace() {
    let (_dir, store) = store();
    let a = store
        .mkdir(&p("/a/b/c"), 0o755, Parents::Create)
        .unwrap()
        .0
        .inode;
    let top = store.stat(&p("/a")).unwrap().inode;
    let cycle = store.write_in("", move |w, vol| {
        w.rename(vol, ROOT_INO, "a", a, "a", false, None)
    });
    assert_eq!(cycle.unwrap_err().errno(), "EINVAL");
    put(&store, "/x", b"1");
    put(&store, "/y", b"2");
    let kept = store.write_in("", move |w, vol| {
        w.rename(vol, ROOT_INO, "x", ROOT_INO, "y", true, None)
    });
    assert_eq!(kept.unwrap_err().errno(), "EEXIST");
    // A directory moved keeps its parent link right: moving it back under itself is still refused.
    store
        .write_in("", move |w, vol| {
            w.rename(vol, top, "b", ROOT_INO, "b", false, None)
        })
        .unwrap();
    let b = store.stat(&p("/b")).unwrap().inode;
    let cycle = store.write_in("", move |w, vol| {
        w.rename(vol, ROOT_INO, "b", a, "b", false, None)
    });
    assert_eq!(cycle.unwrap_err().errno(), "EINVAL");
    assert_eq!(store.lookup_at("", b, "c").unwrap().inode, a);
}

#[test]
fn events_carry_inodes_for_cache_invalidation() {
    let (_dir, store) = store();
    let start = store.revision().unwrap();
    let stat = put(&store, "/k", b"v");
    store.rename(&p("/k"), &p("/k2")).unwrap();
    let (events, _) = store.changes_after(start, |_| true).unwrap();
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

#[test]
fn a_failing_write_in_a_group_takes_no_other_write_with_it() {
    let (_dir, store) = store();
    let store = std::sync::Arc::new(store);
    put(&store, "/taken", b"");
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                if i % 8 == 0 {
                    // Fails after the group may already hold other writes.
                    let create_only = PutOptions {
                        if_version: Some(0),
                        ..Default::default()
                    };
                    store.put(&p("/taken"), b"lost", &create_only).is_err()
                } else {
                    store
                        .put(&p(&format!("/g/k{i}")), b"kept", &PutOptions::default())
                        .is_ok()
                }
            })
        })
        .collect();
    for thread in threads {
        assert!(thread.join().unwrap(), "a write got the wrong answer");
    }
    let (entries, _) = store.list(&p("/g"), "", 100).unwrap();
    assert_eq!(entries.len(), 28);
    assert_eq!(store.get(&p("/taken")).unwrap().0, b"");
}

#[tokio::test]
async fn lazy_writes_are_visible_at_once_and_kept_after_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ino = {
        let store = Store::open(dir.path()).unwrap();
        let ino = file_in(&store, "", ROOT_INO, "lazy");
        store
            .submit_lazy(Store::write_at_op("", ino, 0, b"not yet synced".to_vec()))
            .await
            .unwrap();
        assert_eq!(store.read_at("", ino, 0, 100).unwrap(), b"not yet synced");
        store.flush().await.unwrap();
        ino
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.read_at("", ino, 0, 100).unwrap(), b"not yet synced");
}
