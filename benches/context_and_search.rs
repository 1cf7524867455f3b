//! Building a prompt and finding a chat, chatstore against the hand-written floor, on every backend:
//! W10 the context window of an 8,000-character budget on a 10,000- and a 100,000-message history
//! (its cost must not grow with the history), W11 a search for a word in 100 of a user's 100,000
//! messages, W12 one that is in all of them (the worst case: every message matches), each with the
//! index caught up; W13 the catch-up itself: `index_pending` after 10,000 appended messages (what a
//! search pays first after such a burst). Histories are seeded once, before any timing.

mod support;

use chatstore::{ContextWindow, NewMessage, SearchQuery};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use support::{owner, FloorMessage, Target, CONTENT};

/// The W10 budget: about 30 messages of the bench content.
const BUDGET: u64 = 8_000;

/// The floor's context window: the system messages (from the partial index), then pages from the
/// newest backwards — the first of 64, each next one twice as large — until a message does not fit.
/// The bench messages carry no tool calls, so there is no boundary to mend.
fn floor_context(target: &mut Target, conv: chatstore::ConversationId) -> Vec<FloorMessage> {
    let user = owner();
    let mut page = target.floor.latest(&user, conv, 64);
    let total = page.last().map_or(0, |m| m.seq);
    let system = target.floor.system(&user, conv, total);
    let mut spent: u64 = system
        .iter()
        .map(|m| m.content.chars().count() as u64)
        .sum();
    let mut chosen: Vec<FloorMessage> = Vec::new();
    let mut limit = 64;
    'pages: loop {
        let oldest = page.first().map_or(1, |m| m.seq);
        for message in page.into_iter().rev() {
            let cost = message.content.chars().count() as u64;
            if spent + cost > BUDGET {
                break 'pages;
            }
            spent += cost;
            chosen.push(message);
        }
        if oldest <= 1 {
            break;
        }
        limit = (limit * 2).min(1024);
        page = target.floor.before(&user, conv, oldest, limit);
    }
    chosen.reverse();
    system.into_iter().chain(chosen).collect()
}

fn context_and_search(c: &mut Criterion) {
    let user = owner();
    for mut target in Target::all() {
        // W10: a system message first, then the history.
        let histories: Vec<_> = [10_000, 100_000]
            .into_iter()
            .map(|n| {
                let conv = target
                    .store
                    .create_conversation(&user, None)
                    .expect("create")
                    .id;
                let system = NewMessage::system("You are a helpful assistant.");
                target
                    .store
                    .append_message(&user, conv, system)
                    .expect("seed");
                let messages = support::batch(1000);
                for start in (0..n).step_by(1000) {
                    let len = (n - start).min(1000);
                    let batch = &messages[..len];
                    target
                        .store
                        .append_messages(&user, conv, batch)
                        .expect("seed");
                }
                (n, conv)
            })
            .collect();
        target.analyze();
        let mut group = c.benchmark_group(format!("{}/context-8k", target.name));
        for (size, conv) in histories {
            let ours: ContextWindow = target
                .store
                .context_window(&user, conv, BUDGET)
                .expect("window");
            let floor = floor_context(&mut target, conv);
            support::assert_same(&ours.messages, &floor, floor.len());
            assert!(
                ours.messages.len() > 20,
                "a window of {} messages",
                ours.messages.len()
            );
            group.bench_function(BenchmarkId::new("chatstore", size), |b| {
                b.iter(|| {
                    target
                        .store
                        .context_window(&user, conv, BUDGET)
                        .expect("window")
                })
            });
            group.bench_function(BenchmarkId::new("floor", size), |b| {
                b.iter(|| floor_context(&mut target, conv))
            });
        }
        group.finish();

        // W11, W12: a searcher with 100,000 messages in 100 conversations, among other users'.
        let searcher = chatstore::UserId::new("searcher").expect("user");
        let texts: Vec<String> = (0..1000)
            .map(|i| format!("{CONTENT} topic{}", i % 1000))
            .collect();
        let messages: Vec<NewMessage> = texts.iter().map(NewMessage::user).collect();
        for _ in 0..100 {
            let conv = target
                .store
                .create_conversation(&searcher, Some("notes"))
                .expect("create")
                .id;
            target
                .store
                .append_messages(&searcher, conv, &messages)
                .expect("seed");
        }
        // Appends leave the index to catch up: done here, untimed (W13 times it).
        target.store.index_pending().expect("index");
        target.analyze();
        for (workload, word, hits) in [
            ("search-rare", "topic7", 20),
            ("search-common", "groceries", 20),
        ] {
            let mut group = c.benchmark_group(format!("{}/{workload}", target.name));
            let query = SearchQuery::new(word).limit(20);
            let ours = target
                .store
                .search_messages(&searcher, &query)
                .expect("search");
            let floor: Vec<FloorMessage> = target
                .floor
                .search(&searcher, word, 20)
                .into_iter()
                .map(|(m, _)| m)
                .collect();
            let found: Vec<_> = ours.hits.iter().map(|h| h.message.clone()).collect();
            support::assert_same(&found, &floor, hits);
            group.bench_function(BenchmarkId::new("chatstore", 100_000), |b| {
                b.iter(|| {
                    target
                        .store
                        .search_messages(&searcher, &query)
                        .expect("search")
                })
            });
            group.bench_function(BenchmarkId::new("floor", 100_000), |b| {
                b.iter(|| target.floor.search(&searcher, word, 20))
            });
            group.finish();
        }

        // W13: indexing 10,000 messages that wait for the index (10 appends of 1,000), the
        // work a search does first after such a burst of appends. No floor: the store's
        // index statements are the hand-written ones.
        let mut group = c.benchmark_group(format!("{}/index-catch-up", target.name));
        group.sample_size(10);
        let burst = support::batch(1000);
        group.bench_function(BenchmarkId::new("chatstore", 10_000), |b| {
            b.iter_batched(
                || {
                    let conv = target
                        .store
                        .create_conversation(&owner(), None)
                        .expect("create")
                        .id;
                    for _ in 0..10 {
                        target
                            .store
                            .append_messages(&owner(), conv, &burst)
                            .expect("append");
                    }
                },
                |()| target.store.index_pending().expect("index"),
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
}

criterion_group!(benches, context_and_search);
criterion_main!(benches);
