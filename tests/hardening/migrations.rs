//! Crash safety of migrations on MySQL/MariaDB, which commits each DDL statement on its own and
//! cannot roll one back: a child process opens a new database (the first open runs every
//! migration) and is killed with SIGKILL at a random point of the run, again and again, each time
//! on a fresh database. Every time, the next open completes the schema, and messages stored before
//! the search migration are found once it is complete.
//!
//! Where the kill lands: the child prints a line as it starts opening and, with the `tracing`
//! feature, one per migration step the store reports (a statement applied or found present, the
//! search index filled, a version recorded). Run `i` waits for line `i mod (steps + 1)`, then for a
//! random part of a step's time, so every step boundary is hit in a short run. Without step events
//! the kill falls at a random moment of the whole run.

#![cfg(feature = "mysql")]

use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use chatstore::{ChatStore, NewMessage, SearchQuery, UserId};

use super::{child_env, finish, random_below, slow, spawn_child};
use crate::support::{Fixture, Kind, RawSql, TestDb};

/// How long a child may take to start, or a run to finish, before it counts as stuck.
const PATIENCE: Duration = Duration::from_secs(60);

/// Messages stored before the search migration, in the second test: enough that filling the index
/// takes a few pages, so that kills land inside it too.
const OLD_MESSAGES: usize = 250;

#[test]
fn sigkill_during_a_first_open_leaves_a_database_the_next_open_completes() {
    let kills = if slow() { 300 } else { 46 };
    let outcome = kill_runs(kills, || TestDb::new(Kind::Mysql), |_| Ok(()));
    outcome.assert_all_repaired(kills);
}

#[test]
fn sigkill_during_the_search_migration_leaves_stored_messages_found() {
    // One kill after each of its 39 step lines and the run's start.
    let kills = if slow() { 100 } else { 40 };
    let outcome = kill_runs(kills, database_before_search, |store| {
        let found = found_everywhere(store, "ago");
        match found == OLD_MESSAGES {
            true => Ok(()),
            false => Err(format!(
                "{found} of {OLD_MESSAGES} messages stored before the index are found"
            )),
        }
    });
    outcome.assert_all_repaired(kills);
}

#[test]
fn sigkill_during_the_upgrade_from_the_0_1_layout_loses_nothing() {
    // One kill after each of its 49 step lines and the run's start.
    let kills = if slow() { 100 } else { 50 };
    let outcome = kill_runs(kills, database_in_the_0_1_layout, |store| {
        let alice = owner();
        let list = store
            .list_conversations(&alice, chatstore::Page::first(10))
            .map_err(|e| e.to_string())?;
        let [conversation] = &list.conversations[..] else {
            return Err(format!("{} conversations", list.conversations.len()));
        };
        let page = store
            .messages(&alice, conversation.id, chatstore::Window::All)
            .map_err(|e| e.to_string())?;
        let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
        if seqs != (1..=OLD_MESSAGES as i64).collect::<Vec<_>>() {
            return Err(format!("{} of {OLD_MESSAGES} messages moved", seqs.len()));
        }
        let found = found_everywhere(store, "ago");
        if found != OLD_MESSAGES {
            return Err(format!(
                "{found} of {OLD_MESSAGES} moved messages are found"
            ));
        }
        Ok(())
    });
    outcome.assert_all_repaired(kills);
}

/// A database as chatstore 0.1 left it: its migrations (versions in Diesel's table) and a
/// conversation of alice's in its unprefixed tables.
fn database_in_the_0_1_layout() -> TestDb {
    let db = TestDb::new(Kind::Mysql);
    db.run_diesel_migrations(Fixture::Layout01);
    let sql = RawSql::new(&db);
    let messages: Vec<String> = (1..=OLD_MESSAGES)
        .map(|seq| {
            format!(
                "({}, {}, 'alice', {seq}, 'user', 'stored {seq} long ago', NULL, \
                 '2026-01-01 00:00:00')",
                sql.id(&(seq as u128).to_be_bytes()),
                sql.id(&[0xc0; 16]),
            )
        })
        .collect();
    let batch = format!(
        "{};\n\
         INSERT INTO messages (id, conversation_id, user_id, seq, role, content, metadata, \
         created_at) VALUES {};\n\
         UPDATE conversations SET message_count = {OLD_MESSAGES}",
        sql.conversation(0xc0, "alice", None),
        messages.join(", ")
    );
    db.execute(&batch.replace("INTO chatstore_", "INTO "))
        .unwrap();
    db
}

/// A database holding messages, migrated up to the migration before the search index.
fn database_before_search() -> TestDb {
    let db = TestDb::new(Kind::Mysql);
    let store = db.open();
    let alice = owner();
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let texts: Vec<String> = (0..OLD_MESSAGES)
        .map(|i| format!("stored {i} long ago"))
        .collect();
    let batch: Vec<NewMessage> = texts.iter().map(NewMessage::user).collect();
    store.append_messages(&alice, conv, &batch).unwrap();
    drop(store);
    // Back to before the search index (and the migrations after it).
    db.revert_newest_migrations(10);
    db
}

fn owner() -> UserId {
    UserId::new("alice").unwrap()
}

/// How many of the owner's messages a search for `word` finds, page by page.
fn found_everywhere(store: &ChatStore, word: &str) -> usize {
    let mut found = 0;
    loop {
        let query = SearchQuery::new(word).limit(100).offset(found as u32);
        let hits = store.search_messages(&owner(), &query).unwrap().hits.len();
        found += hits;
        if hits < 100 {
            return found;
        }
    }
}

/// What a series of kills found.
struct Outcome {
    /// Kills that landed before the child's open returned.
    kills: usize,
    /// Children that finished opening before the kill landed (not counted as kills).
    late: usize,
    /// Step lines announced in a whole run (0 without the `tracing` feature).
    steps: usize,
    /// Kills per step line the kill followed.
    hits: Vec<usize>,
    /// Reopenings that completed a migration the kill had left half applied.
    resumed: usize,
    /// Runs after which the database did not open, was incomplete or lost something: the run, the
    /// steps the child announced, what went wrong.
    broken: Vec<(usize, usize, String)>,
    elapsed: Duration,
}

impl Outcome {
    fn assert_all_repaired(&self, kills: usize) {
        eprintln!(
            "{} kills ({} children finished first), steps {}, kills after each step line: {:?}, \
             {} reopenings completed a half-applied migration, {} broken, {:.1?}",
            self.kills,
            self.late,
            self.steps,
            self.hits,
            self.resumed,
            self.broken.len(),
            self.elapsed
        );
        assert!(
            self.broken.is_empty(),
            "{} of {} kills left the database broken (run, steps seen, error):\n{:#?}",
            self.broken.len(),
            self.kills,
            self.broken
        );
        assert!(self.kills >= kills);
        if self.steps > 0 {
            assert!(
                self.hits.iter().all(|&h| h > 0),
                "a step was never hit: {:?}",
                self.hits
            );
            // Kills after a statement, before its migration's version is recorded, were there.
            assert!(self.resumed > 0, "no kill left a migration half applied");
        }
    }
}

/// Kills `kills` children, each opening a database made by `fresh`, then opens each database in
/// this process and checks it (schema complete, then `check`).
fn kill_runs(
    kills: usize,
    fresh: impl Fn() -> TestDb,
    check: impl Fn(&ChatStore) -> Result<(), String>,
) -> Outcome {
    let started = Instant::now();
    // One run left alone: how many step lines a run announces, and how long it takes.
    let (steps, duration) = {
        let db = fresh();
        let (child, lines) = start_child(&db);
        let begun = Instant::now();
        let (status, lines) = finish(child, lines, PATIENCE);
        assert!(status.success(), "the undisturbed child failed: {lines:?}");
        let steps = lines.iter().filter(|l| l.starts_with("step ")).count();
        (steps, begun.elapsed())
    };
    // The kill's delay after the line it waits for: up to a step's average time.
    let spread = duration.as_micros() as u64 / (steps as u64 + 1);
    let mut outcome = Outcome {
        kills: 0,
        late: 0,
        steps,
        hits: vec![0; steps + 1],
        resumed: 0,
        broken: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut run = 0;
    while outcome.kills < kills {
        run += 1;
        assert!(
            run <= kills * 3,
            "most children finished before the kill: {} of {run}",
            outcome.late
        );
        let db = fresh();
        let target = outcome.kills % (steps + 1);
        let (mut child, lines) = start_child(&db);
        wait_for_lines(&lines, target + 1, run);
        std::thread::sleep(Duration::from_micros(random_below(spread)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        // Every line it printed: the reader ends at the dead child's end of output, so a line printed
        // just before the child exited is not missed (as `try_iter` could miss it).
        let seen: Vec<String> = lines.iter().collect();
        // Killed after its open returned (or exited by then): not a kill during the open.
        if seen.iter().any(|l| l == "opened") {
            outcome.late += 1;
            continue;
        }
        assert_eq!(
            status.signal(),
            Some(9),
            "run {run}: the child ended by itself ({status}): {seen:?}"
        );
        outcome.kills += 1;
        outcome.hits[target] += 1;
        let steps_seen = target + seen.iter().filter(|l| l.starts_with("step ")).count();
        match reopen(&db, &check) {
            Ok(resumed) => outcome.resumed += usize::from(resumed),
            Err(error) => outcome.broken.push((run, steps_seen, error)),
        }
    }
    outcome.elapsed = started.elapsed();
    outcome
}

/// Opens the database as a restarted process would, and checks it; says whether the open completed
/// a half-applied migration.
fn reopen(db: &TestDb, check: &impl Fn(&ChatStore) -> Result<(), String>) -> Result<bool, String> {
    let store = ChatStore::open(&db.url).map_err(|e| format!("open: {e}"))?;
    let report = store.verify_schema().map_err(|e| format!("verify: {e}"))?;
    if !report.is_complete() {
        return Err(format!("incomplete schema:\n{report}"));
    }
    check(&store)?;
    Ok(!store.migrations_resumed_at_open().is_empty())
}

fn start_child(db: &TestDb) -> (super::ChildProcess, Receiver<String>) {
    spawn_child(
        "hardening::migrations::child_opens_until_killed",
        &[("CHATSTORE_CHILD_URL", db.url.clone())],
    )
}

/// Waits for the child's `n`th line ("opening", then its steps).
fn wait_for_lines(lines: &Receiver<String>, n: usize, run: usize) {
    for _ in 0..n {
        let line = lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("run {run}: the child went quiet: {e}"));
        if line == "opened" {
            // Fewer steps than the undisturbed run (the server was quicker than the reader).
            return;
        }
    }
}

/// The child's side: opens the store, printing `opening` first, `step …` for each migration step
/// the store reports (with the `tracing` feature), and `opened` when the open returns.
#[test]
#[ignore = "the child process of the migration crash tests, started by them"]
fn child_opens_until_killed() {
    let Some(url) = child_env("CHATSTORE_CHILD_URL") else {
        return;
    };
    // A parent that went away without killing this child closes its stdin: stop then.
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(1);
    });
    #[cfg(feature = "tracing")]
    tracing::subscriber::set_global_default(steps::Printer).unwrap();
    println!("opening");
    ChatStore::open(&url).unwrap();
    println!("opened");
}

/// A subscriber that prints each migration step event as a line, as it happens.
#[cfg(feature = "tracing")]
mod steps {
    use std::fmt::Debug;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    pub struct Printer;

    /// The event's message and other fields, as text.
    #[derive(Default)]
    struct Line {
        message: String,
        fields: String,
    }

    impl Visit for Line {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            match field.name() {
                "message" => self.message = format!("{value:?}"),
                name => self.fields.push_str(&format!(" {name}={value:?}")),
            }
        }
    }

    impl Subscriber for Printer {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut line = Line::default();
            event.record(&mut line);
            if line.message == "chatstore migration step" {
                println!("step{}", line.fields);
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}
