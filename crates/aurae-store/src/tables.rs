//! The tables of the redb file and the reads every module shares: an inode by number, an
//! entry by name, a path walked from the root.
//!
//! Nothing here writes: the tables change only through [`crate::writer::Writer`] (which
//! logs each change) and, before the writer starts, through [`crate::open`].

use std::time::{SystemTime, UNIX_EPOCH};

use aurae_core::path::StorePath;
use redb::{ReadableTable, TableDefinition};

use crate::error::StoreError;
use crate::record::{Inode, decode_inode};

/// The database file inside the data directory.
pub const DB_FILE: &str = "aurae.redb";
/// The write-ahead log beside it.
pub const WAL_FILE: &str = "aurae.wal";
/// The schema this build writes; older ones are migrated at open.
/// Schema 1 kept file content in 64 KiB chunks inside redb; 2 keeps it inline in the
/// inode record or in content files.
pub const SCHEMA_VERSION: u64 = 2;
/// The default namespace's root directory inode.
pub const ROOT_INO: u64 = 1;
/// The default namespace's volume name.
pub const DEFAULT_VOLUME: &str = "";

pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(crate) const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes");
pub(crate) const DIRENTS: TableDefinition<(u64, &str), u64> = TableDefinition::new("dirents");
/// Content of schema 1 stores, read once by the migration to schema 2.
pub(crate) const CHUNKS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("chunks");
pub(crate) const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
pub(crate) const VOLUMES: TableDefinition<&str, &[u8]> = TableDefinition::new("volumes");

pub(crate) const META_SCHEMA: &str = "schema";
pub(crate) const META_REVISION: &str = "revision";
pub(crate) const META_NEXT_INO: &str = "next_ino";

/// Now, in ns since the epoch.
pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The key of a volume name: "default" and "" both name the default namespace.
pub fn volume_key(name: &str) -> &str {
    if name == "default" {
        DEFAULT_VOLUME
    } else {
        name
    }
}

/// The inode `ino`, which a directory entry points at.
pub(crate) fn get_inode(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    ino: u64,
) -> Result<Inode, StoreError> {
    let guard = inodes.get(ino)?.ok_or(StoreError::MissingInode(ino))?;
    decode_inode(ino, guard.value())
}

/// The inode named `name` in directory `parent`.
pub(crate) fn lookup(
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    parent: u64,
    name: &str,
) -> Result<Option<u64>, StoreError> {
    Ok(dirents.get((parent, name))?.map(|g| g.value()))
}

/// Walks `path` of the default namespace from its root, without following symlinks.
pub(crate) fn resolve(
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

/// The current revision: the change log's last key (or, in a store whose log was never
/// written, the revision meta record).
pub(crate) fn last_revision(
    changes: &impl ReadableTable<u64, &'static [u8]>,
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<u64, StoreError> {
    if let Some((key, _)) = changes.last()? {
        return Ok(key.value());
    }
    Ok(meta.get(META_REVISION)?.map(|g| g.value()).unwrap_or(0))
}
