//! The `serde` feature: what the store returns survives a trip through JSON unchanged, in the
//! documented shape, and JSON that no constructor would accept is refused.

use std::fmt::Debug;

use chatstore::{
    Conversation, ConversationCursor, ConversationId, DeletedCounts, ExportItem, Message,
    MessageId, NewMessage, Page, Role, SearchOrder, SearchQuery, StoreStats, UserId, Window,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use crate::support::{backend_tests, TestDb};

backend_tests! {
    every: [
        what_the_store_returns_round_trips_through_json,
        pages_hand_over_their_neighbours_through_json,
        export_records_round_trip_through_json_lines,
    ],
    persistent: [],
}

/// `value` as JSON, after checking that the JSON reads back as `value`.
fn round_trip<T>(value: &T) -> Value
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).unwrap();
    assert_eq!(&back, value, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn what_the_store_returns_round_trips_through_json(db: &TestDb) {
    let store = db.open();
    let alice = UserId::new("alice").unwrap();
    let conv = store
        .create_conversation(&alice, Some("Groceries"))
        .unwrap();
    let call = json!({"tool_calls": [{"id": "call_1", "arguments": {"qty": 0.1, "big": 1e300}}]});
    let appended = store
        .append_messages(
            &alice,
            conv.id,
            &[
                NewMessage::system("You manage a todo list."),
                NewMessage::user("Add oat milk, \"quoted\" and 東京 \u{1F600}"),
                NewMessage::assistant("").with_metadata(&call),
                NewMessage::tool("ok").with_metadata(json!({"tool_call_id": "call_1"})),
            ],
        )
        .unwrap();
    let stored = store.conversation(&alice, conv.id).unwrap();

    let json = round_trip(&stored);
    assert_eq!(json["id"], stored.id.to_string());
    assert_eq!(json["user_id"], "alice");
    assert_eq!(json["title"], "Groceries");
    assert_eq!(json["message_count"], 4);
    // RFC 3339 in UTC, to the microsecond.
    let created = json["created_at"].as_str().unwrap();
    assert_eq!(
        created,
        stored
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    );
    assert!(created.ends_with('Z'), "{created}");

    for message in &appended {
        round_trip(message);
    }
    let json = round_trip(&appended[2]);
    assert_eq!(json["role"], "assistant");
    assert_eq!(json["conversation_id"], conv.id.to_string());
    assert_eq!(json["seq"], 3);
    // Metadata stays JSON, not a string of it.
    assert_eq!(json["metadata"], call);
    assert_eq!(round_trip(&appended[0])["metadata"], Value::Null);

    let history = store.messages(&alice, conv.id, Window::All).unwrap();
    assert_eq!(history.messages, appended);
    round_trip(&history);
    round_trip(&store.context_window(&alice, conv.id, 1000).unwrap());
    let found = store
        .search_messages(&alice, &SearchQuery::new("oat milk").limit(1))
        .unwrap();
    assert_eq!(found.hits.len(), 1);
    let json = round_trip(&found);
    assert_eq!(json["hits"][0]["conversation_title"], "Groceries");
    assert_eq!(
        json["hits"][0]["snippet"]["highlights"][0],
        json!({"start": 4, "end": 7})
    );
    let list = store.list_conversations(&alice, Page::first(10)).unwrap();
    round_trip(&list);
    assert_eq!(
        round_trip(&store.delete_user_data(&alice).unwrap()),
        json!({"conversations": 1, "messages": 4})
    );
}

fn pages_hand_over_their_neighbours_through_json(db: &TestDb) {
    let store = db.open();
    let alice = UserId::new("alice").unwrap();
    for title in ["one", "two", "three"] {
        store.create_conversation(&alice, Some(title)).unwrap();
    }
    // The next page, sent to a client and back, continues the list.
    let first = store.list_conversations(&alice, Page::first(2)).unwrap();
    let next: Page = serde_json::from_value(round_trip(&first)["next"].clone()).unwrap();
    assert_eq!(Some(next), first.next);
    let rest = store.list_conversations(&alice, next).unwrap();
    assert_eq!(rest.conversations.len(), 1);
    assert_eq!(rest.conversations[0].title.as_deref(), Some("one"));

    let conv = store.create_conversation(&alice, None).unwrap().id;
    let batch: Vec<NewMessage> = (0..5).map(|_| NewMessage::user("m")).collect();
    store.append_messages(&alice, conv, &batch).unwrap();
    let latest = store.messages(&alice, conv, Window::Latest(2)).unwrap();
    let json = round_trip(&latest);
    assert_eq!(json["older"], json!({"before": {"seq": 4, "limit": 2}}));
    assert_eq!(json["newer"], Value::Null);
    assert_eq!(json["total"], 5);
    let older: Window = serde_json::from_value(json["older"].clone()).unwrap();
    let seqs: Vec<i64> = store
        .messages(&alice, conv, older)
        .unwrap()
        .messages
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, [2, 3]);
}

fn export_records_round_trip_through_json_lines(db: &TestDb) {
    let store = db.open();
    let alice = UserId::new("alice").unwrap();
    let conv = store
        .create_conversation(&alice, Some("Groceries"))
        .unwrap();
    // Numbers that a record read through a buffer of its fields could change.
    let metadata =
        json!({"qty": 0.1, "big": 1e300, "max": u64::MAX, "min": i64::MIN, "x": [1.5e-7]});
    store
        .append_messages(
            &alice,
            conv.id,
            &[
                NewMessage::user("line\nbreak \"quoted\" 東京 \u{1F600}"),
                NewMessage::assistant("").with_metadata(&metadata),
            ],
        )
        .unwrap();
    let items: Vec<ExportItem> = store.export_user(&alice).map(Result::unwrap).collect();
    assert_eq!(items.len(), 3);
    for item in &items {
        let line = serde_json::to_string(item).unwrap();
        assert!(!line.contains('\n'), "one line: {line}");
        assert_eq!(&serde_json::from_str::<ExportItem>(&line).unwrap(), item);
    }
    let json = round_trip(&items[0]);
    assert_eq!(json["type"], "conversation");
    assert_eq!(json["title"], "Groceries");
    let text = serde_json::to_string(&items[2]).unwrap();
    assert!(text.starts_with(r#"{"type":"message","id":"#), "{text}");
    assert_eq!(round_trip(&items[2])["metadata"], metadata);
    assert!(serde_json::from_value::<ExportItem>(json!({"type": "user", "id": "x"})).is_err());
    assert_eq!(
        round_trip(&store.stats().unwrap()),
        json!({"users": 1, "conversations": 1, "messages": 2})
    );
    round_trip(&StoreStats::default());
}

#[test]
fn windows_orders_and_counts_have_their_documented_shape() {
    for (window, json) in [
        (Window::All, json!("all")),
        (Window::Latest(50), json!({"latest": 50})),
        (
            Window::Before { seq: 10, limit: 5 },
            json!({"before": {"seq": 10, "limit": 5}}),
        ),
        (
            Window::After { seq: 0, limit: 5 },
            json!({"after": {"seq": 0, "limit": 5}}),
        ),
    ] {
        assert_eq!(round_trip(&window), json);
    }
    assert_eq!(round_trip(&SearchOrder::Newest), json!("newest"));
    assert_eq!(round_trip(&SearchOrder::BestMatch), json!("best_match"));
    assert_eq!(
        round_trip(&DeletedCounts::default()),
        json!({"conversations": 0, "messages": 0})
    );
    let id = ConversationId::from(uuid::Uuid::now_v7());
    let time = chrono::DateTime::parse_from_rfc3339("2026-11-24T08:15:56.724622Z").unwrap();
    let cursor = ConversationCursor::new(time.into(), id);
    assert_eq!(
        round_trip(&Page::after(cursor, 20)),
        json!({"limit": 20, "after": {"updated_at": "2026-11-24T08:15:56.724622Z", "id": id.to_string()}})
    );
}

/// A message as JSON, with `field` replaced by `value`.
fn message_with(field: &str, value: Value) -> Value {
    let mut message = json!({
        "id": "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d",
        "conversation_id": "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6e",
        "seq": 1,
        "role": "user",
        "content": "hi",
        "metadata": null,
        "created_at": "2026-11-24T08:15:56.724622Z",
    });
    message[field] = value;
    message
}

#[test]
fn invalid_ids_and_roles_in_json_are_refused() {
    let valid: Message = serde_json::from_value(message_with("seq", json!(1))).unwrap();
    assert_eq!(valid.role, Role::User);
    let refused = |field: &str, value: Value| {
        let error = serde_json::from_value::<Message>(message_with(field, value.clone()))
            .expect_err(&format!("{field}: {value}"));
        error.to_string()
    };
    for bad in [json!(""), json!("not-a-uuid"), json!(42), json!(null)] {
        refused("id", bad.clone());
        refused("conversation_id", bad);
    }
    assert!(refused("id", json!("0193a3c4")).contains("not a UUID"));
    for bad in [json!("User"), json!("bot"), json!(""), json!(1)] {
        refused("role", bad);
    }
    refused("created_at", json!("yesterday"));

    for bad in [
        json!(""),
        json!("a\nb"),
        json!("x".repeat(UserId::MAX_CHARS + 1)),
        json!(7),
    ] {
        assert!(
            serde_json::from_value::<UserId>(bad.clone()).is_err(),
            "{bad}"
        );
        let conversation = json!({
            "id": "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d",
            "user_id": bad,
            "title": null,
            "created_at": "2026-11-24T08:15:56Z",
            "updated_at": "2026-11-24T08:15:56Z",
            "message_count": 0,
        });
        assert!(serde_json::from_value::<Conversation>(conversation).is_err());
    }
    let error = serde_json::from_value::<UserId>(json!("")).unwrap_err();
    assert_eq!(error.to_string(), "user id is empty");
    assert!(
        serde_json::from_value::<MessageId>(json!("0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6")).is_err()
    );
    assert!(serde_json::from_value::<Window>(json!({"latest": -1})).is_err());
    assert!(serde_json::from_value::<Window>(json!("everything")).is_err());
}
