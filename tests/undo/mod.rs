//! Taking messages back: popping the newest, truncating after a seq, clearing a conversation. Each
//! is atomic, returns what it removed, keeps the count, the seqs, the search index and the store's
//! totals in step, and refuses another user's conversation as a missing one.

use std::sync::{Arc, Barrier};
use std::thread;

use chatstore::{ChatStore, Error, NewMessage, SearchQuery, Window};

use crate::support::{
    backend_tests, contents, conversation_with, expected, seqs, snapshot, user, TestDb,
};

backend_tests! {
    every: [
        pop_takes_back_the_newest_and_frees_their_seqs,
        truncate_removes_after_a_seq_and_refuses_bad_input,
        clear_keeps_the_conversation_and_restarts_its_seqs,
        another_users_conversation_is_not_found,
        search_forgets_what_was_taken_back,
        pops_racing_appends_leave_a_history_without_gaps,
    ],
    persistent: [],
}

fn pop_takes_back_the_newest_and_frees_their_seqs(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 5);
    let stored = store.messages(&alice, conv, Window::All).unwrap().messages;
    let before = store.conversation(&alice, conv).unwrap();

    let popped = store.pop_messages(&alice, conv, 2).unwrap();
    assert_eq!(
        popped,
        stored[3..],
        "the newest two, oldest first, as stored"
    );
    let after = store.conversation(&alice, conv).unwrap();
    assert_eq!(after.message_count, 3);
    assert!(after.updated_at >= before.updated_at);
    let page = store.messages(&alice, conv, Window::All).unwrap();
    assert_eq!((contents(&page.messages), page.total), (expected(1..=3), 3));
    let context = store.context_window(&alice, conv, 1_000).unwrap();
    assert_eq!(contents(&context.messages), expected(1..=3));
    assert_eq!(store.stats().unwrap().messages, 3);

    let next = store
        .append_message(&alice, conv, NewMessage::assistant("again"))
        .unwrap();
    assert_eq!(next.seq, 4, "the first seq the pop left free");
    assert!(next.created_at >= stored[4].created_at);

    // Nothing to take: nothing written, not even `updated_at`.
    let unchanged = store.conversation(&alice, conv).unwrap();
    assert!(store.pop_messages(&alice, conv, 0).unwrap().is_empty());
    assert_eq!(store.conversation(&alice, conv).unwrap(), unchanged);

    // More than it holds: all of it.
    let rest = store.pop_messages(&alice, conv, 10).unwrap();
    assert_eq!(seqs(&rest), [1, 2, 3, 4]);
    assert_eq!(rest[3].content, "again");
    assert!(store.pop_messages(&alice, conv, 1).unwrap().is_empty());
    assert_eq!(store.conversation(&alice, conv).unwrap().message_count, 0);
}

/// The whole history, read in windows of the cap (3 here).
fn history(store: &ChatStore, conv: chatstore::ConversationId) -> (i64, Vec<chatstore::Message>) {
    let alice = user("alice");
    let (mut all, mut window) = (Vec::new(), Window::After { seq: 0, limit: 3 });
    loop {
        let page = store.messages(&alice, conv, window).unwrap();
        all.extend(page.messages);
        match page.newer {
            Some(next) => window = next,
            None => return (page.total, all),
        }
    }
}

fn truncate_removes_after_a_seq_and_refuses_bad_input(db: &TestDb) {
    let store = ChatStore::builder(db.url.clone())
        .max_window(3)
        .open()
        .unwrap();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 6);
    let whole = history(&store, conv);
    let conversation = store.conversation(&alice, conv).unwrap();

    // Refused: nothing removed, nothing written.
    assert!(matches!(
        store.truncate_messages(&alice, conv, -1),
        Err(Error::InvalidSeq(-1))
    ));
    assert!(matches!(
        store.truncate_messages(&alice, conv, 2),
        Err(Error::WindowTooLarge {
            messages: 4,
            max: 3
        })
    ));
    assert_eq!(history(&store, conv), whole);
    assert_eq!(store.conversation(&alice, conv).unwrap(), conversation);
    // At or past the end: nothing to remove.
    assert!(store.truncate_messages(&alice, conv, 6).unwrap().is_empty());
    assert!(store
        .truncate_messages(&alice, conv, 99)
        .unwrap()
        .is_empty());
    assert_eq!(store.conversation(&alice, conv).unwrap(), conversation);

    let removed = store.truncate_messages(&alice, conv, 3).unwrap();
    assert_eq!(removed, whole.1[3..]);
    assert_eq!(
        history(&store, conv),
        (3, whole.1[..3].to_vec()),
        "what is kept is untouched"
    );
    // A pop is cut to the window cap, as a window is.
    let four = vec![NewMessage::user("x"); 4];
    store.append_messages(&alice, conv, &four).unwrap();
    assert_eq!(
        seqs(&store.pop_messages(&alice, conv, 100).unwrap()),
        [5, 6, 7]
    );
    assert_eq!(store.conversation(&alice, conv).unwrap().message_count, 4);
}

fn clear_keeps_the_conversation_and_restarts_its_seqs(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 1200);
    let before = store.conversation(&alice, conv).unwrap();

    assert_eq!(store.clear_messages(&alice, conv).unwrap(), 1200);
    let cleared = store.conversation(&alice, conv).unwrap();
    assert_eq!(
        (cleared.id, cleared.title.as_deref(), cleared.created_at),
        (before.id, Some("history"), before.created_at)
    );
    assert_eq!(cleared.message_count, 0);
    assert!(cleared.updated_at >= before.updated_at);
    assert!(store
        .messages(&alice, conv, Window::All)
        .unwrap()
        .messages
        .is_empty());
    assert_eq!(store.stats().unwrap().messages, 0);
    let listed = store
        .list_conversations(&alice, chatstore::Page::first(10))
        .unwrap();
    assert_eq!(listed.conversations, std::slice::from_ref(&cleared));

    assert_eq!(store.clear_messages(&alice, conv).unwrap(), 0);
    assert_eq!(store.conversation(&alice, conv).unwrap(), cleared);
    let first = store
        .append_message(&alice, conv, NewMessage::user("fresh start"))
        .unwrap();
    assert_eq!(first.seq, 1);
}

fn another_users_conversation_is_not_found(db: &TestDb) {
    let store = db.open();
    let (alice, mallory) = (user("alice"), user("mallory"));
    let conv = conversation_with(&store, &alice, 3);
    let first = store.messages(&alice, conv, Window::All).unwrap().messages[0].clone();
    let whole = snapshot(&store, &alice, conv);
    let missing = chatstore::ConversationId::from(uuid::Uuid::now_v7());
    for target in [conv, missing] {
        assert!(matches!(
            store.pop_messages(&mallory, target, 1),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            store.truncate_messages(&mallory, target, 0),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            store.clear_messages(&mallory, target),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            store.fork_conversation(&mallory, target, first.id),
            Err(Error::NotFound)
        ));
    }
    // Also with nothing to remove, and with a refused seq, ownership answers first... as
    // NotFound, or as the input error that names only the caller's own input.
    assert!(matches!(
        store.pop_messages(&mallory, conv, 0),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.truncate_messages(&mallory, conv, 5),
        Err(Error::NotFound)
    ));
    assert_eq!(snapshot(&store, &alice, conv), whole);
    assert_eq!(store.stats().unwrap().conversations, 1, "no fork was made");
}

fn search_forgets_what_was_taken_back(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let hits = |word: &str| {
        let found = store
            .search_messages(&alice, &SearchQuery::new(word))
            .unwrap();
        found
            .hits
            .into_iter()
            .map(|h| h.message.content)
            .collect::<Vec<_>>()
    };
    store
        .append_message(&alice, conv, NewMessage::user("apple pie"))
        .unwrap();
    // Indexed, then taken back.
    store
        .append_message(&alice, conv, NewMessage::user("banana bread"))
        .unwrap();
    assert_eq!(hits("banana"), ["banana bread"]);
    store.pop_messages(&alice, conv, 1).unwrap();
    assert!(hits("banana").is_empty());
    // Taken back while it still waited for the index.
    store
        .append_message(&alice, conv, NewMessage::user("cherry tart"))
        .unwrap();
    store.pop_messages(&alice, conv, 1).unwrap();
    assert!(hits("cherry").is_empty());
    // The freed seq's new message is found, once, as itself.
    store
        .append_message(&alice, conv, NewMessage::user("banana split"))
        .unwrap();
    assert_eq!(hits("banana"), ["banana split"]);
    assert_eq!(hits("apple"), ["apple pie"]);
    store.clear_messages(&alice, conv).unwrap();
    assert!(hits("apple").is_empty() && hits("banana").is_empty());
    assert_eq!(store.index_pending().unwrap(), 0);
}

/// Appending threads and a popping thread on one conversation: every message is either in the
/// history or returned by a pop, exactly once, and the history's seqs run 1..=count.
fn pops_racing_appends_leave_a_history_without_gaps(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let barrier = Arc::new(Barrier::new(4));
    let appenders: Vec<_> = (0..3)
        .map(|t| {
            let (store, alice, barrier) = (store.clone(), alice.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for i in 0..60 {
                    let text = format!("t{t}-{i}");
                    store
                        .append_message(&alice, conv, NewMessage::user(&text))
                        .unwrap();
                }
            })
        })
        .collect();
    let popper = {
        let (store, alice) = (store.clone(), alice.clone());
        thread::spawn(move || {
            barrier.wait();
            let mut popped = Vec::new();
            for _ in 0..40 {
                popped.extend(store.pop_messages(&alice, conv, 2).unwrap());
            }
            popped
        })
    };
    for appender in appenders {
        appender.join().unwrap();
    }
    let popped = popper.join().unwrap();
    let page = store.messages(&alice, conv, Window::All).unwrap();
    assert_eq!(seqs(&page.messages), (1..=page.total).collect::<Vec<i64>>());
    let mut seen: Vec<String> = contents(&page.messages);
    seen.extend(contents(&popped));
    seen.sort();
    let mut all: Vec<String> = (0..3)
        .flat_map(|t| (0..60).map(move |i| format!("t{t}-{i}")))
        .collect();
    all.sort();
    assert_eq!(seen, all, "each message kept or popped, exactly once");
    assert_eq!(store.stats().unwrap().messages, page.total as u64);
}
