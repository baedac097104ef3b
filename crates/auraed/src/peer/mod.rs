//! The `peer` capability: a libp2p swarm with the node's key, discovery on the DHT, and
//! the remote API.
//!
//! When the capability is enabled (and the node key is usable) the swarm runs on a
//! thread of its own ([`swarm`]); disabling the capability or changing its settings
//! stops it. Remote peers' streams on `/aurae/grpc/1.0.0` are served by the same
//! router and authorization layer as the socket, as the principal the [`trust`] list
//! gives their PeerId; local callers reach other peers through [`forward`].

pub mod dnsaddr;
pub mod forward;
pub mod records;
pub mod service;
pub mod settings;
pub mod swarm;
pub mod trust;

use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use aurae_core::address::{EntityAddress, PeerAddress, PeerRef};
use aurae_core::name::{DomainName, PeerName};
use aurae_core::path::StorePath;
use aurae_proto::v0::discovery_server::DiscoveryServer;
use aurae_proto::v0::peer_server::PeerServer;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::mpsc;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;

use crate::context::Daemon;
use crate::server::connection::AuthenticatedStream;
use crate::server::permissions::{Needs, Permission, ScopeKind, ServiceRules};
use crate::server::registry::{Availability, Capability, RegisterError};
use records::ValidName;
use service::{DiscoveryService, PeerService};
use settings::PeerSettings;
use swarm::{Network, SwarmError, SwarmStart};
use trust::TrustList;

/// Reading the node's network state: its id, peers, resolving names.
pub const PEER_READ: Permission = Permission {
    name: "peer.read",
    description: "see the node's PeerId, addresses and peers; resolve names; ping",
    scope: ScopeKind::Unscoped,
    read_only: true,
};

/// Changing who the node talks to and trusts.
pub const PEER_MANAGE: Permission = Permission {
    name: "peer.manage",
    description: "dial peers, change the swarm's settings, trust and untrust remote peers",
    scope: ScopeKind::Unscoped,
    read_only: false,
};

/// Calling other peers' APIs with this node's identity.
pub const PEER_FORWARD: Permission = Permission {
    name: "peer.forward",
    description: "call remote peers' APIs through this node (aurae --peer), as this node",
    scope: ScopeKind::Unscoped,
    read_only: false,
};

const READ: Needs = Needs::Permission(&PEER_READ);
const MANAGE: Needs = Needs::Permission(&PEER_MANAGE);

/// The capability's declaration.
pub const CAPABILITY: Capability = Capability {
    name: "peer",
    description: "peer-to-peer network: libp2p swarm, DHT discovery, the remote API",
    availability: Availability::Optional {
        enabled_by_default: false,
    },
    permissions: &[&PEER_READ, &PEER_MANAGE, &PEER_FORWARD],
    services: &[
        ServiceRules {
            service: <PeerServer<PeerService> as NamedService>::NAME,
            methods: &[
                ("Id", READ),
                ("Ping", READ),
                ("Dial", MANAGE),
                ("Trust", MANAGE),
                ("Untrust", MANAGE),
                ("ListTrusted", READ),
                ("GetConfig", READ),
                ("SetConfig", MANAGE),
            ],
        },
        ServiceRules {
            service: <DiscoveryServer<DiscoveryService> as NamedService>::NAME,
            methods: &[("Resolve", READ), ("Peers", READ), ("Providers", READ)],
        },
    ],
    register,
};

fn register(daemon: &Arc<Daemon>, routes: &mut RoutesBuilder) -> Result<(), RegisterError> {
    routes.add_service(PeerServer::new(PeerService::new(daemon.clone())));
    routes.add_service(DiscoveryServer::new(DiscoveryService::new(daemon.clone())));
    Ok(())
}

/// Where the admin's swarm settings are kept once set through the API.
const CONFIG_PATH: &str = "/.aurae/peer/config";

/// The capability's state, shared by its services, the forwarding layer and the loop
/// that starts and stops the swarm.
#[derive(Debug)]
pub struct PeerState {
    /// Settings from the flags: used until an admin stores others.
    flags: PeerSettings,
    stored: RwLock<Option<PeerSettings>>,
    network: RwLock<Option<Arc<Network>>>,
    /// Why the swarm is not running, when it is not.
    stopped_because: RwLock<String>,
    /// Remote peers that may call the API.
    pub trust: TrustList,
    /// The serving router's queue: remote streams are served there.
    inbox: OnceLock<mpsc::Sender<AuthenticatedStream>>,
    restart: tokio::sync::Notify,
    /// Connections to other peers' APIs, one per peer.
    pub channels: forward::Channels,
}

impl PeerState {
    /// The state before the swarm first starts, with the flags' settings.
    pub fn new(flags: PeerSettings) -> Self {
        Self {
            flags,
            stored: RwLock::new(None),
            network: RwLock::new(None),
            stopped_because: RwLock::new("the peer capability is disabled".to_owned()),
            trust: TrustList::default(),
            inbox: OnceLock::new(),
            restart: tokio::sync::Notify::new(),
            channels: forward::Channels::default(),
        }
    }

    /// The settings in force: the stored ones if an admin set any, else the flags'.
    pub fn settings(&self) -> PeerSettings {
        let stored = self
            .stored
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut settings = stored.unwrap_or_else(|| self.flags.clone());
        settings.dns_server = self.flags.dns_server;
        settings
    }

    /// The running swarm, or why there is none.
    pub fn network(&self) -> Result<Arc<Network>, SwarmError> {
        self.network
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(SwarmError::Stopped)
    }

    /// Why the swarm is not running (empty when it is).
    pub fn stopped_because(&self) -> String {
        self.stopped_because
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Gives the state the serving router's queue, for remote streams.
    pub fn set_inbox(&self, inbox: mpsc::Sender<AuthenticatedStream>) {
        let _ = self.inbox.set(inbox);
    }

    /// Stores `settings` durably and restarts the swarm with them.
    pub async fn store_settings(
        &self,
        daemon: &Daemon,
        settings: PeerSettings,
    ) -> Result<(), tonic::Status> {
        let store = daemon.store.store().map_err(|_| {
            tonic::Status::unavailable(
                "the database is not open, so the peer settings cannot be kept",
            )
        })?;
        let bytes = serde_json::to_vec_pretty(&settings)
            .map_err(|e| tonic::Status::internal(format!("cannot encode the settings: {e}")))?;
        let path: StorePath = CONFIG_PATH
            .parse()
            .map_err(|e: aurae_core::path::PathError| tonic::Status::internal(e.to_string()))?;
        trust::put_private(&store, path, bytes)
            .await
            .map_err(crate::storage::error::status)?;
        *self.stored.write().unwrap_or_else(PoisonError::into_inner) = Some(settings);
        self.restart.notify_one();
        Ok(())
    }

    /// Reads the stored settings and trust list: once, at start, before anything (a node
    /// config applied at start) can change them.
    pub fn attach_store(&self, daemon: &Daemon) {
        let Ok(store) = daemon.store.store() else {
            tracing::warn!("the database is not open: no trust list, and the flags' peer settings");
            return;
        };
        if let Err(e) = self.trust.attach_store(store.clone()) {
            tracing::error!(error = %e, "cannot read the peer trust list: no remote peer is trusted");
        }
        let path: Result<StorePath, _> = CONFIG_PATH.parse();
        if let Ok(path) = path
            && let Ok((bytes, _)) = store.get(&path)
        {
            match serde_json::from_slice::<PeerSettings>(&bytes) {
                Ok(settings) => {
                    *self.stored.write().unwrap_or_else(PoisonError::into_inner) = Some(settings)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "stored peer settings unreadable; using the flags'")
                }
            }
        }
    }
}

/// The node's name on the network, `<peer>@<domain>`: from its certificate material's
/// names when there are some, else its hostname in the `local` domain.
pub fn node_name(daemon: &Daemon) -> (PeerName, DomainName) {
    match aurae_core::pki::NodeNames::load(&daemon.pki) {
        Ok(names) => (names.peer, names.domain),
        Err(_) => {
            let host = nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_default();
            (PeerName::from_hostname(&host), DomainName::default())
        }
    }
}

/// Starts the swarm whenever the capability is enabled and the node serves, and stops it
/// when it is disabled, the node falls back to its empty loop, or its settings change; hands remote streams to the serving router. Runs until the
/// daemon stops.
pub async fn run(daemon: Arc<Daemon>) {
    let (inbound_tx, inbound_rx) = mpsc::channel(64);
    tokio::spawn(admit_remote_streams(daemon.clone(), inbound_rx));
    tokio::spawn(announce_entities(daemon.clone()));
    loop {
        // In the empty loop the node does nothing but hold its socket: no swarm either.
        let serving = matches!(
            *daemon.mode.borrow(),
            crate::server::material::Mode::Serving(_)
        );
        let enabled = daemon.capabilities.is_enabled(&CAPABILITY);
        let running = daemon.peer.network().is_ok();
        if enabled && serving && !running {
            start(&daemon, inbound_tx.clone()).await;
        } else if running && !enabled {
            stop(&daemon, "the peer capability is disabled");
        } else if running && !serving {
            stop(&daemon, "the node has no certificate material (empty loop)");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            () = daemon.peer.restart.notified() => {
                stop(&daemon, "restarting with new settings");
            }
        }
    }
}

fn stop(daemon: &Daemon, why: &str) {
    let old = daemon
        .peer
        .network
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if old.is_some() {
        tracing::info!(%why, "peer network stopped");
    }
    daemon.peer.channels.clear();
    *daemon
        .peer
        .stopped_because
        .write()
        .unwrap_or_else(PoisonError::into_inner) = why.to_owned();
}

async fn start(daemon: &Arc<Daemon>, inbound: swarm::Inbound) {
    let state = &daemon.peer;
    let set_why = |why: String| {
        let mut current = state
            .stopped_because
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *current != why {
            tracing::error!(%why, "peer network not started");
            *current = why;
        }
    };
    let keypair =
        match aurae_core::identity::NodeIdentity::load_or_generate(&daemon.identity.key_path) {
            Ok((identity, _)) => identity.keypair().clone(),
            Err(e) => return set_why(format!("the node key is unusable: {e}")),
        };
    let settings = state.settings();
    let (peer, domain) = node_name(daemon);
    let mut extra_bootstrap = Vec::new();
    if !settings.bootstrap_domains.is_empty() {
        let resolver = match settings.dns_server {
            Some(server) => Ok(dnsaddr::DnsaddrResolver::with_nameserver(server)),
            None => dnsaddr::DnsaddrResolver::system(),
        };
        match resolver {
            Ok(resolver) => {
                for domain in &settings.bootstrap_domains {
                    let lookup = tokio::time::timeout(
                        Duration::from_secs(20),
                        resolver.bootstrap_peers(domain),
                    );
                    match lookup.await.unwrap_or_else(|_| {
                        Err(dnsaddr::DnsaddrError::LookupFailed {
                            name: format!("_dnsaddr.{domain}"),
                            reason: "no answer within 20 s".to_owned(),
                        })
                    }) {
                        Ok(found) => {
                            tracing::info!(%domain, peers = found.len(), "bootstrap peers from _dnsaddr");
                            extra_bootstrap.extend(found.into_iter().map(|(_, addr)| addr));
                        }
                        Err(e) => {
                            tracing::warn!(%domain, error = %e, "no bootstrap peers from DNS")
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the DNS configuration"),
        }
    }
    let start = SwarmStart {
        keypair,
        settings,
        name: format!("{peer}@{domain}"),
        extra_bootstrap,
    };
    match Network::start(start, inbound).await {
        Ok(network) => {
            tracing::info!(peer_id = %network.local_peer_id(), name = %format!("{peer}@{domain}"), "peer network started");
            *state
                .network
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(network));
            state
                .stopped_because
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        Err(e) => set_why(e.to_string()),
    }
}

/// How often the node looks for new entities to announce.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);

/// Announces every entity the node serves (its volumes and cells, as
/// `<entity>@<peer>@<domain>`) as a provider record on the DHT, whenever one appears; the
/// swarm republishes them. A restarted swarm announces them all again.
async fn announce_entities(daemon: Arc<Daemon>) {
    let mut announced: std::collections::HashSet<String> = std::collections::HashSet::new();
    // The swarm announcements were made to (by address): a new swarm hears them all again.
    let mut network_seen: Option<usize> = None;
    loop {
        tokio::time::sleep(ANNOUNCE_EVERY).await;
        let Ok(network) = daemon.peer.network() else {
            network_seen = None;
            continue;
        };
        let current = Arc::as_ptr(&network) as usize;
        if network_seen != Some(current) {
            announced.clear();
            network_seen = Some(current);
        }
        let (peer, domain) = node_name(&daemon);
        let mut entities: Vec<String> = Vec::new();
        if let Ok(store) = daemon.store.store()
            && let Ok(volumes) = store.list_volumes()
        {
            entities.extend(
                volumes
                    .into_iter()
                    .map(|v| v.name)
                    .filter(|n| n != "default"),
            );
        }
        for cell in daemon
            .runtime
            .list(&crate::runtime::cells::Scope::All)
            .await
        {
            entities.push(cell.spec.name.to_string().replace('/', "."));
        }
        for entity in entities {
            let full = format!("{entity}@{peer}@{domain}");
            if announced.insert(full.clone()) {
                tracing::debug!(entity = %full, "announcing on the DHT");
                if network.provide(records::provider_key(&full)).is_err() {
                    announced.remove(&full);
                }
            }
        }
    }
}

/// Admits each remote stream to the connection registry as the principal its PeerId is
/// trusted as (an untrusted peer is admitted without one, so that its requests are
/// refused with a message saying why) and hands it to the serving router.
async fn admit_remote_streams(
    daemon: Arc<Daemon>,
    mut inbound: mpsc::Receiver<(PeerId, libp2p::Stream)>,
) {
    while let Some((peer, stream)) = inbound.recv().await {
        let Some(inbox) = daemon.peer.inbox.get() else {
            continue;
        };
        let principal = daemon.peer.trust.principal_of(&peer).ok_or_else(|| {
            format!(
                "peer {peer} is not trusted by this node; an admin of this node can trust it with `aurae peer trust {peer}`"
            )
        });
        match daemon
            .connections
            .admit_remote(principal.as_ref().ok().cloned(), peer.to_string())
        {
            Ok(open) => {
                let _ = inbox
                    .send(AuthenticatedStream::remote(stream, principal, open))
                    .await;
            }
            Err(refusal) => tracing::info!(%peer, %refusal, "remote stream refused"),
        }
    }
}

/// Where a peer named by `target` is: its PeerId and the addresses known for it. A
/// PeerId is used as given; a name is looked up on the trust list, then on the DHT.
pub async fn resolve_peer(
    daemon: &Daemon,
    target: &PeerAddress,
) -> Result<(PeerId, Vec<Multiaddr>, Option<ValidName>, u32), tonic::Status> {
    if let PeerRef::Id(id) = &target.peer {
        return Ok((*id, Vec::new(), None, 0));
    }
    let (_, local_domain) = node_name(daemon);
    let domain = target.domain_or(&local_domain).clone();
    let name = target
        .peer
        .as_name()
        .map(ToString::to_string)
        .unwrap_or_default();
    if let Some(id) = daemon.peer.trust.peer_named(&name, &domain) {
        return Ok((id, Vec::new(), None, 0));
    }
    let network = daemon.peer.network().map_err(|e| e.to_status())?;
    let full = format!("{name}@{domain}");
    let lookup = network.get_name(&full).await.map_err(|e| e.to_status())?;
    for why in &lookup.refused {
        tracing::info!(name = %full, %why, "refused a name record");
    }
    let candidates = records::newest_per_peer(lookup.records);
    match candidates.as_slice() {
        [] => Err(tonic::Status::not_found(format!(
            "no valid record for '{full}' on the DHT{}; is the peer online with the peer capability enabled, and are both nodes connected to a common bootstrap peer?",
            if lookup.refused.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} refused: {})",
                    lookup.refused.len(),
                    lookup.refused.join("; ")
                )
            }
        ))),
        [only] => Ok((
            only.peer,
            only.addrs.clone(),
            Some(only.clone()),
            lookup.queried,
        )),
        several => Err(tonic::Status::failed_precondition(format!(
            "'{full}' is claimed by {} peers ({}); name the peer by its PeerId, or trust the right one under that name",
            several.len(),
            several
                .iter()
                .map(|r| r.peer.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Parses what a user typed as a peer, for the API's errors.
pub fn parse_peer(text: &str) -> Result<PeerAddress, tonic::Status> {
    text.parse()
        .map_err(|e: aurae_core::address::AddressError| {
            tonic::Status::invalid_argument(e.to_string())
        })
}

/// Parses an entity address, for the API's errors.
pub fn parse_entity(text: &str) -> Result<EntityAddress, tonic::Status> {
    text.parse()
        .map_err(|e: aurae_core::address::AddressError| {
            tonic::Status::invalid_argument(e.to_string())
        })
}
