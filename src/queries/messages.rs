use diesel::prelude::*;

use crate::conn::Conn;
use crate::models::{MessageRow, NewMessageRow};
use crate::schema::messages::dsl::*;
use crate::Result;

/// Rows per INSERT statement: 8 columns × 1,000 binds stays under SQLite's (32,766) and PostgreSQL's
/// (65,535) bind limits.
const ROWS_PER_INSERT: usize = 1000;
/// Bytes of text per INSERT statement: far below PostgreSQL's 1 GiB limit on one protocol message,
/// which 1,000 messages at the default 1 MiB limit (plus metadata) would exceed.
const BYTES_PER_INSERT: usize = 64 << 20;

/// Inserts the rows with multi-row INSERTs (on SQLite too: `NewMessageRow` binds `None` as NULL,
/// where Diesel would otherwise fall back to one INSERT per row). Diesel's multi-row INSERT does not
/// go through the backend enum, so it is issued on each backend's own connection.
pub(crate) fn insert(conn: &mut Conn, rows: &[NewMessageRow<'_>]) -> Result<()> {
    let text = |row: &NewMessageRow<'_>| row.content.len() + row.metadata.map_or(0, str::len);
    for chunk in chunks(rows, text) {
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

/// Splits `items` into runs of at most `ROWS_PER_INSERT` items and `BYTES_PER_INSERT` bytes (a
/// single larger item makes a run of its own).
fn chunks<T>(items: &[T], bytes: impl Fn(&T) -> usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let mut total = 0;
        let len = rest
            .iter()
            .take(ROWS_PER_INSERT)
            .take_while(|item| {
                total += bytes(item);
                total <= BYTES_PER_INSERT
            })
            .count()
            .max(1)
            .min(rest.len());
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        (!chunk.is_empty()).then_some(chunk)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(sizes: &[usize]) -> Vec<usize> {
        chunks(sizes, |&size| size).map(<[usize]>::len).collect()
    }

    #[test]
    fn inserts_are_split_by_rows_and_by_bytes() {
        assert_eq!(lengths(&[]), Vec::<usize>::new());
        assert_eq!(lengths(&vec![1; 2500]), [1000, 1000, 500]);
        let mib = 1 << 20;
        // 1,000 rows of 1 MiB: 64 per statement, never one 1 GiB message.
        let big = lengths(&vec![mib; 1000]);
        assert!(big.iter().all(|&n| n == 64 || n == 1000 % 64), "{big:?}");
        assert_eq!(big.iter().sum::<usize>(), 1000);
        // A row over the limit on its own still goes, alone.
        assert_eq!(lengths(&[1, BYTES_PER_INSERT + 1, 1]), [1, 1, 1]);
    }
}
