//! `auraed`: parse flags, set up logging, hand over to [`auraed::run`].

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    // Started as a cell's init (auraed runs its own binary for that): nothing else applies.
    let mut argv = std::env::args_os();
    if argv
        .next()
        .is_some_and(|arg0| arg0 == auraed::runtime::cell_init::ARGV0)
    {
        auraed::runtime::cell_init::main();
    }
    limit_malloc_arenas();
    let args = match auraed::cli::Args::try_parse() {
        Ok(args) => args,
        // As PID 1 bad flags must not panic the kernel: report them and run on defaults.
        Err(e) if auraed::init::is_pid1() => {
            eprintln!("{e}");
            auraed::cli::Args::parse_from(["auraed"])
        }
        Err(e) => e.exit(),
    };
    let level = match args.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        auraed::cli::LogFormat::Human => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // One object per line, the event's fields beside its message.
        auraed::cli::LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    auraed::run(args).into()
}

/// Caps glibc's malloc arenas at two. glibc gives each thread that allocates while
/// another holds an arena a new one, up to eight per core, and an arena keeps its
/// fragments for good: under a burst of concurrent cell operations (a blocking thread
/// each) the daemon's resident size grew with every burst. Two arenas keep it flat.
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; no allocation has raced it yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
