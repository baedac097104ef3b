//! Volumes: filesystems of their own inside the store, each with a root inode and a
//! quota, addressed by inode through [`crate::inodes`].
//!
//! Reads run here; creating and deleting a volume are operations for
//! [`crate::Store::write`]. The default namespace is a volume too (named "" or
//! "default"); it can be listed but never created or deleted.

use aurae_core::name::VolumeName;
use redb::{ReadableDatabase, ReadableTable};

use crate::Store;
use crate::error::StoreError;
use crate::record::{VolumeRecord, decode_volume};
use crate::tables::{VOLUMES, volume_key};
use crate::types::VolumeInfo;
use crate::writer::{Vol, Writer};

fn volume_of(name: &str, record: &VolumeRecord) -> VolumeInfo {
    VolumeInfo {
        name: name.to_owned(),
        quota_bytes: record.quota_bytes,
        used_bytes: record.used_bytes,
        root_inode: record.root,
        files: record.files,
    }
}

impl Store {
    /// Every volume, the default namespace first (as "default").
    pub fn list_volumes(&self) -> Result<Vec<VolumeInfo>, StoreError> {
        let txn = self.db.begin_read()?;
        let volumes = txn.open_table(VOLUMES)?;
        let mut list = Vec::new();
        for entry in volumes.iter()? {
            let (name, record) = entry?;
            let name = name.value();
            let record = decode_volume(name, record.value())?;
            let shown = if name.is_empty() { "default" } else { name };
            list.push(volume_of(shown, &record));
        }
        Ok(list)
    }

    /// One volume ("default" or "" for the default namespace).
    pub fn volume(&self, name: &str) -> Result<VolumeInfo, StoreError> {
        let key = volume_key(name);
        let txn = self.db.begin_read()?;
        let volumes = txn.open_table(VOLUMES)?;
        let record = volumes
            .get(key)?
            .ok_or_else(|| StoreError::NoSuchVolume(key.to_owned()))?;
        let record = decode_volume(key, record.value())?;
        let shown = if key.is_empty() { "default" } else { key };
        Ok(volume_of(shown, &record))
    }
}

/// Creates volume `name` (validated where it was typed) with its own root and a quota in
/// bytes (0: none).
pub fn create(
    name: VolumeName,
    quota_bytes: u64,
) -> impl FnMut(&mut Writer<'_>) -> Result<VolumeInfo, StoreError> + Send + 'static {
    move |w| {
        let name = name.as_str();
        if name == "default" || w.volume(name).is_ok() {
            return Err(StoreError::VolumeExists(name.to_owned()));
        }
        let root = w.allocate_root(name)?;
        let vol = Vol {
            name: name.to_owned(),
            record: VolumeRecord {
                root,
                quota_bytes,
                used_bytes: 0,
                files: 1,
            },
        };
        w.save_volume(&vol)?;
        Ok(volume_of(name, &vol.record))
    }
}

/// Sets volume `name`'s quota in bytes (0: none). A quota below what the volume already
/// uses is refused: shrinking it would leave the volume over quota, with every write
/// failing until files are removed.
pub fn set_quota(
    name: VolumeName,
    quota_bytes: u64,
) -> impl FnMut(&mut Writer<'_>) -> Result<VolumeInfo, StoreError> + Send + 'static {
    move |w| {
        let key = volume_key(name.as_str());
        if key.is_empty() {
            return Err(StoreError::NotPermitted(
                "the default namespace has no quota of its own",
            ));
        }
        let mut vol = w.volume(key)?;
        if quota_bytes != 0 && vol.record.used_bytes > quota_bytes {
            return Err(StoreError::QuotaBelowUse {
                volume: key.to_owned(),
                quota: quota_bytes,
                used: vol.record.used_bytes,
            });
        }
        vol.record.quota_bytes = quota_bytes;
        w.save_volume(&vol)?;
        Ok(volume_of(key, &vol.record))
    }
}

/// Deletes volume `name` and everything in it.
pub fn delete(
    name: String,
) -> impl FnMut(&mut Writer<'_>) -> Result<(), StoreError> + Send + 'static {
    move |w| {
        let key = volume_key(&name);
        if key.is_empty() {
            return Err(StoreError::NotPermitted(
                "the default namespace cannot be deleted",
            ));
        }
        let mut vol = w.volume(key)?;
        let root = vol.record.root;
        w.remove_children(&mut vol, root)?;
        w.free_root(root)?;
        w.drop_volume(key)
    }
}
