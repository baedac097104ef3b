//! The runtime's records in the store: every cell and executable spec, written (durably)
//! before it is acted on and removed after it is undone, so that a restarted daemon knows
//! what it was asked to run.
//!
//! They live in the store's namespace under [`ROOT`]: `<cell principal entity>/cell.json`
//! and `<cell principal entity>/executables/<name>.json`, as JSON of the spec types. The
//! admin can read them with `aurae get`; editing them by hand is not supported.

use aurae_core::path::StorePath;
use aurae_runtime::spec::{CellName, CellSpec, ExecutableName, ExecutableSpec};
use aurae_store::namespace::{self, Removal};
use aurae_store::{Content, Durability, PutOptions, StoreError};

use super::error::RuntimeError;
use crate::storage::StoreState;

/// Where the runtime's records live in the store.
pub const ROOT: &str = "/.aurae/runtime/cells";

/// The runtime's view of the store.
#[derive(Debug, Clone)]
pub struct Records {
    store: StoreState,
}

/// A cell's record with its executables', as read back at start.
#[derive(Debug, Clone)]
pub struct CellRecord {
    /// The cell.
    pub cell: CellSpec,
    /// Its executables.
    pub executables: Vec<ExecutableSpec>,
}

fn path(text: String) -> Result<StorePath, RuntimeError> {
    text.parse()
        .map_err(|e| RuntimeError::Internal(format!("record path {text}: {e}")))
}

fn cell_dir(cell: &CellName) -> String {
    format!("{ROOT}/{}", cell.principal_entity())
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, RuntimeError> {
    serde_json::to_vec_pretty(value).map_err(|e| RuntimeError::Internal(format!("record: {e}")))
}

impl Records {
    /// Records in `store`.
    pub fn new(store: StoreState) -> Self {
        Self { store }
    }

    async fn put(&self, at: StorePath, bytes: Vec<u8>) -> Result<(), RuntimeError> {
        let store = self.store.store()?;
        let options = PutOptions {
            mode: Some(0o600),
            ..PutOptions::default()
        };
        store
            .write(
                Durability::Durable,
                namespace::put(at, Content::Bytes(bytes), options),
            )
            .await
            .map_err(|e| RuntimeError::Store(e.into()))?;
        Ok(())
    }

    async fn remove(&self, at: StorePath) -> Result<(), RuntimeError> {
        let store = self.store.store()?;
        match store
            .write(
                Durability::Durable,
                namespace::remove(at, Removal::Recursive),
            )
            .await
        {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(RuntimeError::Store(e.into())),
        }
    }

    /// Stores a cell's spec.
    pub async fn put_cell(&self, spec: &CellSpec) -> Result<(), RuntimeError> {
        let at = path(format!("{}/cell.json", cell_dir(&spec.name)))?;
        self.put(at, encode(spec)?).await
    }

    /// Forgets a cell and its executables.
    pub async fn remove_cell(&self, cell: &CellName) -> Result<(), RuntimeError> {
        self.remove(path(cell_dir(cell))?).await
    }

    /// Stores an executable's spec.
    pub async fn put_executable(
        &self,
        cell: &CellName,
        spec: &ExecutableSpec,
    ) -> Result<(), RuntimeError> {
        let at = path(format!("{}/executables/{}.json", cell_dir(cell), spec.name))?;
        self.put(at, encode(spec)?).await
    }

    /// Forgets an executable.
    pub async fn remove_executable(
        &self,
        cell: &CellName,
        name: &ExecutableName,
    ) -> Result<(), RuntimeError> {
        self.remove(path(format!("{}/executables/{name}.json", cell_dir(cell)))?)
            .await
    }

    /// Every stored cell with its executables, parents first. Records that do not parse
    /// are skipped with a warning (they name what to remove).
    pub fn load(&self) -> Result<Vec<CellRecord>, RuntimeError> {
        let store = self.store.store()?;
        let root = path(ROOT.to_owned())?;
        let dirs = match list_all(&store, &root) {
            Ok(dirs) => dirs,
            Err(StoreError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(RuntimeError::Store(e.into())),
        };
        let mut records = Vec::new();
        for dir in dirs {
            let cell_path = path(format!("{dir}/cell.json"))?;
            let Some(cell) = read_json::<CellSpec>(&store, &cell_path) else {
                continue;
            };
            let exe_dir = path(format!("{dir}/executables"))?;
            let executables = list_all(&store, &exe_dir)
                .unwrap_or_default()
                .iter()
                .filter_map(|p| read_json::<ExecutableSpec>(&store, &path(p.clone()).ok()?))
                .collect();
            records.push(CellRecord { cell, executables });
        }
        records.sort_by_key(|r| r.cell.name.labels().len());
        Ok(records)
    }
}

fn list_all(store: &aurae_store::Store, dir: &StorePath) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let (entries, more) = store.list(dir, &after, 1000)?;
        if let Some(last) = entries.last() {
            after = last.path.rsplit('/').next().unwrap_or_default().to_owned();
        }
        out.extend(entries.into_iter().map(|s| s.path));
        if !more {
            return Ok(out);
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(
    store: &aurae_store::Store,
    at: &StorePath,
) -> Option<T> {
    let bytes = store.get(at).ok()?.0;
    match serde_json::from_slice(&bytes) {
        Ok(value) => Some(value),
        Err(error) => {
            tracing::warn!(record = %at, %error, "skipping a runtime record that does not parse; remove it with `aurae rm`");
            None
        }
    }
}
