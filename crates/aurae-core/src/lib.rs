//! The shared vocabulary of Aurae: names, the node identity, PKI and TLS, client config.
//!
//! Everything here is used by the daemon and by the clients alike; nothing here talks
//! to the network or knows about gRPC.
#![deny(missing_docs)]

/// Addresses people type for peers and entities (`node1@example.org`, `data@12D3KooW...`).
pub mod address;
/// Client configuration (`~/.aurae/config.toml`) and default locations.
pub mod config;
/// Atomic, mode-exact file writes for keys, certificates and state.
pub mod fsutil;
/// The node's ed25519 key and the PeerId derived from it.
pub mod identity;
/// What the node's CA issued and revoked: the ledger and the revocation list.
pub mod ledger;
/// Validated names: entities, peers, domains, principals.
pub mod name;
/// Validated paths of the store namespace.
pub mod path;
/// The node's CA: creating it and issuing certificates.
pub mod pki;
/// Sizes as people type and read them (`1.5G`), for the CLI and the node config alike.
pub mod size;
/// rustls configurations for the daemon and its clients.
pub mod tls;

/// Version of this build, shared by every binary.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
