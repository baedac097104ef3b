//! The Linux process calls the supervisor needs and nix 0.30 does not give in a usable form:
//! `pidfd_open` and `pidfd_send_signal` (nix has neither), and a `waitid` that reports every
//! terminating signal. nix's `waitid` and `waitpid` turn a child killed by a real-time signal
//! (`SIGRTMIN` and above) into `EINVAL` *after* the kernel has reaped it, which would lose the
//! exit status for good; here the raw `siginfo_t` is decoded into an `Exit` instead.
//!
//! It also registers pidfds with Tokio, whose `AsyncFd::register_with_interest` is `unsafe`
//! since Tokio 1.54 (the caller vouches for I/O safety).
//!
//! This module owns every `unsafe` block of the supervisor. It must stay a thin, checked layer
//! over the system calls, with no policy of its own.
#![allow(unsafe_code)] // this module is where the supervisor's system calls are argued, block by block

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::libc;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::supervisor::Exit;

/// Which children a [`waitid`] call looks at.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target<'fd> {
    /// Any child (`P_ALL`).
    Any,
    /// The child with this pid (`P_PID`).
    Pid(i32),
    /// The child this pidfd refers to (`P_PIDFD`, Linux 5.4).
    Pidfd(BorrowedFd<'fd>),
}

/// Whether a [`waitid`] call frees the zombie or leaves it waitable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Report an exited child but leave it a zombie (`WNOWAIT`).
    Peek,
    /// Reap the exited child: its pid is free for reuse afterwards.
    Reap,
}

/// A child that has exited, as `waitid` reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Exited {
    /// The child's pid (free for reuse if it was reaped).
    pub(super) pid: i32,
    /// How it ended.
    pub(super) exit: Exit,
}

/// Opens a pidfd for `pid`, which must be a child that has not been reaped (so that the pid
/// cannot have been reused).
pub(super) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    let flags: libc::c_uint = 0;
    // SAFETY: pidfd_open takes a pid and flags by value and touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("pidfd_open returned no fd"))?;
    // SAFETY: the kernel has just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Registers `pidfd` for readability (the process has exited) with the current Tokio
/// runtime's reactor. Call it within a runtime context with I/O enabled.
pub(super) fn watch_pidfd(pidfd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and names the same
    // pidfd until the AsyncFd is dropped; OwnedFd::as_raw_fd always returns that descriptor,
    // and the supervisor never swaps it out through `get_mut`.
    unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }.map_err(io::Error::from)
}

/// Sends signal number `signal` to the process `pidfd` refers to. Fails with `ESRCH` once the
/// process has been reaped: unlike a pid, a pidfd never points at a newer process.
pub(super) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    let info: *const libc::siginfo_t = std::ptr::null();
    let flags: libc::c_uint = 0;
    // SAFETY: the pidfd is borrowed, so it stays open for the call; a null `info` asks the
    // kernel to fill in the signal's details itself, so it reads no memory of ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            info,
            flags,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `waitid(target, WEXITED | WNOHANG | __WALL [| WNOWAIT])`: the first exited child among
/// `target`, if any, without blocking. Fails with `ECHILD` when `target` holds no child.
pub(super) fn waitid(target: Target<'_>, mode: Mode) -> io::Result<Option<Exited>> {
    let (idtype, id): (libc::idtype_t, libc::id_t) = match target {
        Target::Any => (libc::P_ALL, 0),
        Target::Pid(pid) => (
            libc::P_PID,
            libc::id_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        ),
        Target::Pidfd(fd) => (
            libc::P_PIDFD,
            libc::id_t::try_from(fd.as_raw_fd())
                .map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?,
        ),
    };
    let mut options = libc::WEXITED | libc::WNOHANG | libc::__WALL;
    if mode == Mode::Peek {
        options |= libc::WNOWAIT;
    }
    // SAFETY: siginfo_t is plain old data for which all-zero bytes are a valid value; a
    // WNOHANG call that finds nothing leaves it so (si_pid 0).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable siginfo_t for the whole call, and a borrowed pidfd
    // stays open for it.
    let rc = unsafe { libc::waitid(idtype, id, &mut info, options) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid either left `info` zeroed or filled it as a SIGCHLD siginfo, whose
    // si_pid and si_status members are the ones these accessors read.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    // WEXITED alone only ever reports CLD_EXITED, CLD_KILLED or CLD_DUMPED.
    let exit = match info.si_code {
        libc::CLD_EXITED => Exit::Code(status),
        code => Exit::Signal {
            number: status,
            core_dumped: code == libc::CLD_DUMPED,
        },
    };
    Ok(Some(Exited { pid, exit }))
}
