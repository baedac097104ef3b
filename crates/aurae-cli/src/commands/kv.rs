//! `aurae kv`: the node's store from the shell.

use std::io::{Read, Write};

use aurae_client::AuraeClient;
use aurae_proto::v0::{
    ChangeKind, EntryKind, FsyncRequest, GetRequest, ListRequest, MkdirRequest, PutRequest,
    ReadRequest, RemoveRequest, RenameRequest, Stat, StatRequest, WatchRequest, WriteChunk,
};
use clap::Subcommand;
use serde_json::json;

use super::rpc_error;
use crate::cli::ConnectArgs;

/// `aurae kv`: the node's store by path.
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

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("'{text}' is not an octal mode such as 0644"))
}

pub async fn run(connect: &ConnectArgs, command: KvCommand) -> anyhow::Result<()> {
    let client = AuraeClient::connect(&connect.options().resolve()?).await?;
    let mut storage = client.storage();
    match command {
        KvCommand::Get { path, json } if !json => {
            stream_out(&client, &mut storage, path).await?;
        }
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
            let (value, rest) = match value {
                Some(value) => (value.into_bytes(), None),
                None => read_head(std::io::stdin())?,
            };
            if let Some(rest) = rest {
                if if_version.is_some() {
                    anyhow::bail!(
                        "--if-version works on values up to {} bytes; larger ones are streamed",
                        STREAM_ABOVE
                    );
                }
                let stat =
                    stream_in(&client, &mut storage, &path, value, rest, mode, no_parents).await?;
                println!("{} version {}", stat.path, stat.version);
                return Ok(());
            }
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

/// Values larger than this are streamed through the Filesystem service in chunks, so
/// that neither side holds them whole (and no message nears gRPC's 4 MiB limit).
const STREAM_ABOVE: usize = 2 << 20;
/// Size of one streamed chunk.
const STREAM_CHUNK: usize = 1 << 20;

type Storage = aurae_proto::v0::storage_client::StorageClient<tonic::transport::Channel>;

/// Reads up to [`STREAM_ABOVE`] bytes; if more follow, hands back the reader too.
fn read_head<R: Read>(mut input: R) -> anyhow::Result<(Vec<u8>, Option<R>)> {
    let mut head = Vec::new();
    (&mut input)
        .take(STREAM_ABOVE as u64 + 1)
        .read_to_end(&mut head)?;
    if head.len() > STREAM_ABOVE {
        Ok((head, Some(input)))
    } else {
        Ok((head, None))
    }
}

/// Uploads a large value to a hidden name beside `path`, then renames it over `path`:
/// readers see the old value or the whole new one, never a part.
async fn stream_in(
    client: &AuraeClient,
    storage: &mut Storage,
    path: &str,
    head: Vec<u8>,
    mut rest: impl Read + Send + 'static,
    mode: Option<u32>,
    no_parents: bool,
) -> anyhow::Result<Stat> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let upload = format!("{dir}/.{name}.upload-{}", std::process::id());
    let created = storage
        .put(PutRequest {
            path: upload.clone(),
            value: Vec::new(),
            mode,
            if_version: Some(0),
            no_parents,
        })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .stat
        .unwrap_or_default();
    let (tx, rx) = tokio::sync::mpsc::channel::<WriteChunk>(4);
    let inode = created.inode;
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let send = |data: Vec<u8>| {
            let chunk = WriteChunk {
                volume: String::new(),
                inode,
                offset: 0,
                data,
                // Synced once, by the Fsync below, instead of once per chunk.
                lazy: true,
            };
            tx.blocking_send(chunk).is_ok()
        };
        for piece in head.chunks(STREAM_CHUNK) {
            if !send(piece.to_vec()) {
                return Ok(());
            }
        }
        loop {
            let mut data = Vec::with_capacity(STREAM_CHUNK);
            (&mut rest)
                .take(STREAM_CHUNK as u64)
                .read_to_end(&mut data)?;
            if data.is_empty() || !send(data) {
                return Ok(());
            }
        }
    });
    let written = client
        .filesystem()
        .write(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let read = reader.await?;
    let cleanup = async |storage: &mut Storage| {
        let request = RemoveRequest {
            path: upload.clone(),
            recursive: false,
        };
        let _ = storage.remove(request).await;
    };
    if let Err(status) = written {
        cleanup(storage).await;
        return Err(rpc_error(status));
    }
    if let Err(e) = read {
        cleanup(storage).await;
        return Err(e.into());
    }
    let synced = client
        .filesystem()
        .fsync(FsyncRequest {
            volume: String::new(),
            inode,
        })
        .await;
    if let Err(status) = synced {
        cleanup(storage).await;
        return Err(rpc_error(status));
    }
    let request = RenameRequest {
        from: upload.clone(),
        to: path.to_owned(),
    };
    match storage.rename(request).await {
        Ok(reply) => Ok(reply.into_inner().stat.unwrap_or_default()),
        Err(status) => {
            cleanup(storage).await;
            Err(rpc_error(status))
        }
    }
}

/// Writes a file's value to stdout, streaming large ones in chunks.
async fn stream_out(
    client: &AuraeClient,
    storage: &mut Storage,
    path: String,
) -> anyhow::Result<()> {
    let stat = storage
        .stat(StatRequest { path: path.clone() })
        .await
        .map_err(rpc_error)?
        .into_inner()
        .stat
        .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if stat.kind != EntryKind::File as i32 || stat.size <= STREAM_ABOVE as u64 {
        let reply = storage.get(GetRequest { path }).await.map_err(rpc_error)?;
        out.write_all(&reply.into_inner().value)?;
        return Ok(());
    }
    let request = ReadRequest {
        volume: String::new(),
        inode: stat.inode,
        offset: 0,
        length: stat.size,
    };
    let mut stream = client
        .filesystem()
        .read(request)
        .await
        .map_err(rpc_error)?
        .into_inner();
    while let Some(chunk) = stream.message().await.map_err(rpc_error)? {
        out.write_all(&chunk.data)?;
    }
    out.flush()?;
    Ok(())
}

async fn list_all(storage: &mut Storage, path: String) -> anyhow::Result<Vec<Stat>> {
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
        EntryKind::Fifo => "fifo",
        EntryKind::Socket => "socket",
        EntryKind::CharDevice => "char device",
        EntryKind::BlockDevice => "block device",
        EntryKind::Unspecified => "unknown",
    }
}

fn ls_line(stat: &Stat) -> String {
    let mark = match kind_name(stat) {
        "directory" => 'd',
        "symlink" => 'l',
        "fifo" => 'p',
        "socket" => 's',
        "char device" => 'c',
        "block device" => 'b',
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
