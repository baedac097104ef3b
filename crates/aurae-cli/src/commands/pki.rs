//! `aurae pki init|issue`: the node's CA without openssl.

use std::path::{Path, PathBuf};

use anyhow::Context;
use aurae_core::config::{self, ClientConfig};
use aurae_core::fsutil;
use aurae_core::name::{EntityName, PeerName, Principal};
use aurae_core::pki::{self, CertificateAuthority, NodeNames, Overwrite, PkiPaths, Validity};

use crate::cli::{ConnectArgs, PkiCommand};

pub fn run(connect: &ConnectArgs, command: PkiCommand) -> anyhow::Result<()> {
    match command {
        PkiCommand::Init {
            pki_dir,
            domain,
            peer,
            client_dir,
            force,
        } => init(connect, &pki_dir, &domain, peer, client_dir, force),
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

fn init(
    connect: &ConnectArgs,
    pki_dir: &Path,
    domain: &str,
    peer: Option<String>,
    client_dir_flag: Option<PathBuf>,
    force: bool,
) -> anyhow::Result<()> {
    let names = NodeNames {
        domain: domain.parse().context("--domain")?,
        peer: match peer {
            Some(peer) => peer.parse().context("--peer")?,
            None => PeerName::from_hostname(&hostname()),
        },
    };
    let paths = PkiPaths::new(pki_dir);
    let overwrite = if force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    };
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
    let config = ClientConfig {
        socket: connect
            .sock
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_SOCKET)),
        ca_cert: ca_copy,
        client_cert: cert,
        client_key: key,
    };
    let config_path = match &connect.config {
        Some(path) => path.clone(),
        None => dir.join("config.toml"),
    };
    config.save(&config_path)?;
    println!("issued admin certificate for {admin} in {}", dir.display());
    println!("wrote client config {}", config_path.display());
    println!("auraed picks the material up within 2 seconds; check with `aurae status`");
    Ok(())
}

fn issue(entity: &str, pki_dir: &Path, out_dir: Option<PathBuf>, days: i64) -> anyhow::Result<()> {
    let entity: EntityName = entity.parse()?;
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
