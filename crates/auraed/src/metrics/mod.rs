//! The `metrics` capability: the daemon's own measurements in the Prometheus text format.
//!
//! What is measured: every gRPC call by service, method and code with its duration
//! (recorded by [`crate::server::metrics`], unless `--no-metrics`), FUSE operations of
//! auraefs mounts, the store's commits, group sizes and log syncs (counted by aurae-store
//! itself, copied at each scrape), each capability's state, open connections and the
//! process's uptime, memory, CPU and descriptors. It is read two ways: the
//! `aurae.v0.Metrics/Scrape` call (`aurae metrics`), which needs `metrics.read`, and,
//! only when asked with `--metrics-listen ADDR`, plain HTTP at `GET /metrics` for
//! scrapers ([`listener`]). Nothing here ever slows a call down: the per-call work is a
//! few atomic additions, and everything else happens when someone scrapes.

/// Why a scrape or the listener failed.
pub mod error;
/// The HTTP listener for scrapers (`--metrics-listen`).
pub mod listener;
/// The exposition: what a scrape reads and how it is encoded.
pub mod render;
/// The gRPC service.
pub mod service;

use std::sync::Arc;

use aurae_proto::v0::metrics_server::MetricsServer;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

pub use error::MetricsError;
pub use service::MetricsService;

use crate::context::Daemon;
use crate::server::metrics::{MetricsLayer, RpcMetrics};
use crate::server::permissions::{Needs, Permission, ScopeKind, ServiceRules};
use crate::server::registry::{Availability, Capability, RegisterError};

/// Reading the node's metrics. Read-only, so the built-in `viewer` role holds it.
pub const METRICS_READ: Permission = Permission {
    name: "metrics.read",
    description: "read the node's metrics (RPCs, store, capabilities, connections)",
    scope: ScopeKind::Unscoped,
    read_only: true,
};

/// The capability's declaration.
pub const CAPABILITY: Capability = Capability {
    name: "metrics",
    description: "the node's metrics in the Prometheus text format",
    availability: Availability::Core,
    permissions: &[&METRICS_READ],
    services: &[ServiceRules {
        service: <MetricsServer<MetricsService> as NamedService>::NAME,
        methods: &[("Scrape", Needs::Permission(&METRICS_READ))],
    }],
    register,
};

fn register(daemon: &Arc<Daemon>, routes: &mut RoutesBuilder) -> Result<(), RegisterError> {
    routes.add_service(MetricsServer::new(MetricsService::new(daemon.clone())));
    Ok(())
}

/// Whether calls are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// Every call is counted and timed (the default).
    On,
    /// No call is (`--no-metrics`): the layer is not even installed. What a scrape reads
    /// from elsewhere (store, capabilities, process) is still there.
    Off,
}

/// The daemon's metrics: the RPC families the layer records into, and the rendering of
/// everything at scrape time.
#[derive(Debug, Clone)]
pub struct Metrics {
    rpc: Option<Arc<RpcMetrics>>,
}

impl Metrics {
    /// Metrics for the methods of `capabilities`, collected or not as `collection` says.
    pub fn new(collection: Collection, capabilities: &[&Capability]) -> Self {
        Self {
            rpc: match collection {
                Collection::On => Some(Arc::new(RpcMetrics::new(capabilities))),
                Collection::Off => None,
            },
        }
    }

    /// The layer the routers install in front of their services, unless collection is off.
    pub fn rpc_layer(&self) -> Option<MetricsLayer> {
        self.rpc.clone().map(MetricsLayer::new)
    }

    /// The RPC families, when calls are measured.
    pub fn rpc(&self) -> Option<&RpcMetrics> {
        self.rpc.as_deref()
    }
}
