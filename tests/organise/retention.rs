//! Retention: a purge deletes the conversations not updated since a cutoff (every user's or one
//! user's) in short batches, counts them first on request, keeps the search index and the usage
//! totals in step, resumes after a stop, and loses nothing appended while it runs.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chatstore::{
    ChatStore, ConversationId, DeletedCounts, Error, NewMessage, Page, Retention, SearchQuery, Tag,
    Usage, UserId, Window,
};
use chrono::{DateTime, Duration, SubsecRound, Utc};

use crate::support::{backend_tests, user, TestDb};

backend_tests! {
    every: [
        a_purge_deletes_what_was_not_updated_since_the_cutoff_and_nothing_else,
        a_purge_of_one_user_leaves_the_others,
        a_purge_runs_in_short_batches_and_resumes_after_a_stop,
        nothing_appended_during_a_purge_is_lost,
        a_cutoff_later_than_now_is_refused,
    ],
    persistent: [],
}

/// A conversation of `owner` last updated `days` ago, holding `n` messages (one word each:
/// `word`), as an import writes it.
fn from_days_ago(
    store: &ChatStore,
    owner: &UserId,
    days: i64,
    n: usize,
    word: &str,
) -> ConversationId {
    let made = store.create_conversation(owner, Some(word)).unwrap();
    let texts: Vec<String> = (0..n).map(|i| format!("{word} {i}")).collect();
    let mut messages = Vec::new();
    for chunk in texts.chunks(1000) {
        let batch: Vec<NewMessage> = chunk
            .iter()
            .map(|t| NewMessage::assistant(t.as_str()).with_usage(Usage::new(2, 1)))
            .collect();
        messages.extend(store.append_messages(owner, made.id, &batch).unwrap());
    }
    let mut conversation = store.conversation(owner, made.id).unwrap();
    store.delete_conversation(owner, made.id).unwrap();
    let at = (Utc::now() - Duration::days(days)).trunc_subsecs(6);
    conversation.created_at = at;
    conversation.updated_at = at;
    for m in &mut messages {
        m.created_at = at;
    }
    store
        .import_conversation(owner, &conversation, &messages)
        .unwrap();
    made.id
}

fn every_batch(_: &DeletedCounts) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

fn exists(store: &ChatStore, owner: &UserId, conv: ConversationId) -> bool {
    match store.conversation(owner, conv) {
        Ok(_) => true,
        Err(Error::NotFound) => false,
        Err(e) => panic!("{e}"),
    }
}

fn cutoff(days: i64) -> DateTime<Utc> {
    Utc::now() - Duration::days(days)
}

/// Every user's conversations older than the cutoff go — pinned, archived and tagged ones too —
/// with their messages, search index entries and usage; the newer ones stay whole. The dry run
/// counted exactly what went, and a second purge finds nothing.
fn a_purge_deletes_what_was_not_updated_since_the_cutoff_and_nothing_else(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let old = [
        from_days_ago(&store, &alice, 400, 3, "ancient"),
        from_days_ago(&store, &alice, 200, 0, "ancient"),
        from_days_ago(&store, &bob, 100, 2, "ancient"),
    ];
    let kept = [
        from_days_ago(&store, &alice, 10, 2, "recent"),
        from_days_ago(&store, &bob, 50, 1, "recent"),
    ];
    store.pin_conversation(&alice, old[0]).unwrap();
    store.archive_conversation(&bob, old[2]).unwrap();
    store
        .tag_conversation(&alice, old[1], &Tag::new("keep?").unwrap())
        .unwrap();
    let fresh = store.create_conversation(&alice, Some("today")).unwrap().id;
    store.index_pending().unwrap();
    let retention = Retention::not_updated_since(cutoff(90));

    let would = store.purge_preview(&retention).unwrap();
    assert_eq!((would.conversations, would.messages), (3, 5));
    assert!(old
        .iter()
        .all(|&c| exists(&store, &alice, c) || exists(&store, &bob, c)));

    let mut calls = Vec::new();
    let deleted = store
        .purge(&retention, |so_far| {
            calls.push(*so_far);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(deleted, would);
    assert_eq!(calls.last(), Some(&deleted));
    for c in old {
        assert!(!exists(&store, &alice, c) && !exists(&store, &bob, c));
    }
    for (owner, c) in [(&alice, kept[0]), (&bob, kept[1]), (&alice, fresh)] {
        assert!(exists(&store, owner, c));
    }
    assert_eq!(
        store
            .messages(&alice, kept[0], Window::All)
            .unwrap()
            .messages
            .len(),
        2
    );
    // The index forgot them; the usage totals are the kept conversations'.
    for (owner, kept_hits) in [(&alice, 0), (&bob, 0)] {
        let found = store
            .search_messages(owner, &SearchQuery::new("ancient").include_archived(true))
            .unwrap();
        assert_eq!(found.hits.len(), kept_hits);
    }
    assert_eq!(store.usage(&alice).unwrap(), Usage::new(4, 2));
    assert_eq!(store.usage(&bob).unwrap(), Usage::new(2, 1));
    assert!(store.tags(&alice).unwrap().is_empty());
    let stats = store.stats().unwrap();
    assert_eq!((stats.conversations, stats.messages), (3, 3));

    // Nothing left to delete.
    assert_eq!(
        store.purge(&retention, every_batch).unwrap(),
        DeletedCounts::default()
    );
    assert_eq!(
        store.purge_preview(&retention).unwrap(),
        DeletedCounts::default()
    );
}

/// A purge of one user's conversations deletes only theirs, a batch at a time.
fn a_purge_of_one_user_leaves_the_others(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let alices: Vec<ConversationId> = (0..5)
        .map(|_| from_days_ago(&store, &alice, 100, 2, "old"))
        .collect();
    let recent = from_days_ago(&store, &alice, 1, 1, "recent");
    let bobs = from_days_ago(&store, &bob, 100, 2, "old");
    let retention = Retention::not_updated_since(cutoff(30))
        .of_user(alice.clone())
        .batch_size(2);
    let would = store.purge_preview(&retention).unwrap();
    assert_eq!((would.conversations, would.messages), (5, 10));
    let mut batches = 0;
    let deleted = store
        .purge(&retention, |_| {
            batches += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(deleted, would);
    assert_eq!(batches, 3);
    assert!(alices.iter().all(|&c| !exists(&store, &alice, c)));
    assert!(exists(&store, &alice, recent));
    assert!(exists(&store, &bob, bobs));
    assert_eq!(store.usage(&bob).unwrap(), Usage::new(4, 2));
}

/// Batches hold at most the batch size's conversations and about `MESSAGES_PER_BATCH` messages
/// (a larger conversation alone): progress is reported after each. A purge stopped after its
/// first batch keeps what it deleted, and the next one deletes the rest.
fn a_purge_runs_in_short_batches_and_resumes_after_a_stop(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let big = (Retention::MESSAGES_PER_BATCH as usize) * 2 / 3;
    let bigs: Vec<ConversationId> = (0..2)
        .map(|_| from_days_ago(&store, &alice, 60, big, "big"))
        .collect();
    let smalls: Vec<ConversationId> = (0..5)
        .map(|_| from_days_ago(&store, &alice, 60, 1, "small"))
        .collect();
    let retention = Retention::not_updated_since(cutoff(30)).batch_size(2);

    // Stopped after the first batch.
    let first = store.purge(&retention, |_| ControlFlow::Break(())).unwrap();
    assert!(
        first.conversations >= 1 && first.conversations <= 2,
        "{first:?}"
    );
    let left = store.purge_preview(&retention).unwrap();
    assert_eq!(left.conversations, 7 - first.conversations);

    // The rest, a batch at a time.
    let mut calls: Vec<DeletedCounts> = Vec::new();
    let rest = store
        .purge(&retention, |so_far| {
            calls.push(*so_far);
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(rest, left);
    assert_eq!(
        first.messages + rest.messages,
        (2 * big + 5) as u64,
        "every message counted once"
    );
    let mut previous = DeletedCounts::default();
    for so_far in &calls {
        let batch = so_far.conversations - previous.conversations;
        let messages = so_far.messages - previous.messages;
        assert!((1..=2).contains(&batch), "{calls:?}");
        // Two large conversations never share a batch.
        assert!(
            batch == 1 || messages <= Retention::MESSAGES_PER_BATCH as u64,
            "{calls:?}"
        );
        previous = *so_far;
    }
    assert_eq!(previous, rest);
    for c in bigs.iter().chain(&smalls) {
        assert!(!exists(&store, &alice, *c));
    }
    assert!(store
        .list_conversations(&alice, Page::first(10))
        .unwrap()
        .conversations
        .is_empty());
}

/// While one thread purges, two others append. One appends to the older half of the old
/// conversations and to the new ones as fast as it can, racing the purge's batches. The other
/// takes turns with the purge — an append before its first batch and one after each — to the
/// newest old conversations first, which the purge reaches last. Every append that succeeded is
/// kept (its conversation was updated, so it stays), every one refused found its conversation
/// already gone, and no conversation older than the cutoff survives unless an append made it
/// newer.
fn nothing_appended_during_a_purge_is_lost(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let old: Vec<ConversationId> = (0..30)
        .map(|_| from_days_ago(&store, &alice, 60, 3, "old"))
        .collect();
    let new: Vec<ConversationId> = (0..3)
        .map(|_| from_days_ago(&store, &alice, 1, 1, "new"))
        .collect();
    let (raced, in_turn) = old.split_at(old.len() / 2);
    let retention = Retention::not_updated_since(cutoff(30)).batch_size(3);
    let done = AtomicBool::new(false);
    let (batches, tried) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let append = |conv, k: usize, appended: &mut Vec<chatstore::Message>| {
        let message = NewMessage::user(format!("during {k}"));
        match store.append_message(&alice, conv, message) {
            Ok(m) => appended.push(m),
            Err(Error::NotFound) => {}
            Err(e) => panic!("{e}"),
        }
    };
    let (deleted, appended) = std::thread::scope(|s| {
        let racer = s.spawn(|| {
            let mut appended = Vec::new();
            let targets = raced.iter().chain(&new).cycle();
            for (k, &conv) in targets.enumerate() {
                if done.load(Ordering::Acquire) {
                    break;
                }
                append(conv, k, &mut appended);
            }
            appended
        });
        let taker = s.spawn(|| {
            let mut appended = Vec::new();
            for (k, &conv) in in_turn.iter().rev().enumerate() {
                // Its k-th append waits for the purge's k-th batch (or its end).
                while batches.load(Ordering::Acquire) < k && !done.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                if done.load(Ordering::Acquire) {
                    break;
                }
                append(conv, k, &mut appended);
                tried.store(k + 1, Ordering::Release);
            }
            appended
        });
        let deleted = store
            .purge(&retention, |_| {
                let batch = batches.fetch_add(1, Ordering::AcqRel) + 1;
                // The append that this batch allowed, unless every one is made.
                while tried.load(Ordering::Acquire) < (batch + 1).min(in_turn.len()) {
                    std::thread::yield_now();
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        done.store(true, Ordering::Release);
        let mut appended = racer.join().unwrap();
        appended.extend(taker.join().unwrap());
        (deleted, appended)
    });
    for m in &appended {
        let read = store
            .messages(&alice, m.conversation_id, Window::All)
            .unwrap_or_else(|e| panic!("{e}: the conversation of an append that succeeded"));
        assert!(
            read.messages.contains(m),
            "an append that succeeded is kept"
        );
    }
    let survivors: Vec<ConversationId> = old
        .iter()
        .copied()
        .filter(|&c| exists(&store, &alice, c))
        .collect();
    for c in &survivors {
        assert!(
            appended.iter().any(|m| m.conversation_id == *c),
            "an old conversation survived without an append"
        );
    }
    assert_eq!(deleted.conversations as usize, old.len() - survivors.len());
    // The first append in turn, to the newest old conversation, came before any batch; the
    // purge deleted some of the others in turn before the appends reached them.
    assert!(survivors.contains(&old[old.len() - 1]), "{survivors:?}");
    assert!(
        in_turn.iter().any(|c| !survivors.contains(c)),
        "{survivors:?}"
    );
    assert_eq!(
        store.purge_preview(&retention).unwrap(),
        DeletedCounts::default()
    );
    assert!(new.iter().all(|&c| exists(&store, &alice, c)));
}

/// A cutoff later than now would take appends made during the purge: refused, nothing deleted;
/// a cutoff of now is taken.
fn a_cutoff_later_than_now_is_refused(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let future = Retention::not_updated_since(Utc::now() + Duration::hours(1));
    for result in [
        store.purge(&future, every_batch),
        store.purge_preview(&future),
    ] {
        let error = result.unwrap_err();
        assert!(matches!(error, Error::InvalidCutoff(_)), "{error:?}");
        assert!(error.is_invalid_input());
    }
    assert!(exists(&store, &alice, conv));
    // Now is not later than now: a cutoff read from the clock just before is taken, also in the
    // microsecond it was read in (the store keeps microseconds; the clock gives nanoseconds).
    for _ in 0..200 {
        let now = Retention::not_updated_since(Utc::now()).of_user(user("nobody"));
        assert_eq!(store.purge_preview(&now).unwrap(), DeletedCounts::default());
    }
}
