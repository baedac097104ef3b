//! The declarative node config end to end through the socket: `aurae apply -f` (plan,
//! apply, re-apply), refusals that name file, line and field and change nothing, `aurae
//! config export` applied on a fresh node, and the node config read at start.

mod common;

use std::time::Duration;

use common::{Daemon, Layout, serving_daemon, wait_serving};

const DOCUMENT: &str = r#"# a node
[capabilities]
runtime = false

[volumes.data]
quota = "64M"

[volumes.logs]

[roles.reader]
allow = ["storage.read:/services/", "system.read"]

[grants]
"alice@node1@local" = ["reader"]
"*@node2@local" = ["viewer"]
"#;

fn write(layout: &Layout, name: &str, text: &str) -> String {
    let path = layout.root.path().join(name);
    std::fs::write(&path, text).expect("write the document");
    path.to_str().expect("UTF-8 temp path").to_owned()
}

fn failure(layout: &Layout, args: &[&str]) -> (Option<i32>, String) {
    let out = layout.aurae(args);
    assert!(!out.status.success(), "aurae {args:?} should have failed");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn export(layout: &Layout) -> String {
    layout.aurae_ok(&["config", "export"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_is_planned_applied_once_and_a_second_apply_changes_nothing() {
    let (layout, _daemon) = serving_daemon().await;
    let file = write(&layout, "node.toml", DOCUMENT);
    let before = export(&layout);

    let plan = layout.aurae_ok(&["apply", "-f", &file, "--dry-run"]);
    for line in [
        "- disable capability runtime",
        "+ create volume data (quota 64M)",
        "+ create volume logs (quota none)",
        "+ create role reader",
        "+ create grant alice@node1@local (roles reader)",
        "+ create grant *@node2@local (roles viewer)",
        "6 changes planned; nothing was changed",
    ] {
        assert!(plan.contains(line), "plan lacks {line:?}:\n{plan}");
    }
    assert_eq!(export(&layout), before, "a dry run changed the node");

    let applied = layout.aurae_ok(&["apply", "-f", &file]);
    assert!(applied.contains("6 changes applied"), "{applied}");
    let volumes = layout.aurae_ok(&["volume", "list", "--json"]);
    let volumes: serde_json::Value = serde_json::from_str(&volumes).expect("volume json");
    let quota_of = |name: &str| {
        volumes
            .as_array()
            .expect("a list")
            .iter()
            .find(|v| v["name"] == name)
            .map(|v| v["quota_bytes"].as_u64().expect("quota"))
    };
    assert_eq!(quota_of("data"), Some(64 << 20), "{volumes}");
    assert_eq!(quota_of("logs"), Some(0), "{volumes}");
    let capabilities = layout.aurae_ok(&["capabilities", "list"]);
    assert!(
        capabilities
            .lines()
            .any(|l| l.starts_with("runtime") && l.contains("disabled")),
        "{capabilities}"
    );
    let role = layout.aurae_ok(&["role", "show", "reader"]);
    assert!(role.contains("storage.read:/services/"), "{role}");
    let grants = layout.aurae_ok(&["grants"]);
    assert!(grants.contains("alice@node1@local"), "{grants}");

    let after = export(&layout);
    let again = layout.aurae_ok(&["apply", "-f", &file, "--json"]);
    let again: serde_json::Value = serde_json::from_str(&again).expect("apply json");
    assert_eq!(
        again["changes"].as_array().map(Vec::len),
        Some(0),
        "{again}"
    );
    assert_eq!(again["applied"], false, "{again}");
    assert_eq!(export(&layout), after);

    // A changed quota is one update.
    let bigger = DOCUMENT.replace("64M", "128M");
    let file = write(&layout, "bigger.toml", &bigger);
    let plan = layout.aurae_ok(&["apply", "-f", &file]);
    assert!(
        plan.contains("~ update volume data (quota 64M -> 128M)")
            && plan.contains("1 change applied"),
        "{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_document_names_file_line_and_field_and_changes_nothing() {
    let (layout, _daemon) = serving_daemon().await;
    let before = export(&layout);
    let status = layout.aurae_ok(&["status", "--json"]);

    // The typo is on line 11; everything before it is valid and must not land.
    let bad = DOCUMENT.replace(
        "allow = [\"storage.read:/services/\", \"system.read\"]",
        "allow = [\"storage.read:/services/\", \"system.raed\"]",
    );
    let file = write(&layout, "bad.toml", &bad);
    let (code, stderr) = failure(&layout, &["apply", "-f", &file]);
    assert_eq!(code, Some(7), "invalid argument: {stderr}");
    assert!(
        stderr.contains("bad.toml:11:")
            && stderr.contains("roles.reader.allow")
            && stderr.contains("system.raed"),
        "{stderr}"
    );

    let syntax = write(&layout, "syntax.toml", "[volumes.data]\nquota = \"1G\n");
    let (_, stderr) = failure(&layout, &["apply", "-f", &syntax]);
    assert!(stderr.contains("syntax.toml:2:"), "{stderr}");

    let unknown = write(&layout, "unknown.toml", "[volumes.data]\nqouta = \"1G\"\n");
    let (_, stderr) = failure(&layout, &["apply", "-f", &unknown]);
    assert!(
        stderr.contains("unknown.toml:2:") && stderr.contains("qouta"),
        "{stderr}"
    );

    let traversal = write(&layout, "traversal.toml", "[volumes.\"../etc\"]\n");
    let (code, stderr) = failure(&layout, &["apply", "-f", &traversal]);
    assert_eq!(code, Some(7), "{stderr}");
    assert!(stderr.contains("traversal.toml:1:"), "{stderr}");

    // Valid, but a grant of a role that exists nowhere: refused where it is named, and
    // the volume and role before it are not created either.
    let dangling = format!("{DOCUMENT}\"bob@node1@local\" = [\"ghost\"]\n");
    let file = write(&layout, "dangling.toml", &dangling);
    let (code, stderr) = failure(&layout, &["apply", "-f", &file]);
    assert_eq!(code, Some(6), "failed precondition: {stderr}");
    assert!(
        stderr.contains("dangling.toml:16:") && stderr.contains("ghost"),
        "{stderr}"
    );

    assert_eq!(
        export(&layout),
        before,
        "a refused document changed the node"
    );
    let volumes = layout.aurae_ok(&["volume", "list", "--json"]);
    assert!(!volumes.contains("\"data\""), "{volumes}");
    assert!(layout.aurae(&["role", "show", "reader"]).status.code() == Some(5));
    assert!(!status.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_node_applied_on_a_fresh_node_gives_the_same_state() {
    let (first, _one) = serving_daemon().await;
    let file = write(&first, "node.toml", DOCUMENT);
    first.aurae_ok(&["apply", "-f", &file]);
    first.aurae_ok(&["volume", "create", "scratch", "--quota", "1.5G"]);
    first.aurae_ok(&[
        "role",
        "create",
        "writer",
        "--allow",
        "storage.write:volume:scratch",
    ]);
    first.aurae_ok(&["grant", "carol@node1@local", "writer"]);
    let exported = export(&first);
    assert!(exported.contains("[volumes.scratch]"), "{exported}");

    let (second, _two) = serving_daemon().await;
    let file = write(&second, "exported.toml", &exported);
    second.aurae_ok(&["apply", "-f", &file]);
    assert_eq!(export(&second), exported);
    let again = second.aurae_ok(&["apply", "-f", &file]);
    assert!(again.contains("nothing to change"), "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_removes_what_the_document_no_longer_names() {
    let (layout, _daemon) = serving_daemon().await;
    let file = write(&layout, "node.toml", DOCUMENT);
    layout.aurae_ok(&["apply", "-f", &file]);
    let smaller = DOCUMENT
        .replace("[volumes.logs]\n", "")
        .replace("\"*@node2@local\" = [\"viewer\"]\n", "");
    let file = write(&layout, "smaller.toml", &smaller);
    let kept = layout.aurae_ok(&["apply", "-f", &file]);
    assert!(
        kept.contains("nothing to change"),
        "without --prune: {kept}"
    );
    let pruned = layout.aurae_ok(&["apply", "-f", &file, "--prune"]);
    assert!(
        pruned.contains("- delete volume logs") && pruned.contains("- delete grant *@node2@local"),
        "{pruned}"
    );
    let volumes = layout.aurae_ok(&["volume", "list", "--json"]);
    assert!(!volumes.contains("\"logs\""), "{volumes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_config_is_applied_at_start_and_a_principal_without_config_apply_is_denied() {
    let layout = Layout::new();
    let file = write(&layout, "node.toml", DOCUMENT);
    let mut cmd = layout.auraed_command();
    cmd.arg("--node-config").arg(&file);
    let _daemon = Daemon::start_with(&layout, cmd);
    layout.pki_init(&[]);
    wait_serving(&layout, Duration::from_secs(2)).await;
    common::wait_until(Duration::from_secs(10), "the node config applied", || {
        layout.aurae(&["role", "show", "reader"]).status.success()
    });
    let volumes = layout.aurae_ok(&["volume", "list", "--json"]);
    assert!(
        volumes.contains("\"data\"") && volumes.contains("\"logs\""),
        "{volumes}"
    );

    // alice holds `reader` (from the document): she may not apply or export.
    let pki = layout.pki_dir.to_str().expect("UTF-8");
    layout.aurae_ok(&["pki", "issue", "alice", "--pki-dir", pki]);
    let alice = layout.identity("alice");
    let mut cli = layout.aurae_command();
    cli.args(["--cert", alice.client_cert.to_str().expect("UTF-8")])
        .args(["--key", alice.client_key.to_str().expect("UTF-8")])
        .args(["apply", "-f", &file]);
    let out = cli.output().expect("run aurae");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("config.apply"), "{stderr}");
}

const CELLS: &str = r#"
[volumes.web-data]
quota = "16M"

[cells.web]
memory_max = "256M"
pids_max = 64

[cells.web.executables.server]
command = ["sleep", "1000"]
restart = "always"
env = { MODE = "test" }
"#;

fn cell_list(layout: &Layout) -> serde_json::Value {
    let text = layout.aurae_ok(&["cell", "ls", "--json"]);
    serde_json::from_str(&text).expect("cell json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cells_and_executables_are_declared_updated_exported_and_pruned() {
    let (layout, _daemon) = serving_daemon().await;
    let file = write(&layout, "cells.toml", CELLS);
    let applied = layout.aurae_ok(&["apply", "-f", &file]);
    assert!(
        applied.contains("+ create cell web (1 executable: server)"),
        "{applied}"
    );
    let cells = cell_list(&layout);
    assert!(cells.to_string().contains("\"web\""), "{cells}");
    let again = layout.aurae_ok(&["apply", "-f", &file]);
    assert!(again.contains("nothing to change"), "{again}");

    let exported = export(&layout);
    assert!(
        exported.contains("[cells.web]") && exported.contains("memory_max = \"256M\""),
        "{exported}"
    );
    assert!(
        exported.contains("[cells.web.executables.server]"),
        "{exported}"
    );
    let file = write(&layout, "exported.toml", &exported);
    let same = layout.aurae_ok(&["apply", "-f", &file]);
    assert!(
        same.contains("nothing to change"),
        "export re-applied: {same}"
    );

    let changed = CELLS.replace("\"sleep\", \"1000\"", "\"sleep\", \"2000\"");
    let file = write(&layout, "changed.toml", &changed);
    let updated = layout.aurae_ok(&["apply", "-f", &file]);
    assert!(
        updated.contains("~ update executable web/server (restarted as: sleep 2000)"),
        "{updated}"
    );

    let file = write(&layout, "empty.toml", "");
    let pruned = layout.aurae_ok(&["apply", "-f", &file, "--prune"]);
    assert!(pruned.contains("- delete cell web"), "{pruned}");
    assert!(!cell_list(&layout).to_string().contains("\"web\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cell_that_fails_to_start_undoes_everything_the_apply_did() {
    let (layout, _daemon) = serving_daemon().await;
    let before = export(&layout);
    // `zz` is allocated after `web`, and fails: its rootfs is a file, not a directory.
    let failing = format!("{CELLS}\n[cells.zz]\nrootfs = \"/etc/hostname\"\n");
    let file = write(&layout, "failing.toml", &failing);
    let (code, stderr) = failure(&layout, &["apply", "-f", &file]);
    assert_eq!(code, Some(7), "{stderr}");
    assert!(
        stderr.contains("create cell zz")
            && stderr.contains("not a directory")
            && stderr.contains("undone"),
        "{stderr}"
    );
    assert!(
        !cell_list(&layout).to_string().contains("\"web\""),
        "cell web was left allocated"
    );
    assert_eq!(export(&layout), before, "the failed apply changed the node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_peers_are_declared_exported_and_pruned() {
    let (layout, _daemon) = serving_daemon().await;
    let peer = "12D3KooWGzBiKgF3yV4u5Lp3RrSw4SDZQJ3Lk4L3hcSQL4rTHAmt";
    let document = format!("[peers]\n\"{peer}\" = \"node@node2@local\"\n");
    let file = write(&layout, "peers.toml", &document);
    let applied = layout.aurae_ok(&["apply", "-f", &file]);
    assert!(
        applied.contains(&format!(
            "+ create peer {peer} (trusted as node@node2@local)"
        )),
        "{applied}"
    );
    // The trust list is the node's whether the peer capability runs or not.
    let exported = export(&layout);
    assert!(
        exported.contains("[peers]")
            && exported.contains(&format!("{peer} = \"node@node2@local\"")),
        "{exported}"
    );
    let again = layout.aurae_ok(&["apply", "-f", &file]);
    assert!(
        again.contains("no changes") || again.contains("matches"),
        "{again}"
    );

    // Bad input names the place; trusting a peer as this node's admin is refused.
    let bad = write(
        &layout,
        "bad.toml",
        "[peers]\n\"not-a-peer\" = \"node@x@local\"\n",
    );
    let (code, said) = failure(&layout, &["apply", "-f", &bad]);
    assert_eq!(code, Some(7), "{said}");
    assert!(
        said.contains("bad.toml:2") && said.contains("not a PeerId"),
        "{said}"
    );
    let admin = write(
        &layout,
        "admin.toml",
        &format!("[peers]\n\"{peer}\" = \"admin@node1@local\"\n"),
    );
    let (_, said) = failure(&layout, &["apply", "-f", &admin]);
    assert!(said.contains("this node's admin"), "{said}");

    // Pruning with a document that names no peer takes it off the list.
    let empty = write(&layout, "empty.toml", "");
    let pruned = layout.aurae_ok(&["apply", "-f", &empty, "--prune"]);
    assert!(
        pruned.contains(&format!("- delete peer {peer}")),
        "{pruned}"
    );
    let exported = export(&layout);
    assert!(!exported.contains(peer), "{exported}");
}
