//! Carrying out a plan on the live node, all or nothing: every record a plan touches (the
//! capability set, volumes, roles and grants) is written in one durable store
//! transaction, and only once it committed do the capability registry and the policy
//! serve the new state. Applies are serialized with each other and with policy changes,
//! so a plan is carried out against the state it was made from.

use std::sync::Arc;

use aurae_core::name::VolumeName;
use aurae_store::{Durability, StoreError, volumes};

use super::cells;
use super::document::{self, Desired, Invalid, Source};
use super::plan::{Change, Current, Plan, Prune, plan};
use crate::authz::policy::Policy;
use crate::authz::state::{PolicyHold, StoreOp};
use crate::context::Daemon;
use crate::peer::trust::TrustHold;
use crate::storage::error::StorageError;

/// Why a document was not applied; in every case nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The document is not valid: file, line, field and the fix.
    #[error("{0}")]
    Invalid(Invalid),
    /// The document is valid but cannot apply to this node as it is.
    #[error("{0}")]
    Refused(Invalid),
    /// The node's database is not open or refused the transaction.
    #[error("cannot apply the node config: {0}; nothing was changed")]
    Store(#[from] StorageError),
    /// A cell or executable could not be changed; what was done before it was undone.
    #[error("cannot apply the node config: {0}; what was done before it was undone")]
    Cells(#[from] cells::StepFailed),
    /// Something of the node that a plan needs cannot be read or encoded.
    #[error("cannot apply the node config: {0}; nothing was changed")]
    Internal(String),
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        Self::Store(StorageError::from(e))
    }
}

/// What an apply did, or would do.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The changes in order.
    pub changes: Vec<Change>,
    /// Whether they were carried out.
    pub applied: bool,
    /// The revision they committed as (0: nothing written).
    pub revision: u64,
}

/// Whether to carry the plan out or only show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Show the plan only.
    DryRun,
    /// Carry it out.
    Apply,
}

/// Serializes applies with each other.
static APPLYING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Parses `source` and plans it against `daemon`, then carries the plan out unless
/// `run` is a dry run.
pub async fn apply(
    daemon: &Daemon,
    source: &Source,
    prune: Prune,
    run: Run,
) -> Result<Outcome, ApplyError> {
    let desired = parse(daemon, source)?;
    let _serialized = APPLYING.lock().await;
    let hold = daemon.policy.hold().await;
    let trust = daemon.peer.trust.hold().await;
    let current = current(daemon, hold.current()).await?;
    let plan = plan(&current, &desired, prune).map_err(ApplyError::Refused)?;
    if run == Run::DryRun || plan.changes.is_empty() {
        return Ok(Outcome {
            changes: plan.changes,
            applied: false,
            revision: 0,
        });
    }
    let revision = carry_out(daemon, hold, trust, &plan).await?;
    for change in &plan.changes {
        if let Change::Capability { name, .. } = change
            && let Ok(capability) = daemon.capabilities.find(name)
        {
            daemon.report_health(capability).await;
        }
    }
    tracing::info!(
        file = %source.file,
        changes = plan.changes.len(),
        revision,
        "node config applied"
    );
    Ok(Outcome {
        changes: plan.changes,
        applied: true,
        revision,
    })
}

/// The node's state as a document: a read, so it holds nothing else off.
pub async fn export(daemon: &Daemon) -> Result<String, ApplyError> {
    let current = current(daemon, daemon.policy.current()).await?;
    document::render(current.snapshot()).map_err(|e| ApplyError::Internal(e.to_string()))
}

fn parse(daemon: &Daemon, source: &Source) -> Result<Desired, ApplyError> {
    let policy = daemon.policy.current();
    document::parse(source, daemon.capabilities.known(), policy.catalog())
        .map_err(ApplyError::Invalid)
}

/// The node's state now, with `policy` as the policy in force.
async fn current(daemon: &Daemon, policy: Arc<Policy>) -> Result<Current, ApplyError> {
    let volumes = daemon
        .store
        .run(|store| store.list_volumes())
        .await?
        .into_iter()
        .filter(|v| v.name != "default")
        .collect();
    Ok(Current {
        capabilities: daemon.capabilities.choices(),
        volumes,
        policy,
        cells: cells::current_cells(&daemon.runtime).await,
        peers: daemon.peer.trust.entries(),
        node: crate::peer::node_name(daemon),
    })
}

/// Changes the cells first (undone if anything after fails), then writes every record
/// of `plan` in one durable transaction, then serves the result.
async fn carry_out(
    daemon: &Daemon,
    hold: PolicyHold<'_>,
    trust: TrustHold<'_>,
    plan: &Plan,
) -> Result<u64, ApplyError> {
    let store = daemon.store.store()?;
    let cell_changes: Vec<cells::CellChange> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::Cell(change) => Some(change.clone()),
            _ => None,
        })
        .collect();
    let done = cells::carry_out_cells(&daemon.runtime, &cell_changes).await?;
    let mut ops: Vec<StoreOp> = Vec::new();
    if let Some(choices) = &plan.capabilities {
        let write = daemon
            .capabilities
            .staged_write(choices)
            .map_err(ApplyError::Internal)?;
        ops.push(Box::new(write));
    }
    for change in &plan.changes {
        if let Some(op) = volume_op(change)? {
            ops.push(op);
        }
    }
    if let Some((policy, touched)) = &plan.policy {
        ops.extend(hold.writes(policy, touched));
    }
    if let Some(peers) = &plan.peers {
        ops.extend(trust.writes(peers).map_err(ApplyError::Internal)?);
    }
    let written = if ops.is_empty() {
        Ok(((), 0))
    } else {
        store
            .write(Durability::Durable, move |w| {
                ops.iter_mut().try_for_each(|op| op(w))
            })
            .await
    };
    let revision = match written {
        Ok(((), revision)) => revision,
        Err(e) => {
            done.undo(&daemon.runtime).await;
            return Err(e.into());
        }
    };
    if let Some(choices) = &plan.capabilities {
        daemon.capabilities.adopt(choices.clone());
    }
    match &plan.policy {
        Some((policy, _)) => hold.publish(policy.clone()),
        None => drop(hold),
    }
    if let Some(peers) = &plan.peers {
        trust.publish(peers.clone());
        // Streams of peers trusted as something else, or no longer, end; their next call
        // comes in as what they are now.
        let changed: Vec<String> = plan
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Trust {
                    peer, was: Some(_), ..
                }
                | Change::Untrust { peer, .. } => Some(peer.to_string()),
                _ => None,
            })
            .collect();
        daemon.connections.close_where(|info| {
            info.remote_peer
                .as_ref()
                .is_some_and(|p| changed.contains(p))
        });
    }
    Ok(revision)
}

fn volume_op(change: &Change) -> Result<Option<StoreOp>, ApplyError> {
    let op: StoreOp = match change {
        Change::CreateVolume { name, quota } => {
            let mut create = volumes::create(name.clone(), *quota);
            Box::new(move |w| create(w).map(|_| ()))
        }
        Change::SetQuota { name, to, .. } => {
            let mut set = volumes::set_quota(name.clone(), *to);
            Box::new(move |w| set(w).map(|_| ()))
        }
        Change::DeleteVolume { name, .. } => {
            let _checked: VolumeName = name
                .parse()
                .map_err(|e| ApplyError::Internal(format!("volume '{name}': {e}")))?;
            Box::new(volumes::delete(name.clone()))
        }
        _ => return Ok(None),
    };
    Ok(Some(op))
}

/// Applies the node config file at `path` once at start (without pruning), after the
/// runtime restored what it ran. A missing file at the default path is no config; any
/// error is logged with its place and the node carries on with what it has.
pub async fn apply_at_start(daemon: Arc<Daemon>, path: std::path::PathBuf, required: bool) {
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            tracing::debug!(file = %path.display(), "no node config");
            return;
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "cannot read the node config; nothing of it applied");
            return;
        }
    };
    let source = Source {
        file: path.display().to_string(),
        text,
    };
    match apply(&daemon, &source, Prune::Keep, Run::Apply).await {
        Ok(outcome) if outcome.applied => tracing::info!(
            file = %source.file,
            changes = outcome.changes.len(),
            "node config applied at start"
        ),
        Ok(_) => tracing::info!(file = %source.file, "node matches its config"),
        Err(e) => tracing::error!(error = %e, "node config not applied"),
    }
}
