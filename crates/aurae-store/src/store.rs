//! The store handle: one per data directory, shared by every caller, and its single way
//! to write.
//!
//! Reads are plain read transactions, run on the caller's thread ([`crate::namespace`],
//! [`crate::inodes`], [`crate::volumes`], [`crate::watch`]). Every write is an operation
//! run by [`Store::write`] in a transaction of the writer thread ([`crate::commit`]),
//! possibly sharing it with concurrent writes. This module never touches a table itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase};
use tokio::sync::broadcast;

use crate::commit::Committer;
use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::extents::Extents;
use crate::stats::StoreStats;
use crate::tables::{CHANGES, META, last_revision};
use crate::types::{Committed, Durability};
use crate::wal::Sync;
use crate::writer::Writer;

/// The store: open once per daemon, shared by the services.
#[derive(Debug)]
pub struct Store {
    pub(crate) db: Arc<Database>,
    pub(crate) path: PathBuf,
    pub(crate) extents: Arc<Extents>,
    pub(crate) changes: broadcast::Sender<Arc<Committed>>,
    pub(crate) committer: Committer,
    pub(crate) closing: tokio::sync::watch::Sender<bool>,
    pub(crate) config: StoreConfig,
}

impl Store {
    /// Where the database file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Runs the write operation `op` (built by [`crate::namespace`], [`crate::inodes`]
    /// or [`crate::volumes`]) in a transaction, and answers its value and the revision
    /// it committed as once `durability` is met.
    ///
    /// `op` may run more than once: if another write of its group fails, the group is
    /// undone and each write is run alone. An error leaves nothing of `op` behind.
    pub async fn write<T, F>(&self, durability: Durability, op: F) -> Result<(T, u64), StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        match durability {
            Durability::Durable => self.committer.submit(op, Sync::Now).await,
            Durability::Logged => self.committer.submit(op, Sync::Later).await,
            Durability::LoggedSmall => match self.committer.try_run_here(op) {
                Ok(answer) => answer,
                Err(op) => self.committer.submit(op, Sync::Later).await,
            },
        }
    }

    /// Makes every write so far durable (fdatasync(2) of the log, for logged writes).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.committer.flush().await
    }

    /// The store's counters (commits, group sizes, log syncs), for the daemon's metrics:
    /// atomics, so reading them never waits on a commit.
    pub fn stats(&self) -> &StoreStats {
        self.committer.stats()
    }

    /// The current revision: that of the last committed write.
    pub fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read()?;
        last_revision(&txn.open_table(CHANGES)?, &txn.open_table(META)?)
    }
}
