//! The registry of open authenticated connections: who holds them, how many each
//! principal may hold, whether they are idle, and a way to close any set of them.
//!
//! Every connection that completed mutual TLS is admitted here before it is served, and
//! leaves when its stream is dropped. Admission enforces the limits that keep the node's
//! admin served under attack: each principal holds at most
//! [`ConnectionLimits::per_principal`] connections, and all principals but the node's
//! admin together hold at most [`ConnectionLimits::non_admin`], which keeps a reserve of
//! descriptors for the admin. The admin is never refused.
//!
//! Closing ([`ConnectionRegistry::close_where`], [`ConnectionRegistry::close_idle`])
//! makes the connection's stream fail on its next read or write and wakes the task
//! serving it, so that the server drops it at once. A caller holding the daemon context
//! can close every connection whose client certificate matches a predicate (revocation).
//! This module never reads certificates or decides who is admin: it is told.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use aurae_core::name::Principal;
use aurae_core::pki::NodeNames;
use rustls::pki_types::CertificateDer;

/// How many connections principals may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections one principal may hold at once (the node's admin excepted).
    pub per_principal: usize,
    /// Connections every principal but the node's admin may hold together.
    pub non_admin: usize,
}

impl ConnectionLimits {
    /// The limits for a descriptor `budget` (the soft `RLIMIT_NOFILE`): non-admin
    /// principals together get the budget less `reserve`, but never less than half of it,
    /// so that a small budget still serves them.
    pub fn from_budget(budget: u64, reserve: usize, per_principal: usize) -> Self {
        let budget = usize::try_from(budget).unwrap_or(usize::MAX);
        let reserve = reserve.min(budget / 2);
        Self {
            per_principal,
            non_admin: budget - reserve,
        }
    }
}

/// What a principal may do on this node, decided once per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `admin@<this peer>@<this domain>`: every right, never refused a connection.
    NodeAdmin,
    /// Anyone else, including the admins of other nodes.
    Other,
}

impl Role {
    /// The role of `principal` on the node named `node` (unknown names: nobody is admin).
    pub fn of(principal: Option<&Principal>, node: Option<&NodeNames>) -> Self {
        match (principal, node) {
            (Some(principal), Some(node)) if principal.is_admin_of(&node.peer, &node.domain) => {
                Self::NodeAdmin
            }
            _ => Self::Other,
        }
    }
}

/// Identifies one connection for as long as the daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(u64);

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What is known of an open connection from its handshake: what predicates of
/// [`ConnectionRegistry::close_where`] look at.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The connection.
    pub id: ConnectionId,
    /// The principal its client certificate names; `None` if it names none (its requests
    /// are refused as unauthenticated).
    pub principal: Option<Principal>,
    /// The client's leaf certificate (DER), for revocation by serial or fingerprint.
    pub certificate: CertificateDer<'static>,
    /// The serial of a cell's certificate (accepted only while the cell lives); `None`
    /// for any other certificate.
    pub cell_serial: Option<Vec<u8>>,
    /// The principal's role on this node.
    pub role: Role,
    /// For a remote peer's stream (the `peer` capability), its PeerId: it authenticated
    /// with its key, not with a certificate, and `certificate` is empty.
    pub remote_peer: Option<String>,
    /// When the handshake completed.
    pub opened: Instant,
}

/// Why a connection was refused right after its handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The principal already holds its share of connections.
    #[error("{principal} already holds {limit} connections, the most one principal may hold")]
    PrincipalLimit {
        /// Who asked (`unnamed` for a certificate without a principal).
        principal: String,
        /// The limit it reached.
        limit: usize,
    },
    /// Non-admin principals together hold every connection they may; the rest is kept
    /// for the node's admin.
    #[error(
        "non-admin principals hold {limit} connections, all they may; the rest is reserved for the node's admin"
    )]
    NonAdminLimit {
        /// The limit reached.
        limit: usize,
    },
}

/// The open connections, by principal. Cheap to clone: clones share one registry.
#[derive(Debug, Clone)]
pub struct ConnectionRegistry {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    limits: ConnectionLimits,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    connections: BTreeMap<ConnectionId, Arc<ConnectionState>>,
    per_principal: HashMap<Option<Principal>, usize>,
    non_admin: usize,
}

impl ConnectionRegistry {
    /// An empty registry admitting connections within `limits`.
    pub fn new(limits: ConnectionLimits) -> Self {
        Self {
            shared: Arc::new(Shared {
                limits,
                open: Mutex::default(),
            }),
        }
    }

    /// The limits it admits within.
    pub fn limits(&self) -> ConnectionLimits {
        self.shared.limits
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a connection that completed its handshake, or refuses it if its principal
    /// is over a limit. The node's admin is always admitted. The connection stays in the
    /// registry until the returned handle is dropped.
    pub fn admit(
        &self,
        principal: Option<Principal>,
        certificate: CertificateDer<'static>,
        role: Role,
    ) -> Result<OpenConnection, Refusal> {
        self.admit_with(principal, certificate, role, None)
    }

    /// Admits a remote peer's stream, under the same limits as any non-admin connection:
    /// `principal` is what its PeerId is trusted as (`None`: untrusted, so every request
    /// on it is refused).
    pub fn admit_remote(
        &self,
        principal: Option<Principal>,
        peer: String,
    ) -> Result<OpenConnection, Refusal> {
        self.admit_with(
            principal,
            CertificateDer::from(Vec::new()),
            Role::Other,
            Some(peer),
        )
    }

    fn admit_with(
        &self,
        principal: Option<Principal>,
        certificate: CertificateDer<'static>,
        role: Role,
        remote_peer: Option<String>,
    ) -> Result<OpenConnection, Refusal> {
        let limits = self.shared.limits;
        let mut open = self.open();
        if role == Role::Other {
            let held = open.per_principal.get(&principal).copied().unwrap_or(0);
            if held >= limits.per_principal {
                return Err(Refusal::PrincipalLimit {
                    principal: principal.map_or_else(|| "unnamed".to_owned(), |p| p.to_string()),
                    limit: limits.per_principal,
                });
            }
            if open.non_admin >= limits.non_admin {
                return Err(Refusal::NonAdminLimit {
                    limit: limits.non_admin,
                });
            }
            open.non_admin += 1;
        }
        *open.per_principal.entry(principal.clone()).or_default() += 1;
        let id = ConnectionId(open.next);
        open.next += 1;
        let state = Arc::new(ConnectionState::new(ConnectionInfo {
            id,
            principal,
            cell_serial: aurae_core::pki::cell_serial_of(&certificate),
            certificate,
            role,
            remote_peer,
            opened: Instant::now(),
        }));
        open.connections.insert(id, state.clone());
        Ok(OpenConnection {
            state,
            registry: self.clone(),
        })
    }

    fn remove(&self, state: &ConnectionState) {
        let mut open = self.open();
        if open.connections.remove(&state.info.id).is_none() {
            return;
        }
        if state.info.role == Role::Other {
            open.non_admin -= 1;
        }
        if let Some(held) = open.per_principal.get_mut(&state.info.principal) {
            *held -= 1;
            if *held == 0 {
                open.per_principal.remove(&state.info.principal);
            }
        }
    }

    /// Closes every open connection whose [`ConnectionInfo`] matches `predicate` (e.g.
    /// its certificate was revoked); returns how many. Each one's stream fails at once
    /// and the server drops it; requests in flight on it fail.
    pub fn close_where(&self, predicate: impl Fn(&ConnectionInfo) -> bool) -> usize {
        self.close_matching(|state| predicate(&state.info))
    }

    /// Closes every connection that carried no request for `timeout` and has none in
    /// flight; returns how many.
    pub fn close_idle(&self, timeout: Duration) -> usize {
        let now = Instant::now();
        self.close_matching(|state| state.idle_for(now).is_some_and(|idle| idle >= timeout))
    }

    fn close_matching(&self, predicate: impl Fn(&ConnectionState) -> bool) -> usize {
        let matching: Vec<Arc<ConnectionState>> = self
            .open()
            .connections
            .values()
            .filter(|state| !state.is_closed() && predicate(state))
            .cloned()
            .collect();
        // Woken outside the lock: a waker may run code of its own.
        for state in &matching {
            state.close();
        }
        matching.len()
    }

    /// What is known of every open connection, oldest first.
    pub fn list(&self) -> Vec<ConnectionInfo> {
        self.open()
            .connections
            .values()
            .map(|state| state.info.clone())
            .collect()
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.open().connections.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The live state of one admitted connection, shared by its stream, the requests it
/// carries and the registry.
#[derive(Debug)]
pub struct ConnectionState {
    info: ConnectionInfo,
    in_flight: AtomicUsize,
    last_request: Mutex<Instant>,
    closed: AtomicBool,
    /// The task serving the connection, woken when it is closed.
    waker: Mutex<Option<Waker>>,
}

impl ConnectionState {
    fn new(info: ConnectionInfo) -> Self {
        Self {
            last_request: Mutex::new(info.opened),
            info,
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            waker: Mutex::new(None),
        }
    }

    /// What the handshake told of the connection.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Whether the connection was closed: its stream fails from now on.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the connection closed and wakes the task serving it.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let waker = self
            .waker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Remembers the task to wake when the connection is closed; called by its stream on
    /// every poll.
    pub fn register_waker(&self, waker: &Waker) {
        let mut slot = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
        match slot.as_ref() {
            Some(held) if held.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
    }

    fn touch(&self) {
        *self
            .last_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// A request starts on the connection; it counts as in flight until the guard (and
    /// so the response body holding it) is dropped.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    /// How long since the last request ended, or `None` while one is in flight.
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = *self
            .last_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(now.saturating_duration_since(last))
    }
}

/// A request in flight on a connection: the connection is not idle while it lives.
#[derive(Debug)]
pub struct InFlight(Arc<ConnectionState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An admitted connection's place in the registry; it leaves when this is dropped.
#[derive(Debug)]
pub struct OpenConnection {
    state: Arc<ConnectionState>,
    registry: ConnectionRegistry,
}

impl OpenConnection {
    /// The connection's live state.
    pub fn state(&self) -> &Arc<ConnectionState> {
        &self.state
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.registry.remove(&self.state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    fn principal(s: &str) -> Option<Principal> {
        Some(s.parse().unwrap())
    }

    fn cert(byte: u8) -> CertificateDer<'static> {
        CertificateDer::from(vec![byte; 4])
    }

    fn registry(per_principal: usize, non_admin: usize) -> ConnectionRegistry {
        ConnectionRegistry::new(ConnectionLimits {
            per_principal,
            non_admin,
        })
    }

    #[test]
    fn a_principal_over_its_share_is_refused_and_the_admin_never_is() {
        let registry = registry(2, 3);
        let mallory = || registry.admit(principal("mallory@node1@local"), cert(1), Role::Other);
        let held = [mallory().unwrap(), mallory().unwrap()];
        assert!(matches!(
            mallory(),
            Err(Refusal::PrincipalLimit { limit: 2, .. })
        ));
        let eve = registry
            .admit(principal("eve@node1@local"), cert(2), Role::Other)
            .unwrap();
        assert_eq!(
            registry
                .admit(principal("trent@node1@local"), cert(3), Role::Other)
                .unwrap_err(),
            Refusal::NonAdminLimit { limit: 3 }
        );
        let admins: Vec<_> = (0..10)
            .map(|_| {
                registry
                    .admit(principal("admin@node1@local"), cert(4), Role::NodeAdmin)
                    .unwrap()
            })
            .collect();
        assert_eq!(registry.len(), 13);
        drop(held);
        drop(admins);
        assert_eq!(registry.len(), 1);
        assert!(mallory().is_ok(), "a closed connection frees its share");
        drop(eve);
    }

    #[test]
    fn close_where_closes_exactly_the_matching_connections_and_wakes_them() {
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let registry = registry(8, 8);
        let revoked = registry
            .admit(principal("alice@node1@local"), cert(7), Role::Other)
            .unwrap();
        let kept = registry
            .admit(principal("alice@node1@local"), cert(8), Role::Other)
            .unwrap();
        let woken = Arc::new(Count(AtomicUsize::new(0)));
        revoked.state().register_waker(&Waker::from(woken.clone()));
        let closed = registry.close_where(|c| c.certificate.as_ref() == [7; 4]);
        assert_eq!(closed, 1);
        assert!(revoked.state().is_closed());
        assert!(!kept.state().is_closed());
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            registry.close_where(|c| c.certificate.as_ref() == [7; 4]),
            0,
            "a closed connection is not closed twice"
        );
    }

    #[test]
    fn a_connection_with_a_request_in_flight_is_never_idle() {
        let registry = registry(8, 8);
        let open = registry
            .admit(principal("alice@node1@local"), cert(1), Role::Other)
            .unwrap();
        let request = open.state().request_started();
        assert_eq!(registry.close_idle(Duration::ZERO), 0);
        drop(request);
        assert_eq!(registry.close_idle(Duration::from_secs(60)), 0);
        assert_eq!(registry.close_idle(Duration::ZERO), 1);
        assert!(open.state().is_closed());
    }

    #[test]
    fn the_reserve_never_takes_more_than_half_the_budget() {
        assert_eq!(
            ConnectionLimits::from_budget(1024, 256, 64),
            ConnectionLimits {
                per_principal: 64,
                non_admin: 768
            }
        );
        assert_eq!(ConnectionLimits::from_budget(256, 256, 64).non_admin, 128);
    }

    #[test]
    fn only_the_admin_of_this_node_has_the_admin_role() {
        let node = NodeNames {
            peer: "node1".parse().unwrap(),
            domain: "local".parse().unwrap(),
        };
        let role = |p: &str| Role::of(principal(p).as_ref(), Some(&node));
        assert_eq!(role("admin@node1@local"), Role::NodeAdmin);
        assert_eq!(role("admin@otherpeer@other.example"), Role::Other);
        assert_eq!(role("alice@node1@local"), Role::Other);
        assert_eq!(
            Role::of(principal("admin@node1@local").as_ref(), None),
            Role::Other,
            "unknown node names: nobody is admin"
        );
    }
}
