//! Short-lived programs on PostgreSQL over TLS: open a store, make a call or two, return from main.
//! Nothing of the store may still be running when the program's last call has returned: a
//! connection being opened on a thread of the store's own (r2d2's) while the main thread ran the
//! TLS libraries' exit handlers crashed such programs (SIGSEGV in libcrypto): 24 of these 500 runs,
//! 39 of 1,000, in any scenario that made a call. Each run here is a real process — this test
//! binary started again — and any run that ends by a signal or with a non-zero code fails the test.
//! `CHATSTORE_SLOW=1` makes it 2,000 runs.

#![cfg(feature = "postgres")]

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use chatstore::{ChatStore, NewMessage, Page, UserId};
use diesel::{Connection, RunQueryDsl};

use super::{child_env, slow, ChildProcess};
use crate::support::{Kind, TestDb};

/// What a program does between opening the store and returning from main.
const SCENARIOS: &[&str] = &["open", "write", "read", "two-threads", "exit-alive"];

/// How the program's URL asks for TLS: `sslmode=require`, or nothing (libpq's default, `prefer`,
/// which takes TLS when the server offers it).
const MODES: &[&str] = &["require", "prefer"];

/// Programs running at once.
const AT_ONCE: usize = 4;

#[test]
fn postgres_short_lived_programs_over_tls_exit_cleanly() {
    let runs = if slow() { 2000 } else { 500 };
    let db = TestDb::new(Kind::Postgres);
    assert_server_offers_tls(&db.url);
    // Migrated once here, so that every program opens an up-to-date database, as most do.
    let store = db.open();
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    thread::scope(|scope| {
        for _ in 0..AT_ONCE {
            scope.spawn(|| loop {
                let run = next.fetch_add(1, Ordering::Relaxed);
                if run >= runs {
                    break;
                }
                let scenario = SCENARIOS[run % SCENARIOS.len()];
                let mode = MODES[(run / SCENARIOS.len()) % MODES.len()];
                let url = match mode {
                    "require" => with_sslmode(&db.url, "require"),
                    _ => db.url.clone(),
                };
                let (status, stderr) = run_program(&url, scenario);
                if !status.success() {
                    failures.lock().unwrap().push((
                        format!("{scenario}, sslmode {mode}"),
                        format!("{status}\n{stderr}"),
                    ));
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let failures = failures.into_inner().unwrap();
    if let Some((first, output)) = failures.first() {
        let mut by_kind = std::collections::BTreeMap::<&str, usize>::new();
        for (kind, _) in &failures {
            *by_kind.entry(kind).or_default() += 1;
        }
        panic!(
            "{} of {runs} short-lived programs ended abnormally (in {elapsed:.1?}): {by_kind:?}; \
             the first ({first}): {output}",
            failures.len()
        );
    }
    // The programs did what they were told: one conversation per "write" and "exit-alive", two per
    // "two-threads", one message per "write".
    let per_kind = |name: &str| {
        (0..runs)
            .filter(|run| SCENARIOS[run % SCENARIOS.len()] == name)
            .count() as u64
    };
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.conversations, stats.messages),
        (
            per_kind("write") + 2 * per_kind("two-threads") + per_kind("exit-alive"),
            per_kind("write")
        )
    );
    eprintln!("{runs} short-lived programs over TLS, none crashed, in {elapsed:.1?}");
}

/// Fails, saying how to turn TLS on, unless the server takes `sslmode=require` connections and
/// libpq's default (`prefer`) uses TLS there too. Without TLS the programs would not exercise what
/// crashed, and a pass would prove nothing.
fn assert_server_offers_tls(url: &str) {
    #[derive(diesel::QueryableByName)]
    struct Ssl {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        ssl: bool,
    }
    let how =
        "turn TLS on with a certificate (`openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
               -subj /CN=localhost -keyout server.key -out server.crt` in the data directory, key \
               mode 0600 owned by postgres), then `ALTER SYSTEM SET ssl = on; ALTER SYSTEM SET \
               ssl_cert_file = 'server.crt'; ALTER SYSTEM SET ssl_key_file = 'server.key'; SELECT \
               pg_reload_conf();` (.ci/run does this)";
    for url in [with_sslmode(url, "require"), url.to_owned()] {
        let mut conn = diesel::pg::PgConnection::establish(&url).unwrap_or_else(|e| {
            panic!("the PostgreSQL server does not offer TLS, which this test needs ({e}): {how}")
        });
        let row: Ssl =
            diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .get_result(&mut conn)
                .expect("pg_stat_ssl");
        assert!(
            row.ssl,
            "a connection to {url} does not use TLS, which this test needs: {how}"
        );
    }
}

/// `url` with libpq's `sslmode` set to `mode` (replacing one the URL has).
fn with_sslmode(url: &str, mode: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("sslmode="))
        .collect();
    let sslmode = format!("sslmode={mode}");
    params.push(&sslmode);
    format!("{base}?{}", params.join("&"))
}

/// Runs one program to its end (a minute at most) and returns how it ended, with its output.
fn run_program(url: &str, scenario: &str) -> (std::process::ExitStatus, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let child = Command::new(exe)
        .args([
            "hardening::exit::child_short_lived_program",
            "--exact",
            "--ignored",
            "--nocapture",
            "--quiet",
        ])
        .env("CHATSTORE_CHILD_URL", url)
        .env("CHATSTORE_CHILD_SCENARIO", scenario)
        // libpq's own settings would override what the URL leaves open.
        .env_remove("PGSSLMODE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a program");
    let mut child = ChildProcess(child);
    let readers = [
        Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped stderr")),
    ]
    .map(|mut pipe| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the program's status") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a short-lived program ({scenario}) ran past a minute"
        );
        thread::sleep(Duration::from_millis(2));
    };
    let output: Vec<String> = readers
        .map(|reader| reader.join().unwrap_or_default())
        .into();
    (status, output.join("\n"))
}

/// The program's side: opens the store at `CHATSTORE_CHILD_URL`, does what
/// `CHATSTORE_CHILD_SCENARIO` says, and returns (or, for "exit-alive", exits with the store still
/// open). Any error fails it.
#[test]
#[ignore = "a short-lived program of the exit test, started by it"]
fn child_short_lived_program() {
    let (Some(url), Some(scenario)) = (
        child_env("CHATSTORE_CHILD_URL"),
        child_env("CHATSTORE_CHILD_SCENARIO"),
    ) else {
        return;
    };
    let store = ChatStore::open(&url).unwrap();
    let user = UserId::new("short-lived").unwrap();
    match scenario.as_str() {
        "open" => {}
        "write" => {
            let conv = store.create_conversation(&user, None).unwrap();
            store
                .append_message(&user, conv.id, NewMessage::user("hello"))
                .unwrap();
        }
        "read" => {
            store.list_conversations(&user, Page::first(10)).unwrap();
        }
        // Each thread joined by its handle: the scope's own wait ends when a thread's closure has
        // returned, before its thread-local destructors run, and OpenSSL's per-thread cleanup
        // among them then raced with the main thread's exit handlers (a SIGSEGV in libcrypto, 1
        // run in 500 in CI, in this scenario only). `join` waits for the thread to end.
        "two-threads" => thread::scope(|scope| {
            let threads: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| store.create_conversation(&user, None).unwrap()))
                .collect();
            for thread in threads {
                thread.join().expect("a thread of the program");
            }
        }),
        "exit-alive" => {
            store.create_conversation(&user, None).unwrap();
            // No destructor runs: the store's connections are still open at exit.
            std::process::exit(0);
        }
        other => panic!("unknown scenario {other:?}"),
    }
}
