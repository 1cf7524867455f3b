//! MySQL/MariaDB: migrations are run statement by statement, each skipped when the catalog shows it
//! took effect (MySQL cannot roll DDL back), so a run cut short is completed by the next open; an
//! object already there in another shape is refused. The kills themselves are in
//! `hardening::migrations`.

#![cfg(feature = "mysql")]

use chatstore::{ChatStore, Error, NewMessage, SearchQuery};

use crate::support::{user, Kind, TestDb};

const VERSIONS: [&str; 12] = [
    "20261124000001",
    "20261125000002",
    "20261125000003",
    "20261202000004",
    "20261203000005",
    "20261203000006",
    "20261203000007",
    "20261203000008",
    "20261204000009",
    "20261204000010",
    "20261204000011",
    "20261204000012",
];

/// Every statement is found present in the shape it makes itself: a database whose version records
/// are lost runs nothing twice (MySQL would refuse a second CREATE), indexes no message twice, and
/// keeps its data.
#[test]
fn a_migrated_mysql_database_that_lost_its_version_records_is_completed_as_it_is() {
    let db = TestDb::new(Kind::Mysql);
    let alice = user("alice");
    let store = db.open();
    let conv = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_messages(
            &alice,
            conv,
            &[
                NewMessage::user("kept words"),
                NewMessage::user("more words"),
            ],
        )
        .unwrap();
    assert_eq!(store.index_pending().unwrap(), 2);
    drop(store);
    let words = db.count_rows("chatstore_message_words");
    assert!(words > Some(0));
    db.execute("DELETE FROM chatstore_schema_migrations")
        .unwrap();
    let store = db.open();
    assert_eq!(store.migrations_applied_at_open(), VERSIONS);
    // Each migration with a statement found it there (the words and keys migrations have none).
    assert_eq!(
        store.migrations_resumed_at_open(),
        [
            VERSIONS[0],
            VERSIONS[1],
            VERSIONS[2],
            VERSIONS[4],
            VERSIONS[5],
            VERSIONS[6],
            VERSIONS[8],
            VERSIONS[9],
            VERSIONS[10],
            VERSIONS[11]
        ]
    );
    assert!(store.verify_schema().unwrap().is_complete());
    assert_eq!(db.count_rows("chatstore_message_words"), words);
    let found = store
        .search_messages(&alice, &SearchQuery::new("words"))
        .unwrap();
    assert_eq!(found.hits.len(), 2);
    let again = db.open();
    assert!(again.migrations_applied_at_open().is_empty());
    assert!(again.migrations_resumed_at_open().is_empty());
}

/// A migration half applied by hand, as a killed run leaves it: the next open runs the rest, and
/// indexes the messages stored before the search index existed.
#[test]
fn a_half_applied_mysql_migration_is_completed_at_open() {
    let db = TestDb::new(Kind::Mysql);
    let alice = user("alice");
    let store = db.open();
    let conv = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_message(&alice, conv, NewMessage::user("from before the index"))
        .unwrap();
    drop(store);
    // Back to before the search index (the words migration after it has no statement, the
    // catch-up, branches, active-path, pins, tags and usage migrations after that are reverted
    // too).
    db.revert_newest_migrations(10);
    // The search migration's first two statements took effect.
    db.execute(
        "ALTER TABLE chatstore_messages ADD COLUMN search_text \
         LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL",
    )
    .unwrap();
    db.execute(
        "CREATE TABLE chatstore_message_words (message_id VARBINARY(16) NOT NULL, \
         user_id VARBINARY(1020) NOT NULL, \
         word VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, \
         hits INT NOT NULL, PRIMARY KEY (message_id, word), \
         CONSTRAINT chatstore_message_words_message_fk FOREIGN KEY (message_id) \
         REFERENCES chatstore_messages (id) ON DELETE CASCADE) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4",
    )
    .unwrap();
    let store = db.open();
    assert_eq!(store.migrations_applied_at_open(), &VERSIONS[2..]);
    assert_eq!(store.migrations_resumed_at_open(), [VERSIONS[2]]);
    assert!(store.verify_schema().unwrap().is_complete());
    let found = store
        .search_messages(&alice, &SearchQuery::new("before"))
        .unwrap();
    assert_eq!(found.hits.len(), 1);
}

/// An object already there in another shape is not taken for the migration's: the open fails with
/// `SchemaConflict`, naming it, and runs nothing more of that migration.
#[test]
fn a_mysql_object_of_another_shape_is_a_schema_conflict() {
    let db = TestDb::new(Kind::Mysql);
    drop(db.open());
    db.revert_newest_migrations(10);
    db.execute("ALTER TABLE chatstore_messages ADD COLUMN search_text INT NULL")
        .unwrap();
    let err = ChatStore::open(&db.url).unwrap_err();
    let Error::SchemaConflict {
        migration,
        object,
        difference,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(migration, "2026-11-25-000003_message_search");
    assert_eq!(object, "column chatstore_messages.search_text");
    assert_eq!(
        difference,
        "column chatstore_messages.search_text is int NULL, the migration makes it longtext NULL"
    );
    assert!(err.to_string().contains(difference), "{err}");
    assert_eq!(db.scalar(TABLES_NAMED_MESSAGE_WORDS), Some(0));

    // An index of the migration's name over other columns.
    db.execute("ALTER TABLE chatstore_messages DROP COLUMN search_text")
        .unwrap();
    db.revert_newest_migration();
    db.execute("CREATE INDEX chatstore_messages_system ON chatstore_messages (seq)")
        .unwrap();
    let err = ChatStore::open(&db.url).unwrap_err();
    assert!(
        matches!(&err, Error::SchemaConflict { object, .. }
            if object == "index chatstore_messages_system on chatstore_messages"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(
            "index chatstore_messages_system on chatstore_messages is an index on (seq), the migration makes an \
             index on (conversation_id, role, seq)"
        ),
        "{err}"
    );
}

const TABLES_NAMED_MESSAGE_WORDS: &str = "SELECT COUNT(*) AS n FROM information_schema.tables \
     WHERE table_schema = DATABASE() AND table_name = 'chatstore_message_words'";
