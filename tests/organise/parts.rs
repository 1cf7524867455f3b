//! Content parts: an ordered list of text, image and file parts on a message, beside its content.
//! Kept and read back by every read, validated, searched and counted as text, owned, carried by
//! retries, forks, exports and imports, and upgrades.

use chatstore::{
    char_cost, Attachment, Error, ExportItem, Message, NewMessage, Part, Reference, SearchQuery,
    Window,
};

use crate::support::{backend_tests, snapshot, user, TestDb};

backend_tests! {
    every: [
        parts_read_back_from_every_read,
        text_parts_are_searched_and_counted,
        refused_parts_change_nothing,
        retries_forks_exports_and_imports_carry_parts,
        someone_elses_conversation_takes_no_parts,
    ],
    persistent: [
        a_database_from_before_parts_upgrades_in_place,
    ],
}

fn photo() -> Part {
    Part::Image(
        Attachment::new(
            Reference::url("https://cdn.example.com/p/cat.png?v=2"),
            "image/png",
            48_213,
        )
        .with_name("cat.png"),
    )
}

fn report() -> Part {
    Part::File(Attachment::new(
        Reference::key("uploads/7f3a/report.pdf"),
        "application/pdf",
        Attachment::MAX_SIZE,
    ))
}

/// Parts given on appends of every kind read back, in order, on each message from every read
/// (windows, the latest page, context windows, searches, exports); messages without parts have
/// none, and their JSON is as before.
fn parts_read_back_from_every_read(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, Some("pics")).unwrap().id;
    let asked = vec![Part::text("What is this?"), photo()];
    let one = store
        .append_message(&alice, conv, NewMessage::user("").with_parts(asked.clone()))
        .unwrap();
    assert_eq!((one.content.as_str(), &one.parts), ("", &asked));
    let batch = store
        .append_messages(
            &alice,
            conv,
            &[
                NewMessage::assistant("A cat."),
                NewMessage::user("And this report?").with_parts(&[report()][..]),
            ],
        )
        .unwrap();
    assert!(batch[0].parts.is_empty());
    assert_eq!(batch[1].parts, [report()]);
    let sibling = store
        .append_sibling(
            &alice,
            conv,
            batch[1].id,
            &[NewMessage::user("Or this one?").with_parts(vec![photo(), report()])],
        )
        .unwrap();
    assert_eq!(sibling[0].parts, [photo(), report()]);

    let path = store.messages(&alice, conv, Window::All).unwrap().messages;
    assert_eq!(path, [one.clone(), batch[0].clone(), sibling[0].clone()]);
    let latest = store
        .messages(&alice, conv, Window::Latest(2))
        .unwrap()
        .messages;
    assert_eq!(latest, path[1..]);
    let context = store.context_window(&alice, conv, 1_000_000).unwrap();
    assert_eq!(context.messages, path);
    store.index_pending().unwrap();
    let found = store
        .search_messages(&alice, &SearchQuery::new("what"))
        .unwrap();
    assert_eq!(found.hits.len(), 1);
    assert_eq!(found.hits[0].message, one);
    // The export holds the off-branch message too, with its parts.
    let exported: Vec<Message> = store
        .export_user(&alice)
        .filter_map(|r| match r.unwrap() {
            ExportItem::Message(m) => Some(m),
            _ => None,
        })
        .collect();
    assert!(exported.contains(&batch[1]) && exported.contains(&sibling[0]));
    // A message of plain content: its JSON has no "parts".
    #[cfg(feature = "serde")]
    {
        let plain = serde_json::to_value(&batch[0]).unwrap();
        assert!(plain.get("parts").is_none(), "{plain}");
        let with = serde_json::to_value(&one).unwrap();
        assert_eq!(
            with["parts"][1]["url"],
            "https://cdn.example.com/p/cat.png?v=2"
        );
        assert_eq!(serde_json::from_value::<Message>(with).unwrap(), one);
    }
}

/// The text parts are the message's text with its content: search finds their words (accented
/// and unspaced scripts too, where the databases' own tokenizers read otherwise) and highlights
/// them, and the default context cost counts their characters; images and files are not text.
fn text_parts_are_searched_and_counted(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let parts = vec![
        Part::text("Dessert: crème brûlée"),
        photo(),
        Part::text("東京タワー at night"),
    ];
    let stored = store
        .append_messages(
            &alice,
            conv,
            &[
                NewMessage::user("zebra").with_parts(parts.clone()),
                NewMessage::user("cat.png image png report"),
            ],
        )
        .unwrap();
    let mixed = &stored[0];
    assert_eq!(
        mixed.text(),
        "zebra\nDessert: crème brûlée\n東京タワー at night"
    );
    assert_eq!(
        char_cost(mixed),
        (5 + "Dessert: crème brûlée".chars().count() + "東京タワー at night".chars().count())
            as u64
    );
    // Searched before and after the index catches up: the same answers.
    for caught_up in [false, true] {
        if caught_up {
            store.index_pending().unwrap();
        }
        for (query, marked) in [
            ("zebra", "[zebra]"),
            ("brûlée", "[brûlée]"),
            ("creme", "[crème]"),
            ("東京", "[東京]"),
            ("\"at night\"", "[at night]"),
        ] {
            let found = store
                .search_messages(&alice, &SearchQuery::new(query))
                .unwrap();
            let ids: Vec<_> = found.hits.iter().map(|h| h.message.id).collect();
            assert_eq!(ids, [mixed.id], "{query}");
            let snippet = found.hits[0].snippet.marked("[", "]");
            assert!(snippet.contains(marked), "{query}: {snippet}");
        }
        // An attachment's name and media type are not text.
        let found = store
            .search_messages(&alice, &SearchQuery::new("png"))
            .unwrap();
        let ids: Vec<_> = found.hits.iter().map(|h| h.message.id).collect();
        assert_eq!(ids, [stored[1].id]);
    }
    // A context window's budget counts the text parts: the mixed message does not fit one
    // character short of its cost.
    let last_cost = char_cost(&stored[1]);
    let window = store
        .context_window(&alice, conv, last_cost + char_cost(mixed) - 1)
        .unwrap();
    assert_eq!(window.messages, stored[1..]);
    let window = store
        .context_window(&alice, conv, last_cost + char_cost(mixed))
        .unwrap();
    assert_eq!(window.messages, stored);
}

/// Every part the store does not keep is refused with its error, before ownership is checked
/// (a conversation that does not exist gives the same error), on every kind of append; the
/// conversation is left as it was.
fn refused_parts_change_nothing(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let kept = store
        .append_message(
            &alice,
            conv,
            NewMessage::user("kept").with_parts(vec![photo()]),
        )
        .unwrap();
    let before = snapshot(&store, &alice, conv);
    let image = |reference: Reference, media_type: &str| {
        Part::Image(Attachment::new(reference, media_type, 1))
    };
    let mut named = Attachment::new(Reference::key("k"), "text/plain", 1);
    named.name = Some("n".repeat(Attachment::MAX_NAME_BYTES + 1));
    let mut huge = Attachment::new(Reference::key("k"), "text/plain", 1);
    huge.size = Attachment::MAX_SIZE + 1;
    let invalid = [
        image(
            Reference::url("data:image/png;base64,iVBORw0KGgo="),
            "image/png",
        ),
        image(Reference::url("cat.png"), "image/png"),
        image(Reference::url("https://x.example/a b.png"), "image/png"),
        image(Reference::url("https://x.example/a.pdf"), "application/pdf"),
        image(Reference::key(""), "image/png"),
        image(
            Reference::key("k".repeat(Reference::MAX_BYTES + 1)),
            "image/png",
        ),
        image(Reference::key("line\nbreak"), "image/png"),
        image(Reference::key("k"), "png"),
        Part::File(named),
        Part::File(huge),
        Part::text("nul \0 inside"),
    ];
    let elsewhere = chatstore::ConversationId::from(uuid::Uuid::now_v7());
    for bad in invalid {
        let parts = vec![Part::text("fine"), bad.clone()];
        let batch = [
            NewMessage::user("fine"),
            NewMessage::user("bad").with_parts(parts.clone()),
        ];
        for result in [
            store.append_messages(&alice, conv, &batch).map(drop),
            store.append_messages(&alice, elsewhere, &batch).map(drop),
            store
                .append_sibling(&alice, conv, kept.id, &batch)
                .map(drop),
        ] {
            let error = result.unwrap_err();
            assert!(
                matches!(error, Error::InvalidPart { index: 1, .. }),
                "{bad:?}: {error:?}"
            );
            assert!(error.is_invalid_input());
        }
    }
    let many = vec![Part::text("x"); Part::MAX_PER_MESSAGE + 1];
    let result = store.append_message(&alice, conv, NewMessage::user("").with_parts(many));
    assert!(
        matches!(
            result,
            Err(Error::TooManyParts {
                parts: 101,
                max: 100
            })
        ),
        "{result:?}"
    );
    // Content and text parts share the content limit.
    let half = "h".repeat(600 * 1024);
    let result = store.append_message(
        &alice,
        conv,
        NewMessage::user(half.as_str()).with_parts(vec![Part::text(half.as_str())]),
    );
    assert!(
        matches!(result, Err(Error::ContentTooLarge { bytes, .. }) if bytes == 2 * half.len()),
        "{result:?}"
    );
    assert_eq!(snapshot(&store, &alice, conv), before);
    // The most parts, and the largest of each limit, are taken and read back.
    let mut largest = Attachment::new(
        Reference::url(format!("s3://{}", "b".repeat(Reference::MAX_BYTES - 5))),
        format!("application/{}", "x".repeat(100)),
        Attachment::MAX_SIZE,
    );
    largest.name = Some("é".repeat(Attachment::MAX_NAME_BYTES / 2));
    let mut most = vec![Part::File(largest); Part::MAX_PER_MESSAGE - 1];
    most.push(Part::text(""));
    let stored = store
        .append_message(&alice, conv, NewMessage::user("").with_parts(most.clone()))
        .unwrap();
    assert_eq!(stored.parts, most);
    let read = store.messages(&alice, conv, Window::Latest(1)).unwrap();
    assert_eq!(read.messages, [stored]);
}

/// A retried batch with parts is recognised, and the same ids with other parts are taken; a fork
/// copies parts (and its copies are searched by them); an export imported elsewhere exports the
/// same records; an import with a part the store would refuse is refused whole.
fn retries_forks_exports_and_imports_carry_parts(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, Some("src")).unwrap().id;
    let id = chatstore::MessageId::from(uuid::Uuid::now_v7());
    let first = NewMessage::user("look")
        .with_parts(vec![Part::text("okapi"), photo()])
        .with_id(id);
    let stored = store
        .append_messages(&alice, conv, std::slice::from_ref(&first))
        .unwrap();
    assert_eq!(
        store
            .append_messages(&alice, conv, std::slice::from_ref(&first))
            .unwrap(),
        stored
    );
    let other = first.clone().with_parts(vec![Part::text("okapi")]);
    let result = store.append_messages(&alice, conv, &[other]);
    assert!(
        matches!(result, Err(Error::DuplicateId(taken)) if taken == id),
        "{result:?}"
    );
    let more = store
        .append_messages(
            &alice,
            conv,
            &[NewMessage::assistant("").with_parts(vec![Part::text("an okapi"), report()])],
        )
        .unwrap();

    let fork = store.fork_conversation(&alice, conv, more[0].id).unwrap();
    let copied = store
        .messages(&alice, fork.id, Window::All)
        .unwrap()
        .messages;
    crate::support::assert_copied(&copied[0], &stored[0]);
    crate::support::assert_copied(&copied[1], &more[0]);
    store.index_pending().unwrap();
    let found = store
        .search_messages(&alice, &SearchQuery::new("okapi").in_conversation(fork.id))
        .unwrap();
    assert_eq!(found.hits.len(), 2);

    let records: Vec<ExportItem> = store.export_user(&alice).map(Result::unwrap).collect();
    let copy_db = TestDb::new(db.kind);
    let copy = copy_db.open();
    let mut conversation = None;
    let mut messages = Vec::new();
    let mut imported = 0;
    let mut flush = |conversation: &mut Option<chatstore::Conversation>,
                     messages: &mut Vec<Message>| {
        if let Some(c) = conversation.take() {
            copy.import_conversation(&alice, &c, messages).unwrap();
            imported += 1;
            messages.clear();
        }
    };
    for record in &records {
        match record {
            ExportItem::Conversation(c) => {
                flush(&mut conversation, &mut messages);
                conversation = Some(c.clone());
            }
            ExportItem::Message(m) => messages.push(m.clone()),
            other => panic!("{other:?}"),
        }
    }
    flush(&mut conversation, &mut messages);
    assert_eq!(imported, 2);
    let again: Vec<ExportItem> = copy.export_user(&alice).map(Result::unwrap).collect();
    assert_eq!(again, records);
    copy.index_pending().unwrap();
    let found = copy
        .search_messages(&alice, &SearchQuery::new("okapi"))
        .unwrap();
    assert_eq!(found.hits.len(), 4);

    // A part no append takes is refused on import, and nothing of the conversation is kept.
    let bob = user("bob");
    let (mut mine, mut bad) = (fork.clone(), copied.clone());
    mine.user_id = bob.clone();
    bad[1].parts.push(Part::Image(Attachment::new(
        Reference::url("data:,x"),
        "image/png",
        1,
    )));
    let result = copy.import_conversation(&bob, &mine, &bad);
    assert!(
        matches!(result, Err(Error::InvalidPart { index: 2, .. })),
        "{result:?}"
    );
    assert!(copy
        .list_conversations(&bob, chatstore::Page::first(5))
        .unwrap()
        .conversations
        .is_empty());
}

/// Another user's conversation: an append with parts is `NotFound` and changes nothing, and the
/// owner's text parts are never found by someone else's search.
fn someone_elses_conversation_takes_no_parts(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let conv = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_message(
            &alice,
            conv,
            NewMessage::user("").with_parts(vec![Part::text("secret aardvark")]),
        )
        .unwrap();
    let before = snapshot(&store, &alice, conv);
    let result = store.append_message(
        &bob,
        conv,
        NewMessage::user("").with_parts(vec![Part::text("intruder"), photo()]),
    );
    assert!(matches!(result, Err(Error::NotFound)), "{result:?}");
    assert_eq!(snapshot(&store, &alice, conv), before);
    store.index_pending().unwrap();
    let found = store
        .search_messages(&bob, &SearchQuery::new("aardvark"))
        .unwrap();
    assert!(found.hits.is_empty());
    let found = store
        .search_messages(&alice, &SearchQuery::new("aardvark"))
        .unwrap();
    assert_eq!(found.hits.len(), 1);
}

/// A database migrated before parts: its messages read back as they were, with none, and take
/// parts from the next append on.
fn a_database_from_before_parts_upgrades_in_place(db: &TestDb) {
    let (store, alice, conv, old) = super::stored_before(db, 1);
    assert_eq!(store.migrations_applied_at_open(), ["20261204000012"]);
    assert_eq!(
        store.messages(&alice, conv, Window::All).unwrap().messages,
        old
    );
    let new = store
        .append_message(
            &alice,
            conv,
            NewMessage::user("").with_parts(vec![Part::text("wombat"), report()]),
        )
        .unwrap();
    assert_eq!(
        store
            .messages(&alice, conv, Window::Latest(1))
            .unwrap()
            .messages,
        std::slice::from_ref(&new)
    );
    let found = store
        .search_messages(&alice, &SearchQuery::new("wombat"))
        .unwrap();
    assert_eq!(found.hits[0].message, new);
}
