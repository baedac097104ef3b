//! Signed records on the DHT: a peer's name and the entities it serves.
//!
//! A name record maps `<peer>@<domain>` to a PeerId and addresses. It is signed with the
//! key of the PeerId it names and checked on every read and every store: a peer cannot
//! publish a record that points a name at another peer, a record whose signature or key
//! does not match is dropped, an expired one is ignored, and of two valid records from
//! the same peer the newer (higher sequence) wins. Two different peers claiming one name
//! are never settled silently: the resolver prefers a peer the node trusts under that
//! name, and otherwise reports the conflict.
//!
//! An entity is announced as a provider record under the multihash (sha2-256) of
//! `<entity>@<peer>@<domain>`: the key a CIDv1 of that name has, which other libp2p
//! implementations (js-libp2p's `provide(cid)`) use too.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aurae_proto::v0 as pb;
use libp2p::identity::{Keypair, PublicKey};
use libp2p::kad::RecordKey;
use libp2p::{Multiaddr, PeerId};
use prost::Message;

/// Where name records live in the DHT's key space.
pub const NAME_KEY_PREFIX: &str = "/aurae/name/";
/// What a signature covers besides the record: a signature made for anything else
/// never validates as a name record.
const SIGNING_DOMAIN: &[u8] = b"aurae-name-record:";
/// How long a published record is valid.
pub const RECORD_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// The largest record accepted.
const MAX_RECORD_BYTES: usize = 8 * 1024;

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// It did not decode.
    #[error("the record does not decode: {0}")]
    Malformed(String),
    /// It is larger than any honest record.
    #[error("the record is {0} bytes; at most {MAX_RECORD_BYTES} are accepted")]
    TooLarge(usize),
    /// The key that signed it is not the key of the PeerId it names.
    #[error("the record names peer {claimed} but is signed by {signer}")]
    WrongSigner {
        /// The PeerId in the record.
        claimed: String,
        /// The PeerId of the signing key.
        signer: String,
    },
    /// The signature is not valid.
    #[error("the record's signature is not valid")]
    BadSignature,
    /// It is stored under another name's key.
    #[error("the record for '{name}' is stored under the key of another name")]
    WrongKey {
        /// The name in the record.
        name: String,
    },
    /// It has expired.
    #[error("the record for '{0}' has expired")]
    Expired(String),
}

/// A name record whose signature, signer, key and lifetime were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidName {
    /// `<peer>@<domain>`.
    pub name: String,
    /// The peer it names, which signed it.
    pub peer: PeerId,
    /// Where the peer said it can be reached.
    pub addrs: Vec<Multiaddr>,
    /// Publication time in ms: the newer record wins.
    pub sequence: u64,
    /// Expiry, ms since the epoch.
    pub expires: u64,
}

/// The DHT key of name `<peer>@<domain>`.
pub fn name_key(name: &str) -> RecordKey {
    RecordKey::new(&format!("{NAME_KEY_PREFIX}{name}"))
}

/// The DHT provider key of a fully qualified entity name (the multihash of its
/// sha2-256 digest, as in a CIDv1 of it).
pub fn provider_key(entity: &str) -> RecordKey {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(entity.as_bytes());
    let mut key = Vec::with_capacity(34);
    key.extend_from_slice(&[0x12, 0x20]);
    key.extend_from_slice(&digest);
    RecordKey::new(&key)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Signs a name record for `name` pointing at `keypair`'s own PeerId.
pub fn sign_name(keypair: &Keypair, name: &str, addrs: &[Multiaddr], sequence: u64) -> Vec<u8> {
    let record = pb::NameRecord {
        name: name.to_owned(),
        peer_id: keypair.public().to_peer_id().to_bytes(),
        addrs: addrs.iter().map(|a| a.to_vec()).collect(),
        sequence,
        expires: sequence
            .saturating_add(u64::try_from(RECORD_LIFETIME.as_millis()).unwrap_or(u64::MAX)),
    }
    .encode_to_vec();
    let signature = keypair.sign(&signed_bytes(&record)).unwrap_or_default();
    pb::SignedNameRecord {
        record,
        public_key: keypair.public().encode_protobuf(),
        signature,
    }
    .encode_to_vec()
}

fn signed_bytes(record: &[u8]) -> Vec<u8> {
    [SIGNING_DOMAIN, record].concat()
}

/// Checks a record read from (or offered to) the DHT under `key` at time `now_ms`.
pub fn validate_name(key: &RecordKey, value: &[u8], now_ms: u64) -> Result<ValidName, RecordError> {
    if value.len() > MAX_RECORD_BYTES {
        return Err(RecordError::TooLarge(value.len()));
    }
    let signed =
        pb::SignedNameRecord::decode(value).map_err(|e| RecordError::Malformed(e.to_string()))?;
    let public = PublicKey::try_decode_protobuf(&signed.public_key)
        .map_err(|e| RecordError::Malformed(format!("public key: {e}")))?;
    let record = pb::NameRecord::decode(signed.record.as_slice())
        .map_err(|e| RecordError::Malformed(e.to_string()))?;
    let claimed = PeerId::from_bytes(&record.peer_id)
        .map_err(|e| RecordError::Malformed(format!("peer id: {e}")))?;
    let signer = public.to_peer_id();
    if signer != claimed {
        return Err(RecordError::WrongSigner {
            claimed: claimed.to_string(),
            signer: signer.to_string(),
        });
    }
    if !public.verify(&signed_bytes(&signed.record), &signed.signature) {
        return Err(RecordError::BadSignature);
    }
    if *key != name_key(&record.name) {
        return Err(RecordError::WrongKey { name: record.name });
    }
    if record.expires <= now_ms {
        return Err(RecordError::Expired(record.name));
    }
    let addrs = record
        .addrs
        .iter()
        .filter_map(|bytes| Multiaddr::try_from(bytes.clone()).ok())
        .collect();
    Ok(ValidName {
        name: record.name,
        peer: claimed,
        addrs,
        sequence: record.sequence,
        expires: record.expires,
    })
}

/// Of the valid records found for one name, the newest per peer, newest first.
pub fn newest_per_peer(mut found: Vec<ValidName>) -> Vec<ValidName> {
    found.sort_by_key(|record| std::cmp::Reverse(record.sequence));
    let mut seen = std::collections::HashSet::new();
    found.retain(|record| seen.insert(record.peer));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> Vec<Multiaddr> {
        vec![
            "/ip4/127.0.0.1/tcp/4001"
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty()),
        ]
    }

    #[test]
    fn a_signed_record_validates_and_names_its_signer() {
        let key = Keypair::generate_ed25519();
        let value = sign_name(&key, "node1@local", &addr(), 1_000);
        let valid = validate_name(&name_key("node1@local"), &value, 2_000);
        assert_eq!(
            valid.map(|v| (v.peer, v.addrs)),
            Ok((key.public().to_peer_id(), addr()))
        );
    }

    #[test]
    fn a_record_naming_another_peer_is_refused() {
        let victim = Keypair::generate_ed25519();
        let forger = Keypair::generate_ed25519();
        // The forger signs a record that points the victim's name at the victim's id,
        // with the forger's own key: the signer does not match.
        let record = pb::NameRecord {
            name: "node1@local".to_owned(),
            peer_id: victim.public().to_peer_id().to_bytes(),
            addrs: Vec::new(),
            sequence: 5,
            expires: u64::MAX,
        }
        .encode_to_vec();
        let value = pb::SignedNameRecord {
            signature: forger.sign(&signed_bytes(&record)).unwrap_or_default(),
            record,
            public_key: forger.public().encode_protobuf(),
        }
        .encode_to_vec();
        assert!(matches!(
            validate_name(&name_key("node1@local"), &value, 0),
            Err(RecordError::WrongSigner { .. })
        ));
    }

    #[test]
    fn tampering_expiry_and_wrong_keys_are_refused() {
        let key = Keypair::generate_ed25519();
        let mut value = sign_name(&key, "node1@local", &addr(), 1_000);
        assert!(matches!(
            validate_name(&name_key("node2@local"), &value, 0),
            Err(RecordError::WrongKey { .. })
        ));
        let lifetime = u64::try_from(RECORD_LIFETIME.as_millis()).unwrap_or(u64::MAX);
        assert!(matches!(
            validate_name(&name_key("node1@local"), &value, 1_000 + lifetime),
            Err(RecordError::Expired(_))
        ));
        // Flip a byte inside the signed record.
        if let Some(byte) = value.get_mut(6) {
            *byte ^= 0x01;
        }
        assert!(validate_name(&name_key("node1@local"), &value, 0).is_err());
        assert!(matches!(
            validate_name(&name_key("x"), &[0xff; 9000], 0),
            Err(RecordError::TooLarge(9000))
        ));
    }

    #[test]
    fn the_newer_record_of_a_peer_wins() {
        let key = Keypair::generate_ed25519();
        let old = validate_name(&name_key("n@local"), &sign_name(&key, "n@local", &[], 1), 0);
        let new = validate_name(
            &name_key("n@local"),
            &sign_name(&key, "n@local", &addr(), 2),
            0,
        );
        let (Ok(old), Ok(new)) = (old, new) else {
            panic!("records should validate");
        };
        assert_eq!(newest_per_peer(vec![old, new.clone()]), vec![new]);
    }

    #[test]
    fn provider_keys_are_sha256_multihashes() {
        let key = provider_key("nginx@node1@local");
        assert_eq!(key.as_ref().len(), 34);
        assert_eq!(key.as_ref().get(..2), Some(&[0x12, 0x20][..]));
    }
}
