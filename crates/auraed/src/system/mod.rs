//! The `aurae.v0.System` service: what this node is and whether it serves.
//!
//! It is served in both modes: in the empty loop it is how an operator learns which
//! files are missing and which command creates them.

use std::sync::Arc;

use aurae_core::name::Principal;
use aurae_proto::v0 as pb;
use aurae_proto::v0::system_server::SystemServer;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::{Request, Response, Status};

use crate::context::Daemon;
use crate::server::connections::Role;
use crate::server::material::Mode;
use crate::server::permissions::{Authority, Needs, Permission, ScopeKind, ServiceRules};
use crate::server::registry::{Availability, Capability, RegisterError};

/// Reading the node's status. (The empty loop tells anyone as much; the daemon's own
/// paths are shown to the node's admin only.) `aurae whoami` needs no permission.
pub const SYSTEM_READ: Permission = Permission {
    name: "system.read",
    description: "read the node's status: mode, peer id, uptime, capabilities",
    scope: ScopeKind::Unscoped,
    read_only: true,
};

/// The capability's declaration.
pub const CAPABILITY: Capability = Capability {
    name: "system",
    description: "node status: mode, peer id, uptime, capabilities",
    availability: Availability::Core,
    permissions: &[&SYSTEM_READ],
    services: &[ServiceRules {
        service: <SystemServer<SystemService> as NamedService>::NAME,
        methods: &[("Status", Needs::Permission(&SYSTEM_READ))],
    }],
    register,
};

fn register(daemon: &Arc<Daemon>, routes: &mut RoutesBuilder) -> Result<(), RegisterError> {
    routes.add_service(SystemServer::new(SystemService::new(daemon.clone())));
    Ok(())
}

/// The `aurae.v0.System` gRPC service.
#[derive(Debug, Clone)]
pub struct SystemService {
    daemon: Arc<Daemon>,
}

impl SystemService {
    /// A service reporting on `daemon`.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }

    /// The status as seen by `principal` (none in the empty loop).
    pub fn status(&self, principal: Option<&Principal>) -> pb::StatusResponse {
        let node = &self.daemon;
        let mut response = pb::StatusResponse {
            version: aurae_core::VERSION.to_owned(),
            peer_id: node.identity.peer_id.clone().unwrap_or_default(),
            uptime_seconds: node.started.elapsed().as_secs(),
            pki_dir: node.pki.dir().display().to_string(),
            principal: principal.map(ToString::to_string).unwrap_or_default(),
            key_path: node.identity.key_path.display().to_string(),
            key_error: node.identity.key_error.clone().unwrap_or_default(),
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
        let principal = request
            .extensions()
            .get::<Authority>()
            .map(Authority::principal);
        let mut status = SystemService::status(self, principal);
        // In the empty loop nobody is authenticated and the paths are the help it gives.
        if principal.is_some() && request.extensions().get::<Role>() != Some(&Role::NodeAdmin) {
            status.pki_dir.clear();
            status.key_path.clear();
            status.key_error.clear();
        }
        Ok(Response::new(status))
    }
}
