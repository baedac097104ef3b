//! `aurae.v0.Peer` and `aurae.v0.Discovery` over the running swarm.

use std::sync::Arc;
use std::time::Duration;

use aurae_core::name::Principal;
use aurae_proto::v0 as pb;
use libp2p::PeerId;
use tonic::{Request, Response, Status};

use super::settings::{PeerSettings, multiaddrs};
use super::{node_name, parse_entity, parse_peer, records, resolve_peer, trust};
use crate::authz::policy::{PrincipalPattern, RoleName};
use crate::authz::state::Touched;
use crate::context::Daemon;

/// The Peer service.
#[derive(Debug, Clone)]
pub struct PeerService {
    daemon: Arc<Daemon>,
}

impl PeerService {
    /// The service over `daemon`'s peer state.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }
}

/// The Discovery service.
#[derive(Debug, Clone)]
pub struct DiscoveryService {
    daemon: Arc<Daemon>,
}

impl DiscoveryService {
    /// The service over `daemon`'s peer state.
    pub fn new(daemon: Arc<Daemon>) -> Self {
        Self { daemon }
    }
}

fn network(daemon: &Daemon) -> Result<Arc<super::swarm::Network>, Status> {
    daemon.peer.network().map_err(|_| {
        let why = daemon.peer.stopped_because();
        Status::failed_precondition(format!(
            "the peer network is not running: {}",
            if why.is_empty() {
                "it is starting"
            } else {
                why.as_str()
            }
        ))
    })
}

fn peer_id(text: &str) -> Result<PeerId, Status> {
    text.parse().map_err(|e| {
        Status::invalid_argument(format!(
            "'{}' is not a PeerId ({e}); a PeerId looks like 12D3KooW... (see `aurae peer id` on that node)",
            text.chars().take(100).collect::<String>()
        ))
    })
}

#[tonic::async_trait]
impl pb::peer_server::Peer for PeerService {
    async fn id(
        &self,
        _request: Request<pb::PeerIdRequest>,
    ) -> Result<Response<pb::PeerIdResponse>, Status> {
        let network = network(&self.daemon)?;
        let addresses = network.addresses().await.map_err(|e| e.to_status())?;
        let (peer, domain) = node_name(&self.daemon);
        let text = |addrs: Vec<libp2p::Multiaddr>| addrs.iter().map(ToString::to_string).collect();
        Ok(Response::new(pb::PeerIdResponse {
            peer_id: network.local_peer_id().to_string(),
            name: format!("{peer}@{domain}"),
            listen_addrs: text(addresses.listen),
            external_addrs: text(addresses.external),
            relay_server: network.is_relay_server(),
        }))
    }

    async fn ping(
        &self,
        request: Request<pb::PingPeerRequest>,
    ) -> Result<Response<pb::PingPeerResponse>, Status> {
        let text = request.into_inner().peer;
        let network = network(&self.daemon)?;
        let peer = if text.starts_with('/') {
            let addrs =
                multiaddrs("peer", std::slice::from_ref(&text), true).map_err(|e| e.to_status())?;
            let Some(addr) = addrs.into_iter().next() else {
                return Err(Status::invalid_argument("no multiaddr given"));
            };
            let (peer, _) = network.dial(addr).await.map_err(|e| e.to_status())?;
            peer
        } else {
            let address = parse_peer(&text)?;
            let (peer, addrs, _, _) = resolve_peer(&self.daemon, &address).await?;
            network
                .dial_peer(peer, &addrs)
                .await
                .map_err(|e| e.to_status())?;
            peer
        };
        let rtt = network.ping(peer).await.map_err(|e| e.to_status())?;
        Ok(Response::new(pb::PingPeerResponse {
            peer_id: peer.to_string(),
            rtt_us: u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX),
        }))
    }

    async fn dial(
        &self,
        request: Request<pb::DialPeerRequest>,
    ) -> Result<Response<pb::DialPeerResponse>, Status> {
        let text = request.into_inner().multiaddr;
        let Some(addr) = multiaddrs("multiaddr", std::slice::from_ref(&text), true)
            .map_err(|e| e.to_status())?
            .into_iter()
            .next()
        else {
            return Err(Status::invalid_argument("no multiaddr given"));
        };
        let network = network(&self.daemon)?;
        let (peer, kind) = network.dial(addr).await.map_err(|e| e.to_status())?;
        Ok(Response::new(pb::DialPeerResponse {
            peer_id: peer.to_string(),
            connection: kind.as_str().to_owned(),
        }))
    }

    async fn trust(
        &self,
        request: Request<pb::TrustPeerRequest>,
    ) -> Result<Response<pb::TrustPeerResponse>, Status> {
        let request = request.into_inner();
        let peer = peer_id(&request.peer_id)?;
        let principal: Principal = if request.principal.is_empty() {
            trust::default_principal(&peer).map_err(|e| {
                Status::invalid_argument(format!(
                    "PeerId {peer} gives no default principal ({e}); name one with --as"
                ))
            })?
        } else {
            request
                .principal
                .parse()
                .map_err(|e: aurae_core::name::NameError| {
                    Status::invalid_argument(format!("principal: {e}"))
                })?
        };
        let roles = request
            .roles
            .iter()
            .map(|r| {
                r.parse::<RoleName>()
                    .map_err(|e| Status::invalid_argument(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (name, domain) = node_name(&self.daemon);
        self.daemon
            .peer
            .trust
            .trust(peer, principal.clone(), Some((&name, &domain)))
            .await
            .map_err(trust::TrustError::into_status)?;
        if !roles.is_empty() {
            let pattern = PrincipalPattern::Exact(principal.clone());
            self.daemon
                .policy
                .change(
                    |policy| {
                        let mut next: Option<crate::authz::policy::Policy> = None;
                        for role in &roles {
                            let base = next.as_ref().unwrap_or(policy);
                            if let Some(bound) = base.with_binding(pattern.clone(), role)? {
                                next = Some(bound);
                            }
                        }
                        Ok(next)
                    },
                    Touched::Binding(PrincipalPattern::Exact(principal.clone())),
                )
                .await
                .map_err(Status::from)?;
        }
        // Its open streams were admitted as whatever it was before: they end, and its next
        // call comes in as the principal it is trusted as now.
        let text = peer.to_string();
        self.daemon
            .connections
            .close_where(|info| info.remote_peer.as_deref() == Some(text.as_str()));
        tracing::info!(%peer, %principal, "peer trusted");
        Ok(Response::new(pb::TrustPeerResponse {
            trusted: Some(pb::TrustedPeer {
                peer_id: peer.to_string(),
                principal: principal.to_string(),
            }),
        }))
    }

    async fn untrust(
        &self,
        request: Request<pb::UntrustPeerRequest>,
    ) -> Result<Response<pb::UntrustPeerResponse>, Status> {
        let peer = peer_id(&request.into_inner().peer_id)?;
        let removed = self
            .daemon
            .peer
            .trust
            .untrust(&peer)
            .await
            .map_err(trust::TrustError::into_status)?;
        let text = peer.to_string();
        let closed = self
            .daemon
            .connections
            .close_where(|info| info.remote_peer.as_deref() == Some(text.as_str()));
        tracing::info!(%peer, removed, closed, "peer untrusted");
        Ok(Response::new(pb::UntrustPeerResponse { removed }))
    }

    async fn list_trusted(
        &self,
        _request: Request<pb::ListTrustedRequest>,
    ) -> Result<Response<pb::ListTrustedResponse>, Status> {
        let peers = self
            .daemon
            .peer
            .trust
            .entries()
            .iter()
            .map(|(peer, principal)| pb::TrustedPeer {
                peer_id: peer.to_string(),
                principal: principal.to_string(),
            })
            .collect();
        Ok(Response::new(pb::ListTrustedResponse { peers }))
    }

    async fn get_config(
        &self,
        _request: Request<pb::GetPeerConfigRequest>,
    ) -> Result<Response<pb::GetPeerConfigResponse>, Status> {
        Ok(Response::new(pb::GetPeerConfigResponse {
            config: Some(self.daemon.peer.settings().to_proto()),
        }))
    }

    async fn set_config(
        &self,
        request: Request<pb::SetPeerConfigRequest>,
    ) -> Result<Response<pb::SetPeerConfigResponse>, Status> {
        let config = request
            .into_inner()
            .config
            .ok_or_else(|| Status::invalid_argument("config is missing"))?;
        let settings = PeerSettings::from_proto(&config).map_err(|e| e.to_status())?;
        self.daemon
            .peer
            .store_settings(&self.daemon, settings.clone())
            .await?;
        Ok(Response::new(pb::SetPeerConfigResponse {
            config: Some(settings.to_proto()),
        }))
    }
}

#[tonic::async_trait]
impl pb::discovery_server::Discovery for DiscoveryService {
    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        let request = request.into_inner();
        let timeout = match request.timeout_ms {
            0 => Duration::from_secs(30),
            ms => Duration::from_millis(u64::from(ms)),
        };
        // `<entity>@<peer>[@<domain>]` when it parses so; else `<peer>[@<domain>]`.
        let (entity, address) = match parse_entity(&request.name) {
            Ok(entity) if entity.domain.is_some() || !looks_like_domain(&request.name) => {
                let address = entity.peer_address();
                (Some(entity), address)
            }
            _ => (None, parse_peer(&request.name)?),
        };
        let (_, local) = node_name(&self.daemon);
        let resolved = tokio::time::timeout(timeout, resolve_peer(&self.daemon, &address))
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no answer for '{}' within {} ms",
                    request.name,
                    timeout.as_millis()
                ))
            })??;
        let (peer, mut addrs, record, hops) = resolved;
        let network = network(&self.daemon)?;
        if addrs.is_empty() {
            addrs = network
                .peers()
                .await
                .map_err(|e| e.to_status())?
                .into_iter()
                .find(|known| known.peer == Some(peer))
                .map(|known| known.addrs)
                .unwrap_or_default();
        }
        let entity_provided = match &entity {
            Some(entity) => {
                let full = entity.with_domain(&local).to_string();
                let providers =
                    tokio::time::timeout(timeout, network.providers(records::provider_key(&full)))
                        .await
                        .map_err(|_| {
                            Status::deadline_exceeded(format!(
                                "no provider answer for '{full}' in time"
                            ))
                        })?
                        .map_err(|e| e.to_status())?;
                providers.contains(&peer)
            }
            None => false,
        };
        Ok(Response::new(pb::ResolveResponse {
            peer_id: peer.to_string(),
            addrs: addrs.iter().map(ToString::to_string).collect(),
            name: record.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
            sequence: record.as_ref().map_or(0, |r| r.sequence),
            hops,
            entity_provided,
        }))
    }

    async fn providers(
        &self,
        request: Request<pb::ProvidersRequest>,
    ) -> Result<Response<pb::ProvidersResponse>, Status> {
        let request = request.into_inner();
        let entity = parse_entity(&request.name)?;
        let (_, local) = node_name(&self.daemon);
        let full = entity.with_domain(&local).to_string();
        let timeout = match request.timeout_ms {
            0 => Duration::from_secs(30),
            ms => Duration::from_millis(u64::from(ms)),
        };
        let network = network(&self.daemon)?;
        let providers =
            tokio::time::timeout(timeout, network.providers(records::provider_key(&full)))
                .await
                .map_err(|_| {
                    Status::deadline_exceeded(format!(
                        "no provider answer for '{full}' within {} ms",
                        timeout.as_millis()
                    ))
                })?
                .map_err(|e| e.to_status())?;
        let mut peer_ids: Vec<String> = providers.iter().map(ToString::to_string).collect();
        peer_ids.sort();
        Ok(Response::new(pb::ProvidersResponse {
            name: full,
            peer_ids,
        }))
    }

    async fn peers(
        &self,
        _request: Request<pb::DiscoveryPeersRequest>,
    ) -> Result<Response<pb::DiscoveryPeersResponse>, Status> {
        let network = network(&self.daemon)?;
        let trusted = self.daemon.peer.trust.entries();
        let mut peers: Vec<pb::KnownPeer> = network
            .peers()
            .await
            .map_err(|e| e.to_status())?
            .into_iter()
            .filter_map(|known| {
                let peer = known.peer?;
                Some(pb::KnownPeer {
                    peer_id: peer.to_string(),
                    addrs: known.addrs.iter().map(ToString::to_string).collect(),
                    connection: known
                        .connection
                        .map(|c| c.as_str().to_owned())
                        .unwrap_or_default(),
                    rtt_us: known
                        .rtt
                        .map_or(0, |rtt| u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX)),
                    agent: known.agent,
                    name: trusted
                        .get(&peer)
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                })
            })
            .collect();
        peers.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        Ok(Response::new(pb::DiscoveryPeersResponse { peers }))
    }
}

/// Whether `a@b` reads as `<peer>@<domain>` rather than `<entity>@<peer>`: its second
/// part holds a dot (`node2@example.org`) or is `local`.
fn looks_like_domain(text: &str) -> bool {
    match text.split('@').collect::<Vec<_>>().as_slice() {
        [_, second] => second.contains('.') || *second == "local",
        _ => false,
    }
}
