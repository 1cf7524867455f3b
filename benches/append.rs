//! Writes: W1 single-message appends, W9 the same with client ids (retry-safe), and W2 a
//! 1,000-message batch, chatstore against the hand-written floors (the same-schema floor, and the
//! minimal one but for W9: the minimal schema has no client ids), on every backend. W1 also runs
//! with SQLite's `synchronous = NORMAL` and with PostgreSQL's `synchronous_commit = off`, to price
//! the durability setting.

mod support;

use chatstore::{MessageId, NewMessage};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use support::{batch, owner, Target, CONTENT};

/// W1: one message per call, each its own transaction, onto one conversation that grows as the
/// bench runs (an append's cost does not depend on the history length). W9, with `client_ids`: the
/// same made safe to retry, each message carrying a new client id that the append first looks up
/// (the price of exactly-once appends when nothing is being retried).
fn append_one(c: &mut Criterion, target: &mut Target, durability: &str, client_ids: bool) {
    let user = owner();
    let workload = if client_ids {
        "append-1-with-id"
    } else {
        "append-1"
    };
    let mut group = c.benchmark_group(format!("{}/{workload}", target.name));
    group.throughput(Throughput::Elements(1));
    let message = || match client_ids {
        true => NewMessage::user(CONTENT).with_id(MessageId::from(uuid::Uuid::now_v7())),
        false => NewMessage::user(CONTENT),
    };
    let fresh = |target: &mut Target| {
        let conv = target
            .store
            .create_conversation(&user, None)
            .expect("create");
        target.checkpoint();
        conv.id
    };
    let conv = fresh(target);
    group.bench_function(BenchmarkId::new("chatstore", durability), |b| {
        b.iter(|| {
            target
                .store
                .append_message(&user, conv, message())
                .expect("append")
        })
    });
    let conv = fresh(target);
    group.bench_function(BenchmarkId::new("floor", durability), |b| {
        b.iter(|| {
            target
                .floor
                .append_with(&user, conv, &[message()], client_ids)
        })
    });
    if !client_ids {
        let conv = target.minimal.create(user.as_str());
        target.checkpoint();
        group.bench_function(BenchmarkId::new("minimal", durability), |b| {
            b.iter(|| target.minimal.append(user.as_str(), conv, &[message()]))
        });
    }
    group.finish();
}

/// W2: 1,000 messages in one call, into a fresh conversation each time.
fn append_batch(c: &mut Criterion, target: &mut Target) {
    let user = owner();
    let messages = batch(1000);
    let mut group = c.benchmark_group(format!("{}/append-batch", target.name));
    group.throughput(Throughput::Elements(1000)).sample_size(20);
    let store = target.store.clone();
    let fresh = || store.create_conversation(&user, None).expect("create").id;
    target.checkpoint();
    group.bench_function(BenchmarkId::new("chatstore", 1000), |b| {
        b.iter_batched(
            fresh,
            |conv| {
                target
                    .store
                    .append_messages(&user, conv, &messages)
                    .expect("append")
            },
            BatchSize::PerIteration,
        )
    });
    target.checkpoint();
    group.bench_function(BenchmarkId::new("floor", 1000), |b| {
        b.iter_batched(
            fresh,
            |conv| target.floor.append(&user, conv, &messages),
            BatchSize::PerIteration,
        )
    });
    target.checkpoint();
    // The setup and the timed routine both use the minimal floor's one connection.
    let minimal = std::cell::RefCell::new(&mut target.minimal);
    group.bench_function(BenchmarkId::new("minimal", 1000), |b| {
        b.iter_batched(
            || minimal.borrow_mut().create(user.as_str()),
            |conv| minimal.borrow_mut().append(user.as_str(), conv, &messages),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn writes(c: &mut Criterion) {
    for mut target in Target::all() {
        target.warm_up_writes();
        append_one(c, &mut target, "full", false);
        append_one(c, &mut target, "full", true);
        append_batch(c, &mut target);
    }
    #[cfg(feature = "sqlite")]
    {
        let mut target = Target::sqlite(chatstore::Synchronous::Normal);
        target.warm_up_writes();
        append_one(c, &mut target, "normal", false);
    }
    // No warm-up: the WAL is the server's, grown by the run above.
    #[cfg(feature = "postgres")]
    {
        let mut target = Target::postgres_with(false);
        append_one(c, &mut target, "async", false);
    }
}

criterion_group!(benches, writes);
criterion_main!(benches);
