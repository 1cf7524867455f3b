//! The upgrade in place of a database laid out by chatstore 0.1.
//!
//! chatstore 0.1 named its tables `conversations` and `messages` (MySQL: and `message_words`;
//! SQLite: and the FTS5 table `messages_search`), and recorded its versions in Diesel's
//! `__diesel_schema_migrations`, where a host application's Diesel migrations also record theirs.
//! Such a database is recognised by chatstore's versions in Diesel's table together with tables of
//! 0.1's names and columns ([`found`]): a host's own `messages` table, or chatstore's versions
//! recorded there by a host's tooling, are not enough. The migration run then makes the current,
//! `chatstore_…` tables as for a new database, and [`move_rows`] copies the rows into them; the old
//! tables are dropped and chatstore's versions leave Diesel's table (the host's rows there stay, as
//! does the table itself).
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

use super::migrations::{columns, names, report_step, table_exists, Name, UPGRADE_0_1};
use crate::conn::Backend;
use crate::Result;

/// The versions chatstore 0.1 recorded in Diesel's table.
const VERSIONS_0_1: &str =
    "('20261124000001', '20261125000002', '20261125000003', '20261202000004')";

/// Diesel's default migration table, where chatstore 0.1 recorded its versions.
const DIESEL_TABLE: &str = "__diesel_schema_migrations";

/// What a database keeps of chatstore 0.1's layout.
#[derive(Debug, Default)]
pub(crate) struct OldLayout {
    /// Its tables that hold rows to move: `conversations` and `messages` as 0.1 made them.
    tables: Vec<&'static str>,
}

/// The 0.1 tables and the columns that tell them from another program's tables of those names.
const TABLES: [(&str, &str, &[&str]); 2] = [
    (
        "conversations",
        "chatstore_conversations",
        &[
            "id",
            "user_id",
            "title",
            "created_at",
            "updated_at",
            "message_count",
        ],
    ),
    (
        "messages",
        "chatstore_messages",
        // `search_text` is left out: the 0.1 layout may predate it, and the run rewrites it.
        &[
            "id",
            "conversation_id",
            "user_id",
            "seq",
            "role",
            "content",
            "metadata",
            "created_at",
        ],
    ),
];

/// Chatstore 0.1's layout, if the database holds it: chatstore's versions in Diesel's table, and
/// tables named and shaped as 0.1 made them (PostgreSQL: in the current schema). `None` otherwise,
/// and always once an upgrade has finished.
pub(crate) fn found<C>(conn: &mut C, backend: Backend) -> Result<Option<OldLayout>>
where
    C: Connection,
    for<'a> SqlQuery: LoadQuery<'a, C, Name>,
{
    if !table_exists(conn, backend, DIESEL_TABLE)? {
        return Ok(None);
    }
    let versions = names(
        conn,
        &format!(
            "SELECT CAST(version AS {}) AS name FROM {DIESEL_TABLE} WHERE version IN {VERSIONS_0_1}",
            text_type(backend)
        ),
    )?;
    if versions.is_empty() {
        return Ok(None);
    }
    let mut layout = OldLayout::default();
    for (table, _, expected) in TABLES {
        let present = columns(conn, backend, table)?;
        if expected.iter().all(|c| present.iter().any(|p| p == c)) {
            layout.tables.push(table);
        }
    }
    Ok((!layout.tables.is_empty()).then_some(layout))
}

/// Moves `layout` into the current tables (made by the migrations just run): copies the rows of
/// its tables, skipping rows already there, drops the 0.1 tables (with their indexes,
/// constraints, triggers, and the 0.1 search index), and removes chatstore's versions from
/// Diesel's table, leaving any other program's rows. Each step is safe to repeat, and the versions
/// go last: on MySQL, an upgrade cut short is carried on by the next run.
///
/// The search index is not copied: SQLite's triggers and PostgreSQL's generated column index each
/// copied message, and the run then re-reads words as after the words migration (MySQL: `indexed`
/// runs between the copy and the drops, to index the copied messages).
pub(crate) fn upgrade<C>(
    conn: &mut C,
    backend: Backend,
    layout: &OldLayout,
    indexed: impl FnOnce(&mut C) -> Result<()>,
) -> Result<()>
where
    C: Connection,
{
    for (old, new, columns) in TABLES {
        if layout.tables.contains(&old) {
            let columns = columns.join(", ");
            conn.batch_execute(&format!(
                "INSERT INTO {new} ({columns}) SELECT {columns} FROM {old} o \
                 WHERE NOT EXISTS (SELECT 1 FROM {new} n WHERE n.id = o.id)"
            ))?;
        }
    }
    report_step(UPGRADE_0_1, 1, 4, "copied rows");
    indexed(conn)?;
    report_step(UPGRADE_0_1, 2, 4, "indexed stored messages");
    drop_tables(conn, backend, layout)?;
    report_step(UPGRADE_0_1, 3, 4, "dropped old tables");
    forget_versions(conn)?;
    report_step(UPGRADE_0_1, 4, 4, "recorded");
    Ok(())
}

/// Drops what is left of `layout`: for an operator's reset of the schema (nothing is copied).
pub(crate) fn drop_all<C: Connection>(
    conn: &mut C,
    backend: Backend,
    layout: &OldLayout,
) -> Result<()> {
    drop_tables(conn, backend, layout)?;
    forget_versions(conn)
}

/// Drops the tables of `layout`, and the 0.1 search index with the messages it indexes.
fn drop_tables(conn: &mut impl Connection, backend: Backend, layout: &OldLayout) -> Result<()> {
    let index = match backend {
        Backend::Sqlite => Some("messages_search"),
        Backend::Postgres => None,
        Backend::Mysql => Some("message_words"),
    };
    let messages = layout.tables.contains(&"messages");
    let tables = index.filter(|_| messages).into_iter().chain(
        ["messages", "conversations"]
            .into_iter()
            .filter(|t| layout.tables.contains(t)),
    );
    for table in tables {
        conn.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))?;
    }
    Ok(())
}

/// Removes chatstore's versions from Diesel's table, leaving any other program's rows.
fn forget_versions(conn: &mut impl Connection) -> Result<()> {
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
