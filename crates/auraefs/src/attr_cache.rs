//! Attributes this mount learnt in the last TTL, to answer the kernel's GETATTR without a
//! call.
//!
//! The kernel keeps attributes for the TTL too, but drops parts of them on its own (with
//! the writeback cache, every close(2) forgets `st_blocks`), and then asks again for what
//! nothing changed. This cache holds what auraed answered, for no longer than the kernel
//! may trust it, and forgets an inode when this mount changes it in a way the answer does
//! not show, or when the volume's Watch reports a change from elsewhere: it is never more
//! stale than the kernel's own cache is allowed to be.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aurae_proto::v0 as pb;

use crate::handles::lock;

/// Inodes remembered at most; beyond that the cache starts over.
const CAPACITY: usize = 16_384;

/// Recent stats by store inode.
#[derive(Debug)]
pub struct AttrCache {
    ttl: Duration,
    entries: Mutex<HashMap<u64, (pb::Stat, Instant)>>,
}

impl AttrCache {
    /// A cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// Remembers what auraed just answered about `stat.inode`.
    pub fn put(&self, stat: &pb::Stat) {
        let mut entries = lock(&self.entries);
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(stat.inode, (stat.clone(), Instant::now()));
    }

    /// The stat of `inode`, if learnt within the TTL.
    pub fn fresh(&self, inode: u64) -> Option<pb::Stat> {
        let mut entries = lock(&self.entries);
        match entries.get(&inode) {
            Some((stat, at)) if at.elapsed() < self.ttl => Some(stat.clone()),
            Some(_) => {
                entries.remove(&inode);
                None
            }
            None => None,
        }
    }

    /// Forgets `inodes` (0 is ignored): they changed in a way no answer showed.
    pub fn forget(&self, inodes: &[u64]) {
        let mut entries = lock(&self.entries);
        for inode in inodes {
            entries.remove(inode);
        }
    }

    /// Forgets everything.
    pub fn clear(&self) {
        lock(&self.entries).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(inode: u64, size: u64) -> pb::Stat {
        pb::Stat {
            inode,
            size,
            ..Default::default()
        }
    }

    #[test]
    fn answers_within_the_ttl_and_forgets_on_demand() {
        let cache = AttrCache::new(Duration::from_secs(60));
        assert!(cache.fresh(5).is_none());
        cache.put(&stat(5, 10));
        assert_eq!(cache.fresh(5).unwrap().size, 10);
        cache.put(&stat(5, 20));
        assert_eq!(cache.fresh(5).unwrap().size, 20, "the newest answer wins");
        cache.forget(&[5, 0]);
        assert!(cache.fresh(5).is_none());
        cache.put(&stat(6, 1));
        cache.clear();
        assert!(cache.fresh(6).is_none());
    }

    #[test]
    fn entries_expire_with_the_ttl() {
        let cache = AttrCache::new(Duration::from_millis(20));
        cache.put(&stat(5, 10));
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.fresh(5).is_none());
    }
}
