//! POSIX behaviour through a real mount, with the tools people use: cp, mv, ls, find,
//! tar, rsync, sqlite3; errnos; open-but-unlinked files; changes made elsewhere.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Node, sh};

/// The names in directory `dir`.
fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

fn errno_of(result: std::io::Result<impl Sized>) -> i32 {
    match result {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

#[test]
fn cp_copies_files_that_read_back_identically_after_a_remount() {
    let node = Node::start();
    node.create_volume("copies", 0);
    let source = node.root().join("source");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("small"), b"hello\n").unwrap();
    fs::write(source.join("empty"), b"").unwrap();
    let big = pattern(5 * 1024 * 1024 + 12345, 7);
    fs::write(source.join("big"), &big).unwrap();
    let mount = node.mount("copies", "");
    sh(&format!(
        "cp -a {}/. {}/",
        source.display(),
        mount.path.display()
    ));
    assert_eq!(fs::read(mount.join("big")).unwrap(), big);
    mount.unmount();
    let again = node.mount_on("copies", &mount.path, "");
    sh(&format!(
        "cmp {}/big {}/big",
        source.display(),
        again.path.display()
    ));
    assert_eq!(fs::read(again.join("small")).unwrap(), b"hello\n");
    assert_eq!(fs::metadata(again.join("empty")).unwrap().len(), 0);
}

#[test]
fn writes_at_offsets_truncate_and_extend_like_a_local_file() {
    let node = Node::start();
    node.create_volume("offsets", 0);
    let mount = node.mount("offsets", "");
    let path = mount.join("f");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.write_all(&pattern(200_000, 1)).unwrap();
    file.seek(SeekFrom::Start(70_000)).unwrap();
    file.write_all(b"MIDDLE").unwrap();
    file.set_len(100_000).unwrap();
    file.seek(SeekFrom::Start(150_000)).unwrap();
    file.write_all(b"END").unwrap();
    drop(file);
    let mut expected = pattern(200_000, 1);
    expected[70_000..70_006].copy_from_slice(b"MIDDLE");
    expected.truncate(100_000);
    expected.resize(150_000, 0);
    expected.extend_from_slice(b"END");
    assert_eq!(fs::read(&path).unwrap(), expected);
    // O_APPEND.
    let mut append = OpenOptions::new().append(true).open(&path).unwrap();
    append.write_all(b"++").unwrap();
    drop(append);
    assert_eq!(fs::metadata(&path).unwrap().len(), 150_005);
}

#[test]
fn mv_renames_across_directories_and_over_an_existing_file() {
    let node = Node::start();
    node.create_volume("moves", 0);
    let mount = node.mount("moves", "");
    let root = &mount.path;
    sh(&format!(
        "cd {} && mkdir -p a/b c && echo one > a/b/f && echo two > c/g && mv a/b/f c/g && mv a/b c/b2 && mv c a2",
        root.display()
    ));
    assert_eq!(fs::read_to_string(root.join("a2/g")).unwrap(), "one\n");
    assert!(root.join("a2/b2").is_dir());
    assert!(!root.join("a/b").exists());
    assert!(!root.join("c").exists());
    // A directory cannot move into itself; renameat2 RENAME_NOREPLACE refuses an existing target.
    assert_eq!(
        errno_of(fs::rename(root.join("a2"), root.join("a2/b2/inside"))),
        nix::libc::EINVAL
    );
    fs::write(root.join("x"), b"x").unwrap();
    fs::write(root.join("y"), b"y").unwrap();
    let noreplace = nix::fcntl::renameat2(
        nix::fcntl::AT_FDCWD,
        &root.join("x"),
        nix::fcntl::AT_FDCWD,
        &root.join("y"),
        nix::fcntl::RenameFlags::RENAME_NOREPLACE,
    );
    assert_eq!(noreplace, Err(nix::errno::Errno::EEXIST));
    assert_eq!(fs::read(root.join("y")).unwrap(), b"y");
}

#[test]
fn errnos_are_the_ones_posix_promises() {
    let node = Node::start();
    node.create_volume("errnos", 0);
    let mount = node.mount("errnos", "");
    let root = &mount.path;
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/f"), b"x").unwrap();
    assert_eq!(errno_of(fs::create_dir(root.join("d"))), nix::libc::EEXIST);
    assert_eq!(
        errno_of(fs::remove_dir(root.join("d"))),
        nix::libc::ENOTEMPTY
    );
    assert_eq!(errno_of(fs::remove_file(root.join("d"))), nix::libc::EISDIR);
    assert_eq!(
        errno_of(fs::remove_dir(root.join("d/f"))),
        nix::libc::ENOTDIR
    );
    assert_eq!(errno_of(File::open(root.join("nope"))), nix::libc::ENOENT);
    assert_eq!(errno_of(fs::read_dir(root.join("d/f"))), nix::libc::ENOTDIR);
    let long = "n".repeat(256);
    assert_eq!(
        errno_of(File::create(root.join(&long))),
        nix::libc::ENAMETOOLONG
    );
    fs::write(root.join("n".repeat(255)), b"max").unwrap();
    assert_eq!(
        errno_of(fs::rename(root.join("d/f"), root.join("missing/f"))),
        nix::libc::ENOENT
    );
    fs::create_dir(root.join("e")).unwrap();
    assert_eq!(
        errno_of(fs::rename(root.join("e"), root.join("d/f"))),
        nix::libc::ENOTDIR
    );
    assert_eq!(
        errno_of(fs::rename(root.join("d/f"), root.join("e"))),
        nix::libc::EISDIR
    );
    assert_eq!(
        errno_of(fs::hard_link(root.join("d"), root.join("dlink"))),
        nix::libc::EPERM
    );
}

#[test]
fn symlinks_hard_links_and_attributes_behave() {
    let node = Node::start();
    node.create_volume("links", 0);
    let mount = node.mount("links", "");
    let root = &mount.path;
    fs::write(root.join("target"), b"content").unwrap();
    symlink("target", root.join("sym")).unwrap();
    assert_eq!(
        fs::read_link(root.join("sym")).unwrap(),
        Path::new("target")
    );
    assert_eq!(fs::read(root.join("sym")).unwrap(), b"content");
    assert!(
        fs::symlink_metadata(root.join("sym"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    fs::hard_link(root.join("target"), root.join("hard")).unwrap();
    let meta = fs::metadata(root.join("hard")).unwrap();
    assert_eq!(meta.nlink(), 2);
    assert_eq!(meta.ino(), fs::metadata(root.join("target")).unwrap().ino());
    fs::set_permissions(root.join("target"), fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(
        fs::metadata(root.join("hard")).unwrap().mode() & 0o7777,
        0o640
    );
    nix::unistd::chown(&root.join("target"), Some(1234.into()), Some(5678.into())).unwrap();
    let meta = fs::metadata(root.join("target")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    sh(&format!(
        "touch -d '2001-02-03 04:05:06.5 UTC' {}/target",
        root.display()
    ));
    let meta = fs::metadata(root.join("target")).unwrap();
    assert_eq!(meta.mtime(), 981_173_106);
    assert_eq!(meta.mtime_nsec(), 500_000_000);
    fs::remove_file(root.join("target")).unwrap();
    assert_eq!(fs::read(root.join("hard")).unwrap(), b"content");
    assert_eq!(fs::metadata(root.join("hard")).unwrap().nlink(), 1);
    let statfs = nix::sys::statvfs::statvfs(root).unwrap();
    assert_eq!(statfs.name_max(), 255);
    assert!(statfs.blocks() > 0);
}

#[test]
fn an_unlinked_open_file_stays_readable_until_closed() {
    let node = Node::start();
    node.create_volume("unlinked", 0);
    let mount = node.mount("unlinked", "");
    let path = mount.join("open-me");
    fs::write(&path, b"still here").unwrap();
    let inode = fs::metadata(&path).unwrap().ino();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    fs::remove_file(&path).unwrap();
    assert!(!path.exists());
    let names: Vec<_> = fs::read_dir(&mount.path)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "the hidden file is listed: {names:?}");
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    assert_eq!(text, "still here");
    file.write_all(b" and writable").unwrap();
    assert_eq!(file.metadata().unwrap().nlink(), 0);
    // A new file may take the old name meanwhile.
    fs::write(&path, b"new").unwrap();
    drop(file);
    let hidden = mount.join(&format!(".auraefs-{inode}"));
    common::wait_until(Duration::from_secs(2), "the hidden file to go", || {
        !hidden.exists()
    });
    assert_eq!(fs::read(&path).unwrap(), b"new");
}

#[test]
fn renaming_over_an_open_file_keeps_the_old_content_readable() {
    let node = Node::start();
    node.create_volume("overwrite", 0);
    let mount = node.mount("overwrite", "");
    fs::write(mount.join("config"), b"old").unwrap();
    fs::write(mount.join("config.new"), b"new").unwrap();
    let mut old = File::open(mount.join("config")).unwrap();
    fs::rename(mount.join("config.new"), mount.join("config")).unwrap();
    assert_eq!(fs::read(mount.join("config")).unwrap(), b"new");
    let mut text = String::new();
    old.read_to_string(&mut text).unwrap();
    assert_eq!(text, "old");
    drop(old);
    assert_eq!(names_in(&mount.path), BTreeSet::from(["config".to_owned()]));
}

#[test]
fn listing_resumes_by_name_while_the_directory_changes() {
    let node = Node::start();
    node.create_volume("listing", 0);
    let mount = node.mount("listing", "");
    let dir = mount.join("many");
    fs::create_dir(&dir).unwrap();
    let originals: BTreeSet<String> = (0..2000).map(|i| format!("file-{i:05}")).collect();
    for name in &originals {
        File::create(dir.join(name)).unwrap();
    }
    // Read part of the listing, change the directory, read the rest.
    let mut reader = fs::read_dir(&dir).unwrap();
    let mut seen = Vec::new();
    for _ in 0..500 {
        seen.push(
            reader
                .next()
                .unwrap()
                .unwrap()
                .file_name()
                .into_string()
                .unwrap(),
        );
    }
    for i in (0..2000).step_by(7) {
        let name = format!("file-{i:05}");
        if !seen.contains(&name) {
            fs::remove_file(dir.join(&name)).unwrap();
        }
    }
    for i in 0..100 {
        File::create(dir.join(format!("added-{i}"))).unwrap();
    }
    for entry in reader {
        seen.push(entry.unwrap().file_name().into_string().unwrap());
    }
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an entry was listed twice");
    // Entries that stayed are listed exactly once; removed or added ones may or may not
    // be (POSIX leaves it open, and libc buffers ahead).
    for name in &originals {
        let index: usize = name[5..].parse().unwrap();
        let removed = index.is_multiple_of(7) && !seen[..500].contains(name);
        if !removed {
            assert!(unique.contains(name), "{name} was skipped");
        }
    }
    // ls and find agree with the store.
    let count = sh(&format!("ls -1 {} | wc -l", dir.display()));
    let expected = fs::read_dir(&dir).unwrap().count();
    assert_eq!(count.trim().parse::<usize>().unwrap(), expected);
    let found = sh(&format!("find {} -type f | wc -l", mount.path.display()));
    assert_eq!(found.trim().parse::<usize>().unwrap(), expected);
}

#[test]
fn tar_and_rsync_round_trip_a_tree() {
    let node = Node::start();
    node.create_volume("trees", 0);
    let mount = node.mount("trees", "");
    let source = node.root().join("tree");
    fs::create_dir_all(source.join("a/b/c")).unwrap();
    fs::write(source.join("a/one"), pattern(70_000, 3)).unwrap();
    fs::write(source.join("a/b/two"), b"two").unwrap();
    fs::write(source.join("a/b/c/three"), pattern(300_000, 4)).unwrap();
    symlink("../one", source.join("a/b/link")).unwrap();
    fs::set_permissions(source.join("a/b/two"), fs::Permissions::from_mode(0o600)).unwrap();
    let tarball = node.root().join("tree.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        source.display(),
        tarball.display()
    ));
    fs::create_dir(mount.join("untarred")).unwrap();
    sh(&format!(
        "tar -C {} -xf {}",
        mount.join("untarred").display(),
        tarball.display()
    ));
    sh(&format!(
        "diff -r {} {}",
        source.display(),
        mount.join("untarred").display()
    ));
    // rsync -a copies, then finds nothing left to do.
    sh(&format!(
        "rsync -a {}/ {}/",
        source.display(),
        mount.join("synced").display()
    ));
    let again = sh(&format!(
        "rsync -a --checksum --itemize-changes {}/ {}/",
        source.display(),
        mount.join("synced").display()
    ));
    assert!(again.trim().is_empty(), "rsync found differences: {again}");
    let meta = fs::metadata(mount.join("synced/a/b/two")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    // tar back out of the mount.
    sh(&format!(
        "tar -C {} -cf {} . && tar -tf {} | grep -q 'c/three'",
        mount.join("synced").display(),
        node.root().join("back.tar").display(),
        node.root().join("back.tar").display()
    ));
}

#[test]
fn sqlite_keeps_a_consistent_database_inside_the_mount() {
    let node = Node::start();
    node.create_volume("db", 0);
    let mount = node.mount("db", "");
    let db = mount.join("app.db");
    let script = "
        PRAGMA journal_mode=DELETE;
        CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT);
        BEGIN;
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
          INSERT INTO kv SELECT i, hex(randomblob(40)) FROM n;
        COMMIT;
        UPDATE kv SET v = 'changed' WHERE k % 10 = 0;
        DELETE FROM kv WHERE k > 4500;
        SELECT count(*) FROM kv;
        PRAGMA integrity_check;";
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg(script)
        .output()
        .expect("sqlite3 (apt sqlite3)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("4500") && text.contains("ok"), "{text}");
    let wal = Command::new("sqlite3")
        .arg(&db)
        .arg("PRAGMA journal_mode=WAL; INSERT INTO kv VALUES (9999, 'wal'); SELECT v FROM kv WHERE k = 9999; PRAGMA integrity_check;")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&wal.stdout);
    assert!(
        wal.status.success() && text.contains("wal") && text.contains("ok"),
        "{text}"
    );
}

#[test]
fn a_kv_put_shows_in_the_default_namespace_mount_within_a_second() {
    let node = Node::start();
    let mount = node.mount("default", "");
    let out = node.aurae(&["kv", "put", "/services/web/port", "8080"]);
    assert!(out.status.success());
    assert_eq!(fs::read(mount.join("services/web/port")).unwrap(), b"8080");
    // Changes made elsewhere after the kernel cached the file and its directory.
    let out = node.aurae(&["kv", "put", "/services/web/port", "9090"]);
    assert!(out.status.success());
    let start = Instant::now();
    common::wait_until(Duration::from_secs(1), "the new value", || {
        fs::read(mount.join("services/web/port")).is_ok_and(|v| v == b"9090")
    });
    // The kernel remembers the absent name (a negative entry); the put must still show.
    assert!(!mount.join("services/web/host").exists());
    let out = node.aurae(&["kv", "put", "/services/web/host", "example"]);
    assert!(out.status.success());
    common::wait_until(Duration::from_secs(1), "the new file", || {
        mount.join("services/web/host").exists()
    });
    let out = node.aurae(&["kv", "rm", "/services/web/port"]);
    assert!(out.status.success());
    common::wait_until(Duration::from_secs(1), "the removal", || {
        !mount.join("services/web/port").exists()
    });
    assert!(start.elapsed() < Duration::from_secs(3));
    // And the other way: a file written through the mount is a kv entry.
    fs::write(mount.join("services/web/from-fuse"), b"hi").unwrap();
    let out = node.aurae(&["kv", "get", "/services/web/from-fuse"]);
    assert_eq!(out.stdout, b"hi");
}

#[test]
fn a_directory_made_here_still_shows_names_added_elsewhere() {
    let node = Node::start();
    let mount = node.mount("default", "");
    fs::create_dir(mount.join("made-here")).unwrap();
    fs::write(mount.join("made-here/mine"), b"1").unwrap();
    // Answered by the mount itself: it has seen every name of this directory.
    assert!(!mount.join("made-here/theirs").exists());
    let out = node.aurae(&["kv", "put", "/made-here/theirs", "2"]);
    assert!(out.status.success());
    common::wait_until(Duration::from_secs(1), "the name added elsewhere", || {
        mount.join("made-here/theirs").exists()
    });
    assert_eq!(fs::read(mount.join("made-here/theirs")).unwrap(), b"2");
    // The mount's own changes keep the directory known and right.
    fs::rename(mount.join("made-here/mine"), mount.join("made-here/moved")).unwrap();
    // Without the kernel's dentries, every name is looked up again.
    fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    assert!(!mount.join("made-here/mine").exists());
    assert_eq!(fs::read(mount.join("made-here/moved")).unwrap(), b"1");
    fs::remove_file(mount.join("made-here/moved")).unwrap();
    assert!(!mount.join("made-here/moved").exists());
    assert_eq!(
        names_in(&mount.join("made-here")),
        BTreeSet::from(["theirs".to_owned()])
    );
}

#[test]
fn a_rename_shows_at_once_in_both_directories_and_the_moved_ctime() {
    let node = Node::start();
    node.create_volume("moves", 0);
    let mount = node.mount("moves", "");
    fs::create_dir_all(mount.join("from/sub")).unwrap();
    fs::create_dir(mount.join("to")).unwrap();
    assert_eq!(fs::metadata(mount.join("from")).unwrap().nlink(), 3);
    let before = fs::metadata(mount.join("from/sub"))
        .unwrap()
        .ctime_nsec_total();
    std::thread::sleep(Duration::from_millis(20));
    fs::rename(mount.join("from/sub"), mount.join("to/sub")).unwrap();
    assert_eq!(fs::metadata(mount.join("from")).unwrap().nlink(), 2);
    assert_eq!(fs::metadata(mount.join("to")).unwrap().nlink(), 3);
    let after = fs::metadata(mount.join("to/sub"))
        .unwrap()
        .ctime_nsec_total();
    assert!(
        after > before,
        "the moved directory's ctime did not advance"
    );
    assert!(mount.join("to/sub").is_dir());
    assert!(!mount.join("from/sub").exists());
}

/// A timestamp's nanoseconds since the epoch.
trait CtimeNanos {
    fn ctime_nsec_total(&self) -> i128;
}

impl CtimeNanos for fs::Metadata {
    fn ctime_nsec_total(&self) -> i128 {
        i128::from(self.ctime()) * 1_000_000_000 + i128::from(self.ctime_nsec())
    }
}

#[test]
fn a_mount_reads_ahead_far_enough_for_sequential_reads() {
    let node = Node::start();
    node.create_volume("readahead", 0);
    let mount = node.mount("readahead", "");
    let dev = fs::metadata(&mount.path).unwrap().dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let setting = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    assert_eq!(fs::read_to_string(setting).unwrap().trim(), "4096");
}

#[test]
fn a_setgid_directory_passes_on_its_group() {
    let node = Node::start();
    node.create_volume("groups", 0);
    let mount = node.mount("groups", "");
    let dir = mount.join("team");
    fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, None, Some(4242)).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o2775)).unwrap();
    fs::write(dir.join("file"), b"x").unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    symlink("file", dir.join("link")).unwrap();
    let file = fs::metadata(dir.join("file")).unwrap();
    assert_eq!(
        file.gid(),
        4242,
        "a file takes the setgid directory's group"
    );
    assert_eq!(file.mode() & 0o2000, 0, "a file does not become setgid");
    let sub = fs::metadata(dir.join("sub")).unwrap();
    assert_eq!(sub.gid(), 4242);
    assert_eq!(sub.mode() & 0o2000, 0o2000, "a directory inherits setgid");
    assert_eq!(fs::symlink_metadata(dir.join("link")).unwrap().gid(), 4242);
    // Outside the setgid directory the caller's group applies.
    fs::write(mount.join("plain"), b"y").unwrap();
    assert_eq!(fs::metadata(mount.join("plain")).unwrap().gid(), 0);
}

#[test]
fn new_files_belong_to_the_caller_and_mode_bits_are_enforced() {
    let node = Node::start();
    node.create_volume("owners", 0);
    let mount = node.mount("owners", "allow_other,default_permissions");
    // The temp dir above the mount must be traversable by nobody.
    let mut dir = mount.path.parent();
    while let Some(d) = dir {
        if d.starts_with(node.root()) || d == node.root() {
            let mode = fs::metadata(d).unwrap().mode();
            fs::set_permissions(d, fs::Permissions::from_mode(mode | 0o711)).unwrap();
        }
        dir = d.parent();
    }
    fs::create_dir(mount.join("shared")).unwrap();
    fs::set_permissions(mount.join("shared"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(mount.join("shared/roots"), b"root's").unwrap();
    let as_nobody = |script: &str| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sh",
                "-c",
                script,
            ])
            .current_dir("/")
            .output()
            .unwrap()
    };
    let out = as_nobody(&format!(
        "echo mine > {0}/shared/nobodys && mkdir {0}/shared/nd",
        mount.path.display()
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = fs::metadata(mount.join("shared/nobodys")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(fs::metadata(mount.join("shared/nd")).unwrap().uid(), 65534);
    let denied = as_nobody(&format!("echo x >> {}/shared/roots", mount.path.display()));
    assert!(!denied.status.success());
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
}

#[test]
fn a_read_only_mount_refuses_changes_with_erofs() {
    let node = Node::start();
    node.create_volume("readonly", 0);
    {
        let writable = node.mount("readonly", "");
        fs::write(writable.join("kept"), b"k").unwrap();
        writable.unmount();
    }
    let dir = node.mountpoint("readonly");
    let mount = node.mount_on("readonly", &dir, "ro");
    assert_eq!(fs::read(mount.join("kept")).unwrap(), b"k");
    let err = File::create(mount.join("new")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EROFS));
    assert_eq!(
        errno_of(fs::remove_file(mount.join("kept"))),
        nix::libc::EROFS
    );
}

#[test]
fn a_full_volume_reports_enospc() {
    let node = Node::start();
    node.create_volume("small", 1024 * 1024);
    let mount = node.mount("small", "");
    let mut file = File::create(mount.join("fill")).unwrap();
    let chunk = vec![7u8; 256 * 1024];
    let mut result = Ok(());
    for _ in 0..8 {
        result = file.write_all(&chunk);
        if result.is_err() {
            break;
        }
    }
    let err = result.expect_err("a 2 MiB write into a 1 MiB quota succeeded");
    assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC), "{err}");
    assert_eq!(err.kind(), ErrorKind::StorageFull);
}

#[test]
fn acknowledged_writes_survive_a_crash_of_auraed_and_fsync_succeeds() {
    let mut node = Node::start();
    node.create_volume("crash", 0);
    let mount = node.mount("crash", "");
    let data = pattern(3 * 1024 * 1024 + 7, 11);
    let mut file = File::create(mount.join("logged")).unwrap();
    file.write_all(&data).unwrap();
    file.sync_all().unwrap();
    file.write_all(b"after the sync").unwrap();
    drop(file);
    node.crash_and_restart();
    // The mount reconnects by itself.
    let mut expected = data;
    expected.extend_from_slice(b"after the sync");
    common::wait_until(
        Duration::from_secs(5),
        "the mount to reach auraed again",
        || fs::read(mount.join("logged")).is_ok(),
    );
    assert_eq!(fs::read(mount.join("logged")).unwrap(), expected);
    fs::write(mount.join("after-restart"), b"ok").unwrap();
    assert_eq!(fs::read(mount.join("after-restart")).unwrap(), b"ok");
}

/// Files the crash test attempts: far more than get written before the kill.
const CRASH_FILES: usize = 1_000;

/// The crash test's file `i`: inline, content-file and multi-megabyte sizes in turn.
fn crash_file(i: usize) -> Vec<u8> {
    let len = match i % 3 {
        0 => 100 + i,
        1 => 5_000 + i,
        _ => 300_000 + i,
    };
    pattern(len, i as u64)
}

#[test]
fn files_closed_before_auraed_is_killed_are_whole_after_it_restarts() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let mut node = Node::start();
    node.create_volume("crashfiles", 0);
    let mount = node.mount("crashfiles", "");
    let dir = mount.join("files");
    fs::create_dir(&dir).unwrap();
    let progress = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (dir, progress) = (dir.clone(), progress.clone());
        std::thread::spawn(move || {
            // A file counts as written once close(2) said so (a failed flush shows there).
            let write = |i: usize| -> std::io::Result<()> {
                let mut file = File::create(dir.join(format!("f{i}")))?;
                file.write_all(&crash_file(i))?;
                nix::unistd::close(file).map_err(std::io::Error::from)
            };
            let mut closed = Vec::new();
            for i in 0..CRASH_FILES {
                if write(i).is_err() {
                    break;
                }
                closed.push(i);
                progress.store(closed.len(), Ordering::SeqCst);
            }
            closed
        })
    };
    common::wait_until(Duration::from_secs(30), "files before the kill", || {
        progress.load(Ordering::SeqCst) >= 60
    });
    let at_kill = progress.load(Ordering::SeqCst);
    node.crash_and_restart();
    let closed = writer.join().unwrap();
    assert!(
        at_kill < CRASH_FILES,
        "the kill came after every file was written"
    );
    common::wait_until(
        Duration::from_secs(5),
        "the mount to reach auraed again",
        || fs::read_dir(&dir).is_ok(),
    );
    for i in closed {
        let found = fs::read(dir.join(format!("f{i}")));
        assert!(
            found.as_deref().ok() == Some(crash_file(i).as_slice()),
            "file f{i}, closed before the kill, is not whole after it"
        );
    }
}

#[test]
fn fifos_sockets_and_device_nodes_are_kept_as_what_they_are() {
    use std::os::unix::fs::FileTypeExt;
    let node = Node::start();
    node.create_volume("special", 0);
    let mount = node.mount("special", "");
    let root = &mount.path;
    nix::unistd::mkfifo(
        &root.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    let device = nix::sys::stat::makedev(1, 3);
    nix::sys::stat::mknod(
        &root.join("null"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        device,
    )
    .unwrap();
    let kind = |name: &str| fs::symlink_metadata(root.join(name)).unwrap();
    assert!(kind("pipe").file_type().is_fifo());
    assert_eq!(kind("pipe").mode() & 0o777, 0o640);
    assert!(kind("sock").file_type().is_socket());
    assert!(kind("null").file_type().is_char_device());
    assert_eq!(kind("null").rdev(), device);
    // The kernel gives a FIFO its behaviour: a writer and a reader meet through it.
    let path = root.join("pipe");
    let writer = std::thread::spawn(move || fs::write(path, b"through the pipe").unwrap());
    assert_eq!(fs::read(root.join("pipe")).unwrap(), b"through the pipe");
    writer.join().unwrap();
}
