//! Watching changes: the live feed of committed transactions, the change log to resume
//! from a revision, and which changes a watcher of a prefix wants.
//!
//! A watcher subscribes first and reads the log after, so that nothing committed in
//! between is lost; what arrives twice is recognised by its revision. Nothing here
//! writes: the writer logs each transaction's changes as it commits.

use std::sync::Arc;

use aurae_core::path::StorePath;
use prost::Message;
use redb::{ReadableDatabase, ReadableTable};
use tokio::sync::broadcast;

use crate::Store;
use crate::error::{RecordId, StoreError};
use crate::record::ChangeRecord;
use crate::tables::{CHANGES, volume_key};
use crate::types::{Change, ChangeKind, Committed};

/// Which changes a watcher wants: those of one volume, and in the default namespace those
/// at or under a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchFilter {
    volume: String,
    prefix: StorePath,
}

impl WatchFilter {
    /// Changes of `volume` ("" or "default": the default namespace) at or under
    /// `prefix` (which only the default namespace has: in a volume every change counts).
    pub fn new(volume: &str, prefix: StorePath) -> Self {
        Self {
            volume: volume_key(volume).to_owned(),
            prefix,
        }
    }

    /// Whether `change` touches something at or under the prefix, including by removing
    /// or moving an ancestor of it.
    pub fn keeps(&self, change: &Change) -> bool {
        if change.volume != self.volume {
            return false;
        }
        if !change.volume.is_empty() || self.prefix.is_root() {
            return true;
        }
        let takes_subtree = matches!(change.kind, ChangeKind::Remove | ChangeKind::Rename);
        let touches = |path: &str| {
            path.parse::<StorePath>().is_ok_and(|p| {
                p.starts_with(&self.prefix) || (takes_subtree && self.prefix.starts_with(&p))
            })
        };
        touches(&change.path) || (!change.to.is_empty() && touches(&change.to))
    }
}

impl Store {
    /// Live change notifications, one per committed transaction; pair with
    /// [`Store::changes_after`] to resume from a revision.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.changes.subscribe()
    }

    /// Tells watchers to end their streams: the daemon is shutting down.
    pub fn close_watches(&self) {
        self.closing.send_replace(true);
    }

    /// Turns true when watchers should end.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// The logged changes after `revision` that `filter` keeps, oldest first, and the
    /// last revision read.
    pub fn changes_after(
        &self,
        revision: u64,
        filter: &WatchFilter,
    ) -> Result<(Vec<Change>, u64), StoreError> {
        // No revision follows u64::MAX: nothing was logged after it.
        let Some(next) = revision.checked_add(1) else {
            return Ok((Vec::new(), revision));
        };
        let txn = self.db.begin_read()?;
        let changes = txn.open_table(CHANGES)?;
        let oldest = changes.first()?.map(|(k, _)| k.value());
        if let Some(oldest) = oldest
            && next < oldest
        {
            return Err(StoreError::Compacted {
                asked: revision,
                oldest,
            });
        }
        let mut kept = Vec::new();
        let mut last = revision;
        for entry in changes.range(next..)? {
            let (rev, log) = entry?;
            last = rev.value();
            let mut bytes = log.value();
            while !bytes.is_empty() {
                let record =
                    ChangeRecord::decode_length_delimited(&mut bytes).map_err(|source| {
                        StoreError::Undecodable {
                            record: RecordId::Changes(last),
                            source,
                        }
                    })?;
                let change = Change::from(record);
                if filter.keeps(&change) {
                    kept.push(change);
                }
            }
        }
        Ok((kept, last))
    }
}
