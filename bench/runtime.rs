//! Runtime benchmark: what a cell costs, measured against the peers a user would otherwise
//! reach for, in the same run on the same machine.
//!
//! 1. Latency from the API call to the first instruction of a workload in a new cell
//!    (pid, mount, net, uts, ipc and cgroup namespaces plus a cgroup), against `crun run`
//!    and `runc run` on the same OCI bundle and the floor
//!    `unshare --fork --pid --mount --net --uts --ipc true`. The workload is a 167-byte
//!    static program written by this benchmark whose first instructions open the path in
//!    `argv[1]` and write one byte to it: the path is a FIFO that a thread of the
//!    benchmark reads, timestamping the byte when it arrives. Every runner runs that same
//!    program and is timed from just before its first call (the Allocate RPC, the
//!    RunBundle RPC, or the spawn of the `crun`/`runc`/`unshare` process) to that byte.
//!    The full run is also printed: to the workload's exit (Wait RPC / process exit) and,
//!    for aurae, including the Free that a `crun run` does as it exits.
//! 2. 100 cells allocated and started concurrently (`sleep 1000` each), then freed
//!    concurrently, twice: the cost per cell, and auraed's RSS before, at peak and after.
//! 3. Log throughput: how fast a workload writes 80-byte lines to its stdout (logged by
//!    auraed) against the same command writing to `/dev/null` and to a regular file on the
//!    data directory's filesystem, in the same cell, timed from Start to Wait.
//!
//! Run as root with `bench/run` (or `cargo bench -p auraed --bench runtime`). Needs crun,
//! runc and a static busybox (`apt-get install -y crun runc busybox-static`). Prints one
//! table per section with the ratios; it measures, it does not assert.

#[path = "common.rs"]
mod common;

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aurae_client::Channel;
use aurae_proto::v0 as pb;
use aurae_proto::v0::cells_client::CellsClient;
use common::{percentile, serving_auraed, setup};

/// Measured runs of each runner in section 1 (after `WARMUP`), interleaved.
const RUNS: usize = 60;
const WARMUP: usize = 3;
/// Cells of section 2.
const CELLS: usize = 100;
/// Rounds of section 2: growth of the daemon's RSS from one to the next shows a leak.
const ROUNDS: usize = 6;
/// Bytes the workload of section 3 writes, and how many times each sink is measured.
const LOG_BYTES: u64 = 1_000_000_000;
const LOG_REPEATS: usize = 3;
/// 79 characters: `yes` makes 80-byte lines of it.
const LINE: &str =
    "0123456789012345678901234567890123456789012345678901234567890123456789012345678";
const INSTALL: &str = "apt-get install -y crun runc busybox-static";
const UNSHARE: [&str; 6] = ["--fork", "--pid", "--mount", "--net", "--uts", "--ipc"];
/// How long a mark may take to arrive before the run counts as failed.
const MARK_DEADLINE: Duration = Duration::from_secs(10);

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "meets target" } else { "MISSES target" }
}

/// A static x86-64 ELF that opens `argv[1]` write-only, writes `x` to it and exits 0:
/// its first instructions are the mark.
fn marker_elf() -> Vec<u8> {
    let code: &[u8] = &[
        0x48, 0x8b, 0x7c, 0x24, 0x10, // mov rdi, [rsp+16]   (argv[1])
        0xbe, 0x01, 0x00, 0x00, 0x00, // mov esi, 1          (O_WRONLY)
        0x31, 0xd2, // xor edx, edx
        0xb8, 0x02, 0x00, 0x00, 0x00, // mov eax, 2          (open)
        0x0f, 0x05, // syscall
        0x89, 0xc7, // mov edi, eax
        0x6a, 0x78, // push 'x'
        0x48, 0x89, 0xe6, // mov rsi, rsp
        0xba, 0x01, 0x00, 0x00, 0x00, // mov edx, 1
        0xb8, 0x01, 0x00, 0x00, 0x00, // mov eax, 1          (write)
        0x0f, 0x05, // syscall
        0x31, 0xff, // xor edi, edi
        0xb8, 0xe7, 0x00, 0x00, 0x00, // mov eax, 231        (exit_group)
        0x0f, 0x05, // syscall
    ];
    let base: u64 = 0x40_0000;
    let headers: u64 = 64 + 56;
    let total = headers + code.len() as u64;
    let mut elf = Vec::with_capacity(total as usize);
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\x00");
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&(base + headers).to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // phoff
    elf.extend_from_slice(&0u64.to_le_bytes()); // shoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64u16, 56, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // R + X
    for word in [0, base, base, total, total, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(code);
    elf
}

fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Whether an ELF64 file names a program interpreter (is dynamically linked).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    };
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return true;
    };
    (0..usize::from(count)).any(|i| {
        let at = phoff as usize + i * usize::from(size);
        elf.get(at..at + 4) == Some(&3u32.to_le_bytes()[..]) // PT_INTERP
    })
}

/// The peers, or which of them is missing.
struct Peers {
    crun: PathBuf,
    runc: PathBuf,
    unshare: PathBuf,
    busybox: PathBuf,
}

fn peers() -> Result<Peers, String> {
    if std::env::consts::ARCH != "x86_64" {
        return Err("the marker program is x86-64 only".to_owned());
    }
    let find = |name: &str, package: &str| {
        in_path(name).ok_or_else(|| format!("{name} is missing (Debian package {package})"))
    };
    let crun = find("crun", "crun")?;
    let runc = find("runc", "runc")?;
    let unshare = find("unshare", "util-linux")?;
    let busybox = find("busybox", "busybox-static")?;
    let bytes = fs::read(&busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
    if has_interpreter(&bytes) {
        return Err(format!(
            "{} is dynamically linked (install busybox-static)",
            busybox.display()
        ));
    }
    Ok(Peers {
        crun,
        runc,
        unshare,
        busybox,
    })
}

/// A FIFO read by a thread of its own that timestamps every byte as it arrives.
struct Marks {
    fifo: PathBuf,
    rx: mpsc::Receiver<Instant>,
}

impl Marks {
    fn new(dir: &Path) -> Self {
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666))
            .expect("mkfifo");
        // Read-write: the FIFO always has a writer, so reads block instead of seeing EOF
        // between workloads, and a workload's open never waits for a reader.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .expect("open the FIFO");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok(n) = file.read(&mut buf) {
                let at = Instant::now();
                for _ in 0..n {
                    if tx.send(at).is_err() {
                        return;
                    }
                }
            }
        });
        Self { fifo, rx }
    }

    fn drain(&self) {
        while self.rx.try_recv().is_ok() {}
    }

    fn next(&self, deadline: Duration) -> Result<Instant, String> {
        self.rx
            .recv_timeout(deadline)
            .map_err(|_| "the workload's mark never arrived".to_owned())
    }
}

/// One run of one runner, measured from just before its first call.
#[derive(Clone, Copy)]
struct Sample {
    /// The workload's first write.
    first: Duration,
    /// The Allocate RPC returned (aurae Allocate + Start only).
    allocated: Option<Duration>,
    /// The Start (or RunBundle) RPC returned.
    started: Option<Duration>,
    /// The workload exited (Wait answered, or the runtime's process exited).
    exited: Duration,
    /// Also freed (aurae only; `crun run` and `runc run` delete as they exit).
    freed: Option<Duration>,
}

#[derive(Default)]
struct Series {
    samples: Vec<Sample>,
    errors: usize,
    first_error: Option<String>,
}

impl Series {
    fn push(&mut self, result: Result<Sample, String>, record: bool) {
        match result {
            Ok(sample) if record => self.samples.push(sample),
            Ok(_) => {}
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn sorted(&self, f: impl Fn(&Sample) -> Option<Duration>) -> Vec<Duration> {
        let mut v: Vec<Duration> = self.samples.iter().filter_map(f).collect();
        v.sort();
        v
    }

    fn p(&self, f: impl Fn(&Sample) -> Option<Duration>, q: f64) -> Option<Duration> {
        let v = self.sorted(f);
        (!v.is_empty()).then(|| percentile(&v, q))
    }
}

fn cell_spec(name: &str, rootfs: Option<&Path>, binds: Vec<pb::BindMount>) -> pb::CellSpec {
    pb::CellSpec {
        name: name.to_owned(),
        limits: Some(pb::CellLimits::default()),
        rootfs: rootfs
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        rootfs_read_only: rootfs.is_some(),
        binds,
        ..Default::default()
    }
}

fn exe_spec(name: &str, argv: &[&str]) -> pb::ExecutableSpec {
    pb::ExecutableSpec {
        name: name.to_owned(),
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        ..Default::default()
    }
}

async fn free(cells: &mut CellsClient<Channel>, name: &str) -> Result<(), String> {
    cells
        .free(pb::FreeCellRequest {
            cell: name.to_owned(),
        })
        .await
        .map(|_| ())
        .map_err(|e| format!("Free {name}: {}", e.message()))
}

async fn wait_exe(
    cells: &mut CellsClient<Channel>,
    cell: &str,
    exe: &str,
) -> Result<pb::ExecutableInfo, String> {
    cells
        .wait(pb::WaitExecutableRequest {
            cell: cell.to_owned(),
            executable: exe.to_owned(),
        })
        .await
        .map(|r| r.into_inner().executable.unwrap_or_default())
        .map_err(|e| format!("Wait {cell}/{exe}: {}", e.message()))
}

/// Allocate (the bundle's rootfs, read-only, with the FIFO's directory bound at /mark),
/// Start the marker, the mark, Wait, Free.
async fn aurae_cell(
    cells: &mut CellsClient<Channel>,
    marks: &Marks,
    bundle: &Bundle,
    name: &str,
) -> Result<Sample, String> {
    marks.drain();
    let bind = pb::BindMount {
        source: bundle.mark_dir.to_string_lossy().into_owned(),
        destination: "/mark".to_owned(),
        read_only: false,
    };
    let t0 = Instant::now();
    cells
        .allocate(pb::AllocateCellRequest {
            cell: Some(cell_spec(name, Some(&bundle.rootfs), vec![bind])),
        })
        .await
        .map_err(|e| format!("Allocate: {}", e.message()))?;
    let allocated = t0.elapsed();
    let run = async {
        cells
            .start(pb::StartExecutableRequest {
                cell: name.to_owned(),
                executable: Some(exe_spec("mark", &["/bin/mark", "/mark/fifo"])),
            })
            .await
            .map_err(|e| format!("Start: {}", e.message()))?;
        let started = t0.elapsed();
        let first = marks.next(MARK_DEADLINE)?.saturating_duration_since(t0);
        let done = wait_exe(cells, name, "mark").await?;
        if done.exit_code != Some(0) {
            return Err(format!(
                "the marker ended with {:?}/{:?}",
                done.exit_code, done.signal
            ));
        }
        Ok::<_, String>((first, started, t0.elapsed()))
    }
    .await;
    let freed = free(cells, name).await;
    let (first, started, exited) = run?;
    freed?;
    Ok(Sample {
        first,
        allocated: Some(allocated),
        started: Some(started),
        exited,
        freed: Some(t0.elapsed()),
    })
}

/// RunBundle on the same bundle, the mark, Wait, Free.
async fn aurae_bundle(
    cells: &mut CellsClient<Channel>,
    marks: &Marks,
    bundle: &Bundle,
    name: &str,
) -> Result<Sample, String> {
    marks.drain();
    let t0 = Instant::now();
    let reply = cells
        .run_bundle(pb::RunBundleRequest {
            bundle: bundle.dir.to_string_lossy().into_owned(),
            cell: name.to_owned(),
        })
        .await;
    let started = t0.elapsed();
    let reply = match reply {
        Ok(reply) => reply.into_inner(),
        Err(e) => {
            // A refusal may still have left a cell behind: free it, ignoring "not found".
            let _ = free(cells, name).await;
            return Err(format!("RunBundle: {}", e.message()));
        }
    };
    let exe = reply
        .executable
        .and_then(|e| e.spec)
        .map(|s| s.name)
        .unwrap_or_default();
    let run = async {
        let first = marks.next(MARK_DEADLINE)?.saturating_duration_since(t0);
        let done = wait_exe(cells, name, &exe).await?;
        if done.exit_code != Some(0) {
            return Err(format!(
                "the marker ended with {:?}/{:?}",
                done.exit_code, done.signal
            ));
        }
        Ok::<_, String>((first, t0.elapsed()))
    }
    .await;
    let freed = free(cells, name).await;
    let (first, exited) = run?;
    freed?;
    Ok(Sample {
        first,
        allocated: None,
        started: Some(started),
        exited,
        freed: Some(t0.elapsed()),
    })
}

/// Spins (keeping the CPUs awake, as a sleep would not) until auraed has its two spare
/// cell inits back, at most 500 ms: it starts them once it has been idle for 20 ms, and
/// they must not run beside the next runner.
fn spin_until_spares(daemon_pid: u32) {
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        if aurae_testkit::spare_cell_inits(daemon_pid as i32).len() >= 2 {
            return;
        }
        std::hint::spin_loop();
    }
}

/// Spawns `command` and waits for it: when it started and how long it ran.
fn timed_process(mut command: Command) -> Result<(Instant, Duration), String> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let child = command
        .spawn()
        .map_err(|e| format!("spawn {command:?}: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
    let wall = t0.elapsed();
    if !out.status.success() {
        return Err(format!(
            "{:?} failed ({}): {}",
            command.get_program(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((t0, wall))
}

fn process_sample(
    marks: &Marks,
    timed: Result<(Instant, Duration), String>,
) -> Result<Sample, String> {
    let (t0, wall) = timed?;
    let first = marks
        .next(Duration::from_secs(2))?
        .saturating_duration_since(t0);
    Ok(Sample {
        first,
        allocated: None,
        started: None,
        exited: wall,
        freed: None,
    })
}

/// When a process started and how long it ran, or why it failed.
type Timed = Result<(Instant, Duration), String>;
type Job = Box<dyn FnOnce() -> Timed + Send>;
type JobQueue = mpsc::Sender<(Job, mpsc::Sender<Timed>)>;

/// A thread in a private mount namespace without the cgroup2 mount of a hybrid host, from
/// which crun is run: crun 1.8 refuses the hybrid layout otherwise. Set up once, untimed
/// (the documented `unshare -m ... sh -c 'umount ...; crun run'` would add a process and a
/// shell to every run).
struct CrunThread {
    jobs: JobQueue,
}

impl CrunThread {
    fn start() -> Result<Self, String> {
        let (jobs, rx) = mpsc::channel::<(Job, mpsc::Sender<Timed>)>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let setup = (|| -> Result<(), String> {
                use nix::mount::{MntFlags, MsFlags, mount, umount2};
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
                mount::<str, str, str, str>(
                    None,
                    "/",
                    None,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None,
                )
                .map_err(|e| format!("make / private: {e}"))?;
                let unified = Path::new("/sys/fs/cgroup/unified");
                if unified.join("cgroup.controllers").exists() {
                    umount2(unified, MntFlags::MNT_DETACH)
                        .map_err(|e| format!("umount {}: {e}", unified.display()))?;
                }
                Ok(())
            })();
            let ok = setup.is_ok();
            let _ = ready_tx.send(setup);
            if !ok {
                return;
            }
            for (job, reply) in rx {
                let _ = reply.send(job());
            }
        });
        ready_rx
            .recv()
            .map_err(|_| "the crun thread died".to_owned())??;
        Ok(Self { jobs })
    }

    fn run(&self, job: Job) -> Result<(Instant, Duration), String> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send((job, tx))
            .map_err(|_| "the crun thread is gone".to_owned())?;
        rx.recv()
            .map_err(|_| "the crun thread is gone".to_owned())?
    }
}

/// The OCI bundle every runner uses: busybox (`/bin/sh`, `/bin/true`) and the marker in
/// the rootfs, `config.json` from `runc spec` running the marker on `/mark/fifo`.
struct Bundle {
    dir: PathBuf,
    rootfs: PathBuf,
    mark_dir: PathBuf,
    marker: PathBuf,
}

fn make_bundle(root: &Path, peers: &Peers) -> Result<Bundle, String> {
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let dir = root.join("bundle");
    let rootfs = dir.join("rootfs");
    let mark_dir = root.join("mark");
    for d in ["bin", "mark", "proc", "dev", "sys", "tmp", "run"] {
        fs::create_dir_all(rootfs.join(d)).map_err(|e| io(d, e))?;
    }
    fs::create_dir_all(&mark_dir).map_err(|e| io("mark dir", e))?;
    fs::copy(&peers.busybox, rootfs.join("bin/busybox")).map_err(|e| io("copy busybox", e))?;
    for link in ["sh", "true", "sleep"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(link))
            .map_err(|e| io(link, e))?;
    }
    let marker = rootfs.join("bin/mark");
    fs::write(&marker, marker_elf()).map_err(|e| io("marker", e))?;
    fs::set_permissions(&marker, fs::Permissions::from_mode(0o755)).map_err(|e| io("chmod", e))?;
    let out = Command::new(&peers.runc)
        .args(["spec", "--bundle"])
        .arg(&dir)
        .output()
        .map_err(|e| io("runc spec", e))?;
    if !out.status.success() {
        return Err(format!(
            "runc spec: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let path = dir.join("config.json");
    let text = fs::read_to_string(&path).map_err(|e| io("config.json", e))?;
    let mut config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("config.json: {e}"))?;
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["/bin/mark", "/mark/fifo"]);
    config["mounts"]
        .as_array_mut()
        .ok_or("config.json has no mounts")?
        .push(serde_json::json!({
            "destination": "/mark",
            "type": "bind",
            "source": mark_dir,
            "options": ["rbind", "rw"],
        }));
    fs::write(&path, serde_json::to_vec_pretty(&config).unwrap())
        .map_err(|e| io("config.json", e))?;
    Ok(Bundle {
        dir,
        rootfs,
        mark_dir,
        marker,
    })
}

/// Threads and open descriptors of a process.
fn threads_fds(pid: u32) -> String {
    let threads = fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    format!("{threads} / {fds}")
}

/// Resident memory of a process, in kB.
fn rss_kb(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// The daemon and what the benchmark made, removed even when the benchmark fails half-way.
struct Node {
    daemon: Child,
    data_dir: PathBuf,
    runc: PathBuf,
    runc_state: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // runc containers left by a failed run.
        if let Ok(entries) = fs::read_dir(&self.runc_state) {
            for entry in entries.flatten() {
                let _ = Command::new(&self.runc)
                    .arg("--root")
                    .arg(&self.runc_state)
                    .args(["delete", "-f"])
                    .arg(entry.file_name())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        {
            // auraed leaves its workloads running when it stops: remove its cells'
            // cgroups (killing what is in them, if the benchmark failed before freeing
            // them) and its per-daemon cgroup root, as the tests do.
            let data =
                std::path::absolute(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
            let name = format!(
                "aurae-cells-{:08x}",
                crc32fast::hash(data.as_os_str().as_encoded_bytes())
            );
            if let Ok(hierarchy) = aurae_runtime::cgroup::Hierarchy::detect(&name) {
                let _ = hierarchy.remove_all();
            }
        }
    }
}

async fn section_latency(
    cells: &mut CellsClient<Channel>,
    marks: &Marks,
    bundle: &Bundle,
    peers: &Peers,
    crun: &CrunThread,
    root: &Path,
    daemon_pid: u32,
) {
    let crun_state = root.join("crun-state");
    let runc_state = root.join("runc-state");
    let names = [
        "aurae Allocate + Start (API)",
        "aurae RunBundle (API, same bundle)",
        "crun run (same bundle)",
        "runc run (same bundle)",
        "unshare --fork --pid --mount --net --uts --ipc MARK",
        "unshare --fork --pid --mount --net --uts --ipc true",
    ];
    let mut series: Vec<Series> = names.iter().map(|_| Series::default()).collect();
    for i in 0..WARMUP + RUNS {
        let record = i >= WARMUP;
        series[0].push(
            aurae_cell(cells, marks, bundle, &format!("lat-{i}")).await,
            record,
        );
        series[1].push(
            aurae_bundle(cells, marks, bundle, &format!("oci-{i}")).await,
            record,
        );
        // The peers start once auraed's background work is done, and with warm CPUs.
        spin_until_spares(daemon_pid);

        marks.drain();
        let (program, state, bundle_dir, id) = (
            peers.crun.clone(),
            crun_state.clone(),
            bundle.dir.clone(),
            format!("bench-crun-{i}"),
        );
        let timed = crun.run(Box::new(move || {
            let mut command = Command::new(program);
            command
                .arg("--root")
                .arg(state)
                .args(["run", "--bundle"])
                .arg(bundle_dir)
                .arg(id);
            timed_process(command)
        }));
        series[2].push(process_sample(marks, timed), record);

        marks.drain();
        let mut command = Command::new(&peers.runc);
        command
            .arg("--root")
            .arg(&runc_state)
            .args(["run", "--bundle"])
            .arg(&bundle.dir)
            .arg(format!("bench-runc-{i}"));
        series[3].push(process_sample(marks, timed_process(command)), record);

        marks.drain();
        let mut command = Command::new(&peers.unshare);
        command.args(UNSHARE).arg(&bundle.marker).arg(&marks.fifo);
        series[4].push(process_sample(marks, timed_process(command)), record);

        let mut command = Command::new(&peers.unshare);
        command.args(UNSHARE).arg("true");
        let floor = timed_process(command).map(|(_, wall)| Sample {
            first: wall,
            allocated: None,
            started: None,
            exited: wall,
            freed: None,
        });
        series[5].push(floor, record);
    }

    println!();
    println!(
        "1. API call to the workload's first instruction in a new cell ({RUNS} runs each after {WARMUP} warm-up, interleaved)"
    );
    println!(
        "   workload: a 167-byte static program that opens argv[1] (a FIFO bound at /mark) and writes 1 byte;"
    );
    println!(
        "   'first instr.' = from just before the first call (Allocate RPC / RunBundle RPC / spawn of the"
    );
    println!(
        "   runtime's process) to that byte reaching the benchmark; 'exited' = Wait answered / process exited;"
    );
    println!(
        "   'with Free' = aurae's cycle including Free (crun/runc run delete their container before exiting)."
    );
    println!(
        "   crun runs from a thread in a private mount namespace without /sys/fs/cgroup/unified (set up once)."
    );
    println!(
        "   the floor row is the wall time of the unshare process running /bin/true (it has no mark)."
    );
    println!(
        "   after the two aurae runs the benchmark waits (spinning) until auraed has restarted its two spare inits."
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "runner (p50 unless said)",
        "Alloc ret",
        "Start ret",
        "first p50",
        "first p90",
        "exited p50",
        "exited p90",
        "with Free"
    );
    let show = |d: Option<Duration>| d.map(ms).unwrap_or_else(|| "-".to_owned());
    for (name, s) in names.iter().zip(&series) {
        if s.samples.is_empty() {
            println!(
                "{name:<52} all runs failed: {}",
                s.first_error.as_deref().unwrap_or("?")
            );
            continue;
        }
        let first = |s: &Sample| Some(s.first);
        let (f50, f90) = if name.ends_with("true") {
            (None, None)
        } else {
            (s.p(first, 0.5), s.p(first, 0.9))
        };
        println!(
            "{name:<52} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}{}",
            show(s.p(|s| s.allocated, 0.5)),
            show(s.p(|s| s.started, 0.5)),
            show(f50),
            show(f90),
            show(s.p(|s| Some(s.exited), 0.5)),
            show(s.p(|s| Some(s.exited), 0.9)),
            show(s.p(|s| s.freed, 0.5)),
            if s.errors > 0 {
                format!(
                    "   {} runs failed, first: {}",
                    s.errors,
                    s.first_error.as_deref().unwrap_or("?")
                )
            } else {
                String::new()
            }
        );
    }
    let p50 = |i: usize, f: &dyn Fn(&Sample) -> Option<Duration>| series[i].p(f, 0.5);
    let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => Some(a.as_secs_f64() / b.as_secs_f64()),
        _ => None,
    };
    let first = |s: &Sample| Some(s.first);
    let exited = |s: &Sample| Some(s.exited);
    let freed = |s: &Sample| s.freed;
    let crun_first = p50(2, &first);
    let runc_first = p50(3, &first);
    let unshare_first = p50(4, &first);
    let floor = p50(5, &exited);
    let fmt = |r: Option<f64>| {
        r.map(|r| format!("{r:.2}x"))
            .unwrap_or_else(|| "-".to_owned())
    };
    println!();
    println!(
        "{:<52} {:>10} {:>10} {:>12} {:>12}",
        "ratios of p50", "/ crun", "/ runc", "/ unshare+M", "/ floor"
    );
    for (label, i) in [("aurae Allocate + Start", 0), ("aurae RunBundle", 1)] {
        let a = p50(i, &first);
        let (to_crun, to_floor) = (ratio(a, crun_first), ratio(a, floor));
        println!(
            "{:<52} {:>10} {:>10} {:>12} {:>12}   faster than crun: {}; within 2x of the floor: {}",
            format!("{label}, first instruction"),
            fmt(to_crun),
            fmt(ratio(a, runc_first)),
            fmt(ratio(a, unshare_first)),
            fmt(to_floor),
            to_crun.map(|r| verdict(r < 1.0)).unwrap_or("-"),
            to_floor.map(|r| verdict(r <= 2.0)).unwrap_or("-"),
        );
        let full = p50(i, &freed);
        println!(
            "{:<52} {:>10} {:>10} {:>12} {:>12}",
            format!("{label}, to exit + Free vs run's wall"),
            fmt(ratio(full, p50(2, &exited))),
            fmt(ratio(full, p50(3, &exited))),
            fmt(ratio(p50(i, &exited), p50(4, &exited))),
            fmt(ratio(full, floor)),
        );
    }
    println!(
        "{:<52} {:>10} {:>10} {:>12} {:>12}",
        "crun run, first instruction",
        "1.00x",
        fmt(ratio(crun_first, runc_first)),
        fmt(ratio(crun_first, unshare_first)),
        fmt(ratio(crun_first, floor)),
    );
}

/// Allocates `CELLS` cells at once, each starting `sleep 1000`, then frees them at once.
async fn section_concurrent(channel: &Channel, daemon_pid: u32) -> Vec<String> {
    let mut lines = Vec::new();
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kb(daemon_pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let push = |rows: &mut Vec<(String, Vec<String>)>, label: &str, value: String| match rows
        .iter_mut()
        .find(|(l, _)| l == label)
    {
        Some((_, v)) => v.push(value),
        None => rows.push((label.to_owned(), vec![value])),
    };
    for round in 1..=ROUNDS {
        let before_round = rss_kb(daemon_pid);
        let before_threads = threads_fds(daemon_pid);
        peak.store(before_round, Ordering::Relaxed);
        let t0 = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..CELLS {
            let mut cells = CellsClient::new(channel.clone());
            set.spawn(async move {
                let name = format!("many-{i}");
                cells
                    .allocate(pb::AllocateCellRequest {
                        cell: Some(cell_spec(&name, None, Vec::new())),
                    })
                    .await
                    .map_err(|e| format!("Allocate {name}: {}", e.message()))?;
                cells
                    .start(pb::StartExecutableRequest {
                        cell: name.clone(),
                        executable: Some(exe_spec("sleep", &["sleep", "1000"])),
                    })
                    .await
                    .map_err(|e| format!("Start in {name}: {}", e.message()))?;
                Ok::<(), String>(())
            });
        }
        let mut start_errors = Vec::new();
        while let Some(done) = set.join_next().await {
            if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
                start_errors.push(e);
            }
        }
        let start_wall = t0.elapsed();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let running = rss_kb(daemon_pid);
        let running_threads = threads_fds(daemon_pid);
        let children = aurae_testkit::children_of(daemon_pid as i32).0;

        let t1 = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..CELLS {
            let mut cells = CellsClient::new(channel.clone());
            set.spawn(async move { free(&mut cells, &format!("many-{i}")).await });
        }
        let mut free_errors = Vec::new();
        while let Some(done) = set.join_next().await {
            if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
                free_errors.push(e);
            }
        }
        let free_wall = t1.elapsed();
        let round_peak = peak.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kb(daemon_pid);
        let after_threads = threads_fds(daemon_pid);
        let (left_children, _) = aurae_testkit::children_of(daemon_pid as i32);
        let left_cells = CellsClient::new(channel.clone())
            .list(pb::ListCellsRequest {})
            .await
            .map(|r| r.into_inner().cells.len().to_string())
            .unwrap_or_else(|e| format!("List failed: {}", e.message()));
        let per = |d: Duration| format!("{} / {}", ms(d), ms(d / CELLS as u32));
        push(
            &mut rows,
            "allocate + start: wall / per cell",
            per(start_wall),
        );
        push(&mut rows, "free: wall / per cell", per(free_wall));
        push(
            &mut rows,
            "failed allocate+start / free",
            format!("{} / {}", start_errors.len(), free_errors.len()),
        );
        push(
            &mut rows,
            "auraed children while running (init + sleep)",
            children.to_string(),
        );
        push(&mut rows, "auraed RSS before the round", mb(before_round));
        push(&mut rows, "auraed RSS with the cells running", mb(running));
        push(
            &mut rows,
            "auraed RSS peak (sampled every 5 ms)",
            mb(round_peak),
        );
        push(&mut rows, "auraed RSS after freeing (+0.5 s)", mb(after));
        push(
            &mut rows,
            "cells listed / auraed children after freeing",
            format!("{left_cells} / {left_children}"),
        );
        push(
            &mut rows,
            "auraed threads / fds before the round",
            before_threads,
        );
        push(
            &mut rows,
            "auraed threads / fds with the cells running",
            running_threads,
        );
        push(
            &mut rows,
            "auraed threads / fds after freeing",
            after_threads,
        );
        for e in start_errors.iter().chain(&free_errors).take(3) {
            lines.push(format!("   round {round}: {e}"));
        }
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    println!();
    println!(
        "2. {CELLS} cells allocated and started concurrently (sleep 1000 in each, host view), then freed concurrently"
    );
    let mut header = format!("{:<46}", "measure");
    for round in 1..=ROUNDS {
        header.push_str(&format!(" {:>22}", format!("round {round}")));
    }
    println!("{header}");
    for (label, values) in rows {
        let mut line = format!("{label:<46}");
        for value in values {
            line.push_str(&format!(" {value:>22}"));
        }
        println!("{line}");
    }
    lines
}

async fn section_logs(
    cells: &mut CellsClient<Channel>,
    sink: &Path,
    data_dir: &Path,
) -> Result<(), String> {
    let name = "logs";
    // A host-view cell can only bind onto a directory the host already has (its root is
    // the host's, read-only): the first of these that exists.
    let dest = ["/mnt", "/srv", "/opt", "/media"]
        .into_iter()
        .find(|d| Path::new(d).is_dir())
        .unwrap_or("/sink");
    let bind = pb::BindMount {
        source: sink.to_string_lossy().into_owned(),
        destination: dest.to_owned(),
        read_only: false,
    };
    cells
        .allocate(pb::AllocateCellRequest {
            cell: Some(cell_spec(name, None, vec![bind])),
        })
        .await
        .map_err(|e| format!("Allocate {name}: {}", e.message()))?;
    let workload = format!("yes {LINE} | head -c {LOG_BYTES}");
    let sinks = [
        ("/dev/null", format!("{workload} > /dev/null")),
        (
            "a file beside the data dir (same fs)",
            format!("{workload} > {dest}/out"),
        ),
        ("stdout, logged by auraed", workload.clone()),
    ];
    let mut times: Vec<Vec<Duration>> = sinks.iter().map(|_| Vec::new()).collect();
    let mut result = Ok(());
    'rounds: for round in 0..LOG_REPEATS {
        for (k, (_, script)) in sinks.iter().enumerate() {
            let exe = format!("w{round}-{k}");
            let t0 = Instant::now();
            if let Err(e) = cells
                .start(pb::StartExecutableRequest {
                    cell: name.to_owned(),
                    executable: Some(exe_spec(&exe, &["sh", "-c", script])),
                })
                .await
            {
                result = Err(format!("Start {exe}: {}", e.message()));
                break 'rounds;
            }
            match wait_exe(cells, name, &exe).await {
                Ok(done) if done.exit_code == Some(0) => times[k].push(t0.elapsed()),
                Ok(done) => {
                    result = Err(format!(
                        "{exe} ended with {:?}/{:?}",
                        done.exit_code, done.signal
                    ));
                    break 'rounds;
                }
                Err(e) => {
                    result = Err(e);
                    break 'rounds;
                }
            }
            let _ = fs::remove_file(sink.join("out"));
            let _ = cells
                .stop(pb::StopExecutableRequest {
                    cell: name.to_owned(),
                    executable: exe,
                })
                .await;
        }
    }
    let freed = free(cells, name).await;
    println!();
    println!(
        "3. log throughput: `yes <79 chars> | head -c {LOG_BYTES}` (80-byte lines) in a cell, Start to Wait, median of {LOG_REPEATS}"
    );
    println!(
        "   data dir: {}; the file is {}/out, bound at {dest} in the cell",
        data_dir.display(),
        sink.display()
    );
    println!(
        "{:<52} {:>10} {:>12} {:>12} {:>8}",
        "where stdout goes", "time", "throughput", "/ /dev/null", "/ file"
    );
    let median = |v: &Vec<Duration>| {
        let mut v = v.clone();
        v.sort();
        (!v.is_empty()).then(|| percentile(&v, 0.5))
    };
    let null = median(&times[0]);
    let file = median(&times[1]);
    for (k, (label, _)) in sinks.iter().enumerate() {
        let Some(t) = median(&times[k]) else {
            println!("{label:<52} {:>10}", "-");
            continue;
        };
        let rate = LOG_BYTES as f64 / t.as_secs_f64() / 1e6;
        let share = null.map(|n| n.as_secs_f64() / t.as_secs_f64());
        let of_file = file.map(|f| format!("{:.0}%", f.as_secs_f64() / t.as_secs_f64() * 100.0));
        let target = if k == 2 {
            share
                .map(|s| format!("   target >= 80%: {}", verdict(s >= 0.8)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        println!(
            "{label:<52} {:>10} {:>12} {:>12} {:>8}{target}",
            ms(t),
            format!("{rate:.0} MB/s"),
            share
                .map(|s| format!("{:.0}%", s * 100.0))
                .unwrap_or_default(),
            of_file.unwrap_or_default(),
        );
    }
    result?;
    freed
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--list") {
        println!("runtime: bench");
        return ExitCode::SUCCESS;
    }
    if !nix::unistd::Uid::effective().is_root() {
        println!("runtime benchmark: needs root (cgroups, namespaces)");
        return ExitCode::from(2);
    }
    let peers = match peers() {
        Ok(p) => p,
        Err(e) => {
            println!("runtime benchmark: {e}; install the peers with `{INSTALL}`");
            return ExitCode::from(2);
        }
    };
    let setup = setup();
    let bundle = match make_bundle(&setup.root, &peers) {
        Ok(b) => b,
        Err(e) => {
            println!("runtime benchmark: cannot build the OCI bundle: {e}");
            return ExitCode::FAILURE;
        }
    };
    let crun = match CrunThread::start() {
        Ok(c) => c,
        Err(e) => {
            println!("runtime benchmark: cannot prepare crun's mount namespace: {e}");
            return ExitCode::FAILURE;
        }
    };
    let marks = Marks::new(&bundle.mark_dir);
    let sink = setup.root.join("sink");
    fs::create_dir_all(&sink).expect("sink dir");

    let sock = setup.root.join("aurae.sock");
    let daemon = serving_auraed(env!("CARGO_BIN_EXE_auraed"), &setup, &sock).await;
    let daemon_pid = daemon.id();
    let node = Node {
        daemon,
        data_dir: setup.root.join("data"),
        runc: peers.runc.clone(),
        runc_state: setup.root.join("runc-state"),
    };
    let channel = Channel::local(
        aurae_client::connect_mtls(&sock, &setup.admin)
            .await
            .expect("connect"),
    );
    let mut cells = CellsClient::new(channel.clone());
    let idle_rss = rss_kb(daemon_pid);

    // `AURAE_BENCH_ONLY=latency,concurrent,logs` picks sections (all by default).
    let only = std::env::var("AURAE_BENCH_ONLY").unwrap_or_default();
    let runs = |section: &str| only.is_empty() || only.split(',').any(|s| s == section);
    if runs("latency") {
        section_latency(
            &mut cells,
            &marks,
            &bundle,
            &peers,
            &crun,
            &setup.root,
            daemon_pid,
        )
        .await;
    }
    let notes = if runs("concurrent") {
        section_concurrent(&channel, daemon_pid).await
    } else {
        Vec::new()
    };
    for note in &notes {
        println!("{note}");
    }
    let logs = if runs("logs") {
        section_logs(&mut cells, &sink, &node.data_dir).await
    } else {
        Ok(())
    };
    if let Err(e) = &logs {
        println!("   log section failed: {e}");
    }
    // Tokio keeps idle blocking-pool threads for 10 s: look again once they are gone, to
    // tell memory the daemon holds from memory its idle threads hold.
    let at_end = (rss_kb(daemon_pid), threads_fds(daemon_pid));
    tokio::time::sleep(Duration::from_secs(12)).await;
    println!();
    println!(
        "auraed: {} RSS idle after start; at the end {} RSS (threads / fds {}); 12 s later {} RSS (threads / fds {})",
        mb(idle_rss),
        mb(at_end.0),
        at_end.1,
        mb(rss_kb(daemon_pid)),
        threads_fds(daemon_pid)
    );

    let left = cells
        .list(pb::ListCellsRequest {})
        .await
        .map(|r| r.into_inner().cells)
        .unwrap_or_default();
    for cell in &left {
        if let Some(spec) = &cell.spec {
            println!("   cell left behind: {} (freeing it)", spec.name);
            let _ = free(&mut cells, &spec.name).await;
        }
    }
    drop(node);
    if logs.is_ok() && notes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
