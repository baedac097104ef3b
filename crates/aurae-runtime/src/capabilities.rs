//! Linux capability sets of an executable, by the kernel's numbers.
//!
//! An OCI bundle names capabilities (`CAP_CHOWN`, ...); the kernel takes bitmasks. The
//! numbers are the kernel's ABI (`linux/capability.h`) and never change, so they are
//! listed here rather than read from a library.

use serde::{Deserialize, Serialize};

/// Capability names by number, without the `CAP_` prefix.
pub const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The kernel's number of capability `name` (`CAP_CHOWN` or `CHOWN`), if it has one.
pub fn number(name: &str) -> Option<u32> {
    let bare = name.strip_prefix("CAP_").unwrap_or(name);
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(bare))
        .and_then(|i| u32::try_from(i).ok())
}

/// The capability sets an executable runs with, as bitmasks (bit n is capability n). A
/// capability outside `bounding` can never be gained again, not even through a setuid
/// program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CapabilitySets {
    /// What it and its descendants can ever hold.
    pub bounding: u64,
    /// What it uses now.
    pub effective: u64,
    /// What it may make effective.
    pub permitted: u64,
    /// What an exec'd program may inherit.
    pub inheritable: u64,
    /// What an exec'd program gets without file capabilities.
    pub ambient: u64,
}

/// The bitmask of `names`; the first name without a number is returned as the error.
pub fn mask<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<u64, &'a str> {
    names.into_iter().try_fold(0u64, |mask, name| {
        number(name).map(|n| mask | (1 << n)).ok_or(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_the_kernels_numbers() {
        assert_eq!(number("CAP_CHOWN"), Some(0));
        assert_eq!(number("KILL"), Some(5));
        assert_eq!(number("CAP_NET_BIND_SERVICE"), Some(10));
        assert_eq!(number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(number("CAP_AUDIT_WRITE"), Some(29));
        assert_eq!(number("CAP_CHECKPOINT_RESTORE"), Some(40));
        assert_eq!(number("CAP_NOPE"), None);
    }

    #[test]
    fn runc_defaults_make_the_mask_the_kernel_shows() {
        // `CapEff` in /proc/self/status of a runc container with its default set.
        let names = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
        assert_eq!(mask(names), Ok(0x2000_0420));
        assert_eq!(mask(["CAP_KILL", "CAP_BOGUS"]), Err("CAP_BOGUS"));
    }
}
