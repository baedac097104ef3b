//! The records the store keeps, encoded with prost so that later versions can add fields
//! without a migration.

use aurae_proto::v0::EntryKind;

use super::extents::ExtentId;

/// An inode: what a path names, without its name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Inode {
    /// [`EntryKind`] as i32.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// Permission bits.
    #[prost(uint32, tag = "2")]
    pub mode: u32,
    /// Owner.
    #[prost(uint32, tag = "3")]
    pub uid: u32,
    /// Group.
    #[prost(uint32, tag = "4")]
    pub gid: u32,
    /// Content length (files), target length (symlinks).
    #[prost(uint64, tag = "5")]
    pub size: u64,
    /// Hard links; for directories 2 + subdirectories.
    #[prost(uint32, tag = "6")]
    pub nlink: u32,
    /// Last content change, ns since the epoch.
    #[prost(int64, tag = "7")]
    pub mtime_ns: i64,
    /// Last metadata change.
    #[prost(int64, tag = "8")]
    pub ctime_ns: i64,
    /// Last access (updated on write only: reads stay read-only transactions).
    #[prost(int64, tag = "9")]
    pub atime_ns: i64,
    /// Revision of the last change: the compare-and-swap token.
    #[prost(uint64, tag = "10")]
    pub version: u64,
    /// Symlink target.
    #[prost(string, tag = "11")]
    pub target: String,
    /// The volume the inode belongs to ("" for the default namespace): an inode number
    /// from one volume never opens anything in another.
    #[prost(string, tag = "12")]
    pub volume: String,
    /// For directories, the parent directory (directories have exactly one), so that a
    /// rename can refuse to move a directory into its own subtree.
    #[prost(uint64, tag = "13")]
    pub parent: u64,
    /// Device number of a character or block device node.
    #[prost(uint32, tag = "14")]
    pub rdev: u32,
    /// The content of a small file, kept in the record itself (exactly `size` bytes) so
    /// that writing it costs one record; empty when the content lives in a content file.
    #[prost(bytes = "vec", tag = "15")]
    pub inline: Vec<u8>,
    /// The generation of the content file holding a larger file's content (0: inline).
    #[prost(uint64, tag = "16")]
    pub extent: u64,
}

impl Inode {
    /// The kind, with unknown values read as files.
    pub fn entry_kind(&self) -> EntryKind {
        EntryKind::try_from(self.kind).unwrap_or(EntryKind::File)
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.entry_kind() == EntryKind::Directory
    }

    /// A new inode of `kind` with `mode` in `volume`, stamped `now` at `revision`.
    pub fn new(kind: EntryKind, mode: u32, volume: &str, now: i64, revision: u64) -> Self {
        Self {
            volume: volume.to_owned(),
            parent: 0,
            rdev: 0,
            kind: kind as i32,
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            size: 0,
            nlink: if kind == EntryKind::Directory { 2 } else { 1 },
            mtime_ns: now,
            ctime_ns: now,
            atime_ns: now,
            version: revision,
            target: String::new(),
            inline: Vec::new(),
            extent: 0,
        }
    }

    /// The content file of inode `ino`, if its content is not inline.
    pub fn extent_id(&self, ino: u64) -> Option<ExtentId> {
        (self.extent != 0).then_some(ExtentId {
            ino,
            generation: self.extent,
        })
    }
}

/// A volume: a filesystem with its own root inode and quota.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VolumeRecord {
    /// The root directory inode.
    #[prost(uint64, tag = "1")]
    pub root: u64,
    /// Bytes of content allowed (0: no quota).
    #[prost(uint64, tag = "2")]
    pub quota_bytes: u64,
    /// Bytes of content held.
    #[prost(uint64, tag = "3")]
    pub used_bytes: u64,
    /// Inodes held (the root included).
    #[prost(uint64, tag = "4")]
    pub files: u64,
}
