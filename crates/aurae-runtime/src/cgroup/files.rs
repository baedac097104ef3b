//! Reading and writing cgroup files and directories, with errors that name the path.
//!
//! Every cgroup file is written with one `write(2)`, as the kernel expects.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;

/// How long a busy cgroup directory is retried before its removal fails.
const RMDIR_RETRY: Duration = Duration::from_secs(2);

/// Reads a whole file.
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `value` to an existing cgroup file in one write.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let error = |source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(error)?;
    file.write_all(value.as_bytes()).map_err(error)
}

/// Writes `pid` to a `cgroup.procs` file; a process that has already exited is skipped.
pub(crate) fn write_pid_if_alive(procs: &Path, pid: i32) -> Result<(), CgroupError> {
    match write(procs, &pid.to_string()) {
        Err(CgroupError::Write { source, .. })
            if source.raw_os_error() == Some(nix::errno::Errno::ESRCH as i32) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// The pids listed in a `cgroup.procs` file; none when the cgroup has gone.
pub(crate) fn read_pids(procs: &Path) -> Result<Vec<i32>, CgroupError> {
    let text = match std::fs::read_to_string(procs) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: procs.to_owned(),
                source,
            });
        }
    };
    text.lines()
        .map(|line| {
            line.trim().parse().map_err(|_| CgroupError::Parse {
                path: procs.to_owned(),
                content: line.to_owned(),
            })
        })
        .collect()
}

/// The number in a single-value file, `None` when the file is absent (a controller not
/// enabled) or reads `max`.
pub(crate) fn read_number_if_present(path: &Path) -> Result<Option<u64>, CgroupError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = read(path)?;
    match text.trim() {
        "max" => Ok(None),
        number => number.parse().map(Some).map_err(|_| CgroupError::Parse {
            path: path.to_owned(),
            content: text.clone(),
        }),
    }
}

/// The value of `key` in a flat keyed file (`oom_kill 3` lines).
pub(crate) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Makes a cgroup directory that must not exist yet.
pub(crate) fn make_dir(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir(path).map_err(|source| CgroupError::CreateDir {
        path: path.to_owned(),
        source,
    })
}

/// Makes a cgroup directory unless it exists; returns whether it was made.
pub(crate) fn make_dir_if_missing(path: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::CreateDir {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Removes an empty cgroup directory, retrying while the kernel still calls it busy (a
/// killed process not yet gone); a directory already gone is fine.
pub(crate) fn remove_dir(path: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + RMDIR_RETRY;
    loop {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == ErrorKind::ResourceBusy && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(CgroupError::RemoveDir {
                    path: path.to_owned(),
                    source,
                });
            }
        }
    }
}

/// The child directories of `dir` (nested cgroups), sorted; none when `dir` has gone.
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Read {
            path: dir.to_owned(),
            source,
        })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// `dir` and every cgroup below it, parents before children; none when `dir` has gone.
pub(crate) fn tree(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        let children = subdirs(&out[i])?;
        out.extend(children);
        i += 1;
    }
    Ok(out)
}
