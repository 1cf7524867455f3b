//! SQLite: the URL forms of one file and of in-memory databases, options out of range, and a
//! writer locked out by another process.

#![cfg(feature = "sqlite")]

use std::time::Duration;

use chatstore::{ChatStore, Error, NewMessage, Page, Window};

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

/// The SQLite parameters of sqlx's and SQLite's URL forms, with their meaning: `mode=rwc` (the
/// default) creates, `rw` and `ro` need the file, and neither creates it; `sqlite://` paths are
/// percent-decoded, so a name with `?`, `%` or `:` can be given.
#[test]
fn sqlite_url_modes_open_as_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let alice = user("alice");
    let path = dir.path().join("modes.db");
    let url = |form: &str| format!("{form}{}", path.display());

    for (form, mode) in [
        ("sqlite://", "rw"),
        ("sqlite:", "ro"),
        ("file:", "rw"),
        ("file:", "ro"),
    ] {
        let err = ChatStore::open(&format!("{}?mode={mode}", url(form))).unwrap_err();
        assert!(matches!(err, Error::Connect(_)), "{form} {mode}: {err:?}");
        assert!(!path.exists(), "mode={mode} created the file");
    }
    let conv = ChatStore::open(&format!("{}?mode=rwc", url("sqlite://")))
        .unwrap()
        .create_conversation(&alice, None)
        .unwrap()
        .id;
    for opened in [
        format!("{}?mode=rw", url("sqlite://")),
        format!("{}?mode=rw&cache=private", url("sqlite:")),
        format!("{}?cache=private&mode=rwc#fragment", url("file:")),
        format!("{}?immutable=0", url("sqlite://")),
    ] {
        let store = ChatStore::open(&opened).unwrap();
        store
            .append_message(&alice, conv, NewMessage::user(opened.clone()))
            .unwrap();
    }
    assert_eq!(
        ChatStore::open(&url(""))
            .unwrap()
            .conversation(&alice, conv)
            .unwrap()
            .message_count,
        4
    );

    // Names a URI would misread: percent-encoded in a sqlite:// URL, as they are in a bare path.
    for (encoded, name) in [
        ("a%3Fb%25c%23.db", "a?b%c#.db"),
        ("my:chat.db", "my:chat.db"),
    ] {
        let store = ChatStore::open(&format!("sqlite://{}/{encoded}", dir.path().display()));
        store.unwrap().create_conversation(&alice, None).unwrap();
        assert!(dir.path().join(name).is_file(), "{name}");
    }
    let bare = dir.path().join("bare:name.db");
    ChatStore::open(&bare.display().to_string()).unwrap();
    assert!(bare.is_file(), "a bare path with a colon is a file");
}

/// A store opened with `mode=ro` or `immutable=1` reads, and refuses every write with
/// `Error::ReadOnly` before the database is asked; the file is left as it was.
#[test]
fn sqlite_a_read_only_store_reads_and_refuses_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("read-only.db");
    let alice = user("alice");
    let conv = {
        let writer = ChatStore::open(&path.display().to_string()).unwrap();
        conversation_with(&writer, &alice, 3)
    };
    let before = std::fs::read(&path).unwrap();
    for url in [
        format!("sqlite://{}?mode=ro", path.display()),
        format!("file:{}?mode=ro", path.display()),
        format!("file:{}?immutable=1", path.display()),
        format!("sqlite:{}?mode=rw&immutable=true", path.display()),
    ] {
        let store = ChatStore::open(&url).unwrap_or_else(|e| panic!("{url}: {e:?}"));
        assert_eq!(snapshot(&store, &alice, conv).0, 3, "{url}");
        let page = store.messages(&alice, conv, Window::Latest(2)).unwrap();
        assert_eq!(page.messages.len(), 2);
        let conversation = store.conversation(&alice, conv).unwrap();
        let messages = snapshot(&store, &alice, conv).1;
        let refusals = [
            store.create_conversation(&alice, None).map(drop),
            store
                .append_message(&alice, conv, NewMessage::user("no"))
                .map(drop),
            store
                .append_if_last_seq(&alice, conv, 3, &[NewMessage::user("no")])
                .map(drop),
            store
                .rename_conversation(&alice, conv, Some("no"))
                .map(drop),
            store.delete_conversation(&alice, conv),
            store.delete_user_data(&alice).map(drop),
            store.import_conversation(&alice, &conversation, &messages),
        ];
        for refused in refusals {
            let err = refused.unwrap_err();
            assert!(
                matches!(err, Error::ReadOnly { source: None }),
                "{url}: {err:?}"
            );
            assert!(!err.is_retryable() && !err.is_invalid_input() && !err.is_conflict());
        }
        assert_eq!(store.stats().unwrap().messages, 3);
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file is unchanged"
    );
}

/// `mode=memory` names an in-memory database shared by the stores of this process that name
/// it, as long as one of them is open; `:memory:` stays private to its store.
#[test]
fn sqlite_a_named_in_memory_database_is_shared_within_the_process() {
    let alice = user("alice");
    let name = format!("chatstore-test-{}", uuid::Uuid::now_v7().simple());
    let first = ChatStore::open(&format!("sqlite://{name}?mode=memory")).unwrap();
    let conv = first.create_conversation(&alice, None).unwrap().id;
    let second = ChatStore::open(&format!("file:{name}?mode=memory&cache=shared")).unwrap();
    assert_eq!(second.conversation(&alice, conv).unwrap().id, conv);
    assert!(!std::path::Path::new(&name).exists(), "no file is made");
    for private in [
        "sqlite::memory:?cache=shared",
        "file::memory:",
        "sqlite://:memory:?mode=memory",
    ] {
        let store = ChatStore::open(private).unwrap();
        assert!(
            matches!(store.conversation(&alice, conv), Err(Error::NotFound)),
            "{private}"
        );
    }
}
