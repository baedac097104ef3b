//! The writer: a pump per executable, a thread that reads both pipes in big chunks, cuts
//! records and appends them to `current.log`, rotating it when full. It never waits for a
//! reader; it tells followers that it wrote through a watch counter, which costs it nothing
//! when nobody looks.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::unistd::{pipe2, read, write};
use tokio::sync::watch;

use super::{CURRENT_LOG, LogConfig, LogError, MAX_LINE_BYTES, Stream, fifo, time};

/// How much is read from a pipe at once: big chunks keep the syscalls per byte low.
const CHUNK_BYTES: usize = 256 * 1024;
/// How long a line without its newline may wait for the rest before it is written as a
/// partial record (an interactive prompt, a progress bar).
const PARTIAL_WAIT: Duration = Duration::from_millis(50);
/// How much a draining stop reads from each pipe at most, so that a workload that still
/// writes cannot hold it forever.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// A read shorter than this (the pipe was nearly empty) makes the pump wait
/// [`COALESCE_WAIT`] before it looks again, so that a fast workload's writes are read in big
/// chunks instead of one wake-up each. A 1 MiB pipe holds 2 ms of 500 MB/s.
const COALESCE_BELOW: usize = 64 * 1024;
/// See [`COALESCE_BELOW`]: the delay it adds to a line's way into the log.
const COALESCE_WAIT: Duration = Duration::from_millis(2);

/// What the owner tells the pump's thread through its wake pipe.
const DRAIN_AND_STOP: u8 = b'd';

/// A running pump: the thread that copies an executable's output into its log.
///
/// It reads each pipe in chunks of up to 256 KiB, takes one timestamp per chunk, and writes
/// each chunk's records with one write (no fsync). After a small read it lets the pipes fill
/// for 2 ms, so a fast workload costs a wake-up per big chunk rather than per write; a line
/// therefore reaches the log within a few milliseconds, and a fragment without its newline
/// within 50 ms (as a partial record).
///
/// [`LogPump::stop`] it once the workload has exited, to write what is left in the pipes.
/// Dropping it stops the thread without draining the pipes, as a dying daemon would: what
/// is still in the pipes stays there for the next pump.
#[derive(Debug)]
pub struct LogPump {
    wake: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    progress: watch::Receiver<u64>,
}

/// Starts the pump of the executable whose log directory is `dir` (it must exist): creates
/// the pipes if they are missing, opens `current.log` for appending and starts the thread.
///
/// Starting a pump on a directory whose workload is still running (a restarted daemon)
/// continues its log where the previous pump left it. There must be at most one pump per
/// directory.
pub fn start_pump(dir: &Path, config: &LogConfig) -> Result<LogPump, LogError> {
    let (stdout, stderr) = fifo::pump_ends(dir)?;
    let log = LogFile::open(dir, config.clone())?;
    let (wake_read, wake_write) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
        .map_err(|error| LogError::Thread(error.into()))?;
    let (progress_tx, progress) = watch::channel(0);
    let mut pump = Pump {
        pipes: [stdout, stderr],
        wake: wake_read,
        carry: [Carry::default(), Carry::default()],
        chunk: vec![0; CHUNK_BYTES],
        log,
        progress: progress_tx,
    };
    let thread = std::thread::Builder::new()
        .name("aurae-logs".into())
        .spawn(move || pump.run())
        .map_err(LogError::Thread)?;
    Ok(LogPump {
        wake: Some(wake_write),
        thread: Some(thread),
        progress,
    })
}

impl LogPump {
    /// A receiver of the pump's progress: a counter bumped after each batch of records is
    /// written, for [`super::LogFollower`]. Its sender is dropped when the pump stops.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.progress.clone()
    }

    /// Stops the pump after the workload exited: reads what is left in the pipes (until they
    /// are empty), writes it, and waits for the thread to end. It blocks for as long as
    /// that takes (milliseconds); async callers run it with `spawn_blocking`.
    pub fn stop(mut self) -> Result<(), LogError> {
        if let Some(wake) = &self.wake {
            // The pipe is fresh and non-blocking, so one byte always fits; if it did not, the
            // thread still stops when `finish` closes the pipe, only without draining.
            let _ = write(wake, &[DRAIN_AND_STOP]);
        }
        self.finish()
    }

    fn finish(&mut self) -> Result<(), LogError> {
        drop(self.wake.take());
        match self.thread.take() {
            Some(thread) => thread.join().map_err(|_| LogError::PumpDied),
            None => Ok(()),
        }
    }
}

impl Drop for LogPump {
    fn drop(&mut self) {
        if let Err(error) = self.finish() {
            tracing::error!(%error, "log pump ended badly");
        }
    }
}

/// The part of a line read without its newline yet, waiting for the rest.
#[derive(Default)]
struct Carry {
    bytes: Vec<u8>,
    since: Option<Instant>,
}

/// The pump's thread state.
struct Pump {
    pipes: [OwnedFd; 2],
    wake: OwnedFd,
    carry: [Carry; 2],
    chunk: Vec<u8>,
    log: LogFile,
    progress: watch::Sender<u64>,
}

const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

impl Pump {
    fn run(&mut self) {
        let drain = loop {
            match self.wait() {
                Ok(Wake::Data(ready)) => {
                    let mut total = 0;
                    for (index, ready) in ready.into_iter().enumerate() {
                        if ready {
                            total += self.pump(index, CHUNK_BYTES * 4);
                        }
                    }
                    if total < COALESCE_BELOW {
                        // The pipes are empty; let them fill for a moment rather than waking
                        // on every write of a fast workload.
                        std::thread::sleep(COALESCE_WAIT);
                    }
                }
                Ok(Wake::Timeout) => {}
                Ok(Wake::Stop { drain }) => break drain,
                Err(error) => {
                    tracing::error!(%error, dir = %self.log.dir.display(), "log pump cannot wait for output; stopping");
                    break false;
                }
            }
            self.flush_stale_carries(false);
        };
        if drain {
            for index in 0..STREAMS.len() {
                self.pump(index, DRAIN_LIMIT);
            }
        }
        self.flush_stale_carries(true);
    }

    /// Waits for output, a stop, or the moment a carried line fragment is due.
    fn wait(&mut self) -> Result<Wake, Errno> {
        let timeout = self
            .carry
            .iter()
            .filter_map(|carry| carry.since)
            .min()
            .map(|since| {
                let left = PARTIAL_WAIT.saturating_sub(since.elapsed());
                let millis = left.as_millis().min(u128::from(u16::MAX)) as u16;
                PollTimeout::from(millis.saturating_add(1))
            })
            .unwrap_or(PollTimeout::NONE);
        let mut fds = [
            PollFd::new(self.pipes[0].as_fd(), PollFlags::POLLIN),
            PollFd::new(self.pipes[1].as_fd(), PollFlags::POLLIN),
            PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => return Ok(Wake::Timeout),
            Ok(_) => {}
            Err(error) => return Err(error),
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        if ready(&fds[2]) {
            let mut command = [0u8; 1];
            let drain =
                matches!(read(&self.wake, &mut command), Ok(1) if command[0] == DRAIN_AND_STOP);
            return Ok(Wake::Stop { drain });
        }
        Ok(Wake::Data([ready(&fds[0]), ready(&fds[1])]))
    }

    /// Reads stream `index` until its pipe is empty or `limit` bytes were read, writing each
    /// chunk's records with one write; how many bytes it read.
    fn pump(&mut self, index: usize, limit: usize) -> usize {
        let mut total = 0;
        while total < limit {
            let n = match read(&self.pipes[index], &mut self.chunk) {
                Ok(0) | Err(Errno::EAGAIN) => break,
                Err(Errno::EINTR) => continue,
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(%error, dir = %self.log.dir.display(), "cannot read a workload's output pipe");
                    break;
                }
            };
            total += n;
            let prefix = prefix(STREAMS[index], SystemTime::now());
            cut_records(
                &mut self.carry[index],
                &self.chunk[..n],
                &prefix,
                &mut self.log,
            );
            self.flush();
            if n < self.chunk.len() {
                break;
            }
        }
        total
    }

    /// Writes carried fragments as partial records once they waited long enough (or all of
    /// them, when `all`).
    fn flush_stale_carries(&mut self, all: bool) {
        for (index, carry) in self.carry.iter_mut().enumerate() {
            let due = carry
                .since
                .is_some_and(|since| all || since.elapsed() >= PARTIAL_WAIT);
            if due {
                let prefix = prefix(STREAMS[index], SystemTime::now());
                self.log.record(&prefix, true, &carry.bytes);
                carry.bytes.clear();
                carry.since = None;
            }
        }
        self.flush();
    }

    fn flush(&mut self) {
        if self.log.flush() {
            self.progress.send_modify(|count| *count += 1);
        }
    }
}

enum Wake {
    Data([bool; 2]),
    Timeout,
    Stop { drain: bool },
}

/// The start of every record of a chunk: its time and stream (`<time> stdout `).
fn prefix(stream: Stream, now: SystemTime) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(time::TIMESTAMP_LEN + 8);
    time::format(now, &mut prefix);
    prefix.push(b' ');
    prefix.extend_from_slice(stream.as_str().as_bytes());
    prefix.push(b' ');
    prefix
}

/// Cuts `data` (following what `carry` holds) into records: full lines, lines too long cut
/// into partial records, and a last fragment without its newline left in `carry`.
fn cut_records(carry: &mut Carry, data: &[u8], prefix: &[u8], log: &mut LogFile) {
    let mut rest = data;
    if !carry.bytes.is_empty() {
        match find_newline(rest) {
            Some(end) => {
                carry.bytes.extend_from_slice(&rest[..end]);
                write_line(&carry.bytes, prefix, log);
                carry.bytes.clear();
                carry.since = None;
                rest = &rest[end + 1..];
            }
            None => {
                carry.bytes.extend_from_slice(rest);
                let emit = whole_pieces(carry.bytes.len());
                write_pieces(&carry.bytes[..emit], prefix, log);
                carry.bytes.drain(..emit);
                return;
            }
        }
    }
    while let Some(end) = find_newline(rest) {
        write_line(&rest[..end], prefix, log);
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        let emit = whole_pieces(rest.len());
        write_pieces(&rest[..emit], prefix, log);
        carry.bytes.extend_from_slice(&rest[emit..]);
        carry.since = Some(Instant::now());
    }
}

/// How many bytes of a fragment `len` long (without its newline yet) to write as partial
/// records now: whole [`MAX_LINE_BYTES`] pieces, keeping 1 to [`MAX_LINE_BYTES`] bytes, whose
/// newline may come next and make them a full line.
fn whole_pieces(len: usize) -> usize {
    len.saturating_sub(1) / MAX_LINE_BYTES * MAX_LINE_BYTES
}

/// Writes a complete line: partial records of [`MAX_LINE_BYTES`] while it is longer, then
/// a full record.
fn write_line(line: &[u8], prefix: &[u8], log: &mut LogFile) {
    let mut rest = line;
    while rest.len() > MAX_LINE_BYTES {
        log.record(prefix, true, &rest[..MAX_LINE_BYTES]);
        rest = &rest[MAX_LINE_BYTES..];
    }
    log.record(prefix, false, rest);
}

/// Writes `bytes` (a multiple of [`MAX_LINE_BYTES`] long) as partial records.
fn write_pieces(bytes: &[u8], prefix: &[u8], log: &mut LogFile) {
    for piece in bytes.chunks(MAX_LINE_BYTES) {
        log.record(prefix, true, piece);
    }
}

/// The first newline in `bytes`, eight bytes at a time (the pump looks at every byte the
/// workload writes, so this is its hot loop).
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const NEWLINES: u64 = u64::from_ne_bytes([b'\n'; 8]);
    let (words, rest) = bytes.as_chunks::<8>();
    for (index, word) in words.iter().enumerate() {
        let x = u64::from_ne_bytes(*word) ^ NEWLINES;
        // A byte of `x` is zero (a newline) exactly when this sets a high bit somewhere.
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return word
                .iter()
                .position(|&b| b == b'\n')
                .map(|at| index * 8 + at);
        }
    }
    let start = words.len() * 8;
    rest.iter().position(|&b| b == b'\n').map(|at| start + at)
}

/// `current.log` being appended to, with the records not yet written and the rotation.
struct LogFile {
    dir: PathBuf,
    config: LogConfig,
    file: File,
    size: u64,
    pending: Vec<u8>,
    failing: bool,
}

impl LogFile {
    fn open(dir: &Path, config: LogConfig) -> Result<Self, LogError> {
        let file = open_current(dir)?;
        let size = file
            .metadata()
            .map_err(|source| file_error("inspect", dir.join(CURRENT_LOG), source))?
            .len();
        remove_extra_files(dir, config.max_files);
        let mut log = Self {
            dir: dir.to_owned(),
            config,
            file,
            size,
            pending: Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4),
            failing: false,
        };
        if log.ends_inside_a_record()? {
            // A pump died in the middle of a write: end its damaged record (readers skip it)
            // so that the first new one is not glued to it.
            log.pending.push(b'\n');
            log.flush();
        }
        Ok(log)
    }

    /// Whether the file's last byte is not a newline.
    fn ends_inside_a_record(&self) -> Result<bool, LogError> {
        if self.size == 0 {
            return Ok(false);
        }
        let mut last = [0u8; 1];
        self.file
            .read_exact_at(&mut last, self.size - 1)
            .map_err(|source| file_error("read", self.dir.join(CURRENT_LOG), source))?;
        Ok(last[0] != b'\n')
    }

    /// Adds a record to the pending batch, writing the batch and rotating first if the
    /// record would not fit in the current file.
    fn record(&mut self, prefix: &[u8], partial: bool, line: &[u8]) {
        let len = prefix.len() + 3 + line.len();
        let used = self.size + self.pending.len() as u64;
        if used > 0 && used + len as u64 > self.config.max_file_bytes {
            self.flush();
            self.rotate();
        }
        self.pending.extend_from_slice(prefix);
        self.pending
            .extend_from_slice(if partial { b"P " } else { b"F " });
        self.pending.extend_from_slice(line);
        self.pending.push(b'\n');
    }

    /// Writes the pending batch with one write; whether anything was written. A batch that
    /// cannot be written (disk full) is dropped rather than held, so the workload never
    /// waits on the disk's troubles.
    fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let written = match self.file.write_all(&self.pending) {
            Ok(()) => {
                self.size += self.pending.len() as u64;
                self.failing = false;
                true
            }
            Err(error) => {
                if !self.failing {
                    tracing::warn!(%error, dir = %self.dir.display(), bytes = self.pending.len(), "cannot write a workload's log; dropping output until it works again");
                }
                self.failing = true;
                false
            }
        };
        self.pending.clear();
        written
    }

    /// Shifts `N.log` to `N+1.log` (dropping the oldest), `current.log` to `1.log`, and
    /// starts a new `current.log`.
    fn rotate(&mut self) {
        if let Err(error) = self.try_rotate() {
            tracing::warn!(%error, dir = %self.dir.display(), "cannot rotate a workload's log; it grows past its bound");
        }
    }

    fn try_rotate(&mut self) -> Result<(), LogError> {
        let current = self.dir.join(CURRENT_LOG);
        let max = self.config.max_files;
        for number in (1..max).rev() {
            let from = rotated_path(&self.dir, number);
            match std::fs::rename(&from, rotated_path(&self.dir, number + 1)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(file_error("rotate", from, source)),
            }
        }
        let moved = if max == 0 {
            std::fs::remove_file(&current)
        } else {
            std::fs::rename(&current, rotated_path(&self.dir, 1))
        };
        moved.map_err(|source| file_error("rotate", current.clone(), source))?;
        self.file = open_current(&self.dir)?;
        self.size = 0;
        Ok(())
    }
}

/// The path of rotated file `number` (`1.log` is the newest).
pub(super) fn rotated_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number}.log"))
}

fn open_current(dir: &Path) -> Result<File, LogError> {
    let path = dir.join(CURRENT_LOG);
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| file_error("open", path, source))
}

/// Deletes rotated files beyond `max_files`, left by a pump that kept more.
fn remove_extra_files(dir: &Path, max_files: u32) {
    let mut number = max_files + 1;
    while std::fs::remove_file(rotated_path(dir, number)).is_ok() {
        number += 1;
    }
}

fn file_error(action: &'static str, path: PathBuf, source: std::io::Error) -> LogError {
    LogError::File {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_are_found_at_every_position() {
        for len in 0..40 {
            let mut bytes = vec![b'a'; len];
            assert_eq!(find_newline(&bytes), None);
            for at in 0..len {
                bytes[at] = b'\n';
                assert_eq!(find_newline(&bytes), Some(at));
                bytes[at] = 0x8a;
            }
        }
    }
}
