//! The libp2p swarm: built from the node key and [`PeerSettings`], run on a thread of
//! its own (auraed's socket thread never polls it), and driven through [`Network`], a
//! handle that sends commands and awaits their answers.
//!
//! Behaviours: connection limits; identify; ping; Kademlia (storing only records that
//! validate, see [`super::records`]); mDNS (toggle); AutoNAT v2 client and server;
//! circuit relay v2 client, and server when allowed; DCUtR hole punching; and generic
//! streams for the remote API (`/aurae/grpc/1.0.0`) and on-demand pings.
//!
//! NAT traversal, for a node behind a NAT that reserves a slot on a relay (`--peer-relay`):
//! - Addresses: a listen address is announced as a confirmed external address only when
//!   others can plausibly dial it: the operator bound that very IP, or the IP is globally
//!   routable. Private and loopback addresses expanded from a wildcard listen (`0.0.0.0`)
//!   are not: they stay listen addresses (in identify, mDNS and the name record, for
//!   peers on the same LAN) and AutoNAT confirms what the outside really sees. The
//!   relay circuit address (`<relay>/p2p-circuit`) is announced as soon as the
//!   reservation is accepted, and the name record is published again whenever the
//!   node's addresses change, so that the record names the circuit.
//! - Dialling: a peer is dialled at every address given (its name record's) at once;
//!   when all of them fail and none was a circuit, the dial is tried again through the
//!   relays this node uses (a peer reserving on the same relay is reachable there).
//! - Hole punching: DCUtR upgrades a relayed connection; its observed addresses come
//!   from identify's candidates, not from the announced ones. A direct connection made
//!   while a relayed one to the same peer is open is that upgrade, and is reported as
//!   [`ConnectionKind::HolePunched`] on both sides (DCUtR itself reports it only on the
//!   side whose dial produced it).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::kad::{self, GetProvidersOk, GetRecordOk, QueryId, QueryResult, Quorum, RecordKey};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, autonat, connection_limits, dcutr, identify, mdns,
    noise, ping, relay, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};

use super::records::{self, ValidName};
use super::settings::{PeerSettings, peer_of};

/// The protocol remote gRPC calls travel on.
pub const GRPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/aurae/grpc/1.0.0");
/// The standard ping protocol, opened on demand for `aurae peer ping`.
const PING_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/ping/1.0.0");
/// How often the node's name record and provider records are published again.
const REPUBLISH: Duration = Duration::from_secs(10 * 60);
/// When the name record is published again after the first time, while the network the
/// node joined is still filling its routing table: a record stored when the node knew one
/// or two peers sits on peers that are soon no longer the closest to its key. After these,
/// every [`REPUBLISH`].
const EARLY_REPUBLISH: [Duration; 4] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(90),
    Duration::from_secs(300),
];
/// How long a dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the swarm could not start or a command failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SwarmError {
    /// The transports or behaviours could not be built.
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    /// A listen address was refused by every transport.
    #[error("cannot listen on {addr}: {why}")]
    Listen {
        /// The address.
        addr: String,
        /// The transport's reason.
        why: String,
    },
    /// The swarm has stopped (the capability was disabled or its settings changed).
    #[error("the peer network is not running (enable it with `aurae capabilities enable peer`)")]
    Stopped,
    /// A dial failed.
    #[error("cannot connect to {target}: {why}")]
    Dial {
        /// What was dialled.
        target: String,
        /// Why it failed.
        why: String,
    },
    /// A request to a peer failed.
    #[error("{0}")]
    Request(String),
}

impl SwarmError {
    /// The gRPC status for it.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            Self::Build(_) | Self::Listen { .. } => tonic::Status::internal(self.to_string()),
            Self::Stopped => tonic::Status::failed_precondition(self.to_string()),
            Self::Dial { .. } | Self::Request(_) => tonic::Status::unavailable(self.to_string()),
        }
    }
}

/// How the node is connected to a peer, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConnectionKind {
    /// Upgraded from a relayed connection by hole punching.
    HolePunched,
    /// Dialled or accepted directly.
    Direct,
    /// Through a circuit relay.
    Relayed,
}

impl ConnectionKind {
    /// The name the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HolePunched => "hole-punched",
            Self::Direct => "direct",
            Self::Relayed => "relayed",
        }
    }
}

/// What the node knows of another peer.
#[derive(Debug, Clone, Default)]
pub struct KnownPeer {
    /// The peer.
    pub peer: Option<PeerId>,
    /// Addresses it listens on (identify, mDNS, DHT).
    pub addrs: Vec<Multiaddr>,
    /// The best open connection, if any.
    pub connection: Option<ConnectionKind>,
    /// The last ping round trip.
    pub rtt: Option<Duration>,
    /// Its agent version.
    pub agent: String,
}

/// The node's own addresses.
#[derive(Debug, Clone, Default)]
pub struct OwnAddresses {
    /// Where it listens.
    pub listen: Vec<Multiaddr>,
    /// Where others can reach it (confirmed or announced).
    pub external: Vec<Multiaddr>,
}

/// The result of a name lookup on the DHT.
#[derive(Debug, Clone, Default)]
pub struct NameLookup {
    /// Every valid record found, any peer.
    pub records: Vec<ValidName>,
    /// Records refused, with why.
    pub refused: Vec<String>,
    /// Peers that answered before the first valid record (0: found locally).
    pub queried: u32,
}

/// What a started swarm runs with.
#[derive(Debug, Clone)]
pub struct SwarmStart {
    /// The node key.
    pub keypair: Keypair,
    /// The settings.
    pub settings: PeerSettings,
    /// `<peer>@<domain>`, published as the node's name record.
    pub name: String,
    /// Bootstrap peers besides the settings' (from `_dnsaddr` lookups).
    pub extra_bootstrap: Vec<Multiaddr>,
}

enum Command {
    Addresses(oneshot::Sender<OwnAddresses>),
    Dial(
        Multiaddr,
        oneshot::Sender<Result<(PeerId, ConnectionKind), SwarmError>>,
    ),
    DialPeer(
        PeerId,
        Vec<Multiaddr>,
        oneshot::Sender<Result<(PeerId, ConnectionKind), SwarmError>>,
    ),
    Peers(oneshot::Sender<Vec<KnownPeer>>),
    GetName(String, oneshot::Sender<NameLookup>),
    GetProviders(RecordKey, oneshot::Sender<HashSet<PeerId>>),
    Provide(RecordKey),
    AddAddress(PeerId, Multiaddr),
}

/// A running swarm: the handle the capability's services use. Dropping it stops the
/// swarm and closes its connections.
pub struct Network {
    local: PeerId,
    commands: mpsc::UnboundedSender<Command>,
    control: libp2p_stream::Control,
    relay_server: bool,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// Incoming remote API streams, each with the peer that opened it.
pub type Inbound = mpsc::Sender<(PeerId, libp2p::Stream)>;

impl Network {
    /// Builds the swarm on a thread of its own and starts listening; remote API streams
    /// go to `inbound`.
    pub async fn start(start: SwarmStart, inbound: Inbound) -> Result<Self, SwarmError> {
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("aurae-swarm".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(SwarmError::Build(e.to_string())));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let relay_server = start.settings.relay_server;
                    let built = build(start);
                    let built = match built {
                        Ok(built) => built,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let mut control = built.swarm.behaviour().stream.new_control();
                    let incoming = match control.accept(GRPC_PROTOCOL) {
                        Ok(incoming) => incoming,
                        Err(e) => {
                            let _ = ready_tx.send(Err(SwarmError::Build(e.to_string())));
                            return;
                        }
                    };
                    tokio::spawn(forward_inbound(incoming, inbound));
                    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
                    let local = *built.swarm.local_peer_id();
                    let mut driver =
                        Driver::new(built.swarm, built.keypair, built.name, built.relays.clone());
                    if let Err(e) = driver.listen(built.listen).await {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                    driver.join(built.bootstrap, built.relays);
                    let handle = Network {
                        local,
                        commands: commands_tx,
                        control,
                        relay_server,
                        stop: None,
                        thread: None,
                    };
                    if ready_tx.send(Ok(handle)).is_err() {
                        return;
                    }
                    driver.run(commands_rx, stop_rx).await;
                });
            })
            .map_err(|e| SwarmError::Build(e.to_string()))?;
        let mut network = ready_rx.await.map_err(|_| SwarmError::Stopped)??;
        network.stop = Some(stop_tx);
        network.thread = Some(thread);
        Ok(network)
    }

    /// This node's PeerId.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// Whether it serves as a circuit relay.
    pub fn is_relay_server(&self) -> bool {
        self.relay_server
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SwarmError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .map_err(|_| SwarmError::Stopped)?;
        rx.await.map_err(|_| SwarmError::Stopped)
    }

    /// Where the node listens and is reachable.
    pub async fn addresses(&self) -> Result<OwnAddresses, SwarmError> {
        self.ask(Command::Addresses).await
    }

    /// Dials `addr` (ending in `/p2p/<PeerId>`) and waits for the connection.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(PeerId, ConnectionKind), SwarmError> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }

    /// Connects to `peer` at any address the node knows for it or is told (`addrs`, e.g.
    /// its name record's, `/p2p-circuit` ones included), all at once; through this
    /// node's relays when none of them answers.
    pub async fn dial_peer(
        &self,
        peer: PeerId,
        addrs: &[Multiaddr],
    ) -> Result<(PeerId, ConnectionKind), SwarmError> {
        for addr in addrs {
            let _ = self.commands.send(Command::AddAddress(peer, addr.clone()));
        }
        self.ask(|tx| Command::DialPeer(peer, addrs.to_vec(), tx))
            .await?
    }

    /// Every peer the node knows, connected or not.
    pub async fn peers(&self) -> Result<Vec<KnownPeer>, SwarmError> {
        self.ask(Command::Peers).await
    }

    /// Looks `name` (`<peer>@<domain>`) up on the DHT.
    pub async fn get_name(&self, name: &str) -> Result<NameLookup, SwarmError> {
        self.ask(|tx| Command::GetName(name.to_owned(), tx)).await
    }

    /// The providers of `key` on the DHT.
    pub async fn providers(&self, key: RecordKey) -> Result<HashSet<PeerId>, SwarmError> {
        self.ask(|tx| Command::GetProviders(key, tx)).await
    }

    /// Announces this node as a provider of `key`, now and every republish interval.
    pub fn provide(&self, key: RecordKey) -> Result<(), SwarmError> {
        self.commands
            .send(Command::Provide(key))
            .map_err(|_| SwarmError::Stopped)
    }

    /// Opens a remote API stream to `peer` (connecting first if needed).
    pub async fn open_grpc(&self, peer: PeerId) -> Result<libp2p::Stream, SwarmError> {
        self.dial_peer(peer, &[]).await?;
        self.control
            .clone()
            .open_stream(peer, GRPC_PROTOCOL)
            .await
            .map_err(|e| {
                SwarmError::Request(format!("peer {peer} refused the remote API stream: {e}"))
            })
    }

    /// One ping round trip to `peer` on the standard ping protocol.
    pub async fn ping(&self, peer: PeerId) -> Result<Duration, SwarmError> {
        self.dial_peer(peer, &[]).await?;
        let failed = |e: std::io::Error| SwarmError::Request(format!("ping to {peer} failed: {e}"));
        let mut stream = self
            .control
            .clone()
            .open_stream(peer, PING_PROTOCOL)
            .await
            .map_err(|e| SwarmError::Request(format!("peer {peer} does not answer pings: {e}")))?;
        let payload: [u8; 32] = rand_bytes();
        let started = Instant::now();
        let round_trip = async {
            stream.write_all(&payload).await?;
            stream.flush().await?;
            let mut echo = [0u8; 32];
            stream.read_exact(&mut echo).await?;
            Ok::<_, std::io::Error>(echo)
        };
        let echo = tokio::time::timeout(Duration::from_secs(10), round_trip)
            .await
            .map_err(|_| SwarmError::Request(format!("ping to {peer} timed out after 10 s")))?
            .map_err(failed)?;
        let rtt = started.elapsed();
        let _ = stream.close().await;
        if echo != payload {
            return Err(SwarmError::Request(format!(
                "peer {peer} answered the ping with other bytes"
            )));
        }
        Ok(rtt)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The swarm stops at its next poll; not joined here, so that dropping the
            // handle never blocks the socket thread.
            drop(thread);
        }
    }
}

/// A ping payload: random, as the ping protocol asks, so that an echo cannot be faked
/// from an earlier one.
fn rand_bytes() -> [u8; 32] {
    use rand_core::RngCore as _;
    let mut bytes = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes
}

async fn forward_inbound(mut incoming: libp2p_stream::IncomingStreams, inbound: Inbound) {
    while let Some((peer, stream)) = incoming.next().await {
        if inbound.send((peer, stream)).await.is_err() {
            return;
        }
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    relay_client: relay::client::Behaviour,
    relay_server: Toggle<relay::Behaviour>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    autonat_client: autonat::v2::client::Behaviour,
    autonat_server: autonat::v2::server::Behaviour,
    dcutr: dcutr::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// A built swarm with what it still has to do: listen, bootstrap, reserve relay slots.
struct Built {
    swarm: Swarm<Behaviour>,
    keypair: Keypair,
    name: String,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    relays: Vec<Multiaddr>,
}

fn dns_config() -> (libp2p::dns::ResolverConfig, libp2p::dns::ResolverOpts) {
    hickory_resolver::system_conf::read_system_conf().unwrap_or_else(|e| {
        tracing::info!(error = %e, "no system DNS configuration: /dns multiaddrs will not resolve");
        (
            libp2p::dns::ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
            libp2p::dns::ResolverOpts::default(),
        )
    })
}

fn build(start: SwarmStart) -> Result<Built, SwarmError> {
    let settings = start.settings;
    let local = start.keypair.public().to_peer_id();
    let public = start.keypair.public();
    let (dns, dns_opts) = dns_config();
    let mut kad_config = kad::Config::new(settings.kad_protocol());
    kad_config
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_query_timeout(Duration::from_secs(30))
        .set_record_ttl(Some(records::RECORD_LIFETIME))
        .set_publication_interval(Some(REPUBLISH));
    let mdns_on = settings.mdns;
    let relay_on = settings.relay_server;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(settings.max_connections))
        .with_max_established_per_peer(Some(settings.max_connections_per_peer))
        .with_max_pending_incoming(Some(64));
    let agent = format!("auraed/{}", aurae_core::VERSION);
    let keypair = start.keypair.clone();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(start.keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| SwarmError::Build(e.to_string()))?
        .with_quic()
        .with_dns_config(dns, dns_opts)
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| SwarmError::Build(e.to_string()))?
        .with_behaviour(|_, relay_client| {
            let mut kad =
                kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), kad_config);
            kad.set_mode(Some(kad::Mode::Server));
            let mdns = if mdns_on {
                mdns::tokio::Behaviour::new(mdns::Config::default(), local)
                    .map_err(|e| tracing::warn!(error = %e, "mDNS unavailable"))
                    .ok()
            } else {
                None
            };
            let relay_server = relay_on.then(|| {
                relay::Behaviour::new(
                    local,
                    relay::Config {
                        max_circuit_duration: Duration::from_secs(60 * 60),
                        max_circuit_bytes: 1 << 30,
                        ..relay::Config::default()
                    },
                )
            });
            Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                relay_client,
                relay_server: Toggle::from(relay_server),
                identify: identify::Behaviour::new(
                    identify::Config::new("/aurae/1.0.0".to_owned(), public)
                        .with_agent_version(agent),
                ),
                ping: ping::Behaviour::new(
                    ping::Config::new().with_interval(Duration::from_secs(15)),
                ),
                kad,
                mdns: Toggle::from(mdns),
                autonat_client: autonat::v2::client::Behaviour::default(),
                autonat_server: autonat::v2::server::Behaviour::default(),
                dcutr: dcutr::Behaviour::new(local),
                stream: libp2p_stream::Behaviour::new(),
            }
        })
        .map_err(|e| SwarmError::Build(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    let mut bootstrap = settings.bootstrap.clone();
    bootstrap.extend(start.extra_bootstrap);
    Ok(Built {
        swarm,
        keypair,
        name: start.name,
        listen: settings.listen.clone(),
        bootstrap,
        relays: settings.relays.clone(),
    })
}

/// A query in flight and who waits for it.
enum Pending {
    Name {
        reply: oneshot::Sender<NameLookup>,
        lookup: NameLookup,
    },
    Providers {
        reply: oneshot::Sender<HashSet<PeerId>>,
        found: HashSet<PeerId>,
    },
}

#[derive(Default)]
struct PeerState {
    addrs: Vec<Multiaddr>,
    connections: HashMap<ConnectionId, ConnectionKind>,
    rtt: Option<Duration>,
    agent: String,
}

impl PeerState {
    fn best(&self) -> Option<ConnectionKind> {
        self.connections.values().min().copied()
    }

    fn has_relayed(&self) -> bool {
        self.connections
            .values()
            .any(|kind| *kind == ConnectionKind::Relayed)
    }
}

type DialReply = oneshot::Sender<Result<(PeerId, ConnectionKind), SwarmError>>;

/// A caller waiting for a connection to a peer.
struct PendingDial {
    reply: DialReply,
    since: Instant,
    /// The dial it waits on; `None`: another dial to the peer was already under way.
    connection: Option<ConnectionId>,
    /// Circuit addresses through this node's relays, tried if the dial fails.
    fallback: Vec<Multiaddr>,
}

struct Driver {
    swarm: Swarm<Behaviour>,
    peers: HashMap<PeerId, PeerState>,
    dials: HashMap<PeerId, Vec<PendingDial>>,
    queries: HashMap<QueryId, Pending>,
    provided: Vec<RecordKey>,
    keypair: Keypair,
    name: Option<String>,
    published: bool,
    /// The node's addresses changed since the name record was last published.
    addresses_changed: bool,
    /// When the name record was first published.
    first_published: Option<Instant>,
    /// How many of [`EARLY_REPUBLISH`] are done.
    early_republished: usize,
    /// Listeners on a wildcard IP (`0.0.0.0`, `::`), whose addresses are announced only
    /// when globally routable.
    wildcard_listeners: HashSet<ListenerId>,
    /// The relays (with `/p2p/`) this node reserves slots on; dials fall back to them.
    relays: Vec<Multiaddr>,
    /// The circuit listener of each relay with a reservation asked for or held.
    reservations: HashMap<PeerId, ListenerId>,
}

impl Driver {
    fn new(
        swarm: Swarm<Behaviour>,
        keypair: Keypair,
        name: String,
        relays: Vec<Multiaddr>,
    ) -> Self {
        Self {
            swarm,
            keypair,
            peers: HashMap::new(),
            dials: HashMap::new(),
            queries: HashMap::new(),
            provided: Vec::new(),
            name: Some(name),
            published: false,
            addresses_changed: false,
            first_published: None,
            early_republished: 0,
            wildcard_listeners: HashSet::new(),
            relays,
            reservations: HashMap::new(),
        }
    }

    /// Listens on every address and waits until each is bound (or refused).
    async fn listen(&mut self, addrs: Vec<Multiaddr>) -> Result<(), SwarmError> {
        let mut waiting = HashMap::new();
        for addr in addrs {
            match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    if is_unspecified(&addr) {
                        self.wildcard_listeners.insert(id);
                    }
                    waiting.insert(id, addr);
                }
                Err(e) => {
                    return Err(SwarmError::Listen {
                        addr: addr.to_string(),
                        why: e.to_string(),
                    });
                }
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        while !waiting.is_empty() {
            let event = tokio::select! {
                event = self.swarm.select_next_some() => event,
                () = &mut deadline => break,
            };
            match &event {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    waiting.remove(listener_id);
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason,
                    ..
                } => {
                    if let Some(addr) = waiting.remove(listener_id) {
                        return Err(SwarmError::Listen {
                            addr: addr.to_string(),
                            why: format!("{reason:?}"),
                        });
                    }
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    if let Some(addr) = waiting.remove(listener_id) {
                        return Err(SwarmError::Listen {
                            addr: addr.to_string(),
                            why: error.to_string(),
                        });
                    }
                }
                _ => {}
            }
            self.on_event(event);
        }
        Ok(())
    }

    /// Dials the bootstrap peers, joins the DHT and reserves relay slots.
    fn join(&mut self, bootstrap: Vec<Multiaddr>, relays: Vec<Multiaddr>) {
        for addr in bootstrap {
            if let Some(peer) = peer_of(&addr) {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
        // The slot is reserved once connected to the relay (see `reserve_on`): asked for
        // now, the relay client would dial the relay itself, find the bootstrap dial to
        // the same peer under way, and drop the reservation without a word.
        for relay in relays {
            let Some(peer) = peer_of(&relay) else {
                continue;
            };
            if let Err(e) = self.swarm.dial(
                DialOpts::peer_id(peer)
                    .addresses(vec![relay.clone()])
                    .build(),
            ) && !matches!(e, DialError::DialPeerConditionFalse(_))
            {
                tracing::warn!(addr = %relay, error = %e, "cannot dial relay");
            }
        }
    }

    /// Reserves a slot on `peer` if it is one of this node's relays without one: listens on
    /// `<relay>/p2p-circuit`, which the relay client turns into a reservation over the
    /// connection just made.
    fn reserve_on(&mut self, peer: PeerId) {
        if self.reservations.contains_key(&peer) {
            return;
        }
        let Some(relay) = self
            .relays
            .iter()
            .find(|relay| peer_of(relay) == Some(peer))
            .cloned()
        else {
            return;
        };
        let circuit = relay.with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(listener) => {
                tracing::info!(addr = %circuit, "reserving a relay slot");
                self.reservations.insert(peer, listener);
            }
            Err(e) => tracing::warn!(addr = %circuit, error = %e, "cannot reserve a relay slot"),
        }
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut republish = tokio::time::interval(REPUBLISH);
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                command = commands.recv() => match command {
                    Some(command) => self.on_command(command),
                    None => return,
                },
                _ = republish.tick() => self.republish(),
                _ = sweep.tick() => {
                    self.expire_dials();
                    let early = self
                        .first_published
                        .zip(EARLY_REPUBLISH.get(self.early_republished))
                        .is_some_and(|(first, after)| first.elapsed() >= *after);
                    if early {
                        self.early_republished += 1;
                    }
                    if self.published && (self.addresses_changed || early) {
                        self.republish();
                    }
                }
                _ = &mut stop => return,
            }
        }
    }

    fn expire_dials(&mut self) {
        for (peer, waiting) in &mut self.dials {
            let (expired, live): (Vec<_>, Vec<_>) = waiting
                .drain(..)
                .partition(|pending| pending.since.elapsed() > DIAL_TIMEOUT);
            *waiting = live;
            for PendingDial { reply, .. } in expired {
                let _ = reply.send(Err(SwarmError::Dial {
                    target: peer.to_string(),
                    why: format!("no connection within {} s", DIAL_TIMEOUT.as_secs()),
                }));
            }
        }
        self.dials.retain(|_, waiting| !waiting.is_empty());
    }

    fn own_addresses(&self) -> OwnAddresses {
        OwnAddresses {
            listen: self.swarm.listeners().cloned().collect(),
            external: self.swarm.external_addresses().cloned().collect(),
        }
    }

    /// Publishes the node's signed name record and provider records.
    fn republish(&mut self) {
        let Some(name) = self.name.clone() else {
            return;
        };
        self.addresses_changed = false;
        let own = self.own_addresses();
        // External addresses first (circuit ones included), then the listen addresses
        // (for peers on the same network); loopback only when announced (a loopback
        // test node binds it explicitly), as anyone else dialling it reaches itself.
        let mut addrs = own.external.clone();
        for addr in own.listen {
            let usable =
                !is_unspecified(&addr) && (!is_loopback(&addr) || own.external.contains(&addr));
            if usable && !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        tracing::debug!(addrs = ?addrs, "publishing the node's name record");
        let value = records::sign_name(&self.keypair, &name, &addrs, records::now_ms());
        let record = kad::Record::new(records::name_key(&name), value);
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(record, Quorum::One)
        {
            tracing::warn!(error = %e, "cannot store the node's name record");
        }
        for key in self.provided.clone() {
            let _ = self.swarm.behaviour_mut().kad.start_providing(key);
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Addresses(reply) => {
                let _ = reply.send(self.own_addresses());
            }
            Command::Dial(addr, reply) => {
                let Some(peer) = peer_of(&addr) else {
                    let _ = reply.send(Err(SwarmError::Dial {
                        target: addr.to_string(),
                        why: "the address names no peer; end it with /p2p/<PeerId>".to_owned(),
                    }));
                    return;
                };
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
                self.dial_then_reply(peer, Some(addr), reply);
            }
            Command::DialPeer(peer, addrs, reply) => {
                self.dial_peer_then_reply(peer, addrs, reply);
            }
            // Circuits are left out: they are dialled only as given (see
            // `one_circuit_per_relay`), never added by a behaviour.
            Command::AddAddress(peer, addr) if !is_circuit(&addr) => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
                self.swarm.add_peer_address(peer, addr);
            }
            Command::AddAddress(..) => {}
            Command::Peers(reply) => {
                let peers = self
                    .peers
                    .iter()
                    .map(|(peer, state)| KnownPeer {
                        peer: Some(*peer),
                        addrs: state.addrs.clone(),
                        connection: state.best(),
                        rtt: state.rtt,
                        agent: state.agent.clone(),
                    })
                    .collect();
                let _ = reply.send(peers);
            }
            Command::GetName(name, reply) => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(records::name_key(&name));
                self.queries.insert(
                    id,
                    Pending::Name {
                        reply,
                        lookup: NameLookup::default(),
                    },
                );
            }
            Command::GetProviders(key, reply) => {
                let id = self.swarm.behaviour_mut().kad.get_providers(key);
                self.queries.insert(
                    id,
                    Pending::Providers {
                        reply,
                        found: HashSet::new(),
                    },
                );
            }
            Command::Provide(key) => {
                if !self.provided.contains(&key) {
                    self.provided.push(key.clone());
                }
                if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(key) {
                    tracing::warn!(error = %e, "cannot store a provider record");
                }
            }
        }
    }

    /// Dials exactly `addr` (a `peer connect`): no relay fallback, the user chose it.
    fn dial_then_reply(&mut self, peer: PeerId, addr: Option<Multiaddr>, reply: DialReply) {
        self.start_dial(peer, addr.into_iter().collect(), Vec::new(), reply);
    }

    /// Dials `peer` at `addrs` and every address a behaviour knows, all at once; if that
    /// fails and none of them was a circuit, through this node's relays.
    fn dial_peer_then_reply(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, reply: DialReply) {
        // None given: the addresses identify told (circuits included).
        let addrs = if addrs.is_empty() {
            self.peers
                .get(&peer)
                .map(|state| state.addrs.clone())
                .unwrap_or_default()
        } else {
            addrs
        };
        let addrs = one_circuit_per_relay(addrs);
        let fallback = if addrs.iter().any(is_circuit) {
            Vec::new()
        } else {
            self.relay_circuits_to(peer)
        };
        self.start_dial(peer, addrs, fallback, reply);
    }

    /// `<relay>/p2p-circuit/p2p/<peer>` for each relay of this node (but not to the relay
    /// itself).
    fn relay_circuits_to(&self, peer: PeerId) -> Vec<Multiaddr> {
        self.relays
            .iter()
            .filter(|relay| peer_of(relay) != Some(peer))
            .map(|relay| {
                relay
                    .clone()
                    .with(Protocol::P2pCircuit)
                    .with(Protocol::P2p(peer))
            })
            .collect()
    }

    fn start_dial(
        &mut self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        fallback: Vec<Multiaddr>,
        reply: DialReply,
    ) {
        if let Some(kind) = self.peers.get(&peer).and_then(PeerState::best) {
            let _ = reply.send(Ok((peer, kind)));
            return;
        }
        let pending = PendingDial {
            reply,
            since: Instant::now(),
            connection: None,
            fallback,
        };
        self.dial_pending(peer, addrs, pending);
    }

    /// Starts a dial for `pending`; a failure to start falls back to its relay circuits,
    /// then answers it.
    fn dial_pending(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, mut pending: PendingDial) {
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addrs.clone())
            .extend_addresses_through_behaviour()
            .build();
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                tracing::debug!(%peer, addrs = ?addrs, "dialling");
                pending.connection = Some(connection);
            }
            // Another dial to the peer is under way: wait for its connection.
            Err(DialError::DialPeerConditionFalse(_)) => pending.connection = None,
            Err(e) if !pending.fallback.is_empty() => {
                tracing::debug!(%peer, error = %e, "no direct dial possible; trying the relays");
                let addrs = std::mem::take(&mut pending.fallback);
                return self.dial_pending(peer, addrs, pending);
            }
            Err(e) => {
                let _ = pending.reply.send(Err(SwarmError::Dial {
                    target: peer.to_string(),
                    why: e.to_string(),
                }));
                return;
            }
        }
        self.dials.entry(peer).or_default().push(pending);
    }

    /// A dial failed: its waiters try their relay fallback, or get the error.
    fn on_dial_failed(&mut self, peer: PeerId, connection: ConnectionId, error: &DialError) {
        let Some(waiting) = self.dials.remove(&peer) else {
            return;
        };
        let (failed, live): (Vec<_>, Vec<_>) = waiting
            .into_iter()
            .partition(|pending| pending.connection == Some(connection));
        if !live.is_empty() {
            self.dials.insert(peer, live);
        }
        for mut pending in failed {
            if pending.fallback.is_empty() {
                let _ = pending.reply.send(Err(SwarmError::Dial {
                    target: peer.to_string(),
                    why: error.to_string(),
                }));
            } else {
                tracing::info!(%peer, error = %error, "direct dial failed; dialling through the relays");
                let addrs = std::mem::take(&mut pending.fallback);
                self.dial_pending(peer, addrs, pending);
            }
        }
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                let wildcard = self.wildcard_listeners.contains(&listener_id);
                let announce = is_circuit(&address)
                    || (!is_unspecified(&address) && (!wildcard || is_global(&address)));
                tracing::info!(%address, announce, "peer network listening");
                if announce {
                    self.swarm.add_external_address(address);
                }
                self.addresses_changed = true;
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                // A lost reservation is asked for again at the next connection to the relay.
                self.reservations.retain(|relay, listener| {
                    let lost = *listener == listener_id;
                    if lost {
                        tracing::info!(%relay, ?reason, "relay slot lost");
                    }
                    !lost
                });
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                tracing::info!(%address, "peer network no longer listening");
                self.swarm.remove_external_address(&address);
                self.addresses_changed = true;
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "external address confirmed");
                self.addresses_changed = true;
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(%address, "external address expired");
                self.addresses_changed = true;
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                let remote = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => address,
                    ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr,
                };
                let state = self.peers.entry(peer_id).or_default();
                // A relayed connection is seen on the local address when accepted (the
                // remote one is only `/p2p/<peer>`), on the dialled one when dialled.
                let kind = if endpoint.is_relayed() {
                    ConnectionKind::Relayed
                } else if state.has_relayed() {
                    ConnectionKind::HolePunched
                } else {
                    ConnectionKind::Direct
                };
                tracing::info!(peer = %peer_id, %remote, kind = kind.as_str(), "connected");
                state.connections.insert(connection_id, kind);
                if kind == ConnectionKind::Direct {
                    self.reserve_on(peer_id);
                }
                let state = self.peers.entry(peer_id).or_default();
                if let Some(waiting) = self.dials.remove(&peer_id) {
                    let best = state.best().unwrap_or(kind);
                    for pending in waiting {
                        let _ = pending.reply.send(Ok((peer_id, best)));
                    }
                }
                if !self.published && self.name.is_some() {
                    self.published = true;
                    self.first_published = Some(Instant::now());
                    self.republish();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            } => {
                if let Some(state) = self.peers.get_mut(&peer_id)
                    && let Some(kind) = state.connections.remove(&connection_id)
                {
                    let cause = cause.map_or_else(|| "closed".to_owned(), |c| c.to_string());
                    tracing::info!(peer = %peer_id, kind = kind.as_str(), %cause, "disconnected");
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                connection_id,
                error,
            } => {
                tracing::debug!(%peer, error = %error, "dial failed");
                self.on_dial_failed(peer, connection_id, &error);
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                let kad_protocol = self.swarm.behaviour().kad.protocol_names().first().cloned();
                if kad_protocol.is_some_and(|p| info.protocols.contains(&p)) {
                    for addr in info.listen_addrs.iter().filter(|a| !is_circuit(a)) {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, addr.clone());
                    }
                }
                let state = self.peers.entry(peer_id).or_default();
                state.agent = info.agent_version;
                state.addrs = info.listen_addrs;
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            }) => {
                self.peers.entry(peer).or_default().rtt = Some(rtt);
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    tracing::debug!(%peer, %addr, "found by mDNS");
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    let state = self.peers.entry(peer).or_default();
                    if !state.addrs.contains(&addr) {
                        state.addrs.push(addr);
                    }
                    if state.best().is_none() {
                        let _ = self.swarm.dial(peer);
                    }
                }
            }
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(connection) => {
                    tracing::info!(peer = %remote_peer_id, ?connection, "DCUtR: hole punched, direct connection");
                    // Only if still open: the event follows the connection's own.
                    if let Some(kind) = self
                        .peers
                        .get_mut(&remote_peer_id)
                        .and_then(|state| state.connections.get_mut(&connection))
                    {
                        *kind = ConnectionKind::HolePunched;
                    }
                }
                Err(e) => {
                    tracing::info!(peer = %remote_peer_id, error = %e, "DCUtR: hole punching failed; staying relayed")
                }
            },
            BehaviourEvent::RelayClient(event) => match event {
                relay::client::Event::ReservationReqAccepted {
                    relay_peer_id,
                    renewal,
                    ..
                } => tracing::info!(relay = %relay_peer_id, renewal, "relay slot reserved"),
                other => tracing::info!(event = ?other, "relay client"),
            },
            BehaviourEvent::AutonatClient(event) => {
                tracing::debug!(addr = %event.tested_addr, ok = event.result.is_ok(), "AutoNAT probe");
            }
            BehaviourEvent::Kad(event) => self.on_kad(event),
            _ => {}
        }
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest { request } => self.on_inbound_kad(request),
            kad::Event::OutboundQueryProgressed {
                id,
                result,
                stats,
                step,
            } => {
                match (result, self.queries.get_mut(&id)) {
                    (
                        QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(found))),
                        Some(Pending::Name { lookup, .. }),
                    ) => {
                        match records::validate_name(
                            &found.record.key,
                            &found.record.value,
                            records::now_ms(),
                        ) {
                            Ok(valid) => {
                                if lookup.records.is_empty() {
                                    lookup.queried = if found.peer.is_none() {
                                        0
                                    } else {
                                        stats.num_successes()
                                    };
                                }
                                lookup.records.push(valid);
                            }
                            Err(why) => lookup.refused.push(format!(
                                "from {}: {why}",
                                found
                                    .peer
                                    .map_or_else(|| "this node".to_owned(), |p| p.to_string())
                            )),
                        }
                    }
                    (
                        QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders {
                            providers,
                            ..
                        })),
                        Some(Pending::Providers { found, .. }),
                    ) => {
                        found.extend(providers);
                    }
                    _ => {}
                }
                if step.last {
                    match self.queries.remove(&id) {
                        Some(Pending::Name { reply, lookup }) => {
                            let _ = reply.send(lookup);
                        }
                        Some(Pending::Providers { reply, found }) => {
                            let _ = reply.send(found);
                        }
                        None => {}
                    }
                }
            }
            _ => {}
        }
    }

    /// Stores what other peers offer only when it validates: name records signed by the
    /// peer they name (a newer one of the same peer replaces an older one), and provider
    /// records; anything else is refused.
    fn on_inbound_kad(&mut self, request: kad::InboundRequest) {
        match request {
            kad::InboundRequest::PutRecord {
                source,
                record: Some(record),
                ..
            } => {
                let now = records::now_ms();
                let valid = match records::validate_name(&record.key, &record.value, now) {
                    Ok(valid) => valid,
                    Err(why) => {
                        tracing::info!(from = %source, %why, "refused a DHT record");
                        return;
                    }
                };
                let store = self.swarm.behaviour_mut().kad.store_mut();
                use kad::store::RecordStore as _;
                if let Some(existing) = store.get(&record.key)
                    && let Ok(held) = records::validate_name(&existing.key, &existing.value, now)
                    && (held.peer != valid.peer || held.sequence >= valid.sequence)
                {
                    if held.peer != valid.peer {
                        tracing::warn!(name = %valid.name, held = %held.peer, offered = %valid.peer, from = %source, "two peers claim one name; keeping the first");
                    }
                    return;
                }
                if let Err(e) = store.put(record) {
                    tracing::warn!(error = %e, "cannot store a DHT record");
                }
            }
            kad::InboundRequest::AddProvider {
                record: Some(provider),
            } => {
                use kad::store::RecordStore as _;
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .store_mut()
                    .add_provider(provider)
                {
                    tracing::debug!(error = %e, "cannot store a provider record");
                }
            }
            _ => {}
        }
    }
}

fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

/// `addrs` with only the first circuit through each relay: circuits through one relay all
/// travel this node's one connection to it, so dialling more than one gains nothing and
/// costs the relay extra circuits (and the peer extra connections).
fn one_circuit_per_relay(addrs: Vec<Multiaddr>) -> Vec<Multiaddr> {
    let mut relays = HashSet::new();
    addrs
        .into_iter()
        .filter(|addr| !is_circuit(addr) || relays.insert(relay_of(addr)))
        .collect()
}

/// The relay of a circuit address: the `/p2p/` before `/p2p-circuit`.
fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut relay = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::P2p(peer) => relay = Some(peer),
            Protocol::P2pCircuit => return relay,
            _ => {}
        }
    }
    None
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// Whether the address's IP is routable on the Internet: not private (RFC 1918), shared
/// (RFC 6598), loopback, link-local, unique-local or unspecified. A DNS name counts as
/// global (whoever configured it meant it to be dialled).
fn is_global(addr: &Multiaddr) -> bool {
    addr.iter().all(|p| match p {
        Protocol::Ip4(ip) => {
            let [a, b, ..] = ip.octets();
            let shared = a == 100 && (64..128).contains(&b);
            !(ip.is_private()
                || ip.is_loopback()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || shared)
        }
        Protocol::Ip6(ip) => {
            let first = ip.segments()[0];
            let unique_local = first & 0xfe00 == 0xfc00;
            let link_local = first & 0xffc0 == 0xfe80;
            !(ip.is_loopback() || ip.is_unspecified() || unique_local || link_local)
        }
        _ => true,
    })
}
