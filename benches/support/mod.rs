//! What the bench targets share: a fresh database per backend, seeding, and the two floors — each
//! workload as hand-written SQL on the same schema (`floor.rs`), and on the minimal schema the job
//! needs (`minimal.rs`).

#![allow(dead_code)] // each bench target uses part of it

mod floor;
mod minimal;
#[path = "../../tests/support/url.rs"]
mod url;

pub use floor::{Floor, FloorMessage};
pub use minimal::{Minimal, MinimalMessage};

use chatstore::{ChatStore, ConversationId, NewMessage, Synchronous, UserId};
use floor::PgFloor;
use mysql::prelude::Queryable;
use url::with_database;
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

/// One backend under test: the store, and each floor's own connection to the same database.
pub struct Target {
    /// `sqlite`, `postgres` or `mysql`: the first part of every benchmark id.
    pub name: &'static str,
    pub store: ChatStore,
    pub floor: Floor,
    pub minimal: Minimal,
    _db: Db,
}

/// The bench owner, and the owner of everything seeded unless a workload says otherwise.
pub fn owner() -> UserId {
    UserId::new("bench-user").expect("valid user id")
}

impl Target {
    /// Every backend compiled in: SQLite on a temporary file; PostgreSQL and MariaDB/MySQL on a
    /// new database of the local server (`CHATSTORE_TEST_POSTGRES_URL`,
    /// `CHATSTORE_TEST_MYSQL_URL`), dropped afterwards.
    pub fn all() -> Vec<Target> {
        [
            #[cfg(feature = "sqlite")]
            Target::sqlite(Synchronous::Full),
            #[cfg(feature = "postgres")]
            Target::postgres(),
            #[cfg(feature = "mysql")]
            Target::mysql(),
        ]
        .into()
    }

    /// A SQLite file with the store's default options but `synchronous`, which the floors'
    /// connections use too. The minimal floor's tables are in the same file.
    pub fn sqlite(synchronous: Synchronous) -> Target {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("bench.db");
        let store = ChatStore::builder(format!("sqlite://{}", path.display()))
            .synchronous(synchronous)
            .open()
            .expect("open the SQLite store");
        let sync = match synchronous {
            Synchronous::Full => "FULL",
            _ => "NORMAL",
        };
        let connect = || {
            let conn = rusqlite::Connection::open(&path).expect("open the SQLite file");
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;"
            ))
            .expect("pragmas");
            conn
        };
        Target {
            name: "sqlite",
            store,
            floor: Floor::Sqlite(connect()),
            minimal: Minimal::sqlite(connect()),
            _db: Db::Sqlite(dir),
        }
    }

    /// A new PostgreSQL database, every side's commits synced (the server's default).
    pub fn postgres() -> Target {
        Target::postgres_with(true)
    }

    /// A new PostgreSQL database whose every side commits with `synchronous_commit` on or off:
    /// off, a commit returns before its WAL reaches the disk (a crash may lose the last commits,
    /// never corrupt). The store's URL sets it for each of its connections (`options`).
    pub fn postgres_with(synchronous_commit: bool) -> Target {
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
        let options = match synchronous_commit {
            true => "",
            false => "&options=-csynchronous_commit%3Doff",
        };
        let store = ChatStore::open(&format!("{url}?sslmode=disable{options}"))
            .expect("open the PostgreSQL store");
        let connect = || {
            let mut client =
                postgres::Client::connect(&url, postgres::NoTls).expect("connect a floor");
            if !synchronous_commit {
                client
                    .batch_execute("SET synchronous_commit = off")
                    .expect("synchronous_commit");
            }
            client
        };
        Target {
            name: "postgres",
            store,
            floor: Floor::Postgres(Box::new(PgFloor::new(connect()))),
            minimal: Minimal::postgres(connect()),
            _db: Db::Postgres { admin, name },
        }
    }

    /// A new database on the MariaDB/MySQL server at `CHATSTORE_TEST_MYSQL_URL` (the local
    /// MariaDB by default, as for the tests). InnoDB's defaults: every commit flushed
    /// (`innodb_flush_log_at_trx_commit = 1`).
    pub fn mysql() -> Target {
        let admin = std::env::var("CHATSTORE_TEST_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into());
        let name = format!("chatstore_bench_{}", Uuid::now_v7().simple());
        let mut conn = mysql::Conn::new(mysql::Opts::from_url(&admin).expect("a MySQL URL"))
            .unwrap_or_else(|e| panic!("the MySQL benches need a server at {admin}: {e}"));
        conn.query_drop(format!("CREATE DATABASE {name}"))
            .expect("create the bench database");
        let url = with_database(&admin, &name);
        let store = ChatStore::open(&url).expect("open the MySQL store");
        Target {
            name: "mysql",
            store,
            floor: Floor::Mysql(mysql_client(&url)),
            minimal: Minimal::mysql(mysql_client(&url)),
            _db: Db::Mysql { admin, name },
        }
    }

    /// A new minimal-floor conversation of `owner()` holding `n` messages, the same as
    /// [`seeded_conversation`](Self::seeded_conversation)'s, appended in batches of 1,000.
    pub fn minimal_conversation(&mut self, n: usize) -> i64 {
        let user = owner();
        let conv = self.minimal.create(user.as_str());
        let messages = batch(1000);
        for start in (0..n).step_by(1000) {
            let len = (n - start).min(1000);
            self.minimal.append(user.as_str(), conv, &messages[..len]);
        }
        conv
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
        self.minimal.analyze();
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
    ///
    /// On MySQL 30,000: InnoDB's redo log is a ring of fixed size, so only the table files grow,
    /// and each 1,000 messages also write some 33,000 rows of search words (300 batches took 80 s).
    /// Skipped in `--test` mode, which times nothing.
    pub fn warm_up_writes(&mut self) {
        if testing() {
            return;
        }
        let batches = match self.name {
            "mysql" => 30,
            _ => 300,
        };
        let user = owner();
        let messages = batch(1000);
        for _ in 0..batches {
            let conv = self.store.create_conversation(&user, None).expect("create");
            self.floor.append(&user, conv.id, &messages);
        }
        self.checkpoint();
    }
}

/// Whether criterion runs each workload once (`cargo bench -- --test`, as CI does) rather than
/// measuring.
pub fn testing() -> bool {
    std::env::args().any(|arg| arg == "--test")
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

/// Checks that the store and the minimal floor read the same `n` messages (roles and contents, in
/// order; the minimal floor's ids ascending), so both sides do equal work.
pub fn assert_same_minimal(ours: &[chatstore::Message], minimal: &[MinimalMessage], n: usize) {
    assert_eq!(ours.len(), n);
    assert_eq!(minimal.len(), n);
    for (a, b) in ours.iter().zip(minimal) {
        assert_eq!((a.role, a.content.as_str()), (b.role, b.content.as_str()));
    }
    assert!(minimal.windows(2).all(|w| w[0].id < w[1].id));
}

enum Db {
    Sqlite(tempfile::TempDir),
    Postgres { admin: String, name: String },
    Mysql { admin: String, name: String },
}

impl Drop for Db {
    fn drop(&mut self) {
        match self {
            Db::Sqlite(_) => {}
            Db::Postgres { admin, name } => {
                if let Ok(mut client) = postgres::Client::connect(admin, postgres::NoTls) {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
                }
            }
            Db::Mysql { admin, name } => {
                if let Ok(mut conn) = mysql::Opts::from_url(admin).map(mysql::Conn::new) {
                    if let Ok(conn) = conn.as_mut() {
                        let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS {name}"));
                    }
                }
            }
        }
    }
}

/// A floor's connection, set up as the store's are: UTC, utf8mb4, READ COMMITTED, strict mode,
/// and UPDATEs counting the rows they match (as Diesel connects), not only those they change.
fn mysql_client(url: &str) -> mysql::Conn {
    let opts = mysql::OptsBuilder::from_opts(mysql::Opts::from_url(url).expect("a MySQL URL"))
        .additional_capabilities(mysql::consts::CapabilityFlags::CLIENT_FOUND_ROWS)
        .init(vec![
            "SET time_zone = '+00:00'",
            "SET NAMES utf8mb4",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
        ]);
    mysql::Conn::new(opts).expect("connect a floor")
}
