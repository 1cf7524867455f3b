//! Appending messages and reading them back: what a read returns, the windows and their cursors,
//! order by seq whatever the timestamps and ids say, and what loading a whole history costs.

use std::collections::HashSet;

use chatstore::{ChatStore, Error, NewMessage, Role, Window};
use serde_json::json;

use crate::support::{
    backend_tests, contents, conversation_with, expected, seqs, user, RawMessage, RawSql, TestDb,
};

backend_tests! {
    every: [
        round_trip_keeps_order_roles_and_metadata,
        latest_returns_newest_in_chronological_order,
        cursors_walk_a_1000_message_history_both_ways,
        windows_clamp_out_of_range_cursors,
        order_holds_when_messages_share_a_timestamp,
        empty_batch_writes_nothing,
        a_full_load_holds_its_rows_and_little_more,
        windows_are_cut_to_the_cap_and_all_past_it_is_refused,
        a_batch_built_from_owned_data_in_a_loop_appends,
    ],
    persistent: [
        order_is_seq_even_when_ids_and_times_disagree,
    ],
}

fn round_trip_keeps_order_roles_and_metadata(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store
        .create_conversation(&alice, Some("Todo assistant"))
        .unwrap();
    let call = json!({"tool_calls": [{"id": "call_1", "name": "add_todo", "arguments": {"title": "milk"}}]});
    let result = json!({"tool_call_id": "call_1", "tokens": 12});
    let appended = store
        .append_messages(
            &alice,
            conv.id,
            &[
                NewMessage::system("You manage a todo list."),
                NewMessage::user("Add milk"),
                NewMessage::assistant("").with_metadata(&call),
                NewMessage::tool("{\"ok\":true}").with_metadata(&result),
                NewMessage::assistant("Added milk."),
            ],
        )
        .unwrap();
    assert_eq!(seqs(&appended), vec![1, 2, 3, 4, 5]);

    let page = store.messages(&alice, conv.id, Window::All).unwrap();
    assert_eq!(
        page.messages, appended,
        "what append returns is what a read gives back"
    );
    assert_eq!(
        page.messages.iter().map(|m| m.role).collect::<Vec<_>>(),
        vec![
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant
        ]
    );
    assert_eq!(page.messages[2].metadata.as_ref(), Some(&call));
    assert_eq!(page.messages[3].metadata.as_ref(), Some(&result));
    assert_eq!(page.messages[1].metadata, None);
    assert_eq!((page.total, page.older, page.newer), (5, None, None));

    let single = store
        .append_message(&alice, conv.id, NewMessage::user("Thanks"))
        .unwrap();
    assert_eq!(single.seq, 6);
    let reread = store.conversation(&alice, conv.id).unwrap();
    assert_eq!(reread.message_count, 6);
    assert_eq!(reread.title.as_deref(), Some("Todo assistant"));
    assert_eq!(reread.user_id, alice);
}

fn latest_returns_newest_in_chronological_order(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 10);
    for (n, want) in [(0, vec![]), (1, expected(10..=10)), (4, expected(7..=10))]
        .into_iter()
        .chain([
            (10, expected(1..=10)),
            (11, expected(1..=10)),
            (u32::MAX, expected(1..=10)),
        ])
    {
        let page = store.messages(&alice, conv, Window::Latest(n)).unwrap();
        assert_eq!(contents(&page.messages), want, "latest({n})");
        assert_eq!(page.newer, None, "latest({n}) has nothing newer");
    }
    let page = store.messages(&alice, conv, Window::Latest(4)).unwrap();
    assert_eq!(page.older, Some(Window::Before { seq: 7, limit: 4 }));
    let whole = store.messages(&alice, conv, Window::Latest(10)).unwrap();
    assert_eq!(whole.older, None, "nothing is older than seq 1");

    let empty = store.create_conversation(&alice, None).unwrap();
    let page = store.messages(&alice, empty.id, Window::Latest(5)).unwrap();
    assert!(page.messages.is_empty());
    assert_eq!((page.total, page.older, page.newer), (0, None, None));
}

fn cursors_walk_a_1000_message_history_both_ways(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 1000);

    // Backwards from the newest, in pages of 64 (1000 is not a multiple: the last page is short).
    let mut seen = Vec::new();
    let mut window = Some(Window::Latest(64));
    while let Some(w) = window {
        let page = store.messages(&alice, conv, w).unwrap();
        assert!(page.messages.len() <= 64);
        assert!(
            page.messages.windows(2).all(|p| p[0].seq + 1 == p[1].seq),
            "chronological"
        );
        seen.splice(0..0, page.messages.iter().map(|m| m.seq));
        window = page.older;
    }
    assert_eq!(
        seen,
        (1..=1000).collect::<Vec<i64>>(),
        "no gap, no duplicate going back"
    );

    // Forwards from the start.
    let mut seen = Vec::new();
    let mut window = Some(Window::After { seq: 0, limit: 64 });
    while let Some(w) = window {
        let page = store.messages(&alice, conv, w).unwrap();
        seen.extend(page.messages.iter().map(|m| m.seq));
        window = page.newer;
    }
    assert_eq!(
        seen,
        (1..=1000).collect::<Vec<i64>>(),
        "no gap, no duplicate going forward"
    );
    let all = store.messages(&alice, conv, Window::All).unwrap();
    assert_eq!(contents(&all.messages), expected(1..=1000));
}

/// Loading a whole history needs memory for the rows it returns and little more: no step copies
/// the history (the content is read once, into the returned messages). On PostgreSQL, libpq also
/// holds the raw result until it is decoded, in C memory this count does not see.
///
/// `allocation_counter` counts what goes through Rust's allocator on this thread only, so tests
/// running beside this one do not add to it; SQLite's page cache and libpq's buffers are C
/// `malloc`s it does not see either.
fn a_full_load_holds_its_rows_and_little_more(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap();
    let text = "x".repeat(4096);
    let batch: Vec<NewMessage> = (0..500).map(|_| NewMessage::user(&text)).collect();
    for _ in 0..4 {
        store.append_messages(&alice, conv.id, &batch).unwrap();
    }
    // Warm the connection and its statement cache, which a first call would also allocate.
    store.messages(&alice, conv.id, Window::All).unwrap();

    let mut page = None;
    let usage = allocation_counter::measure(|| {
        page = Some(store.messages(&alice, conv.id, Window::All).unwrap());
    });
    let page = page.unwrap();
    assert_eq!(page.messages.len(), 2000);
    // Bytes the call allocated on this thread at its peak, and still held when it returned (the
    // result).
    let (peak, retained) = (usage.bytes_max as i64, usage.bytes_current);
    let content = 2000 * 4096;
    assert!(
        retained >= content,
        "the result holds the content: {usage:?}"
    );
    assert!(
        peak <= retained * 3 / 2,
        "peak {peak} bytes for a result of {retained}: the load copied the history",
    );
    drop(page);
}

fn windows_clamp_out_of_range_cursors(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 5);
    let none = Vec::<String>::new();
    let cases = [
        (Window::Before { seq: 100, limit: 2 }, expected(4..=5)),
        (Window::Before { seq: 3, limit: 10 }, expected(1..=2)),
        (Window::Before { seq: 1, limit: 10 }, none.clone()),
        (
            Window::Before {
                seq: i64::MIN,
                limit: u32::MAX,
            },
            none.clone(),
        ),
        (
            Window::Before {
                seq: i64::MAX,
                limit: u32::MAX,
            },
            expected(1..=5),
        ),
        (Window::After { seq: -7, limit: 2 }, expected(1..=2)),
        (Window::After { seq: 4, limit: 10 }, expected(5..=5)),
        (Window::After { seq: 5, limit: 10 }, none.clone()),
        (
            Window::After {
                seq: i64::MAX,
                limit: u32::MAX,
            },
            none.clone(),
        ),
        (
            Window::After {
                seq: i64::MIN,
                limit: 0,
            },
            none.clone(),
        ),
        (Window::Latest(0), none),
    ];
    for (window, want) in cases {
        let page = store.messages(&alice, conv, window).unwrap();
        assert_eq!(contents(&page.messages), want, "{window:?}");
    }
}

fn order_holds_when_messages_share_a_timestamp(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap();
    // Texts whose sort order is the reverse of their append order, so text order cannot pass for
    // seq order (ids follow batch order here: order_is_seq_even_when_ids_and_times_disagree
    // covers them).
    let texts: Vec<String> = (0..200).map(|i| format!("{:03}", 999 - i)).collect();
    let batch: Vec<NewMessage> = texts.iter().map(NewMessage::user).collect();
    store.append_messages(&alice, conv.id, &batch).unwrap();
    let page = store.messages(&alice, conv.id, Window::All).unwrap();
    let stamps: HashSet<_> = page.messages.iter().map(|m| m.created_at).collect();
    assert_eq!(stamps.len(), 1, "one batch, one timestamp");
    assert_eq!(contents(&page.messages), texts);
    let tail = store.messages(&alice, conv.id, Window::Latest(3)).unwrap();
    assert_eq!(contents(&tail.messages), texts[197..].to_vec());
}

fn empty_batch_writes_nothing(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 1);
    let before = store.conversation(&alice, conv).unwrap();
    assert!(store.append_messages(&alice, conv, &[]).unwrap().is_empty());
    assert_eq!(
        store.conversation(&alice, conv).unwrap(),
        before,
        "not even updated_at moves"
    );
}

fn order_is_seq_even_when_ids_and_times_disagree(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let sql = RawSql::new(db);
    // Written as another program might: seqs 1, 2, 3 with ids and timestamps running backwards.
    for (seq, content) in [(1u8, "first"), (2, "second"), (3, "third")] {
        let at = format!("2026-01-0{} 00:00:00", 4 - seq);
        let row = RawMessage {
            id: 10 - seq,
            seq: seq.into(),
            content,
            at: &at,
            ..Default::default()
        };
        db.execute(&sql.message(conv, row)).unwrap();
    }
    db.execute("UPDATE chatstore_conversations SET message_count = 3")
        .unwrap();
    let read = |w| contents(&store.messages(&alice, conv, w).unwrap().messages);
    assert_eq!(read(Window::All), ["first", "second", "third"]);
    assert_eq!(read(Window::Latest(2)), ["second", "third"]);
    assert_eq!(read(Window::Before { seq: 3, limit: 1 }), ["second"]);
    assert_eq!(
        read(Window::After { seq: 1, limit: 5 }),
        ["second", "third"]
    );
    let next = store
        .append_message(&alice, conv, NewMessage::user("fourth"))
        .unwrap();
    assert_eq!(next.seq, 4);
}

/// `StoreBuilder::max_window`: sized windows asking for more are cut to the cap, and their
/// neighbours have the cap's size; `Window::All` past the cap is refused, naming it, and the
/// history still reads whole window by window.
fn windows_are_cut_to_the_cap_and_all_past_it_is_refused(db: &TestDb) {
    let store = ChatStore::builder(db.url.clone())
        .max_window(4)
        .open()
        .unwrap();
    assert_eq!(store.limits().max_window(), 4);
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 4);
    assert_eq!(
        seqs(&store.messages(&alice, conv, Window::All).unwrap().messages),
        [1, 2, 3, 4],
        "a history within the cap reads whole"
    );
    conversation_with_more(&store, &alice, conv, 6);

    let page = store.messages(&alice, conv, Window::Latest(100)).unwrap();
    assert_eq!(seqs(&page.messages), [7, 8, 9, 10]);
    assert_eq!(page.older, Some(Window::Before { seq: 7, limit: 4 }));
    let page = store
        .messages(&alice, conv, Window::Before { seq: 7, limit: 100 })
        .unwrap();
    assert_eq!(seqs(&page.messages), [3, 4, 5, 6]);
    let page = store
        .messages(&alice, conv, Window::After { seq: 0, limit: 100 })
        .unwrap();
    assert_eq!(seqs(&page.messages), [1, 2, 3, 4]);
    assert_eq!(page.newer, Some(Window::After { seq: 4, limit: 4 }));

    let err = store.messages(&alice, conv, Window::All).unwrap_err();
    assert!(
        matches!(
            err,
            Error::WindowTooLarge {
                messages: 10,
                max: 4
            }
        ),
        "{err:?}"
    );
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains("(4)"), "{err}");

    let (mut window, mut read) = (Some(Window::After { seq: 0, limit: 4 }), Vec::new());
    while let Some(next) = window {
        let page = store.messages(&alice, conv, next).unwrap();
        read.extend(seqs(&page.messages));
        window = page.newer;
    }
    assert_eq!(read, (1..=10).collect::<Vec<i64>>());
}

/// Appends `n` more messages to `conv`.
fn conversation_with_more(
    store: &ChatStore,
    owner: &chatstore::UserId,
    conv: chatstore::ConversationId,
    n: usize,
) {
    let batch: Vec<NewMessage> = (0..n)
        .map(|i| NewMessage::user(format!("more {i}")))
        .collect();
    store.append_messages(owner, conv, &batch).unwrap();
}

/// Host code builds a batch from data it owns — `String`s and `Value`s made in a loop — and
/// from temporaries; both append as borrowed messages do.
fn a_batch_built_from_owned_data_in_a_loop_appends(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let mut batch = Vec::new();
    for i in 0..3 {
        let content = format!("owned {i}");
        batch.push(NewMessage::user(content).with_metadata(json!({ "i": i })));
    }
    let role: Role = "assistant".parse().unwrap();
    batch.push(NewMessage::new(role, String::from("reply")).with_metadata(json!({"ok": true})));
    let stored = store.append_messages(&alice, conv, &batch).unwrap();
    assert_eq!(
        contents(&stored),
        ["owned 0", "owned 1", "owned 2", "reply"]
    );
    assert_eq!(stored[2].metadata, Some(json!({ "i": 2 })));
    let page = store.messages(&alice, conv, Window::All).unwrap();
    assert_eq!(page.messages, stored);
}
