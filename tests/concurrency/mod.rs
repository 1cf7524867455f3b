//! Threads and stores at once: appends racing each other get consecutive seqs, deletes racing
//! appends and reads count and read whole, and a connection lost to a panic loses nothing.

use std::sync::{Arc, Barrier};
use std::thread;

use chatstore::{ChatStore, ConversationId, Error, NewMessage, UserId, Window};

use crate::support::{
    backend_tests, contents, conversation_with, expected, seqs, snapshot, user, TestDb,
};

backend_tests! {
    every: [
        concurrent_appends_get_consecutive_seqs,
        delete_user_data_counts_exactly_while_appends_race,
        a_connection_the_pool_discards_loses_nothing,
        a_read_racing_a_delete_sees_all_or_not_found,
    ],
    persistent: [
        appends_through_several_stores_get_consecutive_seqs,
    ],
}

fn concurrent_appends_get_consecutive_seqs(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (store, alice, barrier) = (store.clone(), alice.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                (0..100)
                    .map(|i| {
                        let text = format!("t{t}-{i}");
                        store
                            .append_message(&alice, conv, NewMessage::user(&text))
                            .unwrap()
                            .seq
                    })
                    .collect::<Vec<i64>>()
            })
        })
        .collect();
    let per_thread: Vec<Vec<i64>> = handles.into_iter().map(|h| h.join().unwrap()).collect();

    let page = store.messages(&alice, conv, Window::All).unwrap();
    assert_eq!(seqs(&page.messages), (1..=800).collect::<Vec<i64>>());
    assert_eq!(page.total, 800);
    assert!(
        page.messages
            .windows(2)
            .all(|w| w[0].created_at <= w[1].created_at),
        "time never runs backwards along seq"
    );
    let mut returned: Vec<i64> = per_thread.iter().flatten().copied().collect();
    returned.sort_unstable();
    assert_eq!(
        returned,
        (1..=800).collect::<Vec<i64>>(),
        "each append got its own seq"
    );
    for (t, thread_seqs) in per_thread.iter().enumerate() {
        assert!(
            thread_seqs.windows(2).all(|w| w[0] < w[1]),
            "a thread's appends stay in order"
        );
        for (i, seq) in thread_seqs.iter().enumerate() {
            assert_eq!(
                page.messages[*seq as usize - 1].content,
                format!("t{t}-{i}")
            );
        }
    }
}

/// Several stores on one database stand for several processes: each has its own pool (and, on
/// SQLite, its own writer queue), so they meet only in the database's locks.
fn appends_through_several_stores_get_consecutive_seqs(db: &TestDb) {
    const STORES: usize = 3;
    const THREADS: usize = 3;
    const APPENDS: usize = 60;
    let stores: Vec<ChatStore> = (0..STORES).map(|_| db.open()).collect();
    let alice = user("alice");
    let conv = stores[0].create_conversation(&alice, None).unwrap().id;
    let barrier = Arc::new(Barrier::new(STORES * THREADS));
    let handles: Vec<_> = (0..STORES * THREADS)
        .map(|t| {
            let (store, alice) = (stores[t % STORES].clone(), alice.clone());
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..APPENDS {
                    let batch = [NewMessage::user("a"), NewMessage::assistant("b")];
                    let appended = store.append_messages(&alice, conv, &batch).unwrap();
                    assert_eq!(
                        appended[0].seq + 1,
                        appended[1].seq,
                        "a batch stays together"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total = (STORES * THREADS * APPENDS * 2) as i64;
    let page = stores[1].messages(&alice, conv, Window::All).unwrap();
    assert_eq!(seqs(&page.messages), (1..=total).collect::<Vec<i64>>());
    assert!(page
        .messages
        .chunks(2)
        .all(|pair| pair[0].content == "a" && pair[1].content == "b"));
}

fn delete_user_data_counts_exactly_while_appends_race(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let convs: Vec<ConversationId> = (0..4)
        .map(|_| store.create_conversation(&alice, None).unwrap().id)
        .collect();
    let (warmed_up, started) = std::sync::mpsc::channel();
    let writers: Vec<_> = convs
        .iter()
        .map(|&conv| {
            let (store, alice, warmed_up) = (store.clone(), alice.clone(), warmed_up.clone());
            thread::spawn(move || -> Result<u64, Error> {
                // Bounded, so that a failed delete cannot leave them running.
                for appended in 0..100_000u64 {
                    if appended == 10 {
                        warmed_up.send(()).unwrap();
                    }
                    match store.append_message(&alice, conv, NewMessage::user("x")) {
                        Ok(_) => {}
                        Err(Error::NotFound) => return Ok(appended),
                        Err(e) => return Err(e),
                    }
                }
                Ok(100_000)
            })
        })
        .collect();
    drop(warmed_up);
    for _ in &convs {
        // A writer that failed early drops its sender: this fails instead of waiting forever.
        started.recv().expect("every writer appends ten messages");
    }
    // The writers are still appending while their conversations are deleted.
    let counts = store
        .delete_user_data(&alice)
        .expect("delete while writers append");
    let appended: u64 = writers
        .into_iter()
        .map(|w| w.join().unwrap().expect("append"))
        .sum();
    assert_eq!(counts.conversations, 4);
    assert_eq!(
        counts.messages, appended,
        "every message that was stored is counted"
    );
    if let Some(rows) = db.count_rows("chatstore_messages") {
        assert_eq!(rows, 0);
    }
}

fn a_connection_the_pool_discards_loses_nothing(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 2);
    // The pool discards a connection returned by a panicking thread. For in-memory SQLite that
    // connection used to be the whole database.
    struct CallWhileUnwinding(ChatStore, UserId, ConversationId);
    impl Drop for CallWhileUnwinding {
        fn drop(&mut self) {
            assert_eq!(
                self.0.conversation(&self.1, self.2).unwrap().message_count,
                2
            );
        }
    }
    let probe = CallWhileUnwinding(store.clone(), alice.clone(), conv);
    let unwound = thread::spawn(move || {
        let _probe = probe;
        panic!("deliberate panic: a store call during unwinding");
    })
    .join();
    assert!(unwound.is_err());
    assert_eq!(snapshot(&store, &alice, conv).0, 2);
    store
        .append_message(&alice, conv, NewMessage::user("m3"))
        .unwrap();
    assert_eq!(
        contents(&store.messages(&alice, conv, Window::All).unwrap().messages),
        expected(1..=3)
    );
}

fn a_read_racing_a_delete_sees_all_or_not_found(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    for _ in 0..5 {
        let conv = conversation_with(&store, &alice, 200);
        let (reading, started) = std::sync::mpsc::channel();
        let reader = {
            let (store, alice) = (store.clone(), alice.clone());
            thread::spawn(move || {
                for reads in 0.. {
                    if reads == 3 {
                        reading.send(()).unwrap();
                    }
                    match store.messages(&alice, conv, Window::Latest(50)) {
                        Ok(page) => assert_eq!((page.messages.len(), page.total), (50, 200)),
                        Err(Error::NotFound) => return,
                        Err(e) => panic!("read failed: {e}"),
                    }
                }
            })
        };
        started.recv().unwrap();
        store.delete_conversation(&alice, conv).unwrap();
        reader.join().expect("every read is whole or NotFound");
    }
}

#[test]
fn stores_and_errors_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<ChatStore>();
    assert_send_sync::<Error>();
}
