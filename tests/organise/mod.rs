//! Organising conversations: pinned ones listed first, archived ones listed apart, the calls that
//! move a conversation between them, and list walks that stay exact while conversations move.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chatstore::{
    ChatStore, Conversation, ConversationCursor, ConversationId, Error, Message, NewMessage, Page,
    SearchOrder, SearchQuery, UserId, Window,
};

use crate::support::{backend_tests, conversation_with, user, TestDb};

mod parts;
mod retention;
mod tags;
mod usage;

backend_tests! {
    every: [
        pinned_come_first_and_archived_are_listed_apart,
        moves_between_lists_keep_everything_else,
        someone_elses_conversation_cannot_be_moved,
        a_page_runs_on_from_the_pinned_to_the_rest,
        cursors_name_their_list,
        an_archived_conversation_is_kept_whole,
        walks_are_exact_while_conversations_move_between_pages,
        walks_are_exact_while_another_thread_moves_conversations,
    ],
    persistent: [
        a_database_from_before_pins_upgrades_in_place,
    ],
}

/// Every conversation of `list` (the default list or the archived one), page by page.
fn walk(
    store: &ChatStore,
    owner: &UserId,
    size: u32,
    archived: bool,
    mut between_pages: impl FnMut(),
) -> Vec<Conversation> {
    let list = |page| match archived {
        false => store.list_conversations(owner, page),
        true => store.list_archived_conversations(owner, page),
    };
    let mut seen = Vec::new();
    let mut page = list(Page::first(size)).unwrap();
    loop {
        assert!(page.conversations.len() <= size as usize);
        seen.extend(page.conversations.iter().cloned());
        between_pages();
        match page.next {
            Some(next) => page = list(next).unwrap(),
            None => return seen,
        }
    }
}

/// A conversation of two messages stored with the current schema, then the newest `reverted`
/// migrations undone: the store that opens it again (applying them), with the owner, the
/// conversation and the messages as first stored.
fn stored_before(
    db: &TestDb,
    reverted: usize,
) -> (ChatStore, UserId, ConversationId, Vec<Message>) {
    let alice = user("alice");
    let store = db.open();
    let conv = store.create_conversation(&alice, Some("old")).unwrap().id;
    let old = store
        .append_messages(
            &alice,
            conv,
            &[NewMessage::user("q"), NewMessage::assistant("a")],
        )
        .unwrap();
    drop(store);
    db.revert_newest_migrations(reverted);
    (db.open(), alice, conv, old)
}

fn ids(conversations: &[Conversation]) -> Vec<ConversationId> {
    conversations.iter().map(|c| c.id).collect()
}

/// `n` conversations of `owner`, oldest first, each updated after the one before.
fn conversations(store: &ChatStore, owner: &UserId, n: usize) -> Vec<Conversation> {
    (0..n)
        .map(|i| {
            store
                .create_conversation(owner, Some(&format!("c{i}")))
                .unwrap()
        })
        .collect()
}

/// The ids of `list` in list order: most recently updated first, ties by id, descending.
fn newest_first(mut list: Vec<Conversation>) -> Vec<ConversationId> {
    list.sort_by_key(|c| std::cmp::Reverse((c.updated_at, c.id)));
    ids(&list)
}

/// A walk made while other conversations moved (`what` names it): none listed twice, and those
/// that stayed put (`stayed`) listed exactly as `expected`.
fn assert_exact_walk(
    seen: &[Conversation],
    stayed: &[Conversation],
    expected: &[ConversationId],
    what: &str,
) {
    let seen = ids(seen);
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "{what}: listed twice");
    let kept: Vec<ConversationId> = seen
        .into_iter()
        .filter(|id| stayed.iter().any(|s| s.id == *id))
        .collect();
    assert_eq!(kept, expected, "{what}");
}

/// Runs `walk` `walks` times while another thread calls `move_one` with step 0, 1, 2… as fast as
/// it can; each walk starts after at least one more move, so that moves fall inside walks.
fn while_another_thread_moves(
    walks: usize,
    move_one: impl Fn(usize) + Sync,
    mut walk: impl FnMut(usize),
) {
    let (done, moves) = (AtomicBool::new(false), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut step = 0;
            while !done.load(Ordering::Acquire) {
                move_one(step);
                step += 1;
                moves.store(step, Ordering::Release);
            }
        });
        for walk_number in 0..walks {
            let before = moves.load(Ordering::Acquire);
            while moves.load(Ordering::Acquire) == before {
                std::thread::yield_now();
            }
            walk(walk_number);
        }
        done.store(true, Ordering::Release);
    });
    assert!(moves.load(Ordering::Acquire) >= walks);
}

fn pinned_come_first_and_archived_are_listed_apart(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let all = conversations(&store, &alice, 6);
    store.create_conversation(&bob, None).unwrap();
    // Pinned: the oldest and the third; archived: the second and the newest.
    let pinned = [
        store.pin_conversation(&alice, all[0].id).unwrap(),
        store.pin_conversation(&alice, all[2].id).unwrap(),
    ];
    let archived = [
        store.archive_conversation(&alice, all[1].id).unwrap(),
        store.archive_conversation(&alice, all[5].id).unwrap(),
    ];
    for (moved, before) in pinned.iter().zip([&all[0], &all[2]]) {
        assert!(moved.pinned && !moved.archived);
        assert_eq!(
            moved.updated_at, before.updated_at,
            "pinning is not activity"
        );
    }
    for moved in &archived {
        assert!(moved.archived && !moved.pinned);
    }
    let listed = store.list_conversations(&alice, Page::first(100)).unwrap();
    let expected: Vec<ConversationId> = newest_first(pinned.to_vec())
        .into_iter()
        .chain(newest_first(vec![all[3].clone(), all[4].clone()]))
        .collect();
    assert_eq!(ids(&listed.conversations), expected);
    assert_eq!(listed.next, None);
    let flags: Vec<(bool, bool)> = listed
        .conversations
        .iter()
        .map(|c| (c.pinned, c.archived))
        .collect();
    assert_eq!(
        flags,
        [(true, false), (true, false), (false, false), (false, false)]
    );
    let shelved = store
        .list_archived_conversations(&alice, Page::first(100))
        .unwrap();
    assert_eq!(ids(&shelved.conversations), newest_first(archived.to_vec()));
    assert!(shelved.conversations.iter().all(|c| c.archived));
    // Each reads back with its flags; Bob's list is his alone.
    assert_eq!(store.conversation(&alice, all[0].id).unwrap(), pinned[0]);
    assert_eq!(store.conversation(&alice, all[5].id).unwrap(), archived[1]);
    let his = store.list_conversations(&bob, Page::first(100)).unwrap();
    assert_eq!(his.conversations.len(), 1);
    assert!(store
        .list_archived_conversations(&bob, Page::first(100))
        .unwrap()
        .conversations
        .is_empty());
}

fn moves_between_lists_keep_everything_else(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 3);
    let start = store.conversation(&alice, conv).unwrap();
    let state = |c: &Conversation| (c.pinned, c.archived);
    // Each call, from each state: what it leaves.
    let steps: [(&str, (bool, bool)); 10] = [
        ("unpin", (false, false)),
        ("restore", (false, false)),
        ("pin", (true, false)),
        ("pin", (true, false)),
        ("restore", (true, false)),
        ("archive", (false, true)),
        ("unpin", (false, true)),
        ("archive", (false, true)),
        ("pin", (true, false)),
        ("unpin", (false, false)),
    ];
    for (call, expected) in steps {
        let moved = match call {
            "pin" => store.pin_conversation(&alice, conv),
            "unpin" => store.unpin_conversation(&alice, conv),
            "archive" => store.archive_conversation(&alice, conv),
            "restore" => store.restore_conversation(&alice, conv),
            other => unreachable!("{other}"),
        }
        .unwrap();
        assert_eq!(state(&moved), expected, "after {call}");
        assert_eq!(store.conversation(&alice, conv).unwrap(), moved);
        // Only the flags change.
        assert_eq!(
            (moved.updated_at, moved.message_count, &moved.title),
            (start.updated_at, start.message_count, &start.title),
            "after {call}"
        );
    }
    store.archive_conversation(&alice, conv).unwrap();
    let appended = store
        .append_message(&alice, conv, NewMessage::user("still here"))
        .unwrap();
    let after = store.conversation(&alice, conv).unwrap();
    assert!(after.archived, "an append does not restore it");
    assert_eq!(after.updated_at, appended.created_at);
}

fn someone_elses_conversation_cannot_be_moved(db: &TestDb) {
    let store = db.open();
    let (alice, mallory) = (user("alice"), user("mallory"));
    let conv = store.create_conversation(&alice, Some("mine")).unwrap();
    let pinned = store.pin_conversation(&alice, conv.id).unwrap();
    let missing = ConversationId::from(uuid::Uuid::now_v7());
    for id in [conv.id, missing] {
        for result in [
            store.pin_conversation(&mallory, id),
            store.unpin_conversation(&mallory, id),
            store.archive_conversation(&mallory, id),
            store.restore_conversation(&mallory, id),
        ] {
            assert!(matches!(result, Err(Error::NotFound)), "{result:?}");
        }
    }
    assert_eq!(store.conversation(&alice, conv.id).unwrap(), pinned);
    for list in [
        store.list_conversations(&mallory, Page::first(10)),
        store.list_archived_conversations(&mallory, Page::first(10)),
    ] {
        assert!(list.unwrap().conversations.is_empty());
    }
}

fn a_page_runs_on_from_the_pinned_to_the_rest(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let all = conversations(&store, &alice, 9);
    for c in &all[..4] {
        store.pin_conversation(&alice, c.id).unwrap();
    }
    store.archive_conversation(&alice, all[4].id).unwrap();
    let pinned: Vec<ConversationId> = all[..4].iter().rev().map(|c| c.id).collect();
    let rest: Vec<ConversationId> = all[5..].iter().rev().map(|c| c.id).collect();
    let everything: Vec<ConversationId> = pinned.iter().chain(&rest).copied().collect();
    // Every page size: pages that end inside the pinned, on their last, and past them.
    for size in 1..=10 {
        let seen = walk(&store, &alice, size, false, || {});
        assert_eq!(ids(&seen), everything, "pages of {size}");
    }
    // A cursor on the last pinned conversation goes on with the newest of the rest.
    let last_pinned = store.conversation(&alice, all[0].id).unwrap();
    let cursor = ConversationCursor::after(&last_pinned);
    assert!(cursor.is_pinned());
    let next = store
        .list_conversations(&alice, Page::after(cursor, 2))
        .unwrap();
    assert_eq!(ids(&next.conversations), rest[..2]);
    // …and the same position rebuilt from its parts.
    let rebuilt = ConversationCursor::pinned(last_pinned.updated_at, last_pinned.id);
    assert_eq!(rebuilt, cursor);
}

fn cursors_name_their_list(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let all = conversations(&store, &alice, 6);
    for c in &all[..2] {
        store.pin_conversation(&alice, c.id).unwrap();
    }
    for c in &all[4..] {
        store.archive_conversation(&alice, c.id).unwrap();
    }
    let listed = store.list_conversations(&alice, Page::first(1)).unwrap();
    let archived = store
        .list_archived_conversations(&alice, Page::first(1))
        .unwrap();
    let (in_list, in_archive) = (listed.next.unwrap(), archived.next.unwrap());
    assert!(in_list.cursor().unwrap().is_pinned());
    assert!(in_archive.cursor().unwrap().is_archived());
    // Each list refuses the other's positions, as a typed error.
    let refused = store.list_conversations(&alice, in_archive);
    assert!(matches!(&refused, Err(Error::InvalidCursor(why)) if why.contains("archived")));
    let refused = store.list_archived_conversations(&alice, in_list);
    assert!(matches!(refused, Err(Error::InvalidCursor(_))));
    let listed_position = ConversationCursor::new(all[3].updated_at, all[3].id);
    assert!(store
        .list_archived_conversations(&alice, Page::after(listed_position, 5))
        .is_err());
    // Tokens carry the list: each reads back as the cursor it was made from, and continues it.
    for page in [in_list, in_archive] {
        let cursor = page.cursor().unwrap();
        let token = cursor.to_token(&alice);
        let back = ConversationCursor::from_token(&token, &alice).unwrap();
        assert_eq!(back, cursor);
    }
    let token = listed.next_token(&alice).unwrap();
    let cursor = ConversationCursor::from_token(&token, &alice).unwrap();
    let rest = store
        .list_conversations(&alice, Page::after(cursor, 10))
        .unwrap();
    let expected = [all[0].id, all[3].id, all[2].id];
    assert_eq!(ids(&rest.conversations), expected);
}

fn an_archived_conversation_is_kept_whole(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = conversation_with(&store, &alice, 4);
    store
        .append_message(&alice, conv, NewMessage::user("kumquat jam"))
        .unwrap();
    let before = store.messages(&alice, conv, Window::All).unwrap();
    store.archive_conversation(&alice, conv).unwrap();
    assert_eq!(store.messages(&alice, conv, Window::All).unwrap(), before);
    // Searched on request only: asked for, or as the one conversation searched.
    let other = conversation_with(&store, &alice, 1);
    store
        .append_message(&alice, other, NewMessage::user("kumquat tart"))
        .unwrap();
    let found = |query: SearchQuery<'_>| -> Vec<String> {
        let hits = store.search_messages(&alice, &query).unwrap().hits;
        hits.into_iter().map(|h| h.message.content).collect()
    };
    let kumquat = SearchQuery::new("kumquat");
    assert_eq!(found(kumquat), ["kumquat tart"]);
    assert_eq!(
        found(kumquat.order(SearchOrder::BestMatch)),
        ["kumquat tart"]
    );
    assert_eq!(
        found(kumquat.include_archived(true)),
        ["kumquat tart", "kumquat jam"]
    );
    assert_eq!(found(kumquat.in_conversation(conv)), ["kumquat jam"]);
    // Pages count the hits they show: the archived ones are not skipped by the offset.
    let first = store
        .search_messages(&alice, &SearchQuery::new("m1").limit(1))
        .unwrap();
    assert_eq!(first.hits.len(), 1);
    assert_eq!(first.hits[0].message.conversation_id, other);
    assert_eq!(first.next_offset, None);
    let restored = store.restore_conversation(&alice, conv).unwrap();
    assert!(!restored.archived);
    assert_eq!(found(kumquat), ["kumquat tart", "kumquat jam"]);
    store.delete_conversation(&alice, other).unwrap();
    let listed = store.list_conversations(&alice, Page::first(10)).unwrap();
    assert_eq!(ids(&listed.conversations), [conv]);
    store.archive_conversation(&alice, conv).unwrap();
    store.delete_conversation(&alice, conv).unwrap();
    assert!(store
        .list_archived_conversations(&alice, Page::first(10))
        .unwrap()
        .conversations
        .is_empty());
}

/// A walk of each list, in pages of `size`, while `moving` conversations are pinned, unpinned,
/// archived, restored and appended to between its pages (`step` says which, by a counter):
/// every conversation that stays put is listed exactly once, in list order, and none twice.
fn walks_are_exact_while_conversations_move_between_pages(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let all = conversations(&store, &alice, 24);
    // Every third conversation moves; of the others, four stay pinned and four stay archived.
    let (moving, staying): (Vec<_>, Vec<_>) = all.iter().cloned().partition(|c| {
        let i = all.iter().position(|o| o.id == c.id).unwrap();
        i % 3 == 0
    });
    for c in &staying[..4] {
        store.pin_conversation(&alice, c.id).unwrap();
    }
    for c in &staying[4..8] {
        store.archive_conversation(&alice, c.id).unwrap();
    }
    let staying: Vec<Conversation> = staying
        .iter()
        .map(|c| store.conversation(&alice, c.id).unwrap())
        .collect();
    let expected_listed: Vec<ConversationId> = newest_first(staying[..4].to_vec())
        .into_iter()
        .chain(newest_first(staying[8..].to_vec()))
        .collect();
    let expected_archived = newest_first(staying[4..8].to_vec());
    for size in [1, 3, 5] {
        for archived in [false, true] {
            let mut step = 0usize;
            let seen = walk(&store, &alice, size, archived, || {
                for _ in 0..3 {
                    move_one(&store, &alice, &moving, step);
                    step += 1;
                }
            });
            let expected = if archived {
                &expected_archived
            } else {
                &expected_listed
            };
            let what = format!("pages of {size}, archived: {archived}");
            assert_exact_walk(&seen, &staying, expected, &what);
        }
    }
}

/// The `step`-th move of one of `moving`: pin, archive, append, unpin, restore, in turn.
fn move_one(store: &ChatStore, owner: &UserId, moving: &[Conversation], step: usize) {
    let id = moving[step % moving.len()].id;
    match (step / moving.len() + step) % 5 {
        0 => drop(store.pin_conversation(owner, id).unwrap()),
        1 => drop(store.archive_conversation(owner, id).unwrap()),
        2 => drop(
            store
                .append_message(owner, id, NewMessage::user("bump"))
                .unwrap(),
        ),
        3 => drop(store.unpin_conversation(owner, id).unwrap()),
        _ => drop(store.restore_conversation(owner, id).unwrap()),
    }
}

/// As above, with the moves made by another thread while the walks run, as fast as it can.
fn walks_are_exact_while_another_thread_moves_conversations(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let all = conversations(&store, &alice, 30);
    let (moving, staying) = all.split_at(10);
    for c in &staying[..5] {
        store.pin_conversation(&alice, c.id).unwrap();
    }
    let staying: Vec<Conversation> = staying
        .iter()
        .map(|c| store.conversation(&alice, c.id).unwrap())
        .collect();
    let expected: Vec<ConversationId> = newest_first(staying[..5].to_vec())
        .into_iter()
        .chain(newest_first(staying[5..].to_vec()))
        .collect();
    while_another_thread_moves(
        20,
        |step| move_one(&store, &alice, moving, step),
        |walk_number| {
            let seen = walk(&store, &alice, 4, false, || {});
            assert_exact_walk(&seen, &staying, &expected, &format!("walk {walk_number}"));
        },
    );
}

/// A database from before pins (its conversations, with messages, stored under the old list
/// index): the migration keeps every conversation, lists them as before, none pinned or archived,
/// and they can be pinned and archived from then on.
fn a_database_from_before_pins_upgrades_in_place(db: &TestDb) {
    let alice = user("alice");
    let store = db.open();
    let stored: Vec<ConversationId> = (1..=4)
        .map(|n| conversation_with(&store, &alice, n))
        .collect();
    let before: Vec<Conversation> = stored
        .iter()
        .map(|id| store.conversation(&alice, *id).unwrap())
        .collect();
    drop(store);
    db.revert_newest_migrations(4);
    let store = db.open();
    assert_eq!(
        store.migrations_applied_at_open(),
        [
            "20261204000009",
            "20261204000010",
            "20261204000011",
            "20261204000012"
        ]
    );
    let listed = store.list_conversations(&alice, Page::first(10)).unwrap();
    assert_eq!(ids(&listed.conversations), newest_first(before.clone()));
    for c in &listed.conversations {
        assert!(!c.pinned && !c.archived);
        assert!(before.contains(c), "kept as it was");
    }
    store.pin_conversation(&alice, stored[0]).unwrap();
    store.archive_conversation(&alice, stored[3]).unwrap();
    let listed = store.list_conversations(&alice, Page::first(10)).unwrap();
    assert_eq!(
        ids(&listed.conversations),
        [stored[0], stored[2], stored[1]]
    );
    assert!(store.verify_schema().unwrap().is_complete());
}
