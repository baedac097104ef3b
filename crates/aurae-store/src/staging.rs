//! Whole values on their way into a Put: small ones in memory, large ones written and
//! synced into a content file of their own before the write that points a record at
//! them, so that the writer thread only has a record to change.
//!
//! A staged content file belongs to no record until its Put commits: if the Put fails
//! the caller hands it to [`Store::discard`]; an [`Upload`] dropped before it finished
//! deletes its file; and whatever a crash leaves is swept when the store opens. This
//! module never commits anything.

use std::fs::File;
use std::sync::Arc;

use crate::Store;
use crate::error::{ContentAction, StoreError};
use crate::extents::{self, ExtentId, Extents};

/// A value written into a content file and synced, name included, that no record points
/// at yet: hand it to a Put inside a [`Content`], and to [`Store::discard`] if the Put
/// fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a staged value no Put took must be discarded"]
pub struct Staged {
    generation: u64,
    size: u64,
}

impl Staged {
    /// Its content file's generation.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Its length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// A whole value for a Put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The bytes themselves (small values; larger ones are written out by the writer
    /// thread, which is slower for large values than staging them first).
    Bytes(Vec<u8>),
    /// A value already written out by [`Store::stage`] or an [`Upload`].
    Staged(Staged),
}

impl Content {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Bytes(bytes) => bytes.len() as u64,
            Self::Staged(staged) => staged.size,
        }
    }

    /// Whether it holds no byte.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The staged value it refers to, to discard if the Put fails.
    pub fn staged(&self) -> Option<Staged> {
        match self {
            Self::Bytes(_) => None,
            Self::Staged(staged) => Some(*staged),
        }
    }
}

impl From<Vec<u8>> for Content {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Bytes(bytes)
    }
}

/// A value arriving in pieces (a streamed Put): the first [`crate::StoreConfig::inline_max`]
/// bytes are kept in memory, anything beyond goes into a fresh content file as it
/// arrives. Dropped before [`Upload::finish`], it deletes its content file.
#[derive(Debug)]
pub struct Upload {
    extents: Arc<Extents>,
    inline_max: usize,
    head: Vec<u8>,
    file: Option<(ExtentId, File)>,
    size: u64,
}

impl Upload {
    /// Appends `data` (blocking: it may write to disk).
    pub fn append(&mut self, data: &[u8]) -> Result<(), StoreError> {
        if data.is_empty() {
            return Ok(());
        }
        let end = self.size + data.len() as u64;
        if self.file.is_none() && end <= self.inline_max as u64 {
            self.head.extend_from_slice(data);
        } else {
            if self.file.is_none() {
                let (id, file) = self.extents.create(0)?;
                self.file = Some((id, file));
                let head = std::mem::take(&mut self.head);
                self.write(&head, 0)?;
            }
            self.write(data, self.size)?;
        }
        self.size = end;
        Ok(())
    }

    fn write(&self, data: &[u8], offset: u64) -> Result<(), StoreError> {
        if let Some((id, file)) = &self.file {
            extents::write_at(file, *id, data, offset)?;
            extents::start_writeback(file, offset, data.len());
        }
        Ok(())
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether no byte was received.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The whole value, ready for a Put: a large one is synced first, name included
    /// (blocking).
    pub fn finish(mut self) -> Result<Content, StoreError> {
        let Some((id, file)) = self.file.take() else {
            return Ok(Content::Bytes(std::mem::take(&mut self.head)));
        };
        let synced = file
            .sync_data()
            .map_err(|source| StoreError::Content {
                action: ContentAction::Sync,
                ino: 0,
                source,
            })
            .and_then(|()| self.extents.sync_dir());
        match synced {
            Ok(()) => Ok(Content::Staged(Staged {
                generation: id.generation,
                size: self.size,
            })),
            Err(e) => {
                self.extents.remove(id);
                Err(e)
            }
        }
    }
}

impl Drop for Upload {
    /// An upload that did not finish leaves nothing behind.
    fn drop(&mut self) {
        if let Some((id, _)) = self.file.take() {
            self.extents.remove(id);
        }
    }
}

impl Store {
    /// Makes `bytes` ready for a Put: a value larger than
    /// [`crate::StoreConfig::inline_max`] is written into a content file of its own and
    /// synced (blocking), so that the write that puts it in place only changes a record.
    pub fn stage(&self, bytes: Vec<u8>) -> Result<Content, StoreError> {
        if bytes.len() <= self.config.inline_max {
            return Ok(Content::Bytes(bytes));
        }
        let size = bytes.len() as u64;
        let generation = self.extents.stage(&bytes)?;
        Ok(Content::Staged(Staged { generation, size }))
    }

    /// A value to receive in pieces, for a Put.
    pub fn upload(&self) -> Upload {
        Upload {
            extents: self.extents.clone(),
            inline_max: self.config.inline_max,
            head: Vec::new(),
            file: None,
            size: 0,
        }
    }

    /// Deletes a staged value whose Put failed.
    pub fn discard(&self, staged: Staged) {
        self.extents.remove(ExtentId {
            ino: 0,
            generation: staged.generation,
        });
    }
}
