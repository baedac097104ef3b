//! `aurae`: the command line for an Aurae node. Parses flags, runs one command, and ends
//! with an exit code that says which class of failure happened (see [`exit::ExitCode`]).

mod cli;
mod commands;
mod deadline;
mod exit;
mod output;
mod terminal;

use std::io::Write;

use clap::Parser;

use crate::exit::ExitCode;

fn main() -> std::process::ExitCode {
    output::end_quietly_when_stdout_closes();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            report(&anyhow::Error::new(e).context("cannot start the async runtime"));
            return ExitCode::Failure.into();
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::Ok.into(),
        Err(e) if e.is::<output::ClosedOutput>() => ExitCode::Ok.into(),
        // `aurae exec` ends as its process did, without a message of its own.
        Err(e) if e.is::<commands::cell::ProcessExit>() => {
            let code = e
                .downcast_ref::<commands::cell::ProcessExit>()
                .map_or(1, |exit| exit.0);
            std::process::ExitCode::from(code)
        }
        Err(e) => {
            report(&e);
            ExitCode::of(&e).into()
        }
    }
}

/// Prints an error with its causes, each once; a closed stderr is nobody's business.
fn report(error: &anyhow::Error) {
    let text = aurae_client::error_chain(error.as_ref());
    let _ = writeln!(std::io::stderr(), "error: {text}");
}
