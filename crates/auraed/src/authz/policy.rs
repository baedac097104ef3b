//! The policy: roles (named sets of scoped permissions) and bindings (roles given to
//! principal patterns), with the built-in ones, compiled for a lookup per request.
//!
//! A [`Policy`] is immutable: a change builds a new one, which the caller persists and
//! then publishes, so that every request sees one whole policy, old or new. Pure: no
//! store, no I/O, so each rule is tested on its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aurae_core::name::{EntityName, Principal};
use aurae_core::pki::NodeNames;

use crate::server::permissions::{Grant, Permission, Scope, ScopeError};

/// The built-in role holding every permission everywhere.
pub const ADMIN_ROLE: &str = "admin";
/// The built-in role holding every read-only permission everywhere.
pub const VIEWER_ROLE: &str = "viewer";
/// The built-in role of each live cell's own identity: its own cell.
pub const CELL_ROLE: &str = "cell";

/// Why a change to the policy was refused; each message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A role name breaks the naming rule.
    #[error(
        "'{0}' is not a role name: use 1 to 63 lowercase letters, digits, '-' or '_', starting with a letter"
    )]
    BadRoleName(String),
    /// A principal pattern does not parse.
    #[error(
        "'{pattern}' is not a principal pattern: write <entity>@<peer>@<domain> or *@<peer>@<domain> ({why})"
    )]
    BadPattern {
        /// What was given.
        pattern: String,
        /// What is wrong with it.
        why: String,
    },
    /// A permission is not declared by any capability.
    #[error("no capability declares a permission '{name}'; `aurae role permissions` lists them")]
    UnknownPermission {
        /// What was given.
        name: String,
    },
    /// A scope does not parse for its permission.
    #[error(transparent)]
    BadScope(#[from] ScopeError),
    /// A role without permissions.
    #[error("role '{0}' would hold no permission; give at least one --allow")]
    Empty(String),
    /// No such role.
    #[error("no role named '{0}'; `aurae role ls` lists them")]
    NoRole(String),
    /// The role exists and `replace` was not asked.
    #[error("role '{0}' exists; pass --replace to change its permissions")]
    RoleExists(String),
    /// Built-in roles and bindings cannot change.
    #[error("{0} is built in and cannot be changed or removed")]
    Builtin(String),
    /// A role still bound cannot be removed.
    #[error(
        "role '{role}' is still granted to {patterns}; ungrant it first (`aurae ungrant <pattern> {role}`)"
    )]
    StillBound {
        /// The role.
        role: String,
        /// Some of the patterns it is bound to.
        patterns: String,
    },
    /// No such binding.
    #[error("{pattern} does not hold role '{role}'; `aurae grants {pattern}` lists what it holds")]
    NoBinding {
        /// The pattern.
        pattern: String,
        /// The role.
        role: String,
    },
    /// The lock-out guard.
    #[error(
        "{0} is this node's admin and always holds role 'admin': removing it would lock everyone out"
    )]
    LockOut(String),
}

/// A role's name: lowercase, short, safe as a store path component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleName(String);

impl RoleName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RoleName {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if valid {
            Ok(Self(s.to_owned()))
        } else {
            Err(PolicyError::BadRoleName(s.chars().take(80).collect()))
        }
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whom a binding gives its role to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrincipalPattern {
    /// One principal.
    Exact(Principal),
    /// Every entity of one node: `*@<peer>@<domain>`.
    EveryEntityOf {
        /// The node's peer name.
        peer: String,
        /// Its domain.
        domain: String,
    },
}

impl PrincipalPattern {
    /// Whether `principal` matches.
    pub fn matches(&self, principal: &Principal) -> bool {
        match self {
            Self::Exact(exact) => exact == principal,
            Self::EveryEntityOf { peer, domain } => {
                principal.peer.as_str() == peer && principal.domain.as_str() == domain
            }
        }
    }
}

impl FromStr for PrincipalPattern {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| PolicyError::BadPattern {
            pattern: s.chars().take(200).collect(),
            why,
        };
        match s.strip_prefix("*@") {
            Some(node) => {
                let principal: Principal = format!("any@{node}")
                    .parse()
                    .map_err(|e: aurae_core::name::NameError| bad(e.to_string()))?;
                Ok(Self::EveryEntityOf {
                    peer: principal.peer.to_string(),
                    domain: principal.domain.to_string(),
                })
            }
            None => s
                .parse()
                .map(Self::Exact)
                .map_err(|e: aurae_core::name::NameError| bad(e.to_string())),
        }
    }
}

impl fmt::Display for PrincipalPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(principal) => write!(f, "{principal}"),
            Self::EveryEntityOf { peer, domain } => write!(f, "*@{peer}@{domain}"),
        }
    }
}

/// A named set of scoped permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// Its name.
    pub name: RoleName,
    /// What it allows.
    pub grants: Vec<Grant>,
    /// Built into auraed.
    pub builtin: bool,
}

/// Parses `permission[:scope]` against the declared `catalog`.
pub fn parse_grant(catalog: &[&'static Permission], text: &str) -> Result<Grant, PolicyError> {
    let (name, scope) = text.split_once(':').unwrap_or((text, ""));
    grant_of(catalog, name, scope)
}

/// The grant of the permission named `name` at `scope` (empty: everywhere).
pub fn grant_of(
    catalog: &[&'static Permission],
    name: &str,
    scope: &str,
) -> Result<Grant, PolicyError> {
    let permission = catalog
        .iter()
        .copied()
        .find(|p| p.name == name)
        .ok_or_else(|| PolicyError::UnknownPermission {
            name: name.chars().take(80).collect(),
        })?;
    Ok(Grant {
        permission,
        scope: Scope::parse(permission, scope)?,
    })
}

type Grants = Arc<[Grant]>;

/// Roles and bindings, compiled: what a principal holds is one or two hash lookups.
#[derive(Debug, Clone)]
pub struct Policy {
    catalog: Vec<&'static Permission>,
    roles: BTreeMap<RoleName, Arc<Role>>,
    bindings: BTreeMap<PrincipalPattern, BTreeSet<RoleName>>,
    admin: Grants,
    /// Merged grants per principal bound by name (its node's `*@` roles included).
    exact: HashMap<Principal, Grants>,
    /// Merged grants of `*@<peer>@<domain>` bindings, by domain then peer.
    every_entity: HashMap<String, HashMap<String, Grants>>,
}

impl Policy {
    /// The built-in roles over the permissions `catalog` declares, and no binding.
    pub fn builtin(catalog: Vec<&'static Permission>) -> Self {
        let everywhere = |p: &&'static Permission| Grant {
            permission: p,
            scope: Scope::Everywhere,
        };
        let admin = Role {
            name: RoleName(ADMIN_ROLE.to_owned()),
            grants: catalog.iter().map(everywhere).collect(),
            builtin: true,
        };
        let viewer = Role {
            name: RoleName(VIEWER_ROLE.to_owned()),
            grants: catalog
                .iter()
                .filter(|p| p.read_only)
                .map(everywhere)
                .collect(),
            builtin: true,
        };
        let admin_grants: Grants = admin.grants.clone().into();
        let mut policy = Self {
            catalog,
            roles: BTreeMap::new(),
            bindings: BTreeMap::new(),
            admin: admin_grants,
            exact: HashMap::new(),
            every_entity: HashMap::new(),
        };
        for role in [admin, viewer] {
            policy.roles.insert(role.name.clone(), Arc::new(role));
        }
        policy
    }

    /// The permissions the node's capabilities declare.
    pub fn catalog(&self) -> &[&'static Permission] {
        &self.catalog
    }

    /// Every role, built-in first by name.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values().map(AsRef::as_ref)
    }

    /// The role named `name`.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles
            .get(&RoleName(name.to_owned()))
            .map(AsRef::as_ref)
    }

    /// Every stored binding, by pattern.
    pub fn bindings(&self) -> &BTreeMap<PrincipalPattern, BTreeSet<RoleName>> {
        &self.bindings
    }

    /// The patterns bound to `role`.
    pub fn bound_to(&self, role: &RoleName) -> impl Iterator<Item = &PrincipalPattern> {
        self.bindings
            .iter()
            .filter(move |(_, roles)| roles.contains(role))
            .map(|(pattern, _)| pattern)
    }

    /// What `principal` holds: everything for the node's admin; otherwise its bindings'
    /// roles, and for a live cell's own identity its own cell.
    pub fn grants_of(
        &self,
        principal: &Principal,
        node_admin: bool,
        own_cell: Option<&str>,
    ) -> Grants {
        if node_admin {
            return self.admin.clone();
        }
        let bound = self.exact.get(principal).or_else(|| {
            self.every_entity
                .get(principal.domain.as_str())
                .and_then(|peers| peers.get(principal.peer.as_str()))
        });
        let Some(cell) = own_cell else {
            return bound.cloned().unwrap_or_else(|| Arc::from([]));
        };
        let mut grants: Vec<Grant> = bound.map(|g| g.to_vec()).unwrap_or_default();
        grants.extend(cell_grants(&self.catalog, cell));
        grants.into()
    }

    /// A new policy with role `role` created (or replaced when `replace`).
    pub fn with_role(&self, role: Role, replace: bool) -> Result<Self, PolicyError> {
        if role.grants.is_empty() {
            return Err(PolicyError::Empty(role.name.to_string()));
        }
        refuse_cell_role(&role.name)?;
        match self.roles.get(&role.name) {
            Some(existing) if existing.builtin => {
                return Err(PolicyError::Builtin(format!("role '{}'", role.name)));
            }
            Some(_) if !replace => return Err(PolicyError::RoleExists(role.name.to_string())),
            _ => {}
        }
        let mut next = self.clone();
        next.roles.insert(role.name.clone(), Arc::new(role));
        next.compile();
        Ok(next)
    }

    /// A new policy without role `name`, which no binding may still use.
    pub fn without_role(&self, name: &RoleName) -> Result<Self, PolicyError> {
        refuse_cell_role(name)?;
        let role = self
            .roles
            .get(name)
            .ok_or_else(|| PolicyError::NoRole(name.to_string()))?;
        if role.builtin {
            return Err(PolicyError::Builtin(format!("role '{name}'")));
        }
        let bound: Vec<String> = self
            .bound_to(name)
            .take(5)
            .map(ToString::to_string)
            .collect();
        if !bound.is_empty() {
            return Err(PolicyError::StillBound {
                role: name.to_string(),
                patterns: bound.join(", "),
            });
        }
        let mut next = self.clone();
        next.roles.remove(name);
        next.compile();
        Ok(next)
    }

    /// A new policy where `pattern` holds `role`; `None` when it already does.
    pub fn with_binding(
        &self,
        pattern: PrincipalPattern,
        role: &RoleName,
    ) -> Result<Option<Self>, PolicyError> {
        refuse_cell_role(role)?;
        if !self.roles.contains_key(role) {
            return Err(PolicyError::NoRole(role.to_string()));
        }
        if self
            .bindings
            .get(&pattern)
            .is_some_and(|r| r.contains(role))
        {
            return Ok(None);
        }
        let mut next = self.clone();
        next.bindings
            .entry(pattern)
            .or_default()
            .insert(role.clone());
        next.compile();
        Ok(Some(next))
    }

    /// A new policy where `pattern` no longer holds `role`. The node admin's admin role
    /// can never be taken (`node` names this node; unknown names guard nothing).
    pub fn without_binding(
        &self,
        pattern: &PrincipalPattern,
        role: &RoleName,
        node: Option<&NodeNames>,
    ) -> Result<Self, PolicyError> {
        if let (PrincipalPattern::Exact(principal), Some(node)) = (pattern, node)
            && role.as_str() == ADMIN_ROLE
            && principal.is_admin_of(&node.peer, &node.domain)
        {
            return Err(PolicyError::LockOut(principal.to_string()));
        }
        if !self.bindings.get(pattern).is_some_and(|r| r.contains(role)) {
            return Err(PolicyError::NoBinding {
                pattern: pattern.to_string(),
                role: role.to_string(),
            });
        }
        let mut next = self.clone();
        if let Some(roles) = next.bindings.get_mut(pattern) {
            roles.remove(role);
            if roles.is_empty() {
                next.bindings.remove(pattern);
            }
        }
        next.compile();
        Ok(next)
    }

    /// Puts a role read back from the store; the policy is compiled by [`Self::loaded`].
    pub fn load_role(&mut self, role: Role) {
        if !self.roles.get(&role.name).is_some_and(|r| r.builtin) {
            self.roles.insert(role.name.clone(), Arc::new(role));
        }
    }

    /// Puts a binding read back from the store.
    pub fn load_binding(&mut self, pattern: PrincipalPattern, roles: BTreeSet<RoleName>) {
        self.bindings.insert(pattern, roles);
    }

    /// The policy once every stored role and binding is in.
    pub fn loaded(mut self) -> Self {
        self.compile();
        self
    }

    /// Rebuilds the lookup tables from roles and bindings. A binding to a role that does
    /// not exist (a record written by hand) gives nothing.
    fn compile(&mut self) {
        let merged = |roles: &mut dyn Iterator<Item = &RoleName>| -> Vec<Grant> {
            let mut grants: Vec<Grant> = Vec::new();
            for role in roles.filter_map(|name| self.roles.get(name)) {
                for grant in &role.grants {
                    if !grants.contains(grant) {
                        grants.push(grant.clone());
                    }
                }
            }
            grants
        };
        let mut every_entity: HashMap<String, HashMap<String, Grants>> = HashMap::new();
        for (pattern, roles) in &self.bindings {
            if let PrincipalPattern::EveryEntityOf { peer, domain } = pattern {
                every_entity
                    .entry(domain.clone())
                    .or_default()
                    .insert(peer.clone(), merged(&mut roles.iter()).into());
            }
        }
        let mut exact = HashMap::new();
        for (pattern, roles) in &self.bindings {
            if let PrincipalPattern::Exact(principal) = pattern {
                let node_roles = self.bindings.get(&PrincipalPattern::EveryEntityOf {
                    peer: principal.peer.to_string(),
                    domain: principal.domain.to_string(),
                });
                let mut all = roles.iter().chain(node_roles.into_iter().flatten());
                exact.insert(principal.clone(), merged(&mut all).into());
            }
        }
        self.exact = exact;
        self.every_entity = every_entity;
    }
}

/// The `cell` role is given by the runtime to each live cell's own identity, never
/// stored: it cannot be created, removed or granted.
pub fn refuse_cell_role(name: &RoleName) -> Result<(), PolicyError> {
    if name.as_str() == CELL_ROLE {
        Err(PolicyError::Builtin(format!("role '{CELL_ROLE}'")))
    } else {
        Ok(())
    }
}

/// What a live cell's own identity holds: runtime rights on its own cell, and the
/// node's status (so that `aurae status` in a cell names the cell).
fn cell_grants<'a>(
    catalog: &'a [&'static Permission],
    cell: &'a str,
) -> impl Iterator<Item = Grant> + 'a {
    let runtime = [
        crate::runtime::RUNTIME_READ.name,
        crate::runtime::RUNTIME_EXEC.name,
    ];
    catalog.iter().filter_map(move |p| {
        let scope = if runtime.contains(&p.name) {
            Scope::OwnCell(cell.to_owned())
        } else if p.name == crate::system::SYSTEM_READ.name {
            Scope::Everywhere
        } else {
            return None;
        };
        Some(Grant {
            permission: p,
            scope,
        })
    })
}

/// The built-in `cell` role as shown to people: its grants for a placeholder cell.
pub fn cell_role(catalog: &[&'static Permission]) -> Role {
    Role {
        name: RoleName(CELL_ROLE.to_owned()),
        grants: cell_grants(catalog, "<own cell>").collect(),
        builtin: true,
    }
}

/// The node's admin principal, if the node's names are known.
pub fn node_admin(node: &NodeNames) -> Option<Principal> {
    let entity: EntityName = "admin".parse().ok()?;
    Some(Principal {
        entity,
        peer: node.peer.clone(),
        domain: node.domain.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::authz::catalog;

    fn principal(s: &str) -> Principal {
        s.parse().unwrap()
    }

    fn role(name: &str, grants: &[&str]) -> Role {
        let catalog = catalog();
        Role {
            name: name.parse().unwrap(),
            grants: grants
                .iter()
                .map(|g| parse_grant(&catalog, g).unwrap())
                .collect(),
            builtin: false,
        }
    }

    fn names(policy: &Policy, p: &str) -> Vec<String> {
        policy
            .grants_of(&principal(p), false, None)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_binding_gives_its_roles_grants_and_an_entity_pattern_matches_one_node_only() {
        let policy = Policy::builtin(catalog())
            .with_role(role("reader", &["storage.read:/services/"]), false)
            .unwrap()
            .with_binding(
                "alice@node1@local".parse().unwrap(),
                &"reader".parse().unwrap(),
            )
            .unwrap()
            .unwrap()
            .with_binding("*@node1@local".parse().unwrap(), &"viewer".parse().unwrap())
            .unwrap()
            .unwrap();
        let alice = names(&policy, "alice@node1@local");
        assert!(
            alice.contains(&"storage.read:/services/".to_owned()),
            "{alice:?}"
        );
        assert!(alice.contains(&"system.read".to_owned()), "{alice:?}");
        assert!(names(&policy, "bob@node1@local").contains(&"system.read".to_owned()));
        assert!(names(&policy, "bob@node1@other").is_empty());
        assert!(names(&policy, "bob@node2@local").is_empty());
    }

    #[test]
    fn the_node_admin_holds_everything_and_its_admin_role_cannot_be_taken() {
        let policy = Policy::builtin(catalog());
        let node = NodeNames {
            peer: "node1".parse().unwrap(),
            domain: "local".parse().unwrap(),
        };
        let admin = principal("admin@node1@local");
        assert_eq!(policy.grants_of(&admin, true, None).len(), catalog().len());
        let err = policy
            .without_binding(
                &PrincipalPattern::Exact(admin),
                &ADMIN_ROLE.parse().unwrap(),
                Some(&node),
            )
            .unwrap_err();
        assert!(matches!(err, PolicyError::LockOut(_)), "{err}");
    }

    #[test]
    fn built_in_and_bound_roles_cannot_be_removed_and_unknown_ones_are_named() {
        let policy = Policy::builtin(catalog())
            .with_role(role("deploy", &["storage.write:/services/"]), false)
            .unwrap()
            .with_binding(
                "dee@node1@local".parse().unwrap(),
                &"deploy".parse().unwrap(),
            )
            .unwrap()
            .unwrap();
        assert!(matches!(
            policy.without_role(&"viewer".parse().unwrap()),
            Err(PolicyError::Builtin(_))
        ));
        let err = policy.without_role(&"deploy".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("dee@node1@local"), "{err}");
        assert!(matches!(
            policy.with_binding("x@node1@local".parse().unwrap(), &"nope".parse().unwrap()),
            Err(PolicyError::NoRole(_))
        ));
        assert!(matches!(
            policy.with_role(role("deploy", &["system.read"]), false),
            Err(PolicyError::RoleExists(_))
        ));
        assert!(
            policy
                .with_binding(
                    "dee@node1@local".parse().unwrap(),
                    &"deploy".parse().unwrap()
                )
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_cells_own_identity_holds_its_cell_and_a_bad_name_or_pattern_is_explained() {
        let policy = Policy::builtin(catalog());
        let grants = policy.grants_of(&principal("web.api@node1@local"), false, Some("web/api"));
        let shown: Vec<String> = grants.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "system.read",
                "runtime.read:web/api (its own cell)",
                "runtime.exec:web/api (its own cell)"
            ]
        );
        assert!("Admin".parse::<RoleName>().is_err());
        assert!("../x".parse::<RoleName>().is_err());
        for bad in ["*@node1", "alice", "*@no de@local", "a@b@c@d"] {
            let err = bad.parse::<PrincipalPattern>().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(matches!(
            parse_grant(&catalog(), "storage.frobnicate"),
            Err(PolicyError::UnknownPermission { .. })
        ));
    }
}
