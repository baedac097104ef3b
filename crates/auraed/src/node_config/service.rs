//! The `aurae.v0.NodeConfig` gRPC service: takes the document at the edge, plans or
//! applies it, and maps errors to codes.

use std::sync::Arc;

use aurae_proto::v0 as pb;
use tonic::{Request, Response, Status};

use super::apply::{ApplyError, Outcome, Run, apply, export};
use super::document::Source;
use super::plan::Prune;
use crate::context::Daemon;

/// Documents larger than this are refused: a node config is a page or two, not data.
const MAX_DOCUMENT_BYTES: usize = 8 << 20;

impl From<ApplyError> for Status {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Invalid(_) => Status::invalid_argument(e.to_string()),
            ApplyError::Refused(_) => Status::failed_precondition(e.to_string()),
            ApplyError::Store(inner) => {
                let status = Status::from(inner);
                Status::new(
                    status.code(),
                    format!(
                        "cannot apply the node config: {}; nothing was changed",
                        status.message()
                    ),
                )
            }
            ApplyError::Cells(ref failed) => Status::new(failed.status.code(), e.to_string()),
            ApplyError::Internal(_) => Status::internal(e.to_string()),
        }
    }
}

/// The `aurae.v0.NodeConfig` gRPC service.
#[derive(Debug, Clone)]
pub struct NodeConfigService {
    daemon: Arc<Daemon>,
}

impl NodeConfigService {
    /// A service over `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }

    async fn run(&self, request: pb::ApplyRequest, run: Run) -> Result<pb::ApplyResponse, Status> {
        if request.document.len() > MAX_DOCUMENT_BYTES {
            return Err(Status::invalid_argument(format!(
                "the document is {} bytes; a node config may hold at most {MAX_DOCUMENT_BYTES}",
                request.document.len()
            )));
        }
        let file = match request.file_name.trim() {
            "" => "<document>".to_owned(),
            name => name.chars().take(256).collect(),
        };
        let source = Source {
            file,
            text: request.document,
        };
        let prune = if request.prune {
            Prune::Remove
        } else {
            Prune::Keep
        };
        let Outcome {
            changes,
            applied,
            revision,
        } = apply(&self.daemon, &source, prune, run).await?;
        Ok(pb::ApplyResponse {
            changes: changes.iter().map(|c| c.describe()).collect(),
            applied,
            revision,
        })
    }
}

#[tonic::async_trait]
impl pb::node_config_server::NodeConfig for NodeConfigService {
    async fn plan(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        self.run(request.into_inner(), Run::DryRun)
            .await
            .map(Response::new)
    }

    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        self.run(request.into_inner(), Run::Apply)
            .await
            .map(Response::new)
    }

    async fn export(
        &self,
        _request: Request<pb::ExportRequest>,
    ) -> Result<Response<pb::ExportResponse>, Status> {
        let document = export(&self.daemon).await?;
        Ok(Response::new(pb::ExportResponse { document }))
    }
}
