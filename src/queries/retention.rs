//! Retention: the conversations not updated since a cutoff, found a batch at a time (see
//! [`stale`]), counted, and deleted with everything they hold (messages, branches, tags and the search index's
//! entries go by `ON DELETE CASCADE` and its triggers).

use super::columns::BindTime;
use super::conversations::{sum, STORED_MESSAGES};
use super::MultiBackend;
use crate::conn::Conn;
use crate::ids::{ConversationId, UserId};
use crate::schema::conversations::dsl::*;
use crate::Result;
use chrono::NaiveDateTime;
use diesel::dsl::count_star;
use diesel::prelude::*;

/// A conversation a purge found: its id, owner and how many messages it stores (every branch's).
#[derive(Clone)]
pub(crate) struct Stale {
    pub(crate) id: ConversationId,
    pub(crate) user: UserId,
    pub(crate) messages: i64,
}

/// Up to `limit` conversations (`user`'s, or every user's) whose `updated_at` is before `cutoff`.
///
/// Every user's are read in id order after `after`: a keyset walk of the primary key, which reads
/// each conversation once however many batches the purge takes. One user's are read through the
/// lists' index, which starts with the owner, in no particular order and from the start each
/// time (`after` is not used): what a batch found is then deleted or, appended to meanwhile, no
/// longer stale, so the next read finds the next ones, and no read sorts. (Ordered by id, the
/// read took the same index on PostgreSQL and SQLite, with statistics or without, and sorted what
/// it found: EXPLAIN on 400,000 conversations of 2,000 users.)
pub(crate) fn stale(
    conn: &mut Conn,
    user: Option<&UserId>,
    cutoff: NaiveDateTime,
    after: Option<ConversationId>,
    limit: i64,
) -> Result<Vec<Stale>> {
    let mut query = conversations
        .filter(updated_at.lt(BindTime(cutoff)))
        .select((id, user_id, message_count - branch_fork + off_branch))
        .limit(limit)
        .into_boxed::<MultiBackend>();
    match (user, after) {
        (Some(user), _) => query = query.filter(user_id.eq(user)),
        (None, None) => query = query.order(id),
        (None, Some(after)) => query = query.filter(id.gt(after)).order(id),
    }
    let rows: Vec<(ConversationId, UserId, i64)> = query.load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(conv, owner, messages)| Stale {
            id: conv,
            user: owner,
            messages,
        })
        .collect())
}

/// How many conversations (`user`'s, or every user's) were not updated since `cutoff`, and how many
/// messages they store: one statement.
pub(crate) fn count(
    conn: &mut Conn,
    user: Option<&UserId>,
    cutoff: NaiveDateTime,
) -> Result<(i64, i64)> {
    let messages = sum(conn.backend(), STORED_MESSAGES);
    let mut query = conversations
        .filter(updated_at.lt(BindTime(cutoff)))
        .select((count_star(), messages))
        .into_boxed::<MultiBackend>();
    if let Some(user) = user {
        query = query.filter(user_id.eq(user));
    }
    Ok(query.get_result(conn)?)
}

/// Deletes those of `user`'s conversations `ids` that are still not updated since `cutoff` (one
/// appended to since it was found stays), in the caller's transaction; returns how many messages
/// each deleted one stored. On the servers the delete waits for an append holding a
/// conversation's row and then reads the row the append committed, so an append either commits
/// first and keeps its conversation, or finds it gone (`NotFound`): none is lost.
pub(crate) fn delete(
    conn: &mut Conn,
    user: &UserId,
    ids: &[ConversationId],
    cutoff: NaiveDateTime,
) -> Result<Vec<i64>> {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    let doomed = conversations
        .filter(user_id.eq(user))
        .filter(id.eq_any(ids))
        .filter(updated_at.lt(BindTime(cutoff)));
    Ok(match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => diesel::delete(doomed)
            .returning(message_count - branch_fork + off_branch)
            .get_results(c)?,
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => diesel::delete(doomed)
            .returning(message_count - branch_fork + off_branch)
            .get_results(c)?,
        // No RETURNING: locked, counted and deleted, as a user's data is.
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => super::conversations::delete_locked_mysql(c, user, ids, Some(cutoff))?,
    })
}
