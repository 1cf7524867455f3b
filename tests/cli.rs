//! The `chatstore` admin binary (feature `cli`), run as a process against a SQLite file and, with
//! their features, a PostgreSQL and a MySQL database of its own: exit codes, output, and an export
//! that survives an import into another database line for line.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use chatstore::{ChatStore, NewMessage, SearchQuery};
use serde_json::{json, Value};
use support::{backend_tests, user, Kind, TestDb};

// Each behaviour needs a database that outlives a process (in-memory SQLite does not).
backend_tests! {
    every: [],
    persistent: [
        migrate_then_verify_succeed,
        verify_names_a_dropped_index_and_exits_1,
        stats_count_in_text_and_json,
        export_import_export_gives_identical_lines,
        a_malformed_or_refused_import_names_its_line_and_writes_nothing_of_it,
        delete_user_is_refused_without_yes,
        an_export_that_cannot_be_renamed_into_place_leaves_no_partial_file,
        an_export_the_store_fails_leaves_no_partial_file,
        an_exported_file_is_readable_by_its_owner_only,
    ],
}

/// What a run of the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(output: Output) -> Run {
        let run = Run {
            code: output.status.code().unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                panic!(
                    "killed by signal {:?}\nstderr:\n{}",
                    output.status.signal(),
                    String::from_utf8_lossy(&output.stderr)
                )
            }),
            stdout: String::from_utf8(output.stdout).expect("UTF-8 output"),
            stderr: String::from_utf8(output.stderr).expect("UTF-8 errors"),
        };
        // Whatever happened, never a panic.
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        run
    }

    fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `chatstore --database-url URL ARGS…`, with `stdin` as its standard input.
fn chatstore_with_input(url: &str, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chatstore"))
        .arg("--database-url")
        .arg(url)
        .args(args)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chatstore");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write stdin");
    drop(input);
    Run::of(child.wait_with_output().expect("wait for chatstore"))
}

fn chatstore(url: &str, args: &[&str]) -> Run {
    chatstore_with_input(url, args, b"")
}

/// Alice: three conversations (one of 1,234 messages, in batches at different times; metadata;
/// text without spaces; one empty), Bob: one.
fn seed(db: &TestDb) -> ChatStore {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let groceries = store
        .create_conversation(&alice, Some("Groceries"))
        .unwrap()
        .id;
    let call = json!({"tool_calls": [{"id": "call_1", "name": "add_todo"}], "qty": 0.1});
    store
        .append_messages(
            &alice,
            groceries,
            &[
                NewMessage::user("Add oat milk\nand \"bread\""),
                NewMessage::assistant("").with_metadata(&call),
                NewMessage::tool("ok").with_metadata(json!({"tool_call_id": "call_1"})),
            ],
        )
        .unwrap();
    store
        .append_message(&alice, groceries, NewMessage::user("東京で会いましょう"))
        .unwrap();
    let long = store.create_conversation(&alice, None).unwrap().id;
    let texts: Vec<String> = (1..=1234).map(|i| format!("line {i}")).collect();
    for chunk in texts.chunks(500) {
        let batch: Vec<NewMessage> = chunk.iter().map(NewMessage::user).collect();
        store.append_messages(&alice, long, &batch).unwrap();
    }
    store.create_conversation(&alice, Some("empty")).unwrap();
    let bobs = store.create_conversation(&bob, None).unwrap().id;
    store
        .append_message(&bob, bobs, NewMessage::user("hello"))
        .unwrap();
    store
}

fn stats(url: &str) -> Value {
    let run = chatstore(url, &["stats", "--json"]).expect(0);
    serde_json::from_str(&run.stdout).unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn migrate_then_verify_succeed(db: &TestDb) {
    let first = chatstore(&db.url, &["migrate"]).expect(0);
    assert_eq!(
        first.stdout.matches("applied migration").count(),
        4,
        "{}",
        first.stdout
    );
    let again = chatstore(&db.url, &["migrate"]).expect(0);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    let verified = chatstore(&db.url, &["verify"]).expect(0);
    assert!(!verified.stdout.contains("MISSING"), "{}", verified.stdout);
    assert!(verified
        .stdout
        .contains("ok      index conversations_user_updated"));
    assert_eq!(verified.stderr, "");
}

fn verify_names_a_dropped_index_and_exits_1(db: &TestDb) {
    chatstore(&db.url, &["migrate"]).expect(0);
    let on_table = if db.kind == Kind::Mysql {
        " ON conversations"
    } else {
        ""
    };
    db.execute(&format!("DROP INDEX conversations_user_updated{on_table}"))
        .unwrap();
    let run = chatstore(&db.url, &["verify"]).expect(1);
    assert!(
        run.stdout
            .contains("MISSING index conversations_user_updated"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.matches("MISSING").count(), 1);
    assert_eq!(run.stderr, "error: 1 schema object(s) missing\n");
}

/// MySQL: `verify` after a crash says that opening completed a half-applied migration (the
/// search migration's first statement had taken effect), then verifies the completed schema.
#[cfg(feature = "mysql")]
#[test]
fn verify_says_when_opening_completed_a_half_applied_migration() {
    let db = TestDb::new(Kind::Mysql);
    chatstore(&db.url, &["migrate"]).expect(0);
    // Back to before the search index (and the words migration after it).
    db.revert_newest_migrations(2);
    db.execute(
        "ALTER TABLE messages ADD COLUMN search_text \
         LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL",
    )
    .unwrap();
    let run = chatstore(&db.url, &["verify"]).expect(0);
    assert!(!run.stdout.contains("MISSING"), "{}", run.stdout);
    assert_eq!(
        run.stderr,
        "note: opening the store applied 2 pending migration(s): 20261125000003, 20261202000004\n\
         note: migration 20261125000003 had been left half applied by an interrupted run; \
         opening the store completed it\n"
    );
}

fn stats_count_in_text_and_json(db: &TestDb) {
    let empty = chatstore(&db.url, &["stats"]).expect(0);
    assert!(
        empty.stderr.contains("applied 4 pending migration(s)"),
        "{}",
        empty.stderr
    );
    seed(db);
    let text = chatstore(&db.url, &["stats"]).expect(0);
    assert_eq!(
        text.stdout,
        "users          2\nconversations  4\nmessages       1239\n"
    );
    assert_eq!(text.stderr, "");
    assert_eq!(
        stats(&db.url),
        json!({"users": 2, "conversations": 4, "messages": 1239})
    );
}

fn export_import_export_gives_identical_lines(db: &TestDb) {
    seed(db);
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("alice.jsonl");
    let first_arg = first.to_str().unwrap();
    let run = chatstore(
        &db.url,
        &["export", "--user", "alice", "--output", first_arg],
    )
    .expect(0);
    // Only the summary: the progress bar stays hidden when standard error is not a terminal.
    assert_eq!(run.stderr, "exported 3 conversations, 1238 messages\n");
    assert_eq!(run.stdout, "");
    assert!(!dir.path().join("alice.jsonl.partial").exists());
    let exported = read(&first);
    assert_eq!(exported.lines().count(), 3 + 1238);
    let records: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0]["type"], "conversation");
    assert_eq!(records[0]["user_id"], "alice");
    assert!(records
        .iter()
        .all(|r| r["type"] == "conversation" || r["type"] == "message"));
    // The same lines on standard output.
    let to_stdout = chatstore(&db.url, &["export", "--user", "alice"]).expect(0);
    assert_eq!(to_stdout.stdout, exported);

    // Into another database from the file, and back out: the same lines.
    let copy = TestDb::new(db.kind);
    let run = chatstore(
        &copy.url,
        &["import", "--user", "alice", "--input", first_arg],
    )
    .expect(0);
    assert_eq!(run.stdout, "imported 3 conversations, 1238 messages\n");
    let second = dir.path().join("copy.jsonl");
    export_alice(&copy.url, &second, 0);
    assert_eq!(read(&second), exported);
    assert_eq!(
        stats(&copy.url),
        json!({"users": 1, "conversations": 3, "messages": 1238})
    );
    let found = copy
        .open()
        .search_messages(&user("alice"), &SearchQuery::new("東京"))
        .unwrap();
    assert_eq!(found.hits.len(), 1);

    // From standard input into a third.
    let third = TestDb::new(db.kind);
    let run = chatstore_with_input(
        &third.url,
        &["import", "--user", "alice"],
        exported.as_bytes(),
    )
    .expect(0);
    assert_eq!(run.stdout, "imported 3 conversations, 1238 messages\n");
    let again = chatstore(&third.url, &["export", "--user", "alice"]).expect(0);
    assert_eq!(again.stdout, exported);

    // A second import of the same file is refused at its first conversation, unless told to
    // skip what is stored.
    let refused = chatstore(
        &third.url,
        &["import", "--user", "alice", "--input", first_arg],
    )
    .expect(1);
    assert!(
        refused.stderr.contains("(line 1) was not imported"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("already exists"),
        "{}",
        refused.stderr
    );
    let skipped = chatstore(
        &third.url,
        &[
            "import",
            "--user",
            "alice",
            "--input",
            first_arg,
            "--skip-existing",
        ],
    );
    assert_eq!(
        skipped.expect(0).stdout,
        "imported 0 conversations, 0 messages; skipped 3 already stored\n"
    );
}

fn a_malformed_or_refused_import_names_its_line_and_writes_nothing_of_it(db: &TestDb) {
    seed(db);
    let exported = chatstore(&db.url, &["export", "--user", "alice"])
        .expect(0)
        .stdout;
    let lines: Vec<&str> = exported.lines().collect();
    let dir = tempfile::tempdir().unwrap();
    let with = |name: &str, line: usize, text: &str| {
        let mut changed = lines.clone();
        changed[line - 1] = text;
        let path = dir.path().join(name);
        std::fs::write(&path, changed.join("\n") + "\n").unwrap();
        path.to_str().unwrap().to_owned()
    };
    // Line 1 is the first conversation's record, lines 2-5 its messages; the second starts here.
    let second = lines
        .iter()
        .position(|l| l.starts_with("{\"type\":\"conversation\"") && *l != lines[0])
        .unwrap()
        + 1;
    assert_eq!(second, 6);
    let target = TestDb::new(db.kind);
    let empty = stats(&target.url);
    assert_eq!(
        empty,
        json!({"users": 0, "conversations": 0, "messages": 0})
    );

    // In the first conversation: not JSON, not a record, a message before any conversation, a
    // message of the second conversation among the first's.
    let cases = [
        (
            "truncated.jsonl",
            3,
            &lines[2][..20],
            "line 3, column 20: EOF",
        ),
        ("garbage.jsonl", 3, "{\"type\": \"user\"}", "line 3, column"),
        (
            "before.jsonl",
            1,
            lines[2],
            "line 1: a message before any conversation",
        ),
        (
            "stranger.jsonl",
            3,
            lines[second],
            "line 3: a message of conversation",
        ),
    ];
    for (name, line, text, said) in cases {
        let path = with(name, line, text);
        let run = chatstore(
            &target.url,
            &["import", "--user", "alice", "--input", &path],
        )
        .expect(1);
        assert!(run.stderr.contains(said), "{name}: {}", run.stderr);
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("imported 0 conversations, 0 messages before the error"),
            "{}",
            run.stderr
        );
        assert_eq!(stats(&target.url), empty, "{name}");
    }

    // Alice's data imported as another user's: refused, nothing written.
    let path = dir.path().join("alice.jsonl");
    std::fs::write(&path, &exported).unwrap();
    let run = chatstore(
        &target.url,
        &["import", "--user", "bob", "--input", path.to_str().unwrap()],
    )
    .expect(1);
    assert!(
        run.stderr.contains("belongs to another user"),
        "{}",
        run.stderr
    );
    assert_eq!(stats(&target.url), empty);

    // Bytes that are not text.
    let mut bytes = exported.clone().into_bytes();
    let third_line = lines[0].len() + 1 + lines[1].len() + 1;
    bytes[third_line + 5] = 0xff;
    let path = dir.path().join("binary.jsonl");
    std::fs::write(&path, bytes).unwrap();
    let run = chatstore(
        &target.url,
        &[
            "import",
            "--user",
            "alice",
            "--input",
            path.to_str().unwrap(),
        ],
    )
    .expect(1);
    assert!(run.stderr.contains("line 3: not UTF-8"), "{}", run.stderr);
    assert_eq!(stats(&target.url), empty);

    // A message whose seq leaves a gap: the store refuses its conversation (line 1).
    let mut gap: Value = serde_json::from_str(lines[3]).unwrap();
    gap["seq"] = json!(7);
    let gap = gap.to_string();
    let path = with("gap.jsonl", 4, &gap);
    let run = chatstore(
        &target.url,
        &["import", "--user", "alice", "--input", &path],
    )
    .expect(1);
    assert!(
        run.stderr
            .contains("(line 1) was not imported: invalid import"),
        "{}",
        run.stderr
    );
    assert_eq!(stats(&target.url), empty);

    // A bad line in the second conversation: the first stays imported, the second is not.
    let path = with("late.jsonl", second + 1, "not json");
    let run = chatstore(
        &target.url,
        &["import", "--user", "alice", "--input", &path],
    )
    .expect(1);
    assert!(
        run.stderr.contains(&format!("line {}", second + 1)),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("imported 1 conversations, 4 messages before the error"),
        "{}",
        run.stderr
    );
    assert_eq!(
        stats(&target.url),
        json!({"users": 1, "conversations": 1, "messages": 4})
    );
}

/// `chatstore export --user alice --output OUTPUT`, which must exit with `code`.
fn export_alice(url: &str, output: &Path, code: i32) -> Run {
    let output = output.to_str().unwrap();
    chatstore(url, &["export", "--user", "alice", "--output", output]).expect(code)
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn an_export_that_cannot_be_renamed_into_place_leaves_no_partial_file(db: &TestDb) {
    seed(db);
    let dir = tempfile::tempdir().unwrap();
    // The whole export is written to out.partial; renaming it onto a directory fails.
    let output = dir.path().join("out");
    std::fs::create_dir(&output).unwrap();
    let run = export_alice(&db.url, &output, 3);
    assert!(
        run.stderr.starts_with("error: renaming to "),
        "{}",
        run.stderr
    );
    assert_eq!(names(dir.path()), ["out"], "{}", run.stderr);
    assert_eq!(names(&output), Vec::<String>::new());
}

fn an_export_the_store_fails_leaves_no_partial_file(db: &TestDb) {
    seed(db);
    // The conversations are read, then reading their messages fails.
    db.execute("ALTER TABLE messages RENAME TO messages_elsewhere")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("alice.jsonl");
    let run = export_alice(&db.url, &output, 3);
    assert!(
        run.stderr.starts_with("error: reading the user's data"),
        "{}",
        run.stderr
    );
    assert_eq!(names(dir.path()), Vec::<String>::new(), "{}", run.stderr);

    // Nor when the file cannot be created at all.
    let nowhere = dir.path().join("missing").join("alice.jsonl");
    let run = export_alice(&db.url, &nowhere, 3);
    assert!(run.stderr.starts_with("error: creating "), "{}", run.stderr);
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

fn an_exported_file_is_readable_by_its_owner_only(db: &TestDb) {
    use std::os::unix::fs::PermissionsExt;
    seed(db);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("alice.jsonl");
    // A partial file left behind by someone else, readable by all: replaced, not reused.
    let stale = dir.path().join("alice.jsonl.partial");
    std::fs::write(&stale, "stale").unwrap();
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o644)).unwrap();
    export_alice(&db.url, &output, 0);
    assert_eq!(names(dir.path()), ["alice.jsonl"]);
    let mode = std::fs::metadata(&output).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    assert_eq!(read(&output).lines().count(), 3 + 1238);
}

fn delete_user_is_refused_without_yes(db: &TestDb) {
    seed(db);
    let refused = chatstore(&db.url, &["delete-user", "--user", "alice"]).expect(1);
    assert!(
        refused.stderr.contains("without --yes"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        stats(&db.url),
        json!({"users": 2, "conversations": 4, "messages": 1239})
    );
    let deleted = chatstore(&db.url, &["delete-user", "--user", "alice", "--yes"]).expect(0);
    assert_eq!(
        deleted.stdout,
        "deleted 3 conversations, 1238 messages of user \"alice\"\n"
    );
    assert_eq!(
        stats(&db.url),
        json!({"users": 1, "conversations": 1, "messages": 1})
    );
}

#[test]
fn a_bad_url_is_a_clear_error_with_exit_code_3() {
    let run = chatstore("oracle://app:secret@db/chat", &["stats"]).expect(3);
    assert!(
        run.stderr
            .starts_with("error: opening the database: unsupported database url"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("secret"), "{}", run.stderr);
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "no backtrace: {}",
        run.stderr
    );
    #[cfg(feature = "postgres")]
    {
        let run = chatstore("postgres://postgres@127.0.0.1:1/none", &["verify"]).expect(3);
        assert!(run.stderr.contains("could not connect"), "{}", run.stderr);
    }
    #[cfg(feature = "sqlite")]
    {
        let run = chatstore("sqlite:///nonexistent-dir/x/chat.db", &["migrate"]).expect(3);
        assert!(
            run.stderr.starts_with("error: opening the database"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn usage_errors_exit_2_and_the_url_may_come_from_the_environment() {
    let bin = env!("CARGO_BIN_EXE_chatstore");
    let run = Run::of(
        Command::new(bin)
            .arg("stats")
            .env_remove("DATABASE_URL")
            .output()
            .unwrap(),
    )
    .expect(2);
    assert!(run.stderr.contains("DATABASE_URL"), "{}", run.stderr);
    chatstore("oracle://x", &["export"]).expect(2);
    chatstore("oracle://x", &["export", "--user", ""]).expect(2);
    chatstore("oracle://x", &["frobnicate"]).expect(2);
    let help = Run::of(Command::new(bin).arg("--help").output().unwrap()).expect(0);
    assert!(help.stdout.contains("Exit codes:"), "{}", help.stdout);

    let from_env = Run::of(
        Command::new(bin)
            .arg("stats")
            .env("DATABASE_URL", "oracle://x")
            .output()
            .unwrap(),
    );
    assert!(from_env
        .expect(3)
        .stderr
        .contains("unknown scheme \"oracle\""));
}

// Interrupting an export: the test holds a lock that makes the export's first read wait, so the
// signal arrives while the partial file exists and before anything is renamed, every time. The
// servers let one connection keep another from reading; a SQLite reader in WAL mode cannot be
// kept waiting without also keeping the store from opening.
#[cfg(feature = "postgres")]
#[test]
fn postgres_an_interrupted_export_leaves_no_partial_file() {
    support::with_db(Kind::Postgres, an_interrupted_export_leaves_no_partial_file);
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_an_interrupted_export_leaves_no_partial_file() {
    support::with_db(Kind::Mysql, an_interrupted_export_leaves_no_partial_file);
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn an_interrupted_export_leaves_no_partial_file(db: &TestDb) {
    use std::os::unix::process::ExitStatusExt;
    seed(db);
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("alice.jsonl");
    let partial = dir.path().join("alice.jsonl.partial");
    for signal in ["INT", "TERM", "HUP"] {
        let lock = db.hold(match db.kind {
            Kind::Postgres => "BEGIN; LOCK TABLE conversations, messages IN ACCESS EXCLUSIVE MODE",
            _ => "LOCK TABLES conversations WRITE, messages WRITE",
        });
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatstore"))
            .args(["--database-url", &db.url, "export", "--user", "alice"])
            .arg("--output")
            .arg(&output)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chatstore");
        // The partial file exists once the store is open and the export has begun; its first
        // read then waits for the lock.
        let start = std::time::Instant::now();
        while !partial.exists() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the export ended before writing"
            );
            assert!(start.elapsed().as_secs() < 60, "no partial file after 60 s");
            std::thread::yield_now();
        }
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        drop(lock);
        // Dead of the signal, as an uncaught one would leave it, and nothing left behind.
        let expected = match signal {
            "INT" => 2,
            "TERM" => 15,
            _ => 1,
        };
        assert_eq!(status.signal(), Some(expected), "SIG{signal}: {status:?}");
        assert_eq!(names(dir.path()), Vec::<String>::new(), "SIG{signal}");
    }
}
