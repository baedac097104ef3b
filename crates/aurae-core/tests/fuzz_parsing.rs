//! Parsers fed what an attacker or a typo can send: store paths, names and principals
//! from arbitrary text, and the principal of a client certificate from arbitrary bytes
//! and from real certificates with bytes flipped, cut or inserted. Each must answer
//! (never panic), and what it accepts must obey the documented rule and read back the
//! same.
//!
//! A few cases run in the default test run; `scripts/fuzz` runs the `#[ignore]`d
//! variants at scale (PROPTEST_CASES). Failures proptest finds are kept in
//! `fuzz_parsing.proptest-regressions` beside this file and replayed first by every run:
//! commit them.

use std::sync::OnceLock;

use aurae_core::name::{
    DomainName, EntityName, MAX_DOMAIN_LEN, MAX_LABEL_LEN, PeerName, Principal, VolumeName,
};
use aurae_core::path::{MAX_NAME_LEN, MAX_PATH_LEN, PathError, StorePath, check_symlink_target};
use aurae_core::pki::{CertificateAuthority, PkiError, Validity, principal_of};
use proptest::prelude::*;
use proptest::test_runner::{FailurePersistence, FileFailurePersistence};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

// ---- the rules, written again independently of the parsers ----

/// A path is accepted iff it is absolute, holds no NUL, fits PATH_MAX, and no component
/// is `.`, `..` or longer than NAME_MAX.
fn path_rule(text: &str) -> bool {
    text.starts_with('/')
        && !text.contains('\0')
        && text.len() <= MAX_PATH_LEN
        && text
            .split('/')
            .all(|c| c != "." && c != ".." && c.len() <= MAX_NAME_LEN)
}

/// An entity, peer or volume label: 1 to 63 of a-z 0-9 - _, not starting with - or _.
fn label_rule(text: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !text.is_empty()
        && text.len() <= MAX_LABEL_LEN
        && text.starts_with(ok)
        && text.chars().all(|c| ok(c) || c == '-' || c == '_')
}

/// An entity: one label, or labels joined by `.` (a nested cell's principal), 63 in all.
fn entity_rule(text: &str) -> bool {
    text.len() <= MAX_LABEL_LEN && text.split('.').all(label_rule)
}

/// A domain: dot-separated DNS labels of a-z 0-9 and inner -, 253 at most.
fn domain_rule(text: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !text.is_empty()
        && text.len() <= MAX_DOMAIN_LEN
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && label.starts_with(ok)
                && label.ends_with(ok)
                && label.chars().all(|c| ok(c) || c == '-')
        })
}

// ---- the properties ----

fn store_path_obeys_the_rule(text: &str) -> Result<(), TestCaseError> {
    let parsed = text.parse::<StorePath>();
    prop_assert_eq!(parsed.is_ok(), path_rule(text), "{:?}: {:?}", text, parsed);
    let Ok(path) = parsed else {
        return Ok(());
    };
    let s = path.as_str();
    prop_assert!(s.starts_with('/'));
    prop_assert!(!s.contains("//"));
    prop_assert!(path.is_root() || !s.ends_with('/'));
    prop_assert_eq!(s.parse::<StorePath>(), Ok(path.clone()), "not normalized");
    prop_assert_eq!(
        path.components().collect::<Vec<_>>(),
        text.split('/')
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
    );
    if let Some((parent, name)) = path.split_last() {
        prop_assert_eq!(parent.join(name), path.clone());
        prop_assert!(path.starts_with(&parent) && !parent.starts_with(&path));
    }
    Ok(())
}

fn path_errors_are_the_right_ones(text: &str) -> Result<(), TestCaseError> {
    match text.parse::<StorePath>() {
        Err(PathError::Relative(_)) => prop_assert!(!text.starts_with('/')),
        Err(PathError::Nul) => prop_assert!(text.contains('\0')),
        Err(PathError::TooLong(len)) => prop_assert!(len > MAX_PATH_LEN),
        Err(PathError::DotComponent(_) | PathError::NameTooLong(_)) | Ok(_) => {}
        Err(other) => prop_assert!(false, "a path error for targets: {other:?}"),
    }
    Ok(())
}

fn labels_obey_the_rule(text: &str) -> Result<(), TestCaseError> {
    let rule = label_rule(text);
    let entity = text.parse::<EntityName>();
    prop_assert_eq!(
        entity.is_ok(),
        entity_rule(text),
        "{:?}: {:?}",
        text,
        entity
    );
    prop_assert_eq!(text.parse::<PeerName>().is_ok(), rule);
    prop_assert_eq!(text.parse::<VolumeName>().is_ok(), rule);
    if let Ok(entity) = entity {
        prop_assert_eq!(entity.as_str(), text);
        prop_assert_eq!(entity.to_string(), text);
    }
    let domain = text.parse::<DomainName>();
    prop_assert_eq!(
        domain.is_ok(),
        domain_rule(text),
        "{:?}: {:?}",
        text,
        domain
    );
    let peer = PeerName::from_hostname(text);
    prop_assert!(
        label_rule(peer.as_str()),
        "from_hostname({text:?}) = {peer}"
    );
    Ok(())
}

fn principals_read_back(text: &str) -> Result<(), TestCaseError> {
    let parsed = text.parse::<Principal>();
    let parts: Vec<&str> = text.splitn(3, '@').collect();
    let rule =
        parts.len() == 3 && label_rule(parts[0]) && label_rule(parts[1]) && domain_rule(parts[2]);
    prop_assert_eq!(parsed.is_ok(), rule, "{:?}: {:?}", text, parsed);
    if let Ok(principal) = parsed {
        prop_assert_eq!(principal.to_string(), text);
        let uri = principal.to_uri();
        prop_assert_eq!(Principal::from_uri(&uri), Some(Ok(principal.clone())));
        // Admin of its own node exactly, of no other.
        prop_assert_eq!(
            principal.is_admin_of(&principal.peer, &principal.domain),
            parts[0] == Principal::ADMIN
        );
        let elsewhere: aurae_core::name::PeerName = "elsewhere-peer".parse().unwrap();
        prop_assert!(
            principal.peer == elsewhere || !principal.is_admin_of(&elsewhere, &principal.domain)
        );
    }
    prop_assert!(Principal::from_uri(text).is_none() || text.starts_with("aurae:"));
    Ok(())
}

fn symlink_targets_obey_the_rule(text: &str) -> Result<(), TestCaseError> {
    let rule = !text.is_empty() && !text.contains('\0') && text.len() <= MAX_PATH_LEN;
    prop_assert_eq!(check_symlink_target(text).is_ok(), rule, "{:?}", text);
    Ok(())
}

/// A real client certificate, once per test binary.
fn real_certificate() -> &'static (Vec<u8>, Principal) {
    static CERT: OnceLock<(Vec<u8>, Principal)> = OnceLock::new();
    CERT.get_or_init(|| {
        let ca = CertificateAuthority::generate(&DomainName::default()).unwrap();
        let principal: Principal = "nginx@node1@example.org".parse().unwrap();
        let issued = ca.issue_client(&principal, Validity::days(1)).unwrap();
        let der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap();
        (der.to_vec(), principal)
    })
}

/// Whatever the bytes, principal_of answers, and a principal it reads is a valid one.
fn principal_of_answers(der: &[u8]) -> Result<(), TestCaseError> {
    match principal_of(der) {
        Ok(principal) => {
            let text = principal.to_string();
            prop_assert_eq!(text.parse::<Principal>(), Ok(principal));
        }
        Err(PkiError::BadX509(_) | PkiError::NoPrincipal | PkiError::BadPrincipal(_)) => {}
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

/// A change to a real certificate's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bits: u8 },
    Cut { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1..=255u8).prop_map(|(at, bits)| Mutation::Flip { at, bits }),
        1 => any::<usize>().prop_map(|at| Mutation::Cut { at }),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), 1..16usize).prop_map(|(at, len)| Mutation::Remove { at, len }),
    ]
}

fn mutate(mut der: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let at = |at: usize| at % (der.len() + 1);
        match m {
            Mutation::Flip { at: i, bits } if !der.is_empty() => {
                let i = i % der.len();
                der[i] ^= bits;
            }
            Mutation::Flip { .. } => {}
            Mutation::Cut { at: i } => der.truncate(at(*i)),
            Mutation::Insert { at: i, bytes } => {
                let i = at(*i);
                der.splice(i..i, bytes.iter().copied());
            }
            Mutation::Remove { at: i, len } => {
                let i = at(*i);
                let end = (i + len).min(der.len());
                der.drain(i..end);
            }
        }
    }
    der
}

// ---- strategies ----

/// Text that comes near the rules' edges: their alphabet, separators, dots, NUL,
/// non-ASCII, and lengths around the limits.
fn near_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => "[a-z0-9]{1,8}",
        2 => prop::sample::select(vec!["/", "//", ".", "..", "-", "_", "@", "\0", "é", "A", " ", "\n", "aurae:"])
            .prop_map(str::to_owned),
        1 => (1..300usize).prop_map(|n| "x".repeat(n)),
        // Around NAME_MAX and a label's limit.
        2 => prop_oneof![253..258usize, 61..66usize].prop_map(|n| "n".repeat(n)),
        1 => any::<String>(),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => near_text(),
        1 => any::<String>(),
        // Around PATH_MAX and the domain limit.
        1 => (4090..4100usize, prop::bool::ANY)
            .prop_map(|(n, slash)| if slash { format!("/{}", "a/".repeat(n / 2)) } else { "/".repeat(n) }),
        1 => (60..70usize, 1..5usize).prop_map(|(n, k)| vec!["a".repeat(n); k].join(".")),
    ]
}

fn principal_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => ("[a-z0-9][a-z0-9_-]{0,6}", "[a-z0-9][a-z0-9_-]{0,6}", "[a-z0-9-]{1,8}(\\.[a-z0-9-]{1,8}){0,2}")
            .prop_map(|(e, p, d)| format!("{e}@{p}@{d}")),
        1 => near_text(),
    ]
}

fn regressions() -> Option<Box<dyn FailurePersistence>> {
    Some(Box::new(FileFailurePersistence::WithSource(
        "proptest-regressions",
    )))
}

/// The properties, once for the default run (`light`, few cases) and once at scale.
macro_rules! fuzz {
    ($($light:ident / $heavy:ident ($input:ident in $strategy:expr) $body:block)*) => {
        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 64,
                failure_persistence: regressions(),
                ..ProptestConfig::default()
            })]
            $(
                #[test]
                fn $light($input in $strategy) $body
            )*
        }
        proptest! {
            // PROPTEST_CASES (scripts/fuzz sets it) decides how many.
            #![proptest_config(ProptestConfig {
                failure_persistence: regressions(),
                ..ProptestConfig::default()
            })]
            $(
                #[test]
                #[ignore = "fuzzing at scale: run by scripts/fuzz"]
                fn $heavy($input in $strategy) $body
            )*
        }
    };
}

fuzz! {
    store_paths_obey_the_path_rule / fuzz_store_paths(text in any_text()) {
        store_path_obeys_the_rule(&text)?;
        path_errors_are_the_right_ones(&text)?;
        symlink_targets_obey_the_rule(&text)?;
    }
    names_obey_the_label_and_domain_rules / fuzz_names(text in any_text()) {
        labels_obey_the_rule(&text)?;
    }
    principals_read_back_as_written / fuzz_principals(text in principal_text()) {
        principals_read_back(&text)?;
    }
    principal_of_answers_any_bytes / fuzz_principal_of_bytes(der in prop::collection::vec(any::<u8>(), 0..512)) {
        principal_of_answers(&der)?;
    }
    principal_of_answers_a_mutated_certificate / fuzz_principal_of_mutated_certificates(
        mutations in prop::collection::vec(mutation(), 1..4)
    ) {
        let (der, _) = real_certificate();
        principal_of_answers(&mutate(der.clone(), &mutations))?;
    }
}

#[test]
fn the_unmutated_certificate_names_its_principal() {
    let (der, principal) = real_certificate();
    assert_eq!(&principal_of(der).unwrap(), principal);
}
