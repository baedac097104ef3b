//! Permissions: what each RPC needs, declared once by the capability that serves it, and
//! the scopes a principal may hold them at.
//!
//! A capability lists every method of its services with what it needs
//! ([`ServiceRules`]); a method it does not list is refused to everyone (fail closed). A
//! permission may be held everywhere or at a scope: a store path (`/services/`) or a
//! volume for storage, a cell name or prefix for the runtime. The authorization layer
//! checks that the caller holds the method's permission at some scope; a service whose
//! permission is scoped then checks the exact [`Target`] of the request with
//! [`Authority::require`], once it has decoded it.

use std::fmt;
use std::sync::Arc;

use aurae_core::name::Principal;
use aurae_core::path::StorePath;
use tonic::Status;

/// What a scope of a permission names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeKind {
    /// The permission is held everywhere or not at all.
    Unscoped,
    /// A store path (`/services/`), or `volume:<name>` (a whole volume, `prefix*` allowed).
    Storage,
    /// A cell name (that cell and the cells nested in it), or `prefix*`.
    Cell,
}

impl ScopeKind {
    /// How a person writes a scope of this kind.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unscoped => "",
            Self::Storage => "path or volume:<name>",
            Self::Cell => "cell name or prefix*",
        }
    }
}

/// A right a capability declares, e.g. `storage.read`.
#[derive(Debug)]
pub struct Permission {
    /// `<capability>.<verb>`, as written in roles.
    pub name: &'static str,
    /// One line for `aurae role permissions`.
    pub description: &'static str,
    /// What its scopes name.
    pub scope: ScopeKind,
    /// Whether it only reads (the built-in `viewer` role holds every such permission).
    pub read_only: bool,
}

impl PartialEq for Permission {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Permission {}

/// What one method needs.
#[derive(Debug, Clone, Copy)]
pub enum Needs {
    /// Nothing but an authenticated principal (health checks, `whoami`).
    AnyPrincipal,
    /// This permission, at some scope; a scoped one is checked again by the service.
    Permission(&'static Permission),
}

/// Every method of one gRPC service with what it needs.
#[derive(Debug, Clone, Copy)]
pub struct ServiceRules {
    /// The fully qualified service name, from tonic's `NamedService::NAME`.
    pub service: &'static str,
    /// `(method, needs)` for each method it serves.
    pub methods: &'static [(&'static str, Needs)],
}

impl ServiceRules {
    /// What `method` needs; `None` if the service never declared it.
    pub fn needs(&self, method: &str) -> Option<Needs> {
        self.methods
            .iter()
            .find(|(name, _)| *name == method)
            .map(|(_, needs)| *needs)
    }
}

/// Where the store's own records live; a path scope covers them only when it names them.
pub const RESERVED_PREFIX: &str = "/.aurae";

/// Why a scope did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The permission takes no scope.
    #[error("{permission} takes no scope (it is held everywhere or not at all); drop ':{scope}'")]
    Unscoped {
        /// The permission.
        permission: &'static str,
        /// The scope given.
        scope: String,
    },
    /// A storage scope is neither a path nor a volume.
    #[error(
        "'{scope}' is not a scope of {permission}: write a store path such as /services/, or volume:<name>"
    )]
    Storage {
        /// The permission.
        permission: &'static str,
        /// The scope given.
        scope: String,
    },
    /// A name pattern is empty or malformed.
    #[error(
        "'{scope}' is not a scope of {permission}: write a name such as web, web/api, or a prefix such as web-*"
    )]
    Name {
        /// The permission.
        permission: &'static str,
        /// The scope given.
        scope: String,
    },
}

/// A name, or every name starting with a prefix (`web-*`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamePattern {
    /// This name (and, for cells, the cells nested in it).
    Exact(String),
    /// Every name that starts with this.
    Prefix(String),
}

impl NamePattern {
    fn parse(text: &str) -> Option<Self> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                && !s.starts_with('/')
                && !s.split('/').any(|label| label == "." || label == "..")
        };
        match text.strip_suffix('*') {
            Some("") => None,
            Some(prefix) if valid(prefix) => Some(Self::Prefix(prefix.to_owned())),
            Some(_) => None,
            None if valid(text) && !text.ends_with('/') => Some(Self::Exact(text.to_owned())),
            None => None,
        }
    }

    /// Whether the pattern names `name`; `nested` also takes names below an exact one
    /// (`web` covers `web/api`).
    fn covers(&self, name: &str, nested: bool) -> bool {
        match self {
            Self::Exact(exact) => {
                name == exact
                    || (nested
                        && name.starts_with(exact.as_str())
                        && name.as_bytes().get(exact.len()) == Some(&b'/'))
            }
            Self::Prefix(prefix) => name.starts_with(prefix.as_str()),
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// Where a permission is held.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Everywhere, the store's own records included.
    Everywhere,
    /// A store path of the default namespace and everything under it.
    Path(StorePath),
    /// Whole volumes.
    Volume(NamePattern),
    /// Cells (and the cells nested in them).
    Cells(NamePattern),
    /// A cell's own identity: its cell and the cells nested in it, but not the cell
    /// itself as a whole (it cannot allocate or free itself).
    OwnCell(String),
}

impl Scope {
    /// Parses `text`, the part after `permission:`, for `permission`; empty means
    /// everywhere.
    pub fn parse(permission: &Permission, text: &str) -> Result<Self, ScopeError> {
        if text.is_empty() {
            return Ok(Self::Everywhere);
        }
        match permission.scope {
            ScopeKind::Unscoped => Err(ScopeError::Unscoped {
                permission: permission.name,
                scope: text.to_owned(),
            }),
            ScopeKind::Storage => {
                let storage = || ScopeError::Storage {
                    permission: permission.name,
                    scope: text.to_owned(),
                };
                if let Some(volume) = text.strip_prefix("volume:") {
                    return NamePattern::parse(volume)
                        .filter(|p| !p.to_string().contains('/'))
                        .map(Self::Volume)
                        .ok_or_else(storage);
                }
                let trimmed = match text.trim_end_matches('/') {
                    "" => "/",
                    trimmed => trimmed,
                };
                trimmed
                    .parse::<StorePath>()
                    .map(Self::Path)
                    .map_err(|_| storage())
            }
            ScopeKind::Cell => {
                NamePattern::parse(text)
                    .map(Self::Cells)
                    .ok_or_else(|| ScopeError::Name {
                        permission: permission.name,
                        scope: text.to_owned(),
                    })
            }
        }
    }

    /// Whether the scope reaches `target`.
    pub fn covers(&self, target: &Target<'_>) -> bool {
        match (self, target) {
            (Self::Everywhere, _) => true,
            (Self::Path(scope), Target::Path(path)) => {
                path.starts_with(scope)
                    && (scope.as_str().starts_with(RESERVED_PREFIX) || !is_reserved(path))
            }
            (Self::Volume(pattern), Target::Volume(volume)) => pattern.covers(volume, false),
            (Self::Cells(pattern), Target::Cell(cell)) => pattern.covers(cell, true),
            (Self::OwnCell(own), Target::Cell(cell)) => {
                NamePattern::Exact(own.clone()).covers(cell, true)
            }
            _ => false,
        }
    }
}

fn is_reserved(path: &StorePath) -> bool {
    path.starts_with(&StorePath::root().join(&RESERVED_PREFIX[1..]))
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Everywhere => Ok(()),
            Self::Path(path) if path.is_root() => f.write_str("/"),
            Self::Path(path) => write!(f, "{path}/"),
            Self::Volume(pattern) => write!(f, "volume:{pattern}"),
            Self::Cells(pattern) => write!(f, "{pattern}"),
            Self::OwnCell(cell) => write!(f, "{cell} (its own cell)"),
        }
    }
}

/// What one request reaches, for a scoped permission.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A path of the default namespace.
    Path(&'a StorePath),
    /// The whole default namespace by inode (auraefs without a volume): only an
    /// unscoped grant reaches it.
    Namespace,
    /// A volume.
    Volume(&'a str),
    /// A cell, by name (`web/api`).
    Cell(&'a str),
}

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => write!(f, "{path}"),
            Self::Namespace => f.write_str("the whole default namespace"),
            Self::Volume(volume) => write!(f, "volume:{volume}"),
            Self::Cell(cell) => write!(f, "cell {cell}"),
        }
    }
}

/// One permission held at one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The permission.
    pub permission: &'static Permission,
    /// Where.
    pub scope: Scope,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::Everywhere => f.write_str(self.permission.name),
            scope => write!(f, "{}:{scope}", self.permission.name),
        }
    }
}

/// A request refused for a missing permission: names who, what, where, and the command an
/// admin would run to grant it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{principal} lacks {permission}{at}; an admin can grant it with `aurae role create {role} --allow {grant}` then `aurae grant {principal} {role}`"
)]
pub struct Missing {
    /// Who asked.
    pub principal: String,
    /// The permission it lacks.
    pub permission: &'static str,
    /// ` on <target>`, or empty when the permission is missing everywhere.
    pub at: String,
    /// A role name to suggest.
    pub role: String,
    /// `permission[:scope]` to suggest.
    pub grant: String,
}

impl From<Missing> for Status {
    fn from(missing: Missing) -> Self {
        Status::permission_denied(missing.to_string())
    }
}

/// The grants a caller holds for one request, resolved from the current policy when the
/// request arrived. Services find it in the request extensions.
#[derive(Debug, Clone)]
pub struct Authority {
    principal: Principal,
    grants: Arc<[Grant]>,
}

impl Authority {
    /// `principal` holding `grants`.
    pub fn new(principal: Principal, grants: Arc<[Grant]>) -> Self {
        Self { principal, grants }
    }

    /// Who.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Everything it holds.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// Whether it holds `permission` at any scope.
    pub fn holds(&self, permission: &Permission) -> bool {
        self.grants.iter().any(|g| g.permission == permission)
    }

    /// The scopes it holds `permission` at.
    pub fn scopes(&self, permission: &Permission) -> impl Iterator<Item = &Scope> {
        self.grants
            .iter()
            .filter(move |g| g.permission == permission)
            .map(|g| &g.scope)
    }

    /// Whether it may use `permission` on `target`.
    pub fn allows(&self, permission: &Permission, target: &Target<'_>) -> bool {
        self.scopes(permission).any(|scope| scope.covers(target))
    }

    /// Refuses, naming what is missing, unless it may use `permission` on `target`.
    pub fn require(
        &self,
        permission: &'static Permission,
        target: &Target<'_>,
    ) -> Result<(), Missing> {
        if self.allows(permission, target) {
            return Ok(());
        }
        let suggested = match target {
            Target::Path(path) => Scope::Path((*path).clone()).to_string(),
            Target::Namespace => String::new(),
            Target::Volume(volume) => format!("volume:{volume}"),
            Target::Cell(cell) => (*cell).to_owned(),
        };
        Err(missing(
            &self.principal,
            permission,
            Some(target),
            &suggested,
        ))
    }

    /// Refuses, naming what is missing, unless it holds `permission` somewhere.
    pub fn require_somewhere(&self, permission: &'static Permission) -> Result<(), Missing> {
        if self.holds(permission) {
            Ok(())
        } else {
            Err(missing(&self.principal, permission, None, ""))
        }
    }
}

fn missing(
    principal: &Principal,
    permission: &'static Permission,
    target: Option<&Target<'_>>,
    scope: &str,
) -> Missing {
    let grant = if scope.is_empty() {
        permission.name.to_owned()
    } else {
        format!("{}:{scope}", permission.name)
    };
    Missing {
        principal: principal.to_string(),
        permission: permission.name,
        at: target.map(|t| format!(" on {t}")).unwrap_or_default(),
        role: permission.name.replace('.', "-"),
        grant,
    }
}

/// The [`Authority`] the authorization layer put on `request`; without one (a request
/// that never passed the layer) nothing is allowed.
pub fn authority_of<T>(request: &tonic::Request<T>) -> Result<&Authority, Status> {
    request
        .extensions()
        .get::<Authority>()
        .ok_or_else(|| Status::unauthenticated("no client identity"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: Permission = Permission {
        name: "storage.read",
        description: "",
        scope: ScopeKind::Storage,
        read_only: true,
    };
    const EXEC: Permission = Permission {
        name: "runtime.exec",
        description: "",
        scope: ScopeKind::Cell,
        read_only: false,
    };
    const MANAGE: Permission = Permission {
        name: "capabilities.manage",
        description: "",
        scope: ScopeKind::Unscoped,
        read_only: false,
    };

    fn path(s: &str) -> StorePath {
        s.parse().unwrap()
    }

    #[test]
    fn a_path_scope_covers_its_subtree_by_component_and_never_the_stores_own_records() {
        let services = Scope::parse(&READ, "/services/").unwrap();
        assert_eq!(services, Scope::Path(path("/services")));
        assert!(services.covers(&Target::Path(&path("/services"))));
        assert!(services.covers(&Target::Path(&path("/services/nginx/port"))));
        assert!(!services.covers(&Target::Path(&path("/servicesX"))));
        assert!(!services.covers(&Target::Path(&path("/secrets/a"))));
        assert!(!services.covers(&Target::Namespace));
        let root = Scope::parse(&READ, "/").unwrap();
        assert!(root.covers(&Target::Path(&path("/secrets/a"))));
        assert!(!root.covers(&Target::Path(&path("/.aurae/authz/roles/x"))));
        assert!(!root.covers(&Target::Volume("data")));
        let own = Scope::parse(&READ, "/.aurae/").unwrap();
        assert!(own.covers(&Target::Path(&path("/.aurae/authz"))));
        assert!(Scope::Everywhere.covers(&Target::Namespace));
    }

    #[test]
    fn volume_and_cell_scopes_take_names_or_prefixes() {
        let data = Scope::parse(&READ, "volume:data").unwrap();
        assert!(data.covers(&Target::Volume("data")));
        assert!(!data.covers(&Target::Volume("data2")));
        let team = Scope::parse(&READ, "volume:team-*").unwrap();
        assert!(team.covers(&Target::Volume("team-a")));
        assert!(!team.covers(&Target::Path(&path("/team-a"))));
        let web = Scope::parse(&EXEC, "web").unwrap();
        assert!(web.covers(&Target::Cell("web")));
        assert!(web.covers(&Target::Cell("web/api")));
        assert!(!web.covers(&Target::Cell("web2")));
        let prefix = Scope::parse(&EXEC, "web-*").unwrap();
        assert!(prefix.covers(&Target::Cell("web-1")));
        assert!(!prefix.covers(&Target::Cell("db")));
    }

    #[test]
    fn malformed_scopes_name_the_fix() {
        for (permission, scope) in [
            (&READ, "services"),
            (&READ, "volume:"),
            (&READ, "volume:a/b"),
            (&READ, "/a/../b"),
            (&EXEC, "*"),
            (&EXEC, "../x"),
            (&EXEC, "/web"),
            (&MANAGE, "x"),
        ] {
            let err = Scope::parse(permission, scope).unwrap_err();
            assert!(err.to_string().contains(scope), "{err}");
        }
    }

    #[test]
    fn a_denial_names_principal_permission_target_and_the_grant_command() {
        let alice: Principal = "alice@node1@local".parse().unwrap();
        let authority = Authority::new(
            alice,
            vec![Grant {
                permission: &READ,
                scope: Scope::Path(path("/services")),
            }]
            .into(),
        );
        assert!(
            authority
                .require(&READ, &Target::Path(&path("/services/x")))
                .is_ok()
        );
        let text = authority
            .require(&READ, &Target::Path(&path("/secrets/x")))
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("alice@node1@local")
                && text.contains("storage.read on /secrets/x")
                && text.contains("aurae role create storage-read --allow storage.read:/secrets/x/")
                && text.contains("aurae grant alice@node1@local storage-read"),
            "{text}"
        );
        assert!(authority.require_somewhere(&EXEC).is_err());
    }
}
