//! Addresses as people type them: a peer (`node1`, `12D3KooW...`), a peer in a domain
//! (`node1@example.org`), an entity on a peer (`data@node2`, `nginx@node1@example.org`).
//!
//! This module owns reading those forms from text and writing them back, and the errors
//! that point at the part that was wrong. It builds on the checked names of
//! [`crate::name`] and never loosens their rules. Parsing must never panic on any input and
//! must never decode more than a PeerId's worth of base58 (a long string is refused by its
//! length first, so no input can make parsing slow).

use std::fmt;
use std::str::FromStr;

use libp2p_identity::PeerId;

use crate::name::{DomainName, EntityName, NameError, PeerName, Principal};

/// The request header that names the peer a call is for (`<peer>[@<domain>]` or a
/// PeerId): clients set it (`aurae --peer`), and auraed forwards such a call to that peer.
/// One definition, so that the two sides cannot drift apart.
pub const PEER_HEADER: &str = "aurae-peer";

/// Longest text that can be a PeerId: a 42-byte inlined key as an identity multihash is 44
/// bytes, 60 base58 characters. Longer text is refused before it is decoded.
pub const MAX_PEER_ID_LEN: usize = 60;

/// How the PeerIds of real keys begin: ed25519 (`12D3KooW`), secp256k1 (`16Uiu2`), and
/// RSA or ECDSA keys hashed with sha256 (`Qm`). Text that begins so is read as a PeerId
/// and, if it does not decode, is reported as a broken PeerId rather than a bad name.
const PEER_ID_PREFIXES: [&str; 3] = ["12D3KooW", "16Uiu2", "Qm"];

/// Text of this length or more, all ASCII letters and digits with a capital among them, is
/// taken for a PeerId that failed to decode (the shortest real PeerId has 46 characters).
const PEER_ID_GUESS_LEN: usize = 40;

/// How much of a refused text an error message repeats; the rest is elided.
const SHOWN_CHARS: usize = 100;

/// A peer, named either way a person knows it: its peer name or its PeerId.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerRef {
    /// A peer name such as `node1`, resolved within a domain.
    Name(PeerName),
    /// A libp2p PeerId such as `12D3KooW...`: the peer's key, valid in every domain.
    Id(PeerId),
}

impl PeerRef {
    /// The peer name, if the peer was given by name.
    pub fn as_name(&self) -> Option<&PeerName> {
        match self {
            Self::Name(name) => Some(name),
            Self::Id(_) => None,
        }
    }

    /// The PeerId, if the peer was given by id.
    pub fn as_id(&self) -> Option<&PeerId> {
        match self {
            Self::Name(_) => None,
            Self::Id(id) => Some(id),
        }
    }
}

impl From<PeerName> for PeerRef {
    fn from(name: PeerName) -> Self {
        Self::Name(name)
    }
}

impl From<PeerId> for PeerRef {
    fn from(id: PeerId) -> Self {
        Self::Id(id)
    }
}

impl FromStr for PeerRef {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = split(s, AddressForm::Peer)?;
        parse_peer(s, parts[0])
    }
}

impl fmt::Display for PeerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(name) => name.fmt(f),
            Self::Id(id) => id.fmt(f),
        }
    }
}

/// A peer to talk to: `<peer>` or `<peer>@<domain>` (what `aurae --peer` takes). Without
/// a domain the local one is meant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddress {
    /// The peer, by name or by PeerId.
    pub peer: PeerRef,
    /// The domain, if one was written.
    pub domain: Option<DomainName>,
}

impl PeerAddress {
    /// The domain the peer is in: the one written, else `local` (the caller's own).
    pub fn domain_or<'a>(&'a self, local: &'a DomainName) -> &'a DomainName {
        self.domain.as_ref().unwrap_or(local)
    }
}

impl From<PeerRef> for PeerAddress {
    fn from(peer: PeerRef) -> Self {
        Self { peer, domain: None }
    }
}

impl FromStr for PeerAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = split(s, AddressForm::PeerAddress)?;
        let peer = parse_peer(s, parts[0])?;
        let domain = parts.get(1).map(|p| parse_domain(s, *p)).transpose()?;
        Ok(Self { peer, domain })
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.peer.fmt(f)?;
        match &self.domain {
            Some(domain) => write!(f, "@{domain}"),
            None => Ok(()),
        }
    }
}

/// An entity on a peer: `<entity>@<peer>` or `<entity>@<peer>@<domain>` (what
/// `aurae resolve` and `auraefs mount data@node2` take). Without a domain the local one
/// is meant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityAddress {
    /// The entity: a cell, a service, a volume, a user.
    pub entity: EntityName,
    /// The peer it lives on, by name or by PeerId.
    pub peer: PeerRef,
    /// The domain, if one was written.
    pub domain: Option<DomainName>,
}

impl EntityAddress {
    /// The same address with the domain written out: the one given, else `local`.
    pub fn with_domain(&self, local: &DomainName) -> EntityAddress {
        Self {
            domain: Some(self.domain.as_ref().unwrap_or(local).clone()),
            ..self.clone()
        }
    }

    /// The peer the entity lives on, in the domain written (if any).
    pub fn peer_address(&self) -> PeerAddress {
        PeerAddress {
            peer: self.peer.clone(),
            domain: self.domain.clone(),
        }
    }

    /// The principal `<entity>@<peer>@<domain>` this address names, the local domain filling
    /// in; `None` when the peer is given by PeerId (a principal needs the peer's name).
    pub fn principal(&self, local: &DomainName) -> Option<Principal> {
        Some(Principal {
            entity: self.entity.clone(),
            peer: self.peer.as_name()?.clone(),
            domain: self.domain.as_ref().unwrap_or(local).clone(),
        })
    }
}

impl From<Principal> for EntityAddress {
    fn from(p: Principal) -> Self {
        Self {
            entity: p.entity,
            peer: PeerRef::Name(p.peer),
            domain: Some(p.domain),
        }
    }
}

impl FromStr for EntityAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = split(s, AddressForm::EntityAddress)?;
        let entity = parse_entity(s, parts[0])?;
        let peer = parse_peer(s, parts[1])?;
        let domain = parts.get(2).map(|p| parse_domain(s, *p)).transpose()?;
        Ok(Self {
            entity,
            peer,
            domain,
        })
    }
}

impl fmt::Display for EntityAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.entity, self.peer)?;
        match &self.domain {
            Some(domain) => write!(f, "@{domain}"),
            None => Ok(()),
        }
    }
}

macro_rules! serde_via_text {
    ($($ty:ty),*) => {$(
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

serde_via_text!(PeerRef, PeerAddress, EntityAddress);

/// Which form of address was being read; errors use it to say what was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressForm {
    /// A bare peer: `<peer-name>` or `<PeerId>`.
    Peer,
    /// `<peer>` or `<peer>@<domain>`.
    PeerAddress,
    /// `<entity>@<peer>` or `<entity>@<peer>@<domain>`.
    EntityAddress,
}

impl AddressForm {
    /// The grammar of the form and an example, for messages.
    fn grammar(self) -> &'static str {
        match self {
            Self::Peer => "<peer-name> or <PeerId> (e.g. 'node1' or '12D3KooW...')",
            Self::PeerAddress => "<peer> or <peer>@<domain> (e.g. 'node1' or 'node1@example.org')",
            Self::EntityAddress => {
                "<entity>@<peer> or <entity>@<peer>@<domain> (e.g. 'data@node2' or 'nginx@node1@example.org')"
            }
        }
    }

    /// The form's name with its article, to begin a sentence's object.
    fn with_article(self) -> &'static str {
        match self {
            Self::Peer => "a peer",
            Self::PeerAddress => "a peer address",
            Self::EntityAddress => "an entity address",
        }
    }

    /// How many `@`-separated parts the form has at least and at most.
    fn parts(self) -> (usize, usize) {
        match self {
            Self::Peer => (1, 1),
            Self::PeerAddress => (1, 2),
            Self::EntityAddress => (2, 3),
        }
    }
}

impl fmt::Display for AddressForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Peer => "peer",
            Self::PeerAddress => "peer address",
            Self::EntityAddress => "entity address",
        })
    }
}

/// Which part of an address was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressPart {
    /// The `<entity>` before the first `@`.
    Entity,
    /// The `<peer>`, read as a peer name.
    Peer,
    /// The `<peer>`, read as a PeerId (it looked like one).
    PeerId,
    /// The `<domain>` after the last `@`.
    Domain,
}

impl fmt::Display for AddressPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Entity => "entity",
            Self::Peer => "peer",
            Self::PeerId => "peer id",
            Self::Domain => "domain",
        })
    }
}

/// Why an address was refused. Each error repeats the text, points at the byte where the
/// problem is, and says what would have been accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing was given.
    #[error("the {form} is empty: write {}", form.grammar())]
    Empty {
        /// The form that was expected.
        form: AddressForm,
    },
    /// An entity address had no `@<peer>` (a bare `nginx`).
    #[error("{} names no peer: {} is {}", Quoted(text), form.with_article(), form.grammar())]
    MissingPeer {
        /// The whole refused text.
        text: String,
        /// Where the `@<peer>` is missing: the end of the text.
        offset: usize,
        /// The form that was expected.
        form: AddressForm,
    },
    /// More `@` than the form has parts for.
    #[error(
        "in {}, the '@' at byte {offset} is one too many: {} is {}",
        Quoted(text),
        form.with_article(),
        form.grammar()
    )]
    TooManyParts {
        /// The whole refused text.
        text: String,
        /// The byte offset of the first `@` too many.
        offset: usize,
        /// The form that was expected.
        form: AddressForm,
    },
    /// A part between `@`s (or before the first, or after the last) was empty.
    #[error("in {}, the {part} part (at byte {offset}) is empty: {}", Quoted(text), empty_hint(*part))]
    EmptyPart {
        /// The whole refused text.
        text: String,
        /// Which part is empty.
        part: AddressPart,
        /// Where it would start.
        offset: usize,
    },
    /// A part broke its rule: a name with a bad character or too long, a domain that is
    /// not a DNS name, a PeerId that does not decode.
    #[error(
        "in {}, the {part} part {} (at byte {offset}) {reason}",
        Quoted(text),
        Quoted(part_text)
    )]
    BadPart {
        /// The whole refused text.
        text: String,
        /// Which part is wrong.
        part: AddressPart,
        /// The text of that part.
        part_text: String,
        /// The byte offset where that part starts.
        offset: usize,
        /// What is wrong with it and what would do instead.
        reason: String,
    },
}

impl AddressError {
    /// The byte offset in the text where the problem is (the text's length when something
    /// is missing at its end); always on a character boundary of the text.
    pub fn offset(&self) -> usize {
        match self {
            Self::Empty { .. } => 0,
            Self::MissingPeer { offset, .. }
            | Self::TooManyParts { offset, .. }
            | Self::EmptyPart { offset, .. }
            | Self::BadPart { offset, .. } => *offset,
        }
    }

    /// The part that was wrong, when one part was.
    pub fn part(&self) -> Option<AddressPart> {
        match self {
            Self::Empty { .. } | Self::MissingPeer { .. } | Self::TooManyParts { .. } => None,
            Self::EmptyPart { part, .. } | Self::BadPart { part, .. } => Some(*part),
        }
    }
}

fn empty_hint(part: AddressPart) -> &'static str {
    match part {
        AddressPart::Entity => "give an entity name such as 'nginx' or 'data'",
        AddressPart::Peer | AddressPart::PeerId => {
            "give a peer name such as 'node1' or a PeerId such as 12D3KooW..."
        }
        AddressPart::Domain => {
            "give a domain such as 'example.org', or leave out the '@' to mean the local domain"
        }
    }
}

/// Text in an error message: quoted, with control and invisible characters escaped as
/// `{:?}` would (no escape sequence reaches the terminal raw), and cut after [`SHOWN_CHARS`] characters.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.char_indices();
        f.write_str("'")?;
        for (_, c) in chars.by_ref().take(SHOWN_CHARS) {
            write!(f, "{}", c.escape_debug())?;
        }
        f.write_str("'")?;
        if chars.next().is_some() {
            write!(f, "... ({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

/// One `@`-separated part of the text and where it starts.
#[derive(Clone, Copy)]
struct Part<'a> {
    text: &'a str,
    offset: usize,
}

/// Splits `text` at `@` into as many parts as `form` has, or says why it cannot.
fn split(text: &str, form: AddressForm) -> Result<Vec<Part<'_>>, AddressError> {
    if text.is_empty() {
        return Err(AddressError::Empty { form });
    }
    let (min, max) = form.parts();
    let mut parts = Vec::with_capacity(max);
    let mut start = 0;
    for (at, _) in text.match_indices('@') {
        if parts.len() + 1 == max {
            return Err(AddressError::TooManyParts {
                text: text.to_owned(),
                offset: at,
                form,
            });
        }
        parts.push(Part {
            text: &text[start..at],
            offset: start,
        });
        start = at + 1;
    }
    parts.push(Part {
        text: &text[start..],
        offset: start,
    });
    if parts.len() < min {
        return Err(AddressError::MissingPeer {
            text: text.to_owned(),
            offset: text.len(),
            form,
        });
    }
    Ok(parts)
}

fn bad_part(whole: &str, part: Part<'_>, which: AddressPart, reason: String) -> AddressError {
    if part.text.is_empty() {
        return AddressError::EmptyPart {
            text: whole.to_owned(),
            part: which,
            offset: part.offset,
        };
    }
    AddressError::BadPart {
        text: whole.to_owned(),
        part: which,
        part_text: part.text.to_owned(),
        offset: part.offset,
        reason,
    }
}

/// What is wrong with a name, without the name itself (the address error repeats it).
fn name_reason(error: &NameError, rule: &str) -> String {
    match error {
        NameError::Empty { .. } => "is empty".to_owned(),
        NameError::TooLong { len, max, .. } => {
            format!("is {len} characters long; the limit is {max}")
        }
        NameError::BadCharacter { found, .. } => format!("has the character {found:?}; {rule}"),
        NameError::BadDomain { why, .. } => {
            format!("is not a DNS name: {why} (e.g. 'example.org' or 'local')")
        }
        NameError::BadPrincipal { .. } => format!("is not a name; {rule}"),
    }
}

fn parse_entity(whole: &str, part: Part<'_>) -> Result<EntityName, AddressError> {
    part.text.parse().map_err(|e| {
        let rule = "use only a-z, 0-9, '-' or '_', starting with a letter or digit \
                    (labels may be joined by '.', as in 'web.api')";
        bad_part(whole, part, AddressPart::Entity, name_reason(&e, rule))
    })
}

fn parse_domain(whole: &str, part: Part<'_>) -> Result<DomainName, AddressError> {
    part.text
        .parse()
        .map_err(|e| bad_part(whole, part, AddressPart::Domain, name_reason(&e, "")))
}

/// Reads a peer part: a name if it has no capital letter, a PeerId if it decodes as one,
/// and otherwise whichever of the two it looks more like, for the error.
fn parse_peer(whole: &str, part: Part<'_>) -> Result<PeerRef, AddressError> {
    let text = part.text;
    let has_capital = text.bytes().any(|b| b.is_ascii_uppercase());
    let all_base58 = text.chars().all(is_base58);
    if has_capital
        && all_base58
        && text.len() <= MAX_PEER_ID_LEN
        && let Ok(id) = text.parse::<PeerId>()
    {
        return Ok(PeerRef::Id(id));
    }
    let looks_like_id = has_capital
        && (PEER_ID_PREFIXES.iter().any(|p| text.starts_with(p))
            || (text.len() >= PEER_ID_GUESS_LEN
                && text.chars().all(|c| c.is_ascii_alphanumeric())));
    if looks_like_id {
        return Err(bad_part(
            whole,
            part,
            AddressPart::PeerId,
            peer_id_reason(text),
        ));
    }
    text.parse().map(PeerRef::Name).map_err(|e| {
        let rule = "use only a-z, 0-9, '-' or '_', starting with a letter or digit, \
                    or give a PeerId such as 12D3KooW...";
        let mut reason = name_reason(&e, rule);
        if matches!(e, NameError::TooLong { .. }) {
            reason.push_str(" (or give a PeerId such as 12D3KooW...)");
        }
        bad_part(whole, part, AddressPart::Peer, reason)
    })
}

/// Why text that looks like a PeerId is not one.
fn peer_id_reason(text: &str) -> String {
    const HINT: &str = "copy the PeerId whole, as `aurae status` prints it";
    if text.len() > MAX_PEER_ID_LEN {
        return format!(
            "is {} characters long, longer than any PeerId ({MAX_PEER_ID_LEN}); {HINT}",
            text.len()
        );
    }
    if let Some(c) = text.chars().find(|c| !is_base58(*c)) {
        return format!(
            "has the character {c:?}, which a PeerId never holds (base58 has no 0, O, I, l \
             or punctuation); {HINT}"
        );
    }
    match text.parse::<PeerId>() {
        Ok(_) => "is a PeerId".to_owned(),
        Err(e) => format!("does not decode as a PeerId ({e}); {HINT}"),
    }
}

/// Whether `c` is in the bitcoin base58 alphabet that PeerIds are written in.
fn is_base58(c: char) -> bool {
    c.is_ascii_alphanumeric() && !matches!(c, '0' | 'O' | 'I' | 'l')
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p_identity::Keypair;
    use proptest::prelude::*;

    const ED25519_ID: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
    /// An RSA PeerId (a sha256 multihash) of the IPFS bootstrap list.
    const RSA_ID: &str = "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN";

    fn domain(s: &str) -> DomainName {
        s.parse().unwrap()
    }

    fn err<T: FromStr<Err = AddressError> + fmt::Debug>(s: &str) -> AddressError {
        s.parse::<T>().unwrap_err()
    }

    #[test]
    fn a_lowercase_peer_is_a_name_and_a_base58_one_an_id() {
        let name: PeerRef = "node1".parse().unwrap();
        assert_eq!(name.as_name().unwrap().as_str(), "node1");
        assert!(name.as_id().is_none());
        for id in [ED25519_ID, RSA_ID] {
            let peer: PeerRef = id.parse().unwrap();
            assert_eq!(peer.as_id().unwrap().to_base58(), id);
            assert!(peer.as_name().is_none());
            assert_eq!(peer.to_string(), id);
        }
    }

    #[test]
    fn peer_addresses_take_an_optional_domain_and_the_local_one_fills_in() {
        let local = domain("local");
        let bare: PeerAddress = "node1".parse().unwrap();
        assert_eq!(bare.peer.as_name().unwrap().as_str(), "node1");
        assert_eq!(bare.domain, None);
        assert_eq!(bare.domain_or(&local).as_str(), "local");
        assert_eq!(bare.to_string(), "node1");

        let full: PeerAddress = "node1@example.org".parse().unwrap();
        assert_eq!(full.domain_or(&local).as_str(), "example.org");
        assert_eq!(full.to_string(), "node1@example.org");

        let by_id: PeerAddress = format!("{ED25519_ID}@example.org").parse().unwrap();
        assert_eq!(by_id.peer.as_id().unwrap().to_base58(), ED25519_ID);
        assert_eq!(by_id.to_string(), format!("{ED25519_ID}@example.org"));
    }

    #[test]
    fn entity_addresses_take_an_optional_domain_and_make_principals() {
        let local = domain("local");
        let short: EntityAddress = "data@node2".parse().unwrap();
        assert_eq!(short.entity.as_str(), "data");
        assert_eq!(short.peer.as_name().unwrap().as_str(), "node2");
        assert_eq!(short.domain, None);
        assert_eq!(short.to_string(), "data@node2");
        assert_eq!(short.with_domain(&local).to_string(), "data@node2@local");
        assert_eq!(
            short.principal(&local).unwrap(),
            "data@node2@local".parse::<Principal>().unwrap()
        );
        assert_eq!(short.peer_address().to_string(), "node2");

        let full: EntityAddress = "web.api@node1@example.org".parse().unwrap();
        assert_eq!(full.with_domain(&local), full);
        let principal = full.principal(&local).unwrap();
        assert_eq!(principal.to_string(), "web.api@node1@example.org");
        assert_eq!(EntityAddress::from(principal), full);

        let by_id: EntityAddress = format!("data@{RSA_ID}").parse().unwrap();
        assert_eq!(by_id.peer.as_id().unwrap().to_base58(), RSA_ID);
        assert_eq!(
            by_id.principal(&local),
            None,
            "a principal needs a peer name"
        );
        assert_eq!(by_id.to_string(), format!("data@{RSA_ID}"));
    }

    #[test]
    fn a_bad_peer_name_is_pointed_at_with_the_rule_and_the_peer_id_alternative() {
        let e = err::<EntityAddress>("nginx@No de@example.org");
        assert_eq!(e.part(), Some(AddressPart::Peer));
        assert_eq!(e.offset(), 6);
        assert_eq!(
            e.to_string(),
            "in 'nginx@No de@example.org', the peer part 'No de' (at byte 6) has the \
             character 'N'; use only a-z, 0-9, '-' or '_', starting with a letter or digit, \
             or give a PeerId such as 12D3KooW..."
        );
    }

    #[test]
    fn bad_entities_and_domains_are_pointed_at() {
        let e = err::<EntityAddress>("Nginx@node1");
        assert_eq!((e.part(), e.offset()), (Some(AddressPart::Entity), 0));
        assert!(
            e.to_string()
                .contains("the entity part 'Nginx' (at byte 0) has the character 'N'")
        );

        let e = err::<EntityAddress>("nginx@node1@exa..mple");
        assert_eq!((e.part(), e.offset()), (Some(AddressPart::Domain), 12));
        assert!(
            e.to_string()
                .contains("is not a DNS name: it has an empty label"),
            "{e}"
        );

        let e = err::<PeerAddress>(&format!("{}@local", "a".repeat(64)));
        assert_eq!((e.part(), e.offset()), (Some(AddressPart::Peer), 0));
        assert!(
            e.to_string()
                .contains("is 64 characters long; the limit is 63"),
            "{e}"
        );
    }

    #[test]
    fn too_many_at_signs_point_at_the_first_one_too_many() {
        let e = err::<PeerAddress>("nginx@node1@local");
        assert!(
            matches!(e, AddressError::TooManyParts { offset: 11, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("a peer address is <peer> or <peer>@<domain>"),
            "{e}"
        );
        let e = err::<EntityAddress>("a@b@c@d@e");
        assert!(
            matches!(e, AddressError::TooManyParts { offset: 5, .. }),
            "{e:?}"
        );
        let e = err::<PeerRef>("node1@local");
        assert!(
            matches!(e, AddressError::TooManyParts { offset: 5, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn empty_text_and_empty_parts_are_named() {
        assert_eq!(
            err::<PeerAddress>(""),
            AddressError::Empty {
                form: AddressForm::PeerAddress
            }
        );
        for (text, part, offset) in [
            ("@node1", AddressPart::Entity, 0),
            ("nginx@@example.org", AddressPart::Peer, 6),
            ("nginx@node1@", AddressPart::Domain, 12),
            ("nginx@", AddressPart::Peer, 6),
        ] {
            let e = err::<EntityAddress>(text);
            assert_eq!(
                e,
                AddressError::EmptyPart {
                    text: text.to_owned(),
                    part,
                    offset
                },
                "{text}"
            );
            assert!(e.to_string().contains("is empty: give"), "{e}");
        }
        let e = err::<PeerAddress>("node1@");
        assert_eq!((e.part(), e.offset()), (Some(AddressPart::Domain), 6));
        assert!(e.to_string().contains("leave out the '@'"), "{e}");
    }

    #[test]
    fn an_entity_without_a_peer_says_so() {
        let e = err::<EntityAddress>("nginx");
        assert_eq!(e.offset(), 5);
        assert_eq!(
            e.to_string(),
            "'nginx' names no peer: an entity address is <entity>@<peer> or \
             <entity>@<peer>@<domain> (e.g. 'data@node2' or 'nginx@node1@example.org')"
        );
    }

    #[test]
    fn a_peer_id_that_does_not_decode_is_reported_as_a_peer_id() {
        let truncated = &ED25519_ID[..30];
        let e = err::<PeerAddress>(truncated);
        assert_eq!((e.part(), e.offset()), (Some(AddressPart::PeerId), 0));
        assert!(e.to_string().contains("does not decode as a PeerId"), "{e}");

        let typo = format!("{}0{}", &ED25519_ID[..20], &ED25519_ID[21..]);
        let e = err::<EntityAddress>(&format!("data@{typo}"));
        assert_eq!((e.part(), e.offset()), (Some(AddressPart::PeerId), 5));
        assert!(e.to_string().contains("has the character '0'"), "{e}");

        // Without its prefix, a long run of letters and digits is still taken for a PeerId.
        let e = err::<PeerRef>(&typo[8..]);
        assert_eq!((e.part(), e.offset()), (Some(AddressPart::PeerId), 0));

        let long = format!("{ED25519_ID}{ED25519_ID}");
        let e = err::<PeerRef>(&long);
        assert_eq!(e.part(), Some(AddressPart::PeerId));
        assert!(e.to_string().contains("is 104 characters long"), "{e}");

        // A capitalised short word reads as a name typed wrongly, not as a PeerId.
        assert_eq!(err::<PeerRef>("Node1").part(), Some(AddressPart::Peer));
    }

    #[test]
    fn messages_escape_control_characters_and_cut_long_text() {
        let e = err::<EntityAddress>("a\0b@node1");
        let message = e.to_string();
        assert!(
            message.starts_with("in 'a\\0b@node1', the entity part"),
            "{message}"
        );
        assert!(!message.contains('\0'));
        let message = err::<PeerAddress>("\u{1b}[31mred").to_string();
        assert!(!message.contains('\u{1b}'), "{message:?}");

        let long = format!("nginx@{}", "x".repeat(100_000));
        let message = err::<EntityAddress>(&long).to_string();
        assert!(message.len() < 1000, "{} bytes", message.len());
        assert!(message.contains("... (100006 bytes)"), "{message}");
    }

    #[test]
    fn the_longest_peer_id_fits_the_length_limit() {
        // An identity multihash of the largest inlined key: code 0, length 42, 42 bytes.
        let mut bytes = vec![0x00, 42];
        bytes.extend([0xff; 42]);
        let id = PeerId::from_bytes(&bytes).unwrap();
        assert!(id.to_base58().len() <= MAX_PEER_ID_LEN, "{id}");
        assert_eq!(id.to_base58().parse::<PeerRef>().unwrap(), PeerRef::Id(id));
    }

    #[test]
    fn addresses_in_config_files_are_checked_like_typed_ones() {
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct Mount {
            volume: EntityAddress,
            via: PeerAddress,
        }
        let text = "volume = \"data@node2\"\nvia = \"node2@example.org\"\n";
        let mount: Mount = toml::from_str(text).unwrap();
        assert_eq!(mount.volume.to_string(), "data@node2");
        assert_eq!(toml::to_string(&mount).unwrap(), text);
        let bad = toml::from_str::<Mount>("volume = \"data\"\nvia = \"node2\"\n");
        let message = bad.unwrap_err().to_string();
        assert!(message.contains("'data' names no peer"), "{message}");
    }

    // ---- properties ----

    fn label() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9_-]{0,62}"
    }

    fn entity() -> impl Strategy<Value = EntityName> {
        prop_oneof![
            label(),
            "[a-z0-9][a-z0-9_-]{0,18}(\\.[a-z0-9][a-z0-9_-]{0,18}){1,2}"
        ]
        .prop_map(|s| s.parse().unwrap())
    }

    fn domain_name() -> impl Strategy<Value = DomainName> {
        prop::collection::vec("[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", 1..5)
            .prop_map(|labels| labels.join("."))
            .prop_filter("too long for a domain", |d| d.len() <= 253)
            .prop_map(|d| d.parse().unwrap())
    }

    /// PeerIds as real keys make them: ed25519 keys from a seed, and sha256 multihashes
    /// (the `Qm...` ids of RSA keys) of arbitrary digests.
    fn peer_id() -> impl Strategy<Value = PeerId> {
        prop_oneof![
            any::<[u8; 32]>().prop_map(|mut seed| {
                Keypair::ed25519_from_bytes(&mut seed)
                    .unwrap()
                    .public()
                    .to_peer_id()
            }),
            any::<[u8; 32]>().prop_map(|digest| {
                let mut bytes = vec![0x12, 32];
                bytes.extend(digest);
                PeerId::from_bytes(&bytes).unwrap()
            }),
        ]
    }

    fn peer_ref() -> impl Strategy<Value = PeerRef> {
        prop_oneof![
            label().prop_map(|s| PeerRef::Name(s.parse().unwrap())),
            peer_id().prop_map(PeerRef::Id),
        ]
    }

    /// Text built from what addresses are made of, so that near misses are common.
    fn near_miss() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9@._ \\-\\x00é]{0,80}",
            "(12D3KooW|Qm|16Uiu2)?[1-9A-Za-z0@.]{0,70}",
            ("[a-z]{1,5}@", peer_id(), "[a-z@.]{0,6}").prop_map(|(a, id, b)| format!("{a}{id}{b}")),
        ]
    }

    fn errors_point_into_the_text<T: FromStr<Err = AddressError>>(
        text: &str,
    ) -> Result<(), TestCaseError> {
        if let Err(e) = text.parse::<T>() {
            let offset = e.offset();
            prop_assert!(offset <= text.len(), "{e:?}");
            prop_assert!(text.is_char_boundary(offset), "{e:?}");
            if let AddressError::BadPart {
                part_text, offset, ..
            } = &e
            {
                prop_assert_eq!(
                    &text[*offset..*offset + part_text.len()],
                    part_text.as_str()
                );
            }
            prop_assert!(!e.to_string().is_empty());
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn valid_addresses_round_trip(
            entity in entity(),
            peer in peer_ref(),
            domain in proptest::option::of(domain_name()),
        ) {
            let peer_address = PeerAddress { peer: peer.clone(), domain: domain.clone() };
            prop_assert_eq!(peer_address.to_string().parse::<PeerAddress>(), Ok(peer_address));
            let entity_address = EntityAddress { entity, peer: peer.clone(), domain };
            prop_assert_eq!(
                entity_address.to_string().parse::<EntityAddress>(),
                Ok(entity_address)
            );
            prop_assert_eq!(peer.to_string().parse::<PeerRef>(), Ok(peer));
        }

        #[test]
        fn generated_peer_ids_read_back_as_ids(id in peer_id()) {
            let text = id.to_base58();
            prop_assert!(text.len() <= MAX_PEER_ID_LEN);
            prop_assert_eq!(text.parse::<PeerRef>(), Ok(PeerRef::Id(id)));
        }

        #[test]
        fn no_text_makes_parsing_panic_or_point_outside(
            text in prop_oneof![any::<String>(), near_miss()],
        ) {
            errors_point_into_the_text::<PeerRef>(&text)?;
            errors_point_into_the_text::<PeerAddress>(&text)?;
            errors_point_into_the_text::<EntityAddress>(&text)?;
        }

        #[test]
        fn what_is_accepted_reads_back_the_same(text in near_miss()) {
            if let Ok(address) = text.parse::<EntityAddress>() {
                prop_assert_eq!(address.to_string(), text.clone());
            }
            if let Ok(address) = text.parse::<PeerAddress>() {
                prop_assert_eq!(address.to_string(), text);
            }
        }
    }
}
