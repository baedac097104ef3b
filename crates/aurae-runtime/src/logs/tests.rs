//! The logs end to end: real named pipes in a temporary directory, real child processes
//! writing to them, a real pump, and the readers.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::*;

/// Starts `sh -c script` with the pipes in `dir` as its stdout and stderr.
fn spawn(dir: &Path, script: &str) -> Child {
    let (stdout, stderr) = workload_stdio(dir).unwrap();
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .spawn()
        .unwrap()
}

fn lines(records: &[LogRecord]) -> Vec<(Stream, String)> {
    records
        .iter()
        .map(|r| (r.stream, String::from_utf8_lossy(&r.line).into_owned()))
        .collect()
}

fn stdout_lines(records: &[LogRecord]) -> Vec<String> {
    lines(records).into_iter().map(|(_, line)| line).collect()
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

/// Runs `script` to its end with a pump, stops the pump, and returns the log.
fn run_logged(dir: &Path, config: &LogConfig, script: &str) -> Vec<LogRecord> {
    let pump = start_pump(dir, config).unwrap();
    let status = spawn(dir, script).wait().unwrap();
    assert!(status.success(), "{status:?}");
    pump.stop().unwrap();
    read(dir, &LogQuery::default()).unwrap()
}

#[test]
fn output_is_logged_in_order_with_its_streams() {
    let dir = tempfile::tempdir().unwrap();
    let script =
        "echo out1; sleep 0.05; echo err1 >&2; sleep 0.05; echo out2; sleep 0.05; echo err2 >&2";
    let records = run_logged(dir.path(), &LogConfig::default(), script);
    let expected = [
        (Stream::Stdout, "out1"),
        (Stream::Stderr, "err1"),
        (Stream::Stdout, "out2"),
        (Stream::Stderr, "err2"),
    ]
    .map(|(stream, line)| (stream, line.to_owned()));
    assert_eq!(lines(&records), expected);
    assert!(records.iter().all(|r| !r.partial));
    assert!(records.windows(2).all(|w| w[0].time <= w[1].time));
    let mode = std::fs::metadata(dir.path().join(CURRENT_LOG)).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn tail_and_since_select_the_newest_records() {
    let dir = tempfile::tempdir().unwrap();
    let pump = start_pump(dir.path(), &LogConfig::default()).unwrap();
    spawn(dir.path(), "echo a; echo b; echo c").wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let middle = SystemTime::now();
    spawn(dir.path(), "echo d; echo e").wait().unwrap();
    pump.stop().unwrap();

    let tail = |n| LogQuery {
        tail: Some(n),
        ..LogQuery::default()
    };
    assert_eq!(
        stdout_lines(&read(dir.path(), &tail(2)).unwrap()),
        ["d", "e"]
    );
    assert_eq!(read(dir.path(), &tail(10)).unwrap().len(), 5);
    assert!(read(dir.path(), &tail(0)).unwrap().is_empty());
    let since = LogQuery {
        since: Some(middle),
        tail: None,
    };
    assert_eq!(stdout_lines(&read(dir.path(), &since).unwrap()), ["d", "e"]);
    let both = LogQuery {
        since: Some(middle),
        tail: Some(1),
    };
    assert_eq!(stdout_lines(&read(dir.path(), &both).unwrap()), ["e"]);
}

#[test]
fn rotation_keeps_at_most_max_files_and_the_newest_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_file_bytes: 1000,
        max_files: 2,
    };
    let script = "i=0; while [ $i -lt 300 ]; do echo $i; i=$((i+1)); done";
    let records = run_logged(dir.path(), &config, script);

    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".log"))
        .collect();
    names.sort();
    assert_eq!(names, ["1.log", "2.log", "current.log"]);
    for name in &names {
        assert!(std::fs::metadata(dir.path().join(name)).unwrap().len() <= 1000);
    }
    let got = stdout_lines(&records);
    let first: usize = got[0].parse().unwrap();
    assert!(first > 0, "the oldest lines were rotated away");
    assert_eq!(got, numbered(first..300));
}

#[test]
fn a_line_longer_than_the_maximum_becomes_partial_records_then_a_full_one() {
    let dir = tempfile::tempdir().unwrap();
    let script = "head -c 40000 /dev/zero | tr '\\0' a; echo; echo next";
    let records = run_logged(dir.path(), &LogConfig::default(), script);
    // Cut at 16 KiB each (unless the machine stalled the writer for longer than the pump
    // waits for a newline, which may cut earlier).
    let (last, long) = records.split_last().unwrap();
    assert_eq!((last.partial, &last.line[..]), (false, &b"next"[..]));
    let (end, parts) = long.split_last().unwrap();
    assert!(!end.partial && parts.len() >= 2);
    assert!(parts.iter().all(|r| r.partial));
    assert!(long.iter().all(|r| r.line.len() <= MAX_LINE_BYTES));
    assert!(long.iter().all(|r| r.line.iter().all(|&b| b == b'a')));
    assert_eq!(long.iter().map(|r| r.line.len()).sum::<usize>(), 40000);
    if parts.len() == 2 {
        assert_eq!(end.line.len(), 40000 - 2 * MAX_LINE_BYTES);
    }
}

#[test]
fn a_fragment_without_its_newline_is_written_as_partial_after_a_moment() {
    let dir = tempfile::tempdir().unwrap();
    let records = run_logged(
        dir.path(),
        &LogConfig::default(),
        "printf 'name? '; sleep 0.3; echo joe",
    );
    let shape: Vec<(bool, &[u8])> = records.iter().map(|r| (r.partial, &r.line[..])).collect();
    assert_eq!(shape, [(true, &b"name? "[..]), (false, &b"joe"[..])]);
}

#[test]
fn stop_drains_what_is_left_in_the_pipes() {
    let dir = tempfile::tempdir().unwrap();
    // No pump while the workload writes: it all waits in the pipe, kept open after the
    // workload's exit by `held` (as a running pump would).
    let held = workload_stdio(dir.path()).unwrap();
    let script = "i=0; while [ $i -lt 1000 ]; do echo $i; i=$((i+1)); done; printf tail";
    let status = spawn(dir.path(), script).wait().unwrap();
    assert!(status.success());
    start_pump(dir.path(), &LogConfig::default())
        .unwrap()
        .stop()
        .unwrap();
    drop(held);
    let records = read(dir.path(), &LogQuery::default()).unwrap();
    let mut expected = numbered(0..1000);
    expected.push("tail".into());
    assert_eq!(stdout_lines(&records), expected);
    assert!(records[1000].partial);
}

#[test]
fn output_survives_a_restart_of_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig::default();
    let first = start_pump(dir.path(), &config).unwrap();
    let mut child = spawn(
        dir.path(),
        "i=0; while [ $i -lt 50 ]; do echo $i; i=$((i+1)); sleep 0.02; done",
    );
    std::thread::sleep(Duration::from_millis(400));
    drop(first); // the daemon dies
    std::thread::sleep(Duration::from_millis(300));
    let second = start_pump(dir.path(), &config).unwrap();
    let status = child.wait().unwrap();
    second.stop().unwrap();

    assert!(
        status.success(),
        "{status:?} (signal {:?})",
        status.signal()
    );
    let records = read(dir.path(), &LogQuery::default()).unwrap();
    assert_eq!(stdout_lines(&records), numbered(0..50));
}

#[test]
fn a_record_cut_short_by_a_dying_pump_does_not_swallow_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = b"2024-02-29T12:34:56.000000001Z stdout F whole\n2024-02-29T12:34:5";
    std::fs::write(dir.path().join(CURRENT_LOG), damaged).unwrap();
    let records = run_logged(dir.path(), &LogConfig::default(), "echo after");
    assert_eq!(stdout_lines(&records), ["whole", "after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_sees_new_lines_across_rotations_and_ends_with_the_pump() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_file_bytes: 2000,
        max_files: 100,
    };
    let pump = start_pump(dir.path(), &config).unwrap();
    spawn(dir.path(), "echo before").wait().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let query = LogQuery {
        tail: Some(1),
        ..LogQuery::default()
    };
    let mut follower = LogFollower::new(dir.path(), &query, Some(pump.subscribe())).unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(batch) = follower.next_batch().await.unwrap() {
            got.extend(stdout_lines(&batch));
        }
        got
    });
    let script = "i=0; while [ $i -lt 500 ]; do echo $i; i=$((i+1)); [ $((i % 50)) -eq 0 ] && sleep 0.01; done; true";
    let mut child = spawn(dir.path(), script);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success());
    tokio::task::spawn_blocking(move || pump.stop().unwrap())
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    let mut expected = vec!["before".to_owned()];
    expected.extend(numbered(0..500));
    assert_eq!(got, expected);
    assert!(dir.path().join("3.log").exists(), "the log rotated");
}

#[tokio::test]
async fn a_follower_left_behind_by_deleted_files_skips_them_and_goes_on_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_file_bytes: 500,
        max_files: 2,
    };
    let pump = start_pump(dir.path(), &config).unwrap();
    let mut follower =
        LogFollower::new(dir.path(), &LogQuery::default(), Some(pump.subscribe())).unwrap();
    let script = "i=0; while [ $i -lt 300 ]; do echo $i; i=$((i+1)); done";
    assert!(spawn(dir.path(), script).wait().unwrap().success());
    pump.stop().unwrap();
    let mut got = Vec::new();
    while let Some(batch) = follower.next_batch().await.unwrap() {
        got.extend(
            stdout_lines(&batch)
                .iter()
                .map(|n| n.parse::<usize>().unwrap()),
        );
    }
    assert_eq!(got.first(), Some(&0), "the file it held is read to its end");
    assert_eq!(got.last(), Some(&299));
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {got:?}"
    );
}

#[tokio::test]
async fn a_follower_without_a_pump_returns_what_is_there_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    run_logged(dir.path(), &LogConfig::default(), "echo one; echo two");
    let mut follower = LogFollower::new(dir.path(), &LogQuery::default(), None).unwrap();
    let first = follower.next_batch().await.unwrap().unwrap();
    assert_eq!(stdout_lines(&first), ["one", "two"]);
    assert_eq!(follower.next_batch().await.unwrap(), None);
}

#[test]
fn damaged_lines_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let text = "garbage\n\
        2024-02-29T12:34:56.000000001Z stdout F good one\n\
        2024-02-29T12:34:56.000000001Z stdboth F bad stream\n\
        2024-02-29T12:34:56.000000001Z stderr X bad flag\n\
        not-a-time stdout F bad time\n\
        \u{0}\u{1}\u{2}\n\
        2024-02-29T12:34:56.000000002Z stderr P \n\
        2024-02-29T12:34:56.000000003Z stdout F no newline at the end";
    std::fs::write(dir.path().join(CURRENT_LOG), text).unwrap();
    let records = read(dir.path(), &LogQuery::default()).unwrap();
    assert_eq!(
        lines(&records),
        [
            (Stream::Stdout, "good one".to_owned()),
            (Stream::Stderr, String::new())
        ]
    );
    assert!(records[1].partial);
}

#[test]
fn a_stalled_follower_does_not_slow_the_workload() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        max_file_bytes: 16 * 1024 * 1024,
        max_files: 4,
    };
    let pump = start_pump(dir.path(), &config).unwrap();
    let _stalled =
        LogFollower::new(dir.path(), &LogQuery::default(), Some(pump.subscribe())).unwrap();
    let started = Instant::now();
    let bytes = 50 * 1024 * 1024;
    let status = spawn(
        dir.path(),
        &format!("head -c {bytes} /dev/zero | tr '\\0' a"),
    )
    .wait()
    .unwrap();
    let took = started.elapsed();
    assert!(status.success());
    assert!(took < Duration::from_secs(60), "took {took:?}");
    pump.stop().unwrap();

    let records = read(dir.path(), &LogQuery::default()).unwrap();
    let logged: usize = records.iter().map(|r| r.line.len()).sum();
    assert_eq!(logged, bytes);
    let on_disk: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= config.max_file_bytes * u64::from(config.max_files + 1));
}

/// Not a check: prints how fast a workload writes with logging and to /dev/null
/// (`cargo test --release -p aurae-runtime logs::tests::throughput -- --ignored --nocapture`).
#[test]
#[ignore]
fn throughput() {
    // Where the logs go: AURAE_LOGS_BENCH_DIR (say /dev/shm, to leave the disk out), or /tmp.
    let base = std::env::var_os("AURAE_LOGS_BENCH_DIR").unwrap_or_else(|| "/tmp".into());
    let workloads = [
        ("no newlines", "head -c 1000000000 /dev/zero | tr '\\0' a"),
        (
            "80-byte lines",
            "yes 0123456789012345678901234567890123456789012345678901234567890123456789012345678 | head -c 1000000000",
        ),
        ("8-byte lines", "yes 1234567 | head -c 300000000"),
    ];
    for (name, script) in workloads {
        let to_null = {
            let started = Instant::now();
            let status = Command::new("sh")
                .args(["-c", script])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
            started.elapsed()
        };
        let to_file = {
            let file = tempfile::tempfile_in(&base).unwrap();
            let started = Instant::now();
            let status = Command::new("sh")
                .args(["-c", script])
                .stdout(Stdio::from(file))
                .status()
                .unwrap();
            assert!(status.success());
            started.elapsed()
        };
        let dir = tempfile::tempdir_in(&base).unwrap();
        let pump = start_pump(dir.path(), &LogConfig::default()).unwrap();
        let started = Instant::now();
        assert!(spawn(dir.path(), script).wait().unwrap().success());
        let logged = started.elapsed();
        pump.stop().unwrap();
        println!(
            "{name}: /dev/null {to_null:?}, to a file {to_file:?}, logged {logged:?}, ratio to /dev/null {:.2}, to a file {:.2}",
            to_null.as_secs_f64() / logged.as_secs_f64(),
            to_file.as_secs_f64() / logged.as_secs_f64(),
        );
    }
}
