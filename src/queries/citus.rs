//! Citus: chatstore's tables distributed by their owner, so that a cluster of PostgreSQL nodes
//! holds them and every call for one user is answered by the one node holding that user's rows.
//!
//! A store that migrates a database with the `citus` extension distributes its tables there, in
//! the migration run's transaction: `chatstore_conversations` by `user_id`, and the messages,
//! branches and tags co-located with it (a user's rows of each table in the same shard group). Tables
//! already distributed are left as they are, so this runs once per database; rows already stored
//! are moved to the shards as each table is distributed. A database without the extension is
//! plain PostgreSQL, and nothing here runs. The version table stays on the coordinator.
//!
//! What makes every call single-node is elsewhere: each key includes `user_id` (migration
//! `20261203000008`), and every statement names the owner of each table it reads.

#[cfg(feature = "postgres")]
use diesel::prelude::*;
#[cfg(feature = "postgres")]
use diesel::sql_types::{Bool, Text};

use crate::conn::Conn;
use crate::Result;

/// chatstore's distributed tables, the first of which the others are co-located with.
#[cfg(feature = "postgres")]
const DISTRIBUTED: [&str; 4] = [
    "chatstore_conversations",
    "chatstore_messages",
    "chatstore_branches",
    "chatstore_conversation_tags",
];

#[cfg(feature = "postgres")]
#[derive(QueryableByName)]
struct Yes {
    #[diesel(sql_type = Bool)]
    yes: bool,
}

/// Whether the database is a Citus one (PostgreSQL with the `citus` extension).
pub(crate) fn present(conn: &mut Conn) -> Result<bool> {
    match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(_) => Ok(false),
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => has_extension(c),
        #[cfg(feature = "mysql")]
        Conn::Mysql(_) => Ok(false),
    }
}

#[cfg(feature = "postgres")]
fn has_extension(conn: &mut diesel::PgConnection) -> Result<bool> {
    let citus: Yes = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS yes",
    )
    .get_result(conn)?;
    Ok(citus.yes)
}

/// Distributes the tables not yet distributed, if the database has the `citus` extension;
/// returns the tables it distributed (none on plain PostgreSQL).
#[cfg(feature = "postgres")]
pub(crate) fn distribute(conn: &mut diesel::PgConnection) -> Result<Vec<&'static str>> {
    if !has_extension(conn)? {
        return Ok(Vec::new());
    }
    let mut distributed = Vec::new();
    for table in DISTRIBUTED {
        let done: Yes = diesel::sql_query(
            "SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = $1::regclass) AS yes",
        )
        .bind::<Text, _>(table)
        .get_result(conn)?;
        if done.yes {
            continue;
        }
        diesel::sql_query(
            "SELECT create_distributed_table($1::regclass, 'user_id', colocate_with => $2)",
        )
        .bind::<Text, _>(table)
        .bind::<Text, _>(if table == DISTRIBUTED[0] {
            "default"
        } else {
            DISTRIBUTED[0]
        })
        .execute(conn)?;
        distributed.push(table);
    }
    Ok(distributed)
}
