//! The runtime capability end to end: real cgroups and namespaces, driven through the
//! socket with the `aurae` CLI (and the API where a CLI round trip per call would be too
//! slow), as root.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use aurae_proto::v0 as pb;
use aurae_proto::v0::cells_client::CellsClient;
use aurae_testkit::{Daemon, Layout, children_of, spare_cell_inits, wait_until};

/// A serving daemon whose cells die with the test: the daemon leaves its workloads running
/// when it stops (a restarted daemon adopts them), so a test that fails half-way would
/// leave them on the host.
struct Node {
    layout: Layout,
    daemon: Daemon,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.daemon.kill();
        let data = std::path::absolute(&self.layout.data_dir).unwrap();
        let name = format!(
            "aurae-cells-{:08x}",
            crc32fast::hash(data.as_os_str().as_encoded_bytes())
        );
        if let Ok(hierarchy) = aurae_runtime::cgroup::Hierarchy::detect(&name) {
            let _ = hierarchy.remove_all();
        }
    }
}

async fn serving_node() -> Node {
    let (layout, daemon) = aurae_testkit::serving_daemon().await;
    Node { layout, daemon }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn allocate(layout: &Layout, args: &[&str]) {
    let mut all = vec!["cell", "allocate"];
    all.extend_from_slice(args);
    ok(&layout.aurae(&all));
}

fn exec(layout: &Layout, cell: &str, script: &str) -> Output {
    layout.aurae(&["exec", cell, "--", "sh", "-c", script])
}

fn cells_json(layout: &Layout, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["cell", "ls", "--json"]);
    serde_json::from_str(&ok(&layout.aurae(&all))).unwrap()
}

fn executable_json(layout: &Layout, cell: &str, exe: &str) -> serde_json::Value {
    let cells = cells_json(layout, &[]);
    cells
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == cell)
        .and_then(|c| {
            c["executables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == exe)
                .cloned()
        })
        .unwrap_or_else(|| panic!("no {cell}/{exe} in {cells:#}"))
}

/// Every cgroup directory the runtime made, in every hierarchy.
fn runtime_cgroups() -> Vec<String> {
    let mut found = Vec::new();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let fstype = fields
            .iter()
            .skip_while(|f| **f != "-")
            .nth(1)
            .copied()
            .unwrap_or_default();
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        walk(Path::new(fields[4]), &mut found, 0);
    }
    found
}

fn walk(dir: &Path, found: &mut Vec<String>, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("aurae-cells"))
        {
            for cell in std::fs::read_dir(&path).unwrap().flatten() {
                if cell.path().is_dir() {
                    found.push(cell.path().display().to_string());
                }
            }
        } else if depth < 3 {
            walk(&path, found, depth + 1);
        }
    }
}

fn no_cell_cgroups_named(name: &str) {
    let left: Vec<String> = runtime_cgroups()
        .into_iter()
        .filter(|p| p.ends_with(&format!("/{name}")))
        .collect();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
}

#[tokio::test]
async fn a_cells_first_process_is_pid_1_and_it_sees_its_own_hostname_and_only_loopback() {
    let node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["first"]);
    let out = ok(&exec(
        layout,
        "first",
        "tr '\\0' ' ' < /proc/1/cmdline; echo; echo self=$$; hostname; ls /sys/class/net; \
         cat /sys/class/net/lo/operstate; ls /proc | grep -c '^[0-9]'",
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("aurae-cell-init"), "{out}");
    assert_eq!(lines[1], "self=2", "{out}");
    assert_eq!(lines[2], "first", "{out}");
    assert_eq!(lines[3], "lo", "only loopback: {out}");
    assert_eq!(lines[4], "unknown", "loopback is up: {out}");
    // init, sh, ls and grep at most: no host process is visible.
    let visible: u32 = lines[5].parse().unwrap();
    assert!(visible <= 4, "{out}");
    ok(&layout.aurae(&["cell", "free", "first"]));
    no_cell_cgroups_named("first");
}

#[tokio::test]
async fn a_cell_sees_the_host_read_only_with_a_private_tmp_and_no_host_sockets() {
    let node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["ro"]);
    let marker = layout.root.path().join("outside");
    let out = exec(
        layout,
        "ro",
        &format!(
            "touch /etc/aurae-test 2>&1; touch {} 2>&1; echo x > /tmp/inside && cat /tmp/inside; \
             ls /run; ls {} 2>&1 | head -1",
            marker.display(),
            layout.data_dir.display()
        ),
    );
    let stdout = ok(&out);
    assert!(stdout.contains("Read-only file system"), "{stdout}");
    assert!(!marker.exists(), "the cell wrote to the host");
    assert!(stdout.contains("\nx\n"), "{stdout}");
    assert!(
        stdout.contains("aurae\naurae.sock\n"),
        "only aurae's socket in /run: {stdout}"
    );
    assert!(!Path::new("/tmp/inside").exists());
    ok(&layout.aurae(&["cell", "free", "ro"]));
}

#[tokio::test]
async fn a_memory_limit_kills_a_hog_and_the_exit_says_oom() {
    let node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["hog", "--memory", "32M"]);
    let out = layout.aurae(&["exec", "hog", "--name", "tail", "--", "tail", "/dev/zero"]);
    assert_eq!(out.status.code(), Some(128 + 9), "{}", text(&out.stderr));
    let exe = executable_json(layout, "hog", "tail");
    assert_eq!(exe["oom_killed"], true, "{exe:#}");
    assert_eq!(exe["signal"], 9, "{exe:#}");
    ok(&layout.aurae(&["cell", "free", "hog"]));
}

#[tokio::test]
async fn a_pids_limit_stops_a_fork_bomb() {
    let node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["bomb", "--pids", "16"]);
    let out = exec(
        layout,
        "bomb",
        "for i in $(seq 40); do sleep 30 & done; echo started",
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("fork"),
        "the limit never refused a fork: {stderr}"
    );
    ok(&layout.aurae(&["cell", "free", "bomb"]));
    no_cell_cgroups_named("bomb");
}

fn log_lines(layout: &Layout, target: &str) -> usize {
    ok(&layout.aurae(&["logs", target])).lines().count()
}

#[tokio::test]
async fn freeze_stops_progress_and_thaw_resumes_it() {
    let node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["ice"]);
    ok(&layout.aurae(&[
        "exec",
        "ice",
        "-d",
        "--name",
        "tick",
        "--",
        "sh",
        "-c",
        "while true; do echo tick; sleep 0.05; done",
    ]));
    wait_until(Duration::from_secs(10), "ticks", || {
        log_lines(layout, "ice/tick") > 3
    });
    ok(&layout.aurae(&["cell", "freeze", "ice"]));
    assert_eq!(cells_json(layout, &[])[0]["state"], "frozen");
    let frozen = log_lines(layout, "ice/tick");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        log_lines(layout, "ice/tick"),
        frozen,
        "a frozen cell made progress"
    );
    ok(&layout.aurae(&["cell", "thaw", "ice"]));
    wait_until(Duration::from_secs(10), "progress after thaw", || {
        log_lines(layout, "ice/tick") > frozen + 2
    });
    ok(&layout.aurae(&["cell", "free", "ice"]));
}

#[tokio::test]
async fn stop_escalates_to_sigkill_after_the_grace() {
    let node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["stubborn"]);
    ok(&layout.aurae(&[
        "exec",
        "stubborn",
        "-d",
        "--name",
        "mule",
        "--stop-grace",
        "0.5",
        "--",
        "sh",
        "-c",
        "trap '' TERM; echo ready; while true; do sleep 0.1; done",
    ]));
    wait_until(Duration::from_secs(10), "ready", || {
        log_lines(layout, "stubborn/mule") > 0
    });
    let started = Instant::now();
    let stopped: serde_json::Value = serde_json::from_str(&ok(&layout.aurae(&[
        "cell",
        "stop",
        "stubborn/mule",
        "--json",
    ])))
    .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(stopped["signal"], 9, "{stopped:#}");
    assert_eq!(stopped["state"], "stopped", "{stopped:#}");
    ok(&layout.aurae(&["cell", "free", "stubborn"]));
}

#[tokio::test]
async fn on_failure_restarts_with_backoff_up_to_its_retries() {
    let node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["flaky"]);
    let started = Instant::now();
    let out = layout.aurae(&[
        "exec",
        "flaky",
        "--name",
        "fail",
        "--restart",
        "on-failure",
        "--max-retries",
        "3",
        "--",
        "sh",
        "-c",
        "echo run; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    // Back-off of 100, 200 and 400 ms between the four runs.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    let exe = executable_json(layout, "flaky", "fail");
    assert_eq!(exe["restarts"], 3, "{exe:#}");
    assert_eq!(exe["state"], "exited", "{exe:#}");
    assert_eq!(log_lines(layout, "flaky/fail"), 4);
    ok(&layout.aurae(&["cell", "free", "flaky"]));
}

#[tokio::test]
async fn a_double_forked_daemon_inside_a_cell_dies_with_the_cell() {
    let node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["forky"]);
    // The shell exits at once; its background child is orphaned inside the cell.
    ok(&exec(layout, "forky", "(sleep 1000 &) ; echo forked"));
    let orphans: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with("sleep\x001000"))
        })
        .collect();
    assert!(!orphans.is_empty(), "the orphan never ran");
    ok(&layout.aurae(&["cell", "free", "forky"]));
    for pid in orphans {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "pid {pid} escaped the freed cell"
        );
    }
    no_cell_cgroups_named("forky");
}

#[tokio::test]
async fn a_cells_identity_reaches_only_its_own_cell() {
    let node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["alpha"]);
    allocate(layout, &["beta"]);
    ok(&layout.aurae(&["exec", "beta", "-d", "--name", "svc", "--", "sleep", "1000"]));
    let out = ok(&exec(layout, "alpha", "aurae status"));
    assert!(
        out.contains("alpha@"),
        "status inside the cell names the cell: {out}"
    );
    let seen = ok(&exec(layout, "alpha", "aurae cell ls --json"));
    let seen: serde_json::Value = serde_json::from_str(&seen).unwrap();
    let names: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha"]);
    let out = exec(layout, "alpha", "aurae cell stop beta/svc");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let out = exec(layout, "alpha", "aurae logs beta/svc");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    let out = exec(layout, "alpha", "aurae capabilities list");
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    // Its own nested cells are its own.
    ok(&exec(
        layout,
        "alpha",
        "aurae cell allocate alpha/inner && aurae cell ls",
    ));
    assert_eq!(executable_json(layout, "beta", "svc")["state"], "running");
    ok(&layout.aurae(&["cell", "free", "alpha"]));
    ok(&layout.aurae(&["cell", "free", "beta"]));
}

#[tokio::test]
async fn a_freed_cells_certificate_is_refused() {
    let node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["gone"]);
    let saved = layout.root.path().join("gone-identity");
    std::fs::create_dir(&saved).unwrap();
    let identity_dir = layout.data_dir.join("runtime/identities/gone");
    for file in ["cert.pem", "key.pem", "ca.pem"] {
        std::fs::copy(identity_dir.join(file), saved.join(file)).unwrap();
    }
    let as_cell = |args: &[&str]| {
        let mut all = vec![
            "--cert",
            saved.join("cert.pem").to_str().unwrap().to_owned().leak() as &str,
            "--key",
            saved.join("key.pem").to_str().unwrap().to_owned().leak(),
            "--ca",
            saved.join("ca.pem").to_str().unwrap().to_owned().leak(),
        ];
        all.extend_from_slice(args);
        layout.aurae(&all)
    };
    ok(&as_cell(&["cell", "ls"]));
    // A connection the cell opened before it was freed.
    let identity = aurae_client::Identity {
        ca_cert: saved.join("ca.pem"),
        client_cert: saved.join("cert.pem"),
        client_key: saved.join("key.pem"),
    };
    let channel = aurae_client::connect_mtls(&layout.sock, &identity)
        .await
        .unwrap();
    let mut open = CellsClient::new(channel);
    open.list(pb::ListCellsRequest {}).await.unwrap();
    let pki_files = || {
        ["issued.toml", "ca.crl"].map(|f| std::fs::read(layout.pki_dir.join(f)).unwrap_or_default())
    };
    let pki_before = pki_files();
    ok(&layout.aurae(&["cell", "free", "gone"]));
    let refused_open = open.list(pb::ListCellsRequest {}).await;
    assert!(
        refused_open.is_err(),
        "an open connection of a freed cell still works"
    );
    let refused = as_cell(&["cell", "ls"]);
    assert!(
        !refused.status.success(),
        "a freed cell's certificate still works"
    );
    assert!(
        text(&refused.stderr).contains("stopped working when its cell was freed"),
        "{}",
        text(&refused.stderr)
    );
    // A cell allocated again under the same name gets a certificate of its own; the old
    // one stays refused.
    allocate(layout, &["gone"]);
    assert!(!as_cell(&["cell", "ls"]).status.success());
    ok(&layout.aurae(&["exec", "gone", "--", "aurae", "cell", "ls"]));
    ok(&layout.aurae(&["cell", "free", "gone"]));
    // Cells leave no trace in the ledger or the revocation list: neither grows with them.
    assert_eq!(pki_files(), pki_before, "the ledger or the CRL changed");
}

#[tokio::test]
async fn a_thousand_short_lived_executables_leave_no_zombie_and_no_cgroup() {
    let node = serving_node().await;
    let (layout, daemon) = (&node.layout, &node.daemon);
    allocate(layout, &["churn"]);
    let client = layout.admin_client().await.unwrap();
    let mut cells = CellsClient::new(client.channel());
    for i in 0..1000 {
        let exe = cells
            .start(pb::StartExecutableRequest {
                cell: "churn".to_owned(),
                executable: Some(pb::ExecutableSpec {
                    name: format!("t{i}"),
                    argv: vec!["true".to_owned()],
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(exe.executable.unwrap().spec.unwrap().name, format!("t{i}"));
        if i % 100 == 99 {
            // Stopping forgets them; done ones stop at once.
            for j in i - 99..=i {
                cells
                    .stop(pb::StopExecutableRequest {
                        cell: "churn".to_owned(),
                        executable: format!("t{j}"),
                    })
                    .await
                    .unwrap();
            }
        }
    }
    wait_until(Duration::from_secs(20), "no zombie children", || {
        children_of(daemon.pid()).1 == 0
    });
    ok(&layout.aurae(&["cell", "free", "churn"]));
    // The children left, if any, are the spare inits kept for the next cells.
    wait_until(
        Duration::from_secs(10),
        "no children but the spares",
        || children_of(daemon.pid()).0 == spare_cell_inits(daemon.pid()).len(),
    );
    assert!(spare_cell_inits(daemon.pid()).len() <= 2);
    no_cell_cgroups_named("churn");
}

#[tokio::test]
async fn spare_inits_are_kept_ready_used_by_the_next_cells_and_die_with_the_daemon() {
    let mut node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["first"]);
    let pid = node.daemon.pid();
    wait_until(Duration::from_secs(10), "two spare inits", || {
        spare_cell_inits(pid).len() == 2
    });
    let spares = spare_cell_inits(pid);
    allocate(layout, &["second", "--hostname", "two"]);
    // A spare became the second cell's init: in its cgroup, with its hostname.
    let taken: Vec<i32> = spares
        .iter()
        .copied()
        .filter(|spare| {
            std::fs::read_to_string(format!("/proc/{spare}/cgroup"))
                .is_ok_and(|cgroup| cgroup.contains("/second"))
        })
        .collect();
    assert_eq!(taken.len(), 1, "spares {spares:?}");
    let out = ok(&layout.aurae(&[
        "exec",
        "second",
        "--",
        "sh",
        "-c",
        "hostname; cat /proc/self/cgroup",
    ]));
    assert!(out.starts_with("two\n"), "{out}");
    // Its cgroup namespace is rooted at the cell's cgroup, as a cell started without a
    // spare has it.
    assert!(
        out.lines()
            .skip(1)
            .all(|l| l.ends_with(":/") || l.ends_with(":/_procs")),
        "{out}"
    );
    wait_until(Duration::from_secs(10), "a new spare", || {
        let now = spare_cell_inits(pid);
        now.len() == 2 && now.iter().any(|p| !spares.contains(p))
    });
    let now = spare_cell_inits(pid);
    node.daemon.kill();
    wait_until(
        Duration::from_secs(10),
        "the spares end with their daemon",
        || {
            now.iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
        },
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_made() {
    let node = serving_node().await;
    let layout = &node.layout;
    let out = layout.aurae(&["cell", "allocate", "../etc"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let out = layout.aurae(&["cell", "allocate", "admin"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    let out = layout.aurae(&["cell", "allocate", "lim", "--cpuset", "0-999"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cpuset"),
        "{}",
        text(&out.stderr)
    );
    let out = layout.aurae(&["cell", "allocate", "lim", "--memory", "4K"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    no_cell_cgroups_named("lim");
    let out = layout.aurae(&["exec", "nowhere", "--", "true"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    allocate(layout, &["real"]);
    let out = layout.aurae(&["exec", "real", "--", "/no/such/program"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("/no/such/program"),
        "{}",
        text(&out.stderr)
    );
    let out = layout.aurae(&["cell", "allocate", "real"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    ok(&layout.aurae(&["cell", "free", "real"]));
    no_cell_cgroups_named("real");
}

#[tokio::test]
async fn a_daemon_killed_and_restarted_adopts_its_running_workload_and_its_log_goes_on() {
    let mut node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["keep"]);
    ok(&layout.aurae(&[
        "exec",
        "keep",
        "-d",
        "--name",
        "count",
        "--",
        "sh",
        "-c",
        "i=0; while true; do echo $i; i=$((i+1)); sleep 0.02; done",
    ]));
    wait_until(Duration::from_secs(10), "counting", || {
        log_lines(layout, "keep/count") > 5
    });
    let pid = executable_json(layout, "keep", "count")["pid"]
        .as_i64()
        .unwrap();

    node.daemon.kill();
    // The workload keeps writing while no daemon reads.
    std::thread::sleep(Duration::from_millis(300));
    node.daemon = Daemon::start(&node.layout);
    let layout = &node.layout;
    aurae_testkit::wait_serving(layout, Duration::from_secs(5)).await;
    wait_until(Duration::from_secs(10), "the cell is back", || {
        layout.aurae(&["cell", "ls", "--json"]).status.success()
            && executable_json(layout, "keep", "count")["pid"].as_i64() == Some(pid)
    });
    let exe = executable_json(layout, "keep", "count");
    assert_eq!(exe["state"], "running", "{exe:#}");
    let before = log_lines(layout, "keep/count");
    wait_until(Duration::from_secs(10), "the log goes on", || {
        log_lines(layout, "keep/count") > before + 10
    });
    // Nothing lost, nothing twice: the numbers run on without a gap.
    let log = ok(&layout.aurae(&["logs", "keep/count"]));
    let numbers: Vec<u64> = log.lines().map(|l| l.parse().unwrap()).collect();
    for (i, n) in numbers.iter().enumerate() {
        assert_eq!(*n, i as u64, "line {i} of the log is {n}");
    }
    // Only one of it runs, and the adopted cell frees like any other.
    let cells = cells_json(layout, &[]);
    assert_eq!(cells.as_array().unwrap().len(), 1, "{cells:#}");
    ok(&layout.aurae(&["cell", "free", "keep"]));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the adopted workload survived Free"
    );
    no_cell_cgroups_named("keep");
}

/// An OCI bundle as `runc spec` writes it, around a busybox-static root filesystem.
fn busybox_bundle(dir: &Path, args: &[&str]) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "the OCI test needs busybox-static: apt-get install -y busybox-static"
    );
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox, bin.join("busybox")).unwrap();
    for tool in ["sh", "echo", "hostname", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../aurae-runtime/src/oci/testdata/runc-spec.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = args.iter().map(|a| a.to_string()).collect();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

#[tokio::test]
async fn an_oci_bundle_from_runc_spec_runs_unchanged() {
    let node = serving_node().await;
    let layout = &node.layout;
    let bundle = layout.root.path().join("bundle");
    busybox_bundle(
        &bundle,
        &[
            "sh",
            "-c",
            "echo hello from $(hostname); ls /; touch /x 2>&1; grep NoNewPrivs /proc/self/status; \
             echo timer_list=$(wc -c < /proc/timer_list) firmware=$(ls /sys/firmware | wc -l); \
             (echo x > /proc/sys/kernel/domainname) 2>&1 | grep -q Read-only && echo proc-sys-read-only; \
             grep -E '^Cap(Eff|Bnd|Inh|Amb)' /proc/self/status; exit 5",
        ],
    );
    let out = layout.aurae(&["run", "--bundle", bundle.to_str().unwrap(), "ocibox"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("hello from runc\n"), "{stdout}");
    assert!(stdout.contains("bin\n"), "{stdout}");
    assert!(
        stdout.contains("Read-only file system"),
        "root.readonly was applied: {stdout}"
    );
    // runc's spec asks for noNewPrivileges, maskedPaths and readonlyPaths: all applied.
    assert!(
        stdout.contains("NoNewPrivs:\t1"),
        "noNewPrivileges was applied: {stdout}"
    );
    assert!(
        stdout.contains("timer_list=0 firmware=0"),
        "maskedPaths were applied: {stdout}"
    );
    assert!(
        stdout.contains("proc-sys-read-only"),
        "readonlyPaths were applied: {stdout}"
    );
    // runc's default capabilities: AUDIT_WRITE, KILL, NET_BIND_SERVICE, and no others.
    for set in ["CapEff", "CapBnd"] {
        assert!(
            stdout.contains(&format!("{set}:\t0000000020000420")),
            "process.capabilities were applied ({set}): {stdout}"
        );
    }
    let exe = executable_json(layout, "ocibox", "main");
    assert_eq!(exe["exit_code"], 5, "{exe:#}");
    ok(&layout.aurae(&["cell", "free", "ocibox"]));
    no_cell_cgroups_named("ocibox");

    // A field aurae cannot enforce is refused by name, and nothing is made.
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap())
            .unwrap();
    config["hooks"] = serde_json::json!({"prestart": [{"path": "/bin/true"}]});
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let out = layout.aurae(&["run", "--bundle", bundle.to_str().unwrap(), "hooked"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("hooks"), "{}", text(&out.stderr));
    no_cell_cgroups_named("hooked");

    // A user namespace is not silently dropped: it is refused until it is supported.
    config.as_object_mut().unwrap().remove("hooks");
    config["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "user"}));
    let mapping = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    config["linux"]["uidMappings"] = mapping.clone();
    config["linux"]["gidMappings"] = mapping;
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let out = layout.aurae(&["run", "--bundle", bundle.to_str().unwrap(), "rootless"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("user namespaces"),
        "{}",
        text(&out.stderr)
    );
    no_cell_cgroups_named("rootless");
}

#[tokio::test]
async fn exec_passes_stdin_through_and_gives_a_terminal_when_asked() {
    let node = serving_node().await;
    let layout = &node.layout;
    allocate(layout, &["term"]);
    let mut cat = layout.aurae_command();
    cat.args(["exec", "-i", "term", "--", "sh", "-c", "tr a-z A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cat.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello through the socket\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(ok(&out), "HELLO THROUGH THE SOCKET\n");

    let out = layout.aurae(&[
        "exec",
        "-t",
        "term",
        "--",
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo has-a-terminal; stty size",
    ]);
    let stdout = ok(&out);
    assert!(stdout.contains("has-a-terminal"), "{stdout}");
    ok(&layout.aurae(&["cell", "free", "term"]));
}
