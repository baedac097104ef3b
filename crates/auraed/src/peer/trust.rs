//! The trust list: which remote peers may call this node's API, and as whom.
//!
//! A remote caller authenticates with its key (the swarm's noise handshake proves its
//! PeerId); the trust list turns that PeerId into a principal, and the authorization
//! layer decides what that principal may do, exactly as for a local certificate. A peer
//! not on the list has no principal: every request it makes is refused. The list is kept
//! in the store (`/.aurae/peer/trust/<PeerId>`), written durably before it takes effect.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use aurae_core::name::{DomainName, PeerName, Principal};
use aurae_core::path::StorePath;
use aurae_store::namespace::Removal;
use aurae_store::{Content, Durability, PutOptions, Store, StoreError};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::authz::state::records;

/// Where trust entries are kept.
pub const TRUST_DIR: &str = "/.aurae/peer/trust";
/// The entity of the principal a trusted peer gets by default.
pub const PEER_ENTITY: &str = "node";
/// The domain of default peer principals: reserved (RFC 2606), so that it never names a
/// real domain or this node's own.
pub const PEER_DOMAIN: &str = "peer.invalid";

/// Why the trust list could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The store is not open.
    #[error("the database is not open, so the trust list cannot be changed")]
    NoStore,
    /// The principal is reserved.
    #[error("{0}")]
    Reserved(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TrustError {
    /// The gRPC status for it.
    pub fn into_status(self) -> tonic::Status {
        match self {
            Self::NoStore => tonic::Status::unavailable(self.to_string()),
            Self::Reserved(_) => tonic::Status::invalid_argument(self.to_string()),
            Self::Store(e) => crate::storage::error::status(e),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct TrustRecord {
    principal: String,
}

/// The trust list, read from the store at start and changed through the API.
#[derive(Debug, Default)]
pub struct TrustList {
    entries: RwLock<Arc<BTreeMap<PeerId, Principal>>>,
    store: OnceLock<Arc<Store>>,
    changes: tokio::sync::Mutex<()>,
}

/// The principal a trusted peer gets when none is given: `node@p<id>@peer.invalid`,
/// where `<id>` is its PeerId in lowercase base32 (a PeerId itself has capitals, which a
/// peer label may not hold).
/// An error (never met with real PeerIds, which fit a label) rather than a shared
/// fallback name, which would give different peers one principal.
pub fn default_principal(peer: &PeerId) -> Result<Principal, aurae_core::name::NameError> {
    format!(
        "{PEER_ENTITY}@p{}@{PEER_DOMAIN}",
        base32_lower(&peer.to_bytes())
    )
    .parse()
}

fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer = 0u32;
    let mut bits = 0u32;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

impl TrustList {
    /// Reads the stored entries; later changes are written to `store`.
    pub fn attach_store(&self, store: Arc<Store>) -> Result<(), StoreError> {
        let mut entries = BTreeMap::new();
        for (name, bytes) in records(&store, TRUST_DIR)? {
            let parsed = name
                .parse::<PeerId>()
                .map_err(|e| e.to_string())
                .and_then(|peer| {
                    let record: TrustRecord =
                        serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                    let principal: Principal = record
                        .principal
                        .parse()
                        .map_err(|e: aurae_core::name::NameError| e.to_string())?;
                    Ok((peer, principal))
                });
            match parsed {
                Ok((peer, principal)) => {
                    entries.insert(peer, principal);
                }
                Err(why) => tracing::warn!(record = %name, %why, "stored trust entry ignored"),
            }
        }
        tracing::info!(trusted = entries.len(), "peer trust list loaded");
        *self.entries.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(entries);
        let _ = self.store.set(store);
        Ok(())
    }

    /// Every trusted peer and its principal.
    pub fn entries(&self) -> Arc<BTreeMap<PeerId, Principal>> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The principal `peer` is trusted as, if it is trusted.
    pub fn principal_of(&self, peer: &PeerId) -> Option<Principal> {
        self.entries().get(peer).cloned()
    }

    /// The trusted peer whose principal has peer name `peer` and domain `domain`.
    pub fn peer_named(&self, peer: &str, domain: &DomainName) -> Option<PeerId> {
        self.entries()
            .iter()
            .find(|(_, p)| p.peer.as_str() == peer && p.domain == *domain)
            .map(|(id, _)| *id)
    }

    /// Trusts `peer` as `principal`, durably. A principal that is the admin of `node`
    /// (this node) is refused: a remote peer never holds the local admin's rights by name.
    pub async fn trust(
        &self,
        peer: PeerId,
        principal: Principal,
        node: Option<(&PeerName, &DomainName)>,
    ) -> Result<(), TrustError> {
        if let Some((name, domain)) = node
            && principal.is_admin_of(name, domain)
        {
            return Err(TrustError::Reserved(format!(
                "{principal} is this node's admin; give the peer a principal of its own (e.g. node@{}@{})",
                "<its-name>", domain
            )));
        }
        let _serialized = self.changes.lock().await;
        let store = self.store.get().ok_or(TrustError::NoStore)?.clone();
        let path: StorePath = format!("{TRUST_DIR}/{peer}")
            .parse()
            .map_err(|e: aurae_core::path::PathError| StoreError::InvalidName(e.to_string()))?;
        let bytes = serde_json::to_vec_pretty(&TrustRecord {
            principal: principal.to_string(),
        })
        .unwrap_or_default();
        put_private(&store, path, bytes).await?;
        let mut next = (*self.entries()).clone();
        next.insert(peer, principal);
        *self.entries.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Ok(())
    }

    /// Takes `peer` off the list, durably; whether it was on it.
    pub async fn untrust(&self, peer: &PeerId) -> Result<bool, TrustError> {
        let _serialized = self.changes.lock().await;
        if !self.entries().contains_key(peer) {
            return Ok(false);
        }
        let store = self.store.get().ok_or(TrustError::NoStore)?.clone();
        let path: StorePath = format!("{TRUST_DIR}/{peer}")
            .parse()
            .map_err(|e: aurae_core::path::PathError| StoreError::InvalidName(e.to_string()))?;
        store
            .write(Durability::Durable, move |w| {
                let mut remove = aurae_store::namespace::remove(path.clone(), Removal::Single);
                match remove(w) {
                    Err(StoreError::NotFound(_)) => Ok(()),
                    other => other,
                }
            })
            .await?;
        let mut next = (*self.entries()).clone();
        next.remove(peer);
        *self.entries.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
        Ok(true)
    }
}

/// The trust list held still while a node config is applied: read it, write the next
/// list's records in the apply's transaction, then publish it.
#[derive(Debug)]
pub struct TrustHold<'a> {
    list: &'a TrustList,
    _serialized: tokio::sync::MutexGuard<'a, ()>,
}

impl TrustList {
    /// Holds every other trust change off until the hold is published or dropped.
    pub async fn hold(&self) -> TrustHold<'_> {
        TrustHold {
            list: self,
            _serialized: self.changes.lock().await,
        }
    }
}

impl TrustHold<'_> {
    /// The writes that make the store hold `next` instead of the list in force.
    pub fn writes(
        &self,
        next: &BTreeMap<PeerId, Principal>,
    ) -> Result<Vec<crate::authz::state::StoreOp>, String> {
        let current = self.list.entries();
        let mut ops: Vec<crate::authz::state::StoreOp> = Vec::new();
        let path_of = |peer: &PeerId| -> Result<StorePath, String> {
            format!("{TRUST_DIR}/{peer}")
                .parse()
                .map_err(|e: aurae_core::path::PathError| e.to_string())
        };
        for (peer, principal) in next {
            if current.get(peer) == Some(principal) {
                continue;
            }
            let path = path_of(peer)?;
            let bytes = serde_json::to_vec_pretty(&TrustRecord {
                principal: principal.to_string(),
            })
            .map_err(|e| e.to_string())?;
            ops.push(Box::new(put_op(path, bytes)));
        }
        for peer in current.keys().filter(|p| !next.contains_key(p)) {
            let path = path_of(peer)?;
            ops.push(Box::new(move |w| {
                let mut remove = aurae_store::namespace::remove(path.clone(), Removal::Single);
                match remove(w) {
                    Err(StoreError::NotFound(_)) => Ok(()),
                    other => other,
                }
            }));
        }
        Ok(ops)
    }

    /// Serves `next` from now on (its records are written).
    pub fn publish(self, next: BTreeMap<PeerId, Principal>) {
        *self
            .list
            .entries
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
    }
}

/// The write of a private record (mode 0600) holding `bytes` at `path`.
fn put_op(
    path: StorePath,
    bytes: Vec<u8>,
) -> impl FnMut(&mut aurae_store::Writer<'_>) -> Result<(), StoreError> + Send + 'static {
    move |w| {
        let mut put = aurae_store::namespace::put(
            path.clone(),
            Content::Bytes(bytes.clone()),
            PutOptions {
                mode: Some(0o600),
                ..PutOptions::default()
            },
        );
        put(w).map(|_| ())
    }
}

/// Writes `bytes` durably at `path` (a private record: mode 0600).
pub(crate) async fn put_private(
    store: &Store,
    path: StorePath,
    bytes: Vec<u8>,
) -> Result<(), StoreError> {
    store
        .write(Durability::Durable, put_op(path, bytes))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_principals_are_valid_and_distinct() {
        let a = PeerId::from(libp2p::identity::Keypair::generate_ed25519().public());
        let b = PeerId::from(libp2p::identity::Keypair::generate_ed25519().public());
        let (Ok(pa), Ok(pb)) = (default_principal(&a), default_principal(&b)) else {
            panic!("default principals of ed25519 PeerIds are valid");
        };
        assert_ne!(pa, pb);
        assert_eq!(pa.domain.as_str(), PEER_DOMAIN);
        assert!(pa.peer.as_str().len() <= 63, "{}", pa.peer);
        let text = pa.to_string();
        assert_eq!(text.parse::<Principal>().ok(), Some(pa));
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32_lower(b"foobar"), "mzxw6ytboi");
        assert_eq!(base32_lower(b""), "");
        assert_eq!(base32_lower(b"f"), "my");
    }
}
