//! An executable's standard streams: its output always goes to its log pipes; its input is
//! `/dev/null`, a pipe the API writes to, or a pseudo-terminal.
//!
//! With a terminal, the process gets the pty's slave as stdin, stdout and stderr (and as
//! its controlling terminal); a relay thread copies what it writes on the master into the
//! stdout log pipe, so a terminal's output is logged, followed and shown like any other.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use aurae_runtime::logs;
use aurae_runtime::spec::ExecutableSpec;

use super::zone::ProcessStdio;

/// Where the API's input for an executable goes.
#[derive(Debug)]
pub struct Input {
    writer: File,
    /// The pty master, for size changes; `None` for a plain pipe.
    terminal: Option<OwnedFd>,
}

impl Input {
    /// Writes `data` to the process's stdin (blocking: call it off the async threads).
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(data)
    }

    /// Ends the input: the pipe is closed (the process reads end of file); a terminal
    /// gets its end-of-file character.
    pub fn close(mut self) -> std::io::Result<()> {
        if self.terminal.is_some() {
            self.writer.write_all(&[4])?;
        }
        Ok(())
    }

    /// Tells the terminal its new size (the process gets SIGWINCH); nothing for a pipe.
    #[allow(unsafe_code)]
    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        let Some(master) = &self.terminal else {
            return Ok(());
        };
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: `master` is an open pty master and `size` a valid winsize that lives
        // across the call; TIOCSWINSZ only reads it.
        if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The streams for one process of `spec`, the input the API may write to, and, for a
/// terminal, the relay to start once the process runs.
pub struct Prepared {
    /// What the process gets.
    pub stdio: ProcessStdio,
    /// Where input goes, when the spec keeps stdin open.
    pub input: Option<Input>,
    /// The pty master's reading end and the stdout pipe it is copied to.
    pub relay: Option<(File, File)>,
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Opens the streams of a new process of `spec`, whose log pipes are in `log_dir`.
pub fn prepare(spec: &ExecutableSpec, log_dir: &Path) -> Result<Prepared, String> {
    let (stdout, stderr) =
        logs::workload_stdio(log_dir).map_err(|e| format!("cannot open the output pipes: {e}"))?;
    if spec.tty {
        let pty = nix::pty::openpty(None, None)
            .map_err(|e| format!("cannot open a pseudo-terminal: {e}"))?;
        let reader = File::from(pty.master.try_clone().map_err(text)?);
        let writer = File::from(pty.master.try_clone().map_err(text)?);
        let slave_out = pty.slave.try_clone().map_err(text)?;
        let slave_err = pty.slave.try_clone().map_err(text)?;
        drop((stdout, stderr));
        let (log_out, _) = logs::workload_stdio(log_dir)
            .map_err(|e| format!("cannot open the output pipes: {e}"))?;
        return Ok(Prepared {
            stdio: ProcessStdio {
                stdin: Some(pty.slave),
                stdout: slave_out,
                stderr: slave_err,
                controlling_terminal: true,
            },
            input: Some(Input {
                writer,
                terminal: Some(pty.master),
            }),
            relay: Some((reader, File::from(log_out))),
        });
    }
    let (stdin, input) = if spec.stdin {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(text)?;
        (
            Some(read),
            Some(Input {
                writer: File::from(write),
                terminal: None,
            }),
        )
    } else {
        (None, None)
    };
    Ok(Prepared {
        stdio: ProcessStdio {
            stdin,
            stdout,
            stderr,
            controlling_terminal: false,
        },
        input,
        relay: None,
    })
}

/// Copies a terminal's output into the stdout log pipe until the terminal closes (the
/// process and everything that held it ended: the master reads EIO). The receiver hears
/// when the copy is done, so that nothing the process wrote last is left out of the log.
pub fn start_relay(
    (mut master, mut log): (File, File),
) -> Option<tokio::sync::oneshot::Receiver<()>> {
    let (done, finished) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("aurae-tty".to_owned())
        .spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(n @ 1..) = master.read(&mut buffer) {
                if log.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => Some(finished),
        Err(error) => {
            tracing::warn!(%error, "cannot relay a terminal's output; it is not logged");
            None
        }
    }
}
