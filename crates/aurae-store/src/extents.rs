//! File content beyond the inline limit: one sparse file per inode beside the database,
//! named by its generation.
//!
//! Bytes are written once, into the page cache of their own file, instead of twice
//! through the write-ahead log and redb's pages: a large write costs one copy, a 1-byte
//! write touches one page, and reads are plain preads. The inode record in redb stays the
//! truth about a file (its size, and which generation of content file it owns); a content
//! file no record points at is garbage from a crash and is swept when the store opens.
//!
//! A generation is never rewritten in place to replace a whole value: Put writes a fresh
//! generation, syncs it, and commits the record that points at it, so a crash leaves the
//! old value or the new one. Files of freed generations are deleted only once the commit
//! that freed them is durable.
//!
//! This module never decides which content is live (the inode records do) and never
//! touches redb.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::error::{ContentAction, StoreError};

/// The directory of content files inside the data directory.
pub const EXTENTS_DIR: &str = "extents";

/// Content of one inode's generation: what a record's `extent` field points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtentId {
    /// The inode.
    pub ino: u64,
    /// The generation (never 0: 0 means the content is inline).
    pub generation: u64,
}

/// The content files of one store.
#[derive(Debug)]
pub struct Extents {
    dir: PathBuf,
    next_generation: AtomicU64,
    /// Whether files were created since the directory was last synced.
    created: AtomicBool,
}

fn content_error(action: ContentAction, ino: u64) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Content {
        action,
        ino,
        source,
    }
}

impl Extents {
    /// The content files under `data_dir`, creating their directory (0700).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let dir = data_dir.join(EXTENTS_DIR);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(StoreError::ContentDir {
                    action: ContentAction::Create,
                    dir,
                    source,
                });
            }
        }
        // Generations only need to be unique per inode: a clock seed keeps them unique
        // across restarts, and creation refuses an existing file anyway.
        let seed = crate::tables::now_ns().max(1) as u64;
        Ok(Self {
            dir,
            next_generation: AtomicU64::new(seed),
            created: AtomicBool::new(false),
        })
    }

    fn path(&self, id: ExtentId) -> PathBuf {
        self.dir.join(id.generation.to_string())
    }

    /// A new, empty content file for `ino`, open for reading and writing.
    pub fn create(&self, ino: u64) -> Result<(ExtentId, File), StoreError> {
        loop {
            let generation = self.next_generation.fetch_add(1, Ordering::Relaxed).max(1);
            let id = ExtentId { ino, generation };
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(self.path(id))
            {
                Ok(file) => {
                    self.created.store(true, Ordering::Release);
                    return Ok((id, file));
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(content_error(ContentAction::Create, ino)(e)),
            }
        }
    }

    /// Writes `content` into a new content file and makes it durable, name included,
    /// before any record points at it: the slow half of replacing a large value, done
    /// outside the store's writer. Answers the generation to hand to the write.
    pub fn stage(&self, content: &[u8]) -> Result<u64, StoreError> {
        let (id, file) = self.create(0)?;
        let written = write_at(&file, id, content, 0)
            .and_then(|()| {
                file.sync_data()
                    .map_err(content_error(ContentAction::Sync, 0))
            })
            .and_then(|()| self.sync_dir());
        match written {
            Ok(()) => Ok(id.generation),
            Err(e) => {
                self.remove(id);
                Err(e)
            }
        }
    }

    /// Makes the names of the content files created so far durable.
    pub fn sync_dir(&self) -> Result<(), StoreError> {
        if !self.created.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|source| {
                self.created.store(true, Ordering::Release);
                StoreError::ContentDir {
                    action: ContentAction::Sync,
                    dir: self.dir.clone(),
                    source,
                }
            })
    }

    /// The content file `id`, open for writing.
    pub fn open_for_write(&self, id: ExtentId) -> Result<File, StoreError> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(id))
            .map_err(content_error(ContentAction::Open, id.ino))
    }

    /// Reads `length` bytes at `offset` of content `id` holding a file of `size` bytes;
    /// bytes the file does not hold (holes, or data a crash kept from reaching the disk)
    /// read as zeros. `Ok(None)`: the content file is gone (replaced since the caller
    /// read its record).
    pub fn read(
        &self,
        id: ExtentId,
        size: u64,
        offset: u64,
        length: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let end = size.min(offset.saturating_add(length));
        if offset >= end {
            return Ok(Some(Vec::new()));
        }
        let file = match File::open(self.path(id)) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(content_error(ContentAction::Open, id.ino)(e)),
        };
        let mut content = vec![0u8; (end - offset) as usize];
        let mut done = 0;
        while done < content.len() {
            match file.read_at(&mut content[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(content_error(ContentAction::Read, id.ino)(e)),
            }
        }
        Ok(Some(content))
    }

    /// Makes the bytes of content `id` durable; a file already gone needs nothing.
    pub fn sync(&self, id: ExtentId) -> Result<(), StoreError> {
        match File::open(self.path(id)) {
            Ok(file) => file
                .sync_data()
                .map_err(content_error(ContentAction::Sync, id.ino)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(content_error(ContentAction::Open, id.ino)(e)),
        }
    }

    /// Deletes content `id`, whose record no longer points at it.
    pub fn remove(&self, id: ExtentId) {
        match std::fs::remove_file(self.path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            // Left for the sweep at the next start.
            Err(e) => tracing::warn!(ino = id.ino, error = %e, "cannot delete freed content"),
        }
    }

    /// Deletes every content file whose generation `live` does not claim (and anything
    /// else found in the directory); returns how many went.
    pub fn sweep(&self, live: impl Fn(u64) -> bool) -> Result<usize, StoreError> {
        let listing = |source| StoreError::ContentDir {
            action: ContentAction::List,
            dir: self.dir.clone(),
            source,
        };
        let entries = std::fs::read_dir(&self.dir).map_err(listing)?;
        let mut swept = 0;
        for entry in entries {
            let entry = entry.map_err(listing)?;
            let keep = entry
                .file_name()
                .to_str()
                .and_then(parse_name)
                .is_some_and(&live);
            if !keep {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => swept += 1,
                    Err(e) => tracing::warn!(
                        file = %entry.path().display(),
                        error = %e,
                        "cannot delete orphaned content"
                    ),
                }
            }
        }
        Ok(swept)
    }
}

/// The generation a content file's name says, if it is one.
fn parse_name(name: &str) -> Option<u64> {
    if !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok().filter(|generation| *generation != 0)
}

/// Writes all of `data` at `offset` of `file`.
pub fn write_at(file: &File, id: ExtentId, data: &[u8], offset: u64) -> Result<(), StoreError> {
    file.write_all_at(data, offset)
        .map_err(content_error(ContentAction::Write, id.ino))
}

/// Writes at least this large start their way to the disk at once.
const EARLY_WRITEBACK: usize = 256 << 10;

/// Starts writing `len` bytes at `offset` of `file` back to the disk without waiting, so
/// that a long sequential write is mostly on disk by the time fsync(2) asks for it, and
/// dirty pages do not pile up. Only a hint: failing it changes nothing.
#[allow(unsafe_code)] // nix 0.30 has no sync_file_range wrapper
pub fn start_writeback(file: &File, offset: u64, len: usize) {
    if len < EARLY_WRITEBACK {
        return;
    }
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open
    // for as long as `file` is borrowed.
    unsafe {
        nix::libc::sync_file_range(
            file.as_raw_fd(),
            offset,
            len,
            nix::libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Sets the length of `file`: bytes beyond it are dropped, a longer file reads zeros.
pub fn set_len(file: &File, id: ExtentId, size: u64) -> Result<(), StoreError> {
    file.set_len(size)
        .map_err(content_error(ContentAction::Resize, id.ino))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_files_are_not_content() {
        assert_eq!(parse_name("34"), Some(34));
        assert_eq!(parse_name("0"), None);
        assert_eq!(parse_name("+12"), None);
        assert_eq!(parse_name("x1"), None);
    }

    #[test]
    fn reads_past_the_file_are_zeros_and_a_gone_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let extents = Extents::open(dir.path()).unwrap();
        let (id, file) = extents.create(7).unwrap();
        write_at(&file, id, b"abc", 0).unwrap();
        assert_eq!(
            extents.read(id, 6, 1, 10).unwrap().unwrap(),
            b"bc\0\0\0".to_vec()
        );
        extents.remove(id);
        assert_eq!(extents.read(id, 6, 0, 6).unwrap(), None);
    }

    #[test]
    fn sweep_keeps_only_live_content() {
        let dir = tempfile::tempdir().unwrap();
        let extents = Extents::open(dir.path()).unwrap();
        let (keep, _) = extents.create(1).unwrap();
        let (drop, _) = extents.create(2).unwrap();
        std::fs::write(dir.path().join(EXTENTS_DIR).join("stray"), b"x").unwrap();
        assert_eq!(
            extents
                .sweep(|generation| generation == keep.generation)
                .unwrap(),
            2
        );
        assert_eq!(extents.read(keep, 1, 0, 1).unwrap(), Some(vec![0]));
        assert_eq!(extents.read(drop, 1, 0, 1).unwrap(), None);
    }
}
