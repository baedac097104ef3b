//! Durable, atomic file writes with explicit modes, and the checks that keep private
//! files private.
//!
//! Keys, certificates and state files are written here and nowhere else, so that a crash
//! never leaves a half-written file and a secret is never readable, even for an instant,
//! by anyone but its owner, whatever the umask. A private key that others can read is
//! refused when it is loaded (as OpenSSH and PostgreSQL do), with the `chmod` that fixes
//! it; a private directory found open is closed again, and the caller told what changed.
//! Nothing here ever opens a file to anyone but its owner.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of private keys and other secrets.
pub const SECRET_MODE: u32 = 0o600;
/// Mode of public material (certificates, public keys, configuration without secrets).
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of directories that hold secrets.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Writes `bytes` to `path` atomically: a temporary file with `mode` beside it, fsync,
/// rename over the target, fsync of the directory. Readers see the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; a wider one is never wanted, so set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` and its parents; the last component gets `mode` if it is created here,
/// and parents created on the way get `mode` too (never the umask's wider default), so
/// that a secret's directory is not left world-writable under `umask 000`. An existing
/// `dir` is left as it is (it may be a shared one such as `/tmp`).
pub fn create_dir_with_mode(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// Bits of a mode that give the group or others any access.
const OPEN_BITS: u32 = 0o077;

/// A private file or directory whose mode was narrowed, and the mode it had: what the
/// caller logs, so that an operator learns that something had been open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Narrowed {
    /// The file or directory.
    pub path: PathBuf,
    /// Its mode before (permission bits only).
    pub was: u32,
    /// Its mode now.
    pub now: u32,
}

/// Creates `dir` (and its parents, 0700) if it is missing, then makes it and everything
/// below it private: directories 0700, regular files 0600, whatever the umask or a
/// previous owner left. Symbolic links are neither followed nor changed. Answers what
/// was narrowed, for the caller to log. For a directory that holds only this program's
/// private state (the data directory), never for a shared one.
/// A shared directory (`/`, or one with the sticky bit such as `/tmp`) is refused, so
/// that a mistyped path never closes other programs' files.
pub fn make_private_tree(dir: &Path) -> io::Result<Vec<Narrowed>> {
    create_dir_with_mode(dir, PRIVATE_DIR_MODE)?;
    let sticky = fs::metadata(dir)?.permissions().mode() & 0o1000 != 0;
    if sticky || fs::canonicalize(dir)? == Path::new("/") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a shared directory; give auraed a directory of its own",
                dir.display()
            ),
        ));
    }
    let mut narrowed = Vec::new();
    narrow(dir, &mut narrowed)?;
    Ok(narrowed)
}

fn narrow(path: &Path, narrowed: &mut Vec<Narrowed>) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let kind = meta.file_type();
    let want = if kind.is_dir() {
        PRIVATE_DIR_MODE
    } else if kind.is_file() {
        SECRET_MODE
    } else {
        return Ok(());
    };
    let was = meta.permissions().mode() & 0o7777;
    if was != want {
        fs::set_permissions(path, fs::Permissions::from_mode(want))?;
        narrowed.push(Narrowed {
            path: path.to_owned(),
            was,
            now: want,
        });
    }
    if kind.is_dir() {
        for entry in fs::read_dir(path)? {
            narrow(&entry?.path(), narrowed)?;
        }
    }
    Ok(())
}

/// Narrows an existing directory that others may enter or list to 0700 (its contents are
/// left as they are); answers what was narrowed. For the PKI directory, which holds keys:
/// the daemon and `aurae pki init` keep it private whatever made it.
pub fn narrow_dir(dir: &Path) -> io::Result<Option<Narrowed>> {
    let was = fs::metadata(dir)?.permissions().mode() & 0o7777;
    if was & 0o077 == 0 {
        return Ok(None);
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))?;
    Ok(Some(Narrowed {
        path: dir.to_owned(),
        was,
        now: PRIVATE_DIR_MODE,
    }))
}

/// Opens (creating it 0600 if missing) a private file for reading and writing, and narrows
/// an existing one that others may read to 0600; answers what was narrowed. For files a
/// library creates without a mode of its own (redb's database), so that the umask never
/// decides who reads them.
pub fn ensure_private_file(path: &Path) -> io::Result<Option<Narrowed>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(SECRET_MODE)
        .open(path)?;
    let was = file.metadata()?.permissions().mode() & 0o7777;
    if was == SECRET_MODE {
        return Ok(None);
    }
    file.set_permissions(fs::Permissions::from_mode(SECRET_MODE))?;
    Ok(Some(Narrowed {
        path: path.to_owned(),
        was,
        now: SECRET_MODE,
    }))
}

/// A private key that its group or others may read: refused, because a secret that has
/// been readable may have been read, and using it silently hides that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "permissions {mode:04o} for '{}' are too open; run `{}`",
    path.display(),
    self.fix_command()
)]
pub struct TooOpen {
    /// The key file.
    pub path: PathBuf,
    /// Its permission bits.
    pub mode: u32,
}

impl TooOpen {
    /// The command that fixes it: `chmod 600 <path>`, the path as one shell word.
    pub fn fix_command(&self) -> String {
        format!("chmod 600 {}", shell_word(&self.path))
    }
}

/// A path as one shell word, for a command a person pastes: bare when it holds only
/// harmless characters, else single-quoted.
pub fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let harmless = |c: char| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c);
    if !text.is_empty() && text.chars().all(harmless) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Why a private key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PrivateReadError {
    /// The file could not be opened or read (missing, unreadable, not UTF-8).
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O failure.
        source: io::Error,
    },
    /// The file is readable by its group or others.
    #[error(transparent)]
    TooOpen(#[from] TooOpen),
}

/// Reads a private key, refusing it if its group or others have any access to it. The
/// mode is checked on the open file, so the file checked is the file read.
pub fn read_private(path: &Path) -> Result<String, PrivateReadError> {
    let io_err = |source| PrivateReadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o7777;
    if mode & OPEN_BITS != 0 {
        return Err(TooOpen {
            path: path.to_owned(),
            mode,
        }
        .into());
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io_err)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn atomic_write_replaces_content_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_atomic(&path, b"one", SECRET_MODE).unwrap();
        write_atomic(&path, b"two", SECRET_MODE).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn a_readable_key_is_refused_with_the_chmod_that_fixes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_aura");
        write_atomic(&path, b"secret", SECRET_MODE).unwrap();
        assert_eq!(read_private(&path).unwrap(), "secret");
        for mode in [0o644, 0o640, 0o604, 0o610] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = read_private(&path).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "permissions {mode:04o} for '{p}' are too open; run `chmod 600 {p}`",
                    p = path.display()
                )
            );
        }
        let odd = TooOpen {
            path: PathBuf::from("/a b/it's"),
            mode: 0o644,
        };
        assert_eq!(odd.fix_command(), r"chmod 600 '/a b/it'\''s'");
    }

    #[test]
    fn a_private_tree_is_narrowed_whatever_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(data.join("extents")).unwrap();
        fs::write(data.join("aurae.redb"), b"x").unwrap();
        fs::write(data.join("extents/12"), b"y").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", data.join("link")).unwrap();
        for (path, mode) in [
            (data.clone(), 0o755),
            (data.join("extents"), 0o777),
            (data.join("aurae.redb"), 0o644),
            (data.join("extents/12"), 0o666),
        ] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        }
        let narrowed = make_private_tree(&data).unwrap();
        assert_eq!(narrowed.len(), 4, "{narrowed:?}");
        assert_eq!(narrowed[0].was, 0o755);
        assert_eq!(fs::metadata(&data).unwrap().mode() & 0o7777, 0o700);
        assert_eq!(
            fs::metadata(data.join("extents")).unwrap().mode() & 0o7777,
            0o700
        );
        assert_eq!(
            fs::metadata(data.join("aurae.redb")).unwrap().mode() & 0o7777,
            0o600
        );
        assert_eq!(
            fs::metadata(data.join("extents/12")).unwrap().mode() & 0o7777,
            0o600
        );
        assert_eq!(
            fs::metadata("/etc/passwd").unwrap().mode() & 0o7777,
            0o644,
            "a symlink's target is left alone"
        );
        assert!(make_private_tree(&data).unwrap().is_empty());
        assert!(make_private_tree(Path::new("/tmp")).is_err());
        let fresh = dir.path().join("new/deeper");
        make_private_tree(&fresh).unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o7777, 0o700);
    }

    #[test]
    fn a_private_file_is_created_and_narrowed_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aurae.redb");
        assert_eq!(ensure_private_file(&path).unwrap(), None);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(ensure_private_file(&path).unwrap().unwrap().was, 0o666);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
    }

    #[test]
    fn atomic_write_into_missing_directory_fails_without_litter() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_atomic(&dir.path().join("no/such/file"), b"x", SECRET_MODE).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
