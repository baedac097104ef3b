//! The PostgreSQL peer of bench/storage.rs: a throwaway PostgreSQL server with its
//! durable defaults (fsync=on, synchronous_commit=on) on a Unix socket only, in a
//! temporary directory, driven by pgbench (its own C client) with one upsert of a
//! 100-byte value per transaction.
//!
//! It owns that server from initdb to removal: a [`Server`] stops the postmaster and
//! removes its directory when dropped, also when the benchmark panics. It never uses,
//! starts or stops the system's own clusters (Debian's `15/main`). As root, initdb and
//! postgres run as the `postgres` system user (initdb refuses root); otherwise as the
//! caller.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User};

/// Where Debian's `postgresql` package puts the server's programs: `<version>/bin`.
const LIB_DIR: &str = "/usr/lib/postgresql";
/// The programs the peer runs.
const PROGRAMS: [&str; 5] = ["initdb", "postgres", "pg_isready", "psql", "pgbench"];
/// The role the benchmark connects as (trust authentication, socket only).
const ROLE: &str = "bench";
/// What a person must do when the programs are missing.
const INSTALL: &str = "install the apt package `postgresql` (apt-get install -y postgresql), \
     or run bench/run as root, which does";

/// The directory of one PostgreSQL installation's programs.
pub struct Binaries {
    bin: PathBuf,
    /// `postgres --version`, for the table's footnote.
    pub version: String,
}

impl Binaries {
    /// The newest installation under /usr/lib/postgresql that has every program the
    /// peer runs; panics naming the package to install when there is none, since a
    /// benchmark without its peer has nothing to compare with.
    pub fn find() -> Self {
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(LIB_DIR)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse().ok()?;
                Some((version, entry.path().join("bin")))
            })
            .filter(|(_, bin)| PROGRAMS.iter().all(|p| bin.join(p).is_file()))
            .collect();
        versions.sort();
        let Some((_, bin)) = versions.pop() else {
            panic!(
                "the PostgreSQL peer needs {} under {LIB_DIR}/<version>/bin: {INSTALL}",
                PROGRAMS.join(", ")
            );
        };
        let out = Command::new(bin.join("postgres"))
            .arg("--version")
            .output()
            .expect("postgres --version runs");
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Self { bin, version }
    }

    fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }
}

/// A running throwaway PostgreSQL server; dropping it stops the server (fast shutdown)
/// and removes its directory.
pub struct Server<'a> {
    bins: &'a Binaries,
    postmaster: Child,
    /// Data directory `data/`, socket, log and scripts; removed after the postmaster
    /// stopped (fields drop after [`Drop::drop`]).
    dir: tempfile::TempDir,
}

impl<'a> Server<'a> {
    /// initdb in a new temporary directory, then postgres listening only on a Unix
    /// socket there, with fsync and synchronous_commit on; waits until it accepts
    /// connections and creates the table `kv (k text primary key, v bytea)`.
    pub fn start(bins: &'a Binaries) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("aurae-bench-pg")
            .tempdir()
            .expect("a temporary directory for PostgreSQL");
        let owner = Uid::effective().is_root().then(|| {
            let user = User::from_name("postgres")
                .expect("read the user database")
                .unwrap_or_else(|| panic!("no `postgres` system user to run initdb as: {INSTALL}"));
            std::os::unix::fs::chown(dir.path(), Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .expect("give the temporary directory to postgres");
            (user.uid, user.gid)
        });
        let data = dir.path().join("data");
        let initdb = Self::as_owner(owner, dir.path(), bins.program("initdb"))
            .arg("--pgdata")
            .arg(&data)
            .args(["--username", ROLE, "--auth", "trust", "--encoding", "UTF8"])
            .args(["--locale", "C", "--no-sync"])
            .output()
            .expect("initdb runs");
        check("initdb", &initdb);

        let log = fs::File::create(dir.path().join("postgres.log")).expect("a log file");
        if let Some((uid, gid)) = owner {
            nix::unistd::fchown(&log, Some(uid), Some(gid)).expect("give the log to postgres");
        }
        let postmaster = Self::as_owner(owner, dir.path(), bins.program("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-c", "listen_addresses="])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(["-c", "fsync=on", "-c", "synchronous_commit=on"])
            .args(["-c", "full_page_writes=on"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        let mut server = Self {
            bins,
            postmaster,
            dir,
        };
        server.wait_until_ready();
        server.psql("CREATE TABLE kv (k text PRIMARY KEY, v bytea NOT NULL)");
        server
    }

    /// `program`, run in `dir` as the owner when there is one.
    fn as_owner(owner: Option<(Uid, Gid)>, dir: &Path, program: PathBuf) -> Command {
        let mut command = Command::new(program);
        command.current_dir(dir);
        if let Some((uid, gid)) = owner {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }

    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.postmaster.try_wait() {
                panic!(
                    "postgres exited ({status}) before it accepted connections:\n{}",
                    self.log()
                );
            }
            let ready = Command::new(self.bins.program("pg_isready"))
                .arg("--host")
                .arg(self.dir.path())
                .args(["--username", ROLE, "--quiet"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "postgres did not accept connections within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Runs one SQL statement with psql, stopping at an error.
    pub fn psql(&self, sql: &str) {
        let out = Command::new(self.bins.program("psql"))
            .arg("--host")
            .arg(self.dir.path())
            .args(["--username", ROLE, "--dbname", "postgres", "--quiet"])
            .args(["--set", "ON_ERROR_STOP=1", "--command", sql])
            .output()
            .expect("psql runs");
        check("psql", &out);
    }

    /// Transactions per second (without connection set-up) of pgbench running `clients`
    /// connections, each committing `transactions` single-statement transactions that
    /// upsert one `value_bytes`-byte value under a text key, prepared statements.
    pub fn pgbench_rate(&self, clients: usize, transactions: usize, value_bytes: usize) -> f64 {
        let script = self.dir.path().join("insert.sql");
        fs::write(&script, insert_script(value_bytes)).expect("write the pgbench script");
        let out = Command::new(self.bins.program("pgbench"))
            .arg("--host")
            .arg(self.dir.path())
            .args(["--username", ROLE, "--no-vacuum", "--protocol", "prepared"])
            .arg("--file")
            .arg(&script)
            .arg(format!("--client={clients}"))
            .arg(format!("--jobs={}", clients.min(2)))
            .arg(format!("--transactions={transactions}"))
            .arg("postgres")
            .output()
            .expect("pgbench runs");
        check("pgbench", &out);
        let report = String::from_utf8_lossy(&out.stdout);
        let expected = clients * transactions;
        assert!(
            report.contains(&format!("actually processed: {expected}/{expected}")),
            "pgbench did not commit all {expected} transactions:\n{report}"
        );
        parse_tps(&report)
            .unwrap_or_else(|| panic!("no `tps =` line in pgbench's report:\n{report}"))
    }
}

impl Drop for Server<'_> {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: roll back, checkpoint, exit.
        let pid = Pid::from_raw(self.postmaster.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !matches!(self.postmaster.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.postmaster.kill();
        let _ = self.postmaster.wait();
    }
}

/// The pgbench script: one upsert per transaction (pgbench commits each statement on
/// its own), keys `/bench/c<client>/k<random>` like the kv puts' paths, value
/// `value_bytes` bytes of `v`.
fn insert_script(value_bytes: usize) -> String {
    format!(
        "\\set k random(1, 1000000000000)\n\
         INSERT INTO kv (k, v) VALUES ('/bench/c' || :client_id || '/k' || :k, '{}'::bytea) \
         ON CONFLICT (k) DO UPDATE SET v = excluded.v;\n",
        "v".repeat(value_bytes)
    )
}

/// The rate in pgbench's report: the `tps =` line without connection set-up (pgbench
/// 14 and later say "without initial connection time", older ones "excluding
/// connections establishing"), else the only `tps =` line.
fn parse_tps(report: &str) -> Option<f64> {
    let lines: Vec<&str> = report.lines().filter(|l| l.starts_with("tps = ")).collect();
    let line = lines
        .iter()
        .find(|l| l.contains("without initial connection") || l.contains("excluding"))
        .or(lines.first())?;
    line.trim_start_matches("tps = ")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn check(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
