//! `aurae capabilities list|enable|disable`.

use aurae_client::AuraeClient;
use aurae_proto::v0::{
    Capability, DisableCapabilityRequest, EnableCapabilityRequest, ListCapabilitiesRequest,
};
use clap::Subcommand;
use serde_json::json;

use crate::cli::ConnectArgs;

/// `aurae capabilities`: what the node serves.
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

pub async fn run(connect: &ConnectArgs, command: CapabilitiesCommand) -> anyhow::Result<()> {
    let client = AuraeClient::connect(&connect.options().resolve()?).await?;
    let mut capabilities = client.capabilities();
    match command {
        CapabilitiesCommand::List { json } => {
            let list = capabilities
                .list(ListCapabilitiesRequest {})
                .await
                .map_err(super::rpc_error)?
                .into_inner()
                .capabilities;
            if json {
                let rows: Vec<_> = list.iter().map(as_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{:<14} {:<9} DESCRIPTION", "NAME", "STATE");
                for c in &list {
                    let state = match (c.enabled, c.core) {
                        (_, true) => "core",
                        (true, false) => "enabled",
                        (false, false) => "disabled",
                    };
                    println!("{:<14} {:<9} {}", c.name, state, c.description);
                }
            }
        }
        CapabilitiesCommand::Enable { name } => {
            let reply = capabilities
                .enable(EnableCapabilityRequest { name })
                .await
                .map_err(super::rpc_error)?
                .into_inner();
            report(reply.capability);
        }
        CapabilitiesCommand::Disable { name } => {
            let reply = capabilities
                .disable(DisableCapabilityRequest { name })
                .await
                .map_err(super::rpc_error)?
                .into_inner();
            report(reply.capability);
        }
    }
    Ok(())
}

fn as_json(c: &Capability) -> serde_json::Value {
    json!({
        "name": c.name,
        "description": c.description,
        "enabled": c.enabled,
        "core": c.core,
        "services": c.services,
    })
}

fn report(capability: Option<Capability>) {
    if let Some(c) = capability {
        let state = if c.enabled { "enabled" } else { "disabled" };
        println!("{} is {state}", c.name);
    }
}
