//! Standard output whose reader may go away: `aurae volume list | head -1` closes the pipe
//! on purpose, and that ends `aurae` quietly with success, as it ends `git log` (ripgrep
//! does the same). This module must never touch SIGPIPE: `aurae` also writes to auraed's
//! socket, and a default SIGPIPE would kill it silently when auraed goes away mid-call.

use std::borrow::Cow;
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

/// A name as a terminal may show it: as it is when every character prints, else quoted
/// as the shell's `$'...'` (as `ls` quotes), with `\n`, `\t`, `\xHH` and `\uHHHH`
/// escapes. A name in the store may hold any character but NUL and `/`; printed raw, a
/// newline would forge a line of output and an escape sequence would drive the terminal
/// (change its title, hide text). Human output only: `--json` carries names as they are.
pub fn shell_quote(name: &str) -> Cow<'_, str> {
    // A name that looks quoted already is quoted too, so that no output is ambiguous.
    if !name.starts_with("$'") && !name.chars().any(is_unprintable) {
        return Cow::Borrowed(name);
    }
    let mut quoted = String::with_capacity(name.len() + 8);
    quoted.push_str("$'");
    for c in name.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '\'' => quoted.push_str("\\'"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_ascii_control() => quoted.push_str(&format!("\\x{:02x}", c as u32)),
            c if is_unprintable(c) => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    Cow::Owned(quoted)
}

/// Control characters (C0, DEL, C1) and the invisible marks that reorder or hide text
/// (bidirectional overrides and isolates, zero-width characters).
fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
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
    fn names_that_would_drive_the_terminal_are_quoted() {
        assert_eq!(
            shell_quote("/plain/name with space"),
            "/plain/name with space"
        );
        assert_eq!(shell_quote("/é/日本"), "/é/日本");
        assert_eq!(shell_quote("/a\nb"), "$'/a\\nb'");
        assert_eq!(shell_quote("/\x1b[31mred"), "$'/\\x1b[31mred'");
        assert_eq!(shell_quote("/it's\t\\"), "$'/it\\'s\\t\\\\'");
        assert_eq!(shell_quote("/\u{9b}x\u{202e}"), "$'/\\u009bx\\u202e'");
        assert_eq!(shell_quote("/del\x7f"), "$'/del\\x7f'");
        assert_eq!(shell_quote("$'x'"), "$'$\\'x\\''");
    }

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
