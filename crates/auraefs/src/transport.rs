//! How auraefs reaches a volume: the only module that knows about gRPC and sockets.
//!
//! [`VolumeTransport`] is every call the filesystem makes, in store inodes, with errors
//! already turned into errnos. [`GrpcTransport`] is the local one (auraed's socket, the
//! caller's own client certificate); a remote peer's volume will be a second
//! implementation, and nothing above this module changes. It never opens the database.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use aurae_client::{AuraeClient, Target};
use aurae_proto::v0 as pb;
use fuser::Errno;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::errno::errno_of;

/// Largest message of a Write stream: one FUSE write (max_write) fits in one.
pub const WRITE_MESSAGE_MAX: usize = 1 << 20;

/// How long one call may take before the kernel gets ETIMEDOUT.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A stream of change events of the mounted volume.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

/// What to remove: unlink(2) or rmdir(2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// A file or symlink.
    File,
    /// An empty directory.
    Directory,
}

/// Whether a rename may replace an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// rename(2): replace the target.
    Allow,
    /// RENAME_NOREPLACE: fail with EEXIST.
    Never,
}

/// The attribute changes of one setattr; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttrChange {
    /// Permission bits.
    pub mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
    /// Truncate or extend to this size.
    pub size: Option<u64>,
    /// Access time, ns since the epoch.
    pub atime_ns: Option<i64>,
    /// Modification time, ns since the epoch.
    pub mtime_ns: Option<i64>,
}

/// A new node's name, type and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNode<'a> {
    /// The directory to create it in (store inode).
    pub parent: u64,
    /// Its name there.
    pub name: &'a str,
    /// File, directory or special file.
    pub kind: pb::EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node.
    pub rdev: u32,
}

/// What an unlink did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlinked {
    /// The revision of the change.
    pub revision: u64,
    /// The store inode the name pointed at.
    pub inode: u64,
    /// Whether that was its last link: the inode is gone for good.
    pub gone: bool,
}

/// Every call the filesystem makes on its volume, addressed by store inode.
pub trait VolumeTransport: Send + Sync + 'static {
    /// `name` in directory `parent`.
    fn lookup(
        &self,
        parent: u64,
        name: &str,
    ) -> impl Future<Output = Result<pb::Stat, Errno>> + Send;
    /// The attributes of `inode`.
    fn getattr(&self, inode: u64) -> impl Future<Output = Result<pb::Stat, Errno>> + Send;
    /// Changes the attributes of `inode`.
    fn setattr(
        &self,
        inode: u64,
        change: AttrChange,
    ) -> impl Future<Output = Result<pb::Stat, Errno>> + Send;
    /// Up to `limit` entries of directory `inode` after the name `after`, and whether more follow.
    fn readdir(
        &self,
        inode: u64,
        after: &str,
        limit: u32,
    ) -> impl Future<Output = Result<(Vec<pb::DirEntry>, bool), Errno>> + Send;
    /// Creates a file or directory.
    fn make_node(&self, node: NewNode<'_>) -> impl Future<Output = Result<pb::Stat, Errno>> + Send;
    /// Creates a symlink owned by `uid`:`gid`.
    fn make_symlink(
        &self,
        parent: u64,
        name: &str,
        target: &str,
        owner: (u32, u32),
    ) -> impl Future<Output = Result<pb::Stat, Errno>> + Send;
    /// Adds the name `new_name` in `new_parent` for file `inode`.
    fn link(
        &self,
        inode: u64,
        new_parent: u64,
        new_name: &str,
    ) -> impl Future<Output = Result<pb::Stat, Errno>> + Send;
    /// Removes a name.
    fn unlink(
        &self,
        parent: u64,
        name: &str,
        removal: Removal,
    ) -> impl Future<Output = Result<Unlinked, Errno>> + Send;
    /// Moves a name, with rename(2) semantics; answers the revision of the change.
    fn rename(
        &self,
        from: (u64, &str),
        to: (u64, &str),
        replace: Replace,
    ) -> impl Future<Output = Result<u64, Errno>> + Send;
    /// Reads up to `length` bytes at `offset`.
    fn read(
        &self,
        inode: u64,
        offset: u64,
        length: u64,
    ) -> impl Future<Output = Result<Vec<u8>, Errno>> + Send;
    /// Writes `data` at `offset` as one Write stream, acknowledged once auraed has logged
    /// it (it survives a crash of auraed; a power cut only after [`Self::fsync`]), as a
    /// local filesystem's page cache does; returns the bytes written and the new stat.
    fn write(
        &self,
        inode: u64,
        offset: u64,
        data: &[u8],
    ) -> impl Future<Output = Result<(u64, pb::Stat), Errno>> + Send;
    /// Makes every acknowledged write of the volume durable (fsync(2) on `inode`).
    fn fsync(&self, inode: u64) -> impl Future<Output = Result<(), Errno>> + Send;
    /// The volume's capacity and usage.
    fn statfs(&self) -> impl Future<Output = Result<pb::StatFsResponse, Errno>> + Send;
    /// Says that auraed went away (the change stream broke): connections opened before
    /// are not to be trusted with another call.
    fn connection_lost(&self) {}
    /// The volume's changes from after `revision` on (0: only new ones).
    fn watch(
        &self,
        after_revision: u64,
    ) -> impl Future<Output = Result<WatchStream, Status>> + Send;
}

/// The volume on the local auraed, over its Unix socket with mutual TLS.
#[derive(Debug, Clone)]
pub struct GrpcTransport {
    client: AuraeClient,
    /// Where a thread's own connection goes (none: every call uses `client`).
    target: Option<Target>,
    id: usize,
    /// Bumped when auraed went away: thread connections from before are replaced.
    epoch: Arc<AtomicU64>,
    volume: String,
}

thread_local! {
    /// This thread's own connections (by transport), driven by the thread's own
    /// current-thread runtime: a call then never hops to another thread and back, which
    /// costs more than the call itself on a busy machine.
    static THREAD_CLIENTS: RefCell<Vec<ThreadClient>> = const { RefCell::new(Vec::new()) };
}

/// One thread's connection for one transport, opened in one epoch.
struct ThreadClient {
    transport: usize,
    epoch: u64,
    client: AuraeClient,
}

/// Tells transports apart in [`THREAD_CLIENTS`].
static NEXT_TRANSPORT: AtomicUsize = AtomicUsize::new(1);

impl GrpcTransport {
    /// A transport to `volume` (`""`: the default namespace) over `client`.
    pub fn new(client: AuraeClient, volume: impl Into<String>) -> Self {
        Self {
            client,
            target: None,
            id: NEXT_TRANSPORT.fetch_add(1, Ordering::Relaxed),
            epoch: Arc::default(),
            volume: volume.into(),
        }
    }

    /// Lets calls made on a current-thread runtime open a connection of that thread's
    /// own to `target` (the FUSE session threads each run one).
    pub fn with_thread_connections(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// The client for a call made here and now.
    async fn client(&self) -> AuraeClient {
        let own_runtime = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        let Some(target) = self.target.as_ref().filter(|_| own_runtime) else {
            return self.client.clone();
        };
        let epoch = self.epoch.load(Ordering::Acquire);
        let known = THREAD_CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            clients.retain(|c| c.transport != self.id || c.epoch == epoch);
            clients
                .iter()
                .find(|c| c.transport == self.id)
                .map(|c| c.client.clone())
        });
        if let Some(client) = known {
            return client;
        }
        match AuraeClient::connect(target).await {
            Ok(client) => {
                THREAD_CLIENTS.with(|clients| {
                    clients.borrow_mut().push(ThreadClient {
                        transport: self.id,
                        epoch,
                        client: client.clone(),
                    });
                });
                client
            }
            Err(e) => {
                // The shared connection still works from here, one hop further away.
                tracing::debug!(error = %e, "no connection of this thread's own; using the shared one");
                self.client.clone()
            }
        }
    }

    fn volume(&self) -> String {
        self.volume.clone()
    }
}

/// Runs one call with the timeout, turning its failure into the errno the kernel gets.
async fn call<T>(
    what: &'static str,
    future: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Errno> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(failed(what, &status)),
        Err(_) => {
            tracing::warn!(call = what, timeout = ?CALL_TIMEOUT, "auraed did not answer in time");
            Err(Errno::ETIMEDOUT)
        }
    }
}

fn failed(what: &'static str, status: &Status) -> Errno {
    let errno = errno_of(status);
    if errno == Errno::EIO {
        tracing::warn!(call = what, code = ?status.code(), message = status.message(), "auraed call failed");
    } else {
        tracing::debug!(call = what, code = ?status.code(), message = status.message(), "auraed call failed");
    }
    errno
}

fn stat_of(attr: pb::Attr) -> Result<pb::Stat, Errno> {
    attr.stat.ok_or(Errno::EIO)
}

impl VolumeTransport for GrpcTransport {
    async fn lookup(&self, parent: u64, name: &str) -> Result<pb::Stat, Errno> {
        let request = pb::LookupRequest {
            volume: self.volume(),
            parent,
            name: name.to_owned(),
        };
        stat_of(call("Lookup", self.client().await.filesystem().lookup(request)).await?)
    }

    async fn getattr(&self, inode: u64) -> Result<pb::Stat, Errno> {
        let request = pb::InodeRequest {
            volume: self.volume(),
            inode,
        };
        stat_of(
            call(
                "GetAttr",
                self.client().await.filesystem().get_attr(request),
            )
            .await?,
        )
    }

    async fn setattr(&self, inode: u64, change: AttrChange) -> Result<pb::Stat, Errno> {
        let request = pb::SetAttrRequest {
            volume: self.volume(),
            inode,
            mode: change.mode,
            uid: change.uid,
            gid: change.gid,
            size: change.size,
            atime_ns: change.atime_ns,
            mtime_ns: change.mtime_ns,
        };
        stat_of(
            call(
                "SetAttr",
                self.client().await.filesystem().set_attr(request),
            )
            .await?,
        )
    }

    async fn readdir(
        &self,
        inode: u64,
        after: &str,
        limit: u32,
    ) -> Result<(Vec<pb::DirEntry>, bool), Errno> {
        let request = pb::ReadDirRequest {
            volume: self.volume(),
            inode,
            after: after.to_owned(),
            limit,
        };
        let page = call(
            "ReadDir",
            self.client().await.filesystem().read_dir(request),
        )
        .await?;
        Ok((page.entries, page.more))
    }

    async fn make_node(&self, node: NewNode<'_>) -> Result<pb::Stat, Errno> {
        let request = pb::MakeNodeRequest {
            volume: self.volume(),
            parent: node.parent,
            name: node.name.to_owned(),
            kind: node.kind as i32,
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            rdev: node.rdev,
        };
        stat_of(
            call(
                "MakeNode",
                self.client().await.filesystem().make_node(request),
            )
            .await?,
        )
    }

    async fn make_symlink(
        &self,
        parent: u64,
        name: &str,
        target: &str,
        (uid, gid): (u32, u32),
    ) -> Result<pb::Stat, Errno> {
        let request = pb::MakeSymlinkRequest {
            volume: self.volume(),
            parent,
            name: name.to_owned(),
            target: target.to_owned(),
            uid,
            gid,
        };
        stat_of(
            call(
                "MakeSymlink",
                self.client().await.filesystem().make_symlink(request),
            )
            .await?,
        )
    }

    async fn link(&self, inode: u64, new_parent: u64, new_name: &str) -> Result<pb::Stat, Errno> {
        let request = pb::LinkRequest {
            volume: self.volume(),
            inode,
            new_parent,
            new_name: new_name.to_owned(),
        };
        stat_of(call("Link", self.client().await.filesystem().link(request)).await?)
    }

    async fn unlink(&self, parent: u64, name: &str, removal: Removal) -> Result<Unlinked, Errno> {
        let request = pb::UnlinkRequest {
            volume: self.volume(),
            parent,
            name: name.to_owned(),
            directory: removal == Removal::Directory,
        };
        let response = call("Unlink", self.client().await.filesystem().unlink(request)).await?;
        Ok(Unlinked {
            revision: response.revision,
            inode: response.inode,
            gone: response.links_left == 0,
        })
    }

    async fn rename(
        &self,
        (parent, name): (u64, &str),
        (new_parent, new_name): (u64, &str),
        replace: Replace,
    ) -> Result<u64, Errno> {
        let request = pb::RenameAtRequest {
            volume: self.volume(),
            parent,
            name: name.to_owned(),
            new_parent,
            new_name: new_name.to_owned(),
            no_replace: replace == Replace::Never,
        };
        Ok(
            call("Rename", self.client().await.filesystem().rename(request))
                .await?
                .revision,
        )
    }

    async fn read(&self, inode: u64, offset: u64, length: u64) -> Result<Vec<u8>, Errno> {
        let request = pb::ReadRequest {
            volume: self.volume(),
            inode,
            offset,
            length,
        };
        let mut filesystem = self.client().await.filesystem();
        let collect = async move {
            let mut stream = filesystem.read(request).await?.into_inner();
            let mut data = Vec::with_capacity(length.min(WRITE_MESSAGE_MAX as u64 * 4) as usize);
            while let Some(chunk) = stream.next().await {
                data.extend_from_slice(&chunk?.data);
            }
            Ok::<_, Status>(tonic::Response::new(data))
        };
        call("Read", collect).await
    }

    async fn write(&self, inode: u64, offset: u64, data: &[u8]) -> Result<(u64, pb::Stat), Errno> {
        let volume = self.volume();
        let messages: Vec<pb::WriteChunk> = data
            .chunks(WRITE_MESSAGE_MAX)
            .enumerate()
            .map(|(index, piece)| {
                let first = index == 0;
                pb::WriteChunk {
                    volume: if first { volume.clone() } else { String::new() },
                    inode: if first { inode } else { 0 },
                    offset: if first { offset } else { 0 },
                    data: piece.to_vec(),
                    // Acknowledged once logged; fsync(2) makes it durable.
                    lazy: first,
                }
            })
            .collect();
        let response = call(
            "Write",
            self.client()
                .await
                .filesystem()
                .write(tokio_stream::iter(messages)),
        )
        .await?;
        Ok((
            response.written,
            stat_of(response.attr.unwrap_or_default())?,
        ))
    }

    async fn fsync(&self, inode: u64) -> Result<(), Errno> {
        let request = pb::FsyncRequest {
            volume: self.volume(),
            inode,
        };
        call("Fsync", self.client().await.filesystem().fsync(request)).await?;
        Ok(())
    }

    async fn statfs(&self) -> Result<pb::StatFsResponse, Errno> {
        let request = pb::StatFsRequest {
            volume: self.volume(),
        };
        call("StatFs", self.client().await.filesystem().stat_fs(request)).await
    }

    fn connection_lost(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    async fn watch(&self, after_revision: u64) -> Result<WatchStream, Status> {
        let request = pb::WatchRequest {
            prefix: String::new(),
            after_revision,
            volume: self.volume(),
        };
        let stream = self
            .client()
            .await
            .storage()
            .watch(request)
            .await?
            .into_inner();
        Ok(Box::pin(stream))
    }
}
