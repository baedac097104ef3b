//! `aurae status`.

use aurae_client::{Reached, connect_any};
use aurae_proto::v0::{Mode, StatusRequest, StatusResponse};
use serde_json::json;

use crate::cli::ConnectArgs;

pub async fn run(connect: &ConnectArgs, json: bool) -> anyhow::Result<()> {
    let target = connect.options().resolve()?;
    let (client, reached) = connect_any(&target).await?;
    let status = client
        .system()
        .status(StatusRequest {})
        .await
        .map_err(super::rpc_error)?
        .into_inner();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&as_json(&status, &target.socket))?
        );
    } else {
        print_human(&status, reached, &target.socket);
    }
    Ok(())
}

fn mode_name(status: &StatusResponse) -> &'static str {
    match status.mode() {
        Mode::Serving => "serving",
        Mode::EmptyLoop => "empty_loop",
        Mode::Unspecified => "unknown",
    }
}

fn as_json(status: &StatusResponse, socket: &std::path::Path) -> serde_json::Value {
    json!({
        "socket": socket,
        "version": status.version,
        "mode": mode_name(status),
        "peer_id": status.peer_id,
        "uptime_seconds": status.uptime_seconds,
        "capabilities": status.capabilities,
        "missing_files": status.missing_files,
        "reason": status.reason,
        "fix_command": status.fix_command,
        "pki_dir": status.pki_dir,
        "principal": status.principal,
        "key_path": status.key_path,
        "key_error": status.key_error,
        "pid": status.pid,
    })
}

fn print_human(status: &StatusResponse, reached: Reached, socket: &std::path::Path) {
    let headline = match reached {
        Reached::MutualTls => "serving over mutual TLS",
        Reached::EmptyLoop => "EMPTY LOOP (health and status only)",
    };
    println!(
        "auraed {} on {}: {headline}",
        status.version,
        socket.display()
    );
    if status.mode() == Mode::EmptyLoop {
        println!("  reason:       {}", status.reason);
        if !status.missing_files.is_empty() {
            println!("  missing:      {}", status.missing_files.join(", "));
        }
        println!("  fix:          {}", status.fix_command);
    }
    if !status.principal.is_empty() {
        println!("  you are:      {}", status.principal);
    }
    if status.peer_id.is_empty() {
        println!("  peer id:      none ({})", status.key_error);
    } else {
        println!("  peer id:      {}", status.peer_id);
    }
    println!("  key:          {}", status.key_path);
    println!("  pki dir:      {}", status.pki_dir);
    println!(
        "  uptime:       {}s (pid {})",
        status.uptime_seconds, status.pid
    );
    if !status.capabilities.is_empty() {
        println!("  capabilities: {}", status.capabilities.join(", "));
    }
}
