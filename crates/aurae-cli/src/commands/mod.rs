//! One module per command group; each turns flags into calls and prints for people or `--json`.

mod capabilities;
mod kv;
mod pki;
mod status;
mod volume;

use clap::CommandFactory;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Status { json } => status::run(&cli.connect, json).await,
        Command::Pki(command) => pki::run(&cli.connect, command),
        Command::Capabilities(command) => capabilities::run(&cli.connect, command).await,
        Command::Kv(command) => kv::run(&cli.connect, command).await,
        Command::Volume(command) => volume::run(&cli.connect, command).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "aurae", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Turns a gRPC status into an error a person can read (with the errno when given).
pub fn rpc_error(status: tonic::Status) -> anyhow::Error {
    match status
        .metadata()
        .get("aurae-errno")
        .and_then(|v| v.to_str().ok())
    {
        Some(errno) => anyhow::anyhow!("{} ({:?}, {errno})", status.message(), status.code()),
        None => anyhow::anyhow!("{} ({:?})", status.message(), status.code()),
    }
}
