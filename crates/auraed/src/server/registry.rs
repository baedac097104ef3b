//! The capability registry: which capabilities this build has, which are enabled, and
//! the persisted choice between them.
//!
//! Each capability declares itself once, as a [`Capability`] in its own folder, and is
//! listed in [`crate::CAPABILITIES`]; nothing else in the daemon names its services. The
//! enabled set is written to the data directory before it takes effect, so a restart
//! serves exactly what was acknowledged. Core capabilities can never be disabled: without
//! them nobody could turn anything back on. A service no capability declares is refused
//! (fail closed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use aurae_proto::v0 as pb;
use serde::{Deserialize, Serialize};
use tonic::service::RoutesBuilder;

use super::permissions::{Permission, ServiceRules};
use crate::context::Daemon;

/// Whether a capability can be switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Always on: the daemon cannot be managed without it.
    Core,
    /// Switched with `aurae capabilities enable|disable`.
    Optional {
        /// Whether it is on before anyone says otherwise.
        enabled_by_default: bool,
    },
}

/// Why a capability could not add its services to the router.
#[derive(Debug, thiserror::Error)]
#[error("capability '{capability}' cannot be served: {source}")]
pub struct RegisterError {
    /// The capability.
    pub capability: &'static str,
    /// What went wrong.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Adds a capability's gRPC services, built over the daemon's context, to the router.
pub type Register = fn(&Arc<Daemon>, &mut RoutesBuilder) -> Result<(), RegisterError>;

/// One capability: a named set of gRPC services served together, declared once in its
/// own folder.
#[derive(Debug, Clone, Copy)]
pub struct Capability {
    /// Stable short name, used on the command line.
    pub name: &'static str,
    /// One line for `aurae capabilities list`.
    pub description: &'static str,
    /// Whether it can be switched off.
    pub availability: Availability,
    /// The permissions it declares (`aurae role permissions` lists them).
    pub permissions: &'static [&'static Permission],
    /// Its gRPC services, each with every method it serves and what that needs; a
    /// method not listed is refused to everyone.
    pub services: &'static [ServiceRules],
    /// Adds its services to the router.
    pub register: Register,
}

impl Capability {
    /// Whether it is always on.
    pub fn is_core(&self) -> bool {
        self.availability == Availability::Core
    }

    /// The names of its gRPC services.
    pub fn service_names(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.services.iter().map(|rules| rules.service)
    }

    /// The rules of its service `service`, if it serves it.
    pub fn rules_of(&self, service: &str) -> Option<&'static ServiceRules> {
        self.services.iter().find(|rules| rules.service == service)
    }

    fn enabled_by_default(&self) -> bool {
        match self.availability {
            Availability::Core => true,
            Availability::Optional { enabled_by_default } => enabled_by_default,
        }
    }
}

impl PartialEq for Capability {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// File in the data directory that held the enabled set before it moved into the store;
/// still used while the store cannot be opened, and migrated once it can.
pub const STATE_FILE: &str = "capabilities.json";

/// Where the enabled set lives in the store.
pub const STORE_RECORD: &str = "/.aurae/capabilities.json";

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
    known: &'static [&'static Capability],
    state_file: PathBuf,
    choices: Mutex<BTreeMap<&'static str, bool>>,
    /// The store, once attached: the enabled set's home from then on.
    store: std::sync::OnceLock<Arc<aurae_store::Store>>,
}

impl CapabilityRegistry {
    /// Opens the registry of the capabilities `known`, with the choices persisted in
    /// `data_dir`; a missing file means the defaults, an unreadable one is kept aside
    /// (never overwritten) and the defaults are used.
    pub fn open(data_dir: &Path, known: &'static [&'static Capability]) -> Self {
        let state_file = data_dir.join(STATE_FILE);
        let persisted = read_choices(&state_file);
        Self {
            known,
            choices: Mutex::new(choices_of(known, &persisted)),
            state_file,
            store: std::sync::OnceLock::new(),
        }
    }

    /// Moves the enabled set into `store`: the set stored there wins; without one, the
    /// choices read from the old file are written to the store (durably) and the file is
    /// removed. From then on every change is written to the store.
    pub async fn attach_store(&self, store: Arc<aurae_store::Store>) -> Result<(), String> {
        let record: aurae_core::path::StorePath =
            STORE_RECORD.parse().map_err(|e| format!("{e}"))?;
        match store.get(&record) {
            Ok((bytes, _)) => {
                let persisted: PersistedChoices = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{STORE_RECORD} in the store does not parse: {e}"))?;
                *self.lock() = choices_of(self.known, &persisted);
            }
            Err(aurae_store::StoreError::NotFound(_)) => {
                let bytes = encode(&self.lock())?;
                store
                    .write(aurae_store::Durability::Durable, put_record(record, bytes))
                    .await
                    .map_err(|e| format!("cannot write {STORE_RECORD}: {e}"))?;
                if self.state_file.exists() {
                    std::fs::remove_file(&self.state_file).map_err(|e| {
                        format!(
                            "moved into the store, but cannot remove {}: {e}",
                            self.state_file.display()
                        )
                    })?;
                    tracing::info!(file = %self.state_file.display(), "capability set moved into the store");
                }
            }
            Err(e) => return Err(format!("cannot read {STORE_RECORD}: {e}")),
        }
        let _ = self.store.set(store);
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<&'static str, bool>> {
        // A panic while holding the lock cannot leave the map half-updated (one insert),
        // so a poisoned lock is still consistent.
        self.choices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every capability this build has, in the order they are listed.
    pub fn known(&self) -> &'static [&'static Capability] {
        self.known
    }

    /// The capability called `name`.
    pub fn find(&self, name: &str) -> Result<&'static Capability, CapabilityError> {
        self.known
            .iter()
            .copied()
            .find(|c| c.name == name)
            .ok_or_else(|| CapabilityError::Unknown {
                name: name.chars().take(64).collect(),
                known: self
                    .known
                    .iter()
                    .map(|c| c.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Whether `capability` is served now.
    pub fn is_enabled(&self, capability: &Capability) -> bool {
        capability.is_core() || self.lock().get(capability.name).copied().unwrap_or(false)
    }

    /// The capability serving the gRPC service `service`; `None` means nobody declared
    /// it, and callers must refuse it.
    pub fn capability_of_service(&self, service: &str) -> Option<&'static Capability> {
        self.known
            .iter()
            .copied()
            .find(|c| c.rules_of(service).is_some())
    }

    /// Names of the enabled capabilities.
    pub fn enabled_names(&self) -> Vec<String> {
        self.known
            .iter()
            .filter(|c| self.is_enabled(c))
            .map(|c| c.name.to_owned())
            .collect()
    }

    /// Every capability with its state.
    pub fn list(&self) -> Vec<pb::Capability> {
        self.known.iter().map(|c| self.describe(c)).collect()
    }

    /// A capability with its state, as the API shows it.
    pub fn describe(&self, capability: &Capability) -> pb::Capability {
        pb::Capability {
            name: capability.name.to_owned(),
            description: capability.description.to_owned(),
            enabled: self.is_enabled(capability),
            core: capability.is_core(),
            services: capability.service_names().map(str::to_owned).collect(),
        }
    }

    /// Turns a capability on or off: persisted first (durably), applied after.
    pub fn set(&self, name: &str, switch: Switch) -> Result<&'static Capability, CapabilityError> {
        let capability = self.find(name)?;
        if capability.is_core() {
            return match switch {
                Switch::Enable => Ok(capability),
                Switch::Disable => Err(CapabilityError::Core(capability.name)),
            };
        }
        let mut choices = self.lock();
        let mut next = choices.clone();
        next.insert(capability.name, switch == Switch::Enable);
        self.persist(&next)?;
        *choices = next;
        drop(choices);
        tracing::info!(
            capability = capability.name,
            ?switch,
            "capability set changed"
        );
        Ok(capability)
    }

    /// The optional capabilities' choices now, by name.
    pub fn choices(&self) -> BTreeMap<&'static str, bool> {
        self.lock().clone()
    }

    /// The store write that makes `choices` (every optional capability by name) the
    /// persisted set, for a caller that writes it together with other records and then
    /// calls [`Self::adopt`]. Refused while no store is attached.
    pub fn staged_write(
        &self,
        choices: &BTreeMap<&'static str, bool>,
    ) -> Result<
        impl FnMut(&mut aurae_store::Writer<'_>) -> Result<(), aurae_store::StoreError> + Send + 'static,
        String,
    > {
        if self.store.get().is_none() {
            return Err("the capability set is not in the store (the database is not open)".into());
        }
        let record: aurae_core::path::StorePath =
            STORE_RECORD.parse().map_err(|e| format!("{e}"))?;
        let mut put = put_record(record, encode(choices)?);
        Ok(move |w: &mut aurae_store::Writer<'_>| put(w).map(|_| ()))
    }

    /// Serves `choices` from now on; call it once [`Self::staged_write`] is durable.
    pub fn adopt(&self, choices: BTreeMap<&'static str, bool>) {
        *self.lock() = choices;
        tracing::info!("capability set changed by a node config");
    }

    /// Writes the set to the store (blocking on the write: `set` runs off the async
    /// threads), or to the file while no store is attached.
    fn persist(&self, choices: &BTreeMap<&'static str, bool>) -> Result<(), CapabilityError> {
        let bytes = encode(choices).map_err(|e| CapabilityError::Persist {
            path: self.state_file.clone(),
            source: std::io::Error::other(e),
        })?;
        if let Some(store) = self.store.get() {
            let failed = |e: String| CapabilityError::Persist {
                path: PathBuf::from(STORE_RECORD),
                source: std::io::Error::other(e),
            };
            let record = STORE_RECORD.parse().map_err(|e| failed(format!("{e}")))?;
            let handle =
                tokio::runtime::Handle::try_current().map_err(|e| failed(e.to_string()))?;
            return handle
                .block_on(store.write(aurae_store::Durability::Durable, put_record(record, bytes)))
                .map(|_| ())
                .map_err(|e| failed(e.to_string()));
        }
        aurae_core::fsutil::write_atomic(&self.state_file, &bytes, aurae_core::fsutil::SECRET_MODE)
            .map_err(|source| CapabilityError::Persist {
                path: self.state_file.clone(),
                source,
            })
    }
}

/// The choices in effect: each optional capability's persisted choice, or its default.
fn choices_of(
    known: &'static [&'static Capability],
    persisted: &PersistedChoices,
) -> BTreeMap<&'static str, bool> {
    known
        .iter()
        .filter(|c| !c.is_core())
        .map(|c| {
            let on = if persisted.enabled.contains(c.name) {
                true
            } else if persisted.disabled.contains(c.name) {
                false
            } else {
                c.enabled_by_default()
            };
            (c.name, on)
        })
        .collect()
}

/// The persisted form of `choices`.
fn encode(choices: &BTreeMap<&'static str, bool>) -> Result<Vec<u8>, String> {
    let (on, off): (Vec<_>, Vec<_>) = choices.iter().partition(|(_, on)| **on);
    let persisted = PersistedChoices {
        version: 1,
        enabled: on.into_iter().map(|(n, _)| (*n).to_owned()).collect(),
        disabled: off.into_iter().map(|(n, _)| (*n).to_owned()).collect(),
    };
    serde_json::to_vec_pretty(&persisted).map_err(|e| e.to_string())
}

/// The store write of the set (0600, parents made).
fn put_record(
    record: aurae_core::path::StorePath,
    bytes: Vec<u8>,
) -> impl FnMut(&mut aurae_store::Writer<'_>) -> Result<aurae_store::Stat, aurae_store::StoreError>
+ Send
+ 'static {
    aurae_store::namespace::put(
        record,
        aurae_store::Content::Bytes(bytes),
        aurae_store::PutOptions {
            mode: Some(0o600),
            ..aurae_store::PutOptions::default()
        },
    )
}

/// The persisted choices in `state_file`; an unreadable file is kept aside.
fn read_choices(state_file: &Path) -> PersistedChoices {
    match std::fs::read(state_file) {
        Ok(bytes) => match serde_json::from_slice::<PersistedChoices>(&bytes) {
            Ok(p) => p,
            Err(e) => {
                let aside = state_file.with_extension("json.unreadable");
                let _ = std::fs::rename(state_file, &aside);
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_services(_: &Arc<Daemon>, _: &mut RoutesBuilder) -> Result<(), RegisterError> {
        Ok(())
    }

    const CORE: Capability = Capability {
        name: "core",
        description: "always on",
        availability: Availability::Core,
        permissions: &[],
        services: &[ServiceRules {
            service: "test.Core",
            methods: &[],
        }],
        register: no_services,
    };
    const OPTIONAL: Capability = Capability {
        name: "optional",
        description: "on until disabled",
        availability: Availability::Optional {
            enabled_by_default: true,
        },
        permissions: &[],
        services: &[ServiceRules {
            service: "test.Optional",
            methods: &[],
        }],
        register: no_services,
    };
    const KNOWN: &[&Capability] = &[&CORE, &OPTIONAL];

    #[test]
    fn choices_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let registry = CapabilityRegistry::open(dir.path(), KNOWN);
        assert!(registry.is_enabled(&OPTIONAL));
        registry.set("optional", Switch::Disable).unwrap();
        assert!(!registry.is_enabled(&OPTIONAL));
        let reopened = CapabilityRegistry::open(dir.path(), KNOWN);
        assert!(!reopened.is_enabled(&OPTIONAL));
    }

    #[test]
    fn core_cannot_be_disabled_and_unknown_names_list_the_known() {
        let dir = tempfile::tempdir().unwrap();
        let registry = CapabilityRegistry::open(dir.path(), KNOWN);
        assert!(matches!(
            registry.set("core", Switch::Disable),
            Err(CapabilityError::Core("core"))
        ));
        let err = registry.set("../etc", Switch::Enable).unwrap_err();
        assert!(err.to_string().contains("optional"), "{err}");
    }

    #[test]
    fn services_nobody_declared_have_no_capability() {
        let dir = tempfile::tempdir().unwrap();
        let registry = CapabilityRegistry::open(dir.path(), KNOWN);
        assert_eq!(
            registry.capability_of_service("test.Optional"),
            Some(&OPTIONAL)
        );
        assert_eq!(registry.capability_of_service("test.Undeclared"), None);
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let registry = CapabilityRegistry::open(&dir.path().join("missing-dir"), KNOWN);
        assert!(registry.set("optional", Switch::Disable).is_err());
        assert!(registry.is_enabled(&OPTIONAL));
    }

    #[test]
    fn unreadable_state_is_kept_aside_not_destroyed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{broken").unwrap();
        let registry = CapabilityRegistry::open(dir.path(), KNOWN);
        assert!(registry.is_enabled(&OPTIONAL));
        let aside =
            std::fs::read_to_string(dir.path().join("capabilities.json.unreadable")).unwrap();
        assert_eq!(aside, "{broken");
    }
}
