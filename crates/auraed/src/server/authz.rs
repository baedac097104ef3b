//! The authorization layer in front of every service served over mTLS.
//!
//! It reads the caller's principal from the client certificate, resolves what it holds
//! from the current policy (the node's admin holds everything: `admin@<this peer>@<this
//! domain>`, never the admin of another node that this node's CA happened to sign; a live
//! cell's own identity holds its own cell; anyone else what its bindings give), and
//! decides, default deny, whether it may call the method: the method's capability must
//! declare what the method needs (a method it does not declare is refused to everyone),
//! the caller must hold that permission at some scope, and the capability must be
//! enabled. Services behind it find the [`Authority`] (the principal and its grants) in
//! the request extensions and check scoped permissions against what the request names. It
//! never lets a request through without a principal. It also counts each authorized
//! request as in flight on its connection until the response body is done, so that the
//! idle timeout never closes a connection that is in use.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::connection::ConnectionPrincipal;
use super::connections::{InFlight, Role};
use aurae_core::name::Principal;
use tonic::Status;
use tower::{Layer, Service};

use super::permissions::{Authority, Missing, Needs};
use super::registry::{Capability, CapabilityRegistry};
use crate::authz::PolicyState;
use crate::runtime::credentials::CellCredentials;
use std::sync::Arc;

/// Why a request was refused, before it reached a service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No principal could be read from the connection.
    #[error("no client identity: {0}")]
    Unauthenticated(String),
    /// The principal does not hold the method's permission anywhere.
    #[error(transparent)]
    Missing(#[from] Missing),
    /// The method's capability declares no permission for it: refused to everyone.
    #[error(
        "{0} is served but its capability declares no permission for it, so it is refused to everyone"
    )]
    Undeclared(String),
    /// The method's capability is switched off.
    #[error(
        "capability '{0}' is disabled on this node; enable it with `aurae capabilities enable {0}`"
    )]
    Disabled(&'static str),
    /// No registered capability declares the service: it is never served.
    #[error(
        "no capability of this node serves '{0}'; `aurae capabilities list` shows what it serves"
    )]
    UnknownService(String),
}

impl From<Denial> for Status {
    fn from(denial: Denial) -> Self {
        match &denial {
            Denial::Unauthenticated(_) => Status::unauthenticated(denial.to_string()),
            Denial::Missing(_) | Denial::Undeclared(_) => {
                Status::permission_denied(denial.to_string())
            }
            Denial::Disabled(_) | Denial::UnknownService(_) => {
                Status::unimplemented(denial.to_string())
            }
        }
    }
}

/// The gRPC service and method of a request path `/package.Service/Method`.
fn service_and_method(path: &str) -> (&str, &str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    )
}

/// Decides whether `authority` may call `path`, with `capability_of` naming the
/// capability that declares a service and `enabled` telling whether it is on; says what
/// the method needs. Pure, so it can be tested on its own.
pub fn authorize(
    authority: &Authority,
    path: &str,
    capability_of: impl Fn(&str) -> Option<&'static Capability>,
    enabled: impl Fn(&Capability) -> bool,
) -> Result<Needs, Denial> {
    let (service, method) = service_and_method(path);
    let Some(capability) = capability_of(service) else {
        return Err(Denial::UnknownService(service.chars().take(200).collect()));
    };
    let needs = capability
        .rules_of(service)
        .and_then(|rules| rules.needs(method))
        .ok_or_else(|| Denial::Undeclared(path.chars().take(200).collect()))?;
    if let Needs::Permission(permission) = needs {
        authority.require_somewhere(permission)?;
    }
    if !enabled(capability) {
        return Err(Denial::Disabled(capability.name));
    }
    Ok(needs)
}

/// Who is calling, as read from its connection.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The principal its client certificate names.
    pub principal: Principal,
    /// Its role on this node.
    pub role: Role,
    /// For a live cell's own certificate, the cell (`web/api`).
    pub own_cell: Option<String>,
}

/// The principal the connection's client certificate named (read once per connection)
/// and its role on this node. A cell's certificate names its principal only while the
/// cell lives, and only the certificate the cell was last given.
pub fn principal_of_connection(
    extensions: &http::Extensions,
    cells: &CellCredentials,
) -> Result<Caller, Denial> {
    let connection = extensions
        .get::<ConnectionPrincipal>()
        .ok_or_else(|| Denial::Unauthenticated("no client certificate".to_owned()))?;
    let principal = connection
        .get()
        .map_err(|why| Denial::Unauthenticated(why.to_owned()))?;
    let own_cell = match &connection.connection().info().cell_serial {
        Some(serial) if !cells.is_live(principal, serial) => {
            return Err(Denial::Unauthenticated(format!(
                "the certificate of cell principal {principal} stopped working when its cell \
                 was freed (or allocated again with a new one)"
            )));
        }
        Some(_) => aurae_runtime::spec::CellName::from_principal_entity(principal.entity.as_str())
            .map(|cell| cell.to_string()),
        None => None,
    };
    Ok(Caller {
        principal: principal.clone(),
        role: connection.role(),
        own_cell,
    })
}

/// A response body that keeps its request counted as in flight on its connection until
/// the body is done or dropped: a stream of replies keeps the connection from idling.
struct TrackedBody {
    inner: tonic::body::Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = <tonic::body::Body as http_body::Body>::Data;
    type Error = <tonic::body::Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Puts [`Authz`] in front of a service.
#[derive(Debug, Clone)]
pub struct AuthzLayer {
    decider: Arc<Decider>,
}

/// What the layer decides with.
#[derive(Debug)]
pub struct Decider {
    /// The capabilities and which are enabled.
    pub registry: Arc<CapabilityRegistry>,
    /// Which cell certificates still work.
    pub cells: CellCredentials,
    /// Roles and bindings.
    pub policy: Arc<PolicyState>,
    /// Log allowed requests too.
    pub audit: bool,
}

impl AuthzLayer {
    /// What the layer decides with, for checks made outside it.
    pub fn decider(&self) -> Arc<Decider> {
        self.decider.clone()
    }

    /// A layer deciding with `decider`.
    pub fn new(decider: Decider) -> Self {
        Self {
            decider: Arc::new(decider),
        }
    }
}

/// A denial, with the principal it was for when one was read.
type Refused = (Denial, Option<Principal>);

impl Decider {
    /// Whether the caller on the connection of `extensions` holds `permission` of the
    /// enabled `capability`: for what is decided outside the layer, on no one method
    /// (forwarding a call to another peer).
    pub fn check_permission(
        &self,
        extensions: &http::Extensions,
        capability: &'static Capability,
        permission: &'static crate::server::permissions::Permission,
    ) -> Result<(), Status> {
        let caller = principal_of_connection(extensions, &self.cells).map_err(Status::from)?;
        if !self.registry.is_enabled(capability) {
            return Err(Denial::Disabled(capability.name).into());
        }
        let grants = self.policy.current().grants_of(
            &caller.principal,
            caller.role == Role::NodeAdmin,
            caller.own_cell.as_deref(),
        );
        Authority::new(caller.principal, grants)
            .require_somewhere(permission)
            .map_err(|missing| Denial::Missing(missing).into())
    }

    /// The caller's authority for `request` and whether it may call it.
    fn decide(
        &self,
        extensions: &http::Extensions,
        path: &str,
    ) -> Result<(Authority, Role), Box<Refused>> {
        let caller =
            principal_of_connection(extensions, &self.cells).map_err(|d| Box::new((d, None)))?;
        let grants = self.policy.current().grants_of(
            &caller.principal,
            caller.role == Role::NodeAdmin,
            caller.own_cell.as_deref(),
        );
        let authority = Authority::new(caller.principal, grants);
        let registry = &self.registry;
        match authorize(
            &authority,
            path,
            |service| registry.capability_of_service(service),
            |capability| registry.is_enabled(capability),
        ) {
            Ok(needs) => {
                if self.audit {
                    let permission = match needs {
                        Needs::AnyPrincipal => "",
                        Needs::Permission(p) => p.name,
                    };
                    tracing::info!(principal = %authority.principal(), method = path, permission, "request allowed");
                }
                Ok((authority, caller.role))
            }
            Err(denial) => Err(Box::new((denial, Some(authority.principal().clone())))),
        }
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authz {
            inner,
            decider: self.decider.clone(),
        }
    }
}

/// The authorization service wrapping every gRPC service.
#[derive(Debug, Clone)]
pub struct Authz<S> {
    inner: S,
    decider: Arc<Decider>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<http::Request<B>> for Authz<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let decision = self
            .decider
            .decide(request.extensions(), request.uri().path());
        match decision {
            Ok((authority, role)) => {
                let in_flight = request
                    .extensions()
                    .get::<ConnectionPrincipal>()
                    .map(|connection| connection.connection().request_started());
                request.extensions_mut().insert(authority);
                request.extensions_mut().insert(role);
                let response = self.inner.call(request);
                Box::pin(async move {
                    let response = response.await?;
                    Ok(match in_flight {
                        Some(in_flight) => response.map(|inner| {
                            tonic::body::Body::new(TrackedBody {
                                inner,
                                _in_flight: in_flight,
                            })
                        }),
                        None => response,
                    })
                })
            }
            Err(refused) => {
                let (denial, principal) = *refused;
                if let Denial::Missing(missing) = &denial {
                    tracing::info!(
                        principal = %missing.principal,
                        permission = missing.permission,
                        method = request.uri().path(),
                        "request denied: permission missing"
                    );
                } else {
                    let principal = principal.map(|p| p.to_string()).unwrap_or_default();
                    tracing::info!(%principal, method = request.uri().path(), %denial, "request denied");
                }
                let response = Status::from(denial).into_http();
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::policy::Policy;

    fn capability_of(service: &str) -> Option<&'static Capability> {
        crate::CAPABILITIES
            .iter()
            .copied()
            .find(|c| c.rules_of(service).is_some())
    }

    fn authority(principal: &str, node_admin: bool, bound: &[&str]) -> Authority {
        let principal: Principal = principal.parse().unwrap();
        let catalog = crate::authz::catalog();
        let mut policy = Policy::builtin(catalog.clone());
        if !bound.is_empty() {
            let role = crate::authz::policy::Role {
                name: "r".parse().unwrap(),
                grants: bound
                    .iter()
                    .map(|g| crate::authz::policy::parse_grant(&catalog, g).unwrap())
                    .collect(),
                builtin: false,
            };
            policy = policy
                .with_role(role, false)
                .unwrap()
                .with_binding(
                    crate::authz::policy::PrincipalPattern::Exact(principal.clone()),
                    &"r".parse().unwrap(),
                )
                .unwrap()
                .unwrap();
        }
        let grants = policy.grants_of(&principal, node_admin, None);
        Authority::new(principal, grants)
    }

    #[test]
    fn admin_may_call_anything_enabled() {
        let admin = authority("admin@node1@local", true, &[]);
        assert!(authorize(&admin, "/aurae.v0.System/Status", capability_of, |_| true).is_ok());
        assert_eq!(
            authorize(
                &admin,
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                capability_of,
                |_| false
            )
            .unwrap_err(),
            Denial::Disabled("reflection")
        );
    }

    #[test]
    fn other_principals_are_denied_by_default_but_may_check_health_and_ask_who_they_are() {
        let alice = authority("alice@node1@local", false, &[]);
        let err = authorize(&alice, "/aurae.v0.Capabilities/List", capability_of, |_| {
            true
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("alice@node1@local") && text.contains("capabilities.read"),
            "{text}"
        );
        for open in ["/grpc.health.v1.Health/Check", "/aurae.v0.Authz/WhoAmI"] {
            assert!(
                authorize(&alice, open, capability_of, |_| true).is_ok(),
                "{open}"
            );
        }
    }

    #[test]
    fn a_bound_permission_opens_its_methods_and_no_other() {
        let alice = authority("alice@node1@local", false, &["storage.read:/services/"]);
        assert!(authorize(&alice, "/aurae.v0.Storage/Get", capability_of, |_| true).is_ok());
        let err = authorize(&alice, "/aurae.v0.Storage/Put", capability_of, |_| true).unwrap_err();
        assert!(err.to_string().contains("storage.write"), "{err}");
    }

    #[test]
    fn the_admin_of_another_node_holds_no_rights_here() {
        let other = authority("admin@otherpeer@other.example", false, &[]);
        let err = authorize(&other, "/aurae.v0.Capabilities/List", capability_of, |_| {
            true
        })
        .unwrap_err();
        assert!(matches!(err, Denial::Missing(_)), "{err}");
    }

    #[test]
    fn a_service_or_method_nobody_declared_is_refused_even_to_the_admin() {
        let admin = authority("admin@node1@local", true, &[]);
        assert_eq!(
            authorize(&admin, "/no.Such/Thing", capability_of, |_| true).unwrap_err(),
            Denial::UnknownService("no.Such".to_owned())
        );
        let err = authorize(
            &admin,
            "/aurae.v0.Storage/Frobnicate",
            capability_of,
            |_| true,
        )
        .unwrap_err();
        assert!(matches!(err, Denial::Undeclared(_)), "{err}");
        assert_eq!(Status::from(err).code(), tonic::Code::PermissionDenied);
    }

    /// Every method of every service this build serves is declared by its capability,
    /// and every declaration names a real method: a method added to a .proto without a
    /// permission fails here before it can be refused in production.
    #[test]
    fn every_served_method_has_a_declared_need_and_every_declaration_a_method() {
        use prost::Message;
        let mut served: Vec<(String, String)> = Vec::new();
        for set in [
            aurae_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let set = prost_types::FileDescriptorSet::decode(set).unwrap();
            for file in set.file {
                let package = file.package().to_owned();
                for service in file.service {
                    let name = format!("{package}.{}", service.name());
                    for method in service.method {
                        served.push((name.clone(), method.name().to_owned()));
                    }
                }
            }
        }
        for (service, method) in &served {
            let capability = capability_of(service)
                .unwrap_or_else(|| panic!("no capability declares service {service}"));
            assert!(
                capability
                    .rules_of(service)
                    .unwrap()
                    .needs(method)
                    .is_some(),
                "{service}/{method} has no declared permission"
            );
        }
        for capability in crate::CAPABILITIES {
            for rules in capability.services {
                for (method, _) in rules.methods {
                    let known = served
                        .iter()
                        .any(|(s, m)| s == rules.service && m == method)
                        || rules.service.starts_with("grpc.reflection.");
                    assert!(
                        known,
                        "{} declares {method}, which it does not serve",
                        rules.service
                    );
                }
            }
        }
    }

    #[test]
    fn a_connection_without_certificates_has_no_principal() {
        let denial = principal_of_connection(&http::Extensions::new(), &CellCredentials::default())
            .unwrap_err();
        assert!(matches!(denial, Denial::Unauthenticated(_)));
    }
}
