//! Keeps the kernel's caches honest when the volume changes elsewhere.
//!
//! A task follows the volume's Watch stream and turns every change made by someone else
//! (another mount, `aurae kv put`, a workload) into `inval_inode` / `inval_entry`
//! notifications, so it shows in the mount at once rather than after the 1 s TTL. Changes
//! this mount made itself are recognised by their revision and skipped: the kernel saw
//! them already. Notifications are sent from a thread of their own: they may wait for a
//! directory lock that an in-flight request holds, and must never stall a request or the
//! async runtime. This module never changes the volume.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use aurae_proto::v0 as pb;
use fuser::{INodeNo, Notifier};
use tokio_stream::StreamExt;

use crate::attr::InodeMap;
use crate::attr_cache::AttrCache;
use crate::handles::{RecentSet, lock};
use crate::known_dirs::KnownDirs;
use crate::transport::VolumeTransport;

/// How many of this mount's own revisions are remembered.
const OWN_REVISIONS_KEPT: usize = 4096;

/// Longest wait for this mount's changes in flight before an event is taken as foreign.
const SETTLE_PATIENCE: Duration = Duration::from_secs(1);

/// Wait before re-subscribing after the Watch stream broke.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// The revisions of changes this mount made (as the replies' stats tell them), and the
/// changes still on their way: a change's event can come down the Watch stream before
/// its reply comes back, and must not be taken for someone else's.
#[derive(Debug, Default)]
pub struct OwnChanges {
    inner: Mutex<OwnInner>,
    ended: tokio::sync::Notify,
}

#[derive(Debug)]
struct OwnInner {
    revisions: RecentSet,
    next_ticket: u64,
    in_flight: BTreeSet<u64>,
}

impl Default for OwnInner {
    fn default() -> Self {
        Self {
            revisions: RecentSet::new(OWN_REVISIONS_KEPT),
            next_ticket: 0,
            in_flight: BTreeSet::new(),
        }
    }
}

/// A change on its way to auraed; dropping it says its revision (if any) was noted.
#[derive(Debug)]
pub struct InFlight<'a> {
    own: &'a OwnChanges,
    ticket: u64,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.own.inner).in_flight.remove(&self.ticket);
        self.own.ended.notify_waiters();
    }
}

impl OwnChanges {
    /// Marks the start of a change: hold the result until its revision is noted.
    pub fn begin(&self) -> InFlight<'_> {
        let mut inner = lock(&self.inner);
        inner.next_ticket += 1;
        let ticket = inner.next_ticket;
        inner.in_flight.insert(ticket);
        InFlight { own: self, ticket }
    }

    /// Remembers that revision `revision` was this mount's own change.
    pub fn note(&self, revision: u64) {
        if revision == 0 {
            return;
        }
        let mut inner = lock(&self.inner);
        inner.revisions.insert(revision);
    }

    /// Whether `revision` was this mount's own change.
    pub fn is_own(&self, revision: u64) -> bool {
        lock(&self.inner).revisions.contains(revision)
    }

    /// Waits until every change that was on its way when called has ended (changes begun
    /// later commit later, so they cannot be the event at hand).
    pub async fn settle(&self) {
        let horizon = lock(&self.inner).next_ticket;
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if lock(&self.inner)
                .in_flight
                .range(..=horizon)
                .next()
                .is_none()
            {
                return;
            }
            ended.await;
        }
    }

    /// Whether `revision` is this mount's own change, once the changes on their way now
    /// have answered (waiting at most `patience`).
    pub async fn is_own_settled(&self, revision: u64, patience: Duration) -> bool {
        if self.is_own(revision) {
            return true;
        }
        let _ = tokio::time::timeout(patience, self.settle()).await;
        self.is_own(revision)
    }
}

/// One kernel cache invalidation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// An inode's attributes, and with `data` its cached pages too.
    Inode {
        /// The FUSE inode.
        ino: INodeNo,
        /// Whether cached file content is dropped as well.
        data: bool,
    },
    /// A name in a directory (positive or negative dentry).
    Entry {
        /// The directory's FUSE inode.
        parent: INodeNo,
        /// The name.
        name: String,
    },
}

/// The invalidations one change calls for.
pub fn invalidations(event: &pb::WatchEvent, inodes: &InodeMap) -> Vec<Invalidation> {
    let mut out = Vec::new();
    let entry = |parent: u64, name: &str, out: &mut Vec<Invalidation>| {
        if parent != 0 && !name.is_empty() {
            out.push(Invalidation::Entry {
                parent: inodes.to_fuse(parent),
                name: name.to_owned(),
            });
            out.push(Invalidation::Inode {
                ino: inodes.to_fuse(parent),
                data: false,
            });
        }
    };
    entry(event.parent_inode, &event.name, &mut out);
    entry(event.to_parent_inode, &event.to_name, &mut out);
    if event.inode != 0 {
        let kind = pb::ChangeKind::try_from(event.kind).unwrap_or(pb::ChangeKind::Unspecified);
        out.push(Invalidation::Inode {
            ino: inodes.to_fuse(event.inode),
            data: kind == pb::ChangeKind::Put,
        });
    }
    out
}

fn apply(notifier: &Notifier, invalidation: &Invalidation) {
    let result = match invalidation {
        // offset 0, length 0: attributes and every cached page; offset -1: attributes only.
        Invalidation::Inode { ino, data: true } => notifier.inval_inode(*ino, 0, 0),
        Invalidation::Inode { ino, data: false } => notifier.inval_inode(*ino, -1, 0),
        Invalidation::Entry { parent, name } => notifier.inval_entry(*parent, OsStr::new(name)),
    };
    if let Err(e) = result {
        tracing::debug!(?invalidation, error = %e, "kernel refused an invalidation");
    }
}

/// Starts the invalidation thread and the Watch task on `runtime`; both end when the
/// runtime shuts down.
pub fn start<T: VolumeTransport>(
    runtime: &tokio::runtime::Handle,
    transport: Arc<T>,
    notifier: Notifier,
    inodes: InodeMap,
    own: Arc<OwnChanges>,
    attrs: Arc<AttrCache>,
    known: Arc<KnownDirs>,
) -> std::io::Result<()> {
    let (sender, receiver) = mpsc::channel::<Vec<Invalidation>>();
    std::thread::Builder::new()
        .name("auraefs-inval".into())
        .spawn(move || {
            for batch in receiver {
                for invalidation in &batch {
                    apply(&notifier, invalidation);
                }
            }
        })?;
    runtime.spawn(follow(transport, sender, inodes, own, attrs, known));
    Ok(())
}

async fn follow<T: VolumeTransport>(
    transport: Arc<T>,
    sender: mpsc::Sender<Vec<Invalidation>>,
    inodes: InodeMap,
    own: Arc<OwnChanges>,
    attrs: Arc<AttrCache>,
    known: Arc<KnownDirs>,
) {
    let mut last = 0u64;
    // Consecutive failures: the first is a warning, the rest (auraed restarting) debug.
    let mut failures = 0u32;
    loop {
        match transport.watch(last).await {
            Ok(mut stream) => {
                if failures > 0 {
                    tracing::info!(after = last, "following the volume's changes again");
                }
                failures = 0;
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(event) => {
                            last = last.max(event.revision);
                            if own.is_own_settled(event.revision, SETTLE_PATIENCE).await {
                                continue;
                            }
                            let touched = [event.inode, event.parent_inode, event.to_parent_inode];
                            attrs.forget(&touched);
                            known.forget(&touched);
                            if sender.send(invalidations(&event, &inodes)).is_err() {
                                return;
                            }
                        }
                        Err(status) => {
                            if status.code() == tonic::Code::OutOfRange {
                                // Too far behind: start over from now (the 1 s TTL covers the gap).
                                last = 0;
                            }
                            tracing::warn!(code = ?status.code(), message = status.message(), "the change stream broke; subscribing again");
                            break;
                        }
                    }
                }
                // Changes may be missed until the next subscription, and auraed may be
                // gone: cached attributes and open connections are not trusted.
                transport.connection_lost();
                attrs.clear();
                known.clear();
            }
            Err(status) => {
                transport.connection_lost();
                attrs.clear();
                known.clear();
                failures += 1;
                if failures == 1 {
                    tracing::warn!(code = ?status.code(), message = status.message(), "cannot follow the volume's changes; retrying every second");
                } else {
                    tracing::debug!(code = ?status.code(), message = status.message(), failures, "cannot follow the volume's changes yet");
                }
            }
        }
        tokio::time::sleep(RESUBSCRIBE_DELAY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settling_waits_for_the_changes_in_flight_only() {
        let own = Arc::new(OwnChanges::default());
        let change = own.begin();
        // Not yet answered: the event of revision 7 could be ours.
        assert!(
            !own.is_own_settled(7, Duration::from_millis(50)).await,
            "gave up after its patience"
        );
        let waiter = {
            let own = own.clone();
            tokio::spawn(async move { own.is_own_settled(7, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        own.note(7);
        drop(change);
        assert!(waiter.await.unwrap(), "the answered change was ours");
        // A change begun after the wait started is not waited for.
        let earlier = own.begin();
        let settle = {
            let own = own.clone();
            tokio::spawn(async move { own.settle().await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _later = own.begin();
        assert!(
            !settle.is_finished(),
            "the earlier change is still in flight"
        );
        drop(earlier);
        tokio::time::timeout(Duration::from_secs(1), settle)
            .await
            .expect("settle returned while a later change was in flight")
            .unwrap();
    }

    #[test]
    fn own_revisions_are_remembered_boundedly() {
        let own = OwnChanges::default();
        own.note(5);
        assert!(own.is_own(5));
        assert!(!own.is_own(6));
        for revision in 100..100 + OWN_REVISIONS_KEPT as u64 {
            own.note(revision);
        }
        assert!(!own.is_own(5), "the oldest revision was forgotten");
        assert!(own.is_own(100 + OWN_REVISIONS_KEPT as u64 - 1));
        own.note(0);
        assert!(!own.is_own(0));
    }

    #[test]
    fn a_rename_invalidates_both_names_and_both_directories() {
        let event = pb::WatchEvent {
            kind: pb::ChangeKind::Rename as i32,
            inode: 30,
            parent_inode: 7,
            name: "a".into(),
            to_parent_inode: 8,
            to_name: "b".into(),
            ..Default::default()
        };
        let got = invalidations(&event, &InodeMap::new(7));
        assert!(got.contains(&Invalidation::Entry {
            parent: INodeNo::ROOT,
            name: "a".into()
        }));
        assert!(got.contains(&Invalidation::Entry {
            parent: INodeNo(8),
            name: "b".into()
        }));
        assert!(got.contains(&Invalidation::Inode {
            ino: INodeNo(30),
            data: false
        }));
    }

    #[test]
    fn a_write_drops_cached_content() {
        let event = pb::WatchEvent {
            kind: pb::ChangeKind::Put as i32,
            inode: 12,
            ..Default::default()
        };
        assert_eq!(
            invalidations(&event, &InodeMap::new(1)),
            [Invalidation::Inode {
                ino: INodeNo(12),
                data: true
            }]
        );
    }
}
