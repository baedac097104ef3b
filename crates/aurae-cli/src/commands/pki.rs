//! `aurae pki init|issue|ls|revoke`: the node's CA without openssl.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use aurae_client::{ClientError, Identity, Reached, Target, connect_any};
use aurae_core::config::{self, ClientConfig};
use aurae_core::fsutil;
use aurae_core::ledger::{CertKind, IssuedCert, Ledger};
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
        /// This node's peer name [default: the hostname]. (`--peer` on other commands
        /// sends them to another node.)
        #[arg(long, value_name = "PEER")]
        name: Option<PeerName>,
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
    /// List the certificates the CA issued, with their expiry and whether they are revoked.
    #[command(visible_alias = "list")]
    Ls {
        /// The PKI directory holding the CA.
        #[arg(long, default_value = "/etc/aurae/pki")]
        pki_dir: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke every valid certificate of `<entity>@<peer>@<domain>`: auraed refuses them on
    /// new connections and closes the open ones within a second.
    Revoke {
        /// The entity, e.g. `alice`.
        entity: EntityName,
        /// The PKI directory holding the CA.
        #[arg(long, default_value = "/etc/aurae/pki")]
        pki_dir: PathBuf,
        /// Allow revoking the node's admin (you lose access unless another admin
        /// certificate exists).
        #[arg(long)]
        force: bool,
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
            name,
            client_dir,
            force,
        } => {
            let names = NodeNames {
                domain,
                peer: name.unwrap_or_else(|| PeerName::from_hostname(&hostname())),
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
        PkiCommand::Ls { pki_dir, json } => list(&pki_dir, json),
        PkiCommand::Revoke {
            entity,
            pki_dir,
            force,
        } => revoke(&entity, &pki_dir, force),
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
    Ledger::record(&paths, material.issued(CertKind::Client, admin.to_string()))?;
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
        peer: None,
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
    Ledger::record(
        &paths,
        material.issued(CertKind::Client, principal.to_string()),
    )?;
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

/// `aurae pki ls`.
fn list(pki_dir: &Path, json: bool) -> anyhow::Result<()> {
    let paths = PkiPaths::new(pki_dir);
    if !paths.file(pki::files::CA_CERT).exists() {
        anyhow::bail!(
            "no CA in {}; create one with `aurae pki init --pki-dir {}`",
            pki_dir.display(),
            pki_dir.display()
        );
    }
    let ledger = Ledger::load(&paths)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if json {
        let rows: Vec<_> = ledger
            .certs
            .iter()
            .map(|c| {
                serde_json::json!({
                    "serial": c.serial,
                    "kind": c.kind,
                    "subject": c.subject,
                    "not_after": c.not_after,
                    "revoked_at": c.revoked_at,
                    "state": state(c, now),
                })
            })
            .collect();
        return crate::output::write_stdout(
            format!("{}\n", serde_json::Value::from(rows)).as_bytes(),
        );
    }
    let mut out = format!(
        "{:<32} {:<7} {:<10} {:<20} SERIAL\n",
        "SUBJECT", "KIND", "STATE", "EXPIRES"
    );
    for c in &ledger.certs {
        let kind = match c.kind {
            CertKind::Server => "server",
            CertKind::Client => "client",
        };
        out.push_str(&format!(
            "{:<32} {:<7} {:<10} {:<20} {}\n",
            c.subject,
            kind,
            state(c, now),
            date(c.not_after),
            c.serial
        ));
    }
    crate::output::write_stdout(out.as_bytes())
}

/// Valid, expired or revoked.
fn state(cert: &IssuedCert, now: i64) -> &'static str {
    if cert.revoked_at.is_some() {
        "revoked"
    } else if cert.not_after <= now {
        "expired"
    } else {
        "valid"
    }
}

/// `2027-11-30 08:52 UTC`.
fn date(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// `aurae pki revoke`.
fn revoke(entity: &EntityName, pki_dir: &Path, force: bool) -> anyhow::Result<()> {
    let paths = PkiPaths::new(pki_dir);
    let ca = CertificateAuthority::load(&paths).context(
        "cannot load the CA; revoking needs the CA key (run where `aurae pki init` ran)",
    )?;
    let names = NodeNames::load(&paths)?;
    let principal = names.principal(entity.clone());
    if entity.as_str() == Principal::ADMIN && !force {
        anyhow::bail!(
            "{principal} is this node's admin; revoking it locks you out unless another admin \
             certificate exists. Pass --force to revoke it anyway"
        );
    }
    let mut ledger = Ledger::load(&paths)?;
    let revoked = ledger.revoke(&principal);
    if revoked.is_empty() {
        return Err(anyhow::Error::new(super::NotFound(format!(
            "no valid certificate of {principal} in {}; `aurae pki ls --pki-dir {}` lists them",
            paths.file(aurae_core::ledger::files::ISSUED).display(),
            pki_dir.display()
        ))));
    }
    ledger.publish_crl(&ca, &paths)?;
    for cert in &revoked {
        println!("revoked {} (serial {})", cert.subject, cert.serial);
    }
    println!(
        "wrote {}; auraed refuses these certificates from now on and closes their connections",
        paths.file(aurae_core::ledger::files::CRL).display()
    );
    Ok(())
}
