//! The `tracing` feature: every store operation runs in a span that records what it was, on which
//! backend, how many rows and how long — and nothing a user wrote, nor who the user is.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use chatstore::{
    BranchId, ContextOptions, ConversationId, ExportItem, MessageId, NewMessage, Page, SearchQuery,
    UserId, Window,
};
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use crate::support::{backend_tests, Kind, TestDb};

backend_tests! {
    every: [
        every_operation_records_its_name_backend_rows_and_time_and_nothing_personal,
    ],
    persistent: [],
}

/// Through `AsyncChatStore`, the store's span is made on a blocking-pool thread, yet under the
/// caller's subscriber and inside the caller's span (a web request's, say).
#[cfg(feature = "tokio")]
#[test]
fn async_calls_record_their_span_inside_the_callers() {
    let capture = Capture::default();
    let alice = UserId::new(USER).unwrap();
    tracing::subscriber::with_default(capture.clone(), || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        runtime.block_on(async {
            let store = chatstore::AsyncChatStore::open(":memory:").await.unwrap();
            let request = tracing::info_span!("request");
            let _inside = request.enter();
            store.create_conversation(&alice, None).await.unwrap();
        });
    });
    let captured = capture.0.lock().unwrap();
    let request = captured
        .spans
        .iter()
        .position(|s| s.name == "request")
        .map(|i| i as u64 + 1);
    let create = captured
        .spans
        .iter()
        .find(|s| s.fields.get("operation").map(String::as_str) == Some("create_conversation"))
        .expect("the store's span is recorded");
    assert_eq!(create.parent, request, "{create:?}");
}

/// A span as recorded: its name and fields.
#[derive(Debug, Clone, Default)]
struct SpanRecord {
    name: String,
    fields: BTreeMap<String, String>,
    /// The span it was made in.
    parent: Option<u64>,
}

/// An event as recorded, with the span it happened in.
#[derive(Debug, Clone)]
struct EventRecord {
    level: Level,
    fields: BTreeMap<String, String>,
    span: Option<u64>,
}

#[derive(Debug, Default)]
struct Captured {
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
    /// The spans entered on the capturing thread, innermost last.
    stack: Vec<u64>,
}

/// A subscriber that keeps every span and event, with every field, for the test to inspect.
#[derive(Clone)]
struct Capture(Arc<Mutex<Captured>>);

impl Default for Capture {
    fn default() -> Self {
        keep_every_callsite_of_interest();
        Capture(Arc::default())
    }
}

/// Makes every callsite ask the current subscriber at each call. `tracing` caches whether a
/// callsite is of interest from the subscribers alive when it is registered or the cache rebuilt;
/// with tests running beside each other, some without a subscriber, a callsite (the migration
/// steps, hit by every other test's open) could be cached as of no interest while a capture was
/// not yet counted, and its events were lost to the capture now and then. A global subscriber that
/// is always "sometimes" interested, and never enabled, keeps the cache from saying "never".
fn keep_every_callsite_of_interest() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another global subscriber (none is set in this binary) would do as well.
        let _ = tracing::subscriber::set_global_default(Uninterested);
        tracing::callsite::rebuild_interest_cache();
    });
}

/// The global subscriber of [`keep_every_callsite_of_interest`]: records nothing.
struct Uninterested;

impl Subscriber for Uninterested {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // Asked again at every call, so that other tests' threads, without this subscriber, are
        // never mistaken for this one.
        Interest::sometimes()
    }

    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut captured = self.0.lock().unwrap();
        let mut record = SpanRecord {
            name: span.metadata().name().to_owned(),
            ..SpanRecord::default()
        };
        span.record(&mut Fields(&mut record.fields));
        record.parent = match span.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if span.is_contextual() => captured.stack.last().copied(),
            None => None,
        };
        captured.spans.push(record);
        Id::from_u64(captured.spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut captured = self.0.lock().unwrap();
        let record = &mut captured.spans[span.into_u64() as usize - 1];
        values.record(&mut Fields(&mut record.fields));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut captured = self.0.lock().unwrap();
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let span = captured.stack.last().copied();
        captured.events.push(EventRecord {
            level: *event.metadata().level(),
            fields,
            span,
        });
    }

    fn enter(&self, span: &Id) {
        self.0.lock().unwrap().stack.push(span.into_u64());
    }

    fn exit(&self, _: &Id) {
        self.0.lock().unwrap().stack.pop();
    }
}

/// Whether `event` is a step of a MySQL migration run.
fn is_migration_step(event: &EventRecord) -> bool {
    event.fields.get("message").map(String::as_str) == Some("chatstore migration step")
}

/// MySQL: a migration that a run cut short left half applied is completed at the next open, which
/// says so with a `warn` event in its `migrate` span (and in `migrations_resumed_at_open`).
#[cfg(feature = "mysql")]
#[test]
fn a_half_applied_mysql_migration_is_reported_by_a_warning() {
    register_callsites();
    let db = TestDb::new(Kind::Mysql);
    drop(db.open());
    // The search migration's first statement took effect; then the run died (the words migration
    // after it had not begun).
    db.revert_newest_migrations(10);
    db.execute(
        "ALTER TABLE chatstore_messages ADD COLUMN search_text \
         LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL",
    )
    .unwrap();
    let capture = Capture::default();
    let store = tracing::subscriber::with_default(capture.clone(), || db.open());
    assert_eq!(store.migrations_resumed_at_open(), ["20261125000003"]);
    let captured = capture.0.lock().unwrap();
    let warnings: Vec<&EventRecord> = captured
        .events
        .iter()
        .filter(|e| e.level == Level::WARN)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0].fields;
    assert_eq!(warning["migration"], "2026-11-25-000003_message_search");
    assert_eq!((&*warning["present"], &*warning["statements"]), ("1", "3"));
    assert!(warning["message"].contains("half applied"), "{warning:?}");
    let migrate = captured
        .spans
        .iter()
        .position(|s| s.fields.get("operation").map(String::as_str) == Some("migrate"))
        .map(|i| i as u64 + 1);
    assert_eq!(warnings[0].span, migrate);
    let done: Vec<&str> = captured
        .events
        .iter()
        .filter(|e| is_migration_step(e))
        .map(|e| e.fields["done"].as_str())
        .collect();
    assert_eq!(
        done,
        [
            "already present",
            "applied",
            "applied",
            "indexed stored messages",
            "recorded",
            // The words migration: no statement, its stored messages read again.
            "indexed stored messages",
            "recorded",
            // The catch-up migration: a table and its index.
            "applied",
            "applied",
            "recorded",
            // The branches: three columns and a table.
            "applied",
            "applied",
            "applied",
            "applied",
            "recorded",
            // The active path: four columns.
            "applied",
            "applied",
            "applied",
            "applied",
            "recorded",
            // Keys that include the owner: PostgreSQL's alone, nothing on MySQL.
            "recorded",
            // Pins and archives: a column, the new list index, the old one dropped.
            "applied",
            "applied",
            "applied",
            "recorded",
            // Tags and metadata: two columns, the tags' table and its index.
            "applied",
            "applied",
            "applied",
            "applied",
            "recorded",
            // Usage: three columns on messages, three on conversations.
            "applied",
            "applied",
            "applied",
            "applied",
            "applied",
            "applied",
            "recorded",
            // Parts: a column on messages.
            "applied",
            "recorded",
        ]
    );
}

// Distinctive strings that must never reach a subscriber.
const USER: &str = "user-id-PERSONAL-5d81";
const TITLE: &str = "Title SECRET-title-3b";
const NEW_TITLE: &str = "Renamed SECRET-title-9c";
const CONTENT: &str = "CONTENT-SECRET-42 about the xylophone";
const METADATA: &str = "METADATA-SECRET-17";
const TAG: &str = "TAG-SECRET-5d";
const QUERY: &str = "xylophone QUERYSECRET*";
const BAD_QUERY: &str = "\"QUERYSECRET-unclosed";
const REFUSED_QUERY: &str = "QUERYSECRET²";

/// Hits the store's span and event callsites once under a throwaway subscriber. tracing caches
/// each callsite's interest when it is first hit; with other tests' threads (which have no
/// subscriber) hitting the same callsites at that moment, the first event of a run was now and then
/// lost under load (the `open` event, 2 runs in 3 of the MySQL tests). Registered beforehand, the
/// callsites ask this test's subscriber every time.
fn register_callsites() {
    tracing::subscriber::with_default(Capture::default(), || {
        let store = chatstore::ChatStore::open(":memory:").unwrap();
        let nobody = UserId::new("nobody").unwrap();
        let missing = ConversationId::from(uuid::Uuid::now_v7());
        assert!(store.conversation(&nobody, missing).is_err());
    });
}

fn every_operation_records_its_name_backend_rows_and_time_and_nothing_personal(db: &TestDb) {
    register_callsites();
    let capture = Capture::default();
    let alice = UserId::new(USER).unwrap();
    let bob = UserId::new("bob-PERSONAL-too").unwrap();
    let metadata = json!({ "note": METADATA });
    tracing::subscriber::with_default(capture.clone(), || {
        let store = db.open();
        let conv = store.create_conversation(&alice, Some(TITLE)).unwrap().id;
        store.conversation(&alice, conv).unwrap();
        store
            .append_messages(
                &alice,
                conv,
                &[
                    NewMessage::user(CONTENT),
                    NewMessage::assistant(CONTENT).with_metadata(&metadata),
                    NewMessage::user(CONTENT),
                ],
            )
            .unwrap();
        store
            .append_message(&alice, conv, NewMessage::user(CONTENT))
            .unwrap();
        store
            .append_if_last_seq(&alice, conv, 4, &[NewMessage::assistant(CONTENT)])
            .unwrap();
        store
            .append_if_last_seq_on(
                &alice,
                conv,
                BranchId::ROOT,
                0,
                &[NewMessage::user(CONTENT)],
            )
            .unwrap_err();
        store
            .rename_conversation(&alice, conv, Some(NEW_TITLE))
            .unwrap();
        store.list_conversations(&alice, Page::first(10)).unwrap();
        store.pin_conversation(&alice, conv).unwrap();
        store.unpin_conversation(&alice, conv).unwrap();
        store.archive_conversation(&bob, conv).unwrap_err();
        store.archive_conversation(&alice, conv).unwrap();
        store
            .list_archived_conversations(&alice, Page::first(10))
            .unwrap();
        store.restore_conversation(&alice, conv).unwrap();
        let tag = chatstore::Tag::new(TAG).unwrap();
        store.tag_conversation(&alice, conv, &tag).unwrap();
        store
            .list_conversations_tagged(&alice, &tag, Page::first(10))
            .unwrap();
        store.tags(&alice).unwrap();
        store.untag_conversation(&alice, conv, &tag).unwrap();
        store.set_conversation_tags(&bob, conv, &[tag]).unwrap_err();
        store
            .set_conversation_metadata(&alice, conv, Some(&json!({ "k": METADATA })))
            .unwrap();
        store.messages(&alice, conv, Window::Latest(4)).unwrap();
        store.context_window(&alice, conv, 1000).unwrap();
        store
            .context_window_with(&alice, conv, 1000, ContextOptions::default(), |_| 1)
            .unwrap();
        let found = store
            .search_messages(&alice, &SearchQuery::new("xylophone"))
            .unwrap();
        assert_eq!(found.hits.len(), 5);
        store
            .search_messages(&alice, &SearchQuery::new(QUERY))
            .unwrap();
        store.verify_schema().unwrap();
        // Failures, whose errors are recorded.
        store.conversation(&bob, conv).unwrap_err();
        store
            .search_messages(&alice, &SearchQuery::new(BAD_QUERY))
            .unwrap_err();
        // Named in the error, for the caller; not in the event.
        let refused = store
            .search_messages(&alice, &SearchQuery::new(REFUSED_QUERY))
            .unwrap_err();
        assert!(refused.to_string().contains(REFUSED_QUERY), "{refused}");
        store
            .append_message(&alice, conv, NewMessage::user("CONTENT-SECRET-nul\0"))
            .unwrap_err();
        store
            .rename_conversation(&alice, conv, Some("SECRET-title-bell\u{7}"))
            .unwrap_err();
        store.stats().unwrap();
        store.usage(&alice).unwrap();
        let long_ago = chatstore::Retention::not_updated_since(chrono::DateTime::UNIX_EPOCH);
        store.purge_preview(&long_ago).unwrap();
        store
            .purge(&long_ago, |_| std::ops::ControlFlow::Continue(()))
            .unwrap();
        // A page of one conversation, its record, a window of its five messages.
        let mut items = store.export_user(&alice).map(Result::unwrap);
        let Some(ExportItem::Conversation(mut record)) = items.next() else {
            panic!("a conversation first");
        };
        let mut messages: Vec<_> = items
            .map(|item| match item {
                ExportItem::Message(message) => message,
                other => panic!("{other:?}"),
            })
            .collect();
        store
            .import_conversation(&alice, &record, &messages)
            .unwrap_err();
        record.id = ConversationId::from(uuid::Uuid::now_v7());
        for message in &mut messages {
            message.id = MessageId::from(uuid::Uuid::now_v7());
            message.conversation_id = record.id;
        }
        store
            .import_conversation(&bob, &record, &messages)
            .unwrap_err();
        store
            .import_conversation(&alice, &record, &messages)
            .unwrap();
        store
            .import_tree(&alice, &record, &[], &messages)
            .unwrap_err();
        let fork = store
            .fork_conversation(&alice, record.id, messages[2].id)
            .unwrap();
        store.pop_messages(&alice, fork.id, 1).unwrap();
        store.pop_messages(&bob, fork.id, 1).unwrap_err();
        store.truncate_messages(&alice, fork.id, 1).unwrap();
        store.clear_messages(&alice, fork.id).unwrap();
        store.delete_conversation(&alice, conv).unwrap();
        store.create_conversation(&alice, Some(TITLE)).unwrap();
        store.delete_user_data(&alice).unwrap();
    });

    let captured = capture.0.lock().unwrap();
    let backend = match db.kind {
        Kind::Postgres | Kind::Citus => "postgres",
        Kind::Mysql => "mysql",
        Kind::SqliteFile | Kind::SqliteMemory => "sqlite",
    };
    // Each operation, with its rows (`None`: no count) and whether it succeeded.
    let expected: &[(&str, Option<&str>, bool)] = &[
        ("open", None, true),
        ("migrate", None, true),
        ("create_conversation", Some("1"), true),
        ("conversation", Some("1"), true),
        ("append_messages", Some("3"), true),
        ("append_message", Some("1"), true),
        ("append_if_last_seq", Some("1"), true),
        ("append_if_last_seq_on", None, false),
        ("rename_conversation", Some("1"), true),
        ("list_conversations", Some("1"), true),
        ("pin_conversation", Some("1"), true),
        ("unpin_conversation", Some("1"), true),
        ("archive_conversation", None, false),
        ("archive_conversation", Some("1"), true),
        ("list_archived_conversations", Some("1"), true),
        ("restore_conversation", Some("1"), true),
        ("tag_conversation", Some("1"), true),
        ("list_conversations_tagged", Some("1"), true),
        ("tags", Some("1"), true),
        ("untag_conversation", Some("1"), true),
        ("set_conversation_tags", None, false),
        ("set_conversation_metadata", Some("1"), true),
        ("messages", Some("4"), true),
        ("context_window", Some("5"), true),
        ("context_window_with", Some("5"), true),
        ("search_messages", Some("5"), true),
        ("search_messages", Some("0"), true),
        ("verify_schema", None, true),
        ("conversation", None, false),
        ("search_messages", None, false),
        ("search_messages", None, false),
        ("append_message", None, false),
        ("rename_conversation", None, false),
        ("stats", Some("1"), true),
        ("usage", Some("1"), true),
        ("purge_preview", Some("0"), true),
        ("purge", Some("0"), true),
        ("export_user", Some("1"), true),
        ("export_user", Some("1"), true),
        ("export_user", Some("5"), true),
        ("import_conversation", None, false),
        ("import_conversation", None, false),
        ("import_conversation", None, true),
        ("import_tree", None, false),
        ("fork_conversation", Some("1"), true),
        ("pop_messages", Some("1"), true),
        ("pop_messages", None, false),
        ("truncate_messages", Some("1"), true),
        ("clear_messages", Some("1"), true),
        ("delete_conversation", None, true),
        ("create_conversation", Some("1"), true),
        // The imported copy (5 messages), the emptied fork and the new conversation.
        ("delete_user_data", Some("8"), true),
    ];
    let operations: Vec<&str> = captured
        .spans
        .iter()
        .map(|s| s.fields.get("operation").map_or("?", String::as_str))
        .collect();
    let names: Vec<&str> = expected.iter().map(|(name, _, _)| *name).collect();
    assert_eq!(
        operations, names,
        "one span per operation, none nested in another"
    );
    for (i, (span, &(operation, rows, ok))) in captured.spans.iter().zip(expected).enumerate() {
        let id = i as u64 + 1;
        assert_eq!(span.name, "chatstore");
        assert_eq!(
            span.fields.get("backend").map(String::as_str),
            Some(backend),
            "{span:?}"
        );
        let elapsed: u64 = span.fields["elapsed_us"].parse().unwrap();
        assert!(elapsed < 60_000_000, "{span:?}");
        if operation != "verify_schema" {
            assert_eq!(
                span.fields.get("rows").map(String::as_str),
                rows,
                "{span:?}"
            );
        } else {
            assert!(span.fields["rows"].parse::<usize>().unwrap() > 0);
        }
        let (steps, events): (Vec<&EventRecord>, Vec<&EventRecord>) = captured
            .events
            .iter()
            .filter(|e| e.span == Some(id))
            .partition(|e| is_migration_step(e));
        // MySQL's migration run reports each step (45 in a new database), all `debug`.
        match (operation, db.kind) {
            ("migrate", Kind::Mysql) => {
                assert_eq!(steps.len(), 45, "{steps:?}");
                assert!(steps.iter().all(|e| e.level == Level::DEBUG), "{steps:?}");
            }
            _ => assert_eq!(steps.len(), 0, "{operation}: {steps:?}"),
        }
        assert_eq!(
            events.len(),
            1,
            "{operation}: one event, at the end: {events:?}"
        );
        let event = events[0];
        assert_eq!(event.fields["operation"], operation);
        assert!(event.fields.contains_key("elapsed_us"));
        if ok {
            assert_eq!(event.level, Level::DEBUG, "{event:?}");
        } else {
            assert_eq!(event.level, Level::WARN, "{event:?}");
            assert!(!event.fields["error"].is_empty(), "{event:?}");
        }
    }

    // Nothing a user wrote, and no user id, in any span or event.
    let everything = format!("{:?}", *captured);
    assert!(everything.contains("not found"), "the errors are there");
    for secret in [
        USER,
        "PERSONAL",
        "SECRET",
        "xylophone",
        QUERY,
        BAD_QUERY,
        TITLE,
        NEW_TITLE,
        CONTENT,
        METADATA,
    ] {
        assert!(
            !everything.contains(secret),
            "{secret:?} was recorded: {everything}"
        );
    }
}
