//! The `aurae.v0.Authz` gRPC service: parse at the edge, change the policy through
//! [`PolicyState`], map errors.

use std::sync::Arc;

use aurae_core::pki::NodeNames;
use aurae_proto::v0 as pb;
use tonic::{Request, Response, Status};

use super::policy::{
    ADMIN_ROLE, CELL_ROLE, Policy, PolicyError, PrincipalPattern, Role, RoleName, cell_role,
    grant_of, node_admin,
};
use super::state::{ChangeError, PolicyState, Touched};
use crate::context::Daemon;
use crate::server::connections::Role as ConnectionRole;
use crate::server::permissions::{Grant, Scope, authority_of};

impl From<PolicyError> for Status {
    fn from(e: PolicyError) -> Self {
        let message = e.to_string();
        match e {
            PolicyError::BadRoleName(_)
            | PolicyError::BadPattern { .. }
            | PolicyError::UnknownPermission { .. }
            | PolicyError::BadScope(_)
            | PolicyError::Empty(_) => Status::invalid_argument(message),
            PolicyError::NoRole(_) | PolicyError::NoBinding { .. } => Status::not_found(message),
            PolicyError::RoleExists(_) => Status::already_exists(message),
            PolicyError::Builtin(_) | PolicyError::StillBound { .. } | PolicyError::LockOut(_) => {
                Status::failed_precondition(message)
            }
        }
    }
}

impl From<ChangeError> for Status {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::Policy(e) => e.into(),
            ChangeError::NoStore | ChangeError::Store(_) => Status::unavailable(e.to_string()),
        }
    }
}

fn scoped(grant: &Grant) -> pb::ScopedPermission {
    pb::ScopedPermission {
        permission: grant.permission.name.to_owned(),
        scope: match &grant.scope {
            Scope::Everywhere => String::new(),
            scope => scope.to_string(),
        },
    }
}

fn role_info(policy: &Policy, role: &Role) -> pb::RoleInfo {
    pb::RoleInfo {
        name: role.name.to_string(),
        permissions: role.grants.iter().map(scoped).collect(),
        builtin: role.builtin,
        bound_to: policy
            .bound_to(&role.name)
            .map(ToString::to_string)
            .collect(),
    }
}

fn binding(pattern: impl ToString, role: &str, builtin: bool) -> pb::Binding {
    pb::Binding {
        pattern: pattern.to_string(),
        role: role.to_owned(),
        builtin,
    }
}

/// The `aurae.v0.Authz` gRPC service.
#[derive(Debug, Clone)]
pub struct AuthzService {
    daemon: Arc<Daemon>,
}

impl AuthzService {
    /// The service over the daemon's policy.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }

    fn policy(&self) -> &PolicyState {
        &self.daemon.policy
    }

    /// This node's names, for the built-in bindings; `None` while unreadable.
    fn node(&self) -> Option<NodeNames> {
        NodeNames::load(&self.daemon.pki).ok()
    }

    /// The built-in bindings, as listed beside the stored ones.
    fn builtin_bindings(&self) -> Vec<pb::Binding> {
        let mut out = Vec::new();
        if let Some(node) = self.node() {
            if let Some(admin) = node_admin(&node) {
                out.push(binding(admin, ADMIN_ROLE, true));
            }
            out.push(binding(
                format!("<each live cell>@{}@{}", node.peer, node.domain),
                CELL_ROLE,
                true,
            ));
        }
        out
    }
}

fn role_name(text: &str) -> Result<RoleName, Status> {
    Ok(text.parse::<RoleName>()?)
}

fn pattern(text: &str) -> Result<PrincipalPattern, Status> {
    Ok(text.parse::<PrincipalPattern>()?)
}

#[tonic::async_trait]
impl pb::authz_server::Authz for AuthzService {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let authority = authority_of(&request)?;
        let principal = authority.principal();
        let node_admin =
            request.extensions().get::<ConnectionRole>() == Some(&ConnectionRole::NodeAdmin);
        let policy = self.policy().current();
        let mut bindings: Vec<pb::Binding> = Vec::new();
        if node_admin {
            bindings.push(binding(principal, ADMIN_ROLE, true));
        }
        if authority
            .grants()
            .iter()
            .any(|g| matches!(g.scope, Scope::OwnCell(_)))
        {
            bindings.push(binding(principal, CELL_ROLE, true));
        }
        for (pattern, roles) in policy.bindings() {
            if pattern.matches(principal) {
                bindings.extend(roles.iter().map(|r| binding(pattern, r.as_str(), false)));
            }
        }
        Ok(Response::new(pb::WhoAmIResponse {
            principal: principal.to_string(),
            bindings,
            permissions: authority.grants().iter().map(scoped).collect(),
            node_admin,
        }))
    }

    async fn permissions(
        &self,
        _request: Request<pb::PermissionsRequest>,
    ) -> Result<Response<pb::PermissionsResponse>, Status> {
        let permissions = crate::CAPABILITIES
            .iter()
            .flat_map(|c| c.permissions.iter().map(move |p| (c.name, p)))
            .map(|(capability, p)| pb::PermissionInfo {
                name: p.name.to_owned(),
                description: p.description.to_owned(),
                scope_kind: p.scope.describe().to_owned(),
                read_only: p.read_only,
                capability: capability.to_owned(),
            })
            .collect();
        Ok(Response::new(pb::PermissionsResponse { permissions }))
    }

    async fn list_roles(
        &self,
        _request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let policy = self.policy().current();
        let mut roles: Vec<pb::RoleInfo> = policy.roles().map(|r| role_info(&policy, r)).collect();
        roles.push(role_info(&policy, &cell_role(policy.catalog())));
        Ok(Response::new(pb::ListRolesResponse { roles }))
    }

    async fn get_role(
        &self,
        request: Request<pb::GetRoleRequest>,
    ) -> Result<Response<pb::RoleInfo>, Status> {
        let name = role_name(&request.into_inner().name)?;
        let policy = self.policy().current();
        if name.as_str() == CELL_ROLE {
            return Ok(Response::new(role_info(
                &policy,
                &cell_role(policy.catalog()),
            )));
        }
        let role = policy
            .role(name.as_str())
            .ok_or_else(|| Status::from(PolicyError::NoRole(name.to_string())))?;
        let mut info = role_info(&policy, role);
        if name.as_str() == ADMIN_ROLE
            && let Some(admin) = self.node().as_ref().and_then(node_admin)
        {
            info.bound_to.insert(0, admin.to_string());
        }
        Ok(Response::new(info))
    }

    async fn create_role(
        &self,
        request: Request<pb::CreateRoleRequest>,
    ) -> Result<Response<pb::RoleInfo>, Status> {
        let request = request.into_inner();
        let name = role_name(&request.name)?;
        let catalog = self.policy().current().catalog().to_vec();
        let grants = request
            .permissions
            .iter()
            .map(|p| grant_of(&catalog, &p.permission, &p.scope))
            .collect::<Result<Vec<_>, _>>()?;
        let role = Role {
            name: name.clone(),
            grants,
            builtin: false,
        };
        let replace = request.replace;
        let policy = self
            .policy()
            .change(
                move |p| p.with_role(role, replace).map(Some),
                Touched::Role(name.clone()),
            )
            .await?;
        tracing::info!(role = %name, "role written");
        let role = policy
            .role(name.as_str())
            .ok_or_else(|| Status::internal("the role vanished after it was written"))?;
        Ok(Response::new(role_info(&policy, role)))
    }

    async fn delete_role(
        &self,
        request: Request<pb::DeleteRoleRequest>,
    ) -> Result<Response<pb::DeleteRoleResponse>, Status> {
        let name = role_name(&request.into_inner().name)?;
        let doomed = name.clone();
        self.policy()
            .change(
                move |p| p.without_role(&doomed).map(Some),
                Touched::Role(name.clone()),
            )
            .await?;
        tracing::info!(role = %name, "role removed");
        Ok(Response::new(pb::DeleteRoleResponse {}))
    }

    async fn list_bindings(
        &self,
        request: Request<pb::ListBindingsRequest>,
    ) -> Result<Response<pb::ListBindingsResponse>, Status> {
        let wanted = request.into_inner().pattern;
        let only = if wanted.is_empty() {
            None
        } else {
            Some(pattern(&wanted)?)
        };
        let policy = self.policy().current();
        let mut bindings: Vec<pb::Binding> = self
            .builtin_bindings()
            .into_iter()
            .filter(|b| only.is_none() || b.pattern == wanted)
            .collect();
        for (pattern, roles) in policy.bindings() {
            if only.as_ref().is_none_or(|only| only == pattern) {
                bindings.extend(roles.iter().map(|r| binding(pattern, r.as_str(), false)));
            }
        }
        Ok(Response::new(pb::ListBindingsResponse { bindings }))
    }

    async fn grant(
        &self,
        request: Request<pb::GrantRequest>,
    ) -> Result<Response<pb::Binding>, Status> {
        let request = request.into_inner();
        let (who, role) = (pattern(&request.pattern)?, role_name(&request.role)?);
        let (w, r) = (who.clone(), role.clone());
        self.policy()
            .change(
                move |p| p.with_binding(w, &r),
                Touched::Binding(who.clone()),
            )
            .await?;
        tracing::info!(pattern = %who, %role, "role granted");
        Ok(Response::new(binding(&who, role.as_str(), false)))
    }

    async fn ungrant(
        &self,
        request: Request<pb::UngrantRequest>,
    ) -> Result<Response<pb::UngrantResponse>, Status> {
        let request = request.into_inner();
        let (who, role) = (pattern(&request.pattern)?, role_name(&request.role)?);
        let node = self.node();
        let (w, r) = (who.clone(), role.clone());
        self.policy()
            .change(
                move |p| p.without_binding(&w, &r, node.as_ref()).map(Some),
                Touched::Binding(who.clone()),
            )
            .await?;
        tracing::info!(pattern = %who, %role, "role ungranted");
        Ok(Response::new(pb::UngrantResponse {}))
    }
}
