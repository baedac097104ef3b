//! `aurae pki init|issue`: the node's CA without openssl.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use aurae_client::{ClientError, Identity, Reached, Target, connect_any};
use aurae_core::config::{self, ClientConfig};
use aurae_core::fsutil;
use aurae_core::name::{DomainName, EntityName, PeerName, Principal};
use aurae_core::pki::{self, CertificateAuthority, NodeNames, Overwrite, PkiPaths, Validity};
use aurae_proto::v0::{Mode, StatusRequest};
use clap::Subcommand;

use crate::cli::ConnectArgs;

/// `aurae pki`: the node's certificate authority.
#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create the CA and server certificate in the PKI directory, and an admin client
    /// certificate with its config in ~/.aurae/. auraed picks them up without a restart.
    Init {
        /// The PKI directory auraed reads (its --pki-dir).
        #[arg(long, default_value = "/etc/aurae/pki")]
        pki_dir: PathBuf,
        /// The domain peers find this node under.
        #[arg(long, default_value = "local")]
        domain: DomainName,
        /// This node's peer name [default: the hostname].
        #[arg(long)]
        peer: Option<PeerName>,
        /// Where the admin's client material goes [default: ~/.aurae].
        #[arg(long, value_name = "DIR")]
        client_dir: Option<PathBuf>,
        /// Replace an existing CA (every certificate it issued stops working).
        #[arg(long)]
        force: bool,
    },
    /// Issue a client certificate for `<entity>@<peer>@<domain>`, signed by the node's CA.
    Issue {
        /// The entity, e.g. `alice` or `nginx`.
        entity: EntityName,
        /// The PKI directory holding ca.crt and ca.key.
        #[arg(long, default_value = "/etc/aurae/pki")]
        pki_dir: PathBuf,
        /// Where to write `<entity>.crt` and `<entity>.key` [default: ~/.aurae].
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
        /// Days of validity.
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=3650))]
        days: i64,
    },
}

/// How long `pki init` waits for auraed to pick the new material up (it polls every 500 ms).
const PICKUP_WAIT: Duration = Duration::from_secs(3);

/// Runs `aurae pki init` or `aurae pki issue`.
pub async fn run(connect: &ConnectArgs, command: PkiCommand) -> anyhow::Result<()> {
    match command {
        PkiCommand::Init {
            pki_dir,
            domain,
            peer,
            client_dir,
            force,
        } => {
            let names = NodeNames {
                domain,
                peer: peer.unwrap_or_else(|| PeerName::from_hostname(&hostname())),
            };
            let overwrite = if force {
                Overwrite::Replace
            } else {
                Overwrite::Refuse
            };
            init(connect, &pki_dir, names, client_dir, overwrite).await
        }
        PkiCommand::Issue {
            entity,
            pki_dir,
            out_dir,
            days,
        } => issue(&entity, &pki_dir, out_dir, days),
    }
}

fn client_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let dir = match given {
        Some(dir) => dir,
        None => config::client_dir()?,
    };
    fsutil::create_dir_with_mode(&dir, fsutil::PRIVATE_DIR_MODE)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

async fn init(
    connect: &ConnectArgs,
    pki_dir: &Path,
    names: NodeNames,
    client_dir_flag: Option<PathBuf>,
    overwrite: Overwrite,
) -> anyhow::Result<()> {
    let paths = PkiPaths::new(pki_dir);
    let ca = pki::init_server_material(&paths, &names, overwrite)?;
    println!("created CA and server certificate in {}", pki_dir.display());

    let dir = client_dir(client_dir_flag)?;
    let admin = names.principal(Principal::ADMIN.parse()?);
    let material = ca.issue_client(&admin, Validity::days(365))?;
    let (cert, key, ca_copy) = (
        dir.join("admin.crt"),
        dir.join("admin.key"),
        dir.join("ca.crt"),
    );
    material.write(&cert, &key)?;
    fsutil::write_atomic(&ca_copy, ca.cert_pem().as_bytes(), fsutil::PUBLIC_MODE)
        .with_context(|| format!("cannot write {}", ca_copy.display()))?;
    let config_path = match &connect.config {
        Some(path) => path.clone(),
        None => dir.join("config.toml"),
    };
    let previous = ClientConfig::load(&config_path).ok().flatten();
    let config = ClientConfig {
        socket: socket_to_record(connect, &config_path),
        ca_cert: ca_copy,
        client_cert: cert,
        client_key: key,
        connect_timeout: previous.as_ref().and_then(|c| c.connect_timeout),
        timeout: previous.and_then(|c| c.timeout),
    };
    config.save(&config_path)?;
    println!("issued admin certificate for {admin} in {}", dir.display());
    println!(
        "wrote client config {} (socket {})",
        config_path.display(),
        config.socket.display()
    );
    let target = Target {
        timeouts: connect.options().timeouts(Some(&config)),
        socket: config.socket.clone(),
        identity: Some(Identity {
            ca_cert: config.ca_cert,
            client_cert: config.client_cert,
            client_key: config.client_key,
        }),
        config_path: config_path.display().to_string(),
    };
    println!("{}", await_pickup(&target, pki_dir).await);
    Ok(())
}

/// The socket the new config names, resolved as every other command resolves it:
/// `--sock` / `AURAE_SOCKET`, else the socket of the config being replaced, else the default.
fn socket_to_record(connect: &ConnectArgs, config_path: &Path) -> PathBuf {
    let previous = || {
        ClientConfig::load(config_path)
            .ok()
            .flatten()
            .map(|c| c.socket)
    };
    let socket = connect
        .sock
        .clone()
        .or_else(previous)
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_SOCKET));
    // A relative --sock would mean another socket from another directory.
    std::path::absolute(&socket).unwrap_or(socket)
}

/// Talks to the socket the config names until auraed serves the new material over mTLS,
/// and says how that went: a config naming a socket nobody serves, or a daemon reading
/// another PKI directory, is better found now than at the next command.
async fn await_pickup(target: &Target, pki_dir: &Path) -> String {
    let socket = target.socket.display();
    let deadline = Instant::now() + PICKUP_WAIT;
    loop {
        let empty_loop_dir = match connect_any(target).await {
            Ok((_, Reached::MutualTls)) => {
                return format!(
                    "auraed on {socket} serves over mutual TLS; check with `aurae status`"
                );
            }
            Ok((client, Reached::EmptyLoop)) => client
                .system()
                .status(StatusRequest {})
                .await
                .ok()
                .map(|s| s.into_inner())
                .filter(|s| s.mode() == Mode::EmptyLoop)
                .map(|s| s.pki_dir),
            Err(ClientError::Unreachable { .. }) => {
                return format!(
                    "note: nothing answers on {socket} yet; start auraed there with `auraed --sock {socket} --pki-dir {}`",
                    pki_dir.display()
                );
            }
            Err(e @ ClientError::PermissionDenied { .. }) => return format!("note: {e}"),
            Err(_) => None,
        };
        if let Some(dir) = empty_loop_dir
            && !same_dir(Path::new(&dir), pki_dir)
        {
            return format!(
                "warning: auraed on {socket} reads its material from {dir}, not {}: run `aurae pki init --pki-dir {dir}` instead, or restart auraed with `--pki-dir {}`",
                pki_dir.display(),
                pki_dir.display()
            );
        }
        if Instant::now() >= deadline {
            return format!(
                "warning: auraed on {socket} has not picked the material up after {}s; see `aurae status`",
                PICKUP_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn issue(
    entity: &EntityName,
    pki_dir: &Path,
    out_dir: Option<PathBuf>,
    days: i64,
) -> anyhow::Result<()> {
    let paths = PkiPaths::new(pki_dir);
    let ca = CertificateAuthority::load(&paths)
        .context("cannot load the CA; create it first with `aurae pki init`")?;
    let names = NodeNames::load(&paths)?;
    let principal = names.principal(entity.clone());
    let material = ca.issue_client(&principal, Validity::days(days))?;
    let dir = client_dir(out_dir)?;
    let (cert, key) = (
        dir.join(format!("{entity}.crt")),
        dir.join(format!("{entity}.key")),
    );
    material.write(&cert, &key)?;
    println!(
        "issued {principal}: {} and {}",
        cert.display(),
        key.display()
    );
    Ok(())
}
