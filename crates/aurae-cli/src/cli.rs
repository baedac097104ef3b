//! The top of `aurae`'s command line: the connection flags every command shares, and the
//! command. Each command group declares its own subcommands in `commands/<group>.rs`.

pub use aurae_client::cli::ConnectArgs;
use clap::Parser;

use crate::commands::Command;

/// Run an Aurae node: its status, PKI, capabilities, key/value store and volumes.
///
/// The socket and client certificate come from --sock/--ca/--cert/--key, else from
/// AURAE_SOCKET, else from ~/.aurae/config.toml (written by `aurae pki init`).
#[derive(Debug, Parser)]
#[command(name = "aurae", version, about, long_about, after_help = crate::exit::help())]
pub struct Cli {
    /// How to reach auraed, and as whom.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cli_reference_in_docs_is_current() {
        use clap::CommandFactory;
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli/aurae.md");
        let markdown = aurae_client::reference::markdown(super::Cli::command());
        if let Err(stale) = aurae_client::reference::check_or_update(&file, &markdown) {
            panic!("{stale}");
        }
    }

    /// The man pages the Debian package ships (`packaging/man/aurae*.1`), one per command.
    #[test]
    fn the_man_pages_are_current() {
        use clap::CommandFactory;
        let pages =
            aurae_manpages::render(super::Cli::command(), aurae_manpages::Section::UserCommands);
        let dir = aurae_manpages::committed_dir(env!("CARGO_MANIFEST_DIR"));
        if let Err(stale) = aurae_manpages::check_or_update(&dir, "aurae", &pages) {
            panic!("{stale}");
        }
    }
}
