use diesel::prelude::*;

use crate::conn::Conn;
use crate::models::{MessageRow, NewMessageRow};
use crate::schema::messages::dsl::*;
use crate::Result;

/// Rows per INSERT statement: 8 columns × 1,000 binds stays under SQLite's (32,766) and PostgreSQL's
/// (65,535) bind limits.
const ROWS_PER_INSERT: usize = 1000;

/// Inserts the rows with multi-row INSERTs (on SQLite too: `NewMessageRow` binds `None` as NULL,
/// where Diesel would otherwise fall back to one INSERT per row). Diesel's multi-row INSERT does not
/// go through the backend enum, so it is issued on each backend's own connection.
pub(crate) fn insert(conn: &mut Conn, rows: &[NewMessageRow<'_>]) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let query = diesel::insert_into(messages).values(chunk);
        match conn {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => query.execute(c)?,
            #[cfg(feature = "postgres")]
            Conn::Pg(c) => query.execute(c)?,
        };
    }
    Ok(())
}

/// The user's messages of a conversation with `seq` in `first..=last`, oldest first: one range scan
/// of the `(conversation_id, seq)` index, whatever the length of the history.
pub(crate) fn range(
    conn: &mut Conn,
    user: &str,
    conv: &[u8],
    first: i64,
    last: i64,
) -> Result<Vec<MessageRow>> {
    Ok(messages
        .filter(conversation_id.eq(conv))
        .filter(seq.between(first, last))
        .filter(user_id.eq(user))
        .order(seq.asc())
        .select(MessageRow::as_select())
        .load(conn)?)
}
