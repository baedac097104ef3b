//! The storage capability: the node's database (aurae-store) served as two gRPC services,
//! `aurae.v0.Storage` (the default namespace by path, for `aurae kv`) and
//! `aurae.v0.Filesystem` (any volume by inode, for auraefs).
//!
//! This folder owns the edge: parsing and validating requests, choosing each write's
//! durability, converting the store's types to wire messages and its errors to statuses.
//! It never touches the database's tables or files itself: every read and write goes
//! through the store's API.

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

pub use filesystem::FilesystemService;
pub use service::StorageService;
pub use state::StoreState;
