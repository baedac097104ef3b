//! The store as the services reach it: open, or the reason it is not (yet).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aurae_store::{Store, StoreConfig, StoreError};

use super::error::{StorageError, message};

/// The daemon's handle on its store, shared by the Storage and Filesystem services and
/// the shutdown path. While the database cannot be opened (another auraed still holds
/// it, or it is damaged) every call answers UNAVAILABLE with the reason.
#[derive(Debug, Clone)]
pub struct StoreState(Arc<std::sync::RwLock<Result<Arc<Store>, String>>>);

impl StoreState {
    /// The store, or why there is none.
    pub fn new(store: Result<Arc<Store>, String>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(store)))
    }

    /// Opens the store in `data_dir` now, or keeps trying every `retry` while another
    /// process holds it (an auraed that is still shutting down): until then the services
    /// answer UNAVAILABLE with the reason.
    pub fn open(data_dir: &Path, config: StoreConfig, retry: Duration) -> Self {
        let state = Self::new(Err("not opened yet".to_owned()));
        match Store::open(data_dir, config.clone()) {
            Ok(store) => state.set(Ok(Arc::new(store))),
            Err(e @ StoreError::Locked { .. }) => {
                tracing::warn!(error = %e, ?retry, "database locked; retrying");
                state.set(Err(e.to_string()));
                let (state, dir) = (state.clone(), data_dir.to_owned());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(retry).await;
                        let (dir, config) = (dir.clone(), config.clone());
                        let opened =
                            tokio::task::spawn_blocking(move || Store::open(&dir, config)).await;
                        match opened {
                            Ok(Ok(store)) => return state.set(Ok(Arc::new(store))),
                            Ok(Err(StoreError::Locked { .. })) => continue,
                            Ok(Err(e)) => return state.set(Err(message(&e))),
                            Err(e) => return state.set(Err(e.to_string())),
                        }
                    }
                });
            }
            Err(e) => state.set(Err(message(&e))),
        }
        state
    }

    fn set(&self, store: Result<Arc<Store>, String>) {
        match &store {
            Ok(store) => tracing::info!(database = %store.path().display(), "database open"),
            Err(why) => {
                tracing::error!(error = %why, "database unavailable; Storage answers UNAVAILABLE")
            }
        }
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = store;
    }

    /// The open store; UNAVAILABLE with the reason otherwise.
    pub fn store(&self) -> Result<Arc<Store>, StorageError> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map_err(StorageError::Unavailable)
    }

    /// Ends every Watch stream, so that a shutdown does not wait on them.
    pub fn close_watches(&self) {
        if let Ok(store) = self.store() {
            store.close_watches();
        }
    }

    /// Runs a short read (one inode, one entry) right here: it takes microseconds, less
    /// than a hop to the blocking pool and back.
    pub fn read<T>(
        &self,
        op: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StorageError> {
        let store = self.store()?;
        Ok(op(&store)?)
    }

    /// Runs a blocking store call on the blocking pool.
    pub async fn run<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let store = self.store()?;
        Ok(tokio::task::spawn_blocking(move || op(&store)).await??)
    }
}
