//! Connection faults on the servers: the server terminates the store's connections again and again
//! while threads append and read (what a failover or an administrator does). The calls in flight get
//! `ConnectionLost` and nothing else; retried with their client ids, every message is stored exactly
//! once and in order; and once the faults stop, the same store works without being reopened.

#![cfg(any(feature = "postgres", feature = "mysql"))]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use chatstore::{Error, Message, MessageId, NewMessage, UserId, Window};

use super::{random_below, slow};
use crate::support::{Kind, TestDb};

const WRITERS: usize = 3;

/// Retries `call` while it fails with `ConnectionLost`, counting the failures; any other error
/// fails the test.
fn until_ok<T>(lost: &AtomicUsize, mut call: impl FnMut() -> Result<T, Error>) -> T {
    loop {
        match call() {
            Ok(value) => return value,
            Err(Error::ConnectionLost(_)) => {
                lost.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("only ConnectionLost may reach a caller here, got {e:?}"),
        }
    }
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_terminated_connections_fail_only_calls_in_flight_and_lose_nothing() {
    terminated_connections_fail_only_calls_in_flight_and_lose_nothing(Kind::Postgres);
}

/// On Citus the store's connections are the coordinator's: a call in flight loses its
/// coordinator backend, and with it the distributed transaction on the worker.
#[cfg(feature = "citus")]
#[test]
fn citus_terminated_connections_fail_only_calls_in_flight_and_lose_nothing() {
    terminated_connections_fail_only_calls_in_flight_and_lose_nothing(Kind::Citus);
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_killed_connections_fail_only_calls_in_flight_and_lose_nothing() {
    terminated_connections_fail_only_calls_in_flight_and_lose_nothing(Kind::Mysql);
}

fn terminated_connections_fail_only_calls_in_flight_and_lose_nothing(kind: Kind) {
    let db = TestDb::new(kind);
    let store = db.open();
    let alice = UserId::new("alice").unwrap();
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let rounds = if slow() { 300 } else { 40 };
    let faults_over = Arc::new(AtomicBool::new(false));
    let lost = Arc::new(AtomicUsize::new(0));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, alice, over, lost) = (
                store.clone(),
                alice.clone(),
                faults_over.clone(),
                lost.clone(),
            );
            thread::spawn(move || {
                let mut stored: Vec<Message> = Vec::new();
                // Writes through the whole fault period, and a few after it.
                while !over.load(Ordering::Relaxed) || stored.len() < 20 {
                    let text = format!("w{w} {}", stored.len());
                    let id = MessageId::from(uuid::Uuid::now_v7());
                    let message = NewMessage::user(&text).with_id(id);
                    // A call that lost its connection at COMMIT may have committed: the retry
                    // with the same id tells.
                    let m = until_ok(&lost, || {
                        store.append_message(&alice, conv, message.clone())
                    });
                    assert_eq!((m.id, &m.content), (id, &text));
                    stored.push(m);
                }
                stored
            })
        })
        .collect();
    let reader = {
        let (store, alice, over, lost) = (
            store.clone(),
            alice.clone(),
            faults_over.clone(),
            lost.clone(),
        );
        thread::spawn(move || {
            let mut reads = 0;
            while !over.load(Ordering::Relaxed) {
                let page = until_ok(&lost, || store.messages(&alice, conv, Window::Latest(20)));
                assert!(page.messages.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
                reads += 1;
            }
            reads
        })
    };

    // The faults: every server process of the store's database, killed, `rounds` times.
    let mut terminated = 0;
    for _ in 0..rounds {
        terminated += db.terminate_other_connections();
        thread::sleep(Duration::from_millis(1 + random_below(20)));
    }
    faults_over.store(true, Ordering::Relaxed);
    let per_writer: Vec<Vec<Message>> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    let reads = reader.join().unwrap();

    let lost = lost.load(Ordering::Relaxed);
    assert!(
        terminated > 0 && lost > 0,
        "{terminated} connections terminated, {lost} calls lost theirs"
    );
    assert!(reads > 0);
    // Exactly once, in order: the history is the writers' messages, each once, each writer's in the
    // order it appended them, with no gap in seq.
    let page = store.messages(&alice, conv, Window::All).unwrap();
    let written: usize = per_writer.iter().map(Vec::len).sum();
    assert_eq!(page.total as usize, written, "no message lost or doubled");
    assert!(page.messages.iter().zip(1..).all(|(m, seq)| m.seq == seq));
    for (w, stored) in per_writer.iter().enumerate() {
        let in_history: Vec<&Message> = page
            .messages
            .iter()
            .filter(|m| m.content.starts_with(&format!("w{w} ")))
            .collect();
        assert_eq!(in_history.len(), stored.len());
        for (a, b) in in_history.iter().zip(stored) {
            assert_eq!(*a, b, "what the call returned is what is stored");
        }
    }

    // The faults are over: the store carries on without being reopened. A connection that died
    // idle in the pool fails one call before it is replaced, so a few losses may still show.
    let lost_after = AtomicUsize::new(0);
    for i in 0..50 {
        let text = format!("after {i}");
        until_ok(&lost_after, || {
            store.append_message(&alice, conv, NewMessage::user(&text))
        });
    }
    assert!(
        lost_after.load(Ordering::Relaxed) <= chatstore::StoreBuilder::DEFAULT_POOL_SIZE as usize,
        "each dead pooled connection fails at most one call"
    );
    assert_eq!(
        store.conversation(&alice, conv).unwrap().message_count as usize,
        written + 50
    );
}
