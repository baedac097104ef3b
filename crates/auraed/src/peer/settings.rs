//! What the swarm is built from: listen addresses, bootstrap peers, which behaviours run,
//! and connection limits. Given by flags at start; once an admin sets a configuration
//! through the API it is kept in the store and wins over the flags from then on.

use std::net::SocketAddr;

use aurae_core::name::DomainName;
use aurae_proto::v0 as pb;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};

/// Why a configuration was refused; each names the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A multiaddr did not parse.
    #[error("{field}: '{value}' is not a multiaddr ({why}); e.g. /ip4/0.0.0.0/tcp/4001")]
    BadMultiaddr {
        /// Which setting.
        field: &'static str,
        /// The refused text.
        value: String,
        /// The parser's reason.
        why: String,
    },
    /// A peer address lacked its `/p2p/<PeerId>` part.
    #[error("{field}: '{value}' names no peer; end it with /p2p/<PeerId>")]
    NoPeerId {
        /// Which setting.
        field: &'static str,
        /// The refused text.
        value: String,
    },
    /// A bootstrap domain was not a DNS name.
    #[error("bootstrap_domains: {0}")]
    BadDomain(String),
    /// The Kademlia protocol name was not a protocol name.
    #[error("kad_protocol: '{0}' must start with '/' (e.g. /ipfs/kad/1.0.0 or /aurae/kad/1.0.0)")]
    BadProtocol(String),
    /// A limit of zero would refuse every connection.
    #[error("{0} must be at least 1")]
    ZeroLimit(&'static str),
}

impl SettingsError {
    /// The gRPC status a client gets for it.
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::invalid_argument(self.to_string())
    }
}

/// The swarm's settings, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSettings {
    /// Where the swarm listens (TCP and QUIC).
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start and used to join the DHT.
    pub bootstrap: Vec<Multiaddr>,
    /// Domains whose `_dnsaddr` TXT records name more bootstrap peers.
    pub bootstrap_domains: Vec<DomainName>,
    /// mDNS discovery on the local network.
    pub mdns: bool,
    /// Serve as a circuit relay for others.
    pub relay_server: bool,
    /// Reserve relay slots to be reachable from behind a NAT.
    pub relay_client: bool,
    /// Relays (with `/p2p/`) to reserve a slot on.
    pub relays: Vec<Multiaddr>,
    /// The Kademlia protocol; `/ipfs/kad/1.0.0` joins the IPFS DHT.
    pub kad_protocol: String,
    /// Established connections in all.
    pub max_connections: u32,
    /// Established connections to one peer.
    pub max_connections_per_peer: u32,
    /// The DNS server for `_dnsaddr` lookups; the system's when `None` (flag only).
    #[serde(skip)]
    pub dns_server: Option<SocketAddr>,
}

/// The IPFS DHT's protocol name.
pub const IPFS_KAD: &str = "/ipfs/kad/1.0.0";

impl Default for PeerSettings {
    fn default() -> Self {
        let parse = |s: &str| s.parse().unwrap_or_else(|_| Multiaddr::empty());
        Self {
            listen: vec![
                parse("/ip4/0.0.0.0/tcp/4001"),
                parse("/ip4/0.0.0.0/udp/4001/quic-v1"),
            ],
            bootstrap: Vec::new(),
            bootstrap_domains: Vec::new(),
            mdns: true,
            relay_server: false,
            relay_client: true,
            relays: Vec::new(),
            kad_protocol: IPFS_KAD.to_owned(),
            max_connections: 256,
            max_connections_per_peer: 4,
            dns_server: None,
        }
    }
}

impl PeerSettings {
    /// The Kademlia protocol as libp2p takes it.
    pub fn kad_protocol(&self) -> StreamProtocol {
        StreamProtocol::try_from_owned(self.kad_protocol.clone())
            .unwrap_or(StreamProtocol::new(IPFS_KAD))
    }

    /// Reads and checks the API's form.
    pub fn from_proto(config: &pb::PeerConfig) -> Result<Self, SettingsError> {
        let defaults = Self::default();
        let listen = multiaddrs("listen_addrs", &config.listen_addrs, false)?;
        let kad_protocol = if config.kad_protocol.is_empty() {
            IPFS_KAD.to_owned()
        } else if config.kad_protocol.starts_with('/') && config.kad_protocol.len() < 128 {
            config.kad_protocol.clone()
        } else {
            return Err(SettingsError::BadProtocol(config.kad_protocol.clone()));
        };
        let bootstrap_domains = config
            .bootstrap_domains
            .iter()
            .map(|d| {
                d.parse().map_err(|e: aurae_core::name::NameError| {
                    SettingsError::BadDomain(e.to_string())
                })
            })
            .collect::<Result<_, _>>()?;
        let limit = |value: u32, default: u32, name| match value {
            0 if default == 0 => Err(SettingsError::ZeroLimit(name)),
            0 => Ok(default),
            n => Ok(n),
        };
        Ok(Self {
            listen: if listen.is_empty() {
                defaults.listen
            } else {
                listen
            },
            bootstrap: multiaddrs("bootstrap", &config.bootstrap, true)?,
            bootstrap_domains,
            mdns: config.mdns,
            relay_server: config.relay_server,
            relay_client: config.relay_client,
            relays: multiaddrs("relays", &config.relays, true)?,
            kad_protocol,
            max_connections: limit(
                config.max_connections,
                defaults.max_connections,
                "max_connections",
            )?,
            max_connections_per_peer: limit(
                config.max_connections_per_peer,
                defaults.max_connections_per_peer,
                "max_connections_per_peer",
            )?,
            dns_server: None,
        })
    }

    /// The API's form.
    pub fn to_proto(&self) -> pb::PeerConfig {
        let text = |addrs: &[Multiaddr]| addrs.iter().map(ToString::to_string).collect();
        pb::PeerConfig {
            listen_addrs: text(&self.listen),
            bootstrap: text(&self.bootstrap),
            bootstrap_domains: self
                .bootstrap_domains
                .iter()
                .map(ToString::to_string)
                .collect(),
            mdns: self.mdns,
            relay_server: self.relay_server,
            relay_client: self.relay_client,
            kad_protocol: self.kad_protocol.clone(),
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            relays: text(&self.relays),
        }
    }
}

/// The peer a multiaddr ends in, if it names one.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}

/// Parses multiaddrs of setting `field`; `with_peer`: each must end in `/p2p/<PeerId>`.
pub fn multiaddrs(
    field: &'static str,
    values: &[String],
    with_peer: bool,
) -> Result<Vec<Multiaddr>, SettingsError> {
    values
        .iter()
        .map(|value| {
            let addr: Multiaddr = value.parse().map_err(|e: libp2p::multiaddr::Error| {
                SettingsError::BadMultiaddr {
                    field,
                    value: value.chars().take(200).collect(),
                    why: e.to_string(),
                }
            })?;
            if with_peer && peer_of(&addr).is_none() {
                return Err(SettingsError::NoPeerId {
                    field,
                    value: value.chars().take(200).collect(),
                });
            }
            Ok(addr)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_api_form() {
        let settings = PeerSettings {
            bootstrap: vec![
                "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGzBiKgF3yV4u5Lp3RrSw4SDZQJ3Lk4L3hcSQL4rTHAmt"
                    .parse()
                    .unwrap_or_else(|_| Multiaddr::empty()),
            ],
            ..PeerSettings::default()
        };
        let back = PeerSettings::from_proto(&settings.to_proto());
        assert_eq!(back, Ok(settings));
    }

    #[test]
    fn bad_values_are_named() {
        let config = pb::PeerConfig {
            bootstrap: vec!["/ip4/127.0.0.1/tcp/1".to_owned()],
            ..PeerSettings::default().to_proto()
        };
        let error = PeerSettings::from_proto(&config)
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("bootstrap") && e.contains("/p2p/")));
        let config = pb::PeerConfig {
            listen_addrs: vec!["tcp 4001".to_owned()],
            ..PeerSettings::default().to_proto()
        };
        let error = PeerSettings::from_proto(&config)
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("listen_addrs") && e.contains("tcp 4001")));
        let config = pb::PeerConfig {
            kad_protocol: "kad".to_owned(),
            ..PeerSettings::default().to_proto()
        };
        assert!(matches!(
            PeerSettings::from_proto(&config),
            Err(SettingsError::BadProtocol(_))
        ));
    }
}
