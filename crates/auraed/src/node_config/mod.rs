//! The `config` capability: the node declared in one TOML document.
//!
//! `/etc/aurae/node.toml` (or `auraed --node-config FILE`) is applied at start, and
//! `aurae apply -f FILE` applies a document at any time: enabled capabilities, volumes
//! with their quotas, roles and grants. A document is validated whole (errors name the
//! file, line and field), diffed against the node into a plan that is shown first, and
//! carried out in one durable transaction, so that nothing is ever half-applied and
//! applying the same document twice changes nothing. `aurae config export` writes the
//! node's state in the same format.

/// Carrying a plan out on the live node.
pub mod apply;
/// Cells and executables: their form, diff and undoable steps.
pub mod cells;
/// The document: parsing with places, validation, rendering.
pub mod document;
/// The diff between a document and the node.
pub mod plan;
/// The gRPC service.
pub mod service;

use std::sync::Arc;

use aurae_proto::v0::node_config_server::NodeConfigServer;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

pub use service::NodeConfigService;

use crate::context::Daemon;
use crate::server::permissions::{Needs, Permission, ScopeKind, ServiceRules};
use crate::server::registry::{Availability, Capability, RegisterError};

/// Reading the node's declared state: planning a document, exporting the node.
pub const CONFIG_READ: Permission = Permission {
    name: "config.read",
    description: "export the node's config and show what applying a document would change",
    scope: ScopeKind::Unscoped,
    read_only: true,
};

/// Applying a document: as strong as the admin role, since a document may grant roles.
pub const CONFIG_APPLY: Permission = Permission {
    name: "config.apply",
    description: "apply a node config: capabilities, volumes, roles and grants",
    scope: ScopeKind::Unscoped,
    read_only: false,
};

/// The capability's declaration.
pub const CAPABILITY: Capability = Capability {
    name: "config",
    description: "declarative node config: apply a TOML document as a diff, export the node",
    availability: Availability::Core,
    permissions: &[&CONFIG_READ, &CONFIG_APPLY],
    services: &[ServiceRules {
        service: <NodeConfigServer<NodeConfigService> as NamedService>::NAME,
        methods: &[
            ("Plan", Needs::Permission(&CONFIG_READ)),
            ("Export", Needs::Permission(&CONFIG_READ)),
            ("Apply", Needs::Permission(&CONFIG_APPLY)),
        ],
    }],
    register,
};

fn register(daemon: &Arc<Daemon>, routes: &mut RoutesBuilder) -> Result<(), RegisterError> {
    routes.add_service(NodeConfigServer::new(NodeConfigService::new(
        daemon.clone(),
    )));
    Ok(())
}
