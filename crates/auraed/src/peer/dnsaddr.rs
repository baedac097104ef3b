//! Bootstrap peers of a domain, read from DNS: the `_dnsaddr.<domain>` TXT records of the
//! libp2p dnsaddr convention (each TXT string is `dnsaddr=<multiaddr>`; a multiaddr may
//! itself be `/dnsaddr/<name>/...`, resolved recursively).
//!
//! This module owns the TXT lookups, the parsing of their entries and the limits on nested
//! resolution. It must never dial a peer, touch the swarm, or ask any DNS server other than
//! the configured ones; it never follows more than [`MAX_DEPTH`] nested names nor returns
//! more than [`MAX_ADDRESSES`] addresses, whatever a domain publishes.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use aurae_core::name::DomainName;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tonic::Status;

/// How many nested `/dnsaddr/` names are followed below `_dnsaddr.<domain>`.
pub const MAX_DEPTH: usize = 4;
/// How many addresses one domain may yield in all (after nested resolution).
pub const MAX_ADDRESSES: usize = 64;
/// How many distinct names one resolution may look up, so a wide tree of nested names
/// cannot turn one call into hundreds of queries.
pub const MAX_LOOKUPS: usize = 16;
/// How long one DNS query may take before it is retried.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times one DNS query is tried.
pub const LOOKUP_ATTEMPTS: usize = 2;

/// The prefix of every TXT string that carries an address.
const TXT_PREFIX: &str = "dnsaddr=";
/// The label under which a name publishes its addresses.
const DNSADDR_LABEL: &str = "_dnsaddr";
/// How much of a refused TXT string an error or log line quotes.
const MAX_QUOTED: usize = 200;
/// How many responses the per-call resolver keeps (it lives for one call only).
const CACHE_SIZE: u64 = 32;

/// Why a TXT string was not a usable `dnsaddr` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The string does not start with `dnsaddr=` (another use of TXT at that name).
    #[error("it does not start with 'dnsaddr='")]
    MissingPrefix,
    /// What follows `dnsaddr=` is not a multiaddr.
    #[error("'{text}' is not a multiaddr: {reason}")]
    BadMultiaddr {
        /// The text after `dnsaddr=` (shortened).
        text: String,
        /// The multiaddr parser's reason.
        reason: String,
    },
    /// The multiaddr does not end in `/p2p/<peer id>`, so nobody can tell whom it reaches.
    #[error("'{addr}' does not end in /p2p/<peer id>")]
    NoPeerId {
        /// The refused multiaddr.
        addr: String,
    },
    /// A `/dnsaddr/` component appears after the start of the multiaddr.
    #[error("'{addr}' has a /dnsaddr/ component that is not the first one")]
    DnsaddrNotFirst {
        /// The refused multiaddr.
        addr: String,
    },
    /// The name inside `/dnsaddr/<name>` is not a DNS name we accept.
    #[error("'{name}' in /dnsaddr/ is not a DNS name: {reason}")]
    BadName {
        /// The refused name.
        name: String,
        /// Why it was refused.
        reason: String,
    },
}

/// Why a domain's bootstrap peers could not be read; each message says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsaddrError {
    /// The host's resolver configuration (`/etc/resolv.conf`) could not be read.
    #[error(
        "cannot read the system resolver configuration (/etc/resolv.conf): {reason}; fix it or pass --dns-server"
    )]
    SystemConfig {
        /// hickory's reason.
        reason: String,
    },
    /// The DNS query failed: no answer in time, a refusal or a server failure.
    #[error(
        "DNS lookup of TXT {name} failed: {reason}; check that the DNS server is reachable and serves this name"
    )]
    LookupFailed {
        /// The name queried.
        name: String,
        /// hickory's reason.
        reason: String,
    },
    /// The name has no TXT records (NXDOMAIN or no data).
    #[error(
        "no dnsaddr records at {name}: publish one TXT record per bootstrap peer there, e.g. {name}. 300 IN TXT \"dnsaddr=/ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...\" (the peer id is what `aurae peer id` prints on that node)"
    )]
    NoRecords {
        /// The name queried (`_dnsaddr.<domain>`).
        name: String,
    },
    /// A TXT string was not a usable entry. Such entries are skipped with a warning; this is
    /// returned only when nothing usable is left.
    #[error("TXT record at {name} is not a usable dnsaddr entry ({entry:?}): {reason}")]
    Malformed {
        /// The name whose TXT records held the entry.
        name: String,
        /// The TXT string (shortened).
        entry: String,
        /// What is wrong with it.
        reason: EntryError,
    },
    /// Nested `/dnsaddr/` names went deeper than [`MAX_DEPTH`].
    #[error(
        "nested /dnsaddr/ names go deeper than {MAX_DEPTH} levels: {}; point the entries at addresses sooner",
        Chain(.chain)
    )]
    RecursionTooDeep {
        /// The names followed, outermost first.
        chain: Vec<String>,
    },
    /// A nested `/dnsaddr/` name points back at a name already being resolved.
    #[error("nested /dnsaddr/ names form a loop: {}; remove the entry that points back", Chain(.chain))]
    Loop {
        /// The names followed, outermost first, ending with the repeated one.
        chain: Vec<String>,
    },
    /// The domain yields more than [`MAX_ADDRESSES`] addresses.
    #[error(
        "_dnsaddr.{domain} yields more than {MAX_ADDRESSES} addresses; publish a few well-connected bootstrap peers, not every node"
    )]
    TooManyAddresses {
        /// The domain resolved.
        domain: String,
    },
    /// Resolving the domain needs more than [`MAX_LOOKUPS`] distinct names.
    #[error(
        "_dnsaddr.{domain} refers to more than {MAX_LOOKUPS} distinct /dnsaddr/ names; publish addresses directly"
    )]
    TooManyLookups {
        /// The domain resolved.
        domain: String,
    },
}

impl DnsaddrError {
    /// The gRPC status for this error: NOT_FOUND when the domain publishes nothing,
    /// UNAVAILABLE when DNS did not answer, INVALID_ARGUMENT when what the domain publishes
    /// is refused, FAILED_PRECONDITION when this host's resolver is misconfigured.
    pub fn to_status(&self) -> Status {
        let message = self.to_string();
        match self {
            Self::NoRecords { .. } => Status::not_found(message),
            Self::LookupFailed { .. } => Status::unavailable(message),
            Self::Malformed { .. }
            | Self::RecursionTooDeep { .. }
            | Self::Loop { .. }
            | Self::TooManyAddresses { .. }
            | Self::TooManyLookups { .. } => Status::invalid_argument(message),
            Self::SystemConfig { .. } => Status::failed_precondition(message),
        }
    }
}

/// Displays a chain of names as `a -> b -> c`.
struct Chain<'a>(&'a [String]);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" -> "))
    }
}

/// One usable `dnsaddr=` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DnsaddrEntry {
    /// A peer's address, ending in `/p2p/<peer>`.
    Peer {
        /// The peer the address reaches.
        peer: PeerId,
        /// The full address, `/p2p/<peer>` included.
        addr: Multiaddr,
    },
    /// `/dnsaddr/<name>/<suffix>`: the entries of `_dnsaddr.<name>` whose addresses end with
    /// `suffix` (all of them when `suffix` is empty).
    Nested {
        /// The name to resolve next.
        name: DomainName,
        /// What the resolved addresses must end with.
        suffix: Multiaddr,
    },
}

/// The result of parsing the TXT strings of one name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ParsedTxt {
    /// The usable entries, deduplicated, in the order they came.
    pub entries: Vec<DnsaddrEntry>,
    /// The refused strings (shortened) and why.
    pub malformed: Vec<(String, EntryError)>,
}

/// Parses one TXT string (`dnsaddr=<multiaddr>`) into an entry.
pub fn parse_entry(txt: &str) -> Result<DnsaddrEntry, EntryError> {
    let text = txt
        .strip_prefix(TXT_PREFIX)
        .ok_or(EntryError::MissingPrefix)?;
    if text.trim().is_empty() {
        return Err(EntryError::BadMultiaddr {
            text: String::new(),
            reason: "nothing follows 'dnsaddr='".to_owned(),
        });
    }
    let addr = Multiaddr::from_str(text).map_err(|e| EntryError::BadMultiaddr {
        text: shorten(text),
        reason: e.to_string(),
    })?;
    let mut protocols = addr.iter();
    if let Some(Protocol::Dnsaddr(name)) = protocols.next() {
        let suffix: Multiaddr = protocols.collect();
        return nested(&name, suffix, &addr);
    }
    if addr.iter().any(|p| matches!(p, Protocol::Dnsaddr(_))) {
        return Err(EntryError::DnsaddrNotFirst {
            addr: shorten(&addr.to_string()),
        });
    }
    match addr.iter().last() {
        Some(Protocol::P2p(peer)) => Ok(DnsaddrEntry::Peer { peer, addr }),
        _ => Err(EntryError::NoPeerId {
            addr: shorten(&addr.to_string()),
        }),
    }
}

/// Builds a nested entry, refusing a second `/dnsaddr/` or a name that is no DNS name.
fn nested(name: &str, suffix: Multiaddr, addr: &Multiaddr) -> Result<DnsaddrEntry, EntryError> {
    if suffix.iter().any(|p| matches!(p, Protocol::Dnsaddr(_))) {
        return Err(EntryError::DnsaddrNotFirst {
            addr: shorten(&addr.to_string()),
        });
    }
    let lowered = name.to_ascii_lowercase();
    let bare = lowered.strip_suffix('.').unwrap_or(&lowered);
    let name = DomainName::from_str(bare).map_err(|e| EntryError::BadName {
        name: shorten(name),
        reason: e.to_string(),
    })?;
    Ok(DnsaddrEntry::Nested { name, suffix })
}

/// Parses the TXT strings of one name: usable entries (deduplicated, in order) and the
/// refused ones with their reasons.
pub fn parse_txt<S: AsRef<str>>(txts: &[S]) -> ParsedTxt {
    let mut parsed = ParsedTxt::default();
    let mut seen = HashSet::new();
    for txt in txts {
        let txt = txt.as_ref();
        match parse_entry(txt) {
            Ok(entry) => {
                if seen.insert(entry.clone()) {
                    parsed.entries.push(entry);
                }
            }
            Err(e) => parsed.malformed.push((shorten(txt), e)),
        }
    }
    parsed
}

/// Cuts text quoted in errors and logs to [`MAX_QUOTED`] characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// Reads bootstrap peers from DNS. Cheap to clone; each call builds a fresh resolver, so
/// nothing is cached from one call to the next (and within a call, at most for a record's TTL).
#[derive(Debug, Clone)]
pub struct DnsaddrResolver {
    config: ResolverConfig,
    options: ResolverOpts,
}

impl DnsaddrResolver {
    /// Uses the host's resolvers from `/etc/resolv.conf`, with this module's short timeouts.
    pub fn system() -> Result<Self, DnsaddrError> {
        let (config, options) = hickory_resolver::system_conf::read_system_conf().map_err(|e| {
            DnsaddrError::SystemConfig {
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            config,
            options: tighten(options),
        })
    }

    /// Asks only the DNS server at `addr`, over UDP and TCP: what tests and `--dns-server` use.
    pub fn with_nameserver(addr: SocketAddr) -> Self {
        let connection = |mut c: ConnectionConfig| {
            c.port = addr.port();
            c
        };
        let server = NameServerConfig::new(
            addr.ip(),
            true,
            vec![
                connection(ConnectionConfig::udp()),
                connection(ConnectionConfig::tcp()),
            ],
        );
        let mut options = ResolverOpts::default();
        options.use_hosts_file = ResolveHosts::Never;
        Self {
            config: ResolverConfig::from_name_servers(vec![server]),
            options: tighten(options),
        }
    }

    /// The bootstrap peers `domain` publishes at `_dnsaddr.<domain>`, nested `/dnsaddr/`
    /// names resolved, deduplicated, in the order DNS gave them. Malformed entries and nested
    /// names that fail are skipped with a warning; an error comes back only when nothing
    /// usable is left (the first problem met), or when a limit is passed.
    pub async fn bootstrap_peers(
        &self,
        domain: &DomainName,
    ) -> Result<Vec<(PeerId, Multiaddr)>, DnsaddrError> {
        let root = dnsaddr_name(domain);
        let resolver = TokioResolver::builder_with_config(
            self.config.clone(),
            TokioRuntimeProvider::default(),
        )
        .with_options(self.options.clone())
        .build()
        .map_err(|e| DnsaddrError::LookupFailed {
            name: root.clone(),
            reason: e.to_string(),
        })?;
        let mut walk = Walk::new(&resolver, domain);
        let entries = walk.entries_of(&root).await?;
        walk.run(entries).await?;
        let peers = walk.found;
        if peers.is_empty() {
            return Err(walk
                .first_problem
                .unwrap_or(DnsaddrError::NoRecords { name: root }));
        }
        tracing::debug!(domain = %domain, peers = peers.len(), "read bootstrap peers from DNS");
        Ok(peers)
    }
}

/// Applies this module's timeouts and a small cache to resolver options.
fn tighten(mut options: ResolverOpts) -> ResolverOpts {
    options.timeout = LOOKUP_TIMEOUT;
    options.attempts = LOOKUP_ATTEMPTS;
    options.cache_size = CACHE_SIZE;
    options.try_tcp_on_error = true;
    options
}

/// The name whose TXT records hold a domain's addresses.
fn dnsaddr_name(domain: &DomainName) -> String {
    format!("{DNSADDR_LABEL}.{domain}")
}

/// An entry waiting to be used, with how it was reached.
struct Pending {
    entry: DnsaddrEntry,
    /// The domains looked up to reach it, outermost first.
    chain: Vec<String>,
    /// Suffixes its address must end with (from the nested entries above it).
    filters: Vec<Multiaddr>,
}

/// The state of one resolution: what was found, what was looked up, what went wrong.
struct Walk<'a> {
    resolver: &'a TokioResolver,
    domain: &'a DomainName,
    /// Parsed entries per queried name; each name is queried at most once.
    looked_up: HashMap<String, Vec<DnsaddrEntry>>,
    found: Vec<(PeerId, Multiaddr)>,
    seen: HashSet<(PeerId, Multiaddr)>,
    first_problem: Option<DnsaddrError>,
}

impl<'a> Walk<'a> {
    fn new(resolver: &'a TokioResolver, domain: &'a DomainName) -> Self {
        Self {
            resolver,
            domain,
            looked_up: HashMap::new(),
            found: Vec::new(),
            seen: HashSet::new(),
            first_problem: None,
        }
    }

    /// Uses the root entries depth first, so the result keeps the order DNS gave.
    async fn run(&mut self, root: Vec<DnsaddrEntry>) -> Result<(), DnsaddrError> {
        let mut stack = pending(root, &[self.domain.to_string()], &[]);
        while let Some(item) = stack.pop() {
            match item.entry {
                DnsaddrEntry::Peer { peer, addr } => self.keep(peer, addr, &item.filters)?,
                DnsaddrEntry::Nested { name, suffix } => {
                    let Some(chain) = self.descend(&item.chain, &name) else {
                        continue;
                    };
                    let query = dnsaddr_name(&name);
                    let entries = match self.entries_of(&query).await {
                        Ok(entries) => entries,
                        Err(e @ DnsaddrError::TooManyLookups { .. }) => return Err(e),
                        Err(e) => {
                            tracing::warn!(name = %query, error = %e, "skipping a nested dnsaddr name");
                            self.problem(e);
                            continue;
                        }
                    };
                    let mut filters = item.filters;
                    if !suffix.is_empty() {
                        filters.push(suffix);
                    }
                    stack.extend(pending(entries, &chain, &filters));
                }
            }
        }
        Ok(())
    }

    /// Adds a peer's address if it passes the filters and is new.
    fn keep(
        &mut self,
        peer: PeerId,
        addr: Multiaddr,
        filters: &[Multiaddr],
    ) -> Result<(), DnsaddrError> {
        if !filters.iter().all(|f| addr.ends_with(f)) {
            tracing::debug!(addr = %addr, "dnsaddr entry does not match the nested name's suffix");
            return Ok(());
        }
        if !self.seen.insert((peer, addr.clone())) {
            return Ok(());
        }
        if self.found.len() == MAX_ADDRESSES {
            return Err(DnsaddrError::TooManyAddresses {
                domain: self.domain.to_string(),
            });
        }
        self.found.push((peer, addr));
        Ok(())
    }

    /// The chain one level down to `name`, or `None` (with the problem noted) when that
    /// would loop or go too deep.
    fn descend(&mut self, chain: &[String], name: &DomainName) -> Option<Vec<String>> {
        let mut next = chain.to_vec();
        next.push(name.to_string());
        let looped = chain.iter().any(|c| c == name.as_str());
        let problem = if looped {
            DnsaddrError::Loop { chain: next }
        } else if chain.len() > MAX_DEPTH {
            DnsaddrError::RecursionTooDeep { chain: next }
        } else {
            return Some(next);
        };
        tracing::warn!(domain = %self.domain, error = %problem, "not following a nested dnsaddr name");
        self.problem(problem);
        None
    }

    /// The usable entries at `name`, looked up once; malformed ones are logged and noted.
    async fn entries_of(&mut self, name: &str) -> Result<Vec<DnsaddrEntry>, DnsaddrError> {
        if let Some(entries) = self.looked_up.get(name) {
            return Ok(entries.clone());
        }
        if self.looked_up.len() == MAX_LOOKUPS {
            return Err(DnsaddrError::TooManyLookups {
                domain: self.domain.to_string(),
            });
        }
        let txts = lookup_txt(self.resolver, name).await?;
        let parsed = parse_txt(&txts);
        for (entry, reason) in parsed.malformed {
            tracing::warn!(name = %name, entry = %entry, reason = %reason, "skipping a malformed dnsaddr TXT entry");
            self.problem(DnsaddrError::Malformed {
                name: name.to_owned(),
                entry,
                reason,
            });
        }
        self.looked_up
            .insert(name.to_owned(), parsed.entries.clone());
        Ok(parsed.entries)
    }

    /// Remembers the first problem, returned if nothing usable is found.
    fn problem(&mut self, e: DnsaddrError) {
        self.first_problem.get_or_insert(e);
    }
}

/// Entries as stack items, reversed so that the first is used first.
fn pending(entries: Vec<DnsaddrEntry>, chain: &[String], filters: &[Multiaddr]) -> Vec<Pending> {
    entries
        .into_iter()
        .rev()
        .map(|entry| Pending {
            entry,
            chain: chain.to_vec(),
            filters: filters.to_vec(),
        })
        .collect()
}

/// The TXT strings at `name` (each record's character-strings joined), in answer order.
async fn lookup_txt(resolver: &TokioResolver, name: &str) -> Result<Vec<String>, DnsaddrError> {
    let fqdn = format!("{name}.");
    let lookup = resolver.txt_lookup(fqdn).await.map_err(|e| {
        if e.is_no_records_found() {
            DnsaddrError::NoRecords {
                name: name.to_owned(),
            }
        } else {
            DnsaddrError::LookupFailed {
                name: name.to_owned(),
                reason: e.to_string(),
            }
        }
    })?;
    let txts: Vec<String> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(String::from_utf8_lossy(&txt.txt_data.concat()).into_owned()),
            _ => None,
        })
        .collect();
    if txts.is_empty() {
        return Err(DnsaddrError::NoRecords {
            name: name.to_owned(),
        });
    }
    Ok(txts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(seed: u8) -> PeerId {
        match libp2p::identity::Keypair::ed25519_from_bytes([seed; 32]) {
            Ok(key) => key.public().to_peer_id(),
            Err(e) => panic!("a 32-byte seed is a valid ed25519 key: {e}"),
        }
    }

    fn addr(text: &str) -> Multiaddr {
        match text.parse() {
            Ok(a) => a,
            Err(e) => panic!("test multiaddr {text}: {e}"),
        }
    }

    #[test]
    fn a_peer_entry_keeps_its_full_address() {
        let p = peer(1);
        let text = format!("/ip4/192.0.2.1/tcp/4001/p2p/{p}");
        assert_eq!(
            parse_entry(&format!("dnsaddr={text}")),
            Ok(DnsaddrEntry::Peer {
                peer: p,
                addr: addr(&text),
            })
        );
    }

    #[test]
    fn a_nested_entry_names_the_next_domain_and_its_suffix() {
        let p = peer(2);
        let entry = parse_entry(&format!("dnsaddr=/dnsaddr/Sub.Example.org./p2p/{p}"));
        assert_eq!(
            entry,
            Ok(DnsaddrEntry::Nested {
                name: "sub.example.org".parse().unwrap_or_default(),
                suffix: addr(&format!("/p2p/{p}")),
            })
        );
        let bare = parse_entry("dnsaddr=/dnsaddr/sub.example.org");
        assert!(
            matches!(&bare, Ok(DnsaddrEntry::Nested { name, suffix }) if name.as_str() == "sub.example.org" && suffix.is_empty()),
            "{bare:?}"
        );
    }

    #[test]
    fn an_entry_without_the_prefix_is_refused() {
        assert_eq!(parse_entry("v=spf1 -all"), Err(EntryError::MissingPrefix));
        assert_eq!(
            parse_entry(&format!("/ip4/192.0.2.1/tcp/1/p2p/{}", peer(1))),
            Err(EntryError::MissingPrefix)
        );
        assert_eq!(parse_entry(""), Err(EntryError::MissingPrefix));
    }

    #[test]
    fn a_garbage_multiaddr_is_refused() {
        for text in [
            "dnsaddr=",
            "dnsaddr=not a multiaddr",
            "dnsaddr=/ip4/999.1.1.1/tcp/1",
            "dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/notapeerid",
        ] {
            let result = parse_entry(text);
            assert!(
                matches!(result, Err(EntryError::BadMultiaddr { .. })),
                "{text}: {result:?}"
            );
        }
    }

    #[test]
    fn an_address_without_p2p_is_refused() {
        let result = parse_entry("dnsaddr=/ip4/192.0.2.1/tcp/4001");
        assert!(
            matches!(result, Err(EntryError::NoPeerId { .. })),
            "{result:?}"
        );
        let p2p_inside = parse_entry(&format!(
            "dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/{}/p2p-circuit",
            peer(1)
        ));
        assert!(
            matches!(p2p_inside, Err(EntryError::NoPeerId { .. })),
            "{p2p_inside:?}"
        );
    }

    #[test]
    fn a_dnsaddr_after_the_start_or_a_bad_name_is_refused() {
        let late = parse_entry("dnsaddr=/ip4/192.0.2.1/dnsaddr/example.org");
        assert!(
            matches!(late, Err(EntryError::DnsaddrNotFirst { .. })),
            "{late:?}"
        );
        let twice = parse_entry("dnsaddr=/dnsaddr/a.example.org/dnsaddr/b.example.org");
        assert!(
            matches!(twice, Err(EntryError::DnsaddrNotFirst { .. })),
            "{twice:?}"
        );
        let bad = parse_entry("dnsaddr=/dnsaddr/under_score..org");
        assert!(matches!(bad, Err(EntryError::BadName { .. })), "{bad:?}");
    }

    #[test]
    fn parsing_keeps_order_drops_duplicates_and_reports_the_rest() {
        let (a, b) = (peer(1), peer(2));
        let first = format!("dnsaddr=/ip4/192.0.2.1/tcp/4001/p2p/{a}");
        let second = format!("dnsaddr=/dns4/b.example.org/tcp/4001/p2p/{b}");
        let txts = vec![
            first.clone(),
            "v=spf1 -all".to_owned(),
            second.clone(),
            first.clone(),
            "dnsaddr=/ip4/192.0.2.9/tcp/4001".to_owned(),
            "dnsaddr=garbage".to_owned(),
        ];
        let parsed = parse_txt(&txts);
        let expected: Vec<DnsaddrEntry> = [first, second]
            .iter()
            .filter_map(|t| parse_entry(t).ok())
            .collect();
        assert_eq!(parsed.entries, expected);
        let reasons: Vec<&EntryError> = parsed.malformed.iter().map(|(_, e)| e).collect();
        assert!(matches!(
            reasons.as_slice(),
            [
                EntryError::MissingPrefix,
                EntryError::NoPeerId { .. },
                EntryError::BadMultiaddr { .. }
            ]
        ));
        assert_eq!(parsed.malformed[0].0, "v=spf1 -all");
    }

    #[test]
    fn quoted_text_is_shortened() {
        let long = format!("dnsaddr={}", "x".repeat(1000));
        let parsed = parse_txt(&[long]);
        let (quoted, _) = &parsed.malformed[0];
        assert_eq!(quoted.chars().count(), MAX_QUOTED + 3);
    }

    #[test]
    fn errors_map_to_the_documented_codes() {
        use tonic::Code;
        let cases = [
            (
                DnsaddrError::NoRecords {
                    name: "_dnsaddr.example.org".into(),
                },
                Code::NotFound,
            ),
            (
                DnsaddrError::LookupFailed {
                    name: "_dnsaddr.example.org".into(),
                    reason: "request timed out".into(),
                },
                Code::Unavailable,
            ),
            (
                DnsaddrError::Malformed {
                    name: "_dnsaddr.example.org".into(),
                    entry: "x".into(),
                    reason: EntryError::MissingPrefix,
                },
                Code::InvalidArgument,
            ),
            (
                DnsaddrError::Loop {
                    chain: vec!["a.org".into(), "a.org".into()],
                },
                Code::InvalidArgument,
            ),
            (
                DnsaddrError::SystemConfig {
                    reason: "no file".into(),
                },
                Code::FailedPrecondition,
            ),
        ];
        for (error, code) in cases {
            let status = error.to_status();
            assert_eq!(status.code(), code, "{error}");
            assert_eq!(status.message(), error.to_string());
        }
    }

    #[test]
    fn the_no_records_message_shows_what_to_publish() {
        let message = DnsaddrError::NoRecords {
            name: "_dnsaddr.example.org".into(),
        }
        .to_string();
        assert!(
            message.contains("_dnsaddr.example.org. 300 IN TXT \"dnsaddr=/ip4/"),
            "{message}"
        );
    }
}
