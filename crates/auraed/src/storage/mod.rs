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
use crate::server::permissions::{Needs, Permission, ScopeKind, ServiceRules};
use crate::server::registry::{Availability, Capability, RegisterError};

/// Reading the store: by path in the default namespace (`/services/`), or a whole
/// volume (`volume:data`) by inode.
pub const STORAGE_READ: Permission = Permission {
    name: "storage.read",
    description: "read keys, directories and watches; read volumes through auraefs",
    scope: ScopeKind::Storage,
    read_only: true,
};

/// Writing the store, scoped as [`STORAGE_READ`].
pub const STORAGE_WRITE: Permission = Permission {
    name: "storage.write",
    description: "write, rename and remove keys; write volumes through auraefs",
    scope: ScopeKind::Storage,
    read_only: false,
};

/// Creating and deleting volumes, scoped by volume name (`volume:team-*`).
pub const VOLUMES_MANAGE: Permission = Permission {
    name: "volumes.manage",
    description: "create and delete volumes",
    scope: ScopeKind::Storage,
    read_only: false,
};

const READ: Needs = Needs::Permission(&STORAGE_READ);
const WRITE: Needs = Needs::Permission(&STORAGE_WRITE);

/// The capability's declaration.
pub const CAPABILITY: Capability = Capability {
    name: "storage",
    description: "the node's database as a filesystem: kv, volumes, auraefs",
    availability: Availability::Optional {
        enabled_by_default: true,
    },
    permissions: &[&STORAGE_READ, &STORAGE_WRITE, &VOLUMES_MANAGE],
    services: &[
        ServiceRules {
            service: <StorageServer<StorageService> as NamedService>::NAME,
            methods: &[
                ("Get", READ),
                ("List", READ),
                ("Stat", READ),
                ("Watch", READ),
                ("ListVolumes", READ),
                ("Put", WRITE),
                ("PutStream", WRITE),
                ("Mkdir", WRITE),
                ("Symlink", WRITE),
                ("Remove", WRITE),
                ("Rename", WRITE),
                ("CreateVolume", Needs::Permission(&VOLUMES_MANAGE)),
                ("DeleteVolume", Needs::Permission(&VOLUMES_MANAGE)),
            ],
        },
        ServiceRules {
            service: <FilesystemServer<FilesystemService> as NamedService>::NAME,
            methods: &[
                ("Lookup", READ),
                ("GetAttr", READ),
                ("ReadDir", READ),
                ("Read", READ),
                ("StatFs", READ),
                ("SetAttr", WRITE),
                ("MakeNode", WRITE),
                ("MakeSymlink", WRITE),
                ("Link", WRITE),
                ("Unlink", WRITE),
                ("Rename", WRITE),
                ("Write", WRITE),
                ("Fsync", WRITE),
            ],
        },
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
