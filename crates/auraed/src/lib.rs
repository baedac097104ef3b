//! auraed: the daemon that owns a Linux machine and serves its capabilities as gRPC
//! services on a Unix socket, guarded by mutual TLS.
//!
//! `main.rs` only parses flags; [`run`] wires the pieces: the node identity, the
//! capability registry, the socket, the material watcher and the two-faced server.
#![deny(missing_docs)]

// ---- the daemon's frame ----

/// Command-line flags.
pub mod cli;
/// Tuning values with documented defaults.
pub mod config;
/// The daemon-wide context the capabilities are built over.
pub mod context;
/// Documented exit codes.
pub mod exit;
/// PID 1 duties (mounts, power-off) and the process supervisor, the only spawner.
pub mod init;
/// Readiness and status for systemd (sd_notify), when it started the daemon.
pub mod notify;
/// The socket server: empty loop, mTLS, authorization, the capability registry.
pub mod server;

// ---- the capabilities: one folder each, listed once in CAPABILITIES ----

/// `authz`: roles and grants, who may do what.
pub mod authz;
/// `capabilities`: list, enable and disable capabilities.
pub mod capabilities;
/// `health`: the standard gRPC health service.
pub mod health;
/// `metrics`: the node's metrics in the Prometheus text format.
pub mod metrics;
/// `config`: the node declared in a TOML document, applied as a diff, exported back.
pub mod node_config;
/// The `peer` capability: libp2p swarm, discovery, the remote API.
pub mod peer;
/// `reflection`: gRPC server reflection.
pub mod reflection;
/// `runtime`: cells, executables and their logs.
pub mod runtime;
/// `storage`: the database as a filesystem (kv, volumes, auraefs) over aurae-store.
pub mod storage;
/// `system`: the node's own facts.
pub mod system;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aurae_core::identity::{KeyOrigin, NodeIdentity};
use aurae_core::pki::PkiPaths;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::cli::Args;
use crate::config::DaemonConfig;
use crate::context::Daemon;
use crate::exit::ExitCode;
use crate::server::registry::{Capability, CapabilityRegistry};

/// Every capability this build has, in the order `aurae capabilities list` shows them.
/// Registering a capability is one line here (and its `mod` line above).
pub const CAPABILITIES: &[&Capability] = &[
    &health::CAPABILITY,
    &system::CAPABILITY,
    &capabilities::CAPABILITY,
    &authz::CAPABILITY,
    &node_config::CAPABILITY,
    &storage::CAPABILITY,
    &runtime::CAPABILITY,
    &reflection::CAPABILITY,
    &metrics::CAPABILITY,
    &peer::CAPABILITY,
];

/// Runs the daemon until SIGTERM or SIGINT. As PID 1 it never returns on error or panic.
pub fn run(args: Args) -> ExitCode {
    let pid1 = init::is_pid1();
    if pid1 {
        init::mount_early_filesystems();
    }
    if init::is_machine_init() {
        init::take_ctrl_alt_del();
    }
    loop {
        let code = std::panic::catch_unwind(|| run_once(&args, pid1));
        match code {
            Ok(code) if !pid1 || code == ExitCode::Ok => break finish(code, pid1),
            Ok(code) => tracing::error!(?code, "daemon stopped as PID 1; starting it again"),
            Err(_) if !pid1 => break ExitCode::Runtime,
            Err(_) => tracing::error!("daemon panicked as PID 1; starting it again"),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn finish(code: ExitCode, pid1: bool) -> ExitCode {
    if pid1 && init::is_machine_init() {
        tracing::info!("powering off");
        init::power_off();
    }
    code
}

fn run_once(args: &Args, pid1: bool) -> ExitCode {
    // One thread serves every connection: a request then never hops between threads,
    // which costs more than answering it. Work that blocks (disk reads, the store's
    // writer, syncs) runs on threads of its own.
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(daemon(args, pid1)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            ExitCode::Runtime
        }
    }
}

fn load_identity(args: &Args) -> context::NodeIdentity {
    let key = args.key_path();
    let (peer_id, key_error) = match NodeIdentity::load_or_generate(&key) {
        Ok((identity, origin)) => {
            let peer_id = identity.peer_id().to_string();
            match origin {
                KeyOrigin::Generated => {
                    tracing::info!(key = %key.display(), %peer_id, "generated a new node key")
                }
                KeyOrigin::Loaded => {
                    tracing::info!(key = %key.display(), %peer_id, "node key loaded")
                }
            }
            (Some(peer_id), None)
        }
        Err(e) => {
            tracing::error!(error = %e, "node key unusable; continuing without a peer identity");
            (None, Some(e.to_string()))
        }
    };
    context::NodeIdentity {
        peer_id,
        key_path: key,
        key_error,
    }
}

/// Creates the data directory, or closes it and everything in it to anyone but auraed
/// (directories 0700, files 0600), whatever the umask or an older version left: stored
/// values must never be readable by another local user. Each narrowing is logged.
fn make_data_dir_private(dir: &std::path::Path) {
    match aurae_core::fsutil::make_private_tree(dir) {
        Ok(narrowed) => {
            for n in narrowed {
                tracing::warn!(
                    path = %n.path.display(),
                    was = format_args!("{:04o}", n.was),
                    now = format_args!("{:04o}", n.now),
                    "data directory entry was open to other users; narrowed it"
                );
            }
        }
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create the data directory or make it private (0700)");
        }
    }
}

/// Keeps an existing PKI directory 0700: it holds the server's and maybe the CA's key.
fn make_pki_dir_private(dir: &std::path::Path) {
    match aurae_core::fsutil::narrow_dir(dir) {
        Ok(Some(n)) => tracing::warn!(
            path = %n.path.display(),
            was = format_args!("{:04o}", n.was),
            "PKI directory was open to other users; narrowed it to 0700"
        ),
        Ok(None) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot make the PKI directory private (0700)")
        }
    }
}

async fn bind_socket(args: &Args, pid1: bool) -> Result<server::socket::BoundSocket, ExitCode> {
    loop {
        match server::socket::bind(&args.sock, args.sock_group.as_deref()) {
            Ok(bound) => return Ok(bound),
            Err(e) if pid1 => {
                tracing::error!(error = %e, "cannot bind the socket; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot bind the socket");
                return Err(match e {
                    server::socket::SocketError::InUse(_) => ExitCode::SocketInUse,
                    _ => ExitCode::SocketFailed,
                });
            }
        }
    }
}

/// Where the runtime keeps its files, what it binds into cells and what it hides from them.
fn runtime_paths(args: &Args) -> runtime::cells::RuntimePaths {
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let data = absolute(&args.data_dir);
    let key_dir = absolute(&args.key_path())
        .parent()
        .map(std::path::Path::to_owned);
    let cli = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("aurae"))
        .filter(|cli| cli.is_file());
    // One daemon per data directory: each gets cgroups of its own.
    let cgroup_dir = if data == std::path::Path::new("/var/lib/aurae") {
        "aurae-cells".to_owned()
    } else {
        format!(
            "aurae-cells-{:08x}",
            crc32fast::hash(data.as_os_str().as_encoded_bytes())
        )
    };
    runtime::cells::RuntimePaths {
        cgroup_dir,
        socket: absolute(&args.sock),
        logs: data.join("runtime/logs"),
        identities: data.join("runtime/identities"),
        hidden: [Some(data), Some(absolute(&args.pki_dir)), key_dir]
            .into_iter()
            .flatten()
            .collect(),
        cli,
    }
}

async fn daemon(args: &Args, pid1: bool) -> ExitCode {
    let started = Instant::now();
    let supervisor = match init::supervisor::Supervisor::start() {
        Ok(supervisor) => supervisor,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the process supervisor");
            return ExitCode::Runtime;
        }
    };
    let (Ok(mut sigterm), Ok(mut sigint)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return ExitCode::Runtime;
    };
    let mut config = DaemonConfig::default();
    config.server.idle_timeout = Duration::from_secs(args.idle_timeout);
    let fd_budget = server::fd_limit::raise_fd_limit();
    let limits = server::connections::ConnectionLimits::from_budget(
        fd_budget,
        config.server.fd_reserve,
        config.server.max_connections_per_principal,
    );
    tracing::info!(
        fd_budget,
        per_principal = limits.per_principal,
        non_admin = limits.non_admin,
        idle_timeout_s = config.server.idle_timeout.as_secs(),
        "connection limits"
    );
    let identity = load_identity(args);
    make_data_dir_private(&args.data_dir);
    make_pki_dir_private(&args.pki_dir);
    let capabilities = Arc::new(CapabilityRegistry::open(&args.data_dir, CAPABILITIES));
    let store = storage::StoreState::open(
        &args.data_dir,
        config.storage.store.clone(),
        config.storage.reopen_interval,
    );
    let policy = Arc::new(authz::PolicyState::new(authz::catalog()));
    if let Ok(opened) = store.store() {
        if let Err(why) = capabilities.attach_store(opened.clone()).await {
            tracing::warn!(%why, "the capability set stays in its file");
        }
        if let Err(e) = policy.attach_store(opened) {
            tracing::error!(error = %e, "cannot read roles and grants: only the built-in ones hold");
        }
    } else {
        tracing::warn!(
            "the database is not open: the capability set stays in its file, and only the built-in roles hold"
        );
    }
    let bound = match bind_socket(args, pid1).await {
        Ok(bound) => bound,
        Err(code) => return code,
    };
    let (listener, socket_file) = bound.into_parts();
    let pki = PkiPaths::new(&args.pki_dir);
    let material_reload = Arc::new(tokio::sync::Notify::new());
    let mode = server::material::watch(
        pki.clone(),
        args.sock.clone(),
        config.server.material_poll,
        material_reload.clone(),
    );
    let runtime = Arc::new(runtime::Runtime::new(
        supervisor.clone(),
        pki.clone(),
        runtime::cells::MaterialReload {
            notify: material_reload,
            mode: mode.clone(),
        },
        runtime_paths(args),
        config.logs.clone(),
        runtime::records::Records::new(store.clone()),
    ));
    if !args.no_favordynmods {
        runtime.favor_dynamic_cgroups();
    }
    let daemon = Arc::new(Daemon {
        started,
        identity,
        mode,
        pki,
        capabilities,
        policy,
        audit: args.audit,
        connections: server::connections::ConnectionRegistry::new(limits),
        health: tonic_health::server::HealthReporter::new(),
        store,
        supervisor,
        config,
        runtime,
        metrics: metrics::Metrics::new(
            if args.no_metrics {
                metrics::Collection::Off
            } else {
                metrics::Collection::On
            },
            CAPABILITIES,
        ),
        peer: peer::PeerState::new(args.peer_settings()),
    });
    tracing::info!(socket = %args.sock.display(), version = aurae_core::VERSION, "auraed listening");
    let metrics_listener = metrics::listener::start_if_asked(args.metrics_listen, &daemon);
    daemon.peer.attach_store(&daemon);
    tokio::spawn(peer::run(daemon.clone()));
    tokio::spawn({
        let daemon = daemon.clone();
        let (node_config, required) = args.node_config_path();
        async move {
            // Cells are restored first: the node config is applied to what runs.
            daemon.runtime.restore().await;
            node_config::apply::apply_at_start(daemon, node_config, required).await;
        }
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let store = daemon.store.clone();
    let grace = daemon.config.server.shutdown_grace;
    let runtime = daemon.runtime.clone();
    let mode = daemon.mode.clone();
    let mut serving = tokio::spawn(server::serve(listener, daemon, stop_rx));
    notify::ready(mode);
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
        result = &mut serving => {
            tracing::error!(?result, "server stopped unexpectedly");
            return ExitCode::ServeFailed;
        }
    }
    notify::stopping();
    let _ = stop_tx.send(true);
    store.close_watches();
    runtime.on_shutdown().await;
    if tokio::time::timeout(grace, serving).await.is_err() {
        tracing::warn!("connections still open after the grace period; closing them");
    }
    drop(socket_file);
    drop(metrics_listener);
    ExitCode::Ok
}
