//! auraed as PID 1 of a PID namespace: reaping orphans and shutting down on SIGTERM.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Daemon, Layout, auraed_bin, children_of, plaintext_status, wait_until};

/// Starts auraed as PID 1 of a new PID namespace; returns it and its pid as seen from here.
fn start_as_pid1(layout: &Layout) -> (Daemon, i32) {
    let inner = layout.auraed_command();
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(auraed_bin())
        .args(inner.get_args())
        .env("HOME", &layout.home)
        .env_remove("AURAE_SOCKET");
    let daemon = Daemon::start_with(layout, cmd);
    let unshare = daemon.pid();
    let children =
        std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap();
    let pid = children
        .split_whitespace()
        .next()
        .expect("unshare has a child")
        .parse()
        .unwrap();
    (daemon, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_pid1_a_storm_of_1000_orphans_leaves_no_zombie_and_sigterm_exits_0() {
    let layout = Layout::new();
    let (mut daemon, host_pid) = start_as_pid1(&layout);
    let status = plaintext_status(&layout).await.unwrap();
    assert_eq!(status.pid, 1, "auraed is PID 1 of its namespace");

    // One shell starts 1,000 sleepers and exits: all of them are reparented to auraed.
    let storm = Command::new("nsenter")
        .args(["-t", &host_pid.to_string(), "-p", "sh", "-c"])
        .arg("i=0; while [ $i -lt 1000 ]; do sleep 4 & i=$((i+1)); done; exit 0")
        .status()
        .expect("nsenter (util-linux) is needed for this test");
    assert!(storm.success());
    let (orphans, _) = children_of(host_pid);
    assert!(
        orphans >= 500,
        "only {orphans} orphans were reparented to auraed"
    );

    wait_until(Duration::from_secs(20), "every orphan reaped", || {
        children_of(host_pid) == (0, 0)
    });
    assert!(daemon.is_running());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(host_pid),
        nix::sys::signal::SIGTERM,
    )
    .unwrap();
    let exit = daemon.wait(Duration::from_secs(10));
    assert_eq!(exit.code(), Some(0), "log:\n{}", daemon.log_text());
}
