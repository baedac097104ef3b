//! `aurae cell`, `aurae exec`, `aurae logs` and `aurae run`: the runtime capability.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use aurae_client::AuraeClient;
use aurae_client::Channel;
use aurae_proto::v0 as pb;
use aurae_proto::v0::cells_client::CellsClient;
use aurae_proto::v0::observe_client::ObserveClient;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::cli::ConnectArgs;

/// `aurae cell`: isolation zones.
#[derive(Debug, Subcommand)]
pub enum CellCommand {
    /// Create a cell: a cgroup with limits plus pid, mount, uts, ipc, cgroup and network
    /// namespaces (loopback only unless --host-network).
    Allocate(AllocateArgs),
    /// Start an executable in a cell in the background and print its name.
    Start(StartArgs),
    /// Stop an executable: its stop signal, then SIGKILL after its grace.
    Stop {
        /// `<cell>/<executable>`, e.g. `web/exe-1` or `web/api/nginx`.
        target: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List cells and their executables.
    #[command(visible_alias = "list")]
    Ls {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Free a cell: kill everything in it and its nested cells, remove their cgroups.
    Free {
        /// The cell, e.g. `web` or `web/api`.
        cell: String,
    },
    /// Stop every process of a cell from running until it is thawed.
    Freeze {
        /// The cell.
        cell: String,
    },
    /// Let a frozen cell run again.
    Thaw {
        /// The cell.
        cell: String,
    },
}

/// `aurae cell allocate`.
#[derive(Debug, Args)]
pub struct AllocateArgs {
    /// The cell's name: `name`, or `parent/child` for a cell nested in (and bounded by) a
    /// parent.
    pub name: String,
    /// Memory limit, e.g. `256M` or `1G`; the OOM killer acts inside the cell above it.
    #[arg(long, value_parser = aurae_core::size::parse_size)]
    pub memory: Option<u64>,
    /// Memory throttle point (cgroup v2 hosts only).
    #[arg(long, value_parser = aurae_core::size::parse_size)]
    pub memory_high: Option<u64>,
    /// Swap allowed on top of --memory.
    #[arg(long, value_parser = aurae_core::size::parse_size)]
    pub swap: Option<u64>,
    /// CPU share under contention, 1-10000 (100 is the default).
    #[arg(long)]
    pub cpu_weight: Option<u64>,
    /// CPU cap as a number of CPUs, e.g. `0.5` or `2`.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPUs the cell may run on, e.g. `0-1,3`.
    #[arg(long)]
    pub cpuset: Option<String>,
    /// The most processes and threads the cell may hold at once.
    #[arg(long)]
    pub pids: Option<u64>,
    /// Block I/O share, 1-10000, where the host has an I/O controller.
    #[arg(long)]
    pub io_weight: Option<u64>,
    /// Share the host's network instead of a loopback-only network of its own.
    #[arg(long)]
    pub host_network: bool,
    /// A directory the cell's processes see as `/` (default: the host's files, read-only).
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Mount --rootfs read-only.
    #[arg(long, requires = "rootfs")]
    pub read_only: bool,
    /// Bind a host path into the cell: `SOURCE:DEST[:ro]`.
    #[arg(long = "bind", value_name = "SOURCE:DEST[:ro]")]
    pub binds: Vec<String>,
    /// The hostname inside the cell (default: the cell's last name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// When an executable that exited is started again.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Restart {
    /// Never.
    No,
    /// After a failure, up to --max-retries times in a row.
    OnFailure,
    /// After every exit.
    Always,
}

/// How an executable runs: shared by `cell start` and `exec`.
#[derive(Debug, Args)]
pub struct ExecutableArgs {
    /// The executable's name in the cell (default: `exe-<n>`).
    #[arg(long)]
    pub name: Option<String>,
    /// Environment variable `KEY=VALUE` (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the cell.
    #[arg(long)]
    pub cwd: Option<String>,
    /// User id to run as.
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group id to run as.
    #[arg(long)]
    pub gid: Option<u32>,
    /// Restart policy.
    #[arg(long, value_enum, default_value = "no")]
    pub restart: Restart,
    /// For on-failure: restarts in a row before giving up.
    #[arg(long, default_value_t = 3)]
    pub max_retries: u32,
    /// Signal number that asks it to stop (default 15, SIGTERM).
    #[arg(long)]
    pub stop_signal: Option<i32>,
    /// Seconds between the stop signal and SIGKILL.
    #[arg(long, default_value_t = 10.0)]
    pub stop_grace: f64,
}

/// `aurae cell start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The cell.
    pub cell: String,
    #[command(flatten)]
    pub executable: ExecutableArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

/// `aurae exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The cell.
    pub cell: String,
    /// Start it in the background and print its name instead of streaming its output.
    #[arg(short = 'd', long, conflicts_with_all = ["tty", "interactive"])]
    pub detach: bool,
    /// Give it a terminal (a pseudo-terminal on the node); this terminal is put in raw
    /// mode while it runs, and what you type goes to it.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Send this command's stdin to its stdin.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[command(flatten)]
    pub executable: ExecutableArgs,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

/// `aurae logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// `<cell>/<executable>`.
    pub target: String,
    /// Keep streaming new output until the executable is stopped.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<u32>,
    /// Only lines from the last DURATION (`30s`, `5m`, `2h`).
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Prefix each line with its time and stream.
    #[arg(long)]
    pub timestamps: bool,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// `aurae run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// An OCI runtime bundle: a directory with config.json and the rootfs it names.
    #[arg(long)]
    pub bundle: PathBuf,
    /// The cell to create (default: the bundle directory's name).
    pub name: Option<String>,
    /// Start it in the background and print its name instead of streaming its output.
    #[arg(short = 'd', long)]
    pub detach: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration: use e.g. 30s, 5m or 2h"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("'{text}' has an unknown unit: use s, m, h or d")),
    };
    Ok(Duration::from_secs(seconds))
}

/// The executable's process ended this way: `aurae exec` exits with its code (or 128 + the
/// killing signal, as shells do), without an error message.
#[derive(Debug, thiserror::Error)]
#[error("the process exited with {0}")]
pub struct ProcessExit(pub u8);

async fn clients(
    connect: &ConnectArgs,
) -> anyhow::Result<(CellsClient<Channel>, ObserveClient<Channel>)> {
    let client = AuraeClient::connect(&connect.options().resolve()?).await?;
    Ok((
        CellsClient::new(client.channel()),
        ObserveClient::new(client.channel()),
    ))
}

/// `aurae cell ...`.
pub async fn run(connect: &ConnectArgs, command: CellCommand) -> anyhow::Result<()> {
    let (mut cells, mut observe) = clients(connect).await?;
    match command {
        CellCommand::Allocate(args) => {
            let json = args.json;
            let spec = allocate_spec(args)?;
            let cell = cells
                .allocate(pb::AllocateCellRequest { cell: Some(spec) })
                .await
                .map_err(super::rpc_error)?
                .into_inner()
                .cell
                .unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&cell_json(&cell))?);
            } else {
                let name = cell
                    .spec
                    .as_ref()
                    .map(|s| s.name.as_str())
                    .unwrap_or_default();
                println!(
                    "allocated {name} (cgroup {}, identity {})",
                    cell.cgroup, cell.principal
                );
            }
        }
        CellCommand::Start(args) => {
            let exe = start(
                &mut cells,
                &args.cell,
                &args.executable,
                args.argv,
                StdinMode::default(),
            )
            .await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&exe_json(&exe))?);
            } else {
                println!("{}/{}", exe.cell, exe_name(&exe));
            }
        }
        CellCommand::Stop { target, json } => {
            let (cell, executable) = split_target(&target)?;
            let exe = cells
                .stop(pb::StopExecutableRequest { cell, executable })
                .await
                .map_err(super::rpc_error)?
                .into_inner()
                .executable
                .unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&exe_json(&exe))?);
            } else {
                println!("stopped {target} ({})", ended(&exe));
            }
        }
        CellCommand::Ls { json } => {
            let list = cells
                .list(pb::ListCellsRequest {})
                .await
                .map_err(super::rpc_error)?
                .into_inner()
                .cells;
            if json {
                let rows: Vec<_> = list.iter().map(cell_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_cells(&list);
            }
        }
        CellCommand::Free { cell } => {
            cells
                .free(pb::FreeCellRequest { cell: cell.clone() })
                .await
                .map_err(super::rpc_error)?;
            println!("freed {cell}");
        }
        CellCommand::Freeze { cell } => {
            cells
                .freeze(pb::FreezeCellRequest { cell: cell.clone() })
                .await
                .map_err(super::rpc_error)?;
            println!("froze {cell}");
        }
        CellCommand::Thaw { cell } => {
            cells
                .thaw(pb::ThawCellRequest { cell: cell.clone() })
                .await
                .map_err(super::rpc_error)?;
            println!("thawed {cell}");
        }
    }
    let _ = &mut observe;
    Ok(())
}

fn allocate_spec(args: AllocateArgs) -> anyhow::Result<pb::CellSpec> {
    let binds = args
        .binds
        .iter()
        .map(|bind| {
            let parts: Vec<&str> = bind.split(':').collect();
            match parts.as_slice() {
                [source, destination] => Ok((source, destination, false)),
                [source, destination, "ro"] => Ok((source, destination, true)),
                _ => Err(anyhow::Error::new(super::InvalidInput(format!(
                    "--bind '{bind}' is not SOURCE:DEST or SOURCE:DEST:ro"
                )))),
            }
            .map(|(source, destination, read_only)| pb::BindMount {
                source: (*source).to_owned(),
                destination: (*destination).to_owned(),
                read_only,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rootfs = match args.rootfs {
        Some(dir) => std::path::absolute(&dir)
            .with_context(|| format!("--rootfs {}", dir.display()))?
            .to_string_lossy()
            .into_owned(),
        None => String::new(),
    };
    let (quota_us, period_us) = match args.cpus {
        Some(cpus) if cpus > 0.0 => (Some((cpus * 100_000.0).round() as u64), Some(100_000)),
        Some(cpus) => {
            return Err(super::InvalidInput(format!("--cpus {cpus} must be above 0")).into());
        }
        None => (None, None),
    };
    Ok(pb::CellSpec {
        name: args.name,
        limits: Some(pb::CellLimits {
            cpu: Some(pb::CpuLimits {
                weight: args.cpu_weight,
                quota_us,
                period_us,
            }),
            cpuset: args.cpuset,
            memory: Some(pb::MemoryLimits {
                max: args.memory,
                high: args.memory_high,
                swap: args.swap,
            }),
            pids_max: args.pids,
            io_weight: args.io_weight,
        }),
        host_network: args.host_network,
        rootfs,
        rootfs_read_only: args.read_only,
        binds,
        hostname: args.hostname.unwrap_or_default(),
    })
}

/// How an executable's stdin is set up.
#[derive(Debug, Clone, Copy, Default)]
struct StdinMode {
    tty: bool,
    open: bool,
}

fn executable_spec(
    args: &ExecutableArgs,
    argv: Vec<String>,
    stdin: StdinMode,
) -> anyhow::Result<pb::ExecutableSpec> {
    let env = args
        .env
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(key, value)| pb::EnvVar {
                    key: key.to_owned(),
                    value: value.to_owned(),
                })
                .ok_or_else(|| {
                    anyhow::Error::new(super::InvalidInput(format!(
                        "--env '{pair}' is not KEY=VALUE"
                    )))
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let restart = match args.restart {
        Restart::No => pb::RestartPolicy::No,
        Restart::OnFailure => pb::RestartPolicy::OnFailure,
        Restart::Always => pb::RestartPolicy::Always,
    };
    if !(args.stop_grace >= 0.0 && args.stop_grace < 86_400.0) {
        return Err(super::InvalidInput(format!(
            "--stop-grace {} must be 0 to 86400 seconds",
            args.stop_grace
        ))
        .into());
    }
    Ok(pb::ExecutableSpec {
        name: args.name.clone().unwrap_or_default(),
        argv,
        env,
        cwd: args.cwd.clone().unwrap_or_default(),
        uid: args.uid,
        gid: args.gid,
        restart: restart.into(),
        max_retries: args.max_retries,
        stop_signal: args.stop_signal.unwrap_or(0),
        stop_grace_ms: ((args.stop_grace * 1000.0) as u32).max(1),
        tty: stdin.tty,
        stdin: stdin.open || stdin.tty,
    })
}

async fn start(
    cells: &mut CellsClient<Channel>,
    cell: &str,
    args: &ExecutableArgs,
    argv: Vec<String>,
    stdin: StdinMode,
) -> anyhow::Result<pb::ExecutableInfo> {
    let spec = executable_spec(args, argv, stdin)?;
    Ok(cells
        .start(pb::StartExecutableRequest {
            cell: cell.to_owned(),
            executable: Some(spec),
        })
        .await
        .map_err(super::rpc_error)?
        .into_inner()
        .executable
        .unwrap_or_default())
}

/// `aurae exec`: start, stream the output, exit as the process did.
pub async fn exec(connect: &ConnectArgs, args: ExecArgs) -> anyhow::Result<()> {
    let (mut cells, mut observe) = clients(connect).await?;
    let mode = StdinMode {
        tty: args.tty,
        open: args.interactive,
    };
    let exe = start(&mut cells, &args.cell, &args.executable, args.argv, mode).await?;
    if args.detach {
        println!("{}/{}", exe.cell, exe_name(&exe));
        return Ok(());
    }
    let _raw = if args.tty {
        crate::terminal::RawMode::enter()
    } else {
        None
    };
    if args.tty || args.interactive {
        let (cells, cell, name) = (cells.clone(), exe.cell.clone(), exe_name(&exe).to_owned());
        tokio::spawn(forward_input(cells, cell, name, args.tty));
    }
    attach(&mut cells, &mut observe, &exe).await
}

/// Sends this command's stdin (and, for a terminal, its size, again at every SIGWINCH) to
/// the executable until stdin ends. stdin is read on a thread of its own, which never
/// holds up the exit.
async fn forward_input(
    mut cells: CellsClient<Channel>,
    cell: String,
    executable: String,
    tty: bool,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let first = pb::InputRequest {
        cell,
        executable,
        resize: tty.then(terminal_size).flatten(),
        ..Default::default()
    };
    if tx.send(first).await.is_err() {
        return;
    }
    if tty {
        forward_resizes(tx.clone());
    }
    let spawned = std::thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(move || {
            use std::io::Read;
            let mut stdin = std::io::stdin().lock();
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                let message = match stdin.read(&mut buffer) {
                    Ok(0) | Err(_) => pb::InputRequest {
                        close: true,
                        ..Default::default()
                    },
                    Ok(n) => pb::InputRequest {
                        data: buffer[..n].to_vec(),
                        ..Default::default()
                    },
                };
                let close = message.close;
                if tx.blocking_send(message).is_err() || close {
                    return;
                }
            }
        });
    if spawned.is_err() {
        return;
    }
    // Errors end the input only: the output and exit status still come through Logs/Wait.
    let _ = cells
        .input(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
}

/// This terminal's size, as the API takes it.
fn terminal_size() -> Option<pb::TerminalSize> {
    crate::terminal::size().map(|(rows, cols)| pb::TerminalSize {
        rows: rows.into(),
        cols: cols.into(),
    })
}

/// Sends the terminal's new size whenever it changes (SIGWINCH), so that full-screen
/// programs in the cell redraw at the right size; ends with the input stream.
fn forward_resizes(tx: tokio::sync::mpsc::Sender<pb::InputRequest>) {
    let Ok(mut window) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    else {
        return;
    };
    tokio::spawn(async move {
        while window.recv().await.is_some() {
            let message = pb::InputRequest {
                resize: terminal_size(),
                ..Default::default()
            };
            if message.resize.is_some() && tx.send(message).await.is_err() {
                return;
            }
        }
    });
}

/// Streams an executable's output to ours until it is finished, then exits as it did.
async fn attach(
    cells: &mut CellsClient<Channel>,
    observe: &mut ObserveClient<Channel>,
    exe: &pb::ExecutableInfo,
) -> anyhow::Result<()> {
    let (cell, executable) = (exe.cell.clone(), exe_name(exe).to_owned());
    let mut stream = observe
        .logs(pb::LogsRequest {
            cell: cell.clone(),
            executable: executable.clone(),
            follow: true,
            since_ms: 0,
            tail: 0,
        })
        .await
        .map_err(super::rpc_error)?
        .into_inner();
    while let Some(entry) = stream.message().await.map_err(super::rpc_error)? {
        write_raw(&entry)?;
    }
    let done = cells
        .wait(pb::WaitExecutableRequest { cell, executable })
        .await
        .map_err(super::rpc_error)?
        .into_inner()
        .executable
        .unwrap_or_default();
    let code = match (done.exit_code, done.signal) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => 128u8.wrapping_add(signal as u8),
        (None, None) => 1,
    };
    if code == 0 {
        Ok(())
    } else {
        Err(ProcessExit(code).into())
    }
}

fn write_raw(entry: &pb::LogEntry) -> anyhow::Result<()> {
    let newline: &[u8] = if entry.partial { b"" } else { b"\n" };
    if entry.stream == pb::LogStream::Stderr as i32 {
        let mut err = std::io::stderr().lock();
        err.write_all(&entry.line)?;
        err.write_all(newline)?;
        err.flush()?;
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(&entry.line)?;
        out.write_all(newline)?;
        out.flush()?;
    }
    Ok(())
}

/// `aurae logs`.
pub async fn logs(connect: &ConnectArgs, args: LogsArgs) -> anyhow::Result<()> {
    let (_, mut observe) = clients(connect).await?;
    let (cell, executable) = split_target(&args.target)?;
    let since_ms = match args.since {
        Some(ago) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            i64::try_from(now.saturating_sub(ago).as_millis()).unwrap_or(0)
        }
        None => 0,
    };
    let mut stream = observe
        .logs(pb::LogsRequest {
            cell,
            executable,
            follow: args.follow,
            since_ms,
            tail: args.tail.unwrap_or(0),
        })
        .await
        .map_err(super::rpc_error)?
        .into_inner();
    while let Some(entry) = stream.message().await.map_err(super::rpc_error)? {
        if args.json {
            let line = json!({
                "time_unix_nanos": entry.time_unix_nanos,
                "stream": if entry.stream == pb::LogStream::Stderr as i32 { "stderr" } else { "stdout" },
                "partial": entry.partial,
                "line": String::from_utf8_lossy(&entry.line),
            });
            crate::output::write_stdout(format!("{line}\n").as_bytes())?;
        } else if args.timestamps {
            let stream = if entry.stream == pb::LogStream::Stderr as i32 {
                "stderr"
            } else {
                "stdout"
            };
            let mut text = format!("{} {stream} ", entry.time_unix_nanos).into_bytes();
            text.extend_from_slice(&entry.line);
            text.push(b'\n');
            crate::output::write_stdout(&text)?;
        } else {
            let mut text = entry.line.clone();
            if !entry.partial {
                text.push(b'\n');
            }
            crate::output::write_stdout(&text)?;
        }
    }
    Ok(())
}

/// `aurae run --bundle`: an OCI bundle as a cell with one executable.
pub async fn run_bundle(connect: &ConnectArgs, args: RunArgs) -> anyhow::Result<()> {
    let (mut cells, mut observe) = clients(connect).await?;
    let bundle = std::path::absolute(&args.bundle)
        .with_context(|| format!("--bundle {}", args.bundle.display()))?;
    let name = match args.name {
        Some(name) => name,
        None => bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let reply = cells
        .run_bundle(pb::RunBundleRequest {
            bundle: bundle.to_string_lossy().into_owned(),
            cell: name,
        })
        .await
        .map_err(super::rpc_error)?
        .into_inner();
    let exe = reply.executable.unwrap_or_default();
    if args.detach {
        println!("{}/{}", exe.cell, exe_name(&exe));
        return Ok(());
    }
    attach(&mut cells, &mut observe, &exe).await
}

fn split_target(target: &str) -> anyhow::Result<(String, String)> {
    target
        .rsplit_once('/')
        .map(|(cell, exe)| (cell.to_owned(), exe.to_owned()))
        .ok_or_else(|| {
            super::InvalidInput(format!(
                "'{target}' is not <cell>/<executable>, e.g. web/exe-1"
            ))
            .into()
        })
}

fn exe_name(exe: &pb::ExecutableInfo) -> &str {
    exe.spec
        .as_ref()
        .map(|s| s.name.as_str())
        .unwrap_or_default()
}

fn state_name(exe: &pb::ExecutableInfo) -> &'static str {
    match pb::ExecutableState::try_from(exe.state) {
        Ok(pb::ExecutableState::Running) => "running",
        Ok(pb::ExecutableState::Backoff) => "backoff",
        Ok(pb::ExecutableState::Exited) => "exited",
        Ok(pb::ExecutableState::Stopped) => "stopped",
        _ => "unknown",
    }
}

fn ended(exe: &pb::ExecutableInfo) -> String {
    match (exe.exit_code, exe.signal, exe.oom_killed) {
        (_, _, true) => "killed: out of memory".to_owned(),
        (Some(code), _, _) => format!("exit {code}"),
        (None, Some(signal), _) => format!("signal {signal}"),
        _ => "-".to_owned(),
    }
}

fn print_cells(cells: &[pb::CellInfo]) {
    println!(
        "{:<24} {:<8} {:<10} {:<8} {:<8} {:<22} COMMAND",
        "CELL/EXECUTABLE", "STATE", "PID", "RESTARTS", "", "LAST EXIT"
    );
    for cell in cells {
        let name = cell
            .spec
            .as_ref()
            .map(|s| s.name.as_str())
            .unwrap_or_default();
        println!("{name:<24} {:<8} {:<10}", cell.state, cell.principal);
        for exe in &cell.executables {
            let argv = exe
                .spec
                .as_ref()
                .map(|s| s.argv.join(" "))
                .unwrap_or_default();
            println!(
                "  {:<22} {:<8} {:<10} {:<8} {:<8} {:<22} {argv}",
                exe_name(exe),
                state_name(exe),
                exe.pid,
                exe.restarts,
                "",
                ended(exe),
            );
        }
    }
}

fn exe_json(exe: &pb::ExecutableInfo) -> serde_json::Value {
    let spec = exe.spec.clone().unwrap_or_default();
    json!({
        "cell": exe.cell,
        "name": spec.name,
        "argv": spec.argv,
        "state": state_name(exe),
        "pid": exe.pid,
        "exit_code": exe.exit_code,
        "signal": exe.signal,
        "oom_killed": exe.oom_killed,
        "restarts": exe.restarts,
        "started_at_ms": exe.started_at_ms,
    })
}

fn cell_json(cell: &pb::CellInfo) -> serde_json::Value {
    let spec = cell.spec.clone().unwrap_or_default();
    json!({
        "name": spec.name,
        "state": cell.state,
        "principal": cell.principal,
        "cgroup": cell.cgroup,
        "memory_current": cell.memory_current,
        "host_network": spec.host_network,
        "rootfs": spec.rootfs,
        "executables": cell.executables.iter().map(exe_json).collect::<Vec<_>>(),
    })
}
