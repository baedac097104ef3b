//! Counters of the store's own work: commits, how many writes each commit carried (group
//! commit at work), checkpoints, and how long each fdatasync of the write-ahead log took.
//!
//! They are plain atomics, bumped on the writer's path at the cost of a few relaxed
//! additions, and read by whoever exports them ([`crate::Store::stats`]). This module
//! never formats them for a metrics system and never takes a lock: a scrape must not be
//! able to slow a commit down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Upper bounds of the log-sync latency buckets, in nanoseconds: 25 us to 1 s. One
/// fdatasync of the log costs 120-130 us on a virtio disk, far less on NVMe.
pub const SYNC_BOUNDS_NANOS: &[u64] = &[
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    1_000_000_000,
];

/// Upper bounds of the group-size buckets, in writes per commit.
pub const GROUP_BOUNDS: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/// A histogram over fixed bounds, in atomics: each observation lands in the first
/// bucket whose bound is not below it, or in the overflow bucket.
#[derive(Debug)]
pub struct AtomicHistogram {
    bounds: &'static [u64],
    /// One count per bound, then the overflow bucket.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

impl AtomicHistogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [u64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts `value`.
    pub fn record(&self, value: u64) {
        let bucket = self.bounds.partition_point(|bound| *bound < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The counts so far. Each atomic is read on its own, so a snapshot taken during a
    /// commit may be one observation behind in one field: scrapers tolerate that.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        HistogramSnapshot {
            bounds: self.bounds,
            count: counts.iter().sum(),
            counts,
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

/// What a histogram held when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// The buckets' upper bounds.
    pub bounds: &'static [u64],
    /// Observations per bucket (not cumulative), one more than `bounds`: the last is the
    /// overflow bucket.
    pub counts: Vec<u64>,
    /// The sum of every observation.
    pub sum: u64,
    /// How many observations.
    pub count: u64,
}

/// The store's counters, shared by the writer thread and the readers of the stats.
#[derive(Debug)]
pub struct StoreStats {
    commits: AtomicU64,
    checkpoints: AtomicU64,
    group_sizes: AtomicHistogram,
    log_syncs: AtomicHistogram,
}

impl Default for StoreStats {
    fn default() -> Self {
        Self {
            commits: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            group_sizes: AtomicHistogram::new(GROUP_BOUNDS),
            log_syncs: AtomicHistogram::new(SYNC_BOUNDS_NANOS),
        }
    }
}

impl StoreStats {
    /// A transaction carrying `writes` callers' writes committed.
    pub(crate) fn committed(&self, writes: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.group_sizes.record(writes as u64);
    }

    /// A checkpoint (a durable redb commit emptying the log) completed.
    pub(crate) fn checkpointed(&self) {
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `sync` (an fdatasync of the log) and records how long it took.
    pub(crate) fn time_sync<T>(&self, sync: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let result = sync();
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.log_syncs.record(nanos);
        result
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            commits: self.commits.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            group_sizes: self.group_sizes.snapshot(),
            log_sync_nanos: self.log_syncs.snapshot(),
        }
    }
}

/// The store's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Write transactions committed since the store was opened (a group of writes
    /// committed together counts once).
    pub commits: u64,
    /// Checkpoints completed since the store was opened.
    pub checkpoints: u64,
    /// Writes per commit.
    pub group_sizes: HistogramSnapshot,
    /// How long each fdatasync of the write-ahead log took, in nanoseconds.
    pub log_sync_nanos: HistogramSnapshot,
}

impl StatsSnapshot {
    /// The total time spent in log syncs.
    pub fn log_sync_time(&self) -> Duration {
        Duration::from_nanos(self.log_sync_nanos.sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_not_below_them() {
        let histogram = AtomicHistogram::new(&[1, 2, 4]);
        for value in [0, 1, 2, 3, 4, 5, 100] {
            histogram.record(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts, vec![2, 1, 2, 2]);
        assert_eq!(snapshot.count, 7);
        assert_eq!(snapshot.sum, 115);
    }

    #[test]
    fn commits_count_once_per_group_and_record_its_size() {
        let stats = StoreStats::default();
        stats.committed(1);
        stats.committed(3);
        let value = stats.time_sync(|| 7);
        assert_eq!(value, 7);
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.commits, 2);
        assert_eq!(snapshot.group_sizes.count, 2);
        assert_eq!(snapshot.group_sizes.sum, 4);
        assert_eq!(snapshot.log_sync_nanos.count, 1);
    }
}
