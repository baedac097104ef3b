//! The runtime's model: the node's cells and their executables, with no gRPC in sight.
//!
//! A cell is its spec (stored first), a cgroup, a zone (the namespaces, held by the cell's
//! init) and an identity; it owns its executables. Every change is written to the store
//! before it is acted on, and undone step by step if acting fails, so a failed allocate
//! leaves no cgroup, mount, namespace or certificate behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use aurae_core::name::Principal;
use aurae_core::pki::PkiPaths;
use aurae_runtime::cgroup::{Cgroup, Hierarchy};
use aurae_runtime::logs::LogConfig;
use aurae_runtime::spec::{CellName, CellSpec, ExecutableName, ExecutableSpec};
use tokio::sync::Mutex;

use super::cell_init::InitPlan;
use super::credentials::CellCredentials;
use super::error::RuntimeError;
use super::executable::{ExecutableHandle, Launch};
use super::identity;
use super::records::Records;
use super::zone::{CELL_PATH, PendingInit, Zone, ZoneError};
use crate::init::supervisor::Supervisor;
use crate::server::permissions::{Scope as GrantScope, Target};

/// Which cells the caller reaches with the permission its call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every cell (the permission is held everywhere).
    All,
    /// The cells the caller's grants reach: names, prefixes, or its own cell.
    Granted(Vec<GrantScope>),
}

impl Scope {
    /// Whether the scope may see and act on `cell`.
    pub fn covers(&self, cell: &CellName) -> bool {
        match self {
            Scope::All => true,
            Scope::Granted(scopes) => {
                let name = cell.to_string();
                scopes.iter().any(|s| s.covers(&Target::Cell(&name)))
            }
        }
    }

    /// Whether the scope may allocate or free `cell` itself: as [`Self::covers`], except
    /// that a cell's own identity cannot make or free its own cell (only cells in it).
    pub fn may_create_or_free(&self, cell: &CellName) -> bool {
        match self {
            Scope::All => true,
            Scope::Granted(scopes) => {
                let name = cell.to_string();
                scopes.iter().any(|s| {
                    s.covers(&Target::Cell(&name))
                        && !matches!(s, GrantScope::OwnCell(own) if *own == name)
                })
            }
        }
    }
}

/// The directories and files the runtime works with.
#[derive(Debug, Clone)]
pub struct RuntimePaths {
    /// The name of the runtime's cgroup in each hierarchy (`aurae-cells` for the node's
    /// daemon; another daemon on the same host, as in tests, gets its own).
    pub cgroup_dir: String,
    /// The daemon's socket, bound into every cell.
    pub socket: PathBuf,
    /// `<data>/runtime/logs/<cell>/<executable>/`.
    pub logs: PathBuf,
    /// `<data>/runtime/identities/<cell principal entity>/`.
    pub identities: PathBuf,
    /// Host directories no cell may see (the daemon's data and keys).
    pub hidden: Vec<PathBuf>,
    /// The `aurae` CLI binary bound into every cell, if found.
    pub cli: Option<PathBuf>,
}

/// How the runtime makes the daemon load a revocation at once: a freed cell's certificate
/// must stop working before Free answers, not at the next poll of the PKI directory.
#[derive(Debug, Clone)]
pub struct MaterialReload {
    /// Wakes the material watcher.
    pub notify: Arc<tokio::sync::Notify>,
    /// The daemon's mode, replaced once the watcher has loaded the new material.
    pub mode: tokio::sync::watch::Receiver<crate::server::material::Mode>,
}

impl MaterialReload {
    /// Asks for a reload and waits (a bounded while) until it happened.
    async fn now(&self) {
        let mut mode = self.mode.clone();
        mode.borrow_and_update();
        self.notify.notify_one();
        if tokio::time::timeout(std::time::Duration::from_secs(5), mode.changed())
            .await
            .is_err()
        {
            tracing::warn!("the revocation list was not reloaded within 5 s");
        }
    }
}

/// One cell.
#[derive(Debug)]
pub struct Cell {
    /// What it was allocated as.
    pub spec: CellSpec,
    /// The principal its processes act as.
    pub principal: Principal,
    /// Its cgroup.
    pub cgroup: Arc<Cgroup>,
    zone: Arc<Zone>,
    executables: std::sync::Mutex<BTreeMap<ExecutableName, Arc<ExecutableHandle>>>,
}

impl Cell {
    /// Its executables, by name.
    pub fn executables(&self) -> Vec<Arc<ExecutableHandle>> {
        self.executables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn executable(&self, name: &ExecutableName) -> Option<Arc<ExecutableHandle>> {
        self.executables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }
}

/// The node's cells.
pub struct Runtime {
    hierarchy: Result<Arc<Hierarchy>, String>,
    supervisor: Supervisor,
    pki: PkiPaths,
    reload: MaterialReload,
    /// The live cells' certificates.
    credentials: CellCredentials,
    paths: RuntimePaths,
    log_config: LogConfig,
    records: Records,
    cells: Mutex<BTreeMap<CellName, Arc<Cell>>>,
    /// Names being allocated or freed right now: taken, but not usable.
    busy: std::sync::Mutex<std::collections::BTreeSet<CellName>>,
    next_executable: AtomicU64,
    /// The init kept ready for the next cell.
    spare: Arc<std::sync::Mutex<Vec<PendingInit>>>,
    /// A spare is being started.
    refilling: Arc<AtomicBool>,
    /// When a cell was last made, started in or freed.
    activity: Arc<Activity>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// The runtime over what the host mounts (detected once; a host without usable cgroups
    /// gets a runtime that explains that on every call).
    pub fn new(
        supervisor: Supervisor,
        pki: PkiPaths,
        reload: MaterialReload,
        paths: RuntimePaths,
        log_config: LogConfig,
        records: Records,
    ) -> Self {
        let hierarchy = Hierarchy::detect(&paths.cgroup_dir)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        if let Err(why) = &hierarchy {
            tracing::warn!(%why, "no usable cgroups: the runtime cannot make cells");
        }
        Self {
            hierarchy,
            supervisor,
            pki,
            reload,
            paths,
            log_config,
            records,
            cells: Mutex::new(BTreeMap::new()),
            busy: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            next_executable: AtomicU64::new(1),
            spare: Arc::default(),
            refilling: Arc::default(),
            activity: Arc::new(Activity::new()),
            credentials: CellCredentials::default(),
        }
    }

    /// Which cell certificates work now, for the authorization layer.
    pub fn credentials(&self) -> CellCredentials {
        self.credentials.clone()
    }

    fn hierarchy(&self) -> Result<Arc<Hierarchy>, RuntimeError> {
        self.hierarchy.clone().map_err(RuntimeError::NoCgroups)
    }

    /// Turns the kernel's `favordynmods` on for cgroups (see
    /// [`aurae_runtime::cgroup::dynmods`]): without it every cell start waits for an RCU
    /// grace period. Only for a runtime that has cgroups; a kernel without the option
    /// leaves cells working, only slower to start.
    pub fn favor_dynamic_cgroups(&self) {
        if self.hierarchy.is_err() {
            return;
        }
        match aurae_runtime::cgroup::dynmods::favor() {
            Ok(mount) => tracing::info!(
                mount = %mount.display(),
                "cgroups favor dynamic changes (favordynmods): cells start without a grace period"
            ),
            Err(e) => tracing::warn!(error = %e, "cgroup migrations stay slow"),
        }
    }

    /// The cgroup version the runtime works with, for people.
    pub fn cgroup_version(&self) -> String {
        match &self.hierarchy {
            Ok(h) => h.version().to_string(),
            Err(_) => "none".to_owned(),
        }
    }

    /// At a clean stop: cells keep running (the next daemon adopts them); with none left,
    /// the runtime's own cgroup roots are removed so that nothing of this daemon stays.
    pub async fn on_shutdown(&self) {
        for init in self.spare_slot().drain(..) {
            init.discard();
        }
        if !self.cells.lock().await.is_empty() {
            return;
        }
        if let Ok(hierarchy) = &self.hierarchy {
            for dir in hierarchy.root_dirs() {
                // rmdir of a cgroup fails while it holds anything: nothing is forced.
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }

    fn log_dir(&self, cell: &CellName, exe: &ExecutableName) -> PathBuf {
        self.paths
            .logs
            .join(cell.relative_path())
            .join(exe.as_str())
    }

    fn identity_dir(&self, cell: &CellName) -> PathBuf {
        self.paths.identities.join(cell.principal_entity())
    }

    /// Creates a cell.
    pub async fn allocate(&self, scope: &Scope, spec: CellSpec) -> Result<Arc<Cell>, RuntimeError> {
        self.activity.mark();
        let name = spec.name.clone();
        if !scope.may_create_or_free(&name) {
            return Err(RuntimeError::Denied(name.to_string()));
        }
        if spec.isolation.user_namespace.is_some() {
            return Err(RuntimeError::Invalid(
                "user namespaces (an OCI bundle's `user` namespace with uidMappings/gidMappings) \
                 are not supported by this runtime yet; remove them to run the cell as root \
                 of the host"
                    .to_owned(),
            ));
        }
        let hierarchy = self.hierarchy()?;
        hierarchy.check(&spec.limits)?;
        if let Some(rootfs) = &spec.rootfs
            && !rootfs.as_path().is_dir()
        {
            return Err(RuntimeError::Invalid(format!(
                "rootfs {} is not a directory on this host",
                rootfs.as_path().display()
            )));
        }
        {
            let cells = self.cells.lock().await;
            if cells.contains_key(&name) || self.busy().contains(&name) {
                return Err(RuntimeError::Exists(name.to_string()));
            }
            if let Some(parent) = name.parent()
                && !cells.contains_key(&parent)
            {
                return Err(RuntimeError::NotFound(format!(
                    "parent cell '{parent}' (allocate it first)"
                )));
            }
            self.busy().insert(name.clone());
        }
        let made = self.record_and_make(&hierarchy, &spec).await;
        let mut cells = self.cells.lock().await;
        self.busy().remove(&name);
        let cell = Arc::new(made?);
        cells.insert(name.clone(), cell.clone());
        tracing::info!(cell = %name, principal = %cell.principal, "cell allocated");
        Ok(cell)
    }

    fn busy(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<CellName>> {
        self.busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores the spec, then makes the cell; forgets the spec if that fails.
    async fn record_and_make(
        &self,
        hierarchy: &Arc<Hierarchy>,
        spec: &CellSpec,
    ) -> Result<Cell, RuntimeError> {
        let began = std::time::Instant::now();
        self.records.put_cell(spec).await?;
        tracing::debug!(cell = %spec.name, recorded = ?began.elapsed(), "cell recorded");
        let made = self.make_cell(hierarchy, spec).await;
        if made.is_err()
            && let Err(undo) = self.records.remove_cell(&spec.name).await
        {
            tracing::warn!(cell = %spec.name, %undo, "cannot forget the failed cell's record");
        }
        made
    }

    /// The cgroup, identity and zone of a cell; all undone if one fails.
    ///
    /// The certificate is issued while the cgroup and the init are made: the init only
    /// needs the identity directory to exist (it binds it), not the files in it.
    async fn make_cell(
        &self,
        hierarchy: &Arc<Hierarchy>,
        spec: &CellSpec,
    ) -> Result<Cell, RuntimeError> {
        let name = spec.name.clone();
        let began = std::time::Instant::now();
        let dir = self.identity_dir(&name);
        let prepared = dir.clone();
        blocking(move || identity::prepare(&prepared).map_err(RuntimeError::from)).await?;
        let (pki, n, d) = (self.pki.clone(), name.clone(), dir.clone());
        let issuing = blocking(move || identity::issue(&pki, &n, &d).map_err(RuntimeError::from));
        let (issued, made) = tokio::join!(issuing, self.make_zone(hierarchy, spec));
        tracing::debug!(cell = %name, made_in = ?began.elapsed(), "cell made");
        match (issued, made) {
            (Ok((principal, serial)), Ok((cgroup, zone))) => {
                self.credentials.insert(principal.clone(), serial);
                Ok(Cell {
                    spec: spec.clone(),
                    principal,
                    cgroup,
                    zone: Arc::new(zone),
                    executables: std::sync::Mutex::new(BTreeMap::new()),
                })
            }
            (Err(e), made) => {
                if let Ok((cgroup, zone)) = &made {
                    remove_cgroup(cgroup).await;
                    zone.wait_init().await;
                }
                self.discard_identity(&name, dir).await;
                Err(e)
            }
            (Ok(_), Err(e)) => {
                self.discard_identity(&name, dir).await;
                Err(e)
            }
        }
    }

    /// Removes the identity directory of a cell that was not made. Its certificate never
    /// worked: it was never made live in [`CellCredentials`].
    async fn discard_identity(&self, name: &CellName, dir: PathBuf) {
        let (pki, n) = (self.pki.clone(), name.clone());
        let _ = blocking(move || {
            let principal = identity::principal_of(&pki, &n)?;
            identity::revoke(&pki, &principal, &dir).map_err(RuntimeError::from)
        })
        .await;
    }

    /// The cell's cgroup and, inside it, its init with the namespaces and filesystem view.
    ///
    /// The init is the spare one when there is one (and the cell wants its own network),
    /// else one started now while the cgroup is made; either way it is moved into the
    /// cgroup before it gets its plan, and a new spare is started afterwards.
    async fn make_zone(
        &self,
        hierarchy: &Arc<Hierarchy>,
        spec: &CellSpec,
    ) -> Result<(Arc<Cgroup>, Zone), RuntimeError> {
        let name = spec.name.clone();
        let host_network = spec.isolation.network == aurae_runtime::spec::NetworkMode::Host;
        let spare = if host_network {
            None
        } else {
            self.spare_slot().pop()
        };
        let supervisor = self.supervisor.clone();
        let init = async move {
            match spare {
                Some(init) => Ok(init),
                None => {
                    blocking(move || {
                        PendingInit::start(&supervisor, host_network).map_err(RuntimeError::from)
                    })
                    .await
                }
            }
        };
        let (h, limits, n) = (hierarchy.clone(), spec.limits.clone(), name.clone());
        let cgroup = blocking(move || h.create(&n, &limits).map_err(RuntimeError::from));
        let (cgroup, init) = match tokio::join!(cgroup, init) {
            (Ok(cgroup), Ok(init)) => (Arc::new(cgroup), init),
            (Ok(cgroup), Err(e)) => {
                remove_cgroup(&Arc::new(cgroup)).await;
                return Err(e);
            }
            (Err(e), Ok(init)) => {
                self.keep_spare(init);
                return Err(e);
            }
            (Err(e), Err(_)) => return Err(e),
        };
        let plan = InitPlan {
            hostname: spec.hostname.clone().unwrap_or_else(|| {
                name.labels()
                    .last()
                    .map(|l| l.to_string())
                    .unwrap_or_default()
            }),
            loopback: spec.isolation.network == aurae_runtime::spec::NetworkMode::Loopback,
            rootfs: spec.rootfs.as_ref().map(|r| r.as_path().to_owned()),
            rootfs_read_only: spec.rootfs_read_only,
            mounts: spec.mounts.clone(),
            socket: self.paths.socket.clone(),
            identity: self.identity_dir(&name),
            cli: self.paths.cli.clone(),
            hidden: self.paths.hidden.clone(),
            masked: spec
                .masked_paths
                .iter()
                .map(|p| p.as_path().to_owned())
                .collect(),
            read_only: spec
                .readonly_paths
                .iter()
                .map(|p| p.as_path().to_owned())
                .collect(),
        };
        let placed = cgroup.clone();
        let zone = blocking(move || {
            if let Err(e) = placed.add_process(init.pid()) {
                init.discard();
                return Err(e.into());
            }
            init.configure(&plan).map_err(RuntimeError::from)
        })
        .await;
        self.refill_spare();
        match zone {
            Ok(zone) => Ok((cgroup, zone)),
            Err(e) => {
                remove_cgroup(&cgroup).await;
                Err(e)
            }
        }
    }

    fn spare_slot(&self) -> std::sync::MutexGuard<'_, Vec<PendingInit>> {
        self.spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts an unused init back among the spares (or kills it when they are enough).
    fn keep_spare(&self, init: PendingInit) {
        let mut spares = self.spare_slot();
        if spares.len() < SPARES && !init.host_network() {
            spares.push(init);
        } else {
            init.discard();
        }
    }

    /// Starts spare inits in the background until there are [`SPARES`], unless that is
    /// under way: the next cells then skip the fork and exec of their init.
    fn refill_spare(&self) {
        if self.spare_slot().len() >= SPARES || self.refilling.swap(true, Ordering::AcqRel) {
            return;
        }
        let (supervisor, refilling) = (self.supervisor.clone(), self.refilling.clone());
        let spares = self.spare.clone();
        let quiet = self.activity.clone();
        tokio::spawn(async move {
            // Not while cells are being made or started: a fork and exec beside them
            // would slow them down (the cell that took the spare is usually about to
            // start its first executable).
            quiet.wait_quiet(REFILL_DELAY).await;
            loop {
                let supervisor = supervisor.clone();
                let started =
                    tokio::task::spawn_blocking(move || PendingInit::start(&supervisor, false))
                        .await
                        .map_err(|e| ZoneError::Thread(std::io::Error::other(e)))
                        .and_then(|r| r);
                let init = match started {
                    Ok(init) => init,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start a spare cell init");
                        break;
                    }
                };
                let mut spares = spares
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if spares.len() >= SPARES {
                    init.discard();
                    break;
                }
                spares.push(init);
                if spares.len() >= SPARES {
                    break;
                }
            }
            refilling.store(false, Ordering::Release);
        });
    }

    /// Takes the stored cells back after a start: a cell whose init still runs (the daemon
    /// was restarted, even by kill -9) is adopted with its running executables; one that
    /// is gone (the host rebooted) is made anew. An executable that no longer runs is
    /// started again if its policy restarts it. Nothing runs twice: a running process is
    /// recognised by its pid and start time, never started again.
    pub async fn restore(&self) {
        let records = match self.load_records().await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the stored cells; none restored");
                return;
            }
        };
        if records.is_empty() {
            return;
        }
        let Ok(hierarchy) = self.hierarchy() else {
            tracing::warn!(
                cells = records.len(),
                "stored cells cannot be restored without cgroups"
            );
            return;
        };
        let mut cells = self.cells.lock().await;
        for record in records {
            let name = record.cell.name.clone();
            match self.restore_cell(&hierarchy, record).await {
                Ok((cell, how)) => {
                    tracing::info!(cell = %name, how, executables = cell.executables().len(), "cell restored");
                    cells.insert(name, Arc::new(cell));
                }
                Err(e) => tracing::warn!(cell = %name, error = %e, "cannot restore a stored cell"),
            }
        }
    }

    /// The stored records, once the store is open (it may still be opening at start).
    async fn load_records(&self) -> Result<Vec<super::records::CellRecord>, RuntimeError> {
        let mut last = None;
        for _ in 0..100 {
            let records = self.records.clone();
            let loaded = tokio::task::spawn_blocking(move || records.load())
                .await
                .map_err(|e| RuntimeError::Internal(format!("reading the records: {e}")))?;
            match loaded {
                Ok(records) => return Ok(records),
                Err(e @ RuntimeError::Store(_)) => last = Some(e),
                Err(e) => return Err(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(last.unwrap_or_else(|| RuntimeError::Internal("the store never opened".to_owned())))
    }

    async fn restore_cell(
        &self,
        hierarchy: &Arc<Hierarchy>,
        record: super::records::CellRecord,
    ) -> Result<(Cell, &'static str), RuntimeError> {
        let spec = record.cell;
        let name = spec.name.clone();
        let host_network = spec.isolation.network == aurae_runtime::spec::NetworkMode::Host;
        let adopted = match hierarchy.open(&name) {
            Some(cgroup) => match find_init(&cgroup, &self.paths.cgroup_dir, &name) {
                Some(pid) => Some((cgroup, Zone::adopt(&self.supervisor, pid, host_network)?)),
                None => {
                    // A cgroup without its init is a leftover: empty it and start over.
                    let cgroup = Arc::new(cgroup);
                    remove_cgroup(&cgroup).await;
                    None
                }
            },
            None => None,
        };
        let (cell, how) = match adopted {
            Some((cgroup, zone)) => {
                let (pki, n) = (self.pki.clone(), name.clone());
                let dir = self.identity_dir(&name);
                let (principal, serial) = blocking(move || {
                    let principal = identity::principal_of(&pki, &n)?;
                    Ok((principal, identity::serial_in(&dir)))
                })
                .await?;
                if let Some(serial) = serial {
                    self.credentials.insert(principal.clone(), serial);
                }
                let cell = Cell {
                    spec,
                    principal,
                    cgroup: Arc::new(cgroup),
                    zone: Arc::new(zone),
                    executables: std::sync::Mutex::new(BTreeMap::new()),
                };
                (cell, "adopted")
            }
            None => (self.make_cell(hierarchy, &spec).await?, "made anew"),
        };
        for exe in record.executables {
            let launch = self.launch(&cell, &exe.name);
            let log_dir = launch.log_dir.clone();
            let running = (how == "adopted")
                .then(|| super::executable::remembered(&log_dir))
                .flatten()
                .filter(|pid| cell.cgroup.pids().is_ok_and(|pids| pids.contains(pid)));
            let handle = match running {
                Some(pid) => match self.supervisor.adopt(pid) {
                    Ok(process) => ExecutableHandle::adopt(exe.clone(), launch, process).await,
                    Err(e) => Err(format!("cannot adopt pid {pid}: {e}")),
                },
                None if exe.restart != aurae_runtime::spec::RestartPolicy::No => {
                    let _ = create_private_dir(&log_dir).await;
                    ExecutableHandle::start(exe.clone(), launch).await
                }
                None => {
                    // It ended while no daemon watched, and its policy does not restart it.
                    let _ = self.records.remove_executable(&name, &exe.name).await;
                    continue;
                }
            };
            match handle {
                Ok(handle) => {
                    cell.executables
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(exe.name.clone(), handle);
                }
                Err(why) => {
                    tracing::warn!(cell = %name, executable = %exe.name, %why, "cannot restore an executable")
                }
            }
        }
        Ok((cell, how))
    }

    /// Frees a cell and every cell nested in it, innermost first.
    pub async fn free(&self, scope: &Scope, name: &CellName) -> Result<(), RuntimeError> {
        if !scope.may_create_or_free(name) {
            return Err(RuntimeError::Denied(name.to_string()));
        }
        let doomed: Vec<Arc<Cell>> = {
            let mut cells = self.cells.lock().await;
            if !cells.contains_key(name) {
                return Err(RuntimeError::NotFound(format!("cell '{name}'")));
            }
            let mut names: Vec<CellName> =
                cells.keys().filter(|c| name.contains(c)).cloned().collect();
            names.sort_by_key(|c| std::cmp::Reverse(c.labels().len()));
            let mut busy = self.busy();
            names
                .iter()
                .filter_map(|n| {
                    busy.insert(n.clone());
                    cells.remove(n)
                })
                .collect()
        };
        let mut result = Ok(());
        let freed_any = !doomed.is_empty();
        for cell in doomed {
            let torn = self.tear_down(&cell).await;
            self.busy().remove(&cell.spec.name);
            match torn {
                Ok(()) => tracing::info!(cell = %cell.spec.name, "cell freed"),
                Err(e) => {
                    tracing::warn!(cell = %cell.spec.name, error = %e, "cell not fully freed");
                    result = Err(e);
                }
            }
        }
        if freed_any {
            let _ = tokio::task::spawn_blocking(release_freed_memory).await;
        }
        result
    }

    async fn tear_down(&self, cell: &Arc<Cell>) -> Result<(), RuntimeError> {
        self.activity.mark();
        // First of all: from now on the cell's certificate is refused, and the open
        // connections made with it are closed.
        self.credentials.remove(&cell.principal);
        let executables = cell.executables();
        // Stop the tasks from restarting anything, then kill the cgroup whole.
        for exe in &executables {
            exe.kill().await;
        }
        let cgroup = cell.cgroup.clone();
        blocking(move || cgroup.kill_all().map_err(RuntimeError::from)).await?;
        for exe in &executables {
            exe.wait().await;
        }
        cell.zone.wait_init().await;
        let cgroup = cell.cgroup.clone();
        blocking(move || cgroup.remove().map_err(RuntimeError::from)).await?;
        let (pki, principal, dir) = (
            self.pki.clone(),
            cell.principal.clone(),
            self.identity_dir(&cell.spec.name),
        );
        let published =
            blocking(move || identity::revoke(&pki, &principal, &dir).map_err(RuntimeError::from))
                .await?;
        if published {
            self.reload.now().await;
        }
        let logs = self.paths.logs.join(cell.spec.name.relative_path());
        let _ = tokio::fs::remove_dir_all(&logs).await;
        self.records.remove_cell(&cell.spec.name).await?;
        Ok(())
    }

    /// The cells `scope` may see, parents first.
    pub async fn list(&self, scope: &Scope) -> Vec<Arc<Cell>> {
        self.cells
            .lock()
            .await
            .iter()
            .filter(|(name, _)| scope.covers(name))
            .map(|(_, cell)| cell.clone())
            .collect()
    }

    async fn cell(&self, scope: &Scope, name: &CellName) -> Result<Arc<Cell>, RuntimeError> {
        if !scope.covers(name) {
            return Err(RuntimeError::Denied(name.to_string()));
        }
        self.cells
            .lock()
            .await
            .get(name)
            .cloned()
            .ok_or_else(|| RuntimeError::NotFound(format!("cell '{name}'")))
    }

    /// A name for an executable the caller did not name.
    pub fn fresh_executable_name(&self) -> Result<ExecutableName, RuntimeError> {
        let n = self.next_executable.fetch_add(1, Ordering::Relaxed);
        format!("exe-{n}")
            .parse()
            .map_err(|e| RuntimeError::Internal(format!("generated name: {e}")))
    }

    /// Starts an executable in a cell.
    pub async fn start(
        &self,
        scope: &Scope,
        cell_name: &CellName,
        spec: ExecutableSpec,
    ) -> Result<Arc<ExecutableHandle>, RuntimeError> {
        spec.validate()?;
        self.activity.mark();
        let cell = self.cell(scope, cell_name).await?;
        if cell.executable(&spec.name).is_some() {
            return Err(RuntimeError::Exists(format!("{cell_name}/{}", spec.name)));
        }
        let began = std::time::Instant::now();
        self.records.put_executable(cell_name, &spec).await?;
        let recorded = began.elapsed();
        let launch = self.launch(&cell, &spec.name);
        let log_dir = launch.log_dir.clone();
        let started = match create_private_dir(&log_dir).await {
            Ok(()) => ExecutableHandle::start(spec.clone(), launch).await,
            Err(e) => Err(e),
        };
        tracing::debug!(cell = %cell_name, executable = %spec.name, ?recorded, started = ?began.elapsed(), "executable started");
        match started {
            Ok(handle) => {
                cell.executables
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(spec.name.clone(), handle.clone());
                Ok(handle)
            }
            Err(why) => {
                let _ = self.records.remove_executable(cell_name, &spec.name).await;
                let _ = tokio::fs::remove_dir_all(&log_dir).await;
                Err(RuntimeError::Start(why))
            }
        }
    }

    /// What an executable named `exe` of `cell` is started with.
    fn launch(&self, cell: &Cell, exe: &ExecutableName) -> Launch {
        Launch {
            cell: cell.spec.name.clone(),
            zone: cell.zone.clone(),
            cgroup: cell.cgroup.clone(),
            supervisor: self.supervisor.clone(),
            environment: self.environment(cell),
            log_dir: self.log_dir(&cell.spec.name, exe),
            log_config: self.log_config.clone(),
            input: Default::default(),
            relay_done: Default::default(),
        }
    }

    fn environment(&self, cell: &Cell) -> Vec<(String, String)> {
        vec![
            ("PATH".to_owned(), CELL_PATH.to_owned()),
            ("HOME".to_owned(), "/".to_owned()),
            (
                aurae_core::config::CONFIG_ENV.to_owned(),
                identity::CELL_CONFIG.to_owned(),
            ),
            ("AURAE_CELL".to_owned(), cell.spec.name.to_string()),
        ]
    }

    /// An executable of a cell.
    pub async fn executable(
        &self,
        scope: &Scope,
        cell_name: &CellName,
        name: &ExecutableName,
    ) -> Result<Arc<ExecutableHandle>, RuntimeError> {
        self.cell(scope, cell_name)
            .await?
            .executable(name)
            .ok_or_else(|| RuntimeError::NotFound(format!("executable '{cell_name}/{name}'")))
    }

    /// Stops an executable and forgets it (its log stays until the cell is freed).
    pub async fn stop(
        &self,
        scope: &Scope,
        cell_name: &CellName,
        name: &ExecutableName,
    ) -> Result<super::executable::ExecutableStatus, RuntimeError> {
        let cell = self.cell(scope, cell_name).await?;
        let exe = cell
            .executable(name)
            .ok_or_else(|| RuntimeError::NotFound(format!("executable '{cell_name}/{name}'")))?;
        let status = exe.stop().await;
        cell.executables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
        self.records.remove_executable(cell_name, name).await?;
        Ok(status)
    }

    /// The log directory of an executable, if it has one (running or stopped).
    pub async fn log_dir_of(
        &self,
        scope: &Scope,
        cell_name: &CellName,
        name: &ExecutableName,
    ) -> Result<(PathBuf, Option<Arc<ExecutableHandle>>), RuntimeError> {
        let cell = self.cell(scope, cell_name).await?;
        let dir = self.log_dir(cell_name, name);
        if !dir.is_dir() {
            return Err(RuntimeError::NotFound(format!(
                "executable '{cell_name}/{name}'"
            )));
        }
        Ok((dir, cell.executable(name)))
    }

    /// Freezes or thaws a cell (and its nested cells).
    pub async fn set_frozen(
        &self,
        scope: &Scope,
        name: &CellName,
        frozen: bool,
    ) -> Result<(), RuntimeError> {
        let cell = self.cell(scope, name).await?;
        let cgroup = cell.cgroup.clone();
        blocking(move || {
            if frozen {
                cgroup.freeze()
            } else {
                cgroup.thaw()
            }
            .map_err(RuntimeError::from)
        })
        .await
    }
}

/// The pid of a cell's init: the process of exactly this cell's cgroup (not a nested
/// one's) that runs as [`super::cell_init::ARGV0`].
fn find_init(cgroup: &Cgroup, cgroup_dir: &str, name: &CellName) -> Option<i32> {
    // On cgroup v2 a cell's own processes sit in its `_procs` leaf.
    let suffix = format!("/{cgroup_dir}/{name}");
    let leaf = format!("{suffix}/_procs");
    cgroup.pids().ok()?.into_iter().find(|pid| {
        let is_init = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            cmdline.split(|b| *b == 0).next() == Some(super::cell_init::ARGV0.as_bytes())
        });
        is_init
            && std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|groups| {
                groups
                    .lines()
                    .any(|line| line.ends_with(&suffix) || line.ends_with(&leaf))
            })
    })
}

/// Gives the memory a freed cell's threads and buffers used back to the system: glibc's
/// allocator keeps freed memory in its per-thread arenas otherwise, so the daemon's
/// resident size would only ever grow with the number of cells it has run.
#[allow(unsafe_code)]
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn create_private_dir(dir: &Path) -> Result<(), String> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(|e| format!("cannot create the log directory {}: {e}", dir.display()))
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn remove_cgroup(cgroup: &Arc<Cgroup>) {
    let cgroup = cgroup.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || cgroup.remove()).await {
        tracing::warn!(error = %e, "cannot remove a failed cell's cgroup");
    }
}

/// How many spare inits are kept: two, so that cells made back to back both find one.
const SPARES: usize = 2;

/// The last time the runtime made, started in or freed a cell, so that background work
/// waits for a quiet moment.
#[derive(Debug)]
struct Activity {
    epoch: std::time::Instant,
    /// Milliseconds since `epoch`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: std::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn mark(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Returns once nothing happened for `quiet`.
    async fn wait_quiet(&self, quiet: std::time::Duration) {
        let quiet_ms = u64::try_from(quiet.as_millis()).unwrap_or(u64::MAX);
        loop {
            let since = self
                .now_ms()
                .saturating_sub(self.last.load(Ordering::Relaxed));
            if since >= quiet_ms {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(quiet_ms - since)).await;
        }
    }
}

/// How long the runtime must be quiet before a spare init is started.
const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(20);

/// Runs blocking work (cgroup files, fork, certificates) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RuntimeError::Internal(format!("blocking work did not finish: {e}")))?
}
