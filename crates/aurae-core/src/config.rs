//! The client configuration every Aurae tool reads: `$HOME/.aurae/config.toml`.
//!
//! It says which socket to talk to and with which certificate. Flags and environment
//! variables override it; this module only reads and writes the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fsutil;

/// The daemon's socket when nothing else is said.
pub const DEFAULT_SOCKET: &str = "/run/aurae.sock";
/// Environment variable naming the socket, for every binary.
pub const SOCKET_ENV: &str = "AURAE_SOCKET";
/// Environment variable naming the client configuration file.
pub const CONFIG_ENV: &str = "AURAE_CONFIG";

/// Why the client configuration could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("{path} is not a valid Aurae client config: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// `$HOME` is not set, so the default location is unknown.
    #[error("HOME is not set: pass --config or set AURAE_CONFIG")]
    NoHome,
}

/// Socket, identity and patience of a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The daemon's Unix socket.
    pub socket: PathBuf,
    /// The CA that signed the daemon's certificate.
    pub ca_cert: PathBuf,
    /// This client's certificate.
    pub client_cert: PathBuf,
    /// This client's private key.
    pub client_key: PathBuf,
    /// How long to wait for auraed to answer a new connection, in seconds (`0`: no
    /// limit); absent, the client's default. `--connect-timeout` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "seconds")]
    pub connect_timeout: Option<Duration>,
    /// How long a command's calls may take in all, in seconds (`0`: no limit); streams
    /// (watching, large transfers) are not bounded by it. Absent, the client's default.
    /// `--timeout` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "seconds")]
    pub timeout: Option<Duration>,
}

/// Durations written as a number of seconds (`30`, `2.5`), as people write them in a
/// config file.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) if duration.subsec_nanos() == 0 => s.serialize_u64(duration.as_secs()),
            Some(duration) => s.serialize_f64(duration.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs)
            .map(Some)
            .map_err(|_| D::Error::custom(format!("{secs} is not a number of seconds (0 or more)")))
    }
}

/// `$HOME/.aurae`, where `aurae pki init` puts the admin's client material.
pub fn client_dir() -> Result<PathBuf, ConfigError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".aurae"))
        .ok_or(ConfigError::NoHome)
}

/// The config file to read: `$AURAE_CONFIG`, else `$HOME/.aurae/config.toml`.
pub fn default_config_path() -> Result<PathBuf, ConfigError> {
    match std::env::var_os(CONFIG_ENV).filter(|p| !p.is_empty()) {
        Some(path) => Ok(PathBuf::from(path)),
        None => Ok(client_dir()?.join("config.toml")),
    }
}

impl ClientConfig {
    /// Reads a config file; `Ok(None)` if it does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(ConfigError::Io {
                    action: "cannot read",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Writes the config file atomically (0600: it points at a private key).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        fsutil::write_atomic(path, text.as_bytes(), fsutil::SECRET_MODE).map_err(|source| {
            ConfigError::Io {
                action: "cannot write",
                path: path.to_owned(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        assert_eq!(ClientConfig::load(&path).unwrap(), None);
        let config = ClientConfig {
            socket: "/run/aurae.sock".into(),
            ca_cert: "/a/ca.crt".into(),
            client_cert: "/a/admin.crt".into(),
            client_key: "/a/admin.key".into(),
            connect_timeout: None,
            timeout: Some(Duration::from_millis(2500)),
        };
        config.save(&path).unwrap();
        assert!(
            !std::fs::read_to_string(&path)
                .unwrap()
                .contains("connect_timeout")
        );
        assert_eq!(ClientConfig::load(&path).unwrap(), Some(config));
        let old = "socket = \"/s\"\nca_cert = \"/c\"\nclient_cert = \"/t\"\nclient_key = \"/k\"\n";
        std::fs::write(&path, format!("{old}connect_timeout = 3\ntimeout = 0.5\n")).unwrap();
        let loaded = ClientConfig::load(&path).unwrap().unwrap();
        assert_eq!(loaded.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(loaded.timeout, Some(Duration::from_millis(500)));
        std::fs::write(&path, old).unwrap();
        assert_eq!(ClientConfig::load(&path).unwrap().unwrap().timeout, None);
        std::fs::write(&path, format!("{old}timeout = -1\n")).unwrap();
        assert!(matches!(
            ClientConfig::load(&path),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::write(&path, "socket = 3").unwrap();
        assert!(matches!(
            ClientConfig::load(&path),
            Err(ConfigError::Parse { .. })
        ));
    }
}
