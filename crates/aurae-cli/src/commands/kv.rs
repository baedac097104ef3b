//! `aurae kv`: the node's store from the shell.

use std::io::{IsTerminal, Read, Seek, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use aurae_client::AuraeClient;
use aurae_proto::v0::{
    ChangeKind, EntryKind, GetRequest, ListRequest, MkdirRequest, PutChunk, PutHeader, PutRequest,
    ReadRequest, RemoveRequest, RenameRequest, Stat, StatRequest, WatchRequest,
};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::rpc_error;
use crate::cli::ConnectArgs;
use crate::deadline::within;
use crate::output::shell_quote;

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

impl KvCommand {
    /// Whether the command may stream data for as long as there is some: `get` (a large
    /// value is read in pieces), `put` from standard input (written in pieces) and
    /// `watch`. The overall deadline then bounds their calls one by one, not the stream.
    pub fn streams(&self) -> bool {
        matches!(
            self,
            Self::Get { json: false, .. } | Self::Put { value: None, .. } | Self::Watch { .. }
        )
    }
}

fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("'{text}' is not an octal mode such as 0644"))
}

pub async fn run(connect: &ConnectArgs, command: KvCommand) -> anyhow::Result<()> {
    let target = connect.options().resolve()?;
    let client = AuraeClient::connect(&target).await?;
    let mut storage = client.storage();
    // Bounds each call of a streaming command; the others are bounded as a whole.
    let call = target.timeouts.call;
    match command {
        KvCommand::Get { path, json } if !json => {
            stream_out(&client, &mut storage, path, call).await?;
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
            let header = PutHeader {
                path,
                mode,
                if_version,
                no_parents,
                size: None,
            };
            let stat = match value {
                Some(value) => put_whole(&mut storage, header, value.into_bytes()).await?,
                None => {
                    let stdin = std::io::stdin();
                    let size = remaining_size(&stdin);
                    match read_head(stdin)? {
                        (head, None) => within(call, put_whole(&mut storage, header, head)).await?,
                        (head, Some(rest)) => {
                            let header = PutHeader { size, ..header };
                            put_streamed(&mut storage, header, head, rest).await?
                        }
                    }
                }
            };
            println!("{} version {}", shell_quote(&stat.path), stat.version);
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
                    let path = shell_quote(&event.path);
                    writeln!(out, "{} {kind} {path}", event.revision)?;
                } else {
                    let (from, to) = (shell_quote(&event.path), shell_quote(&event.to));
                    writeln!(out, "{} {kind} {from} -> {to}", event.revision)?;
                }
                out.flush()?;
            }
        }
    }
    Ok(())
}

/// Values larger than this are streamed (PutStream) in chunks, so that neither side
/// holds them whole and no message nears gRPC's 4 MiB limit; smaller ones take one Put.
const STREAM_ABOVE: usize = 2 << 20;
/// Size of one streamed chunk.
const STREAM_CHUNK: usize = 1 << 20;

type Storage = aurae_proto::v0::storage_client::StorageClient<aurae_client::Channel>;

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

/// The bytes left to read from standard input when it is a regular file (`< file`):
/// the server then refuses a stream that carries another count, and the progress bar
/// knows its end. `None` for a pipe or a terminal.
fn remaining_size(stdin: &std::io::Stdin) -> Option<u64> {
    let mut file = std::fs::File::from(stdin.as_fd().try_clone_to_owned().ok()?);
    let metadata = file.metadata().ok()?;
    if !metadata.is_file() {
        return None;
    }
    let at = file.stream_position().ok()?;
    Some(metadata.len().saturating_sub(at))
}

/// Writes a whole value with one Put.
async fn put_whole(
    storage: &mut Storage,
    header: PutHeader,
    value: Vec<u8>,
) -> anyhow::Result<Stat> {
    let request = PutRequest {
        path: header.path,
        value,
        mode: header.mode,
        if_version: header.if_version,
        no_parents: header.no_parents,
    };
    let reply = storage.put(request).await.map_err(rpc_error)?.into_inner();
    Ok(reply.stat.unwrap_or_default())
}

/// A progress bar of bytes sent, on standard error when it is a terminal; nothing
/// otherwise.
fn progress(size: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match size {
        Some(size) => ProgressBar::new(size).with_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

/// Streams a large value with PutStream: the server writes it aside as it arrives and
/// puts it in place in one revision once the last chunk is in, so a reader sees the old
/// value or the whole new one, and a put that fails or is killed leaves nothing behind.
/// A chunk marked last is sent only after the input was read to its end: a read error
/// breaks the stream off instead.
async fn put_streamed(
    storage: &mut Storage,
    header: PutHeader,
    head: Vec<u8>,
    mut rest: impl Read + Send + 'static,
) -> anyhow::Result<Stat> {
    let bar = progress(header.size);
    let (tx, rx) = tokio::sync::mpsc::channel::<PutChunk>(4);
    let sent = bar.clone();
    let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut header = Some(header);
        let mut send = |data: Vec<u8>, last: bool| {
            sent.inc(data.len() as u64);
            let chunk = PutChunk {
                header: header.take(),
                data,
                last,
            };
            tx.blocking_send(chunk).is_ok()
        };
        for piece in head.chunks(STREAM_CHUNK) {
            if !send(piece.to_vec(), false) {
                return Ok(());
            }
        }
        loop {
            let mut data = Vec::with_capacity(STREAM_CHUNK);
            (&mut rest)
                .take(STREAM_CHUNK as u64)
                .read_to_end(&mut data)?;
            let last = data.is_empty();
            if !send(data, last) || last {
                return Ok(());
            }
        }
    });
    let put = storage
        .put_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    bar.finish_and_clear();
    // The answer comes once the stream ended or was refused, after which the reader
    // stops at its next chunk. A read error broke the stream off: it is the cause to tell.
    reader.await??;
    let reply = put.map_err(|status| match status.code() {
        tonic::Code::Unimplemented => anyhow::anyhow!(
            "this auraed takes values of at most {STREAM_ABOVE} bytes: it predates streamed puts \
             (Storage.PutStream); upgrade auraed to put larger ones"
        ),
        _ => rpc_error(status),
    })?;
    Ok(reply.into_inner().stat.unwrap_or_default())
}

/// Writes a file's value to stdout, streaming large ones in chunks.
/// Its calls are bounded by `call` one by one; the stream of a large value is not.
async fn stream_out(
    client: &AuraeClient,
    storage: &mut Storage,
    path: String,
    call: Option<Duration>,
) -> anyhow::Result<()> {
    let request = StatRequest { path: path.clone() };
    let stat = within(call, async {
        storage.stat(request).await.map_err(rpc_error)
    })
    .await?
    .into_inner()
    .stat
    .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    if stat.kind != EntryKind::File as i32 || stat.size <= STREAM_ABOVE as u64 {
        let get = storage.get(GetRequest { path });
        let reply = within(call, async { get.await.map_err(rpc_error) }).await?;
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
        format!(" -> {}", shell_quote(&stat.target))
    };
    format!(
        "{mark}{:04o} {:>10} {}{target}",
        stat.mode,
        stat.size,
        shell_quote(&stat.path)
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
