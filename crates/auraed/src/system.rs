//! The `aurae.v0.System` service: what this node is and whether it serves.
//!
//! It is served in both modes: in the empty loop it is how an operator learns which
//! files are missing and which command creates them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use aurae_core::name::Principal;
use aurae_core::pki::PkiPaths;
use aurae_proto::v0 as pb;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::capabilities::CapabilityRegistry;
use crate::server::material::Mode;

/// What the node knows about itself, shared by the services.
#[derive(Debug)]
pub struct Node {
    /// When auraed started.
    pub started: Instant,
    /// The PeerId, if the key could be read.
    pub peer_id: Option<String>,
    /// The key file.
    pub key_path: PathBuf,
    /// Why the key could not be used, if it could not.
    pub key_error: Option<String>,
    /// The PKI directory.
    pub pki: PkiPaths,
    /// The current mode, kept up to date by the material watcher.
    pub mode: watch::Receiver<Mode>,
    /// The capabilities and their state.
    pub capabilities: Arc<CapabilityRegistry>,
    /// The database, or why it could not be opened.
    pub store: crate::storage::StoreState,
}

/// The `aurae.v0.System` gRPC service.
#[derive(Debug, Clone)]
pub struct SystemService {
    node: Arc<Node>,
}

impl SystemService {
    /// A service reporting on `node`.
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// The status as seen by `principal` (none in the empty loop).
    pub fn status(&self, principal: Option<&Principal>) -> pb::StatusResponse {
        let node = &self.node;
        let mut response = pb::StatusResponse {
            version: aurae_core::VERSION.to_owned(),
            peer_id: node.peer_id.clone().unwrap_or_default(),
            uptime_seconds: node.started.elapsed().as_secs(),
            pki_dir: node.pki.dir().display().to_string(),
            principal: principal.map(ToString::to_string).unwrap_or_default(),
            key_path: node.key_path.display().to_string(),
            key_error: node.key_error.clone().unwrap_or_default(),
            pid: std::process::id(),
            ..Default::default()
        };
        match &*node.mode.borrow() {
            Mode::EmptyLoop(why) => {
                response.set_mode(pb::Mode::EmptyLoop);
                response.missing_files = why.missing.clone();
                response.reason = why.reason.clone();
                response.fix_command = why.fix_command.clone();
            }
            Mode::Serving(_) => {
                response.set_mode(pb::Mode::Serving);
                response.capabilities = node.capabilities.enabled_names();
            }
        }
        response
    }
}

#[tonic::async_trait]
impl pb::system_server::System for SystemService {
    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let principal = request.extensions().get::<Principal>();
        Ok(Response::new(SystemService::status(self, principal)))
    }
}
