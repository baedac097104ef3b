//! Flags and subcommands of `aurae`.

use std::path::PathBuf;

pub use aurae_client::cli::ConnectArgs;
use aurae_core::name::{DomainName, EntityName, PeerName, VolumeName};
use clap::{Parser, Subcommand};
use clap_complete::Shell;

use crate::size::parse_size;

/// Run an Aurae node: its status, PKI, capabilities, key/value store and volumes.
///
/// The socket and client certificate come from --sock/--ca/--cert/--key, else from
/// AURAE_SOCKET, else from ~/.aurae/config.toml (written by `aurae pki init`).
#[derive(Debug, Parser)]
#[command(name = "aurae", version, about, long_about, after_help = crate::exit::help())]
pub struct Cli {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: Command,
}

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
    /// Read and write the node's key/value store, laid out like a filesystem.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Create, list and delete volumes: filesystems with their own root and quota.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Print a shell completion script: `aurae completions bash > /etc/bash_completion.d/aurae`.
    Completions {
        /// The shell.
        shell: Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the CA and server certificate in the PKI directory, and an admin client
    /// certificate with its config in ~/.aurae/. auraed picks them up without a restart.
    Init {
        /// The PKI directory auraed reads (its --pki-dir).
        #[arg(long, default_value = "/etc/aurae/pki")]
        pki_dir: PathBuf,
        /// The domain peers find this node under.
        #[arg(long, default_value = "local")]
        domain: DomainName,
        /// This node's peer name [default: the hostname].
        #[arg(long)]
        peer: Option<PeerName>,
        /// Where the admin's client material goes [default: ~/.aurae].
        #[arg(long, value_name = "DIR")]
        client_dir: Option<PathBuf>,
        /// Replace an existing CA (every certificate it issued stops working).
        #[arg(long)]
        force: bool,
    },
    /// Issue a client certificate for `<entity>@<peer>@<domain>`, signed by the node's CA.
    Issue {
        /// The entity, e.g. `alice` or `nginx`.
        entity: EntityName,
        /// The PKI directory holding ca.crt and ca.key.
        #[arg(long, default_value = "/etc/aurae/pki")]
        pki_dir: PathBuf,
        /// Where to write `<entity>.crt` and `<entity>.key` [default: ~/.aurae].
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Days of validity.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=3650))]
        days: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Print a file's value (raw bytes, or JSON with --json).
    Get {
        /// Absolute path, e.g. /services/nginx/port.
        path: String,
        /// Machine-readable output (value as UTF-8, lossy).
        #[arg(long)]
        json: bool,
    },
    /// Write a file's value; parent directories are created.
    Put {
        /// Absolute path, e.g. /services/nginx/port.
        path: String,
        /// The value; read from standard input when absent.
        value: Option<String>,
        /// Only write if the entry's version is this (0: only if it does not exist).
        #[arg(long, value_name = "VERSION")]
        if_version: Option<u64>,
        /// Permission bits of a new file, octal.
        #[arg(long, value_parser = parse_mode)]
        mode: Option<u32>,
        /// Fail if the parent directory does not exist.
        #[arg(long)]
        no_parents: bool,
    },
    /// List a directory.
    #[command(visible_alias = "list")]
    Ls {
        /// Directory path.
        #[arg(default_value = "/")]
        path: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show an entry's metadata.
    Stat {
        /// Path.
        path: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Create a directory.
    Mkdir {
        /// Directory path.
        path: String,
        /// Create parents too, and succeed if it exists.
        #[arg(short, long)]
        parents: bool,
    },
    /// Remove a file, symlink or empty directory.
    Rm {
        /// Path.
        path: String,
        /// Remove a directory with everything in it.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Move an entry atomically, replacing the target like mv(1).
    Mv {
        /// Source path.
        from: String,
        /// Target path.
        to: String,
    },
    /// Print changes under a prefix as they happen (one line each, or JSON lines).
    Watch {
        /// Prefix to watch.
        #[arg(default_value = "/")]
        prefix: String,
        /// Replay the changes after this revision first.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// JSON lines.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume, optionally with a quota.
    Create {
        /// 1 to 63 of a-z, 0-9, '-' and '_', starting with a letter or digit.
        name: VolumeName,
        /// Most content the volume may hold: bytes, or a number with K, M, G or T in
        /// binary multiples (1K = 1024; KB and KiB mean the same), e.g. 512M or 1.5G.
        /// None by default.
        #[arg(long, value_parser = parse_size)]
        quota: Option<u64>,
    },
    /// List volumes with their usage (sizes for people on a terminal, bytes otherwise).
    #[command(visible_alias = "ls")]
    List {
        /// Machine-readable output (sizes in bytes).
        #[arg(long)]
        json: bool,
    },
    /// Delete a volume and everything in it.
    Rm {
        /// The volume.
        name: VolumeName,
    },
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("'{text}' is not an octal mode such as 0644"))
}

#[derive(Debug, Subcommand)]
pub enum CapabilitiesCommand {
    /// List every capability and whether it is enabled.
    #[command(visible_alias = "ls")]
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Enable a capability (persisted across restarts).
    Enable {
        /// The capability's name, as `aurae capabilities list` shows it.
        name: String,
    },
    /// Disable a capability (persisted across restarts).
    Disable {
        /// The capability's name, as `aurae capabilities list` shows it.
        name: String,
    },
}
