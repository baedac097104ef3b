//! `aurae apply` and `aurae config export`: the node declared in a TOML document.

use std::path::PathBuf;

use aurae_client::AuraeClient;
use aurae_proto::v0::{ApplyRequest, ApplyResponse, ExportRequest};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::ConnectArgs;

/// `aurae apply`: make the node match a document.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The node config to apply (TOML, as `aurae config export` writes it); `-` reads
    /// standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Show the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove what the node has and the document does not name: roles, grants and
    /// volumes, with the volumes' files.
    #[arg(long)]
    pub prune: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `aurae config`: the node's declared state.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Write the node's state (capabilities, volumes, roles, grants) as a node config
    /// that `aurae apply -f` takes back.
    Export {
        /// Write it to FILE (0600) instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

fn read_document(file: &PathBuf) -> anyhow::Result<(String, String)> {
    if file.as_os_str() == "-" {
        let text = std::io::read_to_string(std::io::stdin())
            .map_err(|e| super::InvalidInput(format!("cannot read standard input: {e}")))?;
        return Ok(("<stdin>".into(), text));
    }
    let text = std::fs::read(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow::Error::new(super::NotFound(format!("{}: no such file", file.display())))
        }
        _ => anyhow::anyhow!("cannot read {}: {e}", file.display()),
    })?;
    let text = String::from_utf8(text).map_err(|e| {
        super::InvalidInput(format!(
            "{}: not UTF-8 text (byte {}); a node config is TOML",
            file.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok((file.display().to_string(), text))
}

pub async fn apply(connect: &ConnectArgs, args: ApplyArgs) -> anyhow::Result<()> {
    let (file_name, document) = read_document(&args.file)?;
    let client = AuraeClient::connect(&connect.options().resolve()?).await?;
    let mut service = client.node_config();
    let request = ApplyRequest {
        document,
        file_name,
        prune: args.prune,
    };
    let reply = if args.dry_run {
        service.plan(request).await
    } else {
        service.apply(request).await
    }
    .map_err(super::rpc_error)?
    .into_inner();
    if args.json {
        return print_json(&reply);
    }
    print_plan(&reply, args.dry_run)
}

fn print_json(reply: &ApplyResponse) -> anyhow::Result<()> {
    let changes: Vec<_> = reply
        .changes
        .iter()
        .map(|c| json!({"action": c.action, "kind": c.kind, "name": c.name, "detail": c.detail}))
        .collect();
    let body = json!({"changes": changes, "applied": reply.applied, "revision": reply.revision});
    crate::output::write_stdout(format!("{}\n", serde_json::to_string_pretty(&body)?).as_bytes())
}

fn print_plan(reply: &ApplyResponse, dry_run: bool) -> anyhow::Result<()> {
    let mut out = String::new();
    if reply.changes.is_empty() {
        out.push_str("the node already matches the document; nothing to change\n");
        return crate::output::write_stdout(out.as_bytes());
    }
    for c in &reply.changes {
        let sign = match c.action.as_str() {
            "create" | "enable" => '+',
            "delete" | "disable" => '-',
            _ => '~',
        };
        out.push_str(&format!("{sign} {} {} {}", c.action, c.kind, c.name));
        if !c.detail.is_empty() {
            out.push_str(&format!(" ({})", c.detail));
        }
        out.push('\n');
    }
    let n = reply.changes.len();
    let noun = if n == 1 { "change" } else { "changes" };
    if dry_run {
        out.push_str(&format!(
            "{n} {noun} planned; nothing was changed (--dry-run)\n"
        ));
    } else if reply.revision == 0 {
        out.push_str(&format!("{n} {noun} applied\n"));
    } else {
        out.push_str(&format!(
            "{n} {noun} applied (store revision {})\n",
            reply.revision
        ));
    }
    crate::output::write_stdout(out.as_bytes())
}

pub async fn run(connect: &ConnectArgs, command: ConfigCommand) -> anyhow::Result<()> {
    let client = AuraeClient::connect(&connect.options().resolve()?).await?;
    match command {
        ConfigCommand::Export { output } => {
            let document = client
                .node_config()
                .export(ExportRequest {})
                .await
                .map_err(super::rpc_error)?
                .into_inner()
                .document;
            match output {
                None => crate::output::write_stdout(document.as_bytes()),
                Some(path) => aurae_core::fsutil::write_atomic(
                    &path,
                    document.as_bytes(),
                    aurae_core::fsutil::SECRET_MODE,
                )
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display())),
            }
        }
    }
}
