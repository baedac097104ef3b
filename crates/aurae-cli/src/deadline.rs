//! The overall deadline of a command (`--timeout`, `timeout` in the client config): how
//! long its calls to auraed may take in all, so that `aurae` never waits forever on a
//! daemon that accepted a call and never answers. Streams of data are not bounded by it
//! unless the flag asks (see [`of`]); connecting has its own timeout in `aurae-client`.

use std::time::Duration;

use aurae_client::ConnectOptions;

use crate::commands::Command;
use crate::commands::kv::KvCommand;

/// A command's calls did not finish within the overall deadline.
#[derive(Debug, thiserror::Error)]
#[error(
    "auraed did not finish the command within the overall timeout ({}s); it may be hung or very busy (see `aurae status`); wait longer with --timeout SECONDS (0: no limit) or timeout in the client config",
    after.as_secs_f64()
)]
pub struct TimedOut {
    /// The deadline that expired.
    pub after: Duration,
}

/// Runs `work` within `limit` (`None`: no limit).
pub async fn within<T>(
    limit: Option<Duration>,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let Some(after) = limit else {
        return work.await;
    };
    tokio::time::timeout(after, work)
        .await
        .unwrap_or_else(|_| Err(TimedOut { after }.into()))
}

/// The deadline of `command` as a whole. Commands that only make calls get the overall
/// timeout. `kv watch` gets none unless `--timeout` is given (then it watches that long);
/// `kv get` and `kv put` from standard input bound their calls one by one and leave
/// their streams of data alone ([`KvCommand::streams`]). `pki` works on local files and
/// bounds its own wait; `completions` talks to nobody.
pub fn of(options: &ConnectOptions, command: &Command) -> Option<Duration> {
    match command {
        Command::Pki(_) | Command::Completions { .. } => None,
        // They stream a workload's output for as long as it runs.
        Command::Exec(args) if !args.detach => options.timeout.filter(|t| !t.is_zero()),
        Command::Run(args) if !args.detach => options.timeout.filter(|t| !t.is_zero()),
        Command::Logs(args) if args.follow => options.timeout.filter(|t| !t.is_zero()),
        Command::Kv(KvCommand::Watch { .. }) => options.timeout.filter(|t| !t.is_zero()),
        Command::Kv(kv) if kv.streams() => None,
        _ => call_limit(options),
    }
}

/// The overall timeout the flags and the client config say; a config that cannot be read
/// is reported by the command itself when it resolves its target.
pub fn call_limit(options: &ConnectOptions) -> Option<Duration> {
    match options.resolve() {
        Ok(target) => target.timeouts.call,
        Err(_) => options.timeouts(None).call,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_past_the_deadline_ends_with_timed_out() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        };
        let error = within(Some(Duration::from_millis(50)), slow)
            .await
            .unwrap_err();
        let timed_out = error.downcast_ref::<TimedOut>().unwrap();
        assert_eq!(timed_out.after, Duration::from_millis(50));
        assert!(
            error.to_string().contains("overall timeout (0.05s)"),
            "{error}"
        );
        let unbounded = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(7)
        };
        assert_eq!(within(None, unbounded).await.unwrap(), 7);
    }

    #[test]
    fn watch_is_bounded_only_when_asked() {
        let watch = Command::Kv(KvCommand::Watch {
            prefix: "/".into(),
            after: 0,
            json: false,
        });
        let options = ConnectOptions {
            config: Some("/nonexistent/config.toml".into()),
            ..Default::default()
        };
        assert_eq!(of(&options, &watch), None);
        let asked = ConnectOptions {
            timeout: Some(Duration::from_secs(5)),
            ..options.clone()
        };
        assert_eq!(of(&asked, &watch), Some(Duration::from_secs(5)));
        let status = Command::Status { json: false };
        assert_eq!(
            of(&options, &status),
            Some(aurae_client::DEFAULT_CALL_TIMEOUT)
        );
        let no_limit = ConnectOptions {
            timeout: Some(Duration::ZERO),
            ..options
        };
        assert_eq!(of(&no_limit, &status), None);
    }
}
