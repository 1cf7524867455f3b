//! History reads on long conversations, chatstore against the hand-written floors (same schema,
//! and minimal), on every backend: W3/W4 the whole history of 1,000 and 10,000 messages, W5/W6 the newest 50 of 10,000 and
//! 100,000, W8 a walk back through 10,000 in pages of 100, W14 the newest 50 of a branch deep in a
//! tree of 100 forks. The histories are seeded once, before any timing.

mod support;

use chatstore::Window;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use support::{owner, Target};

fn reads(c: &mut Criterion) {
    let user = owner();
    for mut target in Target::all() {
        // Each history twice: the store's (which the same-schema floor reads too) and the
        // minimal floor's, the same messages.
        let histories: Vec<_> = [1_000, 10_000, 100_000]
            .into_iter()
            .map(|n| {
                let ours = target.seeded_conversation(n);
                (n, ours, target.minimal_conversation(n))
            })
            .collect();
        target.analyze();
        let seeded = |size: usize| {
            let &(_, ours, minimal) = histories
                .iter()
                .find(|(n, _, _)| *n == size)
                .expect("seeded");
            (ours, minimal)
        };

        // W3, W4: the whole history, chronological.
        let mut group = c.benchmark_group(format!("{}/load-all", target.name));
        group.sample_size(20);
        for size in [1_000, 10_000] {
            let (conv, minimal) = seeded(size);
            let ours = target
                .store
                .messages(&user, conv, Window::All)
                .expect("load");
            let floor = target.floor.load_all(&user, conv);
            support::assert_same(&ours.messages, &floor, size);
            let floor = target.minimal.load_all(minimal);
            support::assert_same_minimal(&ours.messages, &floor, size);
            group.throughput(Throughput::Elements(size as u64));
            group.bench_function(BenchmarkId::new("chatstore", size), |b| {
                b.iter(|| {
                    target
                        .store
                        .messages(&user, conv, Window::All)
                        .expect("load")
                })
            });
            group.bench_function(BenchmarkId::new("floor", size), |b| {
                b.iter(|| target.floor.load_all(&user, conv))
            });
            group.bench_function(BenchmarkId::new("minimal", size), |b| {
                b.iter(|| target.minimal.load_all(minimal))
            });
        }
        group.finish();

        // W5, W6: the newest 50, chronological; the same cost whatever the history's length.
        let mut group = c.benchmark_group(format!("{}/tail-50", target.name));
        for size in [10_000, 100_000] {
            let (conv, minimal) = seeded(size);
            let ours = target
                .store
                .messages(&user, conv, Window::Latest(50))
                .expect("tail");
            let floor = target.floor.latest(&user, conv, 50);
            support::assert_same(&ours.messages, &floor, 50);
            let floor = target.minimal.latest(minimal, 50);
            support::assert_same_minimal(&ours.messages, &floor, 50);
            group.bench_function(BenchmarkId::new("chatstore", size), |b| {
                b.iter(|| {
                    target
                        .store
                        .messages(&user, conv, Window::Latest(50))
                        .expect("tail")
                })
            });
            group.bench_function(BenchmarkId::new("floor", size), |b| {
                b.iter(|| target.floor.latest(&user, conv, 50))
            });
            group.bench_function(BenchmarkId::new("minimal", size), |b| {
                b.iter(|| target.minimal.latest(minimal, 50))
            });
        }
        group.finish();

        // W14: the newest 50 of the active branch of a conversation with 100 forks (issue 16),
        // against the same read of a straight history of about as many messages. Each of the
        // 100 branches forks from the one before it, 10 messages before that one's end, so the
        // active path has 99,000 messages of the root and 10 or 11 of each branch after it, and
        // its newest 50 cross five fork points: the read's worst case short of a fork per message.
        let mut group = c.benchmark_group(format!("{}/branched-tail-50", target.name));
        let (straight, _) = seeded(100_000);
        let branched = target.seeded_conversation(99_000);
        let mut last = target
            .store
            .messages(&user, branched, Window::Latest(1))
            .expect("tail")
            .messages;
        for _ in 0..100 {
            let stored = target
                .store
                .append_sibling(&user, branched, last[0].id, &support::batch(11))
                .expect("fork");
            last = vec![stored[10].clone()];
        }
        target.analyze();
        let read = target
            .store
            .messages(&user, branched, Window::Latest(50))
            .expect("tail");
        assert_eq!(read.total, 100_000);
        let seqs: Vec<i64> = read.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (99_951..=100_000).collect::<Vec<i64>>());
        let branches: std::collections::BTreeSet<_> =
            read.messages.iter().map(|m| m.branch).collect();
        assert_eq!(branches.len(), 5, "the window crosses four fork points");
        group.bench_function(BenchmarkId::new("chatstore-straight", 100_000), |b| {
            b.iter(|| {
                target
                    .store
                    .messages(&user, straight, Window::Latest(50))
                    .expect("tail")
            })
        });
        group.bench_function(BenchmarkId::new("chatstore-branched", 100_000), |b| {
            b.iter(|| {
                target
                    .store
                    .messages(&user, branched, Window::Latest(50))
                    .expect("tail")
            })
        });
        group.bench_function(BenchmarkId::new("floor-straight", 100_000), |b| {
            b.iter(|| target.floor.latest(&user, straight, 50))
        });
        group.finish();

        // W8: from the newest page back to the first, 100 at a time, with before-cursors.
        let mut group = c.benchmark_group(format!("{}/page-walk", target.name));
        group
            .sample_size(20)
            .throughput(Throughput::Elements(10_000));
        let (conv, minimal) = seeded(10_000);
        group.bench_function(BenchmarkId::new("chatstore", 10_000), |b| {
            b.iter(|| {
                let mut read = 0;
                let mut window = Some(Window::Latest(100));
                while let Some(w) = window {
                    let page = target.store.messages(&user, conv, w).expect("page");
                    read += page.messages.len();
                    window = page.older;
                }
                assert_eq!(read, 10_000);
            })
        });
        group.bench_function(BenchmarkId::new("floor", 10_000), |b| {
            b.iter(|| {
                let mut read = 0;
                let mut page = target.floor.latest(&user, conv, 100);
                while let Some(first) = page.first().map(|m| m.seq) {
                    read += page.len();
                    page = target.floor.before(&user, conv, first, 100);
                }
                assert_eq!(read, 10_000);
            })
        });
        // Keyset on the message id.
        group.bench_function(BenchmarkId::new("minimal", 10_000), |b| {
            b.iter(|| {
                let mut read = 0;
                let mut page = target.minimal.latest(minimal, 100);
                while let Some(first) = page.first().map(|m| m.id) {
                    read += page.len();
                    page = target.minimal.before(minimal, first, 100);
                }
                assert_eq!(read, 10_000);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, reads);
criterion_main!(benches);
