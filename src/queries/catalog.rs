//! What the database's own catalog says exists.

use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::conn::{Backend, Conn};
use crate::verify::ItemKind;
use crate::Result;

#[derive(QueryableByName)]
struct CatalogRow {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    definition: Option<String>,
}

/// The tables, indexes and named constraints in the database (the current schema on PostgreSQL).
pub(crate) fn objects(conn: &mut Conn) -> Result<Vec<(ItemKind, String)>> {
    let sql = match conn.backend() {
        // A virtual table is the FTS5 full-text index, which PostgreSQL keeps as a GIN index.
        Backend::Sqlite => {
            "SELECT CASE WHEN sql LIKE 'CREATE VIRTUAL TABLE%' THEN 'index' ELSE type END AS kind, \
             name, sql AS definition FROM sqlite_master"
        }
        Backend::Postgres => {
            "SELECT 'table' AS kind, table_name::text AS name, NULL::text AS definition \
               FROM information_schema.tables WHERE table_schema = current_schema() \
             UNION ALL \
             SELECT 'index', indexname::text, NULL FROM pg_indexes \
               WHERE schemaname = current_schema() \
             UNION ALL \
             SELECT 'constraint', c.conname::text, NULL FROM pg_constraint c \
               JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = current_schema()"
        }
        // The full-text index is `messages_search` on the store's own word table.
        Backend::Mysql => {
            "SELECT 'table' AS kind, CAST(table_name AS CHAR) AS name, NULL AS definition \
               FROM information_schema.tables WHERE table_schema = DATABASE() \
             UNION ALL \
             SELECT DISTINCT 'index', CAST(index_name AS CHAR), NULL FROM information_schema.statistics \
               WHERE table_schema = DATABASE() \
             UNION ALL \
             SELECT 'constraint', CAST(constraint_name AS CHAR), NULL \
               FROM information_schema.table_constraints \
               WHERE constraint_schema = DATABASE() AND constraint_type IN ('CHECK', 'FOREIGN KEY')"
        }
    };
    let rows: Vec<CatalogRow> = diesel::sql_query(sql).load(conn)?;
    let mut found = Vec::new();
    for row in rows {
        // SQLite has no catalog of constraints: a named one is found in its table's CREATE statement.
        if let Some(definition) = &row.definition {
            found.extend(constraint_names(definition).map(|c| (ItemKind::Constraint, c)));
        }
        let kind = match row.kind.as_str() {
            "table" => ItemKind::Table,
            "index" => ItemKind::Index,
            "constraint" => ItemKind::Constraint,
            _ => continue,
        };
        found.push((kind, row.name));
    }
    Ok(found)
}

/// The names in `CONSTRAINT name` clauses of a CREATE statement.
fn constraint_names(sql: &str) -> impl Iterator<Item = String> + '_ {
    let mut words = sql.split_whitespace();
    std::iter::from_fn(move || {
        words
            .by_ref()
            .find(|w| w.eq_ignore_ascii_case("CONSTRAINT"))?;
        words.next().map(|name| name.trim_matches('"').to_owned())
    })
}
