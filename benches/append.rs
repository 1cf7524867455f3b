//! Writes: W1 single-message appends, W9 the same with client ids (retry-safe), and W2 a
//! 1,000-message batch, chatstore against the
//! hand-written floor, on every backend. On SQLite W1 also runs with `synchronous = NORMAL`, to
//! price the durability setting.

mod support;

use chatstore::{MessageId, NewMessage};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use support::{batch, owner, Target, CONTENT};

/// W1: one message per call, each its own transaction, onto one conversation that grows as the
/// bench runs (an append's cost does not depend on the history length).
fn append_one(c: &mut Criterion, target: &mut Target, durability: &str) {
    let user = owner();
    let mut group = c.benchmark_group(format!("{}/append-1", target.name));
    group.throughput(Throughput::Elements(1));
    let conv = target
        .store
        .create_conversation(&user, None)
        .expect("create")
        .id;
    target.checkpoint();
    group.bench_function(BenchmarkId::new("chatstore", durability), |b| {
        b.iter(|| {
            target
                .store
                .append_message(&user, conv, NewMessage::user(CONTENT))
                .expect("append")
        })
    });
    let conv = target
        .store
        .create_conversation(&user, None)
        .expect("create")
        .id;
    let message = [NewMessage::user(CONTENT)];
    target.checkpoint();
    group.bench_function(BenchmarkId::new("floor", durability), |b| {
        b.iter(|| target.floor.append(&user, conv, &message))
    });
    group.finish();
}

/// W9: W1 made safe to retry: each message carries a new client id, which the append first looks
/// up (the price of exactly-once appends when nothing is being retried).
fn append_one_with_id(c: &mut Criterion, target: &mut Target) {
    let user = owner();
    let mut group = c.benchmark_group(format!("{}/append-1-with-id", target.name));
    group.throughput(Throughput::Elements(1));
    let new_id = || MessageId::from(uuid::Uuid::now_v7());
    let conv = target
        .store
        .create_conversation(&user, None)
        .expect("create")
        .id;
    target.checkpoint();
    group.bench_function(BenchmarkId::new("chatstore", "full"), |b| {
        b.iter(|| {
            let message = NewMessage::user(CONTENT).with_id(new_id());
            target
                .store
                .append_message(&user, conv, message)
                .expect("append")
        })
    });
    let conv = target
        .store
        .create_conversation(&user, None)
        .expect("create")
        .id;
    target.checkpoint();
    group.bench_function(BenchmarkId::new("floor", "full"), |b| {
        b.iter(|| {
            let message = [NewMessage::user(CONTENT).with_id(new_id())];
            target.floor.append_with(&user, conv, &message, true)
        })
    });
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
    group.finish();
}

fn writes(c: &mut Criterion) {
    for mut target in Target::all() {
        target.warm_up_writes();
        append_one(c, &mut target, "full");
        append_one_with_id(c, &mut target);
        append_batch(c, &mut target);
    }
    #[cfg(feature = "sqlite")]
    {
        let mut target = Target::sqlite(chatstore::Synchronous::Normal);
        target.warm_up_writes();
        append_one(c, &mut target, "normal");
    }
}

criterion_group!(benches, writes);
criterion_main!(benches);
