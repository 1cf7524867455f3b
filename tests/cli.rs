//! The `chatstore` admin binary (feature `cli`), run as a process against a SQLite file and, with
//! their features, a PostgreSQL and a MySQL database of its own: exit codes, output, and an export
//! that survives an import into another database line for line.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use chatstore::{
    Attachment, ChatStore, NewMessage, Page, Part, Reference, SearchQuery, Tag, Usage, Window,
};
use serde_json::{json, Value};
use support::{backend_tests, user, Fixture, Kind, TestDb};

// Each behaviour needs a database that outlives a process (in-memory SQLite does not).
backend_tests! {
    every: [],
    persistent: [
        migrate_then_verify_succeed,
        verify_names_a_dropped_index_and_exits_1,
        stats_count_in_text_and_json,
        index_counts_what_waited_in_text_and_json,
        export_import_export_gives_identical_lines,
        a_malformed_or_refused_import_names_its_line_and_writes_nothing_of_it,
        delete_user_is_refused_without_yes,
        purge_counts_with_dry_run_and_deletes_with_yes,
        an_export_that_cannot_be_renamed_into_place_leaves_no_partial_file,
        an_export_the_store_fails_leaves_no_partial_file,
        an_exported_file_is_readable_by_its_owner_only,
        commands_but_migrate_refuse_a_database_without_chatstores_schema_and_create_no_table,
        verify_reports_a_pending_migration_and_nothing_changes_it_but_migrate,
        reset_is_refused_without_yes_and_drops_chatstores_tables_but_not_a_hosts,
        json_output_of_every_command_has_the_documented_fields,
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
/// token usage; text without spaces; one empty), Bob: one.
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
                NewMessage::assistant("")
                    .with_metadata(&call)
                    .with_usage(Usage::new(812, 24)),
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

/// A new database of `kind` with chatstore's schema, made by `chatstore migrate`.
fn migrated(kind: Kind) -> TestDb {
    let db = TestDb::new(kind);
    chatstore(&db.url, &["migrate"]).expect(0);
    db
}

fn stats(url: &str) -> Value {
    let run = chatstore(url, &["stats", "--json"]).expect(0);
    serde_json::from_str(&run.stdout).unwrap()
}

/// The one JSON object `text` holds, on one line.
fn json_line(text: &str) -> Value {
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    let value: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(value.is_object(), "{text}");
    value
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn migrate_then_verify_succeed(db: &TestDb) {
    let first = chatstore(&db.url, &["migrate"]).expect(0);
    assert_eq!(
        first.stdout.matches("applied migration").count(),
        12,
        "{}",
        first.stdout
    );
    let again = chatstore(&db.url, &["migrate"]).expect(0);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    let verified = chatstore(&db.url, &["verify"]).expect(0);
    assert!(!verified.stdout.contains("MISSING"), "{}", verified.stdout);
    assert!(verified
        .stdout
        .contains("ok      index chatstore_conversations_user_rank"));
    assert_eq!(verified.stderr, "");
}

fn verify_names_a_dropped_index_and_exits_1(db: &TestDb) {
    chatstore(&db.url, &["migrate"]).expect(0);
    let on_table = if db.kind == Kind::Mysql {
        " ON chatstore_conversations"
    } else {
        ""
    };
    db.execute(&format!(
        "DROP INDEX chatstore_conversations_user_rank{on_table}"
    ))
    .unwrap();
    let run = chatstore(&db.url, &["verify"]).expect(1);
    assert!(
        run.stdout
            .contains("MISSING index chatstore_conversations_user_rank"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.matches("MISSING").count(), 1);
    assert_eq!(run.stderr, "error: 1 schema object(s) missing\n");
}

/// MySQL, after a crash left the search migration half applied (its first statement had taken
/// effect): `verify` names both pending migrations and completes nothing; `migrate` completes the
/// half-applied one and says so, in text and in JSON.
#[cfg(feature = "mysql")]
#[test]
fn migrate_says_when_it_completed_a_half_applied_migration() {
    let db = crashed_in_the_search_migration();
    let versions = db.versions_in("chatstore_schema_migrations");
    let verified = chatstore(&db.url, &["verify"]).expect(4);
    assert!(
        verified.stdout.ends_with(
            "pending migration 20261125000003\npending migration 20261202000004\n\
                 pending migration 20261203000005\npending migration 20261203000006\n\
                 pending migration 20261203000007\npending migration 20261203000008\n\
                 pending migration 20261204000009\npending migration 20261204000010\n\
                 pending migration 20261204000011\npending migration 20261204000012\n"
        ),
        "{}",
        verified.stdout
    );
    assert_eq!(db.versions_in("chatstore_schema_migrations"), versions);

    let run = chatstore(&db.url, &["migrate"]).expect(0);
    assert_eq!(
        run.stdout,
        "applied migration 20261125000003\napplied migration 20261202000004\n\
         applied migration 20261203000005\napplied migration 20261203000006\n\
         applied migration 20261203000007\napplied migration 20261203000008\n\
         applied migration 20261204000009\napplied migration 20261204000010\n\
         applied migration 20261204000011\napplied migration 20261204000012\n"
    );
    assert_eq!(
        run.stderr,
        "note: migration 20261125000003 had been left half applied by an interrupted run; \
         this run completed it\n"
    );
    chatstore(&db.url, &["verify"]).expect(0);

    // The same crash, migrated with --json: the note is in the object, not on standard error.
    let db = crashed_in_the_search_migration();
    let run = chatstore(&db.url, &["migrate", "--json"]).expect(0);
    assert_eq!(
        json_line(&run.stdout),
        json!({
            "applied": [
                "20261125000003",
                "20261202000004",
                "20261203000005",
                "20261203000006",
                "20261203000007",
                "20261203000008",
                "20261204000009",
                "20261204000010",
                "20261204000011",
                "20261204000012"
            ],
            "resumed": ["20261125000003"]
        })
    );
    assert_eq!(run.stderr, "");
}

/// A MySQL database migrated, then taken back to before the search migration (and the words
/// migrations after it), with that migration's first statement in effect, as a crash leaves it.
#[cfg(feature = "mysql")]
fn crashed_in_the_search_migration() -> TestDb {
    let db = TestDb::new(Kind::Mysql);
    chatstore(&db.url, &["migrate"]).expect(0);
    db.revert_newest_migrations(10);
    db.execute(
        "ALTER TABLE chatstore_messages ADD COLUMN search_text \
         LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL",
    )
    .unwrap();
    db
}

fn stats_count_in_text_and_json(db: &TestDb) {
    chatstore(&db.url, &["migrate"]).expect(0);
    let empty = chatstore(&db.url, &["stats"]).expect(0);
    assert_eq!(
        empty.stdout,
        "users          0\nconversations  0\nmessages       0\n"
    );
    assert_eq!(empty.stderr, "");
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

fn index_counts_what_waited_in_text_and_json(db: &TestDb) {
    let store = seed(db);
    let run = chatstore(&db.url, &["index"]).expect(0);
    assert_eq!(run.stdout, "indexed 1239 message(s)\n");
    assert_eq!(run.stderr, "");
    let run = chatstore(&db.url, &["index", "--json"]).expect(0);
    assert_eq!(json_line(&run.stdout), json!({"indexed": 0}));
    // What the tool indexed is found, and nothing is left for a search to do.
    let found = store
        .search_messages(&user("alice"), &chatstore::SearchQuery::new("oat"))
        .unwrap();
    assert_eq!(found.hits.len(), 1);
    assert_eq!(store.index_pending().unwrap(), 0);
}

fn export_import_export_gives_identical_lines(db: &TestDb) {
    let store = seed(db);
    // A regenerated reply: the export holds both versions, with the conversation's two branches.
    let alice = user("alice");
    let asked = store
        .search_messages(&alice, &SearchQuery::new("oat"))
        .unwrap()
        .hits[0]
        .message
        .clone();
    let reply = &store
        .messages(&alice, asked.conversation_id, Window::All)
        .unwrap()
        .messages[1];
    store
        .append_sibling(
            &alice,
            asked.conversation_id,
            reply.id,
            &[NewMessage::assistant("Added oat milk.")
                .with_usage(Usage::new(830, 6).with_total(900))
                .with_parts(vec![
                    Part::text("Receipt: kiwifruit"),
                    Part::File(
                        Attachment::new(Reference::key("receipts/7"), "application/pdf", 2048)
                            .with_name("receipt.pdf"),
                    ),
                ])],
        )
        .unwrap();
    // Pinned and archived conversations keep their places.
    store
        .pin_conversation(&alice, asked.conversation_id)
        .unwrap();
    let untitled = store
        .list_conversations(&alice, Page::first(10))
        .unwrap()
        .conversations
        .into_iter()
        .find(|c| c.title.is_none())
        .unwrap();
    store.archive_conversation(&alice, untitled.id).unwrap();
    // So do tags (the archived one's too) and metadata.
    let tags = [Tag::new("home").unwrap(), Tag::new("日本").unwrap()];
    store
        .set_conversation_tags(&alice, asked.conversation_id, &tags)
        .unwrap();
    store
        .tag_conversation(&alice, untitled.id, &tags[0])
        .unwrap();
    store
        .set_conversation_metadata(
            &alice,
            untitled.id,
            Some(&json!({ "project": { "id": 42, "name": "Küche" } })),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("alice.jsonl");
    let first_arg = first.to_str().unwrap();
    let run = chatstore(
        &db.url,
        &["export", "--user", "alice", "--output", first_arg],
    )
    .expect(0);
    // Only the summary, on standard output like every result: the progress bar stays hidden
    // when standard error is not a terminal.
    assert_eq!(run.stdout, "exported 3 conversations, 1239 messages\n");
    assert_eq!(run.stderr, "");
    assert!(!dir.path().join("alice.jsonl.partial").exists());
    let exported = read(&first);
    assert_eq!(exported.lines().count(), 3 + 2 + 1239);
    let records: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records[0]["type"], "conversation");
    assert_eq!(records[0]["user_id"], "alice");
    assert!(records
        .iter()
        .all(|r| ["conversation", "branch", "message"].contains(&r["type"].as_str().unwrap())));
    assert_eq!(records.iter().filter(|r| r["type"] == "branch").count(), 2);
    for flag in ["pinned", "archived"] {
        assert_eq!(
            records.iter().filter(|r| r[flag] == true).count(),
            1,
            "{flag}"
        );
    }
    assert_eq!(records.iter().filter(|r| r["tags"].is_array()).count(), 2);
    assert!(records.iter().any(|r| r["tags"] == json!(["home", "日本"])));
    assert!(records
        .iter()
        .any(|r| r["metadata"]["project"]["name"] == "Küche"));
    // And token usage: on each message that carries some, and summed on its conversation (both
    // branches' replies).
    assert_eq!(records.iter().filter(|r| r["usage"].is_object()).count(), 3);
    assert!(records.iter().any(|r| r["type"] == "conversation"
        && r["usage"] == json!({"input_tokens": 1642, "output_tokens": 30, "total_tokens": 1736})));
    // And parts, in order.
    let parted: Vec<&Value> = records.iter().filter(|r| r["parts"].is_array()).collect();
    assert_eq!(parted.len(), 1);
    assert_eq!(parted[0]["parts"][0]["text"], "Receipt: kiwifruit");
    assert_eq!(parted[0]["parts"][1]["name"], "receipt.pdf");
    // The same lines on standard output, and the summary beside them on standard error.
    let to_stdout = chatstore(&db.url, &["export", "--user", "alice"]).expect(0);
    assert_eq!(to_stdout.stdout, exported);
    assert_eq!(
        to_stdout.stderr,
        "exported 3 conversations, 1239 messages\n"
    );

    // Into another database from the file, and back out: the same lines.
    let copy = migrated(db.kind);
    let run = chatstore(
        &copy.url,
        &["import", "--user", "alice", "--input", first_arg],
    )
    .expect(0);
    assert_eq!(run.stdout, "imported 3 conversations, 1239 messages\n");
    let second = dir.path().join("copy.jsonl");
    export_alice(&copy.url, &second, 0);
    assert_eq!(read(&second), exported);
    assert_eq!(
        stats(&copy.url),
        json!({"users": 1, "conversations": 3, "messages": 1239})
    );
    let lists = |store: &ChatStore| {
        let listed = store.list_conversations(&alice, Page::first(10)).unwrap();
        let archived = store
            .list_archived_conversations(&alice, Page::first(10))
            .unwrap();
        (listed.conversations, archived.conversations)
    };
    assert_eq!(lists(&copy.open()), lists(&store));
    assert_eq!(
        copy.open().tags(&alice).unwrap(),
        store.tags(&alice).unwrap()
    );
    assert_eq!(
        copy.open().usage(&alice).unwrap(),
        store.usage(&alice).unwrap()
    );
    let tagged = |store: &ChatStore| {
        store
            .list_conversations_tagged(&alice, &tags[0], Page::first(10))
            .unwrap()
            .conversations
    };
    assert_eq!(tagged(&copy.open()), tagged(&store));
    let found = copy
        .open()
        .search_messages(&user("alice"), &SearchQuery::new("東京"))
        .unwrap();
    assert_eq!(found.hits.len(), 1);
    let found = copy
        .open()
        .search_messages(&user("alice"), &SearchQuery::new("kiwifruit"))
        .unwrap();
    assert_eq!(found.hits.len(), 1);

    // From standard input into a third.
    let third = migrated(db.kind);
    let run = chatstore_with_input(
        &third.url,
        &["import", "--user", "alice"],
        exported.as_bytes(),
    )
    .expect(0);
    assert_eq!(run.stdout, "imported 3 conversations, 1239 messages\n");
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
    let target = migrated(db.kind);
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
    db.execute("ALTER TABLE chatstore_messages RENAME TO chatstore_messages_elsewhere")
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

/// `purge`: refused without `--yes`, counted by `--dry-run` without a change, then done, in text
/// and JSON, for one user or all; a cutoff in the future or unreadable is refused.
fn purge_counts_with_dry_run_and_deletes_with_yes(db: &TestDb) {
    seed(db);
    let seeded = stats(&db.url);
    // Everything the seed wrote is older than now; nothing older than 30 days.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let refused = chatstore(&db.url, &["purge", "--not-updated-since", &now]).expect(1);
    assert!(
        refused.stderr.contains("without --yes"),
        "{}",
        refused.stderr
    );
    let none = chatstore(&db.url, &["purge", "--not-updated-since", "30d", "--yes"]).expect(0);
    assert!(
        none.stdout
            .starts_with("deleted 0 conversations, 0 messages not updated since "),
        "{}",
        none.stdout
    );
    let dry = chatstore(
        &db.url,
        &[
            "purge",
            "--not-updated-since",
            &now,
            "--user",
            "alice",
            "--dry-run",
        ],
    )
    .expect(0);
    assert_eq!(
        dry.stdout,
        format!(
            "would delete 3 conversations, 1238 messages of user \"alice\" not updated since {now}\n"
        )
    );
    assert_eq!(stats(&db.url), seeded);
    let run = chatstore(
        &db.url,
        &[
            "purge",
            "--json",
            "--not-updated-since",
            &now,
            "--user",
            "alice",
            "--batch",
            "1",
            "--yes",
        ],
    )
    .expect(0);
    assert_eq!(
        json_line(&run.stdout),
        json!({"cutoff": now, "user": "alice", "dry_run": false, "conversations": 3, "messages": 1238})
    );
    assert_eq!(
        stats(&db.url),
        json!({"users": 1, "conversations": 1, "messages": 1})
    );
    let all = chatstore(
        &db.url,
        &["purge", "--json", "--not-updated-since", &now, "--yes"],
    )
    .expect(0);
    assert_eq!(json_line(&all.stdout)["conversations"], 1);
    assert_eq!(json_line(&all.stdout)["user"], Value::Null);
    // Refused before anything is opened or changed: the future, and what is no time.
    for bad in ["2999-01-01T00:00:00Z", "yesterday", "-5d"] {
        let run = chatstore(&db.url, &["purge", "--not-updated-since", bad, "--dry-run"]);
        assert_ne!(run.code, 0, "{bad}");
    }
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
            Kind::Postgres => "BEGIN; LOCK TABLE chatstore_conversations, chatstore_messages IN ACCESS EXCLUSIVE MODE",
            _ => "LOCK TABLES chatstore_conversations WRITE, chatstore_messages WRITE",
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

/// The commands that must not change the schema, with what makes each one do its work.
const NOT_MIGRATING: &[&[&str]] = &[
    &["verify"],
    &["stats"],
    &["index"],
    &["export", "--user", "alice"],
    &["import", "--user", "alice"],
    &["delete-user", "--user", "alice", "--yes"],
    &["purge", "--not-updated-since", "30d", "--yes"],
];

/// Runs each command but `migrate` on `db`, in text and with `--json`: each exits 4 with `said`
/// in its error, and `state` (what the database or its directory holds) stays as it was.
fn refused_by_every_command_but_migrate<T: PartialEq + std::fmt::Debug>(
    db: &TestDb,
    said: &str,
    state: impl Fn() -> T,
) {
    let before = state();
    for args in NOT_MIGRATING {
        let run = chatstore(&db.url, args).expect(4);
        assert!(
            run.stderr.starts_with("error: ") && run.stderr.contains(said),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("chatstore migrate"), "{}", run.stderr);
        assert_eq!(state(), before, "{args:?}");

        let run = chatstore(&db.url, &[*args, &["--json"]].concat()).expect(4);
        let error = json_line(&run.stderr);
        assert_eq!(keys(&error), ["code", "error", "note"], "{args:?}");
        assert_eq!(error["code"], 4);
        assert!(error["error"].as_str().unwrap().contains(said), "{error}");
        assert_eq!(state(), before, "{args:?} --json");
    }
}

/// What a host application's database holds: every table, the host's migration versions (in
/// Diesel's table) and the rows of its own `messages` table.
fn host_state(db: &TestDb) -> (Vec<String>, Vec<String>, Option<i64>) {
    (
        db.tables(),
        db.versions_in("__diesel_schema_migrations"),
        db.count_rows("messages"),
    )
}

#[cfg(feature = "sqlite")]
#[test]
fn commands_but_migrate_on_a_missing_sqlite_file_create_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let db = TestDb::existing(Kind::SqliteFile, format!("sqlite://{}", path.display()));
    let nothing = Vec::<String>::new();
    refused_by_every_command_but_migrate(&db, "no database file at", || names(dir.path()));
    let run = chatstore(&db.url, &["reset", "--yes"]).expect(4);
    assert_eq!(
        run.stderr,
        format!(
            "error: dropping chatstore's schema: no database file at {:?}\n\
             nothing was created: chatstore migrate creates the database\n",
            path.display().to_string()
        )
    );
    assert_eq!(names(dir.path()), nothing);
    // A bare path too.
    let bare = TestDb::existing(Kind::SqliteFile, path.display().to_string());
    refused_by_every_command_but_migrate(&bare, "no database file at", || names(dir.path()));
    assert_eq!(names(dir.path()), nothing);
}

fn commands_but_migrate_refuse_a_database_without_chatstores_schema_and_create_no_table(
    db: &TestDb,
) {
    match db.kind {
        // An empty file is an empty SQLite database.
        Kind::SqliteFile => {
            std::fs::File::create(db.url.trim_start_matches("sqlite://")).unwrap();
        }
        _ => {
            refused_by_every_command_but_migrate(db, "pending", || db.tables());
        }
    }
    assert_eq!(db.tables(), Vec::<String>::new());

    // Another application's database.
    db.run_diesel_migrations(Fixture::HostApp);
    let host = || host_state(db);
    refused_by_every_command_but_migrate(db, "pending", host);
    let run = chatstore(&db.url, &["verify"]).expect(4);
    let pending: Vec<&str> = run
        .stdout
        .lines()
        .map(|line| line.strip_prefix("pending migration ").unwrap())
        .collect();
    assert_eq!(pending.len(), 12, "{}", run.stdout);
    assert_eq!(
        run.stderr,
        "error: the database has no chatstore schema: 12 migration(s) pending\n\
         nothing was changed: chatstore migrate makes the schema\n"
    );
    assert!(!db.tables().iter().any(|t| t.starts_with("chatstore_")));
}

fn verify_reports_a_pending_migration_and_nothing_changes_it_but_migrate(db: &TestDb) {
    seed(db);
    let seeded = stats(&db.url);
    let newest = db.versions_in("chatstore_schema_migrations").pop().unwrap();
    db.revert_newest_migration();
    let state = || (db.tables(), db.versions_in("chatstore_schema_migrations"));
    let before = state();

    let run = chatstore(&db.url, &["verify"]).expect(4);
    assert!(
        run.stdout
            .starts_with("ok      table chatstore_conversations\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .ends_with(&format!("\npending migration {newest}\n")),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.starts_with("error: 1 migration(s) pending"),
        "{}",
        run.stderr
    );
    let report = json_line(&chatstore(&db.url, &["verify", "--json"]).expect(4).stdout);
    assert_eq!(report["complete"], false);
    assert_eq!(report["pending"], json!([newest]));
    assert!(report["items"]
        .as_array()
        .unwrap()
        .contains(&json!({"kind": "table", "name": "chatstore_messages", "present": true})));
    assert_eq!(state(), before);

    refused_by_every_command_but_migrate(db, "pending", state);
    let run = chatstore(&db.url, &["migrate"]).expect(0);
    assert_eq!(run.stdout, format!("applied migration {newest}\n"));
    chatstore(&db.url, &["verify"]).expect(0);
    // delete-user --yes and import above wrote nothing.
    assert_eq!(stats(&db.url), seeded);
}

fn reset_is_refused_without_yes_and_drops_chatstores_tables_but_not_a_hosts(db: &TestDb) {
    db.run_diesel_migrations(Fixture::HostApp);
    let host = || host_state(db);
    let hosts = host();
    seed(db);
    let seeded = stats(&db.url);
    let state = || (db.tables(), db.versions_in("chatstore_schema_migrations"));
    let before = state();
    assert!(before.0.len() > hosts.0.len(), "{before:?}");

    let refused = chatstore(&db.url, &["reset"]).expect(1);
    assert_eq!(
        refused.stderr,
        "error: refusing to drop chatstore's tables, with every user's conversations and \
         messages, without --yes\n"
    );
    assert_eq!(refused.stdout, "");
    assert_eq!(state(), before);
    assert_eq!(stats(&db.url), seeded);

    let run = chatstore(&db.url, &["reset", "--yes"]).expect(0);
    assert_eq!(
        run.stdout,
        "dropped chatstore's tables and its version table; no other table was touched\n"
    );
    assert_eq!(run.stderr, "");
    assert_eq!(host(), hosts);
    chatstore(&db.url, &["verify"]).expect(4);
    // Nothing of chatstore's is left to drop; the host's tables stay.
    chatstore(&db.url, &["reset", "--yes"]).expect(0);
    assert_eq!(host(), hosts);
    // migrate makes the schema anew, empty.
    chatstore(&db.url, &["migrate"]).expect(0);
    assert_eq!(
        stats(&db.url),
        json!({"users": 0, "conversations": 0, "messages": 0})
    );
}

fn json_output_of_every_command_has_the_documented_fields(db: &TestDb) {
    let migrate = json_line(&chatstore(&db.url, &["--json", "migrate"]).expect(0).stdout);
    assert_eq!(keys(&migrate), ["applied", "resumed"]);
    assert_eq!(migrate["applied"].as_array().unwrap().len(), 12);
    assert_eq!(migrate["resumed"], json!([]));
    let again = json_line(&chatstore(&db.url, &["migrate", "--json"]).expect(0).stdout);
    assert_eq!(again, json!({"applied": [], "resumed": []}));

    let verify = json_line(&chatstore(&db.url, &["verify", "--json"]).expect(0).stdout);
    assert_eq!(keys(&verify), ["complete", "items", "pending"]);
    assert_eq!(
        (&verify["complete"], &verify["pending"]),
        (&json!(true), &json!([]))
    );
    let items = verify["items"].as_array().unwrap();
    assert!(items.len() > 10, "{verify}");
    for item in items {
        assert_eq!(keys(item), ["kind", "name", "present"]);
        assert!(["table", "index", "constraint"].contains(&item["kind"].as_str().unwrap()));
        assert_eq!(item["present"], true);
    }

    seed(db);
    let seeded = json!({"users": 2, "conversations": 4, "messages": 1239});
    assert_eq!(stats(&db.url), seeded);
    let alice = json!({"user": "alice", "conversations": 3, "messages": 1238});

    // Export: the summary on standard output, or on standard error when the data is there.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alice.jsonl");
    let file = file.to_str().unwrap();
    let run = chatstore(
        &db.url,
        &["export", "--json", "--user", "alice", "--output", file],
    )
    .expect(0);
    assert_eq!(json_line(&run.stdout), alice);
    assert_eq!(run.stderr, "");
    let run = chatstore(&db.url, &["export", "--json", "--user", "alice"]).expect(0);
    assert_eq!(run.stdout, read(Path::new(file)));
    assert_eq!(json_line(&run.stderr), alice);

    let copy = migrated(db.kind);
    let import = ["import", "--json", "--user", "alice", "--input", file];
    let run = chatstore(&copy.url, &import).expect(0);
    let mut imported = alice.clone();
    imported["skipped"] = json!(0);
    assert_eq!(json_line(&run.stdout), imported);
    // Refused: the error object says what was imported before it.
    let run = chatstore(&copy.url, &import).expect(1);
    assert_eq!(run.stdout, "");
    let error = json_line(&run.stderr);
    assert_eq!(keys(&error), ["code", "error", "imported", "note"]);
    assert_eq!(error["code"], 1);
    assert!(
        error["error"].as_str().unwrap().contains("already exists"),
        "{error}"
    );
    assert_eq!(
        error["imported"],
        json!({"user": "alice", "conversations": 0, "messages": 0, "skipped": 0})
    );

    let run = chatstore(&db.url, &["delete-user", "--json", "--user", "alice"]).expect(1);
    let error = json_line(&run.stderr);
    assert_eq!(keys(&error), ["code", "error"]);
    assert_eq!(error["code"], 1);
    let run = chatstore(
        &db.url,
        &["delete-user", "--json", "--user", "alice", "--yes"],
    )
    .expect(0);
    assert_eq!(json_line(&run.stdout), alice);

    let run = chatstore(&db.url, &["reset", "--json"]).expect(1);
    assert_eq!(json_line(&run.stderr)["code"], 1);
    let run = chatstore(&db.url, &["--json", "reset", "--yes"]).expect(0);
    assert_eq!(json_line(&run.stdout), json!({"reset": true}));
    assert_eq!(run.stderr, "");

    // Not ready: the report on standard output, the error on standard error.
    let run = chatstore(&db.url, &["verify", "--json"]).expect(4);
    let verify = json_line(&run.stdout);
    assert_eq!(verify["complete"], false);
    assert_eq!(verify["pending"], migrate["applied"]);
    let items = verify["items"].as_array().unwrap();
    assert!(
        items.iter().all(|item| item["present"] == false),
        "{verify}"
    );
    let error = json_line(&run.stderr);
    assert_eq!(error["code"], 4);
    assert_eq!(
        error["error"],
        "the database has no chatstore schema: 12 migration(s) pending"
    );
}
