//! Tags and metadata on conversations: set, added and removed, listed by tag in the order of the
//! default list while conversations move, counted, validated, owned, kept by forks, deletes and
//! upgrades.

use chatstore::{
    ChatStore, Conversation, ConversationId, Error, NewConversation, NewMessage, Page, Tag,
    TagCount, TextError, UserId, MAX_METADATA_DEPTH,
};
use serde_json::{json, Value};

use super::{assert_exact_walk, conversations, ids, walk, while_another_thread_moves};
use crate::support::{backend_tests, conversation_with, user, TestDb};

backend_tests! {
    every: [
        tags_are_set_added_and_removed_and_kept_with_the_conversation,
        a_tag_lists_its_conversations_in_the_order_of_the_default_list,
        tags_are_counted_listed_and_archived,
        metadata_is_set_replaced_and_cleared,
        someone_elses_conversation_cannot_be_tagged_or_described,
        refused_tags_and_metadata_change_nothing,
        the_largest_accepted_tags_and_metadata_read_back,
        tagged_walks_are_exact_while_conversations_move,
        tagged_walks_are_exact_while_another_thread_moves_and_retags,
        forks_keep_tags_and_deletes_take_them,
    ],
    persistent: [
        a_database_from_before_tags_upgrades_in_place,
    ],
}

fn tag(name: &str) -> Tag {
    Tag::new(name).unwrap()
}

/// Every conversation of the user's default list with `tag`, page by page.
fn walk_tagged(
    store: &ChatStore,
    owner: &UserId,
    tag: &Tag,
    size: u32,
    mut between_pages: impl FnMut(),
) -> Vec<Conversation> {
    let mut seen = Vec::new();
    let mut page = store
        .list_conversations_tagged(owner, tag, Page::first(size))
        .unwrap();
    loop {
        assert!(page.conversations.len() <= size as usize);
        seen.extend(page.conversations.iter().cloned());
        between_pages();
        match page.next {
            Some(next) => page = store.list_conversations_tagged(owner, tag, next).unwrap(),
            None => return seen,
        }
    }
}

/// The lists of every tag agree with the user's lists: each tag's list is the default list with
/// only that tag's conversations, in the same order, and its counts are those of both lists.
fn assert_tags_agree_with_the_lists(store: &ChatStore, owner: &UserId) {
    let listed = walk(store, owner, 100, false, || {});
    let archived = walk(store, owner, 100, true, || {});
    let mut expected: Vec<(Tag, u64, u64)> = Vec::new();
    for (list, is_archived) in [(&listed, false), (&archived, true)] {
        for c in list {
            for t in &c.tags {
                let at = match expected.iter().position(|e| e.0 == *t) {
                    Some(at) => at,
                    None => {
                        expected.push((t.clone(), 0, 0));
                        expected.len() - 1
                    }
                };
                match is_archived {
                    true => expected[at].2 += 1,
                    false => expected[at].1 += 1,
                }
            }
        }
    }
    expected.sort_by(|a, b| a.0.as_str().as_bytes().cmp(b.0.as_str().as_bytes()));
    let counts: Vec<(Tag, u64, u64)> = store
        .tags(owner)
        .unwrap()
        .into_iter()
        .map(|c: TagCount| (c.tag, c.conversations, c.archived))
        .collect();
    assert_eq!(counts, expected);
    for (t, _, _) in &expected {
        let tagged = walk_tagged(store, owner, t, 7, || {});
        let filtered: Vec<Conversation> = listed
            .iter()
            .filter(|c| c.tags.contains(t))
            .cloned()
            .collect();
        assert_eq!(tagged, filtered, "the list of {t}");
    }
}

fn tags_are_set_added_and_removed_and_kept_with_the_conversation(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, Some("Kitchen")).unwrap();
    assert!(conv.tags.is_empty());

    let tagged = store
        .set_conversation_tags(&alice, conv.id, &[tag("home"), tag("diy"), tag("home")])
        .unwrap();
    assert_eq!(tagged.tags, [tag("diy"), tag("home")]);
    assert_eq!(
        tagged.updated_at, conv.updated_at,
        "tagging is not activity"
    );
    assert_eq!(store.conversation(&alice, conv.id).unwrap(), tagged);

    let added = store
        .tag_conversation(&alice, conv.id, &tag("Budget"))
        .unwrap();
    assert_eq!(added.tags, [tag("Budget"), tag("diy"), tag("home")]);
    let again = store
        .tag_conversation(&alice, conv.id, &tag(" Budget "))
        .unwrap();
    assert_eq!(again, added, "a tag it has is left as it is");
    let removed = store
        .untag_conversation(&alice, conv.id, &tag("diy"))
        .unwrap();
    assert_eq!(removed.tags, [tag("Budget"), tag("home")]);
    let unchanged = store
        .untag_conversation(&alice, conv.id, &tag("budget"))
        .unwrap();
    assert_eq!(unchanged, removed, "tags are compared as they are written");

    // Every read returns them: a list, the conversation, an export.
    let listed = store
        .list_conversations(&alice, Page::first(10))
        .unwrap()
        .conversations;
    assert_eq!(listed, std::slice::from_ref(&removed));
    assert_tags_agree_with_the_lists(&store, &alice);

    let created = store
        .create_conversation_with(
            &alice,
            NewConversation::new()
                .with_title("Bathroom")
                .with_tags([tag("home"), tag("plumbing")]),
        )
        .unwrap();
    assert_eq!(created.tags, [tag("home"), tag("plumbing")]);
    assert_eq!(store.conversation(&alice, created.id).unwrap(), created);
    assert_tags_agree_with_the_lists(&store, &alice);

    assert!(store
        .set_conversation_tags(&alice, conv.id, &[])
        .unwrap()
        .tags
        .is_empty());
    assert_tags_agree_with_the_lists(&store, &alice);
}

fn a_tag_lists_its_conversations_in_the_order_of_the_default_list(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let all = conversations(&store, &alice, 12);
    let (work, home) = (tag("work"), tag("home"));
    for (i, c) in all.iter().enumerate() {
        let mut tags = Vec::new();
        if i % 2 == 0 {
            tags.push(work.clone());
        }
        if i % 3 == 0 {
            tags.push(home.clone());
        }
        store.set_conversation_tags(&alice, c.id, &tags).unwrap();
    }
    assert_tags_agree_with_the_lists(&store, &alice);

    // Each change of place moves the conversation in its tags' lists too.
    store.pin_conversation(&alice, all[4].id).unwrap();
    assert_tags_agree_with_the_lists(&store, &alice);
    store.archive_conversation(&alice, all[6].id).unwrap();
    assert_tags_agree_with_the_lists(&store, &alice);
    store
        .append_message(&alice, all[0].id, NewMessage::user("bump"))
        .unwrap();
    let first = store
        .list_conversations_tagged(&alice, &work, Page::first(2))
        .unwrap();
    assert_eq!(ids(&first.conversations), [all[4].id, all[0].id]);
    assert_tags_agree_with_the_lists(&store, &alice);
    store
        .append_messages(
            &alice,
            all[2].id,
            &[NewMessage::user("a"), NewMessage::assistant("b")],
        )
        .unwrap();
    assert_tags_agree_with_the_lists(&store, &alice);
    store
        .rename_conversation(&alice, all[8].id, Some("renamed"))
        .unwrap();
    assert_tags_agree_with_the_lists(&store, &alice);
    // Branch changes move it as well: an edit, a pop.
    let sent = store
        .append_message(&alice, all[10].id, NewMessage::user("first"))
        .unwrap();
    store
        .append_sibling(&alice, all[10].id, sent.id, &[NewMessage::user("edited")])
        .unwrap();
    assert_tags_agree_with_the_lists(&store, &alice);
    store.pop_messages(&alice, all[10].id, 1).unwrap();
    assert_tags_agree_with_the_lists(&store, &alice);
    store.restore_conversation(&alice, all[6].id).unwrap();
    store.unpin_conversation(&alice, all[4].id).unwrap();
    assert_tags_agree_with_the_lists(&store, &alice);

    // A tag nobody uses lists nothing.
    let none = store
        .list_conversations_tagged(&alice, &tag("none"), Page::first(5))
        .unwrap();
    assert!(none.conversations.is_empty() && none.next.is_none());
}

fn tags_are_counted_listed_and_archived(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    assert!(store.tags(&alice).unwrap().is_empty());
    let all = conversations(&store, &alice, 5);
    for c in &all[..3] {
        store.tag_conversation(&alice, c.id, &tag("b")).unwrap();
    }
    for c in &all[2..] {
        store.tag_conversation(&alice, c.id, &tag("a")).unwrap();
    }
    store.archive_conversation(&alice, all[2].id).unwrap();
    store.pin_conversation(&alice, all[0].id).unwrap();
    let counts: Vec<(String, u64, u64)> = store
        .tags(&alice)
        .unwrap()
        .into_iter()
        .map(|c| (c.tag.to_string(), c.conversations, c.archived))
        .collect();
    assert_eq!(counts, [("a".into(), 2, 1), ("b".into(), 2, 1)]);
    assert_tags_agree_with_the_lists(&store, &alice);
}

fn metadata_is_set_replaced_and_cleared(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let meta = json!({ "project": 42, "model": { "name": "m-1", "temperature": 0.5 } });
    let created = store
        .create_conversation_with(&alice, NewConversation::new().with_metadata(meta.clone()))
        .unwrap();
    assert_eq!(created.metadata, Some(meta.clone()));
    assert_eq!(store.conversation(&alice, created.id).unwrap(), created);

    let other = json!({ "project": 7, "unicode": "日本 \u{1F600}", "list": [1, null, true] });
    let set = store
        .set_conversation_metadata(&alice, created.id, Some(&other))
        .unwrap();
    assert_eq!(set.metadata, Some(other.clone()));
    assert_eq!(
        set.updated_at, created.updated_at,
        "metadata is not activity"
    );
    let listed = store
        .list_conversations(&alice, Page::first(5))
        .unwrap()
        .conversations;
    assert_eq!(listed, std::slice::from_ref(&set));

    let cleared = store
        .set_conversation_metadata(&alice, created.id, None)
        .unwrap();
    assert_eq!(cleared.metadata, None);
    assert_eq!(store.conversation(&alice, created.id).unwrap(), cleared);
}

fn someone_elses_conversation_cannot_be_tagged_or_described(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let conv = store
        .create_conversation_with(
            &alice,
            NewConversation::new()
                .with_tag(tag("secret"))
                .with_metadata(json!({ "a": 1 })),
        )
        .unwrap();
    let t = tag("secret");
    let refused = [
        store.tag_conversation(&bob, conv.id, &tag("mine")),
        store.untag_conversation(&bob, conv.id, &t),
        store.set_conversation_tags(&bob, conv.id, &[]),
        store.set_conversation_metadata(&bob, conv.id, Some(&json!({ "b": 2 }))),
        store.set_conversation_metadata(&bob, conv.id, None),
        store.tag_conversation(&alice, ConversationId::from(uuid::Uuid::now_v7()), &t),
    ];
    for result in refused {
        assert!(matches!(result, Err(Error::NotFound)), "{result:?}");
    }
    assert_eq!(store.conversation(&alice, conv.id).unwrap(), conv);
    assert!(store.tags(&bob).unwrap().is_empty());
    let bobs = store
        .list_conversations_tagged(&bob, &t, Page::first(10))
        .unwrap();
    assert!(bobs.conversations.is_empty());
    // Bob's own conversation with the same tag is his alone.
    let his = store.create_conversation(&bob, None).unwrap();
    store.tag_conversation(&bob, his.id, &t).unwrap();
    let listed = |owner: &UserId| {
        ids(&store
            .list_conversations_tagged(owner, &t, Page::first(10))
            .unwrap()
            .conversations)
    };
    assert_eq!(listed(&bob), [his.id]);
    assert_eq!(listed(&alice), [conv.id]);
}

fn refused_tags_and_metadata_change_nothing(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, Some("c")).unwrap();
    let twenty: Vec<Tag> = (0..Tag::MAX_PER_CONVERSATION)
        .map(|i| tag(&format!("t{i:02}")))
        .collect();
    let full = store
        .set_conversation_tags(&alice, conv.id, &twenty)
        .unwrap();
    assert_eq!(full.tags, twenty);

    let mut too_many = twenty.clone();
    too_many.push(tag("one more"));
    assert!(matches!(
        store.set_conversation_tags(&alice, conv.id, &too_many),
        Err(Error::TooManyTags { tags: 21, max: 20 })
    ));
    assert!(matches!(
        store.tag_conversation(&alice, conv.id, &tag("one more")),
        Err(Error::TooManyTags { tags: 21, max: 20 })
    ));
    // A tag it has already is not one more.
    assert_eq!(
        store.tag_conversation(&alice, conv.id, &twenty[3]).unwrap(),
        full
    );
    let created = store.create_conversation_with(
        &alice,
        NewConversation::new().with_tags(too_many.iter().cloned()),
    );
    assert!(matches!(created, Err(Error::TooManyTags { .. })));

    for (text, why) in [
        ("", TextError::Empty),
        ("  \t ", TextError::Empty),
        ("a\u{0}b", TextError::ControlCharacter { position: 1 }),
        ("line\nbreak", TextError::ControlCharacter { position: 4 }),
    ] {
        assert!(
            matches!(Tag::new(text), Err(Error::InvalidTag(e)) if e == why),
            "{text:?}"
        );
    }
    assert!(matches!(
        Tag::new("x".repeat(Tag::MAX_CHARS + 1)),
        Err(Error::InvalidTag(TextError::TooLong { chars: 65, max: 64 }))
    ));
    #[cfg(feature = "serde")]
    assert!(serde_json::from_value::<Tag>(json!(" ")).is_err());

    let meta = json!({ "kept": true });
    store
        .set_conversation_metadata(&alice, conv.id, Some(&meta))
        .unwrap();
    let nested = |levels: usize| (1..levels).fold(json!({}), |inner, _| json!({ "n": inner }));
    let max = store.limits().max_metadata_bytes();
    let large = json!({ "x": "y".repeat(max) });
    for (refused, expect) in [
        (json!([1, 2]), "InvalidMetadata"),
        (json!("text"), "InvalidMetadata"),
        (nested(MAX_METADATA_DEPTH + 1), "InvalidMetadata"),
        (large, "MetadataTooLarge"),
    ] {
        let set = store.set_conversation_metadata(&alice, conv.id, Some(&refused));
        let created =
            store.create_conversation_with(&alice, NewConversation::new().with_metadata(refused));
        for result in [set, created] {
            let error = result.unwrap_err();
            assert!(format!("{error:?}").starts_with(expect), "{error:?}");
            assert!(error.is_invalid_input());
        }
    }
    let now = store.conversation(&alice, conv.id).unwrap();
    assert_eq!((now.tags, now.metadata), (twenty, Some(meta)));
    assert_eq!(
        walk(&store, &alice, 10, false, || {}).len(),
        1,
        "no conversation was created"
    );
    assert_tags_agree_with_the_lists(&store, &alice);
}

fn the_largest_accepted_tags_and_metadata_read_back(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    // The longest tags, in scripts of one to four bytes a character, trimmed.
    let longest: Vec<Tag> = ["a", "é", "日", "\u{1F600}"]
        .iter()
        .map(|c| tag(&format!("  {} ", c.repeat(Tag::MAX_CHARS))))
        .collect();
    let max = store.limits().max_metadata_bytes();
    // The outer object is the first level, "deep" holds the other 30.
    let nested = (2..MAX_METADATA_DEPTH).fold(json!({}), |inner, _| json!({ "n": inner }));
    let padding = max - json!({ "pad": "", "deep": nested }).to_string().len();
    let largest = json!({ "pad": "p".repeat(padding), "deep": nested });
    assert_eq!(largest.to_string().len(), max);
    let conv = store
        .create_conversation_with(
            &alice,
            NewConversation::new()
                .with_tags(longest.iter().cloned())
                .with_metadata(largest.clone()),
        )
        .unwrap();
    let read = store.conversation(&alice, conv.id).unwrap();
    assert_eq!(read, conv);
    assert_eq!(read.metadata, Some(largest));
    for t in &longest {
        let listed = store
            .list_conversations_tagged(&alice, t, Page::first(5))
            .unwrap();
        assert_eq!(ids(&listed.conversations), [conv.id], "{t}");
    }
    assert_tags_agree_with_the_lists(&store, &alice);
}

/// `n` conversations of `owner`'s, all tagged `t`: the first `moving` of them to move, the others
/// to stay put, `pinned` of those pinned; with the ids of those that stay, in their tag's list.
fn tagged_to_walk(
    store: &ChatStore,
    owner: &UserId,
    t: &Tag,
    (n, moving, pinned): (usize, usize, usize),
) -> (Vec<Conversation>, Vec<Conversation>, Vec<ConversationId>) {
    let mut all = conversations(store, owner, n);
    for c in &all {
        store.tag_conversation(owner, c.id, t).unwrap();
    }
    let staying = all.split_off(moving);
    for c in &staying[..pinned] {
        store.pin_conversation(owner, c.id).unwrap();
    }
    let expected: Vec<ConversationId> = walk_tagged(store, owner, t, 100, || {})
        .iter()
        .map(|c| c.id)
        .filter(|id| staying.iter().any(|s| s.id == *id))
        .collect();
    assert_eq!(expected.len(), staying.len());
    (all, staying, expected)
}

/// Moves one of `moving` (which, and how, by `step`): pinned, appended to, untagged, archived,
/// tagged again or restored.
fn move_tagged(store: &ChatStore, owner: &UserId, t: &Tag, moving: &[Conversation], step: usize) {
    let c = moving[step % moving.len()].id;
    match (step / moving.len() + step) % 6 {
        0 => drop(store.pin_conversation(owner, c).unwrap()),
        1 => drop(
            store
                .append_message(owner, c, NewMessage::user("bump"))
                .unwrap(),
        ),
        2 => drop(store.untag_conversation(owner, c, t).unwrap()),
        3 => drop(store.archive_conversation(owner, c).unwrap()),
        4 => drop(store.tag_conversation(owner, c, t).unwrap()),
        _ => drop(store.restore_conversation(owner, c).unwrap()),
    }
}

fn tagged_walks_are_exact_while_conversations_move(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let t = tag("project");
    let (moving, staying, expected) = tagged_to_walk(&store, &alice, &t, (18, 6, 2));
    for size in [1, 4] {
        let mut step = 0usize;
        let seen = walk_tagged(&store, &alice, &t, size, || {
            move_tagged(&store, &alice, &t, &moving, step);
            step += 1;
        });
        assert_exact_walk(&seen, &staying, &expected, &format!("pages of {size}"));
    }
    assert_tags_agree_with_the_lists(&store, &alice);
}

fn forks_keep_tags_and_deletes_take_them(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let meta = json!({ "project": "apollo" });
    let conv = store
        .create_conversation_with(
            &alice,
            NewConversation::new()
                .with_title("source")
                .with_tag(tag("apollo"))
                .with_metadata(meta.clone()),
        )
        .unwrap();
    let first = store
        .append_message(&alice, conv.id, NewMessage::user("hello"))
        .unwrap();
    store.pin_conversation(&alice, conv.id).unwrap();
    let fork = store.fork_conversation(&alice, conv.id, first.id).unwrap();
    assert_eq!(
        (fork.tags.clone(), fork.metadata.clone()),
        (vec![tag("apollo")], Some(meta))
    );
    assert!(!fork.pinned);
    assert_eq!(store.conversation(&alice, fork.id).unwrap(), fork);
    assert_eq!(store.tags(&alice).unwrap()[0].conversations, 2);
    assert_tags_agree_with_the_lists(&store, &alice);

    store.delete_conversation(&alice, conv.id).unwrap();
    assert_eq!(store.tags(&alice).unwrap()[0].conversations, 1);
    assert_tags_agree_with_the_lists(&store, &alice);
    let kept = conversation_with(&store, &user("bob"), 2);
    store
        .tag_conversation(&user("bob"), kept, &tag("apollo"))
        .unwrap();
    store.delete_user_data(&alice).unwrap();
    assert!(store.tags(&alice).unwrap().is_empty());
    assert!(store
        .list_conversations_tagged(&alice, &tag("apollo"), Page::first(5))
        .unwrap()
        .conversations
        .is_empty());
    assert_eq!(store.tags(&user("bob")).unwrap()[0].conversations, 1);
}

/// A database migrated before tags and metadata (no columns for them, no table of tags): the
/// migration keeps every conversation as it was, with no tags and no metadata, and they can be
/// tagged and described from then on.
fn a_database_from_before_tags_upgrades_in_place(db: &TestDb) {
    let alice = user("alice");
    let store = db.open();
    let stored: Vec<ConversationId> = (1..=3)
        .map(|n| conversation_with(&store, &alice, n))
        .collect();
    store.pin_conversation(&alice, stored[0]).unwrap();
    let before: Vec<Conversation> = walk(&store, &alice, 10, false, || {});
    drop(store);
    db.revert_newest_migrations(3);
    let store = db.open();
    assert_eq!(
        store.migrations_applied_at_open(),
        ["20261204000010", "20261204000011", "20261204000012"]
    );
    assert_eq!(walk(&store, &alice, 10, false, || {}), before);
    for c in &before {
        assert!(c.tags.is_empty() && c.metadata.is_none());
    }
    let t = tag("after");
    store.tag_conversation(&alice, stored[1], &t).unwrap();
    store
        .set_conversation_metadata(&alice, stored[1], Some(&json!({ "v": 2 })))
        .unwrap();
    store
        .append_message(&alice, stored[1], NewMessage::user("more"))
        .unwrap();
    assert_tags_agree_with_the_lists(&store, &alice);
    let value: Value = store
        .conversation(&alice, stored[1])
        .unwrap()
        .metadata
        .unwrap();
    assert_eq!(value, json!({ "v": 2 }));
}

/// As above, with the moves made by another thread while the walks run, as fast as it can:
/// appends, pins, archives and tags taken off and put back.
fn tagged_walks_are_exact_while_another_thread_moves_and_retags(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let t = tag("project");
    let (moving, staying, expected) = tagged_to_walk(&store, &alice, &t, (24, 8, 3));
    while_another_thread_moves(
        15,
        |step| move_tagged(&store, &alice, &t, &moving, step),
        |walk_number| {
            let seen = walk_tagged(&store, &alice, &t, 4, || {});
            assert_exact_walk(&seen, &staying, &expected, &format!("walk {walk_number}"));
        },
    );
    assert_tags_agree_with_the_lists(&store, &alice);
}
