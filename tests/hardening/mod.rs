//! The hardening suite: retries, optimistic concurrency, a model of the store checked against random
//! operations, crashes, concurrent processes, lost connections and hostile input. Each behaviour runs
//! on every backend where it means something. `CHATSTORE_SLOW=1` makes the random and crash runs
//! long; without it they run a short version fit for every CI run.

mod crash;
mod exit;
mod faults;
mod hostile;
mod migrations;
pub(crate) mod model;
mod processes;
mod retries;

use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// Whether the long versions of the random and crash runs were asked for (`CHATSTORE_SLOW=1`).
pub fn slow() -> bool {
    std::env::var("CHATSTORE_SLOW").is_ok_and(|v| v == "1")
}

/// A random number below `n` (for kill moments and batch sizes; not for anything a test asserts).
pub fn random_below(n: u64) -> u64 {
    RandomState::new().hash_one(std::time::Instant::now()) % n.max(1)
}

/// Starts this test binary again as a child process that runs only the ignored test `name` (the
/// child's side of a multi-process test), with `env` for its instructions. Its stdout lines arrive on
/// the returned channel as it prints them.
pub fn spawn_child(name: &str, env: &[(&str, String)]) -> (ChildProcess, mpsc::Receiver<String>) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        // --quiet: the harness would otherwise print the test's name before the child's first line.
        .args([name, "--exact", "--ignored", "--nocapture", "--quiet"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a child test process");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (ChildProcess(child), rx)
}

/// A child process that is killed if the test lets go of it early (a failed assertion, a panic):
/// dropping a `Child` would leave it running, and holding the test's output open.
pub struct ChildProcess(Child);

impl std::ops::Deref for ChildProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits for the child to exit (killing it and failing after `limit`) and returns how it ended with
/// every line it printed that the caller has not taken.
pub fn finish(
    mut child: ChildProcess,
    lines: mpsc::Receiver<String>,
    limit: std::time::Duration,
) -> (std::process::ExitStatus, Vec<String>) {
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("a child process ran past {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    // The reader thread ends with the child's stdout.
    (status, lines.iter().collect())
}

/// The child's instruction `key`, set by the parent test; `None` when the test was not started by
/// one (`cargo test -- --ignored` runs the child tests too, and they then do nothing).
pub fn child_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}
