//! Cells and their executables in a node config: the document's form, the diff against
//! the running cells, and carrying it out with undo.
//!
//! Cells are not records alone: allocating one makes cgroups and namespaces, starting an
//! executable makes a process. So they are changed before the store transaction of the
//! other objects, each step remembering its inverse; if a step or the transaction after
//! them fails, the steps done are undone in reverse, and the node is as it was (a
//! replaced process starts again from its spec).

use std::collections::{BTreeMap, BTreeSet};

use aurae_proto::v0 as pb;
use aurae_runtime::spec::{CellName, CellSpec, ExecutableSpec};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::document::{Invalid, Location, Size, Source, size_of};
use crate::runtime::cells::{Runtime, Scope};
use crate::runtime::convert;
use crate::runtime::error::RuntimeError;

/// A cell as the document writes it: the fields of `aurae cell allocate`, and its
/// executables by name.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CellEntry {
    /// Relative CPU share (1-10000, 100 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_weight: Option<u64>,
    /// Microseconds of CPU per period (a hard cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota_us: Option<u64>,
    /// The period of the quota (100 ms when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_period_us: Option<u64>,
    /// CPUs it may use (`0-1,3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    /// Hard memory limit (`256M`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<Spanned<Size>>,
    /// Memory throttle point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_high: Option<Spanned<Size>>,
    /// Swap on top of `memory_max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_swap: Option<Spanned<Size>>,
    /// Most processes and threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u64>,
    /// Relative block I/O share.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_weight: Option<u64>,
    /// Share the host's network instead of a loopback-only one.
    #[serde(default, skip_serializing_if = "is_false")]
    pub host_network: bool,
    /// A directory its processes pivot_root into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    /// Mount the rootfs read-only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub rootfs_read_only: bool,
    /// Its hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Host paths bound in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binds: Vec<BindEntry>,
    /// Its executables by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub executables: BTreeMap<Spanned<String>, ExecutableEntry>,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// A host path bound into a cell.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BindEntry {
    /// The host path.
    pub source: String,
    /// Where it appears in the cell.
    pub destination: String,
    /// Whether the cell may only read it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

/// An executable as the document writes it: the fields of `aurae cell start`.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutableEntry {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Extra environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory in the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// User id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// `no` (default), `on-failure` or `always`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Spanned<String>>,
    /// For `on-failure`: restarts in a row before giving up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// The signal that asks it to stop (15 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<i32>,
    /// Milliseconds between the stop signal and SIGKILL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_ms: Option<u32>,
}

/// A cell as the document wants it.
#[derive(Debug, Clone)]
pub struct DesiredCell {
    /// Where it is named.
    pub at: Location,
    /// Its spec.
    pub spec: CellSpec,
    /// Its executables.
    pub executables: Vec<ExecutableSpec>,
}

fn runtime_invalid(at: Location, e: &RuntimeError) -> Invalid {
    Invalid {
        at,
        message: e.to_string(),
    }
}

/// Validates the document's cells into specs, as the runtime's API would.
pub fn parse_cells(
    source: &Source,
    cells: &BTreeMap<Spanned<String>, CellEntry>,
) -> Result<Vec<DesiredCell>, Invalid> {
    let mut desired = Vec::new();
    for (name, entry) in cells {
        let field = format!("cells.\"{}\"", name.get_ref());
        let at = source.at(name.span(), field.clone());
        let size = |size: &Option<Spanned<Size>>, key: &str| -> Result<Option<u64>, Invalid> {
            size.as_ref()
                .map(|s| {
                    size_of(s.get_ref()).map_err(|message| Invalid {
                        at: source.at(s.span(), format!("{field}.{key}")),
                        message,
                    })
                })
                .transpose()
        };
        let message = pb::CellSpec {
            name: name.get_ref().clone(),
            limits: Some(pb::CellLimits {
                cpu: Some(pb::CpuLimits {
                    weight: entry.cpu_weight,
                    quota_us: entry.cpu_quota_us,
                    period_us: entry.cpu_period_us,
                }),
                cpuset: entry.cpuset.clone(),
                memory: Some(pb::MemoryLimits {
                    max: size(&entry.memory_max, "memory_max")?,
                    high: size(&entry.memory_high, "memory_high")?,
                    swap: size(&entry.memory_swap, "memory_swap")?,
                }),
                pids_max: entry.pids_max,
                io_weight: entry.io_weight,
            }),
            host_network: entry.host_network,
            rootfs: entry.rootfs.clone().unwrap_or_default(),
            rootfs_read_only: entry.rootfs_read_only,
            binds: entry
                .binds
                .iter()
                .map(|b| pb::BindMount {
                    source: b.source.clone(),
                    destination: b.destination.clone(),
                    read_only: b.read_only,
                })
                .collect(),
            hostname: entry.hostname.clone().unwrap_or_default(),
        };
        let spec = convert::cell_spec(message).map_err(|e| runtime_invalid(at.clone(), &e))?;
        let mut executables = Vec::new();
        for (exe_name, exe) in &entry.executables {
            let exe_at = source.at(
                exe_name.span(),
                format!("{field}.executables.{}", exe_name.get_ref()),
            );
            executables.push(executable(exe_name.get_ref(), exe, exe_at, source, &field)?);
        }
        desired.push(DesiredCell {
            at,
            spec,
            executables,
        });
    }
    Ok(desired)
}

fn executable(
    name: &str,
    exe: &ExecutableEntry,
    at: Location,
    source: &Source,
    field: &str,
) -> Result<ExecutableSpec, Invalid> {
    if name.is_empty() {
        return Err(Invalid {
            at,
            message: "an executable in a node config needs a name".into(),
        });
    }
    let restart = match exe.restart.as_ref().map(|r| (r, r.get_ref().as_str())) {
        None | Some((_, "no")) => pb::RestartPolicy::No,
        Some((_, "on-failure")) => pb::RestartPolicy::OnFailure,
        Some((_, "always")) => pb::RestartPolicy::Always,
        Some((r, other)) => {
            return Err(Invalid {
                at: source.at(r.span(), format!("{field}.executables.{name}.restart")),
                message: format!("restart '{other}' is not a policy: use no, on-failure or always"),
            });
        }
    };
    let message = pb::ExecutableSpec {
        name: name.to_owned(),
        argv: exe.command.clone(),
        env: exe
            .env
            .iter()
            .map(|(key, value)| pb::EnvVar {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        cwd: exe.cwd.clone().unwrap_or_default(),
        uid: exe.uid,
        gid: exe.gid,
        restart: restart.into(),
        max_retries: exe.max_retries.unwrap_or(0),
        stop_signal: exe.stop_signal.unwrap_or(0),
        stop_grace_ms: exe.stop_grace_ms.unwrap_or(0),
        tty: false,
        stdin: false,
    };
    let fresh = || Err(RuntimeError::Invalid("no name".into()));
    convert::executable_spec(message, fresh).map_err(|e| runtime_invalid(at, &e))
}

/// A running cell as a plan sees it.
#[derive(Debug, Clone)]
pub struct CurrentCell {
    /// Its spec.
    pub spec: CellSpec,
    /// Its executables' specs.
    pub executables: Vec<ExecutableSpec>,
}

/// The running cells, parents before their nested cells.
pub async fn current_cells(runtime: &Runtime) -> Vec<CurrentCell> {
    let mut cells: Vec<CurrentCell> = runtime
        .list(&Scope::All)
        .await
        .iter()
        .map(|cell| CurrentCell {
            spec: cell.spec.clone(),
            executables: cell.executables().iter().map(|e| e.spec.clone()).collect(),
        })
        .collect();
    cells.sort_by_key(|c| c.spec.name.to_string());
    cells
}

/// One step on the runtime, which knows its inverse.
#[derive(Debug, Clone)]
pub enum RuntimeStep {
    /// Allocate a cell.
    Allocate(CellSpec),
    /// Free a cell; it ran these executables (to start them again on undo).
    Free(CellSpec, Vec<ExecutableSpec>),
    /// Start an executable.
    Start(CellName, ExecutableSpec),
    /// Stop an executable (its spec, to start it again on undo).
    Stop(CellName, ExecutableSpec),
}

impl RuntimeStep {
    fn inverse(&self) -> Vec<RuntimeStep> {
        match self {
            Self::Allocate(spec) => vec![Self::Free(spec.clone(), Vec::new())],
            Self::Free(spec, exes) => std::iter::once(Self::Allocate(spec.clone()))
                .chain(
                    exes.iter()
                        .map(|e| Self::Start(spec.name.clone(), e.clone())),
                )
                .collect(),
            Self::Start(cell, exe) => vec![Self::Stop(cell.clone(), exe.clone())],
            Self::Stop(cell, exe) => vec![Self::Start(cell.clone(), exe.clone())],
        }
    }

    async fn run(&self, runtime: &Runtime) -> Result<(), RuntimeError> {
        match self {
            Self::Allocate(spec) => runtime
                .allocate(&Scope::All, spec.clone())
                .await
                .map(|_| ()),
            Self::Free(spec, _) => runtime.free(&Scope::All, &spec.name).await,
            Self::Start(cell, exe) => runtime
                .start(&Scope::All, cell, exe.clone())
                .await
                .map(|_| ()),
            Self::Stop(cell, exe) => runtime.stop(&Scope::All, cell, &exe.name).await.map(|_| ()),
        }
    }
}

/// A change to the cells, as a plan lists it.
#[derive(Debug, Clone)]
pub struct CellChange {
    /// "create", "update" or "delete".
    pub action: &'static str,
    /// "cell" or "executable".
    pub kind: &'static str,
    /// `cell` or `cell/executable`.
    pub name: String,
    /// What changes.
    pub detail: String,
    /// The steps that carry it out.
    pub steps: Vec<RuntimeStep>,
}

fn normalized(exe: &ExecutableSpec) -> ExecutableSpec {
    let mut exe = exe.clone();
    exe.env.sort();
    exe
}

/// The changes that make `current` run what `desired` declares; with `prune`, cells and
/// executables the document does not name are freed and stopped.
pub fn plan_cells(
    current: &[CurrentCell],
    desired: &[DesiredCell],
    prune: bool,
) -> Vec<CellChange> {
    let running: BTreeMap<String, &CurrentCell> = current
        .iter()
        .map(|c| (c.spec.name.to_string(), c))
        .collect();
    let mut changes = Vec::new();
    for cell in desired {
        let name = cell.spec.name.to_string();
        let start_all = |steps: &mut Vec<RuntimeStep>| {
            steps.extend(
                cell.executables
                    .iter()
                    .map(|e| RuntimeStep::Start(cell.spec.name.clone(), e.clone())),
            );
        };
        match running.get(&name) {
            None => {
                let mut steps = vec![RuntimeStep::Allocate(cell.spec.clone())];
                start_all(&mut steps);
                changes.push(CellChange {
                    action: "create",
                    kind: "cell",
                    name,
                    detail: executables_detail(&cell.executables),
                    steps,
                });
            }
            Some(now) if now.spec != cell.spec => {
                let mut steps = vec![
                    RuntimeStep::Free(now.spec.clone(), now.executables.clone()),
                    RuntimeStep::Allocate(cell.spec.clone()),
                ];
                start_all(&mut steps);
                changes.push(CellChange {
                    action: "update",
                    kind: "cell",
                    name,
                    detail: format!(
                        "its spec changed: freed and allocated again, its processes restart; {}",
                        executables_detail(&cell.executables)
                    ),
                    steps,
                });
            }
            Some(now) => changes.extend(plan_executables(cell, now, prune)),
        }
    }
    if prune {
        let named: BTreeSet<String> = desired.iter().map(|c| c.spec.name.to_string()).collect();
        // Nested cells go with their parent; free children first otherwise.
        for cell in current.iter().rev() {
            let name = cell.spec.name.to_string();
            let parent_freed = cell.spec.name.labels().len() > 1
                && current.iter().any(|p| {
                    p.spec.name != cell.spec.name
                        && p.spec.name.contains(&cell.spec.name)
                        && !named.contains(&p.spec.name.to_string())
                });
            if named.contains(&name) || parent_freed {
                continue;
            }
            changes.push(CellChange {
                action: "delete",
                kind: "cell",
                name,
                detail: format!("and its {} executables", cell.executables.len()),
                steps: vec![RuntimeStep::Free(
                    cell.spec.clone(),
                    cell.executables.clone(),
                )],
            });
        }
    }
    changes
}

fn plan_executables(cell: &DesiredCell, now: &CurrentCell, prune: bool) -> Vec<CellChange> {
    let mut changes = Vec::new();
    let cell_name = &cell.spec.name;
    let running: BTreeMap<String, &ExecutableSpec> = now
        .executables
        .iter()
        .map(|e| (e.name.to_string(), e))
        .collect();
    for exe in &cell.executables {
        let name = format!("{cell_name}/{}", exe.name);
        match running.get(&exe.name.to_string()) {
            None => changes.push(CellChange {
                action: "create",
                kind: "executable",
                name,
                detail: exe.argv.join(" "),
                steps: vec![RuntimeStep::Start(cell_name.clone(), exe.clone())],
            }),
            Some(old) if normalized(old) != normalized(exe) => changes.push(CellChange {
                action: "update",
                kind: "executable",
                name,
                detail: format!("restarted as: {}", exe.argv.join(" ")),
                steps: vec![
                    RuntimeStep::Stop(cell_name.clone(), (*old).clone()),
                    RuntimeStep::Start(cell_name.clone(), exe.clone()),
                ],
            }),
            Some(_) => {}
        }
    }
    if prune {
        let named: BTreeSet<String> = cell
            .executables
            .iter()
            .map(|e| e.name.to_string())
            .collect();
        for old in now
            .executables
            .iter()
            .filter(|e| !named.contains(&e.name.to_string()))
        {
            changes.push(CellChange {
                action: "delete",
                kind: "executable",
                name: format!("{cell_name}/{}", old.name),
                detail: "stopped".into(),
                steps: vec![RuntimeStep::Stop(cell_name.clone(), old.clone())],
            });
        }
    }
    changes
}

fn executables_detail(exes: &[ExecutableSpec]) -> String {
    match exes.len() {
        0 => "no executables".into(),
        n => format!(
            "{n} executable{}: {}",
            if n == 1 { "" } else { "s" },
            exes.iter()
                .map(|e| e.name.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Steps carried out so far, to undo if what follows fails.
#[derive(Debug, Default)]
pub struct Done(Vec<RuntimeStep>);

impl Done {
    /// Undoes every step, last first. Best effort: a step that cannot be undone is
    /// logged, and the others are still undone.
    pub async fn undo(self, runtime: &Runtime) {
        for step in self.0.iter().rev() {
            for inverse in step.inverse() {
                if let Err(e) = inverse.run(runtime).await {
                    tracing::error!(?inverse, error = %e, "cannot undo a node config step");
                }
            }
        }
    }
}

/// A step that failed: which change, and the runtime's reason.
#[derive(Debug, thiserror::Error)]
#[error("{change}: {}", status.message())]
pub struct StepFailed {
    /// The change, as the plan named it.
    pub change: String,
    /// The runtime's refusal, as its API would answer it.
    pub status: tonic::Status,
}

/// Carries out every step of `changes` in order; on the first failure undoes what was
/// done and answers why.
pub async fn carry_out_cells(
    runtime: &Runtime,
    changes: &[CellChange],
) -> Result<Done, StepFailed> {
    let mut done = Done::default();
    for change in changes {
        for step in &change.steps {
            if let Err(e) = step.run(runtime).await {
                done.undo(runtime).await;
                return Err(StepFailed {
                    change: format!("{} {} {}", change.action, change.kind, change.name),
                    status: e.into(),
                });
            }
            done.0.push(step.clone());
        }
    }
    Ok(done)
}

/// The running cells in the document's form; cells that use what it cannot say (other
/// mounts than binds, masked paths, user namespaces: made from an OCI bundle) are left
/// out and named in the second list.
pub fn cell_entries(cells: &[CurrentCell]) -> (BTreeMap<String, CellEntry>, Vec<String>) {
    let mut entries = BTreeMap::new();
    let mut left_out = Vec::new();
    for cell in cells {
        let spec = &cell.spec;
        let message = convert::cell_spec_message(spec);
        if message.binds.len() != spec.mounts.len()
            || !spec.masked_paths.is_empty()
            || !spec.readonly_paths.is_empty()
            || spec.isolation.user_namespace.is_some()
            || cell.executables.iter().any(|e| {
                !e.rlimits.is_empty()
                    || e.capabilities.is_some()
                    || e.no_new_privileges
                    || e.tty
                    || e.stdin
            })
        {
            left_out.push(spec.name.to_string());
            continue;
        }
        let limits = message.limits.unwrap_or_default();
        let cpu = limits.cpu.unwrap_or_default();
        let memory = limits.memory.unwrap_or_default();
        let size = |bytes: Option<u64>| {
            bytes.map(|b| Spanned::new(0..0, Size::Text(aurae_core::size::exact(b))))
        };
        let executables = cell
            .executables
            .iter()
            .map(|e| (Spanned::new(0..0, e.name.to_string()), executable_entry(e)))
            .collect();
        entries.insert(
            spec.name.to_string(),
            CellEntry {
                cpu_weight: cpu.weight,
                cpu_quota_us: cpu.quota_us,
                cpu_period_us: cpu.period_us,
                cpuset: limits.cpuset,
                memory_max: size(memory.max),
                memory_high: size(memory.high),
                memory_swap: size(memory.swap),
                pids_max: limits.pids_max,
                io_weight: limits.io_weight,
                host_network: message.host_network,
                rootfs: (!message.rootfs.is_empty()).then_some(message.rootfs),
                rootfs_read_only: message.rootfs_read_only,
                hostname: (!message.hostname.is_empty()).then_some(message.hostname),
                binds: message
                    .binds
                    .into_iter()
                    .map(|b| BindEntry {
                        source: b.source,
                        destination: b.destination,
                        read_only: b.read_only,
                    })
                    .collect(),
                executables,
            },
        );
    }
    (entries, left_out)
}

fn executable_entry(exe: &ExecutableSpec) -> ExecutableEntry {
    use aurae_runtime::spec::RestartPolicy;
    let (restart, max_retries) = match exe.restart {
        RestartPolicy::No => (None, None),
        RestartPolicy::OnFailure { max_retries } => (Some("on-failure"), Some(max_retries)),
        RestartPolicy::Always => (Some("always"), None),
    };
    let grace = u32::try_from(exe.stop_grace.as_millis()).unwrap_or(u32::MAX);
    ExecutableEntry {
        command: exe.argv.clone(),
        env: exe.env.iter().cloned().collect(),
        cwd: exe
            .cwd
            .as_ref()
            .map(|c| c.as_path().to_string_lossy().into_owned()),
        uid: exe.uid,
        gid: exe.gid,
        restart: restart.map(|r| Spanned::new(0..0, r.to_owned())),
        max_retries,
        stop_signal: exe.stop_signal,
        stop_grace_ms: (exe.stop_grace != convert::DEFAULT_STOP_GRACE).then_some(grace),
    }
}
