//! The `capabilities` capability: list, enable and disable capabilities.
//!
//! A switch is persisted before it takes effect and is reflected in the health service
//! (a disabled capability's services report NOT_SERVING). It is core: without it nobody
//! could turn anything back on.

use std::sync::Arc;

use aurae_proto::v0 as pb;
use aurae_proto::v0::capabilities_server::CapabilitiesServer;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::{Request, Response, Status};

use crate::context::Daemon;
use crate::server::permissions::{Needs, Permission, ScopeKind, ServiceRules};
use crate::server::registry::{Availability, Capability, CapabilityError, RegisterError, Switch};

/// Listing the capabilities and their state.
pub const CAPABILITIES_READ: Permission = Permission {
    name: "capabilities.read",
    description: "list the capabilities and whether each is enabled",
    scope: ScopeKind::Unscoped,
    read_only: true,
};

/// Switching capabilities on and off.
pub const CAPABILITIES_MANAGE: Permission = Permission {
    name: "capabilities.manage",
    description: "enable and disable capabilities",
    scope: ScopeKind::Unscoped,
    read_only: false,
};

/// The capability's declaration.
pub const CAPABILITY: Capability = Capability {
    name: "capabilities",
    description: "list, enable and disable capabilities",
    availability: Availability::Core,
    permissions: &[&CAPABILITIES_READ, &CAPABILITIES_MANAGE],
    services: &[ServiceRules {
        service: <CapabilitiesServer<CapabilitiesService> as NamedService>::NAME,
        methods: &[
            ("List", Needs::Permission(&CAPABILITIES_READ)),
            ("Enable", Needs::Permission(&CAPABILITIES_MANAGE)),
            ("Disable", Needs::Permission(&CAPABILITIES_MANAGE)),
        ],
    }],
    register,
};

fn register(daemon: &Arc<Daemon>, routes: &mut RoutesBuilder) -> Result<(), RegisterError> {
    routes.add_service(CapabilitiesServer::new(CapabilitiesService {
        daemon: daemon.clone(),
    }));
    Ok(())
}

impl From<CapabilityError> for Status {
    fn from(e: CapabilityError) -> Self {
        match e {
            CapabilityError::Unknown { .. } => Status::not_found(e.to_string()),
            CapabilityError::Core(_) => Status::failed_precondition(e.to_string()),
            CapabilityError::Persist { .. } => Status::unavailable(e.to_string()),
        }
    }
}

/// The `aurae.v0.Capabilities` gRPC service.
#[derive(Debug, Clone)]
pub struct CapabilitiesService {
    daemon: Arc<Daemon>,
}

impl CapabilitiesService {
    async fn switch(&self, name: String, switch: Switch) -> Result<pb::Capability, Status> {
        let registry = self.daemon.capabilities.clone();
        let capability = tokio::task::spawn_blocking(move || registry.set(&name, switch))
            .await
            .map_err(|e| Status::internal(format!("capability change did not finish: {e}")))??;
        self.daemon.report_health(capability).await;
        Ok(self.daemon.capabilities.describe(capability))
    }
}

#[tonic::async_trait]
impl pb::capabilities_server::Capabilities for CapabilitiesService {
    async fn list(
        &self,
        _request: Request<pb::ListCapabilitiesRequest>,
    ) -> Result<Response<pb::ListCapabilitiesResponse>, Status> {
        Ok(Response::new(pb::ListCapabilitiesResponse {
            capabilities: self.daemon.capabilities.list(),
        }))
    }

    async fn enable(
        &self,
        request: Request<pb::EnableCapabilityRequest>,
    ) -> Result<Response<pb::EnableCapabilityResponse>, Status> {
        let capability = self
            .switch(request.into_inner().name, Switch::Enable)
            .await?;
        Ok(Response::new(pb::EnableCapabilityResponse {
            capability: Some(capability),
        }))
    }

    async fn disable(
        &self,
        request: Request<pb::DisableCapabilityRequest>,
    ) -> Result<Response<pb::DisableCapabilityResponse>, Status> {
        let capability = self
            .switch(request.into_inner().name, Switch::Disable)
            .await?;
        Ok(Response::new(pb::DisableCapabilityResponse {
            capability: Some(capability),
        }))
    }
}
