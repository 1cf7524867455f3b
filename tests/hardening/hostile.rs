//! Hostile input: every validated input — user ids, titles, content, metadata, windows, list
//! cursors, ids and URLs — fed arbitrary Unicode (control characters, NUL, astral planes, lengths
//! around the limits). Nothing panics; what is refused gets its typed error and writes nothing; what
//! is accepted reads back exactly, byte for byte.

use chatstore::{
    ChatStore, ConversationCursor, ConversationId, Error, NewMessage, Page, TextError, UserId,
    Window,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use super::model::expected_window;
use super::slow;
use crate::support::{backend_tests, Kind, TestDb};

backend_tests! {
    every: [
        arbitrary_text_round_trips_exactly_or_is_refused_without_a_write,
        arbitrary_windows_and_list_cursors_select_exactly_the_right_rows,
        metadata_numbers_read_back_exactly,
    ],
    persistent: [
        metadata_nested_deeper_than_the_store_writes_is_still_read,
    ],
}

/// The content limit of the stores here: small, so that random input falls on both sides of it.
const MAX_BYTES: usize = 64;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: if slow() { cases * 20 } else { cases },
        failure_persistence: None,
        ..Config::default()
    })
}

/// Any text: every Unicode scalar value is possible (control characters, NUL, combining marks,
/// emoji), with lengths on both sides of the limits.
fn text(max_chars: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::string::string_regex(&format!("(?s).{{0,{max_chars}}}")).unwrap(),
        // Mostly printable, so that more of it is accepted.
        4 => prop::string::string_regex(&format!("[\\PC ]{{0,{max_chars}}}")).unwrap(),
        1 => (250..260usize).prop_map(|n| "é".repeat(n)),
        1 => Just(String::new()),
    ]
}

/// Any JSON value: objects (the only accepted kind) most of the time, nested, with arbitrary keys
/// and strings (NUL included: JSON escapes it).
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text(8).prop_map(Value::from),
    ];
    let nested = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(text(6), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![
        4 => prop::collection::btree_map(text(6), nested.clone(), 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        1 => nested,
    ]
}

/// What the rules say of a user id: 1 to 255 characters, no control character.
fn user_id_rule(id: &str) -> Result<(), TextError> {
    let chars = id.chars().count();
    if let Some(position) = id.chars().position(char::is_control) {
        Err(TextError::ControlCharacter { position })
    } else if chars == 0 {
        Err(TextError::Empty)
    } else if chars > 255 {
        Err(TextError::TooLong { chars, max: 255 })
    } else {
        Ok(())
    }
}

fn arbitrary_text_round_trips_exactly_or_is_refused_without_a_write(db: &TestDb) {
    let store = ChatStore::builder(db.url.clone())
        .max_content_bytes(MAX_BYTES)
        .open()
        .unwrap();
    let input = (
        text(260),
        prop::option::of(text(260)),
        text(80),
        prop::option::of(json()),
    );
    runner(96)
        .run(&input, |(user, title, content, metadata)| {
            // A user id is accepted exactly when the rules say so.
            let parsed = UserId::new(user.clone());
            match (user_id_rule(&user), &parsed) {
                (Ok(()), Ok(id)) => assert_eq!(id.as_str().as_bytes(), user.as_bytes()),
                (Err(rule), Err(Error::InvalidUserId(e))) => assert_eq!(*e, rule),
                (rule, got) => panic!("{user:?}: the rule says {rule:?}, the store {got:?}"),
            }
            let Ok(user) = parsed else { return Ok(()) };
            let before = store.list_conversations(&user, Page::first(100)).unwrap();

            // A title, trimmed, reads back exactly; a refused one creates nothing.
            let conv = match store.create_conversation(&user, title.as_deref()) {
                Ok(conv) => conv,
                Err(Error::InvalidTitle(_)) => {
                    let after = store.list_conversations(&user, Page::first(100)).unwrap();
                    assert_eq!(after, before, "a refused title wrote nothing");
                    return Ok(());
                }
                Err(e) => panic!("{e:?}"),
            };
            let trimmed = title.as_deref().map(str::trim).filter(|t| !t.is_empty());
            assert_eq!(conv.title.as_deref(), trimmed);
            let read = store.conversation(&user, conv.id).unwrap();
            assert_eq!(read, conv);
            assert_eq!(read.user_id.as_str().as_bytes(), user.as_str().as_bytes());

            // Content and metadata: accepted exactly when within the rules, then read back exactly.
            let mut message = NewMessage::user(&content);
            if let Some(metadata) = &metadata {
                message = message.with_metadata(metadata);
            }
            let metadata_bytes = metadata.as_ref().map(|m| m.to_string().len());
            match store.append_message(&user, conv.id, message) {
                Ok(stored) => {
                    assert!(content.len() <= MAX_BYTES && !content.contains('\0'));
                    assert!(metadata.as_ref().is_none_or(Value::is_object));
                    assert!(metadata_bytes.is_none_or(|n| n <= MAX_BYTES));
                    let page = store.messages(&user, conv.id, Window::All).unwrap();
                    assert_eq!(page.messages, std::slice::from_ref(&stored));
                    assert_eq!(stored.content.as_bytes(), content.as_bytes());
                    assert_eq!(stored.metadata, metadata);
                }
                Err(e) => {
                    match e {
                        Error::ContentTooLarge { bytes, max } => {
                            assert_eq!((bytes, max), (content.len(), MAX_BYTES));
                        }
                        Error::InvalidContent { index } => {
                            assert_eq!(content.find('\0'), Some(index));
                        }
                        Error::InvalidMetadata => {
                            assert!(!metadata.as_ref().is_some_and(Value::is_object));
                        }
                        Error::MetadataTooLarge { bytes, .. } => {
                            assert_eq!(Some(bytes), metadata_bytes);
                            assert!(bytes > MAX_BYTES);
                        }
                        e => panic!("{e:?}"),
                    }
                    let page = store.messages(&user, conv.id, Window::All).unwrap();
                    assert_eq!(page.total, 0, "a refused message wrote nothing");
                    assert_eq!(store.conversation(&user, conv.id).unwrap(), conv);
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Found by the run above: without serde_json's exact float parsing (its `float_roundtrip`
/// feature), 9.863819400478163e-45 read back as 9.863819400478165e-45.
fn metadata_numbers_read_back_exactly(db: &TestDb) {
    let store = db.open();
    let user = UserId::new("numbers").unwrap();
    let conv = store.create_conversation(&user, None).unwrap().id;
    let numbers = serde_json::json!({
        "tiny": 9.863819400478163e-45,
        "subnormal": 5e-324,
        "huge": 1.7976931348623157e308,
        "tenth": 0.1,
        "third": 1.0 / 3.0,
        "u64": u64::MAX,
        "i64": i64::MIN,
    });
    store
        .append_message(&user, conv, NewMessage::tool("").with_metadata(&numbers))
        .unwrap();
    let read = store.messages(&user, conv, Window::All).unwrap().messages;
    let metadata = read[0].metadata.as_ref().unwrap();
    for (key, value) in numbers.as_object().unwrap() {
        // Compared as numbers of the same kind, bit for bit.
        assert_eq!(metadata[key].to_string(), value.to_string(), "{key}");
        assert_eq!(
            metadata[key].as_f64().map(f64::to_bits),
            value.as_f64().map(f64::to_bits)
        );
    }
}

/// Metadata nested deeper than the store accepts, and deeper than serde_json parses by default
/// (128 levels), written by another program: every read that touches the message gives it back —
/// its windows, the context window, a search hit and the user's export — so one such row never
/// makes the rest unreadable. 1000 levels is the deepest SQLite's JSON check accepts; MariaDB's
/// refuses 32, so there the deepest row it holds is read.
fn metadata_nested_deeper_than_the_store_writes_is_still_read(db: &TestDb) {
    let store = db.open();
    let user = UserId::new("deep").unwrap();
    let conv = store.create_conversation(&user, None).unwrap().id;
    for content in ["before", "deep row", "after"] {
        store
            .append_message(&user, conv, NewMessage::user(content))
            .unwrap();
    }
    let depth = match db.kind {
        Kind::Mysql => 31,
        _ => 1000,
    };
    let text = format!(
        "{}{}",
        r#"{"a":"#.repeat(depth - 1) + "{}",
        "}".repeat(depth - 1)
    );
    let deep = (1..depth).fold(
        serde_json::json!({}),
        |inner, _| serde_json::json!({ "a": inner }),
    );
    let update = |text: &str| {
        db.execute(&format!(
            "UPDATE chatstore_messages SET metadata = '{text}' WHERE seq = 2"
        ))
    };
    update(&text).unwrap();
    if db.kind == Kind::Mysql {
        let deeper = format!(r#"{{"a":{text}}}"#);
        assert!(update(&deeper).is_err(), "MariaDB refuses 32 levels itself");
    }

    let all = store.messages(&user, conv, Window::All).unwrap().messages;
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].metadata.as_ref(), Some(&deep));
    assert_eq!(all[1].content, "deep row");
    for window in [
        Window::Latest(2),
        Window::Before { seq: 3, limit: 1 },
        Window::After { seq: 1, limit: 1 },
    ] {
        let page = store.messages(&user, conv, window).unwrap().messages;
        assert!(page.contains(&all[1]), "{window:?}");
    }
    let context = store.context_window(&user, conv, u64::MAX).unwrap();
    assert_eq!(context.messages, all);
    let hits = store
        .search_messages(&user, &chatstore::SearchQuery::new("deep"))
        .unwrap()
        .hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].message, all[1]);
    let exported = store
        .export_user(&user)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(exported.len(), 4);
    assert_eq!(exported[2], chatstore::ExportItem::Message(all[1].clone()));
}

/// Any time chrono can hold, from year -262143 to 262142.
fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
    let (min, max) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
    prop_oneof![
        (min.timestamp_micros()..=max.timestamp_micros())
            .prop_map(|us| DateTime::from_timestamp_micros(us).unwrap()),
        // Near now, where the stored times are.
        (-10_000_000i64..10_000_000).prop_map(|us| Utc::now() + chrono::Duration::microseconds(us)),
    ]
}

fn arbitrary_windows_and_list_cursors_select_exactly_the_right_rows(db: &TestDb) {
    let store = db.open();
    let user = UserId::new("fuzz").unwrap();
    let conv = store.create_conversation(&user, None).unwrap().id;
    let texts: Vec<String> = (1..=30).map(|i| format!("m{i}")).collect();
    let batch: Vec<NewMessage> = texts.iter().map(NewMessage::user).collect();
    store.append_messages(&user, conv, &batch).unwrap();
    let all = store.messages(&user, conv, Window::All).unwrap().messages;
    // A handful of conversations for the list, one of them another user's.
    for _ in 0..6 {
        store.create_conversation(&user, None).unwrap();
    }
    store
        .create_conversation(&UserId::new("other").unwrap(), None)
        .unwrap();
    let mut listed = store
        .list_conversations(&user, Page::first(100))
        .unwrap()
        .conversations;
    listed.sort_by_key(|c| std::cmp::Reverse((c.updated_at, c.id)));

    let seq = prop_oneof![any::<i64>(), -3..40i64, Just(i64::MIN), Just(i64::MAX)];
    let limit = prop_oneof![any::<u32>(), 0..40u32, Just(u32::MAX)];
    let window = prop_oneof![
        Just(Window::All),
        limit.clone().prop_map(Window::Latest),
        (seq.clone(), limit.clone()).prop_map(|(seq, limit)| Window::Before { seq, limit }),
        (seq, limit).prop_map(|(seq, limit)| Window::After { seq, limit }),
    ];
    let id = any::<[u8; 16]>().prop_map(|b| ConversationId::from(uuid::Uuid::from_bytes(b)));
    let input = (window, any_time(), id, 0..200u32);
    runner(128)
        .run(&input, |(window, time, id, page_size)| {
            let page = store.messages(&user, conv, window).unwrap();
            assert_eq!(page.messages, expected_window(&all, window), "{window:?}");
            assert_eq!(page.total, 30);

            // A forged cursor selects among the user's own conversations, strictly after it.
            let cursor = ConversationCursor::new(time, id);
            let got = store
                .list_conversations(&user, Page::after(cursor, page_size))
                .unwrap();
            let key = (cursor.updated_at(), cursor.id());
            let expected: Vec<_> = listed
                .iter()
                .filter(|c| (c.updated_at, c.id) < key)
                .take(page_size.clamp(1, 100) as usize)
                .cloned()
                .collect();
            assert_eq!(got.conversations, expected, "after {key:?}");
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_strings_as_ids_are_refused_with_a_bounded_echo() {
    runner(512)
        .run(&text(300), |s| {
            match s.parse::<ConversationId>() {
                Ok(id) => assert!(uuid::Uuid::parse_str(&s).is_ok_and(|u| u == id.as_uuid())),
                Err(Error::InvalidId(shown)) => {
                    assert!(shown.chars().count() <= 64);
                    assert!(s.starts_with(&shown));
                }
                Err(e) => panic!("{e:?}"),
            }
            Ok(())
        })
        .unwrap();
}

/// Arbitrary URLs: a scheme (known or unknown) and arbitrary text after it (a bare string would be
/// a file in the working directory, so none is opened). Opening never
/// panics; a SQLite file name of any characters opens a working store inside the test's directory;
/// PostgreSQL URLs point at a loopback port where nothing listens, so only loopback is contacted.
#[test]
fn arbitrary_urls_open_or_fail_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().display().to_string();
    // What may follow a scheme: anything but the characters that would reach another host or
    // another directory (`@`, `/`, `?`, `#`, `=`, `%`, `\`).
    let rest = text(40).prop_map(|s| s.replace(['@', '/', '?', '#', '=', '%', '\\', '\0'], ""));
    let scheme = prop_oneof![
        Just("sqlite"),
        Just("SQLite"),
        Just("postgres"),
        Just("postgresql"),
        Just("mysql"),
        Just("http"),
    ];
    let counter = std::sync::atomic::AtomicUsize::new(0);
    runner(64)
        .run(&(scheme, rest), |(scheme, rest)| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let url = match scheme.to_ascii_lowercase().as_str() {
                "sqlite" => format!("{scheme}://{base}/{n}-{rest}"),
                "postgres" | "postgresql" => format!("{scheme}://127.0.0.1:1/{rest}"),
                "mysql" => format!("{scheme}://root@127.0.0.1:1/{rest}"),
                _ => format!("{scheme}://{rest}"),
            };
            let opened = ChatStore::builder(url.clone())
                .connection_timeout(std::time::Duration::from_secs(2))
                .open();
            match (scheme.to_ascii_lowercase().as_str(), opened) {
                ("sqlite", Ok(store)) => {
                    let user = UserId::new("u").unwrap();
                    let conv = store.create_conversation(&user, None).unwrap();
                    assert!(store.conversation(&user, conv.id).is_ok());
                }
                // Longer than a file name may be (255 bytes on Linux): SQLite cannot create it.
                ("sqlite", Err(Error::Connect(_))) if format!("{n}-{rest}").len() > 255 => {}
                ("postgres" | "postgresql", Err(Error::Connect(_) | Error::Pool(_))) => {}
                #[cfg(not(feature = "postgres"))]
                ("postgres" | "postgresql", Err(Error::BackendNotEnabled { .. })) => {}
                // (That the rest of a refused URL is never echoed is a unit test of the parser.)
                ("mysql", Err(Error::Connect(_) | Error::Pool(_))) => {}
                #[cfg(not(feature = "mysql"))]
                ("mysql", Err(Error::BackendNotEnabled { .. })) => {}
                ("http", Err(Error::UnsupportedUrl(_))) => {}
                #[cfg(not(feature = "sqlite"))]
                ("sqlite", Err(Error::BackendNotEnabled { .. })) => {}
                (scheme, got) => panic!("{scheme}: {url:?} gave {got:?}"),
            }
            Ok(())
        })
        .unwrap();
}
