//! Why a bundle was refused. Every message names the `config.json` field, as a JSON path
//! (`linux.resources.hugepageLimits`), so that a person knows what to change.

use std::path::PathBuf;

use crate::spec::SpecError;

/// Why an OCI bundle could not be translated into a cell and its executable.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// `config.json` could not be read: the bundle directory is wrong, or the file is
    /// missing or unreadable.
    #[error("cannot read {}: {source}; is this an OCI bundle directory?", path.display())]
    ReadConfig {
        /// The file that was read.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// `config.json` is not JSON, or its JSON does not have the shape of an OCI runtime
    /// spec (a field of the wrong type, an unknown rlimit or namespace name).
    #[error("cannot parse {}: {message}", path.display())]
    Parse {
        /// The file that was parsed.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A field asks for something aurae cannot enforce (hooks, seccomp, joining an
    /// existing namespace, ...). Running the bundle without it would silently weaken or
    /// change it, so the bundle is refused instead.
    #[error(
        "config.json field `{field}` is not supported by aurae: {why}; remove it from the bundle"
    )]
    Unsupported {
        /// The field, as a JSON path (`linux.namespaces[2].path`).
        field: String,
        /// Why aurae cannot honour it.
        why: String,
    },
    /// A field aurae supports holds a value that is not valid (a missing root
    /// filesystem, a malformed environment entry, a negative limit).
    #[error("config.json field `{field}` is invalid: {why}")]
    Invalid {
        /// The field, as a JSON path (`root.path`).
        field: String,
        /// What is wrong and what a valid value looks like.
        why: String,
    },
    /// The translated cell or executable spec failed aurae's own validation.
    #[error("the bundle does not make a valid aurae spec: {0}")]
    Spec(#[from] SpecError),
}

impl OciError {
    /// A refusal of `field`.
    pub(crate) fn unsupported(field: impl Into<String>, why: impl Into<String>) -> Self {
        Self::Unsupported {
            field: field.into(),
            why: why.into(),
        }
    }

    /// A bad value in `field`.
    pub(crate) fn invalid(field: impl Into<String>, why: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            why: why.into(),
        }
    }

    /// The field this error names, if it names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Unsupported { field, .. } | Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}
