//! Forking a conversation into a new one: what is copied, what is new, ownership, and that the
//! copy is an ordinary conversation (independent, searchable, exportable).

use chatstore::{ConversationId, Error, MessageId, NewMessage, Page, SearchQuery, Window};
use serde_json::json;

use crate::support::{
    assert_copied, backend_tests, contents, conversation_with, expected, seqs, snapshot, user,
    TestDb,
};

backend_tests! {
    every: [
        a_fork_copies_the_history_through_a_message_with_new_ids,
        a_fork_of_a_long_history_copies_it_whole,
        a_fork_needs_the_users_conversation_and_one_of_its_messages,
    ],
    persistent: [],
}

fn a_fork_copies_the_history_through_a_message_with_new_ids(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, Some("Trip")).unwrap();
    let call = json!({"tool_calls": [{"id": "call_1", "name": "weather"}]});
    let first = store
        .append_messages(
            &alice,
            conv.id,
            &[
                NewMessage::system("You plan trips."),
                NewMessage::user("Lisbon or Porto?"),
                NewMessage::assistant("").with_metadata(&call),
            ],
        )
        .unwrap();
    let later = store
        .append_messages(
            &alice,
            conv.id,
            &[
                NewMessage::tool("{\"sunny\":true}"),
                NewMessage::assistant("Lisbon."),
            ],
        )
        .unwrap();
    let source_before = snapshot(&store, &alice, conv.id);

    let fork = store
        .fork_conversation(&alice, conv.id, later[0].id)
        .unwrap();
    assert_ne!(fork.id, conv.id);
    assert_eq!(
        (
            fork.user_id.clone(),
            fork.title.as_deref(),
            fork.message_count
        ),
        (alice.clone(), Some("Trip"), 4)
    );
    assert_eq!(fork.created_at, conv.created_at);
    assert!(fork.updated_at >= later[0].created_at);
    assert_eq!(store.conversation(&alice, fork.id).unwrap(), fork);
    let copied = store
        .messages(&alice, fork.id, Window::All)
        .unwrap()
        .messages;
    let originals: Vec<_> = first.iter().chain(&later[..1]).collect();
    assert_eq!(copied.len(), 4);
    for (copy, original) in copied.iter().zip(originals) {
        assert_copied(copy, original);
        assert_eq!(copy.conversation_id, fork.id);
    }
    assert_eq!(
        snapshot(&store, &alice, conv.id),
        source_before,
        "the source is untouched"
    );
    let listed = store.list_conversations(&alice, Page::first(10)).unwrap();
    assert_eq!(listed.conversations[0].id, fork.id, "the newest activity");

    // Independent from now on.
    store
        .append_message(&alice, fork.id, NewMessage::assistant("Porto, then."))
        .unwrap();
    assert_eq!(snapshot(&store, &alice, conv.id), source_before);
    store.pop_messages(&alice, conv.id, 2).unwrap();
    assert_eq!(
        store.conversation(&alice, fork.id).unwrap().message_count,
        5
    );

    // Found by search in both; an ordinary conversation to export and import.
    let found = store
        .search_messages(&alice, &SearchQuery::new("Porto"))
        .unwrap();
    let mut in_conversations: Vec<ConversationId> = found
        .hits
        .iter()
        .map(|h| h.message.conversation_id)
        .collect();
    in_conversations.sort();
    let mut both = vec![conv.id, fork.id, fork.id];
    both.sort();
    assert_eq!(in_conversations, both);
    let fork = store.conversation(&alice, fork.id).unwrap();
    let messages = store
        .messages(&alice, fork.id, Window::All)
        .unwrap()
        .messages;
    let target = TestDb::new(db.kind);
    let copy = target.open();
    copy.import_conversation(&alice, &fork, &messages).unwrap();
    assert_eq!(
        copy.messages(&alice, fork.id, Window::All)
            .unwrap()
            .messages,
        messages
    );
}

fn a_fork_of_a_long_history_copies_it_whole(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 2_345);
    let last = store
        .messages(&alice, conv, Window::Latest(1))
        .unwrap()
        .messages[0]
        .clone();
    let fork = store.fork_conversation(&alice, conv, last.id).unwrap();
    assert_eq!(fork.message_count, 2_345);
    let mut copied = Vec::new();
    let mut window = Window::After {
        seq: 0,
        limit: 1000,
    };
    loop {
        let page = store.messages(&alice, fork.id, window).unwrap();
        copied.extend(page.messages);
        match page.newer {
            Some(next) => window = next,
            None => break,
        }
    }
    assert_eq!(seqs(&copied), (1..=2_345).collect::<Vec<i64>>());
    assert_eq!(contents(&copied), expected(1..=2_345));
    assert_eq!(store.stats().unwrap().messages, 2 * 2_345);
}

fn a_fork_needs_the_users_conversation_and_one_of_its_messages(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let mine = conversation_with(&store, &alice, 2);
    let other = conversation_with(&store, &alice, 2);
    let bobs = conversation_with(&store, &bob, 2);
    let in_other = store.messages(&alice, other, Window::All).unwrap().messages[0].id;
    let in_bobs = store.messages(&bob, bobs, Window::All).unwrap().messages[0].id;
    let nowhere = MessageId::from(uuid::Uuid::now_v7());
    for through in [in_other, in_bobs, nowhere] {
        assert!(matches!(
            store.fork_conversation(&alice, mine, through),
            Err(Error::NotFound)
        ));
    }
    assert!(matches!(
        store.fork_conversation(&alice, bobs, in_bobs),
        Err(Error::NotFound)
    ));
    assert_eq!(store.stats().unwrap().conversations, 3, "nothing was made");
}
