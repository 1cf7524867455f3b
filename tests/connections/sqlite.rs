//! SQLite: the URL forms of one file and of in-memory databases, options out of range, and a
//! writer locked out by another process.

#![cfg(feature = "sqlite")]

use std::time::Duration;

use chatstore::{ChatStore, Error, NewMessage, Page};

use crate::support::{conversation_with, snapshot, user, Kind, TestDb};

#[test]
fn sqlite_a_writer_locked_out_past_the_busy_timeout_gets_busy() {
    let db = TestDb::new(Kind::SqliteFile);
    let store = ChatStore::builder(db.url.clone())
        .busy_timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 1);
    let before = snapshot(&store, &alice, conv);
    {
        let _other_process = db.hold("BEGIN IMMEDIATE");
        let err = store
            .append_message(&alice, conv, NewMessage::user("x"))
            .unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err:?}");
        let err = store.create_conversation(&alice, None).unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err:?}");
        assert_eq!(
            snapshot(&store, &alice, conv),
            before,
            "reads go on meanwhile"
        );
    }
    store
        .append_message(&alice, conv, NewMessage::user("m2"))
        .unwrap();
    assert_eq!(snapshot(&store, &alice, conv).0, 2);
}

#[test]
fn out_of_range_options_are_clamped_not_fatal() {
    let builders = [
        ChatStore::builder(":memory:").pool_size(0),
        ChatStore::builder(":memory:").pool_size(u32::MAX),
        ChatStore::builder(":memory:").connection_timeout(Duration::ZERO),
        ChatStore::builder(":memory:").connection_timeout(Duration::MAX),
        ChatStore::builder(":memory:").busy_timeout(Duration::MAX),
        ChatStore::builder(":memory:").max_page_size(0),
    ];
    let alice = user("alice");
    for builder in builders {
        let store = builder.open().unwrap();
        let conv = store.create_conversation(&alice, None).unwrap();
        store
            .append_message(&alice, conv.id, NewMessage::user("hi"))
            .unwrap();
        assert_eq!(
            store
                .list_conversations(&alice, Page::first(5))
                .unwrap()
                .conversations
                .len(),
            1
        );
    }
}

#[test]
fn sqlite_url_forms_open_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forms.db");
    let alice = user("alice");
    let conv = ChatStore::open(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_conversation(&alice, None)
        .unwrap();
    for url in [
        path.display().to_string(),
        format!("sqlite:{}", path.display()),
        format!("SQLite://{}", path.display()),
        format!("file:{}?mode=rw", path.display()),
    ] {
        assert_eq!(
            ChatStore::open(&url)
                .unwrap()
                .conversation(&alice, conv.id)
                .unwrap()
                .id,
            conv.id
        );
    }
    let mut in_memory = Vec::new();
    for url in [
        ":memory:",
        "sqlite::memory:",
        "sqlite://:memory:",
        "SQLite::memory:",
        "SQLITE://:memory:",
        ":memory:",
    ] {
        let store = ChatStore::open(url).unwrap();
        assert!(
            matches!(store.conversation(&alice, conv.id), Err(Error::NotFound)),
            "{url}"
        );
        in_memory.push((store.create_conversation(&alice, None).unwrap().id, store));
    }
    for (id, store) in &in_memory {
        let page = store.list_conversations(&alice, Page::first(10)).unwrap();
        let ids: Vec<_> = page.conversations.iter().map(|c| c.id).collect();
        assert_eq!(ids, [*id], "each in-memory store is a database of its own");
    }
}

/// The writers' queue of a SQLite file is `<file>-chatstore.lock` beside it, whichever way the URL
/// names the file; an in-memory database has none.
#[cfg(target_os = "linux")]
#[test]
fn sqlite_a_file_gets_its_lock_file_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let lock = dir.path().join("chat.db-chatstore.lock");
    let alice = user("alice");
    let store = ChatStore::open(&format!("sqlite://{}", path.display())).unwrap();
    store.create_conversation(&alice, None).unwrap();
    assert!(lock.is_file());
    drop(store);
    std::fs::remove_file(&lock).unwrap();
    let store = ChatStore::open(&format!("file:{}?mode=rw", path.display())).unwrap();
    store.create_conversation(&alice, None).unwrap();
    assert!(lock.is_file(), "a file: URI finds the same lock file");
}

/// A read-only URI makes no lock file; one that cannot be opened (here a directory of that name,
/// which even root cannot open as a file) leaves the writers to SQLite's busy handler, as before:
/// opening and writing work all the same.
#[test]
fn sqlite_without_a_lock_file_the_store_opens_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let lock = dir.path().join("chat.db-chatstore.lock");
    let alice = user("alice");
    let conv = ChatStore::open(&path.display().to_string())
        .unwrap()
        .create_conversation(&alice, None)
        .unwrap()
        .id;
    let _ = std::fs::remove_file(&lock);
    let read_only = ChatStore::open(&format!("file:{}?mode=ro", path.display())).unwrap();
    assert_eq!(read_only.conversation(&alice, conv).unwrap().id, conv);
    assert!(!lock.exists(), "a read-only store writes no file");
    std::fs::create_dir(&lock).unwrap();
    let stores = [
        ChatStore::open(&path.display().to_string()).unwrap(),
        ChatStore::open(&path.display().to_string()).unwrap(),
    ];
    for store in &stores {
        store
            .append_message(&alice, conv, NewMessage::user("no queue"))
            .unwrap();
    }
    assert_eq!(snapshot(&stores[0], &alice, conv).0, 2);
}
