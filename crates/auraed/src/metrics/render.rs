//! The exposition: everything a scrape reads, copied at the moment of the scrape and
//! encoded in the Prometheus text format (version 0.0.4).
//!
//! The RPC families are live (the layer records into them); everything else is read now
//! from where it lives (the store's atomics, the capability registry, the connection
//! registry, `/proc/self`) into a [`NodeSnapshot`], so that nothing keeps a second copy
//! up to date between scrapes. A part that cannot be read (the store is not open, `/proc`
//! is missing) is left out, never guessed.

use std::fmt;
use std::time::Duration;

use aurae_store::StatsSnapshot;
use aurae_store::stats::HistogramSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::MetricsError;
use crate::context::Daemon;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Linux's `USER_HZ`: the unit of the CPU times in `/proc/self/stat` (100 on every
/// architecture Linux runs auraed on).
const USER_HZ: f64 = 100.0;

/// Every metric of `daemon` now, as exposition text.
pub fn render(daemon: &Daemon) -> Result<String, MetricsError> {
    let mut registry = Registry::default();
    if let Some(rpc) = daemon.metrics.rpc() {
        rpc.register(&mut registry);
    }
    registry.register_collector(Box::new(NodeSnapshot::of(daemon)));
    let mut text = String::with_capacity(8 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// What a scrape reads besides the RPC families, copied when it scrapes.
#[derive(Debug)]
pub struct NodeSnapshot {
    uptime: Duration,
    connections: usize,
    capabilities: Vec<(&'static str, bool)>,
    store: Option<StatsSnapshot>,
    process: ProcessSnapshot,
}

impl NodeSnapshot {
    /// Reads `daemon` now.
    pub fn of(daemon: &Daemon) -> Self {
        let registry = &daemon.capabilities;
        Self {
            uptime: daemon.started.elapsed(),
            connections: daemon.connections.len(),
            capabilities: registry
                .known()
                .iter()
                .map(|c| (c.name, registry.is_enabled(c)))
                .collect(),
            store: daemon
                .store
                .store()
                .ok()
                .map(|store| store.stats().snapshot()),
            process: ProcessSnapshot::read(),
        }
    }
}

/// The process's own figures from `/proc/self`; each is left out if it cannot be read.
#[derive(Debug, Default)]
struct ProcessSnapshot {
    resident_bytes: Option<u64>,
    cpu_seconds: Option<f64>,
    open_fds: Option<u64>,
}

impl ProcessSnapshot {
    fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64);
        Self {
            resident_bytes: status.as_deref().and_then(resident_bytes),
            cpu_seconds: stat.as_deref().and_then(cpu_seconds),
            open_fds,
        }
    }
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// User plus system CPU time of a `/proc/<pid>/stat` text, in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// `name` gets `_total` appended.
fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> fmt::Result {
    encoder
        .encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

/// A histogram of the store, its bounds divided by `scale` (nanoseconds to seconds).
fn histogram(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    snapshot: &HistogramSnapshot,
    scale: f64,
) -> fmt::Result {
    let buckets: Vec<(f64, u64)> = snapshot
        .bounds
        .iter()
        .map(|bound| *bound as f64 / scale)
        .chain(std::iter::once(f64::INFINITY))
        .zip(snapshot.counts.iter().copied())
        .collect();
    encoder
        .encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(snapshot.sum as f64 / scale, snapshot.count, &buckets, None)
}

impl Collector for NodeSnapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let e = &mut encoder;
        {
            let mut info = e.encode_descriptor(
                "aurae_build_info",
                "always 1; the version of auraed",
                None,
                MetricType::Gauge,
            )?;
            info.encode_family(&[("version", aurae_core::VERSION)])?
                .encode_gauge(&1u32)?;
        }
        gauge(
            e,
            "aurae_uptime_seconds",
            "seconds since auraed started",
            self.uptime.as_secs_f64(),
        )?;
        gauge(
            e,
            "aurae_connections_open",
            "authenticated connections open now (mTLS, admitted)",
            self.connections,
        )?;
        {
            let mut states = e.encode_descriptor(
                "aurae_capability_state",
                "1 for each capability's current state (enabled or disabled), 0 for the other",
                None,
                MetricType::Gauge,
            )?;
            for (name, enabled) in &self.capabilities {
                for (state, now) in [("enabled", *enabled), ("disabled", !*enabled)] {
                    states
                        .encode_family(&[("capability", *name), ("state", state)])?
                        .encode_gauge(&u32::from(now))?;
                }
            }
        }
        gauge(
            e,
            "aurae_store_open",
            "1 when the database is open, 0 while it cannot be (storage answers UNAVAILABLE)",
            u32::from(self.store.is_some()),
        )?;
        if let Some(store) = &self.store {
            counter(
                e,
                "aurae_store_commits",
                "write transactions committed since the store was opened (a group counts once)",
                store.commits,
            )?;
            counter(
                e,
                "aurae_store_checkpoints",
                "checkpoints (durable database commits emptying the write-ahead log)",
                store.checkpoints,
            )?;
            histogram(
                e,
                "aurae_store_commit_writes",
                "writes carried by each commit (group commit)",
                &store.group_sizes,
                1.0,
            )?;
            histogram(
                e,
                "aurae_store_log_sync_seconds",
                "duration of each fdatasync of the write-ahead log",
                &store.log_sync_nanos,
                1e9,
            )?;
        }
        let process = &self.process;
        if let Some(bytes) = process.resident_bytes {
            gauge(
                e,
                "process_resident_memory_bytes",
                "resident memory size in bytes",
                bytes,
            )?;
        }
        if let Some(seconds) = process.cpu_seconds {
            e.encode_descriptor(
                "process_cpu_seconds",
                "user and system CPU time spent, in seconds",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&seconds, None)?;
        }
        if let Some(fds) = process.open_fds {
            gauge(e, "process_open_fds", "open file descriptors", fds)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1000 200";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn resident_memory_is_read_in_bytes() {
        let status = "Name:\tauraed\nVmRSS:\t    1234 kB\nThreads:\t3\n";
        assert_eq!(resident_bytes(status), Some(1234 * 1024));
    }

    #[test]
    fn a_snapshot_encodes_store_histograms_in_seconds_and_capability_states() {
        let stats = aurae_store::StoreStats::default();
        let snapshot = NodeSnapshot {
            uptime: Duration::from_secs(3),
            connections: 2,
            capabilities: vec![("system", true), ("reflection", false)],
            store: Some(stats.snapshot()),
            process: ProcessSnapshot::default(),
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        for line in [
            "aurae_connections_open 2",
            "aurae_store_commits_total 0",
            r#"aurae_capability_state{capability="reflection",state="disabled"} 1"#,
            r#"aurae_capability_state{capability="reflection",state="enabled"} 0"#,
            r#"aurae_store_log_sync_seconds_bucket{le="0.0001"} 0"#,
            r#"aurae_store_commit_writes_bucket{le="+Inf"} 0"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
    }
}
