//! Certificate material: deciding between the empty loop and serving, and noticing when
//! the material appears, is replaced or breaks, without a restart.
//!
//! The PKI directory is polled (cheaply: three `stat` calls) rather than watched with
//! inotify, so that a directory created later, a bind mount or an atomic rename are all
//! seen the same way. This module never exits the daemon: broken material means the
//! empty loop, with the reason.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aurae_core::config::DEFAULT_SOCKET;
use aurae_core::fsutil::shell_word;
use aurae_core::pki::{Overwrite, PkiPaths, files};
use rustls::ServerConfig;
use tokio::sync::watch;

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

/// Reads the material of `paths` and decides the mode; `socket` is the one auraed serves,
/// which the fix command must name so that the client config it writes points here.
pub fn load(paths: &PkiPaths, socket: &Path) -> Mode {
    let dir = paths.dir().display();
    let missing = paths.missing_for_serving();
    if !missing.is_empty() {
        return Mode::EmptyLoop(EmptyReason {
            reason: format!(
                "no certificate material: {} missing in {dir}",
                missing.join(", ")
            ),
            missing: missing.into_iter().map(str::to_owned).collect(),
            fix_command: fix_command(paths.dir(), socket, Overwrite::Refuse),
        });
    }
    match aurae_core::tls::server_config(paths) {
        Ok(config) => Mode::Serving(config),
        Err(e) => Mode::EmptyLoop(EmptyReason {
            missing: Vec::new(),
            reason: format!("certificate material in {dir} is unusable: {e}"),
            fix_command: match &e {
                // A key others can read is fixed by closing it, not by a new CA.
                aurae_core::tls::TlsError::KeyTooOpen(open) => open.fix_command(),
                _ => fix_command(paths.dir(), socket, Overwrite::Replace),
            },
        }),
    }
}

/// `aurae pki init` for this daemon, as a person can paste it: absolute paths (it may be
/// run from anywhere), and `--sock` unless the socket is the default, because the command
/// records the socket in the client config every later command reads.
fn fix_command(pki_dir: &Path, socket: &Path, overwrite: Overwrite) -> String {
    let mut command = String::from("aurae pki init");
    if overwrite == Overwrite::Replace {
        command.push_str(" --force");
    }
    command.push_str(" --pki-dir ");
    command.push_str(&shell_word(&absolute(pki_dir)));
    if socket != Path::new(DEFAULT_SOCKET) {
        command.push_str(" --sock ");
        command.push_str(&shell_word(&absolute(socket)));
    }
    command
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Identity of the material files as they are on disk: any write, rename or chmod
/// changes it.
type Fingerprint = Vec<Option<(u64, u64, i64, i64, u64, u32)>>;

fn fingerprint(paths: &PkiPaths) -> Fingerprint {
    files::SERVING
        .iter()
        .chain([&aurae_core::ledger::files::CRL])
        .map(|name| {
            std::fs::metadata(paths.file(name)).ok().map(|m| {
                let mode = m.mode();
                (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size(), mode)
            })
        })
        .collect()
}

fn log_transition(old: &Mode, new: &Mode) {
    match (old, new) {
        (Mode::EmptyLoop(_), Mode::Serving(_)) => {
            tracing::info!("certificate material registered: serving capabilities over mTLS")
        }
        (Mode::Serving(_), Mode::Serving(_)) => {
            tracing::info!(
                "certificate material or revocation list replaced: new connections use it"
            )
        }
        (_, Mode::EmptyLoop(why)) => tracing::warn!(
            reason = %why.reason,
            fix = %why.fix_command,
            "empty loop: serving health and status only"
        ),
    }
}

/// Loads the material now and keeps `Mode` current for as long as the receiver lives;
/// `socket` is the one auraed serves, for the fix command of the empty loop; the PKI
/// directory is checked every `poll`, and at once when `reload` is notified (the daemon
/// itself revoked a certificate and must not wait for the next poll).
pub fn watch(
    paths: PkiPaths,
    socket: PathBuf,
    poll: Duration,
    reload: Arc<tokio::sync::Notify>,
) -> watch::Receiver<Mode> {
    let initial = load(&paths, &socket);
    if let Mode::EmptyLoop(why) = &initial {
        tracing::warn!(reason = %why.reason, fix = %why.fix_command, "empty loop: serving health and status only");
    }
    let (tx, rx) = watch::channel(initial);
    tokio::spawn(async move {
        let mut seen = fingerprint(&paths);
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = reload.notified() => {}
            }
            if tx.is_closed() {
                return;
            }
            let now = fingerprint(&paths);
            if now == seen {
                continue;
            }
            seen = now;
            let mode = load(&paths, &socket);
            log_transition(&tx.borrow(), &mode);
            tx.send_replace(mode);
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurae_core::pki::{self, NodeNames};

    #[test]
    fn missing_material_names_files_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let Mode::EmptyLoop(why) = load(&PkiPaths::new(dir.path()), Path::new(DEFAULT_SOCKET))
        else {
            panic!("empty directory must mean the empty loop");
        };
        assert_eq!(why.missing, ["ca.crt", "server.crt", "server.key"]);
        assert_eq!(
            why.fix_command,
            format!("aurae pki init --pki-dir {}", dir.path().display())
        );
    }

    #[test]
    fn the_fix_names_a_socket_that_is_not_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("my aurae.sock");
        let Mode::EmptyLoop(why) = load(&PkiPaths::new(dir.path()), &socket) else {
            panic!("empty directory must mean the empty loop");
        };
        assert_eq!(
            why.fix_command,
            format!(
                "aurae pki init --pki-dir {} --sock '{}'",
                dir.path().display(),
                socket.display()
            )
        );
        let relative = fix_command(
            Path::new("pki"),
            Path::new("run/a.sock"),
            Overwrite::Replace,
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            relative,
            format!(
                "aurae pki init --force --pki-dir {} --sock {}",
                cwd.join("pki").display(),
                cwd.join("run/a.sock").display()
            )
        );
        assert_eq!(shell_word(Path::new("/a/it's")), r"'/a/it'\''s'");
    }

    /// Complete material for node1@local in `dir`.
    fn fresh_material(dir: &Path) -> PkiPaths {
        let paths = PkiPaths::new(dir);
        let names = NodeNames {
            peer: "node1".parse().unwrap(),
            domain: "local".parse().unwrap(),
        };
        pki::init_server_material(&paths, &names, Overwrite::Refuse).unwrap();
        paths
    }

    #[test]
    fn complete_material_means_serving_and_breaking_it_means_empty_loop() {
        let dir = tempfile::tempdir().unwrap();
        let paths = fresh_material(dir.path());
        let socket = Path::new(DEFAULT_SOCKET);
        assert!(matches!(load(&paths, socket), Mode::Serving(_)));
        std::fs::write(paths.file(files::SERVER_CERT), "broken").unwrap();
        let Mode::EmptyLoop(why) = load(&paths, socket) else {
            panic!("broken material must mean the empty loop");
        };
        assert!(why.missing.is_empty());
        assert!(why.reason.contains("server.crt"), "{}", why.reason);
    }

    #[test]
    fn a_server_key_others_can_read_means_empty_loop_and_the_chmod() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let paths = fresh_material(dir.path());
        let before = fingerprint(&paths);
        let key = paths.file(files::SERVER_KEY);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_ne!(fingerprint(&paths), before, "a chmod is seen");
        let Mode::EmptyLoop(why) = load(&paths, Path::new(DEFAULT_SOCKET)) else {
            panic!("a readable server key must mean the empty loop");
        };
        assert_eq!(why.fix_command, format!("chmod 600 {}", key.display()));
        assert!(why.reason.contains("too open"), "{}", why.reason);
    }
}
