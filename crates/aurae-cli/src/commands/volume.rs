//! `aurae volume create|ls|rm`.

use std::io::IsTerminal;

use aurae_client::AuraeClient;
use aurae_core::name::VolumeName;
use aurae_proto::v0::{CreateVolumeRequest, DeleteVolumeRequest, ListVolumesRequest, Volume};
use clap::Subcommand;
use serde_json::json;

use super::rpc_error;
use crate::cli::ConnectArgs;
use aurae_core::size;
use aurae_core::size::parse_size;

/// `aurae volume`: filesystems with their own root and quota.
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

/// How sizes are shown in the human listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sizes {
    /// `1.5 GiB`: for a person at a terminal.
    Human,
    /// `1610612736`: for `sort -n`, `awk` and the like when the output is piped.
    Bytes,
}

impl Sizes {
    fn show(self, bytes: u64) -> String {
        match self {
            Self::Human => size::human(bytes),
            Self::Bytes => bytes.to_string(),
        }
    }
}

pub async fn run(connect: &ConnectArgs, command: VolumeCommand) -> anyhow::Result<()> {
    let client = AuraeClient::connect(&connect.options().resolve()?).await?;
    let mut storage = client.storage();
    match command {
        VolumeCommand::Create { name, quota } => {
            let request = CreateVolumeRequest {
                name: name.to_string(),
                quota_bytes: quota.unwrap_or(0),
            };
            let volume = storage
                .create_volume(request)
                .await
                .map_err(rpc_error)?
                .into_inner();
            println!(
                "created volume {}; mount it with `auraefs mount {} <dir>`",
                volume.name, volume.name
            );
        }
        VolumeCommand::List { json } => {
            let volumes = storage
                .list_volumes(ListVolumesRequest {})
                .await
                .map_err(rpc_error)?
                .into_inner()
                .volumes;
            if json {
                let rows: Vec<_> = volumes
                    .iter()
                    .map(|v| {
                        json!({"name": v.name, "quota_bytes": v.quota_bytes, "used_bytes": v.used_bytes, "files": v.files})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let sizes = if std::io::stdout().is_terminal() {
                    Sizes::Human
                } else {
                    Sizes::Bytes
                };
                println!("{}", row("NAME", "USED", "QUOTA", "FILES"));
                for v in &volumes {
                    println!("{}", volume_row(v, sizes));
                }
            }
        }
        VolumeCommand::Rm { name } => {
            storage
                .delete_volume(DeleteVolumeRequest {
                    name: name.to_string(),
                })
                .await
                .map_err(rpc_error)?;
            println!("deleted volume {name}");
        }
    }
    Ok(())
}

fn row(name: &str, used: &str, quota: &str, files: &str) -> String {
    format!("{name:<20} {used:>14} {quota:>14} {files:>8}")
}

fn volume_row(v: &Volume, sizes: Sizes) -> String {
    let quota = match v.quota_bytes {
        0 => "-".to_owned(),
        bytes => sizes.show(bytes),
    };
    row(
        &v.name,
        &sizes.show(v.used_bytes),
        &quota,
        &v.files.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_for_people_or_for_scripts() {
        let volume = Volume {
            name: "data".to_owned(),
            quota_bytes: 3 << 29,
            used_bytes: 2048,
            files: 3,
            ..Default::default()
        };
        let human = volume_row(&volume, Sizes::Human);
        assert!(
            human.contains("2.0 KiB") && human.contains("1.5 GiB"),
            "{human}"
        );
        let bytes = volume_row(&volume, Sizes::Bytes);
        assert!(
            bytes.contains(" 2048 ") && bytes.contains(" 1610612736 "),
            "{bytes}"
        );
        let unlimited = Volume {
            quota_bytes: 0,
            ..volume
        };
        assert!(volume_row(&unlimited, Sizes::Human).contains(" - "));
    }
}
