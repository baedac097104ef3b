//! The names in the directories this mount made, so that looking up a name that is not
//! there needs no call.
//!
//! Creating a file costs the kernel a lookup first (is the name free?), then the create.
//! In a directory this mount made itself, it has seen every name come and go, so it can
//! answer "absent" on its own. A directory stops being known as soon as anything else
//! touches it (a Watch event from elsewhere), when the change stream breaks, or when it
//! grows past a size worth keeping. If a name slips in unseen in between, the create that
//! follows meets it (EEXIST) and the directory is forgotten: the same window the
//! kernel's own negative entries have.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::handles::lock;

/// Directories known at most; beyond that the oldest knowledge is dropped.
const MAX_DIRS: usize = 1024;

/// Names known per directory at most; a larger directory is asked instead.
const MAX_NAMES: usize = 16_384;

/// Complete name sets of the directories this mount made (by store inode).
#[derive(Debug, Default)]
pub struct KnownDirs {
    dirs: Mutex<HashMap<u64, HashSet<String>>>,
}

impl KnownDirs {
    /// `dir` was just made by this mount: it is empty.
    pub fn created(&self, dir: u64) {
        let mut dirs = lock(&self.dirs);
        if dirs.len() >= MAX_DIRS {
            dirs.clear();
        }
        dirs.insert(dir, HashSet::new());
    }

    /// Whether `name` is known not to be in `dir`.
    pub fn knows_absent(&self, dir: u64, name: &str) -> bool {
        lock(&self.dirs)
            .get(&dir)
            .is_some_and(|names| !names.contains(name))
    }

    /// `name` now exists in `dir` (made, linked or moved there by this mount).
    pub fn added(&self, dir: u64, name: &str) {
        let mut dirs = lock(&self.dirs);
        if let Some(names) = dirs.get_mut(&dir) {
            if names.len() >= MAX_NAMES {
                dirs.remove(&dir);
            } else {
                names.insert(name.to_owned());
            }
        }
    }

    /// `name` no longer exists in `dir`.
    pub fn removed(&self, dir: u64, name: &str) {
        if let Some(names) = lock(&self.dirs).get_mut(&dir) {
            names.remove(name);
        }
    }

    /// Stops trusting what is known of `dirs` (0 is ignored).
    pub fn forget(&self, dirs: &[u64]) {
        let mut known = lock(&self.dirs);
        for dir in dirs {
            known.remove(dir);
        }
    }

    /// Stops trusting everything.
    pub fn clear(&self) {
        lock(&self.dirs).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_made_here_answer_and_they_follow_their_names() {
        let dirs = KnownDirs::default();
        assert!(
            !dirs.knows_absent(5, "a"),
            "a directory never made here is asked"
        );
        dirs.created(5);
        assert!(dirs.knows_absent(5, "a"));
        dirs.added(5, "a");
        assert!(!dirs.knows_absent(5, "a"));
        dirs.removed(5, "a");
        assert!(dirs.knows_absent(5, "a"));
        dirs.forget(&[5, 0]);
        assert!(!dirs.knows_absent(5, "a"), "forgotten: asked again");
        dirs.created(6);
        dirs.clear();
        assert!(!dirs.knows_absent(6, "b"));
    }

    #[test]
    fn a_directory_past_the_size_limit_is_forgotten() {
        let dirs = KnownDirs::default();
        dirs.created(5);
        for i in 0..=MAX_NAMES {
            dirs.added(5, &format!("n{i}"));
        }
        assert!(!dirs.knows_absent(5, "other"));
    }
}
