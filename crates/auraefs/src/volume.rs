//! Which volume a mount shows, as the user named it.
//!
//! `default` is the default namespace (the API's `""`), any other name a volume created
//! with CreateVolume. `<volume>@<peer>[@<domain>]` names a volume on another peer (the
//! peer by name or PeerId; the local domain fills in): it is mounted through the local
//! auraed, which forwards every call over its peer network.

use std::fmt;
use std::str::FromStr;

use aurae_core::address::{AddressError, PeerAddress};
use aurae_core::name::{EntityName, NameError};

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
    /// The name has `@` but not the `<volume>@<peer>[@<domain>]` shape.
    #[error("'{0}' is not of the form <volume> or <volume>@<peer>[@<domain>]")]
    Shape(String),
    /// The peer part is not a peer.
    #[error("'{text}': {source}")]
    Peer {
        /// What the user wrote.
        text: String,
        /// Why the peer part is refused.
        source: AddressError,
    },
}

/// A volume to mount: local, or on another peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSpec {
    /// A volume on the local auraed; `None` is the default namespace.
    Local(Option<EntityName>),
    /// A volume on another peer, reached through the local auraed.
    Remote {
        /// The volume on that peer.
        volume: Option<EntityName>,
        /// The peer (and its domain, if given).
        peer: PeerAddress,
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
            [volume, ..] if parts.len() <= 3 => {
                let peer_text = text.get(volume.len() + 1..).unwrap_or_default();
                Ok(Self::Remote {
                    volume: volume_name(volume, text)?,
                    peer: peer_text.parse().map_err(|source| VolumeNameError::Peer {
                        text: text.to_owned(),
                        source,
                    })?,
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

    /// The peer whose volume it is, as `--peer` takes it; `None` for a local volume.
    pub fn peer(&self) -> Option<String> {
        match self {
            Self::Local(_) => None,
            Self::Remote { peer, .. } => Some(peer.to_string()),
        }
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
            Self::Remote { peer, .. } => write!(f, "{}@{peer}", self.listed_name()),
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
            VolumeSpec::Remote { peer, .. } => {
                assert_eq!(peer.to_string(), "node2@example.org");
            }
            other => panic!("parsed as {other:?}"),
        }
        assert_eq!(spec.api_name(), "data");
        assert_eq!(spec.to_string(), "data@node2@example.org");
        assert_eq!(spec.peer().as_deref(), Some("node2@example.org"));
        let spec: VolumeSpec = "data@node2".parse().unwrap();
        assert_eq!(spec.peer().as_deref(), Some("node2"));
        assert_eq!(spec.api_name(), "data");
    }

    #[test]
    fn malformed_remote_names_are_refused() {
        for bad in ["a@b@c@d", "data@@example.org", "data@Node@x.org"] {
            assert!(bad.parse::<VolumeSpec>().is_err(), "{bad:?} was accepted");
        }
    }
}
