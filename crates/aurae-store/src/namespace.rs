//! The default namespace addressed by path (`/services/nginx/port`): the Storage API's
//! view of the store.
//!
//! Reads run here, in read transactions on the caller's thread; writes are operations for
//! [`crate::Store::write`]. Paths arrive validated as [`StorePath`]s and are never
//! followed through symlinks: a symlink is an entry like any other. Nothing here reaches
//! into a volume other than the default one.

use aurae_core::path::{StorePath, check_symlink_target};
use redb::{ReadableDatabase, ReadableTable};

use crate::Store;
use crate::error::StoreError;
use crate::record::Inode;
use crate::staging::Content;
use crate::tables::{DEFAULT_VOLUME, DIRENTS, INODES, get_inode, resolve};
use crate::types::{ChangeKind, EntryKind, Parents, PutOptions, Replace, Stat, UnlinkKind};
use crate::writer::{Vol, Writer};

/// Reads of a file whose content file keeps being replaced under them give up after this.
pub(crate) const READ_ATTEMPTS: usize = 3;

/// The stat of `inode`; `path` is empty where the caller addressed it by inode.
pub(crate) fn stat_of(path: &str, ino: u64, inode: &Inode) -> Stat {
    Stat {
        path: path.to_owned(),
        kind: inode.entry_kind(),
        inode: ino,
        mode: inode.mode,
        uid: inode.uid,
        gid: inode.gid,
        size: inode.size,
        nlink: inode.nlink,
        mtime_ns: inode.mtime_ns,
        ctime_ns: inode.ctime_ns,
        atime_ns: inode.atime_ns,
        version: inode.version,
        target: inode.target.clone(),
        rdev: inode.rdev,
    }
}

/// Up to `limit` entries of directory `dir` named after `after`, and whether more follow.
pub(crate) fn entries(
    inodes: &impl ReadableTable<u64, &'static [u8]>,
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    dir: u64,
    after: &str,
    limit: usize,
) -> Result<(Vec<(String, Stat)>, bool), StoreError> {
    let mut entries = Vec::new();
    for entry in dirents.range((dir, after)..)? {
        let (key, child) = entry?;
        let (parent, name) = key.value();
        if parent != dir {
            break;
        }
        if name == after {
            continue;
        }
        if entries.len() == limit {
            return Ok((entries, true));
        }
        let child = child.value();
        entries.push((
            name.to_owned(),
            stat_of("", child, &get_inode(inodes, child)?),
        ));
    }
    Ok((entries, false))
}

impl Store {
    /// The stat of `path`.
    pub fn stat(&self, path: &StorePath) -> Result<Stat, StoreError> {
        let txn = self.db.begin_read()?;
        let (ino, inode) = resolve(&txn.open_table(INODES)?, &txn.open_table(DIRENTS)?, path)?;
        Ok(stat_of(path.as_str(), ino, &inode))
    }

    /// A file's whole content and its stat; files larger than
    /// [`crate::StoreConfig::get_max`] are refused (read them by inode).
    pub fn get(&self, path: &StorePath) -> Result<(Vec<u8>, Stat), StoreError> {
        let mut ino = 0;
        for _ in 0..READ_ATTEMPTS {
            let txn = self.db.begin_read()?;
            let inode;
            (ino, inode) = resolve(&txn.open_table(INODES)?, &txn.open_table(DIRENTS)?, path)?;
            match inode.entry_kind() {
                EntryKind::Directory => return Err(StoreError::IsADirectory(path.to_string())),
                EntryKind::Symlink => return Err(StoreError::IsASymlink(path.to_string())),
                _ if inode.size > self.config.get_max => {
                    return Err(StoreError::TooLarge {
                        path: path.to_string(),
                        size: inode.size,
                        limit: self.config.get_max,
                    });
                }
                _ => {}
            }
            if let Some(content) = self.content(ino, &inode, 0, inode.size)? {
                return Ok((content, stat_of(path.as_str(), ino, &inode)));
            }
        }
        Err(StoreError::MissingContent(ino))
    }

    /// Up to `limit` entries of directory `path` named after `after`, and whether more
    /// follow.
    pub fn list(
        &self,
        path: &StorePath,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<Stat>, bool), StoreError> {
        let txn = self.db.begin_read()?;
        let inodes = txn.open_table(INODES)?;
        let dirents = txn.open_table(DIRENTS)?;
        let (dir, inode) = resolve(&inodes, &dirents, path)?;
        if !inode.is_dir() {
            return Err(StoreError::NotADirectory(path.to_string()));
        }
        let (entries, more) = entries(&inodes, &dirents, dir, after, limit)?;
        let stats = entries
            .into_iter()
            .map(|(name, mut stat)| {
                stat.path = path.join(&name).to_string();
                stat
            })
            .collect();
        Ok((stats, more))
    }

    /// Checks, without writing, whether a Put of `path` with `options` would be refused
    /// as things stand (a stale version, a directory or symlink in the way, a missing
    /// parent): for a streamed Put to fail before its bytes travel. The Put checks again
    /// when it commits.
    pub fn check_put(&self, path: &StorePath, options: &PutOptions) -> Result<(), StoreError> {
        let txn = self.db.begin_read()?;
        let inodes = txn.open_table(INODES)?;
        let dirents = txn.open_table(DIRENTS)?;
        let existing = match resolve(&inodes, &dirents, path) {
            Ok((_, inode)) => Some(inode),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        check_version(path, existing.as_ref(), options.if_version)?;
        match existing {
            Some(inode) => check_replaceable(path, &inode),
            None => {
                let (parent, _) = path
                    .split_last()
                    .ok_or_else(|| StoreError::IsADirectory(path.to_string()))?;
                match resolve(&inodes, &dirents, &parent) {
                    Ok((_, dir)) if dir.is_dir() => Ok(()),
                    Ok(_) => Err(StoreError::NotADirectory(parent.to_string())),
                    Err(StoreError::NotFound(_)) if options.parents == Parents::Create => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }
}

/// The compare-and-swap check of a Put.
fn check_version(
    path: &StorePath,
    existing: Option<&Inode>,
    expected: Option<u64>,
) -> Result<(), StoreError> {
    if let Some(expected) = expected {
        let actual = existing.map_or(0, |inode| inode.version);
        if actual != expected {
            return Err(StoreError::VersionMismatch {
                path: path.to_string(),
                expected,
                actual,
            });
        }
    }
    Ok(())
}

/// Whether a Put may replace the content of `inode`: files and special nodes only.
fn check_replaceable(path: &StorePath, inode: &Inode) -> Result<(), StoreError> {
    match inode.entry_kind() {
        EntryKind::Directory => Err(StoreError::IsADirectory(path.to_string())),
        EntryKind::Symlink => Err(StoreError::IsASymlink(path.to_string())),
        _ => Ok(()),
    }
}

/// The directory that will hold `path`, created with its parents if asked.
fn parent_dir(
    w: &mut Writer<'_>,
    vol: &mut Vol,
    path: &StorePath,
    parents: Parents,
) -> Result<u64, StoreError> {
    let (parent, _) = path
        .split_last()
        .ok_or_else(|| StoreError::Exists("/".to_owned()))?;
    match (w.resolve(&parent), parents) {
        (Ok((ino, inode)), _) if inode.is_dir() => Ok(ino),
        (Ok(_), _) => Err(StoreError::NotADirectory(parent.to_string())),
        (Err(StoreError::NotFound(_)), Parents::Create) => {
            mkdir_in(w, vol, &parent, 0o755, Parents::Create).map(|(ino, _)| ino)
        }
        (Err(e), _) => Err(e),
    }
}

fn mkdir_in(
    w: &mut Writer<'_>,
    vol: &mut Vol,
    path: &StorePath,
    mode: u32,
    parents: Parents,
) -> Result<(u64, Inode), StoreError> {
    if let Ok((ino, inode)) = w.resolve(path) {
        return match (inode.is_dir(), parents) {
            (true, Parents::Create) => Ok((ino, inode)),
            _ => Err(StoreError::Exists(path.to_string())),
        };
    }
    let parent = parent_dir(w, vol, path, parents)?;
    let (_, name) = path.split_last().expect("not the root");
    let inode = w.fresh(vol, EntryKind::Directory, mode);
    let ino = w.create(vol, parent, name, inode, Some(path))?;
    Ok((ino, w.node(vol, ino)?))
}

/// Writes the whole file `path` (created, with its parents unless told not to), with
/// compare-and-swap on its version if asked. When the write fails, a staged `content` is
/// the caller's to [`Store::discard`].
pub fn put(
    path: StorePath,
    content: Content,
    options: PutOptions,
) -> impl FnMut(&mut Writer<'_>) -> Result<Stat, StoreError> + Send + 'static {
    move |w| {
        let path = &path;
        let mut vol = w.volume(DEFAULT_VOLUME)?;
        let existing = match w.resolve(path) {
            Ok(found) => Some(found),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        check_version(
            path,
            existing.as_ref().map(|(_, inode)| inode),
            options.if_version,
        )?;
        let (ino, mut inode) = match existing {
            Some((ino, inode)) => {
                check_replaceable(path, &inode)?;
                let (parent, name) = path.split_last().expect("a file is not the root");
                let (parent_ino, _) = w.resolve(&parent)?;
                w.record(&vol, ChangeKind::Put, ino, parent_ino, name, Some(path));
                w.record_other_links(&vol, ChangeKind::Put, ino, &inode, (parent_ino, name));
                (ino, inode)
            }
            None => {
                let parent = parent_dir(w, &mut vol, path, options.parents)?;
                let (_, name) = path.split_last().expect("not the root");
                let inode = w.fresh(&vol, EntryKind::File, options.mode.unwrap_or(0o644));
                let ino = w.create(&mut vol, parent, name, inode, Some(path))?;
                (ino, w.node(&vol, ino)?)
            }
        };
        w.replace_content(&mut vol, ino, &mut inode, &content)?;
        Ok(stat_of(path.as_str(), ino, &inode))
    }
}

/// Creates directory `path` (with [`Parents::Create`]: and its parents, succeeding if it
/// exists).
pub fn mkdir(
    path: StorePath,
    mode: u32,
    parents: Parents,
) -> impl FnMut(&mut Writer<'_>) -> Result<Stat, StoreError> + Send + 'static {
    move |w| {
        let mut vol = w.volume(DEFAULT_VOLUME)?;
        let (ino, inode) = mkdir_in(w, &mut vol, &path, mode, parents)?;
        Ok(stat_of(path.as_str(), ino, &inode))
    }
}

/// Creates symlink `path` to `target` (stored as given, never followed here); its parent
/// must exist and the target must pass [`check_symlink_target`].
pub fn symlink(
    path: StorePath,
    target: String,
) -> impl FnMut(&mut Writer<'_>) -> Result<Stat, StoreError> + Send + 'static {
    move |w| {
        check_symlink_target(&target)?;
        let path = &path;
        let mut vol = w.volume(DEFAULT_VOLUME)?;
        let parent = parent_dir(w, &mut vol, path, Parents::MustExist)?;
        let (_, name) = path.split_last().expect("not the root");
        let mut inode = w.fresh(&vol, EntryKind::Symlink, 0o777);
        inode.target = target.clone();
        inode.size = target.len() as u64;
        let ino = w.create(&mut vol, parent, name, inode, Some(path))?;
        Ok(stat_of(path.as_str(), ino, &w.node(&vol, ino)?))
    }
}

/// Whether a removal takes a directory's content with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Files, symlinks and empty directories only.
    Single,
    /// Anything, directories with everything under them (rm -r).
    Recursive,
}

/// Removes `path` as `removal` says.
pub fn remove(
    path: StorePath,
    removal: Removal,
) -> impl FnMut(&mut Writer<'_>) -> Result<(), StoreError> + Send + 'static {
    move |w| {
        let path = &path;
        let mut vol = w.volume(DEFAULT_VOLUME)?;
        let (parent_path, name) = path.split_last().ok_or(StoreError::NotPermitted(
            "the root of the namespace cannot be removed",
        ))?;
        let (parent, _) = w.resolve(&parent_path)?;
        let kind = match removal {
            Removal::Recursive => UnlinkKind::Recursive,
            Removal::Single => UnlinkKind::Any,
        };
        w.unlink(&mut vol, parent, name, kind, Some(path))
            .map(|_| ())
    }
}

/// Moves `from` to `to` atomically, replacing `to` as rename(2) does.
pub fn rename(
    from: StorePath,
    to: StorePath,
) -> impl FnMut(&mut Writer<'_>) -> Result<Stat, StoreError> + Send + 'static {
    move |w| {
        let (from, to) = (&from, &to);
        let (Some((from_parent, from_name)), Some((to_parent, to_name))) =
            (from.split_last(), to.split_last())
        else {
            return Err(StoreError::InvalidMove {
                from: from.to_string(),
                to: to.to_string(),
                why: "the root cannot be moved or replaced",
            });
        };
        let mut vol = w.volume(DEFAULT_VOLUME)?;
        let (src, _) = w.resolve(&from_parent)?;
        let (dst, dst_inode) = w.resolve(&to_parent)?;
        if !dst_inode.is_dir() {
            return Err(StoreError::NotADirectory(to_parent.to_string()));
        }
        let (ino, inode) = w.rename(
            &mut vol,
            src,
            from_name,
            dst,
            to_name,
            Replace::Allowed,
            Some((from, to)),
        )?;
        Ok(stat_of(to.as_str(), ino, &inode))
    }
}
