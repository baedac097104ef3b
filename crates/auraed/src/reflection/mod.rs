//! The `reflection` capability: gRPC server reflection over every descriptor this build
//! serves, so that grpcurl-style tools and dynamic clients need no copy of the protos.

use std::sync::Arc;

use tonic::service::RoutesBuilder;
use tonic_reflection::server::Builder;

use crate::context::Daemon;
use crate::server::permissions::{Needs, Permission, ScopeKind, ServiceRules};
use crate::server::registry::{Availability, Capability, RegisterError};

/// Reading the API's descriptors.
pub const REFLECTION_READ: Permission = Permission {
    name: "reflection.read",
    description: "read the API's descriptors by gRPC server reflection",
    scope: ScopeKind::Unscoped,
    read_only: true,
};

/// The capability's declaration.
pub const CAPABILITY: Capability = Capability {
    name: "reflection",
    description: "gRPC server reflection, for grpcurl-style tools and dynamic clients",
    availability: Availability::Optional {
        enabled_by_default: true,
    },
    permissions: &[&REFLECTION_READ],
    services: &[
        ServiceRules {
            service: tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
            methods: &[("ServerReflectionInfo", Needs::Permission(&REFLECTION_READ))],
        },
        ServiceRules {
            service: tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
            methods: &[("ServerReflectionInfo", Needs::Permission(&REFLECTION_READ))],
        },
    ],
    register,
};

fn descriptors() -> Builder<'static> {
    Builder::configure()
        .register_encoded_file_descriptor_set(aurae_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

fn register(_daemon: &Arc<Daemon>, routes: &mut RoutesBuilder) -> Result<(), RegisterError> {
    let failed = |e: tonic_reflection::server::Error| RegisterError {
        capability: CAPABILITY.name,
        source: e.into(),
    };
    routes.add_service(descriptors().build_v1().map_err(failed)?);
    routes.add_service(descriptors().build_v1alpha().map_err(failed)?);
    Ok(())
}
