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
//! A small write that need not be synced (a lazy one) runs right on the caller's thread
//! when no commit is under way: handing it to the writer thread and back would cost more
//! than the commit itself.
//!
//! Content files freed by a commit are deleted once that commit is durable; content files
//! written are synced before a checkpoint, so that a checkpointed size never points at
//! bytes that did not reach the disk.

use std::any::Any;
use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use aurae_proto::v0::WatchEvent;
use redb::{Database, Durability};
use tokio::sync::broadcast;

use super::extents::{ExtentId, Extents};
use super::wal::{Record, Sync, Wal};
use super::{Committed, StoreError, Writer};

/// Most writes folded into one transaction.
const MAX_GROUP: usize = 256;
/// Log size that triggers a checkpoint.
const CHECKPOINT_BYTES: u64 = 64 << 20;
/// Idle time after which the log is checkpointed.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);

type Value = Box<dyn Any + Send>;
type Op = Box<dyn FnMut(&mut Writer<'_>) -> Result<Value, StoreError> + Send>;

type Answer = Result<(Value, u64), StoreError>;

/// Where a job's answer goes: a blocked thread or an awaiting task.
enum Reply {
    Blocking(SyncSender<Answer>),
    Async(tokio::sync::oneshot::Sender<Answer>),
}

impl Reply {
    fn send(self, answer: Answer) {
        match self {
            Self::Blocking(tx) => {
                let _ = tx.send(answer);
            }
            Self::Async(tx) => {
                let _ = tx.send(answer);
            }
        }
    }
}

/// A write to run, or (without one) a request to make every logged write durable.
struct Job {
    op: Option<Op>,
    reply: Reply,
    sync: Sync,
}

/// What commits need, behind the lock that orders them.
struct Engine {
    db: Arc<Database>,
    wal: Wal,
    content: Content,
    changes: broadcast::Sender<Arc<Committed>>,
}

/// The handle of the writer thread.
pub struct Committer {
    engine: Arc<Mutex<Engine>>,
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Committer")
    }
}

impl Committer {
    /// Starts the writer thread of `db` with content in `extents`, publishing committed
    /// events on `changes`.
    pub fn start(
        db: Arc<Database>,
        wal: Wal,
        extents: Arc<Extents>,
        changes: broadcast::Sender<Arc<Committed>>,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = channel();
        let engine = Arc::new(Mutex::new(Engine {
            db,
            wal,
            content: Content {
                extents,
                dirty: HashSet::new(),
                freed: Vec::new(),
            },
            changes,
        }));
        let thread = {
            let engine = engine.clone();
            std::thread::Builder::new()
                .name("store-writer".to_owned())
                .spawn(move || write_loop(&engine, &rx))
                .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?
        };
        Ok(Self {
            engine,
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs a small lazy write right here if no commit is under way; `None` if one is
    /// (then the writer thread takes it).
    pub fn try_run_here<T: Send + 'static>(
        &self,
        op: &mut Option<impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static>,
    ) -> Option<Result<(T, u64), StoreError>> {
        let mut engine = self.engine.try_lock().ok()?;
        let (reply, answer) = sync_channel(1);
        let job = Job {
            op: Some(boxed(op.take()?)),
            reply: Reply::Blocking(reply),
            sync: Sync::Later,
        };
        engine.run_group(vec![job], Sync::Later);
        let grown = engine.wal.len() > CHECKPOINT_BYTES;
        drop(engine);
        if grown {
            // The writer thread checkpoints once it has a job.
            let (reply, _) = sync_channel(1);
            let _ = self.enqueue(None, Reply::Blocking(reply), Sync::Later);
        }
        Some(answer.try_recv().map_err(|_| stopped()).and_then(unbox))
    }

    /// Runs `op` in the next group and blocks until it is durable.
    pub fn run<T: Send + 'static>(
        &self,
        op: impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, u64), StoreError> {
        let (reply, answer) = sync_channel(1);
        self.enqueue(Some(boxed(op)), Reply::Blocking(reply), Sync::Now)?;
        unbox(answer.recv().map_err(|_| stopped())?)
    }

    /// Runs `op` in the next group; resolves once it is durable. No thread blocks.
    pub async fn submit<T: Send + 'static>(
        &self,
        op: impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, u64), StoreError> {
        self.submit_with(op, Sync::Now).await
    }

    /// Like [`Committer::submit`], with the log synced now or at the next flush.
    pub async fn submit_with<T: Send + 'static>(
        &self,
        op: impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
        sync: Sync,
    ) -> Result<(T, u64), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.enqueue(Some(boxed(op)), Reply::Async(reply), sync)?;
        unbox(answer.await.map_err(|_| stopped())?)
    }

    /// Makes every write so far durable, lazy ones included.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.enqueue(None, Reply::Async(reply), Sync::Now)?;
        unbox::<()>(answer.await.map_err(|_| stopped())?).map(|_| ())
    }

    fn enqueue(&self, op: Option<Op>, reply: Reply, sync: Sync) -> Result<(), StoreError> {
        let job = Job { op, reply, sync };
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
    }
}

fn boxed<T: Send + 'static>(
    mut op: impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
) -> Op {
    Box::new(move |w| op(w).map(|v| Box::new(v) as Value))
}

fn stopped() -> StoreError {
    StoreError::Database("the store's writer thread has stopped".to_owned())
}

fn unbox<T: 'static>(answer: Answer) -> Result<(T, u64), StoreError> {
    let (value, revision) = answer?;
    let value = value
        .downcast::<T>()
        .map_err(|_| StoreError::Database("a write answered with another type".to_owned()))?;
    Ok((*value, revision))
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

/// How long the writer polls for the next job after a durable commit before it sleeps:
/// a client waiting on durable writes sends its next one about a round trip later, and
/// waking a sleeping thread costs tens of microseconds on a busy or virtual machine.
const POLL_AFTER_DURABLE: Duration = Duration::from_micros(200);

/// The next job, polled for [`POLL_AFTER_DURABLE`] before sleeping until it comes or the
/// idle checkpoint is due.
fn poll_briefly(jobs: &Receiver<Job>) -> Result<Job, RecvTimeoutError> {
    let start = std::time::Instant::now();
    while start.elapsed() < POLL_AFTER_DURABLE {
        match jobs.try_recv() {
            Ok(job) => return Ok(job),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(RecvTimeoutError::Disconnected);
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
        }
    }
    jobs.recv_timeout(CHECKPOINT_IDLE)
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
    let mut durable_recently = false;
    loop {
        let waited = if durable_recently {
            poll_briefly(jobs)
        } else {
            jobs.recv_timeout(CHECKPOINT_IDLE)
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
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let (writes, flushes): (Vec<Job>, Vec<Job>) =
            group.into_iter().partition(|job| job.op.is_some());
        // One durable write or flush in the group makes the whole group's log append sync.
        let sync = if flushes.is_empty() && writes.iter().all(|j| j.sync == Sync::Later) {
            Sync::Later
        } else {
            Sync::Now
        };
        durable_recently = sync == Sync::Now;
        let mut engine = lock();
        engine.run_group(writes, sync);
        for flush in flushes {
            let synced = engine.wal.sync();
            if synced.is_ok() {
                engine.content.delete_freed();
            }
            flush
                .reply
                .send(synced.map(|()| (Box::new(()) as Value, 0)));
        }
        if engine.wal.len() > CHECKPOINT_BYTES {
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
            }
            // The log still holds everything: nothing is lost, the next checkpoint retries.
            Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
        }
    }

    /// Commits `writes` as one group, or one by one if the group fails, and answers them.
    /// After a commit that synced the log, freed content goes before the answer, so that
    /// a caller sees its removal complete.
    fn run_group(&mut self, mut writes: Vec<Job>, sync: Sync) {
        if writes.is_empty() {
            return;
        }
        if writes.len() > 1
            && let Ok(outcome) = commit(
                &self.db,
                &mut self.wal,
                &self.content.extents,
                &mut writes,
                sync,
            )
        {
            self.content.add(outcome.freed, outcome.dirty, sync);
            let revision = outcome.revision;
            let _ = self.changes.send(Arc::new(Committed {
                revision,
                events: outcome.events,
            }));
            for (job, value) in writes.into_iter().zip(outcome.values) {
                job.reply.send(Ok((value, revision)));
            }
            return;
        }
        for mut job in writes {
            let answer = match commit(
                &self.db,
                &mut self.wal,
                &self.content.extents,
                std::slice::from_mut(&mut job),
                sync,
            ) {
                Ok(mut outcome) => {
                    self.content.add(outcome.freed, outcome.dirty, sync);
                    let revision = outcome.revision;
                    let _ = self.changes.send(Arc::new(Committed {
                        revision,
                        events: outcome.events,
                    }));
                    Ok((outcome.values.remove(0), revision))
                }
                Err(e) => Err(e),
            };
            job.reply.send(answer);
        }
    }
}

/// A committed group: its answers, and what the committer must do about content files.
struct Outcome {
    values: Vec<Value>,
    revision: u64,
    events: Vec<WatchEvent>,
    freed: Vec<ExtentId>,
    dirty: Vec<ExtentId>,
}

/// Runs `group` in one transaction, makes it durable in the log, then commits it to redb;
/// any error undoes it all.
fn commit(
    db: &Database,
    wal: &mut Wal,
    extents: &Extents,
    group: &mut [Job],
    sync: Sync,
) -> Result<Outcome, StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::None)
        .map_err(|e| StoreError::Database(e.to_string()))?;
    let (values, finished) = {
        let mut writer = Writer::open(&txn, extents)?;
        let mut values = Vec::with_capacity(group.len());
        for job in group.iter_mut() {
            let op = job.op.as_mut().expect("only writes are committed");
            values.push(op(&mut writer)?);
        }
        (values, writer.finish()?)
    };
    let logged_from = wal.len();
    wal.append(
        &Record {
            revision: finished.revision,
            mutations: finished.mutations,
        },
        sync,
    )?;
    if let Err(e) = txn.commit() {
        // Not committed, so it must not come back from the log either.
        wal.reset_to(logged_from)?;
        return Err(e.into());
    }
    Ok(Outcome {
        values,
        revision: finished.revision,
        events: finished.events,
        freed: finished.freed,
        dirty: finished.dirty,
    })
}
