//! Checking a cell's [`Limits`] against what the host can enforce, before anything is
//! created, and converting cgroup v2's scales to v1's.
//!
//! Pure functions over a [`Capabilities`] record; nothing here touches the host.

use std::collections::BTreeSet;

use super::{CgroupError, CgroupVersion};
use crate::spec::Limits;

/// The smallest `memory.max` accepted: the kernel takes less, but a cell cannot start a
/// process in a few hundred KiB.
pub const MEMORY_FLOOR: u64 = 256 * 1024;

/// The highest CPU number a cpuset may name (a guard against `0-4000000000`).
const MAX_CPU: u32 = 1 << 16;

/// What the host can enforce, measured once when the runtime root is prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Capabilities {
    /// The cgroup version.
    pub version: CgroupVersion,
    /// The controllers a cell gets (`cpu`, `memory`, `pids`, `cpuset`, `io` or `blkio`).
    pub controllers: BTreeSet<String>,
    /// Whether an I/O weight file exists for cells.
    pub io_weight: bool,
    /// Whether swap can be limited (`memory.swap.max` or `memory.memsw.*`).
    pub swap: bool,
    /// The CPUs cells may use; `None` when the host did not say.
    pub cpus: Option<BTreeSet<u32>>,
}

/// Refuses what the host cannot enforce, naming the field.
pub(crate) fn check(caps: &Capabilities, limits: &Limits) -> Result<(), CgroupError> {
    check_cpu(caps, limits)?;
    check_cpuset(caps, limits)?;
    check_memory(caps, limits)?;
    if limits.pids_max.is_some() {
        need(caps, "pids_max", "pids")?;
    }
    if limits.pids_max == Some(0) {
        return Err(range(
            "pids_max",
            0,
            "at least 1: a cell needs room for its first process",
        ));
    }
    if let Some(weight) = limits.io_weight {
        weight_in_range("io_weight", weight)?;
        let io = if caps.version == CgroupVersion::V2 {
            "io"
        } else {
            "blkio"
        };
        need(caps, "io_weight", io)?;
        if !caps.io_weight {
            return Err(CgroupError::Unsupported {
                field: "io_weight",
                why: format!(
                    "the {io} controller on this host offers no weight file (no I/O scheduler \
                     with weights, such as bfq); leave io_weight unset"
                ),
            });
        }
    }
    Ok(())
}

fn check_cpu(caps: &Capabilities, limits: &Limits) -> Result<(), CgroupError> {
    let cpu = &limits.cpu;
    if let Some(weight) = cpu.weight {
        weight_in_range("cpu.weight", weight)?;
        need(caps, "cpu.weight", "cpu")?;
    }
    if let Some(quota) = cpu.quota_us {
        if quota < 1000 {
            return Err(range(
                "cpu.quota_us",
                quota,
                "at least 1000 (1 ms), the kernel's floor",
            ));
        }
        need(caps, "cpu.quota_us", "cpu")?;
    }
    if let Some(period) = cpu.period_us {
        if !(1000..=1_000_000).contains(&period) {
            return Err(range(
                "cpu.period_us",
                period,
                "1000 to 1000000 (1 ms to 1 s)",
            ));
        }
        need(caps, "cpu.period_us", "cpu")?;
    }
    Ok(())
}

fn check_cpuset(caps: &Capabilities, limits: &Limits) -> Result<(), CgroupError> {
    let Some(list) = &limits.cpuset else {
        return Ok(());
    };
    let wanted = parse_cpu_list(list).ok_or_else(|| CgroupError::OutOfRange {
        field: "cpuset",
        value: list.clone(),
        why: "a list of CPU numbers and ranges such as `0-1,3`".to_owned(),
    })?;
    if wanted.is_empty() {
        return Err(CgroupError::OutOfRange {
            field: "cpuset",
            value: list.clone(),
            why: "at least one CPU; leave cpuset unset to use them all".to_owned(),
        });
    }
    need(caps, "cpuset", "cpuset")?;
    if let Some(host) = &caps.cpus
        && !wanted.is_subset(host)
    {
        return Err(CgroupError::OutOfRange {
            field: "cpuset",
            value: list.clone(),
            why: format!("CPUs this host offers cells: {}", format_cpu_list(host)),
        });
    }
    Ok(())
}

fn check_memory(caps: &Capabilities, limits: &Limits) -> Result<(), CgroupError> {
    let memory = &limits.memory;
    let v1 = caps.version != CgroupVersion::V2;
    if let Some(max) = memory.max {
        need(caps, "memory.max", "memory")?;
        if max < MEMORY_FLOOR {
            return Err(range(
                "memory.max",
                max,
                "at least 262144 (256 KiB); a cell cannot start a process in less",
            ));
        }
    }
    if memory.high.is_some() {
        if v1 {
            return Err(CgroupError::Unsupported {
                field: "memory.high",
                why: "memory.high needs cgroup v2; this host's memory controller is v1 \
                      (set memory.max instead, or boot the host with cgroup v2)"
                    .to_owned(),
            });
        }
        need(caps, "memory.high", "memory")?;
    }
    if memory.swap.is_some() {
        need(caps, "memory.swap", "memory")?;
        if !caps.swap {
            return Err(CgroupError::Unsupported {
                field: "memory.swap",
                why: "this host does not account swap per cgroup (no memory.swap.max or \
                      memory.memsw files; boot with swapaccount=1) - leave memory.swap unset"
                    .to_owned(),
            });
        }
        if v1 && memory.max.is_none() {
            return Err(CgroupError::Unsupported {
                field: "memory.swap",
                why: "cgroup v1 limits memory and swap together, so memory.swap needs \
                      memory.max set as well"
                    .to_owned(),
            });
        }
    }
    Ok(())
}

fn need(caps: &Capabilities, field: &'static str, controller: &str) -> Result<(), CgroupError> {
    if caps.controllers.contains(controller) {
        Ok(())
    } else {
        Err(CgroupError::Unsupported {
            field,
            why: format!(
                "the {controller} controller is not available to cells on this host \
                 ({}); enable it or leave {field} unset",
                caps.version
            ),
        })
    }
}

fn weight_in_range(field: &'static str, weight: u64) -> Result<(), CgroupError> {
    if (1..=10_000).contains(&weight) {
        Ok(())
    } else {
        Err(range(field, weight, "1 to 10000 (100 is the default)"))
    }
}

fn range(field: &'static str, value: u64, why: &str) -> CgroupError {
    CgroupError::OutOfRange {
        field,
        value: value.to_string(),
        why: why.to_owned(),
    }
}

/// Parses the kernel's CPU list format (`0-1,3`); `None` when malformed.
pub(crate) fn parse_cpu_list(list: &str) -> Option<BTreeSet<u32>> {
    let mut cpus = BTreeSet::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let cpu = part.trim().parse::<u32>().ok()?;
                (cpu, cpu)
            }
        };
        if first > last || last > MAX_CPU {
            return None;
        }
        cpus.extend(first..=last);
    }
    Some(cpus)
}

/// Formats a CPU set in the kernel's list format.
pub(crate) fn format_cpu_list(cpus: &BTreeSet<u32>) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for &cpu in cpus {
        match ranges.last_mut() {
            Some((_, last)) if *last + 1 == cpu => *last = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    let parts: Vec<String> = ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    parts.join(",")
}

/// cgroup v1 `cpu.shares` (2-262144) for a v2 `cpu.weight` (1-10000): the inverse of the
/// conversion systemd and crun use, so weight 1 is 2 shares and 10000 is 262144.
pub(crate) fn shares_from_weight(weight: u64) -> u64 {
    2 + (weight.clamp(1, 10_000) - 1) * 262_142 / 9_999
}

/// cgroup v1 `blkio.weight` (10-1000) for a v2 `io.weight` (1-10000), scaled linearly.
pub(crate) fn blkio_weight_from_weight(weight: u64) -> u64 {
    10 + (weight.clamp(1, 10_000) - 1) * 990 / 9_999
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{CpuLimits, MemoryLimits};

    fn caps(version: CgroupVersion) -> Capabilities {
        let controllers = match version {
            CgroupVersion::V2 => ["cpu", "cpuset", "io", "memory", "pids"],
            CgroupVersion::V1 { .. } => ["cpu", "cpuset", "blkio", "memory", "pids"],
        };
        Capabilities {
            version,
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            io_weight: true,
            swap: true,
            cpus: parse_cpu_list("0-1"),
        }
    }

    fn refused_field(caps: &Capabilities, limits: &Limits) -> &'static str {
        match check(caps, limits) {
            Err(CgroupError::Unsupported { field, .. } | CgroupError::OutOfRange { field, .. }) => {
                field
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn memory_high_is_refused_on_v1_naming_the_field() {
        let limits = Limits {
            memory: MemoryLimits {
                high: Some(64 << 20),
                ..Default::default()
            },
            ..Default::default()
        };
        let v1 = caps(CgroupVersion::V1 { hybrid: true });
        assert_eq!(refused_field(&v1, &limits), "memory.high");
        let message = check(&v1, &limits).unwrap_err().to_string();
        assert!(message.contains("memory.high needs cgroup v2"), "{message}");
        check(&caps(CgroupVersion::V2), &limits).unwrap();
    }

    #[test]
    fn out_of_range_values_are_refused_naming_the_field() {
        let v2 = caps(CgroupVersion::V2);
        let cpu = |weight, quota_us, period_us| Limits {
            cpu: CpuLimits {
                weight,
                quota_us,
                period_us,
            },
            ..Default::default()
        };
        assert_eq!(refused_field(&v2, &cpu(Some(0), None, None)), "cpu.weight");
        assert_eq!(
            refused_field(&v2, &cpu(Some(10_001), None, None)),
            "cpu.weight"
        );
        assert_eq!(
            refused_field(&v2, &cpu(None, Some(999), None)),
            "cpu.quota_us"
        );
        assert_eq!(
            refused_field(&v2, &cpu(None, None, Some(999))),
            "cpu.period_us"
        );
        assert_eq!(
            refused_field(&v2, &cpu(None, None, Some(1_000_001))),
            "cpu.period_us"
        );
        check(&v2, &cpu(Some(10_000), Some(1000), Some(1_000_000))).unwrap();

        let memory = |max, swap| Limits {
            memory: MemoryLimits {
                max,
                high: None,
                swap,
            },
            ..Default::default()
        };
        assert_eq!(refused_field(&v2, &memory(Some(4096), None)), "memory.max");
        check(&v2, &memory(Some(MEMORY_FLOOR), None)).unwrap();
        let v1 = caps(CgroupVersion::V1 { hybrid: false });
        assert_eq!(
            refused_field(&v1, &memory(None, Some(1 << 20))),
            "memory.swap"
        );
        check(&v1, &memory(Some(1 << 30), Some(1 << 20))).unwrap();
        let no_swap = Capabilities {
            swap: false,
            ..v1.clone()
        };
        assert_eq!(
            refused_field(&no_swap, &memory(Some(1 << 30), Some(1))),
            "memory.swap"
        );

        let pids = Limits {
            pids_max: Some(0),
            ..Default::default()
        };
        assert_eq!(refused_field(&v2, &pids), "pids_max");
    }

    #[test]
    fn cpusets_and_missing_controllers_are_checked_against_the_host() {
        let v2 = caps(CgroupVersion::V2);
        let cpuset = |list: &str| Limits {
            cpuset: Some(list.to_owned()),
            ..Default::default()
        };
        check(&v2, &cpuset("0-1")).unwrap();
        check(&v2, &cpuset("1")).unwrap();
        for bad in ["0-999", "2", "x", "3-1", ""] {
            assert_eq!(refused_field(&v2, &cpuset(bad)), "cpuset", "{bad}");
        }
        let message = check(&v2, &cpuset("0-999")).unwrap_err().to_string();
        assert!(message.contains("0-1"), "{message}");

        let io = Limits {
            io_weight: Some(100),
            ..Default::default()
        };
        check(&v2, &io).unwrap();
        let mut bare = v2.clone();
        bare.controllers.remove("io");
        bare.controllers.remove("cpu");
        assert_eq!(refused_field(&bare, &io), "io_weight");
        assert_eq!(
            refused_field(
                &bare,
                &Limits {
                    cpu: CpuLimits {
                        weight: Some(100),
                        ..Default::default()
                    },
                    ..Default::default()
                }
            ),
            "cpu.weight"
        );
        let no_weight_file = Capabilities {
            io_weight: false,
            ..v2
        };
        assert_eq!(refused_field(&no_weight_file, &io), "io_weight");
    }

    #[test]
    fn weights_convert_to_v1_scales_end_to_end() {
        assert_eq!(shares_from_weight(1), 2);
        assert_eq!(shares_from_weight(100), 2597);
        assert_eq!(shares_from_weight(10_000), 262_144);
        assert_eq!(blkio_weight_from_weight(1), 10);
        assert_eq!(blkio_weight_from_weight(10_000), 1000);
        // crun's forward conversion gives the weight back, within integer rounding.
        let back = |shares: u64| 1 + (shares - 2) * 9_999 / 262_142;
        for weight in [1, 2, 100, 5_000, 10_000] {
            assert!(
                back(shares_from_weight(weight)).abs_diff(weight) <= 1,
                "{weight}"
            );
        }
    }

    #[test]
    fn cpu_lists_parse_and_format() {
        let set = parse_cpu_list("0-2,5,7-8\n").unwrap();
        assert_eq!(format_cpu_list(&set), "0-2,5,7-8");
        assert_eq!(parse_cpu_list("").unwrap().len(), 0);
        assert!(parse_cpu_list("0-4000000000").is_none());
    }
}
