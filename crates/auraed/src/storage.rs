//! The `aurae.v0.Storage` gRPC service: the store's namespace over the socket.
//!
//! It validates every path into a [`StorePath`] at the edge, runs the blocking store
//! calls off the async runtime, and maps [`StoreError`] to gRPC codes with the errno in
//! metadata. When the database could not be opened it answers UNAVAILABLE with why.

use std::pin::Pin;
use std::sync::Arc;

use aurae_core::path::StorePath;
use aurae_proto::v0 as pb;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::store::{self, Committed, Parents, PutOptions, Store, StoreError, Vol, Writer};

/// Default and largest page of List.
const PAGE_DEFAULT: usize = 1000;
const PAGE_MAX: usize = 10_000;

/// The store as the services reach it: open, or the reason it is not (yet).
#[derive(Debug, Clone)]
pub struct StoreState(Arc<std::sync::RwLock<Result<Arc<Store>, String>>>);

impl StoreState {
    /// The store, or why there is none.
    pub fn new(store: Result<Arc<Store>, String>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(store)))
    }

    /// Opens the store in `data_dir` now, or keeps trying every second while another
    /// process holds it (an auraed that is still shutting down): until then the services
    /// answer UNAVAILABLE with the reason.
    pub fn open(data_dir: &std::path::Path) -> Self {
        let state = Self::new(Err("not opened yet".to_owned()));
        match Store::open(data_dir) {
            Ok(store) => state.set(Ok(Arc::new(store))),
            Err(e @ StoreError::Locked { .. }) => {
                tracing::warn!(error = %e, "database locked; retrying every second");
                state.set(Err(e.to_string()));
                let (state, dir) = (state.clone(), data_dir.to_owned());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        let dir = dir.clone();
                        match tokio::task::spawn_blocking(move || Store::open(&dir)).await {
                            Ok(Ok(store)) => return state.set(Ok(Arc::new(store))),
                            Ok(Err(StoreError::Locked { .. })) => continue,
                            Ok(Err(e)) => return state.set(Err(e.to_string())),
                            Err(e) => return state.set(Err(e.to_string())),
                        }
                    }
                });
            }
            Err(e) => state.set(Err(e.to_string())),
        }
        state
    }

    fn set(&self, store: Result<Arc<Store>, String>) {
        match &store {
            Ok(store) => tracing::info!(database = %store.path().display(), "database open"),
            Err(why) => {
                tracing::error!(error = %why, "database unavailable; Storage answers UNAVAILABLE")
            }
        }
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = store;
    }

    /// The open store; UNAVAILABLE with the reason otherwise.
    pub fn store(&self) -> Result<Arc<Store>, Status> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map_err(|why| Status::unavailable(format!("storage is unavailable: {why}")))
    }

    /// Ends every Watch stream, so that a shutdown does not wait on them.
    pub fn close_watches(&self) {
        if let Ok(store) = self.store() {
            store.close_watches();
        }
    }

    /// Runs `op`, a small change in `volume`, as a lazy write: answered once logged (see
    /// [`Store::submit_small_lazy`]).
    pub async fn lazy<T: Send + 'static>(
        &self,
        volume: &str,
        op: impl FnMut(&mut Writer<'_>, &mut Vol) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(T, u64), Status> {
        Ok(self
            .store()?
            .submit_small_lazy(store::in_volume(volume, op))
            .await?)
    }

    /// Runs a short read (one inode, one entry) right here: it takes microseconds, less
    /// than a hop to the blocking pool and back.
    pub fn read<T>(&self, op: impl FnOnce(&Store) -> Result<T, StoreError>) -> Result<T, Status> {
        let store = self.store()?;
        Ok(op(&store)?)
    }

    /// Runs a blocking store call on the blocking pool.
    pub async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store()?;
        tokio::task::spawn_blocking(move || op(&store))
            .await
            .map_err(|e| Status::internal(format!("storage call did not finish: {e}")))?
            .map_err(Status::from)
    }
}

/// The `aurae.v0.Storage` gRPC service.
#[derive(Debug, Clone)]
pub struct StorageService {
    store: StoreState,
}

fn path(text: &str) -> Result<StorePath, Status> {
    text.parse::<StorePath>()
        .map_err(|e| Status::from(StoreError::from(e)))
}

impl StorageService {
    /// A service over `store`.
    pub fn new(store: StoreState) -> Self {
        Self { store }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::storage_server::Storage for StorageService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let path = path(&request.into_inner().path)?;
        let (value, stat) = self.store.run(move |s| s.get(&path)).await?;
        Ok(Response::new(pb::GetResponse {
            value,
            stat: Some(stat),
        }))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let request = request.into_inner();
        let path = path(&request.path)?;
        let options = PutOptions {
            mode: request.mode,
            if_version: request.if_version,
            parents: if request.no_parents {
                Parents::MustExist
            } else {
                Parents::Create
            },
        };
        // A large value is written and synced first, off the writer, which then only
        // points the record at it.
        let (value, staged) = if request.value.len() > store::INLINE_MAX {
            self.store
                .run(move |s| {
                    let staged = s.stage(&request.value)?;
                    Ok((request.value, staged))
                })
                .await?
        } else {
            (request.value, None)
        };
        let store = self.store.store()?;
        let put = store
            .submit(Store::put_op(path, value, options, staged))
            .await;
        let (stat, revision) = match put {
            Ok(put) => put,
            Err(e) => {
                if let Some(generation) = staged {
                    store.discard_staged(generation);
                }
                return Err(e.into());
            }
        };
        Ok(Response::new(pb::PutResponse {
            stat: Some(stat),
            revision,
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let request = request.into_inner();
        let path = path(&request.path)?;
        let limit = match request.page_size as usize {
            0 => PAGE_DEFAULT,
            n => n.min(PAGE_MAX),
        };
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
            entries,
            next_page_token,
        }))
    }

    async fn stat(
        &self,
        request: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        let path = path(&request.into_inner().path)?;
        let stat = self.store.read(|s| s.stat(&path))?;
        Ok(Response::new(pb::StatResponse { stat: Some(stat) }))
    }

    async fn mkdir(
        &self,
        request: Request<pb::MkdirRequest>,
    ) -> Result<Response<pb::MkdirResponse>, Status> {
        let request = request.into_inner();
        let path = path(&request.path)?;
        let parents = if request.parents {
            Parents::Create
        } else {
            Parents::MustExist
        };
        let mode = request.mode.unwrap_or(0o755);
        let (stat, revision) = self
            .store
            .run(move |s| s.mkdir(&path, mode, parents))
            .await?;
        Ok(Response::new(pb::MkdirResponse {
            stat: Some(stat),
            revision,
        }))
    }

    async fn symlink(
        &self,
        request: Request<pb::SymlinkRequest>,
    ) -> Result<Response<pb::SymlinkResponse>, Status> {
        let request = request.into_inner();
        let path = path(&request.path)?;
        if request.target.is_empty() || request.target.contains('\0') {
            return Err(Status::invalid_argument(
                "a symlink target must be non-empty and hold no NUL",
            ));
        }
        let (stat, revision) = self
            .store
            .run(move |s| s.symlink(&path, &request.target))
            .await?;
        Ok(Response::new(pb::SymlinkResponse {
            stat: Some(stat),
            revision,
        }))
    }

    async fn remove(
        &self,
        request: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        let request = request.into_inner();
        let path = path(&request.path)?;
        let revision = self
            .store
            .run(move |s| s.remove(&path, request.recursive))
            .await?;
        Ok(Response::new(pb::RemoveResponse { revision }))
    }

    async fn rename(
        &self,
        request: Request<pb::RenameRequest>,
    ) -> Result<Response<pb::RenameResponse>, Status> {
        let request = request.into_inner();
        let (from, to) = (path(&request.from)?, path(&request.to)?);
        let (stat, revision) = self.store.run(move |s| s.rename(&from, &to)).await?;
        Ok(Response::new(pb::RenameResponse {
            stat: Some(stat),
            revision,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let request = request.into_inner();
        let filter = WatchFilter {
            volume: store::volume_key(&request.volume).to_owned(),
            prefix: path(if request.prefix.is_empty() {
                "/"
            } else {
                &request.prefix
            })?,
        };
        let store = self.store.store()?;
        // Subscribe before reading the log: nothing committed in between is lost, and
        // what arrives twice is recognised by its revision.
        let live = store.subscribe();
        let start = match request.after_revision {
            0 => self.store.run(|s| s.revision()).await?,
            after => after,
        };
        let backlog = {
            let filter = filter.clone();
            self.store
                .run(move |s| s.changes_after(start, |e| filter.keeps(e)))
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
        let request = request.into_inner();
        let volume = self
            .store
            .run(move |s| s.create_volume(&request.name, request.quota_bytes))
            .await?;
        Ok(Response::new(volume))
    }

    async fn list_volumes(
        &self,
        _request: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let volumes = self.store.run(|s| s.list_volumes()).await?;
        Ok(Response::new(pb::ListVolumesResponse { volumes }))
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        let name = request.into_inner().name;
        self.store.run(move |s| s.delete_volume(&name)).await?;
        Ok(Response::new(pb::DeleteVolumeResponse {}))
    }
}

/// Which changes a watcher wants.
#[derive(Debug, Clone)]
struct WatchFilter {
    volume: String,
    prefix: StorePath,
}

impl WatchFilter {
    fn keeps(&self, event: &pb::WatchEvent) -> bool {
        store::concerns(event, &self.volume, &self.prefix)
    }
}

/// Sends the backlog, then live changes; re-reads the log if the live feed lagged.
async fn forward_changes(
    store: Arc<Store>,
    filter: WatchFilter,
    backlog: (Vec<pb::WatchEvent>, u64),
    mut live: broadcast::Receiver<Arc<Committed>>,
    tx: mpsc::Sender<Result<pb::WatchEvent, Status>>,
) {
    let mut closing = store.closing();
    let (mut pending, mut seen) = backlog;
    loop {
        for event in pending.drain(..) {
            if tx.send(Ok(event)).await.is_err() {
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
                pending.extend(committed.events.iter().filter(|e| filter.keeps(e)).cloned());
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => {
                let (store, filter) = (store.clone(), filter.clone());
                let reread = tokio::task::spawn_blocking(move || {
                    store.changes_after(seen, |e| filter.keeps(e))
                })
                .await;
                match reread {
                    Ok(Ok((events, last))) => (pending, seen) = (events, last),
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(Status::from(e))).await;
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

/// The `storage` capability's declaration: the Storage and Filesystem services.
pub const CAPABILITY: crate::server::registry::Capability = crate::server::registry::Capability {
    name: "storage",
    description: "the node's database as a filesystem: kv, volumes, auraefs",
    availability: crate::server::registry::Availability::Optional {
        enabled_by_default: true,
    },
    access: crate::server::registry::Access::Admin,
    services: &[
        <pb::storage_server::StorageServer<StorageService> as tonic::server::NamedService>::NAME,
        <pb::filesystem_server::FilesystemServer<crate::filesystem::FilesystemService> as tonic::server::NamedService>::NAME,
    ],
    register: register_storage,
};

fn register_storage(
    daemon: &Arc<crate::context::Daemon>,
    routes: &mut tonic::service::RoutesBuilder,
) -> Result<(), crate::server::registry::RegisterError> {
    routes.add_service(pb::storage_server::StorageServer::new(StorageService::new(
        daemon.store.clone(),
    )));
    routes.add_service(pb::filesystem_server::FilesystemServer::new(
        crate::filesystem::FilesystemService::new(daemon.store.clone()),
    ));
    Ok(())
}
