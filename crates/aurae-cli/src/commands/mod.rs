//! One module per command group; each turns flags into calls and prints for people or `--json`.

mod capabilities;
mod pki;
mod status;

use clap::CommandFactory;

use crate::cli::{Cli, Command};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Status { json } => status::run(&cli.connect, json).await,
        Command::Pki(command) => pki::run(&cli.connect, command),
        Command::Capabilities(command) => capabilities::run(&cli.connect, command).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "aurae", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Turns a gRPC status into an error a person can read.
pub fn rpc_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}
