//! The process supervisor through its library API: every tracked child's exit status reaches
//! its owner exactly, even while hundreds of orphans are reaped alongside, and no zombie is
//! left behind.
//!
//! A supervisor makes its whole process a child subreaper and reaps every untracked child,
//! so these tests live in a binary of their own, start processes only through the
//! supervisor, and take turns (nextest gives each test its own process anyway).

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auraed::init::supervisor::{Exit, SignalError, SpawnError, SupervisedChild, Supervisor};
use nix::sys::signal::Signal;

/// Tests in this binary share one process, its children and its supervisor: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How many background sleepers the storm shell leaves behind as orphans.
const ORPHANS: usize = 300;

fn supervisor() -> Supervisor {
    Supervisor::start().expect("the supervisor starts")
}

fn sh(script: &str) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script).stdin(Stdio::null());
    command
}

/// A shell that starts `ORPHANS` sleepers in the background and exits at once, so that they
/// are reparented to this process (the subreaper). They sleep in a process group of their
/// own (the shell's pid) until [`release_orphans`] ends them, so that all of them are alive
/// when the shell exits, however slowly it forks.
fn orphan_storm() -> Command {
    let mut storm = sh(&format!(
        "i=0; while [ $i -lt {ORPHANS} ]; do sleep 60 & i=$((i+1)); done; exit 0"
    ));
    storm.process_group(0);
    storm
}

/// Ends the storm's orphans: they exit together, to be reaped by the orphan reaper.
fn release_orphans(storm_pid: i32) {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(storm_pid), Signal::SIGTERM).unwrap();
}

/// This process's children and how many of them are zombies, from `/proc/*/status`.
fn my_children() -> (usize, usize) {
    aurae_testkit::children_of(i32::try_from(std::process::id()).expect("pids fit in i32"))
}

/// The state letter of `pid` (`Z` for a zombie), if it exists.
fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

async fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn exit_of(mut child: SupervisedChild) -> Exit {
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the child exits in time")
        .expect("its exit status reaches its owner")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_and_killing_signals_reach_their_owners_while_300_orphans_are_reaped() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let supervisor = supervisor();
    let orphans_before = supervisor.orphans_reaped();

    let storm = supervisor.spawn(&mut orphan_storm()).unwrap();
    let storm_pid = storm.pid();
    let seven = supervisor.spawn(&mut sh("sleep 0.2; exit 7")).unwrap();
    let killed = supervisor
        .spawn(Command::new("sleep").arg("30").stdin(Stdio::null()))
        .unwrap();
    let terminated_itself = supervisor
        .spawn(&mut sh("sleep 0.3; kill -TERM $$"))
        .unwrap();
    let realtime = supervisor.spawn(&mut sh("sleep 0.3; kill -40 $$")).unwrap();
    // Many owners waiting at once, their children exiting among the orphans.
    let mut coded = Vec::new();
    for code in 0..50 {
        let child = supervisor
            .spawn(&mut sh(&format!("sleep 0.{}; exit {code}", code % 7)))
            .unwrap();
        coded.push(tokio::spawn(exit_of(child)));
    }

    assert_eq!(exit_of(storm).await, Exit::Code(0));
    let (children, _) = my_children();
    assert!(
        children >= ORPHANS,
        "the sleepers came back to this process, the subreaper: {children} children"
    );
    // The orphans die while the owners below collect their children's statuses.
    release_orphans(storm_pid);
    killed.signal(Signal::SIGKILL).unwrap();
    assert_eq!(exit_of(seven).await, Exit::Code(7));
    assert_eq!(
        exit_of(killed).await,
        Exit::Signal {
            number: Signal::SIGKILL as i32,
            core_dumped: false
        }
    );
    assert_eq!(
        exit_of(terminated_itself).await,
        Exit::Signal {
            number: Signal::SIGTERM as i32,
            core_dumped: false
        }
    );
    assert_eq!(
        exit_of(realtime).await,
        Exit::Signal {
            number: 40,
            core_dumped: false
        },
        "a real-time signal is reported, not lost"
    );
    for (code, waiting) in coded.into_iter().enumerate() {
        assert_eq!(waiting.await.unwrap(), Exit::Code(code as i32));
    }

    wait_until(Duration::from_secs(20), "every orphan reaped", || {
        my_children() == (0, 0)
    })
    .await;
    assert_eq!(supervisor.orphans_reaped() - orphans_before, ORPHANS as u64);
    assert_eq!(supervisor.tracked_children(), 0);
}

#[tokio::test]
async fn a_tracked_zombie_nobody_waits_for_hides_no_orphan_and_keeps_its_status() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let supervisor = supervisor();
    let orphans_before = supervisor.orphans_reaped();

    // Started from a thread of its own, which then ends: the kernel moves the zombie to the
    // head of the main thread's list of children, where the reaper's peek meets it before
    // the orphans that follow.
    let spawner = supervisor.clone();
    let mut unclaimed = std::thread::spawn(move || spawner.spawn(&mut sh("exit 5")).unwrap())
        .join()
        .unwrap();
    let pid = unclaimed.pid();
    wait_until(Duration::from_secs(5), "the child to be a zombie", || {
        state_of(pid) == Some('Z')
    })
    .await;

    let storm = supervisor.spawn(&mut orphan_storm()).unwrap();
    let storm_pid = storm.pid();
    assert_eq!(exit_of(storm).await, Exit::Code(0));
    assert_eq!(
        my_children(),
        (ORPHANS + 1, 1),
        "the orphans came back to us"
    );
    release_orphans(storm_pid);
    wait_until(Duration::from_secs(20), "every orphan reaped", || {
        my_children() == (1, 1)
    })
    .await;
    assert_eq!(supervisor.orphans_reaped() - orphans_before, ORPHANS as u64);
    assert_eq!(
        state_of(pid),
        Some('Z'),
        "the reaper left the tracked zombie to its owner"
    );

    assert_eq!(unclaimed.try_wait().unwrap(), Some(Exit::Code(5)));
    assert_eq!(my_children(), (0, 0));
}

#[tokio::test]
async fn a_child_that_exits_at_once_is_never_lost() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let supervisor = supervisor();
    // The reaper runs on every SIGCHLD while these exit, before their owners wait.
    let mut children = Vec::new();
    for i in 0..200 {
        let child = if i % 2 == 0 {
            supervisor.spawn(Command::new("true").stdin(Stdio::null()))
        } else {
            supervisor.spawn(Command::new("false").stdin(Stdio::null()))
        };
        children.push(child.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (i, child) in children.into_iter().enumerate() {
        let expected = if i % 2 == 0 { 0 } else { 1 };
        assert_eq!(exit_of(child).await, Exit::Code(expected), "child {i}");
    }
    assert_eq!(my_children(), (0, 0));
    assert_eq!(supervisor.tracked_children(), 0);
}

#[tokio::test]
async fn an_exited_child_keeps_its_status_and_refuses_signals() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let supervisor = supervisor();
    let mut child = supervisor.spawn(&mut sh("exit 3")).unwrap();
    let pid = child.pid();
    assert_eq!(child.wait().await.unwrap(), Exit::Code(3));
    assert_eq!(child.wait().await.unwrap(), Exit::Code(3), "asked again");
    assert_eq!(child.try_wait().unwrap(), Some(Exit::Code(3)));
    assert!(matches!(
        child.signal(Signal::SIGTERM),
        Err(SignalError::Exited { pid: p }) if p == pid
    ));
}

#[tokio::test]
async fn a_dropped_child_is_reaped_as_an_orphan() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let supervisor = supervisor();
    let orphans_before = supervisor.orphans_reaped();
    let child = supervisor.spawn(&mut sh("sleep 0.2")).unwrap();
    drop(child);
    assert_eq!(supervisor.tracked_children(), 0);
    wait_until(Duration::from_secs(10), "the detached child reaped", || {
        my_children() == (0, 0)
    })
    .await;
    assert_eq!(supervisor.orphans_reaped() - orphans_before, 1);
}

#[tokio::test]
async fn a_missing_program_is_a_start_error_and_leaves_nothing_behind() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let supervisor = supervisor();
    let error = supervisor
        .spawn(&mut Command::new("/nonexistent/aurae-test-program"))
        .unwrap_err();
    assert!(
        matches!(&error, SpawnError::Start { program, .. } if program == "/nonexistent/aurae-test-program"),
        "{error}"
    );
    assert_eq!(supervisor.tracked_children(), 0);
    assert_eq!(my_children(), (0, 0));
}

#[tokio::test]
async fn piped_output_is_handed_to_the_owner() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let supervisor = supervisor();
    let mut child = supervisor
        .spawn(sh("echo hello").stdout(Stdio::piped()))
        .unwrap();
    let mut stdout = child.stdout.take().expect("stdout was piped");
    let output = tokio::task::spawn_blocking(move || {
        let mut output = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut output).map(|_| output)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(output, "hello\n");
    assert_eq!(child.wait().await.unwrap(), Exit::Code(0));
}
