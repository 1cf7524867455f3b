//! Cursor tokens: opaque strings for a conversation list position or a message window, that read
//! back only for the user (and conversation) they were made for, and never panic on anything else.

use std::collections::HashSet;

use chatstore::{ConversationCursor, ConversationId, Error, NewMessage, Page, UserId, Window};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

use crate::support::{backend_tests, user, TestDb};

backend_tests! {
    every: [
        a_user_pages_through_the_list_with_tokens_alone,
        a_history_walks_both_ways_with_window_tokens,
        next_page_tokens_take_one_call,
    ],
    persistent: [],
}

fn conversation() -> ConversationId {
    ConversationId::from(uuid::Uuid::now_v7())
}

/// The message of an `InvalidCursor`, failing on anything else.
fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::InvalidCursor(why)) => why,
        other => panic!("expected InvalidCursor, got {other:?}"),
    }
}

/// A token of each kind, for `owner` in `conv`, with what it should read back as.
fn tokens(owner: &UserId, conv: ConversationId) -> (String, Vec<(Window, String)>) {
    let cursor = ConversationCursor::new(Utc::now(), conv);
    let windows = [
        Window::All,
        Window::Latest(50),
        Window::Before {
            seq: 120,
            limit: 20,
        },
        Window::After { seq: 0, limit: 20 },
    ];
    (
        cursor.to_token(owner),
        windows
            .into_iter()
            .map(|w| (w, w.to_token(owner, conv)))
            .collect(),
    )
}

/// Whether `token` reads back as either kind for `owner` in `conv`; any error but `InvalidCursor`
/// fails the test.
fn accepted(token: &str, owner: &UserId, conv: ConversationId) -> bool {
    let results = [
        ConversationCursor::from_token(token, owner).map(drop),
        Window::from_token(token, owner, conv).map(drop),
    ];
    results.into_iter().any(|result| match result {
        Ok(()) => true,
        Err(Error::InvalidCursor(_)) => false,
        Err(e) => panic!("{token:?}: expected InvalidCursor, got {e:?}"),
    })
}

#[test]
fn tokens_read_back_for_their_user_and_conversation_only() {
    let (alice, bob) = (user("alice"), user("bob"));
    let conv = conversation();
    let cursor = ConversationCursor::new(Utc::now(), conv);
    let token = cursor.to_token(&alice);
    assert!(token.len() <= 51, "{token}");
    assert!(token
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    assert_eq!(
        ConversationCursor::from_token(&token, &alice).unwrap(),
        cursor
    );
    let foreign = "the cursor was not made for this user or conversation";
    assert_eq!(
        refusal(ConversationCursor::from_token(&token, &bob)),
        foreign
    );
    // User ids are compared exactly, like everywhere else.
    assert_eq!(
        refusal(ConversationCursor::from_token(&token, &user("Alice"))),
        foreign
    );
    assert_eq!(
        refusal(ConversationCursor::from_token(&token, &user("alice "))),
        foreign
    );

    let (_, windows) = tokens(&alice, conv);
    for (window, token) in windows {
        assert!(token.len() <= 35, "{token}");
        assert_eq!(Window::from_token(&token, &alice, conv).unwrap(), window);
        assert_eq!(refusal(Window::from_token(&token, &bob, conv)), foreign);
        assert_eq!(
            refusal(Window::from_token(&token, &alice, conversation())),
            foreign
        );
        // The other kind of token is refused as such.
        let why = refusal(ConversationCursor::from_token(&token, &alice));
        assert!(
            why.contains("not a place in the conversation list"),
            "{why}"
        );
    }
    let why = refusal(Window::from_token(&cursor.to_token(&alice), &alice, conv));
    assert!(why.contains("not a window of messages"), "{why}");
}

#[test]
fn every_single_bit_flip_of_a_token_is_refused() {
    let alice = user("alice");
    let conv = conversation();
    let (list, windows) = tokens(&alice, conv);
    for token in std::iter::once(list).chain(windows.into_iter().map(|(_, t)| t)) {
        assert!(accepted(&token, &alice, conv));
        for at in 0..token.len() {
            for bit in 0..8 {
                let mut bytes = token.clone().into_bytes();
                bytes[at] ^= 1 << bit;
                // A flipped high bit is not UTF-8, so it cannot even be a `&str`.
                let Ok(flipped) = String::from_utf8(bytes) else {
                    continue;
                };
                assert!(
                    !accepted(&flipped, &alice, conv),
                    "{token}: byte {at} bit {bit}"
                );
            }
        }
    }
}

#[test]
fn cut_extended_and_malformed_tokens_are_refused() {
    let alice = user("alice");
    let conv = conversation();
    let (list, windows) = tokens(&alice, conv);
    for token in std::iter::once(list).chain(windows.into_iter().map(|(_, t)| t)) {
        for end in 0..token.len() {
            assert!(
                !accepted(&token[..end], &alice, conv),
                "{token} cut at {end}"
            );
        }
        for extra in ["A", "AA", "AAA", "AAAA", "=", "==", "_", " ", "\n", "%3D"] {
            let extended = format!("{token}{extra}");
            assert!(!accepted(&extended, &alice, conv), "{extended}");
            let prefixed = format!("{extra}{token}");
            assert!(!accepted(&prefixed, &alice, conv), "{prefixed}");
        }
        // The standard alphabet's spelling of the same bytes.
        let standard = token.replace('-', "+").replace('_', "/");
        if standard != token {
            assert!(!accepted(&standard, &alice, conv), "{standard}");
        }
    }
    assert_eq!(
        refusal(ConversationCursor::from_token("", &alice)),
        "the cursor is empty"
    );
    let enormous = "A".repeat(10 << 20);
    assert!(refusal(Window::from_token(&enormous, &alice, conv)).contains("longer than"));
    assert!(refusal(ConversationCursor::from_token("not a token!", &alice)).contains("base64"));
    assert_eq!(
        refusal(ConversationCursor::from_token(
            "AAAAAAAAAAAAAAAAAAA",
            &alice
        )),
        "the cursor is damaged"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    /// Any text at all either reads back or is `InvalidCursor` — and random text never reads back.
    #[test]
    fn any_string_decodes_or_is_an_invalid_cursor(
        text in prop_oneof!["(?s).{0,80}", "[A-Za-z0-9_-]{0,60}", "[A-Za-z0-9_=+/-]{14,52}"],
    ) {
        prop_assert!(!accepted(&text, &user("alice"), conversation()));
    }

    #[test]
    fn any_cursor_or_window_round_trips(
        micros in DateTime::<Utc>::MIN_UTC.timestamp_micros()..=DateTime::<Utc>::MAX_UTC.timestamp_micros(),
        id in any::<u128>(),
        seq in any::<i64>(),
        limit in any::<u32>(),
        variant in 0..4u8,
        name in "[^\\p{Cc}]{1,40}",
    ) {
        let owner = user(&name);
        let conv = ConversationId::from(uuid::Uuid::from_u128(id));
        let time = DateTime::from_timestamp_micros(micros).unwrap();
        let cursor = ConversationCursor::new(time, conv);
        prop_assert_eq!(ConversationCursor::from_token(&cursor.to_token(&owner), &owner).unwrap(), cursor);
        let window = match variant {
            0 => Window::All,
            1 => Window::Latest(limit),
            2 => Window::Before { seq, limit },
            _ => Window::After { seq, limit },
        };
        let token = window.to_token(&owner, conv);
        prop_assert_eq!(Window::from_token(&token, &owner, conv).unwrap(), window);
    }
}

fn a_user_pages_through_the_list_with_tokens_alone(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let mut made = Vec::new();
    for i in 0..23 {
        made.push(store.create_conversation(&alice, None).unwrap().id);
        if i % 5 == 0 {
            store.create_conversation(&bob, None).unwrap();
        }
    }
    // What a web service does: each response carries a token; each request brings one back.
    let request = |token: Option<&str>| {
        let page = match token {
            Some(token) => Page::after(ConversationCursor::from_token(token, &alice).unwrap(), 4),
            None => Page::first(4),
        };
        let page = store.list_conversations(&alice, page).unwrap();
        let next = page
            .next
            .and_then(|next| next.cursor())
            .map(|c| c.to_token(&alice));
        (page.conversations, next)
    };
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let (conversations, next) = request(token.as_deref());
        assert!(conversations.iter().all(|c| c.user_id == alice));
        seen.extend(conversations.iter().map(|c| c.id));
        match next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    made.reverse();
    assert_eq!(seen, made, "each conversation exactly once, newest first");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 23);

    // Bob cannot use alice's token, and a token of his own never shows him alice's conversations.
    let (_, alices_next) = request(None);
    let alices_next = alices_next.unwrap();
    assert!(matches!(
        ConversationCursor::from_token(&alices_next, &bob),
        Err(Error::InvalidCursor(_))
    ));
    let bobs = store.list_conversations(&bob, Page::first(2)).unwrap();
    let token = bobs.next.unwrap().cursor().unwrap().to_token(&bob);
    let rest = store
        .list_conversations(
            &bob,
            Page::after(ConversationCursor::from_token(&token, &bob).unwrap(), 100),
        )
        .unwrap();
    assert_eq!(rest.conversations.len(), 3);
    assert!(rest.conversations.iter().all(|c| c.user_id == bob));
}

fn a_history_walks_both_ways_with_window_tokens(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let other = store.create_conversation(&alice, None).unwrap().id;
    let texts: Vec<String> = (1..=95).map(|i| format!("m{i}")).collect();
    let batch: Vec<NewMessage> = texts.iter().map(NewMessage::user).collect();
    store.append_messages(&alice, conv, &batch).unwrap();

    let walk = |start: Window, towards_older: bool| {
        let mut seqs = Vec::new();
        let mut token = Some(start.to_token(&alice, conv));
        while let Some(t) = token {
            let window = Window::from_token(&t, &alice, conv).unwrap();
            let page = store.messages(&alice, conv, window).unwrap();
            let step = if towards_older {
                page.older
            } else {
                page.newer
            };
            if towards_older {
                seqs.splice(0..0, page.messages.iter().map(|m| m.seq));
            } else {
                seqs.extend(page.messages.iter().map(|m| m.seq));
            }
            // The token of one conversation is no good for another.
            if let Some(next) = step {
                let next = next.to_token(&alice, conv);
                assert!(matches!(
                    Window::from_token(&next, &alice, other),
                    Err(Error::InvalidCursor(_))
                ));
            }
            token = step.map(|w| w.to_token(&alice, conv));
        }
        seqs
    };
    let all: Vec<i64> = (1..=95).collect();
    assert_eq!(walk(Window::Latest(10), true), all);
    assert_eq!(walk(Window::After { seq: 0, limit: 7 }, false), all);
}

/// `next_token`, `older_token` and `newer_token` are the tokens of the page's next request, in
/// one call, and read back as the cursors and windows they stand for.
fn next_page_tokens_take_one_call(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    for _ in 0..3 {
        store.create_conversation(&alice, None).unwrap();
    }
    let page = store.list_conversations(&alice, Page::first(2)).unwrap();
    let token = page.next_token(&alice).unwrap();
    let cursor = page.next.and_then(|next| next.cursor()).unwrap();
    assert_eq!(token, cursor.to_token(&alice));
    let rest = store
        .list_conversations(
            &alice,
            Page::after(ConversationCursor::from_token(&token, &alice).unwrap(), 2),
        )
        .unwrap();
    assert_eq!(rest.conversations.len(), 1);
    assert_eq!(rest.next_token(&alice), None);

    let conv = rest.conversations[0].id;
    let batch: Vec<NewMessage> = ["a", "b", "c"].into_iter().map(NewMessage::user).collect();
    store.append_messages(&alice, conv, &batch).unwrap();
    let middle = store
        .messages(&alice, conv, Window::Before { seq: 3, limit: 1 })
        .unwrap();
    let older = middle.older_token(&alice).unwrap();
    let newer = middle.newer_token(&alice).unwrap();
    assert_eq!(older, middle.older.unwrap().to_token(&alice, conv));
    assert_eq!(
        Window::from_token(&newer, &alice, conv).unwrap(),
        Window::After { seq: 2, limit: 1 }
    );
    let empty = store
        .messages(
            &alice,
            store.create_conversation(&alice, None).unwrap().id,
            Window::All,
        )
        .unwrap();
    assert_eq!(
        (empty.older_token(&alice), empty.newer_token(&alice)),
        (None, None)
    );
}
