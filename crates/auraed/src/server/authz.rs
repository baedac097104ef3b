//! The authorization layer in front of every service served over mTLS.
//!
//! It reads the caller's principal from the client certificate, decides (default deny)
//! whether that principal may call the method (by the access its capability declares:
//! admin access means the admin of this node, `admin@<this peer>@<this domain>`, never
//! the admin of another node that this node's CA happened to sign), and whether the
//! method's capability is enabled. A service no registered capability declares is
//! refused (fail closed). Services behind it find the [`Principal`] in the request
//! extensions. It must never let a request through without a principal. It also counts
//! each authorized request as in flight on its connection until the response body is
//! done, so that the idle timeout never closes a connection that is in use.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::connection::ConnectionPrincipal;
use super::connections::{InFlight, Role};
use aurae_core::name::Principal;
use tonic::Status;
use tower::{Layer, Service};

use super::registry::{Access, Capability, CapabilityRegistry};
use crate::runtime::credentials::CellCredentials;
use std::sync::Arc;

/// Why a request was refused, before it reached a service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No principal could be read from the connection.
    #[error("no client identity: {0}")]
    Unauthenticated(String),
    /// The principal holds no right to the method.
    #[error(
        "{principal} may not call {method}: only the admin of this node holds rights on it; ask its admin"
    )]
    Forbidden {
        /// Who asked.
        principal: String,
        /// What they asked for.
        method: String,
    },
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
            Denial::Forbidden { .. } => Status::permission_denied(denial.to_string()),
            Denial::Disabled(_) | Denial::UnknownService(_) => {
                Status::unimplemented(denial.to_string())
            }
        }
    }
}

/// The gRPC service name of a request path `/package.Service/Method`.
fn service_of(path: &str) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

/// Decides whether `principal`, whose role on this node is `role`, may call `path`, with
/// `capability_of` naming the capability that declares a service and `enabled` telling
/// whether it is on. Pure, so it can be tested on its own.
pub fn authorize(
    principal: &Principal,
    role: Role,
    path: &str,
    capability_of: impl Fn(&str) -> Option<&'static Capability>,
    enabled: impl Fn(&Capability) -> bool,
) -> Result<(), Denial> {
    let service = service_of(path);
    let Some(capability) = capability_of(service) else {
        return Err(Denial::UnknownService(service.chars().take(200).collect()));
    };
    let allowed = match capability.access {
        Access::AnyPrincipal | Access::Scoped => true,
        Access::Admin => role == Role::NodeAdmin,
    };
    if !allowed {
        return Err(Denial::Forbidden {
            principal: principal.to_string(),
            method: path.chars().take(200).collect(),
        });
    }
    if !enabled(capability) {
        return Err(Denial::Disabled(capability.name));
    }
    Ok(())
}

/// The principal the connection's client certificate named (read once per connection)
/// and its role on this node. A cell's certificate names its principal only while the
/// cell lives, and only the certificate the cell was last given.
pub fn principal_of_connection(
    extensions: &http::Extensions,
    cells: &CellCredentials,
) -> Result<(Principal, Role), Denial> {
    let connection = extensions
        .get::<ConnectionPrincipal>()
        .ok_or_else(|| Denial::Unauthenticated("no client certificate".to_owned()))?;
    let principal = connection
        .get()
        .map_err(|why| Denial::Unauthenticated(why.to_owned()))?;
    if let Some(serial) = &connection.connection().info().cell_serial
        && !cells.is_live(principal, serial)
    {
        return Err(Denial::Unauthenticated(format!(
            "the certificate of cell principal {principal} stopped working when its cell \
             was freed (or allocated again with a new one)"
        )));
    }
    Ok((principal.clone(), connection.role()))
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
    registry: Arc<CapabilityRegistry>,
    cells: CellCredentials,
}

impl AuthzLayer {
    /// A layer deciding with `registry`'s enabled set, and `cells` for which cell
    /// certificates still work.
    pub fn new(registry: Arc<CapabilityRegistry>, cells: CellCredentials) -> Self {
        Self { registry, cells }
    }
}

impl<S> Layer<S> for AuthzLayer {
    type Service = Authz<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authz {
            inner,
            registry: self.registry.clone(),
            cells: self.cells.clone(),
        }
    }
}

/// The authorization service wrapping every gRPC service.
#[derive(Debug, Clone)]
pub struct Authz<S> {
    inner: S,
    registry: Arc<CapabilityRegistry>,
    cells: CellCredentials,
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
        let decision = principal_of_connection(request.extensions(), &self.cells).and_then(
            |(principal, role)| {
                let registry = &self.registry;
                authorize(
                    &principal,
                    role,
                    request.uri().path(),
                    |service| registry.capability_of_service(service),
                    |capability| registry.is_enabled(capability),
                )
                .map(|()| (principal, role))
            },
        );
        match decision {
            Ok((principal, role)) => {
                let in_flight = request
                    .extensions()
                    .get::<ConnectionPrincipal>()
                    .map(|connection| connection.connection().request_started());
                request.extensions_mut().insert(principal);
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
            Err(denial) => {
                tracing::info!(method = request.uri().path(), %denial, "request denied");
                let response = Status::from(denial).into_http();
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(s: &str) -> Principal {
        s.parse().unwrap()
    }

    fn capability_of(service: &str) -> Option<&'static Capability> {
        crate::CAPABILITIES
            .iter()
            .copied()
            .find(|c| c.services.contains(&service))
    }

    #[test]
    fn admin_may_call_anything_enabled() {
        let admin = principal("admin@node1@local");
        assert_eq!(
            authorize(
                &admin,
                Role::NodeAdmin,
                "/aurae.v0.System/Status",
                capability_of,
                |_| true
            ),
            Ok(())
        );
        assert_eq!(
            authorize(
                &admin,
                Role::NodeAdmin,
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                capability_of,
                |_| false
            ),
            Err(Denial::Disabled("reflection"))
        );
    }

    #[test]
    fn other_principals_are_denied_by_default_but_may_check_health() {
        let alice = principal("alice@node1@local");
        let err = authorize(
            &alice,
            Role::Other,
            "/aurae.v0.Capabilities/List",
            capability_of,
            |_| true,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("alice@node1@local") && text.contains("/aurae.v0.Capabilities/List"),
            "{text}"
        );
        assert_eq!(
            authorize(
                &alice,
                Role::Other,
                "/grpc.health.v1.Health/Check",
                capability_of,
                |_| true
            ),
            Ok(())
        );
    }

    #[test]
    fn the_admin_of_another_node_holds_no_rights_here() {
        let other = principal("admin@otherpeer@other.example");
        let err = authorize(
            &other,
            Role::Other,
            "/aurae.v0.Capabilities/List",
            capability_of,
            |_| true,
        )
        .unwrap_err();
        assert!(matches!(err, Denial::Forbidden { .. }), "{err}");
    }

    #[test]
    fn a_service_no_capability_declares_is_refused_even_to_the_admin() {
        let admin = principal("admin@node1@local");
        assert_eq!(
            authorize(
                &admin,
                Role::NodeAdmin,
                "/no.Such/Thing",
                capability_of,
                |_| true
            ),
            Err(Denial::UnknownService("no.Such".to_owned()))
        );
    }

    #[test]
    fn a_connection_without_certificates_has_no_principal() {
        let denial = principal_of_connection(&http::Extensions::new(), &CellCredentials::default())
            .unwrap_err();
        assert!(matches!(denial, Denial::Unauthenticated(_)));
    }
}
