//! The same-schema floor: each workload as hand-written SQL on chatstore's own tables, through
//! rusqlite, the `postgres` crate and the `mysql` crate, with prepared statements and the same
//! transactions and durability settings as the store. It decodes every row into owned values, as the store does, so
//! the ratio to it is the cost of chatstore's code, not of its schema.

use chatstore::{ConversationId, NewMessage, Role, UserId};
use chrono::{DateTime, NaiveDateTime, SubsecRound, TimeDelta, Utc};
use mysql::prelude::Queryable;
use rusqlite::OptionalExtension;
use serde_json::Value;
use uuid::Uuid;

/// A message as the floor reads it: every column decoded into an owned value.
#[derive(Debug)]
pub struct FloorMessage {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub seq: i64,
    pub role: Role,
    pub content: String,
    pub metadata: Option<Value>,
    pub created_at: DateTime<Utc>,
    /// Input, output and total tokens: `Some` only when all three columns are set.
    pub usage: Option<(i64, i64, i64)>,
    /// The parts, as JSON (the store reads them into `Part`s).
    pub parts: Option<Value>,
}

/// A conversation as the floor reads it.
#[derive(Debug)]
pub struct FloorConversation {
    pub id: Uuid,
    pub user_id: String,
    pub title: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub message_count: i64,
    /// 2 pinned, 1 listed (0, archived, is not in the list read).
    pub list_rank: i16,
    pub metadata: Option<Value>,
    pub tags: Vec<String>,
    /// The conversation's running totals: input, output and total tokens.
    pub usage: (i64, i64, i64),
}

const MESSAGE_COLUMNS: &str = "id, conversation_id, seq, role, content, metadata, created_at, \
     input_tokens, output_tokens, total_tokens, parts";
const CONVERSATION_COLUMNS: &str = "id, user_id, title, created_at, updated_at, message_count, \
     list_rank, metadata, tags, input_tokens, output_tokens, total_tokens";
/// The list of one tag: a range of the tags' index, each row joined to its conversation by key.
const TAGGED_COLUMNS: &str = "c.id, c.user_id, c.title, c.created_at, c.updated_at, \
     c.message_count, c.list_rank, c.metadata, c.tags, c.input_tokens, c.output_tokens, \
     c.total_tokens";
const TAGGED_FROM: &str = "chatstore_conversation_tags t JOIN chatstore_conversations c \
     ON c.id = t.conversation_id AND c.user_id = t.user_id";
const TAGGED_ORDER: &str = "t.list_rank BETWEEN 1 AND 2 \
     ORDER BY t.list_rank DESC, t.updated_at DESC, t.conversation_id DESC";

/// Reserves the seqs, bumps `updated_at` (never backwards) and adds the batch's token usage to the
/// totals, as the store's append does. (SQLite numbers `$n` parameters by first appearance, so they
/// appear in order.)
const RESERVE: &str = "UPDATE chatstore_conversations SET message_count = message_count + $1, \
     updated_at = CASE WHEN updated_at > $2 THEN updated_at ELSE $2 END, \
     input_tokens = input_tokens + $3, output_tokens = output_tokens + $4, \
     total_tokens = total_tokens + $5 \
     WHERE id = $6 AND user_id = $7 RETURNING message_count, updated_at";
/// A conversation's system messages, through the partial index on role = 'system'.
const SYSTEM: &str = "SELECT id, conversation_id, seq, role, content, metadata, created_at, \
     input_tokens, output_tokens, total_tokens, parts FROM chatstore_messages \
     WHERE conversation_id = $1 AND user_id = $2 AND role = 'system' AND seq <= $3 ORDER BY seq";
/// Full-text search, newest first, as the store runs it: the owner's token in the index next to the
/// words, and the owner's condition.
/// The message's columns first (as `MESSAGE_COLUMNS`, decoded by the same decoders), then the
/// title, as the store's select lists them.
const SEARCH_COLUMNS: &str = "m.id, m.conversation_id, m.seq, m.role, m.content, m.metadata, \
     m.created_at, m.input_tokens, m.output_tokens, m.total_tokens, m.parts, c.title";
/// The title's index in a search hit's row (`SEARCH_COLUMNS`).
const SEARCH_TITLE: usize = 11;
/// A retry-safe append's first step: is the client's id already stored?
const LOOKUP_ID: &str = "SELECT seq FROM chatstore_messages WHERE id = $1";
const MESSAGE_INSERT_COLUMNS: &str = "id, conversation_id, user_id, seq, role, content, metadata, \
     created_at, input_tokens, output_tokens, total_tokens";
/// One row's placeholders for `MESSAGE_INSERT_COLUMNS`.
const MESSAGE_INSERT_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

fn uuid(bytes: &[u8]) -> Uuid {
    Uuid::from_slice(bytes).expect("16-byte id")
}

fn metadata(text: Option<String>) -> Option<Value> {
    text.map(|t| serde_json::from_str(&t).expect("JSON metadata"))
}

fn role(text: &str) -> Role {
    text.parse().expect("known role")
}

/// A message's usage from its three columns: all set, or none.
fn usage(input: Option<i64>, output: Option<i64>, total: Option<i64>) -> Option<(i64, i64, i64)> {
    match (input, output, total) {
        (Some(input), Some(output), Some(total)) => Some((input, output, total)),
        _ => None,
    }
}

/// A new message's usage columns, as the store writes them: all three set, or all NULL.
fn usage_columns(message: &NewMessage<'_>) -> [Option<i64>; 3] {
    let tokens = |n: u64| Some(i64::try_from(n).expect("tokens fit in a BIGINT"));
    match message.usage() {
        Some(u) => [u.input_tokens, u.output_tokens, u.total_tokens].map(tokens),
        None => [None; 3],
    }
}

/// What a batch adds to its conversation's totals: the sums of its messages' usage columns.
fn usage_sums(columns: &[[Option<i64>; 3]]) -> [i64; 3] {
    let sum = |k: usize| columns.iter().filter_map(|c| c[k]).sum::<i64>();
    [sum(0), sum(1), sum(2)]
}

/// MySQL's statements where they differ from the others': `?` placeholders, no RETURNING (the
/// store reads the reserved count back under the row lock its UPDATE took).
mod my {
    pub const RESERVE: &str =
        "UPDATE chatstore_conversations SET message_count = message_count + ?, \
         updated_at = CASE WHEN updated_at > ? THEN updated_at ELSE ? END, \
         input_tokens = input_tokens + ?, output_tokens = output_tokens + ?, \
         total_tokens = total_tokens + ? \
         WHERE id = ? AND user_id = ?";
    pub const RESERVED: &str =
        "SELECT message_count, updated_at FROM chatstore_conversations WHERE id = ?";
    pub const LOOKUP_ID: &str = "SELECT seq FROM chatstore_messages WHERE id = ?";
    pub const SYSTEM: &str =
        "SELECT id, conversation_id, seq, role, content, metadata, created_at, \
         input_tokens, output_tokens, total_tokens, parts FROM chatstore_messages \
         WHERE conversation_id = ? AND user_id = ? AND role = 'system' AND seq <= ? ORDER BY seq";
    pub const LOAD_ALL: &str =
        "SELECT id, conversation_id, seq, role, content, metadata, created_at, \
         input_tokens, output_tokens, total_tokens, parts FROM chatstore_messages \
         WHERE conversation_id = ? AND user_id = ? ORDER BY seq";
    pub const BEFORE: &str =
        "SELECT id, conversation_id, seq, role, content, metadata, created_at, \
         input_tokens, output_tokens, total_tokens, parts FROM chatstore_messages \
         WHERE conversation_id = ? AND user_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?";
    pub const LIST: &str = "SELECT id, user_id, title, created_at, updated_at, message_count, \
         list_rank, metadata, tags, input_tokens, output_tokens, total_tokens \
         FROM chatstore_conversations \
         WHERE user_id = ? AND list_rank BETWEEN 1 AND 2 \
         ORDER BY list_rank DESC, updated_at DESC, id DESC LIMIT ?";
    /// A one-word search's candidates, newest first, as the store's statement reads them.
    pub const SEARCH_IDS: &str = "SELECT m.id FROM chatstore_messages m WHERE m.user_id = ? \
         AND m.id IN (SELECT message_id FROM chatstore_message_words WHERE user_id = ? AND word = ?) \
         ORDER BY m.created_at DESC, m.seq DESC, m.id DESC LIMIT ? OFFSET ?";
    /// Rows of `chatstore_search_pending` per INSERT, as the store writes them.
    pub const PENDING_PER_INSERT: usize = 5000;
}

/// The same workloads, hand-written.
pub enum Floor {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgFloor>),
    Mysql(mysql::Conn),
}

/// A `postgres` client with every statement prepared once, as a careful hand-writer would.
pub struct PgFloor {
    client: postgres::Client,
    system: postgres::Statement,
    search: postgres::Statement,
    append: postgres::Statement,
    load_all: postgres::Statement,
    before: postgres::Statement,
    list: postgres::Statement,
    tagged: postgres::Statement,
}

impl PgFloor {
    pub(super) fn new(mut client: postgres::Client) -> PgFloor {
        let mut prepare = |sql: &str| client.prepare(sql).expect(sql);
        let system = prepare(SYSTEM);
        let search = prepare(&format!(
            "SELECT {SEARCH_COLUMNS} FROM chatstore_messages m \
             JOIN chatstore_conversations c ON c.id = m.conversation_id, \
             (SELECT to_tsquery('simple', regexp_replace(normalize($1, NFD), \
               '[\\u0300-\\u036f]', '', 'g')) AS words) w, \
             LATERAL (SELECT w.words && ('u' || md5($2))::tsquery AS q) q \
             WHERE numnode(w.words) > 0 AND m.search @@ q.q AND m.user_id = $2 \
             ORDER BY m.created_at DESC, m.seq DESC, m.id DESC LIMIT $3"
        ));
        // The append in one statement, as the store runs it: the reservation feeds the insert, and
        // the conversation's tags (if any) take its new time.
        let append = prepare(
            "WITH reserved AS (UPDATE chatstore_conversations \
             SET message_count = message_count + $3, \
             updated_at = CASE WHEN updated_at > $4 THEN updated_at ELSE $4 END, \
             input_tokens = input_tokens + $9, output_tokens = output_tokens + $10, \
             total_tokens = total_tokens + $11 \
             WHERE id = $1 AND user_id = $2 RETURNING message_count, updated_at), \
             inserted AS (INSERT INTO chatstore_messages \
             (id, conversation_id, user_id, seq, role, content, metadata, created_at, \
             input_tokens, output_tokens, total_tokens) \
             SELECT m.id, $1, $2, reserved.message_count - $3 + m.ord, m.role, m.content, \
             m.metadata, reserved.updated_at, m.input_tokens, m.output_tokens, m.total_tokens \
             FROM reserved, \
             unnest($5::bytea[], $6::text[], $7::text[], $8::text[], \
             $12::int8[], $13::int8[], $14::int8[]) WITH ORDINALITY \
             AS m(id, role, content, metadata, input_tokens, output_tokens, total_tokens, ord)), \
             touched AS (UPDATE chatstore_conversation_tags t \
             SET updated_at = reserved.updated_at FROM reserved \
             WHERE t.conversation_id = $1 AND t.user_id = $2) \
             SELECT message_count FROM reserved",
        );
        let load_all = prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM chatstore_messages \
             WHERE conversation_id = $1 AND user_id = $2 ORDER BY seq"
        ));
        let before = prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM chatstore_messages \
             WHERE conversation_id = $1 AND user_id = $2 AND seq < $3 ORDER BY seq DESC LIMIT $4"
        ));
        let list = prepare(&format!(
            "SELECT {CONVERSATION_COLUMNS} FROM chatstore_conversations \
             WHERE user_id = $1 AND list_rank BETWEEN 1 AND 2 \
             ORDER BY list_rank DESC, updated_at DESC, id DESC LIMIT $2"
        ));
        let tagged = prepare(&format!(
            "SELECT {TAGGED_COLUMNS} FROM {TAGGED_FROM} \
             WHERE t.user_id = $1 AND t.tag = $3 AND {TAGGED_ORDER} LIMIT $2"
        ));
        PgFloor {
            client,
            system,
            search,
            append,
            load_all,
            before,
            list,
            tagged,
        }
    }

    fn messages(
        &mut self,
        which: fn(&PgFloor) -> &postgres::Statement,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Vec<FloorMessage> {
        let statement = which(self).clone();
        self.client
            .query(&statement, params)
            .expect("read messages")
            .iter()
            .map(pg_message)
            .collect()
    }
}

/// The message in a row's first eleven columns (`MESSAGE_COLUMNS`).
fn pg_message(row: &postgres::Row) -> FloorMessage {
    FloorMessage {
        id: uuid(row.get(0)),
        conversation_id: uuid(row.get(1)),
        seq: row.get(2),
        role: role(row.get(3)),
        content: row.get(4),
        metadata: metadata(row.get(5)),
        created_at: row.get::<_, NaiveDateTime>(6).and_utc(),
        usage: usage(row.get(7), row.get(8), row.get(9)),
        parts: metadata(row.get(10)),
    }
}

fn sqlite_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<FloorMessage> {
    Ok(FloorMessage {
        id: uuid(&row.get::<_, Vec<u8>>(0)?),
        conversation_id: uuid(&row.get::<_, Vec<u8>>(1)?),
        seq: row.get(2)?,
        role: role(&row.get::<_, String>(3)?),
        content: row.get(4)?,
        metadata: metadata(row.get(5)?),
        created_at: row.get::<_, NaiveDateTime>(6)?.and_utc(),
        usage: usage(row.get(7)?, row.get(8)?, row.get(9)?),
        parts: metadata(row.get(10)?),
    })
}

/// The messages `sql` selects (`MESSAGE_COLUMNS`), through the connection's statement cache.
fn mysql_messages(conn: &mut mysql::Conn, sql: &str, params: mysql::Params) -> Vec<FloorMessage> {
    conn.exec_map(sql, params, mysql_message).expect(sql)
}

type MysqlMessageRow = (
    Vec<u8>,
    Vec<u8>,
    i64,
    String,
    String,
    Option<String>,
    NaiveDateTime,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn mysql_message(row: MysqlMessageRow) -> FloorMessage {
    let (
        id,
        conversation_id,
        seq,
        role_text,
        content,
        meta,
        created_at,
        input,
        output,
        total,
        parts,
    ) = row;
    FloorMessage {
        id: uuid(&id),
        conversation_id: uuid(&conversation_id),
        seq,
        role: role(&role_text),
        content,
        metadata: metadata(meta),
        created_at: created_at.and_utc(),
        usage: usage(input, output, total),
        parts: metadata(parts),
    }
}

fn sqlite_messages(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Vec<FloorMessage> {
    let mut statement = conn.prepare_cached(sql).expect(sql);
    statement
        .query_map(params, sqlite_message)
        .expect(sql)
        .collect::<rusqlite::Result<_>>()
        .expect(sql)
}

impl Floor {
    /// Refreshes the planner's statistics (PostgreSQL; SQLite has no ANALYZE data unless asked
    /// and plans these queries from the indexes alone).
    /// On PostgreSQL the whole database is analyzed, on MySQL chatstore's tables.
    pub fn analyze(&mut self) {
        match self {
            Floor::Sqlite(_) => {}
            Floor::Postgres(pg) => pg.client.batch_execute("ANALYZE").expect("analyze"),
            Floor::Mysql(conn) => conn
                .query_drop(
                    "ANALYZE TABLE chatstore_conversations, chatstore_conversation_tags, chatstore_messages, \
                     chatstore_message_words",
                )
                .expect("analyze"),
        }
    }

    /// Writes out everything pending: see `Target::checkpoint`.
    pub fn checkpoint(&mut self) {
        match self {
            Floor::Sqlite(conn) => conn
                .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .expect("checkpoint"),
            Floor::Postgres(pg) => pg.client.batch_execute("CHECKPOINT").expect("checkpoint"),
            // InnoDB has no checkpoint a client can ask for; its redo log is a fixed-size ring,
            // written back in the background.
            Floor::Mysql(_) => {}
        }
    }

    /// Appends `batch` to `conv` in one transaction, as `append_messages` does: reserve the seqs
    /// (taking the row lock first), insert the rows, commit; returns the first seq.
    pub fn append(&mut self, user: &UserId, conv: ConversationId, batch: &[NewMessage<'_>]) -> i64 {
        self.append_with(user, conv, batch, false)
    }

    /// As [`append`](Self::append), for a batch whose messages carry client ids: the same
    /// transaction first looks the first id up, and an id already stored ends it (a retry).
    pub fn append_with(
        &mut self,
        user: &UserId,
        conv: ConversationId,
        batch: &[NewMessage<'_>],
        client_ids: bool,
    ) -> i64 {
        let n = batch.len() as i64;
        let conv = conv.as_uuid();
        let ids: Vec<Uuid> = batch
            .iter()
            .map(|m| m.id().map_or_else(Uuid::now_v7, |id| id.as_uuid()))
            .collect();
        let usage: Vec<[Option<i64>; 3]> = batch.iter().map(usage_columns).collect();
        let [input, output, total] = usage_sums(&usage);
        match self {
            Floor::Sqlite(conn) => {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .expect("begin");
                if client_ids {
                    let stored: Option<i64> = tx
                        .prepare_cached(LOOKUP_ID)
                        .expect(LOOKUP_ID)
                        .query_row([ids[0].as_bytes()], |row| row.get(0))
                        .optional()
                        .expect("look up");
                    if let Some(seq) = stored {
                        tx.commit().expect("commit");
                        return seq;
                    }
                }
                let (count, created_at): (i64, NaiveDateTime) = tx
                    .prepare_cached(RESERVE)
                    .expect(RESERVE)
                    .query_row(
                        rusqlite::params![
                            n,
                            now(),
                            input,
                            output,
                            total,
                            conv.as_bytes(),
                            user.as_str()
                        ],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .expect("reserve");
                let first = count - n + 1;
                // Multi-row INSERTs of up to 1,000 rows (11,000 binds), which beat a prepared
                // single-row INSERT in a loop by a fifth on a 1,000-message batch.
                let metadata: Vec<Option<String>> = batch
                    .iter()
                    .map(|m| m.metadata().map(Value::to_string))
                    .collect();
                let seqs: Vec<i64> = (first..first + n).collect();
                let roles: Vec<&str> = batch.iter().map(|m| m.role().as_str()).collect();
                let contents: Vec<&str> = batch.iter().map(|m| m.content()).collect();
                let owner = user.as_str();
                for start in (0..batch.len()).step_by(1000) {
                    let end = (start + 1000).min(batch.len());
                    let sql = format!(
                        "INSERT INTO chatstore_messages ({MESSAGE_INSERT_COLUMNS}) VALUES {}",
                        vec![MESSAGE_INSERT_ROW; end - start].join(", ")
                    );
                    let mut params: Vec<&dyn rusqlite::ToSql> =
                        Vec::with_capacity(11 * (end - start));
                    for i in start..end {
                        params.extend([
                            ids[i].as_bytes() as &dyn rusqlite::ToSql,
                            conv.as_bytes(),
                            &owner,
                            &seqs[i],
                            &roles[i],
                            &contents[i],
                            &metadata[i],
                            &created_at,
                            &usage[i][0],
                            &usage[i][1],
                            &usage[i][2],
                        ]);
                    }
                    tx.prepare_cached(&sql)
                        .expect("insert")
                        .execute(params.as_slice())
                        .expect("insert");
                }
                tx.commit().expect("commit");
                first
            }
            // One statement, committed as it ends, as the store's append on PostgreSQL: client
            // ids need no look-up first (an id already stored fails the statement, which wrote
            // nothing, and only then would the store look for a retry).
            Floor::Postgres(pg) => {
                let metadata: Vec<Option<String>> = batch
                    .iter()
                    .map(|m| m.metadata().map(Value::to_string))
                    .collect();
                let ids: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes().as_slice()).collect();
                let roles: Vec<&str> = batch.iter().map(|m| m.role().as_str()).collect();
                let contents: Vec<&str> = batch.iter().map(|m| m.content()).collect();
                let column = |k: usize| usage.iter().map(|u| u[k]).collect::<Vec<Option<i64>>>();
                let row = pg
                    .client
                    .query_one(
                        &pg.append,
                        &[
                            &conv.as_bytes().as_slice(),
                            &user.as_str(),
                            &n,
                            &now(),
                            &ids,
                            &roles,
                            &contents,
                            &metadata,
                            &input,
                            &output,
                            &total,
                            &column(0),
                            &column(1),
                            &column(2),
                        ],
                    )
                    .expect("append");
                let count: i64 = row.get(0);
                let _ = client_ids;
                count - n + 1
            }
            Floor::Mysql(conn) => {
                conn.query_drop("BEGIN").expect("begin");
                if client_ids {
                    let stored: Option<i64> = conn
                        .exec_first(my::LOOKUP_ID, (ids[0].as_bytes().as_slice(),))
                        .expect("look up");
                    if let Some(seq) = stored {
                        conn.query_drop("COMMIT").expect("commit");
                        return seq;
                    }
                }
                let now = now();
                let conv = conv.as_bytes().as_slice();
                conn.exec_drop(
                    my::RESERVE,
                    (n, now, now, input, output, total, conv, user.as_str()),
                )
                .expect("reserve");
                assert_eq!(conn.affected_rows(), 1, "the user's conversation");
                let (count, created_at): (i64, NaiveDateTime) = conn
                    .exec_first(my::RESERVED, (conv,))
                    .expect("reserved")
                    .expect("the conversation");
                let first = count - n + 1;
                // Multi-row INSERTs of up to 1,000 rows, as the store's.
                for (chunk, start) in batch.chunks(1000).zip((0..).step_by(1000)) {
                    let sql = format!(
                        "INSERT INTO chatstore_messages ({MESSAGE_INSERT_COLUMNS}) VALUES {}",
                        vec![MESSAGE_INSERT_ROW; chunk.len()].join(", ")
                    );
                    let mut params: Vec<mysql::Value> = Vec::with_capacity(11 * chunk.len());
                    for (i, m) in chunk.iter().enumerate() {
                        params.extend([
                            ids[start + i].as_bytes().as_slice().into(),
                            conv.into(),
                            user.as_str().into(),
                            (first + (start + i) as i64).into(),
                            m.role().as_str().into(),
                            m.content().into(),
                            m.metadata().map(Value::to_string).into(),
                            created_at.into(),
                            usage[start + i][0].into(),
                            usage[start + i][1].into(),
                            usage[start + i][2].into(),
                        ]);
                    }
                    conn.exec_drop(&sql, params).expect("insert");
                }
                // What waits for the search index, as the store records it on MySQL: a row for
                // each message, in the append's transaction.
                for chunk in ids.chunks(my::PENDING_PER_INSERT) {
                    let sql = format!(
                        "INSERT INTO chatstore_search_pending (message_id, user_id) VALUES {}",
                        vec!["(?, ?)"; chunk.len()].join(", ")
                    );
                    let params: Vec<mysql::Value> = chunk
                        .iter()
                        .flat_map(|id| [id.as_bytes().as_slice().into(), user.as_str().into()])
                        .collect();
                    conn.exec_drop(&sql, params).expect("pending");
                }
                conn.query_drop("COMMIT").expect("commit");
                first
            }
        }
    }

    /// The whole history, oldest first.
    pub fn load_all(&mut self, user: &UserId, conv: ConversationId) -> Vec<FloorMessage> {
        let conv = conv.as_uuid();
        let conv = conv.as_bytes().as_slice();
        match self {
            Floor::Sqlite(conn) => sqlite_messages(
                conn,
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM chatstore_messages \
                     WHERE conversation_id = ?1 AND user_id = ?2 ORDER BY seq"
                ),
                rusqlite::params![conv, user.as_str()],
            ),
            Floor::Postgres(pg) => pg.messages(|pg| &pg.load_all, &[&conv, &user.as_str()]),
            Floor::Mysql(conn) => mysql_messages(conn, my::LOAD_ALL, (conv, user.as_str()).into()),
        }
    }

    /// The newest `n`, oldest first: the messages before any seq.
    pub fn latest(&mut self, user: &UserId, conv: ConversationId, n: i64) -> Vec<FloorMessage> {
        self.before(user, conv, i64::MAX, n)
    }

    /// Up to `n` messages older than `seq`, oldest first.
    pub fn before(
        &mut self,
        user: &UserId,
        conv: ConversationId,
        seq: i64,
        n: i64,
    ) -> Vec<FloorMessage> {
        let conv = conv.as_uuid();
        let conv = conv.as_bytes().as_slice();
        let mut rows = match self {
            Floor::Sqlite(conn) => sqlite_messages(
                conn,
                &format!(
                    "SELECT {MESSAGE_COLUMNS} FROM chatstore_messages WHERE conversation_id = ?1 \
                     AND user_id = ?2 AND seq < ?3 ORDER BY seq DESC LIMIT ?4"
                ),
                rusqlite::params![conv, user.as_str(), seq, n],
            ),
            Floor::Postgres(pg) => pg.messages(|pg| &pg.before, &[&conv, &user.as_str(), &seq, &n]),
            Floor::Mysql(conn) => {
                mysql_messages(conn, my::BEFORE, (conv, user.as_str(), seq, n).into())
            }
        };
        rows.reverse();
        rows
    }

    /// The user's `n` most recently updated conversations.
    /// The conversation's system messages up to `last`, oldest first.
    pub fn system(&mut self, user: &UserId, conv: ConversationId, last: i64) -> Vec<FloorMessage> {
        let conv = conv.as_uuid();
        let conv = conv.as_bytes().as_slice();
        match self {
            Floor::Sqlite(conn) => {
                sqlite_messages(conn, SYSTEM, rusqlite::params![conv, user.as_str(), last])
            }
            Floor::Postgres(pg) => pg.messages(|pg| &pg.system, &[&conv, &user.as_str(), &last]),
            Floor::Mysql(conn) => {
                mysql_messages(conn, my::SYSTEM, (conv, user.as_str(), last).into())
            }
        }
    }

    /// The newest `limit` of the user's messages containing `word`, each with its conversation's
    /// title.
    pub fn search(
        &mut self,
        user: &UserId,
        word: &str,
        limit: i64,
    ) -> Vec<(FloorMessage, Option<String>)> {
        match self {
            Floor::Sqlite(conn) => {
                let owner: String = user.as_str().bytes().map(|b| format!("{b:02X}")).collect();
                let matching = format!("owner:\"{owner}\" AND body:(\"{word}\")");
                let sql = format!(
                    "SELECT {SEARCH_COLUMNS} FROM chatstore_messages_search s \
                     JOIN chatstore_messages m ON m.key = s.rowid \
                     JOIN chatstore_conversations c ON c.id = m.conversation_id \
                     WHERE chatstore_messages_search MATCH ?1 AND m.user_id = ?2 \
                     ORDER BY m.created_at DESC, m.seq DESC, m.id DESC LIMIT ?3"
                );
                let mut statement = conn.prepare_cached(&sql).expect("search");
                statement
                    .query_map(rusqlite::params![matching, user.as_str(), limit], |row| {
                        Ok((sqlite_message(row)?, row.get(SEARCH_TITLE)?))
                    })
                    .expect("search")
                    .collect::<rusqlite::Result<_>>()
                    .expect("search")
            }
            Floor::Postgres(pg) => {
                let query = format!("'{word}'");
                let statement = pg.search.clone();
                pg.client
                    .query(&statement, &[&query, &user.as_str(), &limit])
                    .expect("search")
                    .iter()
                    .map(|row| (pg_message(row), row.get(SEARCH_TITLE)))
                    .collect()
            }
            // The store's statements for a query of one short word: the page's ids, then its
            // rows, in one read-only snapshot.
            Floor::Mysql(conn) => {
                conn.query_drop("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .expect("isolation");
                conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    .expect("begin");
                let owner = user.as_str();
                let page: Vec<Vec<u8>> = conn
                    .exec(my::SEARCH_IDS, (owner, owner, word, limit, 0i64))
                    .expect("search");
                let mut rows: Vec<(FloorMessage, Option<String>)> = Vec::new();
                if !page.is_empty() {
                    let sql = format!(
                        "SELECT {SEARCH_COLUMNS} FROM chatstore_messages m \
                         JOIN chatstore_conversations c ON c.id = m.conversation_id \
                         WHERE m.id IN ({})",
                        vec!["?"; page.len()].join(", ")
                    );
                    let params: Vec<mysql::Value> =
                        page.iter().map(|id| id.as_slice().into()).collect();
                    rows = conn
                        .exec_map(
                            &sql,
                            params,
                            |(
                                id,
                                conv,
                                seq,
                                role,
                                content,
                                meta,
                                created,
                                input,
                                output,
                                total,
                                parts,
                                title,
                            )| {
                                (
                                    mysql_message((
                                        id, conv, seq, role, content, meta, created, input, output,
                                        total, parts,
                                    )),
                                    title,
                                )
                            },
                        )
                        .expect("search");
                }
                conn.query_drop("COMMIT").expect("commit");
                // In the page's order.
                page.iter()
                    .filter_map(|id| {
                        let at = rows
                            .iter()
                            .position(|(m, _)| m.id.as_bytes() == id.as_slice())?;
                        Some(rows.swap_remove(at))
                    })
                    .collect()
            }
        }
    }

    pub fn list(&mut self, user: &UserId, n: i64) -> Vec<FloorConversation> {
        self.conversations(user, None, n)
    }

    /// The first `n` of the user's conversations with `tag` in the default list's order.
    pub fn list_tagged(&mut self, user: &UserId, tag: &str, n: i64) -> Vec<FloorConversation> {
        self.conversations(user, Some(tag), n)
    }

    /// The first `n` of the user's listed conversations (with `tag`, those with it).
    fn conversations(
        &mut self,
        user: &UserId,
        tag: Option<&str>,
        n: i64,
    ) -> Vec<FloorConversation> {
        type Row = (
            Vec<u8>,
            String,
            Option<String>,
            NaiveDateTime,
            NaiveDateTime,
            i64,
            i16,
            Option<String>,
            Option<String>,
            i64,
            i64,
            i64,
        );
        let decode = |(
            id,
            user_id,
            title,
            created,
            updated,
            count,
            rank,
            meta,
            tags,
            input,
            output,
            total,
        ): Row| {
            FloorConversation {
                id: uuid(&id),
                user_id,
                title,
                created_at: created.and_utc(),
                updated_at: updated.and_utc(),
                message_count: count,
                list_rank: rank,
                metadata: metadata(meta),
                tags: tags.map_or_else(Vec::new, |t| {
                    serde_json::from_str(&t).expect("a JSON array of tags")
                }),
                usage: (input, output, total),
            }
        };
        match self {
            Floor::Sqlite(conn) => {
                let sql = match tag {
                    None => format!(
                        "SELECT {CONVERSATION_COLUMNS} FROM chatstore_conversations \
                         WHERE user_id = ?1 AND list_rank BETWEEN 1 AND 2 \
                         ORDER BY list_rank DESC, updated_at DESC, id DESC LIMIT ?2"
                    ),
                    Some(_) => format!(
                        "SELECT {TAGGED_COLUMNS} FROM {TAGGED_FROM} \
                         WHERE t.user_id = ?1 AND t.tag = ?3 AND {TAGGED_ORDER} LIMIT ?2"
                    ),
                };
                let mut statement = conn.prepare_cached(&sql).expect("list");
                let mut rows = match tag {
                    None => statement.query(rusqlite::params![user.as_str(), n]),
                    Some(tag) => statement.query(rusqlite::params![user.as_str(), n, tag]),
                }
                .expect("list");
                let mut listed = Vec::new();
                while let Some(row) = rows.next().expect("list") {
                    listed.push(decode((
                        row.get(0).expect("id"),
                        row.get(1).expect("user_id"),
                        row.get(2).expect("title"),
                        row.get(3).expect("created_at"),
                        row.get(4).expect("updated_at"),
                        row.get(5).expect("message_count"),
                        row.get(6).expect("list_rank"),
                        row.get(7).expect("metadata"),
                        row.get(8).expect("tags"),
                        row.get(9).expect("input_tokens"),
                        row.get(10).expect("output_tokens"),
                        row.get(11).expect("total_tokens"),
                    )));
                }
                listed
            }
            Floor::Postgres(pg) => {
                let rows = match tag {
                    None => pg.client.query(&pg.list, &[&user.as_str(), &n]),
                    Some(tag) => pg.client.query(&pg.tagged, &[&user.as_str(), &n, &tag]),
                };
                rows.expect("list")
                    .into_iter()
                    .map(|row| {
                        decode((
                            row.get(0),
                            row.get(1),
                            row.get(2),
                            row.get(3),
                            row.get(4),
                            row.get(5),
                            row.get(6),
                            row.get(7),
                            row.get(8),
                            row.get(9),
                            row.get(10),
                            row.get(11),
                        ))
                    })
                    .collect()
            }
            Floor::Mysql(conn) => match tag {
                None => conn.exec_map(my::LIST, (user.as_str(), n), decode),
                Some(tag) => conn.exec_map(
                    format!(
                        "SELECT {TAGGED_COLUMNS} FROM {TAGGED_FROM} \
                         WHERE t.user_id = ? AND t.tag = ? AND {TAGGED_ORDER} LIMIT ?"
                    ),
                    (user.as_str(), tag, n),
                    decode,
                ),
            }
            .expect("list"),
        }
    }

    /// Tags each of `user`'s conversations with one of `tags` tags (`tag-0`, `tag-1`, …), in turn
    /// by id, as the store keeps tags: in the conversation's row and one row each in the tags'
    /// index, with its place in the lists.
    pub fn seed_tags(&mut self, user: &UserId, tags: usize) {
        let numbered = |concat: &str| {
            format!(
                "INSERT INTO chatstore_conversation_tags \
                 (conversation_id, user_id, tag, list_rank, updated_at) \
                 SELECT id, user_id, {concat}, list_rank, updated_at FROM \
                 (SELECT id, user_id, list_rank, updated_at, \
                 ROW_NUMBER() OVER (ORDER BY id) AS n \
                 FROM chatstore_conversations WHERE user_id = {{user}}) s"
            )
        };
        match self {
            Floor::Sqlite(conn) => {
                let tx = conn.transaction().expect("begin");
                let insert = numbered(&format!("'tag-' || (n % {tags})")).replace("{user}", "?1");
                tx.execute(&insert, [user.as_str()]).expect("seed tags");
                tx.execute(
                    "UPDATE chatstore_conversations SET tags = \
                     (SELECT json_array(tag) FROM chatstore_conversation_tags t \
                     WHERE t.conversation_id = chatstore_conversations.id \
                     AND t.user_id = chatstore_conversations.user_id) WHERE user_id = ?1",
                    [user.as_str()],
                )
                .expect("seed tags");
                tx.commit().expect("commit");
            }
            Floor::Postgres(pg) => {
                let mut tx = pg.client.transaction().expect("begin");
                let insert = numbered(&format!("'tag-' || (n % {tags})")).replace("{user}", "$1");
                tx.execute(&insert, &[&user.as_str()]).expect("seed tags");
                tx.execute(
                    "UPDATE chatstore_conversations c SET tags = json_build_array(t.tag)::text \
                     FROM chatstore_conversation_tags t \
                     WHERE t.conversation_id = c.id AND t.user_id = c.user_id AND c.user_id = $1",
                    &[&user.as_str()],
                )
                .expect("seed tags");
                tx.commit().expect("commit");
            }
            Floor::Mysql(conn) => {
                conn.query_drop("BEGIN").expect("begin");
                let insert =
                    numbered(&format!("CONCAT('tag-', n % {tags})")).replace("{user}", "?");
                conn.exec_drop(&insert, (user.as_str(),))
                    .expect("seed tags");
                conn.exec_drop(
                    "UPDATE chatstore_conversations c JOIN chatstore_conversation_tags t \
                     ON t.conversation_id = c.id AND t.user_id = c.user_id \
                     SET c.tags = JSON_ARRAY(t.tag) WHERE c.user_id = ?",
                    (user.as_str(),),
                )
                .expect("seed tags");
                conn.query_drop("COMMIT").expect("commit");
            }
        }
    }

    /// Seeds `per_user` conversations for each of `users` users (`user-000`, `user-001`, …) in one
    /// transaction, with distinct `updated_at`s a millisecond apart, interleaved between users.
    pub fn seed_conversations(&mut self, users: usize, per_user: usize) {
        let start = now() - TimeDelta::days(30);
        let rows: Vec<(Uuid, String, NaiveDateTime)> = (0..users * per_user)
            .map(|i| {
                let time = start + TimeDelta::milliseconds(i as i64);
                (Uuid::now_v7(), format!("user-{:03}", i % users), time)
            })
            .collect();
        let sql = "INSERT INTO chatstore_conversations \
                   (id, user_id, title, created_at, updated_at, message_count) \
                   VALUES ($1, $2, $3, $4, $4, 0)";
        match self {
            Floor::Sqlite(conn) => {
                let tx = conn.transaction().expect("begin");
                {
                    let mut insert = tx.prepare_cached(sql).expect(sql);
                    for (id, user, time) in &rows {
                        insert
                            .execute(rusqlite::params![id.as_bytes(), user, "a chat", time])
                            .expect("seed");
                    }
                }
                tx.commit().expect("commit");
            }
            Floor::Postgres(pg) => {
                let ids: Vec<&[u8]> = rows.iter().map(|r| r.0.as_bytes().as_slice()).collect();
                let users: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
                let times: Vec<NaiveDateTime> = rows.iter().map(|r| r.2).collect();
                pg.client
                    .execute(
                        "INSERT INTO chatstore_conversations \
                         (id, user_id, title, created_at, updated_at, message_count) \
                         SELECT id, u, 'a chat', t, t, 0 \
                         FROM unnest($1::bytea[], $2::text[], $3::timestamp[]) AS s(id, u, t)",
                        &[&ids, &users, &times],
                    )
                    .expect("seed");
            }
            Floor::Mysql(conn) => {
                conn.query_drop("BEGIN").expect("begin");
                for chunk in rows.chunks(1000) {
                    let sql = format!(
                        "INSERT INTO chatstore_conversations \
                         (id, user_id, title, created_at, updated_at, message_count) VALUES {}",
                        vec!["(?, ?, 'a chat', ?, ?, 0)"; chunk.len()].join(", ")
                    );
                    let mut params: Vec<mysql::Value> = Vec::with_capacity(4 * chunk.len());
                    for (id, user, time) in chunk {
                        params.extend([
                            id.as_bytes().as_slice().into(),
                            user.as_str().into(),
                            (*time).into(),
                            (*time).into(),
                        ]);
                    }
                    conn.exec_drop(&sql, params).expect("seed");
                }
                conn.query_drop("COMMIT").expect("commit");
            }
        }
    }
}
