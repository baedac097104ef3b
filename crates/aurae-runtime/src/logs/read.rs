//! The readers: [`read`] for what a log holds now, [`LogFollower`] for what comes next, and
//! [`parse_record`] for one record line. They open the files themselves and never touch the
//! writer; a rotation under their feet is recognised by the file's inode.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::sync::watch;

use super::{CURRENT_LOG, LogError, LogQuery, LogRecord, Stream, time};

/// How many bytes a follower reads at most per batch, so that one call stays short.
const BATCH_BYTES: u64 = 1024 * 1024;
/// How much is read from a file at once.
const READ_BYTES: usize = 256 * 1024;

/// Parses one record line (without its newline): `<time> <stdout|stderr> <F|P> <bytes>`.
/// `None` if it is not one, so that a damaged line is skipped rather than fatal.
pub fn parse_record(line: &[u8]) -> Option<LogRecord> {
    let mut fields = line.splitn(4, |&b| b == b' ');
    let time = time::parse(fields.next()?)?;
    let stream = match fields.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match fields.next()? {
        b"F" => false,
        b"P" => true,
        _ => return None,
    };
    Some(LogRecord {
        time,
        stream,
        partial,
        line: fields.next().unwrap_or_default().to_vec(),
    })
}

/// The records of the log in `dir` that `query` asks for, oldest first, from the rotated
/// files (oldest first) and `current.log`. A directory without a log yet gives no records.
pub fn read(dir: &Path, query: &LogQuery) -> Result<Vec<LogRecord>, LogError> {
    let mut files = rotated_files(dir)?;
    if let Some(current) = open_log(dir.join(CURRENT_LOG))? {
        files.push(current);
    }
    let files = without_repeats(files);
    let mut records = Vec::new();
    collect(&files, query, &mut records)?;
    Ok(records)
}

/// Follows the log of one executable: first what a [`LogQuery`] asks for, then each batch
/// of records the pump writes after that, across rotations.
///
/// It reads the files on its own, woken by the pump's progress counter
/// ([`super::LogPump::subscribe`]); one that is never polled costs the pump nothing. A
/// follower that falls behind by more than the whole rotated log misses what was deleted.
#[derive(Debug)]
pub struct LogFollower {
    dir: PathBuf,
    /// The files still to read, oldest first; only the last one may still grow.
    files: VecDeque<Tail>,
    /// The bytes of a record read without its newline yet.
    carry: Vec<u8>,
    initial: Option<Vec<LogRecord>>,
    progress: Option<watch::Receiver<u64>>,
}

/// A log file being followed, and how far it was read.
#[derive(Debug)]
struct Tail {
    file: File,
    ino: u64,
    pos: u64,
}

impl LogFollower {
    /// Starts following the log in `dir`. The first batch holds what `query` asks for of
    /// what is there now; later batches hold what the pump writes after it, with nothing
    /// lost or repeated in between. `progress` is the pump's ([`super::LogPump::subscribe`]),
    /// or `None` when no pump runs (the follower then ends after what is there).
    pub fn new(
        dir: &Path,
        query: &LogQuery,
        mut progress: Option<watch::Receiver<u64>>,
    ) -> Result<Self, LogError> {
        if let Some(progress) = &mut progress {
            // Whatever the pump writes from here on wakes the follower.
            progress.borrow_and_update();
        }
        let current = open_log(dir.join(CURRENT_LOG))?;
        let mut files = rotated_files(dir)?;
        if let Some(current) = &current {
            files.retain(|(_, file)| file.ino != current.1.ino);
        }
        let mut initial = Vec::new();
        collect(&without_repeats(files), query, &mut initial)?;
        let mut follower = Self {
            dir: dir.to_owned(),
            files: current.map(|(_, tail)| tail).into_iter().collect(),
            carry: Vec::new(),
            initial: None,
            progress,
        };
        let mut current_records = Vec::new();
        while follower.read_front(u64::MAX, &mut current_records)? > 0 {}
        initial.extend(current_records);
        apply_query(&mut initial, query);
        follower.initial = Some(initial);
        Ok(follower)
    }

    /// The next records: what the query asked for on the first call, then waits for the
    /// pump to write more and returns it. `None` once the pump is gone (its progress sender
    /// dropped, or none was given) and everything was read. Cancelling the wait loses
    /// nothing.
    pub async fn next_batch(&mut self) -> Result<Option<Vec<LogRecord>>, LogError> {
        if let Some(initial) = self.initial.take().filter(|records| !records.is_empty()) {
            return Ok(Some(initial));
        }
        loop {
            let records = self.read_new()?;
            if !records.is_empty() {
                return Ok(Some(records));
            }
            match &mut self.progress {
                None => return Ok(None),
                Some(progress) => {
                    if progress.changed().await.is_err() {
                        // The pump is gone: one last look, then the end.
                        self.progress = None;
                    }
                }
            }
        }
    }

    /// Reads up to [`BATCH_BYTES`] of what was written since the last call, moving on to
    /// newer files when the one being read was rotated.
    fn read_new(&mut self) -> Result<Vec<LogRecord>, LogError> {
        let mut records = Vec::new();
        let mut budget = BATCH_BYTES;
        loop {
            if self.files.is_empty() {
                match open_log(self.dir.join(CURRENT_LOG))? {
                    Some((_, tail)) => self.files.push_back(tail),
                    None => return Ok(records),
                }
            }
            let read = self.read_front(budget, &mut records)?;
            budget -= read;
            if budget == 0 {
                return Ok(records);
            }
            if read > 0 {
                continue;
            }
            if self.files.len() > 1 {
                self.files.pop_front();
                self.carry.clear();
                continue;
            }
            if !self.queue_newer_files()? {
                return Ok(records);
            }
        }
    }

    /// Reads the first file from where it was left, at most `budget` bytes; how many were read.
    fn read_front(&mut self, budget: u64, records: &mut Vec<LogRecord>) -> Result<u64, LogError> {
        let Some(front) = self.files.front_mut() else {
            return Ok(0);
        };
        let mut buf = vec![0; READ_BYTES.min(usize::try_from(budget).unwrap_or(READ_BYTES))];
        let n = front
            .file
            .read_at(&mut buf, front.pos)
            .map_err(|source| read_error(&self.dir, source))?;
        front.pos += n as u64;
        self.carry.extend_from_slice(&buf[..n]);
        let used = parse_lines(&self.carry, None, records);
        self.carry.drain(..used);
        Ok(n as u64)
    }

    /// Called when the only file being read has nothing more: if it is no longer
    /// `current.log` (rotated), queues the files written after it; whether any were.
    fn queue_newer_files(&mut self) -> Result<bool, LogError> {
        let Some(front) = self.files.front_mut() else {
            return Ok(false);
        };
        let current = open_log(self.dir.join(CURRENT_LOG))?;
        if let Some((_, current)) = &current
            && current.ino == front.ino
        {
            let len = front
                .file
                .metadata()
                .map_err(|source| read_error(&self.dir, source))?
                .len();
            if len < front.pos {
                // Truncated under us: start it again.
                front.pos = 0;
                self.carry.clear();
            }
            return Ok(false);
        }
        let Some(current) = current else {
            return Ok(false);
        };
        let ino = front.ino;
        let mut files = rotated_files(&self.dir)?;
        files.push(current);
        let files = without_repeats(files);
        let newer = match files.iter().position(|(_, tail)| tail.ino == ino) {
            Some(at) => files.into_iter().skip(at + 1).collect(),
            None => files,
        };
        self.files.extend(newer.into_iter().map(|(_, tail)| tail));
        Ok(true)
    }
}

/// Parses the complete lines of `bytes` into `records` (skipping damaged ones and those
/// before `since`); how many bytes that used (up to the last newline).
fn parse_lines(
    bytes: &[u8],
    since: Option<std::time::SystemTime>,
    records: &mut Vec<LogRecord>,
) -> usize {
    let Some(last) = bytes.iter().rposition(|&b| b == b'\n') else {
        return 0;
    };
    for line in bytes[..last].split(|&b| b == b'\n') {
        match parse_record(line) {
            Some(record) if since.is_none_or(|since| record.time >= since) => records.push(record),
            Some(_) => {}
            None => tracing::debug!(len = line.len(), "skipping a damaged log record"),
        }
    }
    last + 1
}

/// Reads `files` (oldest first) into `records` as `query` asks; with a tail, only as many of
/// the newest files as it needs.
fn collect(
    files: &[(PathBuf, Tail)],
    query: &LogQuery,
    records: &mut Vec<LogRecord>,
) -> Result<(), LogError> {
    let mut newest_first: Vec<Vec<LogRecord>> = Vec::new();
    let mut count = 0;
    for (path, tail) in files.iter().rev() {
        let mut bytes = Vec::new();
        let mut buf = vec![0; READ_BYTES];
        loop {
            let n = tail
                .file
                .read_at(&mut buf, bytes.len() as u64)
                .map_err(|source| read_error(path, source))?;
            if n == 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n]);
        }
        let mut file_records = Vec::new();
        parse_lines(&bytes, query.since, &mut file_records);
        count += file_records.len();
        newest_first.push(file_records);
        if query.tail.is_some_and(|tail| count >= tail) {
            break;
        }
    }
    records.extend(newest_first.into_iter().rev().flatten());
    apply_query(records, query);
    Ok(())
}

/// Keeps the records `query` asks for.
fn apply_query(records: &mut Vec<LogRecord>, query: &LogQuery) {
    if let Some(since) = query.since {
        records.retain(|record| record.time >= since);
    }
    if let Some(tail) = query.tail {
        let extra = records.len().saturating_sub(tail);
        records.drain(..extra);
    }
}

/// The rotated files in `dir`, oldest (highest number) first.
fn rotated_files(dir: &Path) -> Result<Vec<(PathBuf, Tail)>, LogError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LogError::File {
        action: "list",
        path: dir.to_owned(),
        source,
    })?;
    let mut numbers: Vec<u32> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name();
            name.to_str()?.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    numbers.sort_unstable_by(|a, b| b.cmp(a));
    let mut files = Vec::new();
    for number in numbers {
        if let Some(file) = open_log(super::pump::rotated_path(dir, number))? {
            files.push(file);
        }
    }
    Ok(files)
}

/// Opens a log file for reading; `None` if it is not there (rotated away meanwhile).
fn open_log(path: PathBuf) -> Result<Option<(PathBuf, Tail)>, LogError> {
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(read_error(&path, source)),
    };
    let ino = file
        .metadata()
        .map_err(|source| read_error(&path, source))?
        .ino();
    Ok(Some((path, Tail { file, ino, pos: 0 })))
}

/// Drops files seen twice (a rotation while they were listed).
fn without_repeats(files: Vec<(PathBuf, Tail)>) -> Vec<(PathBuf, Tail)> {
    let mut seen = HashSet::new();
    files
        .into_iter()
        .filter(|(_, tail)| seen.insert(tail.ino))
        .collect()
}

fn read_error(path: &Path, source: std::io::Error) -> LogError {
    LogError::File {
        action: "read",
        path: path.to_owned(),
        source,
    }
}
