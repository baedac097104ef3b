//! The records the store keeps, encoded with prost so that later versions can add fields
//! without a migration.

use aurae_proto::v0::{ChangeKind, EntryKind};

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

    /// A new inode of `kind` with `mode`, stamped `now` at `revision`.
    pub fn new(kind: EntryKind, mode: u32, now: i64, revision: u64) -> Self {
        Self {
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
        }
    }
}

/// One committed change, kept in the change log for Watch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChangeRecord {
    /// [`ChangeKind`] as i32.
    #[prost(int32, tag = "1")]
    pub kind: i32,
    /// The path changed.
    #[prost(string, tag = "2")]
    pub path: String,
    /// For renames, the new path.
    #[prost(string, tag = "3")]
    pub to: String,
}

impl ChangeRecord {
    /// A change of `kind` at `path`.
    pub fn new(kind: ChangeKind, path: &str, to: &str) -> Self {
        Self {
            kind: kind as i32,
            path: path.to_owned(),
            to: to.to_owned(),
        }
    }
}
