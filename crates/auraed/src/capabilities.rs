//! The capability registry: what this daemon can serve, what is enabled, and the
//! `aurae.v0.Capabilities` service that turns capabilities on and off.
//!
//! The enabled set is written to the data directory before it takes effect, so a
//! restart serves exactly what was acknowledged. Core capabilities can never be
//! disabled: without them nobody could turn anything back on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use aurae_proto::v0 as pb;
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

/// One capability: a named set of gRPC services served together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapabilitySpec {
    /// Stable short name, used on the command line.
    pub name: &'static str,
    /// One line for `aurae capabilities list`.
    pub description: &'static str,
    /// Core capabilities are always on.
    pub core: bool,
    /// Whether an optional capability is on before anyone says otherwise.
    pub enabled_by_default: bool,
    /// Fully qualified gRPC service names.
    pub services: &'static [&'static str],
}

/// Every capability this build knows, in the order they are listed.
pub const KNOWN: &[CapabilitySpec] = &[
    CapabilitySpec {
        name: "health",
        description: "standard grpc.health.v1 health checks",
        core: true,
        enabled_by_default: true,
        services: &["grpc.health.v1.Health"],
    },
    CapabilitySpec {
        name: "system",
        description: "node status: mode, peer id, uptime, capabilities",
        core: true,
        enabled_by_default: true,
        services: &["aurae.v0.System"],
    },
    CapabilitySpec {
        name: "capabilities",
        description: "list, enable and disable capabilities",
        core: true,
        enabled_by_default: true,
        services: &["aurae.v0.Capabilities"],
    },
    CapabilitySpec {
        name: "storage",
        description: "the node's database as a filesystem: kv, volumes, auraefs",
        core: false,
        enabled_by_default: true,
        services: &["aurae.v0.Storage", "aurae.v0.Filesystem"],
    },
    CapabilitySpec {
        name: "reflection",
        description: "gRPC server reflection, for grpcurl-style tools and dynamic clients",
        core: false,
        enabled_by_default: true,
        services: &[
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ],
    },
];

/// File in the data directory holding the enabled set.
pub const STATE_FILE: &str = "capabilities.json";

/// Why a capability could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    /// No capability has that name.
    #[error("no capability named '{name}'; known capabilities: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// Core capabilities cannot be disabled.
    #[error("'{0}' is a core capability and cannot be disabled")]
    Core(&'static str),
    /// The new set could not be persisted, so it was not applied.
    #[error("cannot persist the capability set to {path}: {source}; nothing was changed")]
    Persist {
        /// The state file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

impl From<CapabilityError> for Status {
    fn from(e: CapabilityError) -> Self {
        match e {
            CapabilityError::Unknown { .. } => Status::not_found(e.to_string()),
            CapabilityError::Core(_) => Status::failed_precondition(e.to_string()),
            CapabilityError::Persist { .. } => Status::unavailable(e.to_string()),
        }
    }
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Serve the capability.
    Enable,
    /// Stop serving it.
    Disable,
}

/// The persisted form: explicit choices only, so defaults of later versions still apply.
#[derive(Debug, Default, Serialize, Deserialize)]
struct PersistedChoices {
    version: u32,
    enabled: BTreeSet<String>,
    disabled: BTreeSet<String>,
}

/// The capabilities of this daemon and which are enabled.
#[derive(Debug)]
pub struct CapabilityRegistry {
    state_file: PathBuf,
    choices: Mutex<BTreeMap<&'static str, bool>>,
}

fn find(name: &str) -> Result<&'static CapabilitySpec, CapabilityError> {
    KNOWN
        .iter()
        .find(|spec| spec.name == name)
        .ok_or_else(|| CapabilityError::Unknown {
            name: name.chars().take(64).collect(),
            known: KNOWN.iter().map(|s| s.name).collect::<Vec<_>>().join(", "),
        })
}

impl CapabilityRegistry {
    /// Opens the registry persisted in `data_dir`; a missing file means the defaults, an
    /// unreadable one is kept aside (never overwritten) and the defaults are used.
    pub fn open(data_dir: &Path) -> Self {
        let state_file = data_dir.join(STATE_FILE);
        let persisted = match std::fs::read(&state_file) {
            Ok(bytes) => match serde_json::from_slice::<PersistedChoices>(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    let aside = state_file.with_extension("json.unreadable");
                    let _ = std::fs::rename(&state_file, &aside);
                    tracing::error!(file = %state_file.display(), kept = %aside.display(), error = %e,
                        "capability set unreadable; using defaults");
                    PersistedChoices::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PersistedChoices::default(),
            Err(e) => {
                tracing::error!(file = %state_file.display(), error = %e, "cannot read capability set; using defaults");
                PersistedChoices::default()
            }
        };
        let mut choices = BTreeMap::new();
        for spec in KNOWN.iter().filter(|s| !s.core) {
            let on = if persisted.enabled.contains(spec.name) {
                true
            } else if persisted.disabled.contains(spec.name) {
                false
            } else {
                spec.enabled_by_default
            };
            choices.insert(spec.name, on);
        }
        Self {
            state_file,
            choices: Mutex::new(choices),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, bool>> {
        // A panic while holding the lock cannot leave the map half-updated (one insert),
        // so a poisoned lock is still consistent.
        self.choices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the capability `spec` is served now.
    pub fn is_enabled(&self, spec: &CapabilitySpec) -> bool {
        spec.core || self.lock().get(spec.name).copied().unwrap_or(false)
    }

    /// The capability serving the gRPC service `service`, if any.
    pub fn spec_for_service(service: &str) -> Option<&'static CapabilitySpec> {
        KNOWN.iter().find(|spec| spec.services.contains(&service))
    }

    /// Names of the enabled capabilities.
    pub fn enabled_names(&self) -> Vec<String> {
        KNOWN
            .iter()
            .filter(|s| self.is_enabled(s))
            .map(|s| s.name.to_owned())
            .collect()
    }

    /// Every capability with its state.
    pub fn list(&self) -> Vec<pb::Capability> {
        KNOWN.iter().map(|s| self.describe(s)).collect()
    }

    fn describe(&self, spec: &CapabilitySpec) -> pb::Capability {
        pb::Capability {
            name: spec.name.to_owned(),
            description: spec.description.to_owned(),
            enabled: self.is_enabled(spec),
            core: spec.core,
            services: spec.services.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Turns a capability on or off: persisted first (durably), applied after.
    pub fn set(&self, name: &str, switch: Switch) -> Result<pb::Capability, CapabilityError> {
        let spec = find(name)?;
        if spec.core {
            return match switch {
                Switch::Enable => Ok(self.describe(spec)),
                Switch::Disable => Err(CapabilityError::Core(spec.name)),
            };
        }
        let mut choices = self.lock();
        let mut next = choices.clone();
        next.insert(spec.name, switch == Switch::Enable);
        self.persist(&next)?;
        *choices = next;
        drop(choices);
        tracing::info!(capability = spec.name, ?switch, "capability set changed");
        Ok(self.describe(spec))
    }

    fn persist(&self, choices: &BTreeMap<&'static str, bool>) -> Result<(), CapabilityError> {
        let (on, off): (Vec<_>, Vec<_>) = choices.iter().partition(|(_, on)| **on);
        let persisted = PersistedChoices {
            version: 1,
            enabled: on.into_iter().map(|(n, _)| (*n).to_owned()).collect(),
            disabled: off.into_iter().map(|(n, _)| (*n).to_owned()).collect(),
        };
        let bytes =
            serde_json::to_vec_pretty(&persisted).map_err(|e| CapabilityError::Persist {
                path: self.state_file.clone(),
                source: e.into(),
            })?;
        aurae_core::fsutil::write_atomic(&self.state_file, &bytes, aurae_core::fsutil::SECRET_MODE)
            .map_err(|source| CapabilityError::Persist {
                path: self.state_file.clone(),
                source,
            })
    }
}

/// The `aurae.v0.Capabilities` gRPC service.
#[derive(Debug, Clone)]
pub struct CapabilitiesService {
    registry: Arc<CapabilityRegistry>,
}

impl CapabilitiesService {
    /// A service over `registry`.
    pub fn new(registry: Arc<CapabilityRegistry>) -> Self {
        Self { registry }
    }

    async fn switch(&self, name: String, switch: Switch) -> Result<pb::Capability, Status> {
        let registry = self.registry.clone();
        tokio::task::spawn_blocking(move || registry.set(&name, switch))
            .await
            .map_err(|e| Status::internal(format!("capability change did not finish: {e}")))?
            .map_err(Status::from)
    }
}

#[tonic::async_trait]
impl pb::capabilities_server::Capabilities for CapabilitiesService {
    async fn list(
        &self,
        _request: Request<pb::ListCapabilitiesRequest>,
    ) -> Result<Response<pb::ListCapabilitiesResponse>, Status> {
        Ok(Response::new(pb::ListCapabilitiesResponse {
            capabilities: self.registry.list(),
        }))
    }

    async fn enable(
        &self,
        request: Request<pb::EnableCapabilityRequest>,
    ) -> Result<Response<pb::EnableCapabilityResponse>, Status> {
        let capability = self
            .switch(request.into_inner().name, Switch::Enable)
            .await?;
        Ok(Response::new(pb::EnableCapabilityResponse {
            capability: Some(capability),
        }))
    }

    async fn disable(
        &self,
        request: Request<pb::DisableCapabilityRequest>,
    ) -> Result<Response<pb::DisableCapabilityResponse>, Status> {
        let capability = self
            .switch(request.into_inner().name, Switch::Disable)
            .await?;
        Ok(Response::new(pb::DisableCapabilityResponse {
            capability: Some(capability),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reflection() -> &'static CapabilitySpec {
        find("reflection").unwrap()
    }

    #[test]
    fn choices_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let registry = CapabilityRegistry::open(dir.path());
        assert!(registry.is_enabled(reflection()));
        registry.set("reflection", Switch::Disable).unwrap();
        assert!(!registry.is_enabled(reflection()));
        let reopened = CapabilityRegistry::open(dir.path());
        assert!(!reopened.is_enabled(reflection()));
    }

    #[test]
    fn core_cannot_be_disabled_and_unknown_names_list_the_known() {
        let dir = tempfile::tempdir().unwrap();
        let registry = CapabilityRegistry::open(dir.path());
        assert!(matches!(
            registry.set("system", Switch::Disable),
            Err(CapabilityError::Core("system"))
        ));
        let err = registry.set("../etc", Switch::Enable).unwrap_err();
        assert!(err.to_string().contains("reflection"), "{err}");
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let registry = CapabilityRegistry::open(&dir.path().join("missing-dir"));
        assert!(registry.set("reflection", Switch::Disable).is_err());
        assert!(registry.is_enabled(reflection()));
    }

    #[test]
    fn unreadable_state_is_kept_aside_not_destroyed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{broken").unwrap();
        let registry = CapabilityRegistry::open(dir.path());
        assert!(registry.is_enabled(reflection()));
        let aside =
            std::fs::read_to_string(dir.path().join("capabilities.json.unreadable")).unwrap();
        assert_eq!(aside, "{broken");
    }
}
