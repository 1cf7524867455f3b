//! What the store refuses and what it keeps verbatim: titles, content, metadata and ids. A refused
//! write changes nothing.

use chatstore::{
    ChatStore, ConversationId, Error, ExportItem, NewMessage, Page, SearchQuery, TextError, UserId,
    Window, MAX_METADATA_DEPTH,
};
use serde_json::{json, Value};

use crate::support::{backend_tests, contents, conversation_with, snapshot, user, TestDb};

backend_tests! {
    every: [
        titles_are_limited_in_characters_not_bytes,
        titles_are_trimmed_and_blank_means_none,
        title_control_characters_are_refused,
        content_is_stored_verbatim,
        nul_content_is_refused_and_nothing_is_written,
        oversized_content_is_refused_and_nothing_is_written,
        content_limit_is_configurable,
        metadata_must_be_an_object,
        metadata_nested_to_the_depth_limit_reads_back_and_deeper_is_refused,
    ],
    persistent: [],
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
    let batch: Vec<NewMessage> = texts.iter().map(|t| NewMessage::user(*t)).collect();
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

/// Metadata `depth` levels deep as the store counts them (each object and each array is a level,
/// the outer object the first): objects only, arrays below the outer object, or both in turn.
fn nested(depth: usize) -> [Value; 3] {
    // Built from the innermost level out; `object(i)` says whether level i is an object.
    let build = |object: &dyn Fn(usize) -> bool| {
        let empty = |i| if object(i) { json!({}) } else { json!([]) };
        (1..depth).rev().fold(empty(depth), |inner, i| {
            if object(i) {
                json!({ "a": inner, "n": 1 })
            } else {
                json!([1, inner])
            }
        })
    };
    [build(&|_| true), build(&|i| i == 1), build(&|i| i % 2 == 1)]
}

/// The deepest level of `value`, counted as [`nested`] counts it.
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The limit is one for every backend (MariaDB's JSON check refuses 32 levels): metadata at the
/// limit is stored and every read gives it back; one level more, or far more, is
/// `InvalidMetadata` on every write path, and nothing is written.
fn metadata_nested_to_the_depth_limit_reads_back_and_deeper_is_refused(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, Some("deep")).unwrap().id;
    let deepest = nested(MAX_METADATA_DEPTH);
    for value in &deepest {
        assert_eq!(depth(value), MAX_METADATA_DEPTH, "{value}");
        store
            .append_message(
                &alice,
                conv,
                NewMessage::assistant("kept").with_metadata(value),
            )
            .unwrap();
    }
    let before = snapshot(&store, &alice, conv);
    let stored: Vec<Option<Value>> = before.1.iter().map(|m| m.metadata.clone()).collect();
    assert_eq!(
        stored,
        deepest.iter().cloned().map(Some).collect::<Vec<_>>()
    );
    let window = store.context_window(&alice, conv, u64::MAX).unwrap();
    assert_eq!(window.messages, before.1);
    let hits = store
        .search_messages(&alice, &SearchQuery::new("kept"))
        .unwrap();
    assert_eq!(hits.hits.len(), 3);
    let exported: Vec<ExportItem> = store.export_user(&alice).map(Result::unwrap).collect();
    assert_eq!(exported.len(), 4);

    for too_deep in nested(MAX_METADATA_DEPTH + 1)
        .into_iter()
        .chain(nested(130))
    {
        assert!(depth(&too_deep) > MAX_METADATA_DEPTH);
        let message = NewMessage::assistant("refused").with_metadata(&too_deep);
        let refusals = [
            store
                .append_message(&alice, conv, message.clone())
                .map(drop),
            store
                .append_messages(&alice, conv, &[NewMessage::user("fine"), message.clone()])
                .map(drop),
            store
                .append_if_last_seq(&alice, conv, 3, std::slice::from_ref(&message))
                .map(drop),
        ];
        for err in refusals {
            let err = err.unwrap_err();
            assert!(matches!(err, Error::InvalidMetadata), "{err:?}");
        }
    }
    assert_eq!(
        snapshot(&store, &alice, conv),
        before,
        "nothing was written"
    );

    // An import goes through the same check.
    let other = user("bob");
    let mut items = exported.into_iter();
    let Some(ExportItem::Conversation(mut conversation)) = items.next() else {
        panic!("the export starts with its conversation");
    };
    let mut messages: Vec<_> = items
        .map(|item| match item {
            ExportItem::Message(m) => m,
            item => panic!("{item:?}"),
        })
        .collect();
    store.delete_conversation(&alice, conv).unwrap();
    conversation.user_id = other.clone();
    messages[2].metadata = nested(MAX_METADATA_DEPTH + 1)[2].clone().into();
    let err = store
        .import_conversation(&other, &conversation, &messages)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidMetadata), "{err:?}");
    assert!(store
        .list_conversations(&other, Page::first(10))
        .unwrap()
        .conversations
        .is_empty());
    messages[2].metadata = deepest[2].clone().into();
    store
        .import_conversation(&other, &conversation, &messages)
        .unwrap();
    assert_eq!(
        store.messages(&other, conv, Window::All).unwrap().messages,
        messages
    );
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
