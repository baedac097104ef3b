//! The `health` capability: the standard `grpc.health.v1.Health` service.
//!
//! Any authenticated principal may call it. Each enabled capability's services report
//! SERVING and a disabled one's NOT_SERVING, kept current by [`Daemon::report_health`].
//! (The empty loop serves its own health service, which reports NOT_SERVING.)

use std::sync::Arc;

use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;

use crate::context::Daemon;
use crate::server::permissions::{Needs, ServiceRules};
use crate::server::registry::{Availability, Capability, RegisterError};

/// The capability's declaration.
pub const CAPABILITY: Capability = Capability {
    name: "health",
    description: "standard grpc.health.v1 health checks",
    availability: Availability::Core,
    permissions: &[],
    services: &[ServiceRules {
        service: <HealthServer<HealthService> as NamedService>::NAME,
        methods: &[
            ("Check", Needs::AnyPrincipal),
            ("Watch", Needs::AnyPrincipal),
        ],
    }],
    register,
};

fn register(daemon: &Arc<Daemon>, routes: &mut RoutesBuilder) -> Result<(), RegisterError> {
    routes.add_service(HealthServer::new(HealthService::from_health_reporter(
        daemon.health.clone(),
    )));
    Ok(())
}
