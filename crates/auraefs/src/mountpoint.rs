//! The directory a volume is mounted on: is it usable, is it mounted, and unmounting it.
//!
//! Reads `/proc/self/mountinfo` (the kernel's own view, not a possibly stale mtab) and
//! calls umount2(2). It never mounts anything itself.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::libc;
use nix::mount::{MntFlags, MsFlags};

use crate::error::AuraefsError;
use crate::mount_options::MountSettings;

/// One line of `/proc/self/mountinfo`, the parts we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The filesystem type, e.g. `fuse.auraefs`.
    pub fstype: String,
    /// The source, e.g. the volume name.
    pub source: String,
    /// The device number, `major:minor` (the name of its backing device info in sysfs).
    pub device: String,
}

/// How to unmount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmountMode {
    /// Fail with EBUSY while files are open or a process has its cwd inside.
    Normal,
    /// Detach now; the filesystem goes away when the last user lets go (`umount -l`).
    Lazy,
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            out.push(value as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let separator = fields.iter().position(|f| *f == "-")?;
            Some(MountEntry {
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                device: (*fields.get(2)?).to_owned(),
                fstype: unescape(fields.get(separator + 1)?),
                source: unescape(fields.get(separator + 2)?),
            })
        })
        .collect()
}

/// The mounts this process sees.
pub fn mounts() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| parse_mountinfo(&text))
        .unwrap_or_default()
}

/// The topmost mount at `path`, if `path` is a mount point.
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    mounts().into_iter().rev().find(|m| m.mount_point == path)
}

/// Checks that `path` can be mounted on: it exists, is a directory and is not a mount
/// point already. Returns its canonical path (what mountinfo will show).
pub fn check(path: &Path) -> Result<PathBuf, AuraefsError> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(AuraefsError::MountpointMissing(path.to_owned()));
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(AuraefsError::DeadMount(path.to_owned()));
        }
        Err(source) => {
            return Err(AuraefsError::MountpointInaccessible {
                path: path.to_owned(),
                reason: source,
            });
        }
    };
    if !metadata.is_dir() {
        return Err(AuraefsError::MountpointNotDirectory(path.to_owned()));
    }
    let canonical = path
        .canonicalize()
        .map_err(|source| AuraefsError::MountpointInaccessible {
            path: path.to_owned(),
            reason: source,
        })?;
    if let Some(mount) = mount_at(&canonical) {
        return Err(AuraefsError::AlreadyMounted {
            path: canonical,
            fstype: mount.fstype,
            from: mount.source,
        });
    }
    Ok(canonical)
}

/// The absolute form of `path` without following it (a dead FUSE mount cannot be
/// resolved), then canonicalised where that works.
fn resolve(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_owned())
}

/// The FUSE mount at `path` (after resolving it), or why it is not one.
fn fuse_mount_at(path: &Path) -> Result<(PathBuf, MountEntry), AuraefsError> {
    let path = resolve(path);
    let Some(mount) = mount_at(&path) else {
        return Err(AuraefsError::NotMounted(path));
    };
    if mount.fstype != "fuse" && !mount.fstype.starts_with("fuse.") {
        return Err(AuraefsError::NotAuraefs {
            path,
            fstype: mount.fstype,
        });
    }
    Ok((path, mount))
}

/// Changes the flags of the mount at `path` (`mount -o remount,ro`): what mount(8) asks
/// the helper for when it remounts.
pub fn remount(path: &Path, settings: &MountSettings) -> Result<(), AuraefsError> {
    let (path, _) = fuse_mount_at(path)?;
    nix::mount::mount(
        None::<&str>,
        &path,
        None::<&str>,
        MsFlags::MS_REMOUNT | settings.ms_flags(),
        None::<&str>,
    )
    .map_err(|errno| AuraefsError::Remount {
        path: path.clone(),
        reason: std::io::Error::from(errno),
    })
}

/// Unmounts the FUSE mount at `path`.
pub fn unmount(path: &Path, mode: UnmountMode) -> Result<(), AuraefsError> {
    let (path, _) = fuse_mount_at(path)?;
    let flags = match mode {
        UnmountMode::Normal => MntFlags::empty(),
        UnmountMode::Lazy => MntFlags::MNT_DETACH,
    };
    nix::mount::umount2(&path, flags).map_err(|errno| match errno {
        nix::errno::Errno::EBUSY => AuraefsError::Busy(path.clone()),
        nix::errno::Errno::EPERM => AuraefsError::UnmountNotPermitted(path.clone()),
        other => AuraefsError::Unmount {
            path: path.clone(),
            reason: std::io::Error::from(other),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
98 22 0:52 / /mnt/my\\040data rw,nosuid,nodev,relatime shared:50 - fuse.auraefs photos rw,user_id=0,group_id=0
99 22 0:53 / /tmp/x rw - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_lines_give_point_type_and_source() {
        let mounts = parse_mountinfo(SAMPLE);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[1].mount_point, PathBuf::from("/mnt/my data"));
        assert_eq!(mounts[1].fstype, "fuse.auraefs");
        assert_eq!(mounts[1].device, "0:52");
        assert_eq!(mounts[1].source, "photos");
        assert_eq!(mounts[0].mount_point, PathBuf::from("/"));
    }

    #[test]
    fn escapes_are_undone_and_lone_backslashes_kept() {
        assert_eq!(unescape("a\\040b\\011c\\134d"), "a b\tc\\d");
        assert_eq!(unescape("x\\"), "x\\");
        assert_eq!(unescape("x\\04"), "x\\04");
    }

    #[test]
    fn a_missing_mountpoint_is_reported_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        assert!(matches!(
            check(&missing),
            Err(AuraefsError::MountpointMissing(_))
        ));
    }

    #[test]
    fn a_file_is_not_a_mountpoint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            check(&file),
            Err(AuraefsError::MountpointNotDirectory(_))
        ));
    }

    #[test]
    fn the_root_is_already_a_mount_point() {
        assert!(matches!(
            check(Path::new("/")),
            Err(AuraefsError::AlreadyMounted { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            check(dir.path()).unwrap(),
            dir.path().canonicalize().unwrap()
        );
    }
}
