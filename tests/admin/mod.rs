//! Operators' calls: `stats`, `export_user` and `import_conversation`, on every backend.

use chatstore::{
    ChatStore, Conversation, ConversationCursor, ConversationId, Error, ExportCounts, ExportItem,
    Message, MessageId, NewMessage, Page, SearchQuery, StoreStats, UserId, Window,
};
use serde_json::json;

use crate::support::{backend_tests, user, Kind, TestDb};

backend_tests! {
    every: [
        stats_count_every_users_data,
        export_then_import_into_a_fresh_database_round_trips_exactly,
        an_export_reads_each_conversation_as_it_was_when_reached,
        an_export_never_splices_a_history_cut_back_and_regrown_between_pages,
        a_user_without_data_exports_nothing,
        refused_imports_leave_the_database_unchanged,
        times_far_from_now_import_list_and_update_exactly,
    ],
    persistent: [],
}

fn stats(users: u64, conversations: u64, messages: u64) -> StoreStats {
    let mut stats = StoreStats::default();
    (stats.users, stats.conversations, stats.messages) = (users, conversations, messages);
    stats
}

fn export(store: &ChatStore, user: &UserId) -> Vec<ExportItem> {
    store
        .export_user(user)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// The export's records as conversations, each with its messages; panics if a message is not
/// its conversation's.
fn grouped(items: Vec<ExportItem>) -> Vec<(Conversation, Vec<Message>)> {
    let mut groups: Vec<(Conversation, Vec<Message>)> = Vec::new();
    for item in items {
        match item {
            ExportItem::Conversation(c) => groups.push((c, Vec::new())),
            ExportItem::Message(m) => {
                let (conversation, messages) = groups.last_mut().expect("a message first");
                assert_eq!(m.conversation_id, conversation.id);
                messages.push(m);
            }
            other => panic!("unknown record {other:?}"),
        }
    }
    groups
}

/// Imports every conversation of the export into `store`.
fn import_all(store: &ChatStore, owner: &UserId, items: Vec<ExportItem>) {
    for (conversation, messages) in grouped(items) {
        store
            .import_conversation(owner, &conversation, &messages)
            .unwrap();
    }
}

fn new_conversation_id() -> ConversationId {
    ConversationId::from(uuid::Uuid::now_v7())
}

fn stats_count_every_users_data(db: &TestDb) {
    let store = db.open();
    assert_eq!(store.stats().unwrap(), stats(0, 0, 0));
    let (alice, bob) = (user("alice"), user("bob"));
    let first = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_messages(
            &alice,
            first,
            &[NewMessage::user("a"), NewMessage::assistant("b")],
        )
        .unwrap();
    store
        .append_message(&alice, first, NewMessage::user("c"))
        .unwrap();
    store.create_conversation(&alice, Some("empty")).unwrap();
    let bobs = store.create_conversation(&bob, None).unwrap().id;
    store
        .append_messages(&bob, bobs, &[NewMessage::user("x"), NewMessage::user("y")])
        .unwrap();
    assert_eq!(store.stats().unwrap(), stats(2, 3, 5));
    // User ids are compared exactly, on every backend.
    let capital = user("Alice");
    store.create_conversation(&capital, None).unwrap();
    assert_eq!(store.stats().unwrap(), stats(3, 4, 5));
    store.delete_user_data(&capital).unwrap();

    store.delete_conversation(&alice, first).unwrap();
    assert_eq!(store.stats().unwrap(), stats(2, 2, 2));
    store.delete_user_data(&bob).unwrap();
    assert_eq!(store.stats().unwrap(), stats(1, 1, 0));
}

/// Alice's data: more conversations than a page of the export, one longer than a window of it
/// (appended in batches at different times), metadata, text without spaces, a title set after
/// the last message; and Bob's, which is not hers to export.
fn seed(store: &ChatStore, alice: &UserId, bob: &UserId) -> (ConversationId, ConversationId) {
    let call = json!({"tool_calls": [{"id": "call_1", "name": "add_todo"}], "n": 0.1});
    let tool = json!({"tool_call_id": "call_1"});
    let groceries = store
        .create_conversation(alice, Some("Groceries"))
        .unwrap()
        .id;
    store
        .append_messages(
            alice,
            groceries,
            &[
                NewMessage::system("You manage a todo list."),
                NewMessage::user("Add oat milk"),
                NewMessage::assistant("").with_metadata(&call),
                NewMessage::tool("ok").with_metadata(&tool),
            ],
        )
        .unwrap();
    store
        .append_message(alice, groceries, NewMessage::user("東京で会いましょう"))
        .unwrap();
    store
        .rename_conversation(alice, groceries, Some("Weekend groceries"))
        .unwrap();

    let long = store.create_conversation(alice, Some("long")).unwrap().id;
    let texts: Vec<String> = (1..=2345).map(|i| format!("line {i}")).collect();
    for chunk in texts.chunks(700) {
        let batch: Vec<NewMessage> = chunk.iter().map(NewMessage::user).collect();
        store.append_messages(alice, long, &batch).unwrap();
    }
    for i in 0..103 {
        let title = format!("chat {i}");
        let title = (i % 2 == 0).then_some(title.as_str());
        store.create_conversation(alice, title).unwrap();
    }
    let other = store.create_conversation(bob, Some("Bob's")).unwrap().id;
    store
        .append_message(bob, other, NewMessage::user("Add oat milk"))
        .unwrap();
    (groceries, long)
}

fn export_then_import_into_a_fresh_database_round_trips_exactly(db: &TestDb) {
    let source = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let (groceries, long) = seed(&source, &alice, &bob);

    let mut export_run = source.export_user(&alice);
    let items: Vec<ExportItem> = export_run.by_ref().map(Result::unwrap).collect();
    let mut counts = ExportCounts::default();
    (counts.conversations, counts.messages) = (105, 2350);
    assert_eq!(export_run.counts(), counts);
    let groups = grouped(items.clone());
    assert_eq!(groups.len(), 105);
    let ids: Vec<ConversationId> = groups.iter().map(|(c, _)| c.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "conversations come in id order");
    for (conversation, messages) in &groups {
        let seqs: Vec<i64> = messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=conversation.message_count).collect::<Vec<_>>());
        assert_eq!(conversation.user_id, alice);
    }

    let target = TestDb::new(db.kind);
    let copy = target.open();
    import_all(&copy, &alice, items.clone());
    assert_eq!(
        export(&copy, &alice),
        items,
        "exported again, the copy is the same"
    );
    assert_eq!(copy.stats().unwrap(), stats(1, 105, 2350));
    for conv in [groceries, long] {
        assert_eq!(
            copy.conversation(&alice, conv).unwrap(),
            source.conversation(&alice, conv).unwrap()
        );
        assert_eq!(
            copy.messages(&alice, conv, Window::All).unwrap(),
            source.messages(&alice, conv, Window::All).unwrap()
        );
    }
    // The list order (by updated_at) and every field are the source's.
    let list = |store: &ChatStore| store.list_conversations(&alice, Page::first(200)).unwrap();
    assert_eq!(list(&copy).conversations, list(&source).conversations);

    // Imported messages are in the search index, as appended ones are.
    for (query, want) in [
        ("oat milk", "Add oat milk"),
        ("東京", "東京で会いましょう"),
        ("\"line 2345\"", "line 2345"),
    ] {
        let found = copy
            .search_messages(&alice, &SearchQuery::new(query))
            .unwrap();
        let contents: Vec<&str> = found
            .hits
            .iter()
            .map(|h| h.message.content.as_str())
            .collect();
        assert_eq!(contents, [want], "{query}");
    }
    assert_eq!(
        copy.search_messages(&bob, &SearchQuery::new("oat"))
            .unwrap()
            .hits
            .len(),
        0,
        "Bob's data stayed behind"
    );
    // The copy goes on like any store: appends continue the seqs.
    let next = copy
        .append_message(&alice, groceries, NewMessage::user("and bread"))
        .unwrap();
    assert_eq!(next.seq, 6);
}

fn an_export_reads_each_conversation_as_it_was_when_reached(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let first = store.create_conversation(&alice, Some("first")).unwrap().id;
    store
        .append_messages(
            &alice,
            first,
            &[NewMessage::user("a1"), NewMessage::user("a2")],
        )
        .unwrap();
    let second = store
        .create_conversation(&alice, Some("second"))
        .unwrap()
        .id;
    store
        .append_message(&alice, second, NewMessage::user("b1"))
        .unwrap();
    let third = store.create_conversation(&alice, Some("third")).unwrap().id;

    let mut run = store.export_user(&alice);
    let Some(Ok(ExportItem::Conversation(reached))) = run.next() else {
        panic!("the first conversation first");
    };
    assert_eq!((reached.id, reached.message_count), (first, 2));
    // Written while the export runs, after all three were listed: appends to the first two, a
    // rename of the second, the third deleted. Each is exported as it was when the export reached
    // it, its messages up to the count it had then: the first without a3, the second renamed
    // with b2; the third not at all.
    store
        .append_message(&alice, first, NewMessage::user("a3"))
        .unwrap();
    store
        .append_message(&alice, second, NewMessage::user("b2"))
        .unwrap();
    store
        .rename_conversation(&alice, second, Some("renamed"))
        .unwrap();
    store.delete_conversation(&alice, third).unwrap();
    let rest: Vec<ExportItem> = run.map(Result::unwrap).collect();
    let groups = grouped(
        std::iter::once(ExportItem::Conversation(reached))
            .chain(rest)
            .collect(),
    );
    let seen: Vec<(Option<&str>, Vec<&str>)> = groups
        .iter()
        .map(|(c, m)| {
            let contents = m.iter().map(|m| m.content.as_str()).collect();
            (c.title.as_deref(), contents)
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some("first"), vec!["a1", "a2"]),
            (Some("renamed"), vec!["b1", "b2"]),
        ]
    );
    // Its record and its messages agree: the import takes them.
    let copy_db = TestDb::new(db.kind);
    let copy = copy_db.open();
    for (conversation, messages) in &groups {
        copy.import_conversation(&alice, conversation, messages)
            .unwrap();
    }
}

/// A conversation of 1,500 messages cleared and written anew after the export read its first page
/// of 1,000: the export ends that conversation there, short of its count (which an import
/// refuses), rather than go on with the new messages 1,001 to 1,500 as if they followed the old.
fn an_export_never_splices_a_history_cut_back_and_regrown_between_pages(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let write = |prefix: &str| {
        let texts: Vec<String> = (1..=1500).map(|i| format!("{prefix}{i}")).collect();
        let batch: Vec<_> = texts.iter().map(NewMessage::user).collect();
        store.append_messages(&alice, conv, &batch).unwrap();
    };
    write("old");
    let mut run = store.export_user(&alice);
    let mut records: Vec<ExportItem> = run.by_ref().take(1 + 1000).map(Result::unwrap).collect();
    store.clear_messages(&alice, conv).unwrap();
    write("new");
    records.extend(run.map(Result::unwrap));
    let contents: Vec<&str> = records
        .iter()
        .filter_map(|r| match r {
            ExportItem::Message(m) => Some(m.content.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        contents.len(),
        1000,
        "the conversation ends at the first page"
    );
    assert!(contents.iter().all(|c| c.starts_with("old")));
    let ExportItem::Conversation(conversation) = &records[0] else {
        panic!("{:?}", records[0]);
    };
    let messages: Vec<Message> = records[1..]
        .iter()
        .filter_map(|r| match r {
            ExportItem::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    let copy_db = TestDb::new(db.kind);
    assert!(matches!(
        copy_db
            .open()
            .import_conversation(&alice, conversation, &messages),
        Err(Error::InvalidImport(_))
    ));
}

fn a_user_without_data_exports_nothing(db: &TestDb) {
    let store = db.open();
    let nobody = user("nobody");
    let mut run = store.export_user(&nobody);
    assert!(run.next().is_none());
    assert_eq!(run.counts(), ExportCounts::default());
    // Someone else's data is not the user's.
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_message(&alice, conv, NewMessage::user("hi"))
        .unwrap();
    assert!(export(&store, &nobody).is_empty());
    assert_eq!(export(&store, &alice).len(), 2);
}

/// Everything a refused import could have touched.
fn snapshot(store: &ChatStore, db: &TestDb, users: &[&UserId]) -> String {
    let mut seen = format!("{:?}", store.stats().unwrap());
    for user in users {
        seen += &format!("{:?}", export(store, user));
        for word in ["refused", "milk"] {
            let found = store
                .search_messages(user, &SearchQuery::new(word))
                .unwrap();
            seen += &format!("{:?}", found.hits.len());
        }
    }
    if db.kind == Kind::Mysql {
        seen += &format!("{:?}", db.count_rows("chatstore_message_words"));
    }
    seen
}

fn refused_imports_leave_the_database_unchanged(db: &TestDb) {
    let source_db = TestDb::new(db.kind);
    let source = source_db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let conv = source
        .create_conversation(&alice, Some("Groceries"))
        .unwrap();
    source
        .append_messages(
            &alice,
            conv.id,
            &[
                NewMessage::user("Add oat milk"),
                NewMessage::assistant("refused words"),
                NewMessage::user("thanks"),
            ],
        )
        .unwrap();
    let (conversation, messages) = grouped(export(&source, &alice)).remove(0);

    let store = db.open();
    store
        .import_conversation(&alice, &conversation, &messages)
        .unwrap();
    let before = snapshot(&store, db, &[&alice, &bob]);
    let unchanged = |what: &str| {
        assert_eq!(snapshot(&store, db, &[&alice, &bob]), before, "{what}");
    };

    // The same conversation again.
    let again = store.import_conversation(&alice, &conversation, &messages);
    assert!(
        matches!(again, Err(Error::AlreadyExists(id)) if id == conversation.id),
        "{again:?}"
    );
    unchanged("existing conversation");

    // Under a new id, but with messages the store holds: the first one taken is named, and the
    // conversation row written before the messages is rolled back with them.
    let mut renamed = conversation.clone();
    renamed.id = new_conversation_id();
    let mut moved = messages.clone();
    for m in &mut moved {
        m.conversation_id = renamed.id;
    }
    moved[0].id = MessageId::from(uuid::Uuid::now_v7());
    let taken = store.import_conversation(&alice, &renamed, &moved);
    assert!(
        matches!(taken, Err(Error::DuplicateId(id)) if id == messages[1].id),
        "{taken:?}"
    );
    assert!(matches!(
        store.conversation(&alice, renamed.id),
        Err(Error::NotFound)
    ));
    unchanged("a stored message id");

    // Fresh ids from here on, so that only the broken rule can refuse the import.
    let fresh = |c: &Conversation, m: &[Message]| {
        let mut c = c.clone();
        c.id = new_conversation_id();
        let m: Vec<Message> = m
            .iter()
            .map(|m| {
                let mut m = m.clone();
                (m.id, m.conversation_id) = (MessageId::from(uuid::Uuid::now_v7()), c.id);
                m
            })
            .collect();
        (c, m)
    };
    let invalid = |result: Result<(), Error>, what: &str| {
        assert!(
            matches!(result, Err(Error::InvalidImport(_))),
            "{what}: {result:?}"
        );
        unchanged(what);
    };

    let (c, mut m) = fresh(&conversation, &messages);
    m[2].seq = 4;
    invalid(store.import_conversation(&alice, &c, &m), "a gap in seq");
    let (c, mut m) = fresh(&conversation, &messages);
    m.swap(0, 1);
    invalid(
        store.import_conversation(&alice, &c, &m),
        "seqs out of order",
    );
    let (c, m) = fresh(&conversation, &messages);
    invalid(
        store.import_conversation(&alice, &c, &m[..2]),
        "a missing message",
    );
    let (c, m) = fresh(&conversation, &messages);
    invalid(store.import_conversation(&bob, &c, &m), "another user's");
    let (mut c, m) = fresh(&conversation, &messages);
    c.user_id = bob.clone();
    invalid(store.import_conversation(&alice, &c, &m), "as another user");
    let (c, mut m) = fresh(&conversation, &messages);
    m[1].conversation_id = conversation.id;
    invalid(
        store.import_conversation(&alice, &c, &m),
        "another conversation's message",
    );

    let (c, mut m) = fresh(&conversation, &messages);
    m[2].content = "refused ".repeat((1 << 20) / 8 + 1);
    let large = store.import_conversation(&alice, &c, &m);
    assert!(
        matches!(large, Err(Error::ContentTooLarge { .. })),
        "{large:?}"
    );
    unchanged("oversized content");
    let (c, mut m) = fresh(&conversation, &messages);
    m[2].content = "refused\0".into();
    let nul = store.import_conversation(&alice, &c, &m);
    assert!(
        matches!(nul, Err(Error::InvalidContent { index: 7 })),
        "{nul:?}"
    );
    unchanged("a NUL character");
    let (mut c, m) = fresh(&conversation, &messages);
    c.title = Some("x".repeat(256));
    let title = store.import_conversation(&alice, &c, &m);
    assert!(matches!(title, Err(Error::InvalidTitle(_))), "{title:?}");
    unchanged("a long title");
    // The year 10000 would sort before every four-digit year (SQLite keeps times as text).
    let (mut c, m) = fresh(&conversation, &messages);
    c.updated_at = "+10000-01-01T00:00:00Z".parse().unwrap();
    invalid(
        store.import_conversation(&alice, &c, &m),
        "a five-digit year",
    );

    // What was refused, fixed, goes in.
    let (c, m) = fresh(&conversation, &messages);
    store.import_conversation(&alice, &c, &m).unwrap();
    assert_eq!(store.stats().unwrap(), stats(1, 2, 6));
}

/// Times far from now, before 1970 and after 2038 (the range of MySQL's TIMESTAMP type, which the
/// store once bound its times as), go in, come back and take part in lists and writes exactly, on
/// every backend. Nothing here depends on the clock: a write to a conversation updated in 9999
/// keeps that time.
fn times_far_from_now_import_list_and_update_exactly(db: &TestDb) {
    let source_db = TestDb::new(db.kind);
    let source = source_db.open();
    let alice = user("alice");
    for _ in 0..3 {
        let conv = source.create_conversation(&alice, None).unwrap().id;
        source
            .append_messages(
                &alice,
                conv,
                &[NewMessage::user("hi"), NewMessage::assistant("yo")],
            )
            .unwrap();
    }
    let time = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap().to_utc();
    // (created_at, each message's, updated_at) of each conversation, in id order.
    let times = [
        (
            "0001-01-01T00:00:00Z",
            ["1900-01-01T00:00:00.000001Z", "1969-12-31T23:59:59.999999Z"],
            "1970-01-01T00:00:00Z",
        ),
        (
            "2038-01-19T03:14:07.999999Z",
            ["2038-01-19T03:14:08Z", "2040-02-29T12:34:56.654321Z"],
            "2040-02-29T12:34:56.654321Z",
        ),
        (
            "9999-12-31T00:00:00Z",
            ["9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"],
            "9999-12-31T23:59:59.999999Z",
        ),
    ];
    let mut imported = grouped(export(&source, &alice));
    for ((conversation, messages), (created, at, updated)) in imported.iter_mut().zip(times) {
        conversation.created_at = time(created);
        conversation.updated_at = time(updated);
        for (message, at) in messages.iter_mut().zip(at) {
            message.created_at = time(at);
        }
    }

    let store = db.open();
    for (conversation, messages) in &imported {
        store
            .import_conversation(&alice, conversation, messages)
            .unwrap();
    }
    assert_eq!(grouped(export(&store, &alice)), imported);
    let [past, later, last] = [0, 1, 2].map(|i| imported[i].0.clone());

    // Paged one at a time, then from cursors at and between those times.
    let mut listed = Vec::new();
    let mut page = Some(Page::first(1));
    while let Some(current) = page {
        let found = store.list_conversations(&alice, current).unwrap();
        listed.extend(found.conversations);
        page = found.next;
    }
    assert_eq!(listed, [last.clone(), later.clone(), past.clone()]);
    let after = |at: &str, id: ConversationId| {
        let cursor = ConversationCursor::new(time(at), id);
        let found = store.list_conversations(&alice, Page::after(cursor, 10));
        found.unwrap().conversations
    };
    let ids = |found: Vec<Conversation>| found.iter().map(|c| c.id).collect::<Vec<_>>();
    let max = ConversationId::from(uuid::Uuid::max());
    assert_eq!(
        ids(after("9999-12-31T23:59:59.999999Z", last.id)),
        [later.id, past.id]
    );
    assert_eq!(
        ids(after("9999-12-31T23:59:59.999999Z", max)),
        [last.id, later.id, past.id]
    );
    assert_eq!(ids(after("2041-01-01T00:00:00Z", max)), [later.id, past.id]);
    assert_eq!(
        ids(after("2040-02-29T12:34:56.654321Z", later.id)),
        [past.id]
    );
    assert_eq!(ids(after("2038-01-19T03:14:08Z", max)), [past.id]);
    assert_eq!(ids(after("1970-01-01T00:00:00Z", past.id)), []);
    assert_eq!(ids(after("1969-12-31T23:59:59Z", max)), []);
    assert_eq!(ids(after("0001-01-01T00:00:00Z", max)), []);

    // A rename and an append never move `updated_at` back: on the conversation of 9999 it stays.
    store
        .rename_conversation(&alice, last.id, Some("Far ahead"))
        .unwrap();
    let appended = store
        .append_message(&alice, last.id, NewMessage::user("still here"))
        .unwrap();
    assert_eq!(appended.seq, 3);
    assert_eq!(appended.created_at, last.updated_at);
    let renamed = store.conversation(&alice, last.id).unwrap();
    assert_eq!(renamed.title.as_deref(), Some("Far ahead"));
    assert_eq!(renamed.updated_at, last.updated_at);
    assert_eq!(renamed.message_count, 3);
    // On the conversation of 2040 they keep 2040, or the clock's time if it is later.
    let appended = store
        .append_message(&alice, later.id, NewMessage::user("after 2038"))
        .unwrap();
    assert!(appended.created_at >= later.updated_at, "{appended:?}");
    let later_now = store.conversation(&alice, later.id).unwrap();
    assert_eq!(later_now.updated_at, appended.created_at);
    store
        .rename_conversation(&alice, later.id, Some("Later"))
        .unwrap();
    assert!(store.conversation(&alice, later.id).unwrap().updated_at >= later_now.updated_at);
    assert_eq!(
        store.stats().unwrap(),
        stats(1, 3, 8),
        "every write went in"
    );
}
