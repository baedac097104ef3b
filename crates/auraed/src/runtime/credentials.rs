//! Which cell certificates work right now: the live lookup that replaces revocation for
//! cells.
//!
//! A cell's certificate ([`aurae_core::pki::CertificateAuthority::issue_cell`]) is
//! accepted only while its cell lives, and only the one serial the cell was given.
//! Freeing the cell removes it here, so every later request made with it is refused at
//! once, and a cell allocated again under the same name gets a new serial that the old
//! certificate does not match. Nothing is written per cell to the ledger or the
//! revocation list, which would otherwise grow with every cell ever made.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aurae_core::name::Principal;

/// The live cells' certificate serials, by principal; shared by the runtime (which
/// changes it) and the authorization layer (which reads it on every request of a cell).
#[derive(Debug, Clone, Default)]
pub struct CellCredentials {
    live: Arc<RwLock<HashMap<Principal, Vec<u8>>>>,
    removed: Arc<tokio::sync::Notify>,
}

impl CellCredentials {
    /// Accepts `serial` as the certificate of `principal`'s cell from now on.
    pub fn insert(&self, principal: Principal, serial: Vec<u8>) {
        self.write().insert(principal, serial);
    }

    /// Stops accepting any certificate of `principal`'s cell, and wakes
    /// [`CellCredentials::removed`] so that open connections made with it are closed.
    pub fn remove(&self, principal: &Principal) {
        self.write().remove(principal);
        self.removed.notify_one();
    }

    /// Resolves after a cell's certificate was removed (one wake-up for any number of
    /// removals since the last).
    pub async fn removed(&self) {
        self.removed.notified().await;
    }

    /// Whether a cell certificate naming `principal` with `serial` belongs to a live cell.
    pub fn is_live(&self, principal: &Principal, serial: &[u8]) -> bool {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(principal)
            .is_some_and(|live| live == serial)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Principal, Vec<u8>>> {
        self.live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_live_serial_of_a_live_cell_is_accepted() {
        let credentials = CellCredentials::default();
        let web: Principal = "web@node1@local".parse().unwrap();
        assert!(!credentials.is_live(&web, b"\x01"));
        credentials.insert(web.clone(), b"\x01".to_vec());
        assert!(credentials.is_live(&web, b"\x01"));
        assert!(!credentials.is_live(&web, b"\x02"));
        credentials.insert(web.clone(), b"\x02".to_vec());
        assert!(!credentials.is_live(&web, b"\x01"));
        credentials.remove(&web);
        assert!(!credentials.is_live(&web, b"\x02"));
    }
}
