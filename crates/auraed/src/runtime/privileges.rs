//! Capability sets applied in a new process between fork and exec: only system calls,
//! on values prepared before the fork (the parent has other threads).

use std::io;

use aurae_runtime::capabilities::CapabilitySets;

/// The highest capability number this kernel knows (`/proc/sys/kernel/cap_last_cap`);
/// read before the fork. Kernels older than the file know 0..=40 at most.
pub fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// In the child, before it changes its user: drops every capability outside
/// `sets.bounding` from the bounding set (which needs CAP_SETPCAP, gone after the user
/// changes), and asks the kernel to keep the permitted set across that change.
#[allow(unsafe_code)]
pub fn before_user_change(sets: &CapabilitySets, last: u32) -> io::Result<()> {
    for cap in 0..=last.min(63) {
        if sets.bounding & (1 << cap) == 0 {
            // SAFETY: prctl with integer arguments only.
            check(unsafe {
                libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0)
            })?;
        }
    }
    // SAFETY: as above.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1 as libc::c_ulong, 0, 0, 0) })
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `_LINUX_CAPABILITY_VERSION_3`: 64-bit sets, in two halves.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// In the child, after the user changed: sets the effective, permitted and inheritable
/// sets, then the ambient one.
#[allow(unsafe_code)]
pub fn after_user_change(sets: &CapabilitySets, last: u32) -> io::Result<()> {
    let mut header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |mask: u64, high: bool| (if high { mask >> 32 } else { mask }) as u32;
    let data = [false, true].map(|high| CapData {
        effective: half(sets.effective, high),
        permitted: half(sets.permitted, high),
        inheritable: half(sets.inheritable, high),
    });
    // SAFETY: capset reads one header and two data structs of the kernel's layout, both
    // alive for the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) as libc::c_int
    })?;
    // SAFETY: prctl with integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    for cap in 0..=last.min(63) {
        if sets.ambient & (1 << cap) != 0 {
            // SAFETY: as above.
            check(unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    libc::c_ulong::from(cap),
                    0,
                    0,
                )
            })?;
        }
    }
    Ok(())
}

/// A system call's return value as a result (its errno when negative).
fn check(rc: libc::c_int) -> io::Result<()> {
    nix::errno::Errno::result(rc)
        .map(drop)
        .map_err(io::Error::from)
}
