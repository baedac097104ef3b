//! The diff between what a document asks for and what the node has: a [`Plan`] of
//! changes and the policy that results. Pure: it reads a [`Current`] snapshot and never
//! changes the node, so it is what `--dry-run` shows and what apply then carries out.

use std::collections::{BTreeMap, BTreeSet};

use aurae_core::name::{Principal, VolumeName};
use aurae_proto::v0 as pb;
use aurae_store::VolumeInfo;

use super::cells::{CellChange, CurrentCell, cell_entries, plan_cells};
use super::document::{Desired, Invalid, Location, Snapshot};
use crate::authz::policy::{Policy, PrincipalPattern, Role, RoleName};
use crate::authz::state::Touched;

/// The node's state a plan is made against.
#[derive(Debug, Clone)]
pub struct Current {
    /// Each optional capability and whether it is on.
    pub capabilities: BTreeMap<&'static str, bool>,
    /// The volumes (not the default namespace).
    pub volumes: Vec<VolumeInfo>,
    /// The policy in force.
    pub policy: std::sync::Arc<Policy>,
    /// The running cells, parents first.
    pub cells: Vec<CurrentCell>,
    /// The trusted remote peers.
    pub peers: std::sync::Arc<BTreeMap<libp2p::PeerId, Principal>>,
    /// This node's peer name and domain: a peer may not be trusted as its admin.
    pub node: (aurae_core::name::PeerName, aurae_core::name::DomainName),
}

/// Whether apply also removes what the document does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// Create and update only.
    Keep,
    /// Also remove unnamed roles, grants and volumes (with their files).
    Remove,
}

/// One change.
#[derive(Debug, Clone)]
pub enum Change {
    /// Switch an optional capability on or off.
    Capability {
        /// Its name.
        name: &'static str,
        /// On.
        enable: bool,
    },
    /// Create a volume.
    CreateVolume {
        /// Its name.
        name: VolumeName,
        /// Its quota (0: none).
        quota: u64,
    },
    /// Change a volume's quota.
    SetQuota {
        /// Its name.
        name: VolumeName,
        /// The quota it has.
        from: u64,
        /// The quota it gets.
        to: u64,
    },
    /// Delete a volume and its files (only with [`Prune::Remove`]).
    DeleteVolume {
        /// Its name.
        name: String,
        /// Its files.
        files: u64,
        /// Its bytes.
        used: u64,
    },
    /// Create a role, or replace what it allows.
    PutRole {
        /// The role as it will be.
        role: Role,
        /// Whether it exists now.
        existed: bool,
    },
    /// Delete a role (only with [`Prune::Remove`]).
    DeleteRole {
        /// Its name.
        name: RoleName,
    },
    /// Allocate, replace or free a cell; start, replace or stop an executable.
    Cell(CellChange),
    /// Set the roles a pattern holds.
    SetGrants {
        /// The pattern.
        pattern: PrincipalPattern,
        /// The roles it will hold.
        roles: BTreeSet<RoleName>,
        /// The roles it holds now.
        was: BTreeSet<RoleName>,
    },
    /// Take every role from a pattern (only with [`Prune::Remove`]).
    RemoveGrants {
        /// The pattern.
        pattern: PrincipalPattern,
        /// The roles it holds now.
        was: BTreeSet<RoleName>,
    },
    /// Trust a remote peer as a principal, or change the principal it is trusted as.
    Trust {
        /// The peer.
        peer: libp2p::PeerId,
        /// Its principal afterwards.
        principal: Principal,
        /// Its principal now, if trusted.
        was: Option<Principal>,
    },
    /// Take a peer off the trust list (only with [`Prune::Remove`]).
    Untrust {
        /// The peer.
        peer: libp2p::PeerId,
        /// Its principal now.
        was: Principal,
    },
}

fn quota_text(bytes: u64) -> String {
    if bytes == 0 {
        "none".into()
    } else {
        aurae_core::size::exact(bytes)
    }
}

fn names<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let names: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

impl Change {
    /// The change as the API and the CLI show it.
    pub fn describe(&self) -> pb::PlannedChange {
        let (action, kind, name, detail) = match self {
            Self::Capability { name, enable } => (
                if *enable { "enable" } else { "disable" },
                "capability",
                (*name).to_owned(),
                String::new(),
            ),
            Self::CreateVolume { name, quota } => (
                "create",
                "volume",
                name.to_string(),
                format!("quota {}", quota_text(*quota)),
            ),
            Self::SetQuota { name, from, to } => (
                "update",
                "volume",
                name.to_string(),
                format!("quota {} -> {}", quota_text(*from), quota_text(*to)),
            ),
            Self::DeleteVolume { name, files, used } => (
                "delete",
                "volume",
                name.clone(),
                format!("with its {files} files, {used} bytes"),
            ),
            Self::PutRole { role, existed } => (
                if *existed { "update" } else { "create" },
                "role",
                role.name.to_string(),
                format!("allow {}", names(&role.grants)),
            ),
            Self::DeleteRole { name } => ("delete", "role", name.to_string(), String::new()),
            Self::Cell(change) => (
                change.action,
                change.kind,
                change.name.clone(),
                change.detail.clone(),
            ),
            Self::SetGrants {
                pattern,
                roles,
                was,
            } => (
                if was.is_empty() { "create" } else { "update" },
                "grant",
                pattern.to_string(),
                if was.is_empty() {
                    format!("roles {}", names(roles))
                } else {
                    format!("roles {} -> {}", names(was), names(roles))
                },
            ),
            Self::RemoveGrants { pattern, was } => (
                "delete",
                "grant",
                pattern.to_string(),
                format!("roles {}", names(was)),
            ),
            Self::Trust {
                peer,
                principal,
                was,
            } => (
                if was.is_some() { "update" } else { "create" },
                "peer",
                peer.to_string(),
                match was {
                    Some(was) => format!("trusted as {was} -> {principal}"),
                    None => format!("trusted as {principal}"),
                },
            ),
            Self::Untrust { peer, was } => (
                "delete",
                "peer",
                peer.to_string(),
                format!("trusted as {was}"),
            ),
        };
        pb::PlannedChange {
            action: action.into(),
            kind: kind.into(),
            name,
            detail,
        }
    }
}

/// A plan: the changes in the order they apply, and the state they lead to.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The changes; empty when the node matches the document.
    pub changes: Vec<Change>,
    /// The capability set afterwards, when it changes.
    pub capabilities: Option<BTreeMap<&'static str, bool>>,
    /// The policy afterwards and the records it rewrites, when it changes.
    pub policy: Option<(Policy, Vec<Touched>)>,
    /// The trust list afterwards, when it changes.
    pub peers: Option<BTreeMap<libp2p::PeerId, Principal>>,
}

/// A document that cannot apply to this node as it is (a quota below what a volume
/// uses, a grant of a role that exists nowhere): where, and why.
pub type Refusal = Invalid;

fn refusal(at: &Location, message: String) -> Refusal {
    Invalid {
        at: at.clone(),
        message,
    }
}

/// The plan that makes `current` what `desired` asks for.
pub fn plan(current: &Current, desired: &Desired, prune: Prune) -> Result<Plan, Refusal> {
    let mut changes = Vec::new();
    let capabilities = plan_capabilities(current, desired, &mut changes);
    plan_volumes(current, desired, prune, &mut changes)?;
    let policy = plan_policy(current, desired, prune, &mut changes)?;
    let runtime_on = capabilities
        .as_ref()
        .unwrap_or(&current.capabilities)
        .get("runtime")
        .copied()
        .unwrap_or(true);
    if let (Some(cell), false) = (desired.cells.first(), runtime_on) {
        return Err(refusal(
            &cell.at,
            "cells need the runtime capability; enable it with `runtime = true` under [capabilities]".into(),
        ));
    }
    changes.extend(
        plan_cells(&current.cells, &desired.cells, prune == Prune::Remove)
            .into_iter()
            .map(Change::Cell),
    );
    let peers = plan_peers(current, desired, prune, &mut changes)?;
    Ok(Plan {
        changes,
        capabilities,
        policy,
        peers,
    })
}

fn plan_peers(
    current: &Current,
    desired: &Desired,
    prune: Prune,
    changes: &mut Vec<Change>,
) -> Result<Option<BTreeMap<libp2p::PeerId, Principal>>, Refusal> {
    let mut next = (*current.peers).clone();
    let (name, domain) = &current.node;
    for (at, peer, principal) in &desired.peers {
        if principal.is_admin_of(name, domain) {
            return Err(refusal(
                at,
                format!(
                    "{principal} is this node's admin; give the peer a principal of its own (e.g. node@<its-name>@{domain})"
                ),
            ));
        }
        let was = next.insert(*peer, principal.clone());
        if was.as_ref() != Some(principal) {
            changes.push(Change::Trust {
                peer: *peer,
                principal: principal.clone(),
                was,
            });
        }
    }
    if prune == Prune::Remove {
        let named: BTreeSet<&libp2p::PeerId> = desired.peers.iter().map(|(_, p, _)| p).collect();
        let unnamed: Vec<libp2p::PeerId> = next
            .keys()
            .filter(|p| !named.contains(p))
            .copied()
            .collect();
        for peer in unnamed {
            if let Some(was) = next.remove(&peer) {
                changes.push(Change::Untrust { peer, was });
            }
        }
    }
    Ok((next != *current.peers).then_some(next))
}

fn plan_capabilities(
    current: &Current,
    desired: &Desired,
    changes: &mut Vec<Change>,
) -> Option<BTreeMap<&'static str, bool>> {
    let mut next = current.capabilities.clone();
    for (_, capability, on) in &desired.capabilities {
        if next.insert(capability.name, *on) != Some(*on) {
            changes.push(Change::Capability {
                name: capability.name,
                enable: *on,
            });
        }
    }
    (next != current.capabilities).then_some(next)
}

fn plan_volumes(
    current: &Current,
    desired: &Desired,
    prune: Prune,
    changes: &mut Vec<Change>,
) -> Result<(), Refusal> {
    let existing: BTreeMap<&str, &VolumeInfo> = current
        .volumes
        .iter()
        .map(|v| (v.name.as_str(), v))
        .collect();
    for volume in &desired.volumes {
        match existing.get(volume.name.as_str()) {
            None => changes.push(Change::CreateVolume {
                name: volume.name.clone(),
                quota: volume.quota,
            }),
            Some(info) if info.quota_bytes == volume.quota => {}
            Some(info) => {
                if volume.quota != 0 && info.used_bytes > volume.quota {
                    return Err(refusal(
                        &volume.at,
                        format!(
                            "volume '{}' already uses {} bytes, more than this quota of {} bytes; remove files first or choose a larger quota",
                            volume.name, info.used_bytes, volume.quota
                        ),
                    ));
                }
                changes.push(Change::SetQuota {
                    name: volume.name.clone(),
                    from: info.quota_bytes,
                    to: volume.quota,
                });
            }
        }
    }
    if prune == Prune::Remove {
        let named: BTreeSet<&str> = desired.volumes.iter().map(|v| v.name.as_str()).collect();
        for info in current
            .volumes
            .iter()
            .filter(|v| !named.contains(v.name.as_str()))
        {
            changes.push(Change::DeleteVolume {
                name: info.name.clone(),
                files: info.files,
                used: info.used_bytes,
            });
        }
    }
    Ok(())
}

fn same_grants(a: &Role, b: &Role) -> bool {
    let text =
        |r: &Role| -> BTreeSet<String> { r.grants.iter().map(ToString::to_string).collect() };
    text(a) == text(b)
}

fn plan_policy(
    current: &Current,
    desired: &Desired,
    prune: Prune,
    changes: &mut Vec<Change>,
) -> Result<Option<(Policy, Vec<Touched>)>, Refusal> {
    let policy = &current.policy;
    let mut touched = Vec::new();
    // The roles and bindings stored afterwards, built-in roles aside.
    let mut roles: BTreeMap<RoleName, Role> = policy
        .roles()
        .filter(|r| !r.builtin)
        .map(|r| (r.name.clone(), r.clone()))
        .collect();
    let mut bindings = policy.bindings().clone();

    for (at, role) in &desired.roles {
        match policy.role(role.name.as_str()) {
            Some(existing) if existing.builtin => {
                return Err(refusal(
                    at,
                    format!(
                        "'{}' is a built-in role and cannot be changed; choose another name",
                        role.name
                    ),
                ));
            }
            Some(existing) if same_grants(existing, role) => {}
            existing => {
                changes.push(Change::PutRole {
                    role: role.clone(),
                    existed: existing.is_some(),
                });
                touched.push(Touched::Role(role.name.clone()));
                roles.insert(role.name.clone(), role.clone());
            }
        }
    }
    if prune == Prune::Remove {
        let named: BTreeSet<&RoleName> = desired.roles.iter().map(|(_, r)| &r.name).collect();
        let unnamed: Vec<RoleName> = roles
            .keys()
            .filter(|name| !named.contains(name))
            .cloned()
            .collect();
        for name in unnamed {
            roles.remove(&name);
            changes.push(Change::DeleteRole { name: name.clone() });
            touched.push(Touched::Role(name));
        }
    }

    for grants in &desired.grants {
        for (at, role) in &grants.roles {
            let builtin = policy.role(role.as_str()).is_some_and(|r| r.builtin);
            if !builtin && !roles.contains_key(role) {
                return Err(refusal(
                    at,
                    format!(
                        "no role named '{role}'; define it under [roles.{role}] or use a built-in one (admin, viewer)"
                    ),
                ));
            }
        }
        let wanted = grants.role_set();
        let was = bindings.get(&grants.pattern).cloned().unwrap_or_default();
        if wanted == was {
            continue;
        }
        touched.push(Touched::Binding(grants.pattern.clone()));
        if wanted.is_empty() {
            bindings.remove(&grants.pattern);
            changes.push(Change::RemoveGrants {
                pattern: grants.pattern.clone(),
                was,
            });
        } else {
            bindings.insert(grants.pattern.clone(), wanted.clone());
            changes.push(Change::SetGrants {
                pattern: grants.pattern.clone(),
                roles: wanted,
                was,
            });
        }
    }
    if prune == Prune::Remove {
        let named: BTreeSet<&PrincipalPattern> =
            desired.grants.iter().map(|g| &g.pattern).collect();
        let unnamed: Vec<PrincipalPattern> = bindings
            .keys()
            .filter(|p| !named.contains(p))
            .cloned()
            .collect();
        for pattern in unnamed {
            let was = bindings.remove(&pattern).unwrap_or_default();
            changes.push(Change::RemoveGrants {
                pattern: pattern.clone(),
                was,
            });
            touched.push(Touched::Binding(pattern));
        }
    }
    if touched.is_empty() {
        return Ok(None);
    }
    let mut next = Policy::builtin(policy.catalog().to_vec());
    for role in roles.into_values() {
        next.load_role(role);
    }
    for (pattern, held) in bindings {
        next.load_binding(pattern, held);
    }
    Ok(Some((next.loaded(), touched)))
}

impl Current {
    /// The node's state in the document's terms, for `aurae config export`.
    pub fn snapshot(&self) -> Snapshot {
        let (cells, left_out) = cell_entries(&self.cells);
        Snapshot {
            cells,
            left_out,
            peers: self
                .peers
                .iter()
                .map(|(peer, principal)| (peer.to_string(), principal.to_string()))
                .collect(),
            capabilities: self
                .capabilities
                .iter()
                .map(|(name, on)| ((*name).to_owned(), *on))
                .collect(),
            volumes: self
                .volumes
                .iter()
                .map(|v| (v.name.clone(), v.quota_bytes))
                .collect(),
            roles: self
                .policy
                .roles()
                .filter(|r| !r.builtin)
                .map(|r| {
                    (
                        r.name.to_string(),
                        r.grants.iter().map(ToString::to_string).collect(),
                    )
                })
                .collect(),
            grants: self
                .policy
                .bindings()
                .iter()
                .map(|(p, roles)| {
                    (
                        p.to_string(),
                        roles.iter().map(ToString::to_string).collect(),
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_config::document::{Source, parse};

    fn current() -> Current {
        Current {
            capabilities: [("runtime", true)].into(),
            volumes: vec![VolumeInfo {
                name: "data".into(),
                quota_bytes: 1 << 30,
                used_bytes: 4096,
                root_inode: 2,
                files: 3,
            }],
            policy: std::sync::Arc::new(Policy::builtin(crate::authz::catalog())),
            cells: Vec::new(),
            peers: std::sync::Arc::default(),
            node: (
                aurae_core::name::PeerName::from_hostname("node1"),
                aurae_core::name::DomainName::default(),
            ),
        }
    }

    fn desired(text: &str) -> Desired {
        let source = Source {
            file: "node.toml".into(),
            text: text.into(),
        };
        parse(&source, crate::CAPABILITIES, &crate::authz::catalog()).expect("valid")
    }

    fn actions(plan: &Plan) -> Vec<String> {
        plan.changes
            .iter()
            .map(|c| {
                let c = c.describe();
                format!("{} {} {}", c.action, c.kind, c.name)
            })
            .collect()
    }

    const DOCUMENT: &str = r#"
[capabilities]
runtime = false
[volumes.data]
quota = "2G"
[volumes.logs]
[roles.reader]
allow = ["storage.read:/data/"]
[grants]
"alice@n1@local" = ["reader"]
"#;

    #[test]
    fn a_plan_lists_every_difference_in_order() {
        let plan = plan(&current(), &desired(DOCUMENT), Prune::Keep).expect("plans");
        assert_eq!(
            actions(&plan),
            [
                "disable capability runtime",
                "update volume data",
                "create volume logs",
                "create role reader",
                "create grant alice@n1@local"
            ]
        );
        assert!(plan.capabilities.is_some());
        let (policy, touched) = plan.policy.expect("policy changes");
        assert_eq!(touched.len(), 2);
        assert!(policy.role("reader").is_some());
    }

    #[test]
    fn a_matching_node_gives_an_empty_plan() {
        let mut now = current();
        now.capabilities.insert("runtime", false);
        now.volumes[0].quota_bytes = 2 << 30;
        now.volumes.push(VolumeInfo {
            name: "logs".into(),
            quota_bytes: 0,
            used_bytes: 0,
            root_inode: 3,
            files: 1,
        });
        let first = plan(&now, &desired(DOCUMENT), Prune::Keep).expect("plans");
        now.policy = std::sync::Arc::new(first.policy.expect("policy").0);
        let again = plan(&now, &desired(DOCUMENT), Prune::Keep).expect("plans");
        assert!(again.changes.is_empty(), "{:?}", actions(&again));
        assert!(again.capabilities.is_none() && again.policy.is_none());
    }

    #[test]
    fn a_quota_below_use_and_an_unknown_role_are_refused_where_they_are_written() {
        let err = plan(
            &current(),
            &desired("[volumes.data]\nquota = 100\n"),
            Prune::Keep,
        )
        .unwrap_err();
        assert_eq!(err.at.line, 2);
        let err = plan(
            &current(),
            &desired("[grants]\n\"a@b@c\" = [\"ghost\"]\n"),
            Prune::Keep,
        )
        .unwrap_err();
        assert_eq!(err.at.line, 2);
        assert!(err.message.contains("ghost"), "{err}");
        let err = plan(
            &current(),
            &desired("[roles.viewer]\nallow = [\"system.read\"]\n"),
            Prune::Keep,
        )
        .unwrap_err();
        assert!(err.message.contains("built-in"), "{err}");
    }

    #[test]
    fn pruning_removes_what_the_document_does_not_name() {
        let plan = plan(&current(), &desired(""), Prune::Remove).expect("plans");
        assert_eq!(actions(&plan), ["delete volume data"]);
        let kept = super::plan(&current(), &desired(""), Prune::Keep).expect("plans");
        assert!(kept.changes.is_empty());
    }
}
