//! The `aurae.v0.Filesystem` gRPC service: the store addressed by volume and inode, for
//! FUSE clients such as auraefs.
//!
//! Names are validated at the edge, blocking store calls run off the async runtime, and
//! every error carries its errno. Changes are answered once they are in the store's log,
//! as a local filesystem answers from its page cache: they survive a crash of auraed at
//! once and a power cut after Fsync (fsync(2), fsyncdir). Reads stream in pieces and
//! writes are applied piece by piece as they arrive, so a 1 GiB file never sits in memory.

use super::{STORAGE_READ, STORAGE_WRITE};
use crate::server::permissions::{Authority, Permission, Target, authority_of};
use std::pin::Pin;
use std::sync::Arc;

use aurae_core::path::check_symlink_target;
use aurae_proto::v0 as pb;
use aurae_store::inodes::{self, Move, Unlinked};
use aurae_store::{
    Durability, EntryKind, NewNode, Replace, SetAttr, StoreError, UnlinkKind, Writer,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::StoreState;
use super::config::StorageConfig;
use super::convert::{IntoProto, entry_kind};
use super::error::{StorageError, status};

/// The `aurae.v0.Filesystem` gRPC service.
#[derive(Debug, Clone)]
pub struct FilesystemService {
    store: StoreState,
    config: Arc<StorageConfig>,
}

fn attr(stat: aurae_store::Stat) -> Response<pb::Attr> {
    Response::new(pb::Attr {
        stat: Some(stat.into_proto()),
    })
}

fn name(text: &str) -> Result<(), Status> {
    aurae_store::check_name(text).map_err(status)
}

impl FilesystemService {
    /// A service over `store`, answering as `config` says.
    pub fn new(store: StoreState, config: Arc<StorageConfig>) -> Self {
        Self { store, config }
    }

    /// Runs `op`, a small change, as a logged write: answered once in the log, run right
    /// here when no commit is under way.
    async fn small<T: Send + 'static>(
        &self,
        op: impl FnMut(&mut Writer<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, u64), StorageError> {
        Ok(self
            .store
            .store()?
            .write(Durability::LoggedSmall, op)
            .await?)
    }

    /// fsync(2) of inode `ino`: its content, then the log that holds its size and every
    /// change before it. A stale inode fails here, naming it.
    async fn make_durable(&self, volume: String, ino: u64) -> Result<(), StorageError> {
        self.store
            .run(move |s| s.sync_content(&volume, ino))
            .await?;
        self.store.store()?.flush().await?;
        Ok(())
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<pb::ReadChunk, Status>> + Send>>;

/// Refuses unless `authority` may use `permission` on `volume`: a named volume needs a
/// grant on it; the default namespace ("") by inode is reachable only with a grant that
/// holds everywhere, since an inode cannot be told to lie under a path scope.
fn require(
    authority: &Authority,
    permission: &'static Permission,
    volume: &str,
) -> Result<(), Status> {
    let target = if volume.is_empty() {
        Target::Namespace
    } else {
        Target::Volume(volume)
    };
    authority.require(permission, &target).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::filesystem_server::Filesystem for FilesystemService {
    async fn lookup(
        &self,
        request: Request<pb::LookupRequest>,
    ) -> Result<Response<pb::Attr>, Status> {
        let authority = authority_of(&request)?.clone();
        let r = request.into_inner();
        require(&authority, &STORAGE_READ, &r.volume)?;
        name(&r.name)?;
        Ok(attr(
            self.store
                .read(|s| s.lookup_at(&r.volume, r.parent, &r.name))?,
        ))
    }

    async fn get_attr(
        &self,
        request: Request<pb::InodeRequest>,
    ) -> Result<Response<pb::Attr>, Status> {
        let authority = authority_of(&request)?.clone();
        let r = request.into_inner();
        require(&authority, &STORAGE_READ, &r.volume)?;
        Ok(attr(self.store.read(|s| s.getattr(&r.volume, r.inode))?))
    }

    async fn set_attr(
        &self,
        request: Request<pb::SetAttrRequest>,
    ) -> Result<Response<pb::Attr>, Status> {
        let authority = authority_of(&request)?.clone();
        let r = request.into_inner();
        require(&authority, &STORAGE_WRITE, &r.volume)?;
        let change = SetAttr {
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            size: r.size,
            atime_ns: r.atime_ns,
            mtime_ns: r.mtime_ns,
        };
        let (stat, _) = self
            .small(inodes::set_attr(&r.volume, r.inode, change))
            .await?;
        Ok(attr(stat))
    }

    async fn read_dir(
        &self,
        request: Request<pb::ReadDirRequest>,
    ) -> Result<Response<pb::ReadDirResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let r = request.into_inner();
        require(&authority, &STORAGE_READ, &r.volume)?;
        let limit = self.config.page(r.limit);
        let (entries, more) = self
            .store
            .run(move |s| s.readdir(&r.volume, r.inode, &r.after, limit))
            .await?;
        let entries = entries
            .into_iter()
            .map(|(name, stat)| pb::DirEntry {
                name,
                stat: Some(stat.into_proto()),
            })
            .collect();
        Ok(Response::new(pb::ReadDirResponse { entries, more }))
    }

    async fn make_node(
        &self,
        request: Request<pb::MakeNodeRequest>,
    ) -> Result<Response<pb::Attr>, Status> {
        let authority = authority_of(&request)?.clone();
        let r = request.into_inner();
        require(&authority, &STORAGE_WRITE, &r.volume)?;
        name(&r.name)?;
        let kind = match entry_kind(r.kind()) {
            Some(kind) if kind != EntryKind::Symlink => kind,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "MakeNode creates files, directories and special files, not {}; symlinks come from MakeSymlink",
                    r.kind().as_str_name()
                )));
            }
        };
        let node = NewNode {
            kind,
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            rdev: r.rdev,
        };
        let (stat, _) = self
            .small(inodes::make_node(&r.volume, r.parent, r.name, node))
            .await?;
        Ok(attr(stat))
    }

    async fn make_symlink(
        &self,
        request: Request<pb::MakeSymlinkRequest>,
    ) -> Result<Response<pb::Attr>, Status> {
        let authority = authority_of(&request)?.clone();
        let r = request.into_inner();
        require(&authority, &STORAGE_WRITE, &r.volume)?;
        name(&r.name)?;
        check_symlink_target(&r.target).map_err(|e| status(e.into()))?;
        let op = inodes::make_symlink(&r.volume, r.parent, r.name, r.target, r.uid, r.gid);
        let (stat, _) = self.small(op).await?;
        Ok(attr(stat))
    }

    async fn link(&self, request: Request<pb::LinkRequest>) -> Result<Response<pb::Attr>, Status> {
        let authority = authority_of(&request)?.clone();
        let r = request.into_inner();
        require(&authority, &STORAGE_WRITE, &r.volume)?;
        name(&r.new_name)?;
        let op = inodes::link(&r.volume, r.inode, r.new_parent, r.new_name);
        let (stat, _) = self.small(op).await?;
        Ok(attr(stat))
    }

    async fn unlink(
        &self,
        request: Request<pb::UnlinkRequest>,
    ) -> Result<Response<pb::UnlinkResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let r = request.into_inner();
        require(&authority, &STORAGE_WRITE, &r.volume)?;
        name(&r.name)?;
        let kind = if r.directory {
            UnlinkKind::Directory
        } else {
            UnlinkKind::File
        };
        let (Unlinked { inode, links_left }, revision) = self
            .small(inodes::unlink(&r.volume, r.parent, r.name, kind))
            .await?;
        Ok(Response::new(pb::UnlinkResponse {
            revision,
            inode,
            links_left,
        }))
    }

    async fn rename(
        &self,
        request: Request<pb::RenameAtRequest>,
    ) -> Result<Response<pb::RenameAtResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let r = request.into_inner();
        require(&authority, &STORAGE_WRITE, &r.volume)?;
        name(&r.name)?;
        name(&r.new_name)?;
        let mv = Move {
            parent: r.parent,
            name: r.name,
            new_parent: r.new_parent,
            new_name: r.new_name,
            replace: if r.no_replace {
                Replace::Refused
            } else {
                Replace::Allowed
            },
        };
        let ((), revision) = self.small(inodes::rename(&r.volume, mv)).await?;
        Ok(Response::new(pb::RenameAtResponse { revision }))
    }

    type ReadStream = ReadStream;

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<ReadStream>, Status> {
        let authority = authority_of(&request)?.clone();
        let r = request.into_inner();
        require(&authority, &STORAGE_READ, &r.volume)?;
        let store = self.store.store()?;
        // The first piece is read here so that errors (ENOENT, EISDIR) fail the call itself.
        let piece = self.config.read_piece.min(r.length);
        let first = {
            let volume = r.volume.clone();
            self.store
                .run(move |s| s.read_at(&volume, r.inode, r.offset, piece))
                .await?
        };
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut offset = r.offset + first.len() as u64;
            let end = r.offset.saturating_add(r.length);
            let mut data = first;
            loop {
                let short = (data.len() as u64) < piece;
                if !data.is_empty() && tx.send(Ok(pb::ReadChunk { data })).await.is_err() {
                    return;
                }
                if short || offset >= end {
                    return;
                }
                let (store, volume, length) =
                    (store.clone(), r.volume.clone(), piece.min(end - offset));
                let next = tokio::task::spawn_blocking(move || {
                    store.read_at(&volume, r.inode, offset, length)
                })
                .await;
                data = match next {
                    Ok(Ok(data)) => data,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                };
                offset += data.len() as u64;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn write(
        &self,
        request: Request<Streaming<pb::WriteChunk>>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let mut stream = request.into_inner();
        let Some(first) = stream.message().await? else {
            return Err(Status::invalid_argument("Write needs at least one chunk"));
        };
        let (volume, ino, lazy) = (first.volume, first.inode, first.lazy);
        require(&authority, &STORAGE_WRITE, &volume)?;
        let mut offset = first.offset;
        let mut written = 0u64;
        let mut data = first.data;
        let stat = loop {
            let length = data.len() as u64;
            let store = self.store.store()?;
            let op = inodes::write_at(&volume, ino, offset, data);
            let (stat, _) = store.write(Durability::Logged, op).await.map_err(status)?;
            offset += length;
            written += length;
            match stream.message().await? {
                Some(next) => data = next.data,
                None => break stat,
            }
        };
        if !lazy {
            // Durable when answered.
            self.make_durable(volume.clone(), ino).await?;
        }
        Ok(Response::new(pb::WriteResponse {
            written,
            attr: Some(pb::Attr {
                stat: Some(stat.into_proto()),
            }),
        }))
    }

    async fn fsync(
        &self,
        request: Request<pb::FsyncRequest>,
    ) -> Result<Response<pb::FsyncResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let r = request.into_inner();
        require(&authority, &STORAGE_WRITE, &r.volume)?;
        self.make_durable(r.volume, r.inode).await?;
        Ok(Response::new(pb::FsyncResponse {}))
    }

    async fn stat_fs(
        &self,
        request: Request<pb::StatFsRequest>,
    ) -> Result<Response<pb::StatFsResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let volume_name = request.into_inner().volume;
        require(&authority, &STORAGE_READ, &volume_name)?;
        let store = self.store.store()?;
        let volume = self.store.run(move |s| s.volume(&volume_name)).await?;
        const BLOCK: u64 = 4096;
        // Without a quota the volume can grow as far as the data directory's filesystem.
        let (blocks, free) = if volume.quota_bytes > 0 {
            let blocks = volume.quota_bytes / BLOCK;
            (
                blocks,
                blocks.saturating_sub(volume.used_bytes.div_ceil(BLOCK)),
            )
        } else {
            let vfs = nix::sys::statvfs::statvfs(store.path())
                .map_err(|e| Status::internal(e.to_string()))?;
            let fragment = vfs.fragment_size() as u64;
            let total = vfs.blocks() as u64 * fragment / BLOCK;
            (
                total.max(volume.used_bytes.div_ceil(BLOCK)),
                vfs.blocks_available() as u64 * fragment / BLOCK,
            )
        };
        Ok(Response::new(pb::StatFsResponse {
            block_size: BLOCK,
            blocks,
            blocks_free: free,
            files: volume.files + 1_000_000,
            files_free: 1_000_000,
            name_max: aurae_core::path::MAX_NAME_LEN as u32,
        }))
    }
}
