//! Scale-out: the store through a Citus coordinator (its tables distributed by owner over two
//! workers) against the store on one PostgreSQL, in the same run: W1 (one append), W5 (the newest
//! 50 of 10,000) and W7 (the first 20 of a user's 1,000 conversations, among 10 users). The
//! cluster is the local one of `../shared/citus` (coordinator 127.0.0.1:5440, workers 5441 and
//! 5442), a database made on every node for the run and dropped afterwards.

mod support;

use chatstore::{ChatStore, ConversationId, NewMessage, Page, UserId, Window};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use support::{batch, owner, testing, CONTENT};
use uuid::Uuid;

/// The coordinator's port, then the workers'.
const NODES: [u16; 3] = [5440, 5441, 5442];

/// A database of the run: on the single server, or on every node of the cluster.
struct Db {
    ports: Vec<u16>,
    name: String,
}

impl Db {
    fn new(ports: &[u16]) -> Db {
        let name = format!("chatstore_bench_{}", Uuid::now_v7().simple());
        for &port in ports {
            let mut admin = client(port, "postgres");
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("create the bench database");
        }
        if ports.len() > 1 {
            for &port in ports {
                client(port, &name)
                    .batch_execute("CREATE EXTENSION citus")
                    .expect("the citus extension");
            }
            let mut coordinator = client(ports[0], &name);
            coordinator
                .batch_execute(&format!(
                    "SELECT citus_set_coordinator_host('127.0.0.1', {})",
                    ports[0]
                ))
                .expect("the coordinator");
            for port in &ports[1..] {
                coordinator
                    .batch_execute(&format!("SELECT citus_add_node('127.0.0.1', {port})"))
                    .expect("a worker");
            }
        }
        Db {
            ports: ports.to_vec(),
            name,
        }
    }

    /// The store on this database (the coordinator's, on the cluster): plain TCP, as the other
    /// PostgreSQL benches run it.
    fn open(&self) -> ChatStore {
        let url = format!(
            "postgres://postgres@127.0.0.1:{}/{}?sslmode=disable",
            self.ports[0], self.name
        );
        ChatStore::open(&url).expect("open the store")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        for &port in &self.ports {
            let _ = client(port, "postgres").batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn client(port: u16, database: &str) -> postgres::Client {
    let url = format!("postgres://postgres@127.0.0.1:{port}/{database}");
    postgres::Client::connect(&url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("the Citus bench needs the local cluster at {url}: {e}"))
}

/// The run's histories and conversations on one side: a 10,000-message history of `owner()`, and
/// a user with 1,000 conversations among 10 users.
fn seed(store: &ChatStore, lister: &UserId) -> ConversationId {
    let user = owner();
    let history = if testing() { 100 } else { 10_000 };
    let conv = store.create_conversation(&user, None).expect("create").id;
    let per_batch = history.min(1_000);
    for _ in 0..history / per_batch {
        store
            .append_messages(&user, conv, &batch(per_batch))
            .expect("seed a history");
    }
    let conversations = if testing() { 30 } else { 1_000 };
    for i in 0..10 {
        let someone = match i {
            0 => lister.clone(),
            _ => UserId::new(format!("user-{i:03}")).expect("valid user id"),
        };
        for _ in 0..conversations {
            store.create_conversation(&someone, None).expect("create");
        }
    }
    conv
}

fn scale_out(c: &mut Criterion) {
    let user = owner();
    let lister = UserId::new("user-042").expect("valid user id");
    let single = Db::new(&[5432]);
    let cluster = Db::new(&NODES);
    for (name, db) in [("postgres", &single), ("citus", &cluster)] {
        let store = db.open();
        let history = seed(&store, &lister);
        let page = store
            .messages(&user, history, Window::Latest(50))
            .expect("read");
        assert_eq!(page.messages.len(), 50);
        let listed = store
            .list_conversations(&lister, Page::first(20))
            .expect("list");
        assert_eq!(listed.conversations.len(), 20);
        assert!(listed.conversations.iter().all(|c| c.user_id == lister));

        let mut group = c.benchmark_group(format!("scale-out/{name}"));
        let appended = store.create_conversation(&user, None).expect("create").id;
        group.bench_function(BenchmarkId::new("append-1", "full"), |b| {
            b.iter(|| {
                store
                    .append_message(&user, appended, NewMessage::user(CONTENT))
                    .expect("append")
            })
        });
        group.bench_function(BenchmarkId::new("tail-50", 10_000), |b| {
            b.iter(|| {
                store
                    .messages(&user, history, Window::Latest(50))
                    .expect("read")
            })
        });
        group.bench_function(BenchmarkId::new("list-20", 1_000), |b| {
            b.iter(|| {
                store
                    .list_conversations(&lister, Page::first(20))
                    .expect("list")
            })
        });
        group.finish();
    }
}

criterion_group!(benches, scale_out);
criterion_main!(benches);
