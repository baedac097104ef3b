//! The kernel's `favordynmods` cgroup mount option: fast process migrations.
//!
//! Every migration into a cgroup (each cell's init and each executable joins its cgroup
//! by writing `cgroup.procs`) takes a lock whose writers wait for an RCU grace period:
//! about 8 ms per start on a default kernel. `favordynmods` makes the lock's readers
//! (fork and exit) slightly slower instead, which is the kernel's documented trade-off
//! for hosts that change cgroups often, as a cell runtime does. The lock is global, so
//! one hierarchy with the option covers them all; the option exists since Linux 6.0.
//!
//! Turning it on remounts that hierarchy with every option it has plus this one: the
//! plan is a pure function of mountinfo's text, tested without a host.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::CgroupError;

/// The mount option's name.
pub const OPTION: &str = "favordynmods";

/// How to remount one cgroup hierarchy with `favordynmods` added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemountPlan {
    /// The hierarchy's mount point.
    pub target: PathBuf,
    /// Its per-mount flags, repeated (a remount clears the ones not given).
    pub flags: MsFlags,
    /// Its superblock options with `favordynmods` added.
    pub data: String,
}

/// The state of the host, as far as migrations go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DynMods {
    /// A hierarchy already has the option (this process's doing or the host's).
    On(PathBuf),
    /// No hierarchy has it: the plan that would turn it on.
    Off(RemountPlan),
    /// No cgroup hierarchy is mounted.
    NoHierarchy,
}

/// Reads the state from mountinfo's text: the cgroup2 mount is preferred, else the first
/// v1 hierarchy.
pub fn state(mountinfo: &str) -> DynMods {
    let mut candidates: Vec<(bool, RemountPlan, bool)> = Vec::new();
    for line in mountinfo.lines() {
        let Some((mount_part, fs_part)) = line.split_once(" - ") else {
            continue;
        };
        let mount_fields: Vec<&str> = mount_part.split(' ').collect();
        let fs_fields: Vec<&str> = fs_part.split(' ').collect();
        let (Some(point), Some(mount_opts), Some(fstype), Some(super_opts)) = (
            mount_fields.get(4),
            mount_fields.get(5),
            fs_fields.first(),
            fs_fields.get(2),
        ) else {
            continue;
        };
        let is_v2 = match *fstype {
            "cgroup2" => true,
            "cgroup" => false,
            _ => continue,
        };
        let has = super_opts.split(',').any(|o| o == OPTION);
        let mut data: Vec<&str> = super_opts
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro"))
            .collect();
        data.push(OPTION);
        let plan = RemountPlan {
            target: PathBuf::from(super::detect::unescape(point)),
            flags: mount_flags(mount_opts),
            data: data.join(","),
        };
        candidates.push((is_v2, plan, has));
    }
    if let Some((_, plan, _)) = candidates.iter().find(|(_, _, has)| *has) {
        return DynMods::On(plan.target.clone());
    }
    candidates.sort_by_key(|(is_v2, _, _)| !is_v2);
    match candidates.into_iter().next() {
        Some((_, plan, _)) => DynMods::Off(plan),
        None => DynMods::NoHierarchy,
    }
}

/// The remount flags that keep a mount's per-mount options (mountinfo field 6).
fn mount_flags(options: &str) -> MsFlags {
    let mut flags = MsFlags::MS_REMOUNT;
    for option in options.split(',') {
        flags |= match option {
            "ro" => MsFlags::MS_RDONLY,
            "nosuid" => MsFlags::MS_NOSUID,
            "nodev" => MsFlags::MS_NODEV,
            "noexec" => MsFlags::MS_NOEXEC,
            "noatime" => MsFlags::MS_NOATIME,
            "nodiratime" => MsFlags::MS_NODIRATIME,
            "relatime" => MsFlags::MS_RELATIME,
            "strictatime" => MsFlags::MS_STRICTATIME,
            _ => MsFlags::empty(),
        };
    }
    flags
}

/// Turns `favordynmods` on unless a hierarchy has it; returns the mount that has it now.
pub fn favor() -> Result<PathBuf, CgroupError> {
    let mountinfo = super::files::read(Path::new("/proc/self/mountinfo"))?;
    match state(&mountinfo) {
        DynMods::On(target) => Ok(target),
        DynMods::NoHierarchy => Err(CgroupError::NoCgroupFs),
        DynMods::Off(plan) => {
            nix::mount::mount(
                None::<&str>,
                &plan.target,
                None::<&str>,
                plan.flags,
                Some(plan.data.as_str()),
            )
            .map_err(|source| CgroupError::DynMods {
                mount_point: plan.target.clone(),
                source,
            })?;
            Ok(plan.target)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,nosuid,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn the_cgroup2_mount_is_remounted_with_all_its_options_kept() {
        let DynMods::Off(plan) = state(HYBRID) else {
            panic!("expected a plan");
        };
        assert_eq!(plan.target, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(plan.data, "nsdelegate,favordynmods");
        assert_eq!(
            plan.flags,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_RELATIME
        );
    }

    #[test]
    fn a_v1_only_host_remounts_its_first_hierarchy_with_its_controllers() {
        let v1: String = HYBRID.lines().take(2).map(|l| format!("{l}\n")).collect();
        let DynMods::Off(plan) = state(&v1) else {
            panic!("expected a plan");
        };
        assert_eq!(plan.target, Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(plan.data, "cpu,favordynmods");
    }

    #[test]
    fn any_hierarchy_with_the_option_means_it_is_on() {
        let on = HYBRID.replace("rw,cpu", "rw,cpu,favordynmods");
        assert_eq!(state(&on), DynMods::On(PathBuf::from("/sys/fs/cgroup/cpu")));
        assert_eq!(
            state("1 0 0:1 / / rw - ext4 /dev/vda rw\n"),
            DynMods::NoHierarchy
        );
    }
}
