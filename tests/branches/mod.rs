//! Branches: edits and regenerations as siblings on new branches, switching, the "< 2 / 3 >"
//! siblings, listing and deleting branches, and every read, pop, search, fork and count following
//! the active branch's path across fork points — on every backend, ownership included.

use std::sync::{Arc, Barrier};
use std::thread;

use chatstore::{
    Branch, BranchId, ChatStore, Conversation, ConversationId, Error, ExportItem, Message,
    NewMessage, SearchQuery, UserId, Window,
};

use crate::support::{backend_tests, contents, seqs, user, TestDb};

backend_tests! {
    every: [
        regenerate_and_edit_make_siblings_and_switching_shows_each,
        windows_and_context_cross_fork_points,
        branches_are_the_owners_alone,
        deleting_a_branch_keeps_what_others_share,
        pops_take_a_branchs_own_messages_and_never_shared_ones,
        a_pop_below_a_fork_releases_what_a_deleted_branch_kept,
        search_fork_and_counts_know_every_branch,
        appends_and_switches_racing_leave_every_branch_without_gaps,
        appends_racing_branch_deletes_keep_each_batch_whole_or_gone,
        an_append_that_names_its_branch_never_extends_another,
        a_deleted_branchs_id_is_never_given_again,
        whole_trees_round_trip_through_export_and_import,
        an_import_refuses_a_tree_the_store_could_not_have_made,
    ],
    persistent: [
        a_database_from_before_branches_upgrades_in_place,
        the_row_keeps_the_active_branchs_nearest_ancestors,
    ],
}

/// The whole active path, read in windows of 100.
fn path(store: &ChatStore, owner: &UserId, conv: ConversationId) -> Vec<Message> {
    let (mut all, mut window) = (Vec::new(), Window::After { seq: 0, limit: 100 });
    loop {
        let page = store.messages(owner, conv, window).unwrap();
        all.extend(page.messages);
        match page.newer {
            Some(next) => window = next,
            None => return all,
        }
    }
}

/// The ids of the conversation's branches, as listed.
fn listed(store: &ChatStore, owner: &UserId, conv: ConversationId) -> Vec<BranchId> {
    let branches = store.branches(owner, conv).unwrap();
    branches.iter().map(|b| b.id).collect()
}

fn texts(batch: &[&str]) -> Vec<NewMessage<'static>> {
    batch
        .iter()
        .map(|t| NewMessage::user(t.to_string()))
        .collect()
}

fn regenerate_and_edit_make_siblings_and_switching_shows_each(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let first = store
        .append_messages(
            &alice,
            conv,
            &[
                NewMessage::system("You plan trips."),
                NewMessage::user("Lisbon or Porto?"),
                NewMessage::assistant("Lisbon."),
            ],
        )
        .unwrap();
    let (question, reply) = (&first[1], &first[2]);

    // Regenerate: a sibling of the reply, on branch 1, now active.
    let again = store
        .append_sibling(&alice, conv, reply.id, &[NewMessage::assistant("Porto.")])
        .unwrap();
    assert_eq!((again[0].seq, again[0].branch.get()), (3, 1));
    let conversation = store.conversation(&alice, conv).unwrap();
    assert_eq!(
        (conversation.message_count, conversation.branch),
        (3, again[0].branch)
    );
    assert_eq!(
        contents(&path(&store, &alice, conv)),
        ["You plan trips.", "Lisbon or Porto?", "Porto."]
    );
    // An append extends the active branch.
    let follow = store
        .append_message(&alice, conv, NewMessage::user("Why Porto?"))
        .unwrap();
    assert_eq!((follow.seq, follow.branch), (4, again[0].branch));

    let versions = store.siblings(&alice, conv, again[0].id).unwrap();
    assert_eq!(versions.position, 1);
    let ids: Vec<_> = versions.siblings.iter().map(|s| s.message.id).collect();
    assert_eq!(ids, [reply.id, again[0].id]);
    assert_eq!(store.siblings(&alice, conv, reply.id).unwrap().position, 0);
    assert_eq!(
        store
            .siblings(&alice, conv, question.id)
            .unwrap()
            .siblings
            .len(),
        1,
        "never edited: alone"
    );

    // Back to the first reply: the root's path, as it was.
    let root = store
        .switch_branch(&alice, conv, versions.siblings[0].branch)
        .unwrap();
    assert_eq!((root.branch, root.message_count), (BranchId::ROOT, 3));
    assert_eq!(path(&store, &alice, conv), first);

    // Edit the question: a branch forking after the system message.
    let edited = store
        .append_sibling(
            &alice,
            conv,
            question.id,
            &[
                NewMessage::user("Madrid or Seville?"),
                NewMessage::assistant("Seville."),
            ],
        )
        .unwrap();
    assert_eq!(seqs(&edited), [2, 3]);
    assert_eq!(
        contents(&path(&store, &alice, conv)),
        ["You plan trips.", "Madrid or Seville?", "Seville."]
    );
    let context = store.context_window(&alice, conv, 10_000).unwrap();
    assert_eq!(
        contents(&context.messages),
        ["You plan trips.", "Madrid or Seville?", "Seville."]
    );
    let versions = store.siblings(&alice, conv, question.id).unwrap();
    assert_eq!(versions.siblings.len(), 2);
    assert_eq!(versions.siblings[1].message.id, edited[0].id);

    let branches = store.branches(&alice, conv).unwrap();
    let shape: Vec<_> = branches
        .iter()
        .map(|b| {
            (
                b.id.get(),
                b.parent.map(BranchId::get),
                b.fork_seq,
                b.length,
                b.active,
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (0, None, 0, 3, false),
            (1, Some(0), 2, 4, false),
            (2, Some(0), 1, 3, true)
        ]
    );
    // Switching to branch 1 shows its four messages.
    store
        .switch_branch(&alice, conv, BranchId::new(1).unwrap())
        .unwrap();
    assert_eq!(
        contents(&path(&store, &alice, conv)),
        [
            "You plan trips.",
            "Lisbon or Porto?",
            "Porto.",
            "Why Porto?"
        ]
    );
    // The same branch again writes nothing.
    let before = store.conversation(&alice, conv).unwrap();
    store
        .switch_branch(&alice, conv, BranchId::new(1).unwrap())
        .unwrap();
    assert_eq!(store.conversation(&alice, conv).unwrap(), before);
}

/// A long root, a branch forking deep into it, and one forking from that: windows of every kind
/// read the active path across the fork points exactly as the model of it says, and the context
/// window pins the system message of the root.
fn windows_and_context_cross_fork_points(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let mut batch = vec![NewMessage::system("be brief")];
    let names: Vec<String> = (2..=200).map(|i| format!("r{i}")).collect();
    batch.extend(names.iter().map(NewMessage::user));
    let root = store.append_messages(&alice, conv, &batch).unwrap();
    let one: Vec<String> = (151..=230).map(|i| format!("a{i}")).collect();
    let branch_one = store
        .append_sibling(
            &alice,
            conv,
            root[150].id,
            &one.iter().map(NewMessage::user).collect::<Vec<_>>(),
        )
        .unwrap();
    let two: Vec<String> = (201..=260).map(|i| format!("b{i}")).collect();
    let branch_two = store
        .append_sibling(
            &alice,
            conv,
            branch_one[49].id,
            &two.iter().map(NewMessage::user).collect::<Vec<_>>(),
        )
        .unwrap();
    let mut expected: Vec<Message> = root[..150].to_vec();
    // branch_one[49] is seq 200: branch two forks after 199.
    expected.extend_from_slice(&branch_one[..49]);
    expected.extend_from_slice(&branch_two);
    assert_eq!(seqs(&expected), (1..=259).collect::<Vec<i64>>());

    assert_eq!(path(&store, &alice, conv), expected);
    for window in [
        Window::Latest(30),
        Window::Latest(100),
        Window::Latest(500),
        Window::Before {
            seq: 203,
            limit: 60,
        },
        Window::Before { seq: 152, limit: 5 },
        Window::After {
            seq: 140,
            limit: 70,
        },
        Window::After { seq: 0, limit: 7 },
        Window::All,
    ] {
        let page = store.messages(&alice, conv, window).unwrap();
        let want = crate::hardening::model::expected_window(&expected, window);
        assert_eq!(page.messages, want, "{window:?}");
        assert_eq!(page.total, 259);
    }
    let context = store.context_window(&alice, conv, 50).unwrap();
    assert_eq!(context.messages[0].content, "be brief");
    let active = store.conversation(&alice, conv).unwrap().branch;
    assert_eq!((context.branch, context.total), (active, 259));
    assert!(!active.is_root());
    assert_eq!(
        context.messages.last().map(|m| m.content.as_str()),
        Some("b260"),
        "the newest of branch two"
    );
    // The export holds every branch's messages, each once: the active path's among them.
    let exported = store
        .export_user(&alice)
        .filter_map(|item| match item.unwrap() {
            chatstore::ExportItem::Message(m) => Some(m),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(exported.len() as u64, store.stats().unwrap().messages);
    assert!(expected.iter().all(|m| exported.contains(m)));
}

fn branches_are_the_owners_alone(db: &TestDb) {
    let store = db.open();
    let (alice, mallory) = (user("alice"), user("mallory"));
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let first = store
        .append_message(&alice, conv, NewMessage::user("secret"))
        .unwrap();
    let second = store
        .append_sibling(&alice, conv, first.id, &[NewMessage::user("secret two")])
        .unwrap();
    let other = store.create_conversation(&alice, None).unwrap().id;
    let before = store.conversation(&alice, conv).unwrap();
    let one = second[0].branch;
    let missing = ConversationId::from(uuid::Uuid::now_v7());
    for target in [conv, missing] {
        let sibling = store.append_sibling(&mallory, target, first.id, &[NewMessage::user("x")]);
        assert!(matches!(sibling, Err(Error::NotFound)), "{sibling:?}");
        assert!(matches!(
            store.switch_branch(&mallory, target, one),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            store.siblings(&mallory, target, first.id),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            store.branches(&mallory, target),
            Err(Error::NotFound)
        ));
        assert!(matches!(
            store.delete_branch(&mallory, target, one),
            Err(Error::NotFound)
        ));
    }
    // The owner's own conversation, with a message or branch it does not have.
    assert!(matches!(
        store.append_sibling(&alice, other, first.id, &[NewMessage::user("x")]),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.siblings(&alice, other, first.id),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.switch_branch(&alice, conv, BranchId::new(7).unwrap()),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.switch_branch(&alice, other, one),
        Err(Error::NotFound)
    ));
    // Bad input is refused before anything: nothing written.
    assert!(matches!(
        store.append_sibling(&alice, conv, first.id, &[NewMessage::user("nul\0")]),
        Err(Error::InvalidContent { .. })
    ));
    assert_eq!(store.conversation(&alice, conv).unwrap(), before);
    assert_eq!(store.branches(&alice, conv).unwrap().len(), 2);
    assert_eq!(store.branches(&alice, other).unwrap().len(), 1);
}

/// Root 1..=4; branch 1 forks after 2 (3..=5); branch 2 forks from branch 1 after 4 (5..=6).
fn three_branches(store: &ChatStore, alice: &UserId) -> (ConversationId, Vec<Vec<Message>>) {
    let conv = store.create_conversation(alice, None).unwrap().id;
    let root = store
        .append_messages(alice, conv, &texts(&["r1", "r2", "r3", "r4"]))
        .unwrap();
    let one = store
        .append_sibling(alice, conv, root[2].id, &texts(&["a3", "a4", "a5"]))
        .unwrap();
    let two = store
        .append_sibling(alice, conv, one[2].id, &texts(&["b5", "b6"]))
        .unwrap();
    (conv, vec![root, one, two])
}

/// [`three_branches`] with branch 1 deleted: retired, keeping a3 and a4 for branch 2.
fn three_branches_one_retired(
    store: &ChatStore,
    alice: &UserId,
) -> (ConversationId, Vec<Vec<Message>>) {
    let (conv, made) = three_branches(store, alice);
    store.delete_branch(alice, conv, made[1][0].branch).unwrap();
    (conv, made)
}

fn stored_messages(db: &TestDb, store: &ChatStore) -> u64 {
    let stats = store.stats().unwrap().messages;
    if let Some(rows) = db.count_rows("chatstore_messages") {
        assert_eq!(stats, rows as u64, "the stats count every stored message");
    }
    stats
}

fn deleting_a_branch_keeps_what_others_share(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let (conv, made) = three_branches(&store, &alice);
    assert_eq!(stored_messages(db, &store), 9);
    let (one, two) = (made[1][0].branch, made[2][0].branch);

    // Branch 1 has branch 2 forking after 4: a5 goes, a3 and a4 stay for branch 2.
    let after = store.delete_branch(&alice, conv, one).unwrap();
    assert_eq!(after.branch, two, "the active branch stays");
    assert_eq!(stored_messages(db, &store), 8);
    assert_eq!(
        contents(&path(&store, &alice, conv)),
        ["r1", "r2", "a3", "a4", "b5", "b6"]
    );
    assert_eq!(listed(&store, &alice, conv), [BranchId::ROOT, two]);
    assert!(matches!(
        store.switch_branch(&alice, conv, one),
        Err(Error::NotFound)
    ));
    // The kept a3 is still r3's sibling, shown by branch 2.
    let versions = store.siblings(&alice, conv, made[0][2].id).unwrap();
    assert_eq!(versions.siblings.len(), 2);
    assert_eq!(versions.siblings[1].branch, two);

    // The active branch 2: the root becomes active, and nothing of branch 1 is left.
    let after = store.delete_branch(&alice, conv, two).unwrap();
    assert_eq!((after.branch, after.message_count), (BranchId::ROOT, 4));
    assert_eq!(path(&store, &alice, conv), made[0]);
    assert_eq!(stored_messages(db, &store), 4);
    assert!(matches!(
        store.delete_branch(&alice, conv, BranchId::ROOT),
        Err(Error::LastBranch)
    ));
    let deleted = store.delete_user_data(&alice).unwrap();
    assert_eq!((deleted.conversations, deleted.messages), (1, 4));
}

fn pops_take_a_branchs_own_messages_and_never_shared_ones(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let (conv, made) = three_branches(&store, &alice);
    let (one, two) = (made[1][0].branch, made[2][0].branch);
    // Branch 2's own (b6), then below its fork: it then forks from branch 1 after 3.
    assert_eq!(
        contents(&store.pop_messages(&alice, conv, 1).unwrap()),
        ["b6"]
    );
    let popped = store.pop_messages(&alice, conv, 2).unwrap();
    assert_eq!(contents(&popped), ["a4", "b5"]);
    assert_eq!(contents(&path(&store, &alice, conv)), ["r1", "r2", "a3"]);
    let next = store
        .append_message(&alice, conv, NewMessage::user("c4"))
        .unwrap();
    assert_eq!((next.seq, next.branch), (4, two));
    assert_eq!(
        store
            .siblings(&alice, conv, next.id)
            .unwrap()
            .siblings
            .len(),
        2,
        "c4 is a sibling of a4 now"
    );
    // Branch 1 shares a3 and a4 with nobody now, but the root shares r1, r2 with branch 1.
    store.switch_branch(&alice, conv, BranchId::ROOT).unwrap();
    assert!(matches!(
        store.truncate_messages(&alice, conv, 1),
        Err(Error::SharedMessages { seq: 2 })
    ));
    assert_eq!(store.conversation(&alice, conv).unwrap().message_count, 4);
    assert_eq!(
        contents(&store.truncate_messages(&alice, conv, 2).unwrap()),
        ["r3", "r4"]
    );
    store.switch_branch(&alice, conv, one).unwrap();
    assert_eq!(
        contents(&path(&store, &alice, conv)),
        ["r1", "r2", "a3", "a4", "a5"]
    );
    assert_eq!(stored_messages(db, &store), 2 + 3 + 1);
    // Branch 2 forks from branch 1 after 3 now: a clear would take a3.
    assert!(matches!(
        store.clear_messages(&alice, conv),
        Err(Error::SharedMessages { seq: 3 })
    ));
}

fn search_fork_and_counts_know_every_branch(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let (conv, made) = three_branches(&store, &alice);
    // Every branch's messages are found, each with its branch.
    let found = store
        .search_messages(&alice, &SearchQuery::new("b6"))
        .unwrap();
    assert!(found.hits.iter().any(|h| h.message.content == "b6"));
    let a4 = store
        .search_messages(&alice, &SearchQuery::new("a4"))
        .unwrap();
    assert_eq!(a4.hits.len(), 1);
    assert_eq!(a4.hits[0].message.branch, made[1][0].branch);
    assert_eq!(a4.hits[0].message.seq, 4);
    // Branch 2 is active: r1, r2, a3, a4, b5, b6.
    let on_active = |word: &str| {
        let found = store
            .search_messages(&alice, &SearchQuery::new(word))
            .unwrap();
        assert_eq!(found.hits.len(), 1, "{word}");
        found.hits[0].on_active_branch
    };
    for (word, on) in [
        ("r2", true),
        ("a4", true),
        ("b6", true),
        ("r3", false),
        ("a5", false),
    ] {
        assert_eq!(on_active(word), on, "{word}");
    }
    store.switch_branch(&alice, conv, BranchId::ROOT).unwrap();
    for (word, on) in [("r2", true), ("r3", true), ("a4", false), ("b6", false)] {
        assert_eq!(on_active(word), on, "{word}");
    }

    // A fork through a message of branch 1 copies its path, on the new conversation's root.
    let fork = store
        .fork_conversation(&alice, conv, made[1][2].id)
        .unwrap();
    let copied = path(&store, &alice, fork.id);
    assert_eq!(contents(&copied), ["r1", "r2", "a3", "a4", "a5"]);
    assert!(copied.iter().all(|m| m.branch.is_root()));
    assert_eq!(seqs(&copied), [1, 2, 3, 4, 5]);
    assert_eq!(stored_messages(db, &store), 9 + 5);
    let deleted = store.delete_conversation(&alice, conv);
    assert!(deleted.is_ok());
    assert_eq!(stored_messages(db, &store), 5);
}

/// Appending threads and a switching thread on one conversation: every branch's path has its
/// seqs without a gap, each append is on one branch whole, and nothing is lost.
fn appends_and_switches_racing_leave_every_branch_without_gaps(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let (conv, _) = three_branches(&store, &alice);
    let barrier = Arc::new(Barrier::new(3));
    let appenders: Vec<_> = (0..2)
        .map(|t| {
            let (store, alice, barrier) = (store.clone(), alice.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                let mut written = 0;
                for i in 0..40 {
                    let texts = [format!("t{t}-{i}-a"), format!("t{t}-{i}-b")];
                    let batch: Vec<_> = texts.iter().map(NewMessage::user).collect();
                    let stored = store.append_messages(&alice, conv, &batch).unwrap();
                    assert_eq!(stored[0].branch, stored[1].branch);
                    assert_eq!(stored[1].seq, stored[0].seq + 1);
                    written += 2;
                }
                written
            })
        })
        .collect();
    let switcher = {
        let store = store.clone();
        let alice = alice.clone();
        thread::spawn(move || {
            barrier.wait();
            for i in 0..30u32 {
                let branch = BranchId::new(i % 3).unwrap();
                store.switch_branch(&alice, conv, branch).unwrap();
            }
        })
    };
    let written: u64 = appenders.into_iter().map(|h| h.join().unwrap()).sum();
    switcher.join().unwrap();
    let mut total = 0;
    for branch in store.branches(&alice, conv).unwrap() {
        store.switch_branch(&alice, conv, branch.id).unwrap();
        let read = path(&store, &alice, conv);
        assert_eq!(seqs(&read), (1..=branch.length).collect::<Vec<i64>>());
        total += read.iter().filter(|m| m.branch == branch.id).count() as u64;
    }
    assert_eq!(total, 9 + written, "every message on one branch, once");
    assert_eq!(store.stats().unwrap().messages, 9 + written);
}

/// A database of the layout before branches, with data: opening it migrates in place, every
/// message reads as before (on the root branch), and it branches.
fn a_database_from_before_branches_upgrades_in_place(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, Some("old")).unwrap().id;
    let old = store
        .append_messages(&alice, conv, &texts(&["one", "two", "three"]))
        .unwrap();
    drop(store);
    db.revert_newest_migrations(7);
    let store = db.open();
    assert_eq!(
        store.migrations_applied_at_open(),
        [
            "20261203000006",
            "20261203000007",
            "20261203000008",
            "20261204000009",
            "20261204000010",
            "20261204000011",
            "20261204000012"
        ]
    );
    assert_eq!(path(&store, &alice, conv), old);
    let conversation = store.conversation(&alice, conv).unwrap();
    assert_eq!(
        (conversation.branch, conversation.message_count),
        (BranchId::ROOT, 3)
    );
    let edited = store
        .append_sibling(&alice, conv, old[1].id, &texts(&["TWO"]))
        .unwrap();
    assert_eq!(contents(&path(&store, &alice, conv)), ["one", "TWO"]);
    assert_eq!(
        store.siblings(&alice, conv, edited[0].id).unwrap().position,
        1
    );
    assert_eq!(store.stats().unwrap().messages, 4);
}

/// A deleted branch kept a3 and a4 for branch 2; branch 2 popped below its fork no longer needs
/// a4, which goes, and still needs a3.
fn a_pop_below_a_fork_releases_what_a_deleted_branch_kept(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let (conv, _) = three_branches_one_retired(&store, &alice);
    assert_eq!(stored_messages(db, &store), 8);
    let popped = store.pop_messages(&alice, conv, 3).unwrap();
    assert_eq!(contents(&popped), ["a4", "b5", "b6"]);
    assert_eq!(contents(&path(&store, &alice, conv)), ["r1", "r2", "a3"]);
    assert_eq!(stored_messages(db, &store), 5);
    let popped = store.pop_messages(&alice, conv, 2).unwrap();
    assert_eq!(contents(&popped), ["r2", "a3"]);
    assert_eq!(
        stored_messages(db, &store),
        4,
        "nothing of branch 1 is left"
    );
    assert_eq!(store.branches(&alice, conv).unwrap().len(), 2);
    let deleted = store.delete_user_data(&alice).unwrap();
    assert_eq!(deleted.messages, 4);
}

/// One conversation of an export: its record, branches and messages.
type Exported = (Conversation, Vec<Branch>, Vec<Message>);

/// A user's export, one conversation at a time.
fn exported(store: &ChatStore, owner: &UserId) -> Vec<Exported> {
    let mut all: Vec<Exported> = Vec::new();
    for item in store.export_user(owner) {
        match item.unwrap() {
            ExportItem::Conversation(c) => all.push((c, Vec::new(), Vec::new())),
            ExportItem::Branch(b) => all.last_mut().unwrap().1.push(b),
            ExportItem::Message(m) => all.last_mut().unwrap().2.push(m),
            other => panic!("{other:?}"),
        }
    }
    all
}

/// `records` imported into a new database of `db`'s kind, which exports them again exactly.
fn imported_copy(db: &TestDb, owner: &UserId, records: &[Exported]) -> (TestDb, ChatStore) {
    let target = TestDb::new(db.kind);
    let copy = target.open();
    for (conversation, branches, messages) in records {
        copy.import_tree(owner, conversation, branches, messages)
            .unwrap();
    }
    assert_eq!(exported(&copy, owner), records);
    (target, copy)
}

/// Every branch's path, as each read shows it: switched to in turn, then back.
fn every_path(store: &ChatStore, owner: &UserId, conv: ConversationId) -> Vec<Vec<Message>> {
    let active = store.conversation(owner, conv).unwrap().branch;
    let mut paths = Vec::new();
    for branch in store.branches(owner, conv).unwrap() {
        store.switch_branch(owner, conv, branch.id).unwrap();
        paths.push(path(store, owner, conv));
    }
    store.switch_branch(owner, conv, active).unwrap();
    paths
}

/// A tree with a retired branch (kept for the branch forking from it), an edit of the first
/// message and a straight conversation, exported and imported into another database: the copy
/// exports the same records, lists the same branches, reads the same paths and siblings, and
/// counts and finds the same messages.
fn whole_trees_round_trip_through_export_and_import(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let (conv, made) = three_branches_one_retired(&store, &alice);
    store
        .append_sibling(&alice, conv, made[0][0].id, &texts(&["e1", "e2"]))
        .unwrap();
    let straight = store.create_conversation(&alice, Some("straight")).unwrap();
    store
        .append_messages(&alice, straight.id, &texts(&["s1", "s2"]))
        .unwrap();
    let records = exported(&store, &alice);
    assert_eq!(records.len(), 2);
    let (_, branches, messages) = &records[0];
    assert_eq!(
        branches.iter().map(|b| b.retired).collect::<Vec<_>>(),
        [false, true, false, false],
        "the retired branch is exported"
    );
    assert_eq!(messages.len(), 4 + 2 + 2 + 2, "every stored message, once");
    assert!(
        records[1].1.is_empty(),
        "a straight conversation has no branch records"
    );

    let (target, copy) = imported_copy(db, &alice, &records);
    assert_eq!(
        copy.branches(&alice, conv).unwrap(),
        store.branches(&alice, conv).unwrap()
    );
    assert_eq!(
        every_path(&copy, &alice, conv),
        every_path(&store, &alice, conv)
    );
    assert_eq!(
        copy.siblings(&alice, conv, made[0][2].id).unwrap(),
        store.siblings(&alice, conv, made[0][2].id).unwrap()
    );
    assert_eq!(stored_messages(&target, &copy), stored_messages(db, &store));
    let found = copy
        .search_messages(&alice, &SearchQuery::new("a4"))
        .unwrap();
    assert_eq!(found.hits.len(), 1);
    assert!(!found.hits[0].on_active_branch);
    // The copy branches on as the original does.
    let next = copy
        .append_sibling(&alice, conv, made[2][1].id, &texts(&["c6"]))
        .unwrap();
    let again = store
        .append_sibling(&alice, conv, made[2][1].id, &texts(&["c6"]))
        .unwrap();
    assert_eq!(
        (next[0].branch, next[0].seq),
        (again[0].branch, again[0].seq)
    );
}

/// Each record an import could get wrong about a tree, refused with nothing written.
fn an_import_refuses_a_tree_the_store_could_not_have_made(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let (conv, _) = three_branches(&store, &alice);
    let (conversation, branches, messages) = exported(&store, &alice).remove(0);
    let target = TestDb::new(db.kind);
    let copy = target.open();
    let refused =
        |c: &Conversation, b: &[Branch], m: &[Message]| match copy.import_tree(&alice, c, b, m) {
            Err(Error::InvalidImport(why)) => why,
            other => panic!("{other:?}"),
        };
    // Without its branches, or through the call for straight conversations.
    refused(&conversation, &[], &messages);
    assert!(matches!(
        copy.import_conversation(&alice, &conversation, &messages),
        Err(Error::InvalidImport(_))
    ));
    // A branch left out, or its messages.
    refused(&conversation, &branches[..2], &messages);
    refused(&conversation, &branches, &messages[..messages.len() - 1]);
    // Branches out of order or twice, a fork its parent does not hold, a cycle, a length past
    // the conversation's count, two active branches, a retired branch nothing forks from.
    let mut b = branches.clone();
    b.swap(1, 2);
    refused(&conversation, &b, &messages);
    let mut b = branches.clone();
    b.insert(1, b[1].clone());
    assert!(refused(&conversation, &b, &messages).contains("by id"));
    let mut b = branches.clone();
    b[2].fork_seq = 2;
    assert!(refused(&conversation, &b, &messages).contains("fork"));
    let mut b = branches.clone();
    b[1].parent = Some(b[2].id);
    assert!(refused(&conversation, &b, &messages).contains("parent"));
    let mut b = branches.clone();
    b[2].length += 1;
    assert!(refused(&conversation, &b, &messages).contains("message count"));
    let mut b = branches.clone();
    b[0].active = true;
    assert!(refused(&conversation, &b, &messages).contains("active"));
    let mut b = branches.clone();
    b[2].retired = true;
    refused(&conversation, &b, &messages);
    // A message moved to another branch, or two swapped.
    let mut m = messages.clone();
    m[5].branch = BranchId::ROOT;
    assert!(refused(&conversation, &branches, &m).contains("without a gap"));
    let mut m = messages.clone();
    m.swap(0, 1);
    refused(&conversation, &branches, &m);
    assert!(matches!(
        copy.conversation(&alice, conv),
        Err(Error::NotFound)
    ));
    assert_eq!(copy.stats().unwrap().messages, 0, "nothing was written");
    copy.import_tree(&alice, &conversation, &branches, &messages)
        .unwrap();
    assert_eq!(
        copy.branches(&alice, conv).unwrap(),
        store.branches(&alice, conv).unwrap()
    );
}

/// An appending thread and a thread that keeps regenerating a message and deleting the branch
/// that was active: each appended batch is stored whole (on the branch active when it was
/// reserved) or gone whole (with its branch), every live branch's path has no gap, and the tree
/// left is one an import takes back.
fn appends_racing_branch_deletes_keep_each_batch_whole_or_gone(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let (conv, made) = three_branches(&store, &alice);
    let barrier = Arc::new(Barrier::new(2));
    let appender = {
        let (store, alice, barrier) = (store.clone(), alice.clone(), barrier.clone());
        thread::spawn(move || {
            barrier.wait();
            (0..40)
                .map(|i| {
                    let texts = [format!("w{i}-a"), format!("w{i}-b")];
                    let batch: Vec<_> = texts.iter().map(NewMessage::user).collect();
                    let stored = store.append_messages(&alice, conv, &batch).unwrap();
                    assert_eq!(stored[0].branch, stored[1].branch);
                    stored.iter().map(|m| m.id).collect::<Vec<_>>()
                })
                .collect::<Vec<_>>()
        })
    };
    let regenerated = made[0][1].id;
    barrier.wait();
    for i in 0..15 {
        let active = store.conversation(&alice, conv).unwrap().branch;
        let fresh = store
            .append_sibling(&alice, conv, regenerated, &texts(&[&format!("s{i}")]))
            .unwrap();
        assert_ne!(fresh[0].branch, active);
        store.delete_branch(&alice, conv, active).unwrap();
    }
    let batches = appender.join().unwrap();

    let records = exported(&store, &alice);
    let (conversation, branches, messages) = &records[0];
    let stored: std::collections::HashSet<_> = messages.iter().map(|m| m.id).collect();
    for batch in &batches {
        let kept = batch.iter().filter(|id| stored.contains(id)).count();
        assert!(kept == 0 || kept == batch.len(), "a batch cut in two");
    }
    for (branch, path) in store
        .branches(&alice, conv)
        .unwrap()
        .iter()
        .zip(every_path(&store, &alice, conv))
    {
        assert_eq!(seqs(&path), (1..=branch.length).collect::<Vec<i64>>());
    }
    assert_eq!(stored_messages(db, &store), messages.len() as u64);
    let copy = TestDb::new(db.kind);
    copy.open()
        .import_tree(&alice, conversation, branches, messages)
        .unwrap();
}

/// `append_if_last_seq_on`: an append for one branch, refused with nothing written once another is
/// active — also one exactly as long, whose count alone would pass — and taken on its own branch.
fn an_append_that_names_its_branch_never_extends_another(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let root = store
        .append_messages(&alice, conv, &texts(&["r1", "r2", "r3"]))
        .unwrap();
    let seen = store.messages(&alice, conv, Window::Latest(10)).unwrap();
    assert_eq!((seen.branch, seen.total), (BranchId::ROOT, 3));
    // A regeneration of r3: branch 1, as long as the root.
    let other = store
        .append_sibling(&alice, conv, root[2].id, &texts(&["o3"]))
        .unwrap()[0]
        .branch;
    let reply = texts(&["reply"]);
    let refused = store.append_if_last_seq_on(&alice, conv, seen.branch, seen.total, &reply);
    assert!(
        matches!(refused, Err(Error::BranchSwitched { expected, actual })
            if expected == BranchId::ROOT && actual == other),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().is_conflict());
    let refused = store.append_if_last_seq_on(&alice, conv, seen.branch, seen.total, &[]);
    assert!(matches!(refused, Err(Error::BranchSwitched { .. })));
    assert_eq!(
        store.conversation(&alice, conv).unwrap().message_count,
        3,
        "nothing was written"
    );
    assert_eq!(store.stats().unwrap().messages, 4);
    // On its own branch, with a stale count: a conflict; with the right one, written.
    assert!(matches!(
        store.append_if_last_seq_on(&alice, conv, other, 2, &reply),
        Err(Error::Conflict {
            expected: 2,
            actual: 3
        })
    ));
    let written = store
        .append_if_last_seq_on(&alice, conv, other, 3, &reply)
        .unwrap();
    assert_eq!((written[0].branch, written[0].seq), (other, 4));
    // A retry by client ids returns the stored batch, whatever is active since.
    let id = chatstore::MessageId::from(uuid::Uuid::now_v7());
    let once = [NewMessage::user("once").with_id(id)];
    let first = store
        .append_if_last_seq_on(&alice, conv, other, 4, &once)
        .unwrap();
    store.switch_branch(&alice, conv, BranchId::ROOT).unwrap();
    let again = store
        .append_if_last_seq_on(&alice, conv, other, 4, &once)
        .unwrap();
    assert_eq!(again, first);
    // Back on the root, the read's branch and count take the append.
    let seen = store.messages(&alice, conv, Window::Latest(10)).unwrap();
    let written = store
        .append_if_last_seq_on(&alice, conv, seen.branch, seen.total, &reply)
        .unwrap();
    assert_eq!((written[0].branch, written[0].seq), (BranchId::ROOT, 4));
    assert!(matches!(
        store.append_if_last_seq_on(&bob, conv, BranchId::ROOT, 4, &reply),
        Err(Error::NotFound)
    ));
}

/// A regeneration deleted, then another edit: the new branch takes a new id, so a stale id — a
/// tab that read the deleted branch — switches to, deletes and extends nothing; and the id stays
/// taken across an export and import.
fn a_deleted_branchs_id_is_never_given_again(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let root = store
        .append_messages(&alice, conv, &texts(&["r1", "r2", "r3"]))
        .unwrap();
    let first = store
        .append_sibling(&alice, conv, root[2].id, &texts(&["v3"]))
        .unwrap()[0]
        .branch;
    let seen = store.messages(&alice, conv, Window::Latest(10)).unwrap();
    assert_eq!((seen.branch, seen.total), (first, 3));
    store.delete_branch(&alice, conv, first).unwrap();
    let edit = store
        .append_sibling(&alice, conv, root[1].id, &texts(&["x2", "x3"]))
        .unwrap();
    let second = edit[0].branch;
    assert_ne!(second, first, "a new id");
    assert!(matches!(
        store.append_if_last_seq_on(&alice, conv, seen.branch, seen.total, &texts(&["reply"])),
        Err(Error::BranchSwitched { expected, actual }) if expected == first && actual == second
    ));
    assert!(matches!(
        store.switch_branch(&alice, conv, first),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        store.delete_branch(&alice, conv, first),
        Err(Error::NotFound)
    ));
    assert_eq!(contents(&path(&store, &alice, conv)), ["r1", "x2", "x3"]);
    assert_eq!(listed(&store, &alice, conv), [BranchId::ROOT, second]);

    // The newest branch deleted: its id stays taken, in an imported copy too.
    store.delete_branch(&alice, conv, second).unwrap();
    let records = exported(&store, &alice);
    let (_copy_db, copy) = imported_copy(db, &alice, &records);
    for store in [&store, &copy] {
        let third = store
            .append_sibling(&alice, conv, root[2].id, &texts(&["w3"]))
            .unwrap()[0]
            .branch;
        assert!(third != first && third != second, "{third}");
        assert_eq!(store.stats().unwrap().messages, 4);
    }
}

/// What the conversation row should keep of the active branch's nearest ancestors, from the path
/// as read: for each run of another branch's messages, newest first, the stored seq of its last
/// message (branch · 2^32 + position); -1 for each ancestor the path does not have.
fn ancestors_on_path(store: &ChatStore, owner: &UserId, conv: ConversationId) -> Vec<i64> {
    let active = store.conversation(owner, conv).unwrap().branch;
    let mut runs: Vec<(BranchId, i64)> = Vec::new();
    for message in path(store, owner, conv).iter().rev() {
        if message.branch == active || runs.last().is_some_and(|r| r.0 == message.branch) {
            continue;
        }
        runs.push((message.branch, message.seq));
    }
    let mut kept: Vec<i64> = runs
        .iter()
        .map(|(branch, seq)| i64::from(branch.get()) * (1 << 32) + seq)
        .take(4)
        .collect();
    kept.resize(4, -1);
    kept
}

/// The four ancestor columns of the one conversation in `db`.
fn ancestor_columns(db: &TestDb) -> Vec<i64> {
    (1..=4)
        .map(|k| {
            let sql = format!("SELECT ancestor_{k} AS n FROM chatstore_conversations");
            db.scalar(&sql).expect("a database file or server")
        })
        .collect()
}

/// The conversation row keeps the active branch's four nearest ancestors (what a window crossing
/// fork points reads in one statement) in step with every change of the active branch: a
/// sibling, a switch, a pop below a fork, a delete of the active branch or of an ancestor, an
/// import; and a database from before the columns upgrades with none kept (-1) until its active
/// branch next changes.
fn the_row_keeps_the_active_branchs_nearest_ancestors(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let check = |store: &ChatStore, db: &TestDb| {
        assert_eq!(ancestor_columns(db), ancestors_on_path(store, &alice, conv));
    };
    let mut last = store
        .append_messages(&alice, conv, &texts(&["r1", "r2", "r3", "r4"]))
        .unwrap()
        .pop()
        .unwrap();
    check(&store, db);
    assert_eq!(ancestor_columns(db), [-1; 4]);
    // Six regenerations, each of the previous branch's last message: a path of seven branches,
    // more than the row keeps.
    for _ in 0..6 {
        last = store
            .append_sibling(&alice, conv, last.id, &texts(&["a", "b", "c"]))
            .unwrap()
            .pop()
            .unwrap();
        check(&store, db);
    }
    assert!(ancestor_columns(db).iter().all(|&a| a > 0));
    // An edit of the first message: a branch forking from the root at 0, with no ancestor.
    let first = path(&store, &alice, conv)[0].id;
    store
        .append_sibling(&alice, conv, first, &texts(&["R1"]))
        .unwrap();
    check(&store, db);
    assert_eq!(ancestor_columns(db), [-1; 4]);
    for branch in listed(&store, &alice, conv) {
        store.switch_branch(&alice, conv, branch).unwrap();
        check(&store, db);
    }
    // The deepest branch active; an ancestor of it deleted (retired: its shared part stays).
    let deepest = last.branch;
    store.switch_branch(&alice, conv, deepest).unwrap();
    let middle = BranchId::new(3).unwrap();
    store.delete_branch(&alice, conv, middle).unwrap();
    check(&store, db);
    // A pop below the deepest branch's fork.
    store.pop_messages(&alice, conv, 5).unwrap();
    check(&store, db);
    // The active branch deleted: another becomes active.
    store.delete_branch(&alice, conv, deepest).unwrap();
    check(&store, db);
    store
        .switch_branch(&alice, conv, BranchId::new(5).unwrap())
        .unwrap();
    check(&store, db);
    store
        .append_sibling(
            &alice,
            conv,
            path(&store, &alice, conv)[5].id,
            &texts(&["x"]),
        )
        .unwrap();
    check(&store, db);

    // An imported copy keeps them as the store does.
    let records = exported(&store, &alice);
    let (copy_db, copy) = imported_copy(db, &alice, &records);
    check(&copy, &copy_db);
    assert_eq!(ancestor_columns(&copy_db), ancestor_columns(db));

    // From before the columns: none kept, the same paths read, kept again once switched.
    let paths = every_path(&store, &alice, conv);
    drop(store);
    db.revert_newest_migrations(6);
    let store = db.open();
    assert_eq!(
        store.migrations_applied_at_open(),
        [
            "20261203000007",
            "20261203000008",
            "20261204000009",
            "20261204000010",
            "20261204000011",
            "20261204000012"
        ]
    );
    assert_eq!(ancestor_columns(db), [-1; 4]);
    assert_eq!(every_path(&store, &alice, conv), paths);
    check(&store, db);
}
