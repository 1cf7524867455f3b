//! PostgreSQL: a server that is unreachable, silent or busy migrating, and connections the server
//! terminates.

#![cfg(feature = "postgres")]

use std::thread;
use std::time::Duration;

use chatstore::{ChatStore, Error, NewMessage, Window};

use crate::support::{contents, conversation_with, expected, user, Kind, TestDb};

#[test]
fn an_unreachable_postgres_server_fails_open_with_the_real_error() {
    // Port 1 on loopback: nothing listens there.
    let err =
        ChatStore::open("postgres://postgres@127.0.0.1:1/test?connect_timeout=2").unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
}

#[test]
fn postgres_open_waits_for_another_migrator_at_most_the_connection_timeout() {
    let db = TestDb::new(Kind::Postgres);
    // The advisory lock chatstore's migration run takes ("chatstor").
    let key = 0x6368_6174_7374_6f72_i64;
    {
        let _migrating = db.hold(&format!("BEGIN; SELECT pg_advisory_xact_lock({key})"));
        let err = ChatStore::builder(db.url.clone())
            .connection_timeout(Duration::from_millis(300))
            .open()
            .unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err:?}");
    }
    assert!(db.open().verify_schema().unwrap().is_complete());
}

#[test]
fn postgres_open_gives_up_on_a_server_that_never_answers() {
    // Accepts the TCP connection (the kernel does) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let (done, outcome) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let opened = ChatStore::builder(url)
            .connection_timeout(Duration::from_secs(1))
            .open();
        let _ = done.send(opened.map(drop));
    });
    let outcome = outcome
        .recv_timeout(Duration::from_secs(60))
        .expect("open gives up instead of waiting forever");
    assert!(matches!(outcome, Err(Error::Connect(_))), "{outcome:?}");
}

#[test]
fn postgres_a_terminated_connection_is_replaced_without_reopening() {
    a_terminated_connection_is_replaced_without_reopening(Kind::Postgres);
}

#[cfg(feature = "citus")]
#[test]
fn citus_a_terminated_connection_is_replaced_without_reopening() {
    a_terminated_connection_is_replaced_without_reopening(Kind::Citus);
}

fn a_terminated_connection_is_replaced_without_reopening(kind: Kind) {
    let db = TestDb::new(kind);
    // One connection, so none is being made in the background while the server kills them.
    let store = ChatStore::builder(db.url.clone())
        .pool_size(1)
        .open()
        .unwrap();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 2);
    // What a failover or an administrator does: every server process of the store goes away
    // (the timeout makes the call wait until they have).
    db.execute(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .unwrap();
    let mut lost = 0;
    let page = loop {
        match store.messages(&alice, conv, Window::All) {
            Ok(page) => break page,
            // Each pooled connection fails once, as ConnectionLost, and is then dropped.
            Err(Error::ConnectionLost(e)) => {
                lost += 1;
                assert!(
                    lost <= 10,
                    "the pool keeps handing out a dead connection: {e}"
                );
            }
            Err(e) => panic!("expected ConnectionLost, got {e:?}"),
        }
    };
    assert!(lost >= 1, "the call in flight saw the connection go");
    assert_eq!(contents(&page.messages), expected(1..=2));
    store
        .append_message(&alice, conv, NewMessage::user("m3"))
        .unwrap();
    assert_eq!(store.conversation(&alice, conv).unwrap().message_count, 3);
}
