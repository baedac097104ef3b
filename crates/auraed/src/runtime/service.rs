//! The `aurae.v0.Cells` and `aurae.v0.Observe` services: parse and validate at the edge,
//! decide the caller's scope (default deny), call the model, map errors.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use aurae_proto::v0 as pb;
use aurae_runtime::logs::{LogFollower, LogQuery, LogRecord, Stream};
use aurae_runtime::spec::CellName;
use nix::sys::signal::Signal;
use tokio_stream::Stream as AsyncStream;
use tonic::{Request, Response, Status};

use super::cells::{Runtime, Scope};
use super::convert;
use super::error::RuntimeError;
use super::{RUNTIME_EXEC, RUNTIME_READ};
use crate::server::permissions::{
    Authority, Permission, Scope as GrantScope, Target, authority_of,
};

/// What the caller reaches with the permission a call needs.
struct Reach {
    scope: Scope,
    authority: Authority,
    permission: &'static Permission,
}

impl Reach {
    /// Refuses, naming the permission and the cell, unless the caller reaches `cell`.
    fn check(&self, cell: &CellName) -> Result<(), Status> {
        if self.scope.covers(cell) {
            return Ok(());
        }
        let name = cell.to_string();
        self.authority
            .require(self.permission, &Target::Cell(&name))
            .map_err(Status::from)
    }
}

/// The cells the caller reaches with `permission` (default deny): every cell, or the
/// scopes its grants name (a live cell's own identity: its own cell).
fn reach_of<T>(request: &Request<T>, permission: &'static Permission) -> Result<Reach, Status> {
    let authority = authority_of(request)?;
    authority.require_somewhere(permission)?;
    let scopes: Vec<GrantScope> = authority.scopes(permission).cloned().collect();
    let scope = if scopes.contains(&GrantScope::Everywhere) {
        Scope::All
    } else {
        Scope::Granted(scopes)
    };
    Ok(Reach {
        scope,
        authority: authority.clone(),
        permission,
    })
}

/// The cells as wire messages; their state is read from cgroup files, off the async
/// threads.
async fn describe(
    runtime: &Runtime,
    cells: Vec<Arc<super::cells::Cell>>,
) -> Result<Vec<pb::CellInfo>, Status> {
    let version = runtime.cgroup_version();
    tokio::task::spawn_blocking(move || {
        cells
            .iter()
            .map(|cell| convert::cell_info(cell, version.clone()))
            .collect()
    })
    .await
    .map_err(|e| Status::internal(format!("describing the cells did not finish: {e}")))
}

/// The `aurae.v0.Cells` gRPC service.
#[derive(Debug, Clone)]
pub struct CellsService {
    runtime: Arc<Runtime>,
}

impl CellsService {
    /// The service over `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }
}

#[tonic::async_trait]
impl pb::cells_server::Cells for CellsService {
    async fn allocate(
        &self,
        request: Request<pb::AllocateCellRequest>,
    ) -> Result<Response<pb::AllocateCellResponse>, Status> {
        let reach = reach_of(&request, &RUNTIME_EXEC)?;
        let spec = request
            .into_inner()
            .cell
            .ok_or_else(|| Status::invalid_argument("no cell spec in the request"))?;
        let spec = convert::cell_spec(spec)?;
        reach.check(&spec.name)?;
        let cell = self.runtime.allocate(&reach.scope, spec).await?;
        Ok(Response::new(pb::AllocateCellResponse {
            cell: describe(&self.runtime, vec![cell]).await?.pop(),
        }))
    }

    async fn free(
        &self,
        request: Request<pb::FreeCellRequest>,
    ) -> Result<Response<pb::FreeCellResponse>, Status> {
        let reach = reach_of(&request, &RUNTIME_EXEC)?;
        let name = convert::cell_name(&request.into_inner().cell)?;
        reach.check(&name)?;
        self.runtime.free(&reach.scope, &name).await?;
        Ok(Response::new(pb::FreeCellResponse {}))
    }

    async fn start(
        &self,
        request: Request<pb::StartExecutableRequest>,
    ) -> Result<Response<pb::StartExecutableResponse>, Status> {
        let reach = reach_of(&request, &RUNTIME_EXEC)?;
        let request = request.into_inner();
        let cell = convert::cell_name(&request.cell)?;
        reach.check(&cell)?;
        let spec = request
            .executable
            .ok_or_else(|| Status::invalid_argument("no executable spec in the request"))?;
        let spec = convert::executable_spec(spec, || self.runtime.fresh_executable_name())?;
        let exe = self.runtime.start(&reach.scope, &cell, spec).await?;
        Ok(Response::new(pb::StartExecutableResponse {
            executable: Some(convert::executable_info(&exe, &exe.status())),
        }))
    }

    async fn stop(
        &self,
        request: Request<pb::StopExecutableRequest>,
    ) -> Result<Response<pb::StopExecutableResponse>, Status> {
        let reach = reach_of(&request, &RUNTIME_EXEC)?;
        let request = request.into_inner();
        let cell = convert::cell_name(&request.cell)?;
        reach.check(&cell)?;
        let name = convert::executable_name(&request.executable)?;
        let exe = self.runtime.executable(&reach.scope, &cell, &name).await?;
        let status = self.runtime.stop(&reach.scope, &cell, &name).await?;
        Ok(Response::new(pb::StopExecutableResponse {
            executable: Some(convert::executable_info(&exe, &status)),
        }))
    }

    async fn signal(
        &self,
        request: Request<pb::SignalExecutableRequest>,
    ) -> Result<Response<pb::SignalExecutableResponse>, Status> {
        let reach = reach_of(&request, &RUNTIME_EXEC)?;
        let request = request.into_inner();
        let cell = convert::cell_name(&request.cell)?;
        reach.check(&cell)?;
        let name = convert::executable_name(&request.executable)?;
        let signal = Signal::try_from(request.signal).map_err(|_| {
            Status::invalid_argument(format!(
                "signal {} is not a signal number this host knows (e.g. 15 for SIGTERM)",
                request.signal
            ))
        })?;
        let exe = self.runtime.executable(&reach.scope, &cell, &name).await?;
        exe.signal(signal).await.map_err(|why| {
            Status::failed_precondition(format!("cannot signal {cell}/{name}: {why}"))
        })?;
        Ok(Response::new(pb::SignalExecutableResponse {}))
    }

    async fn wait(
        &self,
        request: Request<pb::WaitExecutableRequest>,
    ) -> Result<Response<pb::WaitExecutableResponse>, Status> {
        let reach = reach_of(&request, &RUNTIME_READ)?;
        let request = request.into_inner();
        let cell = convert::cell_name(&request.cell)?;
        reach.check(&cell)?;
        let name = convert::executable_name(&request.executable)?;
        let exe = self.runtime.executable(&reach.scope, &cell, &name).await?;
        let status = exe.wait().await;
        Ok(Response::new(pb::WaitExecutableResponse {
            executable: Some(convert::executable_info(&exe, &status)),
        }))
    }

    async fn list(
        &self,
        request: Request<pb::ListCellsRequest>,
    ) -> Result<Response<pb::ListCellsResponse>, Status> {
        let reach = reach_of(&request, &RUNTIME_READ)?;
        let cells = self.runtime.list(&reach.scope).await;
        let cells = describe(&self.runtime, cells).await?;
        Ok(Response::new(pb::ListCellsResponse { cells }))
    }

    async fn freeze(
        &self,
        request: Request<pb::FreezeCellRequest>,
    ) -> Result<Response<pb::FreezeCellResponse>, Status> {
        let reach = reach_of(&request, &RUNTIME_EXEC)?;
        let name = convert::cell_name(&request.into_inner().cell)?;
        reach.check(&name)?;
        self.runtime.set_frozen(&reach.scope, &name, true).await?;
        Ok(Response::new(pb::FreezeCellResponse {}))
    }

    async fn input(
        &self,
        request: Request<tonic::Streaming<pb::InputRequest>>,
    ) -> Result<Response<pb::InputResponse>, Status> {
        let reach = reach_of(&request, &RUNTIME_EXEC)?;
        let mut stream = request.into_inner();
        let Some(first) = stream.message().await? else {
            return Ok(Response::new(pb::InputResponse {}));
        };
        let cell = convert::cell_name(&first.cell)?;
        reach.check(&cell)?;
        let name = convert::executable_name(&first.executable)?;
        let exe = self.runtime.executable(&reach.scope, &cell, &name).await?;
        let slot = exe.input();
        let not_open = || {
            Status::failed_precondition(format!(
                "{cell}/{name} has no open stdin: start it with --interactive or --tty"
            ))
        };
        if slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none()
        {
            return Err(not_open());
        }
        let mut next = Some(first);
        while let Some(message) = next.take() {
            let slot = slot.clone();
            let closed = tokio::task::spawn_blocking(move || deliver(&slot, message))
                .await
                .map_err(|e| Status::internal(format!("input did not finish: {e}")))??;
            if closed {
                break;
            }
            next = stream.message().await?;
        }
        Ok(Response::new(pb::InputResponse {}))
    }

    async fn run_bundle(
        &self,
        request: Request<pb::RunBundleRequest>,
    ) -> Result<Response<pb::RunBundleResponse>, Status> {
        let reach = reach_of(&request, &RUNTIME_EXEC)?;
        let request = request.into_inner();
        let cell = convert::cell_name(&request.cell)?;
        reach.check(&cell)?;
        let bundle = std::path::PathBuf::from(&request.bundle);
        if !bundle.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "bundle '{}' must be an absolute path on the node",
                request.bundle
            )));
        }
        let loaded =
            tokio::task::spawn_blocking(move || aurae_runtime::oci::load_bundle(&bundle, cell))
                .await
                .map_err(|e| Status::internal(format!("reading the bundle did not finish: {e}")))?
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
        for field in &loaded.not_applied {
            tracing::warn!(cell = %loaded.cell.name, field = %field.field, why = %field.why, "bundle field accepted but not applied");
        }
        let cell = self.runtime.allocate(&reach.scope, loaded.cell).await?;
        let exe = match self
            .runtime
            .start(&reach.scope, &cell.spec.name, loaded.executable)
            .await
        {
            Ok(exe) => exe,
            Err(e) => {
                let _ = self.runtime.free(&Scope::All, &cell.spec.name).await;
                return Err(e.into());
            }
        };
        Ok(Response::new(pb::RunBundleResponse {
            cell: describe(&self.runtime, vec![cell]).await?.pop(),
            executable: Some(convert::executable_info(&exe, &exe.status())),
        }))
    }

    async fn thaw(
        &self,
        request: Request<pb::ThawCellRequest>,
    ) -> Result<Response<pb::ThawCellResponse>, Status> {
        let reach = reach_of(&request, &RUNTIME_EXEC)?;
        let name = convert::cell_name(&request.into_inner().cell)?;
        reach.check(&name)?;
        self.runtime.set_frozen(&reach.scope, &name, false).await?;
        Ok(Response::new(pb::ThawCellResponse {}))
    }
}

/// Hands one input message to the process's stdin; true once the input is closed.
fn deliver(slot: &super::executable::InputSlot, message: pb::InputRequest) -> Result<bool, Status> {
    let mut guard = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(input) = guard.as_mut() else {
        return Err(Status::failed_precondition(
            "the executable's stdin is closed",
        ));
    };
    let failed =
        |e: std::io::Error| Status::failed_precondition(format!("cannot write to its stdin: {e}"));
    if let Some(size) = message.resize {
        let rows = u16::try_from(size.rows).unwrap_or(u16::MAX);
        let cols = u16::try_from(size.cols).unwrap_or(u16::MAX);
        input.resize(rows, cols).map_err(failed)?;
    }
    if !message.data.is_empty() {
        input.write(&message.data).map_err(failed)?;
    }
    if message.close {
        if let Some(input) = guard.take() {
            input.close().map_err(failed)?;
        }
        return Ok(true);
    }
    Ok(false)
}

/// The `aurae.v0.Observe` gRPC service.
#[derive(Debug, Clone)]
pub struct ObserveService {
    runtime: Arc<Runtime>,
}

impl ObserveService {
    /// The service over `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }
}

/// How many entries travel in flight to a slow client before the stream waits for it
/// (the workload never does: it is the log file that the stream reads).
const LOG_STREAM_BUFFER: usize = 256;

fn entry(record: LogRecord) -> pb::LogEntry {
    pb::LogEntry {
        time_unix_nanos: record
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        stream: match record.stream {
            Stream::Stdout => pb::LogStream::Stdout,
            Stream::Stderr => pb::LogStream::Stderr,
        }
        .into(),
        line: record.line,
        partial: record.partial,
    }
}

#[tonic::async_trait]
impl pb::observe_server::Observe for ObserveService {
    type LogsStream = Pin<Box<dyn AsyncStream<Item = Result<pb::LogEntry, Status>> + Send>>;

    async fn logs(
        &self,
        request: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let reach = reach_of(&request, &RUNTIME_READ)?;
        let request = request.into_inner();
        let cell = convert::cell_name(&request.cell)?;
        reach.check(&cell)?;
        let name = convert::executable_name(&request.executable)?;
        let (dir, exe) = self.runtime.log_dir_of(&reach.scope, &cell, &name).await?;
        let query = LogQuery {
            since: (request.since_ms > 0).then(|| {
                UNIX_EPOCH + Duration::from_millis(u64::try_from(request.since_ms).unwrap_or(0))
            }),
            tail: (request.tail > 0).then_some(request.tail as usize),
        };
        let progress = if request.follow {
            exe.as_ref().and_then(|exe| exe.log_progress())
        } else {
            None
        };
        let mut follower =
            tokio::task::spawn_blocking(move || LogFollower::new(&dir, &query, progress))
                .await
                .map_err(|e| Status::internal(format!("reading the log did not finish: {e}")))?
                .map_err(RuntimeError::from)?;
        let (tx, rx) = tokio::sync::mpsc::channel(LOG_STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    batch = follower.next_batch() => match batch {
                        Ok(Some(records)) => {
                            for record in records {
                                if tx.send(Ok(entry(record))).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(None) => return,
                        Err(e) => {
                            let _ = tx.send(Err(Status::from(RuntimeError::from(e)))).await;
                            return;
                        }
                    },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
