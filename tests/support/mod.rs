//! What every test binary shares: test databases (each test gets its own, dropped afterwards), the
//! backend matrix that runs each behaviour on every enabled backend, and small helpers. Each binary
//! includes it with `mod support;` and uses part of it.
#![allow(dead_code)]

mod helpers;
mod matrix;
mod raw_sql;

// Each binary uses some of these.
#[allow(unused_imports)]
pub use helpers::{contents, conversation_with, expected, seqs, snapshot, user};
pub(crate) use matrix::backend_tests;
#[allow(unused_imports)]
pub use matrix::with_db;
#[allow(unused_imports)]
pub use raw_sql::{RawMessage, RawSql};

use chatstore::ChatStore;
use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{FileBasedMigrations, MigrationHarness};

/// One backend's migrations (`sqlite`, `postgres`, `mysql`), for the tests that revert them. Read
/// from migrations/ when used rather than embedded: this module is compiled into the axum
/// example's tests too, and `embed_migrations!` looks in the package being built, which for them
/// is examples/axum_server/.
fn migrations(backend: &str) -> FileBasedMigrations {
    let package = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = package
        .ancestors()
        .map(|dir| dir.join("migrations").join(backend))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| panic!("no migrations/{backend} in or above {}", package.display()));
    FileBasedMigrations::from_path(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// Where a test database lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub enum Kind {
    SqliteFile,
    SqliteMemory,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    Mysql,
}

/// A fresh, empty database of one kind. A SQLite file lives in a temporary directory; a PostgreSQL
/// or MySQL database gets a unique name on the test server and is dropped on `Drop`.
pub struct TestDb {
    pub kind: Kind,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    server_name: Option<String>,
}

impl TestDb {
    pub fn new(kind: Kind) -> TestDb {
        match kind {
            Kind::SqliteFile => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("chat.db").display());
                TestDb {
                    kind,
                    url,
                    _dir: Some(dir),
                    server_name: None,
                }
            }
            Kind::SqliteMemory => TestDb {
                kind,
                url: ":memory:".into(),
                _dir: None,
                server_name: None,
            },
            Kind::Postgres => {
                let name = format!("chatstore_test_{}", uuid::Uuid::now_v7().simple());
                admin_execute(&format!("CREATE DATABASE {name}"));
                let url = with_database(&postgres_admin_url(), &name);
                TestDb {
                    kind,
                    url,
                    _dir: None,
                    server_name: Some(name),
                }
            }
            Kind::Mysql => {
                let name = format!("chatstore_test_{}", uuid::Uuid::now_v7().simple());
                mysql_admin_execute(&format!("CREATE DATABASE {name}"));
                let url = with_database(&mysql_admin_url(), &name);
                TestDb {
                    kind,
                    url,
                    _dir: None,
                    server_name: Some(name),
                }
            }
        }
    }

    /// Opens a store on this database (for `:memory:`, a new private database each time).
    pub fn open(&self) -> ChatStore {
        ChatStore::open(&self.url).unwrap_or_else(|e| panic!("open {:?}: {e}", self.kind))
    }

    /// Runs SQL on the database directly, as another program would (not for `:memory:`).
    pub fn execute(&self, sql: &str) -> diesel::QueryResult<()> {
        match self.kind {
            #[cfg(feature = "sqlite")]
            Kind::SqliteFile => sqlite_connection(&self.url).batch_execute(sql),
            #[cfg(feature = "postgres")]
            Kind::Postgres => diesel::pg::PgConnection::establish(&self.url)
                .expect("connect")
                .batch_execute(sql),
            #[cfg(feature = "mysql")]
            Kind::Mysql => mysql_connection(&self.url).batch_execute(sql),
            _ => panic!("no direct connection to {:?}", self.kind),
        }
    }

    /// Opens a connection of its own, runs `sql` on it and keeps it open — with whatever locks
    /// `sql` took — until the returned value is dropped: another process, in short.
    pub fn hold(&self, sql: &str) -> Box<dyn std::any::Any> {
        match self.kind {
            #[cfg(feature = "sqlite")]
            Kind::SqliteFile => {
                let mut c = sqlite_connection(&self.url);
                c.batch_execute(sql).expect(sql);
                Box::new(c)
            }
            #[cfg(feature = "postgres")]
            Kind::Postgres => {
                let mut c = diesel::pg::PgConnection::establish(&self.url).expect("connect");
                c.batch_execute(sql).expect(sql);
                Box::new(c)
            }
            #[cfg(feature = "mysql")]
            Kind::Mysql => {
                let mut c = mysql_connection(&self.url);
                c.batch_execute(sql).expect(sql);
                Box::new(c)
            }
            _ => panic!("no direct connection to {:?}", self.kind),
        }
    }

    /// Rows in `table`, counted by a connection of its own; `None` for `:memory:`, which no other
    /// connection can see.
    pub fn count_rows(&self, table: &str) -> Option<i64> {
        self.scalar(&format!("SELECT count(*) AS n FROM {table}"))
    }

    /// The one BIGINT `sql` selects as `n`, read by a connection of its own; `None` for `:memory:`.
    pub fn scalar(&self, sql: &str) -> Option<i64> {
        #[derive(diesel::QueryableByName)]
        struct Scalar {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let query = diesel::sql_query(sql);
        let row: Scalar = match self.kind {
            #[cfg(feature = "sqlite")]
            Kind::SqliteFile => query.get_result(&mut sqlite_connection(&self.url)),
            #[cfg(feature = "postgres")]
            Kind::Postgres => query
                .get_result(&mut diesel::pg::PgConnection::establish(&self.url).expect("connect")),
            #[cfg(feature = "mysql")]
            Kind::Mysql => query.get_result(&mut mysql_connection(&self.url)),
            _ => return None,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        Some(row.n)
    }

    /// Terminates every other connection to this server database (the store's), as a failover or
    /// an administrator would; returns how many.
    #[cfg(any(feature = "postgres", feature = "mysql"))]
    pub fn terminate_other_connections(&self) -> i64 {
        match self.kind {
            Kind::Postgres => self
                .scalar(
                    "SELECT count(*) AS n FROM pg_stat_activity, pg_terminate_backend(pid) AS killed \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() AND killed",
                )
                .unwrap_or(0),
            #[cfg(feature = "mysql")]
            Kind::Mysql => {
                #[derive(diesel::QueryableByName)]
                struct Id {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    id: i64,
                }
                let mut c = mysql_connection(&self.url);
                let ids: Vec<Id> = diesel::sql_query(
                    "SELECT CAST(id AS SIGNED) AS id FROM information_schema.processlist \
                     WHERE db = DATABASE() AND id <> CONNECTION_ID()",
                )
                .load(&mut c)
                .expect("processlist");
                // A connection that ended meanwhile is not an error.
                ids.iter()
                    .filter(|i| c.batch_execute(&format!("KILL CONNECTION {}", i.id)).is_ok())
                    .count() as i64
            }
            _ => panic!("no server behind {:?}", self.kind),
        }
    }

    /// Runs the newest migration's `down.sql`, as `diesel migration revert` would.
    pub fn revert_newest_migration(&self) {
        match self.kind {
            #[cfg(feature = "sqlite")]
            Kind::SqliteFile => {
                sqlite_connection(&self.url)
                    .revert_last_migration(migrations("sqlite"))
                    .expect("revert");
            }
            #[cfg(feature = "postgres")]
            Kind::Postgres => {
                let mut c = diesel::pg::PgConnection::establish(&self.url).expect("connect");
                c.revert_last_migration(migrations("postgres"))
                    .expect("revert");
            }
            #[cfg(feature = "mysql")]
            Kind::Mysql => {
                mysql_connection(&self.url)
                    .revert_last_migration(migrations("mysql"))
                    .expect("revert");
            }
            _ => panic!("no direct connection to {:?}", self.kind),
        }
    }

    /// Runs the `down.sql` of the `n` newest migrations, newest first.
    pub fn revert_newest_migrations(&self, n: usize) {
        for _ in 0..n {
            self.revert_newest_migration();
        }
    }

    /// Runs every migration's `down.sql`, newest first, as the diesel CLI would.
    pub fn revert_all_migrations(&self) {
        match self.kind {
            #[cfg(feature = "sqlite")]
            Kind::SqliteFile => {
                sqlite_connection(&self.url)
                    .revert_all_migrations(migrations("sqlite"))
                    .expect("revert");
            }
            #[cfg(feature = "postgres")]
            Kind::Postgres => {
                let mut c = diesel::pg::PgConnection::establish(&self.url).expect("connect");
                c.revert_all_migrations(migrations("postgres"))
                    .expect("revert");
            }
            #[cfg(feature = "mysql")]
            Kind::Mysql => {
                mysql_connection(&self.url)
                    .revert_all_migrations(migrations("mysql"))
                    .expect("revert");
            }
            _ => panic!("no direct connection to {:?}", self.kind),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match (&self.server_name, self.kind) {
            (Some(name), Kind::Mysql) => {
                mysql_admin_execute(&format!("DROP DATABASE IF EXISTS {name}"))
            }
            (Some(name), _) => {
                admin_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            }
            (None, _) => {}
        }
    }
}

/// A connection set up as a well-behaved other program would: foreign keys on, and waiting for
/// locks (a store may be opening a connection at the same moment).
#[cfg(feature = "sqlite")]
fn sqlite_connection(url: &str) -> diesel::sqlite::SqliteConnection {
    let path = url.trim_start_matches("sqlite://");
    let mut c = diesel::sqlite::SqliteConnection::establish(path).expect("connect");
    c.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;")
        .expect("pragmas");
    c
}

/// The server the PostgreSQL tests run on: `CHATSTORE_TEST_POSTGRES_URL`, or the local server.
fn postgres_admin_url() -> String {
    std::env::var("CHATSTORE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[cfg(feature = "postgres")]
fn admin_execute(sql: &str) {
    let url = postgres_admin_url();
    let mut conn = diesel::pg::PgConnection::establish(&url).unwrap_or_else(|e| {
        panic!("the PostgreSQL tests need a server at {url} (set CHATSTORE_TEST_POSTGRES_URL): {e}")
    });
    conn.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[cfg(not(feature = "postgres"))]
fn admin_execute(_: &str) {
    unreachable!("PostgreSQL tests are compiled only with the postgres feature")
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    format!("{}/{name}{query}", &base[..host_end])
}

/// The server the MySQL tests run on: `CHATSTORE_TEST_MYSQL_URL`, or the local MariaDB.
fn mysql_admin_url() -> String {
    std::env::var("CHATSTORE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A connection of a well-behaved other program.
#[cfg(feature = "mysql")]
fn mysql_connection(url: &str) -> diesel::mysql::MysqlConnection {
    diesel::mysql::MysqlConnection::establish(url).expect("connect")
}

#[cfg(feature = "mysql")]
fn mysql_admin_execute(sql: &str) {
    let url = mysql_admin_url();
    let mut conn = diesel::mysql::MysqlConnection::establish(&url).unwrap_or_else(|e| {
        panic!("the MySQL tests need a server at {url} (set CHATSTORE_TEST_MYSQL_URL): {e}")
    });
    conn.batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[cfg(not(feature = "mysql"))]
fn mysql_admin_execute(_: &str) {
    unreachable!("MySQL tests are compiled only with the mysql feature")
}
