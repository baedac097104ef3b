//! The write-ahead log: what makes a write durable with one append and one fdatasync.
//!
//! A transaction's changes to the tables are logged as physical mutations, the log is
//! synced, and only then is the transaction committed to redb, in memory. A checkpoint
//! (a durable redb commit) makes the log's content redundant, and the log is emptied.
//! After a crash redb holds the last checkpoint, and the log holds every acknowledged
//! write after it: opening the store replays them. A torn frame at the end of the log (a
//! write the crash interrupted, never acknowledged) fails its checksum and is dropped.
//!
//! The file is written full of zeros once and then overwritten in place from its start:
//! an append that does not change the file's size needs fdatasync to flush only the data,
//! not the inode, which is what makes a durable write cheap. Frames left from before the
//! last checkpoint stay behind the head; they are recognised by their revisions, which
//! must rise from frame to frame.
//!
//! This module never interprets the mutations it carries (replaying them is
//! [`crate::writer::replay`]'s job) and never syncs redb: it only orders and persists
//! frames.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{LogAction, StoreError};
use crate::stats::StoreStats;

/// One change to one table, as the writer made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// `meta[key] = value`.
    Meta(String, u64),
    /// `inodes[ino] = record`, or removal.
    Inode(u64, Option<Vec<u8>>),
    /// `dirents[(parent, name)] = child`, or removal.
    Dirent(u64, String, Option<u64>),
    /// `chunks[(ino, index)] = bytes`, or removal.
    Chunk(u64, u64, Option<Vec<u8>>),
    /// Removal of every chunk of `ino` from index `from` on.
    ChunksFrom(u64, u64),
    /// `changes[revision] = log`, or removal.
    Change(u64, Option<Vec<u8>>),
    /// `volumes[name] = record`, or removal.
    Volume(String, Option<Vec<u8>>),
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u64(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, b: &Option<Vec<u8>>) {
    match b {
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
        None => out.push(0),
    }
}

/// Reads fields back out of a frame; any overrun is a damaged frame.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = usize::try_from(self.u64()?).ok()?;
        self.take(n).map(<[u8]>::to_vec)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }
    fn opt(&mut self) -> Option<Option<Vec<u8>>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.bytes()?)),
            _ => None,
        }
    }
}

impl Mutation {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Meta(key, value) => {
                out.push(1);
                put_bytes(out, key.as_bytes());
                put_u64(out, *value);
            }
            Self::Inode(ino, record) => {
                out.push(2);
                put_u64(out, *ino);
                put_opt(out, record);
            }
            Self::Dirent(parent, name, child) => {
                out.push(3);
                put_u64(out, *parent);
                put_bytes(out, name.as_bytes());
                put_opt(out, &child.map(|c| c.to_le_bytes().to_vec()));
            }
            Self::Chunk(ino, index, bytes) => {
                out.push(4);
                put_u64(out, *ino);
                put_u64(out, *index);
                put_opt(out, bytes);
            }
            Self::ChunksFrom(ino, from) => {
                out.push(5);
                put_u64(out, *ino);
                put_u64(out, *from);
            }
            Self::Change(revision, log) => {
                out.push(6);
                put_u64(out, *revision);
                put_opt(out, log);
            }
            Self::Volume(name, record) => {
                out.push(7);
                put_bytes(out, name.as_bytes());
                put_opt(out, record);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        Some(match r.u8()? {
            1 => Self::Meta(r.string()?, r.u64()?),
            2 => Self::Inode(r.u64()?, r.opt()?),
            3 => {
                let (parent, name) = (r.u64()?, r.string()?);
                let child = match r.opt()? {
                    Some(b) => Some(u64::from_le_bytes(b.as_slice().try_into().ok()?)),
                    None => None,
                };
                Self::Dirent(parent, name, child)
            }
            4 => Self::Chunk(r.u64()?, r.u64()?, r.opt()?),
            5 => Self::ChunksFrom(r.u64()?, r.u64()?),
            6 => Self::Change(r.u64()?, r.opt()?),
            7 => Self::Volume(r.string()?, r.opt()?),
            _ => return None,
        })
    }
}

/// One logged transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The revision it committed as.
    pub revision: u64,
    /// Its mutations, in order.
    pub mutations: Vec<Mutation>,
}

/// When an appended frame must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Before the append returns.
    Now,
    /// At the next [`Wal::sync`] (or a later `Now` append).
    Later,
}

/// How much of the log's zero-filled space an append may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// All but [`REMOVAL_RESERVE`]: beyond that the log grows first, which needs disk space.
    Ordinary,
    /// All of it: for a transaction that frees space, which must go through on a full
    /// disk, where the log cannot grow.
    Reserve,
}

/// Bytes at the end of the log's capacity that only transactions freeing space may use.
pub const REMOVAL_RESERVE: u64 = 256 << 10;

/// Frame header: payload length and CRC-32 of the payload.
const HEADER: usize = 8;
/// Size a new log is zero-filled to, so that appends overwrite in place. It doubles when a
/// frame would not fit (once per size: after a checkpoint the space is reused).
pub const INITIAL_CAPACITY: u64 = 4 << 20;

/// The log file.
#[derive(Debug)]
pub struct Wal {
    file: File,
    path: PathBuf,
    /// Where the next frame goes: the end of the intact frames.
    head: u64,
    /// Whether frames were written since the last fdatasync.
    unsynced: bool,
    /// Bytes zero-filled so far.
    capacity: u64,
    /// Where its syncs are timed.
    stats: Arc<StoreStats>,
}

fn io(path: &Path, action: LogAction) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Log {
        action,
        path: path.to_owned(),
        source,
    }
}

impl Wal {
    /// Opens (or creates, 0600) the log at `path` and reads its intact records.
    pub fn open(path: &Path) -> Result<(Self, Vec<Record>), StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(io(path, LogAction::Open))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io(path, LogAction::Read))?;
        let (records, intact) = parse(&bytes);
        let found = bytes.len() as u64;
        let mut capacity = found.max(INITIAL_CAPACITY);
        if found < capacity {
            match zero_fill(&mut file, found, capacity) {
                Ok(()) => {}
                // A full disk: open with the log as it is, so that reads are served; an
                // append that does not fit fails with ENOSPC until there is room.
                Err(e) if crate::space::is_full(&e) => {
                    let _ = file.set_len(found);
                    tracing::warn!(log = %path.display(), error = %e, "cannot zero-fill the write-ahead log on a full disk; writes wait for space");
                    capacity = found;
                }
                Err(e) => return Err(io(path, LogAction::Size)(e)),
            }
        }
        let mut wal = Self {
            file,
            path: path.to_owned(),
            head: intact as u64,
            unsynced: false,
            capacity,
            stats: Arc::default(),
        };
        // Whatever follows the intact frames (a torn append) must never be read again.
        wal.reset_to(intact as u64)?;
        Ok((wal, records))
    }

    /// The store's counters, which the log's syncs are recorded in.
    pub fn stats(&self) -> &Arc<StoreStats> {
        &self.stats
    }

    /// Bytes of live frames in the log.
    pub fn len(&self) -> u64 {
        self.head
    }

    /// Whether the log holds no live frame (everything is checkpointed).
    pub fn is_empty(&self) -> bool {
        self.head == 0
    }

    /// Appends `record`; with [`Sync::Now`] it is durable when this returns, with
    /// [`Sync::Later`] once [`Wal::sync`] ran (it survives a crash of the process anyway).
    /// `room` says whether it may use the space kept for removals; an append that needs
    /// the log to grow on a full disk fails (ENOSPC) and leaves the log as it was.
    pub fn append(&mut self, record: &Record, sync: Sync, room: Room) -> Result<(), StoreError> {
        let mut payload = Vec::new();
        put_u64(&mut payload, record.revision);
        put_u64(&mut payload, record.mutations.len() as u64);
        for m in &record.mutations {
            m.encode(&mut payload);
        }
        let len = u32::try_from(payload.len())
            .map_err(|_| StoreError::TransactionTooLarge(payload.len()))?;
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        let end = self.head + frame.len() as u64;
        let usable = match room {
            Room::Ordinary => self.capacity.saturating_sub(REMOVAL_RESERVE),
            Room::Reserve => self.capacity,
        };
        let result = (|| {
            if end > usable {
                let grown = (end + REMOVAL_RESERVE).max(self.capacity * 2);
                if let Err(e) = zero_fill(&mut self.file, self.capacity, grown) {
                    // Give back what the failed fill took: on a full disk it is all there was.
                    let _ = self.file.set_len(self.capacity);
                    return Err(e);
                }
                self.capacity = grown;
            }
            self.file.seek(SeekFrom::Start(self.head))?;
            self.file.write_all(&frame)?;
            match sync {
                Sync::Now => self.stats.time_sync(|| self.file.sync_data()),
                Sync::Later => Ok(()),
            }
        })();
        match result {
            Ok(()) => {
                self.head += frame.len() as u64;
                self.unsynced = sync == Sync::Later;
                Ok(())
            }
            Err(e) => {
                // Leave no partial frame behind for a recovery to trust.
                let _ = self.reset_to(self.head);
                Err(io(&self.path, LogAction::Append)(e))
            }
        }
    }

    /// Makes every appended frame durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.unsynced {
            self.stats
                .time_sync(|| self.file.sync_data())
                .map_err(io(&self.path, LogAction::Sync))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Moves the head back to `at` (0 after a checkpoint; the start of a frame to undo),
    /// zeroing the header there so that nothing from `at` on is read again.
    pub fn reset_to(&mut self, at: u64) -> Result<(), StoreError> {
        // Only inside the zero-filled space: nothing is read past its end, and writing
        // there would need disk space.
        let zeros = self.capacity.saturating_sub(at).min(HEADER as u64) as usize;
        (|| {
            self.file.seek(SeekFrom::Start(at))?;
            self.file.write_all(&[0u8; HEADER][..zeros])?;
            self.stats.time_sync(|| self.file.sync_data())
        })()
        .map_err(io(&self.path, LogAction::Reset))?;
        self.head = at;
        self.unsynced = false;
        Ok(())
    }
}

/// Writes zeros from `from` up to `to` and syncs (the file's size changes only here).
fn zero_fill(file: &mut File, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    file.seek(SeekFrom::Start(from))?;
    let mut at = from;
    while at < to {
        let n = zeros.len().min((to - at) as usize);
        file.write_all(&zeros[..n])?;
        at += n as u64;
    }
    file.sync_all()
}

/// The intact records of a log and how many bytes they span.
fn parse(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records: Vec<Record> = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= HEADER {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            break;
        }
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let mut r = Reader(payload);
        let Some(record) = (|| {
            let revision = r.u64()?;
            let count = r.u64()?;
            let mut mutations = Vec::new();
            for _ in 0..count {
                mutations.push(Mutation::decode(&mut r)?);
            }
            Some(Record {
                revision,
                mutations,
            })
        })() else {
            break;
        };
        records.push(record);
        at += HEADER + len;
    }
    (records, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(revision: u64) -> Record {
        Record {
            revision,
            mutations: vec![
                Mutation::Meta("next_ino".into(), 7),
                Mutation::Inode(5, Some(vec![1, 2, 3])),
                Mutation::Inode(6, None),
                Mutation::Dirent(1, "a".into(), Some(5)),
                Mutation::Dirent(1, "b".into(), None),
                Mutation::Chunk(5, 0, Some(vec![9; 10])),
                Mutation::ChunksFrom(5, 1),
                Mutation::Change(revision, Some(vec![4])),
                Mutation::Volume("data".into(), None),
            ],
        }
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        {
            let (mut wal, old) = Wal::open(&path).unwrap();
            assert!(old.is_empty());
            wal.append(&record(1), Sync::Now, Room::Ordinary).unwrap();
            wal.append(&record(2), Sync::Now, Room::Ordinary).unwrap();
        }
        // A crash in the middle of a third append.
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes.len() as u64,
            INITIAL_CAPACITY,
            "appends overwrite a zero-filled file"
        );
        let intact = Wal::open(&path).unwrap().0.len() as usize;
        bytes[intact..intact + 6].copy_from_slice(&[0x10, 0, 0, 0, 1, 2]);
        std::fs::write(&path, &bytes).unwrap();

        let (wal, records) = Wal::open(&path).unwrap();
        assert_eq!(records, vec![record(1), record(2)]);
        assert_eq!(wal.len(), intact as u64);
    }

    #[test]
    fn a_flipped_bit_ends_the_log_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        wal.append(&record(1), Sync::Now, Room::Ordinary).unwrap();
        let first = wal.len() as usize;
        wal.append(&record(2), Sync::Now, Room::Ordinary).unwrap();
        drop(wal);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[first + HEADER + 3] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (_, records) = Wal::open(&path).unwrap();
        assert_eq!(records, vec![record(1)]);
    }

    #[test]
    fn the_log_grows_for_a_frame_larger_than_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        let big = Record {
            revision: 1,
            mutations: vec![Mutation::Chunk(
                2,
                0,
                Some(vec![5; INITIAL_CAPACITY as usize]),
            )],
        };
        wal.append(&big, Sync::Now, Room::Ordinary).unwrap();
        wal.append(&record(2), Sync::Now, Room::Ordinary).unwrap();
        drop(wal);
        assert!(std::fs::metadata(&path).unwrap().len() >= 2 * INITIAL_CAPACITY);
        let (_, records) = Wal::open(&path).unwrap();
        assert_eq!(records, vec![big, record(2)]);
    }

    #[test]
    fn frames_from_before_a_reset_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&path).unwrap();
        for revision in 1..=3 {
            wal.append(&record(revision), Sync::Later, Room::Ordinary)
                .unwrap();
        }
        // A checkpoint, then one new write that is shorter than the old frames.
        wal.reset_to(0).unwrap();
        let short = Record {
            revision: 4,
            mutations: vec![Mutation::Meta("x".into(), 1)],
        };
        wal.append(&short, Sync::Now, Room::Ordinary).unwrap();
        drop(wal);
        let (_, records) = Wal::open(&path).unwrap();
        assert_eq!(records, vec![short]);
        // An undone append is gone too.
        let (mut wal, _) = Wal::open(&path).unwrap();
        let before = wal.len();
        wal.append(&record(5), Sync::Now, Room::Ordinary).unwrap();
        wal.reset_to(before).unwrap();
        drop(wal);
        assert_eq!(Wal::open(&path).unwrap().1.len(), 1);
    }
}
