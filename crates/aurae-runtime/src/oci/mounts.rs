//! `root` and `mounts` -> the cell's root filesystem and [`Mount`]s.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount as OciMount, Root};

use super::NotApplied;
use super::error::OciError;
use crate::spec::{AbsolutePath, Mount, MountKind};

/// Mount options aurae accepts without applying: access-time and propagation flags and
/// the device/exec/suid restrictions that `runc spec` puts on its default mounts.
const FLAGS_NOT_APPLIED: &[&str] = &[
    "nosuid",
    "nodev",
    "noexec",
    "strictatime",
    "relatime",
    "noatime",
    "nodiratime",
    "private",
    "rprivate",
    "slave",
    "rslave",
    "shared",
    "rshared",
];
/// Option prefixes accepted without applying (`mode=1777`).
const PREFIXES_NOT_APPLIED: &[&str] = &["mode="];

/// The standard mounts of `runc spec` that the runtime makes itself in every cell with a
/// root filesystem, by destination and type.
const PROVIDED: &[(&str, &str)] = &[
    ("/dev", "tmpfs"),
    ("/dev/pts", "devpts"),
    ("/dev/mqueue", "mqueue"),
    ("/sys", "sysfs"),
    ("/sys/fs/cgroup", "cgroup"),
    ("/sys/fs/cgroup", "cgroup2"),
];

/// The root filesystem, its read-only flag.
pub(crate) fn translate_root(
    bundle_dir: &Path,
    root: Option<&Root>,
) -> Result<(AbsolutePath, bool), OciError> {
    let root = root.ok_or_else(|| {
        OciError::invalid(
            "root",
            "a bundle names its root filesystem, e.g. {\"path\": \"rootfs\"}",
        )
    })?;
    let path = resolve_dir(bundle_dir, root.path(), "root.path")?;
    Ok((path, root.readonly().unwrap_or(false)))
}

/// The mounts aurae makes, in order; the standard ones the runtime provides are skipped
/// and recorded in `not_applied`.
pub(crate) fn translate_mounts(
    bundle_dir: &Path,
    mounts: &[OciMount],
    not_applied: &mut Vec<NotApplied>,
) -> Result<Vec<Mount>, OciError> {
    let mut out = Vec::new();
    for (i, mount) in mounts.iter().enumerate() {
        if let Some(mount) = translate_mount(bundle_dir, i, mount, not_applied)? {
            out.push(mount);
        }
    }
    Ok(out)
}

fn translate_mount(
    bundle_dir: &Path,
    i: usize,
    mount: &OciMount,
    not_applied: &mut Vec<NotApplied>,
) -> Result<Option<Mount>, OciError> {
    let field = format!("mounts[{i}]");
    for (key, present) in [
        ("uidMappings", mount.uid_mappings().is_some()),
        ("gidMappings", mount.gid_mappings().is_some()),
    ] {
        if present {
            return Err(OciError::unsupported(
                format!("{field}.{key}"),
                "aurae does not make id-mapped mounts",
            ));
        }
    }
    let destination =
        AbsolutePath::parse("destination", mount.destination().clone()).map_err(|_| {
            OciError::invalid(
                format!("{field}.destination"),
                format!(
                    "'{}' must be an absolute path without '..'",
                    mount.destination().display()
                ),
            )
        })?;
    let options: &[String] = mount.options().as_deref().unwrap_or_default();
    let is_bind = mount.typ().as_deref() == Some("bind")
        || options.iter().any(|o| o == "bind" || o == "rbind");
    let typ = mount.typ().as_deref().unwrap_or_default();
    let dest = destination.as_path().to_string_lossy();
    if !is_bind && PROVIDED.contains(&(dest.as_ref(), typ)) {
        not_applied.push(NotApplied::new(
            field,
            format!("the runtime provides {dest} ({typ}) itself"),
        ));
        return Ok(None);
    }
    let parsed = Options::parse(&field, options)?;
    if !parsed.not_applied.is_empty() {
        not_applied.push(NotApplied::new(
            format!("{field}.options"),
            format!("{} are not applied", parsed.not_applied.join(", ")),
        ));
    }
    let kind = if is_bind {
        let source = mount.source().as_ref().ok_or_else(|| {
            OciError::invalid(format!("{field}.source"), "a bind mount names its source")
        })?;
        let source = resolve_existing(bundle_dir, source, &format!("{field}.source"))?;
        MountKind::Bind {
            source,
            read_only: parsed.read_only,
        }
    } else {
        match typ {
            "proc" => MountKind::Proc,
            "tmpfs" => MountKind::Tmpfs { size: parsed.size },
            "" => {
                return Err(OciError::invalid(
                    format!("{field}.type"),
                    "give the filesystem type (proc, tmpfs or bind)",
                ));
            }
            other => {
                return Err(OciError::unsupported(
                    format!("{field}.type"),
                    format!("'{other}' mounts are not made by aurae; use proc, tmpfs or bind"),
                ));
            }
        }
    };
    if parsed.read_only && !matches!(kind, MountKind::Bind { .. }) {
        return Err(OciError::unsupported(
            format!("{field}.options"),
            "only bind mounts can be read-only in aurae",
        ));
    }
    if parsed.size.is_some() && !matches!(kind, MountKind::Tmpfs { .. }) {
        return Err(OciError::unsupported(
            format!("{field}.options"),
            "size= applies to tmpfs mounts only",
        ));
    }
    Ok(Some(Mount { destination, kind }))
}

/// What a mount's options ask for.
struct Options {
    read_only: bool,
    size: Option<u64>,
    not_applied: Vec<String>,
}

impl Options {
    fn parse(field: &str, options: &[String]) -> Result<Self, OciError> {
        let mut parsed = Options {
            read_only: false,
            size: None,
            not_applied: Vec::new(),
        };
        for (j, option) in options.iter().enumerate() {
            let option = option.as_str();
            match option {
                "ro" => parsed.read_only = true,
                "rw" => parsed.read_only = false,
                "bind" | "rbind" => {}
                _ if option.starts_with("size=") => {
                    parsed.size = Some(parse_size(&format!("{field}.options[{j}]"), &option[5..])?)
                }
                _ if FLAGS_NOT_APPLIED.contains(&option)
                    || PREFIXES_NOT_APPLIED.iter().any(|p| option.starts_with(p)) =>
                {
                    parsed.not_applied.push(option.to_owned())
                }
                _ => {
                    return Err(OciError::unsupported(
                        format!("{field}.options[{j}]"),
                        format!("aurae does not know the mount option '{option}'"),
                    ));
                }
            }
        }
        Ok(parsed)
    }
}

/// A tmpfs size as the kernel reads it: bytes, or a number with a k, m or g suffix.
fn parse_size(field: &str, text: &str) -> Result<u64, OciError> {
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (&text[..at], 10),
        Some((at, 'm' | 'M')) => (&text[..at], 20),
        Some((at, 'g' | 'G')) => (&text[..at], 30),
        _ => (text, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| {
            OciError::invalid(
                field,
                format!("size '{text}' is not a byte count such as 65536k, 64m or 1g"),
            )
        })
}

/// `path`, relative to the bundle directory unless absolute, resolved on the host; it
/// must exist.
fn resolve_existing(bundle_dir: &Path, path: &Path, field: &str) -> Result<AbsolutePath, OciError> {
    let joined: PathBuf = bundle_dir.join(path);
    let resolved = joined.canonicalize().map_err(|e| {
        OciError::invalid(
            field,
            format!("'{}' cannot be resolved: {e}", joined.display()),
        )
    })?;
    AbsolutePath::parse("path", resolved.clone()).map_err(|_| {
        OciError::invalid(
            field,
            format!(
                "'{}' did not resolve to an absolute path",
                resolved.display()
            ),
        )
    })
}

fn resolve_dir(bundle_dir: &Path, path: &Path, field: &str) -> Result<AbsolutePath, OciError> {
    let resolved = resolve_existing(bundle_dir, path, field)?;
    if !resolved.as_path().is_dir() {
        return Err(OciError::invalid(
            field,
            format!("'{}' is not a directory", resolved.as_path().display()),
        ));
    }
    Ok(resolved)
}
