//! The FUSE filesystem: kernel requests turned into calls on a [`VolumeTransport`].
//!
//! fuser's callbacks are synchronous and run on several session threads; each one blocks
//! on its call on the mount's tokio runtime. Every failure becomes an errno reply: no
//! callback panics or leaves a request unanswered. Permission checks are the kernel's
//! (`-o default_permissions`); this module passes the caller's uid and gid so that new
//! files belong to the caller. With the kernel's writeback cache, write(2) lands in the
//! page cache and the kernel sends it on in large batches; close(2) and fsync(2) push it
//! to auraed. Writes are acknowledged once auraed has them in its page cache and log (they
//! survive a crash of auraed) and fsync(2) makes them durable, as on a local filesystem.

use std::ffi::OsStr;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aurae_proto::v0 as pb;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use nix::libc;

use crate::attr::{self, InodeMap};
use crate::attr_cache::AttrCache;
use crate::handles::{self, HiddenFile, OpenDirs, OpenFiles, RecentSet, is_hidden_name, lock};
use crate::invalidate::OwnChanges;
use crate::known_dirs::KnownDirs;
use crate::transport::{AttrChange, NewNode, Removal, Replace, VolumeTransport};

/// How long the kernel may trust attributes and names without asking again.
pub const TTL: Duration = Duration::from_secs(1);

/// Largest write the kernel sends in one request (and one Write stream).
pub const MAX_WRITE: u32 = 1 << 20;

/// How files are opened: their page cache outlives a close. The cache stays true
/// because changes made elsewhere invalidate it (Watch), and attributes that changed
/// behind the kernel's back drop it too (`FUSE_AUTO_INVAL_DATA`).
const CACHED: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE;

/// Inodes removed for good that are remembered.
const GONE_KEPT: usize = 4096;

/// Entries fetched per ReadDir call.
const READDIR_PAGE: u32 = 256;

/// Longest name a directory entry may have.
const NAME_MAX: usize = 255;

thread_local! {
    /// Each session thread's runtime: its calls, and its own connection to auraed, run
    /// right here instead of hopping to the shared runtime's threads and back.
    static SESSION_RUNTIME: Option<tokio::runtime::Runtime> =
        tokio::runtime::Builder::new_current_thread().enable_all().build().ok();
}

/// How write(2) reaches auraed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCaching {
    /// The kernel's writeback cache: writes land in the page cache and go on in large
    /// batches; errors such as ENOSPC surface at close(2) or fsync(2).
    Writeback,
    /// Every write(2) is answered by auraed, errors included.
    WriteThrough,
}

/// A mounted volume.
pub struct AuraeFs<T: VolumeTransport> {
    transport: Arc<T>,
    runtime: tokio::runtime::Handle,
    inodes: InodeMap,
    files: Mutex<OpenFiles>,
    dirs: Mutex<OpenDirs>,
    own: Arc<OwnChanges>,
    caching: WriteCaching,
    attrs: Arc<AttrCache>,
    known: Arc<KnownDirs>,
    /// Inodes this mount removed for good: the kernel still flushes cached times to them
    /// when it evicts them, which needs no call to learn they are gone.
    gone: Mutex<RecentSet>,
}

impl<T: VolumeTransport> std::fmt::Debug for AuraeFs<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuraeFs")
            .field("inodes", &self.inodes)
            .finish_non_exhaustive()
    }
}

/// One entry of a directory listing, for readdir and readdirplus alike.
struct Listed<'a> {
    ino: INodeNo,
    offset: u64,
    kind: FileType,
    name: &'a str,
    attr: Option<FileAttr>,
}

fn name_of(name: &OsStr) -> Result<&str, Errno> {
    // The API carries names as UTF-8 strings.
    let name = name.to_str().ok_or(Errno::EINVAL)?;
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(name)
}

fn ns_of(time: TimeOrNow) -> i64 {
    match time {
        TimeOrNow::SpecificTime(time) => attr::ns_of_time(time),
        TimeOrNow::Now => attr::ns_of_time(SystemTime::now()),
    }
}

fn is_file(stat: &pb::Stat) -> bool {
    stat.kind == pb::EntryKind::File as i32
}

impl<T: VolumeTransport> AuraeFs<T> {
    /// A filesystem over `transport` for the volume rooted at store inode `root`, whose
    /// calls run on `runtime`; `own` collects the revisions of its own changes.
    pub fn new(
        transport: Arc<T>,
        runtime: tokio::runtime::Handle,
        root: u64,
        own: Arc<OwnChanges>,
        caching: WriteCaching,
        attrs: Arc<AttrCache>,
        known: Arc<KnownDirs>,
    ) -> Self {
        Self {
            transport,
            runtime,
            inodes: InodeMap::new(root),
            files: Mutex::default(),
            dirs: Mutex::default(),
            own,
            caching,
            attrs,
            known,
            gone: Mutex::new(RecentSet::new(GONE_KEPT)),
        }
    }

    /// Runs `future` to completion on this session thread's own runtime (the shared one
    /// if this thread could not get one).
    fn block<F: Future>(&self, future: F) -> F::Output {
        SESSION_RUNTIME.with(|runtime| match runtime {
            Some(runtime) => runtime.block_on(future),
            None => self.runtime.block_on(future),
        })
    }

    fn store(&self, ino: INodeNo) -> u64 {
        self.inodes.to_store(ino)
    }

    /// Runs a change and notes its revision as this mount's own before anything may take
    /// its Watch event for someone else's.
    fn change<R>(
        &self,
        call: impl Future<Output = Result<R, Errno>>,
        revision: impl FnOnce(&R) -> u64,
    ) -> Result<R, Errno> {
        let _in_flight = self.own.begin();
        let value = self.block(call)?;
        self.own.note(revision(&value));
        Ok(value)
    }

    /// Whether store inode `inode` lost its last link through this mount.
    fn is_gone(&self, inode: u64) -> bool {
        lock(&self.gone).contains(inode)
    }

    /// The kernel's attributes of `stat`, just answered by auraed, which are remembered
    /// for the kernel's next GETATTR.
    fn attr_of(&self, stat: &pb::Stat) -> FileAttr {
        self.attrs.put(stat);
        let mut attr = attr::file_attr(stat, &self.inodes);
        // An unlinked file kept for its open handles has no name the user knows of.
        if lock(&self.files).hidden(stat.inode).is_some() {
            attr.nlink = attr.nlink.saturating_sub(1);
        }
        attr
    }

    /// Mode and owner of a new node: the caller's (auraed gives a node in a setgid
    /// directory the directory's group, as ext4 does).
    fn owner_for(req: &Request, mode: u32) -> (u32, u32, u32) {
        (mode & 0o7777, req.uid(), req.gid())
    }

    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        kind: pb::EntryKind,
        mode: u32,
        rdev: u32,
    ) -> Result<pb::Stat, Errno> {
        let name = name_of(name)?;
        let parent = self.store(parent);
        let (mode, uid, gid) = Self::owner_for(req, mode);
        let node = NewNode {
            parent,
            name,
            kind,
            mode,
            uid,
            gid,
            rdev,
        };
        let made = self.change(self.transport.make_node(node), |s| s.version);
        let stat = match made {
            Ok(stat) => stat,
            Err(e) => {
                if e == Errno::EEXIST {
                    // A name this mount had not seen: its knowledge of the directory is off.
                    self.known.forget(&[parent]);
                }
                return Err(e);
            }
        };
        self.attrs.forget(&[parent]);
        self.known.added(parent, name);
        if kind == pb::EntryKind::Directory {
            self.known.created(stat.inode);
        }
        Ok(stat)
    }

    fn do_setattr(&self, ino: INodeNo, change: AttrChange) -> Result<FileAttr, Errno> {
        let inode = self.store(ino);
        if change == AttrChange::default() {
            return self.current_attr(inode);
        }
        if self.is_gone(inode) {
            return Err(Errno::ENOENT);
        }
        let stat = self.change(self.transport.setattr(inode, change), |s| s.version)?;
        Ok(self.attr_of(&stat))
    }

    /// The attributes of `inode` as GETATTR answers them: gone, learnt within the TTL, or
    /// asked of auraed.
    fn current_attr(&self, inode: u64) -> Result<FileAttr, Errno> {
        if self.is_gone(inode) {
            return Err(Errno::ENOENT);
        }
        let stat = match self.attrs.fresh(inode) {
            Some(stat) => stat,
            None => self.block(self.transport.getattr(inode))?,
        };
        Ok(self.attr_of(&stat))
    }

    /// Removes a name, remembering the change as our own.
    fn remove_name(&self, parent: u64, name: &str, removal: Removal) -> Result<(), Errno> {
        let unlinked = self.change(self.transport.unlink(parent, name, removal), |u| u.revision)?;
        if unlinked.gone {
            lock(&self.gone).insert(unlinked.inode);
        }
        self.attrs.forget(&[parent, unlinked.inode]);
        self.known.removed(parent, name);
        if removal == Removal::Directory {
            self.known.forget(&[unlinked.inode]);
        }
        Ok(())
    }

    /// Moves a name, remembering the change as our own.
    fn move_name(&self, from: (u64, &str), to: (u64, &str), replace: Replace) -> Result<(), Errno> {
        let moved = self.change(self.transport.rename(from, to, replace), |revision| {
            *revision
        });
        // Both directories, the moved inode and any it replaced changed.
        self.attrs.clear();
        match moved {
            Ok(_) => {
                self.known.removed(from.0, from.1);
                self.known.added(to.0, to.1);
                Ok(())
            }
            Err(e) => {
                self.known.forget(&[from.0, to.0]);
                Err(e)
            }
        }
    }

    /// Moves the file `name` in `parent` out of sight if it is open, so that it stays
    /// readable until its last close; the inode it hid, if it did.
    fn hide_if_open(&self, parent: u64, name: &str) -> Result<Option<u64>, Errno> {
        if !lock(&self.files).any_open() {
            return Ok(None);
        }
        let stat = match self.block(self.transport.lookup(parent, name)) {
            Ok(stat) => stat,
            Err(e) if e == Errno::ENOENT => return Ok(None),
            Err(e) => return Err(e),
        };
        if !is_file(&stat) || stat.nlink > 1 {
            return Ok(None);
        }
        // Held across the rename so that a concurrent last release cannot miss the hiding.
        let mut files = lock(&self.files);
        if !files.is_open(stat.inode) {
            return Ok(None);
        }
        let hidden = handles::hidden_name(stat.inode);
        self.move_name((parent, name), (parent, &hidden), Replace::Allow)?;
        tracing::debug!(
            inode = stat.inode,
            name,
            "unlinked while open: hidden until closed"
        );
        files.hide(
            stat.inode,
            HiddenFile {
                parent,
                name: hidden,
            },
        );
        Ok(Some(stat.inode))
    }

    fn do_unlink(&self, parent: INodeNo, name: &OsStr) -> Result<(), Errno> {
        let name = name_of(name)?;
        let parent = self.store(parent);
        if self.hide_if_open(parent, name)?.is_some() {
            return Ok(());
        }
        self.remove_name(parent, name, Removal::File)
    }

    fn do_rename(
        &self,
        from: (INodeNo, &OsStr),
        to: (INodeNo, &OsStr),
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let from = (self.store(from.0), name_of(from.1)?);
        let to = (self.store(to.0), name_of(to.1)?);
        if flags.contains(RenameFlags::RENAME_NOREPLACE) {
            return self.move_name(from, to, Replace::Never);
        }
        // A target that is open must stay readable: hide it first, unless it is the
        // source itself under another name (then rename(2) does nothing).
        let mut hidden = None;
        if lock(&self.files).any_open() {
            let source = self.block(self.transport.lookup(from.0, from.1))?;
            if let Ok(target) = self.block(self.transport.lookup(to.0, to.1))
                && target.inode != source.inode
            {
                hidden = self.hide_if_open(to.0, to.1)?;
            }
        }
        let result = self.move_name(from, to, Replace::Allow);
        if let (Err(_), Some(inode)) = (&result, hidden) {
            self.restore_hidden(inode, to);
        }
        result
    }

    /// Puts a file hidden for a rename that then failed back under its name.
    fn restore_hidden(&self, inode: u64, (parent, name): (u64, &str)) {
        let mut files = lock(&self.files);
        let Some(file) = files.unhide(inode) else {
            return;
        };
        let back = self.move_name((file.parent, &file.name), (parent, name), Replace::Never);
        if let Err(e) = back {
            tracing::warn!(name, error = ?e, "could not restore a file hidden for a failed rename");
            files.hide(inode, file);
        }
    }

    fn release_handle(&self, fh: FileHandle) {
        let hidden = lock(&self.files).release(fh.0);
        if let Some(file) = hidden {
            self.remove_hidden(&file);
        }
    }

    fn remove_hidden(&self, file: &HiddenFile) {
        let removed = self.remove_name(file.parent, &file.name, Removal::File);
        if let Err(e) = removed {
            tracing::warn!(name = file.name, error = ?e, "could not remove a file unlinked while open");
        }
    }

    fn do_create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> Result<(FileAttr, u64), Errno> {
        let stat = match self.make(req, parent, name, pb::EntryKind::File, mode, 0) {
            Ok(stat) => stat,
            // The kernel thought the name free (a stale negative entry): open what is there.
            Err(e) if e == Errno::EEXIST && flags & libc::O_EXCL == 0 => {
                let existing =
                    self.block(self.transport.lookup(self.store(parent), name_of(name)?))?;
                if !is_file(&existing) {
                    return Err(Errno::EISDIR);
                }
                if flags & libc::O_TRUNC != 0 {
                    let change = AttrChange {
                        size: Some(0),
                        ..Default::default()
                    };
                    self.change(self.transport.setattr(existing.inode, change), |s| {
                        s.version
                    })?
                } else {
                    existing
                }
            }
            Err(e) => return Err(e),
        };
        let handle = lock(&self.files).open(stat.inode);
        Ok((self.attr_of(&stat), handle))
    }

    fn list(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut add: impl FnMut(Listed<'_>) -> bool,
    ) -> Result<(), Errno> {
        let cursor = lock(&self.dirs).get(fh.0).ok_or(Errno::EBADF)?;
        let mut cursor = lock(&cursor);
        let mut position = offset;
        if position == 0 {
            let dot = Listed {
                ino,
                offset: 1,
                kind: FileType::Directory,
                name: ".",
                attr: Some(attr::placeholder_dir_attr(ino)),
            };
            if add(dot) {
                return Ok(());
            }
            position = 1;
        }
        if position == 1 {
            let dotdot = Listed {
                ino: INodeNo::ROOT,
                offset: 2,
                kind: FileType::Directory,
                name: "..",
                attr: Some(attr::placeholder_dir_attr(INodeNo::ROOT)),
            };
            if add(dotdot) {
                return Ok(());
            }
            position = 2;
        }
        if !cursor.seek(position) {
            return Ok(());
        }
        let mut added = position > offset;
        loop {
            if cursor.pending.is_empty() {
                if !cursor.more {
                    return Ok(());
                }
                let after = cursor.resume_after().to_owned();
                let page = self.block(self.transport.readdir(cursor.inode, &after, READDIR_PAGE));
                let (entries, more) = match page {
                    Ok(page) => page,
                    // What was added stands; the kernel asks again for the rest.
                    Err(_) if added => return Ok(()),
                    Err(e) => return Err(e),
                };
                cursor.more = more && !entries.is_empty();
                cursor.pending.extend(entries);
                if cursor.pending.is_empty() {
                    return Ok(());
                }
            }
            let next_offset = cursor.next_offset();
            let entry = &cursor.pending[0];
            if !is_hidden_name(&entry.name) {
                let stat = entry.stat.clone().unwrap_or_default();
                let listed = Listed {
                    ino: self.inodes.to_fuse(stat.inode),
                    offset: next_offset,
                    kind: attr::file_type(stat.kind),
                    name: &entry.name,
                    attr: entry
                        .stat
                        .as_ref()
                        .map(|s| attr::file_attr(s, &self.inodes)),
                };
                if add(listed) {
                    return Ok(());
                }
                added = true;
            }
            cursor.consume();
        }
    }
}

fn reply_entry(reply: ReplyEntry, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn reply_attr(reply: ReplyAttr, result: Result<FileAttr, Errno>) {
    match result {
        Ok(attr) => reply.attr(&TTL, &attr),
        Err(e) => reply.error(e),
    }
}

fn reply_empty(reply: ReplyEmpty, result: Result<(), Errno>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl<T: VolumeTransport> Filesystem for AuraeFs<T> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_WRITE) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_AUTO_INVAL_DATA
            | InitFlags::FUSE_BIG_WRITES;
        let wanted = match self.caching {
            WriteCaching::Writeback => wanted | InitFlags::FUSE_WRITEBACK_CACHE,
            WriteCaching::WriteThrough => wanted,
        };
        let _ = config.add_capabilities(wanted & config.capabilities());
        Ok(())
    }

    fn destroy(&mut self) {
        let hidden = lock(&self.files).drain_hidden();
        for file in &hidden {
            self.remove_hidden(file);
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let parent = self.store(parent);
        let result = name_of(name).and_then(|name| {
            if self.known.knows_absent(parent, name) {
                return Err(Errno::ENOENT);
            }
            let stat = self.block(self.transport.lookup(parent, name))?;
            Ok(self.attr_of(&stat))
        });
        match result {
            // Absent names are remembered too (inode 0: a negative entry), so that a search
            // path is not asked again within the TTL; a change elsewhere drops it (Watch).
            Err(e) if e == Errno::ENOENT => {
                reply.entry(&TTL, &attr::placeholder_dir_attr(INodeNo(0)), Generation(0));
            }
            result => reply_entry(reply, result),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        reply_attr(reply, self.current_attr(self.store(ino)));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = AttrChange {
            mode: mode.map(|mode| mode & 0o7777),
            uid,
            gid,
            size,
            atime_ns: atime.map(ns_of),
            mtime_ns: mtime.map(ns_of),
        };
        reply_attr(reply, self.do_setattr(ino, change));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.block(self.transport.getattr(self.store(ino))) {
            Ok(stat) if stat.kind == pb::EntryKind::Symlink as i32 => {
                reply.data(stat.target.as_bytes());
            }
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        // The store keeps special files as nodes; the kernel gives them their behaviour.
        let kind = match mode & libc::S_IFMT {
            0 | libc::S_IFREG => pb::EntryKind::File,
            libc::S_IFIFO => pb::EntryKind::Fifo,
            libc::S_IFSOCK => pb::EntryKind::Socket,
            libc::S_IFCHR => pb::EntryKind::CharDevice,
            libc::S_IFBLK => pb::EntryKind::BlockDevice,
            _ => {
                reply.error(Errno::EINVAL);
                return;
            }
        };
        let result = self
            .make(req, parent, name, kind, mode, rdev)
            .map(|stat| self.attr_of(&stat));
        reply_entry(reply, result);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self
            .make(req, parent, name, pb::EntryKind::Directory, mode, 0)
            .map(|stat| self.attr_of(&stat));
        reply_entry(reply, result);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty(reply, self.do_unlink(parent, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = name_of(name)
            .and_then(|name| self.remove_name(self.store(parent), name, Removal::Directory));
        reply_empty(reply, result);
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = (|| {
            let name = name_of(link_name)?;
            let target = target.to_str().ok_or(Errno::EINVAL)?;
            let parent = self.store(parent);
            let (_, uid, gid) = Self::owner_for(req, 0o777);
            let stat = self.change(
                self.transport
                    .make_symlink(parent, name, target, (uid, gid)),
                |s| s.version,
            )?;
            self.attrs.forget(&[parent]);
            self.known.added(parent, name);
            Ok(self.attr_of(&stat))
        })();
        reply_entry(reply, result);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply_empty(
            reply,
            self.do_rename((parent, name), (newparent, newname), flags),
        );
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = name_of(newname).and_then(|name| {
            let stat = self.change(
                self.transport
                    .link(self.store(ino), self.store(newparent), name),
                |s| s.version,
            )?;
            self.attrs.forget(&[self.store(newparent)]);
            self.known.added(self.store(newparent), name);
            Ok(self.attr_of(&stat))
        });
        reply_entry(reply, result);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let handle = lock(&self.files).open(self.store(ino));
        reply.opened(FileHandle(handle), CACHED);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.block(
            self.transport
                .read(self.store(ino), offset, u64::from(size)),
        ) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let written = self.change(self.transport.write(self.store(ino), offset, data), |w| {
            w.1.version
        });
        match written {
            Ok((written, stat)) => {
                self.attrs.put(&stat);
                reply.written(u32::try_from(written).unwrap_or(u32::MAX));
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) does not make data durable on a local filesystem either: fsync(2) does.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.release_handle(fh);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply_empty(reply, self.block(self.transport.fsync(self.store(ino))));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let handle = lock(&self.dirs).open(self.store(ino));
        reply.opened(FileHandle(handle), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = self.list(ino, fh, offset, |entry| {
            reply.add(entry.ino, entry.offset, entry.kind, entry.name)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let result = self.list(ino, fh, offset, |entry| {
            let attr = entry
                .attr
                .unwrap_or_else(|| attr::placeholder_dir_attr(entry.ino));
            reply.add(
                entry.ino,
                entry.offset,
                entry.name,
                &TTL,
                &attr,
                Generation(0),
            )
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.dirs).release(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Entries created, renamed or removed are logged like writes: Fsync makes them durable.
        reply_empty(reply, self.block(self.transport.fsync(self.store(ino))));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.block(self.transport.statfs()) {
            Ok(fs) => {
                let block_size = u32::try_from(fs.block_size).unwrap_or(4096);
                reply.statfs(
                    fs.blocks,
                    fs.blocks_free,
                    fs.blocks_free,
                    fs.files,
                    fs.files_free,
                    block_size,
                    fs.name_max,
                    block_size,
                );
            }
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Without default_permissions every caller the mount lets in may do anything.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.do_create(req, parent, name, mode, flags) {
            Ok((attr, handle)) => {
                reply.created(&TTL, &attr, Generation(0), FileHandle(handle), CACHED)
            }
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        // The store has no extended attributes; ENOSYS makes the kernel stop asking.
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }
}
