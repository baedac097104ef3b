//! `aurae kv`: the node's store from the shell.

use std::io::{Read, Write};

use aurae_client::AuraeClient;
use aurae_proto::v0::{
    ChangeKind, EntryKind, GetRequest, ListRequest, MkdirRequest, PutRequest, RemoveRequest,
    RenameRequest, Stat, StatRequest, WatchRequest,
};
use serde_json::json;

use super::rpc_error;
use crate::cli::{ConnectArgs, KvCommand};

pub async fn run(connect: &ConnectArgs, command: KvCommand) -> anyhow::Result<()> {
    let client = AuraeClient::connect(&connect.options().resolve()?).await?;
    let mut storage = client.storage();
    match command {
        KvCommand::Get { path, json } => {
            let reply = storage
                .get(GetRequest { path })
                .await
                .map_err(rpc_error)?
                .into_inner();
            if json {
                let mut value = stat_json(reply.stat.as_ref());
                value["value"] = String::from_utf8_lossy(&reply.value).into();
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                std::io::stdout().write_all(&reply.value)?;
            }
        }
        KvCommand::Put {
            path,
            value,
            if_version,
            mode,
            no_parents,
        } => {
            let value = match value {
                Some(value) => value.into_bytes(),
                None => {
                    let mut bytes = Vec::new();
                    std::io::stdin().read_to_end(&mut bytes)?;
                    bytes
                }
            };
            let request = PutRequest {
                path,
                value,
                mode,
                if_version,
                no_parents,
            };
            let reply = storage.put(request).await.map_err(rpc_error)?.into_inner();
            let stat = reply.stat.unwrap_or_default();
            println!("{} version {}", stat.path, stat.version);
        }
        KvCommand::Ls { path, json } => {
            let entries = list_all(&mut storage, path).await?;
            if json {
                let rows: Vec<_> = entries.iter().map(|s| stat_json(Some(s))).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for stat in &entries {
                    println!("{}", ls_line(stat));
                }
            }
        }
        KvCommand::Stat { path, json } => {
            let stat = storage
                .stat(StatRequest { path })
                .await
                .map_err(rpc_error)?
                .into_inner()
                .stat;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&stat_json(stat.as_ref()))?
                );
            } else if let Some(stat) = stat {
                println!("{}", ls_line(&stat));
                println!(
                    "inode {} version {} links {}",
                    stat.inode, stat.version, stat.nlink
                );
            }
        }
        KvCommand::Mkdir { path, parents } => {
            let request = MkdirRequest {
                path,
                mode: None,
                parents,
            };
            storage.mkdir(request).await.map_err(rpc_error)?;
        }
        KvCommand::Rm { path, recursive } => {
            storage
                .remove(RemoveRequest { path, recursive })
                .await
                .map_err(rpc_error)?;
        }
        KvCommand::Mv { from, to } => {
            storage
                .rename(RenameRequest { from, to })
                .await
                .map_err(rpc_error)?;
        }
        KvCommand::Watch {
            prefix,
            after,
            json,
        } => {
            let request = WatchRequest {
                prefix,
                after_revision: after,
                volume: String::new(),
            };
            let mut stream = storage
                .watch(request)
                .await
                .map_err(rpc_error)?
                .into_inner();
            let mut out = std::io::stdout();
            while let Some(event) = stream.message().await.map_err(rpc_error)? {
                let kind = ChangeKind::try_from(event.kind)
                    .unwrap_or(ChangeKind::Unspecified)
                    .as_str_name()
                    .trim_start_matches("CHANGE_KIND_")
                    .to_ascii_lowercase();
                if json {
                    let line = json!({"revision": event.revision, "kind": kind, "path": event.path, "to": event.to});
                    writeln!(out, "{line}")?;
                } else if event.to.is_empty() {
                    writeln!(out, "{} {kind} {}", event.revision, event.path)?;
                } else {
                    writeln!(
                        out,
                        "{} {kind} {} -> {}",
                        event.revision, event.path, event.to
                    )?;
                }
                out.flush()?;
            }
        }
    }
    Ok(())
}

async fn list_all(
    storage: &mut aurae_proto::v0::storage_client::StorageClient<tonic::transport::Channel>,
    path: String,
) -> anyhow::Result<Vec<Stat>> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = ListRequest {
            path: path.clone(),
            page_token,
            page_size: 0,
        };
        let reply = storage.list(request).await.map_err(rpc_error)?.into_inner();
        entries.extend(reply.entries);
        if reply.next_page_token.is_empty() {
            return Ok(entries);
        }
        page_token = reply.next_page_token;
    }
}

fn kind_name(stat: &Stat) -> &'static str {
    match EntryKind::try_from(stat.kind).unwrap_or(EntryKind::Unspecified) {
        EntryKind::Directory => "directory",
        EntryKind::File => "file",
        EntryKind::Symlink => "symlink",
        EntryKind::Unspecified => "unknown",
    }
}

fn ls_line(stat: &Stat) -> String {
    let mark = match kind_name(stat) {
        "directory" => 'd',
        "symlink" => 'l',
        _ => '-',
    };
    let target = if stat.target.is_empty() {
        String::new()
    } else {
        format!(" -> {}", stat.target)
    };
    format!(
        "{mark}{:04o} {:>10} {}{target}",
        stat.mode, stat.size, stat.path
    )
}

fn stat_json(stat: Option<&Stat>) -> serde_json::Value {
    let Some(stat) = stat else {
        return json!({});
    };
    json!({
        "path": stat.path,
        "kind": kind_name(stat),
        "inode": stat.inode,
        "mode": format!("{:04o}", stat.mode),
        "uid": stat.uid,
        "gid": stat.gid,
        "size": stat.size,
        "nlink": stat.nlink,
        "mtime_ns": stat.mtime_ns,
        "ctime_ns": stat.ctime_ns,
        "version": stat.version,
        "target": stat.target,
    })
}
