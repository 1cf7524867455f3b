//! Conversations: each user sees only their own; appending and renaming move one to the front of
//! the list; list pages and their cursors; deleting a conversation or a user's data.

use std::collections::HashSet;

use chatstore::{ChatStore, ConversationCursor, ConversationId, Error, NewMessage, Page, Window};

use crate::support::{
    backend_tests, contents, conversation_with, expected, snapshot, user, TestDb,
};

backend_tests! {
    every: [
        users_are_isolated_on_every_operation,
        append_bumps_updated_at_and_list_order,
        rename_bumps_updated_at_and_clears_title,
        list_pages_are_stable_while_messages_arrive,
        list_page_size_is_capped,
        a_cursor_rebuilt_from_its_parts_continues_the_list,
        delete_cascades_to_messages,
        delete_user_data_leaves_other_users_intact,
    ],
    persistent: [],
}

fn users_are_isolated_on_every_operation(db: &TestDb) {
    let store = db.open();
    let (alice, mallory) = (user("alice"), user("mallory"));
    let conv = conversation_with(&store, &alice, 3);
    let missing = ConversationId::from(uuid::Uuid::now_v7());

    for id in [conv, missing] {
        let not_found = |r: Result<(), Error>| assert!(matches!(r, Err(Error::NotFound)), "{r:?}");
        not_found(store.conversation(&mallory, id).map(drop));
        not_found(store.messages(&mallory, id, Window::All).map(drop));
        not_found(store.messages(&mallory, id, Window::Latest(1)).map(drop));
        not_found(
            store
                .append_message(&mallory, id, NewMessage::user("hi"))
                .map(drop),
        );
        not_found(store.append_messages(&mallory, id, &[]).map(drop));
        not_found(
            store
                .rename_conversation(&mallory, id, Some("mine"))
                .map(drop),
        );
        not_found(store.delete_conversation(&mallory, id));
    }
    let theirs = store
        .list_conversations(&mallory, Page::first(100))
        .unwrap();
    assert!(theirs.conversations.is_empty());
    assert_eq!(store.delete_user_data(&mallory).unwrap().conversations, 0);

    // Alice's conversation is exactly as it was.
    let kept = store.conversation(&alice, conv).unwrap();
    assert_eq!(
        (kept.title.as_deref(), kept.message_count),
        (Some("history"), 3)
    );
    let page = store.messages(&alice, conv, Window::All).unwrap();
    assert_eq!(contents(&page.messages), expected(1..=3));
}

fn append_bumps_updated_at_and_list_order(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let older = store.create_conversation(&alice, Some("older")).unwrap();
    let newer = store.create_conversation(&alice, Some("newer")).unwrap();
    let titles = |store: &ChatStore| -> Vec<String> {
        let page = store.list_conversations(&alice, Page::first(10)).unwrap();
        page.conversations
            .into_iter()
            .map(|c| c.title.unwrap())
            .collect()
    };
    assert_eq!(titles(&store), ["newer", "older"]);
    let message = store
        .append_message(&alice, older.id, NewMessage::user("bump"))
        .unwrap();
    let bumped = store.conversation(&alice, older.id).unwrap();
    assert!(bumped.updated_at > older.updated_at);
    assert_eq!(bumped.updated_at, message.created_at);
    assert_eq!(bumped.created_at, older.created_at);
    assert_eq!(titles(&store), ["older", "newer"]);
    assert_eq!(
        store.conversation(&alice, newer.id).unwrap(),
        newer,
        "the other is untouched"
    );
}

fn rename_bumps_updated_at_and_clears_title(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let first = store.create_conversation(&alice, Some("first")).unwrap();
    let second = store.create_conversation(&alice, None).unwrap();
    let renamed = store
        .rename_conversation(&alice, first.id, Some(" Renamed "))
        .unwrap();
    assert_eq!(renamed.title.as_deref(), Some("Renamed"));
    assert!(renamed.updated_at > first.updated_at);
    assert_eq!(store.conversation(&alice, first.id).unwrap(), renamed);
    let page = store.list_conversations(&alice, Page::first(10)).unwrap();
    assert_eq!(
        page.conversations[0].id, first.id,
        "renaming moves it to the front"
    );
    let cleared = store.rename_conversation(&alice, first.id, None).unwrap();
    assert_eq!(cleared.title, None);
    assert_eq!(store.conversation(&alice, second.id).unwrap(), second);
}

fn list_pages_are_stable_while_messages_arrive(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let bob = user("bob");
    let mut created = Vec::new();
    for i in 0..25 {
        created.push(
            store
                .create_conversation(&alice, Some(&format!("c{i}")))
                .unwrap()
                .id,
        );
        store
            .create_conversation(&bob, Some(&format!("bob{i}")))
            .unwrap();
    }
    // Walk in pages of 7; after the first page, append to a conversation not yet listed (it moves
    // to the front, behind the cursor) and to one already listed.
    let mut seen = Vec::new();
    let mut page = store.list_conversations(&alice, Page::first(7)).unwrap();
    let mut bumped = false;
    loop {
        assert!(page.conversations.len() <= 7);
        seen.extend(page.conversations.iter().map(|c| c.id));
        if !bumped {
            store
                .append_message(&alice, created[0], NewMessage::user("moves up"))
                .unwrap();
            store
                .append_message(&alice, seen[0], NewMessage::user("stays listed"))
                .unwrap();
            bumped = true;
        }
        match page.next {
            Some(next) => page = store.list_conversations(&alice, next).unwrap(),
            None => break,
        }
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no conversation listed twice");
    assert_eq!(
        seen.len(),
        24,
        "all but the one that moved behind the cursor"
    );
    assert!(!seen.contains(&created[0]));
    let expected: Vec<_> = created[1..].iter().rev().copied().collect();
    assert_eq!(seen, expected, "newest first");
    let front = store.list_conversations(&alice, Page::first(2)).unwrap();
    let front: Vec<_> = front.conversations.iter().map(|c| c.id).collect();
    assert_eq!(
        front,
        [seen[0], created[0]],
        "appended to last, listed first"
    );
}

fn list_page_size_is_capped(db: &TestDb) {
    // Each store lists a user of its own, so the test reads the same whether the two stores share
    // a database (a file, PostgreSQL) or not (two in-memory stores).
    let (alice, bob) = (user("alice"), user("bob"));
    let store = db.open();
    let capped = ChatStore::builder(db.url.clone())
        .max_page_size(2)
        .open()
        .unwrap();
    for _ in 0..5 {
        store.create_conversation(&alice, None).unwrap();
        capped.create_conversation(&bob, None).unwrap();
    }
    let page = capped.list_conversations(&bob, Page::first(1000)).unwrap();
    assert_eq!(page.conversations.len(), 2);
    assert_eq!(page.next.map(|p| p.limit()), Some(2));
    let page = store.list_conversations(&alice, Page::first(0)).unwrap();
    assert_eq!(page.conversations.len(), 1, "a zero limit is raised to one");
    let all = store
        .list_conversations(&alice, Page::first(u32::MAX))
        .unwrap();
    assert_eq!((all.conversations.len(), all.next), (5, None));
}

fn a_cursor_rebuilt_from_its_parts_continues_the_list(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let ids: Vec<_> = (0..5)
        .map(|_| store.create_conversation(&alice, None).unwrap().id)
        .collect();
    store.create_conversation(&bob, None).unwrap();
    let first = store.list_conversations(&alice, Page::first(2)).unwrap();
    let cursor = first.next.unwrap().cursor().unwrap();
    // What a service would put in a URL and read back on the next request.
    let (time, id) = (cursor.updated_at().to_rfc3339(), cursor.id().to_string());
    let rebuilt = ConversationCursor::new(
        chrono::DateTime::parse_from_rfc3339(&time).unwrap().into(),
        id.parse().unwrap(),
    );
    assert_eq!(rebuilt, cursor);
    let rest = store
        .list_conversations(&alice, Page::after(rebuilt, 10))
        .unwrap();
    let listed: Vec<_> = first
        .conversations
        .iter()
        .chain(&rest.conversations)
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, ids.iter().rev().copied().collect::<Vec<_>>());
    // A cursor made up by a client selects among the acting user's conversations only.
    let forged = ConversationCursor::new(
        chrono::DateTime::<chrono::Utc>::MAX_UTC,
        id.parse().unwrap(),
    );
    let page = store
        .list_conversations(&bob, Page::after(forged, 100))
        .unwrap();
    assert_eq!(page.conversations.len(), 1);
    assert!(page.conversations.iter().all(|c| c.user_id == bob));
    let forged = ConversationCursor::new(
        chrono::DateTime::<chrono::Utc>::MIN_UTC,
        id.parse().unwrap(),
    );
    assert!(store
        .list_conversations(&bob, Page::after(forged, 100))
        .unwrap()
        .conversations
        .is_empty());
}

fn delete_cascades_to_messages(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let doomed = conversation_with(&store, &alice, 30);
    let kept = conversation_with(&store, &alice, 3);
    store.delete_conversation(&alice, doomed).unwrap();
    assert!(matches!(
        store.conversation(&alice, doomed),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.messages(&alice, doomed, Window::All),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.delete_conversation(&alice, doomed),
        Err(Error::NotFound)
    ));
    assert_eq!(
        contents(&store.messages(&alice, kept, Window::All).unwrap().messages),
        expected(1..=3)
    );
    // The messages are gone from the database, not just unreachable.
    if let Some(rows) = db.count_rows("chatstore_messages") {
        assert_eq!(rows, 3);
    }
    let counts = store.delete_user_data(&alice).unwrap();
    assert_eq!((counts.conversations, counts.messages), (1, 3));
}

fn delete_user_data_leaves_other_users_intact(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let a1 = conversation_with(&store, &alice, 4);
    conversation_with(&store, &alice, 6);
    store.create_conversation(&alice, Some("empty")).unwrap();
    let b1 = conversation_with(&store, &bob, 5);
    let bob_before = snapshot(&store, &bob, b1);

    let counts = store.delete_user_data(&alice).unwrap();
    assert_eq!((counts.conversations, counts.messages), (3, 10));
    if let Some(rows) = db.count_rows("chatstore_messages") {
        assert_eq!(rows, 5, "only bob's messages are left in the table");
    }
    assert!(store
        .list_conversations(&alice, Page::first(10))
        .unwrap()
        .conversations
        .is_empty());
    assert!(matches!(
        store.conversation(&alice, a1),
        Err(Error::NotFound)
    ));
    assert_eq!(snapshot(&store, &bob, b1), bob_before);
    assert_eq!(
        store.delete_user_data(&alice).unwrap(),
        chatstore::DeletedCounts::default()
    );
}
