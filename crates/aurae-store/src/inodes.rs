//! Any volume addressed by inode: the Filesystem API's view of the store, for FUSE
//! clients such as auraefs.
//!
//! Reads run here, in read transactions on the caller's thread; writes are operations for
//! [`crate::Store::write`], each scoped to one volume: an inode number of another volume
//! does not exist for it. Names arrive as single directory entry names, checked with
//! [`crate::check_name`]; nothing here resolves paths.

use aurae_core::path::check_symlink_target;
use redb::ReadableDatabase;

use crate::Store;
use crate::error::StoreError;
use crate::namespace::{READ_ATTEMPTS, entries, stat_of};
use crate::record::{Inode, decode_inode};
use crate::tables::{DIRENTS, INODES, VOLUMES, lookup, volume_key};
use crate::types::{ChangeKind, EntryKind, NewNode, Replace, SetAttr, Stat, UnlinkKind};
use crate::writer::{Vol, Writer};

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
                let inode = decode_inode(ino, guard.value())?;
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

fn read_symlink(inode: &Inode, offset: u64, length: u64) -> Vec<u8> {
    let bytes = inode.target.as_bytes();
    let start = (offset as usize).min(bytes.len());
    let end = start.saturating_add(length as usize).min(bytes.len());
    bytes[start..end].to_vec()
}

impl Store {
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

    /// `length` bytes at `offset` of file `ino`'s content; `None` when its content file
    /// was replaced since `inode` was read (read the record again).
    pub(crate) fn content(
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

    /// Up to `limit` entries of directory `ino` named after `after`, and whether more
    /// follow.
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
            entries(&r.inodes, &r.dirents, ino, after, limit)
        })
    }

    /// Reads `length` bytes at `offset` of file `ino` (a symlink reads as its target).
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
        Err(StoreError::MissingContent(ino))
    }

    /// Makes file `ino`'s content durable (the content half of fsync(2); the log holding
    /// its size is [`Store::flush`]'s).
    pub fn sync_content(&self, volume: &str, ino: u64) -> Result<(), StoreError> {
        let inode = self.read_in(volume, |r| r.node(ino))?;
        match inode.extent_id(ino) {
            Some(id) => self.extents.sync(id),
            None => Ok(()),
        }
    }
}

/// `op` run in volume `volume`.
fn in_volume<T>(
    volume: &str,
    mut op: impl FnMut(&mut Writer<'_>, &mut Vol) -> Result<T, StoreError> + Send + 'static,
) -> impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static {
    let volume = volume_key(volume).to_owned();
    move |w| {
        let mut vol = w.volume(&volume)?;
        op(w, &mut vol)
    }
}

/// Creates a file, directory or special node `name` in directory `parent`.
pub fn make_node(
    volume: &str,
    parent: u64,
    name: String,
    node: NewNode,
) -> impl FnMut(&mut Writer<'_>) -> Result<Stat, StoreError> + Send + 'static {
    in_volume(volume, move |w, vol| {
        if node.kind == EntryKind::Symlink {
            return Err(StoreError::NotPermitted(
                "symlinks are made with their target (make_symlink)",
            ));
        }
        let mut inode = w.fresh(vol, node.kind, node.mode);
        inode.uid = node.uid;
        inode.gid = node.gid;
        w.inherit_group(vol, parent, &mut inode)?;
        if matches!(node.kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            inode.rdev = node.rdev;
        }
        let ino = w.create(vol, parent, &name, inode, None)?;
        Ok(stat_of("", ino, &w.node(vol, ino)?))
    })
}

/// Creates symlink `name` to `target` in directory `parent`, owned by `uid`:`gid`; the
/// target must pass [`check_symlink_target`].
pub fn make_symlink(
    volume: &str,
    parent: u64,
    name: String,
    target: String,
    uid: u32,
    gid: u32,
) -> impl FnMut(&mut Writer<'_>) -> Result<Stat, StoreError> + Send + 'static {
    in_volume(volume, move |w, vol| {
        check_symlink_target(&target)?;
        let mut inode = w.fresh(vol, EntryKind::Symlink, 0o777);
        inode.uid = uid;
        inode.gid = gid;
        w.inherit_group(vol, parent, &mut inode)?;
        inode.size = target.len() as u64;
        inode.target = target.clone();
        let ino = w.create(vol, parent, &name, inode, None)?;
        Ok(stat_of("", ino, &w.node(vol, ino)?))
    })
}

/// Adds the hard link `new_name` in `new_parent` to file `ino`.
pub fn link(
    volume: &str,
    ino: u64,
    new_parent: u64,
    new_name: String,
) -> impl FnMut(&mut Writer<'_>) -> Result<Stat, StoreError> + Send + 'static {
    in_volume(volume, move |w, vol| {
        let inode = w.link(vol, ino, new_parent, &new_name)?;
        Ok(stat_of("", ino, &inode))
    })
}

/// What an unlink removed: the inode, and how many links it has left (0: it is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlinked {
    /// The inode the entry named.
    pub inode: u64,
    /// Its links left.
    pub links_left: u32,
}

/// Removes entry `name` from directory `parent` as `kind` says.
pub fn unlink(
    volume: &str,
    parent: u64,
    name: String,
    kind: UnlinkKind,
) -> impl FnMut(&mut Writer<'_>) -> Result<Unlinked, StoreError> + Send + 'static {
    in_volume(volume, move |w, vol| {
        let inode = w.unlink(vol, parent, &name, kind, None)?;
        let links_left = w.node(vol, inode).map_or(0, |inode| inode.nlink);
        Ok(Unlinked { inode, links_left })
    })
}

/// Where a rename by inode moves an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The directory holding the entry.
    pub parent: u64,
    /// Its name there.
    pub name: String,
    /// The directory it moves to.
    pub new_parent: u64,
    /// Its new name.
    pub new_name: String,
    /// Whether an entry at the new name may be replaced.
    pub replace: Replace,
}

/// Moves an entry with rename(2) semantics.
pub fn rename(
    volume: &str,
    mv: Move,
) -> impl FnMut(&mut Writer<'_>) -> Result<(), StoreError> + Send + 'static {
    in_volume(volume, move |w, vol| {
        w.rename(
            vol,
            mv.parent,
            &mv.name,
            mv.new_parent,
            &mv.new_name,
            mv.replace,
            None,
        )
        .map(|_| ())
    })
}

/// Changes the attributes of inode `ino`.
pub fn set_attr(
    volume: &str,
    ino: u64,
    attr: SetAttr,
) -> impl FnMut(&mut Writer<'_>) -> Result<Stat, StoreError> + Send + 'static {
    in_volume(volume, move |w, vol| {
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
        w.record_inode(vol, ChangeKind::Put, ino, &inode);
        Ok(stat_of("", ino, &inode))
    })
}

/// Writes `data` at `offset` of file `ino`.
pub fn write_at(
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
        w.record_inode(vol, ChangeKind::Put, ino, &inode);
        Ok(stat_of("", ino, &inode))
    })
}
