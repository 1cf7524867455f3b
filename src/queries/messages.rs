use diesel::connection::DefaultLoadingMode;
use diesel::prelude::*;

use super::columns::DbTime;
use super::conversations;
use super::rows::{
    message_columns, message_usage, MessageRow, MessageSql, NewMessageRow, WindowRow, WindowSql,
};
use super::MultiBackend;
use super::{Cached, Positional};
#[cfg(feature = "mysql")]
use super::{Param, Raw};
use crate::conn::{Backend, Conn};
use crate::cursor::SeqBounds;
use crate::ids::{BranchId, ConversationId, MessageId, UserId};
use crate::models::{Message, Usage};
use crate::schema::messages::dsl::*;
use crate::tree::{stored_seq, Segment, MAX_POSITION, SPAN};
use crate::{Error, Result};

/// Rows per INSERT statement: on SQLite, 13 columns × 1,000 rows stays under its 32,766-bind limit
/// (PostgreSQL binds arrays, and takes the same chunks).
const ROWS_PER_INSERT: usize = 1000;
/// Bytes of text per INSERT statement: far below PostgreSQL's 1 GiB limit on one protocol message,
/// which 1,000 messages at the default 1 MiB limit (plus metadata) would exceed.
const BYTES_PER_INSERT: usize = 64 << 20;
/// On MySQL a statement must fit in the server's `max_allowed_packet`: 16 MiB by default on
/// MariaDB (64 MiB on MySQL 8).
const MYSQL_BYTES_PER_INSERT: usize = 8 << 20;

/// Inserts the rows, which all belong to one conversation and share their `created_at` (one
/// append, or one run of an import's messages: PostgreSQL binds the first row's time for all). A
/// single row has its own statement, which Diesel caches as a prepared statement; more go in chunks (see [`chunks`]): on SQLite as multi-row INSERTs (`NewMessageRow` binds `None` as
/// NULL, where Diesel would otherwise fall back to one INSERT per row), on PostgreSQL as one array
/// per column, unnested server-side: one short statement whatever the batch's size, instead of
/// 8,000 bind parameters.
///
/// Each row's `search_text` is filled in as this backend's search index will read it (SQLite and
/// PostgreSQL index a column; on MySQL the store reads the words from the content). The index
/// itself is not written here: it catches up after the append ([`super::search::index_unindexed`]).
///
/// A message id already stored is [`Error::DuplicateId`] (naming the first row's id: which of the
/// batch's ids it was, the statement does not say), and the transaction must be rolled back.
pub(crate) fn insert(conn: &mut Conn, rows: &mut [NewMessageRow<'_>]) -> Result<()> {
    fill_search_text(conn.backend(), rows);
    insert_rows(conn, rows).map_err(|e| e.into_error(rows))
}

/// Inserts rows of one conversation that keep the times they were first stored at (an import, a
/// copy): [`insert`] for each run of equal times, since it binds one time for all its rows (an
/// append's batch shares its time, so a run is usually a whole batch).
pub(crate) fn insert_stored(conn: &mut Conn, rows: &mut [NewMessageRow<'_>]) -> Result<()> {
    for run in rows.chunk_by_mut(|a, b| a.created_at == b.created_at) {
        insert(conn, run)?;
    }
    Ok(())
}

/// Each row's `search_text`, as this backend's index reads it.
fn fill_search_text(backend: Backend, rows: &mut [NewMessageRow<'_>]) {
    match backend {
        Backend::Sqlite | Backend::Postgres => {
            for row in rows.iter_mut() {
                row.search_text = crate::search::message_search_text(row.content, row.parts);
            }
        }
        // The store's own word index reads the content and text parts (a spaced copy would only
        // lengthen the statements).
        Backend::Mysql => {}
    }
}

/// What [`reserve_and_insert`] did.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) enum OneStatement {
    /// Reserved the seqs and inserted the rows: the conversation's new count, `updated_at` and
    /// active branch, as [`reserve_seqs`](super::conversations::reserve_seqs) returns them.
    Written(i64, DbTime, i64),
    /// Wrote nothing, as [`reserve_seqs`](super::conversations::reserve_seqs) finding no row: the
    /// user owns no such conversation, or its count is not `last_seq`.
    NotReserved,
    /// Ran nothing: this backend reserves and inserts in statements of their own, or the rows
    /// need more than one INSERT.
    NotRun,
}

/// Reserves an append's seqs and inserts its rows in one statement, where the backend can say it
/// in one: PostgreSQL, whose `UPDATE … RETURNING` feeds the INSERT in the same statement (`WITH`),
/// for rows that fit one INSERT (see [`chunks`]). A statement is atomic by itself and the server
/// commits it as it ends, so it needs no transaction: the append is one round trip, where BEGIN,
/// the reservation, the INSERT and COMMIT were four. SQLite has no data-modifying `WITH`, MySQL no
/// `UPDATE … RETURNING`: on them, and for more rows than one INSERT takes, nothing runs
/// ([`OneStatement::NotRun`]), and the caller reserves ([`reserve_seqs`]) and inserts
/// ([`insert`]) in a write transaction.
///
/// The reservation is [`reserve_seqs`]'s, under the conversation's row lock: the count grows by the
/// number of rows, if the user owns the conversation (and its count is `last_seq`, when given), and
/// `updated_at` moves to `now` unless it is later. `rows` are the batch in order, numbered from
/// seq 1: each is stored that far after the count the reservation found, at the `updated_at` it
/// set (the rows' own `created_at` is not read). Their `search_text` is filled in as for
/// [`insert`]. The conversation's tags' rows take its new `updated_at` in the same statement (see
/// `tags.rs`).
///
/// A message id already stored is [`Error::DuplicateId`], as for [`insert`], and then the statement
/// wrote nothing, reservation included. The key violated is the id, never `(conversation_id,
/// seq)`: the seqs follow the count read under the row lock (which the store keeps equal to the
/// last seq), and a concurrent append of the conversation waits for that lock, then reads the
/// count this one committed (PostgreSQL re-reads the row an UPDATE waited for, `last_seq`
/// condition included).
///
/// [`reserve_seqs`]: super::conversations::reserve_seqs
#[cfg_attr(not(feature = "postgres"), allow(unused_variables))]
pub(crate) fn reserve_and_insert(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    rows: &mut [NewMessageRow<'_>],
    now: chrono::NaiveDateTime,
    last_seq: Option<i64>,
) -> Result<OneStatement> {
    match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(_) => Ok(OneStatement::NotRun),
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => {
            if chunks(rows, BYTES_PER_INSERT, text_bytes).nth(1).is_some() {
                return Ok(OneStatement::NotRun);
            }
            fill_search_text(Backend::Postgres, rows);
            let reserved = reserve_and_insert_pg(c, user, conv, rows, now, last_seq)
                .map_err(|e| Insert::from(e).into_error(rows))?;
            Ok(match reserved {
                Some((count, time, branch)) => OneStatement::Written(count, time, branch),
                None => OneStatement::NotReserved,
            })
        }
        #[cfg(feature = "mysql")]
        Conn::Mysql(_) => Ok(OneStatement::NotRun),
    }
}

/// PostgreSQL's append in one statement (see [`reserve_and_insert`]). Its two texts (with and
/// without `last_seq`) are each prepared once per connection. `reserved` is evaluated once, and
/// the INSERT runs to its end though nothing reads its output; the statement returns the
/// reservation's one row, or none.
#[cfg(feature = "postgres")]
fn reserve_and_insert_pg(
    conn: &mut diesel::PgConnection,
    user: &UserId,
    conv: ConversationId,
    rows: &[NewMessageRow<'_>],
    now: chrono::NaiveDateTime,
    last_seq: Option<i64>,
) -> QueryResult<Option<(i64, DbTime, i64)>> {
    use diesel::pg::Pg;
    use diesel::sql_types::{Array, BigInt, Binary, Nullable, Text, Timestamp};

    #[derive(QueryableByName)]
    struct Reserved {
        #[diesel(sql_type = BigInt)]
        message_count: i64,
        #[diesel(sql_type = Timestamp)]
        updated_at: DbTime,
        #[diesel(sql_type = BigInt)]
        branch: i64,
    }
    macro_rules! append {
        ($condition:literal) => {
            concat!(
                "WITH reserved AS (\
                 UPDATE chatstore_conversations SET message_count = message_count + $3, \
                 updated_at = CASE WHEN updated_at > $4 THEN updated_at ELSE $4 END, \
                 input_tokens = input_tokens + $11, output_tokens = output_tokens + $12, \
                 total_tokens = total_tokens + $13 \
                 WHERE id = $1 AND user_id = $2",
                $condition,
                " RETURNING message_count, updated_at, branch), \
                 inserted AS (\
                 INSERT INTO chatstore_messages \
                 (id, conversation_id, user_id, seq, role, content, metadata, created_at, search_text, \
                 input_tokens, output_tokens, total_tokens, parts) \
                 SELECT m.id, $1, $2, reserved.branch * 4294967296 + reserved.message_count - $3 + m.seq, \
                 m.role, m.content, m.metadata, reserved.updated_at, m.search_text, \
                 m.input_tokens, m.output_tokens, m.total_tokens, m.parts \
                 FROM reserved, \
                 unnest($5::bytea[], $6::int8[], $7::text[], $8::text[], $9::text[], $10::text[], \
                 $14::int8[], $15::int8[], $16::int8[], $17::text[]) \
                 AS m(id, seq, role, content, metadata, search_text, input_tokens, output_tokens, \
                 total_tokens, parts)), \
                 touched AS (\
                 UPDATE chatstore_conversation_tags t SET updated_at = reserved.updated_at \
                 FROM reserved WHERE t.conversation_id = $1 AND t.user_id = $2) \
                 SELECT message_count, updated_at, branch FROM reserved"
            )
        };
    }
    let sql = match last_seq {
        None => append!(""),
        Some(_) => append!(" AND message_count = $18"),
    };
    let mut query = diesel::sql_query(sql)
        .into_boxed::<Pg>()
        .bind::<Binary, _>(conv)
        .bind::<Text, _>(user)
        .bind::<BigInt, _>(rows.len() as i64)
        .bind::<Timestamp, _>(now)
        .bind::<Array<Binary>, _>(column(rows, |r| r.id))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.seq))
        .bind::<Array<Text>, _>(column(rows, |r| r.role))
        .bind::<Array<Text>, _>(column(rows, |r| r.content))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.metadata))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.search_text.as_deref()))
        .bind::<BigInt, _>(rows.iter().filter_map(|r| r.input_tokens).sum::<i64>())
        .bind::<BigInt, _>(rows.iter().filter_map(|r| r.output_tokens).sum::<i64>())
        .bind::<BigInt, _>(rows.iter().filter_map(|r| r.total_tokens).sum::<i64>())
        .bind::<Array<Nullable<BigInt>>, _>(column(rows, |r| r.input_tokens))
        .bind::<Array<Nullable<BigInt>>, _>(column(rows, |r| r.output_tokens))
        .bind::<Array<Nullable<BigInt>>, _>(column(rows, |r| r.total_tokens))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.parts));
    if let Some(last) = last_seq {
        query = query.bind::<BigInt, _>(last);
    }
    let reserved: Option<Reserved> = Cached(query).get_result(conn).optional()?;
    Ok(reserved.map(|r| (r.message_count, r.updated_at, r.branch)))
}

/// Why an insert failed: a unique key was violated, or anything else.
enum Insert {
    Duplicate,
    Failed(Error),
}

impl From<diesel::result::Error> for Insert {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => Insert::Duplicate,
            e => Insert::Failed(e.into()),
        }
    }
}

impl From<Error> for Insert {
    fn from(e: Error) -> Self {
        Insert::Failed(e)
    }
}

impl Insert {
    /// The error of an insert of `rows`. The seqs were reserved under the row lock, so the unique
    /// key violated is the id (which of the rows' ids, the error does not say: the first is named).
    fn into_error(self, rows: &[NewMessageRow<'_>]) -> Error {
        match self {
            Insert::Duplicate => match rows.first() {
                Some(row) => Error::DuplicateId(row.id),
                None => crate::models::corrupt_row("an insert of no rows violated a unique key"),
            },
            Insert::Failed(e) => e,
        }
    }
}

/// Bytes of text in a row: its content, metadata and parts, what [`chunks`] bounds.
fn text_bytes(row: &NewMessageRow<'_>) -> usize {
    row.content.len() + row.metadata.map_or(0, str::len) + row.parts.map_or(0, str::len)
}

fn insert_rows(conn: &mut Conn, rows: &[NewMessageRow<'_>]) -> Result<(), Insert> {
    if let [row] = rows {
        diesel::insert_into(messages).values(row).execute(conn)?;
    } else {
        let limit = match conn.backend() {
            Backend::Sqlite | Backend::Postgres => BYTES_PER_INSERT,
            Backend::Mysql => MYSQL_BYTES_PER_INSERT,
        };
        for chunk in chunks(rows, limit, text_bytes) {
            match conn {
                #[cfg(feature = "sqlite")]
                Conn::Sqlite(c) => {
                    for piece in pieces(chunk) {
                        InsertRows(piece).execute(c)?;
                    }
                }
                #[cfg(feature = "postgres")]
                Conn::Pg(c) => match insert_unnested(c, chunk)? {
                    // The rows take their conversation from its row, which the caller holds.
                    n if n == chunk.len() => {}
                    _ => return Err(Insert::Failed(Error::NotFound)),
                },
                #[cfg(feature = "mysql")]
                Conn::Mysql(c) => {
                    for piece in pieces(chunk) {
                        InsertRows(piece).execute(c)?;
                    }
                }
            };
        }
    }
    // The search index catches up later (`search::index_unindexed`). SQLite and PostgreSQL find
    // what waits in the messages table itself; MySQL keeps a row for each waiting message.
    match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(_) => {}
        #[cfg(feature = "postgres")]
        Conn::Pg(_) => {}
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => super::search::mark_unindexed(c, rows)?,
    }
    Ok(())
}

/// One column of `rows`, as the array PostgreSQL's `unnest` takes apart (its appends bind a batch
/// as one array per column, so that every batch is the same statement).
#[cfg(feature = "postgres")]
fn column<'r, 'a, T>(
    rows: &'r [NewMessageRow<'a>],
    f: impl Fn(&'r NewMessageRow<'a>) -> T,
) -> Vec<T> {
    rows.iter().map(f).collect()
}

#[cfg(feature = "postgres")]
fn insert_unnested(
    conn: &mut diesel::PgConnection,
    rows: &[NewMessageRow<'_>],
) -> QueryResult<usize> {
    use diesel::sql_types::{Array, BigInt, Binary, Nullable, Text, Timestamp};
    let Some(first) = rows.first() else {
        return Ok(0);
    };
    // The conversation and owner come from the conversation's row: on Citus an INSERT … SELECT
    // from a co-located table, by its distribution column, runs whole on the owner's node (from
    // the arrays alone, Citus ran the SELECT and copied its rows through the coordinator, losing
    // the error code of a duplicate id). The caller's transaction holds the row.
    // One text, kept prepared.
    Cached(
        diesel::sql_query(
            "INSERT INTO chatstore_messages \
         (id, conversation_id, user_id, seq, role, content, metadata, created_at, search_text, \
         input_tokens, output_tokens, total_tokens, parts) \
         SELECT m.id, c.id, c.user_id, m.seq, m.role, m.content, m.metadata, $3, m.search_text, \
         m.input_tokens, m.output_tokens, m.total_tokens, m.parts \
         FROM chatstore_conversations c, \
         unnest($4::bytea[], $5::int8[], $6::text[], $7::text[], $8::text[], $9::text[], \
         $10::int8[], $11::int8[], $12::int8[], $13::text[]) \
         AS m(id, seq, role, content, metadata, search_text, input_tokens, output_tokens, \
         total_tokens, parts) WHERE c.id = $1 AND c.user_id = $2",
        )
        .bind::<Binary, _>(first.conversation_id)
        .bind::<Text, _>(first.user_id)
        .bind::<Timestamp, _>(first.created_at.0)
        .bind::<Array<Binary>, _>(column(rows, |r| r.id))
        .bind::<Array<BigInt>, _>(column(rows, |r| r.seq))
        .bind::<Array<Text>, _>(column(rows, |r| r.role))
        .bind::<Array<Text>, _>(column(rows, |r| r.content))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.metadata))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.search_text.as_deref()))
        .bind::<Array<Nullable<BigInt>>, _>(column(rows, |r| r.input_tokens))
        .bind::<Array<Nullable<BigInt>>, _>(column(rows, |r| r.output_tokens))
        .bind::<Array<Nullable<BigInt>>, _>(column(rows, |r| r.total_tokens))
        .bind::<Array<Nullable<Text>>, _>(column(rows, |r| r.parts)),
    )
    .execute(conn)
}

/// The sizes of the multi-row INSERTs that [`pieces`] cuts a chunk into, largest first: every
/// size up to 8, so that the usual batch (a turn's few messages) is one INSERT, as it was before
/// the pieces (on MySQL each piece is a round trip).
#[cfg(any(feature = "sqlite", feature = "mysql"))]
const PIECE_ROWS: [usize; 10] = [64, 16, 8, 7, 6, 5, 4, 3, 2, 1];

/// Cuts a chunk into INSERTs of the sizes in [`PIECE_ROWS`]: as many of the largest as fit, then
/// of the next (after the 64-row ones, at most three of 16 rows and one of up to 8). Diesel
/// prepares a multi-row INSERT of a `Vec` afresh on every call, since its text depends on the
/// number of rows: on SQLite, parsing
/// and compiling a 1,000-row INSERT of thirteen columns was a tenth of a batch append (perf,
/// 2026-12-04); on MySQL it is a prepare round trip and a parse each time. An [`InsertRows`] of
/// one of these ten sizes is prepared once per connection and run again.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
pub(super) fn pieces<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let size = PIECE_ROWS.into_iter().find(|&n| n <= rest.len())?;
        let (piece, tail) = rest.split_at(size);
        rest = tail;
        Some(piece)
    })
}

/// One multi-row INSERT of messages, as Diesel writes one (every column bound, NULL for `None`),
/// but marked safe for the prepared-statement cache: its text depends only on the number of rows,
/// and [`pieces`] uses ten numbers.
#[cfg(any(feature = "sqlite", feature = "mysql"))]
struct InsertRows<'r, 'a>(&'r [NewMessageRow<'a>]);

#[cfg(any(feature = "sqlite", feature = "mysql"))]
impl<DB> diesel::query_builder::QueryFragment<DB> for InsertRows<'_, '_>
where
    DB: diesel::backend::Backend,
    MessageId: diesel::serialize::ToSql<diesel::sql_types::Binary, DB>,
    ConversationId: diesel::serialize::ToSql<diesel::sql_types::Binary, DB>,
    UserId: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    crate::models::Role: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    String: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
    super::columns::BindTime: diesel::query_builder::QueryFragment<DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Binary, Nullable, Text};
        out.push_sql(
            "INSERT INTO chatstore_messages (id, conversation_id, user_id, seq, role, content, \
             metadata, created_at, search_text, input_tokens, output_tokens, total_tokens, parts) \
             VALUES ",
        );
        for (i, row) in self.0.iter().enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            out.push_bind_param::<Binary, _>(&row.id)?;
            out.push_sql(", ");
            out.push_bind_param::<Binary, _>(&row.conversation_id)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(row.user_id)?;
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(&row.seq)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&row.role)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(row.content)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.metadata)?;
            out.push_sql(", ");
            row.created_at.walk_ast(out.reborrow())?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.search_text)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(&row.input_tokens)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(&row.output_tokens)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<BigInt>, _>(&row.total_tokens)?;
            out.push_sql(", ");
            out.push_bind_param::<Nullable<Text>, _>(&row.parts)?;
            out.push_sql(")");
        }
        Ok(())
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

#[cfg(any(feature = "sqlite", feature = "mysql"))]
impl diesel::query_builder::QueryId for InsertRows<'_, '_> {
    type QueryId = ();
    // Keyed by the text: one statement per number of rows.
    const HAS_STATIC_QUERY_ID: bool = false;
}

#[cfg(any(feature = "sqlite", feature = "mysql"))]
impl<C> RunQueryDsl<C> for InsertRows<'_, '_> {}

/// Splits `items` into runs of at most `ROWS_PER_INSERT` items and `max_bytes` bytes (a single
/// larger item makes a run of its own).
fn chunks<T>(
    items: &[T],
    max_bytes: usize,
    bytes: impl Fn(&T) -> usize,
) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let mut total = 0;
        let len = rest
            .iter()
            .take(ROWS_PER_INSERT)
            .take_while(|item| {
                total += bytes(item);
                total <= max_bytes
            })
            .count()
            .max(1)
            .min(rest.len());
        let (chunk, tail) = rest.split_at(len);
        rest = tail;
        (!chunk.is_empty()).then_some(chunk)
    })
}

/// The stored messages among `ids` that stand in the way of `user` storing them: the user's own,
/// in any of the user's conversations, and on SQLite and MySQL anyone's, since ids are unique
/// across owners there (a client id another user stored is refused by name). On PostgreSQL ids are
/// unique per owner (every key includes it, so that Citus can distribute the tables) and only the
/// user's are read, which on Citus routes the read to the user's node.
pub(crate) fn by_ids(conn: &mut Conn, user: &UserId, ids: &[MessageId]) -> Result<Vec<MessageRow>> {
    let select = MessageRow::as_select();
    let owned = conn.backend() == Backend::Postgres;
    // One id — the common case, a single message retried — has a statement of fixed shape,
    // which Diesel prepares once; an IN list of n binds is prepared per call on SQLite.
    Ok(match ids {
        [one] if owned => messages
            .filter(id.eq(one))
            .filter(user_id.eq(user))
            .select(select)
            .load(conn)?,
        [one] => messages.filter(id.eq(one)).select(select).load(conn)?,
        _ if owned => messages
            .filter(id.eq_any(ids))
            .filter(user_id.eq(user))
            .select(select)
            .load(conn)?,
        _ => messages.filter(id.eq_any(ids)).select(select).load(conn)?,
    })
}

/// Which of `ids` stand in the way of `user` storing them, as [`by_ids`] finds them (read from
/// the primary key alone).
pub(crate) fn stored_ids(
    conn: &mut Conn,
    user: &UserId,
    ids: &[MessageId],
) -> Result<Vec<MessageId>> {
    let mut stored = Vec::new();
    // Chunks keep each statement well under SQLite's limit of bound parameters.
    for chunk in ids.chunks(ROWS_PER_INSERT) {
        let mut query = messages.select(id).into_boxed::<MultiBackend>();
        if conn.backend() == Backend::Postgres {
            query = query.filter(user_id.eq(user));
        }
        let found: Vec<MessageId> = query.filter(id.eq_any(chunk)).load(conn)?;
        stored.extend(found);
    }
    Ok(stored)
}

/// Deletes the user's messages of the conversation that `branch` stores after position `after`
/// (the search index follows: by trigger on SQLite, with the row on PostgreSQL, by cascade on
/// MySQL), and takes their token usage from the conversation's totals (whose row the caller has
/// locked); returns how many.
pub(crate) fn delete_own(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    branch: BranchId,
    after: i64,
) -> Result<usize> {
    let doomed = messages
        .filter(conversation_id.eq(conv))
        .filter(user_id.eq(user))
        .filter(seq.gt(stored_seq(branch, after)))
        .filter(seq.le(stored_seq(branch, MAX_POSITION)));
    // The usage of those that carry one, summed here: PostgreSQL and MySQL would sum 64-bit
    // integers as decimals.
    let used: Vec<(Option<i64>, Option<i64>, Option<i64>)> = doomed
        .filter(total_tokens.is_not_null())
        .select((input_tokens, output_tokens, total_tokens))
        .load(conn)?;
    let mut usage = Usage::ZERO;
    for (input, output, total) in used {
        usage = usage + message_usage(input, output, total)?.unwrap_or_default();
    }
    let deleted = diesel::delete(doomed).execute(conn)?;
    if !usage.is_zero() {
        conversations::remove_usage(conn, user, conv, usage)?;
    }
    Ok(deleted)
}

/// The conversation's system and developer messages on `path` (segments of a branch's path, as
/// [`crate::tree::Tree::path`] gives them, newest first), oldest first, from the partial index
/// `chatstore_messages_system` (which is why the roles are written literally, not bound: the
/// planners use a partial index only for a predicate that matches its own, `role IN ('system',
/// 'developer')`, in those words). One statement per segment: one on the root branch.
pub(crate) fn system(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    path: &[Segment],
) -> Result<Vec<Message>> {
    let mut found = Vec::new();
    for segment in path.iter().rev() {
        let (after, through) = segment.stored();
        let query = messages
            .filter(conversation_id.eq(conv))
            .filter(user_id.eq(user))
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "role IN ('system', 'developer')",
            ))
            .filter(seq.gt(after))
            .filter(seq.le(through))
            .order(seq)
            .select(MessageRow::as_select());
        // A literal fragment makes Diesel give up caching the statement (it cannot know the text
        // is fixed): on PostgreSQL that meant a parse and a plan per context window (~80 µs, W10).
        for row in Cached(query).load_iter::<MessageRow, DefaultLoadingMode>(conn)? {
            found.push(row?.into_model()?);
        }
    }
    Ok(found)
}

/// What [`window`] read: the conversation's message count (its active branch's length), the
/// messages within the bounds, oldest first, and the active branch with its fork.
pub(crate) struct Found {
    pub(crate) count: i64,
    pub(crate) messages: Vec<Message>,
    pub(crate) branch: BranchId,
    pub(crate) fork: i64,
}

/// The conversation's message count and its messages within `bounds` on its active branch's path,
/// oldest first — or `None` if `user` owns no such conversation.
///
/// The window comes in one statement with the count ([`first_read`]), so the count and the rows
/// are one snapshot and one round trip: the conversation row, left-joined to a range scan of the
/// `(conversation_id, seq)` index over the active branch's own run and over each of the four
/// nearest ancestors the row keeps. Its cost depends on the window's size, not on the length of
/// the history. Only a window crossing more fork points than that, or on a row from before the
/// ancestors were kept, reads on: the branch's path, walked up the branches table, then each
/// ancestor's part of the window, one index range each. Those messages never change while the
/// branch exists (see `tree.rs`), so they need no snapshot with the first statement; a read that
/// finds them changed all the same (the branch deleted meanwhile) starts again.
pub(crate) fn window(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    bounds: SeqBounds,
) -> Result<Option<Found>> {
    for _ in 0..3 {
        let Some(mut found) = first_read(conn, user, conv, bounds)? else {
            return Ok(None);
        };
        // Positions `after + 1 ..= top` are the window's.
        let top = found.count.min(bounds.hi);
        let after = (top.saturating_sub(bounds.back)).max(bounds.lo - 1);
        if after >= found.fork || top <= after || found.messages.len() as i64 == top - after {
            return Ok(Some(found));
        }
        // The window reaches past the ancestors the row keeps (or the row keeps none: it is from
        // before they were kept): the walk reads everything below the branch's own run.
        found.messages.retain(|m| m.branch == found.branch);
        let through = top.min(found.fork);
        let mut older = ancestors(conn, user, conv, found.branch, after, through)?;
        // Oldest first: by position, across the branches' runs.
        older.sort_by_key(|m| m.seq % SPAN);
        if older.len() as i64 == through - after {
            let mut window = older
                .into_iter()
                .map(MessageRow::into_model)
                .collect::<Result<Vec<_>>>()?;
            window.append(&mut found.messages);
            found.messages = window;
            return Ok(Some(found));
        }
    }
    Err(crate::models::corrupt_row(
        "a branch's path has a gap in three reads",
    ))
}

/// The start of [`ancestors`]' walk up a branch's ancestors (`{p}` a bound value, `{int}` the
/// window's last position, bound as a 64-bit integer): the branch itself, as far as the window
/// takes it.
macro_rules! chain_anchor {
    () => {
        "WITH RECURSIVE chain (branch, parent, fork, through) AS (\
         SELECT branch, parent, fork_seq, {int} FROM chatstore_branches \
         WHERE conversation_id = {p} AND user_id = {p} AND branch = {p} \
         UNION ALL "
    };
}

/// The walk's step: the parent of each branch whose fork the window reaches below, as far as the
/// window takes it (up to where its child forks).
macro_rules! chain_step {
    () => {
        "SELECT b.branch, b.parent, b.fork_seq, \
         CASE WHEN c.fork < c.through THEN c.fork ELSE c.through END \
         FROM chatstore_branches b JOIN chain c ON b.branch = c.parent \
         WHERE b.conversation_id = {p} AND b.user_id = {p} AND c.fork > {p}) "
    };
}

/// The messages at positions `after + 1 ..= through` of the path of `branch` (all below its fork),
/// in no order, in one statement: the branch's ancestors, read from the branches table by a
/// recursive query that stops at the first whose fork is at or below `after`, each joined to the
/// range of its own run that the window takes — one index range per branch the window crosses,
/// whatever the tree holds besides. (`CROSS JOIN`: SQLite then keeps the chain as the outer loop,
/// rather than scanning the messages for each.)
///
/// PostgreSQL chooses its plan by cost, and with statistics from before the history grew (a new
/// table, or autovacuum not yet come by) it read every message of the conversation once per
/// branch on the chain and filtered them: 90 ms for a window of a 100,000-message path, and the
/// chain's step scanned every branch row of the conversation (EXPLAIN ANALYZE, 2026-12-03). So on
/// PostgreSQL both joins are `LATERAL` subqueries fenced with `OFFSET 0`, which it cannot flatten
/// into a join: each ancestor is one primary-key lookup and each range one index range scan,
/// whatever the statistics say (0.17 ms).
fn ancestors(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    branch: BranchId,
    after: i64,
    through: i64,
) -> Result<Vec<MessageRow>> {
    use diesel::sql_types::{BigInt, Binary, Text};
    // One text per backend, each prepared once per connection.
    const SQL: &str = concat!(
        chain_anchor!(),
        chain_step!(),
        "SELECT ",
        message_columns!("m."),
        " FROM chain CROSS JOIN chatstore_messages m WHERE m.conversation_id = {p} \
         AND m.user_id = {p} AND m.seq > chain.branch * 4294967296 + CASE WHEN chain.fork > {p} THEN chain.fork ELSE {p} END \
         AND m.seq <= chain.branch * 4294967296 + chain.through"
    );
    const PG: &str = concat!(
        chain_anchor!(),
        "SELECT b.branch, b.parent, b.fork_seq, \
         CASE WHEN c.fork < c.through THEN c.fork ELSE c.through END \
         FROM chain c CROSS JOIN LATERAL (SELECT branch, parent, fork_seq FROM chatstore_branches \
         WHERE conversation_id = {p} AND user_id = {p} AND branch = c.parent OFFSET 0) b \
         WHERE c.fork > {p}) SELECT ",
        message_columns!("m."),
        " FROM chain CROSS JOIN LATERAL (SELECT ",
        message_columns!(""),
        " FROM chatstore_messages WHERE conversation_id = {p} AND user_id = {p} \
         AND seq > chain.branch * 4294967296 + CASE WHEN chain.fork > {p} THEN chain.fork ELSE {p} END \
         AND seq <= chain.branch * 4294967296 + chain.through OFFSET 0) m"
    );
    // MariaDB joins the messages by the conversation alone (`ref`), not by each branch's range,
    // and so read the whole history for each branch (188 ms for a window of a 100,000-message
    // path, W14): the chain alone, then the ranges.
    #[cfg(feature = "mysql")]
    #[allow(irrefutable_let_patterns)] // with MySQL alone
    if let Conn::Mysql(c) = conn {
        return ancestors_mysql(c, user, conv, branch, after, through);
    }
    let sql = match conn.backend() {
        // (MySQL has returned above.)
        Backend::Sqlite | Backend::Mysql => SQL.replace("{int}", "?").replace("{p}", "?"),
        Backend::Postgres => {
            let mut n = 0;
            let mut numbered = String::with_capacity(PG.len());
            for (i, piece) in PG.split("{p}").enumerate() {
                if i > 0 {
                    n += 1;
                    numbered.push_str(&format!("${n}"));
                }
                numbered.push_str(piece);
            }
            numbered.replace("{int}", &format!("${}::bigint", n + 1))
        }
    };
    // The binds in the order of their placeholders; on PostgreSQL `through` is numbered last.
    let query = diesel::sql_query(sql).into_boxed::<MultiBackend>();
    let query = match conn.backend() {
        Backend::Sqlite | Backend::Mysql => query.bind::<BigInt, _>(through),
        Backend::Postgres => query,
    };
    let mut query = query
        .bind::<Binary, _>(conv)
        .bind::<Text, _>(user)
        .bind::<BigInt, _>(branch.as_i64())
        .bind::<Binary, _>(conv)
        .bind::<Text, _>(user)
        .bind::<BigInt, _>(after)
        .bind::<Binary, _>(conv)
        .bind::<Text, _>(user)
        .bind::<BigInt, _>(after)
        .bind::<BigInt, _>(after);
    if conn.backend() == Backend::Postgres {
        query = query.bind::<BigInt, _>(through);
    }
    Ok(Cached(Positional::<_, MessageSql>::new(query)).load(conn)?)
}

/// [`ancestors`] on MySQL: the branches the window crosses, found by the recursive query, then
/// their ranges, `UNION ALL` of one index range each.
#[cfg(feature = "mysql")]
fn ancestors_mysql(
    conn: &mut diesel::MysqlConnection,
    user: &UserId,
    conv: ConversationId,
    branch: BranchId,
    after: i64,
    through: i64,
) -> Result<Vec<MessageRow>> {
    use diesel::sql_types::BigInt;
    const CHAIN: &str = concat!(
        chain_anchor!(),
        chain_step!(),
        "SELECT branch, fork, through FROM chain"
    );
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = TEXT.get_or_init(|| {
        CHAIN
            .replace("{int}", "CAST(? AS SIGNED)")
            .replace("{p}", "?")
    });
    let params = vec![
        Param::BigInt(through),
        Param::Binary(conv.as_bytes()),
        Param::Text(user.as_str()),
        Param::BigInt(branch.as_i64()),
        Param::Binary(conv.as_bytes()),
        Param::Text(user.as_str()),
        Param::BigInt(after),
    ];
    // Each link: a branch, where it forks off its parent, and how far the path runs on it.
    let links: Vec<(i64, i64, i64)> =
        Positional::<_, (BigInt, BigInt, BigInt)>::new(Raw::kept(sql, params)).load(conn)?;
    let segments: Vec<Segment> = links
        .iter()
        .filter(|(_, fork, through)| *through > (*fork).max(after))
        .map(|&(branch, fork, through)| Segment {
            branch: BranchId::from_db(branch),
            after: fork.max(after),
            through,
        })
        .collect();
    // The ranges in one statement, a few at a time: one text per number of ranges, each
    // prepared once per connection.
    let mut rows = Vec::new();
    for group in segments.chunks(8) {
        const ONE: &str = concat!(
            "SELECT ",
            message_columns!(""),
            " FROM chatstore_messages WHERE conversation_id = ? AND user_id = ? \
             AND seq > ? AND seq <= ?"
        );
        let sql = vec![ONE; group.len()].join(" UNION ALL ");
        let mut params = Vec::with_capacity(4 * group.len());
        for segment in group {
            let (from, to) = segment.stored();
            params.extend([
                Param::Binary(conv.as_bytes()),
                Param::Text(user.as_str()),
                Param::BigInt(from),
                Param::BigInt(to),
            ]);
        }
        let found: Vec<MessageRow> =
            Positional::<_, MessageSql>::new(Raw::kept(&sql, params)).load(conn)?;
        rows.extend(found);
    }
    Ok(rows)
}

/// Up to `limit` of the user's messages of the conversation in `segment`, in seq order, as stored.
pub(crate) fn in_segment(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    segment: Segment,
    limit: i64,
) -> Result<Vec<MessageRow>> {
    let (after, through) = segment.stored();
    Ok(messages
        .filter(conversation_id.eq(conv))
        .filter(user_id.eq(user))
        .filter(seq.gt(after))
        .filter(seq.le(through))
        .order(seq)
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)?)
}

/// The window's first position, after `max(lo - 1, min(count, hi) - back)`, as SQL over the
/// conversation row (`{lo1}`, `{hi}` and `{back}` the bounds' placeholders): one expression, so
/// that SQLite bounds its scan by it rather than by one of two and filtering by the other. No
/// overflow: see `SeqBounds`.
macro_rules! window_after {
    () => {
        "CASE WHEN (CASE WHEN message_count < {hi} THEN message_count - {back} ELSE {hi} - {back} END) > {lo1} \
         THEN (CASE WHEN message_count < {hi} THEN message_count - {back} ELSE {hi} - {back} END) ELSE {lo1} END"
    };
}

/// The part of the window that the `k`th kept ancestor holds (SQLite and PostgreSQL): an index
/// range bounded by uncorrelated subqueries on the conversation row, which both evaluate once.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! ancestor_part {
    ($k:literal) => {
        concat!(
            " UNION ALL SELECT NULL, NULL, NULL, m.id, m.seq, m.role, m.content, \
             m.metadata, m.created_at, m.input_tokens, m.output_tokens, m.total_tokens, m.parts \
             FROM chatstore_messages m WHERE m.conversation_id = {conv} \
             AND m.user_id = {user} AND m.seq > (SELECT ancestor_", $k, " - ancestor_", $k, " % 4294967296 + ",
            window_after!(),
            " FROM chatstore_conversations WHERE id = {conv} AND user_id = {user} AND ancestor_", $k,
            " >= 0) AND m.seq <= (SELECT CASE WHEN ancestor_", $k, " < ancestor_", $k, " - ancestor_", $k,
            " % 4294967296 + {top} THEN ancestor_", $k, " ELSE ancestor_", $k, " - ancestor_", $k,
            " % 4294967296 + {top} END FROM chatstore_conversations WHERE id = {conv} AND user_id = {user})"
        )
    };
}

/// One kept ancestor's part of the window on MySQL: a range `OR`ed into the join, over the
/// conversation row, which MySQL reads first as a constant.
#[cfg(feature = "mysql")]
macro_rules! ancestor_range {
    ($k:literal) => {
        concat!(
            " OR (c.ancestor_",
            $k,
            " >= 0 AND m.seq > c.ancestor_",
            $k,
            " - c.ancestor_",
            $k,
            " % 4294967296 + ",
            window_after!(),
            " AND m.seq <= LEAST(c.ancestor_",
            $k,
            ", c.ancestor_",
            $k,
            " - c.ancestor_",
            $k,
            " % 4294967296 + {top}))"
        )
    };
}

/// [`window`]'s first statement: the count, the active branch and its fork, and the window's part
/// of the branch's own run and of the (up to) four nearest ancestors the conversation row keeps
/// (`ancestor_1` … `ancestor_4`, see `Tree::ancestors`) — one index range each, their bounds
/// from the row, so that a window crossing up to four fork points is one round trip.
///
/// Each backend has its own text, all measured on the W14 data (`BENCHMARKS.md`): SQLite and
/// PostgreSQL a `UNION ALL` of ranges bounded by uncorrelated subqueries (SQLite's OR
/// optimisation does not reach into a `LEFT JOIN`: `OR`ed ranges read the whole history);
/// MySQL the ranges `OR`ed in the join, which its range optimiser turns into one multi-interval
/// scan (a `UNION ALL` of subqueries cost it 70–80% on a straight read). Count-dependent bounds
/// are uncorrelated subqueries on PostgreSQL: written against the outer row, it only used them
/// as bounds when its statistics were fresh, and with stale ones read all 20,000 rows of a
/// history to return 50 (EXPLAIN ANALYZE).
fn first_read(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    bounds: SeqBounds,
) -> Result<Option<Found>> {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    use diesel::sql_types::{BigInt, Binary, Text};
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    const UNION: &str = concat!(
        "SELECT c.message_count AS count, c.branch AS active, c.branch_fork AS fork, m.id, \
         m.seq, m.role, m.content, m.metadata, m.created_at, \
         m.input_tokens, m.output_tokens, m.total_tokens, m.parts \
         FROM chatstore_conversations c LEFT JOIN chatstore_messages m ON m.conversation_id = c.id \
         AND m.user_id = c.user_id AND m.seq > (SELECT branch * 4294967296 + ",
        window_after!(),
        " FROM chatstore_conversations WHERE id = {conv} AND user_id = {user}) \
         AND m.seq <= c.branch * 4294967296 + {top} WHERE c.id = {conv} AND c.user_id = {user}",
        ancestor_part!("1"),
        ancestor_part!("2"),
        ancestor_part!("3"),
        ancestor_part!("4"),
    );
    #[cfg(feature = "mysql")]
    const OR: &str = concat!(
        "SELECT c.message_count AS count, c.branch AS active, c.branch_fork AS fork, m.id, \
         m.seq, m.role, m.content, m.metadata, m.created_at, \
         m.input_tokens, m.output_tokens, m.total_tokens, m.parts \
         FROM chatstore_conversations c LEFT JOIN chatstore_messages m ON m.conversation_id = c.id \
         AND m.user_id = c.user_id AND ((m.seq > c.branch * 4294967296 + ",
        window_after!(),
        " AND m.seq <= c.branch * 4294967296 + {top})",
        ancestor_range!("1"),
        ancestor_range!("2"),
        ancestor_range!("3"),
        ancestor_range!("4"),
        ") WHERE c.id = {conv} AND c.user_id = {user}"
    );
    let lo1 = bounds.lo - 1;
    let top = bounds.hi.min(MAX_POSITION);
    // SQLite and PostgreSQL name their parameters by number, each bound once; the texts are
    // made once per process.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    fn numbered(mark: &str) -> String {
        let names = ["{conv}", "{user}", "{lo1}", "{hi}", "{back}", "{top}"];
        (1..).zip(names).fold(UNION.to_owned(), |sql, (n, name)| {
            sql.replace(name, &format!("{mark}{n}"))
        })
    }
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    macro_rules! numbered_query {
        ($db:ty, $mark:literal) => {{
            static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            diesel::sql_query(TEXT.get_or_init(|| numbered($mark)).as_str())
                .into_boxed::<$db>()
                .bind::<Binary, _>(conv)
                .bind::<Text, _>(user)
                .bind::<BigInt, _>(lo1)
                .bind::<BigInt, _>(bounds.hi)
                .bind::<BigInt, _>(bounds.back)
                .bind::<BigInt, _>(top)
        }};
    }
    type Rows<'c> = Box<dyn Iterator<Item = QueryResult<WindowRow>> + 'c>;
    let rows: Rows<'_> = match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => Box::new(
            Cached(Positional::<_, WindowSql>::new(numbered_query!(
                diesel::sqlite::Sqlite,
                "?"
            )))
            .load_iter::<WindowRow, DefaultLoadingMode>(c)?,
        ),
        // Decoded as the rows arrive (libpq's single-row mode) rather than after libpq has
        // buffered the whole result: measured on 2026-12-03, `load-all` of 10,000 messages 16.1
        // -> 10.1 ms, `tail-50` 150 -> 130 µs.
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => Box::new(
            Cached(Positional::<_, WindowSql>::new(numbered_query!(
                diesel::pg::Pg,
                "$"
            )))
            .load_iter::<WindowRow, diesel::pg::PgRowByRowLoadingMode>(c)?,
        ),
        // MySQL's placeholders are positional: each value bound where its name appears, in the
        // order the text (made once per process) names them.
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => {
            static TEXT: std::sync::OnceLock<(String, Vec<String>)> = std::sync::OnceLock::new();
            let (text, names) = TEXT.get_or_init(|| {
                let mut pieces = OR.split('{');
                let mut text = pieces.next().unwrap_or_default().to_owned();
                let mut names = Vec::new();
                for piece in pieces {
                    let (name, rest) = piece.split_once('}').unwrap_or((piece, ""));
                    names.push(name.to_owned());
                    text.push('?');
                    text.push_str(rest);
                }
                (text, names)
            });
            let params = names
                .iter()
                .map(|name| match name.as_str() {
                    "conv" => Param::Binary(conv.as_bytes()),
                    "user" => Param::Text(user.as_str()),
                    "lo1" => Param::BigInt(lo1),
                    "hi" => Param::BigInt(bounds.hi),
                    "back" => Param::BigInt(bounds.back),
                    _ => Param::BigInt(top),
                })
                .collect();
            let query = Raw::kept(text, params);
            Box::new(
                Positional::<_, WindowSql>::new(query)
                    .load_iter::<WindowRow, DefaultLoadingMode>(c)?,
            )
        }
    };
    let mut found = None;
    let mut window = Vec::new();
    for row in rows {
        let row = row?;
        if let (Some(count), Some(active), Some(fork)) = (row.count, row.active, row.fork) {
            found = Some((count, active, fork));
        }
        // No message in the window still gives the conversation's row, NULLs for the message.
        if let Some(message) = row.message(conv) {
            window.push(message.into_model()?);
        }
    }
    // Sorted here rather than by an ORDER BY, by position across the branches' runs: the rows
    // arrive in index order, a range at a time.
    window.sort_by_key(|m| m.seq);
    Ok(found.map(|(count, branch, fork)| Found {
        count,
        messages: window,
        branch: BranchId::from_db(branch),
        fork,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(sizes: &[usize]) -> Vec<usize> {
        chunks(sizes, BYTES_PER_INSERT, |&size| size)
            .map(<[usize]>::len)
            .collect()
    }

    #[cfg(any(feature = "sqlite", feature = "mysql"))]
    #[test]
    fn pieces_take_the_largest_sizes_first_and_cover_every_row() {
        for n in [0, 1, 2, 3, 4, 5, 15, 16, 17, 63, 64, 65, 127, 1000] {
            let items: Vec<usize> = (0..n).collect();
            let cut: Vec<&[usize]> = pieces(&items).collect();
            let sizes: Vec<usize> = cut.iter().map(|p| p.len()).collect();
            assert!(
                sizes.iter().all(|s| PIECE_ROWS.contains(s)),
                "{n}: {sizes:?}"
            );
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{n}: {sizes:?}");
            assert_eq!(cut.concat(), items, "{n}");
        }
        // 15 × 64, 2 × 16, 8.
        assert_eq!(pieces(&[0; 1000]).count(), 15 + 2 + 1);
        // A turn's few messages are one INSERT.
        for n in 1..=8 {
            assert_eq!(pieces(&vec![0; n]).count(), 1, "{n}");
        }
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
