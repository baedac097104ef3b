//! `-o` mount options, as `auraefs mount -o`, `mount -t fuse.auraefs -o` and fstab give them.
//!
//! Turns the option list into [`MountSettings`]: what the kernel mount gets (flags and
//! the FUSE data string), who may use the mount, and where auraed is. Options mount(8)
//! passes to every helper (`rw`, `defaults`, `_netdev`, ...) are accepted and ignored;
//! an option nobody knows is an error, never silently dropped.

use std::path::PathBuf;

use fuser::{MountOption, SessionACL};
use nix::mount::MsFlags;

/// Why an option list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// An option auraefs does not know.
    #[error(
        "unknown mount option '{0}'; auraefs understands ro, rw, remount, allow_other, allow_root, default_permissions, fsname=, subtype=, noexec, nosuid, nodev, noatime, nodiratime, sync, dirsync, sock=, config=, ca=, cert=, key=, log= and ignores mount(8)'s generic options"
    )]
    Unknown(String),
    /// An option that needs a value got none.
    #[error("mount option '{0}=' needs a value, e.g. {0}=/path")]
    MissingValue(String),
    /// An option auraefs cannot honour.
    #[error("mount option '{option}' is not supported: {why}")]
    Unsupported {
        /// The option.
        option: String,
        /// Why not, and what to do instead.
        why: &'static str,
    },
}

/// Who may use the mount besides the user who mounted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Only the mounting user (FUSE's default).
    #[default]
    Owner,
    /// The mounting user and root (`allow_root`).
    OwnerAndRoot,
    /// Every user (`allow_other`).
    Everyone,
}

/// Where to reach auraed, when fstab says it (overrides flags and config like `--sock`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOverrides {
    /// `sock=`: auraed's socket.
    pub socket: Option<PathBuf>,
    /// `config=`: the client config file.
    pub config: Option<PathBuf>,
    /// `ca=`: the CA certificate.
    pub ca_cert: Option<PathBuf>,
    /// `cert=`: the client certificate.
    pub client_cert: Option<PathBuf>,
    /// `key=`: the client key.
    pub client_key: Option<PathBuf>,
}

/// Everything the options decide about one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSettings {
    /// `ro`: the kernel refuses every change with EROFS.
    pub read_only: bool,
    /// `allow_other` / `allow_root`.
    pub access: Access,
    /// `default_permissions`: the kernel checks mode bits and ownership.
    pub default_permissions: bool,
    /// `fsname=`: the source shown in /proc/mounts (default: the volume).
    pub fsname: Option<String>,
    /// `subtype=`: the type shown as `fuse.<subtype>` (default: `auraefs`).
    pub subtype: Option<String>,
    /// Restrictive flags asked for (`noexec`, `noatime`, `sync`, ...).
    pub flags: MsFlags,
    /// `sock=`, `config=`, `ca=`, `cert=`, `key=`.
    pub connect: ConnectOverrides,
    /// `log=`: where the daemon writes its log.
    pub log_file: Option<PathBuf>,
    /// `remount`: change the flags (`ro`/`rw`) of the existing mount instead of mounting.
    pub remount: bool,
}

impl Default for MountSettings {
    fn default() -> Self {
        Self {
            read_only: false,
            access: Access::Owner,
            default_permissions: false,
            fsname: None,
            subtype: None,
            flags: MsFlags::empty(),
            connect: ConnectOverrides::default(),
            log_file: None,
            remount: false,
        }
    }
}

/// Options mount(8) hands to every helper, meaningless or default here.
const IGNORED: &[&str] = &[
    "rw",
    "defaults",
    "dev",
    "suid",
    "exec",
    "atime",
    "diratime",
    "relatime",
    "strictatime",
    "async",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "nonempty",
    "silent",
    "loud",
];

fn flag_of(option: &str) -> Option<MsFlags> {
    Some(match option {
        "noexec" => MsFlags::MS_NOEXEC,
        "nosuid" => MsFlags::MS_NOSUID,
        "nodev" => MsFlags::MS_NODEV,
        "noatime" => MsFlags::MS_NOATIME,
        "nodiratime" => MsFlags::MS_NODIRATIME,
        "sync" => MsFlags::MS_SYNCHRONOUS,
        "dirsync" => MsFlags::MS_DIRSYNC,
        _ => return None,
    })
}

impl MountSettings {
    /// Parses option lists such as `["ro,allow_other", "fsname=data"]` (one per `-o`).
    pub fn parse<S: AsRef<str>>(lists: &[S]) -> Result<Self, OptionError> {
        let mut settings = Self::default();
        for option in lists
            .iter()
            .flat_map(|list| list.as_ref().split(','))
            .map(str::trim)
            .filter(|option| !option.is_empty())
        {
            settings.apply(option)?;
        }
        Ok(settings)
    }

    fn apply(&mut self, option: &str) -> Result<(), OptionError> {
        if let Some((key, value)) = option.split_once('=') {
            return self.apply_value(key, value);
        }
        match option {
            "ro" => self.read_only = true,
            "rw" => self.read_only = false,
            "allow_other" => self.access = Access::Everyone,
            "allow_root" => self.access = Access::OwnerAndRoot,
            "default_permissions" => self.default_permissions = true,
            "remount" => self.remount = true,
            "auto_unmount" => {
                return Err(OptionError::Unsupported {
                    option: option.to_owned(),
                    why: "it needs fusermount3; auraefs unmounts itself on SIGTERM, use `auraefs umount`",
                });
            }
            _ => match flag_of(option) {
                Some(flag) => self.flags |= flag,
                None if IGNORED.contains(&option) || option.starts_with("x-") => {}
                None => {
                    let known = ["sock", "config", "ca", "cert", "key", "log", "fsname"];
                    return Err(if known.contains(&option) {
                        OptionError::MissingValue(option.to_owned())
                    } else {
                        OptionError::Unknown(option.to_owned())
                    });
                }
            },
        }
        Ok(())
    }

    fn apply_value(&mut self, key: &str, value: &str) -> Result<(), OptionError> {
        let path = || {
            if value.is_empty() {
                Err(OptionError::MissingValue(key.to_owned()))
            } else {
                Ok(Some(PathBuf::from(value)))
            }
        };
        match key {
            "fsname" => self.fsname = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "subtype" => self.subtype = Some(value.to_owned()).filter(|v| !v.is_empty()),
            "sock" => self.connect.socket = path()?,
            "config" => self.connect.config = path()?,
            "ca" => self.connect.ca_cert = path()?,
            "cert" => self.connect.client_cert = path()?,
            "key" => self.connect.client_key = path()?,
            "log" => self.log_file = path()?,
            // Generic options with values that mount(8) or systemd may pass, and the FUSE
            // kernel options mount(8) copies from mountinfo on a remount (auraefs sets
            // those itself).
            "comment" | "context" | "fscontext" | "defcontext" | "rootcontext" | "user_id"
            | "group_id" | "rootmode" | "fd" | "max_read" | "blksize" => {}
            _ if key.starts_with("x-") => {}
            _ => return Err(OptionError::Unknown(format!("{key}={value}"))),
        }
        Ok(())
    }

    /// The mount(2) flags: the options' flags, `ro`, and always `nosuid,nodev` (a FUSE
    /// mount must not let its files gain privileges or open devices).
    pub fn ms_flags(&self) -> MsFlags {
        let mut flags = self.flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if self.read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        flags
    }

    /// The filesystem type for mount(2): `fuse.auraefs` unless `subtype=` says otherwise.
    pub fn fstype(&self) -> String {
        format!("fuse.{}", self.subtype.as_deref().unwrap_or("auraefs"))
    }

    /// The FUSE options of the mount(2) data string after `fd=,rootmode=,user_id=,group_id=`.
    pub fn kernel_options(&self) -> Vec<&'static str> {
        let mut options = Vec::new();
        if self.default_permissions {
            options.push("default_permissions");
        }
        if self.access != Access::Owner {
            // The kernel only knows allow_other; fuser restricts allow_root itself.
            options.push("allow_other");
        }
        options
    }

    /// fuser's view of who may use the mount.
    pub fn acl(&self) -> SessionACL {
        match self.access {
            Access::Owner => SessionACL::Owner,
            Access::OwnerAndRoot => SessionACL::RootAndOwner,
            Access::Everyone => SessionACL::All,
        }
    }

    /// The same settings as fuser mount options, for mounting through fusermount3 when
    /// mount(2) is not permitted (an unprivileged user).
    pub fn fuser_options(&self, default_fsname: &str) -> Vec<MountOption> {
        let mut options = vec![
            MountOption::FSName(
                self.fsname
                    .clone()
                    .unwrap_or_else(|| default_fsname.to_owned()),
            ),
            MountOption::Subtype(self.subtype.clone().unwrap_or_else(|| "auraefs".into())),
            MountOption::NoSuid,
            MountOption::NoDev,
        ];
        if self.read_only {
            options.push(MountOption::RO);
        }
        if self.default_permissions {
            options.push(MountOption::DefaultPermissions);
        }
        let flags = [
            (MsFlags::MS_NOEXEC, MountOption::NoExec),
            (MsFlags::MS_NOATIME, MountOption::NoAtime),
            (MsFlags::MS_SYNCHRONOUS, MountOption::Sync),
            (MsFlags::MS_DIRSYNC, MountOption::DirSync),
        ];
        for (flag, option) in flags {
            if self.flags.contains(flag) {
                options.push(option);
            }
        }
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_options_map_to_settings() {
        let settings =
            MountSettings::parse(&["ro,allow_other,default_permissions,fsname=data"]).unwrap();
        assert!(settings.read_only);
        assert_eq!(settings.access, Access::Everyone);
        assert!(settings.default_permissions);
        assert_eq!(settings.fsname.as_deref(), Some("data"));
        assert_eq!(
            settings.kernel_options(),
            ["default_permissions", "allow_other"]
        );
        assert!(settings.ms_flags().contains(MsFlags::MS_RDONLY));
        assert_eq!(settings.acl(), SessionACL::All);
    }

    #[test]
    fn the_generic_options_of_mount8_are_ignored() {
        let settings = MountSettings::parse(&[
            "rw,dev,suid,exec,auto,nouser,async,_netdev,defaults,noauto,nofail,relatime",
            "x-systemd.automount,x-systemd.requires=auraed.service,comment=systemd.x",
        ])
        .unwrap();
        assert_eq!(settings, MountSettings::default());
        // Ignoring suid and dev keeps the safe defaults.
        assert!(
            settings
                .ms_flags()
                .contains(MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
        );
        assert!(!settings.ms_flags().contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn several_o_flags_add_up_and_the_last_ro_or_rw_wins() {
        let settings = MountSettings::parse(&["ro", "noexec,noatime", "rw"]).unwrap();
        assert!(!settings.read_only);
        assert!(
            settings
                .flags
                .contains(MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME)
        );
    }

    #[test]
    fn connection_options_override_where_auraed_is() {
        let settings =
            MountSettings::parse(&["sock=/run/a.sock,config=/etc/aurae/c.toml,log=/tmp/fs.log"])
                .unwrap();
        assert_eq!(settings.connect.socket, Some(PathBuf::from("/run/a.sock")));
        assert_eq!(
            settings.connect.config,
            Some(PathBuf::from("/etc/aurae/c.toml"))
        );
        assert_eq!(settings.log_file, Some(PathBuf::from("/tmp/fs.log")));
    }

    #[test]
    fn unknown_and_incomplete_options_are_errors_that_name_them() {
        let err = MountSettings::parse(&["ro,bogus"]).unwrap_err();
        assert_eq!(err, OptionError::Unknown("bogus".into()));
        assert!(err.to_string().contains("unknown mount option 'bogus'"));
        assert_eq!(
            MountSettings::parse(&["sock="]).unwrap_err(),
            OptionError::MissingValue("sock".into())
        );
        assert_eq!(
            MountSettings::parse(&["sock"]).unwrap_err(),
            OptionError::MissingValue("sock".into())
        );
        assert!(matches!(
            MountSettings::parse(&["auto_unmount"]).unwrap_err(),
            OptionError::Unsupported { .. }
        ));
    }

    #[test]
    fn remount_is_recognised_with_its_flags() {
        let settings =
            MountSettings::parse(&["remount,ro,user_id=0,group_id=0,default_permissions"]).unwrap();
        assert!(settings.remount && settings.read_only);
        assert!(!MountSettings::parse(&["ro"]).unwrap().remount);
    }

    #[test]
    fn empty_items_and_spaces_are_tolerated() {
        let settings = MountSettings::parse(&[" ro ,, allow_root", ""]).unwrap();
        assert!(settings.read_only);
        assert_eq!(settings.access, Access::OwnerAndRoot);
        assert_eq!(settings.acl(), SessionACL::RootAndOwner);
    }

    #[test]
    fn the_type_is_fuse_auraefs_unless_a_subtype_is_given() {
        assert_eq!(MountSettings::default().fstype(), "fuse.auraefs");
        let settings = MountSettings::parse(&["subtype=data"]).unwrap();
        assert_eq!(settings.fstype(), "fuse.data");
    }

    #[test]
    fn fuser_options_carry_the_same_choices() {
        let settings = MountSettings::parse(&["ro,default_permissions,noexec"]).unwrap();
        let options = settings.fuser_options("vol");
        assert!(options.contains(&MountOption::FSName("vol".into())));
        assert!(options.contains(&MountOption::RO));
        assert!(options.contains(&MountOption::DefaultPermissions));
        assert!(options.contains(&MountOption::NoExec));
    }
}
