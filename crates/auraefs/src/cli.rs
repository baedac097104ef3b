//! The command lines auraefs answers to: `auraefs mount|umount`, and the mount(8) helper
//! syntax `mount.fuse.auraefs <volume> <dir> -o <options>` when run under that name.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

pub use aurae_client::cli::ConnectArgs;
use clap::{Args, Parser, Subcommand};

/// The name mount(8) runs for `-t fuse.auraefs` (a link to the auraefs binary).
pub const HELPER_NAME: &str = "mount.fuse.auraefs";

/// Mount an Aurae volume as a filesystem (FUSE), or unmount one.
///
/// auraefs talks to auraed over its socket with your own client certificate, exactly
/// like `aurae`: --sock/--config/--ca/--cert/--key, else AURAE_SOCKET, else
/// ~/.aurae/config.toml. Install it as mount(8)'s helper with
/// `ln -s $(command -v auraefs) /sbin/mount.fuse.auraefs`; then
/// `mount -t fuse.auraefs <volume> <dir>` and fstab lines such as
/// `data /mnt/data fuse.auraefs allow_other,default_permissions 0 0` work.
#[derive(Debug, Parser)]
#[command(name = "auraefs", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount a volume on a directory; returns once the mount is live.
    Mount(MountArgs),
    /// Unmount a mounted volume.
    #[command(visible_alias = "unmount")]
    Umount {
        /// The mount point.
        mountpoint: PathBuf,
        /// Detach now even if busy; it goes away when the last file closes.
        #[arg(short, long)]
        lazy: bool,
    },
}

/// `auraefs mount`.
#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// The volume (`aurae volume ls`), or `default` for the default namespace.
    pub volume: String,
    /// An existing, empty directory that is not a mount point.
    pub mountpoint: PathBuf,
    /// Mount options, comma-separated: ro, allow_other, allow_root, default_permissions,
    /// fsname=NAME, noexec, noatime, sync, sock=PATH, config=FILE, log=FILE, ...
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Stay in the foreground (logs to stderr; Ctrl-C unmounts).
    #[arg(short, long)]
    pub foreground: bool,
    /// Log more (debug level); RUST_LOG overrides.
    #[arg(short, long)]
    pub verbose: bool,
}

/// `mount.fuse.auraefs <volume> <dir> [-sfnv] [-o options] [-t type]`, as mount(8) runs it.
#[derive(Debug, Parser)]
#[command(name = HELPER_NAME, version, about = "mount(8) helper for fuse.auraefs")]
pub struct HelperCli {
    /// The volume (fstab's first field).
    pub volume: String,
    /// The mount point.
    pub mountpoint: PathBuf,
    /// Mount options.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// The type mount(8) resolved (`fuse.auraefs`); informative only.
    #[arg(short = 't', value_name = "TYPE")]
    pub fstype: Option<String>,
    /// Fake: check everything but do not mount.
    #[arg(short = 'f')]
    pub fake: bool,
    /// Do not write /etc/mtab (there is none to write).
    #[arg(short = 'n')]
    pub no_mtab: bool,
    /// Sloppy (accepted for mount(8); unknown options are still refused).
    #[arg(short = 's')]
    pub sloppy: bool,
    /// Verbose.
    #[arg(short = 'v')]
    pub verbose: bool,
}

impl HelperCli {
    /// The helper's request in `auraefs mount` terms.
    pub fn into_mount(self) -> MountArgs {
        MountArgs {
            volume: self.volume,
            mountpoint: self.mountpoint,
            options: self.options,
            foreground: false,
            verbose: self.verbose,
        }
    }
}

/// Whether the arguments are `<volume> <dir> -o ...` rather than a subcommand: how
/// mount.fuse3 runs `auraefs` for `mount -t fuse.auraefs` without a mount.fuse.auraefs link.
pub fn called_with_helper_syntax(first: Option<&OsStr>) -> bool {
    first.and_then(OsStr::to_str).is_some_and(|arg| {
        !arg.starts_with('-') && !["mount", "umount", "unmount", "help"].contains(&arg)
    })
}

/// Whether the program was started as mount(8)'s helper.
pub fn started_as_helper(argv0: Option<&OsStr>) -> bool {
    argv0
        .and_then(|arg| Path::new(arg).file_name())
        .is_some_and(|name| name == HELPER_NAME)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cli_reference_in_docs_is_current() {
        use clap::CommandFactory;
        let file =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/cli/auraefs.md");
        let markdown = aurae_client::reference::markdown(super::Cli::command());
        if let Err(stale) = aurae_client::reference::check_or_update(&file, &markdown) {
            panic!("{stale}");
        }
    }

    /// The man pages the Debian package ships (`packaging/man/auraefs*.1`).
    #[test]
    fn the_man_pages_are_current() {
        let pages = aurae_manpages::render(Cli::command(), aurae_manpages::Section::UserCommands);
        let dir = aurae_manpages::committed_dir(env!("CARGO_MANIFEST_DIR"));
        if let Err(stale) = aurae_manpages::check_or_update(&dir, "auraefs", &pages) {
            panic!("{stale}");
        }
    }

    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
        HelperCli::command().debug_assert();
    }

    #[test]
    fn the_helper_is_recognised_by_its_name_only() {
        assert!(started_as_helper(Some(OsStr::new(
            "/sbin/mount.fuse.auraefs"
        ))));
        assert!(started_as_helper(Some(OsStr::new("mount.fuse.auraefs"))));
        assert!(!started_as_helper(Some(OsStr::new("/usr/bin/auraefs"))));
        assert!(!started_as_helper(None));
    }

    #[test]
    fn mount_fuse3s_syntax_is_told_from_subcommands() {
        assert!(called_with_helper_syntax(Some(OsStr::new("data"))));
        assert!(!called_with_helper_syntax(Some(OsStr::new("mount"))));
        assert!(!called_with_helper_syntax(Some(OsStr::new("umount"))));
        assert!(!called_with_helper_syntax(Some(OsStr::new("--sock"))));
        assert!(!called_with_helper_syntax(None));
    }

    #[test]
    fn the_helper_takes_mount8s_argument_order() {
        let cli = HelperCli::try_parse_from([
            "mount.fuse.auraefs",
            "data",
            "/mnt/data",
            "-n",
            "-o",
            "rw,allow_other",
            "-t",
            "fuse.auraefs",
        ])
        .unwrap();
        assert!(cli.no_mtab);
        assert_eq!(cli.fstype.as_deref(), Some("fuse.auraefs"));
        let mount = cli.into_mount();
        assert_eq!(mount.volume, "data");
        assert_eq!(mount.mountpoint, PathBuf::from("/mnt/data"));
        assert_eq!(mount.options, ["rw,allow_other"]);
        assert!(!mount.foreground);
    }

    #[test]
    fn mount_takes_repeated_o_and_foreground() {
        let cli = Cli::try_parse_from([
            "auraefs", "mount", "data", "/mnt", "-o", "ro", "-o", "noexec", "-f",
        ])
        .unwrap();
        let Command::Mount(args) = cli.command else {
            panic!("not a mount");
        };
        assert_eq!(args.options, ["ro", "noexec"]);
        assert!(args.foreground);
    }
}
