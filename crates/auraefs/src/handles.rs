//! Open files and directories of one mount, and the files hidden while open.
//!
//! The store frees a file when its last name goes, but POSIX keeps an unlinked file
//! readable until its last close. So a file unlinked (or renamed over) while open is
//! renamed to `.auraefs-<inode>` in its directory instead ("silly rename", as NFS does),
//! and removed on its last release. This module only keeps the books; it never calls
//! auraed itself.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use aurae_proto::v0 as pb;

/// The prefix of the names of files hidden while open.
pub const HIDDEN_PREFIX: &str = ".auraefs-";

/// The hidden name of inode `inode`.
pub fn hidden_name(inode: u64) -> String {
    format!("{HIDDEN_PREFIX}{inode}")
}

/// Whether `name` is a hidden open-but-unlinked file (left out of directory listings).
pub fn is_hidden_name(name: &str) -> bool {
    name.strip_prefix(HIDDEN_PREFIX)
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// Where a hidden file lives: its directory and hidden name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenFile {
    /// The directory (store inode).
    pub parent: u64,
    /// The `.auraefs-<inode>` name.
    pub name: String,
}

/// Open file bookkeeping, behind one lock.
#[derive(Debug, Default)]
pub struct OpenFiles {
    next_handle: u64,
    /// File handle -> store inode.
    handles: HashMap<u64, u64>,
    /// Store inode -> number of open handles.
    open_count: HashMap<u64, usize>,
    /// Store inode -> where it is hidden.
    hidden: HashMap<u64, HiddenFile>,
}

impl OpenFiles {
    /// Registers an open of `inode`; returns its file handle.
    pub fn open(&mut self, inode: u64) -> u64 {
        self.next_handle += 1;
        let handle = self.next_handle;
        self.handles.insert(handle, inode);
        *self.open_count.entry(inode).or_default() += 1;
        handle
    }

    /// Ends handle `handle`; returns the hidden file to remove if it was the last open.
    pub fn release(&mut self, handle: u64) -> Option<HiddenFile> {
        let inode = self.handles.remove(&handle)?;
        let count = self.open_count.get_mut(&inode)?;
        *count -= 1;
        if *count > 0 {
            return None;
        }
        self.open_count.remove(&inode);
        self.hidden.remove(&inode)
    }

    /// Whether any file is open at all (if not, nothing needs hiding).
    pub fn any_open(&self) -> bool {
        !self.open_count.is_empty()
    }

    /// Whether `inode` has open handles.
    pub fn is_open(&self, inode: u64) -> bool {
        self.open_count.contains_key(&inode)
    }

    /// Records that `inode` was hidden as `file`.
    pub fn hide(&mut self, inode: u64, file: HiddenFile) {
        self.hidden.insert(inode, file);
    }

    /// Where `inode` is hidden, if it is.
    pub fn hidden(&self, inode: u64) -> Option<&HiddenFile> {
        self.hidden.get(&inode)
    }

    /// Forgets that `inode` is hidden (it was renamed back or replaced).
    pub fn unhide(&mut self, inode: u64) -> Option<HiddenFile> {
        self.hidden.remove(&inode)
    }

    /// Every hidden file, for cleaning up when the mount ends.
    pub fn drain_hidden(&mut self) -> Vec<HiddenFile> {
        self.hidden.drain().map(|(_, file)| file).collect()
    }
}

/// The most recent values of a stream (revisions, inodes), up to a bound: enough to
/// recognise what was just seen without growing forever.
#[derive(Debug)]
pub struct RecentSet {
    capacity: usize,
    order: VecDeque<u64>,
    set: HashSet<u64>,
}

impl RecentSet {
    /// A set keeping the last `capacity` values.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// Remembers `value`, forgetting the oldest one beyond the capacity.
    pub fn insert(&mut self, value: u64) {
        if self.set.insert(value) {
            self.order.push_back(value);
            if self.order.len() > self.capacity
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    /// Whether `value` is among the remembered ones.
    pub fn contains(&self, value: u64) -> bool {
        self.set.contains(&value)
    }
}

/// Where one open directory stream is: the names it has handed out, in order, so that
/// an offset maps back to a name and a listing resumes after that name even when entries
/// come and go meanwhile.
#[derive(Debug)]
pub struct DirCursor {
    /// The directory (store inode).
    pub inode: u64,
    /// Names consumed so far; the entry at index `i` has offset `i + FIRST_ENTRY_OFFSET`.
    pub names: Vec<String>,
    /// Entries fetched after the last consumed name, not handed out yet.
    pub pending: VecDeque<pb::DirEntry>,
    /// Whether the store has more entries after `pending`.
    pub more: bool,
}

/// The offset of the first real entry ("." is 1, ".." is 2).
pub const FIRST_ENTRY_OFFSET: u64 = 3;

impl DirCursor {
    /// A cursor at the start of directory `inode`.
    pub fn new(inode: u64) -> Self {
        Self {
            inode,
            names: Vec::new(),
            pending: VecDeque::new(),
            more: true,
        }
    }

    /// Moves to `offset` (as the kernel passes it); `false` if it lies past the end.
    pub fn seek(&mut self, offset: u64) -> bool {
        let consumed = offset.saturating_sub(FIRST_ENTRY_OFFSET - 1) as usize;
        if consumed == self.names.len() {
            return true;
        }
        if consumed > self.names.len() {
            return false;
        }
        self.names.truncate(consumed);
        self.pending.clear();
        self.more = true;
        true
    }

    /// The name to list after (the last one consumed).
    pub fn resume_after(&self) -> &str {
        self.names.last().map_or("", String::as_str)
    }

    /// The offset the next consumed entry gets.
    pub fn next_offset(&self) -> u64 {
        self.names.len() as u64 + FIRST_ENTRY_OFFSET
    }

    /// Marks the first pending entry as consumed.
    pub fn consume(&mut self) {
        if let Some(entry) = self.pending.pop_front() {
            self.names.push(entry.name);
        }
    }
}

/// The open directory streams of a mount.
#[derive(Debug, Default)]
pub struct OpenDirs {
    next_handle: u64,
    cursors: HashMap<u64, Arc<Mutex<DirCursor>>>,
}

impl OpenDirs {
    /// Opens a stream on directory `inode`.
    pub fn open(&mut self, inode: u64) -> u64 {
        self.next_handle += 1;
        self.cursors.insert(
            self.next_handle,
            Arc::new(Mutex::new(DirCursor::new(inode))),
        );
        self.next_handle
    }

    /// The cursor of handle `handle`.
    pub fn get(&self, handle: u64) -> Option<Arc<Mutex<DirCursor>>> {
        self.cursors.get(&handle).cloned()
    }

    /// Closes handle `handle`.
    pub fn release(&mut self, handle: u64) {
        self.cursors.remove(&handle);
    }
}

/// Locks `mutex`, recovering the data of a panicked holder (callbacks never panic, but
/// a poisoned lock must not turn every later call into a panic).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> pb::DirEntry {
        pb::DirEntry {
            name: name.to_owned(),
            stat: None,
        }
    }

    #[test]
    fn hidden_names_are_recognised_exactly() {
        assert!(is_hidden_name(&hidden_name(42)));
        assert!(!is_hidden_name(".auraefs-"));
        assert!(!is_hidden_name(".auraefs-12x"));
        assert!(!is_hidden_name("auraefs-12"));
        assert!(!is_hidden_name(".auraefs-notes"));
    }

    #[test]
    fn the_last_release_of_a_hidden_file_hands_it_back_for_removal() {
        let mut files = OpenFiles::default();
        let a = files.open(7);
        let b = files.open(7);
        assert!(files.is_open(7));
        let hidden = HiddenFile {
            parent: 1,
            name: hidden_name(7),
        };
        files.hide(7, hidden.clone());
        assert_eq!(files.release(a), None);
        assert_eq!(files.release(b), Some(hidden));
        assert!(!files.is_open(7));
        assert_eq!(files.release(b), None, "a second release is ignored");
    }

    #[test]
    fn a_file_that_is_not_hidden_is_just_closed() {
        let mut files = OpenFiles::default();
        let handle = files.open(9);
        assert_eq!(files.release(handle), None);
        assert!(!files.is_open(9));
    }

    #[test]
    fn a_cursor_maps_offsets_back_to_names() {
        let mut cursor = DirCursor::new(5);
        assert!(cursor.seek(0));
        cursor.pending.extend([entry("a"), entry("b"), entry("c")]);
        assert_eq!(cursor.next_offset(), 3);
        cursor.consume();
        assert_eq!(cursor.next_offset(), 4);
        cursor.consume();
        // The kernel resumes after "b" (offset 4 was handed out with it): nothing moves.
        assert!(cursor.seek(4));
        assert_eq!(cursor.resume_after(), "b");
        assert_eq!(cursor.pending.len(), 1);
        // Seeking back to after "a" drops what follows and resumes after "a".
        assert!(cursor.seek(3));
        assert_eq!(cursor.resume_after(), "a");
        assert!(cursor.pending.is_empty());
        assert!(cursor.more);
        // rewinddir.
        assert!(cursor.seek(0));
        assert_eq!(cursor.resume_after(), "");
        // An offset never handed out lies past the end.
        assert!(!cursor.seek(99));
    }
}
