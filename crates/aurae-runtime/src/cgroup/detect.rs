//! Reading what the host mounts: a pure function over the text of `/proc/self/mountinfo`
//! and `/proc/self/cgroup`, so that every host shape can be tested without that host.
//!
//! It decides v1 (with or without a unified cgroup2 mount beside it, "hybrid") or pure v2,
//! and where the calling process's own cgroup is in each hierarchy. It never touches the
//! filesystem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::CgroupError;

/// The v1 controllers a cell is placed under; other v1 hierarchies (named ones such as
/// `name=systemd`, `net_cls`, `perf_event`) are left alone.
pub(crate) const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "pids", "freezer", "blkio", "devices",
];

/// One v1 hierarchy: the controllers mounted together and the process's own cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Own {
    /// The controllers of [`V1_CONTROLLERS`] this hierarchy carries (`cpu`, `cpuacct`).
    pub controllers: Vec<String>,
    /// The directory of the process's own cgroup in it.
    pub dir: PathBuf,
}

/// The cgroup2 mount and the process's own cgroup in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V2Own {
    /// The directory of the process's own cgroup.
    pub dir: PathBuf,
    /// Whether that cgroup is the root of the hierarchy (exempt from the
    /// no-internal-process rule).
    pub is_root: bool,
}

/// What the host mounts, as seen by the calling process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostLayout {
    /// One cgroup2 hierarchy carries every controller.
    V2(V2Own),
    /// Controllers sit in v1 hierarchies; a cgroup2 mount may sit beside them (hybrid).
    V1 {
        /// The v1 hierarchies, one per mount, in mount order.
        hierarchies: Vec<V1Own>,
        /// The unified cgroup2 mount of a hybrid host.
        unified: Option<V2Own>,
    },
}

/// One cgroup or cgroup2 line of mountinfo.
#[derive(Debug)]
struct CgroupMount {
    /// `None` for cgroup2, else the v1 controllers it carries.
    controllers: Option<Vec<String>>,
    /// Where it is mounted.
    mount_point: PathBuf,
    /// The cgroup at the mount point (`/` unless bind-mounted from below).
    root: String,
}

/// Decides the host's layout from the two files' text.
pub(crate) fn parse(mountinfo: &str, proc_cgroup: &str) -> Result<HostLayout, CgroupError> {
    let mounts = cgroup_mounts(mountinfo);
    let (v1_paths, v2_path) = own_paths(proc_cgroup);
    let mut hierarchies: Vec<V1Own> = Vec::new();
    let mut unified = None;
    for mount in &mounts {
        match &mount.controllers {
            None if unified.is_none() => {
                unified = v2_path
                    .as_deref()
                    .map(|own| own_dir(mount, own))
                    .transpose()?;
            }
            None => {}
            Some(controllers) => {
                let taken = hierarchies
                    .iter()
                    .any(|h| h.controllers.iter().any(|c| controllers.contains(c)));
                let Some(own) = controllers.iter().find_map(|c| v1_paths.get(c)) else {
                    continue;
                };
                if !taken {
                    hierarchies.push(V1Own {
                        controllers: controllers.clone(),
                        dir: own_dir(mount, own)?.dir,
                    });
                }
            }
        }
    }
    match (hierarchies.is_empty(), unified) {
        (false, unified) => Ok(HostLayout::V1 {
            hierarchies,
            unified,
        }),
        (true, Some(own)) => Ok(HostLayout::V2(own)),
        (true, None) => Err(CgroupError::NoCgroupFs),
    }
}

/// The cgroup mounts of mountinfo, with the v1 ones reduced to the controllers we use.
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut after = after.split(' ');
            let fstype = after.next()?;
            let _source = after.next()?;
            let options = after.next().unwrap_or("");
            let root = unescape(fields.get(3)?);
            let mount_point = PathBuf::from(unescape(fields.get(4)?));
            let controllers = match fstype {
                "cgroup2" => None,
                "cgroup" => {
                    let used: Vec<String> = options
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_owned)
                        .collect();
                    if used.is_empty() {
                        return None;
                    }
                    Some(used)
                }
                _ => return None,
            };
            Some(CgroupMount {
                controllers,
                mount_point,
                root,
            })
        })
        .collect()
}

/// The own path of every v1 controller, and the v2 path (`0::/...`).
fn own_paths(proc_cgroup: &str) -> (BTreeMap<String, String>, Option<String>) {
    let mut v1 = BTreeMap::new();
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_owned());
        } else {
            for controller in controllers.split(',') {
                v1.insert(controller.to_owned(), path.to_owned());
            }
        }
    }
    (v1, v2)
}

/// The directory of cgroup `own` (a path from the hierarchy root) under `mount`.
fn own_dir(mount: &CgroupMount, own: &str) -> Result<V2Own, CgroupError> {
    let own = own.trim_end_matches(" (deleted)");
    let relative =
        Path::new(own)
            .strip_prefix(&mount.root)
            .map_err(|_| CgroupError::NotVisible {
                cgroup: own.to_owned(),
                mount_point: mount.mount_point.clone(),
            })?;
    Ok(V2Own {
        dir: mount.mount_point.join(relative),
        is_root: relative.as_os_str().is_empty() && mount.root == "/",
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(crate) fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/1f58
3:cpuset:/
1:cpu,cpuacct:/
0::/
";

    #[test]
    fn a_hybrid_host_is_v1_with_a_unified_mount_and_own_paths() {
        let layout = parse(HYBRID_MOUNTINFO, HYBRID_CGROUP).unwrap();
        let HostLayout::V1 {
            hierarchies,
            unified,
        } = layout
        else {
            panic!("not v1: {layout:?}");
        };
        let dirs: Vec<(String, PathBuf)> = hierarchies
            .iter()
            .map(|h| (h.controllers.join(","), h.dir.clone()))
            .collect();
        assert_eq!(
            dirs,
            vec![
                ("cpu,cpuacct".into(), "/sys/fs/cgroup/cpu,cpuacct".into()),
                ("cpuset".into(), "/sys/fs/cgroup/cpuset".into()),
                (
                    "memory".into(),
                    "/sys/fs/cgroup/memory/process_api/1f58".into()
                ),
                ("freezer".into(), "/sys/fs/cgroup/freezer".into()),
                ("pids".into(), "/sys/fs/cgroup/pids".into()),
            ]
        );
        assert_eq!(
            unified,
            Some(V2Own {
                dir: "/sys/fs/cgroup/unified".into(),
                is_root: true
            })
        );
    }

    #[test]
    fn a_pure_v2_host_is_v2_and_knows_whether_it_sits_in_the_root() {
        let mountinfo = "\
25 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
        let layout = parse(mountinfo, "0::/\n").unwrap();
        assert_eq!(
            layout,
            HostLayout::V2(V2Own {
                dir: "/sys/fs/cgroup".into(),
                is_root: true
            })
        );
        let layout = parse(mountinfo, "0::/system.slice/auraed.service\n").unwrap();
        assert_eq!(
            layout,
            HostLayout::V2(V2Own {
                dir: "/sys/fs/cgroup/system.slice/auraed.service".into(),
                is_root: false
            })
        );
    }

    #[test]
    fn no_cgroup_mount_is_an_error_and_escapes_are_undone() {
        assert!(matches!(
            parse("22 1 0:21 / /proc rw - proc proc rw\n", "0::/\n"),
            Err(CgroupError::NoCgroupFs)
        ));
        assert_eq!(unescape(r"/mnt/my\040cgroup"), "/mnt/my cgroup");
        assert_eq!(unescape(r"a\\b"), r"a\\b");
    }

    #[test]
    fn a_process_outside_the_mounted_subtree_is_refused() {
        let mountinfo = "25 1 0:22 /lxc/c1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert!(matches!(
            parse(mountinfo, "0::/other\n"),
            Err(CgroupError::NotVisible { .. })
        ));
        let inside = parse(mountinfo, "0::/lxc/c1/app\n").unwrap();
        assert_eq!(
            inside,
            HostLayout::V2(V2Own {
                dir: "/sys/fs/cgroup/app".into(),
                is_root: false
            })
        );
    }
}
