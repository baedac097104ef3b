//! The runtime's cell scenarios on a machine that mounts only cgroup v2: Debian's cloud
//! kernel boots under QEMU (TCG) with auraed as PID 1, as in `pid1_qemu.rs`.
//!
//! The guest has no network, so the test is prepared on the host and runs by itself:
//!
//! 1. A host auraed (the test kit's) gets its PKI (`aurae pki init`) and, through the
//!    Storage API, the records of a cell `qtest` with one executable `script` (restart
//!    policy `always`) that runs `/bin/sh /scenario.sh`. It is stopped with SIGTERM, so
//!    its store is checkpointed.
//! 2. Its data and PKI directories, the admin's client identity (at `/admin`), busybox,
//!    the `aurae` CLI (next to `/auraed`, so cells get it too) and the scenario script are
//!    packed into the initramfs by `scripts/qemu-pid1-image`.
//! 3. At boot auraed restores cell `qtest` and starts the script in it. The script drives
//!    auraed through the cell's `/run/aurae.sock` as the admin, and prints one
//!    `QTEST pass <name>` or `QTEST fail <name>: <why>` line per scenario on the serial
//!    console (bound into the cell), then `QTEST done`.
//!
//! auraed is the guest's init straight from the initramfs (`rdinit=/auraed`): the kernel's
//! rootfs, which pivot_root(2) cannot leave, so the cells' inits move their root over it
//! instead (the switch_root way); this test covers that path too.
//!
//! Needs root, `qemu-system-x86_64` (qemu-system-x86), `cpio`, busybox-static and apt (for
//! the kernel package).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aurae_runtime::spec::{
    AbsolutePath, CellSpec, ExecutableSpec, Isolation, Limits, Mount, MountKind, RestartPolicy,
};
use aurae_testkit::qemu::{Boot, QEMU, Qemu};
use aurae_testkit::{Daemon, Layout, aurae_bin, auraed_bin};

/// Boot, restore and every scenario: about two minutes under TCG on a busy two-core host.
const RUN_TIMEOUT: Duration = Duration::from_secs(420);

/// The kernel command line: auraed is PID 1 itself, its flags follow `--`.
const CMDLINE: &str = "console=ttyS0 quiet panic=-1 rdinit=/auraed -- \
    --sock /run/aurae.sock --pki-dir /etc/aurae/pki --data-dir /var/lib/aurae \
    --key /root/.ssh/id_aura";

/// Where the serial console appears inside cell `qtest` (the cell's /dev is read-only).
const CONSOLE_IN_CELL: &str = "/tmp/console";

/// The scenarios, run in cell `qtest` as the admin. Each prints one QTEST line.
const SCENARIO: &str = r#"#!/bin/sh
C=/tmp/console
A="/aurae --sock /run/aurae.sock --ca /admin/ca.crt --cert /admin/admin.crt --key /admin/admin.key"
T=/tmp/qtest
cg=/sys/fs/cgroup
mkdir -p $T
say() { echo "$*" > $C; }
run() {
  why=""
  if "$2" > $T/out 2>&1; then
    say "QTEST pass $1"
  else
    say "QTEST fail $1: $why | $(tr '\n' '|' < $T/out | cut -c1-1500)"
  fi
}
# Runs a command; on failure `why` says what and the caller returns 1.
ok() {
  out=$("$@" 2>&1) || { why="\`$*\` exited $?: $out"; return 1; }
}
# The cgroup directory of a cell, wherever the runtime's root is.
cgdir() { find $cg -type d -path "*/aurae-cells*/$1" 2>/dev/null | head -n1; }
gone() {
  d=$(cgdir "$1")
  [ -z "$d" ] || { why="cgroup $d is left behind"; return 1; }
}
lines() { $A logs "$1" 2>/dev/null | wc -l; }
# Waits until `lines $1` is above $2, at most $3 half-seconds.
wait_lines() {
  i=0
  while [ "$(lines $1)" -le "$2" ]; do
    i=$((i+1)); [ $i -gt $3 ] && return 1; sleep 0.5
  done
}
now_cs() { awk '{ printf "%d\n", $1 * 100 }' /proc/uptime; }

t_pure_v2() {
  cat /proc/self/cgroup
  [ "$(wc -l < /proc/self/cgroup)" = 1 ] && grep -q '^0::' /proc/self/cgroup \
    || { why="not a pure cgroup v2 machine"; return 1; }
  [ -f $cg/cgroup.controllers ] || { why="no cgroup2 at $cg"; return 1; }
  [ -n "$(cgdir qtest)" ] || { why="no cgroup of cell qtest"; ls $cg; return 1; }
  grep ' - cgroup2 ' /proc/self/mountinfo | grep -q favordynmods \
    || { why="the runtime did not turn favordynmods on: $(grep cgroup2 /proc/self/mountinfo)"; return 1; }
}
t_first() {
  ok $A cell allocate first || return 1
  ok $A exec first -- sh -c 'tr "\0" " " < /proc/1/cmdline; echo; echo self=$$; hostname; ls /sys/class/net' || return 1
  echo "$out"
  [ "$(echo "$out" | sed -n 1p | cut -c1-15)" = aurae-cell-init ] || { why="pid 1 is not aurae-cell-init"; return 1; }
  [ "$(echo "$out" | sed -n 2p)" = self=2 ] || { why="the shell is not pid 2"; return 1; }
  [ "$(echo "$out" | sed -n 3p)" = first ] || { why="the hostname is not the cell's"; return 1; }
  [ "$(echo "$out" | sed -n '4,$p')" = lo ] || { why="the cell sees more than loopback"; return 1; }
  ok $A cell free first || return 1
  gone first
}
t_memory_limit() {
  ok $A cell allocate hog --memory 32M || return 1
  $A exec hog --name tail -- tail /dev/zero; rc=$?
  [ $rc = 137 ] || { why="exec exited $rc, not 128 + SIGKILL"; return 1; }
  ok $A cell ls --json || return 1
  echo "$out" | grep -q '"oom_killed": true' || { why="cell ls --json: not oom_killed"; echo "$out"; return 1; }
  echo "$out" | grep -q '"signal": 9' || { why="cell ls --json: not signal 9"; echo "$out"; return 1; }
  ok $A cell free hog || return 1
  gone hog
}
t_pids_limit() {
  ok $A cell allocate bomb --pids 16 || return 1
  err=$($A exec bomb -- sh -c 'for i in $(seq 40); do sleep 30 & done; echo started' 2>&1 >/dev/null)
  echo "$err" | grep -q fork || { why="the limit never refused a fork: $err"; return 1; }
  ok $A cell free bomb || return 1
  gone bomb
}
t_freeze_thaw() {
  ok $A cell allocate ice || return 1
  ok $A exec ice -d --name tick -- sh -c 'while true; do echo tick; sleep 0.1; done' || return 1
  wait_lines ice/tick 3 60 || { why="no ticks"; return 1; }
  ok $A cell freeze ice || return 1
  ok $A cell ls --json || return 1
  echo "$out" | grep -q '"state": "frozen"' || { why="cell ls does not say frozen"; echo "$out"; return 1; }
  sleep 1
  n=$(lines ice/tick); sleep 2; m=$(lines ice/tick)
  [ "$n" = "$m" ] || { why="a frozen cell made progress: $n -> $m lines"; return 1; }
  ok $A cell thaw ice || return 1
  wait_lines ice/tick $((m + 2)) 60 || { why="no progress after thaw"; return 1; }
  ok $A cell free ice || return 1
  gone ice
}
t_stop_escalates() {
  ok $A cell allocate stubborn || return 1
  ok $A exec stubborn -d --name mule --stop-grace 0.5 -- sh -c "trap '' TERM; echo ready; while true; do sleep 0.1; done" || return 1
  wait_lines stubborn/mule 0 60 || { why="never ready"; return 1; }
  t0=$(now_cs)
  ok $A cell stop stubborn/mule --json || return 1
  t1=$(now_cs)
  echo "$out"
  echo "$out" | grep -q '"signal": 9' || { why="not killed by SIGKILL"; return 1; }
  echo "$out" | grep -q '"state": "stopped"' || { why="not stopped"; return 1; }
  [ $((t1 - t0)) -ge 50 ] || { why="stopped after $((t1 - t0))0 ms, within the grace"; return 1; }
  ok $A cell free stubborn || return 1
  gone stubborn
}
t_on_failure_backoff() {
  ok $A cell allocate flaky || return 1
  t0=$(now_cs)
  $A exec flaky --name fail --restart on-failure --max-retries 3 -- sh -c 'echo run; exit 7'; rc=$?
  t1=$(now_cs)
  [ $rc = 7 ] || { why="exec exited $rc, not 7"; return 1; }
  [ $((t1 - t0)) -ge 70 ] || { why="four runs in $((t1 - t0))0 ms: no back-off"; return 1; }
  ok $A cell ls --json || return 1
  echo "$out" | grep -q '"restarts": 3' || { why="not 3 restarts"; echo "$out"; return 1; }
  echo "$out" | grep -q '"state": "exited"' || { why="not exited"; echo "$out"; return 1; }
  n=$(lines flaky/fail)
  [ "$n" = 4 ] || { why="$n runs logged, not 4"; return 1; }
  ok $A cell free flaky || return 1
  gone flaky
}
t_orphan_dies() {
  ok $A cell allocate forky || return 1
  ok $A exec forky -- sh -c '(sleep 1000 &) ; echo forked' || return 1
  d=$(cgdir forky)
  # cell init and the orphaned sleep (pids outside this cell's namespace read as 0)
  n=$(find $d -name cgroup.procs -exec cat {} + | wc -l)
  [ "$n" -ge 2 ] || { why="the orphan is not in the cell's cgroup ($n processes)"; return 1; }
  ok $A cell free forky || return 1
  # a cgroup is removed only once no process is left in it
  gone forky
}
t_memory_high_on_v2() {
  ok $A cell allocate mh --memory-high 64M || return 1
  d=$(cgdir mh)
  [ "$(cat $d/memory.high)" = 67108864 ] || { why="memory.high is $(cat $d/memory.high)"; return 1; }
  ok $A cell free mh || return 1
  gone mh
}
t_nested_while_parent_runs() {
  ok $A cell allocate nest || return 1
  ok $A exec nest -d --name svc -- sleep 1000 || return 1
  ok $A cell allocate nest/inner || { $A cell free nest; return 1; }
  ok $A exec nest/inner -- echo inner-ran || { $A cell free nest; return 1; }
  [ "$out" = inner-ran ] || { why="nest/inner printed: $out"; $A cell free nest; return 1; }
  ok $A cell free nest || return 1
  gone nest
}
t_nothing_left() {
  left=""
  for root in $(find $cg -type d -name 'aurae-cells*' 2>/dev/null); do
    for d in "$root"/*/; do
      [ -d "$d" ] || continue
      [ "$(basename "$d")" = qtest ] || left="$left $d"
    done
  done
  [ -z "$left" ] || { why="cgroups left:$left"; return 1; }
}

say "QTEST start"
run pure-v2 t_pure_v2
run first-process-hostname-loopback t_first
run memory-limit-oom t_memory_limit
run pids-limit t_pids_limit
run freeze-thaw t_freeze_thaw
run stop-escalates t_stop_escalates
run on-failure-backoff t_on_failure_backoff
run orphan-dies-with-cell t_orphan_dies
run memory-high-on-v2 t_memory_high_on_v2
run nested-while-parent-runs t_nested_while_parent_runs
run nothing-left t_nothing_left
say "QTEST done"
exec sleep 100000
"#;

/// The scenario names the script reports, in order.
const SCENARIOS: [&str; 11] = [
    "pure-v2",
    "first-process-hostname-loopback",
    "memory-limit-oom",
    "pids-limit",
    "freeze-thaw",
    "stop-escalates",
    "on-failure-backoff",
    "orphan-dies-with-cell",
    "memory-high-on-v2",
    "nested-while-parent-runs",
    "nothing-left",
];

/// Fails loudly, naming the apt packages, if a tool the test needs is missing.
fn require_tools() {
    let runs = |program: &str, arg: &str| {
        Command::new(program)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(
        runs(QEMU, "--version"),
        "{QEMU} is missing: this test boots a real kernel under QEMU \
         (apt-get install qemu-system-x86)"
    );
    assert!(
        runs("cpio", "--version"),
        "cpio is missing: the initramfs is a cpio archive (apt-get install cpio)"
    );
    assert!(
        busybox().is_some(),
        "a static busybox is missing: the guest's shell and tools are busybox-static's \
         (apt-get install busybox-static)"
    );
}

/// busybox-static's binary (statically linked, so it runs without libraries).
fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| {
            path.is_file()
                && Command::new("ldd").arg(path).output().is_ok_and(|out| {
                    !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("=>")
                })
        })
}

fn abs(path: &str) -> AbsolutePath {
    AbsolutePath::parse("path", path).unwrap()
}

fn bind(source: &str, destination: &str, read_only: bool) -> Mount {
    Mount {
        destination: abs(destination),
        kind: MountKind::Bind {
            source: abs(source),
            read_only,
        },
    }
}

/// The records of cell `qtest` and its executable, as the runtime stores them.
fn qtest_records() -> (String, String) {
    let cell = CellSpec {
        name: "qtest".parse().unwrap(),
        limits: Limits::default(),
        isolation: Isolation::default(),
        rootfs: None,
        rootfs_read_only: false,
        mounts: vec![
            // The cell's /dev is a read-only tmpfs: the console goes under its /tmp.
            bind("/dev/console", CONSOLE_IN_CELL, false),
            bind("/admin", "/admin", true),
            // The cell's own sysfs has an empty /sys/fs/cgroup: the machine's whole tree.
            bind("/sys/fs/cgroup", "/sys/fs/cgroup", true),
        ],
        hostname: None,
        masked_paths: Vec::new(),
        readonly_paths: Vec::new(),
    };
    let script = ExecutableSpec {
        name: "script".parse().unwrap(),
        argv: vec!["/bin/sh".to_owned(), "/scenario.sh".to_owned()],
        env: Vec::new(),
        cwd: None,
        uid: None,
        gid: None,
        restart: RestartPolicy::Always,
        stop_signal: None,
        stop_grace: Duration::from_secs(10),
        rlimits: Vec::new(),
        tty: false,
        stdin: false,
        no_new_privileges: false,
        capabilities: None,
    };
    (
        serde_json::to_string(&cell).unwrap(),
        serde_json::to_string(&script).unwrap(),
    )
}

fn ok(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    ok(&out, &format!("cp -a {} {}", from.display(), to.display()));
}

/// `binary` at `to`, stripped when `strip` is there (a debug build is large, and the
/// guest holds the initramfs twice while it moves into a tmpfs).
fn install_binary(binary: &Path, to: &Path) {
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(to)
        .arg(binary)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(binary, to).unwrap();
    }
}

/// The extra tree for the initramfs: auraed's state prepared on the host, the admin's
/// identity, busybox, the CLI and the scripts.
fn prepare_extra(extra: &Path) {
    let layout = Layout::new();
    let mut daemon = Daemon::start(&layout);
    layout.pki_init(&[]);
    aurae_testkit::wait_serving_blocking(&layout, Duration::from_secs(10));
    let (cell, script) = qtest_records();
    for (path, json) in [
        ("/.aurae/runtime/cells/qtest/cell.json", &cell),
        (
            "/.aurae/runtime/cells/qtest/executables/script.json",
            &script,
        ),
    ] {
        ok(
            &layout.aurae(&["kv", "put", path, json]),
            &format!("kv put {path}"),
        );
    }
    let status = daemon.terminate();
    assert!(
        status.success(),
        "the host auraed stopped with {status}:\n{}",
        daemon.log_text()
    );

    copy_tree(&layout.data_dir, &extra.join("var/lib/aurae"));
    copy_tree(&layout.pki_dir, &extra.join("etc/aurae/pki"));
    copy_tree(&layout.home.join(".aurae"), &extra.join("admin"));

    let bin = extra.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox().unwrap(), bin.join("busybox")).unwrap();
    for tool in [
        "sh",
        "echo",
        "cat",
        "sleep",
        "head",
        "tail",
        "ls",
        "grep",
        "true",
        "false",
        "seq",
        "tr",
        "sed",
        "cut",
        "wc",
        "awk",
        "find",
        "basename",
        "hostname",
        "mkdir",
        "mount",
        "cp",
        "switch_root",
        "xargs",
        "env",
        "ps",
        "kill",
        "date",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
    }
    install_binary(&aurae_bin(), &extra.join("aurae"));
    let write_program = |name: &str, text: &str| {
        use std::os::unix::fs::PermissionsExt;
        let path = extra.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write_program("scenario.sh", SCENARIO);
}

/// The kernel and initramfs, built by `scripts/qemu-pid1-image` with the extra tree.
fn build_image(dir: &Path, extra: &Path) {
    let auraed = dir.join("auraed");
    install_binary(&auraed_bin(), &auraed);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/qemu-pid1-image");
    let out = Command::new(&script)
        .arg(&auraed)
        .arg(dir)
        .arg(extra)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}): no kernel or initramfs for the QEMU test; .ci/run installs what \
         it needs (cpio, apt lists for linux-image-cloud-amd64)\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_cell_scenarios_pass_on_a_machine_with_only_cgroup_v2() {
    require_tools();
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = dir.path().join("extra");
    prepare_extra(&extra);
    build_image(dir.path(), &extra);

    let started = Instant::now();
    let mut qemu = Qemu::boot(
        dir.path(),
        dir.path(),
        Boot {
            memory: "1G",
            cmdline: CMDLINE,
            monitor: false,
        },
    );
    qemu.wait_for("QTEST start", RUN_TIMEOUT);
    let script_started = started.elapsed();
    qemu.wait_for("QTEST done", RUN_TIMEOUT);
    let console = qemu.console();
    let results: Vec<&str> = console
        .lines()
        .filter_map(|line| line.find("QTEST ").map(|at| &line[at..]))
        .collect();
    eprintln!(
        "the scenario script started {script_started:?} after boot and finished after {:?}:\n{}",
        started.elapsed(),
        results.join("\n")
    );
    let failed: Vec<&&str> = results
        .iter()
        .filter(|line| {
            !line.starts_with("QTEST pass ") && **line != "QTEST start" && **line != "QTEST done"
        })
        .collect();
    let missing: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|name| !results.contains(&format!("QTEST pass {name}").as_str()))
        .collect();
    assert!(
        failed.is_empty() && missing.is_empty(),
        "failed: {failed:#?}\nnot passed: {missing:?}{}",
        qemu.report()
    );
    for bad in ["Kernel panic", "cannot restore"] {
        assert!(
            !console.contains(bad),
            "`{bad}` on the console{}",
            qemu.report()
        );
    }
}
