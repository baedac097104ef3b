//! The `runtime` capability: cells (isolation zones: a cgroup plus namespaces), the
//! executables started in them, and their logs, as `aurae.v0.Cells` and `aurae.v0.Observe`.
//!
//! Access is scoped: the node's admin reaches every cell; a cell's own identity (the
//! certificate it finds at `/run/aurae/`) reaches that cell and the cells nested in it,
//! nothing else. Specs are stored before they are acted on (`records.rs`).

/// The cell's init: pid 1 of a cell, builder of its filesystem view.
pub mod cell_init;
/// The model: cells and their executables.
pub mod cells;
/// Wire messages to specs and back.
pub(crate) mod convert;
/// Which cell certificates work now (a live lookup, not a revocation list).
pub mod credentials;
/// The capability's errors and their gRPC status.
pub mod error;
/// One executable's life: restarts, stop, signals.
pub mod executable;
/// A cell's certificate and client config.
pub mod identity;
/// Bringing up loopback in a new network namespace.
mod loopback;
/// Capability sets applied between fork and exec.
mod privileges;
/// The specs in the store.
pub mod records;
/// The gRPC services.
pub mod service;
/// An executable's stdin, stdout and stderr: pipes, or a pseudo-terminal.
pub mod stdio;
/// A cell's namespaces and spawning into them.
pub mod zone;

use std::sync::Arc;

use aurae_proto::v0::cells_server::CellsServer;
use aurae_proto::v0::observe_server::ObserveServer;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

pub use cells::Runtime;
pub use service::{CellsService, ObserveService};

use crate::context::Daemon;
use crate::server::permissions::{Needs, Permission, ScopeKind, ServiceRules};
use crate::server::registry::{Availability, Capability, RegisterError};

/// Seeing cells, waiting on executables and reading their logs, scoped by cell name.
pub const RUNTIME_READ: Permission = Permission {
    name: "runtime.read",
    description: "list cells, wait on executables, read their logs",
    scope: ScopeKind::Cell,
    read_only: true,
};

/// Making, changing and freeing cells and what runs in them, scoped by cell name.
pub const RUNTIME_EXEC: Permission = Permission {
    name: "runtime.exec",
    description: "allocate, freeze and free cells; start, signal and stop executables",
    scope: ScopeKind::Cell,
    read_only: false,
};

const READ: Needs = Needs::Permission(&RUNTIME_READ);
const EXEC: Needs = Needs::Permission(&RUNTIME_EXEC);

/// The capability's declaration.
pub const CAPABILITY: Capability = Capability {
    name: "runtime",
    description: "cells (cgroups + namespaces), executables and their logs",
    availability: Availability::Optional {
        enabled_by_default: true,
    },
    permissions: &[&RUNTIME_READ, &RUNTIME_EXEC],
    services: &[
        ServiceRules {
            service: <CellsServer<CellsService> as NamedService>::NAME,
            methods: &[
                ("List", READ),
                ("Wait", READ),
                ("Allocate", EXEC),
                ("Free", EXEC),
                ("Start", EXEC),
                ("Stop", EXEC),
                ("Signal", EXEC),
                ("Freeze", EXEC),
                ("Thaw", EXEC),
                ("Input", EXEC),
                ("RunBundle", EXEC),
            ],
        },
        ServiceRules {
            service: <ObserveServer<ObserveService> as NamedService>::NAME,
            methods: &[("Logs", READ)],
        },
    ],
    register,
};

fn register(daemon: &Arc<Daemon>, routes: &mut RoutesBuilder) -> Result<(), RegisterError> {
    routes.add_service(CellsServer::new(CellsService::new(daemon.runtime.clone())));
    routes.add_service(ObserveServer::new(ObserveService::new(
        daemon.runtime.clone(),
    )));
    Ok(())
}
