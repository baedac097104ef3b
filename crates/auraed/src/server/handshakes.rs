//! Connections accepted but not yet authenticated: a bounded set, oldest out first.
//!
//! Anyone who can open the socket can open a connection and never say a word; until its
//! handshake deadline it holds a descriptor. Bounding the pending handshakes keeps such
//! connections from eating the descriptor budget. When the set is full a new connection
//! evicts the oldest pending one rather than being refused: a handshake takes
//! milliseconds, so the oldest is the likeliest to be stalled, and a legitimate client
//! connecting among thousands of silent ones still gets its turn. This module never
//! decides who may connect; it only bounds how many wait.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// The set of pending handshakes, at most `limit` at once.
#[derive(Debug, Clone)]
pub struct PendingHandshakes {
    shared: Arc<Mutex<Pending>>,
    limit: usize,
}

#[derive(Debug, Default)]
struct Pending {
    next: u64,
    /// By arrival: the first entry is the oldest.
    waiting: BTreeMap<u64, Arc<Notify>>,
}

impl PendingHandshakes {
    /// An empty set holding at most `limit` (at least one) pending handshakes.
    pub fn new(limit: usize) -> Self {
        Self {
            shared: Arc::default(),
            limit: limit.max(1),
        }
    }

    /// Enters a new pending handshake, evicting the oldest if the set is full. The slot
    /// leaves the set when dropped.
    pub fn enter(&self) -> HandshakeSlot {
        let mut pending = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        while pending.waiting.len() >= self.limit {
            if let Some((_, oldest)) = pending.waiting.pop_first() {
                // A stored permit: the evicted task sees it even if it is not waiting yet.
                oldest.notify_one();
            }
        }
        let id = pending.next;
        pending.next += 1;
        let evicted = Arc::new(Notify::new());
        pending.waiting.insert(id, evicted.clone());
        HandshakeSlot {
            id,
            evicted,
            shared: self.shared.clone(),
        }
    }

    /// How many handshakes are pending now.
    pub fn len(&self) -> usize {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .len()
    }

    /// Whether no handshake is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One pending handshake's place in the set.
#[derive(Debug)]
pub struct HandshakeSlot {
    id: u64,
    evicted: Arc<Notify>,
    shared: Arc<Mutex<Pending>>,
}

impl HandshakeSlot {
    /// Completes when a newer connection evicted this one: its handshake must stop.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_set_evicts_its_oldest_and_keeps_the_rest() {
        let pending = PendingHandshakes::new(2);
        let first = pending.enter();
        let second = pending.enter();
        let third = pending.enter();
        assert_eq!(pending.len(), 2);
        let quick = Duration::from_millis(50);
        assert!(
            tokio::time::timeout(quick, first.evicted()).await.is_ok(),
            "the oldest must be evicted"
        );
        assert!(tokio::time::timeout(quick, second.evicted()).await.is_err());
        assert!(tokio::time::timeout(quick, third.evicted()).await.is_err());
        drop(first);
        drop(second);
        assert_eq!(pending.len(), 1, "a finished handshake leaves the set");
        drop(third);
        assert!(pending.is_empty());
    }
}
