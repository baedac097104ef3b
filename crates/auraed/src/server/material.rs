//! Certificate material: deciding between the empty loop and serving, and noticing when
//! the material appears, is replaced or breaks, without a restart.
//!
//! The PKI directory is polled (cheaply: three `stat` calls) rather than watched with
//! inotify, so that a directory created later, a bind mount or an atomic rename are all
//! seen the same way. This module never exits the daemon: broken material means the
//! empty loop, with the reason.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Duration;

use aurae_core::pki::{PkiPaths, files};
use rustls::ServerConfig;
use tokio::sync::watch;

/// How often the PKI directory is checked; registration is noticed within this time.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What the daemon serves right now.
#[derive(Clone)]
pub enum Mode {
    /// No usable material: health (NOT_SERVING) and status only, in plaintext.
    EmptyLoop(EmptyReason),
    /// Material is registered: every connection must complete mutual TLS.
    Serving(Arc<ServerConfig>),
}

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EmptyLoop(reason) => f.debug_tuple("EmptyLoop").field(reason).finish(),
            Self::Serving(_) => f.write_str("Serving"),
        }
    }
}

/// Why the daemon is in its empty loop, and how to get it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyReason {
    /// Files of the PKI directory that are missing.
    pub missing: Vec<String>,
    /// What is wrong, for a person.
    pub reason: String,
    /// The command that fixes it.
    pub fix_command: String,
}

/// Reads the material of `paths` and decides the mode.
pub fn load(paths: &PkiPaths) -> Mode {
    let dir = paths.dir().display();
    let missing = paths.missing_for_serving();
    if !missing.is_empty() {
        return Mode::EmptyLoop(EmptyReason {
            reason: format!(
                "no certificate material: {} missing in {dir}",
                missing.join(", ")
            ),
            missing: missing.into_iter().map(str::to_owned).collect(),
            fix_command: format!("aurae pki init --pki-dir {dir}"),
        });
    }
    match aurae_core::tls::server_config(paths) {
        Ok(config) => Mode::Serving(config),
        Err(e) => Mode::EmptyLoop(EmptyReason {
            missing: Vec::new(),
            reason: format!("certificate material in {dir} is unusable: {e}"),
            fix_command: format!("aurae pki init --force --pki-dir {dir}"),
        }),
    }
}

/// Identity of the material files as they are on disk: any write or rename changes it.
type Fingerprint = Vec<Option<(u64, u64, i64, i64, u64)>>;

fn fingerprint(paths: &PkiPaths) -> Fingerprint {
    files::SERVING
        .iter()
        .map(|name| {
            std::fs::metadata(paths.file(name))
                .ok()
                .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
        })
        .collect()
}

fn log_transition(old: &Mode, new: &Mode) {
    match (old, new) {
        (Mode::EmptyLoop(_), Mode::Serving(_)) => {
            tracing::info!("certificate material registered: serving capabilities over mTLS")
        }
        (Mode::Serving(_), Mode::Serving(_)) => {
            tracing::info!("certificate material replaced: new connections use it")
        }
        (_, Mode::EmptyLoop(why)) => tracing::warn!(
            reason = %why.reason,
            fix = %why.fix_command,
            "empty loop: serving health and status only"
        ),
    }
}

/// Loads the material now and keeps `Mode` current for as long as the receiver lives.
pub fn watch(paths: PkiPaths) -> watch::Receiver<Mode> {
    let initial = load(&paths);
    if let Mode::EmptyLoop(why) = &initial {
        tracing::warn!(reason = %why.reason, fix = %why.fix_command, "empty loop: serving health and status only");
    }
    let (tx, rx) = watch::channel(initial);
    tokio::spawn(async move {
        let mut seen = fingerprint(&paths);
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if tx.is_closed() {
                return;
            }
            let now = fingerprint(&paths);
            if now == seen {
                continue;
            }
            seen = now;
            let mode = load(&paths);
            log_transition(&tx.borrow(), &mode);
            tx.send_replace(mode);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurae_core::pki::{self, NodeNames, Overwrite};

    #[test]
    fn missing_material_names_files_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let Mode::EmptyLoop(why) = load(&PkiPaths::new(dir.path())) else {
            panic!("empty directory must mean the empty loop");
        };
        assert_eq!(why.missing, ["ca.crt", "server.crt", "server.key"]);
        assert!(why.fix_command.starts_with("aurae pki init"));
    }

    #[test]
    fn complete_material_means_serving_and_breaking_it_means_empty_loop() {
        let dir = tempfile::tempdir().unwrap();
        let paths = PkiPaths::new(dir.path());
        let names = NodeNames {
            peer: "node1".parse().unwrap(),
            domain: "local".parse().unwrap(),
        };
        pki::init_server_material(&paths, &names, Overwrite::Refuse).unwrap();
        assert!(matches!(load(&paths), Mode::Serving(_)));
        std::fs::write(paths.file(files::SERVER_CERT), "broken").unwrap();
        let Mode::EmptyLoop(why) = load(&paths) else {
            panic!("broken material must mean the empty loop");
        };
        assert!(why.missing.is_empty());
        assert!(why.reason.contains("server.crt"), "{}", why.reason);
    }
}
