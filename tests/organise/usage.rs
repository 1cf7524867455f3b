//! Token usage: kept on each message, summed on its conversation in the transaction of every call
//! that adds or removes messages, summed over a user's conversations in one call; validated,
//! owned, carried by retries, forks, exports and imports, and upgrades.

use chatstore::{
    ChatStore, Conversation, ConversationId, Error, ExportItem, Message, NewMessage, Usage, UserId,
    Window,
};

use crate::support::{backend_tests, snapshot, user, TestDb};

backend_tests! {
    every: [
        usage_is_kept_on_messages_and_summed_on_conversations_and_users,
        removals_take_their_messages_usage_out_of_the_totals,
        refused_usage_changes_nothing,
        the_largest_usage_reads_back,
        retried_appends_count_their_usage_once,
        forks_exports_and_imports_carry_usage,
        someone_elses_usage_is_neither_read_nor_changed,
    ],
    persistent: [
        a_database_from_before_usage_upgrades_in_place,
    ],
}

/// Every message `owner` keeps, per conversation, from an export (every branch's messages, each
/// once).
fn kept(store: &ChatStore, owner: &UserId) -> Vec<(Conversation, Vec<Message>)> {
    let mut kept: Vec<(Conversation, Vec<Message>)> = Vec::new();
    for item in store.export_user(owner) {
        match item.unwrap() {
            ExportItem::Conversation(c) => kept.push((c, Vec::new())),
            ExportItem::Message(m) => kept.last_mut().unwrap().1.push(m),
            _ => {}
        }
    }
    kept
}

/// Each conversation's totals are the sums of its stored messages' usage, as its own read gives
/// them and as its export does; the user's total is the sum of the conversations'. Returns the
/// user's total.
fn assert_totals_agree(store: &ChatStore, owner: &UserId) -> Usage {
    let mut user_total = Usage::ZERO;
    for (conversation, messages) in kept(store, owner) {
        let sum: Usage = messages.iter().filter_map(|m| m.usage).sum();
        assert_eq!(conversation.usage, sum, "{:?}", conversation.title);
        let read = store.conversation(owner, conversation.id).unwrap();
        assert_eq!(read.usage, sum, "{:?}", conversation.title);
        user_total = user_total + sum;
    }
    assert_eq!(store.usage(owner).unwrap(), user_total);
    user_total
}

fn used(input: u64, output: u64) -> Usage {
    Usage::new(input, output)
}

fn reply(text: &str, usage: Usage) -> NewMessage<'_> {
    NewMessage::assistant(text).with_usage(usage)
}

/// Usage given on appends of every kind reads back on each message (windows, context windows,
/// searches), and the conversation's and the user's totals add it up; messages without usage
/// count nothing, and a total above input plus output is kept as given.
fn usage_is_kept_on_messages_and_summed_on_conversations_and_users(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, Some("plan")).unwrap();
    assert_eq!(conv.usage, Usage::ZERO);
    let one = store
        .append_message(&alice, conv.id, reply("first", used(100, 20)))
        .unwrap();
    assert_eq!(one.usage, Some(used(100, 20)));
    let batch = store
        .append_messages(
            &alice,
            conv.id,
            &[
                NewMessage::user("no usage here"),
                reply("thinking", used(300, 40).with_total(400)),
            ],
        )
        .unwrap();
    assert_eq!(batch[0].usage, None);
    assert_eq!(batch[1].usage, Some(used(300, 40).with_total(400)));
    let optimistic = store
        .append_if_last_seq(&alice, conv.id, 3, &[reply("again", used(5, 5))])
        .unwrap();
    let sibling = store
        .append_sibling(
            &alice,
            conv.id,
            optimistic[0].id,
            &[reply("other", used(7, 1))],
        )
        .unwrap();
    let expected = used(100, 20) + used(300, 40).with_total(400) + used(5, 5) + used(7, 1);
    assert_eq!(expected.total_tokens, 120 + 400 + 10 + 8);
    assert_eq!(store.conversation(&alice, conv.id).unwrap().usage, expected);

    // Every read of a message gives its usage.
    let path = store
        .messages(&alice, conv.id, Window::All)
        .unwrap()
        .messages;
    let usages: Vec<Option<Usage>> = path.iter().map(|m| m.usage).collect();
    assert_eq!(
        usages,
        [
            Some(used(100, 20)),
            None,
            Some(used(300, 40).with_total(400)),
            Some(used(7, 1))
        ]
    );
    assert_eq!(path[3].id, sibling[0].id);
    let window = store.context_window(&alice, conv.id, 1_000_000).unwrap();
    assert_eq!(window.messages, path);
    store.index_pending().unwrap();
    let found = store
        .search_messages(&alice, &chatstore::SearchQuery::new("thinking"))
        .unwrap();
    assert_eq!(
        found.hits[0].message.usage,
        Some(used(300, 40).with_total(400))
    );

    // A second conversation, archived: the user's total counts both.
    let other = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_message(&alice, other, reply("x", used(1, 2)))
        .unwrap();
    store.archive_conversation(&alice, other).unwrap();
    assert_eq!(assert_totals_agree(&store, &alice), expected + used(1, 2));
    // Listed conversations carry their totals too.
    let listed = store
        .list_conversations(&alice, chatstore::Page::first(10))
        .unwrap();
    assert_eq!(listed.conversations[0].usage, expected);
}

/// A pop, a truncation, a cleared history and a deleted branch or conversation take their
/// messages' usage out of the totals, and only theirs: messages a branch shares stay counted.
fn removals_take_their_messages_usage_out_of_the_totals(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let batch: Vec<NewMessage> = (1..=6u64)
        .map(|i| match i % 3 {
            0 => NewMessage::user("plain"),
            _ => reply("counted", used(i * 10, i)),
        })
        .collect();
    let stored = store.append_messages(&alice, conv, &batch).unwrap();
    assert_totals_agree(&store, &alice);

    store.pop_messages(&alice, conv, 1).unwrap();
    assert_eq!(
        assert_totals_agree(&store, &alice),
        used(10 + 20 + 40 + 50, 1 + 2 + 4 + 5)
    );
    store.truncate_messages(&alice, conv, 4).unwrap();
    assert_eq!(
        assert_totals_agree(&store, &alice),
        used(10 + 20 + 40, 1 + 2 + 4)
    );

    // A branch from message 2: its own messages count, the shared first one once.
    let branch = store
        .append_sibling(&alice, conv, stored[1].id, &[reply("b", used(1000, 1))])
        .unwrap()[0]
        .branch;
    assert_eq!(
        assert_totals_agree(&store, &alice),
        used(10 + 20 + 40 + 1000, 1 + 2 + 4 + 1)
    );
    // Popping on the new branch takes only its message.
    store.pop_messages(&alice, conv, 1).unwrap();
    assert_eq!(
        assert_totals_agree(&store, &alice),
        used(10 + 20 + 40, 1 + 2 + 4)
    );
    store
        .append_message(&alice, conv, reply("b2", used(2000, 2)))
        .unwrap();
    let after = store.delete_branch(&alice, conv, branch).unwrap();
    assert_eq!(after.usage, used(10 + 20 + 40, 1 + 2 + 4));
    assert_totals_agree(&store, &alice);

    assert_eq!(store.clear_messages(&alice, conv).unwrap(), 4);
    assert_eq!(assert_totals_agree(&store, &alice), Usage::ZERO);
    store
        .append_message(&alice, conv, reply("fresh", used(3, 3)))
        .unwrap();
    let other = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_message(&alice, other, reply("kept", used(4, 4)))
        .unwrap();
    store.delete_conversation(&alice, conv).unwrap();
    assert_eq!(assert_totals_agree(&store, &alice), used(4, 4));
    store.delete_user_data(&alice).unwrap();
    assert_eq!(store.usage(&alice).unwrap(), Usage::ZERO);
}

/// A usage whose total is below input plus output, or above the limit, is refused with
/// `InvalidUsage` before anything is written — a whole batch, whatever else it holds — and the
/// error names the numbers.
fn refused_usage_changes_nothing(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_message(&alice, conv, reply("kept", used(1, 1)))
        .unwrap();
    let before = (snapshot(&store, &alice, conv), store.usage(&alice).unwrap());
    let max = Usage::MAX_TOKENS;
    let refused = [
        used(10, 5).with_total(14),
        used(max, 1),
        used(0, 0).with_total(max + 1),
        used(u64::MAX, u64::MAX),
    ];
    for bad in refused {
        let batch = [NewMessage::user("fine"), reply("bad", bad)];
        for result in [
            store.append_messages(&alice, conv, &batch).map(drop),
            store
                .append_message(&alice, conv, reply("bad", bad))
                .map(drop),
            store
                .append_sibling(&alice, conv, before.0 .1[0].id, &batch)
                .map(drop),
        ] {
            let error = result.unwrap_err();
            let Error::InvalidUsage {
                input_tokens,
                output_tokens,
                total_tokens,
                max: limit,
            } = error
            else {
                panic!("{error:?}")
            };
            assert_eq!(
                (input_tokens, output_tokens, total_tokens, limit),
                (bad.input_tokens, bad.output_tokens, bad.total_tokens, max)
            );
            assert!(error.is_invalid_input());
            assert!(error.to_string().contains(&bad.total_tokens.to_string()));
        }
        // Refused before ownership is looked at, as other bad input is.
        let nobody = ConversationId::from(uuid::Uuid::now_v7());
        let result = store.append_message(&alice, nobody, reply("bad", bad));
        assert!(
            matches!(result, Err(Error::InvalidUsage { .. })),
            "{result:?}"
        );
    }
    assert_eq!(
        (snapshot(&store, &alice, conv), store.usage(&alice).unwrap()),
        before
    );
}

/// The largest usage a message may carry reads back exactly, and the totals of many such sum
/// past what one message may hold.
fn the_largest_usage_reads_back(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let max = Usage::MAX_TOKENS;
    let largest = [
        used(max, 0),
        used(0, max),
        used(max / 2, max - max / 2),
        used(0, 0).with_total(max),
        used(0, 0),
    ];
    let batch: Vec<NewMessage> = largest.iter().map(|&u| reply("big", u)).collect();
    let stored = store.append_messages(&alice, conv, &batch).unwrap();
    let read = store.messages(&alice, conv, Window::All).unwrap().messages;
    assert_eq!(read, stored);
    let usages: Vec<Usage> = read.iter().map(|m| m.usage.unwrap()).collect();
    assert_eq!(usages, largest);
    let total: Usage = largest.iter().sum();
    assert_eq!(total.total_tokens, 4 * max);
    assert_eq!(assert_totals_agree(&store, &alice), total);
}

/// A batch with client ids sent again is a retry: its usage is counted once. The same ids with
/// another usage are another batch, refused.
fn retried_appends_count_their_usage_once(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    let id = chatstore::MessageId::from(uuid::Uuid::now_v7());
    let sent = [reply("once", used(50, 5)).with_id(id)];
    let first = store.append_messages(&alice, conv, &sent).unwrap();
    let again = store.append_messages(&alice, conv, &sent).unwrap();
    assert_eq!(again, first);
    assert_eq!(assert_totals_agree(&store, &alice), used(50, 5));
    let other = [reply("once", used(51, 5)).with_id(id)];
    let result = store.append_messages(&alice, conv, &other);
    assert!(
        matches!(result, Err(Error::DuplicateId(d)) if d == id),
        "{result:?}"
    );
    assert_eq!(assert_totals_agree(&store, &alice), used(50, 5));
}

/// A fork counts the usage of what it copies; an export carries every message's usage and each
/// conversation's totals, and imports back exactly; an import whose totals are not its messages'
/// sum is refused, and writes nothing.
fn forks_exports_and_imports_carry_usage(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, Some("src")).unwrap().id;
    let stored = store
        .append_messages(
            &alice,
            conv,
            &[
                reply("a", used(10, 1)),
                NewMessage::user("b"),
                reply("c", used(20, 2)),
            ],
        )
        .unwrap();
    store
        .append_sibling(&alice, conv, stored[2].id, &[reply("c2", used(30, 3))])
        .unwrap();
    let fork = store.fork_conversation(&alice, conv, stored[1].id).unwrap();
    assert_eq!(fork.usage, used(10, 1));
    assert_eq!(store.conversation(&alice, fork.id).unwrap(), fork);
    let total = assert_totals_agree(&store, &alice);
    assert_eq!(total, used(10 + 20 + 30 + 10, 1 + 2 + 3 + 1));

    // Export, import elsewhere, export again: the same records.
    let records: Vec<ExportItem> = store.export_user(&alice).map(Result::unwrap).collect();
    let copy_db = TestDb::new(db.kind);
    let copy = copy_db.open();
    for r in by_conversation(&records) {
        copy.import_tree(&alice, &r.conversation, &r.branches, &r.messages)
            .unwrap();
    }
    let again: Vec<ExportItem> = copy.export_user(&alice).map(Result::unwrap).collect();
    assert_eq!(again, records);
    assert_eq!(copy.usage(&alice).unwrap(), total);

    // Totals that are not the messages' sum are refused.
    let bob = user("bob");
    // The fork: a conversation without branches, as `import_conversation` takes.
    let (conversation, messages) = kept(&store, &alice)
        .into_iter()
        .find(|(c, _)| c.id == fork.id)
        .unwrap();
    let mut mine = conversation.clone();
    mine.user_id = bob.clone();
    for wrong in [
        Usage::ZERO,
        mine.usage + used(1, 0),
        used(0, 0).with_total(1),
    ] {
        mine.usage = wrong;
        if wrong == conversation.usage {
            continue;
        }
        let result = copy.import_conversation(&bob, &mine, &messages);
        assert!(
            matches!(&result, Err(Error::InvalidImport(why)) if why.contains("usage")),
            "{result:?}"
        );
    }
    // And a message whose usage is not one an append takes.
    let mut bad = messages.clone();
    let first = bad.iter_mut().find(|m| m.usage.is_some()).unwrap();
    first.usage = Some(used(5, 5).with_total(1));
    mine.usage = bad.iter().filter_map(|m| m.usage).sum();
    let result = copy.import_conversation(&bob, &mine, &bad);
    assert!(
        matches!(result, Err(Error::InvalidUsage { .. })),
        "{result:?}"
    );
    assert_eq!(copy.usage(&bob).unwrap(), Usage::ZERO);
    assert!(copy
        .list_conversations(&bob, chatstore::Page::first(5))
        .unwrap()
        .conversations
        .is_empty());
}

/// A conversation's records in an export: the conversation, its branches, its messages.
struct Records {
    conversation: Conversation,
    branches: Vec<chatstore::Branch>,
    messages: Vec<Message>,
}

/// Each conversation's records, from an export's.
fn by_conversation(records: &[ExportItem]) -> Vec<Records> {
    let mut out: Vec<Records> = Vec::new();
    for record in records {
        match record {
            ExportItem::Conversation(c) => out.push(Records {
                conversation: c.clone(),
                branches: Vec::new(),
                messages: Vec::new(),
            }),
            ExportItem::Branch(b) => out.last_mut().unwrap().branches.push(b.clone()),
            ExportItem::Message(m) => out.last_mut().unwrap().messages.push(m.clone()),
            other => panic!("{other:?}"),
        }
    }
    out
}

/// Another user's conversation: appending with usage to it is `NotFound`, and neither user's
/// totals move; each user's total is theirs alone.
fn someone_elses_usage_is_neither_read_nor_changed(db: &TestDb) {
    let store = db.open();
    let (alice, bob) = (user("alice"), user("bob"));
    let conv = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_message(&alice, conv, reply("mine", used(9, 9)))
        .unwrap();
    let result = store.append_message(&bob, conv, reply("theirs", used(1, 1)));
    assert!(matches!(result, Err(Error::NotFound)), "{result:?}");
    assert!(matches!(
        store.conversation(&bob, conv),
        Err(Error::NotFound)
    ));
    assert_eq!(store.usage(&bob).unwrap(), Usage::ZERO);
    assert_eq!(store.usage(&alice).unwrap(), used(9, 9));
    let bobs = store.create_conversation(&bob, None).unwrap().id;
    store
        .append_message(&bob, bobs, reply("own", used(2, 2)))
        .unwrap();
    assert_eq!(store.usage(&bob).unwrap(), used(2, 2));
    assert_eq!(store.usage(&alice).unwrap(), used(9, 9));
}

/// A database migrated before usage: its conversations and messages read back as they were, with
/// no usage, and count from the first message that carries some.
fn a_database_from_before_usage_upgrades_in_place(db: &TestDb) {
    let (store, alice, conv, old) = super::stored_before(db, 2);
    assert_eq!(
        store.migrations_applied_at_open(),
        ["20261204000011", "20261204000012"]
    );
    assert_eq!(
        store.messages(&alice, conv, Window::All).unwrap().messages,
        old
    );
    assert_eq!(store.conversation(&alice, conv).unwrap().usage, Usage::ZERO);
    store
        .append_message(&alice, conv, reply("new", used(12, 3)))
        .unwrap();
    assert_eq!(assert_totals_agree(&store, &alice), used(12, 3));
}
