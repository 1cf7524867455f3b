//! Citus: the store distributes its tables by owner, co-located, when it migrates a Citus
//! database, and every call made for one user runs on the one shard group that holds the user's
//! rows. The rest of the suite runs on Citus through the backend matrix (`citus` modules).
//!
//! What ran where is read from Citus's own counters (`citus_stat_counters`, on for the test
//! database): each statement on distributed tables counts as a single-shard or a multi-shard
//! execution. A call for one user must add single-shard executions only.

use chatstore::{
    ChatStore, Conversation, ExportItem, Message, NewMessage, Page, SearchQuery, UserId, Window,
};

use crate::support::{user, Kind, TestDb};

/// The coordinator's counts of executions on distributed tables in the test database, as
/// (single-shard, multi-shard).
fn executions(db: &TestDb) -> (i64, i64) {
    let count = |column: &str| {
        db.scalar(&format!(
            "SELECT {column} AS n FROM citus_stat_counters WHERE name = current_database()"
        ))
        .unwrap()
    };
    (
        count("query_execution_single_shard"),
        count("query_execution_multi_shard"),
    )
}

/// A Citus database whose sessions count their executions (set before the store connects).
fn counted_db() -> TestDb {
    let db = TestDb::new(Kind::Citus);
    let name = db.url.rsplit('/').next().unwrap().to_owned();
    db.execute(&format!(
        "ALTER DATABASE {name} SET citus.enable_stat_counters = on"
    ))
    .unwrap();
    db
}

/// Runs `call` and checks what it executed: single-shard executions only, at least one.
fn on_one_node<T>(db: &TestDb, name: &str, call: impl FnOnce() -> T) -> T {
    let (single, multi) = executions(db);
    let out = call();
    let (single_after, multi_after) = executions(db);
    assert_eq!(multi_after, multi, "{name} ran a multi-shard statement");
    assert!(single_after > single, "{name} ran nothing on a shard");
    out
}

#[test]
fn the_tables_are_distributed_by_owner_and_co_located() {
    let db = TestDb::new(Kind::Citus);
    let store = db.open();
    let tables = "logicalrelid IN ('chatstore_conversations'::regclass, \
                  'chatstore_messages'::regclass, 'chatstore_branches'::regclass, \
                  'chatstore_conversation_tags'::regclass)";
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(*) AS n FROM pg_dist_partition WHERE {tables} \
             AND partmethod = 'h' AND column_to_column_name(logicalrelid, partkey) = 'user_id'"
        )),
        Some(4)
    );
    assert_eq!(
        db.scalar(&format!(
            "SELECT count(DISTINCT colocationid) AS n FROM pg_dist_partition WHERE {tables}"
        )),
        Some(1)
    );
    // The version table stays on the coordinator.
    assert_eq!(
        db.scalar(
            "SELECT count(*) AS n FROM pg_dist_partition \
             WHERE logicalrelid = 'chatstore_schema_migrations'::regclass"
        ),
        Some(0)
    );
    // The shards are on the workers, a user's rows of each table on the same one.
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_message(&alice, conv, NewMessage::user("hi"))
        .unwrap();
    assert_eq!(
        db.scalar(
            "SELECT count(DISTINCT nodeport) AS n FROM citus_shards \
             WHERE table_name IN ('chatstore_conversations'::regclass, 'chatstore_messages'::regclass) \
             AND shardid IN (get_shard_id_for_distribution_column('chatstore_conversations', 'alice'), \
             get_shard_id_for_distribution_column('chatstore_messages', 'alice'))"
        ),
        Some(1)
    );
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM citus_shards WHERE nodeport = 5440"),
        Some(0)
    );
}

/// A database whose tables were distributed after rows were stored (here: made local again, as
/// reverting the keys migration does, then reopened): the rows move to the shards and read back.
#[test]
fn rows_stored_before_distribution_are_moved_to_the_shards() {
    let db = TestDb::new(Kind::Citus);
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let mut expected = Vec::new();
    for owner in [&alice, &bob] {
        let conv = store.create_conversation(owner, Some("kept")).unwrap().id;
        let batch: Vec<NewMessage<'_>> = (0..30).map(|_| NewMessage::user("m")).collect();
        store.append_messages(owner, conv, &batch).unwrap();
        expected.push(read_all(&store, owner, conv));
    }
    drop(store);
    db.execute(
        "SELECT undistribute_table('chatstore_conversations', cascade_via_foreign_keys => true)",
    )
    .unwrap();
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM pg_dist_partition"),
        Some(0)
    );
    let store = db.open();
    assert!(store.migrations_applied_at_open().is_empty());
    assert_eq!(
        db.scalar("SELECT count(*) AS n FROM pg_dist_partition"),
        Some(4)
    );
    for (owner, before) in [&alice, &bob].into_iter().zip(expected) {
        let conv = before.0.id;
        assert_eq!(read_all(&store, owner, conv), before);
    }
}

fn read_all(
    store: &ChatStore,
    owner: &UserId,
    conv: chatstore::ConversationId,
) -> (Conversation, Vec<Message>) {
    let conversation = store.conversation(owner, conv).unwrap();
    let messages = store.messages(owner, conv, Window::All).unwrap().messages;
    (conversation, messages)
}

/// Every call the store makes for one user, each checked on Citus's counters: it executed on one
/// shard (group) only. The store-wide calls (`stats`, `index_pending`) read every shard.
#[test]
fn every_call_for_one_user_runs_on_one_node() {
    let db = counted_db();
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let one = |name: &str, call: &dyn Fn()| on_one_node(&db, name, call);

    let conv = on_one_node(&db, "create_conversation", || {
        store.create_conversation(&alice, Some("plans")).unwrap().id
    });
    one("conversation", &|| {
        drop(store.conversation(&alice, conv).unwrap())
    });
    // Tagged from the start, so that every change after this one moves its tags' rows too.
    let trip = chatstore::Tag::new("trip").unwrap();
    one("tag_conversation", &|| {
        drop(store.tag_conversation(&alice, conv, &trip).unwrap())
    });
    one("create_conversation_with", &|| {
        let new = chatstore::NewConversation::new()
            .with_tag(trip.clone())
            .with_metadata(serde_json::json!({ "n": 1 }));
        drop(store.create_conversation_with(&alice, new).unwrap())
    });
    one("set_conversation_metadata", &|| {
        let metadata = serde_json::json!({ "budget": 300 });
        drop(
            store
                .set_conversation_metadata(&alice, conv, Some(&metadata))
                .unwrap(),
        )
    });
    one("rename_conversation", &|| {
        drop(
            store
                .rename_conversation(&alice, conv, Some("trip"))
                .unwrap(),
        )
    });
    let first = on_one_node(&db, "append_message", || {
        store
            .append_message(&alice, conv, NewMessage::user("book the train to Lyon"))
            .unwrap()
    });
    let batch = [
        NewMessage::assistant("which day?").with_id(uuid::Uuid::now_v7().into()),
        NewMessage::user("friday").with_id(uuid::Uuid::now_v7().into()),
    ];
    let stored = on_one_node(&db, "append_messages", || {
        store.append_messages(&alice, conv, &batch).unwrap()
    });
    one("append_messages, a retry", &|| {
        assert_eq!(store.append_messages(&alice, conv, &batch).unwrap(), stored)
    });
    one("append_if_last_seq", &|| {
        drop(
            store
                .append_if_last_seq(&alice, conv, 3, &[NewMessage::assistant("booked")])
                .unwrap(),
        )
    });
    for window in [
        Window::Latest(2),
        Window::All,
        Window::Before { seq: 3, limit: 1 },
        Window::After { seq: 1, limit: 2 },
    ] {
        one(&format!("messages({window:?})"), &|| {
            drop(store.messages(&alice, conv, window).unwrap())
        });
    }
    one("context_window", &|| {
        drop(store.context_window(&alice, conv, 1_000).unwrap())
    });
    one("search_messages (indexing what waits)", &|| {
        let found = store
            .search_messages(&alice, &SearchQuery::new("train"))
            .unwrap();
        assert_eq!(found.hits.len(), 1);
    });
    one("search_messages in a conversation", &|| {
        let query = SearchQuery::new("friday").in_conversation(conv);
        assert_eq!(store.search_messages(&alice, &query).unwrap().hits.len(), 1);
    });
    let sibling = on_one_node(&db, "append_sibling", || {
        store
            .append_sibling(&alice, conv, stored[1].id, &[NewMessage::user("saturday")])
            .unwrap()
    });
    one("siblings", &|| {
        drop(store.siblings(&alice, conv, sibling[0].id).unwrap())
    });
    one("branches", &|| {
        assert_eq!(store.branches(&alice, conv).unwrap().len(), 2)
    });
    one("messages across a fork", &|| {
        drop(store.messages(&alice, conv, Window::All).unwrap())
    });
    one("switch_branch", &|| {
        drop(
            store
                .switch_branch(&alice, conv, chatstore::BranchId::ROOT)
                .unwrap(),
        )
    });
    let branch = sibling[0].branch;
    one("switch_branch back", &|| {
        drop(store.switch_branch(&alice, conv, branch).unwrap())
    });
    one("append_if_last_seq_on", &|| {
        drop(
            store
                .append_if_last_seq_on(&alice, conv, branch, 3, &[NewMessage::assistant("ok")])
                .unwrap(),
        )
    });
    one("delete_branch", &|| {
        drop(store.delete_branch(&alice, conv, branch).unwrap())
    });
    let forked = on_one_node(&db, "fork_conversation", || {
        store.fork_conversation(&alice, conv, first.id).unwrap().id
    });
    one("pop_messages", &|| {
        assert_eq!(store.pop_messages(&alice, conv, 1).unwrap().len(), 1)
    });
    one("truncate_messages", &|| {
        drop(store.truncate_messages(&alice, conv, 2).unwrap())
    });
    one("list_conversations", &|| {
        let page = store.list_conversations(&alice, Page::first(1)).unwrap();
        let next = page.next.unwrap();
        drop(store.list_conversations(&alice, next).unwrap());
    });
    one("list_conversations_tagged", &|| {
        let page = store
            .list_conversations_tagged(&alice, &trip, Page::first(1))
            .unwrap();
        let next = page.next.unwrap();
        drop(
            store
                .list_conversations_tagged(&alice, &trip, next)
                .unwrap(),
        );
    });
    one("tags", &|| assert_eq!(store.tags(&alice).unwrap().len(), 1));
    one("pin_conversation", &|| {
        drop(store.pin_conversation(&alice, conv).unwrap())
    });
    one("unpin_conversation", &|| {
        drop(store.unpin_conversation(&alice, conv).unwrap())
    });
    one("archive_conversation", &|| {
        drop(store.archive_conversation(&alice, conv).unwrap())
    });
    one("search_messages, leaving out the archived", &|| {
        // The conversation and its fork hold the first message; the conversation is archived.
        let query = SearchQuery::new("train");
        let shown = store.search_messages(&alice, &query).unwrap().hits;
        assert!(shown.iter().all(|hit| hit.message.conversation_id != conv));
        let archived = query.include_archived(true);
        let all = store.search_messages(&alice, &archived).unwrap().hits;
        assert_eq!(all.len(), shown.len() + 1);
    });
    one("list_archived_conversations", &|| {
        let page = store
            .list_archived_conversations(&alice, Page::first(5))
            .unwrap();
        assert_eq!(page.conversations.len(), 1);
    });
    one("restore_conversation", &|| {
        drop(store.restore_conversation(&alice, conv).unwrap())
    });
    one("set_conversation_tags", &|| {
        drop(
            store
                .set_conversation_tags(&alice, conv, std::slice::from_ref(&trip))
                .unwrap(),
        )
    });
    one("untag_conversation", &|| {
        drop(store.untag_conversation(&alice, conv, &trip).unwrap())
    });
    let exported: Vec<ExportItem> = on_one_node(&db, "export_user", || {
        store
            .export_user(&alice)
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    });
    one("import_conversation", &|| {
        let (conversation, messages) = imported_as(&exported, forked, &bob);
        store
            .import_conversation(&bob, &conversation, &messages)
            .unwrap();
    });
    one("clear_messages", &|| {
        assert_eq!(store.clear_messages(&alice, forked).unwrap(), 1)
    });
    one("delete_conversation", &|| {
        store.delete_conversation(&alice, forked).unwrap()
    });
    one("delete_user_data", &|| {
        assert_eq!(store.delete_user_data(&bob).unwrap().conversations, 1)
    });
    one("a call for a conversation not the user's", &|| {
        assert!(store.messages(&bob, conv, Window::All).is_err())
    });

    // Store-wide: these read every shard.
    store
        .append_message(&alice, conv, NewMessage::user("waits"))
        .unwrap();
    let stats = || assert_eq!(store.stats().unwrap().users, 1);
    let index = || assert_eq!(store.index_pending().unwrap(), 1);
    let store_wide: [(&str, &dyn Fn()); 2] = [("stats", &stats), ("index_pending", &index)];
    for (name, call) in store_wide {
        let (_, multi) = executions(&db);
        call();
        assert!(executions(&db).1 > multi, "{name} is expected to fan out");
    }
}

/// The conversation `id` of an export, with its messages, given to `owner` under a new id.
fn imported_as(
    items: &[ExportItem],
    id: chatstore::ConversationId,
    owner: &UserId,
) -> (Conversation, Vec<Message>) {
    let mut conversation = None;
    let mut messages = Vec::new();
    for item in items {
        match item {
            ExportItem::Conversation(c) if c.id == id => conversation = Some(c.clone()),
            ExportItem::Message(m) if m.conversation_id == id => messages.push(m.clone()),
            _ => {}
        }
    }
    let mut conversation = conversation.unwrap();
    conversation.id = uuid::Uuid::now_v7().into();
    conversation.user_id = owner.clone();
    for m in &mut messages {
        m.conversation_id = conversation.id;
    }
    (conversation, messages)
}
