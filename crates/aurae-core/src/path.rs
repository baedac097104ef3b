//! Validated paths of the store's namespace: `/services/nginx/port`.
//!
//! A [`StorePath`] is absolute, normalized (no empty, `.` or `..` components) and within
//! the limits of a POSIX filesystem, so that no request can name something outside the
//! namespace or something a FUSE mount could not show.

use std::fmt;
use std::str::FromStr;

/// Longest path accepted, as PATH_MAX.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest component accepted, as NAME_MAX.
pub const MAX_NAME_LEN: usize = 255;

/// Why a path was refused; each message says what a valid path looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start at the root.
    #[error("path '{0}' is relative; store paths start with '/', e.g. /services/nginx/port")]
    Relative(String),
    /// The path holds a NUL byte.
    #[error("path holds a NUL byte")]
    Nul,
    /// The path holds `.` or `..`.
    #[error("path '{0}' holds '.' or '..'; name each directory explicitly")]
    DotComponent(String),
    /// The path is longer than PATH_MAX.
    #[error("path is {0} bytes long; the limit is {MAX_PATH_LEN}")]
    TooLong(usize),
    /// A component is longer than NAME_MAX.
    #[error("name '{0}…' is longer than {MAX_NAME_LEN} bytes")]
    NameTooLong(String),
    /// A symlink's target is empty.
    #[error("a symlink target must not be empty")]
    EmptyTarget,
    /// A symlink's target holds a NUL byte.
    #[error("a symlink target holds a NUL byte")]
    TargetNul,
    /// A symlink's target is longer than PATH_MAX, which no filesystem could read back.
    #[error("symlink target is {0} bytes long; the limit is {MAX_PATH_LEN}")]
    TargetTooLong(usize),
}

/// Checks a symlink's target: 1 to [`MAX_PATH_LEN`] bytes without NUL, as symlink(2)
/// takes. It is any text otherwise (relative, dangling): the store never follows it.
/// The one rule for every API that makes symlinks, so that what Storage accepts a FUSE
/// mount can show.
pub fn check_symlink_target(target: &str) -> Result<(), PathError> {
    if target.is_empty() {
        return Err(PathError::EmptyTarget);
    }
    if target.contains('\0') {
        return Err(PathError::TargetNul);
    }
    if target.len() > MAX_PATH_LEN {
        return Err(PathError::TargetTooLong(target.len()));
    }
    Ok(())
}

/// An absolute, normalized store path; the root is `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorePath(String);

impl StorePath {
    /// The root of the namespace.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The components, root first excluded.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The parent directory and the last name; `None` for the root.
    pub fn split_last(&self) -> Option<(StorePath, &str)> {
        if self.is_root() {
            return None;
        }
        let cut = self.0.rfind('/').expect("absolute path");
        let parent = if cut == 0 { "/" } else { &self.0[..cut] };
        Some((Self(parent.to_owned()), &self.0[cut + 1..]))
    }

    /// `self/name`, for a name already validated as a component.
    pub fn join(&self, name: &str) -> Self {
        if self.is_root() {
            Self(format!("/{name}"))
        } else {
            Self(format!("{}/{name}", self.0))
        }
    }

    /// Whether `self` is `other` or lies under it.
    pub fn starts_with(&self, other: &StorePath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

impl FromStr for StorePath {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.starts_with('/') {
            return Err(PathError::Relative(s.chars().take(64).collect()));
        }
        if s.contains('\0') {
            return Err(PathError::Nul);
        }
        if s.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong(s.len()));
        }
        let mut normalized = String::with_capacity(s.len());
        for component in s.split('/').filter(|c| !c.is_empty()) {
            if component == "." || component == ".." {
                return Err(PathError::DotComponent(s.chars().take(64).collect()));
            }
            if component.len() > MAX_NAME_LEN {
                return Err(PathError::NameTooLong(component.chars().take(32).collect()));
            }
            normalized.push('/');
            normalized.push_str(component);
        }
        if normalized.is_empty() {
            normalized.push('/');
        }
        Ok(Self(normalized))
    }
}

impl fmt::Display for StorePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_and_split() {
        let p: StorePath = "//services//nginx/port/".parse().unwrap();
        assert_eq!(p.as_str(), "/services/nginx/port");
        let (parent, name) = p.split_last().unwrap();
        assert_eq!((parent.as_str(), name), ("/services/nginx", "port"));
        assert_eq!("/".parse::<StorePath>().unwrap(), StorePath::root());
        assert_eq!(
            "/a".parse::<StorePath>().unwrap().split_last().unwrap().0,
            StorePath::root()
        );
        assert_eq!(StorePath::root().join("a").join("b").as_str(), "/a/b");
    }

    #[test]
    fn escapes_and_oversized_paths_are_refused() {
        for bad in ["relative", "/a/../b", "/a/./b", "/..", "/a\0b", ""] {
            assert!(bad.parse::<StorePath>().is_err(), "{bad:?} was accepted");
        }
        assert!(
            format!("/{}", "a".repeat(256))
                .parse::<StorePath>()
                .is_err()
        );
        assert!(format!("/{}", "a".repeat(255)).parse::<StorePath>().is_ok());
        assert!("/a".repeat(2049).parse::<StorePath>().is_err());
    }

    #[test]
    fn symlink_targets_are_one_to_path_max_bytes_without_nul() {
        assert_eq!(check_symlink_target(""), Err(PathError::EmptyTarget));
        assert_eq!(check_symlink_target("a\0b"), Err(PathError::TargetNul));
        assert_eq!(
            check_symlink_target(&"a".repeat(MAX_PATH_LEN + 1)),
            Err(PathError::TargetTooLong(MAX_PATH_LEN + 1))
        );
        for good in [
            "../relative",
            "/abs",
            "dangling/..",
            &"a".repeat(MAX_PATH_LEN),
        ] {
            assert_eq!(check_symlink_target(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn prefixes_match_whole_components() {
        let p: StorePath = "/services/nginx".parse().unwrap();
        assert!(p.starts_with(&"/services".parse().unwrap()));
        assert!(p.starts_with(&StorePath::root()));
        assert!(p.starts_with(&p));
        assert!(!p.starts_with(&"/serv".parse().unwrap()));
    }
}
