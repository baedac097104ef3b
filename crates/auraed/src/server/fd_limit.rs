//! The daemon's file-descriptor budget: every connection costs one descriptor, so the
//! connection limits are cut from it.
//!
//! At start the soft limit is raised to the hard limit (a common default is a soft 1,024
//! under a far higher hard limit), and the result is logged. This module never lowers a
//! limit and never fails the daemon: if the limit cannot be read or raised, it serves
//! within what it has.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// How many descriptors the daemon may hold at once, when the limit cannot be read.
/// The smallest common default: limits cut from it stay safe.
const FALLBACK_BUDGET: u64 = 1024;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns the soft
/// limit in force afterwards: the descriptor budget the connection limits are cut from.
pub fn raise_fd_limit() -> u64 {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, budget = FALLBACK_BUDGET, "cannot read the file-descriptor limit; assuming the budget");
            return FALLBACK_BUDGET;
        }
    };
    if soft >= hard {
        tracing::info!(
            limit = soft,
            "file-descriptor limit already at its hard limit"
        );
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(
                from = soft,
                to = hard,
                "raised the file-descriptor soft limit to the hard limit"
            );
            hard
        }
        Err(e) => {
            tracing::warn!(limit = soft, hard, error = %e, "cannot raise the file-descriptor soft limit; serving within it");
            soft
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let budget = raise_fd_limit();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(budget, soft);
        assert_eq!(soft, hard);
    }
}
