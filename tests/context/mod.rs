//! `context_window`: the newest messages that fit a budget, system messages pinned, cut where a
//! provider accepts the prompt. Checked against a brute-force reading of the whole history.

use chatstore::{
    char_cost, ContextOptions, ConversationId, Error, Message, NewMessage, Role, UserId, Window,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use crate::support::{backend_tests, seqs, user, TestDb};

backend_tests! {
    every: [
        an_empty_conversation_gives_an_empty_window,
        the_newest_messages_that_fit_come_oldest_first,
        a_budget_below_the_newest_message_gives_only_the_system_messages,
        system_messages_are_pinned_however_old,
        developer_messages_are_stored_as_such_and_pinned_like_system_ones,
        a_cut_between_a_call_and_its_results_drops_the_results,
        a_cost_function_of_your_own_decides,
        another_users_conversation_is_not_found,
        random_histories_match_a_brute_force_window,
    ],
    persistent: [],
}

fn call(ids: &[&str]) -> Value {
    json!({ "tool_calls": ids.iter().map(|id| json!({"id": id, "type": "function"})).collect::<Vec<_>>() })
}

fn result(id: &str) -> Value {
    json!({ "tool_call_id": id })
}

fn an_empty_conversation_gives_an_empty_window(db: &TestDb) {
    let store = db.open();
    let conv = store.create_conversation(&user("alice"), None).unwrap().id;
    for budget in [0, 1, u64::MAX] {
        let window = store.context_window(&user("alice"), conv, budget).unwrap();
        assert!(window.messages.is_empty());
        assert_eq!((window.cost, window.omitted), (0, 0));
    }
}

fn the_newest_messages_that_fit_come_oldest_first(db: &TestDb) {
    let store = db.open();
    let conv = store.create_conversation(&user("alice"), None).unwrap().id;
    // 300 messages of 1 to 30 characters (more than one page of the read).
    let texts: Vec<String> = (1..=300).map(|i| "x".repeat(1 + i % 30)).collect();
    let batch: Vec<NewMessage> = texts.iter().map(NewMessage::user).collect();
    store.append_messages(&user("alice"), conv, &batch).unwrap();
    for budget in [0, 1, 30, 31, 100, 1000, 2000, 4650, 10_000] {
        let window = store.context_window(&user("alice"), conv, budget).unwrap();
        // The longest run of newest messages whose lengths add up to at most the budget.
        let mut fit = 0;
        let mut spent = 0;
        for text in texts.iter().rev() {
            if spent + text.len() as u64 > budget {
                break;
            }
            spent += text.len() as u64;
            fit += 1;
        }
        assert_eq!(
            seqs(&window.messages),
            (301 - fit..=300).collect::<Vec<i64>>(),
            "{budget}"
        );
        assert_eq!(
            (window.cost, window.omitted),
            (spent, 300 - fit),
            "{budget}"
        );
    }
}

fn a_budget_below_the_newest_message_gives_only_the_system_messages(db: &TestDb) {
    let store = db.open();
    let conv = store.create_conversation(&user("alice"), None).unwrap().id;
    store
        .append_messages(
            &user("alice"),
            conv,
            &[NewMessage::user("short"), NewMessage::user("much longer")],
        )
        .unwrap();
    let window = store.context_window(&user("alice"), conv, 10).unwrap();
    assert!(
        window.messages.is_empty(),
        "the newest does not fit, so nothing older may"
    );
    assert_eq!((window.cost, window.omitted), (0, 2));
    store
        .append_message(&user("alice"), conv, NewMessage::system("be brief"))
        .unwrap();
    store
        .append_message(
            &user("alice"),
            conv,
            NewMessage::user("a very long question"),
        )
        .unwrap();
    let window = store.context_window(&user("alice"), conv, 10).unwrap();
    assert_eq!(seqs(&window.messages), [3]);
    assert_eq!((window.cost, window.omitted), (8, 3));
}

fn system_messages_are_pinned_however_old(db: &TestDb) {
    let store = db.open();
    let conv = store.create_conversation(&user("alice"), None).unwrap().id;
    store
        .append_message(&user("alice"), conv, NewMessage::system("rules"))
        .unwrap();
    let filler: Vec<String> = (0..2000).map(|i| format!("{i:04}")).collect();
    let batch: Vec<NewMessage> = filler.iter().map(NewMessage::user).collect();
    store.append_messages(&user("alice"), conv, &batch).unwrap();
    store
        .append_message(&user("alice"), conv, NewMessage::system("late rule"))
        .unwrap();
    store
        .append_message(&user("alice"), conv, NewMessage::user("last"))
        .unwrap();

    let window = store
        .context_window(&user("alice"), conv, 5 + 9 + 4 + 4 * 3)
        .unwrap();
    // Both system messages first, in order, each once; then the newest that fit.
    assert_eq!(seqs(&window.messages), [1, 2002, 1999, 2000, 2001, 2003]);
    assert_eq!(window.cost, 5 + 9 + 4 + 12);
    assert_eq!(window.omitted, 2003 - 6);

    let unpinned = ContextOptions::default().pin_system(false);
    let window = store
        .context_window_with(&user("alice"), conv, 4 + 9 + 4, unpinned, char_cost)
        .unwrap();
    assert_eq!(seqs(&window.messages), [2001, 2002, 2003]);

    // The system messages alone are over the budget.
    match store.context_window(&user("alice"), conv, 13) {
        Err(Error::BudgetTooSmall { needed, budget }) => assert_eq!((needed, budget), (14, 13)),
        other => panic!("{other:?}"),
    }
}

fn a_cut_between_a_call_and_its_results_drops_the_results(db: &TestDb) {
    let store = db.open();
    let conv = store.create_conversation(&user("alice"), None).unwrap().id;
    let (calls, r1, r2) = (call(&["c1", "c2"]), result("c1"), result("c2"));
    let history = [
        NewMessage::user("add milk and eggs"),
        NewMessage::assistant("").with_metadata(&calls),
        NewMessage::tool("milk added").with_metadata(&r1),
        NewMessage::tool("eggs added").with_metadata(&r2),
        NewMessage::assistant("Both are on the list."),
    ];
    let stored = store
        .append_messages(&user("alice"), conv, &history)
        .unwrap();
    let cost: Vec<u64> = stored.iter().map(char_cost).collect();
    let suffix = |from: usize| cost[from..].iter().sum::<u64>();
    // The budget reaches back to each message in turn.
    let cases = [
        (suffix(4), vec![5]),
        // Into the results but not the call: the results go too.
        (suffix(3), vec![5]),
        (suffix(2), vec![5]),
        (suffix(1) - 1, vec![5]),
        // The call fits: it comes with both results.
        (suffix(1), vec![2, 3, 4, 5]),
        (suffix(0), vec![1, 2, 3, 4, 5]),
    ];
    for (budget, expected) in cases {
        let window = store.context_window(&user("alice"), conv, budget).unwrap();
        assert_eq!(seqs(&window.messages), expected, "budget {budget}");
        assert!(window.cost <= budget);
    }
    // A result that names no call cannot open a window either.
    let conv = store.create_conversation(&user("alice"), None).unwrap().id;
    store
        .append_messages(
            &user("alice"),
            conv,
            &[
                NewMessage::assistant("calling"),
                NewMessage::tool("42"),
                NewMessage::user("thanks"),
            ],
        )
        .unwrap();
    let window = store.context_window(&user("alice"), conv, 8).unwrap();
    assert_eq!(seqs(&window.messages), [3]);
}

fn a_cost_function_of_your_own_decides(db: &TestDb) {
    let store = db.open();
    let conv = store.create_conversation(&user("alice"), None).unwrap().id;
    let texts: Vec<String> = (0..50).map(|i| "word ".repeat(i % 7)).collect();
    let batch: Vec<NewMessage> = texts.iter().map(NewMessage::assistant).collect();
    store.append_messages(&user("alice"), conv, &batch).unwrap();
    let mut calls = 0;
    // One "token" per message: the budget is a message count.
    let one = |_: &Message| {
        calls += 1;
        1
    };
    let window = store
        .context_window_with(&user("alice"), conv, 20, ContextOptions::default(), one)
        .unwrap();
    assert_eq!(seqs(&window.messages), (31..=50).collect::<Vec<i64>>());
    assert_eq!(window.cost, 20);
    assert_eq!(calls, 21, "each message considered is costed once");
}

fn another_users_conversation_is_not_found(db: &TestDb) {
    let store = db.open();
    let conv = store.create_conversation(&user("alice"), None).unwrap().id;
    store
        .append_message(&user("alice"), conv, NewMessage::system("secret rules"))
        .unwrap();
    let mallory = UserId::new("mallory").unwrap();
    assert!(matches!(
        store.context_window(&mallory, conv, 1000),
        Err(Error::NotFound)
    ));
    // Not even the size of the system messages leaks through the budget check.
    assert!(matches!(
        store.context_window(&mallory, conv, 0),
        Err(Error::NotFound)
    ));
    let missing = ConversationId::from(uuid::Uuid::now_v7());
    assert!(matches!(
        store.context_window(&user("alice"), missing, 1000),
        Err(Error::NotFound)
    ));
}

/// The window by brute force from the whole history, following the documented rules literally:
/// pinned system messages, the longest newest run that fits, then the first start that leaves no
/// tool result without its call before it in the window, and no tool result first.
fn brute_force(all: &[Message], budget: u64, pin: bool) -> Option<Vec<i64>> {
    let pinned: Vec<&Message> = all
        .iter()
        .filter(|m| pin && m.role == Role::System)
        .collect();
    let mut spent: u64 = pinned.iter().map(|m| char_cost(m)).sum();
    if spent > budget {
        return None;
    }
    let rest: Vec<&Message> = all
        .iter()
        .filter(|m| !(pin && m.role == Role::System))
        .collect();
    let mut start = rest.len();
    while start > 0 && spent + char_cost(rest[start - 1]) <= budget {
        start -= 1;
        spent += char_cost(rest[start]);
    }
    // A result is answered by a call with its id before it in the window (ids may repeat).
    let calls_of = |m: &Message| -> Vec<String> {
        let calls = m
            .metadata
            .as_ref()
            .and_then(|v| v["tool_calls"].as_array().cloned());
        calls
            .unwrap_or_default()
            .iter()
            .filter_map(|c| c["id"].as_str().map(str::to_owned))
            .collect()
    };
    let ok = |window: &[&Message]| {
        window.first().is_none_or(|m| m.role != Role::Tool)
            && window.iter().enumerate().all(|(i, m)| {
                let answers = m.metadata.as_ref().and_then(|v| v["tool_call_id"].as_str());
                m.role != Role::Tool
                    || answers.is_none_or(|id| {
                        window[..i].iter().any(|c| {
                            c.role == Role::Assistant && calls_of(c).iter().any(|d| d == id)
                        })
                    })
            })
    };
    while !ok(&rest[start..]) {
        start += 1;
    }
    Some(pinned.iter().chain(&rest[start..]).map(|m| m.seq).collect())
}

fn random_histories_match_a_brute_force_window(db: &TestDb) {
    let store = db.open();
    // A message: role 0-3, a length, and for tool traffic which of three call ids it uses.
    let message = (0..4u8, 0..40usize, 0..3u8);
    let input = (
        prop::collection::vec(message, 0..80),
        0..600u64,
        any::<bool>(),
    );
    let config = Config {
        cases: if crate::hardening::slow() { 1000 } else { 48 },
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new(config)
        .run(&input, |(history, budget, pin)| {
            let conv = store.create_conversation(&user("alice"), None).unwrap().id;
            let metadata: Vec<Option<Value>> = history
                .iter()
                .map(|&(role, _, id)| match role {
                    2 if id > 0 => Some(call(&[&format!("c{id}")])),
                    3 if id > 0 => Some(result(&format!("c{id}"))),
                    _ => None,
                })
                .collect();
            let texts: Vec<String> = history.iter().map(|&(_, len, _)| "é".repeat(len)).collect();
            let batch: Vec<NewMessage> = history
                .iter()
                .zip(&texts)
                .zip(&metadata)
                .map(|((&(role, _, _), text), meta)| {
                    let role =
                        [Role::System, Role::User, Role::Assistant, Role::Tool][role as usize];
                    let m = NewMessage::new(role, text);
                    match meta {
                        Some(meta) => m.with_metadata(meta),
                        None => m,
                    }
                })
                .collect();
            store.append_messages(&user("alice"), conv, &batch).unwrap();
            let all = store
                .messages(&user("alice"), conv, Window::All)
                .unwrap()
                .messages;
            let options = ContextOptions::default().pin_system(pin);
            let got = store.context_window_with(&user("alice"), conv, budget, options, char_cost);
            match (brute_force(&all, budget, pin), got) {
                (None, Err(Error::BudgetTooSmall { .. })) => {}
                (Some(expected), Ok(window)) => {
                    assert_eq!(seqs(&window.messages), expected);
                    let cost: u64 = window.messages.iter().map(char_cost).sum();
                    assert_eq!(window.cost, cost);
                    assert!(cost <= budget);
                    assert_eq!(window.omitted, all.len() as i64 - expected.len() as i64);
                }
                (expected, got) => panic!("expected {expected:?}, got {got:?}"),
            }
            Ok(())
        })
        .unwrap();
}

/// OpenAI's `developer` role is stored as itself and read back as `Role::Developer`, and a
/// context window pins it as it pins `system`, in seq order with the system messages.
fn developer_messages_are_stored_as_such_and_pinned_like_system_ones(db: &TestDb) {
    let store = db.open();
    let alice = user("alice");
    let conv = store.create_conversation(&alice, None).unwrap().id;
    store
        .append_messages(
            &alice,
            conv,
            &[
                NewMessage::system("rules"),
                NewMessage::developer("be brief"),
                NewMessage::user("a long question nobody will see again"),
                NewMessage::user("hi"),
            ],
        )
        .unwrap();
    let stored = store.messages(&alice, conv, Window::All).unwrap().messages;
    assert_eq!(stored[1].role, Role::Developer);
    assert_eq!(stored[1].role.as_str(), "developer");

    let window = store.context_window(&alice, conv, 5 + 8 + 2).unwrap();
    assert_eq!(seqs(&window.messages), [1, 2, 4]);
    assert_eq!(window.omitted, 1);
    let unpinned = ContextOptions::default().pin_system(false);
    let window = store
        .context_window_with(&alice, conv, 2, unpinned, char_cost)
        .unwrap();
    assert_eq!(seqs(&window.messages), [4]);
    // Pinned instructions alone over the budget: refused, as for system messages.
    assert!(matches!(
        store.context_window(&alice, conv, 5 + 7),
        Err(Error::BudgetTooSmall { needed: 13, .. })
    ));
}
