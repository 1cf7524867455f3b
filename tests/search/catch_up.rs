//! The search index after the append: appends do not write it, a search catches it up before it
//! reads, `index_pending` catches up everyone's, and nothing waiting is ever lost or left behind.

use std::sync::mpsc;

use chatstore::{NewMessage, SearchQuery};

use super::{found, with_messages};
use crate::support::{backend_tests, user, Kind, TestDb};

backend_tests! {
    every: [
        a_search_finds_what_was_appended_just_before_it,
        index_pending_indexes_what_no_search_has_yet,
        a_backlog_larger_than_a_batch_is_found_whole,
        a_message_taking_a_deleted_messages_place_is_indexed,
        deleting_a_user_leaves_nothing_indexed_or_waiting,
    ],
    persistent: [
        a_database_indexed_before_the_catch_up_migration_keeps_its_index,
        messages_waiting_when_the_store_stopped_are_found_by_the_next,
        a_search_sees_every_append_that_finished_before_it_began,
    ],
}

fn a_search_finds_what_was_appended_just_before_it(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = with_messages(&store, &alice, &["first note"]);
    assert_eq!(found(&store, &alice, "note"), ["first note"]);
    // Appended after the index caught up, one message at a time.
    for text in ["second note", "third note"] {
        store
            .append_message(&alice, conv, NewMessage::assistant(text))
            .unwrap();
    }
    assert_eq!(
        found(&store, &alice, "note"),
        ["third note", "second note", "first note"]
    );
}

fn index_pending_indexes_what_no_search_has_yet(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    with_messages(&store, &alice, &["alice's plans", "alice's lists"]);
    with_messages(&store, &bob, &["bob's plans"]);
    // Alice's search indexes her messages; on SQLite the index catches up for everyone at once.
    assert_eq!(found(&store, &alice, "plans"), ["alice's plans"]);
    let left = store.index_pending().unwrap();
    match db.kind {
        Kind::SqliteFile | Kind::SqliteMemory => assert_eq!(left, 0),
        Kind::Postgres | Kind::Citus | Kind::Mysql => assert_eq!(left, 1),
    }
    assert_eq!(store.index_pending().unwrap(), 0);
    assert_eq!(found(&store, &bob, "plans"), ["bob's plans"]);
    // An import waits for the index like an append.
    with_messages(&store, &bob, &["one", "two", "three"]);
    assert_eq!(store.index_pending().unwrap(), 3);
    assert_eq!(found(&store, &bob, "two"), ["two"]);
}

/// More messages wait than one batch of the catch-up indexes: the search indexes them all before it
/// reads, the oldest and the newest alike.
fn a_backlog_larger_than_a_batch_is_found_whole(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let texts: Vec<String> = (0..2500)
        .map(|i| match i {
            0 => "the oldest needle".to_owned(),
            2499 => "the newest needle".to_owned(),
            _ => format!("filler {i}"),
        })
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    with_messages(&store, &alice, &texts);
    assert_eq!(
        found(&store, &alice, "needle"),
        ["the newest needle", "the oldest needle"]
    );
    assert_eq!(found(&store, &alice, "1250"), ["filler 1250"]);
    assert_eq!(store.index_pending().unwrap(), 0);
}

/// SQLite gives a new row the largest key plus one: after the newest messages are deleted, the next
/// one takes a key the index had already passed, and must be indexed all the same.
fn a_message_taking_a_deleted_messages_place_is_indexed(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let kept = with_messages(&store, &alice, &["older words"]);
    let gone = with_messages(&store, &alice, &["newest words", "newest lines"]);
    store.index_pending().unwrap();
    store.delete_conversation(&alice, gone).unwrap();
    store
        .append_message(&alice, kept, NewMessage::user("reborn words"))
        .unwrap();
    assert_eq!(
        found(&store, &alice, "words"),
        ["reborn words", "older words"]
    );
    assert!(found(&store, &alice, "newest").is_empty());
    // A deletion of indexed and waiting messages in one statement, the newest waiting.
    let mixed = with_messages(&store, &alice, &["mixed one"]);
    store.index_pending().unwrap();
    store
        .append_message(&alice, mixed, NewMessage::user("mixed two"))
        .unwrap();
    store.delete_conversation(&alice, mixed).unwrap();
    store
        .append_message(&alice, kept, NewMessage::user("after mixed"))
        .unwrap();
    assert_eq!(found(&store, &alice, "mixed"), ["after mixed"]);
}

fn deleting_a_user_leaves_nothing_indexed_or_waiting(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    with_messages(&store, &alice, &["indexed secret"]);
    with_messages(&store, &bob, &["bob's secret"]);
    store.index_pending().unwrap();
    with_messages(&store, &alice, &["waiting secret"]);
    store.delete_user_data(&alice).unwrap();
    assert_eq!(store.index_pending().unwrap(), 0);
    assert!(found(&store, &alice, "secret").is_empty());
    assert_eq!(found(&store, &bob, "secret"), ["bob's secret"]);
    // Only bob's message is left in the index, and nothing waits.
    match db.kind {
        Kind::SqliteFile => {
            assert_eq!(db.count_rows("chatstore_messages_search"), Some(1));
        }
        Kind::Mysql => {
            assert_eq!(db.count_rows("chatstore_search_pending"), Some(0));
            assert_eq!(
                db.scalar("SELECT count(DISTINCT message_id) AS n FROM chatstore_message_words"),
                Some(1)
            );
        }
        Kind::Postgres | Kind::Citus => {
            assert_eq!(
                db.scalar("SELECT count(*) AS n FROM chatstore_messages WHERE search IS NOT NULL"),
                Some(1)
            );
        }
        Kind::SqliteMemory => {}
    }
}

/// A database made by the previous layout, with messages in its index: the migration to the
/// catch-up keeps what the index holds (nothing is indexed again, and every message is still
/// found), and what is appended afterwards waits and is found.
fn a_database_indexed_before_the_catch_up_migration_keeps_its_index(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    with_messages(&store, &alice, &["stored before", "also before"]);
    assert_eq!(store.index_pending().unwrap(), 2);
    drop(store);
    // The branches, then the catch-up.
    db.revert_newest_migrations(8);
    let store = db.open();
    assert_eq!(
        store.migrations_applied_at_open(),
        [
            "20261203000005".to_owned(),
            "20261203000006".to_owned(),
            "20261203000007".to_owned(),
            "20261203000008".to_owned(),
            "20261204000009".to_owned(),
            "20261204000010".to_owned(),
            "20261204000011".to_owned(),
            "20261204000012".to_owned(),
        ]
    );
    assert_eq!(store.index_pending().unwrap(), 0);
    assert_eq!(
        found(&store, &alice, "before"),
        ["also before", "stored before"]
    );
    with_messages(&store, &alice, &["stored after"]);
    assert_eq!(
        found(&store, &alice, "stored"),
        ["stored after", "stored before"]
    );
    assert_eq!(store.index_pending().unwrap(), 0);
}

/// What waits for the index is in the database, not in the store: a store that stops (or is
/// killed) before indexing loses nothing, and the next one's search finds it.
fn messages_waiting_when_the_store_stopped_are_found_by_the_next(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    with_messages(&store, &alice, &["left waiting"]);
    drop(store);
    let store = db.open();
    assert_eq!(found(&store, &alice, "waiting"), ["left waiting"]);
}

/// A writer appends from one store, and after each append returns, a reader searches from another
/// store for the word it just wrote: every search finds it.
fn a_search_sees_every_append_that_finished_before_it_began(db: &TestDb) {
    let writer = db.open();
    let reader = db.open();
    let alice = user("alice");
    let conv = writer.create_conversation(&alice, None).unwrap().id;
    let (sent, appended) = mpsc::channel::<usize>();
    std::thread::scope(|scope| {
        let alice = &alice;
        scope.spawn(move || {
            for i in 0..40 {
                let text = format!("word{i} appended");
                writer
                    .append_message(alice, conv, NewMessage::user(&text))
                    .unwrap();
                sent.send(i).unwrap();
            }
        });
        let mut searched = 0;
        for i in appended {
            let hits = reader
                .search_messages(alice, &SearchQuery::new(&format!("word{i}")))
                .unwrap();
            assert_eq!(hits.hits.len(), 1, "word{i}");
            searched += 1;
        }
        assert_eq!(searched, 40);
    });
}

/// A store that cannot write searches what the index holds, and says so only when asked to index.
#[cfg(feature = "sqlite")]
#[test]
fn a_read_only_store_searches_what_the_index_holds() {
    let db = TestDb::new(Kind::SqliteFile);
    let store = db.open();
    let alice = user("alice");
    with_messages(&store, &alice, &["indexed words"]);
    store.index_pending().unwrap();
    with_messages(&store, &alice, &["waiting words"]);
    let read_only = chatstore::ChatStore::open(&format!("{}?mode=ro", db.url)).unwrap();
    assert_eq!(found(&read_only, &alice, "words"), ["indexed words"]);
    assert!(matches!(
        read_only.index_pending(),
        Err(chatstore::Error::ReadOnly { .. })
    ));
    assert_eq!(
        found(&store, &alice, "words"),
        ["waiting words", "indexed words"]
    );
    assert_eq!(found(&read_only, &alice, "waiting"), ["waiting words"]);
}
