//! Which volume a mount shows, as the user named it.
//!
//! `default` is the default namespace (the API's `""`), any other name a volume created
//! with CreateVolume. `<volume>@<peer>@<domain>` will name a volume on a remote peer once
//! the peer network exists; until then it is parsed, so the syntax is reserved, and refused.

use std::fmt;
use std::str::FromStr;

use aurae_core::name::{DomainName, EntityName, NameError, PeerName};

/// The name the user writes for the default namespace.
pub const DEFAULT_VOLUME: &str = "default";

/// Why a volume name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeNameError {
    /// The name is not a valid volume name.
    #[error("'{text}' is not a volume name: {source}")]
    Invalid {
        /// What the user wrote.
        text: String,
        /// Why it is not a name.
        source: NameError,
    },
    /// The name has `@` but not the `<volume>@<peer>@<domain>` shape.
    #[error("'{0}' is not of the form <volume> or <volume>@<peer>@<domain>")]
    Shape(String),
}

/// A volume to mount: local, or (later) on a remote peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSpec {
    /// A volume on the local auraed; `None` is the default namespace.
    Local(Option<EntityName>),
    /// A volume on another peer (not reachable yet: there is no peer network).
    Remote {
        /// The volume on that peer.
        volume: Option<EntityName>,
        /// The peer.
        peer: PeerName,
        /// The peer's domain.
        domain: DomainName,
    },
}

fn volume_name(text: &str, whole: &str) -> Result<Option<EntityName>, VolumeNameError> {
    if text == DEFAULT_VOLUME {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|source| VolumeNameError::Invalid {
            text: whole.to_owned(),
            source,
        })
}

impl FromStr for VolumeSpec {
    type Err = VolumeNameError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('@').collect();
        match parts.as_slice() {
            [volume] => Ok(Self::Local(volume_name(volume, text)?)),
            [volume, peer, domain] => {
                let invalid = |source| VolumeNameError::Invalid {
                    text: text.to_owned(),
                    source,
                };
                Ok(Self::Remote {
                    volume: volume_name(volume, text)?,
                    peer: peer.parse().map_err(invalid)?,
                    domain: domain.parse().map_err(invalid)?,
                })
            }
            _ => Err(VolumeNameError::Shape(text.to_owned())),
        }
    }
}

impl VolumeSpec {
    /// The volume's name in API calls (`""` for the default namespace).
    pub fn api_name(&self) -> &str {
        let volume = match self {
            Self::Local(volume) | Self::Remote { volume, .. } => volume,
        };
        volume.as_ref().map_or("", EntityName::as_str)
    }

    /// The volume's name as `ListVolumes` shows it (`default` for the default namespace).
    pub fn listed_name(&self) -> &str {
        match self.api_name() {
            "" => DEFAULT_VOLUME,
            name => name,
        }
    }
}

impl fmt::Display for VolumeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(_) => f.write_str(self.listed_name()),
            Self::Remote { peer, domain, .. } => {
                write!(f, "{}@{peer}@{domain}", self.listed_name())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_the_default_namespace() {
        let spec: VolumeSpec = "default".parse().unwrap();
        assert_eq!(spec, VolumeSpec::Local(None));
        assert_eq!(spec.api_name(), "");
        assert_eq!(spec.listed_name(), "default");
        assert_eq!(spec.to_string(), "default");
    }

    #[test]
    fn a_volume_name_is_an_aurae_name() {
        let spec: VolumeSpec = "photos_2024".parse().unwrap();
        assert_eq!(spec.api_name(), "photos_2024");
        assert_eq!(spec.to_string(), "photos_2024");
        for bad in ["", "Photos", "a/b", "..", "-x", "x y"] {
            assert!(bad.parse::<VolumeSpec>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn remote_volumes_parse_into_their_three_parts() {
        let spec: VolumeSpec = "data@node2@example.org".parse().unwrap();
        match &spec {
            VolumeSpec::Remote { peer, domain, .. } => {
                assert_eq!(peer.as_str(), "node2");
                assert_eq!(domain.as_str(), "example.org");
            }
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(spec.api_name(), "data");
        assert_eq!(spec.to_string(), "data@node2@example.org");
    }

    #[test]
    fn malformed_remote_names_are_refused() {
        for bad in [
            "data@node2",
            "a@b@c@d",
            "data@@example.org",
            "data@Node@x.org",
        ] {
            assert!(bad.parse::<VolumeSpec>().is_err(), "{bad:?} was accepted");
        }
    }
}
