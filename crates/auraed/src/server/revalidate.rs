//! Open connections answer to the material of now, not of their handshake.
//!
//! When the certificate material or the revocation list changes (a new CA from `aurae pki
//! init --force`, a certificate revoked with `aurae pki revoke`), every open connection
//! whose client certificate no longer verifies is closed; when the material becomes
//! unusable (the empty loop), every authenticated connection is. New connections are
//! already checked by the handshake; this module must never let an open one outlive the
//! trust it was opened under.

use std::sync::Arc;

use aurae_core::pki::PkiPaths;
use rustls::pki_types::UnixTime;

use super::connections::ConnectionRegistry;
use super::material::Mode;
use crate::context::Daemon;
use crate::runtime::credentials::CellCredentials;

/// Watches the daemon's mode until `shutdown` and closes what the new material refuses.
pub async fn on_material_change(daemon: Arc<Daemon>, shutdown: impl Future<Output = ()>) {
    let mut mode = daemon.mode.clone();
    tokio::pin!(shutdown);
    let credentials = daemon.runtime.credentials();
    loop {
        tokio::select! {
            changed = mode.changed() => if changed.is_err() { return },
            () = credentials.removed() => {
                let closed = close_freed_cells(&daemon.connections, &credentials);
                if closed > 0 {
                    tracing::info!(closed, "closed connections of freed cells");
                }
                continue;
            }
            () = &mut shutdown => return,
        }
        let serving = matches!(*mode.borrow_and_update(), Mode::Serving(_));
        let closed = close_unverified(&daemon.connections, &daemon.pki, serving);
        if closed > 0 {
            tracing::info!(
                closed,
                "closed connections the new certificate material refuses"
            );
        }
    }
}

/// Closes every connection made with a cell certificate whose cell no longer lives (or
/// was allocated again, with a new certificate); returns how many.
pub fn close_freed_cells(connections: &ConnectionRegistry, credentials: &CellCredentials) -> usize {
    connections.close_where(|info| match (&info.cell_serial, &info.principal) {
        (Some(serial), Some(principal)) => !credentials.is_live(principal, serial),
        (Some(_), None) => true,
        (None, _) => false,
    })
}

/// Closes every connection whose certificate the material of `pki` refuses (all of them
/// when the daemon no longer serves, or the material cannot be read); returns how many.
pub fn close_unverified(connections: &ConnectionRegistry, pki: &PkiPaths, serving: bool) -> usize {
    let verifier = match serving.then(|| aurae_core::tls::client_verifier(pki)) {
        Some(Ok(verifier)) => verifier,
        Some(Err(e)) => {
            tracing::error!(error = %e, "cannot check open connections against the new material; closing them all");
            return connections.close_where(|_| true);
        }
        None => return connections.close_where(|_| true),
    };
    let now = UnixTime::now();
    // Remote peers' streams authenticated with their key; the trust list governs them.
    connections.close_where(|info| {
        info.remote_peer.is_none()
            && verifier
                .verify_client_cert(&info.certificate, &[], now)
                .is_err()
    })
}
