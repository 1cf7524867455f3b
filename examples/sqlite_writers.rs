//! The multi-process write probe: several processes × several threads append to one SQLite file
//! for a while, as the workers of a service would, and the latency of every append is reported
//! (p50/p90/p99/p99.9/max), with the appends per second, the errors, and whether every
//! acknowledged message is stored, in order and without a gap.
//!
//! ```text
//! cargo run --release --example sqlite_writers                  # 6 processes × 4 threads × 30 s
//! cargo run --release --example sqlite_writers -- --processes 6 --threads 4 --seconds 3 --check
//! ```
//!
//! Options (each also as an environment variable, `CHATSTORE_PROBE_PROCESSES` and so on):
//! `--processes N` (6), `--threads T` (4), `--seconds D` (30), `--content-bytes B` (256),
//! `--synchronous full|normal` (full), `--busy-timeout-ms MS` (60000: the probe measures waits,
//! it does not want them cut short), `--dir PATH` (where the database goes; a new temporary
//! directory by default, which is removed afterwards), and `--check`: exit 1 on any error or lost
//! message, or (on Linux) if the database has no lock file, the writers' queue — latency is only
//! reported, since a loaded machine cannot promise it, unless `--max-p99-ms` or `--max-ms` are
//! given, which are then checked too.
//!
//! The program runs itself again as each child process. Every thread alternates between one
//! conversation shared by all and one of its own; each child writes its latencies to a file in
//! the database's directory, and the parent merges them and reads back what was stored.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use chatstore::{ChatStore, ConversationId, NewMessage, Synchronous, UserId, Window};

/// The probe's settings, from flags or environment variables.
#[derive(Debug, Clone)]
struct Options {
    processes: usize,
    threads: usize,
    seconds: f64,
    content_bytes: usize,
    synchronous: Synchronous,
    busy_timeout: Duration,
    dir: Option<PathBuf>,
    check: bool,
    max_p99_ms: Option<f64>,
    max_ms: Option<f64>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut given: BTreeMap<String, String> = BTreeMap::new();
        for (key, value) in std::env::vars() {
            if let Some(name) = key.strip_prefix("CHATSTORE_PROBE_") {
                if !name.starts_with("CHILD") {
                    given.insert(name.to_ascii_lowercase().replace('_', "-"), value);
                }
            }
        }
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            if name == "check" {
                given.insert("check".into(), "1".into());
                continue;
            }
            let value = args.next().ok_or(format!("--{name} needs a value"))?;
            given.insert(name.to_owned(), value);
        }
        fn number<T: std::str::FromStr>(
            given: &mut BTreeMap<String, String>,
            name: &str,
            default: T,
        ) -> Result<T, String> {
            match given.remove(name) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("--{name}: not a number: {v:?}")),
            }
        }
        let options = Options {
            processes: number(&mut given, "processes", 6)?,
            threads: number(&mut given, "threads", 4)?,
            seconds: number(&mut given, "seconds", 30.0)?,
            content_bytes: number(&mut given, "content-bytes", 256)?,
            synchronous: match given.remove("synchronous").as_deref() {
                None | Some("full") => Synchronous::Full,
                Some("normal") => Synchronous::Normal,
                Some(other) => return Err(format!("--synchronous: full or normal, not {other:?}")),
            },
            busy_timeout: Duration::from_millis(number(&mut given, "busy-timeout-ms", 60_000)?),
            dir: given.remove("dir").map(PathBuf::from),
            check: given.remove("check").is_some_and(|v| v != "0"),
            max_p99_ms: given
                .remove("max-p99-ms")
                .map(|v| v.parse())
                .transpose()
                .map_err(|_| "--max-p99-ms: not a number".to_owned())?,
            max_ms: given
                .remove("max-ms")
                .map(|v| v.parse())
                .transpose()
                .map_err(|_| "--max-ms: not a number".to_owned())?,
        };
        if let Some(unknown) = given.keys().next() {
            return Err(format!("unknown option --{unknown}"));
        }
        if options.processes == 0 || options.threads == 0 {
            return Err("--processes and --threads must be at least 1".into());
        }
        Ok(options)
    }

    fn open(&self, db: &Path) -> ChatStore {
        ChatStore::builder(format!("sqlite://{}", db.display()))
            .busy_timeout(self.busy_timeout)
            .synchronous(self.synchronous)
            .pool_size(self.threads as u32 + 1)
            .open()
            .unwrap_or_else(|e| panic!("open {}: {e}", db.display()))
    }
}

fn user() -> UserId {
    UserId::new("probe").expect("a valid user id")
}

/// `text`, padded with dots to `bytes` (if shorter).
fn padded(text: String, bytes: usize) -> String {
    let mut text = text;
    if text.len() < bytes {
        text.push(' ');
        text.extend(std::iter::repeat_n('.', bytes.saturating_sub(text.len())));
    }
    text
}

fn main() -> ExitCode {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("sqlite_writers: {e}");
            return ExitCode::from(2);
        }
    };
    match std::env::var("CHATSTORE_PROBE_CHILD") {
        Ok(process) => child(&options, &process),
        Err(_) => parent(&options),
    }
}

/// What one child reports: per thread, how many appends were acknowledged to the shared and to
/// the thread's own conversation, and the errors by their message.
#[derive(Debug, Default)]
struct ChildReport {
    own: Vec<(ConversationId, usize)>,
    shared: Vec<usize>,
    errors: BTreeMap<String, usize>,
}

fn parent(options: &Options) -> ExitCode {
    let temp;
    let dir = match &options.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().expect("a temporary directory");
            temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir).expect("create the directory");
    let db = dir.join("probe.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let store = options.open(&db);
    let shared = store
        .create_conversation(&user(), Some("shared"))
        .expect("create the shared conversation")
        .id;
    let exe = std::env::current_exe().expect("the probe's own path");
    let load_before = load_average();
    let mut children: Vec<_> = (0..options.processes)
        .map(|p| {
            let mut child = Command::new(&exe)
                .args(std::env::args().skip(1))
                .env("CHATSTORE_PROBE_CHILD", p.to_string())
                .env("CHATSTORE_PROBE_DIR", &dir)
                .env("CHATSTORE_PROBE_CHILD_SHARED", shared.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start a child");
            let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
            (child, lines)
        })
        .collect();
    // Every child opens the store and creates its conversations first; then all start at once.
    for (_, lines) in &mut children {
        match lines.next() {
            Some(Ok(line)) if line == "ready" => {}
            other => panic!("a child did not start: {other:?}"),
        }
    }
    for (child, _) in &mut children {
        let mut input = child.stdin.take().expect("piped stdin");
        writeln!(input, "go").expect("tell a child to go");
    }
    let started = Instant::now();
    let mut reports = Vec::new();
    for (mut child, lines) in children {
        let mut report = ChildReport::default();
        for line in lines {
            let line = line.expect("a child's output");
            let words: Vec<&str> = line.splitn(3, ' ').collect();
            match words.as_slice() {
                ["own", id, n] => report.own.push((id.parse().unwrap(), n.parse().unwrap())),
                ["shared", n] => report.shared.push(n.parse().unwrap()),
                ["error", n, message] => {
                    *report.errors.entry((*message).to_owned()).or_default() +=
                        n.parse::<usize>().unwrap()
                }
                _ => eprintln!("child: {line}"),
            }
        }
        let status = child.wait().expect("a child's exit");
        assert!(status.success(), "a child failed: {status}");
        reports.push(report);
    }
    let elapsed = started.elapsed();
    let load_after = load_average();

    let mut latencies: Vec<u32> = Vec::new();
    for p in 0..options.processes {
        let bytes = std::fs::read(dir.join(format!("latencies-{p}.bin"))).expect("latencies");
        latencies.extend(
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    latencies.sort_unstable();
    let errors: BTreeMap<String, usize> =
        reports
            .iter()
            .flat_map(|r| r.errors.iter())
            .fold(BTreeMap::new(), |mut all, (k, n)| {
                *all.entry(k.clone()).or_default() += n;
                all
            });
    let error_count: usize = errors.values().sum();
    let (lost, unacknowledged) = verify(&store, shared, &reports);

    let ms = |us: u32| us as f64 / 1000.0;
    let quantile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        ms(latencies[i])
    };
    let max = latencies.last().copied().map(ms).unwrap_or(0.0);
    println!(
        "sqlite_writers: {} processes × {} threads × {} s, {} B content, synchronous {:?}, busy timeout {} ms",
        options.processes,
        options.threads,
        options.seconds,
        options.content_bytes,
        options.synchronous,
        options.busy_timeout.as_millis()
    );
    println!(
        "appends {}  ({:.0}/s over {:.1} s)  errors {}  lost {}  stored unacknowledged {}",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        error_count,
        lost,
        unacknowledged
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
        quantile(0.50),
        quantile(0.90),
        quantile(0.99),
        quantile(0.999),
        max
    );
    println!("load average before {load_before}, after {load_after}");
    // The writers' queue lives in this file (Linux); without it the store falls back to SQLite's
    // busy handler, silently as far as the figures go but for their tail.
    let lock_file = PathBuf::from(format!("{}-chatstore.lock", db.display()));
    let queued = lock_file.exists();
    println!(
        "lock file {}: {}",
        lock_file.display(),
        if queued { "present" } else { "absent" }
    );
    for (message, n) in &errors {
        println!("error ×{n}: {message}");
    }
    if options.check {
        let mut failed = error_count > 0 || lost > 0 || unacknowledged > 0;
        if cfg!(target_os = "linux") && !queued {
            println!("FAIL: no lock file, so the processes did not queue");
            failed = true;
        }
        if let Some(bound) = options.max_p99_ms {
            if quantile(0.99) > bound {
                println!("FAIL: p99 {:.2} ms is over {bound} ms", quantile(0.99));
                failed = true;
            }
        }
        if let Some(bound) = options.max_ms {
            if max > bound {
                println!("FAIL: max {max:.2} ms is over {bound} ms");
                failed = true;
            }
        }
        if failed {
            println!("FAIL");
            return ExitCode::FAILURE;
        }
        println!("ok");
    }
    ExitCode::SUCCESS
}

/// Reads back what the children stored: returns how many acknowledged appends are missing (or out
/// of order), and how many stored messages no child saw acknowledged.
fn verify(store: &ChatStore, shared: ConversationId, reports: &[ChildReport]) -> (usize, usize) {
    let user = user();
    let (mut lost, mut unacknowledged) = (0, 0);
    let page = store
        .messages(&user, shared, Window::All)
        .expect("read the shared conversation");
    if let Some((m, seq)) = page.messages.iter().zip(1..).find(|(m, seq)| m.seq != *seq) {
        println!(
            "the shared conversation's seqs have a gap: seq {} where {seq} was due",
            m.seq
        );
        lost += 1;
    }
    // "p<process> t<thread> <i> ...": per writer, 0, 1, 2… in seq order.
    let mut writers: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for m in &page.messages {
        let mut words = m.content.split(' ');
        let mut field = |prefix: &str| -> usize {
            let word = words.next().unwrap_or_default();
            word.strip_prefix(prefix)
                .unwrap_or(word)
                .parse()
                .unwrap_or(usize::MAX)
        };
        let key = (field("p"), field("t"));
        writers.entry(key).or_default().push(field(""));
    }
    for (p, report) in reports.iter().enumerate() {
        for (t, &acked) in report.shared.iter().enumerate() {
            let stored = writers.remove(&(p, t)).unwrap_or_default();
            lost += in_order_loss(&stored, acked, &mut unacknowledged);
        }
        for &(conversation, acked) in &report.own {
            let page = store
                .messages(&user, conversation, Window::All)
                .expect("read a conversation");
            let stored: Vec<usize> = page
                .messages
                .iter()
                .map(|m| {
                    m.content
                        .split(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(usize::MAX)
                })
                .collect();
            lost += in_order_loss(&stored, acked, &mut unacknowledged);
        }
    }
    // Messages of writers that no child reported.
    unacknowledged += writers.values().map(Vec::len).sum::<usize>();
    (lost, unacknowledged)
}

/// How many of the `acked` appends 0..acked are not where they belong in `stored` (which must be
/// 0, 1, 2… exactly); stored messages past `acked` are counted as unacknowledged.
fn in_order_loss(stored: &[usize], acked: usize, unacknowledged: &mut usize) -> usize {
    let in_place = stored
        .iter()
        .zip(0..acked)
        .take_while(|(s, i)| **s == *i)
        .count();
    *unacknowledged += stored.len().saturating_sub(acked);
    acked - in_place
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn child(options: &Options, process: &str) -> ExitCode {
    let dir = options
        .dir
        .clone()
        .expect("the probe's directory, from the parent");
    let shared: ConversationId = std::env::var("CHATSTORE_PROBE_CHILD_SHARED")
        .expect("the shared conversation")
        .parse()
        .expect("a conversation id");
    let p: usize = process.parse().expect("the process number");
    let store = options.open(&dir.join("probe.db"));
    let user = user();
    let own: Vec<ConversationId> = (0..options.threads)
        .map(|_| {
            store
                .create_conversation(&user, None)
                .expect("create a conversation")
                .id
        })
        .collect();
    println!("ready");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .expect("the parent's go");
    let duration = Duration::from_secs_f64(options.seconds);
    let barrier = Arc::new(Barrier::new(options.threads));
    let threads: Vec<_> = own
        .iter()
        .enumerate()
        .map(|(t, &mine)| {
            let (store, user, barrier) = (store.clone(), user.clone(), barrier.clone());
            let bytes = options.content_bytes;
            std::thread::spawn(move || {
                barrier.wait();
                let end = Instant::now() + duration;
                let mut latencies: Vec<u32> = Vec::new();
                let mut errors: BTreeMap<String, usize> = BTreeMap::new();
                let (mut to_shared, mut to_own) = (0usize, 0usize);
                let mut shared_next = true;
                while Instant::now() < end {
                    let (conversation, text) = if shared_next {
                        (shared, padded(format!("p{p} t{t} {to_shared}"), bytes))
                    } else {
                        (mine, padded(to_own.to_string(), bytes))
                    };
                    let start = Instant::now();
                    let result = store.append_message(&user, conversation, NewMessage::user(&text));
                    let took = start.elapsed();
                    latencies.push(took.as_micros().min(u32::MAX as u128) as u32);
                    match result {
                        Ok(_) if shared_next => to_shared += 1,
                        Ok(_) => to_own += 1,
                        // The same message is tried again next, so the order stays checkable.
                        Err(e) => {
                            *errors.entry(e.to_string()).or_default() += 1;
                            continue;
                        }
                    }
                    shared_next = !shared_next;
                }
                (latencies, errors, to_shared, to_own)
            })
        })
        .collect();
    let mut all_latencies = Vec::new();
    let mut out = std::io::stdout().lock();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for (t, thread) in threads.into_iter().enumerate() {
        let (latencies, thread_errors, to_shared, to_own) = thread.join().expect("a writer thread");
        all_latencies.extend(latencies);
        for (k, n) in thread_errors {
            *errors.entry(k).or_default() += n;
        }
        writeln!(out, "shared {to_shared}").unwrap();
        writeln!(out, "own {} {to_own}", own[t]).unwrap();
    }
    for (message, n) in errors {
        writeln!(out, "error {n} {}", message.replace('\n', " ")).unwrap();
    }
    let bytes: Vec<u8> = all_latencies.iter().flat_map(|l| l.to_le_bytes()).collect();
    std::fs::write(dir.join(format!("latencies-{p}.bin")), bytes).expect("write the latencies");
    ExitCode::SUCCESS
}
