//! The store's vocabulary: what callers hand in and get back.
//!
//! Plain Rust types. The gRPC layer converts them to and from its wire messages; the store
//! never sees those. How these values are kept on disk is [`crate::record`]'s business.

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A directory.
    Directory,
    /// A regular file holding bytes.
    File,
    /// A symlink (stored, never followed by the store).
    Symlink,
    /// A named pipe: the store keeps the node, the kernel gives it its behaviour.
    Fifo,
    /// A Unix socket node.
    Socket,
    /// A character device node.
    CharDevice,
    /// A block device node.
    BlockDevice,
}

impl EntryKind {
    /// Every kind, for code that must cover them all (conversions and their tests).
    pub const ALL: [Self; 7] = [
        Self::Directory,
        Self::File,
        Self::Symlink,
        Self::Fifo,
        Self::Socket,
        Self::CharDevice,
        Self::BlockDevice,
    ];
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A file's content or an inode's attributes changed, or a file or special node was
    /// created or linked.
    Put,
    /// A directory was created.
    Mkdir,
    /// A symlink was created.
    Symlink,
    /// An entry (with everything under it) was removed.
    Remove,
    /// An entry moved.
    Rename,
}

/// The attributes of an inode, and the path it was reached by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The path it was addressed by; empty when it was addressed by inode.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Its inode number.
    pub inode: u64,
    /// Permission bits (0o7777), without the file type.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Content length (files), target length (symlinks).
    pub size: u64,
    /// Hard links; for directories 2 + subdirectories.
    pub nlink: u32,
    /// Last content change, ns since the epoch.
    pub mtime_ns: i64,
    /// Last metadata change.
    pub ctime_ns: i64,
    /// Last access (updated on write only).
    pub atime_ns: i64,
    /// The revision at which it last changed: the compare-and-swap token.
    pub version: u64,
    /// Symlink target.
    pub target: String,
    /// Device number of a character or block device.
    pub rdev: u32,
}

/// A volume: a filesystem with its own root and quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Its name; the default namespace is listed as "default".
    pub name: String,
    /// Bytes of file content allowed (0: no quota).
    pub quota_bytes: u64,
    /// Bytes of file content held (the default namespace keeps no count: 0).
    pub used_bytes: u64,
    /// Its root directory inode.
    pub root_inode: u64,
    /// Inodes it holds, its root included.
    pub files: u64,
}

/// One change of a committed transaction, as Watch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The revision of its transaction.
    pub revision: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// The path changed, in the default namespace; empty in volumes (addressed by inode).
    /// A change of a hard-linked file's content or attributes is reported once per link,
    /// each with that link's path.
    pub path: String,
    /// For renames: where the entry went (default namespace).
    pub to: String,
    /// The volume ("" for the default namespace).
    pub volume: String,
    /// The inode changed.
    pub inode: u64,
    /// The directory whose entry changed (0 when only the inode's content or attributes
    /// changed).
    pub parent_inode: u64,
    /// The name of that entry.
    pub name: String,
    /// For renames: the new directory.
    pub to_parent_inode: u64,
    /// For renames: the new name.
    pub to_name: String,
}

/// The changes one committed write transaction made: published whole, so that a watcher
/// can tell by the revision alone what it has seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The revision of the transaction.
    pub revision: u64,
    /// Its changes, in order.
    pub changes: Vec<Change>,
}

/// When a write is answered, which is when it is safe from which failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Answered once the write-ahead log holding it is synced (fdatasync): it survives a
    /// crash of the process and a power cut. Runs on the writer thread, in a group with
    /// the writes that queued up meanwhile.
    Durable,
    /// Answered once the write is appended to the log, before the log is synced: it
    /// survives a crash of the process at once, and a power cut after
    /// [`crate::Store::flush`] or any later durable write. Runs on the writer thread.
    Logged,
    /// Like [`Durability::Logged`], for a write that touches a few records and no bulk
    /// content: it runs right on the calling thread when no commit is under way, because
    /// handing it to the writer thread and back would cost more than the commit itself;
    /// otherwise the writer thread takes it. The caller's thread blocks for the commit.
    LoggedSmall,
}

/// What a Put writes besides the content.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Permission bits for a new file (default 0644); an existing file keeps its own.
    pub mode: Option<u32>,
    /// Compare-and-swap token: write only if the file's version is this (0: only if
    /// absent).
    pub if_version: Option<u64>,
    /// Whether missing parents are created.
    pub parents: Parents,
}

/// Whether missing parent directories are created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Parents {
    /// Create them (mkdir -p).
    #[default]
    Create,
    /// Fail with ENOENT.
    MustExist,
}

/// Attributes SetAttr changes; `None` leaves one as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// chmod.
    pub mode: Option<u32>,
    /// chown (user).
    pub uid: Option<u32>,
    /// chown (group).
    pub gid: Option<u32>,
    /// truncate.
    pub size: Option<u64>,
    /// utimens (access).
    pub atime_ns: Option<i64>,
    /// utimens (modification).
    pub mtime_ns: Option<i64>,
}

/// How an unlink treats directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlinkKind {
    /// unlink(2): files and symlinks only.
    File,
    /// rmdir(2): empty directories only.
    Directory,
    /// Anything; directories with everything in them.
    Recursive,
    /// Anything but a non-empty directory.
    Any,
}

/// Whether a rename may replace an existing target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Replace {
    /// Replace it, as rename(2) does.
    #[default]
    Allowed,
    /// Fail with EEXIST (RENAME_NOREPLACE).
    Refused,
}

/// A file, directory or special node to create by inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewNode {
    /// What to create (not a symlink: those need a target, see
    /// [`crate::inodes::make_symlink`]).
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group (a setgid directory imposes its own).
    pub gid: u32,
    /// Device number, for character and block devices.
    pub rdev: u32,
}
