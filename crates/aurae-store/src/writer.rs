//! One write transaction over the namespace: the primitives every operation is made of.
//!
//! Each primitive keeps the invariants together: directory link counts and times, the
//! links an inode records (its directory entries, so that a change by inode can be
//! reported at its paths), volume usage and quota, file content (inline in the record
//! while small, in a content file beyond that; never a byte readable beyond a file's
//! size), and the changes of the transaction. Nothing here commits: the committer does,
//! after the whole operation succeeded, so a failure leaves nothing behind in the tables.
//! Writes into a content file happen in place at once, as on a local filesystem; content
//! files the transaction frees are handed back to be deleted once its commit is durable.
//!
//! Every change to a table goes through one of the `set_*` functions, which also log it
//! for the write-ahead log: nothing may change a table any other way.

use aurae_core::path::{MAX_PATH_LEN, StorePath};
use prost::Message;
use redb::{ReadableTable, Table, WriteTransaction};

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::extents::{self, ExtentId, Extents};
use crate::record::{ChangeRecord, Inode, VolumeRecord, decode_inode, decode_volume};
use crate::space::Space;
use crate::staging::Content;
use crate::tables::{
    CHANGES, CHUNKS, DIRENTS, INODES, META, META_NEXT_INO, ROOT_INO, VOLUMES, get_inode,
    last_revision, lookup, now_ns, resolve,
};
use crate::types::{ChangeKind, EntryKind, Replace, UnlinkKind};
use crate::wal::Mutation;

/// The set-group-ID bit of a mode.
const SETGID: u32 = 0o2000;

/// Deepest directory a path is walked up from: a path of at most PATH_MAX bytes has at
/// most half as many components. A longer walk means a damaged parent chain.
const MAX_DEPTH: usize = MAX_PATH_LEN / 2;

/// The volume an operation works in.
#[derive(Debug, Clone)]
pub(crate) struct Vol {
    /// Its name ("" for the default namespace).
    pub(crate) name: String,
    /// Its record.
    pub(crate) record: VolumeRecord,
}

impl Vol {
    fn is_default(&self) -> bool {
        self.name.is_empty()
    }
}

/// The transaction a write operation runs in: the tables, the revision it commits as,
/// and what it changed so far. Operations are built by [`crate::namespace`],
/// [`crate::inodes`] and [`crate::volumes`] and run by [`crate::Store::write`].
pub struct Writer<'t> {
    meta: Table<'t, &'static str, u64>,
    inodes: Table<'t, u64, &'static [u8]>,
    dirents: Table<'t, (u64, &'static str), u64>,
    changes: Table<'t, u64, &'static [u8]>,
    volumes: Table<'t, &'static str, &'static [u8]>,
    /// The revision this transaction commits as.
    pub(crate) revision: u64,
    /// Its timestamp.
    pub(crate) now: i64,
    events: Vec<ChangeRecord>,
    /// Every change made to the tables, for the write-ahead log.
    mutations: Vec<Mutation>,
    extents: &'t Extents,
    /// The data filesystem's space: growth is refused on a full disk.
    space: &'t Space,
    /// Content files this transaction no longer points at.
    freed: Vec<ExtentId>,
    /// Content files this transaction wrote into (not yet synced).
    dirty: Vec<ExtentId>,
    inline_max: usize,
    changes_kept: u64,
}

/// What a finished transaction hands to the committer.
#[derive(Debug)]
pub(crate) struct Finished {
    /// The revision it commits as.
    pub(crate) revision: u64,
    /// Its changes, as logged.
    pub(crate) changes: Vec<ChangeRecord>,
    /// Its table changes, for the log.
    pub(crate) mutations: Vec<Mutation>,
    /// Content files to delete once the commit is durable.
    pub(crate) freed: Vec<ExtentId>,
    /// Content files written, to sync before the next checkpoint.
    pub(crate) dirty: Vec<ExtentId>,
}

impl Finished {
    /// Whether the transaction frees space (removes an inode or lets go of content): such
    /// a write must go through on a full disk, since it is how space is won back.
    pub(crate) fn frees(&self) -> bool {
        !self.freed.is_empty()
            || self
                .mutations
                .iter()
                .any(|m| matches!(m, Mutation::Inode(_, None)))
    }
}

impl<'t> Writer<'t> {
    /// Opens the tables of `txn`, with file content in `extents`.
    pub(crate) fn open(
        txn: &'t WriteTransaction,
        extents: &'t Extents,
        space: &'t Space,
        config: &StoreConfig,
    ) -> Result<Self, StoreError> {
        let meta = txn.open_table(META)?;
        let changes = txn.open_table(CHANGES)?;
        // The change log's last key is the last revision: no counter to rewrite per commit.
        let revision = last_revision(&changes, &meta)? + 1;
        Ok(Self {
            meta,
            inodes: txn.open_table(INODES)?,
            dirents: txn.open_table(DIRENTS)?,
            changes,
            volumes: txn.open_table(VOLUMES)?,
            revision,
            now: now_ns(),
            events: Vec::new(),
            mutations: Vec::new(),
            extents,
            space,
            freed: Vec::new(),
            dirty: Vec::new(),
            inline_max: config.inline_max,
            changes_kept: config.changes_kept,
        })
    }

    // ---- the only places the tables change: each change is also logged ----

    fn set_meta(&mut self, key: &str, value: u64) -> Result<(), StoreError> {
        self.meta.insert(key, value)?;
        self.mutations.push(Mutation::Meta(key.to_owned(), value));
        Ok(())
    }

    fn set_inode(&mut self, ino: u64, record: Option<Vec<u8>>) -> Result<(), StoreError> {
        match &record {
            Some(bytes) => {
                self.inodes.insert(ino, bytes.as_slice())?;
            }
            None => {
                self.inodes.remove(ino)?;
            }
        }
        self.mutations.push(Mutation::Inode(ino, record));
        Ok(())
    }

    fn set_dirent(
        &mut self,
        parent: u64,
        name: &str,
        child: Option<u64>,
    ) -> Result<(), StoreError> {
        match child {
            Some(child) => {
                self.dirents.insert((parent, name), child)?;
            }
            None => {
                self.dirents.remove((parent, name))?;
            }
        }
        self.mutations
            .push(Mutation::Dirent(parent, name.to_owned(), child));
        Ok(())
    }

    fn set_change(&mut self, revision: u64, log: Option<Vec<u8>>) -> Result<(), StoreError> {
        match &log {
            Some(bytes) => {
                self.changes.insert(revision, bytes.as_slice())?;
            }
            None => {
                self.changes.remove(revision)?;
            }
        }
        self.mutations.push(Mutation::Change(revision, log));
        Ok(())
    }

    fn set_volume(&mut self, name: &str, record: Option<Vec<u8>>) -> Result<(), StoreError> {
        match &record {
            Some(bytes) => {
                self.volumes.insert(name, bytes.as_slice())?;
            }
            None => {
                self.volumes.remove(name)?;
            }
        }
        self.mutations
            .push(Mutation::Volume(name.to_owned(), record));
        Ok(())
    }

    // ---- volumes ----

    /// The volume called `name`.
    pub(crate) fn volume(&self, name: &str) -> Result<Vol, StoreError> {
        let guard = self
            .volumes
            .get(name)?
            .ok_or_else(|| StoreError::NoSuchVolume(name.to_owned()))?;
        let record = decode_volume(name, guard.value())?;
        Ok(Vol {
            name: name.to_owned(),
            record,
        })
    }

    /// Saves a volume record.
    pub(crate) fn save_volume(&mut self, vol: &Vol) -> Result<(), StoreError> {
        self.set_volume(&vol.name, Some(vol.record.encode_to_vec()))
    }

    /// Removes a volume record.
    pub(crate) fn drop_volume(&mut self, name: &str) -> Result<(), StoreError> {
        self.set_volume(name, None)
    }

    /// Frees a volume's root inode (its entries must be gone).
    pub(crate) fn free_root(&mut self, ino: u64) -> Result<(), StoreError> {
        self.set_inode(ino, None)
    }

    /// Allocates a volume's root directory.
    pub(crate) fn allocate_root(&mut self, name: &str) -> Result<u64, StoreError> {
        let mut root = Inode::new(EntryKind::Directory, 0o755, name, self.now, self.revision);
        let ino = self.allocate(&root)?;
        root.parent = ino;
        self.save(ino, &root)?;
        Ok(ino)
    }

    /// Changes `vol`'s usage by `bytes` and `files`, refusing to exceed its quota, and
    /// refusing any growth while the data filesystem is below its reserve (before a byte
    /// is written, as every write that adds data accounts for it first). The default
    /// namespace has no quota and keeps no count: its writes skip this record.
    pub(crate) fn account(
        &mut self,
        vol: &mut Vol,
        bytes: i64,
        files: i64,
    ) -> Result<(), StoreError> {
        if bytes > 0 || files > 0 {
            self.space.admit_growth()?;
        }
        if vol.is_default() {
            return Ok(());
        }
        let record = &mut vol.record;
        let used = record.used_bytes.saturating_add_signed(bytes);
        if bytes > 0 && record.quota_bytes > 0 && used > record.quota_bytes {
            return Err(StoreError::QuotaExceeded {
                volume: vol.name.clone(),
                quota: record.quota_bytes,
            });
        }
        record.used_bytes = used;
        record.files = record.files.saturating_add_signed(files);
        self.save_volume(vol)
    }

    // ---- inodes and entries ----

    /// An inode of `vol`; inodes of other volumes do not exist here.
    pub(crate) fn node(&self, vol: &Vol, ino: u64) -> Result<Inode, StoreError> {
        match self.inodes.get(ino)? {
            Some(guard) => {
                let inode = decode_inode(ino, guard.value())?;
                if inode.volume == vol.name {
                    Ok(inode)
                } else {
                    Err(StoreError::NoSuchInode(ino))
                }
            }
            None => Err(StoreError::NoSuchInode(ino)),
        }
    }

    /// A directory inode of `vol`.
    pub(crate) fn dir(&self, vol: &Vol, ino: u64) -> Result<Inode, StoreError> {
        let inode = self.node(vol, ino)?;
        if inode.is_dir() {
            Ok(inode)
        } else {
            Err(StoreError::NotADirectory(format!("inode {ino}")))
        }
    }

    /// Saves an inode.
    pub(crate) fn save(&mut self, ino: u64, inode: &Inode) -> Result<(), StoreError> {
        self.set_inode(ino, Some(inode.encode_to_vec()))
    }

    /// Resolves a path of the default namespace.
    pub(crate) fn resolve(&self, path: &StorePath) -> Result<(u64, Inode), StoreError> {
        resolve(&self.inodes, &self.dirents, path)
    }

    /// The inode named `name` in directory `parent`.
    pub(crate) fn lookup(&self, parent: u64, name: &str) -> Result<Option<u64>, StoreError> {
        lookup(&self.dirents, parent, name)
    }

    fn allocate(&mut self, inode: &Inode) -> Result<u64, StoreError> {
        let ino = self
            .meta
            .get(META_NEXT_INO)?
            .map(|g| g.value())
            .unwrap_or(ROOT_INO + 1);
        self.set_meta(META_NEXT_INO, ino + 1)?;
        self.save(ino, inode)?;
        Ok(ino)
    }

    /// A fresh inode of `kind` in `vol` (not linked anywhere yet).
    pub(crate) fn fresh(&self, vol: &Vol, kind: EntryKind, mode: u32) -> Inode {
        Inode::new(kind, mode, &vol.name, self.now, self.revision)
    }

    /// Marks a directory's content as changed (an entry came or went).
    fn touch_dir(&mut self, ino: u64, nlink_delta: i32) -> Result<(), StoreError> {
        let mut dir = get_inode(&self.inodes, ino)?;
        dir.mtime_ns = self.now;
        dir.ctime_ns = self.now;
        dir.version = self.revision;
        dir.nlink = dir.nlink.saturating_add_signed(nlink_delta);
        self.save(ino, &dir)
    }

    /// Links a new inode as `name` in `parent`; EEXIST if the name is taken.
    pub(crate) fn create(
        &mut self,
        vol: &mut Vol,
        parent: u64,
        name: &str,
        mut inode: Inode,
        path: Option<&StorePath>,
    ) -> Result<u64, StoreError> {
        self.dir(vol, parent)?;
        check_name(name)?;
        if self.lookup(parent, name)?.is_some() {
            return Err(StoreError::Exists(shown(path, name)));
        }
        let is_dir = inode.is_dir();
        inode.add_link(parent, name);
        self.account(vol, inode.size as i64, 1)?;
        let ino = self.allocate(&inode)?;
        self.set_dirent(parent, name, Some(ino))?;
        self.touch_dir(parent, i32::from(is_dir))?;
        let kind = match inode.entry_kind() {
            EntryKind::Directory => ChangeKind::Mkdir,
            EntryKind::Symlink => ChangeKind::Symlink,
            _ => ChangeKind::Put,
        };
        self.record(vol, kind, ino, parent, name, path);
        Ok(ino)
    }

    /// Adds a hard link to file `ino`.
    pub(crate) fn link(
        &mut self,
        vol: &Vol,
        ino: u64,
        parent: u64,
        name: &str,
    ) -> Result<Inode, StoreError> {
        let mut inode = self.node(vol, ino)?;
        if inode.is_dir() {
            return Err(StoreError::NotPermitted(
                "directories cannot be hard linked",
            ));
        }
        self.dir(vol, parent)?;
        check_name(name)?;
        if self.lookup(parent, name)?.is_some() {
            return Err(StoreError::Exists(name.to_owned()));
        }
        inode.nlink += 1;
        inode.ctime_ns = self.now;
        inode.version = self.revision;
        inode.add_link(parent, name);
        self.save(ino, &inode)?;
        self.set_dirent(parent, name, Some(ino))?;
        self.touch_dir(parent, 0)?;
        self.record(vol, ChangeKind::Put, ino, parent, name, None);
        Ok(inode)
    }

    /// Gives a new node in directory `parent` the group of a setgid directory, and a new
    /// directory its setgid bit too (BSD group semantics, as ext4 has them).
    pub(crate) fn inherit_group(
        &self,
        vol: &Vol,
        parent: u64,
        inode: &mut Inode,
    ) -> Result<(), StoreError> {
        let dir = self.node(vol, parent)?;
        if dir.mode & SETGID != 0 {
            inode.gid = dir.gid;
            if inode.is_dir() {
                inode.mode |= SETGID;
            }
        }
        Ok(())
    }

    /// Drops the link `name` in `parent` to `ino`; frees it when no link is left.
    fn release(
        &mut self,
        vol: &mut Vol,
        ino: u64,
        mut inode: Inode,
        parent: u64,
        name: &str,
    ) -> Result<(), StoreError> {
        inode.nlink = inode.nlink.saturating_sub(1);
        if inode.is_dir() || inode.nlink == 0 {
            self.freed.extend(inode.extent_id(ino));
            self.set_inode(ino, None)?;
            let freed = if inode.entry_kind() == EntryKind::File {
                inode.size
            } else {
                0
            };
            self.account(vol, -(freed as i64), -1)
        } else {
            inode.ctime_ns = self.now;
            inode.version = self.revision;
            inode.remove_link(parent, name);
            self.save(ino, &inode)
        }
    }

    fn children(&self, dir: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let mut children = Vec::new();
        for entry in self.dirents.range((dir, "")..)? {
            let (key, child) = entry?;
            let (parent, name) = key.value();
            if parent != dir {
                break;
            }
            children.push((name.to_owned(), child.value()));
        }
        Ok(children)
    }

    /// Whether directory `ino` has entries.
    pub(crate) fn has_children(&self, ino: u64) -> Result<bool, StoreError> {
        Ok(self
            .dirents
            .range((ino, "")..)?
            .next()
            .transpose()?
            .is_some_and(|(key, _)| key.value().0 == ino))
    }

    /// Removes everything below directory `ino`.
    pub(crate) fn remove_children(&mut self, vol: &mut Vol, ino: u64) -> Result<(), StoreError> {
        for (name, child) in self.children(ino)? {
            let inode = get_inode(&self.inodes, child)?;
            if inode.is_dir() {
                self.remove_children(vol, child)?;
            }
            self.set_dirent(ino, &name, None)?;
            self.release(vol, child, inode, ino, &name)?;
        }
        Ok(())
    }

    /// Removes `name` from `parent` as `kind` says.
    pub(crate) fn unlink(
        &mut self,
        vol: &mut Vol,
        parent: u64,
        name: &str,
        kind: UnlinkKind,
        path: Option<&StorePath>,
    ) -> Result<u64, StoreError> {
        self.dir(vol, parent)?;
        check_name(name)?;
        let ino = self
            .lookup(parent, name)?
            .ok_or_else(|| StoreError::NotFound(shown(path, name)))?;
        let inode = self.node(vol, ino)?;
        let is_dir = inode.is_dir();
        match (kind, is_dir) {
            (UnlinkKind::File, true) => return Err(StoreError::IsADirectory(shown(path, name))),
            (UnlinkKind::Directory, false) => {
                return Err(StoreError::NotADirectory(shown(path, name)));
            }
            _ => {}
        }
        if is_dir && self.has_children(ino)? {
            if kind != UnlinkKind::Recursive {
                return Err(StoreError::NotEmpty(shown(path, name)));
            }
            self.remove_children(vol, ino)?;
        }
        // Its path, while the entry still leads there.
        self.record(vol, ChangeKind::Remove, ino, parent, name, path);
        self.set_dirent(parent, name, None)?;
        self.release(vol, ino, inode, parent, name)?;
        self.touch_dir(parent, if is_dir { -1 } else { 0 })?;
        Ok(ino)
    }

    /// Whether directory `ancestor` is `dir` or above it.
    fn is_ancestor(&self, ancestor: u64, mut dir: u64) -> Result<bool, StoreError> {
        loop {
            if dir == ancestor {
                return Ok(true);
            }
            let inode = get_inode(&self.inodes, dir)?;
            if inode.parent == 0 || inode.parent == dir {
                return Ok(false);
            }
            dir = inode.parent;
        }
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent` with rename(2) semantics.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rename(
        &mut self,
        vol: &mut Vol,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        replace: Replace,
        paths: Option<(&StorePath, &StorePath)>,
    ) -> Result<(u64, Inode), StoreError> {
        let (from_path, to_path) = paths.unzip();
        self.dir(vol, parent)?;
        self.dir(vol, new_parent)?;
        check_name(new_name)?;
        let ino = self
            .lookup(parent, name)?
            .ok_or_else(|| StoreError::NotFound(shown(from_path, name)))?;
        let mut inode = self.node(vol, ino)?;
        if parent == new_parent && name == new_name {
            return Ok((ino, inode));
        }
        if inode.is_dir() && self.is_ancestor(ino, new_parent)? {
            return Err(StoreError::InvalidMove {
                from: shown(from_path, name),
                to: shown(to_path, new_name),
                why: "a directory cannot move into itself",
            });
        }
        if let Some(existing) = self.lookup(new_parent, new_name)? {
            if replace == Replace::Refused {
                return Err(StoreError::Exists(shown(to_path, new_name)));
            }
            if existing == ino {
                // Two links of one file: rename(2) does nothing.
                return Ok((ino, inode));
            }
            let target = self.node(vol, existing)?;
            let to = || shown(to_path, new_name);
            match (inode.is_dir(), target.is_dir()) {
                (true, true) if self.has_children(existing)? => {
                    return Err(StoreError::NotEmpty(to()));
                }
                (false, true) => return Err(StoreError::IsADirectory(to())),
                (true, false) => return Err(StoreError::NotADirectory(to())),
                _ => {}
            }
            let target_is_dir = target.is_dir();
            self.release(vol, existing, target, new_parent, new_name)?;
            if target_is_dir {
                self.touch_dir(new_parent, -1)?;
            }
        }
        let mut event = self.event(vol, ChangeKind::Rename, ino, parent, name, from_path);
        event.to = match to_path {
            Some(path) => path.to_string(),
            None => self.entry_path(vol, new_parent, new_name),
        };
        event.to_parent_inode = new_parent;
        event.to_name = new_name.to_owned();
        self.events.push(event);
        self.set_dirent(parent, name, None)?;
        self.set_dirent(new_parent, new_name, Some(ino))?;
        let moved_dir = i32::from(inode.is_dir());
        self.touch_dir(parent, -moved_dir)?;
        self.touch_dir(new_parent, moved_dir)?;
        inode.remove_link(parent, name);
        inode.add_link(new_parent, new_name);
        inode.ctime_ns = self.now;
        inode.version = self.revision;
        self.save(ino, &inode)?;
        Ok((ino, inode))
    }

    // ---- file content ----

    /// Replaces a file's whole content: inline when small, else in a content file made
    /// durable before the record that points at it is logged (already, when `content` is
    /// staged), so that a crash leaves the old content or the new, never a mix.
    pub(crate) fn replace_content(
        &mut self,
        vol: &mut Vol,
        ino: u64,
        inode: &mut Inode,
        content: &Content,
    ) -> Result<(), StoreError> {
        let len = content.len();
        self.account(vol, len as i64 - inode.size as i64, 0)?;
        self.freed.extend(inode.extent_id(ino));
        match content {
            Content::Bytes(bytes) if bytes.len() <= self.inline_max => {
                inode.inline = bytes.clone();
                inode.extent = 0;
            }
            Content::Bytes(bytes) => {
                inode.extent = self.extents.stage(bytes)?;
                inode.inline = Vec::new();
            }
            Content::Staged(staged) => {
                inode.extent = staged.generation();
                inode.inline = Vec::new();
            }
        }
        inode.size = len;
        self.modified(inode);
        self.save(ino, inode)
    }

    /// The content file of `inode`, moving inline content into a new one first.
    fn content_file(
        &mut self,
        ino: u64,
        inode: &mut Inode,
    ) -> Result<(ExtentId, std::fs::File), StoreError> {
        if let Some(id) = inode.extent_id(ino) {
            let file = self.extents.open_for_write(id)?;
            return Ok((id, file));
        }
        let (id, file) = self.extents.create(ino)?;
        extents::write_at(&file, id, &inode.inline, 0)?;
        extents::set_len(&file, id, inode.size)?;
        inode.inline = Vec::new();
        inode.extent = id.generation;
        Ok((id, file))
    }

    /// Writes `data` at `offset`: into the record while the file stays small, else in
    /// place in its content file (a 1-byte write touches one page).
    pub(crate) fn write_at(
        &mut self,
        vol: &mut Vol,
        ino: u64,
        inode: &mut Inode,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|end| i64::try_from(*end).is_ok())
            .ok_or(StoreError::NotPermitted("write past the largest file size"))?;
        if end > inode.size {
            self.account(vol, (end - inode.size) as i64, 0)?;
        }
        if inode.extent == 0 && end <= self.inline_max as u64 {
            let (offset, end) = (offset as usize, end as usize);
            if inode.inline.len() < end {
                inode.inline.resize(end, 0);
            }
            inode.inline[offset..end].copy_from_slice(data);
        } else {
            let (id, file) = self.content_file(ino, inode)?;
            if offset > inode.size {
                // Bytes past the size (from a write a crash left unacknowledged) must read
                // as the hole's zeros.
                extents::set_len(&file, id, inode.size)?;
            }
            extents::write_at(&file, id, data, offset)?;
            extents::start_writeback(&file, offset, data.len());
            self.dirty.push(id);
        }
        inode.size = inode.size.max(end);
        self.modified(inode);
        self.save(ino, inode)
    }

    /// Sets a file's size: shrinking drops the bytes beyond it, growing reads as zeros.
    pub(crate) fn truncate(
        &mut self,
        vol: &mut Vol,
        ino: u64,
        inode: &mut Inode,
        size: u64,
    ) -> Result<(), StoreError> {
        if i64::try_from(size).is_err() {
            return Err(StoreError::NotPermitted("size past the largest file size"));
        }
        self.account(vol, size as i64 - inode.size as i64, 0)?;
        if inode.extent == 0 && size <= self.inline_max as u64 {
            inode.inline.resize(size as usize, 0);
        } else {
            let (id, file) = self.content_file(ino, inode)?;
            if size > inode.size {
                // Growing reads zeros, not bytes a crash left past the old size.
                extents::set_len(&file, id, inode.size)?;
            }
            extents::set_len(&file, id, size)?;
            self.dirty.push(id);
        }
        inode.size = size;
        self.modified(inode);
        self.save(ino, inode)
    }

    fn modified(&self, inode: &mut Inode) {
        inode.mtime_ns = self.now;
        inode.ctime_ns = self.now;
        inode.version = self.revision;
    }

    // ---- changes ----

    /// The path of directory `dir` of the default namespace, walked up its parent links
    /// (a directory has exactly one); `None` if the chain is broken.
    fn dir_path(&self, mut dir: u64) -> Option<String> {
        let mut names = Vec::new();
        while dir != ROOT_INO {
            let inode = get_inode(&self.inodes, dir).ok()?;
            if inode.name.is_empty() || inode.parent == dir || names.len() >= MAX_DEPTH {
                return None;
            }
            dir = inode.parent;
            names.push(inode.name);
        }
        let mut path = String::new();
        for name in names.iter().rev() {
            path.push('/');
            path.push_str(name);
        }
        if path.is_empty() {
            path.push('/');
        }
        Some(path)
    }

    /// The path of entry `name` in directory `parent`: empty outside the default
    /// namespace, or where the directory's chain is broken.
    fn entry_path(&self, vol: &Vol, parent: u64, name: &str) -> String {
        if !vol.is_default() {
            return String::new();
        }
        match self.dir_path(parent) {
            Some(dir) if dir == "/" => format!("/{name}"),
            Some(dir) => format!("{dir}/{name}"),
            None => String::new(),
        }
    }

    fn event(
        &self,
        vol: &Vol,
        kind: ChangeKind,
        ino: u64,
        parent: u64,
        name: &str,
        path: Option<&StorePath>,
    ) -> ChangeRecord {
        let path = match path {
            Some(path) => path.to_string(),
            None if parent != 0 => self.entry_path(vol, parent, name),
            None => String::new(),
        };
        ChangeRecord {
            revision: self.revision,
            kind: kind.code(),
            path,
            volume: vol.name.clone(),
            inode: ino,
            parent_inode: parent,
            name: name.to_owned(),
            ..Default::default()
        }
    }

    /// Records a change of entry `name` in `parent` (naming `ino`); `path` when the
    /// caller knows it, else it is found from `parent` in the default namespace.
    pub(crate) fn record(
        &mut self,
        vol: &Vol,
        kind: ChangeKind,
        ino: u64,
        parent: u64,
        name: &str,
        path: Option<&StorePath>,
    ) {
        let event = self.event(vol, kind, ino, parent, name, path);
        self.events.push(event);
    }

    /// Records a change of `inode`'s content or attributes, addressed by inode: in the
    /// default namespace once per link, each with that link's path (a directory has one,
    /// the root is "/"), so that every watcher of a path that reaches it hears of it.
    pub(crate) fn record_inode(&mut self, vol: &Vol, kind: ChangeKind, ino: u64, inode: &Inode) {
        self.record_links(vol, kind, ino, inode, None);
    }

    /// Like [`Writer::record_inode`], for the links other than `except` (whose change
    /// the caller recorded with its path).
    pub(crate) fn record_other_links(
        &mut self,
        vol: &Vol,
        kind: ChangeKind,
        ino: u64,
        inode: &Inode,
        except: (u64, &str),
    ) {
        self.record_links(vol, kind, ino, inode, Some(except));
    }

    fn record_links(
        &mut self,
        vol: &Vol,
        kind: ChangeKind,
        ino: u64,
        inode: &Inode,
        except: Option<(u64, &str)>,
    ) {
        let path_of = |path: String| {
            let mut event = self.event(vol, kind, ino, 0, "", None);
            event.path = path;
            event
        };
        if !vol.is_default() || ino == ROOT_INO {
            let path = if vol.is_default() { "/" } else { "" };
            let event = path_of(path.to_owned());
            self.events.push(event);
            return;
        }
        let mut events = Vec::new();
        for (parent, name) in inode.links() {
            if except != Some((parent, name)) {
                events.push(path_of(self.entry_path(vol, parent, name)));
            }
        }
        if events.is_empty() && except.is_none() {
            // Links unknown: still tell watchers of the whole namespace.
            events.push(path_of(String::new()));
        }
        self.events.extend(events);
    }

    /// Writes the change log; the caller logs the mutations and commits.
    pub(crate) fn finish(mut self) -> Result<Finished, StoreError> {
        let mut log = Vec::new();
        for event in &self.events {
            event
                .encode_length_delimited(&mut log)
                .expect("a Vec grows as needed");
        }
        self.set_change(self.revision, Some(log))?;
        if self.revision > self.changes_kept {
            self.set_change(self.revision - self.changes_kept, None)?;
        }
        Ok(Finished {
            revision: self.revision,
            changes: self.events,
            mutations: self.mutations,
            freed: self.freed,
            dirty: self.dirty,
        })
    }
}

/// A name as it appears in errors: the path when known.
fn shown(path: Option<&StorePath>, name: &str) -> String {
    path.map_or_else(|| name.to_owned(), ToString::to_string)
}

/// A single directory entry name: what a path component may be.
pub fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.contains('/') {
        return Err(StoreError::InvalidName(name.chars().take(64).collect()));
    }
    let as_path = format!("/{name}");
    let parsed: StorePath = as_path.parse()?;
    if parsed.as_str() != as_path {
        return Err(StoreError::InvalidName(name.chars().take(64).collect()));
    }
    Ok(())
}

/// Applies logged mutations to the tables of `txn`: the replay of the write-ahead log.
/// Chunk mutations come only from logs of schema 1, which kept content in redb; the
/// migration to content files follows the replay.
pub(crate) fn replay(txn: &WriteTransaction, mutations: &[Mutation]) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    let mut inodes = txn.open_table(INODES)?;
    let mut dirents = txn.open_table(DIRENTS)?;
    let mut chunks = txn.open_table(CHUNKS)?;
    let mut changes = txn.open_table(CHANGES)?;
    let mut volumes = txn.open_table(VOLUMES)?;
    for m in mutations {
        match m {
            Mutation::Meta(key, value) => {
                meta.insert(key.as_str(), *value)?;
            }
            Mutation::Inode(ino, Some(bytes)) => {
                inodes.insert(*ino, bytes.as_slice())?;
            }
            Mutation::Inode(ino, None) => {
                inodes.remove(*ino)?;
            }
            Mutation::Dirent(parent, name, Some(child)) => {
                dirents.insert((*parent, name.as_str()), *child)?;
            }
            Mutation::Dirent(parent, name, None) => {
                dirents.remove((*parent, name.as_str()))?;
            }
            Mutation::Chunk(ino, index, Some(bytes)) => {
                chunks.insert((*ino, *index), bytes.as_slice())?;
            }
            Mutation::Chunk(ino, index, None) => {
                chunks.remove((*ino, *index))?;
            }
            Mutation::ChunksFrom(ino, from) => {
                chunks.retain_in((*ino, *from)..=(*ino, u64::MAX), |_, _| false)?;
            }
            Mutation::Change(revision, Some(bytes)) => {
                changes.insert(*revision, bytes.as_slice())?;
            }
            Mutation::Change(revision, None) => {
                changes.remove(*revision)?;
            }
            Mutation::Volume(name, Some(bytes)) => {
                volumes.insert(name.as_str(), bytes.as_slice())?;
            }
            Mutation::Volume(name, None) => {
                volumes.remove(name.as_str())?;
            }
        }
    }
    Ok(())
}
