//! The store's tuning: how writes are grouped, when the log is checkpointed, how much
//! history Watch can resume from, and where file content lives.
//!
//! Every field has a default fit for a node's daemon, documented on the field; change one
//! with its `with_*` method (`StoreConfig::default().with_changes_kept(1000)`). Nothing
//! here changes the on-disk format: a store opens under any configuration.

use std::time::Duration;

/// How a [`crate::Store`] groups, checkpoints and keeps its writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Most writes folded into one transaction (one log append, one fdatasync).
    /// Default 256: enough for every client of a busy node to share a sync.
    pub max_group: usize,
    /// Size of the write-ahead log that triggers a checkpoint (a durable redb commit,
    /// after which the log is emptied). Default 64 MiB: a long replay is bounded by it.
    pub checkpoint_bytes: u64,
    /// Idle time after which the log is checkpointed. Default 1 s.
    pub checkpoint_idle: Duration,
    /// How long the writer polls for the next write after a durable commit before it
    /// sleeps: a client waiting on durable writes sends its next one about a round trip
    /// later, and waking a sleeping thread costs tens of microseconds. Default 200 µs.
    pub poll_after_durable: Duration,
    /// How many revisions the change log keeps for Watch to resume from. Default 100,000.
    pub changes_kept: u64,
    /// Largest file content kept inline in its inode record; larger content lives in a
    /// content file of its own. Default 4 KiB (a page).
    pub inline_max: usize,
    /// Largest value [`crate::Store::get`] answers whole; larger ones are read in pieces.
    /// Default 64 MiB.
    pub get_max: u64,
    /// Committed transactions buffered for live watchers before a slow one has to
    /// re-read the change log. Default 1024.
    pub watch_buffer: usize,
    /// Free bytes on the data filesystem below which a write that adds data is refused
    /// (ENOSPC), so that removals, which free space, and the checkpoint that empties the
    /// log still find room on a full disk. Default 1 MiB.
    pub space_reserve: u64,
    /// Memory redb may keep as its page cache. Default 16 MiB: redb's own default is
    /// 1 GiB, which a long-running daemon fills with every page it ever touched; the
    /// kernel's page cache still holds the rest of the file.
    pub cache_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_group: 256,
            checkpoint_bytes: 64 << 20,
            checkpoint_idle: Duration::from_secs(1),
            poll_after_durable: Duration::from_micros(200),
            changes_kept: 100_000,
            inline_max: 4096,
            get_max: 64 << 20,
            watch_buffer: 1024,
            space_reserve: 1 << 20,
            cache_bytes: 16 << 20,
        }
    }
}

impl StoreConfig {
    /// Sets [`StoreConfig::max_group`] (at least 1).
    pub fn with_max_group(mut self, writes: usize) -> Self {
        self.max_group = writes.max(1);
        self
    }

    /// Sets [`StoreConfig::checkpoint_bytes`].
    pub fn with_checkpoint_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_bytes = bytes;
        self
    }

    /// Sets [`StoreConfig::checkpoint_idle`].
    pub fn with_checkpoint_idle(mut self, idle: Duration) -> Self {
        self.checkpoint_idle = idle;
        self
    }

    /// Sets [`StoreConfig::poll_after_durable`].
    pub fn with_poll_after_durable(mut self, poll: Duration) -> Self {
        self.poll_after_durable = poll;
        self
    }

    /// Sets [`StoreConfig::changes_kept`] (at least 1).
    pub fn with_changes_kept(mut self, revisions: u64) -> Self {
        self.changes_kept = revisions.max(1);
        self
    }

    /// Sets [`StoreConfig::inline_max`].
    pub fn with_inline_max(mut self, bytes: usize) -> Self {
        self.inline_max = bytes;
        self
    }

    /// Sets [`StoreConfig::get_max`].
    pub fn with_get_max(mut self, bytes: u64) -> Self {
        self.get_max = bytes;
        self
    }

    /// Sets [`StoreConfig::watch_buffer`] (at least 1).
    pub fn with_watch_buffer(mut self, transactions: usize) -> Self {
        self.watch_buffer = transactions.max(1);
        self
    }

    /// Sets [`StoreConfig::space_reserve`].
    pub fn with_space_reserve(mut self, bytes: u64) -> Self {
        self.space_reserve = bytes;
        self
    }

    /// This configuration with the fields a bare struct literal could leave at zero
    /// raised to their least working value.
    pub(crate) fn sanitized(self) -> Self {
        Self {
            max_group: self.max_group.max(1),
            changes_kept: self.changes_kept.max(1),
            watch_buffer: self.watch_buffer.max(1),
            ..self
        }
    }
}
