//! Group commit: one writer thread runs every write transaction, folding the writes
//! that queue up while a commit is on disk into the next one.
//!
//! A group becomes durable with one append to the write-ahead log and one fdatasync;
//! redb then commits it in memory, and a checkpoint (a durable redb commit, after which
//! the log is emptied) follows when the log grows large or the store falls idle. Each
//! caller gets its answer only once its write is in the synced log. If one write of a
//! group fails, the group is undone and its writes are run again one by one, so a
//! failure never takes another caller's write with it and never leaves half of itself.
//!
//! A small write that need not be synced ([`crate::Durability::LoggedSmall`]) runs right
//! on the caller's thread when no commit is under way: handing it to the writer thread
//! and back would cost more than the commit itself.
//!
//! Content files freed by a commit are deleted once that commit is durable; content files
//! written are synced before a checkpoint, so that a checkpointed size never points at
//! bytes that did not reach the disk.
//!
//! This module never looks inside an operation: it runs them, commits, and answers.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, Durability};
use tokio::sync::{broadcast, oneshot};

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::extents::{ExtentId, Extents};
use crate::space::{self, Space};
use crate::stats::StoreStats;
use crate::types::{Change, Committed};
use crate::wal::{Record, Room, Sync, Wal};
use crate::writer::{Finished, Writer};

/// What a write answers: its operation's value and the revision it committed as.
type Answer<T> = Result<(T, u64), StoreError>;

/// An operation and, once it ran, its value.
struct Write<T, F> {
    op: F,
    value: Option<T>,
}

impl<T, F> Write<T, F>
where
    F: FnMut(&mut Writer<'_>) -> Result<T, StoreError>,
{
    fn new(op: F) -> Self {
        Self { op, value: None }
    }

    /// Runs the operation in `writer`, keeping its value (a later run replaces it).
    fn run(&mut self, writer: &mut Writer<'_>) -> Result<(), StoreError> {
        self.value = Some((self.op)(writer)?);
        Ok(())
    }

    /// The answer, given how the commit of its last run went.
    fn answer(self, committed: Result<u64, StoreError>) -> Answer<T> {
        match (committed, self.value) {
            (Ok(revision), Some(value)) => Ok((value, revision)),
            (Err(e), _) => Err(e),
            // Not reached: a commit succeeds only after each of its operations ran.
            (Ok(_), None) => Err(StoreError::WriterStopped),
        }
    }
}

/// A queued write, whatever its value's type.
trait Pending: Send {
    /// Runs the operation in `writer`.
    fn run(&mut self, writer: &mut Writer<'_>) -> Result<(), StoreError>;
    /// Answers the caller.
    fn answer(self: Box<Self>, committed: Result<u64, StoreError>);
}

/// A write waiting for the writer thread, with where its answer goes.
struct Queued<T, F> {
    write: Write<T, F>,
    reply: oneshot::Sender<Answer<T>>,
}

impl<T, F> Pending for Queued<T, F>
where
    T: Send + 'static,
    F: FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
{
    fn run(&mut self, writer: &mut Writer<'_>) -> Result<(), StoreError> {
        self.write.run(writer)
    }

    fn answer(self: Box<Self>, committed: Result<u64, StoreError>) {
        let Queued { write, reply } = *self;
        let _ = reply.send(write.answer(committed));
    }
}

/// What the writer thread is asked to do.
enum Job {
    /// Run a write, synced now or later.
    Write(Box<dyn Pending>, Sync),
    /// Make every logged write durable.
    Flush(oneshot::Sender<Result<(), StoreError>>),
    /// Checkpoint if the log has grown past its limit (after writes run elsewhere).
    CheckpointIfDue,
}

/// What commits need, behind the lock that orders them.
struct Engine {
    db: Arc<Database>,
    wal: Wal,
    content: Content,
    changes: broadcast::Sender<Arc<Committed>>,
    config: StoreConfig,
    space: Space,
    /// Whether the last checkpoint was put off for lack of space (to log it once).
    deferred: bool,
}

/// The handle of the writer thread.
pub(crate) struct Committer {
    engine: Arc<Mutex<Engine>>,
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    checkpoint_bytes: u64,
    /// The counters the engine records in, readable without its lock.
    stats: Arc<StoreStats>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committer")
    }
}

impl Committer {
    /// Starts the writer thread of `db` with content in `extents`, publishing committed
    /// changes on `changes`.
    pub(crate) fn start(
        db: Arc<Database>,
        wal: Wal,
        extents: Arc<Extents>,
        changes: broadcast::Sender<Arc<Committed>>,
        config: StoreConfig,
        space: Space,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = channel();
        let checkpoint_bytes = config.checkpoint_bytes;
        let stats = wal.stats().clone();
        let engine = Arc::new(Mutex::new(Engine {
            db,
            wal,
            content: Content {
                extents,
                dirty: HashSet::new(),
                freed: Vec::new(),
            },
            changes,
            config,
            space,
            deferred: false,
        }));
        let thread = {
            let engine = engine.clone();
            std::thread::Builder::new()
                .name("store-writer".to_owned())
                .spawn(move || write_loop(&engine, &rx))
                .map_err(StoreError::WriterNotStarted)?
        };
        Ok(Self {
            engine,
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            checkpoint_bytes,
            stats,
        })
    }

    /// The store's counters.
    pub(crate) fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// Runs `op` as a lazy write right here if no commit is under way; hands `op` back
    /// if one is (then the writer thread must take it).
    pub(crate) fn try_run_here<T, F>(&self, op: F) -> Result<Answer<T>, F>
    where
        F: FnMut(&mut Writer<'_>) -> Result<T, StoreError>,
    {
        let Ok(mut engine) = self.engine.try_lock() else {
            return Err(op);
        };
        let mut write = Write::new(op);
        let committed = engine.commit_alone(&mut |w| write.run(w), Sync::Later, 1);
        let grown = engine.wal.len() > self.checkpoint_bytes;
        drop(engine);
        if grown {
            // The writer thread checkpoints once it has a job.
            let _ = self.enqueue(Job::CheckpointIfDue);
        }
        Ok(write.answer(committed))
    }

    /// Runs `op` in the next group; resolves once it is in the log, synced if `sync`
    /// says so. No thread blocks.
    pub(crate) async fn submit<T, F>(&self, op: F, sync: Sync) -> Answer<T>
    where
        T: Send + 'static,
        F: FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            write: Write::new(op),
            reply,
        };
        self.enqueue(Job::Write(Box::new(queued), sync))?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    /// Makes every write so far durable, lazy ones included.
    pub(crate) async fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(Job::Flush(reply))?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    fn enqueue(&self, job: Job) -> Result<(), StoreError> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .ok_or(StoreError::WriterStopped)?
            .send(job)
            .map_err(|_| StoreError::WriterStopped)
    }
}

impl Drop for Committer {
    /// Stops the writer thread after the writes already queued, so that the database is
    /// closed when the store is gone.
    fn drop(&mut self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// The next job, polled for `poll` before sleeping until it comes or the idle checkpoint
/// (after `idle`) is due.
fn poll_briefly(
    jobs: &Receiver<Job>,
    poll: Duration,
    idle: Duration,
) -> Result<Job, RecvTimeoutError> {
    let start = std::time::Instant::now();
    while start.elapsed() < poll {
        match jobs.try_recv() {
            Ok(job) => return Ok(job),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(RecvTimeoutError::Disconnected);
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
    jobs.recv_timeout(idle)
}

/// Content files waiting on the log: written ones to sync before the next checkpoint,
/// freed ones to delete once their commit is durable.
struct Content {
    extents: Arc<Extents>,
    dirty: HashSet<ExtentId>,
    freed: Vec<ExtentId>,
}

impl Content {
    /// Takes over a commit's content files; `sync`: the commit synced the log.
    fn add(&mut self, freed: Vec<ExtentId>, dirty: Vec<ExtentId>, sync: Sync) {
        self.freed.extend(freed);
        self.dirty.extend(dirty);
        if sync == Sync::Now {
            self.delete_freed();
        }
    }

    /// Deletes the freed files: every commit so far is durable.
    fn delete_freed(&mut self) {
        for id in self.freed.drain(..) {
            self.dirty.remove(&id);
            self.extents.remove(id);
        }
    }
}

fn write_loop(engine: &Mutex<Engine>, jobs: &Receiver<Job>) {
    let lock = || engine.lock().unwrap_or_else(|p| p.into_inner());
    let (max_group, checkpoint_bytes, idle, poll) = {
        let config = &lock().config;
        (
            config.max_group,
            config.checkpoint_bytes,
            config.checkpoint_idle,
            config.poll_after_durable,
        )
    };
    let mut durable_recently = false;
    loop {
        let waited = if durable_recently {
            poll_briefly(jobs, poll, idle)
        } else {
            jobs.recv_timeout(idle)
        };
        let first = match waited {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                lock().checkpoint();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut group = vec![first];
        while group.len() < max_group {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let mut writes = Vec::with_capacity(group.len());
        let mut flushes = Vec::new();
        // One durable write or flush in the group makes the whole group's log append sync.
        let mut sync = Sync::Later;
        for job in group {
            match job {
                Job::Write(write, write_sync) => {
                    if write_sync == Sync::Now {
                        sync = Sync::Now;
                    }
                    writes.push(write);
                }
                Job::Flush(reply) => {
                    sync = Sync::Now;
                    flushes.push(reply);
                }
                Job::CheckpointIfDue => {}
            }
        }
        durable_recently = sync == Sync::Now;
        let mut engine = lock();
        engine.run_group(writes, sync);
        for flush in flushes {
            let synced = engine.wal.sync();
            if synced.is_ok() {
                engine.content.delete_freed();
            }
            let _ = flush.send(synced);
        }
        if engine.wal.len() > checkpoint_bytes {
            engine.checkpoint();
        }
    }
    lock().checkpoint();
}

impl Engine {
    /// Makes every commit so far durable in redb itself (content files first), then
    /// empties the log and deletes the content the durable commits freed.
    fn checkpoint(&mut self) {
        if self.wal.is_empty() {
            return;
        }
        // redb refuses every later call, reads too, once a write of its own fails: make
        // sure the durable commit finds its blocks, or put it off (the log keeps it all).
        match self.space.back_database() {
            Ok(()) if self.deferred => {
                self.deferred = false;
                tracing::info!("space is free again: checkpointing the write-ahead log");
            }
            Ok(()) => {}
            Err(e) if space::is_full(&e) => {
                if !self.deferred {
                    self.deferred = true;
                    tracing::warn!(error = %e, "data filesystem full: checkpoint put off; the write-ahead log keeps every write");
                }
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot reserve space for the checkpoint"),
        }
        let content = &mut self.content;
        let synced = content
            .dirty
            .iter()
            .try_for_each(|id| content.extents.sync(*id))
            .and_then(|()| content.extents.sync_dir());
        let result = synced
            .and_then(|()| self.db.begin_write().map_err(StoreError::from))
            .and_then(|txn| txn.commit().map_err(StoreError::from))
            .and_then(|()| self.wal.reset_to(0));
        match result {
            Ok(()) => {
                content.dirty.clear();
                content.delete_freed();
                self.wal.stats().checkpointed();
            }
            // The log still holds everything: nothing is lost, the next checkpoint retries.
            Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
        }
    }

    /// Commits `writes` as one group, or one by one if the group fails, and answers them.
    /// After a commit that synced the log, freed content goes before the answer, so that
    /// a caller sees its removal complete.
    fn run_group(&mut self, mut writes: Vec<Box<dyn Pending>>, sync: Sync) {
        if writes.len() > 1 {
            let count = writes.len();
            let grouped = self.commit_alone(
                &mut |w| writes.iter_mut().try_for_each(|write| write.run(w)),
                sync,
                count,
            );
            if let Ok(revision) = grouped {
                for write in writes {
                    write.answer(Ok(revision));
                }
                return;
            }
        }
        for mut write in writes {
            let committed = self.commit_alone(&mut |w| write.run(w), sync, 1);
            write.answer(committed);
        }
    }

    /// Commits what `ops` does (the writes of `writes` callers) as one transaction and
    /// publishes its changes; answers its revision.
    fn commit_alone(
        &mut self,
        ops: &mut dyn FnMut(&mut Writer<'_>) -> Result<(), StoreError>,
        sync: Sync,
        writes: usize,
    ) -> Result<u64, StoreError> {
        let finished = commit(
            &self.db,
            &mut self.wal,
            &self.content.extents,
            &self.config,
            &self.space,
            ops,
            sync,
        )?;
        self.content.add(finished.freed, finished.dirty, sync);
        self.wal.stats().committed(writes);
        let revision = finished.revision;
        let changes: Vec<Change> = finished.changes.into_iter().map(Change::from).collect();
        let _ = self.changes.send(Arc::new(Committed { revision, changes }));
        Ok(revision)
    }
}

/// Runs `ops` in one transaction, makes it durable in the log (or only logged, as `sync`
/// says), then commits it to redb; any error undoes it all. Growth is refused while the
/// data filesystem is below its reserve ([`Writer`] checks); a transaction that frees
/// space may use the log's reserve, so that it goes through on a full disk.
fn commit(
    db: &Database,
    wal: &mut Wal,
    extents: &Extents,
    config: &StoreConfig,
    space: &Space,
    ops: &mut dyn FnMut(&mut Writer<'_>) -> Result<(), StoreError>,
    sync: Sync,
) -> Result<Finished, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::None)?;
    let mut finished = {
        let mut writer = Writer::open(&txn, extents, space, config)?;
        ops(&mut writer)?;
        writer.finish()?
    };
    let room = if finished.frees() {
        Room::Reserve
    } else {
        Room::Ordinary
    };
    let logged_from = wal.len();
    let record = Record {
        revision: finished.revision,
        mutations: std::mem::take(&mut finished.mutations),
    };
    wal.append(&record, sync, room)?;
    if let Err(e) = txn.commit() {
        // Not committed, so it must not come back from the log either.
        wal.reset_to(logged_from)?;
        return Err(e.into());
    }
    Ok(finished)
}
