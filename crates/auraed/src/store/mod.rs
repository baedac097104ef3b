//! The database: auraed's source of truth, and the filesystem-like namespace on top of it.
//!
//! One redb file in the data directory holds inodes (with the content of small files),
//! directory entries, volumes, and a bounded log of changes for Watch; larger file
//! content lives in content files beside it ([`extents`]). Every write is one
//! transaction, logged durably (fsync) before it is acknowledged, so an acknowledged
//! write survives `kill -9` and power loss, and a failed one leaves nothing behind. The
//! default namespace (volume "") is addressed by path; every volume also by inode, for
//! FUSE. This module never follows symlinks and never rewrites a database it cannot read.

mod commit;
pub mod error;
pub mod extents;
pub mod record;
#[cfg(test)]
mod tests;
pub mod wal;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aurae_core::name::EntityName;
use aurae_core::path::StorePath;
use aurae_proto::v0::{EntryKind, Stat, Volume, WatchEvent};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::broadcast;

use commit::Committer;
pub use error::StoreError;
use extents::Extents;
use record::{Inode, VolumeRecord};
use wal::Wal;
pub use writer::{UnlinkKind, Vol, Writer};

/// The database file inside the data directory.
pub const DB_FILE: &str = "aurae.redb";
/// The write-ahead log beside it.
pub const WAL_FILE: &str = "aurae.wal";
/// The schema this build writes; older ones are migrated at open.
/// Schema 1 kept file content in 64 KiB chunks inside redb; 2 keeps it inline in the
/// inode record or in content files.
pub const SCHEMA_VERSION: u64 = 2;
/// Size of a content chunk: a small write rewrites one chunk, not the file.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Largest content kept inline in its inode record.
pub const INLINE_MAX: usize = 4096;
/// How many revisions the change log keeps for Watch to resume from.
pub const CHANGES_KEPT: u64 = 100_000;
/// Largest value Get answers whole; larger ones are read in chunks.
pub const GET_MAX: u64 = 64 << 20;
/// The default namespace's root directory inode.
pub const ROOT_INO: u64 = 1;
/// The default namespace's volume name.
pub const DEFAULT_VOLUME: &str = "";

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
const DIRENTS: TableDefinition<(u64, &str), u64> = TableDefinition::new("dirents");
/// Content of schema 1 stores, read once by the migration to schema 2.
const CHUNKS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("chunks");
const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("volumes");

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

/// Attributes SetAttr changes; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    /// chmod.
    pub mode: Option<u32>,
    /// chown (user).
    pub uid: Option<u32>,
    /// chown (group).
    pub gid: Option<u32>,
    /// truncate.
    pub size: Option<u64>,
    /// utimens (access).
    pub atime_ns: Option<i64>,
    /// utimens (modification).
    pub mtime_ns: Option<i64>,
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
    db: Arc<Database>,
    path: PathBuf,
    extents: Arc<Extents>,
    changes: broadcast::Sender<Arc<Committed>>,
    committer: Committer,
    closing: tokio::sync::watch::Sender<bool>,
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

/// Walks `path` of the default namespace from its root, without following symlinks.
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

/// Reads `length` bytes at `offset` of a schema 1 file of `size` bytes, from its chunks;
/// holes read as zeros.
fn read_range(
    chunks: &impl ReadableTable<(u64, u64), &'static [u8]>,
    ino: u64,
    size: u64,
    offset: u64,
    length: u64,
) -> Result<Vec<u8>, StoreError> {
    let end = size.min(offset.saturating_add(length));
    if offset >= end {
        return Ok(Vec::new());
    }
    let chunk = CHUNK_SIZE as u64;
    let mut content = vec![0u8; (end - offset) as usize];
    for entry in chunks.range((ino, offset / chunk)..=(ino, (end - 1) / chunk))? {
        let (key, bytes) = entry?;
        let start = key.value().1 * chunk;
        let bytes = bytes.value();
        // Overlap of [start, start + len) with [offset, end).
        let from = start.max(offset);
        let to = (start + bytes.len() as u64).min(end);
        if from < to {
            content[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&bytes[(from - start) as usize..(to - start) as usize]);
        }
    }
    Ok(content)
}

/// The stat of `inode`; `path` is empty where the caller addressed it by inode.
pub fn stat_of(path: &str, ino: u64, inode: &Inode) -> Stat {
    Stat {
        path: path.to_owned(),
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
        rdev: inode.rdev,
    }
}

fn volume_of(name: &str, record: &VolumeRecord) -> Volume {
    Volume {
        name: name.to_owned(),
        quota_bytes: record.quota_bytes,
        used_bytes: record.used_bytes,
        root_inode: record.root,
        files: record.files,
    }
}

fn initialize(db: &Database, path: &Path) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let schema = meta.get(META_SCHEMA)?.map(|g| g.value());
        match schema {
            Some(found) if found > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema {
                    path: path.display().to_string(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(_) => {}
            None => {
                meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
                meta.insert(META_NEXT_INO, ROOT_INO + 1)?;
                let mut root = Inode::new(EntryKind::Directory, 0o755, DEFAULT_VOLUME, now_ns(), 0);
                root.parent = ROOT_INO;
                txn.open_table(INODES)?
                    .insert(ROOT_INO, root.encode_to_vec().as_slice())?;
            }
        }
        let mut volumes = txn.open_table(VOLUMES)?;
        if volumes.get(DEFAULT_VOLUME)?.is_none() {
            let record = VolumeRecord {
                root: ROOT_INO,
                files: 1,
                ..Default::default()
            };
            volumes.insert(DEFAULT_VOLUME, record.encode_to_vec().as_slice())?;
        }
        txn.open_table(DIRENTS)?;
        txn.open_table(CHUNKS)?;
        txn.open_table(CHANGES)?;
    }
    txn.commit()?;
    Ok(())
}

/// Replays the acknowledged writes the log holds beyond redb's last durable commit,
/// makes them durable, and hands back the emptied log.
fn recover(db: &Database, wal_path: &Path) -> Result<Wal, StoreError> {
    let (mut wal, records) = Wal::open(wal_path)?;
    let durable = {
        let txn = db.begin_read()?;
        let changes = txn.open_table(CHANGES)?;
        changes.last()?.map(|(key, _)| key.value()).unwrap_or(0)
    };
    let pending: Vec<_> = records.iter().filter(|r| r.revision > durable).collect();
    if !pending.is_empty() {
        let txn = db.begin_write()?;
        for record in &pending {
            writer::replay(&txn, &record.mutations)?;
        }
        txn.commit()?;
        tracing::info!(
            writes = pending.len(),
            from = durable + 1,
            "replayed the write-ahead log"
        );
    }
    wal.reset_to(0)?;
    Ok(wal)
}

/// Moves the content of a schema 1 store out of redb's chunks: inline when small, else
/// into synced content files, all in one durable transaction that also marks schema 2.
/// A crash midway leaves schema 1 intact (and content files the sweep removes).
fn migrate_chunks(db: &Database, extents: &Extents) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    let migrated = {
        let mut meta = txn.open_table(META)?;
        if meta.get(META_SCHEMA)?.map(|g| g.value()) != Some(1) {
            return Ok(());
        }
        let mut inodes = txn.open_table(INODES)?;
        let mut chunks = txn.open_table(CHUNKS)?;
        let mut files = Vec::new();
        for entry in inodes.iter()? {
            let (key, value) = entry?;
            let inode = decode(key.value(), value.value())?;
            if inode.entry_kind() == EntryKind::File && inode.size > 0 {
                files.push((key.value(), inode));
            }
        }
        for (ino, inode) in &mut files {
            let (ino, size) = (*ino, inode.size);
            if size <= INLINE_MAX as u64 {
                inode.inline = read_range(&chunks, ino, size, 0, size)?;
            } else {
                let (id, file) = extents.create(ino)?;
                let mut at = 0;
                while at < size {
                    let piece = read_range(&chunks, ino, size, at, 1 << 20)?;
                    extents::write_at(&file, id, &piece, at)?;
                    at += piece.len() as u64;
                }
                file.sync_data().map_err(|source| StoreError::Content {
                    what: format!("syncing migrated content of inode {ino}"),
                    source,
                })?;
                inode.extent = id.generation;
            }
            inodes.insert(ino, inode.encode_to_vec().as_slice())?;
        }
        chunks.retain(|_, _| false)?;
        meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
        files.len()
    };
    txn.commit()?;
    tracing::info!(
        files = migrated,
        "migrated the store to schema 2: file content left redb"
    );
    Ok(())
}

/// Deletes content files no inode points at: left by a crash between writing a content
/// file and committing (or durably freeing) it.
fn sweep_content(db: &Database, extents: &Extents) -> Result<(), StoreError> {
    let txn = db.begin_read()?;
    let inodes = txn.open_table(INODES)?;
    let mut live = std::collections::HashSet::new();
    for entry in inodes.iter()? {
        let (key, value) = entry?;
        let inode = decode(key.value(), value.value())?;
        live.extend(inode.extent_id(key.value()).map(|id| id.generation));
    }
    let swept = extents.sweep(|generation| live.contains(&generation))?;
    if swept > 0 {
        tracing::info!(files = swept, "deleted orphaned content files");
    }
    Ok(())
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
        let db = Arc::new(db);
        let changes = broadcast::channel(1024).0;
        let extents = Arc::new(Extents::open(data_dir)?);
        initialize(&db, &path)?;
        let wal = recover(&db, &data_dir.join(WAL_FILE))?;
        migrate_chunks(&db, &extents)?;
        sweep_content(&db, &extents)?;
        let committer = Committer::start(db.clone(), wal, extents.clone(), changes.clone())?;
        Ok(Self {
            db,
            path,
            extents,
            changes,
            committer,
            closing: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tells watchers to end their streams: the daemon is shutting down.
    pub fn close_watches(&self) {
        self.closing.send_replace(true);
    }

    /// Turns true when watchers should end.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Live change notifications (after commit); pair with [`Store::changes_after`].
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.changes.subscribe()
    }

    /// Runs `op` in a durable write transaction, possibly shared with concurrent writes
    /// (group commit), and returns once it is durable. `op` may run more than once: if a
    /// write of its group fails, the group is undone and each write is run alone.
    pub fn write<T: Send + 'static>(
        &self,
        op: impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, u64), StoreError> {
        self.committer.run(op)
    }

    /// The current revision: the change log's last key.
    pub fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        let changes = txn.open_table(CHANGES)?;
        if let Some((key, _)) = changes.last()? {
            return Ok(key.value());
        }
        let meta = txn.open_table(META)?;
        Ok(meta.get(META_REVISION)?.map(|g| g.value()).unwrap_or(0))
    }

    // ---- the default namespace, by path ----

    /// The stat of `path`.
    pub fn stat(&self, path: &StorePath) -> Result<Stat, StoreError> {
        let txn = self.db.begin_read()?;
        let (ino, inode) = resolve(&txn.open_table(INODES)?, &txn.open_table(DIRENTS)?, path)?;
        Ok(stat_of(path.as_str(), ino, &inode))
    }

    /// A file's content and stat.
    pub fn get(&self, path: &StorePath) -> Result<(Vec<u8>, Stat), StoreError> {
        let mut ino = 0;
        for _ in 0..READ_ATTEMPTS {
            let txn = self.db.begin_read()?;
            let inode;
            (ino, inode) = resolve(&txn.open_table(INODES)?, &txn.open_table(DIRENTS)?, path)?;
            match inode.entry_kind() {
                EntryKind::Directory => return Err(StoreError::IsADirectory(path.to_string())),
                EntryKind::Symlink => return Err(StoreError::IsASymlink(path.to_string())),
                _ if inode.size > GET_MAX => {
                    return Err(StoreError::TooLarge {
                        path: path.to_string(),
                        size: inode.size,
                        limit: GET_MAX,
                    });
                }
                _ => {}
            }
            if let Some(content) = self.content(ino, &inode, 0, inode.size)? {
                return Ok((content, stat_of(path.as_str(), ino, &inode)));
            }
        }
        Err(content_missing(ino))
    }

    /// `length` bytes at `offset` of file `ino`'s content; `None` when its content file
    /// was replaced since `inode` was read (read the record again).
    fn content(
        &self,
        ino: u64,
        inode: &Inode,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match inode.extent_id(ino) {
            Some(id) => self.extents.read(id, inode.size, offset, length),
            None => {
                let end = inode.size.min(offset.saturating_add(length));
                if offset >= end {
                    return Ok(Some(Vec::new()));
                }
                let mut content = vec![0u8; (end - offset) as usize];
                let held = inode.inline.len().min(end as usize);
                if (offset as usize) < held {
                    content[..held - offset as usize]
                        .copy_from_slice(&inode.inline[offset as usize..held]);
                }
                Ok(Some(content))
            }
        }
    }

    /// Makes file `ino`'s content durable (the content half of fsync(2)).
    pub fn sync_content(&self, volume: &str, ino: u64) -> Result<(), StoreError> {
        let inode = self.read_in(volume, |r| r.node(ino))?;
        match inode.extent_id(ino) {
            Some(id) => self.extents.sync(id),
            None => Ok(()),
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
        let (entries, more) = self.entries(&inodes, &dirents, dir, after, limit)?;
        let stats = entries
            .into_iter()
            .map(|(name, mut stat)| {
                stat.path = path.join(&name).to_string();
                stat
            })
            .collect();
        Ok((stats, more))
    }

    fn entries(
        &self,
        inodes: &impl ReadableTable<u64, &'static [u8]>,
        dirents: &impl ReadableTable<(u64, &'static str), u64>,
        dir: u64,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<(String, Stat)>, bool), StoreError> {
        let mut entries = Vec::new();
        for entry in dirents.range((dir, after)..)? {
            let (key, child) = entry?;
            let (parent, name) = key.value();
            if parent != dir {
                break;
            }
            if name == after {
                continue;
            }
            if entries.len() == limit {
                return Ok((entries, true));
            }
            let child = child.value();
            entries.push((
                name.to_owned(),
                stat_of("", child, &get_inode(inodes, child)?),
            ));
        }
        Ok((entries, false))
    }

    /// The directory that will hold `path`, created with its parents if asked.
    fn parent_dir(
        w: &mut Writer<'_>,
        vol: &mut Vol,
        path: &StorePath,
        parents: Parents,
    ) -> Result<u64, StoreError> {
        let (parent, _) = path
            .split_last()
            .ok_or_else(|| StoreError::Exists("/".to_owned()))?;
        match (w.resolve(&parent), parents) {
            (Ok((ino, inode)), _) if inode.is_dir() => Ok(ino),
            (Ok(_), _) => Err(StoreError::NotADirectory(parent.to_string())),
            (Err(StoreError::NotFound(_)), Parents::Create) => {
                Self::mkdir_in(w, vol, &parent, 0o755, Parents::Create).map(|(ino, _)| ino)
            }
            (Err(e), _) => Err(e),
        }
    }

    fn mkdir_in(
        w: &mut Writer<'_>,
        vol: &mut Vol,
        path: &StorePath,
        mode: u32,
        parents: Parents,
    ) -> Result<(u64, Inode), StoreError> {
        if let Ok((ino, inode)) = w.resolve(path) {
            return match (inode.is_dir(), parents) {
                (true, Parents::Create) => Ok((ino, inode)),
                _ => Err(StoreError::Exists(path.to_string())),
            };
        }
        let parent = Self::parent_dir(w, vol, path, parents)?;
        let (_, name) = path.split_last().expect("not the root");
        let inode = w.fresh(vol, EntryKind::Directory, mode);
        let ino = w.create(vol, parent, name, inode, Some(path))?;
        Ok((ino, w.node(vol, ino)?))
    }

    /// Writes a whole file of the default namespace.
    pub fn put(
        &self,
        path: &StorePath,
        content: &[u8],
        options: &PutOptions,
    ) -> Result<(Stat, u64), StoreError> {
        self.write(Self::put_op(
            path.clone(),
            content.to_vec(),
            options.clone(),
            None,
        ))
    }

    /// Writes a large value into a content file of its own and makes it durable, so that
    /// the write that puts it in place ([`Store::put_op`]) only has a record to change.
    /// `None` for a value small enough to live inline.
    pub fn stage(&self, content: &[u8]) -> Result<Option<u64>, StoreError> {
        if content.len() <= INLINE_MAX {
            return Ok(None);
        }
        self.extents.stage(content).map(Some)
    }

    /// Deletes a staged value whose write failed.
    pub fn discard_staged(&self, generation: u64) {
        self.extents
            .remove(extents::ExtentId { ino: 0, generation });
    }

    /// The write [`Store::put`] runs, for [`Store::submit`]; `staged`: the content file
    /// [`Store::stage`] already wrote `content` to.
    pub fn put_op(
        path: StorePath,
        content: Vec<u8>,
        options: PutOptions,
        staged: Option<u64>,
    ) -> impl FnMut(&mut Writer<'_>) -> Result<Stat, StoreError> + Send + 'static {
        move |w| {
            let path = &path;
            let mut vol = w.volume(DEFAULT_VOLUME)?;
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
                Some((ino, inode)) => {
                    let (parent, _) = path.split_last().expect("a file is not the root");
                    let (parent_ino, _) = w.resolve(&parent)?;
                    let name = path.split_last().expect("not the root").1.to_owned();
                    w.record(
                        &vol,
                        aurae_proto::v0::ChangeKind::Put,
                        ino,
                        parent_ino,
                        &name,
                        Some(path),
                    );
                    (ino, inode)
                }
                None => {
                    let parent = Self::parent_dir(w, &mut vol, path, options.parents)?;
                    let (_, name) = path.split_last().expect("not the root");
                    let inode = w.fresh(&vol, EntryKind::File, options.mode.unwrap_or(0o644));
                    let ino = w.create(&mut vol, parent, name, inode, Some(path))?;
                    (ino, w.node(&vol, ino)?)
                }
            };
            w.replace_content(&mut vol, ino, &mut inode, &content, staged)?;
            Ok(stat_of(path.as_str(), ino, &inode))
        }
    }

    /// Creates a directory (with `Parents::Create`: and its parents, succeeding if present).
    pub fn mkdir(
        &self,
        path: &StorePath,
        mode: u32,
        parents: Parents,
    ) -> Result<(Stat, u64), StoreError> {
        let path = path.clone();
        self.write(move |w| {
            let mut vol = w.volume(DEFAULT_VOLUME)?;
            let (ino, inode) = Self::mkdir_in(w, &mut vol, &path, mode, parents)?;
            Ok(stat_of(path.as_str(), ino, &inode))
        })
    }

    /// Creates a symlink to `target` (stored as given, never followed here).
    pub fn symlink(&self, path: &StorePath, target: &str) -> Result<(Stat, u64), StoreError> {
        let (path, target) = (path.clone(), target.to_owned());
        self.write(move |w| {
            let path = &path;
            let mut vol = w.volume(DEFAULT_VOLUME)?;
            let parent = Self::parent_dir(w, &mut vol, path, Parents::MustExist)?;
            let (_, name) = path.split_last().expect("not the root");
            let mut inode = w.fresh(&vol, EntryKind::Symlink, 0o777);
            inode.target = target.clone();
            inode.size = target.len() as u64;
            let ino = w.create(&mut vol, parent, name, inode, Some(path))?;
            Ok(stat_of(path.as_str(), ino, &w.node(&vol, ino)?))
        })
    }

    /// Removes a file, symlink or empty directory; with `recursive`, any directory.
    pub fn remove(&self, path: &StorePath, recursive: bool) -> Result<u64, StoreError> {
        let path = path.clone();
        let ((), revision) = self.write(move |w| {
            let path = &path;
            let mut vol = w.volume(DEFAULT_VOLUME)?;
            let (parent_path, name) = path.split_last().ok_or(StoreError::NotPermitted(
                "the root of the namespace cannot be removed",
            ))?;
            let (parent, _) = w.resolve(&parent_path)?;
            let kind = if recursive {
                UnlinkKind::Recursive
            } else {
                UnlinkKind::Any
            };
            w.unlink(&mut vol, parent, name, kind, Some(path))
                .map(|_| ())
        })?;
        Ok(revision)
    }

    /// Moves `from` to `to` atomically, replacing `to` as rename(2) does.
    pub fn rename(&self, from: &StorePath, to: &StorePath) -> Result<(Stat, u64), StoreError> {
        let (Some((from_parent, from_name)), Some((to_parent, to_name))) =
            (from.split_last(), to.split_last())
        else {
            return Err(StoreError::InvalidMove {
                from: from.to_string(),
                to: to.to_string(),
                why: "the root cannot be moved or replaced",
            });
        };
        let (from, to) = (from.clone(), to.clone());
        let (from_name, to_name) = (from_name.to_owned(), to_name.to_owned());
        self.write(move |w| {
            let (from, to) = (&from, &to);
            let mut vol = w.volume(DEFAULT_VOLUME)?;
            let (src, _) = w.resolve(&from_parent)?;
            let (dst, dst_inode) = w.resolve(&to_parent)?;
            if !dst_inode.is_dir() {
                return Err(StoreError::NotADirectory(to_parent.to_string()));
            }
            let (ino, inode) = w.rename(
                &mut vol,
                src,
                &from_name,
                dst,
                &to_name,
                false,
                Some((from, to)),
            )?;
            Ok(stat_of(to.as_str(), ino, &inode))
        })
    }

    /// The logged changes after `revision` that `filter` keeps, oldest first, and the
    /// last revision read.
    pub fn changes_after(
        &self,
        revision: u64,
        filter: impl Fn(&WatchEvent) -> bool,
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
                let event = WatchEvent::decode_length_delimited(&mut bytes).map_err(|e| {
                    StoreError::Damaged {
                        ino: 0,
                        reason: format!("change log at revision {last}: {e}"),
                    }
                })?;
                if filter(&event) {
                    events.push(event);
                }
            }
        }
        Ok((events, last))
    }

    // ---- volumes ----

    /// Registers a volume with its own root and a quota (0: none).
    pub fn create_volume(&self, name: &str, quota_bytes: u64) -> Result<Volume, StoreError> {
        let checked: EntityName = name
            .parse()
            .map_err(|_| StoreError::InvalidName(name.chars().take(64).collect()))?;
        if checked.as_str() == "default" {
            return Err(StoreError::VolumeExists("default".to_owned()));
        }
        let name = name.to_owned();
        let (volume, _) = self.write(move |w| {
            let name = name.as_str();
            if w.volume(name).is_ok() {
                return Err(StoreError::VolumeExists(name.to_owned()));
            }
            let root = w.allocate_root(name)?;
            let vol = Vol {
                name: name.to_owned(),
                record: VolumeRecord {
                    root,
                    quota_bytes,
                    used_bytes: 0,
                    files: 1,
                },
            };
            w.save_volume(&vol)?;
            Ok(volume_of(name, &vol.record))
        })?;
        Ok(volume)
    }

    /// Every volume, the default namespace first (as "default").
    pub fn list_volumes(&self) -> Result<Vec<Volume>, StoreError> {
        let txn = self.db.begin_read()?;
        let volumes = txn.open_table(VOLUMES)?;
        let mut list = Vec::new();
        for entry in volumes.iter()? {
            let (name, record) = entry?;
            let name = name.value();
            let record = VolumeRecord::decode(record.value()).map_err(|e| StoreError::Damaged {
                ino: 0,
                reason: format!("volume '{name}': {e}"),
            })?;
            let shown = if name.is_empty() { "default" } else { name };
            list.push(volume_of(shown, &record));
        }
        Ok(list)
    }

    /// One volume ("default" or "" for the default namespace).
    pub fn volume(&self, name: &str) -> Result<Volume, StoreError> {
        let name = volume_key(name);
        self.list_volumes()?
            .into_iter()
            .find(|v| volume_key(&v.name) == name)
            .ok_or_else(|| StoreError::NoSuchVolume(name.to_owned()))
    }

    /// Removes a volume and everything in it.
    pub fn delete_volume(&self, name: &str) -> Result<u64, StoreError> {
        if volume_key(name).is_empty() {
            return Err(StoreError::NotPermitted(
                "the default namespace cannot be deleted",
            ));
        }
        let name = name.to_owned();
        let ((), revision) = self.write(move |w| {
            let name = name.as_str();
            let mut vol = w.volume(name)?;
            let root = vol.record.root;
            w.remove_children(&mut vol, root)?;
            w.free_root(root)?;
            w.drop_volume(name)
        })?;
        Ok(revision)
    }

    // ---- any volume, by inode ----

    /// Runs `op` in a read transaction of volume `volume`.
    fn read_in<T>(
        &self,
        volume: &str,
        op: impl FnOnce(&VolumeReader<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_read()?;
        let reader = VolumeReader {
            name: volume_key(volume),
            inodes: txn.open_table(INODES)?,
            dirents: txn.open_table(DIRENTS)?,
        };
        let volumes = txn.open_table(VOLUMES)?;
        if volumes.get(reader.name)?.is_none() {
            return Err(StoreError::NoSuchVolume(volume.to_owned()));
        }
        op(&reader)
    }

    /// Runs `op` in a write transaction of volume `volume`.
    pub fn write_in<T: Send + 'static>(
        &self,
        volume: &str,
        op: impl FnMut(&mut Writer<'_>, &mut Vol) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, u64), StoreError> {
        self.write(in_volume(volume, op))
    }

    /// Like [`Store::write`], but resolves without blocking a thread: for async callers.
    pub async fn submit<T: Send + 'static>(
        &self,
        op: impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, u64), StoreError> {
        self.committer.submit(op).await
    }

    /// Like [`Store::submit`], answered once the write is in the log but before the log is
    /// synced: it survives a crash of auraed, and a power cut after [`Store::flush`].
    pub async fn submit_lazy<T: Send + 'static>(
        &self,
        op: impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, u64), StoreError> {
        self.committer.submit_with(op, wal::Sync::Later).await
    }

    /// Like [`Store::submit_lazy`], for a write that touches a few records: it runs right
    /// on the calling thread when no commit is under way.
    pub async fn submit_small_lazy<T: Send + 'static>(
        &self,
        op: impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, u64), StoreError> {
        let mut op = Some(op);
        if let Some(answer) = self.committer.try_run_here(&mut op) {
            return answer;
        }
        match op {
            Some(op) => self.committer.submit_with(op, wal::Sync::Later).await,
            None => Err(StoreError::Database(
                "a write was lost on its way to the writer".to_owned(),
            )),
        }
    }

    /// Makes every write so far durable (fsync(2) for lazy writes).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.committer.flush().await
    }

    /// The stat of `name` in directory `parent`.
    pub fn lookup_at(&self, volume: &str, parent: u64, name: &str) -> Result<Stat, StoreError> {
        self.read_in(volume, |r| {
            r.node(parent)?;
            let ino = lookup(&r.dirents, parent, name)?
                .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
            Ok(stat_of("", ino, &r.node(ino)?))
        })
    }

    /// The stat of inode `ino`.
    pub fn getattr(&self, volume: &str, ino: u64) -> Result<Stat, StoreError> {
        self.read_in(volume, |r| Ok(stat_of("", ino, &r.node(ino)?)))
    }

    /// Entries of directory `ino` after `after`.
    pub fn readdir(
        &self,
        volume: &str,
        ino: u64,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<(String, Stat)>, bool), StoreError> {
        self.read_in(volume, |r| {
            if !r.node(ino)?.is_dir() {
                return Err(StoreError::NotADirectory(format!("inode {ino}")));
            }
            self.entries(&r.inodes, &r.dirents, ino, after, limit)
        })
    }

    /// Reads `length` bytes at `offset` of file `ino`.
    pub fn read_at(
        &self,
        volume: &str,
        ino: u64,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>, StoreError> {
        for _ in 0..READ_ATTEMPTS {
            let inode = self.read_in(volume, |r| r.node(ino))?;
            match inode.entry_kind() {
                EntryKind::Directory => {
                    return Err(StoreError::IsADirectory(format!("inode {ino}")));
                }
                EntryKind::Symlink => return Ok(read_symlink(&inode, offset, length)),
                _ => {}
            }
            if let Some(content) = self.content(ino, &inode, offset, length)? {
                return Ok(content);
            }
        }
        Err(content_missing(ino))
    }

    /// Changes the attributes of inode `ino`.
    pub fn setattr(&self, volume: &str, ino: u64, attr: SetAttr) -> Result<Stat, StoreError> {
        let (stat, _) = self.write_in(volume, Self::setattr_op(ino, attr))?;
        Ok(stat)
    }

    /// The write [`Store::setattr`] runs, for [`in_volume`] and [`Store::submit_lazy`].
    pub fn setattr_op(
        ino: u64,
        attr: SetAttr,
    ) -> impl FnMut(&mut Writer<'_>, &mut Vol) -> Result<Stat, StoreError> + Send + 'static {
        move |w, vol| {
            let mut inode = w.node(vol, ino)?;
            if let Some(size) = attr.size {
                if inode.is_dir() {
                    return Err(StoreError::IsADirectory(format!("inode {ino}")));
                }
                w.truncate(vol, ino, &mut inode, size)?;
            }
            if let Some(mode) = attr.mode {
                inode.mode = mode & 0o7777;
            }
            if let Some(uid) = attr.uid {
                inode.uid = uid;
            }
            if let Some(gid) = attr.gid {
                inode.gid = gid;
            }
            if let Some(atime) = attr.atime_ns {
                inode.atime_ns = atime;
            }
            if let Some(mtime) = attr.mtime_ns {
                inode.mtime_ns = mtime;
            }
            inode.ctime_ns = w.now;
            inode.version = w.revision;
            w.save(ino, &inode)?;
            w.record(vol, aurae_proto::v0::ChangeKind::Put, ino, 0, "", None);
            Ok(stat_of("", ino, &inode))
        }
    }

    /// Writes `data` at `offset` of file `ino`.
    pub fn write_at(
        &self,
        volume: &str,
        ino: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<Stat, StoreError> {
        let (stat, _) = self.write(Self::write_at_op(volume, ino, offset, data.to_vec()))?;
        Ok(stat)
    }

    /// The write [`Store::write_at`] runs, for [`Store::submit`].
    pub fn write_at_op(
        volume: &str,
        ino: u64,
        offset: u64,
        data: Vec<u8>,
    ) -> impl FnMut(&mut Writer<'_>) -> Result<Stat, StoreError> + Send + 'static {
        in_volume(volume, move |w, vol| {
            let mut inode = w.node(vol, ino)?;
            match inode.entry_kind() {
                EntryKind::Directory => {
                    return Err(StoreError::IsADirectory(format!("inode {ino}")));
                }
                EntryKind::Symlink => return Err(StoreError::IsASymlink(format!("inode {ino}"))),
                _ => {}
            }
            w.write_at(vol, ino, &mut inode, offset, &data)?;
            w.record(vol, aurae_proto::v0::ChangeKind::Put, ino, 0, "", None);
            Ok(stat_of("", ino, &inode))
        })
    }
}

/// `op` run in volume `volume`.
pub fn in_volume<T>(
    volume: &str,
    mut op: impl FnMut(&mut Writer<'_>, &mut Vol) -> Result<T, StoreError> + Send + 'static,
) -> impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static {
    let volume = volume_key(volume).to_owned();
    move |w| {
        let mut vol = w.volume(&volume)?;
        op(w, &mut vol)
    }
}

/// The key of a volume name: "default" and "" both name the default namespace.
pub fn volume_key(name: &str) -> &str {
    if name == "default" {
        DEFAULT_VOLUME
    } else {
        name
    }
}

/// Reads of a file whose content file keeps being replaced under them give up after this.
const READ_ATTEMPTS: usize = 3;

fn content_missing(ino: u64) -> StoreError {
    StoreError::Damaged {
        ino,
        reason: "its content file is missing".to_owned(),
    }
}

fn read_symlink(inode: &Inode, offset: u64, length: u64) -> Vec<u8> {
    let bytes = inode.target.as_bytes();
    let start = (offset as usize).min(bytes.len());
    let end = start.saturating_add(length as usize).min(bytes.len());
    bytes[start..end].to_vec()
}

/// The tables of one read transaction, scoped to a volume.
struct VolumeReader<'v> {
    name: &'v str,
    inodes: redb::ReadOnlyTable<u64, &'static [u8]>,
    dirents: redb::ReadOnlyTable<(u64, &'static str), u64>,
}

impl VolumeReader<'_> {
    fn node(&self, ino: u64) -> Result<Inode, StoreError> {
        match self.inodes.get(ino)? {
            Some(guard) => {
                let inode = decode(ino, guard.value())?;
                if inode.volume == self.name {
                    Ok(inode)
                } else {
                    Err(StoreError::NoSuchInode(ino))
                }
            }
            None => Err(StoreError::NoSuchInode(ino)),
        }
    }
}

/// Whether `event` in `volume` changes something at or under `prefix` (in the default
/// namespace, including by removing or moving an ancestor of it; in a volume, anything).
pub fn concerns(event: &WatchEvent, volume: &str, prefix: &StorePath) -> bool {
    use aurae_proto::v0::ChangeKind;
    if event.volume != volume_key(volume) {
        return false;
    }
    if !event.volume.is_empty() || prefix.is_root() {
        return true;
    }
    let kind = ChangeKind::try_from(event.kind).unwrap_or(ChangeKind::Unspecified);
    let takes_subtree = matches!(kind, ChangeKind::Remove | ChangeKind::Rename);
    let touches = |path: &str| {
        path.parse::<StorePath>()
            .is_ok_and(|p| p.starts_with(prefix) || (takes_subtree && prefix.starts_with(&p)))
    };
    touches(&event.path) || (!event.to.is_empty() && touches(&event.to))
}
