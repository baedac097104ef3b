//! The node config document: the TOML of `/etc/aurae/node.toml` or of a file given to
//! `aurae apply`, parsed with every value's place in the text so that an error names the
//! file, line and field, and validated into [`Desired`] before anything is compared or
//! changed. [`render`] writes the same format back (`aurae config export`).
//!
//! It never touches the node: reading the node's state and changing it belong to
//! [`super::plan`] and [`super::apply`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use aurae_core::name::VolumeName;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::cells::{CellEntry, DesiredCell, parse_cells};
use crate::authz::policy::{PrincipalPattern, Role, RoleName, parse_grant, refuse_cell_role};
use crate::server::permissions::Permission;
use crate::server::registry::Capability;

/// The document as written: sections of named tables, each value with its place.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Optional capabilities switched on (`true`) or off (`false`); unnamed ones are left
    /// as they are.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capabilities: BTreeMap<Spanned<String>, Spanned<bool>>,
    /// Volumes by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<Spanned<String>, VolumeEntry>,
    /// Roles by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<Spanned<String>, RoleEntry>,
    /// The roles each principal pattern holds: the list replaces what it held.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grants: BTreeMap<Spanned<String>, Spanned<Vec<Spanned<String>>>>,
    /// Cells by name (`parent/child` for a nested one), each with its executables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cells: BTreeMap<Spanned<String>, CellEntry>,
    /// Remote peers trusted to call this node's API: PeerId -> the principal their calls
    /// carry (the `peer` capability's trust list).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub peers: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// One volume.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeEntry {
    /// Its quota: bytes, or a size such as `"512M"`; none when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Spanned<Size>>,
}

/// A size as written: a number of bytes or a text with a unit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Size {
    /// Bytes.
    Bytes(u64),
    /// `1.5G`, `512M`, `none`.
    Text(String),
}

/// One role.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleEntry {
    /// What it allows, each `permission[:scope]` as `aurae role create --allow` takes it.
    pub allow: Spanned<Vec<Spanned<String>>>,
}

/// The document's text and the name it is known by, for error messages.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file name as the user gave it.
    pub file: String,
    /// Its text.
    pub text: String,
}

/// Where something is in a document: `node.toml:12:9 (volumes.data.quota)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// The dotted field path.
    pub field: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        Ok(())
    }
}

impl Source {
    /// The location of byte range `span`, naming `field`.
    pub fn at(&self, span: Range<usize>, field: impl Into<String>) -> Location {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit_once('\n')
            .map_or(before, |(_, tail)| tail)
            .chars()
            .count()
            + 1;
        Location {
            file: self.file.clone(),
            line,
            column,
            field: field.into(),
        }
    }
}

/// A document that is not valid: where, and what is wrong with how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct Invalid {
    /// Where.
    pub at: Location,
    /// What is wrong, and the fix.
    pub message: String,
}

/// What a valid document asks for, each part with its place for later refusals.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    /// Optional capabilities and whether each is on.
    pub capabilities: Vec<(Location, &'static Capability, bool)>,
    /// Volumes with their quota (0: none).
    pub volumes: Vec<DesiredVolume>,
    /// Roles.
    pub roles: Vec<(Location, Role)>,
    /// Each pattern's roles.
    pub grants: Vec<DesiredGrants>,
    /// Cells and their executables, parents first.
    pub cells: Vec<DesiredCell>,
    /// Trusted remote peers and their principals.
    pub peers: Vec<(Location, libp2p::PeerId, aurae_core::name::Principal)>,
}

/// A volume as the document wants it.
#[derive(Debug, Clone)]
pub struct DesiredVolume {
    /// Where its quota (or its table) is.
    pub at: Location,
    /// Its name.
    pub name: VolumeName,
    /// Its quota in bytes; 0 is none.
    pub quota: u64,
}

/// The roles a pattern should hold, with the place of each role name.
#[derive(Debug, Clone)]
pub struct DesiredGrants {
    /// Where the pattern is.
    pub at: Location,
    /// The pattern.
    pub pattern: PrincipalPattern,
    /// The roles, each with where it is named.
    pub roles: Vec<(Location, RoleName)>,
}

impl DesiredGrants {
    /// The role names alone.
    pub fn role_set(&self) -> BTreeSet<RoleName> {
        self.roles.iter().map(|(_, r)| r.clone()).collect()
    }
}

/// Parses and validates `source` against the capabilities and permissions this build has.
pub fn parse(
    source: &Source,
    known: &[&'static Capability],
    catalog: &[&'static Permission],
) -> Result<Desired, Invalid> {
    let document: Document = toml::from_str(&source.text).map_err(|e| Invalid {
        at: source.at(e.span().unwrap_or(0..0), ""),
        message: first_line(e.message()),
    })?;
    let mut desired = Desired::default();
    for (name, on) in &document.capabilities {
        let field = format!("capabilities.{}", name.get_ref());
        let invalid = |message: String| Invalid {
            at: source.at(name.span(), field.clone()),
            message,
        };
        let capability = known
            .iter()
            .copied()
            .find(|c| c.name == name.get_ref())
            .ok_or_else(|| {
                invalid(format!(
                    "no capability named '{}'; this node has {}",
                    name.get_ref(),
                    names_of(known.iter().filter(|c| !c.is_core()).map(|c| c.name))
                ))
            })?;
        if capability.is_core() && !*on.get_ref() {
            return Err(invalid(format!(
                "'{}' is a core capability and cannot be disabled; remove the line",
                capability.name
            )));
        }
        if !capability.is_core() {
            desired.capabilities.push((
                source.at(on.span(), field.clone()),
                capability,
                *on.get_ref(),
            ));
        }
    }
    for (name, entry) in &document.volumes {
        let field = format!("volumes.{}", name.get_ref());
        let volume: VolumeName = name.get_ref().parse().map_err(|e| Invalid {
            at: source.at(name.span(), field.clone()),
            message: format!("{e}"),
        })?;
        if volume.as_str() == "default" {
            return Err(Invalid {
                at: source.at(name.span(), field),
                message:
                    "'default' is the store's own namespace, not a volume; choose another name"
                        .into(),
            });
        }
        let (at, quota) = match &entry.quota {
            None => (source.at(name.span(), field), 0),
            Some(quota) => {
                let at = source.at(quota.span(), format!("{field}.quota"));
                let bytes = size_of(quota.get_ref()).map_err(|message| Invalid {
                    at: at.clone(),
                    message,
                })?;
                (at, bytes)
            }
        };
        desired.volumes.push(DesiredVolume {
            at,
            name: volume,
            quota,
        });
    }
    for (name, entry) in &document.roles {
        let field = format!("roles.{}", name.get_ref());
        let at_name = source.at(name.span(), field.clone());
        let role_name: RoleName = name.get_ref().parse().map_err(|e| Invalid {
            at: at_name.clone(),
            message: format!("{e}"),
        })?;
        refuse_cell_role(&role_name).map_err(|e| Invalid {
            at: at_name.clone(),
            message: e.to_string(),
        })?;
        if entry.allow.get_ref().is_empty() {
            return Err(Invalid {
                at: source.at(entry.allow.span(), format!("{field}.allow")),
                message:
                    "a role allows at least one permission, e.g. allow = [\"storage.read:/data/\"]"
                        .into(),
            });
        }
        let mut grants = Vec::new();
        for text in entry.allow.get_ref() {
            let grant = parse_grant(catalog, text.get_ref()).map_err(|e| Invalid {
                at: source.at(text.span(), format!("{field}.allow")),
                message: e.to_string(),
            })?;
            grants.push(grant);
        }
        desired.roles.push((
            at_name,
            Role {
                name: role_name,
                grants,
                builtin: false,
            },
        ));
    }
    for (pattern, roles) in &document.grants {
        let field = format!("grants.\"{}\"", pattern.get_ref());
        let at = source.at(pattern.span(), field.clone());
        let parsed: PrincipalPattern = pattern.get_ref().parse().map_err(|e| Invalid {
            at: at.clone(),
            message: format!("{e}"),
        })?;
        let mut named = Vec::new();
        for role in roles.get_ref() {
            let role_at = source.at(role.span(), field.clone());
            let role_name: RoleName = role.get_ref().parse().map_err(|e| Invalid {
                at: role_at.clone(),
                message: format!("{e}"),
            })?;
            refuse_cell_role(&role_name).map_err(|e| Invalid {
                at: role_at.clone(),
                message: e.to_string(),
            })?;
            named.push((role_at, role_name));
        }
        desired.grants.push(DesiredGrants {
            at,
            pattern: parsed,
            roles: named,
        });
    }
    desired.cells = parse_cells(source, &document.cells)?;
    for (peer, principal) in &document.peers {
        let field = format!("peers.\"{}\"", peer.get_ref());
        let id: libp2p::PeerId = peer.get_ref().parse().map_err(|e| Invalid {
            at: source.at(peer.span(), field.clone()),
            message: format!(
                "'{}' is not a PeerId ({e}); `aurae peer id` on that node prints it",
                peer.get_ref()
            ),
        })?;
        let named: aurae_core::name::Principal =
            principal.get_ref().parse().map_err(|e| Invalid {
                at: source.at(principal.span(), field.clone()),
                message: format!("{e}"),
            })?;
        desired
            .peers
            .push((source.at(principal.span(), field), id, named));
    }
    Ok(desired)
}

/// The bytes of a written size (`"none"` and 0 are no quota).
pub(crate) fn size_of(size: &Size) -> Result<u64, String> {
    match size {
        Size::Bytes(bytes) => Ok(*bytes),
        Size::Text(text) if text.trim().eq_ignore_ascii_case("none") => Ok(0),
        Size::Text(text) => aurae_core::size::parse_size(text),
    }
}

fn names_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "no optional capability".into()
    } else {
        names.join(", ")
    }
}

/// The first line of a TOML error (the rest repeats the line it points at).
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

/// What [`render`] writes: the node's state in the document's terms.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every optional capability and whether it is on.
    pub capabilities: BTreeMap<String, bool>,
    /// Volumes and their quotas (0: none).
    pub volumes: BTreeMap<String, u64>,
    /// Roles and what each allows, as `permission[:scope]`.
    pub roles: BTreeMap<String, Vec<String>>,
    /// Patterns and their roles.
    pub grants: BTreeMap<String, Vec<String>>,
    /// Cells with their executables.
    pub cells: BTreeMap<String, CellEntry>,
    /// Cells the document cannot describe (made from an OCI bundle), left out.
    pub left_out: Vec<String>,
    /// Trusted peers and their principals.
    pub peers: BTreeMap<String, String>,
}

/// `snapshot` as a document that [`parse`] reads back to the same state.
pub fn render(snapshot: Snapshot) -> Result<String, toml::ser::Error> {
    let unplaced = |s: &str| Spanned::new(0..0, s.to_owned());
    let list = |items: &[String]| {
        Spanned::new(
            0..0,
            items
                .iter()
                .map(|i| unplaced(i))
                .collect::<Vec<Spanned<String>>>(),
        )
    };
    let document = Document {
        capabilities: snapshot
            .capabilities
            .iter()
            .map(|(name, on)| (unplaced(name), Spanned::new(0..0, *on)))
            .collect(),
        volumes: snapshot
            .volumes
            .iter()
            .map(|(name, quota)| {
                let quota = (*quota != 0)
                    .then(|| Spanned::new(0..0, Size::Text(aurae_core::size::exact(*quota))));
                (unplaced(name), VolumeEntry { quota })
            })
            .collect(),
        roles: snapshot
            .roles
            .iter()
            .map(|(name, allow)| (unplaced(name), RoleEntry { allow: list(allow) }))
            .collect(),
        grants: snapshot
            .grants
            .iter()
            .map(|(pattern, roles)| (unplaced(pattern), list(roles)))
            .collect(),
        cells: snapshot
            .cells
            .into_iter()
            .map(|(name, cell)| (Spanned::new(0..0, name), cell))
            .collect(),
        peers: snapshot
            .peers
            .iter()
            .map(|(peer, principal)| (unplaced(peer), unplaced(principal)))
            .collect(),
    };
    let body = toml::to_string(&document)?;
    let mut header =
        String::from("# The node's state as a node config: `aurae apply -f` takes it back.\n");
    for cell in &snapshot.left_out {
        header.push_str(&format!(
            "# Cell '{cell}' is left out: it uses mounts, masks or process settings this format cannot say (an OCI bundle's).\n"
        ));
    }
    Ok(format!("{header}\n{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source {
            file: "node.toml".into(),
            text: text.into(),
        }
    }

    fn catalog() -> Vec<&'static Permission> {
        crate::authz::catalog()
    }

    fn parsed(text: &str) -> Result<Desired, Invalid> {
        parse(&source(text), crate::CAPABILITIES, &catalog())
    }

    #[test]
    fn a_full_document_parses_into_what_it_asks_for() {
        let desired = parsed(
            r#"
[capabilities]
runtime = false

[volumes.data]
quota = "1.5G"

[volumes.scratch]

[roles.reader]
allow = ["storage.read:/data/", "system.read"]

[grants]
"alice@node1@local" = ["reader", "viewer"]
"*@node2@local" = ["viewer"]
"#,
        )
        .expect("valid");
        assert_eq!(desired.capabilities.len(), 1);
        assert!(!desired.capabilities[0].2);
        let quotas: Vec<(&str, u64)> = desired
            .volumes
            .iter()
            .map(|v| (v.name.as_str(), v.quota))
            .collect();
        assert_eq!(quotas, [("data", 3 << 29), ("scratch", 0)]);
        assert_eq!(desired.roles[0].1.grants.len(), 2);
        assert_eq!(desired.grants.len(), 2);
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let err = parsed("[volumes.data]\nquota = \"12 parsecs\"\n").unwrap_err();
        assert_eq!(err.at.line, 2);
        assert_eq!(err.at.field, "volumes.data.quota");
        assert!(
            err.to_string()
                .starts_with("node.toml:2:9: volumes.data.quota: "),
            "{err}"
        );

        let err = parsed("\n\n[roles.r]\nallow = [\"storage.raed\"]\n").unwrap_err();
        assert_eq!((err.at.line, err.at.field.as_str()), (4, "roles.r.allow"));
        assert!(err.message.contains("storage.raed"), "{err}");

        let err = parsed("[volumes.data]\nqouta = 5\n").unwrap_err();
        assert_eq!(err.at.line, 2, "{err}");
        assert!(err.message.contains("qouta"), "{err}");

        let err = parsed("[capabilities]\nwarp = true\n").unwrap_err();
        assert!(err.message.contains("runtime"), "{err}");

        let err = parsed("[grants]\n\"alice\" = [\"viewer\"]\n").unwrap_err();
        assert_eq!(err.at.line, 2, "{err}");

        let err = parsed("[grants]\n\"alice@n@d\" = [\"cell\"]\n").unwrap_err();
        assert!(err.message.contains("cell"), "{err}");

        let err = parsed("volumes = 3").unwrap_err();
        assert_eq!(err.at.line, 1, "{err}");

        let err = parsed("[volumes.\"../x\"]\n").unwrap_err();
        assert_eq!(err.at.field, "volumes.../x", "{err}");
    }

    #[test]
    fn a_rendered_snapshot_parses_back_to_the_same_state() {
        let snapshot = Snapshot {
            capabilities: [("runtime".to_owned(), true)].into(),
            volumes: [("data".to_owned(), 512 << 20), ("logs".to_owned(), 0)].into(),
            roles: [(
                "reader".to_owned(),
                vec!["storage.read:/data/".to_owned(), "system.read".to_owned()],
            )]
            .into(),
            grants: [("*@node2@local".to_owned(), vec!["reader".to_owned()])].into(),
            ..Snapshot::default()
        };
        let expected_reader = snapshot.roles["reader"].clone();
        let text = render(snapshot).expect("renders");
        let desired = parsed(&text).expect(&text);
        assert_eq!(desired.volumes[0].quota, 512 << 20);
        assert_eq!(desired.volumes[1].quota, 0);
        assert_eq!(
            desired.roles[0]
                .1
                .grants
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            expected_reader
        );
        assert_eq!(desired.grants[0].pattern.to_string(), "*@node2@local");
    }
}
