//! W7: the first page of 20 conversations for a user who owns 1,000, among 100 users, chatstore
//! against the hand-written floors (same schema, and minimal), on every backend; then the same
//! page once 5 of them are pinned and 100 archived (`list-20-pinned`: the pinned first, the
//! archived skipped), against the same-schema floor, with the minimal floor's plain list beside it.
//!
//! `list-20-tagged`: the first page of 20 conversations with one tag, for a user who owns 10,000
//! with 100 tags among them (one each, about 100 a tag), among 10 such users; against the same
//! schema by hand, and a minimal tags table (owner, tag, conversation) joined and sorted by hand.

mod support;

use chatstore::{Page, Tag, UserId};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use support::Target;

fn list(c: &mut Criterion) {
    let user = UserId::new("user-042").expect("valid user id");
    for mut target in Target::all() {
        target.floor.seed_conversations(100, 1_000);
        target.minimal.seed_conversations(100, 1_000);
        target.analyze();
        let ours = target
            .store
            .list_conversations(&user, Page::first(20))
            .expect("list");
        // The store asks for one more row than the page, to know whether a next page exists.
        let floor = target.floor.list(&user, 21);
        let ours_ids: Vec<uuid::Uuid> = ours.conversations.iter().map(|c| c.id.as_uuid()).collect();
        let floor_ids: Vec<uuid::Uuid> = floor.iter().take(20).map(|c| c.id).collect();
        assert_eq!(ours_ids, floor_ids, "both sides read the same page");
        assert!(ours.next.is_some());
        let minimal = target.minimal.list(user.as_str(), 21);
        assert_eq!(minimal.len(), 21, "a page and one more, as the store reads");
        assert!(minimal.iter().all(|c| c.owner == user.as_str()));
        assert!(minimal
            .windows(2)
            .all(|w| (w[0].updated_at, w[0].id) > (w[1].updated_at, w[1].id)));

        first_page(c, "list-20", &mut target, &user);

        // Five older conversations pinned, the hundred newest archived.
        let mut all = Vec::new();
        let mut page = Page::first(100);
        loop {
            let listed = target.store.list_conversations(&user, page).expect("list");
            all.extend(listed.conversations.iter().map(|c| c.id));
            match listed.next {
                Some(next) => page = next,
                None => break,
            }
        }
        for id in &all[..100] {
            target
                .store
                .archive_conversation(&user, *id)
                .expect("archive");
        }
        for id in all.iter().skip(300).step_by(100).take(5) {
            target.store.pin_conversation(&user, *id).expect("pin");
        }
        target.analyze();
        let ours = target
            .store
            .list_conversations(&user, Page::first(20))
            .expect("list");
        let pinned = ours.conversations.iter().filter(|c| c.pinned).count();
        assert_eq!(pinned, 5, "the pinned come first");
        assert!(ours.conversations.iter().all(|c| !c.archived));
        let floor = target.floor.list(&user, 21);
        let ours_ids: Vec<uuid::Uuid> = ours.conversations.iter().map(|c| c.id.as_uuid()).collect();
        let floor_ids: Vec<uuid::Uuid> = floor.iter().take(20).map(|c| c.id).collect();
        assert_eq!(ours_ids, floor_ids, "both sides read the same page");
        assert_eq!(floor.iter().filter(|c| c.list_rank == 2).count(), 5);

        first_page(c, "list-20-pinned", &mut target, &user);
    }
}

fn tagged(c: &mut Criterion) {
    let user = UserId::new("user-003").expect("valid user id");
    let tag = Tag::new("tag-7").expect("valid tag");
    for mut target in Target::all() {
        target.floor.seed_conversations(10, 10_000);
        target.minimal.seed_conversations(10, 10_000);
        target.floor.seed_tags(&user, 100);
        target.minimal.seed_tags(user.as_str(), 100);
        target.analyze();
        let ours = target
            .store
            .list_conversations_tagged(&user, &tag, Page::first(20))
            .expect("list");
        assert!(ours.conversations.iter().all(|c| c.tags == [tag.clone()]));
        assert!(ours.next.is_some());
        let floor = target.floor.list_tagged(&user, tag.as_str(), 21);
        let ours_ids: Vec<uuid::Uuid> = ours.conversations.iter().map(|c| c.id.as_uuid()).collect();
        let floor_ids: Vec<uuid::Uuid> = floor.iter().take(20).map(|c| c.id).collect();
        assert_eq!(ours_ids, floor_ids, "both sides read the same page");
        let minimal = target.minimal.list_tagged(user.as_str(), tag.as_str(), 21);
        assert_eq!(minimal.len(), 21, "a page and one more, as the store reads");
        assert!(minimal
            .windows(2)
            .all(|w| (w[0].updated_at, w[0].id) > (w[1].updated_at, w[1].id)));

        let mut group = c.benchmark_group(format!("{}/list-20-tagged", target.name));
        group.bench_function(BenchmarkId::new("chatstore", 10_000), |b| {
            b.iter(|| {
                target
                    .store
                    .list_conversations_tagged(&user, &tag, Page::first(20))
                    .expect("list")
            })
        });
        group.bench_function(BenchmarkId::new("floor", 10_000), |b| {
            b.iter(|| target.floor.list_tagged(&user, tag.as_str(), 21))
        });
        group.bench_function(BenchmarkId::new("minimal", 10_000), |b| {
            b.iter(|| target.minimal.list_tagged(user.as_str(), tag.as_str(), 21))
        });
        group.finish();
    }
}

/// The first page of `user`'s list, by the store and by each floor, as the group `workload`.
fn first_page(c: &mut Criterion, workload: &str, target: &mut Target, user: &UserId) {
    let mut group = c.benchmark_group(format!("{}/{workload}", target.name));
    group.bench_function(BenchmarkId::new("chatstore", 1_000), |b| {
        b.iter(|| {
            target
                .store
                .list_conversations(user, Page::first(20))
                .expect("list")
        })
    });
    group.bench_function(BenchmarkId::new("floor", 1_000), |b| {
        b.iter(|| target.floor.list(user, 21))
    });
    group.bench_function(BenchmarkId::new("minimal", 1_000), |b| {
        b.iter(|| target.minimal.list(user.as_str(), 21))
    });
    group.finish();
}

criterion_group!(benches, list, tagged);
criterion_main!(benches);
