//! Validated names: `<entity>@<peer>@<domain>`.
//!
//! Every name that crosses the API boundary is parsed into one of these newtypes first,
//! so the rest of the code never sees an unchecked string. This module must never accept
//! a name that could escape a path (`/`, `..`, NUL) or that another tool would read differently.

use std::fmt;
use std::str::FromStr;

/// Longest entity or peer label we accept (a DNS label's limit).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest domain we accept (a DNS name's limit).
pub const MAX_DOMAIN_LEN: usize = 253;

/// Why a name was refused; each message says what a valid name looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name was empty.
    #[error("{kind} name is empty: use 1 to {MAX_LABEL_LEN} characters of a-z, 0-9, '-' or '_'")]
    Empty {
        /// Which part of a name was being parsed.
        kind: &'static str,
    },
    /// The name was longer than the limit.
    #[error("{kind} name '{name}' is {len} characters long; the limit is {max}")]
    TooLong {
        /// Which part of a name was being parsed.
        kind: &'static str,
        /// The refused name.
        name: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name held a character outside the allowed set.
    #[error(
        "{kind} name '{name}' has the character {found:?}; use only a-z, 0-9, '-' or '_', starting with a letter or digit"
    )]
    BadCharacter {
        /// Which part of a name was being parsed.
        kind: &'static str,
        /// The refused name.
        name: String,
        /// The first offending character.
        found: char,
    },
    /// A domain was not a valid DNS name.
    #[error("domain '{name}' is not a DNS name: {why} (e.g. 'example.org' or 'local')")]
    BadDomain {
        /// The refused domain.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A principal did not have the three `@`-separated parts.
    #[error(
        "'{name}' is not of the form <entity>@<peer>@<domain> (e.g. 'nginx@node1@example.org')"
    )]
    BadPrincipal {
        /// The refused text.
        name: String,
    },
}

/// Checks an entity name: one label, or labels joined by `.` (the principal of a nested
/// cell, `web.api` for `web/api`), each following the label rule; 63 characters in all.
fn check_entity(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.len() > MAX_LABEL_LEN || !name.contains('.') {
        return check_label(kind, name);
    }
    for label in name.split('.') {
        check_label(kind, label).map_err(|e| match e {
            NameError::Empty { .. } => NameError::BadCharacter {
                kind,
                name: name.to_owned(),
                found: '.',
            },
            NameError::BadCharacter { found, .. } => NameError::BadCharacter {
                kind,
                name: name.to_owned(),
                found,
            },
            other => other,
        })?;
    }
    Ok(())
}

fn check_label(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_LABEL_LEN {
        return Err(NameError::TooLong {
            kind,
            name: name.to_owned(),
            len: name.len(),
            max: MAX_LABEL_LEN,
        });
    }
    let valid = |(i, c): &(usize, char)| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || (*i > 0 && (*c == '-' || *c == '_'))
    };
    if let Some((_, found)) = name.chars().enumerate().find(|ic| !valid(ic)) {
        return Err(NameError::BadCharacter {
            kind,
            name: name.to_owned(),
            found,
        });
    }
    Ok(())
}

macro_rules! label_newtype {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        label_newtype!($(#[$doc])* $ty, $kind, check_label);
    };
    ($(#[$doc:meta])* $ty:ident, $kind:literal, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $ty(String);

        impl $ty {
            /// The validated name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = NameError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $check($kind, s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

label_newtype!(
    /// What runs or is served: a cell, a service, a user such as `admin`. Labels may be
    /// joined by `.` (a nested cell's principal, `web.api`); none may be empty.
    EntityName,
    "entity",
    check_entity
);
label_newtype!(
    /// A node's human name within its domain, e.g. `node1`.
    PeerName,
    "peer"
);
label_newtype!(
    /// A volume's name, e.g. `data`: checked where it is typed, so that a person is told
    /// the volume-name rule rather than whatever rule the store applies further down.
    VolumeName,
    "volume"
);

impl PeerName {
    /// The peer name for this machine: its hostname, lowercased, cut at the first dot and
    /// stripped of characters a label may not hold; `node` if nothing usable is left.
    pub fn from_hostname(hostname: &str) -> Self {
        let label: String = hostname
            .split('.')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .take(MAX_LABEL_LEN)
            .collect();
        let label = label.trim_start_matches('-').to_owned();
        label.parse().unwrap_or_else(|_| Self("node".to_owned()))
    }
}

/// The domain peers are found under, e.g. `example.org`; `local` for a machine on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    /// The validated domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for DomainName {
    fn default() -> Self {
        Self("local".to_owned())
    }
}

impl FromStr for DomainName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why| NameError::BadDomain {
            name: s.to_owned(),
            why,
        };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.len() > MAX_DOMAIN_LEN {
            return Err(bad("it is longer than 253 characters"));
        }
        for label in s.split('.') {
            if label.is_empty() {
                return Err(bad(
                    "it has an empty label (two dots in a row, or a leading or trailing dot)",
                ));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(bad("a label is longer than 63 characters"));
            }
            let ok = label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok || label.starts_with('-') || label.ends_with('-') {
                return Err(bad("labels hold only a-z, 0-9 and inner '-'"));
            }
        }
        Ok(Self(s.to_owned()))
    }
}

impl serde::Serialize for DomainName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for DomainName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is calling: `<entity>@<peer>@<domain>`, read from a client certificate's URI SAN.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    /// The entity (a user such as `admin`, or a workload).
    pub entity: EntityName,
    /// The node that issued the identity.
    pub peer: PeerName,
    /// The domain of that node.
    pub domain: DomainName,
}

/// The URI scheme under which a principal is written into a certificate's SAN.
pub const PRINCIPAL_URI_SCHEME: &str = "aurae:";

impl Principal {
    /// The entity name of a node's administrator.
    pub const ADMIN: &'static str = "admin";

    /// Whether this principal is the administrator of the node `peer`@`domain`, who holds
    /// every right there. The whole principal counts: `admin@otherpeer@other.example` is
    /// the admin of another node, even if this node's CA signed its certificate.
    pub fn is_admin_of(&self, peer: &PeerName, domain: &DomainName) -> bool {
        self.entity.as_str() == Self::ADMIN && self.peer == *peer && self.domain == *domain
    }

    /// The principal as a URI for a certificate's subject alternative name.
    pub fn to_uri(&self) -> String {
        format!("{PRINCIPAL_URI_SCHEME}{self}")
    }

    /// Reads a principal back from a certificate's URI SAN; `None` for other URIs.
    pub fn from_uri(uri: &str) -> Option<Result<Self, NameError>> {
        uri.strip_prefix(PRINCIPAL_URI_SCHEME).map(str::parse)
    }
}

impl FromStr for Principal {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, '@');
        let (Some(entity), Some(peer), Some(domain)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(NameError::BadPrincipal { name: s.to_owned() });
        };
        Ok(Self {
            entity: entity.parse()?,
            peer: peer.parse()?,
            domain: domain.parse()?,
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}@{}", self.entity, self.peer, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_nodes_own_admin_is_its_admin() {
        let (peer, domain): (PeerName, DomainName) =
            ("node1".parse().unwrap(), "local".parse().unwrap());
        let admin = |s: &str| s.parse::<Principal>().unwrap().is_admin_of(&peer, &domain);
        assert!(admin("admin@node1@local"));
        assert!(!admin("admin@otherpeer@other.example"));
        assert!(!admin("admin@node1@other.example"));
        assert!(!admin("admin@otherpeer@local"));
        assert!(!admin("alice@node1@local"));
    }

    #[test]
    fn entities_may_join_labels_with_dots_but_never_leave_one_empty() {
        let nested: Principal = "web.api@node1@local".parse().unwrap();
        assert_eq!(nested.entity.as_str(), "web.api");
        for bad in [".web", "web.", "web..api", ".", "web.-api", "web.API"] {
            assert!(bad.parse::<EntityName>().is_err(), "{bad:?} was accepted");
        }
        assert!("a.b".parse::<PeerName>().is_err(), "peers stay one label");
    }

    #[test]
    fn principal_round_trips_through_text_and_uri() {
        let p: Principal = "nginx@node1@example.org".parse().unwrap();
        assert_eq!(p.entity.as_str(), "nginx");
        assert_eq!(p.peer.as_str(), "node1");
        assert_eq!(p.domain.as_str(), "example.org");
        assert_eq!(p.to_string(), "nginx@node1@example.org");
        assert_eq!(Principal::from_uri(&p.to_uri()).unwrap().unwrap(), p);
        assert!(Principal::from_uri("https://example.org").is_none());
    }

    #[test]
    fn names_that_could_escape_a_path_are_refused() {
        for bad in ["..", "a/b", "a\0b", "A", "-x", "", "é"] {
            assert!(bad.parse::<EntityName>().is_err(), "{bad:?} was accepted");
        }
        assert!("a".repeat(64).parse::<EntityName>().is_err());
        assert!("a".repeat(63).parse::<EntityName>().is_ok());
    }

    #[test]
    fn malformed_principals_and_domains_are_refused() {
        for bad in [
            "nginx",
            "nginx@node1",
            "nginx@@example.org",
            "x@y@a..b",
            "x@y@-a.b",
            "x@y@a.b@c",
        ] {
            assert!(bad.parse::<Principal>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn volume_names_are_refused_with_the_volume_name_rule() {
        assert_eq!("data".parse::<VolumeName>().unwrap().as_str(), "data");
        let message = "Data".parse::<VolumeName>().unwrap_err().to_string();
        assert!(message.starts_with("volume name 'Data'"), "{message}");
        assert!(message.contains("a-z, 0-9, '-' or '_'"), "{message}");
        assert!("".parse::<VolumeName>().is_err());
        assert!("a/b".parse::<VolumeName>().is_err());
    }

    #[test]
    fn hostnames_become_peer_names() {
        assert_eq!(
            PeerName::from_hostname("Node1.example.org").as_str(),
            "node1"
        );
        assert_eq!(PeerName::from_hostname("").as_str(), "node");
        assert_eq!(PeerName::from_hostname("-box_1").as_str(), "box1");
    }
}
