//! The store's types as the API's wire messages, and back: the only place the two meet.
//!
//! The store's own types stay plain Rust (aurae-store knows nothing of gRPC); a local
//! trait carries each conversion because neither side's types belong to this crate.

use aurae_proto::v0 as pb;
use aurae_store::{Change, ChangeKind, EntryKind, Stat, VolumeInfo};

/// A store value as its wire message.
pub trait IntoProto {
    /// The wire message.
    type Proto;
    /// Converts.
    fn into_proto(self) -> Self::Proto;
}

impl IntoProto for EntryKind {
    type Proto = pb::EntryKind;
    fn into_proto(self) -> pb::EntryKind {
        match self {
            Self::Directory => pb::EntryKind::Directory,
            Self::File => pb::EntryKind::File,
            Self::Symlink => pb::EntryKind::Symlink,
            Self::Fifo => pb::EntryKind::Fifo,
            Self::Socket => pb::EntryKind::Socket,
            Self::CharDevice => pb::EntryKind::CharDevice,
            Self::BlockDevice => pb::EntryKind::BlockDevice,
        }
    }
}

/// The store's kind of a wire `EntryKind`; `None` for UNSPECIFIED.
pub fn entry_kind(kind: pb::EntryKind) -> Option<EntryKind> {
    Some(match kind {
        pb::EntryKind::Unspecified => return None,
        pb::EntryKind::Directory => EntryKind::Directory,
        pb::EntryKind::File => EntryKind::File,
        pb::EntryKind::Symlink => EntryKind::Symlink,
        pb::EntryKind::Fifo => EntryKind::Fifo,
        pb::EntryKind::Socket => EntryKind::Socket,
        pb::EntryKind::CharDevice => EntryKind::CharDevice,
        pb::EntryKind::BlockDevice => EntryKind::BlockDevice,
    })
}

impl IntoProto for ChangeKind {
    type Proto = pb::ChangeKind;
    fn into_proto(self) -> pb::ChangeKind {
        match self {
            Self::Put => pb::ChangeKind::Put,
            Self::Mkdir => pb::ChangeKind::Mkdir,
            Self::Symlink => pb::ChangeKind::Symlink,
            Self::Remove => pb::ChangeKind::Remove,
            Self::Rename => pb::ChangeKind::Rename,
        }
    }
}

impl IntoProto for Stat {
    type Proto = pb::Stat;
    fn into_proto(self) -> pb::Stat {
        pb::Stat {
            path: self.path,
            kind: self.kind.into_proto() as i32,
            inode: self.inode,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            size: self.size,
            nlink: self.nlink,
            mtime_ns: self.mtime_ns,
            ctime_ns: self.ctime_ns,
            atime_ns: self.atime_ns,
            version: self.version,
            target: self.target,
            rdev: self.rdev,
        }
    }
}

impl IntoProto for VolumeInfo {
    type Proto = pb::Volume;
    fn into_proto(self) -> pb::Volume {
        pb::Volume {
            name: self.name,
            quota_bytes: self.quota_bytes,
            used_bytes: self.used_bytes,
            root_inode: self.root_inode,
            files: self.files,
        }
    }
}

impl IntoProto for Change {
    type Proto = pb::WatchEvent;
    fn into_proto(self) -> pb::WatchEvent {
        pb::WatchEvent {
            revision: self.revision,
            kind: self.kind.into_proto() as i32,
            path: self.path,
            to: self.to,
            volume: self.volume,
            inode: self.inode,
            parent_inode: self.parent_inode,
            name: self.name,
            to_parent_inode: self.to_parent_inode,
            to_name: self.to_name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_kinds_keep_the_wire_numbers() {
        for kind in EntryKind::ALL {
            // The store persists its own codes: they must stay the API's numbers, which
            // earlier versions persisted.
            assert_eq!(kind.code(), kind.into_proto() as i32);
            assert_eq!(entry_kind(kind.into_proto()), Some(kind));
        }
        for kind in [
            ChangeKind::Put,
            ChangeKind::Mkdir,
            ChangeKind::Symlink,
            ChangeKind::Remove,
            ChangeKind::Rename,
        ] {
            assert_eq!(kind.code(), kind.into_proto() as i32);
        }
        assert_eq!(entry_kind(pb::EntryKind::Unspecified), None);
    }
}
