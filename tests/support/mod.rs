//! What every test binary shares: test databases (each test gets its own, dropped afterwards), the
//! backend matrix that runs each behaviour on every enabled backend, and small helpers. Each binary
//! includes it with `mod support;` and uses part of it.
#![allow(dead_code)]

mod citus;
mod helpers;
mod matrix;
mod raw_sql;
mod round_trips;
mod url;

// Each binary uses some of these.
#[allow(unused_imports)]
pub use helpers::{assert_copied, contents, conversation_with, expected, seqs, snapshot, user};
pub(crate) use matrix::backend_tests;
#[allow(unused_imports)]
pub use matrix::with_db;
#[allow(unused_imports)]
pub use raw_sql::{RawMessage, RawSql};
#[allow(unused_imports)]
pub use round_trips::RoundTrips;

use chatstore::ChatStore;
use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::query_builder::SqlQuery;
use diesel::query_dsl::LoadQuery;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::FileBasedMigrations;
use url::with_database;

/// The migrations in `dir` (such as `migrations/sqlite`), a folder of the repository. Read when used
/// rather than embedded: this module is compiled into the axum example's tests too, and
/// `embed_migrations!` looks in the package being built, which for them is examples/axum_server/.
fn migrations(dir: &str) -> FileBasedMigrations {
    let package = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = package
        .ancestors()
        .map(|above| above.join(dir))
        .find(|path| path.is_dir())
        .unwrap_or_else(|| panic!("no {dir} in or above {}", package.display()));
    FileBasedMigrations::from_path(&found).unwrap_or_else(|e| panic!("{}: {e}", found.display()))
}

/// Diesel migrations of programs other than today's chatstore, run by Diesel's own harness into
/// its `__diesel_schema_migrations`, as those programs run them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// A host application's schema (`tests/fixtures/host_app`): its own `users`, `messages` and
    /// `conversations`, an index named as chatstore 0.1 named one, and a version newer than any
    /// of chatstore's.
    HostApp,
    /// chatstore 0.1's migrations as they shipped (`tests/fixtures/layout-0.1`): unprefixed
    /// tables, versions in Diesel's table.
    Layout01,
}

impl Fixture {
    /// The folder of its migrations for `backend` (`sqlite`, `postgres`, `mysql`).
    fn dir(self, backend: &str) -> String {
        let fixture = match self {
            Fixture::HostApp => "host_app",
            Fixture::Layout01 => "layout-0.1",
        };
        format!("tests/fixtures/{fixture}/{backend}")
    }
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
    /// A distributed database on the local Citus cluster (`../shared/citus/citus-cluster.sh`):
    /// PostgreSQL to the store, its tables distributed by owner at open.
    #[cfg_attr(not(feature = "citus"), allow(dead_code))]
    Citus,
}

impl Kind {
    /// Whether message and conversation ids are unique per owner rather than across owners: on
    /// PostgreSQL (and so Citus), whose keys include the owner.
    pub fn ids_per_owner(self) -> bool {
        matches!(self, Kind::Postgres | Kind::Citus)
    }

    /// Whether the database is PostgreSQL to the store (plain or Citus).
    pub fn is_postgres(self) -> bool {
        matches!(self, Kind::Postgres | Kind::Citus)
    }
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
            Kind::Citus => {
                let name = format!("chatstore_test_{}", uuid::Uuid::now_v7().simple());
                let url = citus::create_database(&name);
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

    /// Another handle on the database at `url`, which it does not drop.
    pub fn existing(kind: Kind, url: String) -> TestDb {
        TestDb {
            kind,
            url,
            _dir: None,
            server_name: None,
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
            Kind::Postgres | Kind::Citus => diesel::pg::PgConnection::establish(&self.url)
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
            Kind::Postgres | Kind::Citus => {
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
            Kind::Postgres | Kind::Citus => query
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
            Kind::Postgres | Kind::Citus => self
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

    /// Runs `fixture`'s pending migrations with Diesel's harness; returns the versions applied.
    pub fn run_diesel_migrations(&self, fixture: Fixture) -> Vec<String> {
        use diesel_migrations::MigrationHarness;
        fn versions(applied: Vec<diesel::migration::MigrationVersion<'_>>) -> Vec<String> {
            applied.iter().map(ToString::to_string).collect()
        }
        match self.kind {
            #[cfg(feature = "sqlite")]
            Kind::SqliteFile => versions(
                sqlite_connection(&self.url)
                    .run_pending_migrations(migrations(&fixture.dir("sqlite")))
                    .expect("fixture migrations"),
            ),
            #[cfg(feature = "postgres")]
            Kind::Postgres | Kind::Citus => versions(
                diesel::pg::PgConnection::establish(&self.url)
                    .expect("connect")
                    .run_pending_migrations(migrations(&fixture.dir("postgres")))
                    .expect("fixture migrations"),
            ),
            #[cfg(feature = "mysql")]
            Kind::Mysql => versions(
                mysql_connection(&self.url)
                    .run_pending_migrations(migrations(&fixture.dir("mysql")))
                    .expect("fixture migrations"),
            ),
            _ => panic!("no direct connection to {:?}", self.kind),
        }
    }

    /// The names of the database's tables, sorted (PostgreSQL: in the current schema).
    pub fn tables(&self) -> Vec<String> {
        let sql = match self.kind {
            Kind::SqliteFile | Kind::SqliteMemory => {
                "SELECT name AS version FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name NOT LIKE 'chatstore_messages_search_%' ORDER BY name"
            }
            Kind::Postgres | Kind::Citus => {
                // Tables, not views: Citus adds views of its own (`citus_tables`).
                "SELECT table_name::text AS version FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                 ORDER BY table_name"
            }
            Kind::Mysql => {
                "SELECT CAST(table_name AS CHAR) AS version FROM information_schema.tables \
                 WHERE table_schema = DATABASE() ORDER BY table_name"
            }
        };
        let mut tables = self.versions(sql);
        tables.sort();
        tables
    }

    /// The versions in a migration table: chatstore's own, or Diesel's (`__diesel_schema_migrations`).
    pub fn versions_in(&self, table: &str) -> Vec<String> {
        self.versions(&format!("SELECT version FROM {table} ORDER BY version"))
    }

    /// The text column `version` of the rows `sql` selects, read by a connection of its own.
    fn versions(&self, sql: &str) -> Vec<String> {
        let query = diesel::sql_query(sql);
        let rows: Vec<Version> = match self.kind {
            #[cfg(feature = "sqlite")]
            Kind::SqliteFile => query.load(&mut sqlite_connection(&self.url)),
            #[cfg(feature = "postgres")]
            Kind::Postgres | Kind::Citus => {
                query.load(&mut diesel::pg::PgConnection::establish(&self.url).expect("connect"))
            }
            #[cfg(feature = "mysql")]
            Kind::Mysql => query.load(&mut mysql_connection(&self.url)),
            _ => panic!("no direct connection to {:?}", self.kind),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.into_iter().map(|r| r.version).collect()
    }

    /// Runs the newest applied migration's `down.sql` and removes its version from chatstore's
    /// version table, as a revert by hand would.
    pub fn revert_newest_migration(&self) {
        assert!(self.revert_one(), "no migration to revert");
    }

    /// Runs the `down.sql` of the `n` newest migrations, newest first.
    pub fn revert_newest_migrations(&self, n: usize) {
        for _ in 0..n {
            self.revert_newest_migration();
        }
    }

    /// Runs every applied migration's `down.sql`, newest first.
    pub fn revert_all_migrations(&self) {
        while self.revert_one() {}
    }

    /// Reverts the newest applied migration; `false` if none is applied.
    fn revert_one(&self) -> bool {
        match self.kind {
            #[cfg(feature = "sqlite")]
            Kind::SqliteFile => revert_newest(
                &mut sqlite_connection(&self.url),
                migrations("migrations/sqlite"),
            ),
            #[cfg(feature = "postgres")]
            Kind::Postgres | Kind::Citus => revert_newest(
                &mut diesel::pg::PgConnection::establish(&self.url).expect("connect"),
                migrations("migrations/postgres"),
            ),
            #[cfg(feature = "mysql")]
            Kind::Mysql => revert_newest(
                &mut mysql_connection(&self.url),
                migrations("migrations/mysql"),
            ),
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
            (Some(name), Kind::Citus) => citus::drop_database(name),
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

/// A version in chatstore's version table.
#[derive(diesel::QueryableByName)]
pub struct Version {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub version: String,
}

/// Reverts the newest migration recorded in `chatstore_schema_migrations`: its `down.sql`, then
/// its row. `false` if none is recorded.
fn revert_newest<C>(conn: &mut C, source: FileBasedMigrations) -> bool
where
    C: Connection + 'static,
    FileBasedMigrations: MigrationSource<C::Backend>,
    for<'a> SqlQuery: LoadQuery<'a, C, Version>,
{
    let applied: Vec<Version> =
        diesel::sql_query("SELECT version FROM chatstore_schema_migrations ORDER BY version DESC")
            .load(conn)
            .expect("chatstore's versions");
    let Some(newest) = applied.first() else {
        return false;
    };
    let migrations = MigrationSource::<C::Backend>::migrations(&source).expect("migrations");
    let migration = migrations
        .iter()
        .find(|m| m.name().version().to_string() == newest.version)
        .expect("the newest applied migration is embedded");
    migration.revert(conn).expect("revert");
    conn.batch_execute(&format!(
        "DELETE FROM chatstore_schema_migrations WHERE version = '{}'",
        newest.version
    ))
    .expect("forget the version");
    true
}
