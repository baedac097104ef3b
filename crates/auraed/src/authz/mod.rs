//! The `authz` capability: who may do what on this node.
//!
//! Each capability declares its permissions and what each of its methods needs
//! ([`crate::server::permissions`]); this one keeps the roles (named sets of scoped
//! permissions) and bindings (roles given to principal patterns) in the store and serves
//! `aurae.v0.Authz` to change them. Built in: `admin` (everything; the node's admin always
//! holds it), `viewer` (every read-only permission), and `cell` (a live cell's own
//! identity on its own cell). The authorization layer resolves a caller's grants from the
//! current policy on every request, so a change applies to open connections at once.

/// Roles, bindings and their compiled lookup.
pub mod policy;
/// The gRPC service.
pub mod service;
/// The live policy and its records in the store.
pub mod state;

use std::sync::Arc;

use aurae_proto::v0::authz_server::AuthzServer;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

pub use service::AuthzService;
pub use state::PolicyState;

use crate::context::Daemon;
use crate::server::permissions::{Needs, Permission, ScopeKind, ServiceRules};
use crate::server::registry::{Availability, Capability, RegisterError};

/// Reading roles and bindings.
pub const AUTHZ_READ: Permission = Permission {
    name: "authz.read",
    description: "list roles, bindings and permissions",
    scope: ScopeKind::Unscoped,
    read_only: true,
};

/// Changing roles and bindings: as strong as the admin role, which it can grant.
pub const AUTHZ_MANAGE: Permission = Permission {
    name: "authz.manage",
    description: "create and remove roles; grant and ungrant them",
    scope: ScopeKind::Unscoped,
    read_only: false,
};

const READ: Needs = Needs::Permission(&AUTHZ_READ);
const MANAGE: Needs = Needs::Permission(&AUTHZ_MANAGE);

/// The capability's declaration.
pub const CAPABILITY: Capability = Capability {
    name: "authz",
    description: "roles and grants: who may do what on this node",
    availability: Availability::Core,
    permissions: &[&AUTHZ_READ, &AUTHZ_MANAGE],
    services: &[ServiceRules {
        service: <AuthzServer<AuthzService> as NamedService>::NAME,
        methods: &[
            ("WhoAmI", Needs::AnyPrincipal),
            ("Permissions", READ),
            ("ListRoles", READ),
            ("GetRole", READ),
            ("ListBindings", READ),
            ("CreateRole", MANAGE),
            ("DeleteRole", MANAGE),
            ("Grant", MANAGE),
            ("Ungrant", MANAGE),
        ],
    }],
    register,
};

fn register(daemon: &Arc<Daemon>, routes: &mut RoutesBuilder) -> Result<(), RegisterError> {
    routes.add_service(AuthzServer::new(AuthzService::new(daemon.clone())));
    Ok(())
}

/// Every permission the capabilities of this build declare.
pub fn catalog() -> Vec<&'static Permission> {
    crate::CAPABILITIES
        .iter()
        .flat_map(|c| c.permissions.iter().copied())
        .collect()
}
