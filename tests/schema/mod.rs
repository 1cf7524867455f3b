//! The schema: migrations run once and revert cleanly, concurrent opens of a fresh database,
//! `verify_schema`, a schema newer than the build, and the database's own constraints against rows
//! another program writes.

mod mysql_migrations;

use std::sync::{Arc, Barrier};
use std::thread;

use chatstore::{ChatStore, Error, ItemKind, Migrations, NewMessage, Page, Window};

use crate::support::{
    backend_tests, contents, conversation_with, expected, snapshot, user, Kind, RawMessage, RawSql,
    TestDb,
};

backend_tests! {
    every: [
        verify_schema_reports_everything_present,
    ],
    persistent: [
        reopening_runs_no_migration_and_keeps_data,
        two_stores_opening_a_fresh_database_at_once_both_succeed,
        verify_schema_names_a_dropped_index,
        schema_newer_than_the_build_is_refused,
        database_constraints_refuse_rows_the_library_would_refuse,
        message_owner_must_be_the_conversation_owner,
        migrations_revert_and_reapply_cleanly,
    ],
}

fn verify_schema_reports_everything_present(db: &TestDb) {
    let report = db.open().verify_schema().unwrap();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.missing().count(), 0);
    for kind in [ItemKind::Table, ItemKind::Index, ItemKind::Constraint] {
        assert!(report.items.iter().any(|i| i.kind == kind));
    }
}

fn reopening_runs_no_migration_and_keeps_data(db: &TestDb) {
    let alice = user("alice");
    let conv = conversation_with(&db.open(), &alice, 3);
    // A migration run on reopen would fail on CREATE TABLE, and a reset would lose the data.
    let again = db.open();
    let third = db.open();
    assert_eq!(
        contents(&again.messages(&alice, conv, Window::All).unwrap().messages),
        expected(1..=3)
    );
    third
        .append_message(&alice, conv, NewMessage::user("m4"))
        .unwrap();
    assert_eq!(again.conversation(&alice, conv).unwrap().message_count, 4);
    assert!(again.verify_schema().unwrap().is_complete());
}

fn two_stores_opening_a_fresh_database_at_once_both_succeed(db: &TestDb) {
    // The races are narrow (on SQLite about one open in twenty lost before the WAL switch was
    // retried): several rounds, each on a fresh database, make a regression show.
    let rounds = if db.kind.is_postgres() { 4 } else { 25 };
    for round in 0..rounds {
        let fresh = TestDb::new(db.kind);
        let db = if round == 0 { db } else { &fresh };
        open_at_once(db);
    }
}

fn open_at_once(db: &TestDb) {
    const OPENERS: usize = 4;
    let barrier = Arc::new(Barrier::new(OPENERS));
    let handles: Vec<_> = (0..OPENERS)
        .map(|_| {
            let (url, barrier) = (db.url.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                ChatStore::open(&url)
            })
        })
        .collect();
    let stores: Vec<ChatStore> = handles
        .into_iter()
        .map(|h| h.join().unwrap().expect("concurrent open"))
        .collect();
    let alice = user("alice");
    let conv = stores[0].create_conversation(&alice, None).unwrap();
    for store in &stores {
        store
            .append_message(&alice, conv.id, NewMessage::user("hi"))
            .unwrap();
        assert!(store.verify_schema().unwrap().is_complete());
    }
    assert_eq!(
        stores[1]
            .conversation(&alice, conv.id)
            .unwrap()
            .message_count,
        OPENERS as i64
    );
}

fn verify_schema_names_a_dropped_index(db: &TestDb) {
    let store = db.open();
    let on_table = if db.kind == Kind::Mysql {
        " ON chatstore_conversations"
    } else {
        ""
    };
    db.execute(&format!(
        "DROP INDEX chatstore_conversations_user_rank{on_table}"
    ))
    .unwrap();
    let report = store.verify_schema().unwrap();
    assert!(!report.is_complete());
    let missing: Vec<_> = report.missing().map(|i| (i.kind, i.name)).collect();
    assert_eq!(
        missing,
        [(ItemKind::Index, "chatstore_conversations_user_rank")]
    );
    assert!(
        report
            .to_string()
            .contains("MISSING index chatstore_conversations_user_rank"),
        "{report}"
    );
}

fn schema_newer_than_the_build_is_refused(db: &TestDb) {
    drop(db.open());
    db.execute("INSERT INTO chatstore_schema_migrations (version) VALUES ('99991231000000')")
        .unwrap();
    let err = ChatStore::open(&db.url).unwrap_err();
    assert!(
        matches!(&err, Error::SchemaTooNew { found, .. } if found == "99991231000000"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("migrated by a newer chatstore"),
        "{err}"
    );
    // Opening without migrating refuses it alike.
    let verify = ChatStore::builder(&db.url)
        .migrations(Migrations::Verify)
        .open()
        .unwrap_err();
    assert!(matches!(verify, Error::SchemaTooNew { .. }), "{verify:?}");

    // An unknown version older than this build's newest is not called newer.
    db.execute("DELETE FROM chatstore_schema_migrations WHERE version = '99991231000000'")
        .unwrap();
    db.execute("INSERT INTO chatstore_schema_migrations (version) VALUES ('20200101000000')")
        .unwrap();
    let err = ChatStore::open(&db.url).unwrap_err();
    assert!(
        matches!(&err, Error::SchemaTooNew { found, .. } if found == "20200101000000"),
        "{err:?}"
    );
    assert!(!err.to_string().contains("newer"), "{err}");
}

fn database_constraints_refuse_rows_the_library_would_refuse(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 1);
    let sql = RawSql::new(db);
    let title_256 = "é".repeat(256);
    let refused = [
        (
            sql.conversation(1, "alice", Some(&title_256)),
            // PostgreSQL's and MySQL's VARCHAR(255) refuse it before the CHECK does.
            &[
                "chatstore_conversations_title_length",
                "character varying(255)",
                "Data too long for column 'title'",
            ][..],
        ),
        (
            sql.conversation(2, "", None),
            &["chatstore_conversations_user_id_length"][..],
        ),
        (
            sql.message(
                conv,
                RawMessage {
                    id: 3,
                    role: "wizard",
                    ..Default::default()
                },
            ),
            &["chatstore_messages_role_valid"][..],
        ),
        (
            sql.message(
                conv,
                RawMessage {
                    id: 4,
                    metadata: Some("[1]"),
                    ..Default::default()
                },
            ),
            &["chatstore_messages_metadata_object"][..],
        ),
        (
            sql.message(
                conv,
                RawMessage {
                    id: 5,
                    seq: 1,
                    ..Default::default()
                },
            ),
            // PostgreSQL names the constraint, SQLite the columns.
            &[
                "chatstore_messages_conversation_seq",
                "chatstore_messages.conversation_id, chatstore_messages.seq",
            ][..],
        ),
    ];
    for (sql, constraint) in &refused {
        refused_by(db, sql, constraint);
    }
    // The same title at 255 characters goes in: the refusals above were the limits, not the SQL.
    db.execute(&sql.conversation(1, "alice", Some(&"é".repeat(255))))
        .unwrap();
    assert_eq!(snapshot(&store, &alice, conv).0, 1);
}

/// Runs `sql` as another program would and checks that `constraint` is what refused it (not, say,
/// a typo in the statement).
fn refused_by(db: &TestDb, sql: &str, constraint: &[&str]) {
    match db.execute(sql) {
        Ok(()) => panic!("the database accepted: {sql}"),
        Err(e) => assert!(
            constraint.iter().any(|c| e.to_string().contains(c)),
            "expected {constraint:?}, got {e}"
        ),
    }
}

fn message_owner_must_be_the_conversation_owner(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 1);
    let sql = RawSql::new(db);
    let insert = |owner| {
        db.execute(&sql.message(
            conv,
            RawMessage {
                owner,
                ..Default::default()
            },
        ))
    };
    let fk = match db.kind {
        Kind::Postgres | Kind::Citus | Kind::Mysql => "chatstore_messages_conversation_fk",
        _ => "FOREIGN KEY constraint failed",
    };
    let err =
        insert("mallory").expect_err("a message owned by another than its conversation's owner");
    assert!(err.to_string().contains(fk), "{err}");
    insert("alice").unwrap();
}

fn migrations_revert_and_reapply_cleanly(db: &TestDb) {
    let store = db.open();
    conversation_with(&store, &user("alice"), 2);
    db.revert_all_migrations();
    let report = store.verify_schema().unwrap();
    assert_eq!(
        report.missing().count(),
        report.items.len(),
        "down.sql removes everything:\n{report}"
    );
    let reopened = db.open();
    assert!(reopened.verify_schema().unwrap().is_complete());
    let alice = user("alice");
    let conv = conversation_with(&reopened, &alice, 2);
    assert_eq!(
        reopened.conversation(&alice, conv).unwrap().message_count,
        2
    );
    assert_eq!(
        reopened
            .list_conversations(&alice, Page::first(10))
            .unwrap()
            .conversations
            .len(),
        1
    );
}
