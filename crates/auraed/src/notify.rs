//! Telling the service manager how auraed is doing (sd_notify(3), for `Type=notify`):
//! `READY=1` once the socket is held and served (the empty loop is ready too: it answers
//! health and status), `STATUS=` with the mode in one line whenever it changes, and
//! `STOPPING=1` when shutdown begins.
//!
//! It only speaks when `NOTIFY_SOCKET` is set (systemd, systemd-nspawn); a notification
//! that cannot be sent is logged at debug and never stops, fails or slows the daemon.

use sd_notify::NotifyState;
use tokio::sync::watch;

use crate::server::material::Mode;

const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Says the daemon is ready with its current mode, then keeps the status line current
/// for as long as `mode` has a sender (the material watcher). Called once the socket is
/// bound and the server task runs, so a unit ordered after auraed finds it answering.
pub fn ready(mut mode: watch::Receiver<Mode>) {
    if std::env::var_os(NOTIFY_SOCKET).is_none() {
        return;
    }
    let status = status_line(&mode.borrow_and_update());
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    tokio::spawn(async move {
        while mode.changed().await.is_ok() {
            let status = status_line(&mode.borrow_and_update());
            send(&[NotifyState::Status(&status)]);
        }
    });
}

/// Says shutdown has begun, so that systemd shows "deactivating" rather than a daemon
/// that stopped answering.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// The one-line status systemd shows for `mode` (`systemctl status auraed`): what is
/// served, and in the empty loop why and the command that fixes it.
pub fn status_line(mode: &Mode) -> String {
    let line = match mode {
        Mode::Serving(_) => "serving over mTLS".to_owned(),
        Mode::EmptyLoop(why) => format!(
            "empty loop: {} (fix: {})",
            why.reason.trim(),
            why.fix_command.trim()
        ),
    };
    // STATUS= ends at the first newline: keep a multi-line reason whole.
    line.replace(['\n', '\r'], " ")
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify the service manager");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::material::EmptyReason;

    #[test]
    fn the_empty_loop_status_says_what_is_missing_and_the_fix_in_one_line() {
        let mode = Mode::EmptyLoop(EmptyReason {
            missing: vec!["ca.crt".into()],
            reason: "no certificate material: ca.crt missing\nin /etc/aurae/pki".into(),
            fix_command: "aurae pki init --pki-dir /etc/aurae/pki".into(),
        });
        assert_eq!(
            status_line(&mode),
            "empty loop: no certificate material: ca.crt missing in /etc/aurae/pki \
             (fix: aurae pki init --pki-dir /etc/aurae/pki)"
        );
    }
}
