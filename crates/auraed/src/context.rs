//! The daemon-wide context every capability is built over: who this node is, its
//! certificate mode, its capability registry, its open connections, its store, its
//! process supervisor and its tuning.
//!
//! It is made once per daemon run and shared (`Arc<Daemon>`) by the server and the
//! services; a capability keeps its own state in its own folder, not here, unless the
//! daemon as a whole needs it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use aurae_core::pki::PkiPaths;
use tokio::sync::watch;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::config::DaemonConfig;
use crate::server::connections::ConnectionRegistry;
use crate::server::material::Mode;
use crate::server::registry::{Capability, CapabilityRegistry};

/// What the node is, as far as its key tells.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    /// The PeerId, if the key could be read.
    pub peer_id: Option<String>,
    /// The key file.
    pub key_path: PathBuf,
    /// Why the key could not be used, if it could not.
    pub key_error: Option<String>,
}

/// The daemon-wide context.
#[derive(Debug)]
pub struct Daemon {
    /// When auraed started.
    pub started: Instant,
    /// The node's peer identity.
    pub identity: NodeIdentity,
    /// The PKI directory.
    pub pki: PkiPaths,
    /// The current mode, kept up to date by the material watcher.
    pub mode: watch::Receiver<Mode>,
    /// The capabilities and their state.
    pub capabilities: Arc<CapabilityRegistry>,
    /// Roles and bindings: who may do what, decided on every request.
    pub policy: Arc<crate::authz::PolicyState>,
    /// Log every allowed request too, not only denials (`--audit`).
    pub audit: bool,
    /// The open authenticated connections: their limits, and closing any set of them
    /// (idle ones, or those of a revoked certificate).
    pub connections: ConnectionRegistry,
    /// Health statuses of the serving face, one per service.
    pub health: HealthReporter,
    /// The database, or why it could not be opened.
    pub store: crate::storage::StoreState,
    /// The only way to start a child process: it hands each exit status to its owner.
    pub supervisor: crate::init::supervisor::Supervisor,
    /// Tuning values.
    pub config: DaemonConfig,
    /// The node's cells and executables.
    pub runtime: Arc<crate::runtime::Runtime>,
    /// The RPC metrics the routers record into, and what a scrape renders.
    pub metrics: crate::metrics::Metrics,
    /// The peer capability's swarm, trust list and connections to other peers.
    pub peer: crate::peer::PeerState,
}

impl Daemon {
    /// Sets the health status of every service of every capability to its state now.
    pub async fn report_all_health(&self) {
        for capability in self.capabilities.known() {
            self.report_health(capability).await;
        }
    }

    /// Sets the health status of `capability`'s services: SERVING when it is enabled.
    pub async fn report_health(&self, capability: &Capability) {
        let status = if self.capabilities.is_enabled(capability) {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in capability.service_names() {
            self.health.set_service_status(service, status).await;
        }
    }
}
