//! The embedded schema migrations, one set per backend: the locked run at open, the check of a
//! store that opens without migrating, and the removal of chatstore's objects.
//!
//! chatstore records the versions it applied in a table of its own, `chatstore_schema_migrations`,
//! never in Diesel's default `__diesel_schema_migrations`: a host application's own Diesel
//! migrations keep that one, in the same database, and neither sees the other's versions.

use diesel::backend::Backend as DieselBackend;
use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel::query_builder::SqlQuery;
use diesel::query_dsl::LoadQuery;
use diesel::sql_types::Text;
use diesel_migrations::EmbeddedMigrations;

use super::layout_0_1;
use crate::conn::{Backend, Conn};
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

/// The table of the versions chatstore applied.
pub(crate) const VERSIONS_TABLE: &str = "chatstore_schema_migrations";

/// What a migration run did.
#[derive(Debug, Default)]
pub(crate) struct Migrated {
    /// The versions it applied, oldest first.
    pub(crate) applied: Vec<String>,
    /// Those of them that an interrupted run had left half applied, and this run completed
    /// (MySQL only: the other backends' runs are transactions).
    pub(crate) resumed: Vec<String>,
    /// Whether it moved the rows of a database in chatstore 0.1's layout into the current one.
    pub(crate) upgraded_layout: bool,
}

/// Brings the schema up to date, holding a database-wide lock so that processes opening the same
/// fresh database at once take turns instead of racing on `CREATE TABLE`. Waits at most
/// `lock_timeout` for that lock (SQLite: the connection's busy timeout).
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(unused_variables)
)]
pub(crate) fn run(conn: &mut Conn, lock_timeout: std::time::Duration) -> Result<Migrated> {
    match conn {
        // The write lock, held for the whole run: a failure leaves the schema as it was.
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => c.immediate_transaction(|c| {
            let migrated = migrate(c, Backend::Sqlite, &SQLITE)?;
            if migrated.rewrites_search_text() {
                super::search::rewrite_search_text_sqlite(c)?;
            }
            Ok(migrated)
        }),
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => pg_locked(c, lock_timeout, |c| {
            let migrated = migrate(c, Backend::Postgres, &POSTGRES)?;
            if migrated.rewrites_search_text() {
                super::search::rewrite_search_text_pg(c)?;
            }
            super::citus::distribute(c)?;
            Ok(migrated)
        }),
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => mysql_locked(c, lock_timeout, mysql::migrate),
    }
}

/// The versions a run would apply, oldest first, found without changing anything (no table is
/// created): for a store opened with [`Migrations::Verify`](crate::Migrations::Verify). A
/// database in chatstore 0.1's layout has every version pending: its upgrade is a run's work.
///
/// # Errors
/// [`Error::SchemaTooNew`] if the database has a chatstore version this build does not know.
pub(crate) fn pending(conn: &mut Conn) -> Result<Vec<String>> {
    match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => pending_in(
            c,
            Backend::Sqlite,
            &known::<diesel::sqlite::Sqlite>(&SQLITE)?,
        ),
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => pending_in(c, Backend::Postgres, &known::<diesel::pg::Pg>(&POSTGRES)?),
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => pending_in(c, Backend::Mysql, &known::<diesel::mysql::Mysql>(&MYSQL)?),
    }
}

/// Drops every table chatstore made (with their indexes, constraints and triggers) and its
/// version table, under the migration lock: its `chatstore_…` tables, and those of a 0.1 layout
/// not yet upgraded (recognised as [`layout_0_1::found`] does). Never an object of another program.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(unused_variables)
)]
pub(crate) fn drop_all(conn: &mut Conn, lock_timeout: std::time::Duration) -> Result<()> {
    match conn {
        // The FTS5 index is a virtual table of its own.
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => c.immediate_transaction(|c| {
            drop_tables(
                c,
                Backend::Sqlite,
                &[
                    "chatstore_messages_search",
                    "chatstore_search_state",
                    "chatstore_conversation_tags",
                    "chatstore_branches",
                    "chatstore_messages",
                    "chatstore_conversations",
                    VERSIONS_TABLE,
                ],
            )
        }),
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => pg_locked(c, lock_timeout, |c| {
            drop_tables(
                c,
                Backend::Postgres,
                &[
                    "chatstore_conversation_tags",
                    "chatstore_branches",
                    "chatstore_messages",
                    "chatstore_conversations",
                    VERSIONS_TABLE,
                ],
            )
        }),
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => mysql_locked(c, lock_timeout, |c| {
            drop_tables(
                c,
                Backend::Mysql,
                &[
                    "chatstore_message_words",
                    "chatstore_search_pending",
                    "chatstore_conversation_tags",
                    "chatstore_branches",
                    "chatstore_messages",
                    "chatstore_conversations",
                    VERSIONS_TABLE,
                ],
            )
        }),
    }
}

/// Drops `tables`, those that exist, in order (children first), and what is left of a 0.1 layout.
fn drop_tables<C>(conn: &mut C, backend: Backend, tables: &[&str]) -> Result<()>
where
    C: Connection,
    for<'a> SqlQuery: LoadQuery<'a, C, Name>,
{
    if let Some(layout) = layout_0_1::found(conn, backend)? {
        layout_0_1::drop_all(conn, backend, &layout)?;
    }
    for table in tables {
        conn.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))?;
    }
    Ok(())
}

/// Runs `f` in one transaction holding the migration lock. One transaction, so that it also works
/// through a transaction-mode pooler (PgBouncer, serverless endpoints): the lock is a transaction
/// lock, released at commit or rollback on whichever server connection ran it, and a failed run
/// leaves nothing half done.
#[cfg(feature = "postgres")]
fn pg_locked<T>(
    conn: &mut diesel::PgConnection,
    lock_timeout: std::time::Duration,
    f: impl FnOnce(&mut diesel::PgConnection) -> Result<T>,
) -> Result<T> {
    conn.transaction(|c| {
        // A migrator that hangs while holding the lock must not hang every process that opens.
        diesel::sql_query(format!(
            "SET LOCAL lock_timeout = {}",
            lock_timeout.as_millis()
        ))
        .execute(c)?;
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(PG_MIGRATION_LOCK)
            .execute(c)?;
        f(c)
    })
}

/// Runs `f` holding the migration lock. MySQL commits each DDL statement on its own, so no
/// transaction can hold a run: a named lock of the session does (named after the database, as
/// names are server-wide), released however `f` ends. Instead of a transaction, every statement
/// is guarded (see `mysql_migrations`): a run cut short at any point is completed by the next.
#[cfg(feature = "mysql")]
fn mysql_locked<T>(
    conn: &mut diesel::MysqlConnection,
    lock_timeout: std::time::Duration,
    f: impl FnOnce(&mut diesel::MysqlConnection) -> Result<T>,
) -> Result<T> {
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
    .get_result(conn)?;
    if lock.locked != Some(1) {
        return Err(Error::busy_waiting(format!(
            "another process held the migration lock for over {seconds} s"
        )));
    }
    let result = f(conn);
    let released =
        diesel::sql_query("DO RELEASE_LOCK(CONCAT('chatstore:', MD5(DATABASE())))").execute(conn);
    // The run's own error, if any, comes first.
    let done = result?;
    released?;
    Ok(done)
}

/// The version of the migration after which the store re-reads the words of every stored message
/// (the rule that reads words changed: see `search.rs`).
const WORDS_MIGRATION: &str = "20261202000004";

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Migrated {
    /// Whether this run applied the migration `version`.
    fn applied(&self, version: &str) -> bool {
        self.applied.iter().any(|v| v == version)
    }

    /// Whether the store must re-read the words of every stored message after this run: the rule
    /// that reads them changed, or rows came from the 0.1 layout without them.
    fn rewrites_search_text(&self) -> bool {
        self.applied(WORDS_MIGRATION) || self.upgraded_layout
    }
}

/// The versions of `source`, oldest first.
fn known<DB: DieselBackend>(source: &EmbeddedMigrations) -> Result<Vec<String>>
where
    EmbeddedMigrations: MigrationSource<DB>,
{
    let mut known: Vec<String> = MigrationSource::<DB>::migrations(source)
        .map_err(Error::migration)?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    known.sort();
    Ok(known)
}

/// Refuses a database migrated by a newer chatstore, then applies what is pending, recording each
/// version (the caller's transaction makes the run all or nothing, so nothing is ever resumed),
/// then moves the rows of a database in the 0.1 layout into the tables just made.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn migrate<C>(conn: &mut C, backend: Backend, source: &EmbeddedMigrations) -> Result<Migrated>
where
    C: Connection + 'static,
    EmbeddedMigrations: MigrationSource<C::Backend>,
    for<'a> SqlQuery: LoadQuery<'a, C, Name>,
{
    let mut migrations =
        MigrationSource::<C::Backend>::migrations(source).map_err(Error::migration)?;
    migrations.sort_by_key(|m| m.name().version().to_string());
    let known: Vec<String> = migrations
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    create_versions_table(conn, backend)?;
    let applied = applied_versions(conn)?;
    refuse_newer(&known, &applied)?;
    let old_layout = old_layout(conn, backend, &applied)?;
    let mut migrated = Migrated::default();
    for migration in &migrations {
        let version = migration.name().version().to_string();
        if applied.contains(&version) {
            continue;
        }
        migration.run(conn).map_err(Error::migration)?;
        record_version(conn, &version)?;
        migrated.applied.push(version);
    }
    if let Some(layout) = &old_layout {
        layout_0_1::upgrade(conn, backend, layout, |_| Ok(()))?;
        migrated.upgraded_layout = true;
    }
    Ok(migrated)
}

/// What [`pending`] names when a database of chatstore 0.1's layout waits for its upgrade, and
/// the name its steps are reported under, as a migration's are.
pub(crate) const UPGRADE_0_1: &str = "upgrade from the 0.1 layout";

/// The 0.1 layout a run must upgrade, given the versions recorded in chatstore's own table. On
/// SQLite and PostgreSQL an upgrade is part of the run that records the versions, so a database
/// with versions recorded has none left (another program's tables of 0.1's names are its own); on
/// MySQL one may have been cut short after they were recorded.
fn old_layout<C>(
    conn: &mut C,
    backend: Backend,
    applied: &[String],
) -> Result<Option<layout_0_1::OldLayout>>
where
    C: Connection,
    for<'a> SqlQuery: LoadQuery<'a, C, Name>,
{
    match (backend, applied.is_empty()) {
        (Backend::Mysql, _) | (_, true) => layout_0_1::found(conn, backend),
        (Backend::Sqlite | Backend::Postgres, false) => Ok(None),
    }
}

/// [`pending`] on a typed connection.
fn pending_in<C>(conn: &mut C, backend: Backend, known: &[String]) -> Result<Vec<String>>
where
    C: Connection,
    for<'a> SqlQuery: LoadQuery<'a, C, Name>,
{
    let applied = match table_exists(conn, backend, VERSIONS_TABLE)? {
        true => applied_versions(conn)?,
        false => Vec::new(),
    };
    refuse_newer(known, &applied)?;
    let mut pending: Vec<String> = known
        .iter()
        .filter(|v| !applied.contains(v))
        .cloned()
        .collect();
    if old_layout(conn, backend, &applied)?.is_some() {
        pending.push(UPGRADE_0_1.to_owned());
    }
    Ok(pending)
}

/// [`Error::SchemaTooNew`] if a version in `applied` is not `known`.
fn refuse_newer(known: &[String], applied: &[String]) -> Result<()> {
    match applied.iter().find(|v| !known.contains(v)) {
        Some(unknown) => Err(Error::SchemaTooNew {
            found: unknown.clone(),
            known: known.iter().max().cloned().unwrap_or_default(),
        }),
        None => Ok(()),
    }
}

/// A name read by hand-written SQL (a version, a table).
#[derive(QueryableByName)]
pub(crate) struct Name {
    #[diesel(sql_type = Text)]
    pub(crate) name: String,
}

/// Loads the names `sql` selects (as `name`).
pub(crate) fn names<C>(conn: &mut C, sql: &str) -> Result<Vec<String>>
where
    C: Connection,
    for<'a> SqlQuery: LoadQuery<'a, C, Name>,
{
    let rows: Vec<Name> = diesel::sql_query(sql).load(conn)?;
    Ok(rows.into_iter().map(|row| row.name).collect())
}

/// Whether the database (PostgreSQL: the current schema) has a table `table`.
pub(crate) fn table_exists<C>(conn: &mut C, backend: Backend, table: &str) -> Result<bool>
where
    C: Connection,
    for<'a> SqlQuery: LoadQuery<'a, C, Name>,
{
    // A table has at least one column.
    Ok(!columns(conn, backend, table)?.is_empty())
}

/// The columns of `table` (PostgreSQL: in the current schema); none if there is no such table.
pub(crate) fn columns<C>(conn: &mut C, backend: Backend, table: &str) -> Result<Vec<String>>
where
    C: Connection,
    for<'a> SqlQuery: LoadQuery<'a, C, Name>,
{
    // `table` is one of the store's own names, never input: it is written into the SQL.
    debug_assert!(table
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    let sql = match backend {
        Backend::Sqlite => format!("SELECT name FROM pragma_table_info('{table}')"),
        Backend::Postgres => format!(
            "SELECT column_name::text AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = '{table}'"
        ),
        Backend::Mysql => format!(
            "SELECT CAST(column_name AS CHAR) AS name FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = '{table}'"
        ),
    };
    names(conn, &sql)
}

/// Makes the version table if it is missing.
fn create_versions_table(conn: &mut impl Connection, backend: Backend) -> Result<()> {
    let engine = match backend {
        Backend::Mysql => " ENGINE = InnoDB",
        Backend::Sqlite | Backend::Postgres => "",
    };
    conn.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (\
         version VARCHAR(50) NOT NULL PRIMARY KEY, \
         run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP){engine}"
    ))?;
    Ok(())
}

/// The versions recorded as applied, oldest first.
fn applied_versions<C>(conn: &mut C) -> Result<Vec<String>>
where
    C: Connection,
    for<'a> SqlQuery: LoadQuery<'a, C, Name>,
{
    names(
        conn,
        &format!("SELECT version AS name FROM {VERSIONS_TABLE} ORDER BY version"),
    )
}

/// Records `version` as applied, once everything it makes is in place.
fn record_version(conn: &mut impl Connection, version: &str) -> Result<()> {
    // Versions are the embedded migrations' own, all digits: written into the SQL.
    debug_assert!(version.bytes().all(|b| b.is_ascii_digit()));
    conn.batch_execute(&format!(
        "INSERT INTO {VERSIONS_TABLE} (version) VALUES ('{version}')"
    ))?;
    Ok(())
}

/// A step done: with the `tracing` feature, a `debug` event `chatstore migration step` with
/// the fields `migration` (its name), `step` (from 1), `steps` (its statements, the filling of
/// the search index where it has one, and the recording of its version) and `done`
/// (`applied`, `already present`, `indexed stored messages` or `recorded`). The upgrade of a
/// database in the 0.1 layout reports its four steps alike, as the migration `upgrade from
/// the 0.1 layout` (`copied rows`, `indexed stored messages`, `dropped old tables`,
/// `recorded`).
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
pub(crate) fn report_step(migration: &str, step: usize, steps: usize, done: &'static str) {
    #[cfg(feature = "tracing")]
    tracing::debug!(migration, step, steps, done, "chatstore migration step");
}

/// The MySQL run: statement by statement, each skipped if the catalog shows it took effect.
#[cfg(feature = "mysql")]
mod mysql {
    use diesel::MysqlConnection;

    use super::{
        applied_versions, create_versions_table, layout_0_1, old_layout, record_version,
        refuse_newer, report_step, Migrated, MYSQL,
    };
    use crate::conn::Backend;
    use crate::queries::mysql_migrations::{self as steps, State};
    use crate::{Error, Result};

    /// The version of the migration that creates the search index, which the store fills itself.
    const SEARCH_MIGRATION: &str = "20261125000003";

    /// Refuses a database migrated by a newer chatstore, then applies each pending migration:
    /// looks up which of its statements took effect in an interrupted run (refusing an object
    /// made in another shape), runs the others, fills what the store fills itself, and only then
    /// records the version.
    pub(super) fn migrate(conn: &mut MysqlConnection) -> Result<Migrated> {
        // Parsed whole before anything runs: a statement that cannot be guarded runs nothing.
        let migrations = steps::load(&MYSQL)?;
        let known: Vec<String> = migrations.iter().map(|m| m.version.clone()).collect();
        create_versions_table(conn, Backend::Mysql)?;
        let applied = applied_versions(conn)?;
        refuse_newer(&known, &applied)?;
        let old_layout = old_layout(conn, Backend::Mysql, &applied)?;
        let mut migrated = Migrated::default();
        for migration in migrations.iter().filter(|m| !applied.contains(&m.version)) {
            let mut states = Vec::with_capacity(migration.statements.len());
            for statement in &migration.statements {
                match steps::state(conn, &statement.step)? {
                    State::Differs(difference) => {
                        return Err(Error::SchemaConflict {
                            migration: migration.name.clone(),
                            object: statement.step.to_string(),
                            difference,
                        })
                    }
                    state => states.push(state),
                }
            }
            let present = states.iter().filter(|s| **s == State::Present).count();
            if present > 0 {
                report_half_applied(&migration.name, present, states.len());
                migrated.resumed.push(migration.version.clone());
            }
            // The search migrations' last step is the store's: indexing the stored messages (those
            // not yet indexed; all of them once the rule that reads words changed).
            let indexes = migration.version == SEARCH_MIGRATION
                || migration.version == super::WORDS_MIGRATION;
            let steps = migration.statements.len() + usize::from(indexes) + 1;
            for (i, (statement, state)) in migration.statements.iter().zip(&states).enumerate() {
                let done = match state {
                    State::Absent => {
                        steps::execute(conn, migration, statement)?;
                        "applied"
                    }
                    _ => "already present",
                };
                report_step(&migration.name, i + 1, steps, done);
            }
            if indexes {
                // Before the version is recorded, so that a run cut short here is carried on by
                // the next one, which indexes the messages still missing.
                if migration.version == SEARCH_MIGRATION {
                    crate::queries::search::index_unindexed_messages(conn)?;
                } else {
                    crate::queries::search::reindex_stored_messages(conn)?;
                }
                report_step(&migration.name, steps - 1, steps, "indexed stored messages");
            }
            record_version(conn, &migration.version)?;
            report_step(&migration.name, steps, steps, "recorded");
            migrated.applied.push(migration.version.clone());
        }
        if let Some(layout) = &old_layout {
            // Each step is safe to repeat: an upgrade cut short is carried on by the next run.
            layout_0_1::upgrade(conn, Backend::Mysql, layout, |conn| {
                crate::queries::search::index_unindexed_messages(conn)
            })?;
            migrated.upgraded_layout = true;
        }
        Ok(migrated)
    }

    /// A pending migration found half applied (`present` of its `statements` took effect in a run
    /// cut short): with the `tracing` feature, a `warn` event, as this run completes it.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    fn report_half_applied(migration: &str, present: usize, statements: usize) {
        #[cfg(feature = "tracing")]
        tracing::warn!(
            migration,
            present,
            statements,
            "chatstore migration was left half applied by an interrupted run: completing it"
        );
    }
}
