//! The records the store keeps, encoded with prost so that later versions can add fields
//! without a migration.
//!
//! This module owns the on-disk encoding: field tags and kind codes never change meaning
//! (a store written by any earlier version must decode), new fields take new tags, and
//! nothing here may depend on the wire types of the gRPC API.

use crate::error::{RecordId, StoreError};
use crate::extents::ExtentId;
use crate::types::{Change, ChangeKind, EntryKind};

/// An inode: what a path names, without its name.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Inode {
    /// [`EntryKind`] as its code ([`EntryKind::code`]).
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
    /// The directory holding the inode's first link, with [`Inode::name`]. A directory
    /// has exactly one (so that a rename can refuse to move a directory into its own
    /// subtree, and its path can be found by walking up); a volume's root points at
    /// itself; other inodes may have more links, in [`Inode::more_links`]. Records
    /// written before links were recorded hold it for directories only, and are filled in
    /// when the store opens.
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
    /// The name of the first link in [`Inode::parent`] (empty for a volume's root).
    #[prost(string, tag = "17")]
    pub name: String,
    /// Hard links beyond the first, so that a change by inode can be reported at each
    /// path that reaches the file.
    #[prost(message, repeated, tag = "18")]
    pub more_links: Vec<Link>,
}

/// A directory entry naming an inode: its directory and its name there.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Link {
    /// The directory.
    #[prost(uint64, tag = "1")]
    pub parent: u64,
    /// The name.
    #[prost(string, tag = "2")]
    pub name: String,
}

impl EntryKind {
    /// The code this kind is stored as (the same numbers as the API's `EntryKind`).
    pub fn code(self) -> i32 {
        match self {
            Self::Directory => 1,
            Self::File => 2,
            Self::Symlink => 3,
            Self::Fifo => 4,
            Self::Socket => 5,
            Self::CharDevice => 6,
            Self::BlockDevice => 7,
        }
    }

    /// The kind stored as `code`; unknown codes read as files.
    pub fn from_code(code: i32) -> Self {
        match code {
            1 => Self::Directory,
            3 => Self::Symlink,
            4 => Self::Fifo,
            5 => Self::Socket,
            6 => Self::CharDevice,
            7 => Self::BlockDevice,
            _ => Self::File,
        }
    }
}

impl ChangeKind {
    /// The code this kind is logged as (the same numbers as the API's `ChangeKind`).
    pub fn code(self) -> i32 {
        match self {
            Self::Put => 1,
            Self::Mkdir => 2,
            Self::Symlink => 3,
            Self::Remove => 4,
            Self::Rename => 5,
        }
    }

    /// The kind logged as `code`; unknown codes read as [`ChangeKind::Put`], the change
    /// that tells a watcher only that something at the path changed.
    pub fn from_code(code: i32) -> Self {
        match code {
            2 => Self::Mkdir,
            3 => Self::Symlink,
            4 => Self::Remove,
            5 => Self::Rename,
            _ => Self::Put,
        }
    }
}

impl Inode {
    /// The kind, with unknown values read as files.
    pub fn entry_kind(&self) -> EntryKind {
        EntryKind::from_code(self.kind)
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.entry_kind() == EntryKind::Directory
    }

    /// A new inode of `kind` with `mode` in `volume`, stamped `now` at `revision`, not
    /// linked anywhere yet.
    pub fn new(kind: EntryKind, mode: u32, volume: &str, now: i64, revision: u64) -> Self {
        Self {
            volume: volume.to_owned(),
            parent: 0,
            rdev: 0,
            kind: kind.code(),
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
            name: String::new(),
            more_links: Vec::new(),
        }
    }

    /// The content file of inode `ino`, if its content is not inline.
    pub fn extent_id(&self, ino: u64) -> Option<ExtentId> {
        (self.extent != 0).then_some(ExtentId {
            ino,
            generation: self.extent,
        })
    }

    /// The directory entries known to name this inode: (directory, name).
    pub fn links(&self) -> impl Iterator<Item = (u64, &str)> {
        let first = (!self.name.is_empty()).then_some((self.parent, self.name.as_str()));
        first.into_iter().chain(
            self.more_links
                .iter()
                .map(|link| (link.parent, link.name.as_str())),
        )
    }

    /// Whether the record lacks its links (written before links were recorded); a
    /// volume's root needs none.
    pub fn lacks_links(&self, ino: u64) -> bool {
        self.name.is_empty() && self.parent != ino
    }

    /// Records a new entry `name` in `parent` naming this inode.
    pub fn add_link(&mut self, parent: u64, name: &str) {
        if self.name.is_empty() {
            self.parent = parent;
            self.name = name.to_owned();
        } else {
            self.more_links.push(Link {
                parent,
                name: name.to_owned(),
            });
        }
    }

    /// Forgets the entry `name` in `parent`; another link, if any, becomes the first.
    pub fn remove_link(&mut self, parent: u64, name: &str) {
        if self.parent == parent && self.name == name {
            match self.more_links.pop() {
                Some(link) => {
                    self.parent = link.parent;
                    self.name = link.name;
                }
                None => {
                    // A directory keeps its parent until it is freed: rename relies on it.
                    if !self.is_dir() {
                        self.parent = 0;
                    }
                    self.name.clear();
                }
            }
        } else {
            self.more_links
                .retain(|link| !(link.parent == parent && link.name == name));
        }
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

/// One change as the change log keeps it: the same fields, tags and encoding as the
/// API's `WatchEvent` message, which earlier versions logged directly, so that their
/// change logs decode unchanged.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChangeRecord {
    /// The revision of its transaction.
    #[prost(uint64, tag = "1")]
    pub revision: u64,
    /// [`ChangeKind`] as its code.
    #[prost(int32, tag = "2")]
    pub kind: i32,
    /// The path changed (default namespace).
    #[prost(string, tag = "3")]
    pub path: String,
    /// For renames: where the entry went.
    #[prost(string, tag = "4")]
    pub to: String,
    /// The volume.
    #[prost(string, tag = "5")]
    pub volume: String,
    /// The inode.
    #[prost(uint64, tag = "6")]
    pub inode: u64,
    /// The directory whose entry changed.
    #[prost(uint64, tag = "7")]
    pub parent_inode: u64,
    /// The entry's name.
    #[prost(string, tag = "8")]
    pub name: String,
    /// For renames: the new directory.
    #[prost(uint64, tag = "9")]
    pub to_parent_inode: u64,
    /// For renames: the new name.
    #[prost(string, tag = "10")]
    pub to_name: String,
}

impl From<ChangeRecord> for Change {
    fn from(r: ChangeRecord) -> Self {
        Self {
            revision: r.revision,
            kind: ChangeKind::from_code(r.kind),
            path: r.path,
            to: r.to,
            volume: r.volume,
            inode: r.inode,
            parent_inode: r.parent_inode,
            name: r.name,
            to_parent_inode: r.to_parent_inode,
            to_name: r.to_name,
        }
    }
}

/// Decodes the record of inode `ino`.
pub fn decode_inode(ino: u64, bytes: &[u8]) -> Result<Inode, StoreError> {
    prost::Message::decode(bytes).map_err(|source| StoreError::Undecodable {
        record: RecordId::Inode(ino),
        source,
    })
}

/// Decodes the record of volume `name`.
pub fn decode_volume(name: &str, bytes: &[u8]) -> Result<VolumeRecord, StoreError> {
    prost::Message::decode(bytes).map_err(|source| StoreError::Undecodable {
        record: RecordId::Volume(name.to_owned()),
        source,
    })
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn links_follow_adds_and_removes() {
        let mut inode = Inode::new(EntryKind::File, 0o644, "", 0, 0);
        assert!(inode.lacks_links(5));
        inode.add_link(1, "a");
        inode.add_link(2, "b");
        inode.add_link(3, "c");
        assert_eq!(
            inode.links().collect::<Vec<_>>(),
            [(1, "a"), (2, "b"), (3, "c")]
        );
        inode.remove_link(1, "a");
        assert_eq!(inode.links().count(), 2);
        assert!(inode.links().any(|l| l == (2, "b")));
        inode.remove_link(2, "b");
        inode.remove_link(3, "c");
        assert_eq!(inode.links().count(), 0);
    }

    #[test]
    fn a_record_without_the_link_fields_decodes_as_lacking_them() {
        // What an earlier version wrote: fields 1 to 16 only.
        let mut old = Inode::new(EntryKind::File, 0o644, "", 0, 0);
        old.size = 3;
        old.inline = b"abc".to_vec();
        let bytes = old.encode_to_vec();
        let read = decode_inode(7, &bytes).unwrap();
        assert_eq!(read, old);
        assert!(read.lacks_links(7));
    }

    #[test]
    fn a_change_is_logged_as_the_api_watch_event_was() {
        let record = ChangeRecord {
            revision: 5,
            kind: ChangeKind::Remove.code(),
            path: "/a".into(),
            to: "/b".into(),
            volume: "v".into(),
            inode: 6,
            parent_inode: 7,
            name: "n".into(),
            to_parent_inode: 8,
            to_name: "m".into(),
        };
        // aurae.v0.WatchEvent with the same values, field by field: tag, then value.
        let watch_event = [
            0x08, 5, 0x10, 4, 0x1a, 2, b'/', b'a', 0x22, 2, b'/', b'b', 0x2a, 1, b'v', 0x30, 6,
            0x38, 7, 0x42, 1, b'n', 0x48, 8, 0x52, 1, b'm',
        ];
        assert_eq!(record.encode_to_vec(), watch_event);
        assert_eq!(ChangeRecord::decode(&watch_event[..]).unwrap(), record);
    }

    #[test]
    fn kind_codes_round_trip() {
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::from_code(kind.code()), kind);
        }
        for kind in [
            ChangeKind::Put,
            ChangeKind::Mkdir,
            ChangeKind::Symlink,
            ChangeKind::Remove,
            ChangeKind::Rename,
        ] {
            assert_eq!(ChangeKind::from_code(kind.code()), kind);
        }
    }
}
