//! Opening a store: create or check the schema, replay the write-ahead log, migrate older
//! schemas, fill in records older versions left incomplete, and sweep content files a
//! crash left behind; then start the writer thread.
//!
//! Everything here runs before the writer thread exists, so it writes redb directly: the
//! log's replay in memory only (the log keeps it until the first checkpoint), so that a
//! store opens on a full disk; migrations, when there are any, in durable transactions. It never rewrites a database it cannot read or one of a newer
//! schema: those are reported and left untouched.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::broadcast;

use crate::Store;
use crate::commit::Committer;
use crate::config::StoreConfig;
use crate::error::{ContentAction, StoreError};
use crate::extents::{self, Extents};
use crate::record::{Inode, VolumeRecord, decode_inode};
use crate::space::Space;
use crate::tables::{
    CHANGES, CHUNKS, DB_FILE, DEFAULT_VOLUME, DIRENTS, INODES, META, META_NEXT_INO, META_SCHEMA,
    ROOT_INO, SCHEMA_VERSION, VOLUMES, WAL_FILE, now_ns,
};
use crate::types::EntryKind;
use crate::wal::Wal;
use crate::writer;

/// Size of a content chunk of schema 1, which kept file content in redb.
pub(crate) const CHUNK_SIZE: usize = 64 * 1024;

impl Store {
    /// Opens (or creates) the database in `data_dir`, replays its log, migrates an older
    /// schema, and starts the writer thread.
    pub fn open(data_dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        let config = config.sanitized();
        let path = data_dir.join(DB_FILE);
        // redb creates its file with the umask's mode: create it 0600 first, so that no
        // umask lets another user read stored values.
        match aurae_core::fsutil::ensure_private_file(&path) {
            Ok(None) => {}
            Ok(Some(n)) => tracing::warn!(
                file = %path.display(),
                was = format_args!("{:04o}", n.was),
                "the database was readable by others; made it 0600"
            ),
            Err(source) => return Err(StoreError::Private { path, source }),
        }
        let db = Database::builder()
            .set_cache_size(config.cache_bytes)
            .create(&path)
            .map_err(|source| match source {
                redb::DatabaseError::DatabaseAlreadyOpen => {
                    StoreError::Locked { path: path.clone() }
                }
                source => StoreError::Unopenable {
                    path: path.clone(),
                    source,
                },
            })?;
        let db = Arc::new(db);
        let changes = broadcast::channel(config.watch_buffer).0;
        let extents = Arc::new(Extents::open(data_dir)?);
        initialize(&db, &path)?;
        let wal = recover(&db, &data_dir.join(WAL_FILE))?;
        migrate_chunks(&db, &extents, config.inline_max)?;
        let scan = scan_inodes(&db)?;
        sweep_content(&extents, &scan.live)?;
        fill_links(&db, &scan.lacking_links)?;
        let space = Space::new(data_dir, &path, config.space_reserve);
        let committer = Committer::start(
            db.clone(),
            wal,
            extents.clone(),
            changes.clone(),
            config.clone(),
            space,
        )?;
        Ok(Self {
            db,
            path,
            extents,
            changes,
            committer,
            closing: tokio::sync::watch::Sender::new(false),
            config,
        })
    }
}

/// Whether the database already has everything [`initialize`] writes (then opening
/// writes nothing, which a full disk would refuse).
fn initialized(db: &Database) -> Result<bool, StoreError> {
    let txn = db.begin_read()?;
    let exists = |result: Result<(), redb::TableError>| match result {
        Ok(()) => Ok(true),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
        Err(e) => Err(StoreError::from(e)),
    };
    let tables = [
        exists(txn.open_table(DIRENTS).map(drop))?,
        exists(txn.open_table(CHUNKS).map(drop))?,
        exists(txn.open_table(CHANGES).map(drop))?,
        exists(txn.open_table(INODES).map(drop))?,
    ];
    if tables.contains(&false) {
        return Ok(false);
    }
    let schema = match txn.open_table(META) {
        Ok(meta) => meta.get(META_SCHEMA)?.map(|g| g.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let default_volume = match txn.open_table(VOLUMES) {
        Ok(volumes) => volumes.get(DEFAULT_VOLUME)?.is_some(),
        Err(redb::TableError::TableDoesNotExist(_)) => false,
        Err(e) => return Err(e.into()),
    };
    Ok(schema.is_some_and(|s| s <= SCHEMA_VERSION) && default_volume)
}

fn initialize(db: &Database, path: &Path) -> Result<(), StoreError> {
    if initialized(db)? {
        return Ok(());
    }
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let schema = meta.get(META_SCHEMA)?.map(|g| g.value());
        match schema {
            Some(found) if found > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema {
                    path: path.to_owned(),
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

/// Replays the acknowledged writes the log holds beyond redb's last durable commit and
/// hands back the log, still holding them: the replay is committed in memory only, and the
/// first checkpoint makes it durable. So opening needs no disk space, and a store opened on
/// a full disk serves every acknowledged write.
fn recover(db: &Database, wal_path: &Path) -> Result<Wal, StoreError> {
    let (mut wal, records) = Wal::open(wal_path)?;
    let durable = {
        let txn = db.begin_read()?;
        let changes = txn.open_table(CHANGES)?;
        changes.last()?.map(|(key, _)| key.value()).unwrap_or(0)
    };
    let pending: Vec<_> = records.iter().filter(|r| r.revision > durable).collect();
    if !pending.is_empty() {
        let mut txn = db.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        for record in &pending {
            writer::replay(&txn, &record.mutations)?;
        }
        txn.commit()?;
        tracing::info!(
            writes = pending.len(),
            from = durable + 1,
            "replayed the write-ahead log"
        );
    } else if !records.is_empty() {
        // Everything it holds is in redb already: empty it now.
        wal.reset_to(0)?;
    }
    Ok(wal)
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

/// Moves the content of a schema 1 store out of redb's chunks: inline when small, else
/// into synced content files, all in one durable transaction that also marks schema 2.
/// A crash midway leaves schema 1 intact (and content files the sweep removes).
fn migrate_chunks(db: &Database, extents: &Extents, inline_max: usize) -> Result<(), StoreError> {
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
            let inode = decode_inode(key.value(), value.value())?;
            if inode.entry_kind() == EntryKind::File && inode.size > 0 {
                files.push((key.value(), inode));
            }
        }
        for (ino, inode) in &mut files {
            let (ino, size) = (*ino, inode.size);
            if size <= inline_max as u64 {
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
                    action: ContentAction::Sync,
                    ino,
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

/// What one pass over every inode record found.
struct InodeScan {
    /// Generations of the content files records point at.
    live: HashSet<u64>,
    /// Inodes whose records do not yet say which entries name them.
    lacking_links: HashSet<u64>,
}

fn scan_inodes(db: &Database) -> Result<InodeScan, StoreError> {
    let txn = db.begin_read()?;
    let inodes = txn.open_table(INODES)?;
    let mut scan = InodeScan {
        live: HashSet::new(),
        lacking_links: HashSet::new(),
    };
    for entry in inodes.iter()? {
        let (key, value) = entry?;
        let ino = key.value();
        let inode = decode_inode(ino, value.value())?;
        scan.live
            .extend(inode.extent_id(ino).map(|id| id.generation));
        if inode.lacks_links(ino) {
            scan.lacking_links.insert(ino);
        }
    }
    Ok(scan)
}

/// Deletes content files no inode points at: left by a crash between writing a content
/// file and committing (or durably freeing) it, or by a staged value whose Put never
/// committed.
fn sweep_content(extents: &Extents, live: &HashSet<u64>) -> Result<(), StoreError> {
    let swept = extents.sweep(|generation| live.contains(&generation))?;
    if swept > 0 {
        tracing::info!(files = swept, "deleted orphaned content files");
    }
    Ok(())
}

/// Records in each inode of `lacking` the directory entries that name it (records
/// written before links were recorded, or rewritten by such a version), so that changes
/// by inode can be reported at their paths. One pass over the entries, once.
fn fill_links(db: &Database, lacking: &HashSet<u64>) -> Result<(), StoreError> {
    if lacking.is_empty() {
        return Ok(());
    }
    let txn = db.begin_write()?;
    let filled = {
        let dirents = txn.open_table(DIRENTS)?;
        let mut links: HashMap<u64, Vec<(u64, String)>> = HashMap::new();
        for entry in dirents.iter()? {
            let (key, child) = entry?;
            let child = child.value();
            if lacking.contains(&child) {
                let (parent, name) = key.value();
                links
                    .entry(child)
                    .or_default()
                    .push((parent, name.to_owned()));
            }
        }
        let mut inodes = txn.open_table(INODES)?;
        for (ino, names) in &links {
            let Some(bytes) = inodes.get(*ino)?.map(|g| g.value().to_vec()) else {
                continue;
            };
            let mut inode = decode_inode(*ino, &bytes)?;
            for (parent, name) in names {
                inode.add_link(*parent, name);
            }
            inodes.insert(*ino, inode.encode_to_vec().as_slice())?;
        }
        links.len()
    };
    txn.commit()?;
    tracing::info!(inodes = filled, "recorded the entries that name each inode");
    Ok(())
}
