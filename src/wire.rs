//! Serde (cargo feature `serde`): every public data type derives its form where it is defined —
//! ids and roles as strings read back through their own constructors (`try_from = "String"`),
//! cursors through [`ConversationCursor::new`](crate::ConversationCursor::new), snippets through
//! their highlights' check — and invalid input is a deserialization error, never an invalid value.
//! This module is the tests that pin every type's JSON byte for byte.

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

use crate::context::ContextWindow;
use crate::cursor::{ConversationCursor, Window};
use crate::ids::{BranchId, ConversationId, MessageId, UserId};
use crate::models::{Conversation, DeletedCounts, Message, Role, StoreStats};
use crate::page::{ConversationPage, MessagePage, Page};
use crate::search::{SearchHit, SearchOrder, SearchResults, Snippet};
use crate::store::{ExportCounts, ExportItem};

/// `value` is exactly `json` as JSON text, and `json` reads back as `value`.
fn pinned<T>(value: &T, json: &str)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    assert_eq!(serde_json::to_string(value).unwrap(), json);
    assert_eq!(&serde_json::from_str::<T>(json).unwrap(), value, "{json}");
}

/// Why `json` is refused as a `T`.
fn refusal<T: DeserializeOwned + Debug>(json: serde_json::Value) -> String {
    serde_json::from_value::<T>(json.clone())
        .expect_err(&json.to_string())
        .to_string()
}

const CONV: &str = "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d";
const MSG: &str = "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6e";
const TIME: &str = "2026-11-24T08:15:56.724622Z";

fn time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(TIME).unwrap().into()
}

fn conversation(title: Option<&str>) -> Conversation {
    Conversation {
        id: CONV.parse().unwrap(),
        user_id: UserId::new("alice").unwrap(),
        title: title.map(str::to_owned),
        created_at: DateTime::parse_from_rfc3339("2026-11-24T08:15:56Z")
            .unwrap()
            .into(),
        updated_at: time(),
        message_count: 2,
        branch: crate::BranchId::ROOT,
        pinned: false,
        archived: false,
        tags: Vec::new(),
        metadata: None,
        usage: crate::Usage::ZERO,
    }
}

fn message(metadata: Option<serde_json::Value>) -> Message {
    Message {
        id: MSG.parse().unwrap(),
        conversation_id: CONV.parse().unwrap(),
        seq: 1,
        role: Role::Assistant,
        content: "Oat milk, \"two\" cartons\n日本".to_owned(),
        metadata,
        created_at: time(),
        branch: crate::BranchId::ROOT,
        usage: None,
        parts: Vec::new(),
    }
}

const CONVERSATION_JSON: &str = r#"{"id":"0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d","user_id":"alice","title":"Groceries","created_at":"2026-11-24T08:15:56Z","updated_at":"2026-11-24T08:15:56.724622Z","message_count":2}"#;
const MESSAGE_JSON: &str = r#"{"id":"0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6e","conversation_id":"0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d","seq":1,"role":"assistant","content":"Oat milk, \"two\" cartons\n日本","metadata":{"model":"m","tokens":[1,2]},"created_at":"2026-11-24T08:15:56.724622Z"}"#;
const CURSOR_JSON: &str =
    r#"{"updated_at":"2026-11-24T08:15:56.724622Z","id":"0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d"}"#;

/// The JSON of every public serde type, byte for byte: a change of shape is a breaking change
/// for every client that stored or parses it.
#[test]
fn json_shapes_are_pinned_byte_for_byte() {
    let conv: ConversationId = CONV.parse().unwrap();
    pinned(&UserId::new("alice").unwrap(), r#""alice""#);
    pinned(&UserId::new("a\"lice 日本").unwrap(), r#""a\"lice 日本""#);
    pinned(&conv, &format!("\"{CONV}\""));
    pinned(&MSG.parse::<MessageId>().unwrap(), &format!("\"{MSG}\""));
    for (role, json) in [
        (Role::System, r#""system""#),
        (Role::Developer, r#""developer""#),
        (Role::User, r#""user""#),
        (Role::Assistant, r#""assistant""#),
        (Role::Tool, r#""tool""#),
    ] {
        pinned(&role, json);
    }
    pinned(&conversation(Some("Groceries")), CONVERSATION_JSON);
    pinned(
        &conversation(None),
        &CONVERSATION_JSON.replace(r#""Groceries""#, "null"),
    );
    // Pinned, tagged and described: each said after the fields every conversation has.
    let mut organised = conversation(Some("Groceries"));
    organised.pinned = true;
    organised.tags = vec![
        crate::Tag::new("home").unwrap(),
        crate::Tag::new("to do").unwrap(),
    ];
    organised.metadata = Some(json!({"project": 42}));
    pinned(
        &organised,
        &CONVERSATION_JSON.replace(
            r#""message_count":2}"#,
            r#""message_count":2,"pinned":true,"tags":["home","to do"],"metadata":{"project":42}}"#,
        ),
    );
    // With usage: said last, and only when some.
    let mut used = conversation(Some("Groceries"));
    used.usage = crate::Usage::new(120, 30).with_total(160);
    pinned(
        &used,
        &CONVERSATION_JSON.replace(
            r#""message_count":2}"#,
            r#""message_count":2,"usage":{"input_tokens":120,"output_tokens":30,"total_tokens":160}}"#,
        ),
    );
    pinned(&crate::Tag::new("home").unwrap(), r#""home""#);
    pinned(
        &crate::TagCount {
            tag: crate::Tag::new("home").unwrap(),
            conversations: 3,
            archived: 1,
        },
        r#"{"tag":"home","conversations":3,"archived":1}"#,
    );
    let metadata = json!({"model": "m", "tokens": [1, 2]});
    pinned(&message(Some(metadata.clone())), MESSAGE_JSON);
    pinned(
        &message(None),
        &MESSAGE_JSON.replace(r#"{"model":"m","tokens":[1,2]}"#, "null"),
    );
    let mut used = message(None);
    used.usage = Some(crate::Usage::new(7, 3));
    pinned(
        &used,
        &MESSAGE_JSON
            .replace(r#"{"model":"m","tokens":[1,2]}"#, "null")
            .replace(
                r#"Z"}"#,
                r#"Z","usage":{"input_tokens":7,"output_tokens":3,"total_tokens":10}}"#,
            ),
    );
    // With parts: said last, and only when some; each part's fields in a fixed order.
    let mut parted = message(None);
    parted.parts = vec![
        crate::Part::text("Look:"),
        crate::Part::Image(crate::Attachment::new(
            crate::Reference::url("https://example.com/a.png"),
            "image/png",
            12,
        )),
        crate::Part::File(
            crate::Attachment::new(crate::Reference::key("k/1"), "application/pdf", 3)
                .with_name("r.pdf"),
        ),
    ];
    pinned(
        &parted,
        &MESSAGE_JSON
            .replace(r#"{"model":"m","tokens":[1,2]}"#, "null")
            .replace(
                r#"Z"}"#,
                concat!(
                    r#"Z","parts":[{"type":"text","text":"Look:"},"#,
                    r#"{"type":"image","url":"https://example.com/a.png","media_type":"image/png","size":12},"#,
                    r#"{"type":"file","key":"k/1","media_type":"application/pdf","size":3,"name":"r.pdf"}]}"#
                ),
            ),
    );
    // A part the store would refuse is refused by serde, saying why.
    for (part, why) in [
        (json!({"type": "video"}), "unknown part type \"video\""),
        (
            json!({"type": "image", "url": "data:,x", "media_type": "image/png", "size": 1}),
            "a data: URL holds the file itself",
        ),
        (
            json!({"type": "file", "key": "k", "media_type": "a/b", "size": 1, "extra": 1}),
            "a file part has no field \"extra\"",
        ),
    ] {
        let refused = refusal::<crate::Part>(part);
        assert!(refused.contains(why), "{refused}");
    }
    // A usage read without its total has input plus output as its total.
    let read: crate::Usage =
        serde_json::from_value(json!({"input_tokens": 7, "output_tokens": 3})).unwrap();
    assert_eq!(read, crate::Usage::new(7, 3));
    let cursor = ConversationCursor::new(time(), conv);
    pinned(&cursor, CURSOR_JSON);
    pinned(&Page::first(20), r#"{"limit":20,"after":null}"#);
    let after = format!(r#"{{"limit":20,"after":{CURSOR_JSON}}}"#);
    pinned(&Page::after(cursor, 20), &after);
    pinned(
        &ConversationPage {
            conversations: vec![conversation(Some("Groceries"))],
            next: Some(Page::after(cursor, 20)),
        },
        &format!(r#"{{"conversations":[{CONVERSATION_JSON}],"next":{after}}}"#),
    );
    for (window, json) in [
        (Window::All, r#""all""#),
        (Window::Latest(50), r#"{"latest":50}"#),
        (
            Window::Before { seq: 7, limit: 20 },
            r#"{"before":{"seq":7,"limit":20}}"#,
        ),
        (
            Window::After { seq: 0, limit: 20 },
            r#"{"after":{"seq":0,"limit":20}}"#,
        ),
    ] {
        pinned(&window, json);
    }
    pinned(
        &MessagePage {
            messages: vec![message(Some(metadata.clone()))],
            older: None,
            newer: Some(Window::After { seq: 1, limit: 1 }),
            total: 2,
            branch: BranchId::ROOT,
        },
        &format!(
            r#"{{"messages":[{MESSAGE_JSON}],"older":null,"newer":{{"after":{{"seq":1,"limit":1}}}},"total":2}}"#
        ),
    );
    let snippet = Snippet {
        text: "…café au lait…".to_owned(),
        highlights: vec![3..8, 12..16],
    };
    let snippet_json =
        r#"{"text":"…café au lait…","highlights":[{"start":3,"end":8},{"start":12,"end":16}]}"#;
    pinned(&snippet, snippet_json);
    let hit = SearchHit {
        message: message(None),
        conversation_title: Some("Groceries".to_owned()),
        snippet,
        on_active_branch: true,
    };
    let hit_json = format!(
        r#"{{"message":{},"conversation_title":"Groceries","snippet":{snippet_json}}}"#,
        MESSAGE_JSON.replace(r#"{"model":"m","tokens":[1,2]}"#, "null")
    );
    pinned(&hit, &hit_json);
    // Off the active branch, on branch 2: both said.
    let mut off = hit.clone();
    off.on_active_branch = false;
    off.message.branch = crate::BranchId::new(2).unwrap();
    let off_json = hit_json
        .replace(
            r#"Z"},"conversation_title""#,
            r#"Z","branch":2},"conversation_title""#,
        )
        .replace(r#"}}"#, r#"},"on_active_branch":false}"#);
    pinned(&off, &off_json);
    pinned(
        &SearchResults {
            hits: vec![hit],
            next_offset: Some(20),
        },
        &format!(r#"{{"hits":[{hit_json}],"next_offset":20}}"#),
    );
    pinned(&SearchOrder::Newest, r#""newest""#);
    pinned(&SearchOrder::BestMatch, r#""best_match""#);
    pinned(
        &ExportItem::Conversation(conversation(Some("Groceries"))),
        &CONVERSATION_JSON.replacen('{', r#"{"type":"conversation","#, 1),
    );
    pinned(
        &ExportItem::Message(message(Some(metadata.clone()))),
        &MESSAGE_JSON.replacen('{', r#"{"type":"message","#, 1),
    );
    pinned(
        &ExportCounts {
            conversations: 1,
            messages: 2,
        },
        r#"{"conversations":1,"messages":2}"#,
    );
    pinned(
        &DeletedCounts {
            conversations: 1,
            messages: 2,
        },
        r#"{"conversations":1,"messages":2}"#,
    );
    pinned(
        &StoreStats {
            users: 1,
            conversations: 2,
            messages: 3,
        },
        r#"{"users":1,"conversations":2,"messages":3}"#,
    );
    pinned(
        &ContextWindow {
            messages: vec![message(None)],
            cost: 40,
            omitted: 1,
            total: 2,
            branch: BranchId::ROOT,
        },
        &format!(
            r#"{{"messages":[{}],"cost":40,"omitted":1,"total":2}}"#,
            MESSAGE_JSON.replace(r#"{"model":"m","tokens":[1,2]}"#, "null")
        ),
    );
}

/// What JSON no constructor would accept is refused, with the constructor's own words.
#[test]
fn invalid_json_is_refused_as_pinned() {
    // Ids: other spellings of a UUID are read, anything else refused.
    let upper = CONV.to_uppercase().replace('-', "");
    let conv: ConversationId = serde_json::from_value(json!(upper)).unwrap();
    assert_eq!(conv.to_string(), CONV);
    assert_eq!(
        refusal::<ConversationId>(json!("nope")),
        r#"invalid id "nope": not a UUID"#
    );
    assert_eq!(
        refusal::<MessageId>(json!("")),
        r#"invalid id "": not a UUID"#
    );
    assert_eq!(refusal::<UserId>(json!("")), "user id is empty");
    assert_eq!(
        refusal::<UserId>(json!("a\nb")),
        "user id contains a control character at position 1"
    );
    assert_eq!(
        refusal::<UserId>(json!("é".repeat(256))),
        "user id is 256 characters, the maximum is 255"
    );
    assert_eq!(refusal::<crate::Tag>(json!("  ")), "tag is empty");
    assert_eq!(
        refusal::<crate::Tag>(json!("a\tb")),
        "tag contains a control character at position 1"
    );
    // A conversation's tags are read each as a tag.
    let mut conversation = serde_json::to_value(conversation(None)).unwrap();
    conversation["tags"] = json!(["ok", ""]);
    assert_eq!(refusal::<Conversation>(conversation), "tag is empty");
    let expected = "expected system, developer, user, assistant or tool";
    assert_eq!(
        refusal::<Role>(json!("bot")),
        format!(r#"unknown role "bot": {expected}"#)
    );
    assert_eq!(
        refusal::<Role>(json!("User")),
        format!(r#"unknown role "User": {expected}"#)
    );
    // Wrong types and other shapes: refused (serde words the message).
    for bad in [
        json!(42),
        json!(null),
        json!(["alice"]),
        json!({"alice": null}),
    ] {
        refusal::<UserId>(bad.clone());
        refusal::<ConversationId>(bad.clone());
        refusal::<MessageId>(bad.clone());
        refusal::<Role>(bad);
    }
    refusal::<Role>(json!({"user": null}));
    refusal::<ConversationId>(json!([
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
    ]));
    // Cursors need both fields, a time and an id.
    refusal::<ConversationCursor>(json!({"updated_at": TIME}));
    refusal::<ConversationCursor>(json!({"updated_at": "yesterday", "id": CONV}));
    refusal::<ConversationCursor>(json!({"updated_at": TIME, "id": "nope"}));
    // Snippets: highlights must be ranges of the text, in order.
    assert_eq!(
        refusal::<Snippet>(json!({"text": "café", "highlights": [{"start": 0, "end": 4}]})),
        "snippet highlight 0..4 is not a range of its text, in order"
    );
    refusal::<Snippet>(json!({"text": "café"}));
    refusal::<Snippet>(json!({"text": 1, "highlights": []}));
    // Windows and pages.
    refusal::<Window>(json!({"latest": -1}));
    refusal::<Window>(json!("everything"));
    refusal::<Page>(json!({"after": null}));
    // A page without `after` is the first.
    let first: Page = serde_json::from_value(json!({"limit": 20})).unwrap();
    assert_eq!(first, Page::first(20));
    refusal::<Message>(json!({"role": "user"}));
    // Usage: whole numbers of tokens, input and output both given.
    refusal::<crate::Usage>(json!({"input_tokens": 1}));
    refusal::<crate::Usage>(json!({"input_tokens": -1, "output_tokens": 0}));
    refusal::<crate::Usage>(json!({"input_tokens": 1.5, "output_tokens": 0}));
}

#[test]
fn roles_travel_as_their_stored_spelling() {
    for role in [
        Role::System,
        Role::Developer,
        Role::User,
        Role::Assistant,
        Role::Tool,
    ] {
        let json = serde_json::to_string(&role).unwrap();
        assert_eq!(json, format!("\"{}\"", role.as_str()));
        assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
    }
    for bad in [r#""User""#, r#""""#, r#""bot""#, "1", "null"] {
        assert!(serde_json::from_str::<Role>(bad).is_err(), "{bad}");
    }
}

#[test]
fn cursors_keep_their_time_in_range() {
    let id = ConversationId::generate();
    // Year 0 sorts wrongly as SQLite text; the cursor moves it to year 1, as `new` does.
    let json = format!(r#"{{"updated_at": "0000-06-01T00:00:00Z", "id": "{id}"}}"#);
    let cursor: ConversationCursor = serde_json::from_str(&json).unwrap();
    assert_eq!(
        cursor.updated_at().to_rfc3339(),
        "0001-01-01T00:00:00+00:00"
    );
    assert_eq!(cursor.id(), id);
}

#[test]
fn snippets_with_highlights_outside_their_text_are_refused() {
    let ok = r#"{"text": "café au lait", "highlights": [{"start": 0, "end": 5}, {"start": 9, "end": 13}]}"#;
    let snippet: Snippet = serde_json::from_str(ok).unwrap();
    assert_eq!(snippet.marked("[", "]"), "[café] au [lait]");
    for highlights in [
        r#"[{"start": 0, "end": 4}]"#,                         // inside "é"
        r#"[{"start": 9, "end": 14}]"#,                        // past the end
        r#"[{"start": 5, "end": 3}]"#,                         // backwards
        r#"[{"start": 6, "end": 8}, {"start": 0, "end": 5}]"#, // out of order
    ] {
        let json = format!(r#"{{"text": "café au lait", "highlights": {highlights}}}"#);
        assert!(
            serde_json::from_str::<Snippet>(&json).is_err(),
            "{highlights}"
        );
    }
}
