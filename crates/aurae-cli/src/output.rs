//! Standard output whose reader may go away: `aurae volume list | head -1` closes the pipe
//! on purpose, and that ends `aurae` quietly with success, as it ends `git log` (ripgrep
//! does the same). This module must never touch SIGPIPE: `aurae` also writes to auraed's
//! socket, and a default SIGPIPE would kill it silently when auraed goes away mid-call.

use std::io::Write;

/// Standard output was closed by its reader: not a failure, nothing to say.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct ClosedOutput;

/// Writes `bytes` to standard output; a closed pipe becomes [`ClosedOutput`].
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedOutput.into()),
        other => Ok(other?),
    }
}

/// EPIPE on Linux (every architecture), as `std::io::Error` formats it in its message.
const EPIPE: i32 = 32;

/// `println!` panics when standard output is a closed pipe. Commands print with it, so
/// rather than give each of them a fallible writer, the panic is turned into the quiet end
/// it should be: the hook exits with success before anything is printed. Any other panic
/// goes to the default hook.
pub fn end_quietly_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(is_closed_stdout_panic) {
            std::process::exit(crate::exit::ExitCode::Ok as i32);
        }
        default(info);
    }));
}

/// Whether a panic message is std's "failed printing to stdout: ... (os error 32)".
fn is_closed_stdout_panic(message: &str) -> bool {
    message.starts_with("failed printing to stdout")
        && message.ends_with(&format!("(os error {EPIPE})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_closed_stdout_is_recognised() {
        let epipe = std::io::Error::from_raw_os_error(EPIPE);
        assert_eq!(epipe.kind(), std::io::ErrorKind::BrokenPipe);
        assert!(is_closed_stdout_panic(&format!(
            "failed printing to stdout: {epipe}"
        )));
        let full = std::io::Error::from_raw_os_error(28);
        assert!(!is_closed_stdout_panic(&format!(
            "failed printing to stdout: {full}"
        )));
        assert!(!is_closed_stdout_panic(&format!(
            "failed printing to stderr: {epipe}"
        )));
    }
}
