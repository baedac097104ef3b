//! Tuning of the storage capability, with documented defaults: how much one listing
//! answers, how large a piece of a read is, and how the store itself is tuned.

use std::time::Duration;

use aurae_store::StoreConfig;

/// How the Storage and Filesystem services answer.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The store's own tuning (group commit, checkpoints, Watch history, inline size).
    pub store: StoreConfig,
    /// Entries of a `List` page when the client names no size. Default 1,000.
    pub list_page_default: usize,
    /// Largest `List` page, or `ReadDir` batch, whatever the client asks. Default 10,000:
    /// one answer stays well under gRPC's 4 MiB message limit.
    pub list_page_max: usize,
    /// Largest piece of a `Read` answered in one message. Default 256 KiB: large reads
    /// stream in pieces that fill the 8 MiB flow-control window without waiting on it.
    pub read_piece: u64,
    /// How often a database held by another process (an auraed still shutting down) is
    /// tried again. Default 1 s.
    pub reopen_interval: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            store: StoreConfig::default(),
            list_page_default: 1000,
            list_page_max: 10_000,
            read_piece: 256 << 10,
            reopen_interval: Duration::from_secs(1),
        }
    }
}

impl StorageConfig {
    /// The page size to answer for a client that asked for `asked` entries (0: the
    /// default).
    pub fn page(&self, asked: u32) -> usize {
        match asked as usize {
            0 => self.list_page_default,
            n => n.min(self.list_page_max),
        }
    }
}
