//! The storage capability: the node's database (aurae-store) served as two gRPC services,
//! `aurae.v0.Storage` (the default namespace by path, for `aurae kv`) and
//! `aurae.v0.Filesystem` (any volume by inode, for auraefs).
//!
//! This folder owns the edge: parsing and validating requests, choosing each write's
//! durability, converting the store's types to wire messages and its errors to statuses.
//! It never touches the database's tables or files itself: every read and write goes
//! through the store's API.

/// Tuning, with documented defaults.
pub mod config;
/// Store types as wire messages.
mod convert;
/// The capability's errors and their gRPC status.
pub mod error;
/// The `aurae.v0.Filesystem` service.
pub mod filesystem;
/// The `aurae.v0.Storage` service.
pub mod service;
/// The handle on the store that the services share.
mod state;

use std::sync::Arc;

use aurae_proto::v0::filesystem_server::FilesystemServer;
use aurae_proto::v0::storage_server::StorageServer;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

pub use config::StorageConfig;
pub use filesystem::FilesystemService;
pub use service::StorageService;
pub use state::StoreState;

use crate::context::Daemon;
use crate::server::registry::{Access, Availability, Capability, RegisterError};

/// The capability's declaration.
pub const CAPABILITY: Capability = Capability {
    name: "storage",
    description: "the node's database as a filesystem: kv, volumes, auraefs",
    availability: Availability::Optional {
        enabled_by_default: true,
    },
    access: Access::Admin,
    services: &[
        <StorageServer<StorageService> as NamedService>::NAME,
        <FilesystemServer<FilesystemService> as NamedService>::NAME,
    ],
    register,
};

fn register(daemon: &Arc<Daemon>, routes: &mut RoutesBuilder) -> Result<(), RegisterError> {
    let config = Arc::new(daemon.config.storage.clone());
    routes.add_service(StorageServer::new(StorageService::new(
        daemon.store.clone(),
        config.clone(),
    )));
    routes.add_service(FilesystemServer::new(FilesystemService::new(
        daemon.store.clone(),
        config,
    )));
    Ok(())
}
