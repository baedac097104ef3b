//! Store inodes and stats as the kernel sees them.
//!
//! The store's inode numbers are the FUSE inode numbers, except that the volume's root
//! is FUSE's ROOT (1) and the other way round. Inodes are allocated once across the whole
//! store and never reused, so inode 1 (the default namespace's root) never appears inside
//! another volume and the mapping is a bijection; the generation is always 0.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aurae_proto::v0 as pb;
use fuser::{FileAttr, FileType, INodeNo};

/// `st_blksize`: large, so that programs read and write in pieces worth a call.
pub const BLOCK_SIZE: u32 = 64 * 1024;

/// Translates between store inodes and FUSE inodes for one volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InodeMap {
    root: u64,
}

impl InodeMap {
    /// The mapping for a volume whose root directory is store inode `root`.
    pub fn new(root: u64) -> Self {
        Self { root }
    }

    /// The store inode of a FUSE inode.
    pub fn to_store(&self, ino: INodeNo) -> u64 {
        match ino {
            INodeNo::ROOT => self.root,
            INodeNo(other) if other == self.root => {
                // The kernel only knows the root as 1, so this cannot come from it; keep
                // it unreachable on the store side rather than aliasing the root.
                u64::MAX
            }
            INodeNo(other) => other,
        }
    }

    /// The FUSE inode of a store inode.
    pub fn to_fuse(&self, inode: u64) -> INodeNo {
        if inode == self.root {
            INodeNo::ROOT
        } else {
            INodeNo(inode)
        }
    }
}

/// The kernel's file type of a store entry kind.
pub fn file_type(kind: i32) -> FileType {
    match pb::EntryKind::try_from(kind) {
        Ok(pb::EntryKind::Directory) => FileType::Directory,
        Ok(pb::EntryKind::Symlink) => FileType::Symlink,
        Ok(pb::EntryKind::Fifo) => FileType::NamedPipe,
        Ok(pb::EntryKind::Socket) => FileType::Socket,
        Ok(pb::EntryKind::CharDevice) => FileType::CharDevice,
        Ok(pb::EntryKind::BlockDevice) => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

/// A time in nanoseconds since the epoch (negative: before it).
pub fn time_of_ns(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

/// Nanoseconds since the epoch of a time (saturating far outside ±292 years).
pub fn ns_of_time(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |ns| -ns),
    }
}

/// The kernel's attributes of a store stat.
pub fn file_attr(stat: &pb::Stat, inodes: &InodeMap) -> FileAttr {
    let ctime = time_of_ns(stat.ctime_ns);
    FileAttr {
        ino: inodes.to_fuse(stat.inode),
        size: stat.size,
        blocks: stat.size.div_ceil(512),
        atime: time_of_ns(stat.atime_ns),
        mtime: time_of_ns(stat.mtime_ns),
        ctime,
        crtime: ctime,
        kind: file_type(stat.kind),
        perm: (stat.mode & 0o7777) as u16,
        nlink: stat.nlink,
        uid: stat.uid,
        gid: stat.gid,
        rdev: stat.rdev,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

/// Attributes for "." and ".." in a readdirplus reply (the kernel ignores them there).
pub fn placeholder_dir_attr(ino: INodeNo) -> FileAttr {
    FileAttr {
        ino,
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::Directory,
        perm: 0o755,
        nlink: 2,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_volume_root_is_fuse_root_and_back() {
        let map = InodeMap::new(4711);
        assert_eq!(map.to_fuse(4711), INodeNo::ROOT);
        assert_eq!(map.to_store(INodeNo::ROOT), 4711);
        assert_eq!(map.to_fuse(12), INodeNo(12));
        assert_eq!(map.to_store(INodeNo(12)), 12);
        // The default namespace's root is 1 already.
        let default = InodeMap::new(1);
        assert_eq!(default.to_fuse(1), INodeNo::ROOT);
        assert_eq!(default.to_store(INodeNo::ROOT), 1);
    }

    #[test]
    fn times_round_trip_including_before_the_epoch() {
        for ns in [0, 1, 1_700_000_000_123_456_789, -1, -86_400_000_000_000] {
            assert_eq!(ns_of_time(time_of_ns(ns)), ns);
        }
    }

    #[test]
    fn a_stat_becomes_kernel_attributes() {
        let stat = pb::Stat {
            kind: pb::EntryKind::File as i32,
            inode: 9,
            mode: 0o4755,
            uid: 1000,
            gid: 100,
            size: 1025,
            nlink: 2,
            mtime_ns: 5_000_000_001,
            ..Default::default()
        };
        let attr = file_attr(&stat, &InodeMap::new(1));
        assert_eq!(attr.ino, INodeNo(9));
        assert_eq!(attr.kind, FileType::RegularFile);
        assert_eq!(attr.perm, 0o4755);
        assert_eq!((attr.uid, attr.gid, attr.nlink), (1000, 100, 2));
        assert_eq!(attr.blocks, 3);
        assert_eq!(attr.mtime, UNIX_EPOCH + Duration::new(5, 1));
        assert_eq!(file_type(pb::EntryKind::Symlink as i32), FileType::Symlink);
        assert_eq!(
            file_type(pb::EntryKind::Directory as i32),
            FileType::Directory
        );
    }
}
