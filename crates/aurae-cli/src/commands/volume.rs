//! `aurae volume create|ls|rm`.

use aurae_client::AuraeClient;
use aurae_proto::v0::{CreateVolumeRequest, DeleteVolumeRequest, ListVolumesRequest};
use serde_json::json;

use super::rpc_error;
use crate::cli::{ConnectArgs, VolumeCommand};

pub async fn run(connect: &ConnectArgs, command: VolumeCommand) -> anyhow::Result<()> {
    let client = AuraeClient::connect(&connect.options().resolve()?).await?;
    let mut storage = client.storage();
    match command {
        VolumeCommand::Create { name, quota } => {
            let request = CreateVolumeRequest {
                name,
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
                println!(
                    "{:<20} {:>14} {:>14} {:>8}",
                    "NAME", "USED", "QUOTA", "FILES"
                );
                for v in &volumes {
                    let quota = if v.quota_bytes == 0 {
                        "-".to_owned()
                    } else {
                        v.quota_bytes.to_string()
                    };
                    println!(
                        "{:<20} {:>14} {:>14} {:>8}",
                        v.name, v.used_bytes, quota, v.files
                    );
                }
            }
        }
        VolumeCommand::Rm { name } => {
            storage
                .delete_volume(DeleteVolumeRequest { name: name.clone() })
                .await
                .map_err(rpc_error)?;
            println!("deleted volume {name}");
        }
    }
    Ok(())
}
