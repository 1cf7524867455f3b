//! The embedded schema migrations, one set per backend, and the locked run at open.

use diesel::backend::Backend as DieselBackend;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
use diesel::migration::MigrationSource;
use diesel::migration::MigrationVersion;
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

/// What a migration run did.
#[derive(Debug, Default)]
pub(crate) struct Migrated {
    /// The versions it applied, oldest first.
    pub(crate) applied: Vec<String>,
    /// Those of them that an interrupted run had left half applied, and this run completed
    /// (MySQL only: the other backends' runs are transactions).
    pub(crate) resumed: Vec<String>,
}

/// Brings the schema up to date, holding a database-wide lock so that processes opening the same
/// fresh database at once take turns instead of racing on `CREATE TABLE`. Waits at most
/// `lock_timeout` for that lock (SQLite: the connection's busy timeout).
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(unused_variables)
)]
pub(crate) fn run(conn: &mut Conn, lock_timeout: std::time::Duration) -> Result<Migrated> {
    let migrated = match conn {
        #[cfg(feature = "sqlite")]
        // The write lock, held for the whole run; each migration nests as a savepoint, so a failure
        // leaves the schema as it was before the run.
        Conn::Sqlite(c) => c.immediate_transaction(|c| {
            let migrated = migrate(c, SQLITE)?;
            if migrated.applied(WORDS_MIGRATION) {
                super::search::rewrite_search_text_sqlite(c)?;
            }
            Ok::<_, Error>(migrated)
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
            let migrated = migrate(c, POSTGRES)?;
            if migrated.applied(WORDS_MIGRATION) {
                super::search::rewrite_search_text_pg(c)?;
            }
            Ok::<_, Error>(migrated)
        })?,
        // MySQL commits each DDL statement on its own, so no transaction can hold a run: a named
        // lock of the session does (named after the database, as names are server-wide),
        // released however the run ends. Instead of a transaction, every statement is guarded
        // (see `mysql_migrations`): a run cut short at any point is completed by the next.
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
                return Err(Error::busy_waiting(format!(
                    "another process held the migration lock for over {seconds} s"
                )));
            }
            let result = mysql::migrate(c);
            let released =
                diesel::sql_query("DO RELEASE_LOCK(CONCAT('chatstore:', MD5(DATABASE())))")
                    .execute(c);
            // The run's own error, if any, comes first.
            let migrated = result?;
            released?;
            migrated
        }
    };
    Ok(migrated)
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
}

/// Refuses a database migrated by a newer chatstore, then applies what is pending in one batch per
/// migration (the caller's transaction makes the run all or nothing, so nothing is ever resumed).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn migrate<C, DB>(conn: &mut C, source: EmbeddedMigrations) -> Result<Migrated>
where
    C: MigrationHarness<DB>,
    DB: DieselBackend,
    EmbeddedMigrations: MigrationSource<DB>,
{
    let known: Vec<String> = MigrationSource::<DB>::migrations(&source)
        .map_err(Error::migration)?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    refuse_newer(&known, &applied_versions(conn)?)?;
    let applied = conn
        .run_pending_migrations(source)
        .map_err(Error::migration)?;
    Ok(Migrated {
        applied: applied.iter().map(ToString::to_string).collect(),
        resumed: Vec::new(),
    })
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

// The version bookkeeping: Diesel's `__diesel_schema_migrations` table, which the harness creates
// if it is missing. (Issue 14 moves it into a table of chatstore's own: these two functions, and
// Diesel's `run_pending_migrations` for SQLite and PostgreSQL, are where it lives.)

/// The versions recorded as applied.
fn applied_versions<C, DB>(conn: &mut C) -> Result<Vec<String>>
where
    C: MigrationHarness<DB>,
    DB: DieselBackend,
{
    let applied: Vec<MigrationVersion<'static>> =
        conn.applied_migrations().map_err(Error::migration)?;
    Ok(applied.iter().map(ToString::to_string).collect())
}

/// Records `version` as applied, once everything it makes is in place.
#[cfg(feature = "mysql")]
fn record_version(conn: &mut diesel::MysqlConnection, version: &str) -> Result<()> {
    diesel::sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES (?)")
        .bind::<diesel::sql_types::Text, _>(version)
        .execute(conn)?;
    Ok(())
}

/// The MySQL run: statement by statement, each skipped if the catalog shows it took effect.
#[cfg(feature = "mysql")]
mod mysql {
    use diesel::MysqlConnection;

    use super::{applied_versions, record_version, refuse_newer, Migrated, MYSQL};
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
        let applied = applied_versions(conn)?;
        refuse_newer(&known, &applied)?;
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
        Ok(migrated)
    }

    /// A step done: with the `tracing` feature, a `debug` event `chatstore migration step` with
    /// the fields `migration` (its name), `step` (from 1), `steps` (its statements, the filling of
    /// the search index where it has one, and the recording of its version) and `done`
    /// (`applied`, `already present`, `indexed stored messages` or `recorded`).
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    fn report_step(migration: &str, step: usize, steps: usize, done: &'static str) {
        #[cfg(feature = "tracing")]
        tracing::debug!(migration, step, steps, done, "chatstore migration step");
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
