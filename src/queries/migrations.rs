//! The embedded schema migrations, one set per backend, and the locked run at open.

use diesel::backend::Backend as DieselBackend;
use diesel::migration::{MigrationSource, MigrationVersion};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

use crate::conn::Conn;
use crate::{Error, Result};

#[cfg(feature = "sqlite")]
const SQLITE: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/sqlite");
#[cfg(feature = "postgres")]
const POSTGRES: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/postgres");
#[cfg(feature = "mysql")]
const MYSQL: EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/mysql");

/// Key of the PostgreSQL advisory lock that serializes migration runs ("chatstor" in ASCII).
#[cfg(feature = "postgres")]
const PG_MIGRATION_LOCK: i64 = 0x6368_6174_7374_6f72;

/// Brings the schema up to date, holding a database-wide lock so that processes opening the same
/// fresh database at once take turns instead of racing on `CREATE TABLE`. Waits at most
/// `lock_timeout` for that lock (SQLite: the connection's busy timeout). Returns the versions of
/// the migrations it applied.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(unused_variables)
)]
pub(crate) fn run(conn: &mut Conn, lock_timeout: std::time::Duration) -> Result<Vec<String>> {
    let applied = match conn {
        #[cfg(feature = "sqlite")]
        // The write lock, held for the whole run; each migration nests as a savepoint, so a failure
        // leaves the schema as it was before the run.
        Conn::Sqlite(c) => c.immediate_transaction(|c| {
            let applied = migrate(c, SQLITE)?;
            if applied_any(&applied, &[WORDS_MIGRATION]) {
                super::search::rewrite_search_text_sqlite(c)?;
            }
            Ok::<_, Error>(applied)
        })?,
        // One transaction, so that it also works through a transaction-mode pooler (PgBouncer,
        // serverless endpoints): the lock is a transaction lock, released at commit or rollback
        // on whichever server connection ran it, and a failed run leaves no migration half done.
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => c.transaction(|c| {
            // A migrator that hangs while holding the lock must not hang every process that opens.
            diesel::sql_query(format!(
                "SET LOCAL lock_timeout = {}",
                lock_timeout.as_millis()
            ))
            .execute(c)?;
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(PG_MIGRATION_LOCK)
                .execute(c)?;
            let applied = migrate(c, POSTGRES)?;
            if applied_any(&applied, &[WORDS_MIGRATION]) {
                super::search::rewrite_search_text_pg(c)?;
            }
            Ok::<_, Error>(applied)
        })?,
        // MySQL commits each DDL statement on its own, so no transaction can hold a run: a named
        // lock of the session does (named after the database, as names are server-wide),
        // released however the run ends. A run that fails part-way may
        // leave its migration half applied (MySQL cannot roll DDL back).
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => {
            #[derive(QueryableByName)]
            struct Locked {
                #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Integer>)]
                locked: Option<i32>,
            }
            // GET_LOCK counts whole seconds (fractions on MariaDB only): rounded up.
            let seconds = lock_timeout.as_millis().div_ceil(1000).max(1);
            let lock: Locked = diesel::sql_query(format!(
                "SELECT GET_LOCK(CONCAT('chatstore:', MD5(DATABASE())), {seconds}) AS locked"
            ))
            .get_result(c)?;
            if lock.locked != Some(1) {
                return Err(Error::busy(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::Unknown,
                    Box::new(format!(
                        "another process held the migration lock for over {seconds} s"
                    )),
                )));
            }
            let result = migrate(c, MYSQL).and_then(|applied| {
                // The search index is filled by the store, not by SQL: the migrations that create
                // it and that change how words are read index the messages already stored here.
                if applied_any(&applied, &[SEARCH_MIGRATION, WORDS_MIGRATION]) {
                    super::search::index_stored_messages(c)?;
                }
                Ok(applied)
            });
            let released =
                diesel::sql_query("DO RELEASE_LOCK(CONCAT('chatstore:', MD5(DATABASE())))")
                    .execute(c);
            // The run's own error, if any, comes first.
            let applied = result?;
            released?;
            applied
        }
    };
    Ok(applied.iter().map(ToString::to_string).collect())
}

/// The version of the migration that creates the search index.
#[cfg(feature = "mysql")]
const SEARCH_MIGRATION: &str = "20261125000003";

/// The version of the migration after which the store re-reads the words of every stored message
/// (the rule that reads words changed: see `search.rs`).
const WORDS_MIGRATION: &str = "20261202000004";

/// Whether `applied` holds one of `versions`.
fn applied_any(applied: &[MigrationVersion<'static>], versions: &[&str]) -> bool {
    applied
        .iter()
        .any(|v| versions.contains(&v.to_string().as_str()))
}

/// Refuses a database migrated by a newer chatstore, then applies what is pending; returns the
/// versions it applied.
fn migrate<C, DB>(
    conn: &mut C,
    source: EmbeddedMigrations,
) -> Result<Vec<MigrationVersion<'static>>>
where
    C: MigrationHarness<DB>,
    DB: DieselBackend,
    EmbeddedMigrations: MigrationSource<DB>,
{
    let known: Vec<MigrationVersion<'static>> = MigrationSource::<DB>::migrations(&source)
        .map_err(Error::Migration)?
        .iter()
        .map(|m| m.name().version().as_owned())
        .collect();
    let applied = conn.applied_migrations().map_err(Error::Migration)?;
    if let Some(unknown) = applied.iter().find(|v| !known.contains(v)) {
        return Err(Error::SchemaTooNew {
            found: unknown.to_string(),
            known: known
                .iter()
                .max()
                .map(ToString::to_string)
                .unwrap_or_default(),
        });
    }
    let applied = conn
        .run_pending_migrations(source)
        .map_err(Error::Migration)?;
    Ok(applied.into_iter().map(|v| v.as_owned()).collect())
}
