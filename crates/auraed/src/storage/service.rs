//! The `aurae.v0.Storage` gRPC service: the store's default namespace by path.
//!
//! It validates every path into a [`StorePath`] at the edge, runs store reads that may
//! take long off the async runtime, writes durably (answered once fsync'd), and maps
//! store errors to gRPC codes with the errno in metadata. When the database could not be
//! opened it answers UNAVAILABLE with why.

use std::pin::Pin;
use std::sync::Arc;

use aurae_core::name::{NameError, VolumeName};
use aurae_core::path::{StorePath, check_symlink_target};
use aurae_proto::v0 as pb;
use aurae_store::namespace::{self, Removal};
use aurae_store::volumes;
use aurae_store::{
    Change, Committed, Content, Durability, Parents, PutOptions, Store, StoreError, Upload,
    WatchFilter,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::config::StorageConfig;
use super::convert::IntoProto;
use super::error::{StorageError, status};
use super::{STORAGE_READ, STORAGE_WRITE, StoreState, VOLUMES_MANAGE};
use crate::server::permissions::{Authority, Permission, Target, authority_of};

/// The `aurae.v0.Storage` gRPC service.
#[derive(Debug, Clone)]
pub struct StorageService {
    store: StoreState,
    config: Arc<StorageConfig>,
}

fn path(text: &str) -> Result<StorePath, Status> {
    text.parse::<StorePath>().map_err(|e| status(e.into()))
}

/// Parses `text` and refuses it unless `authority` may use `permission` on that path.
fn reach(
    authority: &Authority,
    permission: &'static Permission,
    text: &str,
) -> Result<StorePath, Status> {
    let path = path(text)?;
    authority.require(permission, &Target::Path(&path))?;
    Ok(path)
}

fn put_options(mode: Option<u32>, if_version: Option<u64>, no_parents: bool) -> PutOptions {
    PutOptions {
        mode,
        if_version,
        parents: if no_parents {
            Parents::MustExist
        } else {
            Parents::Create
        },
    }
}

/// Appends `data` to `upload` on the blocking pool (it may write to disk), handing the
/// upload back. If this call is abandoned the upload is dropped there, deleting its file.
async fn append(mut upload: Upload, data: Vec<u8>) -> Result<Upload, StorageError> {
    let appended = tokio::task::spawn_blocking(move || {
        upload.append(&data)?;
        Ok::<_, StoreError>(upload)
    })
    .await??;
    Ok(appended)
}

impl StorageService {
    /// A service over `store`, answering as `config` says.
    pub fn new(store: StoreState, config: Arc<StorageConfig>) -> Self {
        Self { store, config }
    }

    /// Puts `content` at `path` durably; a staged `content` is discarded if the Put
    /// fails, so that nothing is left behind.
    async fn put_content(
        store: &Store,
        path: StorePath,
        content: Content,
        options: PutOptions,
    ) -> Result<(aurae_store::Stat, u64), StorageError> {
        let staged = content.staged();
        let put = store
            .write(Durability::Durable, namespace::put(path, content, options))
            .await;
        if put.is_err()
            && let Some(staged) = staged
        {
            store.discard(staged);
        }
        Ok(put?)
    }

    /// Runs a durable write operation of the namespace.
    async fn write<T: Send + 'static>(
        &self,
        op: impl FnMut(&mut aurae_store::Writer<'_>) -> Result<T, aurae_store::StoreError>
        + Send
        + 'static,
    ) -> Result<(T, u64), StorageError> {
        Ok(self.store.store()?.write(Durability::Durable, op).await?)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::storage_server::Storage for StorageService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let path = reach(&authority, &STORAGE_READ, &request.into_inner().path)?;
        let (value, stat) = self.store.run(move |s| s.get(&path)).await?;
        Ok(Response::new(pb::GetResponse {
            value,
            stat: Some(stat.into_proto()),
        }))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let request = request.into_inner();
        let path = reach(&authority, &STORAGE_WRITE, &request.path)?;
        let options = put_options(request.mode, request.if_version, request.no_parents);
        // A large value is written and synced first, off the writer, which then only
        // points the record at it.
        let store = self.store.store()?;
        let content = if request.value.len() > store.config().inline_max {
            self.store.run(move |s| s.stage(request.value)).await?
        } else {
            Content::Bytes(request.value)
        };
        let (stat, revision) = Self::put_content(&store, path, content, options).await?;
        Ok(Response::new(pb::PutResponse {
            stat: Some(stat.into_proto()),
            revision,
        }))
    }

    async fn put_stream(
        &self,
        request: Request<Streaming<pb::PutChunk>>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let mut stream = request.into_inner();
        let first = stream.message().await?.unwrap_or_default();
        let Some(header) = first.header else {
            return Err(Status::invalid_argument(
                "PutStream's first message must carry the header (path and options)",
            ));
        };
        let path = reach(&authority, &STORAGE_WRITE, &header.path)?;
        let options = put_options(header.mode, header.if_version, header.no_parents);
        // Refused before any byte travels; the commit checks again.
        self.store.read(|s| s.check_put(&path, &options))?;
        let store = self.store.store()?;
        // The value goes into a content file of its own as it arrives; if the stream
        // breaks off (an error here, or this call dropped), the upload is dropped with
        // it and so is its file.
        let mut upload = store.upload();
        let (mut data, mut last) = (first.data, first.last);
        loop {
            let received = upload.len() + data.len() as u64;
            if let Some(announced) = header.size
                && received > announced
            {
                return Err(status(StoreError::SizeMismatch {
                    announced,
                    received,
                }));
            }
            if !data.is_empty() {
                upload = append(upload, data).await?;
            }
            if last {
                break;
            }
            match stream.message().await? {
                Some(chunk) if chunk.header.is_some() => {
                    return Err(Status::invalid_argument(
                        "only PutStream's first message carries a header",
                    ));
                }
                Some(chunk) => (data, last) = (chunk.data, chunk.last),
                None => {
                    return Err(Status::invalid_argument(
                        "the PutStream ended before its last message; nothing was written",
                    ));
                }
            }
        }
        if let Some(announced) = header.size
            && announced != upload.len()
        {
            return Err(status(StoreError::SizeMismatch {
                announced,
                received: upload.len(),
            }));
        }
        let content = tokio::task::spawn_blocking(move || upload.finish())
            .await
            .map_err(StorageError::from)?
            .map_err(status)?;
        let (stat, revision) = Self::put_content(&store, path, content, options).await?;
        Ok(Response::new(pb::PutResponse {
            stat: Some(stat.into_proto()),
            revision,
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let request = request.into_inner();
        let path = reach(&authority, &STORAGE_READ, &request.path)?;
        let limit = self.config.page(request.page_size);
        let after = request.page_token;
        let (entries, more) = self
            .store
            .run(move |s| s.list(&path, &after, limit))
            .await?;
        let next_page_token = match (more, entries.last()) {
            (true, Some(last)) => last.path.rsplit('/').next().unwrap_or_default().to_owned(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListResponse {
            entries: entries.into_iter().map(IntoProto::into_proto).collect(),
            next_page_token,
        }))
    }

    async fn stat(
        &self,
        request: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let path = reach(&authority, &STORAGE_READ, &request.into_inner().path)?;
        let stat = self.store.read(|s| s.stat(&path))?;
        Ok(Response::new(pb::StatResponse {
            stat: Some(stat.into_proto()),
        }))
    }

    async fn mkdir(
        &self,
        request: Request<pb::MkdirRequest>,
    ) -> Result<Response<pb::MkdirResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let request = request.into_inner();
        let path = reach(&authority, &STORAGE_WRITE, &request.path)?;
        let parents = if request.parents {
            Parents::Create
        } else {
            Parents::MustExist
        };
        let mode = request.mode.unwrap_or(0o755);
        let (stat, revision) = self.write(namespace::mkdir(path, mode, parents)).await?;
        Ok(Response::new(pb::MkdirResponse {
            stat: Some(stat.into_proto()),
            revision,
        }))
    }

    async fn symlink(
        &self,
        request: Request<pb::SymlinkRequest>,
    ) -> Result<Response<pb::SymlinkResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let request = request.into_inner();
        let path = reach(&authority, &STORAGE_WRITE, &request.path)?;
        check_symlink_target(&request.target).map_err(|e| status(e.into()))?;
        let (stat, revision) = self.write(namespace::symlink(path, request.target)).await?;
        Ok(Response::new(pb::SymlinkResponse {
            stat: Some(stat.into_proto()),
            revision,
        }))
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let request = request.into_inner();
        let path = reach(&authority, &STORAGE_WRITE, &request.path)?;
        let removal = if request.recursive {
            Removal::Recursive
        } else {
            Removal::Single
        };
        let ((), revision) = self.write(namespace::remove(path, removal)).await?;
        Ok(Response::new(pb::RemoveResponse { revision }))
    }

    async fn rename(
        &self,
        request: Request<pb::RenameRequest>,
    ) -> Result<Response<pb::RenameResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let request = request.into_inner();
        let (from, to) = (
            reach(&authority, &STORAGE_WRITE, &request.from)?,
            reach(&authority, &STORAGE_WRITE, &request.to)?,
        );
        let (stat, revision) = self.write(namespace::rename(from, to)).await?;
        Ok(Response::new(pb::RenameResponse {
            stat: Some(stat.into_proto()),
            revision,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let authority = authority_of(&request)?.clone();
        let request = request.into_inner();
        let prefix = path(if request.prefix.is_empty() {
            "/"
        } else {
            &request.prefix
        })?;
        let target = if request.volume.is_empty() {
            Target::Path(&prefix)
        } else {
            Target::Volume(&request.volume)
        };
        authority.require(&STORAGE_READ, &target)?;
        let filter = WatchFilter::new(&request.volume, prefix);
        let store = self.store.store()?;
        // Subscribe before reading the log: nothing committed in between is lost, and
        // what arrives twice is recognised by its revision.
        let live = store.subscribe();
        let volume = request.volume;
        let current = self
            .store
            .run(move |s| {
                s.volume(&volume)?;
                s.revision()
            })
            .await?;
        let start = match request.after_revision {
            0 => current,
            after if after > current => return Err(future_revision(after, current)),
            after => after,
        };
        let backlog = {
            let filter = filter.clone();
            self.store
                .run(move |s| s.changes_after(start, &filter))
                .await?
        };
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(forward_changes(store, filter, backlog, live, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let authority = authority_of(&request)?.clone();
        let request = request.into_inner();
        authority.require(&VOLUMES_MANAGE, &Target::Volume(&request.name))?;
        let name: VolumeName = request
            .name
            .parse()
            .map_err(|e: NameError| Status::invalid_argument(e.to_string()))?;
        let (volume, _) = self
            .write(volumes::create(name, request.quota_bytes))
            .await?;
        Ok(Response::new(volume.into_proto()))
    }

    async fn list_volumes(
        &self,
        request: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let volumes = self.store.run(|s| s.list_volumes()).await?;
        // Only the volumes the caller may read are named to it.
        Ok(Response::new(pb::ListVolumesResponse {
            volumes: volumes
                .into_iter()
                .filter(|v| authority.allows(&STORAGE_READ, &Target::Volume(&v.name)))
                .map(IntoProto::into_proto)
                .collect(),
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        let authority = authority_of(&request)?.clone();
        let name = request.into_inner().name;
        authority.require(&VOLUMES_MANAGE, &Target::Volume(&name))?;
        self.write(volumes::delete(name)).await?;
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }
}

/// A Watch asked to resume after a revision the store has not reached: a client's
/// mistake (a revision from another store, or made up), never something to wait for.
fn future_revision(asked: u64, current: u64) -> Status {
    Status::invalid_argument(format!(
        "after_revision {asked} is beyond the store's current revision {current}; \
         resume from a revision a Watch or write returned, or 0 for changes from now on"
    ))
}

/// Sends the backlog, then live changes; re-reads the log if the live feed lagged.
async fn forward_changes(
    store: Arc<Store>,
    filter: WatchFilter,
    backlog: (Vec<Change>, u64),
    mut live: broadcast::Receiver<Arc<Committed>>,
    tx: mpsc::Sender<Result<pb::WatchEvent, Status>>,
) {
    let mut closing = store.closing();
    let (mut pending, mut seen) = backlog;
    loop {
        for change in pending.drain(..) {
            if tx.send(Ok(change.into_proto())).await.is_err() {
                return;
            }
        }
        let received = tokio::select! {
            received = live.recv() => received,
            () = tx.closed() => return,
            _ = closing.wait_for(|closing| *closing) => return,
        };
        match received {
            Ok(committed) if committed.revision > seen => {
                seen = committed.revision;
                pending.extend(
                    committed
                        .changes
                        .iter()
                        .filter(|c| filter.keeps(c))
                        .cloned(),
                );
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                let (store, filter) = (store.clone(), filter.clone());
                let reread =
                    tokio::task::spawn_blocking(move || store.changes_after(seen, &filter)).await;
                match reread {
                    Ok(Ok((changes, last))) => (pending, seen) = (changes, last),
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(status(e))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}
