//! Living in a host application's database: a host with its own Diesel migrations (its own
//! `users`, `messages` and `conversations`, an index named as chatstore 0.1 named one, a version
//! newer than any of chatstore's) and chatstore share one database in either order and at once;
//! a database in chatstore 0.1's layout is upgraded in place; opening can verify the schema or leave
//! it alone instead of migrating; and dropping chatstore's schema leaves the host's.

use std::sync::{Arc, Barrier};
use std::thread;

use chatstore::{
    ChatStore, ConversationId, Error, Migrations, NewMessage, Page, SearchQuery, UserId, Window,
};

use crate::support::{backend_tests, user, Fixture, Kind, RawMessage, RawSql, TestDb};

backend_tests! {
    every: [],
    persistent: [
        host_migrations_first_then_chatstore,
        chatstore_first_then_host_migrations,
        host_and_chatstores_opening_at_once,
        a_database_in_the_0_1_layout_is_upgraded_in_place,
        opening_to_verify_changes_nothing_and_names_the_pending_versions,
        opening_to_skip_migrations_leaves_the_schema_alone,
        dropping_the_schema_removes_only_chatstores_tables,
        dropping_the_schema_of_a_0_1_database_removes_its_tables,
        chatstores_versions_in_diesels_table_do_not_make_a_hosts_tables_chatstores,
    ],
}

/// chatstore's versions, oldest first.
const CHATSTORE: [&str; 12] = [
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

/// The versions chatstore 0.1 recorded in Diesel's table: its first four.
const LAYOUT_0_1: [&str; 4] = [
    "20261124000001",
    "20261125000002",
    "20261125000003",
    "20261202000004",
];

/// The host fixture's versions, oldest first: the last is newer than any of chatstore's.
const HOST: [&str; 3] = ["20250101000001", "20250102000002", "20300101000003"];

/// The host fixture's tables, and Diesel's.
const HOST_TABLES: [&str; 4] = [
    "__diesel_schema_migrations",
    "conversations",
    "messages",
    "users",
];

/// The tables chatstore makes on `kind` (the FTS5 index is a table on SQLite).
fn chatstore_tables(kind: Kind) -> Vec<&'static str> {
    let mut tables = vec![
        "chatstore_branches",
        "chatstore_conversation_tags",
        "chatstore_conversations",
        "chatstore_messages",
        "chatstore_schema_migrations",
    ];
    match kind {
        Kind::SqliteFile | Kind::SqliteMemory => {
            tables.extend(["chatstore_messages_search", "chatstore_search_state"])
        }
        Kind::Mysql => tables.extend(["chatstore_message_words", "chatstore_search_pending"]),
        Kind::Postgres | Kind::Citus => {}
    }
    tables
}

fn sorted(tables: impl IntoIterator<Item = &'static str>) -> Vec<String> {
    let mut tables: Vec<String> = tables.into_iter().map(String::from).collect();
    tables.sort();
    tables
}

/// The host writes and reads its own rows.
fn host_writes_and_reads(db: &TestDb, id: i64) {
    db.execute(&format!(
        "INSERT INTO users (id, name) VALUES ({id}, 'user {id}'); \
         INSERT INTO messages (id, user_id, body) VALUES ({id}, {id}, 'host message {id}'); \
         INSERT INTO conversations (id, topic) VALUES ({id}, 'host topic {id}')"
    ))
    .unwrap();
    let n = db
        .scalar(&format!(
            "SELECT count(*) AS n FROM messages m JOIN users u ON u.id = m.user_id \
             WHERE m.body = 'host message {id}'"
        ))
        .unwrap();
    assert_eq!(n, 1);
}

/// chatstore stores, reads and finds a conversation of `owner`'s.
fn chatstore_works(store: &ChatStore, owner: &UserId) -> ConversationId {
    let conv = store
        .create_conversation(owner, Some("shared db"))
        .unwrap()
        .id;
    store
        .append_messages(
            owner,
            conv,
            &[
                NewMessage::user("where do my oatmeal notes live"),
                NewMessage::assistant("in chatstore's own tables"),
            ],
        )
        .unwrap();
    let page = store.messages(owner, conv, Window::All).unwrap();
    assert_eq!(page.messages.len(), 2);
    let hits = store
        .search_messages(owner, &SearchQuery::new("oatmeal").in_conversation(conv))
        .unwrap()
        .hits;
    assert_eq!(hits.len(), 1);
    conv
}

fn host_migrations_first_then_chatstore(db: &TestDb) {
    assert_eq!(db.run_diesel_migrations(Fixture::HostApp), HOST);
    host_writes_and_reads(db, 1);

    let store = db.open();
    assert_eq!(store.migrations_applied_at_open(), CHATSTORE);
    assert!(store.verify_schema().unwrap().is_complete());
    chatstore_works(&store, &user("alice"));
    // Neither sees the other's versions: the host's newer version does not make chatstore refuse.
    assert_eq!(db.versions_in("__diesel_schema_migrations"), HOST);
    assert_eq!(db.versions_in("chatstore_schema_migrations"), CHATSTORE);
    drop(store);
    let store = db.open();
    assert!(store.migrations_applied_at_open().is_empty());
    assert!(db.run_diesel_migrations(Fixture::HostApp).is_empty());
    host_writes_and_reads(db, 2);
    assert_eq!(
        db.tables(),
        sorted(HOST_TABLES.into_iter().chain(chatstore_tables(db.kind)))
    );
}

fn chatstore_first_then_host_migrations(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = chatstore_works(&store, &alice);
    // The host's `messages`, `conversations` and index `messages_search` collide with nothing.
    assert_eq!(db.run_diesel_migrations(Fixture::HostApp), HOST);
    host_writes_and_reads(db, 1);
    assert_eq!(db.versions_in("__diesel_schema_migrations"), HOST);
    assert_eq!(db.versions_in("chatstore_schema_migrations"), CHATSTORE);
    drop(store);
    let store = db.open();
    assert!(store.migrations_applied_at_open().is_empty());
    assert!(store.verify_schema().unwrap().is_complete());
    assert_eq!(
        store
            .messages(&alice, conv, Window::All)
            .unwrap()
            .messages
            .len(),
        2
    );
}

fn host_and_chatstores_opening_at_once(db: &TestDb) {
    const STORES: usize = 3;
    let start = Arc::new(Barrier::new(STORES + 1));
    let host = {
        let (start, url, kind) = (start.clone(), db.url.clone(), db.kind);
        thread::spawn(move || {
            let db = TestDb::existing(kind, url);
            start.wait();
            db.run_diesel_migrations(Fixture::HostApp)
        })
    };
    let stores: Vec<_> = (0..STORES)
        .map(|_| {
            let (start, url) = (start.clone(), db.url.clone());
            thread::spawn(move || {
                start.wait();
                ChatStore::open(&url).map(|s| s.migrations_applied_at_open().to_vec())
            })
        })
        .collect();
    assert_eq!(host.join().unwrap(), HOST);
    let applied: Vec<Vec<String>> = stores
        .into_iter()
        .map(|s| s.join().unwrap().expect("chatstore opens beside the host"))
        .collect();
    // One store applied every migration; the others found them applied.
    assert_eq!(applied.iter().filter(|a| !a.is_empty()).count(), 1);
    assert!(applied.contains(&CHATSTORE.map(String::from).to_vec()));
    let store = db.open();
    assert!(store.verify_schema().unwrap().is_complete());
    chatstore_works(&store, &user("alice"));
    host_writes_and_reads(db, 1);
    assert_eq!(db.versions_in("__diesel_schema_migrations"), HOST);
    assert_eq!(db.versions_in("chatstore_schema_migrations"), CHATSTORE);
}

fn a_database_in_the_0_1_layout_is_upgraded_in_place(db: &TestDb) {
    let (alices, _) = database_in_the_0_1_layout(db);
    let (alice, bob) = (user("alice"), user("bob"));
    // Opening to verify changes nothing, and names every version as pending.
    let verify = ChatStore::builder(&db.url)
        .migrations(Migrations::Verify)
        .open()
        .unwrap_err();
    let mut pending = CHATSTORE.map(String::from).to_vec();
    pending.push("upgrade from the 0.1 layout".into());
    assert!(
        matches!(&verify, Error::MigrationsPending { pending: p } if *p == pending),
        "{verify:?}"
    );
    assert!(db.tables().contains(&"messages".to_owned()));

    let store = db.open();
    assert_eq!(store.migrations_applied_at_open(), CHATSTORE);
    assert!(store.verify_schema().unwrap().is_complete());
    // The 0.1 tables are gone, chatstore's versions moved, the host's row stayed.
    assert_eq!(
        db.tables(),
        sorted(
            ["__diesel_schema_migrations"]
                .into_iter()
                .chain(chatstore_tables(db.kind))
        )
    );
    assert_eq!(
        db.versions_in("__diesel_schema_migrations"),
        ["20250101000001"]
    );
    assert_eq!(db.versions_in("chatstore_schema_migrations"), CHATSTORE);
    // Every row moved, as it was.
    let page = store.messages(&alice, alices, Window::All).unwrap();
    let read: Vec<(i64, &str, &str)> = page
        .messages
        .iter()
        .map(|m| (m.seq, m.role.as_str(), m.content.as_str()))
        .collect();
    assert_eq!(
        read,
        [
            (1, "system", "be brief"),
            (2, "user", "buy oatmeal and 牛奶")
        ]
    );
    assert_eq!(
        page.messages[1].metadata,
        Some(serde_json::json!({"client": "web"}))
    );
    let list = store.list_conversations(&alice, Page::first(10)).unwrap();
    assert_eq!(list.conversations.len(), 1);
    assert_eq!(list.conversations[0].title.as_deref(), Some("groceries"));
    // The index holds the moved messages, each for its owner only.
    for (owner, word, expected) in [
        (&alice, "oatmeal", 1),
        (&alice, "牛奶", 1),
        (&bob, "oatmeal", 1),
    ] {
        let hits = store
            .search_messages(owner, &SearchQuery::new(word))
            .unwrap()
            .hits;
        assert_eq!(hits.len(), expected, "{word} for {owner:?}");
    }
    // Writes carry on where the history stopped.
    let stored = store
        .append_messages(&alice, alices, &[NewMessage::user("and eggs")])
        .unwrap();
    assert_eq!(stored[0].seq, 3);
    drop(store);
    assert!(db.open().migrations_applied_at_open().is_empty());
}

fn opening_to_verify_changes_nothing_and_names_the_pending_versions(db: &TestDb) {
    let verify = || {
        ChatStore::builder(&db.url)
            .migrations(Migrations::Verify)
            .open()
    };
    let before = existing_tables(db);
    match (db.kind, verify().unwrap_err()) {
        (Kind::SqliteFile, Error::DatabaseNotFound { path }) => {
            assert!(!std::path::Path::new(&path).exists(), "{path} was created");
        }
        (Kind::Postgres | Kind::Citus | Kind::Mysql, Error::MigrationsPending { pending }) => {
            assert_eq!(pending, CHATSTORE);
        }
        (_, other) => panic!("{other:?}"),
    }
    assert_eq!(existing_tables(db), before);

    drop(db.open());
    let store = verify().expect("an up-to-date schema opens");
    chatstore_works(&store, &user("alice"));
    drop(store);

    db.revert_newest_migration();
    let tables = existing_tables(db);
    match verify().unwrap_err() {
        Error::MigrationsPending { pending } => assert_eq!(pending, CHATSTORE[11..]),
        other => panic!("{other:?}"),
    }
    assert_eq!(existing_tables(db), tables);
    assert_eq!(
        db.versions_in("chatstore_schema_migrations"),
        CHATSTORE[..11]
    );
}

fn opening_to_skip_migrations_leaves_the_schema_alone(db: &TestDb) {
    let skip = || {
        ChatStore::builder(&db.url)
            .migrations(Migrations::Skip)
            .open()
    };
    if db.kind == Kind::SqliteFile {
        assert!(matches!(skip(), Err(Error::DatabaseNotFound { .. })));
    } else {
        // Opens on a database without chatstore's schema, which calls then find missing.
        let store = skip().expect("opens without looking at the schema");
        assert!(store.migrations_applied_at_open().is_empty());
        assert!(store.create_conversation(&user("alice"), None).is_err());
        assert!(db.tables().is_empty());
    }
    drop(db.open());
    // A pending migration is left pending.
    db.revert_newest_migration();
    let store = skip().unwrap();
    assert!(store.migrations_applied_at_open().is_empty());
    assert_eq!(
        db.versions_in("chatstore_schema_migrations"),
        CHATSTORE[..11]
    );
}

fn dropping_the_schema_removes_only_chatstores_tables(db: &TestDb) {
    db.run_diesel_migrations(Fixture::HostApp);
    host_writes_and_reads(db, 1);
    let store = db.open();
    chatstore_works(&store, &user("alice"));
    drop(store);

    ChatStore::builder(&db.url).drop_schema().unwrap();
    assert_eq!(db.tables(), sorted(HOST_TABLES));
    assert_eq!(db.versions_in("__diesel_schema_migrations"), HOST);
    host_writes_and_reads(db, 2);
    // Dropping what is not there is not an error.
    ChatStore::builder(&db.url).drop_schema().unwrap();

    let store = db.open();
    assert_eq!(store.migrations_applied_at_open(), CHATSTORE);
    assert!(store
        .list_conversations(&user("alice"), Page::first(10))
        .unwrap()
        .conversations
        .is_empty());
}

/// The id RawSql gives conversation `n`: every byte `n`.
fn conversation_id(n: u8) -> ConversationId {
    uuid::Uuid::from_bytes([n; 16]).to_string().parse().unwrap()
}

/// The database's tables, or `None` for a SQLite file that does not exist.
fn existing_tables(db: &TestDb) -> Option<Vec<String>> {
    match db.kind {
        Kind::SqliteFile
            if !std::path::Path::new(db.url.trim_start_matches("sqlite://")).exists() =>
        {
            None
        }
        _ => Some(db.tables()),
    }
}

/// Makes `db` a database as chatstore 0.1 left it, with a host's version beside chatstore's in
/// Diesel's table, two conversations (alice's with two messages, bob's with one) in its tables.
fn database_in_the_0_1_layout(db: &TestDb) -> (ConversationId, ConversationId) {
    // The database as chatstore 0.1 left it, with a host's version beside its own in Diesel's table.
    assert_eq!(db.run_diesel_migrations(Fixture::Layout01), LAYOUT_0_1);
    db.execute("INSERT INTO __diesel_schema_migrations (version) VALUES ('20250101000001')")
        .unwrap();
    let sql = RawSql::new(db);
    let old = |statement: String| statement.replace("INTO chatstore_", "INTO ");
    let alices = conversation_id(1);
    let bobs = conversation_id(2);
    let rows = [
        old(sql.conversation(1, "alice", Some("groceries"))),
        old(sql.conversation(2, "bob", None)),
        old(sql.message(
            alices,
            RawMessage {
                id: 11,
                seq: 1,
                role: "system",
                content: "be brief",
                ..Default::default()
            },
        )),
        old(sql.message(
            alices,
            RawMessage {
                id: 12,
                seq: 2,
                content: "buy oatmeal and 牛奶",
                metadata: Some(r#"{"client":"web"}"#),
                ..Default::default()
            },
        )),
        old(sql.message(
            bobs,
            RawMessage {
                id: 21,
                seq: 1,
                owner: "bob",
                content: "oatmeal for bob",
                ..Default::default()
            },
        )),
        "UPDATE conversations SET message_count = 2 WHERE user_id = 'alice'".into(),
        "UPDATE conversations SET message_count = 1 WHERE user_id = 'bob'".into(),
    ];
    for row in rows {
        db.execute(&row).unwrap_or_else(|e| panic!("{row}: {e}"));
    }

    (alices, bobs)
}

fn dropping_the_schema_of_a_0_1_database_removes_its_tables(db: &TestDb) {
    database_in_the_0_1_layout(db);
    ChatStore::builder(&db.url).drop_schema().unwrap();
    assert_eq!(db.tables(), ["__diesel_schema_migrations"]);
    assert_eq!(
        db.versions_in("__diesel_schema_migrations"),
        ["20250101000001"]
    );
    let store = db.open();
    assert_eq!(store.migrations_applied_at_open(), CHATSTORE);
    assert_eq!(store.stats().unwrap().conversations, 0);
}

fn chatstores_versions_in_diesels_table_do_not_make_a_hosts_tables_chatstores(db: &TestDb) {
    // A host with its own `conversations` and `messages`, and chatstore's 0.1 versions in Diesel's
    // table (as a host's tooling might have recorded them): no 0.1 layout to move or drop.
    db.run_diesel_migrations(Fixture::HostApp);
    host_writes_and_reads(db, 1);
    let versions: Vec<String> = LAYOUT_0_1
        .iter()
        .map(|v| format!("INSERT INTO __diesel_schema_migrations (version) VALUES ('{v}')"))
        .collect();
    db.execute(&versions.join(";\n")).unwrap();
    let store = db.open();
    assert_eq!(store.migrations_applied_at_open(), CHATSTORE);
    chatstore_works(&store, &user("alice"));
    assert_eq!(db.count_rows("messages"), Some(1));
    assert_eq!(db.count_rows("conversations"), Some(1));
    host_writes_and_reads(db, 2);
    assert_eq!(
        db.versions_in("__diesel_schema_migrations").len(),
        HOST.len() + 4
    );
    // Dropping chatstore's schema leaves them too.
    drop(store);
    ChatStore::builder(&db.url).drop_schema().unwrap();
    assert_eq!(db.tables(), sorted(HOST_TABLES));
    assert_eq!(db.count_rows("messages"), Some(2));
}

#[cfg(feature = "sqlite")]
#[test]
fn opening_a_sqlite_file_without_migrating_writes_nothing_to_it() {
    let db = TestDb::new(Kind::SqliteFile);
    db.run_diesel_migrations(Fixture::HostApp);
    let path = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
    let dir = path.parent().unwrap().to_owned();
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let (bytes, files) = (std::fs::read(&path).unwrap(), listing());
    for mode in [Migrations::Verify, Migrations::Skip] {
        let opened = ChatStore::builder(&db.url).migrations(mode).open();
        drop(opened);
    }
    assert!(ChatStore::builder(&db.url).drop_schema().is_ok());
    // Not switched to WAL, no lock file, not a byte changed.
    assert_eq!(listing(), files);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[cfg(feature = "sqlite")]
#[test]
fn dropping_the_schema_of_a_missing_sqlite_file_creates_nothing() {
    let db = TestDb::new(Kind::SqliteFile);
    let err = ChatStore::builder(&db.url).drop_schema().unwrap_err();
    assert!(matches!(err, Error::DatabaseNotFound { .. }), "{err:?}");
    assert_eq!(existing_tables(&db), None);
}
