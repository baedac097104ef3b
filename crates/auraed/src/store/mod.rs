//! The database: auraed's source of truth, and the filesystem-like namespace on top of it.
//!
//! One redb file in the data directory holds inodes, directory entries, file content in
//! chunks, and a bounded log of changes for Watch. Every write is one transaction
//! committed durably (fsync) before it is acknowledged, so an acknowledged write survives
//! `kill -9` and power loss, and a failed one leaves nothing behind. This module never
//! follows symlinks and never touches a database it cannot read: it reports it.

pub mod error;
pub mod record;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aurae_core::path::StorePath;
use aurae_proto::v0::{ChangeKind, EntryKind, Stat, WatchEvent};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition, WriteTransaction};
use tokio::sync::broadcast;

pub use error::StoreError;
use record::{ChangeRecord, Inode};

/// The database file inside the data directory.
pub const DB_FILE: &str = "aurae.redb";
/// The schema this build writes; older ones are migrated at open.
pub const SCHEMA_VERSION: u64 = 1;
/// Size of a content chunk: a small write rewrites one chunk, not the file.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// How many changes the log keeps for Watch to resume from.
pub const CHANGES_KEPT: u64 = 100_000;
/// The root directory's inode.
pub const ROOT_INO: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
const DIRENTS: TableDefinition<(u64, &str), u64> = TableDefinition::new("dirents");
const CHUNKS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("chunks");
const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");

const META_SCHEMA: &str = "schema";
const META_REVISION: &str = "revision";
const META_NEXT_INO: &str = "next_ino";

/// What a Put writes.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Permission bits for a new file.
    pub mode: Option<u32>,
    /// Compare-and-swap token (0: only if absent).
    pub if_version: Option<u64>,
    /// Whether missing parents are created.
    pub parents: Parents,
}

/// Whether missing parent directories are created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Parents {
    /// Create them (mkdir -p).
    #[default]
    Create,
    /// Fail with ENOENT.
    MustExist,
}

/// The events one committed write transaction made: published whole, so that a watcher
/// can tell by the revision alone what it has seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// The revision of the transaction.
    pub revision: u64,
    /// Its changes, in order.
    pub events: Vec<WatchEvent>,
}

/// The store: open once per daemon, shared by the services.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
    changes: broadcast::Sender<Arc<Committed>>,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn decode(ino: u64, bytes: &[u8]) -> Result<Inode, StoreError> {
    Inode::decode(bytes).map_err(|e| StoreError::Damaged {
        ino,
        reason: e.to_string(),
    })
}

fn get_inode(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    ino: u64,
) -> Result<Inode, StoreError> {
    let guard = inodes.get(ino)?.ok_or_else(|| StoreError::Damaged {
        ino,
        reason: "a directory entry points at a missing inode".to_owned(),
    })?;
    decode(ino, guard.value())
}

fn lookup(
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    parent: u64,
    name: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(dirents.get((parent, name))?.map(|g| g.value()))
}

/// Walks `path` from the root without following symlinks.
fn resolve(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    path: &StorePath,
) -> Result<(u64, Inode), StoreError> {
    let mut ino = ROOT_INO;
    let mut inode = get_inode(inodes, ino)?;
    let mut walked = StorePath::root();
    for name in path.components() {
        if !inode.is_dir() {
            return Err(StoreError::NotADirectory(walked.to_string()));
        }
        walked = walked.join(name);
        ino =
            lookup(dirents, ino, name)?.ok_or_else(|| StoreError::NotFound(walked.to_string()))?;
        inode = get_inode(inodes, ino)?;
    }
    Ok((ino, inode))
}

fn read_content(
    chunks: &impl ReadableTable<(u64, u64), &'static [u8]>,
    ino: u64,
    size: u64,
) -> Result<Vec<u8>, StoreError> {
    let mut content = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    for entry in chunks.range((ino, 0)..=(ino, u64::MAX))? {
        let (_, chunk) = entry?;
        content.extend_from_slice(chunk.value());
    }
    content.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    Ok(content)
}

/// The stat of `inode` at `path`.
pub fn stat_of(path: &StorePath, ino: u64, inode: &Inode) -> Stat {
    Stat {
        path: path.to_string(),
        kind: inode.kind,
        inode: ino,
        mode: inode.mode,
        uid: inode.uid,
        gid: inode.gid,
        size: inode.size,
        nlink: inode.nlink,
        mtime_ns: inode.mtime_ns,
        ctime_ns: inode.ctime_ns,
        atime_ns: inode.atime_ns,
        version: inode.version,
        target: inode.target.clone(),
    }
}

/// The tables of one write transaction, and the revision it commits as.
struct Writer<'t> {
    meta: Table<'t, &'static str, u64>,
    inodes: Table<'t, u64, &'static [u8]>,
    dirents: Table<'t, (u64, &'static str), u64>,
    chunks: Table<'t, (u64, u64), &'static [u8]>,
    changes: Table<'t, u64, &'static [u8]>,
    revision: u64,
    now: i64,
    events: Vec<WatchEvent>,
}

impl<'t> Writer<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, StoreError> {
        let meta = txn.open_table(META)?;
        let revision = meta.get(META_REVISION)?.map(|g| g.value()).unwrap_or(0) + 1;
        Ok(Self {
            meta,
            inodes: txn.open_table(INODES)?,
            dirents: txn.open_table(DIRENTS)?,
            chunks: txn.open_table(CHUNKS)?,
            changes: txn.open_table(CHANGES)?,
            revision,
            now: now_ns(),
            events: Vec::new(),
        })
    }

    fn inode(&self, ino: u64) -> Result<Inode, StoreError> {
        get_inode(&self.inodes, ino)
    }

    fn save(&mut self, ino: u64, inode: &Inode) -> Result<(), StoreError> {
        self.inodes.insert(ino, inode.encode_to_vec().as_slice())?;
        Ok(())
    }

    fn resolve(&self, path: &StorePath) -> Result<(u64, Inode), StoreError> {
        resolve(&self.inodes, &self.dirents, path)
    }

    fn lookup(&self, parent: u64, name: &str) -> Result<Option<u64>, StoreError> {
        lookup(&self.dirents, parent, name)
    }

    fn allocate(&mut self, inode: &Inode) -> Result<u64, StoreError> {
        let ino = self
            .meta
            .get(META_NEXT_INO)?
            .map(|g| g.value())
            .unwrap_or(ROOT_INO + 1);
        self.meta.insert(META_NEXT_INO, ino + 1)?;
        self.save(ino, inode)?;
        Ok(ino)
    }

    /// Marks a directory's content as changed (an entry came or went).
    fn touch_dir(&mut self, ino: u64, nlink_delta: i32) -> Result<(), StoreError> {
        let mut dir = self.inode(ino)?;
        dir.mtime_ns = self.now;
        dir.ctime_ns = self.now;
        dir.version = self.revision;
        dir.nlink = dir.nlink.saturating_add_signed(nlink_delta);
        self.save(ino, &dir)
    }

    /// The directory that will hold `path`, created with its parents if asked.
    fn parent_dir(&mut self, path: &StorePath, parents: Parents) -> Result<u64, StoreError> {
        let (parent, _) = path
            .split_last()
            .ok_or_else(|| StoreError::Exists("/".to_owned()))?;
        match (self.resolve(&parent), parents) {
            (Ok((ino, inode)), _) if inode.is_dir() => Ok(ino),
            (Ok(_), _) => Err(StoreError::NotADirectory(parent.to_string())),
            (Err(StoreError::NotFound(_)), Parents::Create) => self
                .mkdir(&parent, 0o755, Parents::Create)
                .map(|(ino, _)| ino),
            (Err(e), _) => Err(e),
        }
    }

    /// Links a new inode under its parent.
    fn link_new(
        &mut self,
        path: &StorePath,
        parent: u64,
        inode: &Inode,
    ) -> Result<u64, StoreError> {
        let (_, name) = path.split_last().expect("not the root");
        let ino = self.allocate(inode)?;
        self.dirents.insert((parent, name), ino)?;
        self.touch_dir(parent, if inode.is_dir() { 1 } else { 0 })?;
        Ok(ino)
    }

    fn mkdir(
        &mut self,
        path: &StorePath,
        mode: u32,
        parents: Parents,
    ) -> Result<(u64, Inode), StoreError> {
        if let Ok((ino, inode)) = self.resolve(path) {
            return match (inode.is_dir(), parents) {
                (true, Parents::Create) => Ok((ino, inode)),
                _ => Err(StoreError::Exists(path.to_string())),
            };
        }
        let parent = self.parent_dir(path, parents)?;
        let inode = Inode::new(EntryKind::Directory, mode, self.now, self.revision);
        let ino = self.link_new(path, parent, &inode)?;
        self.record(ChangeKind::Mkdir, path, None);
        Ok((ino, inode))
    }

    fn write_content(&mut self, ino: u64, content: &[u8]) -> Result<(), StoreError> {
        self.chunks
            .retain_in((ino, 0)..=(ino, u64::MAX), |_, _| false)?;
        for (index, chunk) in content.chunks(CHUNK_SIZE).enumerate() {
            self.chunks.insert((ino, index as u64), chunk)?;
        }
        Ok(())
    }

    /// Drops one link to `ino`; frees it when no link is left.
    fn unlink_inode(&mut self, ino: u64, mut inode: Inode) -> Result<(), StoreError> {
        inode.nlink = inode.nlink.saturating_sub(1);
        if inode.is_dir() || inode.nlink == 0 {
            self.chunks
                .retain_in((ino, 0)..=(ino, u64::MAX), |_, _| false)?;
            self.inodes.remove(ino)?;
            Ok(())
        } else {
            inode.ctime_ns = self.now;
            self.save(ino, &inode)
        }
    }

    /// Removes everything below directory `ino`.
    fn remove_children(&mut self, ino: u64) -> Result<(), StoreError> {
        let children: Vec<(String, u64)> = self
            .dirents
            .range((ino, "")..)?
            .map_while(|entry| {
                entry.ok().and_then(|(key, child)| {
                    let (parent, name) = key.value();
                    (parent == ino).then(|| (name.to_owned(), child.value()))
                })
            })
            .collect();
        for (name, child) in children {
            let inode = self.inode(child)?;
            if inode.is_dir() {
                self.remove_children(child)?;
            }
            self.dirents.remove((ino, name.as_str()))?;
            self.unlink_inode(child, inode)?;
        }
        Ok(())
    }

    fn has_children(&self, ino: u64) -> Result<bool, StoreError> {
        Ok(self
            .dirents
            .range((ino, "")..)?
            .next()
            .transpose()?
            .is_some_and(|(key, _)| key.value().0 == ino))
    }

    fn record(&mut self, kind: ChangeKind, path: &StorePath, to: Option<&StorePath>) {
        self.events.push(WatchEvent {
            revision: self.revision,
            kind: kind as i32,
            path: path.to_string(),
            to: to.map(ToString::to_string).unwrap_or_default(),
        });
    }

    /// Writes the revision and the change log; the caller commits.
    fn finish(mut self) -> Result<(u64, Vec<WatchEvent>), StoreError> {
        self.meta.insert(META_REVISION, self.revision)?;
        // One revision may carry several events (mkdir -p, then put): keep them all, in order.
        let mut log = Vec::new();
        for event in &self.events {
            let kind = ChangeKind::try_from(event.kind).unwrap_or(ChangeKind::Unspecified);
            ChangeRecord::new(kind, &event.path, &event.to)
                .encode_length_delimited(&mut log)
                .expect("a Vec grows");
        }
        self.changes.insert(self.revision, log.as_slice())?;
        if self.revision > CHANGES_KEPT {
            self.changes.remove(self.revision - CHANGES_KEPT)?;
        }
        Ok((self.revision, self.events))
    }
}

impl Store {
    /// Opens (or creates) the database in `data_dir`, migrating an older schema.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        let shown = path.display().to_string();
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: shown.clone(),
            },
            other => StoreError::Unopenable {
                path: shown.clone(),
                reason: other.to_string(),
            },
        })?;
        let store = Self {
            db,
            path,
            changes: broadcast::channel(1024).0,
        };
        store.initialize()?;
        Ok(store)
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn initialize(&self) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let schema = meta.get(META_SCHEMA)?.map(|g| g.value());
            match schema {
                Some(found) if found > SCHEMA_VERSION => {
                    return Err(StoreError::NewerSchema {
                        path: self.path.display().to_string(),
                        found,
                        supported: SCHEMA_VERSION,
                    });
                }
                Some(_) => {}
                None => {
                    meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
                    meta.insert(META_NEXT_INO, ROOT_INO + 1)?;
                    let root = Inode::new(EntryKind::Directory, 0o755, now_ns(), 0);
                    txn.open_table(INODES)?
                        .insert(ROOT_INO, root.encode_to_vec().as_slice())?;
                }
            }
            txn.open_table(DIRENTS)?;
            txn.open_table(CHUNKS)?;
            txn.open_table(CHANGES)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Live change notifications (after commit); pair with [`Store::changes_after`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.changes.subscribe()
    }

    /// Runs one write transaction and publishes its events once it is durable.
    fn write<T>(
        &self,
        op: impl FnOnce(&mut Writer<'_>) -> Result<T, StoreError>,
    ) -> Result<(T, u64), StoreError> {
        let txn = self.db.begin_write()?;
        let (value, revision, events) = {
            let mut writer = Writer::open(&txn)?;
            let value = op(&mut writer)?;
            let (revision, events) = writer.finish()?;
            (value, revision, events)
        };
        txn.commit()?;
        let _ = self.changes.send(Arc::new(Committed { revision, events }));
        Ok((value, revision))
    }

    /// The current revision.
    pub fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(META_REVISION)?.map(|g| g.value()).unwrap_or(0))
    }

    /// The stat of `path`.
    pub fn stat(&self, path: &StorePath) -> Result<Stat, StoreError> {
        let txn = self.db.begin_read()?;
        let (ino, inode) = resolve(&txn.open_table(INODES)?, &txn.open_table(DIRENTS)?, path)?;
        Ok(stat_of(path, ino, &inode))
    }

    /// A file's content and stat.
    pub fn get(&self, path: &StorePath) -> Result<(Vec<u8>, Stat), StoreError> {
        let txn = self.db.begin_read()?;
        let (ino, inode) = resolve(&txn.open_table(INODES)?, &txn.open_table(DIRENTS)?, path)?;
        match inode.entry_kind() {
            EntryKind::Directory => Err(StoreError::IsADirectory(path.to_string())),
            EntryKind::Symlink => Err(StoreError::IsASymlink(path.to_string())),
            _ => {
                let content = read_content(&txn.open_table(CHUNKS)?, ino, inode.size)?;
                Ok((content, stat_of(path, ino, &inode)))
            }
        }
    }

    /// Up to `limit` entries of directory `path` named after `after`, and whether more follow.
    pub fn list(
        &self,
        path: &StorePath,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<Stat>, bool), StoreError> {
        let txn = self.db.begin_read()?;
        let inodes = txn.open_table(INODES)?;
        let dirents = txn.open_table(DIRENTS)?;
        let (dir, inode) = resolve(&inodes, &dirents, path)?;
        if !inode.is_dir() {
            return Err(StoreError::NotADirectory(path.to_string()));
        }
        let mut entries = Vec::new();
        let mut more = false;
        let range = dirents.range((dir, after)..)?;
        for entry in range {
            let (key, child) = entry?;
            let (parent, name) = key.value();
            if parent != dir {
                break;
            }
            if name == after {
                continue;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            let child = child.value();
            entries.push(stat_of(
                &path.join(name),
                child,
                &get_inode(&inodes, child)?,
            ));
        }
        Ok((entries, more))
    }

    /// Writes a whole file.
    pub fn put(
        &self,
        path: &StorePath,
        content: &[u8],
        options: &PutOptions,
    ) -> Result<(Stat, u64), StoreError> {
        self.write(|w| {
            let existing = match w.resolve(path) {
                Ok(found) => Some(found),
                Err(StoreError::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            if let Some(expected) = options.if_version {
                let actual = existing.as_ref().map_or(0, |(_, inode)| inode.version);
                if actual != expected {
                    return Err(StoreError::VersionMismatch {
                        path: path.to_string(),
                        expected,
                        actual,
                    });
                }
            }
            let (ino, mut inode) = match existing {
                Some((_, inode)) if inode.is_dir() => {
                    return Err(StoreError::IsADirectory(path.to_string()));
                }
                Some((_, inode)) if inode.entry_kind() == EntryKind::Symlink => {
                    return Err(StoreError::IsASymlink(path.to_string()));
                }
                Some(found) => found,
                None => {
                    let parent = w.parent_dir(path, options.parents)?;
                    let inode = Inode::new(
                        EntryKind::File,
                        options.mode.unwrap_or(0o644),
                        w.now,
                        w.revision,
                    );
                    (w.link_new(path, parent, &inode)?, inode)
                }
            };
            w.write_content(ino, content)?;
            inode.size = content.len() as u64;
            inode.mtime_ns = w.now;
            inode.ctime_ns = w.now;
            inode.version = w.revision;
            w.save(ino, &inode)?;
            w.record(ChangeKind::Put, path, None);
            Ok(stat_of(path, ino, &inode))
        })
    }

    /// Creates a directory (with `Parents::Create`: and its parents, succeeding if present).
    pub fn mkdir(
        &self,
        path: &StorePath,
        mode: u32,
        parents: Parents,
    ) -> Result<(Stat, u64), StoreError> {
        self.write(|w| {
            let (ino, inode) = w.mkdir(path, mode, parents)?;
            Ok(stat_of(path, ino, &inode))
        })
    }

    /// Creates a symlink to `target` (stored as given, never followed here).
    pub fn symlink(&self, path: &StorePath, target: &str) -> Result<(Stat, u64), StoreError> {
        self.write(|w| {
            if w.resolve(path).is_ok() {
                return Err(StoreError::Exists(path.to_string()));
            }
            let parent = w.parent_dir(path, Parents::MustExist)?;
            let mut inode = Inode::new(EntryKind::Symlink, 0o777, w.now, w.revision);
            inode.target = target.to_owned();
            inode.size = target.len() as u64;
            let ino = w.link_new(path, parent, &inode)?;
            w.record(ChangeKind::Symlink, path, None);
            Ok(stat_of(path, ino, &inode))
        })
    }

    /// Removes a file, symlink or empty directory; with `recursive`, any directory.
    pub fn remove(&self, path: &StorePath, recursive: bool) -> Result<u64, StoreError> {
        let ((), revision) = self.write(|w| {
            let (parent_path, name) = path.split_last().ok_or_else(|| StoreError::InvalidMove {
                from: "/".to_owned(),
                to: "nowhere".to_owned(),
                why: "the root cannot be removed",
            })?;
            let (ino, inode) = w.resolve(path)?;
            let (parent, _) = w.resolve(&parent_path)?;
            if inode.is_dir() && w.has_children(ino)? {
                if !recursive {
                    return Err(StoreError::NotEmpty(path.to_string()));
                }
                w.remove_children(ino)?;
            }
            let is_dir = inode.is_dir();
            w.dirents.remove((parent, name))?;
            w.unlink_inode(ino, inode)?;
            w.touch_dir(parent, if is_dir { -1 } else { 0 })?;
            w.record(ChangeKind::Remove, path, None);
            Ok(())
        })?;
        Ok(revision)
    }

    /// Moves `from` to `to` atomically, replacing `to` as rename(2) does.
    pub fn rename(&self, from: &StorePath, to: &StorePath) -> Result<(Stat, u64), StoreError> {
        let invalid = |why| StoreError::InvalidMove {
            from: from.to_string(),
            to: to.to_string(),
            why,
        };
        let (Some((from_parent, from_name)), Some((_, to_name))) =
            (from.split_last(), to.split_last())
        else {
            return Err(invalid("the root cannot be moved or replaced"));
        };
        if to.starts_with(from) && to != from {
            return Err(invalid("a directory cannot move into itself"));
        }
        self.write(|w| {
            let (ino, mut inode) = w.resolve(from)?;
            if from == to {
                return Ok(stat_of(to, ino, &inode));
            }
            let (src_dir, _) = w.resolve(&from_parent)?;
            let dst_dir = w.parent_dir(to, Parents::MustExist)?;
            if let Some(existing) = w.lookup(dst_dir, to_name)? {
                let target = w.inode(existing)?;
                match (inode.is_dir(), target.is_dir()) {
                    (true, true) if w.has_children(existing)? => {
                        return Err(StoreError::NotEmpty(to.to_string()));
                    }
                    (false, true) => return Err(StoreError::IsADirectory(to.to_string())),
                    (true, false) => return Err(StoreError::NotADirectory(to.to_string())),
                    _ => {}
                }
                if existing != ino {
                    let target_is_dir = target.is_dir();
                    w.unlink_inode(existing, target)?;
                    if target_is_dir {
                        w.touch_dir(dst_dir, -1)?;
                    }
                }
            }
            w.dirents.remove((src_dir, from_name))?;
            w.dirents.insert((dst_dir, to_name), ino)?;
            let moved_dir = if inode.is_dir() { 1 } else { 0 };
            w.touch_dir(src_dir, -moved_dir)?;
            w.touch_dir(dst_dir, moved_dir)?;
            inode.ctime_ns = w.now;
            inode.version = w.revision;
            w.save(ino, &inode)?;
            w.record(ChangeKind::Rename, from, Some(to));
            Ok(stat_of(to, ino, &inode))
        })
    }

    /// The logged changes after `revision` that concern `prefix`, oldest first, and the
    /// last revision read.
    pub fn changes_after(
        &self,
        prefix: &StorePath,
        revision: u64,
    ) -> Result<(Vec<WatchEvent>, u64), StoreError> {
        let txn = self.db.begin_read()?;
        let changes = txn.open_table(CHANGES)?;
        let oldest = changes.first()?.map(|(k, _)| k.value());
        if let Some(oldest) = oldest
            && revision + 1 < oldest
        {
            return Err(StoreError::Compacted {
                asked: revision,
                oldest,
            });
        }
        let mut events = Vec::new();
        let mut last = revision;
        for entry in changes.range(revision + 1..)? {
            let (rev, log) = entry?;
            last = rev.value();
            let mut bytes = log.value();
            while !bytes.is_empty() {
                let record = ChangeRecord::decode_length_delimited(&mut bytes).map_err(|e| {
                    StoreError::Damaged {
                        ino: 0,
                        reason: format!("change log at revision {}: {e}", rev.value()),
                    }
                })?;
                let event = WatchEvent {
                    revision: rev.value(),
                    kind: record.kind,
                    path: record.path,
                    to: record.to,
                };
                if concerns(&event, prefix) {
                    events.push(event);
                }
            }
        }
        Ok((events, last))
    }
}

/// Whether `event` changes something at or under `prefix` (including by removing or
/// moving an ancestor of it).
pub fn concerns(event: &WatchEvent, prefix: &StorePath) -> bool {
    let kind = ChangeKind::try_from(event.kind).unwrap_or(ChangeKind::Unspecified);
    let takes_subtree = matches!(kind, ChangeKind::Remove | ChangeKind::Rename);
    let touches = |path: &str| {
        path.parse::<StorePath>()
            .is_ok_and(|p| p.starts_with(prefix) || (takes_subtree && prefix.starts_with(&p)))
    };
    touches(&event.path) || (!event.to.is_empty() && touches(&event.to))
}
