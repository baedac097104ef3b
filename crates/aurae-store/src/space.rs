//! Disk space: what keeps a full data filesystem from breaking the store.
//!
//! Three rules. A write that adds data is refused with ENOSPC while less than
//! [`crate::StoreConfig::space_reserve`] is free, so that the room left goes to what frees
//! space (a remove, whose content file is deleted once it is durable) and to the
//! checkpoint that empties the log. A checkpoint first reserves, with fallocate(2), the
//! blocks redb's durable commit will write (the holes its in-memory commits left in the
//! database file, and some room past its end); if that fails it is put off, because redb
//! refuses every later call, reads too, after a write of its own fails. And nothing here
//! ever blocks a removal.
//!
//! This module never decides what a write is; the committer asks it.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use nix::fcntl::{FallocateFlags, fallocate};
use nix::libc;

use crate::error::StoreError;

/// Room reserved past the end of the database file for what a durable commit adds (its
/// freed-page and allocator records): at least this, or an eighth of the file.
const DB_SLACK: u64 = 1 << 20;

/// The data filesystem's free space, as the store sees it.
#[derive(Debug)]
pub(crate) struct Space {
    /// The data directory (its filesystem is the one measured).
    dir: PathBuf,
    /// The database file.
    db_file: PathBuf,
    /// Bytes kept free for removals and checkpoints.
    reserve: u64,
}

impl Space {
    /// The space of the data directory `dir`, keeping `reserve` bytes free.
    pub(crate) fn new(dir: &Path, db_file: &Path, reserve: u64) -> Self {
        Self {
            dir: dir.to_owned(),
            db_file: db_file.to_owned(),
            reserve,
        }
    }

    /// Bytes an unprivileged writer may still use on the data filesystem.
    fn available(&self) -> std::io::Result<u64> {
        let stat = nix::sys::statvfs::statvfs(&self.dir)?;
        Ok(stat.blocks_available().saturating_mul(stat.fragment_size()))
    }

    /// Refuses a write that adds data when less than the reserve is free. A filesystem
    /// that cannot say how full it is does not stop writes: they fail on their own.
    pub(crate) fn admit_growth(&self) -> Result<(), StoreError> {
        match self.available() {
            Ok(available) if available < self.reserve => Err(StoreError::NoSpace {
                dir: self.dir.clone(),
                available,
                reserve: self.reserve,
            }),
            _ => Ok(()),
        }
    }

    /// Backs every block of the database file, and room past its end, with disk space
    /// (fallocate(2), keeping its size), so that a durable commit of what is in memory
    /// needs no new space. Err(ENOSPC): a checkpoint now would fail and break redb.
    /// A filesystem without fallocate answers Ok: nothing can be promised there.
    pub(crate) fn back_database(&self) -> std::io::Result<()> {
        let file = OpenOptions::new().write(true).open(&self.db_file)?;
        let len = file.metadata()?.len();
        let want = len.saturating_add(DB_SLACK.max(len / 8));
        let want = i64::try_from(want).unwrap_or(i64::MAX);
        match fallocate(&file, FallocateFlags::FALLOC_FL_KEEP_SIZE, 0, want) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::EOPNOTSUPP) => Ok(()),
            Err(e) => Err(std::io::Error::from_raw_os_error(e as i32)),
        }
    }
}

/// Whether an I/O error means the filesystem is full.
pub(crate) fn is_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_growth_with_enospc() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::write(&db, b"x").unwrap();
        let err = Space::new(dir.path(), &db, u64::MAX)
            .admit_growth()
            .unwrap_err();
        assert_eq!(err.errno(), "ENOSPC");
        assert!(err.to_string().contains("free"), "{err}");
        Space::new(dir.path(), &db, 0).admit_growth().unwrap();
        Space::new(dir.path(), &db, 0).back_database().unwrap();
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 1, "size kept");
    }
}
