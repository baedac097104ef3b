//! `auraefs` (and `mount.fuse.auraefs`): parses the command line, then mounts or unmounts.

mod cli;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use auraefs::daemon::{self, Readiness, Role};
use auraefs::mount::{self, MountPlan};
use auraefs::mount_options::MountSettings;
use auraefs::mountpoint::{self, UnmountMode};
use auraefs::{AuraefsError, Exit};
use clap::Parser;

use crate::cli::{Cli, Command, ConnectArgs, HelperCli, MountArgs};

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    let as_helper = cli::started_as_helper(args.first().map(|a| a.as_os_str()))
        || cli::called_with_helper_syntax(args.get(1).map(|a| a.as_os_str()));
    let result = if as_helper {
        let helper = HelperCli::parse();
        let fake = helper.fake;
        mount_command(helper.into_mount(), &ConnectArgs::default(), fake)
    } else {
        let cli = Cli::parse();
        match cli.command {
            Command::Mount(args) => mount_command(args, &cli.connect, false),
            Command::Umount { mountpoint, lazy } => umount_command(&mountpoint, lazy),
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", aurae_client::error_chain(e.as_ref()));
            let code = e
                .downcast_ref::<AuraefsError>()
                .map_or(Exit::Failure, AuraefsError::exit);
            ExitCode::from(code as u8)
        }
    }
}

fn init_logging(args: &MountArgs, log_file: Option<&Path>) -> anyhow::Result<()> {
    let default = if args.verbose {
        "auraefs=debug,fuser=info"
    } else {
        "auraefs=info,fuser=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        // Colour only for a person at a terminal: not into a file, a pipe or the journal.
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

fn mount_command(args: MountArgs, connect: &ConnectArgs, fake: bool) -> anyhow::Result<ExitCode> {
    // tonic's TLS and anything else compiled in must agree on one crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = MountSettings::parse(&args.options).map_err(AuraefsError::from)?;
    if settings.remount {
        if !fake {
            mountpoint::remount(&args.mountpoint, &settings)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let plan = MountPlan::new(
        &args.volume,
        &args.mountpoint,
        &args.options,
        connect.options(),
    )?;
    init_logging(&args, plan.settings.log_file.as_deref())?;
    if fake {
        return Ok(ExitCode::SUCCESS);
    }
    if args.foreground {
        let mut readiness = Readiness::foreground();
        eprintln!(
            "auraefs: mounting {} on {} (Ctrl-C unmounts)",
            plan.volume,
            plan.mountpoint.display()
        );
        mount::run(&plan, &mut readiness)?;
        return Ok(ExitCode::SUCCESS);
    }
    match daemon::detach()? {
        Role::Parent(report) => {
            if !report.message.is_empty() {
                eprintln!("error: {}", report.message);
            }
            Ok(ExitCode::from(report.code))
        }
        Role::Daemon(mut readiness) => match mount::run(&plan, &mut readiness) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => {
                // The waiting parent prints the error; the log keeps it too.
                tracing::debug!(error = %e, "mount failed");
                readiness.fail(&e);
                Ok(ExitCode::from(e.exit() as u8))
            }
        },
    }
}

fn umount_command(path: &Path, lazy: bool) -> anyhow::Result<ExitCode> {
    let mode = if lazy {
        UnmountMode::Lazy
    } else {
        UnmountMode::Normal
    };
    mountpoint::unmount(path, mode)?;
    Ok(ExitCode::SUCCESS)
}
