//! `aurae peer id|ls|ping|connect|trust|untrust|trusted` and `aurae resolve`: the node on
//! the peer network.

use aurae_client::AuraeClient;
use aurae_proto::v0 as pb;
use aurae_proto::v0::discovery_client::DiscoveryClient;
use aurae_proto::v0::peer_client::PeerClient;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::ConnectArgs;

/// `aurae peer`: who the node is on the network, whom it talks to and trusts.
#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// The node's PeerId, the addresses it listens on and those it is reachable at.
    Id {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Known peers, with how each is connected (direct, relayed, hole-punched) and latency.
    #[command(visible_alias = "list")]
    Ls {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// One ping round trip to a peer: `<peer>[@<domain>]`, a PeerId, or a multiaddr.
    Ping {
        /// The peer.
        #[arg(value_name = "PEER")]
        target: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Connect to a peer at a multiaddr ending in /p2p/<PeerId>.
    Connect {
        /// The multiaddr.
        multiaddr: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Let a remote peer call this node's API, as a principal this node's roles apply to.
    ///
    /// Without --as the peer is `node@p<its id in base32>@peer.invalid`. It may do nothing
    /// until a role is granted to that principal (--role, or `aurae grant`).
    Trust(TrustArgs),
    /// Peers announcing on the DHT that they serve `<entity>@<peer>[@<domain>]`.
    Providers {
        /// The entity's name.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Take a peer off the trust list; its open remote calls are cut.
    Untrust {
        /// Its PeerId.
        peer_id: String,
    },
    /// Show or change the swarm's settings (kept in the store; the swarm restarts with
    /// them).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The trust list: each trusted PeerId and the principal its calls carry.
    Trusted {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// `aurae peer config`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// The settings in force (the stored ones, else the daemon's flags).
    Show {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Change some settings; the others stay as they are.
    Set(ConfigSetArgs),
}

/// `aurae peer config set`: each list flag replaces that list when given.
#[derive(Debug, Args)]
pub struct ConfigSetArgs {
    /// Listen addresses (repeatable).
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Bootstrap peers, ending in /p2p/<PeerId> (repeatable).
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Domains whose `_dnsaddr` TXT records name bootstrap peers (repeatable).
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// Relays to reserve a slot on (repeatable).
    #[arg(long = "relay", value_name = "MULTIADDR")]
    pub relays: Vec<String>,
    /// mDNS on the local network.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub mdns: Option<bool>,
    /// Serve as a circuit relay.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    pub relay_server: Option<bool>,
    /// The Kademlia protocol name.
    #[arg(long, value_name = "PROTOCOL")]
    pub kad_protocol: Option<String>,
}

fn on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("'{text}' is not on or off")),
    }
}

fn config_json(config: &pb::PeerConfig) -> serde_json::Value {
    json!({
        "listen_addrs": config.listen_addrs,
        "bootstrap": config.bootstrap,
        "bootstrap_domains": config.bootstrap_domains,
        "relays": config.relays,
        "mdns": config.mdns,
        "relay_server": config.relay_server,
        "relay_client": config.relay_client,
        "kad_protocol": config.kad_protocol,
        "max_connections": config.max_connections,
        "max_connections_per_peer": config.max_connections_per_peer,
    })
}

/// `aurae peer trust`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The peer's PeerId (`aurae peer id` on that node prints it).
    pub peer_id: String,
    /// The principal its calls carry here: `<entity>@<peer>@<domain>`.
    #[arg(long = "as", value_name = "PRINCIPAL")]
    pub principal: Option<String>,
    /// A role to grant that principal at once (repeatable).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
}

/// `aurae resolve`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// `<entity>@<peer>[@<domain>]` or `<peer>[@<domain>]`; the local domain fills in.
    pub name: String,
    /// Milliseconds to wait for the DHT.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u32,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

async fn clients(
    connect: &ConnectArgs,
) -> anyhow::Result<(
    PeerClient<aurae_client::Channel>,
    DiscoveryClient<aurae_client::Channel>,
)> {
    let client = AuraeClient::connect(&connect.options().resolve()?).await?;
    Ok((
        PeerClient::new(client.channel()),
        DiscoveryClient::new(client.channel()),
    ))
}

fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(connect: &ConnectArgs, command: PeerCommand) -> anyhow::Result<()> {
    let (mut peer, mut discovery) = clients(connect).await?;
    match command {
        PeerCommand::Id { json } => {
            let id = peer
                .id(pb::PeerIdRequest {})
                .await
                .map_err(super::rpc_error)?
                .into_inner();
            if json {
                return print_json(&json!({
                    "peer_id": id.peer_id,
                    "name": id.name,
                    "listen_addrs": id.listen_addrs,
                    "external_addrs": id.external_addrs,
                    "relay_server": id.relay_server,
                }));
            }
            println!("{}", id.peer_id);
            println!("name:      {}", id.name);
            for addr in &id.listen_addrs {
                println!("listening: {addr}/p2p/{}", id.peer_id);
            }
            for addr in &id.external_addrs {
                println!("reachable: {addr}/p2p/{}", id.peer_id);
            }
            if id.relay_server {
                println!("relay:     serving");
            }
        }
        PeerCommand::Ls { json } => {
            let peers = discovery
                .peers(pb::DiscoveryPeersRequest {})
                .await
                .map_err(super::rpc_error)?
                .into_inner()
                .peers;
            if json {
                let rows: Vec<_> = peers
                    .iter()
                    .map(|p| {
                        json!({
                            "peer_id": p.peer_id,
                            "connection": p.connection,
                            "rtt_us": p.rtt_us,
                            "agent": p.agent,
                            "trusted_as": p.name,
                            "addrs": p.addrs,
                        })
                    })
                    .collect();
                return print_json(&serde_json::Value::Array(rows));
            }
            println!("{:<53} {:<13} {:>9}  AGENT", "PEER", "CONNECTION", "RTT");
            for p in &peers {
                let rtt = if p.rtt_us == 0 {
                    "-".to_owned()
                } else {
                    format!("{:.1}ms", p.rtt_us as f64 / 1000.0)
                };
                let connection = if p.connection.is_empty() {
                    "-"
                } else {
                    &p.connection
                };
                println!(
                    "{:<53} {:<13} {:>9}  {}",
                    p.peer_id, connection, rtt, p.agent
                );
            }
        }
        PeerCommand::Ping { target, json } => {
            let reply = peer
                .ping(pb::PingPeerRequest { peer: target })
                .await
                .map_err(super::rpc_error)?
                .into_inner();
            if json {
                return print_json(&json!({"peer_id": reply.peer_id, "rtt_us": reply.rtt_us}));
            }
            println!("{}: {:.2} ms", reply.peer_id, reply.rtt_us as f64 / 1000.0);
        }
        PeerCommand::Connect { multiaddr, json } => {
            let reply = peer
                .dial(pb::DialPeerRequest { multiaddr })
                .await
                .map_err(super::rpc_error)?
                .into_inner();
            if json {
                return print_json(
                    &json!({"peer_id": reply.peer_id, "connection": reply.connection}),
                );
            }
            println!("connected to {} ({})", reply.peer_id, reply.connection);
        }
        PeerCommand::Trust(args) => {
            let reply = peer
                .trust(pb::TrustPeerRequest {
                    peer_id: args.peer_id,
                    principal: args.principal.unwrap_or_default(),
                    roles: args.roles.clone(),
                })
                .await
                .map_err(super::rpc_error)?
                .into_inner();
            if let Some(trusted) = reply.trusted {
                println!("trusted {} as {}", trusted.peer_id, trusted.principal);
                if args.roles.is_empty() {
                    println!(
                        "it may do nothing yet: grant it a role, e.g. `aurae grant {} viewer`",
                        trusted.principal
                    );
                }
            }
        }
        PeerCommand::Providers { name, json } => {
            let reply = discovery
                .providers(pb::ProvidersRequest {
                    name,
                    timeout_ms: 0,
                })
                .await
                .map_err(super::rpc_error)?
                .into_inner();
            if json {
                return print_json(&json!({"name": reply.name, "providers": reply.peer_ids}));
            }
            for peer_id in &reply.peer_ids {
                println!("{peer_id}");
            }
        }
        PeerCommand::Untrust { peer_id } => {
            let reply = peer
                .untrust(pb::UntrustPeerRequest {
                    peer_id: peer_id.clone(),
                })
                .await
                .map_err(super::rpc_error)?
                .into_inner();
            if reply.removed {
                println!("{peer_id} is no longer trusted");
            } else {
                println!("{peer_id} was not trusted");
            }
        }
        PeerCommand::Config(ConfigCommand::Show { json }) => {
            let config = peer
                .get_config(pb::GetPeerConfigRequest {})
                .await
                .map_err(super::rpc_error)?
                .into_inner()
                .config
                .unwrap_or_default();
            let value = config_json(&config);
            if json {
                return print_json(&value);
            }
            if let Some(fields) = value.as_object() {
                for (key, value) in fields {
                    println!("{key:<25} {value}");
                }
            }
        }
        PeerCommand::Config(ConfigCommand::Set(args)) => {
            let mut config = peer
                .get_config(pb::GetPeerConfigRequest {})
                .await
                .map_err(super::rpc_error)?
                .into_inner()
                .config
                .unwrap_or_default();
            let replace = |list: &mut Vec<String>, new: Vec<String>| {
                if !new.is_empty() {
                    *list = new;
                }
            };
            replace(&mut config.listen_addrs, args.listen);
            replace(&mut config.bootstrap, args.bootstrap);
            replace(&mut config.bootstrap_domains, args.domains);
            replace(&mut config.relays, args.relays);
            if let Some(mdns) = args.mdns {
                config.mdns = mdns;
            }
            if let Some(relay_server) = args.relay_server {
                config.relay_server = relay_server;
            }
            if let Some(kad) = args.kad_protocol {
                config.kad_protocol = kad;
            }
            let stored = peer
                .set_config(pb::SetPeerConfigRequest {
                    config: Some(config),
                })
                .await
                .map_err(super::rpc_error)?
                .into_inner()
                .config
                .unwrap_or_default();
            println!("stored; the peer network restarts with:");
            println!("{}", serde_json::to_string_pretty(&config_json(&stored))?);
        }
        PeerCommand::Trusted { json } => {
            let peers = peer
                .list_trusted(pb::ListTrustedRequest {})
                .await
                .map_err(super::rpc_error)?
                .into_inner()
                .peers;
            if json {
                let rows: Vec<_> = peers
                    .iter()
                    .map(|p| json!({"peer_id": p.peer_id, "principal": p.principal}))
                    .collect();
                return print_json(&serde_json::Value::Array(rows));
            }
            for p in &peers {
                println!("{}  {}", p.peer_id, p.principal);
            }
        }
    }
    Ok(())
}

pub async fn resolve(connect: &ConnectArgs, args: ResolveArgs) -> anyhow::Result<()> {
    let (_, mut discovery) = clients(connect).await?;
    let reply = discovery
        .resolve(pb::ResolveRequest {
            name: args.name.clone(),
            timeout_ms: args.timeout_ms,
        })
        .await
        .map_err(super::rpc_error)?
        .into_inner();
    if args.json {
        return print_json(&json!({
            "name": args.name,
            "peer_id": reply.peer_id,
            "addrs": reply.addrs,
            "record": reply.name,
            "sequence": reply.sequence,
            "queried": reply.hops,
            "entity_provided": reply.entity_provided,
        }));
    }
    println!("{}", reply.peer_id);
    for addr in &reply.addrs {
        println!("  {addr}");
    }
    if args.name.matches('@').count() >= 1 && reply.name.is_empty() && reply.sequence == 0 {
        // Found on the trust list or given as a PeerId: no DHT record was needed.
        println!("  (known locally)");
    }
    Ok(())
}
