//! The minimal floor: each workload as hand-written SQL on the smallest schema the job needs, in
//! tables of its own (`minimal_conversations`, `minimal_messages`) in the same database, with the
//! same durability. Integer ids from the database, times as integer microseconds, one index on
//! messages, for windows, and one on conversations, for listing; no message ids of the client's, no seq counter, no metadata, no
//! search index, no foreign key. An append checks the owner and bumps the conversation in the
//! statement that locks it; a read of messages trusts the conversation id it is given (the caller
//! checked the owner when it got the id), so it reads the messages table alone.
//!
//! The ratio to it is what chatstore's schema and code cost together: what a hand-writer who needs
//! none of those features would pay.

use chatstore::{NewMessage, Role};
use chrono::{DateTime, TimeDelta, Utc};
use mysql::prelude::Queryable;

/// A message as the minimal floor reads it, decoded into owned values.
#[derive(Debug)]
pub struct MinimalMessage {
    pub id: i64,
    pub role: Role,
    pub content: String,
    pub created_at: DateTime<Utc>,
}

/// A conversation as the minimal floor lists it.
#[derive(Debug)]
pub struct MinimalConversation {
    pub id: i64,
    pub owner: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SQLITE_SCHEMA: &str = "
    CREATE TABLE minimal_conversations (
        id INTEGER PRIMARY KEY, owner TEXT NOT NULL,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
    CREATE INDEX minimal_conversations_list
        ON minimal_conversations (owner, updated_at DESC, id DESC);
    CREATE TABLE minimal_messages (
        id INTEGER PRIMARY KEY, conversation_id INTEGER NOT NULL,
        role TEXT NOT NULL, content TEXT NOT NULL, created_at INTEGER NOT NULL);
    CREATE INDEX minimal_messages_window ON minimal_messages (conversation_id, id);
    CREATE TABLE minimal_tags (
        owner TEXT NOT NULL, tag TEXT NOT NULL, conversation_id INTEGER NOT NULL,
        PRIMARY KEY (owner, tag, conversation_id)) WITHOUT ROWID;";

/// On PostgreSQL the window index is the messages' key, and there is no index on `id` alone
/// (identity values are unique by construction): with one, the planner read the newest 50 of a
/// 10,000-message history backwards through it, filtering out the 100,000 messages of a later
/// conversation on the way (15 ms instead of 0.05 ms, EXPLAIN ANALYZE, custom and generic plans
/// alike).
const POSTGRES_SCHEMA: &str = "
    CREATE TABLE minimal_conversations (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, owner text NOT NULL,
        created_at bigint NOT NULL, updated_at bigint NOT NULL);
    CREATE INDEX minimal_conversations_list
        ON minimal_conversations (owner, updated_at DESC, id DESC);
    CREATE TABLE minimal_messages (
        id bigint GENERATED ALWAYS AS IDENTITY, conversation_id bigint NOT NULL,
        role text NOT NULL, content text NOT NULL, created_at bigint NOT NULL,
        PRIMARY KEY (conversation_id, id));
    CREATE TABLE minimal_tags (
        owner text NOT NULL, tag text NOT NULL, conversation_id bigint NOT NULL,
        PRIMARY KEY (owner, tag, conversation_id));";

/// Owners compare byte for byte, as the store's user ids do on MySQL (a text collation would
/// take 'Alice' for 'alice').
const MYSQL_SCHEMA: [&str; 3] = [
    "CREATE TABLE minimal_conversations (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, owner VARBINARY(1020) NOT NULL,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,
        INDEX minimal_conversations_list (owner, updated_at DESC, id DESC)
    ) ENGINE = InnoDB",
    "CREATE TABLE minimal_messages (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, conversation_id BIGINT NOT NULL,
        role VARCHAR(16) CHARACTER SET ascii NOT NULL,
        content LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
        created_at BIGINT NOT NULL,
        INDEX minimal_messages_window (conversation_id, id)
    ) ENGINE = InnoDB",
    "CREATE TABLE minimal_tags (
        owner VARBINARY(1020) NOT NULL, tag VARBINARY(256) NOT NULL,
        conversation_id BIGINT NOT NULL,
        PRIMARY KEY (owner, tag, conversation_id)
    ) ENGINE = InnoDB",
];

/// The SQLite and MySQL statements (`?` placeholders); PostgreSQL's are prepared in `PgMinimal`.
const CREATE: &str =
    "INSERT INTO minimal_conversations (owner, created_at, updated_at) VALUES (?, ?, ?)";
const BUMP: &str = "UPDATE minimal_conversations SET updated_at = ? WHERE id = ? AND owner = ?";
const INSERT: &str =
    "INSERT INTO minimal_messages (conversation_id, role, content, created_at) VALUES (?, ?, ?, ?)";
const LOAD_ALL: &str = "SELECT id, role, content, created_at FROM minimal_messages \
     WHERE conversation_id = ? ORDER BY id";
const BEFORE: &str = "SELECT id, role, content, created_at FROM minimal_messages \
     WHERE conversation_id = ? AND id < ? ORDER BY id DESC LIMIT ?";
const LIST: &str = "SELECT id, owner, created_at, updated_at FROM minimal_conversations \
     WHERE owner = ? ORDER BY updated_at DESC, id DESC LIMIT ?";
/// A tag's conversations: its rows of `minimal_tags` (one range of the key), each joined to its
/// conversation, sorted by activity — every conversation with the tag is read for a page.
const TAGGED: &str = "SELECT c.id, c.owner, c.created_at, c.updated_at FROM minimal_tags t \
     JOIN minimal_conversations c ON c.id = t.conversation_id \
     WHERE t.owner = ? AND t.tag = ? ORDER BY c.updated_at DESC, c.id DESC LIMIT ?";

fn micros() -> i64 {
    Utc::now().timestamp_micros()
}

fn time(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("a time in range")
}

fn role(text: &str) -> Role {
    text.parse().expect("known role")
}

/// `n` row placeholders of `row`, for a multi-row INSERT.
fn placeholders(row: &str, n: usize) -> String {
    vec![row; n].join(", ")
}

/// The minimal schema's workloads, hand-written.
pub enum Minimal {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgMinimal>),
    Mysql(mysql::Conn),
}

/// A `postgres` client with every statement prepared once.
pub struct PgMinimal {
    client: postgres::Client,
    create: postgres::Statement,
    append_one: postgres::Statement,
    append_many: postgres::Statement,
    load_all: postgres::Statement,
    before: postgres::Statement,
    list: postgres::Statement,
    tagged: postgres::Statement,
}

impl Minimal {
    /// Creates the minimal tables through `conn`, a connection to the store's SQLite file with the
    /// same pragmas as the floor's.
    pub fn sqlite(conn: rusqlite::Connection) -> Minimal {
        conn.execute_batch(SQLITE_SCHEMA).expect("minimal schema");
        Minimal::Sqlite(conn)
    }

    pub fn postgres(mut client: postgres::Client) -> Minimal {
        client
            .batch_execute(POSTGRES_SCHEMA)
            .expect("minimal schema");
        let mut prepare = |sql: &str| client.prepare(sql).expect(sql);
        let create = prepare(
            "INSERT INTO minimal_conversations (owner, created_at, updated_at) \
             VALUES ($1, $2, $2) RETURNING id",
        );
        // One statement, one round trip, in autocommit: the UPDATE checks the owner and takes the
        // conversation's row lock, and the INSERT reads its one row (none: not the owner's).
        let append_one = prepare(
            "WITH c AS (UPDATE minimal_conversations SET updated_at = $1 \
             WHERE id = $2 AND owner = $3 RETURNING id) \
             INSERT INTO minimal_messages (conversation_id, role, content, created_at) \
             SELECT c.id, $4, $5, $1 FROM c",
        );
        // The same for a batch, one array per column; ids follow the batch's order.
        let append_many = prepare(
            "WITH c AS (UPDATE minimal_conversations SET updated_at = $1 \
             WHERE id = $2 AND owner = $3 RETURNING id) \
             INSERT INTO minimal_messages (conversation_id, role, content, created_at) \
             SELECT c.id, m.role, m.content, $1 \
             FROM c, unnest($4::text[], $5::text[]) WITH ORDINALITY AS m(role, content, n) \
             ORDER BY m.n",
        );
        let load_all = prepare(
            "SELECT id, role, content, created_at FROM minimal_messages \
             WHERE conversation_id = $1 ORDER BY id",
        );
        let before = prepare(
            "SELECT id, role, content, created_at FROM minimal_messages \
             WHERE conversation_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        );
        let list = prepare(
            "SELECT id, owner, created_at, updated_at FROM minimal_conversations \
             WHERE owner = $1 ORDER BY updated_at DESC, id DESC LIMIT $2",
        );
        let tagged = prepare(
            "SELECT c.id, c.owner, c.created_at, c.updated_at FROM minimal_tags t \
             JOIN minimal_conversations c ON c.id = t.conversation_id \
             WHERE t.owner = $1 AND t.tag = $3 ORDER BY c.updated_at DESC, c.id DESC LIMIT $2",
        );
        Minimal::Postgres(Box::new(PgMinimal {
            client,
            create,
            append_one,
            append_many,
            load_all,
            before,
            list,
            tagged,
        }))
    }

    pub fn mysql(mut conn: mysql::Conn) -> Minimal {
        for sql in MYSQL_SCHEMA {
            conn.query_drop(sql).expect("minimal schema");
        }
        Minimal::Mysql(conn)
    }

    /// Refreshes the planner's statistics on the minimal tables (SQLite: see `Floor::analyze`).
    pub fn analyze(&mut self) {
        match self {
            Minimal::Sqlite(_) => {}
            Minimal::Postgres(pg) => pg
                .client
                .batch_execute("ANALYZE minimal_conversations, minimal_messages, minimal_tags")
                .expect("analyze"),
            Minimal::Mysql(conn) => conn
                .query_drop("ANALYZE TABLE minimal_conversations, minimal_messages, minimal_tags")
                .expect("analyze"),
        }
    }

    /// A new conversation of `owner`'s.
    pub fn create(&mut self, owner: &str) -> i64 {
        let now = micros();
        match self {
            Minimal::Sqlite(conn) => {
                conn.prepare_cached(CREATE)
                    .expect(CREATE)
                    .execute(rusqlite::params![owner, now, now])
                    .expect("create");
                conn.last_insert_rowid()
            }
            Minimal::Postgres(pg) => pg
                .client
                .query_one(&pg.create, &[&owner, &now])
                .expect("create")
                .get(0),
            Minimal::Mysql(conn) => {
                conn.exec_drop(CREATE, (owner, now, now)).expect("create");
                conn.last_insert_id() as i64
            }
        }
    }

    /// Appends `batch` to `owner`'s conversation `conv`, bumping its `updated_at`, atomically; the
    /// conversation must be `owner`'s.
    pub fn append(&mut self, owner: &str, conv: i64, batch: &[NewMessage<'_>]) {
        let now = micros();
        match self {
            // The write lock first (BEGIN IMMEDIATE, as the store), then the UPDATE that checks the
            // owner, then a prepared single-row INSERT per message.
            Minimal::Sqlite(conn) => {
                let tx = conn
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                    .expect("begin");
                let bumped = tx
                    .prepare_cached(BUMP)
                    .expect(BUMP)
                    .execute(rusqlite::params![now, conv, owner])
                    .expect("bump");
                assert_eq!(bumped, 1, "the owner's conversation");
                {
                    let mut insert = tx.prepare_cached(INSERT).expect(INSERT);
                    for m in batch {
                        insert
                            .execute(rusqlite::params![conv, m.role().as_str(), m.content(), now])
                            .expect("insert");
                    }
                }
                tx.commit().expect("commit");
            }
            Minimal::Postgres(pg) => {
                let inserted = match batch {
                    [m] => pg.client.execute(
                        &pg.append_one,
                        &[&now, &conv, &owner, &m.role().as_str(), &m.content()],
                    ),
                    _ => {
                        let roles: Vec<&str> = batch.iter().map(|m| m.role().as_str()).collect();
                        let contents: Vec<&str> = batch.iter().map(|m| m.content()).collect();
                        pg.client
                            .execute(&pg.append_many, &[&now, &conv, &owner, &roles, &contents])
                    }
                }
                .expect("append");
                assert_eq!(inserted, batch.len() as u64, "the owner's conversation");
            }
            // A transaction: the UPDATE that checks the owner and takes the row lock, then one
            // multi-row INSERT per 1,000 messages (a single message: the single-row statement).
            Minimal::Mysql(conn) => {
                conn.query_drop("BEGIN").expect("begin");
                conn.exec_drop(BUMP, (now, conv, owner)).expect("bump");
                assert_eq!(conn.affected_rows(), 1, "the owner's conversation");
                for chunk in batch.chunks(1000) {
                    let sql = format!(
                        "INSERT INTO minimal_messages (conversation_id, role, content, created_at) \
                         VALUES {}",
                        placeholders("(?, ?, ?, ?)", chunk.len())
                    );
                    let mut params: Vec<mysql::Value> = Vec::with_capacity(4 * chunk.len());
                    for m in chunk {
                        params.extend([
                            conv.into(),
                            m.role().as_str().into(),
                            m.content().into(),
                            now.into(),
                        ]);
                    }
                    conn.exec_drop(&sql, params).expect("insert");
                }
                conn.query_drop("COMMIT").expect("commit");
            }
        }
    }

    /// The whole history, oldest first.
    pub fn load_all(&mut self, conv: i64) -> Vec<MinimalMessage> {
        match self {
            Minimal::Sqlite(conn) => sqlite_messages(conn, LOAD_ALL, rusqlite::params![conv]),
            Minimal::Postgres(pg) => {
                let statement = pg.load_all.clone();
                pg.messages(&statement, &[&conv])
            }
            Minimal::Mysql(conn) => mysql_messages(conn, LOAD_ALL, (conv,).into()),
        }
    }

    /// The newest `n`, oldest first.
    pub fn latest(&mut self, conv: i64, n: i64) -> Vec<MinimalMessage> {
        self.before(conv, i64::MAX, n)
    }

    /// Up to `n` messages older than the id `before`, oldest first.
    pub fn before(&mut self, conv: i64, before: i64, n: i64) -> Vec<MinimalMessage> {
        let mut rows = match self {
            Minimal::Sqlite(conn) => {
                sqlite_messages(conn, BEFORE, rusqlite::params![conv, before, n])
            }
            Minimal::Postgres(pg) => {
                let statement = pg.before.clone();
                pg.messages(&statement, &[&conv, &before, &n])
            }
            Minimal::Mysql(conn) => mysql_messages(conn, BEFORE, (conv, before, n).into()),
        };
        rows.reverse();
        rows
    }

    /// The owner's `n` most recently updated conversations.
    pub fn list(&mut self, owner: &str, n: i64) -> Vec<MinimalConversation> {
        self.conversations(owner, None, n)
    }

    /// The owner's `n` most recently updated conversations with `tag`.
    pub fn list_tagged(&mut self, owner: &str, tag: &str, n: i64) -> Vec<MinimalConversation> {
        self.conversations(owner, Some(tag), n)
    }

    fn conversations(
        &mut self,
        owner: &str,
        tag: Option<&str>,
        n: i64,
    ) -> Vec<MinimalConversation> {
        let decode = |(id, owner, created, updated): (i64, String, i64, i64)| MinimalConversation {
            id,
            owner,
            created_at: time(created),
            updated_at: time(updated),
        };
        match self {
            Minimal::Sqlite(conn) => {
                let read = |row: &rusqlite::Row<'_>| {
                    Ok(decode((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
                };
                let sql = tag.map_or(LIST, |_| TAGGED);
                let mut statement = conn.prepare_cached(sql).expect(sql);
                let rows = match tag {
                    None => statement.query_map(rusqlite::params![owner, n], read),
                    Some(tag) => statement.query_map(rusqlite::params![owner, tag, n], read),
                };
                rows.expect(sql)
                    .collect::<rusqlite::Result<_>>()
                    .expect(sql)
            }
            Minimal::Postgres(pg) => match tag {
                None => pg.client.query(&pg.list, &[&owner, &n]),
                Some(tag) => pg.client.query(&pg.tagged, &[&owner, &n, &tag]),
            }
            .expect("list")
            .iter()
            .map(|row| decode((row.get(0), row.get(1), row.get(2), row.get(3))))
            .collect(),
            Minimal::Mysql(conn) => match tag {
                None => conn.exec_map(LIST, (owner, n), decode),
                Some(tag) => conn.exec_map(TAGGED, (owner, tag, n), decode),
            }
            .expect("list"),
        }
    }

    /// Tags each of the owner's conversations with one of `tags` tags (`tag-0`, `tag-1`, …), in
    /// turn by id, as `Floor::seed_tags` does.
    pub fn seed_tags(&mut self, owner: &str, tags: usize) {
        let insert = |concat: &str, mark: &str| {
            format!(
                "INSERT INTO minimal_tags (owner, tag, conversation_id) \
                 SELECT owner, {concat}, id FROM (SELECT id, owner, \
                 ROW_NUMBER() OVER (ORDER BY id) AS n \
                 FROM minimal_conversations WHERE owner = {mark}) s"
            )
        };
        let tag = format!("'tag-' || (n % {tags})");
        match self {
            Minimal::Sqlite(conn) => {
                conn.execute(&insert(&tag, "?1"), [owner])
                    .expect("seed tags");
            }
            Minimal::Postgres(pg) => {
                pg.client
                    .execute(&insert(&tag, "$1"), &[&owner])
                    .expect("seed tags");
            }
            Minimal::Mysql(conn) => {
                let tag = format!("CONCAT('tag-', n % {tags})");
                conn.exec_drop(insert(&tag, "?"), (owner,))
                    .expect("seed tags");
            }
        }
    }

    /// Seeds `per_user` conversations for each of `users` users (`user-000`, …) in one
    /// transaction, with distinct `updated_at`s a millisecond apart, interleaved between users:
    /// the same as `Floor::seed_conversations`.
    pub fn seed_conversations(&mut self, users: usize, per_user: usize) {
        let start = Utc::now() - TimeDelta::days(30);
        let rows: Vec<(String, i64)> = (0..users * per_user)
            .map(|i| {
                let time = start + TimeDelta::milliseconds(i as i64);
                (format!("user-{:03}", i % users), time.timestamp_micros())
            })
            .collect();
        match self {
            Minimal::Sqlite(conn) => {
                let tx = conn.transaction().expect("begin");
                {
                    let mut insert = tx.prepare_cached(CREATE).expect(CREATE);
                    for (owner, time) in &rows {
                        insert
                            .execute(rusqlite::params![owner, time, time])
                            .expect("seed");
                    }
                }
                tx.commit().expect("commit");
            }
            Minimal::Postgres(pg) => {
                let owners: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
                let times: Vec<i64> = rows.iter().map(|r| r.1).collect();
                pg.client
                    .execute(
                        "INSERT INTO minimal_conversations (owner, created_at, updated_at) \
                         SELECT o, t, t FROM unnest($1::text[], $2::int8[]) AS s(o, t)",
                        &[&owners, &times],
                    )
                    .expect("seed");
            }
            Minimal::Mysql(conn) => {
                conn.query_drop("BEGIN").expect("begin");
                for chunk in rows.chunks(1000) {
                    let sql = format!(
                        "INSERT INTO minimal_conversations (owner, created_at, updated_at) VALUES {}",
                        placeholders("(?, ?, ?)", chunk.len())
                    );
                    let mut params: Vec<mysql::Value> = Vec::with_capacity(3 * chunk.len());
                    for (owner, time) in chunk {
                        params.extend([owner.as_str().into(), (*time).into(), (*time).into()]);
                    }
                    conn.exec_drop(&sql, params).expect("seed");
                }
                conn.query_drop("COMMIT").expect("commit");
            }
        }
    }
}

impl PgMinimal {
    fn messages(
        &mut self,
        statement: &postgres::Statement,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Vec<MinimalMessage> {
        self.client
            .query(statement, params)
            .expect("read messages")
            .iter()
            .map(|row| MinimalMessage {
                id: row.get(0),
                role: role(row.get(1)),
                content: row.get(2),
                created_at: time(row.get(3)),
            })
            .collect()
    }
}

fn sqlite_messages(
    conn: &rusqlite::Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Vec<MinimalMessage> {
    conn.prepare_cached(sql)
        .expect(sql)
        .query_map(params, |row| {
            Ok(MinimalMessage {
                id: row.get(0)?,
                role: role(row.get_ref(1)?.as_str()?),
                content: row.get(2)?,
                created_at: time(row.get(3)?),
            })
        })
        .expect(sql)
        .collect::<rusqlite::Result<_>>()
        .expect(sql)
}

/// The messages `sql` selects, through the connection's statement cache. The role is read from the
/// row's bytes, without a `String` of its own.
fn mysql_messages(conn: &mut mysql::Conn, sql: &str, params: mysql::Params) -> Vec<MinimalMessage> {
    conn.exec_map(sql, params, |mut row: mysql::Row| {
        let role = match row.as_ref(1) {
            Some(mysql::Value::Bytes(bytes)) => role(std::str::from_utf8(bytes).expect("ASCII")),
            other => panic!("a role, not {other:?}"),
        };
        MinimalMessage {
            id: row.take(0).expect("id"),
            role,
            content: row.take(2).expect("content"),
            created_at: time(row.take(3).expect("created_at")),
        }
    })
    .expect(sql)
}
