//! What the bench targets share: a fresh database per backend, seeding, and the floor — each
//! workload as hand-written SQL on the same schema (`floor.rs`).

#![allow(dead_code)] // each bench target uses part of it

mod floor;

pub use floor::{Floor, FloorMessage};

use chatstore::{ChatStore, ConversationId, NewMessage, Synchronous, UserId};
use floor::PgFloor;
use uuid::Uuid;

/// Content of every bench message.
pub const CONTENT: &str = concat!(
    "The quick brown fox jumps over the lazy dog while the assistant plans the week: ",
    "buy groceries, call the plumber, renew the passport, water the plants, book the dentist, ",
    "answer the landlord, pay the electricity bill, and finish the quarterly report by Friday!!"
);

/// `n` messages with alternating roles, user first.
pub fn batch(n: usize) -> Vec<NewMessage<'static>> {
    (0..n)
        .map(|i| match i % 2 {
            0 => NewMessage::user(CONTENT),
            _ => NewMessage::assistant(CONTENT),
        })
        .collect()
}

/// One backend under test: the store, and the floor's own connection to the same database.
pub struct Target {
    /// `sqlite` or `postgres`: the second part of every benchmark id.
    pub name: &'static str,
    pub store: ChatStore,
    pub floor: Floor,
    _db: Db,
}

/// The bench owner, and the owner of everything seeded unless a workload says otherwise.
pub fn owner() -> UserId {
    UserId::new("bench-user").expect("valid user id")
}

impl Target {
    /// Every backend compiled in: SQLite on a temporary file, PostgreSQL on a new database of the
    /// local server (`CHATSTORE_TEST_POSTGRES_URL`), dropped afterwards.
    pub fn all() -> Vec<Target> {
        [
            #[cfg(feature = "sqlite")]
            Target::sqlite(Synchronous::Full),
            #[cfg(feature = "postgres")]
            Target::postgres(),
        ]
        .into()
    }

    /// A SQLite file with the store's default options but `synchronous`, which the floor's
    /// connection uses too.
    pub fn sqlite(synchronous: Synchronous) -> Target {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("bench.db");
        let store = ChatStore::builder(format!("sqlite://{}", path.display()))
            .synchronous(synchronous)
            .open()
            .expect("open the SQLite store");
        let conn = rusqlite::Connection::open(&path).expect("open the SQLite file");
        let sync = match synchronous {
            Synchronous::Full => "FULL",
            _ => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;"
        ))
        .expect("pragmas");
        Target {
            name: "sqlite",
            store,
            floor: Floor::Sqlite(conn),
            _db: Db::Sqlite(dir),
        }
    }

    pub fn postgres() -> Target {
        let admin = std::env::var("CHATSTORE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("chatstore_bench_{}", Uuid::now_v7().simple());
        let mut client = postgres::Client::connect(&admin, postgres::NoTls)
            .unwrap_or_else(|e| panic!("the PostgreSQL benches need a server at {admin}: {e}"));
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the bench database");
        let without_query = admin.split('?').next().unwrap_or(&admin);
        let (base, _) = without_query
            .rsplit_once('/')
            .expect("a URL with a database name");
        let url = format!("{base}/{name}");
        // The floor's client speaks plain TCP (NoTls); libpq would negotiate TLS with a server
        // that offers it (`sslmode=prefer`), so the store is told not to: the same transport on
        // both sides.
        let store =
            ChatStore::open(&format!("{url}?sslmode=disable")).expect("open the PostgreSQL store");
        let client = postgres::Client::connect(&url, postgres::NoTls).expect("connect the floor");
        Target {
            name: "postgres",
            store,
            floor: Floor::Postgres(Box::new(PgFloor::new(client))),
            _db: Db::Postgres { admin, name },
        }
    }

    /// A new conversation of `owner()` holding `n` messages, appended in batches of 1,000.
    pub fn seeded_conversation(&self, n: usize) -> ConversationId {
        let user = owner();
        let conv = self
            .store
            .create_conversation(&user, Some("bench"))
            .expect("create");
        let messages = batch(1000);
        for start in (0..n).step_by(1000) {
            let len = (n - start).min(1000);
            self.store
                .append_messages(&user, conv.id, &messages[..len])
                .expect("seed");
        }
        conv.id
    }

    /// Refreshes the planner's statistics after seeding (PostgreSQL; SQLite has no ANALYZE data
    /// unless asked and plans these queries from the indexes alone).
    pub fn analyze(&mut self) {
        self.floor.analyze();
    }

    /// Writes out everything pending, before a write bench: a checkpoint (PostgreSQL's timed
    /// one, every 5 minutes; SQLite's every 1,000 WAL pages) that lands in one side's measurement
    /// and not the other's would price the checkpoint, not the store.
    pub fn checkpoint(&mut self) {
        self.floor.checkpoint();
    }

    /// Writes 300,000 messages (about 100 MB with indexes and log), untimed, then checkpoints.
    /// Whichever side ran first paid for growing the files — PostgreSQL creating new 16 MB WAL
    /// segments, SQLite extending its WAL — and the second reused them: run alone, each side took
    /// 11.1–11.2 ms for W2 on PostgreSQL, but 12.4 and 8.0 ms when run one after the other.
    pub fn warm_up_writes(&mut self) {
        let user = owner();
        let messages = batch(1000);
        for _ in 0..300 {
            let conv = self.store.create_conversation(&user, None).expect("create");
            self.floor.append(&user, conv.id, &messages);
        }
        self.checkpoint();
    }
}

/// Checks that the store and the floor read the same `n` messages, so both sides do equal work.
pub fn assert_same(ours: &[chatstore::Message], floor: &[FloorMessage], n: usize) {
    assert_eq!(ours.len(), n);
    assert_eq!(floor.len(), n);
    for (a, b) in ours.iter().zip(floor) {
        assert_eq!(
            (
                a.id.as_uuid(),
                a.seq,
                a.role,
                a.content.as_str(),
                &a.metadata,
                a.created_at
            ),
            (
                b.id,
                b.seq,
                b.role,
                b.content.as_str(),
                &b.metadata,
                b.created_at
            ),
        );
        assert_eq!(a.conversation_id.as_uuid(), b.conversation_id);
    }
}

enum Db {
    Sqlite(tempfile::TempDir),
    Postgres { admin: String, name: String },
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Db::Postgres { admin, name } = self {
            if let Ok(mut client) = postgres::Client::connect(admin, postgres::NoTls) {
                let _ =
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}
