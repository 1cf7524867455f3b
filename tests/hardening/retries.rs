//! Safe retries by client-supplied message ids, and optimistic concurrency by stated last seq.

use std::sync::{Arc, Barrier};
use std::thread;

use chatstore::{ChatStore, ConversationId, Error, MessageId, NewMessage, UserId, Window};
use serde_json::json;

#[cfg(any(feature = "postgres", feature = "mysql"))]
use crate::support::Kind;
use crate::support::{backend_tests, user, TestDb};

backend_tests! {
    every: [
        a_retried_batch_returns_the_stored_messages_and_writes_nothing,
        a_client_id_taken_by_a_different_message_is_refused,
        a_retry_into_another_users_conversation_is_not_found,
        another_users_conversation_answers_as_a_missing_one_whatever_the_ids,
        concurrent_retries_of_one_message_store_it_once,
        a_stale_last_seq_conflicts_and_writes_nothing,
        writers_that_state_the_last_seq_never_interleave,
    ],
    persistent: [
        concurrent_retries_of_one_batch_through_two_stores_store_it_once,
    ],
}

fn new_id() -> MessageId {
    MessageId::from(uuid::Uuid::now_v7())
}

/// Everything a caller can observe of a conversation: a refused write must leave it as it was.
fn state(
    store: &ChatStore,
    owner: &UserId,
    conv: ConversationId,
) -> impl PartialEq + std::fmt::Debug {
    let c = store.conversation(owner, conv).unwrap();
    let messages = store.messages(owner, conv, Window::All).unwrap().messages;
    (c.message_count, c.updated_at, messages)
}

fn a_retried_batch_returns_the_stored_messages_and_writes_nothing(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_message(&alice, conv, NewMessage::user("before"))
        .unwrap();
    let call = json!({"tool_calls": [{"id": "call_1"}]});
    let (a, b, c) = (new_id(), new_id(), new_id());
    let batch = [
        NewMessage::user("add milk").with_id(a),
        NewMessage::assistant("").with_metadata(&call).with_id(b),
        NewMessage::tool("added").with_id(c),
    ];
    let first = store.append_messages(&alice, conv, &batch).unwrap();
    assert_eq!(
        first.iter().map(|m| (m.id, m.seq)).collect::<Vec<_>>(),
        [(a, 2), (b, 3), (c, 4)],
        "the client's ids are the stored ids"
    );
    let after_first = state(&store, &alice, conv);

    for _ in 0..3 {
        assert_eq!(store.append_messages(&alice, conv, &batch).unwrap(), first);
    }
    // One message of it, retried alone, is that message.
    let single = store
        .append_message(&alice, conv, batch[1].clone())
        .unwrap();
    assert_eq!(single, first[1]);
    // A retry stating the last seq it saw before the first attempt is still a retry.
    assert_eq!(
        store.append_if_last_seq(&alice, conv, 1, &batch).unwrap(),
        first
    );
    assert_eq!(
        state(&store, &alice, conv),
        after_first,
        "retries wrote nothing"
    );

    // A new message after the retries continues the history.
    let next = store
        .append_message(&alice, conv, NewMessage::user("next").with_id(new_id()))
        .unwrap();
    assert_eq!(next.seq, 5);
}

fn a_client_id_taken_by_a_different_message_is_refused(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let other = store.create_conversation(&alice, None).unwrap().id;
    let taken = new_id();
    store
        .append_message(&alice, conv, NewMessage::user("hello").with_id(taken))
        .unwrap();
    let before = (state(&store, &alice, conv), state(&store, &alice, other));

    let meta = json!({"k": 1});
    let refused: Vec<(&str, ConversationId, Vec<NewMessage>)> = vec![
        (
            "another conversation",
            other,
            vec![NewMessage::user("hello").with_id(taken)],
        ),
        (
            "other content",
            conv,
            vec![NewMessage::user("hello!").with_id(taken)],
        ),
        (
            "other role",
            conv,
            vec![NewMessage::assistant("hello").with_id(taken)],
        ),
        (
            "other metadata",
            conv,
            vec![NewMessage::user("hello")
                .with_metadata(&meta)
                .with_id(taken)],
        ),
        (
            "a batch only partly stored",
            conv,
            vec![
                NewMessage::user("hello").with_id(taken),
                NewMessage::user("new").with_id(new_id()),
            ],
        ),
        (
            "a batch with one id stored in another conversation",
            other,
            vec![
                NewMessage::user("new").with_id(new_id()),
                NewMessage::user("hello").with_id(taken),
            ],
        ),
        (
            "a stored id after a new one",
            conv,
            vec![
                NewMessage::user("new").with_id(new_id()),
                NewMessage::user("hello").with_id(taken),
            ],
        ),
        (
            "a batch with a message without an id",
            conv,
            vec![
                NewMessage::user("hello").with_id(taken),
                NewMessage::user("no id"),
            ],
        ),
    ];
    for (case, target, batch) in refused {
        match store.append_messages(&alice, target, &batch) {
            Err(Error::DuplicateId(id)) => assert_eq!(id, taken, "{case}"),
            other => panic!("{case}: expected DuplicateId, got {other:?}"),
        }
    }
    // The same new id twice in one batch: refused before anything is read.
    let twice = new_id();
    let batch = [
        NewMessage::user("x").with_id(twice),
        NewMessage::user("x").with_id(twice),
    ];
    assert!(matches!(
        store.append_messages(&alice, conv, &batch),
        Err(Error::DuplicateId(id)) if id == twice
    ));
    assert_eq!(
        (state(&store, &alice, conv), state(&store, &alice, other)),
        before,
        "nothing was written"
    );
}

fn a_retry_into_another_users_conversation_is_not_found(db: &TestDb) {
    let store = db.open();
    let (alice, mallory) = (user("alice"), user("mallory"));
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let id = new_id();
    let message = NewMessage::user("secret").with_id(id);
    store.append_message(&alice, conv, message.clone()).unwrap();
    let before = state(&store, &alice, conv);
    // Knowing the conversation and the message, mallory still gets nothing back.
    assert!(matches!(
        store.append_message(&mallory, conv, message.clone()),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.append_if_last_seq(&mallory, conv, 1, std::slice::from_ref(&message)),
        Err(Error::NotFound)
    ));
    // Into mallory's own conversation, the id is simply taken where ids are unique across owners;
    // on PostgreSQL they are unique per owner, and mallory's message is his own.
    let own = store.create_conversation(&mallory, None).unwrap().id;
    let appended = store.append_message(&mallory, own, message);
    if db.kind.ids_per_owner() {
        let stored = appended.unwrap();
        assert_eq!((stored.id, stored.conversation_id), (id, own));
        let read = store.messages(&mallory, own, Window::All).unwrap();
        assert_eq!(read.messages, [stored]);
    } else {
        assert!(matches!(appended, Err(Error::DuplicateId(_))));
        assert_eq!(store.conversation(&mallory, own).unwrap().message_count, 0);
    }
    assert_eq!(state(&store, &alice, conv), before);
}

/// A user who learned one of alice's message ids, and which conversation holds it, cannot tell
/// that conversation from one that does not exist: with that id (alone, in a batch, with a stated
/// last seq) both answer `NotFound`, word for word. Only in the user's own conversation is the id
/// reported as taken, as it would be whoever held it.
fn another_users_conversation_answers_as_a_missing_one_whatever_the_ids(db: &TestDb) {
    let store = db.open();
    let (alice, mallory) = (user("alice"), user("mallory"));
    let theirs = store.create_conversation(&alice, None).unwrap().id;
    let id = new_id();
    let known = NewMessage::user("secret").with_id(id);
    store.append_message(&alice, theirs, known.clone()).unwrap();
    let before = state(&store, &alice, theirs);
    let missing = ConversationId::from(uuid::Uuid::now_v7());
    let attempts = |conv: ConversationId| {
        let other = NewMessage::user("other").with_id(id);
        [
            store
                .append_message(&mallory, conv, known.clone())
                .map(drop),
            store
                .append_message(&mallory, conv, other.clone())
                .map(drop),
            store
                .append_messages(
                    &mallory,
                    conv,
                    &[NewMessage::user("x").with_id(new_id()), other.clone()],
                )
                .map(drop),
            store
                .append_if_last_seq(&mallory, conv, 1, std::slice::from_ref(&known))
                .map(drop),
            store
                .append_if_last_seq(&mallory, conv, 0, &[other])
                .map(drop),
        ]
        .map(|result| format!("{:?}", result.unwrap_err()))
    };
    let into_theirs = attempts(theirs);
    let into_missing = attempts(missing);
    assert_eq!(into_theirs, into_missing);
    for answer in &into_theirs {
        assert_eq!(answer, &format!("{:?}", Error::NotFound));
    }
    // Where ids are unique across owners, the id is taken in mallory's own conversation too;
    // where they are unique per owner (PostgreSQL), it is free there.
    let own = store.create_conversation(&mallory, None).unwrap().id;
    if db.kind.ids_per_owner() {
        let stored = store.append_message(&mallory, own, known).unwrap();
        assert_eq!((stored.id, stored.conversation_id), (id, own));
        assert_eq!(store.conversation(&mallory, own).unwrap().message_count, 1);
    } else {
        for answer in attempts(own) {
            assert_eq!(answer, format!("{:?}", Error::DuplicateId(id)));
        }
        assert_eq!(store.conversation(&mallory, own).unwrap().message_count, 0);
    }
    assert_eq!(state(&store, &alice, theirs), before);
}

/// Eight callers retrying one message at the same moment (a client that timed out and retried on
/// several paths): every one gets the stored message, and it is stored once. On PostgreSQL the
/// callers race past the look-up and meet at the insert.
fn concurrent_retries_of_one_message_store_it_once(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    for round in 0..10 {
        let id = new_id();
        let barrier = Arc::new(Barrier::new(8));
        let results: Vec<_> = (0..8)
            .map(|_| {
                let (store, alice, barrier) = (store.clone(), alice.clone(), barrier.clone());
                thread::spawn(move || {
                    let text = format!("round {round}");
                    barrier.wait();
                    store.append_message(&alice, conv, NewMessage::user(&text).with_id(id))
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        assert!(
            results.iter().all(|m| *m == results[0]),
            "round {round}: {results:?}"
        );
        assert_eq!(results[0].seq, round + 1);
    }
    let page = store.messages(&alice, conv, Window::All).unwrap();
    assert_eq!(page.total, 10);
    assert_eq!(page.messages.len(), 10);
}

/// Four callers on two stores (two processes, in short) sending one batch with client ids at the
/// same moment, two of them stating the last seq they saw: the batch is stored once, right after
/// that seq, and every caller gets it back. The callers queue on the conversation's row; each after
/// the first meets the stored ids at its insert, or (stating the last seq) finds the count moved
/// on, and returns the stored batch.
fn concurrent_retries_of_one_batch_through_two_stores_store_it_once(db: &TestDb) {
    let stores = [db.open(), db.open()];
    let alice = user("alice");
    let conv = stores[0].create_conversation(&alice, None).unwrap().id;
    for round in 0..10 {
        let ids = [new_id(), new_id(), new_id()];
        let barrier = Arc::new(Barrier::new(4));
        let results: Vec<Vec<chatstore::Message>> = (0..4)
            .map(|caller| {
                let (store, alice) = (stores[caller % 2].clone(), alice.clone());
                let barrier = barrier.clone();
                thread::spawn(move || {
                    let (question, answer) = (format!("round {round}"), format!("answer {round}"));
                    let batch = [
                        NewMessage::user(&question).with_id(ids[0]),
                        NewMessage::assistant(&answer).with_id(ids[1]),
                        NewMessage::tool("{}").with_id(ids[2]),
                    ];
                    barrier.wait();
                    match caller < 2 {
                        true => store.append_messages(&alice, conv, &batch),
                        false => store.append_if_last_seq(&alice, conv, round * 3, &batch),
                    }
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        assert!(
            results.iter().all(|r| *r == results[0]),
            "round {round}: {results:?}"
        );
        let stored: Vec<(MessageId, i64)> = results[0].iter().map(|m| (m.id, m.seq)).collect();
        let seqs = round * 3 + 1..=round * 3 + 3;
        assert_eq!(stored, ids.into_iter().zip(seqs).collect::<Vec<_>>());
    }
    let page = stores[1].messages(&alice, conv, Window::All).unwrap();
    assert_eq!((page.total, page.messages.len()), (30, 30));
}

/// Two retries that both looked before either wrote: the conversation's row, locked by another
/// session, holds both at the seq reservation, past their look-up, until it is released. The second
/// then meets the first's row at the insert, looks again and returns it.
#[cfg(feature = "postgres")]
#[test]
fn postgres_retries_racing_past_the_look_up_store_the_message_once() {
    race_two_retries(Kind::Postgres, |store, user, conv, message| {
        store.append_message(user, conv, message)
    });
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_retries_racing_past_the_look_up_store_the_message_once() {
    race_two_retries(Kind::Mysql, |store, user, conv, message| {
        store.append_message(user, conv, message)
    });
}

/// The same race for appends that state the last seq they saw (0): the second one, when it gets
/// the row, finds the count moved on — by its own batch, which makes it a retry, not a conflict.
#[cfg(feature = "postgres")]
#[test]
fn postgres_conditional_retries_racing_past_the_look_up_store_the_message_once() {
    race_two_retries(Kind::Postgres, conditional_append);
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_conditional_retries_racing_past_the_look_up_store_the_message_once() {
    race_two_retries(Kind::Mysql, conditional_append);
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn conditional_append(
    store: &ChatStore,
    user: &UserId,
    conv: ConversationId,
    message: NewMessage,
) -> Result<chatstore::Message, Error> {
    let mut stored = store.append_if_last_seq(user, conv, 0, &[message])?;
    Ok(stored.remove(0))
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
fn race_two_retries(
    kind: Kind,
    append: fn(
        &ChatStore,
        &UserId,
        ConversationId,
        NewMessage,
    ) -> Result<chatstore::Message, Error>,
) {
    let db = TestDb::new(kind);
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let hex: String = conv.as_uuid().simple().to_string();
    let row = match kind {
        Kind::Postgres | Kind::Citus => format!("'\\x{hex}'::bytea"),
        _ => format!("x'{hex}'"),
    };
    let lock = db.hold(&format!(
        "BEGIN; SELECT 1 FROM chatstore_conversations WHERE id = {row} FOR UPDATE"
    ));
    let id = new_id();
    let retries: Vec<_> = (0..2)
        .map(|_| {
            let (store, alice) = (store.clone(), alice.clone());
            thread::spawn(move || append(&store, &alice, conv, NewMessage::user("hi").with_id(id)))
        })
        .collect();
    let waiting = match kind {
        Kind::Postgres => {
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'"
        }
        _ => {
            // (InnoDB's own list showed only one of two waiters as LOCK WAIT.)
            "SELECT count(*) AS n FROM information_schema.processlist \
             WHERE db = DATABASE() AND state = 'Updating' AND info LIKE 'UPDATE `chatstore_conversations`%'"
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while db.scalar(waiting) != Some(2) {
        if let Some(done) = retries.iter().position(|h| h.is_finished()) {
            let result = retries.into_iter().nth(done).map(|h| h.join());
            panic!("a retry ended without waiting for the row: {result:?}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retries never queued"
        );
        thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(lock);
    let results: Vec<_> = retries
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(results[0], results[1]);
    assert_eq!((results[0].id, results[0].seq), (id, 1));
    assert_eq!(store.conversation(&alice, conv).unwrap().message_count, 1);
}

fn a_stale_last_seq_conflicts_and_writes_nothing(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    // 0 is the last seq of an empty conversation.
    let first = store
        .append_if_last_seq(&alice, conv, 0, &[NewMessage::user("one")])
        .unwrap();
    assert_eq!(first[0].seq, 1);
    store
        .append_message(&alice, conv, NewMessage::user("two"))
        .unwrap();
    let before = state(&store, &alice, conv);
    for stale in [0, 1, 3, -1, i64::MAX, i64::MIN] {
        let batch = [NewMessage::assistant("reply"), NewMessage::user("more")];
        match store.append_if_last_seq(&alice, conv, stale, &batch) {
            Err(Error::Conflict { expected, actual }) => assert_eq!((expected, actual), (stale, 2)),
            other => panic!("last seq {stale}: expected Conflict, got {other:?}"),
        }
        // An empty batch checks the same.
        assert!(matches!(
            store.append_if_last_seq(&alice, conv, stale, &[]),
            Err(Error::Conflict { actual: 2, .. })
        ));
    }
    assert_eq!(state(&store, &alice, conv), before, "nothing was written");
    // Another user's conversation is not found, never a Conflict that would reveal its length.
    assert!(matches!(
        store.append_if_last_seq(&user("mallory"), conv, 0, &[NewMessage::user("x")]),
        Err(Error::NotFound)
    ));
    let appended = store
        .append_if_last_seq(&alice, conv, 2, &[NewMessage::user("three")])
        .unwrap();
    assert_eq!(appended[0].seq, 3);
    assert!(store
        .append_if_last_seq(&alice, conv, 3, &[])
        .unwrap()
        .is_empty());
}

/// Writers that each read the history, then append stating the last seq they read, retrying on a
/// conflict: every append lands right after the state its writer saw, so no reply is ever placed
/// after a message its writer did not see.
fn writers_that_state_the_last_seq_never_interleave(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let (writers, appends) = (4, 25);
    let barrier = Arc::new(Barrier::new(writers));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (store, alice, barrier) = (store.clone(), alice.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let mut conflicts = 0;
                for i in 0..appends {
                    loop {
                        let seen = store.messages(&alice, conv, Window::Latest(1)).unwrap();
                        // Each writer's pair says which seq it answered.
                        let (q, a) = (
                            format!("w{w}-{i} after {}", seen.total),
                            format!("w{w}-{i}"),
                        );
                        let batch = [NewMessage::user(&q), NewMessage::assistant(&a)];
                        match store.append_if_last_seq(&alice, conv, seen.total, &batch) {
                            Ok(stored) => {
                                assert_eq!(stored[0].seq, seen.total + 1);
                                break;
                            }
                            Err(Error::Conflict { expected, actual }) => {
                                assert_eq!(expected, seen.total);
                                assert!(actual > expected);
                                conflicts += 1;
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // 7 to 191 in runs here: the writers did race, so the pairs below were tested under conflicts.
    assert!(conflicts > 0, "no writer ever saw a conflict");
    let page = store.messages(&alice, conv, Window::All).unwrap();
    assert_eq!(page.total, (writers * appends * 2) as i64);
    for pair in page.messages.chunks(2) {
        let (q, a) = (&pair[0], &pair[1]);
        assert_eq!(
            q.content,
            format!("{} after {}", a.content, q.seq - 1),
            "pairs never interleave"
        );
    }
}
