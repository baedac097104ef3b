//! One module per command group; each turns flags into calls and prints for people or `--json`.

mod authz;
mod capabilities;
pub mod cell;
mod config;
pub mod kv;
mod metrics;
mod peer;
mod pki;
mod status;
mod volume;

use clap::{CommandFactory, Subcommand};
use clap_complete::Shell;

use crate::cli::Cli;
use authz::{GrantArgs, GrantsArgs, RoleCommand};
use capabilities::CapabilitiesCommand;
use cell::{CellCommand, ExecArgs, LogsArgs, RunArgs};
use config::{ApplyArgs, ConfigCommand};
use kv::KvCommand;
use peer::{PeerCommand, ResolveArgs};
use pki::PkiCommand;
use volume::VolumeCommand;

/// Every command of `aurae`: one variant per command group.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the node's mode, identity and capabilities; in the empty loop, what is missing
    /// and the command that fixes it.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Create and issue certificates (replaces openssl scripts).
    #[command(subcommand)]
    Pki(PkiCommand),
    /// List, enable and disable capabilities.
    #[command(subcommand, visible_alias = "cap")]
    Capabilities(CapabilitiesCommand),
    /// Create, list, show and delete roles: named sets of scoped permissions.
    ///
    /// A role lets nobody do anything until it is granted with `aurae grant`.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Grant a role to a principal, or to every principal of a node.
    ///
    /// `aurae grant alice@node1@example.org ops` lets alice of node1 do what `ops` allows,
    /// at once; `aurae grant '*@node1@example.org' viewer` lets everyone of node1 read.
    /// Granting a role held already changes nothing.
    Grant(GrantArgs),
    /// Take a role back from a principal pattern.
    ///
    /// It takes back the one grant to exactly this pattern: a principal may still hold the
    /// role through another pattern (see `aurae grants`). Built-in grants (the node
    /// admin's, a cell's own) cannot be taken back.
    Ungrant(GrantArgs),
    /// List which roles are granted to which principal patterns.
    Grants(GrantsArgs),
    /// Show who you are to auraed: your principal, your roles and what they let you do.
    Whoami {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Make the node match a node config (TOML): capabilities, volumes, roles, grants.
    ///
    /// The document is validated whole and diffed against the node; the plan is printed
    /// and carried out in one transaction (nothing is half-applied), so applying the same
    /// file twice changes nothing. `--dry-run` shows the plan only.
    Apply(ApplyArgs),
    /// Export the node's state as a node config.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Read and write the node's key/value store, laid out like a filesystem.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Create, list and delete volumes: filesystems with their own root and quota.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Allocate, list, freeze and free cells (isolation zones), and start executables in them.
    #[command(subcommand)]
    Cell(CellCommand),
    /// Run a program in a cell, stream its output and exit with its exit code.
    Exec(ExecArgs),
    /// Show what an executable wrote to stdout and stderr.
    Logs(LogsArgs),
    /// Run an OCI runtime bundle (config.json + rootfs) as a cell with one executable.
    Run(RunArgs),
    /// Print the node's metrics in the Prometheus text format (needs metrics.read, which
    /// the built-in viewer role holds).
    Metrics,
    /// The node on the peer network: its id, its peers, whom it trusts.
    #[command(subcommand)]
    Peer(PeerCommand),
    /// Find a peer or an entity on the network: `<entity>@<peer>[@<domain>]` or
    /// `<peer>[@<domain>]` to a PeerId and addresses (from signed DHT records).
    Resolve(ResolveArgs),
    /// Print a shell completion script: `aurae completions bash > /etc/bash_completion.d/aurae`.
    Completions {
        /// The shell.
        shell: Shell,
    },
}

/// Runs the parsed command line within its deadline ([`crate::deadline::of`]).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let limit = crate::deadline::of(&cli.connect.options(), &cli.command);
    crate::deadline::within(limit, dispatch(cli)).await
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Status { json } => status::run(&cli.connect, json).await,
        Command::Pki(command) => pki::run(&cli.connect, command).await,
        Command::Capabilities(command) => capabilities::run(&cli.connect, command).await,
        Command::Role(command) => authz::role(&cli.connect, command).await,
        Command::Grant(args) => authz::grant(&cli.connect, args).await,
        Command::Ungrant(args) => authz::ungrant(&cli.connect, args).await,
        Command::Grants(args) => authz::grants(&cli.connect, args).await,
        Command::Whoami { json } => authz::whoami(&cli.connect, json).await,
        Command::Apply(args) => config::apply(&cli.connect, args).await,
        Command::Config(command) => config::run(&cli.connect, command).await,
        Command::Kv(command) => kv::run(&cli.connect, command).await,
        Command::Volume(command) => volume::run(&cli.connect, command).await,
        Command::Cell(command) => cell::run(&cli.connect, command).await,
        Command::Exec(args) => cell::exec(&cli.connect, args).await,
        Command::Logs(args) => cell::logs(&cli.connect, args).await,
        Command::Run(args) => cell::run_bundle(&cli.connect, args).await,
        Command::Metrics => metrics::run(&cli.connect).await,
        Command::Peer(command) => peer::run(&cli.connect, command).await,
        Command::Resolve(args) => peer::resolve(&cli.connect, args).await,
        Command::Completions { shell } => {
            // Generated in memory: clap_complete panics on a failed write, and a closed
            // pipe (`aurae completions bash | head`) is no reason to.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "aurae", &mut script);
            crate::output::write_stdout(&script)
        }
    }
}

/// What a command names does not exist locally (a certificate, a file): exits with the
/// not-found code, as a NOT_FOUND from auraed does.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// What the user typed is not valid (a malformed flag value): exits with the
/// invalid-argument code, as an INVALID_ARGUMENT from auraed does.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// A call auraed answered with an error: its message for a person, and its gRPC code,
/// which decides the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message} ({code:?}{errno})")]
pub struct RpcError {
    code: tonic::Code,
    message: String,
    /// `, EXXX` when auraed named the errno a filesystem would return.
    errno: String,
}

impl RpcError {
    /// Keeps what a person and the exit code need from `status`.
    pub fn new(status: tonic::Status) -> Self {
        let errno = status
            .metadata()
            .get("aurae-errno")
            .and_then(|v| v.to_str().ok())
            .map(|errno| format!(", {errno}"))
            .unwrap_or_default();
        Self {
            code: status.code(),
            message: status.message().to_owned(),
            errno,
        }
    }

    /// The gRPC code auraed answered with.
    pub fn code(&self) -> tonic::Code {
        self.code
    }
}

/// Turns a gRPC status into an error a person can read (with the errno when given) and
/// that keeps its code for the exit status.
pub fn rpc_error(status: tonic::Status) -> anyhow::Error {
    RpcError::new(status).into()
}
