//! The behavioural suite: every behaviour is written once and run on every enabled backend (a SQLite
//! file, in-memory SQLite and, with `--features postgres`, a PostgreSQL database of its own).

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use chatstore::{
    ChatStore, ConversationCursor, ConversationId, Error, ItemKind, Message, NewMessage, Page,
    Role, TextError, UserId, Window,
};
use serde_json::json;
use support::{alloc, Kind, TestDb};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Generates one `#[test]` per backend for each behaviour. `every` runs on all of them; `persistent`
/// needs a database that outlives a store (reopening, raw SQL, two stores on one database), so it
/// skips in-memory SQLite.
macro_rules! backend_tests {
    (every: [$($every:ident),* $(,)?], persistent: [$($persistent:ident),* $(,)?] $(,)?) => {
        #[cfg(feature = "sqlite")]
        mod sqlite_file {
            $( #[test] fn $every() { super::$every(&super::TestDb::new(super::Kind::SqliteFile)) } )*
            $( #[test] fn $persistent() {
                super::$persistent(&super::TestDb::new(super::Kind::SqliteFile))
            } )*
        }
        #[cfg(feature = "sqlite")]
        mod sqlite_memory {
            $( #[test] fn $every() { super::$every(&super::TestDb::new(super::Kind::SqliteMemory)) } )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $( #[test] fn $every() { super::$every(&super::TestDb::new(super::Kind::Postgres)) } )*
            $( #[test] fn $persistent() {
                super::$persistent(&super::TestDb::new(super::Kind::Postgres))
            } )*
        }
        #[cfg(feature = "mysql")]
        mod mysql {
            $( #[test] fn $every() { super::$every(&super::TestDb::new(super::Kind::Mysql)) } )*
            $( #[test] fn $persistent() {
                super::$persistent(&super::TestDb::new(super::Kind::Mysql))
            } )*
        }
    };
}

mod admin;
mod context;
mod hardening;
mod search;
#[cfg(feature = "serde")]
mod serialization;
#[cfg(feature = "tracing")]
mod spans;
mod tokens;

backend_tests! {
    every: [
        round_trip_keeps_order_roles_and_metadata,
        latest_returns_newest_in_chronological_order,
        cursors_walk_a_1000_message_history_both_ways,
        windows_clamp_out_of_range_cursors,
        order_holds_when_messages_share_a_timestamp,
        users_are_isolated_on_every_operation,
        titles_are_limited_in_characters_not_bytes,
        titles_are_trimmed_and_blank_means_none,
        title_control_characters_are_refused,
        content_is_stored_verbatim,
        nul_content_is_refused_and_nothing_is_written,
        oversized_content_is_refused_and_nothing_is_written,
        content_limit_is_configurable,
        metadata_must_be_an_object,
        empty_batch_writes_nothing,
        append_bumps_updated_at_and_list_order,
        rename_bumps_updated_at_and_clears_title,
        list_pages_are_stable_while_messages_arrive,
        list_page_size_is_capped,
        a_cursor_rebuilt_from_its_parts_continues_the_list,
        delete_cascades_to_messages,
        delete_user_data_leaves_other_users_intact,
        concurrent_appends_get_consecutive_seqs,
        delete_user_data_counts_exactly_while_appends_race,
        a_connection_the_pool_discards_loses_nothing,
        a_read_racing_a_delete_sees_all_or_not_found,
        verify_schema_reports_everything_present,
        a_full_load_holds_its_rows_and_little_more,
    ],
    persistent: [
        reopening_runs_no_migration_and_keeps_data,
        appends_through_several_stores_get_consecutive_seqs,
        two_stores_opening_a_fresh_database_at_once_both_succeed,
        verify_schema_names_a_dropped_index,
        schema_newer_than_the_build_is_refused,
        database_constraints_refuse_rows_the_library_would_refuse,
        message_owner_must_be_the_conversation_owner,
        migrations_revert_and_reapply_cleanly,
        order_is_seq_even_when_ids_and_times_disagree,
    ],
}

fn user(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

fn contents(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.content.clone()).collect()
}

fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

/// A conversation holding messages "m1".."m{n}", appended in batches.
fn conversation_with(store: &ChatStore, owner: &UserId, n: usize) -> ConversationId {
    let conv = store.create_conversation(owner, Some("history")).unwrap();
    let texts: Vec<String> = (1..=n).map(|i| format!("m{i}")).collect();
    for chunk in texts.chunks(500) {
        let batch: Vec<NewMessage> = chunk.iter().map(|t| NewMessage::user(t)).collect();
        store.append_messages(owner, conv.id, &batch).unwrap();
    }
    conv.id
}

fn expected(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
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

    let (page, usage) = alloc::measure(|| store.messages(&alice, conv.id, Window::All).unwrap());
    assert_eq!(page.messages.len(), 2000);
    let content = 2000 * 4096;
    assert!(
        usage.retained >= content,
        "the result holds the content: {usage:?}"
    );
    assert!(
        usage.peak <= usage.retained * 3 / 2,
        "peak {} bytes for a result of {}: the load copied the history",
        usage.peak,
        usage.retained
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
    let batch: Vec<NewMessage> = texts.iter().map(|t| NewMessage::user(t)).collect();
    store.append_messages(&alice, conv.id, &batch).unwrap();
    let page = store.messages(&alice, conv.id, Window::All).unwrap();
    let stamps: HashSet<_> = page.messages.iter().map(|m| m.created_at).collect();
    assert_eq!(stamps.len(), 1, "one batch, one timestamp");
    assert_eq!(contents(&page.messages), texts);
    let tail = store.messages(&alice, conv.id, Window::Latest(3)).unwrap();
    assert_eq!(contents(&tail.messages), texts[197..].to_vec());
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

fn titles_are_limited_in_characters_not_bytes(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    for unit in ["a", "é", "日", "🦀"] {
        let longest = unit.repeat(255);
        let conv = store.create_conversation(&alice, Some(&longest)).unwrap();
        assert_eq!(
            store.conversation(&alice, conv.id).unwrap().title,
            Some(longest.clone())
        );

        let too_long = unit.repeat(256);
        let err = store
            .create_conversation(&alice, Some(&too_long))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidTitle(TextError::TooLong {
                    chars: 256,
                    max: 255
                })
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "title is 256 characters, the maximum is 255"
        );
        let err = store
            .rename_conversation(&alice, conv.id, Some(&too_long))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidTitle(_)), "{err:?}");
        assert_eq!(
            store.conversation(&alice, conv.id).unwrap().title,
            Some(longest)
        );
    }
    let all = store.list_conversations(&alice, Page::first(100)).unwrap();
    assert_eq!(
        all.conversations.len(),
        4,
        "no refused title created a conversation"
    );
}

fn titles_are_trimmed_and_blank_means_none(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store
        .create_conversation(&alice, Some("  \u{3000}Groceries \u{a0}"))
        .unwrap();
    assert_eq!(conv.title.as_deref(), Some("Groceries"));
    assert_eq!(
        store
            .conversation(&alice, conv.id)
            .unwrap()
            .title
            .as_deref(),
        Some("Groceries")
    );
    // 255 characters after trimming is fine even with whitespace around it.
    let padded = format!("   {}   ", "x".repeat(255));
    assert!(store.create_conversation(&alice, Some(&padded)).is_ok());

    let blank = store.create_conversation(&alice, Some(" \t ")).unwrap();
    assert_eq!(store.conversation(&alice, blank.id).unwrap().title, None);
    let renamed = store
        .rename_conversation(&alice, conv.id, Some("   "))
        .unwrap();
    assert_eq!(renamed.title, None);
}

fn title_control_characters_are_refused(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    for bad in [
        "two\nlines",
        "tab\there",
        "nul\0",
        "esc\u{1b}[31m",
        "del\u{7f}",
    ] {
        let err = store.create_conversation(&alice, Some(bad)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidTitle(TextError::ControlCharacter { .. })),
            "{bad:?}: {err:?}"
        );
    }
    assert!(store
        .list_conversations(&alice, Page::first(10))
        .unwrap()
        .conversations
        .is_empty());
}

fn content_is_stored_verbatim(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store
        .create_conversation(&alice, Some("'; DROP TABLE conversations; --"))
        .unwrap();
    let texts = [
        "",
        "Robert'); DROP TABLE messages;--",
        "\"double\" 'single' `back` \\ backslash %_ like-wildcards",
        "SELECT * FROM conversations WHERE 1=1 OR user_id <> ''",
        "naïve café — 日本語 — עברית — 🦀🎉 — e\u{301}",
        "  leading and trailing whitespace kept  \n\ttabs and newlines\r\n",
        "\u{feff}BOM and \u{200b}zero-width",
    ];
    let batch: Vec<NewMessage> = texts.iter().map(|t| NewMessage::user(t)).collect();
    store.append_messages(&alice, conv.id, &batch).unwrap();
    let page = store.messages(&alice, conv.id, Window::All).unwrap();
    assert_eq!(contents(&page.messages), texts.map(String::from).to_vec());
    let reread = store.conversation(&alice, conv.id).unwrap();
    assert_eq!(
        reread.title.as_deref(),
        Some("'; DROP TABLE conversations; --")
    );
    // A user id full of SQL is just an id.
    let odd = user("x' OR '1'='1");
    assert!(store
        .list_conversations(&odd, Page::first(10))
        .unwrap()
        .conversations
        .is_empty());
}

/// A conversation's complete observable state, to show that a refused write changed nothing.
fn snapshot(store: &ChatStore, owner: &UserId, conv: ConversationId) -> (i64, Vec<Message>) {
    let c = store.conversation(owner, conv).unwrap();
    (
        c.message_count,
        store.messages(owner, conv, Window::All).unwrap().messages,
    )
}

fn nul_content_is_refused_and_nothing_is_written(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 2);
    let before = snapshot(&store, &alice, conv);
    let err = store
        .append_message(&alice, conv, NewMessage::user("a\0b"))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidContent { index: 1 }), "{err:?}");
    let batch = [
        NewMessage::user("fine"),
        NewMessage::user("\0"),
        NewMessage::user("fine too"),
    ];
    let err = store.append_messages(&alice, conv, &batch).unwrap_err();
    assert!(matches!(err, Error::InvalidContent { index: 0 }), "{err:?}");
    assert_eq!(snapshot(&store, &alice, conv), before);
}

fn oversized_content_is_refused_and_nothing_is_written(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 2);
    let before = snapshot(&store, &alice, conv);
    let limit = chatstore::StoreBuilder::DEFAULT_MAX_CONTENT_BYTES;
    let too_big = "x".repeat(limit + 1);
    let batch = [NewMessage::user("fine"), NewMessage::assistant(&too_big)];
    let err = store.append_messages(&alice, conv, &batch).unwrap_err();
    assert!(
        matches!(err, Error::ContentTooLarge { bytes, max } if bytes == limit + 1 && max == limit)
    );
    assert_eq!(snapshot(&store, &alice, conv), before);

    // Exactly at the limit is accepted and read back whole.
    let largest = "é".repeat(limit / 2);
    let stored = store
        .append_message(&alice, conv, NewMessage::user(&largest))
        .unwrap();
    let page = store.messages(&alice, conv, Window::Latest(1)).unwrap();
    assert_eq!((stored.seq, page.messages[0].content.len()), (3, limit));
}

fn content_limit_is_configurable(db: &TestDb) {
    let store = ChatStore::builder(db.url.clone())
        .max_content_bytes(8)
        .open()
        .unwrap();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap();
    store
        .append_message(&alice, conv.id, NewMessage::user("12345678"))
        .unwrap();
    let err = store
        .append_message(&alice, conv.id, NewMessage::user("123456789"))
        .unwrap_err();
    assert!(
        matches!(err, Error::ContentTooLarge { bytes: 9, max: 8 }),
        "{err:?}"
    );
    let meta = json!({"model": "a-long-model-name"});
    let err = store
        .append_message(&alice, conv.id, NewMessage::user("").with_metadata(&meta))
        .unwrap_err();
    assert!(
        matches!(err, Error::MetadataTooLarge { bytes: 29, max: 8 }),
        "{err:?}"
    );
    assert_eq!(
        store.conversation(&alice, conv.id).unwrap().message_count,
        1
    );
}

fn metadata_must_be_an_object(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 1);
    let before = snapshot(&store, &alice, conv);
    for bad in [
        json!([1, 2]),
        json!("text"),
        json!(3),
        json!(null),
        json!(true),
    ] {
        let err = store
            .append_message(&alice, conv, NewMessage::tool("r").with_metadata(&bad))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidMetadata), "{bad}: {err:?}");
    }
    assert_eq!(snapshot(&store, &alice, conv), before);
    let nested =
        json!({"usage": {"input": 10, "output": 3}, "nul": "a\u{0}b", "emoji": "🦀", "f": 1.5});
    let stored = store
        .append_message(
            &alice,
            conv,
            NewMessage::assistant("ok").with_metadata(&nested),
        )
        .unwrap();
    let page = store.messages(&alice, conv, Window::Latest(1)).unwrap();
    assert_eq!(page.messages[0].metadata.as_ref(), Some(&nested));
    assert_eq!(page.messages[0], stored);
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
    if let Some(rows) = db.count_rows("messages") {
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
    if let Some(rows) = db.count_rows("messages") {
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
    if let Some(rows) = db.count_rows("messages") {
        assert_eq!(rows, 0);
    }
}

fn a_connection_the_pool_discards_loses_nothing(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 2);
    // r2d2 discards a connection returned by a panicking thread. For in-memory SQLite that
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

fn verify_schema_reports_everything_present(db: &TestDb) {
    let report = db.open().verify_schema().unwrap();
    assert!(report.is_complete(), "{report}");
    assert_eq!(report.missing().count(), 0);
    for kind in [ItemKind::Table, ItemKind::Index, ItemKind::Constraint] {
        assert!(report.items.iter().any(|i| i.kind == kind));
    }
}

fn reopening_runs_no_migration_and_keeps_data(db: &TestDb) {
    let alice = user("alice");
    let conv = conversation_with(&db.open(), &alice, 3);
    // A migration run on reopen would fail on CREATE TABLE, and a reset would lose the data.
    let again = db.open();
    let third = db.open();
    assert_eq!(
        contents(&again.messages(&alice, conv, Window::All).unwrap().messages),
        expected(1..=3)
    );
    third
        .append_message(&alice, conv, NewMessage::user("m4"))
        .unwrap();
    assert_eq!(again.conversation(&alice, conv).unwrap().message_count, 4);
    assert!(again.verify_schema().unwrap().is_complete());
}

fn two_stores_opening_a_fresh_database_at_once_both_succeed(db: &TestDb) {
    // The races are narrow (on SQLite about one open in twenty lost before the WAL switch was
    // retried): several rounds, each on a fresh database, make a regression show.
    let rounds = if db.kind == Kind::Postgres { 4 } else { 25 };
    for round in 0..rounds {
        let fresh = TestDb::new(db.kind);
        let db = if round == 0 { db } else { &fresh };
        open_at_once(db);
    }
}

fn open_at_once(db: &TestDb) {
    const OPENERS: usize = 4;
    let barrier = Arc::new(Barrier::new(OPENERS));
    let handles: Vec<_> = (0..OPENERS)
        .map(|_| {
            let (url, barrier) = (db.url.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                ChatStore::open(&url)
            })
        })
        .collect();
    let stores: Vec<ChatStore> = handles
        .into_iter()
        .map(|h| h.join().unwrap().expect("concurrent open"))
        .collect();
    let alice = user("alice");
    let conv = stores[0].create_conversation(&alice, None).unwrap();
    for store in &stores {
        store
            .append_message(&alice, conv.id, NewMessage::user("hi"))
            .unwrap();
        assert!(store.verify_schema().unwrap().is_complete());
    }
    assert_eq!(
        stores[1]
            .conversation(&alice, conv.id)
            .unwrap()
            .message_count,
        OPENERS as i64
    );
}

fn verify_schema_names_a_dropped_index(db: &TestDb) {
    let store = db.open();
    let on_table = if db.kind == Kind::Mysql {
        " ON conversations"
    } else {
        ""
    };
    db.execute(&format!("DROP INDEX conversations_user_updated{on_table}"))
        .unwrap();
    let report = store.verify_schema().unwrap();
    assert!(!report.is_complete());
    let missing: Vec<_> = report.missing().map(|i| (i.kind, i.name)).collect();
    assert_eq!(missing, [(ItemKind::Index, "conversations_user_updated")]);
    assert!(
        report
            .to_string()
            .contains("MISSING index conversations_user_updated"),
        "{report}"
    );
}

fn schema_newer_than_the_build_is_refused(db: &TestDb) {
    drop(db.open());
    db.execute("INSERT INTO __diesel_schema_migrations (version) VALUES ('99991231000000')")
        .unwrap();
    let err = ChatStore::open(&db.url).unwrap_err();
    assert!(
        matches!(&err, Error::SchemaTooNew { found, .. } if found == "99991231000000"),
        "{err:?}"
    );
}

fn database_constraints_refuse_rows_the_library_would_refuse(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 1);
    let sql = RawSql::new(db);
    let title_256 = "é".repeat(256);
    let refused = [
        (
            sql.conversation(1, "alice", Some(&title_256)),
            // PostgreSQL's and MySQL's VARCHAR(255) refuse it before the CHECK does.
            &[
                "conversations_title_length",
                "character varying(255)",
                "Data too long for column 'title'",
            ][..],
        ),
        (
            sql.conversation(2, "", None),
            &["conversations_user_id_length"][..],
        ),
        (
            sql.message(
                conv,
                RawMessage {
                    id: 3,
                    role: "wizard",
                    ..Default::default()
                },
            ),
            &["messages_role_valid"][..],
        ),
        (
            sql.message(
                conv,
                RawMessage {
                    id: 4,
                    metadata: Some("[1]"),
                    ..Default::default()
                },
            ),
            &["messages_metadata_object"][..],
        ),
        (
            sql.message(
                conv,
                RawMessage {
                    id: 5,
                    seq: 1,
                    ..Default::default()
                },
            ),
            // PostgreSQL names the constraint, SQLite the columns.
            &[
                "messages_conversation_seq",
                "messages.conversation_id, messages.seq",
            ][..],
        ),
    ];
    for (sql, constraint) in &refused {
        refused_by(db, sql, constraint);
    }
    // The same title at 255 characters goes in: the refusals above were the limits, not the SQL.
    db.execute(&sql.conversation(1, "alice", Some(&"é".repeat(255))))
        .unwrap();
    assert_eq!(snapshot(&store, &alice, conv).0, 1);
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
    db.execute("UPDATE conversations SET message_count = 3")
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

/// Statements written by hand for one backend, as another program would write them.
struct RawSql(Kind);

/// A message row for [`RawSql::message`]; `..Default::default()` makes the rest a valid row
/// (seq 2 of alice's conversation).
struct RawMessage<'a> {
    /// Every byte of the 16-byte id.
    id: u8,
    owner: &'a str,
    seq: i64,
    role: &'a str,
    content: &'a str,
    /// JSON text, or NULL.
    metadata: Option<&'a str>,
    /// `YYYY-MM-DD HH:MM:SS`.
    at: &'a str,
}

impl Default for RawMessage<'_> {
    fn default() -> Self {
        RawMessage {
            id: 1,
            owner: "alice",
            seq: 2,
            role: "user",
            content: "x",
            metadata: None,
            at: "2026-01-01 00:00:00",
        }
    }
}

impl RawSql {
    fn new(db: &TestDb) -> Self {
        RawSql(db.kind)
    }

    /// A 16-byte id.
    fn id(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match self.0 {
            Kind::Postgres => format!("'\\x{hex}'::bytea"),
            _ => format!("x'{hex}'"),
        }
    }

    /// A timestamp written `YYYY-MM-DD HH:MM:SS`.
    fn at(&self, time: &str) -> String {
        match self.0 {
            Kind::Postgres => format!("'{time}'::timestamp"),
            _ => format!("'{time}'"),
        }
    }

    fn message(&self, conv: ConversationId, m: RawMessage) -> String {
        let metadata = m
            .metadata
            .map_or("NULL".to_owned(), |json| format!("'{json}'"));
        format!(
            "INSERT INTO messages \
             (id, conversation_id, user_id, seq, role, content, metadata, created_at) \
             VALUES ({}, {}, '{}', {}, '{}', '{}', {metadata}, {})",
            self.id(&[m.id; 16]),
            self.id(conv.as_uuid().as_bytes()),
            m.owner,
            m.seq,
            m.role,
            m.content,
            self.at(m.at),
        )
    }

    fn conversation(&self, id: u8, owner: &str, title: Option<&str>) -> String {
        let title = title.map_or("NULL".to_owned(), |t| format!("'{t}'"));
        let at = self.at("2026-01-01 00:00:00");
        format!(
            "INSERT INTO conversations \
             (id, user_id, title, created_at, updated_at, message_count) \
             VALUES ({}, '{owner}', {title}, {at}, {at}, 0)",
            self.id(&[id; 16]),
        )
    }
}

/// Runs `sql` as another program would and checks that `constraint` is what refused it (not, say,
/// a typo in the statement).
fn refused_by(db: &TestDb, sql: &str, constraint: &[&str]) {
    match db.execute(sql) {
        Ok(()) => panic!("the database accepted: {sql}"),
        Err(e) => assert!(
            constraint.iter().any(|c| e.to_string().contains(c)),
            "expected {constraint:?}, got {e}"
        ),
    }
}

fn message_owner_must_be_the_conversation_owner(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 1);
    let sql = RawSql::new(db);
    let insert = |owner| {
        db.execute(&sql.message(
            conv,
            RawMessage {
                owner,
                ..Default::default()
            },
        ))
    };
    let fk = match db.kind {
        Kind::Postgres | Kind::Mysql => "messages_conversation_fk",
        _ => "FOREIGN KEY constraint failed",
    };
    let err =
        insert("mallory").expect_err("a message owned by another than its conversation's owner");
    assert!(err.to_string().contains(fk), "{err}");
    insert("alice").unwrap();
}

fn migrations_revert_and_reapply_cleanly(db: &TestDb) {
    let store = db.open();
    conversation_with(&store, &user("alice"), 2);
    db.revert_all_migrations();
    let report = store.verify_schema().unwrap();
    assert_eq!(
        report.missing().count(),
        report.items.len(),
        "down.sql removes everything:\n{report}"
    );
    let reopened = db.open();
    assert!(reopened.verify_schema().unwrap().is_complete());
    let alice = user("alice");
    let conv = conversation_with(&reopened, &alice, 2);
    assert_eq!(
        reopened.conversation(&alice, conv).unwrap().message_count,
        2
    );
    assert_eq!(
        reopened
            .list_conversations(&alice, Page::first(10))
            .unwrap()
            .conversations
            .len(),
        1
    );
}

// Behaviours that need no database.

#[test]
fn stores_and_errors_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<ChatStore>();
    assert_send_sync::<Error>();
}

#[test]
fn user_ids_are_validated() {
    assert!(matches!(
        UserId::new(""),
        Err(Error::InvalidUserId(TextError::Empty))
    ));
    assert!(UserId::new("a".repeat(255)).is_ok());
    assert!(
        UserId::new("日".repeat(255)).is_ok(),
        "counted in characters"
    );
    assert!(matches!(
        UserId::new("a".repeat(256)),
        Err(Error::InvalidUserId(TextError::TooLong {
            chars: 256,
            max: 255
        }))
    ));
    assert!(matches!(
        UserId::new("ab\ncd"),
        Err(Error::InvalidUserId(TextError::ControlCharacter {
            position: 2
        }))
    ));
    assert_eq!(
        UserId::new(" spaced ").unwrap().as_str(),
        " spaced ",
        "ids are opaque: kept verbatim"
    );
}

#[test]
fn conversation_ids_parse_and_refuse_garbage() {
    let id = ConversationId::from(uuid::Uuid::now_v7());
    assert_eq!(id.to_string().parse::<ConversationId>().unwrap(), id);
    assert!(matches!(
        "not-a-uuid".parse::<ConversationId>(),
        Err(Error::InvalidId(_))
    ));
    let huge = "x".repeat(100_000);
    match huge.parse::<ConversationId>() {
        Err(Error::InvalidId(shown)) => assert_eq!(shown.len(), 64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unsupported_urls_are_refused_with_a_clear_error() {
    for url in [
        "",
        "redis://127.0.0.1",
        "sqlite://",
        "sqlite:",
        "host=127.0.0.1 user=postgres dbname=test",
        "file::memory:",
        "file:chat?mode=memory&cache=shared",
        "sqlite://chat.db?mode=rwc",
    ] {
        let err = ChatStore::open(url).unwrap_err();
        assert!(matches!(err, Error::UnsupportedUrl(_)), "{url}: {err:?}");
    }
    let err = ChatStore::open("ftp://user:secret@host/db").unwrap_err();
    assert!(
        !err.to_string().contains("secret"),
        "a password never reaches an error message"
    );
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_postgres_url_names_the_feature_to_enable() {
    let err = ChatStore::open("postgres://postgres@127.0.0.1/test").unwrap_err();
    assert!(
        matches!(
            err,
            Error::BackendNotEnabled {
                feature: "postgres",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"postgres\""));
}

#[cfg(feature = "postgres")]
#[test]
fn an_unreachable_postgres_server_fails_open_with_the_real_error() {
    // Port 1 on loopback: nothing listens there.
    let err =
        ChatStore::open("postgres://postgres@127.0.0.1:1/test?connect_timeout=2").unwrap_err();
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
}

#[cfg(feature = "mysql")]
#[test]
fn an_unreachable_mysql_server_fails_open_with_the_real_error() {
    for url in [
        "mysql://root@127.0.0.1:1/test",
        "mariadb://root@127.0.0.1:1/test",
    ] {
        let err = ChatStore::open(url).unwrap_err();
        assert!(matches!(err, Error::Connect(_)), "{url}: {err:?}");
    }
}

#[cfg(not(feature = "mysql"))]
#[test]
fn a_mysql_url_names_the_feature_to_enable() {
    let err = ChatStore::open("mysql://root@127.0.0.1/test").unwrap_err();
    assert!(
        matches!(
            err,
            Error::BackendNotEnabled {
                feature: "mysql",
                ..
            }
        ),
        "{err:?}"
    );
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_open_waits_for_another_migrator_at_most_the_connection_timeout() {
    let db = TestDb::new(Kind::Mysql);
    {
        // The named lock chatstore's migration run takes, held by another session.
        let _migrating = db.hold("DO GET_LOCK(CONCAT('chatstore:', MD5(DATABASE())), 10)");
        let started = std::time::Instant::now();
        let err = ChatStore::builder(db.url.clone())
            .connection_timeout(Duration::from_millis(300))
            .open()
            .unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(30));
    }
    assert!(db.open().verify_schema().unwrap().is_complete());
}

#[cfg(not(feature = "sqlite"))]
#[test]
fn a_sqlite_url_names_the_feature_to_enable() {
    let err = ChatStore::open(":memory:").unwrap_err();
    assert!(
        matches!(
            err,
            Error::BackendNotEnabled {
                feature: "sqlite",
                ..
            }
        ),
        "{err:?}"
    );
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_a_writer_locked_out_past_the_busy_timeout_gets_busy() {
    let db = TestDb::new(Kind::SqliteFile);
    let store = ChatStore::builder(db.url.clone())
        .busy_timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 1);
    let before = snapshot(&store, &alice, conv);
    {
        let _other_process = db.hold("BEGIN IMMEDIATE");
        let err = store
            .append_message(&alice, conv, NewMessage::user("x"))
            .unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err:?}");
        let err = store.create_conversation(&alice, None).unwrap_err();
        assert!(matches!(err, Error::Busy(_)), "{err:?}");
        assert_eq!(
            snapshot(&store, &alice, conv),
            before,
            "reads go on meanwhile"
        );
    }
    store
        .append_message(&alice, conv, NewMessage::user("m2"))
        .unwrap();
    assert_eq!(snapshot(&store, &alice, conv).0, 2);
}

#[cfg(feature = "postgres")]
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

#[cfg(feature = "postgres")]
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

#[cfg(feature = "sqlite")]
#[test]
fn out_of_range_options_are_clamped_not_fatal() {
    let builders = [
        ChatStore::builder(":memory:").pool_size(0),
        ChatStore::builder(":memory:").pool_size(u32::MAX),
        ChatStore::builder(":memory:").connection_timeout(Duration::ZERO),
        ChatStore::builder(":memory:").connection_timeout(Duration::MAX),
        ChatStore::builder(":memory:").busy_timeout(Duration::MAX),
        ChatStore::builder(":memory:").max_page_size(0),
    ];
    let alice = user("alice");
    for builder in builders {
        let store = builder.open().unwrap();
        let conv = store.create_conversation(&alice, None).unwrap();
        store
            .append_message(&alice, conv.id, NewMessage::user("hi"))
            .unwrap();
        assert_eq!(
            store
                .list_conversations(&alice, Page::first(5))
                .unwrap()
                .conversations
                .len(),
            1
        );
    }
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_a_terminated_connection_is_replaced_without_reopening() {
    let db = TestDb::new(Kind::Postgres);
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

#[cfg(feature = "sqlite")]
#[test]
fn sqlite_url_forms_open_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forms.db");
    let alice = user("alice");
    let conv = ChatStore::open(&format!("sqlite://{}", path.display()))
        .unwrap()
        .create_conversation(&alice, None)
        .unwrap();
    for url in [
        path.display().to_string(),
        format!("sqlite:{}", path.display()),
        format!("SQLite://{}", path.display()),
        format!("file:{}?mode=rw", path.display()),
    ] {
        assert_eq!(
            ChatStore::open(&url)
                .unwrap()
                .conversation(&alice, conv.id)
                .unwrap()
                .id,
            conv.id
        );
    }
    let mut in_memory = Vec::new();
    for url in [
        ":memory:",
        "sqlite::memory:",
        "sqlite://:memory:",
        "SQLite::memory:",
        "SQLITE://:memory:",
        ":memory:",
    ] {
        let store = ChatStore::open(url).unwrap();
        assert!(
            matches!(store.conversation(&alice, conv.id), Err(Error::NotFound)),
            "{url}"
        );
        in_memory.push((store.create_conversation(&alice, None).unwrap().id, store));
    }
    for (id, store) in &in_memory {
        let page = store.list_conversations(&alice, Page::first(10)).unwrap();
        let ids: Vec<_> = page.conversations.iter().map(|c| c.id).collect();
        assert_eq!(ids, [*id], "each in-memory store is a database of its own");
    }
}
