//! The live policy and its records in the store.
//!
//! Each role is one record, `/.aurae/authz/roles/<role>`, and each principal pattern's
//! roles are one record, `/.aurae/authz/bindings/<pattern>`, so that a change rewrites
//! one small record however large the policy grows. A change is written durably first
//! and published after (write before act): an acknowledged grant survives a crash, and a
//! refused write changes nothing. Changes are serialized; readers never wait for them.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use aurae_core::path::StorePath;
use aurae_store::{Content, Durability, PutOptions, Store, StoreError};
use serde::{Deserialize, Serialize};

use super::policy::{
    Policy, PolicyError, PrincipalPattern, Role, RoleName, parse_grant, refuse_cell_role,
};
use crate::server::permissions::Permission;

/// Where the policy's records live.
pub const ROLES_DIR: &str = "/.aurae/authz/roles";
/// Where the bindings live.
pub const BINDINGS_DIR: &str = "/.aurae/authz/bindings";

/// Why a change could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The change breaks a rule of the policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The database is not open: the built-in roles still work, nothing can change.
    #[error(
        "the node's database is not open, so roles and grants cannot change now (only the built-in ones hold); see `aurae status`"
    )]
    NoStore,
    /// The store refused the write; nothing changed.
    #[error("cannot write the policy to the store: {0}; nothing was changed")]
    Store(#[from] StoreError),
}

#[derive(Debug, Serialize, Deserialize)]
struct RoleRecord {
    permissions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct BindingRecord {
    roles: Vec<String>,
}

/// The policy every request is decided by, and its home in the store.
#[derive(Debug)]
pub struct PolicyState {
    current: RwLock<Arc<Policy>>,
    changes: tokio::sync::Mutex<()>,
    store: OnceLock<Arc<Store>>,
}

impl PolicyState {
    /// The built-in policy over the permissions `catalog` declares, until a store is
    /// attached.
    pub fn new(catalog: Vec<&'static Permission>) -> Self {
        Self {
            current: RwLock::new(Arc::new(Policy::builtin(catalog))),
            changes: tokio::sync::Mutex::new(()),
            store: OnceLock::new(),
        }
    }

    /// The policy now.
    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn publish(&self, policy: Policy) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
    }

    /// Reads the stored roles and bindings from `store`, which keeps every change from
    /// then on. A record that no longer parses (a permission a newer build dropped) is
    /// left out and logged: it grants nothing.
    pub fn attach_store(&self, store: Arc<Store>) -> Result<(), StoreError> {
        let mut policy = (*self.current()).clone();
        let catalog = policy.catalog().to_vec();
        for (name, bytes) in records(&store, ROLES_DIR)? {
            match role_of(&catalog, &name, &bytes) {
                Ok(role) => policy.load_role(role),
                Err(why) => tracing::warn!(record = %name, %why, "stored role ignored"),
            }
        }
        for (name, bytes) in records(&store, BINDINGS_DIR)? {
            match binding_of(&name, &bytes) {
                Ok((pattern, roles)) => policy.load_binding(pattern, roles),
                Err(why) => tracing::warn!(record = %name, %why, "stored binding ignored"),
            }
        }
        let policy = policy.loaded();
        tracing::info!(
            roles = policy.roles().count(),
            bindings = policy.bindings().len(),
            "authorization policy loaded"
        );
        self.publish(policy);
        let _ = self.store.set(store);
        Ok(())
    }

    /// Applies `change` to the current policy, persists the records it touches (`touched`
    /// names them), and publishes the result. `None` from `change`: nothing to do.
    pub async fn change(
        &self,
        change: impl FnOnce(&Policy) -> Result<Option<Policy>, PolicyError>,
        touched: Touched,
    ) -> Result<Arc<Policy>, ChangeError> {
        let _serialized = self.changes.lock().await;
        let store = self.store.get().ok_or(ChangeError::NoStore)?.clone();
        let Some(next) = change(&self.current())? else {
            return Ok(self.current());
        };
        let write = record_write(&next, &touched);
        store.write(Durability::Durable, write).await?;
        self.publish(next);
        Ok(self.current())
    }
}

impl PolicyState {
    /// Adds many roles and bindings at once (roles first), replacing stored ones of the
    /// same name: compiled once and written in batches, each batch durable before the
    /// next. Published only once all is written; if a batch fails, the records already
    /// written hold from the next start, and the policy served now is unchanged.
    pub async fn import(
        &self,
        roles: Vec<Role>,
        bindings: Vec<(PrincipalPattern, BTreeSet<RoleName>)>,
    ) -> Result<(), ChangeError> {
        const BATCH: usize = 256;
        let _serialized = self.changes.lock().await;
        let store = self.store.get().ok_or(ChangeError::NoStore)?.clone();
        let mut next = (*self.current()).clone();
        let mut touched: Vec<Touched> = Vec::new();
        for role in roles {
            refuse_cell_role(&role.name)?;
            if next.role(role.name.as_str()).is_some_and(|r| r.builtin) {
                return Err(PolicyError::Builtin(format!("role '{}'", role.name)).into());
            }
            touched.push(Touched::Role(role.name.clone()));
            next.load_role(role);
        }
        for (pattern, roles) in bindings {
            roles.iter().try_for_each(refuse_cell_role)?;
            if let Some(missing) = roles.iter().find(|r| next.role(r.as_str()).is_none()) {
                return Err(PolicyError::NoRole(missing.to_string()).into());
            }
            touched.push(Touched::Binding(pattern.clone()));
            next.load_binding(pattern, roles);
        }
        let next = next.loaded();
        for batch in touched.chunks(BATCH) {
            let mut writes: Vec<_> = batch.iter().map(|t| record_write(&next, t)).collect();
            store
                .write(Durability::Durable, move |w| {
                    writes.iter_mut().try_for_each(|write| write(w))
                })
                .await?;
        }
        self.publish(next);
        Ok(())
    }
}

/// A write the store runs as part of a larger transaction.
pub type StoreOp = Box<dyn FnMut(&mut aurae_store::Writer<'_>) -> Result<(), StoreError> + Send>;

impl PolicyState {
    /// Holds every other policy change off until the hold is published or dropped, so
    /// that a change written together with other records (a node config) is planned
    /// against the policy it replaces.
    pub async fn hold(&self) -> PolicyHold<'_> {
        PolicyHold {
            state: self,
            _serialized: self.changes.lock().await,
        }
    }
}

/// The policy held still: read it, plan a successor, write its records in the caller's
/// transaction, then publish it.
#[derive(Debug)]
pub struct PolicyHold<'a> {
    state: &'a PolicyState,
    _serialized: tokio::sync::MutexGuard<'a, ()>,
}

impl PolicyHold<'_> {
    /// The policy in force, which nothing else changes while held.
    pub fn current(&self) -> Arc<Policy> {
        self.state.current()
    }

    /// The writes that make the store hold `next`'s version of the `touched` records.
    pub fn writes(&self, next: &Policy, touched: &[Touched]) -> Vec<StoreOp> {
        touched
            .iter()
            .map(|t| Box::new(record_write(next, t)) as StoreOp)
            .collect()
    }

    /// Serves `next` from now on; call it once its records are durable.
    pub fn publish(self, next: Policy) {
        self.state.publish(next);
    }
}

/// Which record a change touches.
#[derive(Debug, Clone)]
pub enum Touched {
    /// A role's record.
    Role(RoleName),
    /// A pattern's binding record.
    Binding(PrincipalPattern),
}

fn record_path(dir: &str, name: &str) -> Result<StorePath, StoreError> {
    Ok(format!("{dir}/{name}").parse()?)
}

/// The write that makes the store hold `policy`'s version of the `touched` record: put
/// when it exists there, removed when not.
fn record_write(
    policy: &Policy,
    touched: &Touched,
) -> impl FnMut(&mut aurae_store::Writer<'_>) -> Result<(), StoreError> + Send + 'static {
    let (dir, name, bytes) = match touched {
        Touched::Role(name) => (
            ROLES_DIR,
            name.to_string(),
            policy
                .role(name.as_str())
                .map(|role| RoleRecord {
                    permissions: role.grants.iter().map(ToString::to_string).collect(),
                })
                .map(|r| serde_json::to_vec_pretty(&r)),
        ),
        Touched::Binding(pattern) => (
            BINDINGS_DIR,
            pattern.to_string(),
            policy.bindings().get(pattern).map(|roles| {
                serde_json::to_vec_pretty(&BindingRecord {
                    roles: roles.iter().map(ToString::to_string).collect(),
                })
            }),
        ),
    };
    move |w| {
        let path = record_path(dir, &name)?;
        match &bytes {
            Some(Ok(bytes)) => {
                let mut put = aurae_store::namespace::put(
                    path,
                    Content::Bytes(bytes.clone()),
                    PutOptions {
                        mode: Some(0o600),
                        ..PutOptions::default()
                    },
                );
                put(w).map(|_| ())
            }
            Some(Err(e)) => Err(StoreError::InvalidName(format!(
                "policy record cannot be encoded: {e}"
            ))),
            None => {
                let mut remove =
                    aurae_store::namespace::remove(path, aurae_store::namespace::Removal::Single);
                match remove(w) {
                    Err(StoreError::NotFound(_)) => Ok(()),
                    other => other,
                }
            }
        }
    }
}

/// Every file of directory `dir` with its content; none when it does not exist.
pub(crate) fn records(store: &Store, dir: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let dir: StorePath = dir.parse()?;
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let (entries, more) = match store.list(&dir, &after, 1024) {
            Ok(page) => page,
            Err(StoreError::NotFound(_)) => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in &entries {
            let path: StorePath = match entry.path.parse() {
                Ok(path) => path,
                Err(_) => continue,
            };
            let name = path
                .split_last()
                .map(|(_, name)| name.to_owned())
                .unwrap_or_default();
            match store.get(&path) {
                Ok((bytes, _)) => out.push((name, bytes)),
                Err(e) => tracing::warn!(record = %path, error = %e, "policy record unreadable"),
            }
        }
        match entries.last() {
            Some(last) if more => {
                after = last.path.rsplit('/').next().unwrap_or_default().to_owned();
            }
            _ => return Ok(out),
        }
    }
}

fn role_of(catalog: &[&'static Permission], name: &str, bytes: &[u8]) -> Result<Role, String> {
    let record: RoleRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let grants = record
        .permissions
        .iter()
        .map(|g| parse_grant(catalog, g))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(Role {
        name: name.parse().map_err(|e: PolicyError| e.to_string())?,
        grants,
        builtin: false,
    })
}

fn binding_of(name: &str, bytes: &[u8]) -> Result<(PrincipalPattern, BTreeSet<RoleName>), String> {
    let record: BindingRecord = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let roles = record
        .roles
        .iter()
        .map(|r| r.parse())
        .collect::<Result<BTreeSet<RoleName>, PolicyError>>()
        .map_err(|e| e.to_string())?;
    Ok((name.parse().map_err(|e: PolicyError| e.to_string())?, roles))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::authz::catalog;

    #[tokio::test]
    async fn changes_survive_reopening_the_store_and_an_emptied_binding_leaves_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let open =
            || Arc::new(Store::open(dir.path(), aurae_store::StoreConfig::default()).unwrap());
        let state = PolicyState::new(catalog());
        state.attach_store(open()).unwrap();
        let reader: RoleName = "reader".parse().unwrap();
        let alice: PrincipalPattern = "alice@node1@local".parse().unwrap();
        let role = Role {
            name: reader.clone(),
            grants: vec![parse_grant(&catalog(), "storage.read:/services/").unwrap()],
            builtin: false,
        };
        state
            .change(
                |p| p.with_role(role, false).map(Some),
                Touched::Role(reader.clone()),
            )
            .await
            .unwrap();
        let (a, r) = (alice.clone(), reader.clone());
        state
            .change(
                move |p| p.with_binding(a, &r),
                Touched::Binding(alice.clone()),
            )
            .await
            .unwrap();
        drop(state);

        let reopened = PolicyState::new(catalog());
        reopened.attach_store(open()).unwrap();
        let policy = reopened.current();
        assert_eq!(
            policy.role("reader").unwrap().grants[0].to_string(),
            "storage.read:/services/"
        );
        assert!(policy.bindings()[&alice].contains(&reader));

        let (a, r) = (alice.clone(), reader.clone());
        reopened
            .change(
                move |p| p.without_binding(&a, &r, None).map(Some),
                Touched::Binding(alice.clone()),
            )
            .await
            .unwrap();
        let store = reopened.store.get().unwrap();
        assert!(matches!(
            store.get(&record_path(BINDINGS_DIR, "alice@node1@local").unwrap()),
            Err(StoreError::NotFound(_))
        ));
    }
}
