//! The upgrade in place of a database laid out by chatstore 0.1.
//!
//! chatstore 0.1 named its tables `conversations` and `messages` (MySQL: and `message_words`;
//! SQLite: and the FTS5 table `messages_search`), and recorded its versions in Diesel's
//! `__diesel_schema_migrations`, where a host application's Diesel migrations also record theirs.
//! Such a database is recognised by chatstore's versions in Diesel's table. The migration run then
//! makes the current, `chatstore_…` tables as for a new database, and [`move_rows`] copies the
//! rows into them; the old tables are dropped and chatstore's versions leave Diesel's table (the
//! host's rows there stay, as does the table itself).
//!
//! On SQLite and PostgreSQL all of it is part of the run's one transaction. On MySQL each step is
//! safe to repeat, and the versions leave Diesel's table last, so that an upgrade cut short is
//! carried on by the next open: copies skip the rows already copied, drops the tables gone.
//!
//! Copying rather than renaming costs time and space in proportion to the data, once; in return
//! there is one set of migrations that makes the schema, whichever way a database came to it.

use diesel::prelude::*;
use diesel::query_builder::SqlQuery;
use diesel::query_dsl::LoadQuery;

use super::migrations::{names, table_exists, Name};
use crate::conn::Backend;
use crate::Result;

/// The versions chatstore 0.1 recorded in Diesel's table.
const VERSIONS_0_1: &str =
    "('20261124000001', '20261125000002', '20261125000003', '20261202000004')";

/// Diesel's default migration table, where chatstore 0.1 recorded its versions.
const DIESEL_TABLE: &str = "__diesel_schema_migrations";

/// The chatstore versions recorded in Diesel's table: none unless the database is in the 0.1
/// layout (or its upgrade was cut short, on MySQL).
pub(crate) fn recorded_versions<C>(conn: &mut C, backend: Backend) -> Result<Vec<String>>
where
    C: Connection,
    for<'a> SqlQuery: LoadQuery<'a, C, Name>,
{
    if !table_exists(conn, backend, DIESEL_TABLE)? {
        return Ok(Vec::new());
    }
    names(
        conn,
        &format!(
            "SELECT CAST(version AS {}) AS name FROM {DIESEL_TABLE} WHERE version IN {VERSIONS_0_1}",
            text_type(backend)
        ),
    )
}

/// Copies the rows of the 0.1 tables that still exist into the current tables, skipping rows
/// already there. The search index is not copied: SQLite's triggers and PostgreSQL's generated
/// column index each copied message, and the run then re-reads words as after the words
/// migration (MySQL: the caller indexes the copied messages).
pub(crate) fn move_rows<C>(conn: &mut C, backend: Backend) -> Result<()>
where
    C: Connection,
    for<'a> SqlQuery: LoadQuery<'a, C, Name>,
{
    const CONVERSATIONS: &str = "id, user_id, title, created_at, updated_at, message_count";
    // `search_text` is left out: the 0.1 layout may predate it, and the run rewrites it.
    const MESSAGES: &str = "id, conversation_id, user_id, seq, role, content, metadata, created_at";
    for (old, new, columns) in [
        ("conversations", "chatstore_conversations", CONVERSATIONS),
        ("messages", "chatstore_messages", MESSAGES),
    ] {
        if table_exists(conn, backend, old)? {
            conn.batch_execute(&format!(
                "INSERT INTO {new} ({columns}) SELECT {columns} FROM {old} o \
                 WHERE NOT EXISTS (SELECT 1 FROM {new} n WHERE n.id = o.id)"
            ))?;
        }
    }
    Ok(())
}

/// Drops the 0.1 tables (with their indexes, constraints and triggers), children first.
pub(crate) fn drop_old_tables(conn: &mut impl Connection, backend: Backend) -> Result<()> {
    let tables: &[&str] = match backend {
        Backend::Sqlite => &["messages_search", "messages", "conversations"],
        Backend::Postgres => &["messages", "conversations"],
        Backend::Mysql => &["message_words", "messages", "conversations"],
    };
    for table in tables {
        conn.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))?;
    }
    Ok(())
}

/// Removes chatstore's versions from Diesel's table, leaving any other program's rows.
pub(crate) fn forget_versions(conn: &mut impl Connection) -> Result<()> {
    conn.batch_execute(&format!(
        "DELETE FROM {DIESEL_TABLE} WHERE version IN {VERSIONS_0_1}"
    ))?;
    Ok(())
}

/// The type a text column is cast to, so that it loads as text on each backend.
fn text_type(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite | Backend::Postgres => "TEXT",
        Backend::Mysql => "CHAR",
    }
}
