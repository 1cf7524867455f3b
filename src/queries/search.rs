//! Full-text search: hand-written SQL over each backend's index (an FTS5 table on SQLite, a
//! generated tsvector column with a GIN index on PostgreSQL, with the same binds on both; on MySQL
//! a table of each message's words that the store fills itself, see [`find_mysql`]).

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Integer, Nullable, Text};

use super::rows::{message_columns, MessageRow, MessageSql};
use super::MultiBackend;
#[cfg(feature = "mysql")]
use super::Raw;
use super::{Cached, Positional};
use crate::conn::{Backend, Conn};
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "mysql"))]
use crate::ids::MessageId;
use crate::ids::{ConversationId, UserId};
use crate::models::Message;
use crate::search::{Query, SearchOrder};
use crate::Result;

/// A hit: the message's columns ([`MESSAGE_COLUMNS`], as `m`), then its conversation's title.
/// Decoded by position ([`Positional`]): by name, Diesel searches the statement's column names
/// for each column of each row.
type Hit = (MessageRow, Option<String>);

/// The SQL types of a [`Hit`]'s columns, in order.
type HitSql = (MessageSql, Nullable<Text>);

/// A message row's columns of `m`, in [`MessageRow`]'s order.
const MESSAGE_COLUMNS: &str = message_columns!("m.");

/// A search's page: up to `limit` of the user's messages matching `query` (in one conversation, if
/// given), after skipping `offset`, in `order`.
#[derive(Clone, Copy)]
pub(crate) struct Find<'a> {
    pub(crate) user: &'a UserId,
    pub(crate) conversation: Option<ConversationId>,
    /// Leave out the messages of the user's archived conversations.
    pub(crate) hide_archived: bool,
    pub(crate) query: &'a Query,
    pub(crate) order: SearchOrder,
    pub(crate) limit: i64,
    pub(crate) offset: i64,
}

/// The messages of the page `find` asks for, each with its conversation's title.
///
/// Each backend's index also holds a token for each message's owner, and the query asks for it
/// alongside the words: the index intersects the user's messages with the matches, rather than the
/// database filtering every user's matches. The `user_id` condition stays, so correctness never
/// rests on the token.
///
/// On MySQL the search may take several statements, which must see one snapshot: run it in
/// [`crate::conn::snapshot`].
// With MySQL alone, every call returns from the match.
#[cfg_attr(
    not(any(feature = "sqlite", feature = "postgres")),
    allow(unreachable_code, unused_variables)
)]
pub(crate) fn find(conn: &mut Conn, find: Find<'_>) -> Result<Vec<(Message, Option<String>)>> {
    let Find {
        user,
        conversation,
        hide_archived,
        query,
        order,
        limit,
        offset,
    } = find;
    let hidden = match hide_archived {
        true => NOT_ARCHIVED,
        false => "",
    };
    let (in_conversation, limit_at, offset_at) = match conversation {
        Some(_) => ("AND m.conversation_id = $3", "$4", "$5"),
        None => ("", "$3", "$4"),
    };
    // Each backend's index: what to read, how a row matches, how it ranks, and the match itself.
    let (from, matches, rank, matching): (&str, &str, &str, String) = match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(_) => (
            "chatstore_messages_search s JOIN chatstore_messages m ON m.key = s.rowid",
            "chatstore_messages_search MATCH $1",
            // The owner column matches every row alike: only the words weigh.
            "bm25(chatstore_messages_search, 1.0, 0.0)",
            fts5_query(user, query),
        ),
        // The query's words are the store's, folded as the index's text is (`search::tokens`),
        // and the parser keeps each of them whole: the alphabet was measured for that. Should
        // the parser drop every word all the same, the query would be the owner's token alone,
        // every message of the user: it finds nothing instead.
        #[cfg(feature = "postgres")]
        Conn::Pg(_) => (
            "chatstore_messages m, (SELECT to_tsquery('simple', $1) AS words) w, \
             LATERAL (SELECT w.words && ('u' || md5($2))::tsquery AS q) q",
            "numnode(w.words) > 0 AND m.search @@ q.q",
            "-ts_rank(m.search, q.q)",
            tsquery(query),
        ),
        // Statements of its own: see below.
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => return find_mysql(c, find),
    };
    // Best match first (BM25 is smaller for a better match; ts_rank larger, hence negated), then
    // newest; the page's sort repeats the query's, on the page alone.
    let (rank, by_rank, by_page_rank) = match order {
        SearchOrder::BestMatch => (rank, "score, ", "page.score, "),
        _ => ("0", "", ""),
    };
    // The page's ids are found and sorted first, and only then are its rows read and joined to
    // their titles: sorted whole, every match's row (content included) went through the sort
    // before the offset was skipped.
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS}, c.title FROM (SELECT m.id, {rank} AS score FROM {from} \
         WHERE {matches} AND m.user_id = $2 {in_conversation} {hidden} \
         ORDER BY {by_rank}m.created_at DESC, m.seq DESC, m.id DESC \
         LIMIT {limit_at} OFFSET {offset_at}) page \
         JOIN chatstore_messages m ON m.id = page.id AND m.user_id = $2 \
         JOIN chatstore_conversations c ON c.id = m.conversation_id AND c.user_id = $2 \
         ORDER BY {by_page_rank}m.created_at DESC, m.seq DESC, m.id DESC"
    );
    let mut statement = diesel::sql_query(sql)
        .into_boxed::<MultiBackend>()
        .bind::<Text, _>(matching)
        .bind::<Text, _>(user);
    if let Some(conversation) = conversation {
        statement = statement.bind::<Binary, _>(conversation);
    }
    // The SQL text is one of a few fixed strings, so the statement is prepared once per
    // connection and kept, like the DSL's (Diesel never caches raw SQL of its own accord).
    let statement = statement.bind::<BigInt, _>(limit).bind::<BigInt, _>(offset);
    let rows: Vec<Hit> = Cached(Positional::<_, HitSql>::new(statement)).load(conn)?;
    rows.into_iter()
        .map(|(message, title)| Ok((message.into_model()?, title)))
        .collect()
}

/// The condition that leaves out a match of an archived conversation (the owner's, `m.user_id`,
/// named again so that Citus sends it to the owner's node with the rest).
const NOT_ARCHIVED: &str = "AND NOT EXISTS (SELECT 1 FROM chatstore_conversations a \
     WHERE a.id = m.conversation_id AND a.user_id = m.user_id AND a.list_rank = 0)";

/// The FTS5 query: the owner's token and every phrase, each a quoted string (words hold only
/// letters and digits, so nothing in them is FTS5 syntax).
#[cfg(feature = "sqlite")]
fn fts5_query(user: &UserId, query: &Query) -> String {
    let owner: String = user.as_str().bytes().map(|b| format!("{b:02X}")).collect();
    let phrases: Vec<String> = query
        .phrases
        .iter()
        .map(|p| {
            let star = if p.prefix { "*" } else { "" };
            format!("\"{}\"{star}", p.words.join(" "))
        })
        .collect();
    format!("owner:\"{owner}\" AND body:({})", phrases.join(" "))
}

/// The tsquery: every phrase, its words joined by `<->` (adjacent, in order), a prefix as `:*`.
#[cfg(feature = "postgres")]
fn tsquery(query: &Query) -> String {
    let phrases: Vec<String> = query
        .phrases
        .iter()
        .map(|p| {
            let words: Vec<String> = p.words.iter().map(|w| format!("'{w}'")).collect();
            let mut text = words.join(" <-> ");
            if p.prefix {
                text.push_str(":*");
            }
            format!("({text})")
        })
        .collect();
    phrases.join(" & ")
}

/// MySQL: InnoDB's FULLTEXT index skips short words and stop words by server-wide settings (see the
/// migration), so the store keeps its own index, `message_words`: each message's distinct words,
/// read by the same Rust code as the query and as the other backends' index text
/// ([`crate::search`]). The index finds the
/// messages holding every word of the query (words are cut to 64 characters there); each candidate
/// is then checked against its content — phrases in order, whole words — before it counts.
#[cfg(feature = "mysql")]
mod mysql_words {
    diesel::table! {
        #[sql_name = "chatstore_message_words"]
        message_words (message_id, word) {
            message_id -> Binary,
            user_id -> Text,
            word -> Text,
            hits -> Integer,
        }
    }
}
#[cfg(feature = "mysql")]
use mysql_words::message_words;

/// Word rows per INSERT: 4 binds each, far under MySQL's 65,535 placeholders.
#[cfg(feature = "mysql")]
const WORDS_PER_INSERT: usize = 5000;

#[cfg(feature = "mysql")]
#[derive(Insertable)]
#[diesel(table_name = message_words)]
struct WordRow<'a> {
    message_id: MessageId,
    user_id: &'a UserId,
    word: String,
    hits: i32,
}

/// [`insert_words`] of words held with their owners.
#[cfg(feature = "mysql")]
fn insert_word_tuples(
    conn: &mut diesel::MysqlConnection,
    words: &[(MessageId, UserId, String, i32)],
) -> Result<()> {
    let rows: Vec<WordRow<'_>> = words
        .iter()
        .map(|(message_id, user_id, word, hits)| WordRow {
            message_id: *message_id,
            user_id,
            word: word.clone(),
            hits: *hits,
        })
        .collect();
    insert_words(conn, &rows)
}

#[cfg(feature = "mysql")]
fn insert_words(conn: &mut diesel::MysqlConnection, words: &[WordRow<'_>]) -> Result<()> {
    for chunk in words.chunks(WORDS_PER_INSERT) {
        diesel::insert_into(message_words::table)
            .values(chunk)
            .execute(conn)?;
    }
    Ok(())
}

/// Messages read per page when the index is filled or rebuilt, each read whole: 16 MiB at most
/// with the default content limit.
const REINDEX_PAGE: i64 = 16;

/// A stored message to index.
#[cfg(feature = "mysql")]
#[derive(QueryableByName)]
struct Unindexed {
    #[diesel(sql_type = Binary)]
    id: MessageId,
    #[diesel(sql_type = Text)]
    user_id: UserId,
    #[diesel(sql_type = Text)]
    content: String,
}

/// Indexes every stored message that has no word in the index, a page of messages per
/// transaction: run by the migration that creates the index, before its version is recorded. A
/// run cut short leaves whole pages indexed, and the next run indexes the rest. (A message without
/// any word, such as "…", is read again by each run, and still indexes to nothing.)
#[cfg(feature = "mysql")]
pub(crate) fn index_unindexed_messages(conn: &mut diesel::MysqlConnection) -> Result<()> {
    index_pages(
        conn,
        "SELECT m.id, m.user_id, m.content FROM chatstore_messages m WHERE m.id > ? \
         AND NOT EXISTS (SELECT 1 FROM chatstore_message_words w WHERE w.message_id = m.id) \
         ORDER BY m.id",
    )
}

/// Indexes every stored message as this version reads words, replacing what the index held for
/// it, a page of messages per transaction: run by the migration that changed how words are read,
/// before its version is recorded. A run cut short is simply run again by the next open: each
/// page replaces its messages' words whole.
#[cfg(feature = "mysql")]
pub(crate) fn reindex_stored_messages(conn: &mut diesel::MysqlConnection) -> Result<()> {
    index_pages(
        conn,
        "SELECT m.id, m.user_id, m.content FROM chatstore_messages m WHERE m.id > ? ORDER BY m.id",
    )
}

/// Indexes the messages `select` (ordered by id, after the id it binds) pages through,
/// [`REINDEX_PAGE`] at a time, replacing whatever words the index held for them.
#[cfg(feature = "mysql")]
fn index_pages(conn: &mut diesel::MysqlConnection, select: &str) -> Result<()> {
    let select = format!("{select} LIMIT {REINDEX_PAGE}");
    // Ids are 16 bytes: every one sorts after the empty string.
    let mut after: Vec<u8> = Vec::new();
    loop {
        let page: Vec<Unindexed> = diesel::sql_query(&select)
            .bind::<Binary, _>(&after)
            .load(conn)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.id.as_bytes().to_vec();
        conn.transaction(|conn| {
            let ids: Vec<MessageId> = page.iter().map(|message| message.id).collect();
            diesel::delete(message_words::table.filter(message_words::message_id.eq_any(&ids)))
                .execute(conn)?;
            for message in &page {
                let words: Vec<WordRow<'_>> = crate::search::index_words(&message.content)
                    .into_iter()
                    .map(|(word, hits)| WordRow {
                        message_id: message.id,
                        user_id: &message.user_id,
                        word,
                        hits,
                    })
                    .collect();
                insert_words(conn, &words)?;
            }
            Ok::<_, crate::Error>(())
        })?;
    }
}

/// Rewrites `search_text`, the text the SQLite and PostgreSQL indexes read, for every stored
/// message whose text this version reads otherwise: run by the migration that changed how words
/// are read, in its transaction, each changed row written by `$set` (which re-indexes it, or
/// marks it waiting for the index). A macro, as the two typed connections share the code but not a
/// type.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! rewrite_search_text {
    ($conn:expr, $set:expr) => {{
        use crate::schema::messages::dsl::*;
        let conn = $conn;
        let mut after: Option<MessageId> = None;
        loop {
            // The run's migrations are all applied by now: the parts column is there.
            let mut page = messages
                .select((id, content, search_text, parts))
                .into_boxed();
            if let Some(after) = after {
                page = page.filter(id.gt(after));
            }
            type Row = (MessageId, String, Option<String>, Option<String>);
            let page: Vec<Row> = page.order(id).limit(REINDEX_PAGE).load(conn)?;
            let Some((last, ..)) = page.last() else {
                return Ok(());
            };
            after = Some(*last);
            for (message, text, stored, with) in &page {
                let text = crate::search::message_search_text(text, with.as_deref());
                if text != *stored {
                    $set(&mut *conn, *message, text)?;
                }
            }
        }
    }};
}

/// [`rewrite_search_text`] on SQLite.
#[cfg(feature = "sqlite")]
///
/// The update trigger re-indexes a message already in the index; one that waits for it is indexed
/// with its new text when the index catches up.
#[cfg(feature = "sqlite")]
pub(crate) fn rewrite_search_text_sqlite(conn: &mut diesel::SqliteConnection) -> Result<()> {
    rewrite_search_text!(conn, |conn: &mut diesel::SqliteConnection,
                                message: MessageId,
                                text: Option<String>| {
        use crate::schema::messages::dsl::*;
        diesel::update(messages.filter(id.eq(message)))
            .set(search_text.eq(text))
            .execute(conn)
    })
}

/// [`rewrite_search_text`] on PostgreSQL.
#[cfg(feature = "postgres")]
///
/// `search` is no longer computed by the server (migration 000005): each changed message's is
/// cleared, and it waits for the index to catch up.
#[cfg(feature = "postgres")]
pub(crate) fn rewrite_search_text_pg(conn: &mut diesel::PgConnection) -> Result<()> {
    rewrite_search_text!(conn, |conn: &mut diesel::PgConnection,
                                message: MessageId,
                                text: Option<String>| {
        diesel::sql_query(
            "UPDATE chatstore_messages SET search_text = $1, search = NULL WHERE id = $2",
        )
        .bind::<Nullable<Text>, _>(text)
        .bind::<Binary, _>(message)
        .execute(conn)
    })
}

/// A word's condition: its messages among the user's, by one range of `messages_search`.
#[cfg(feature = "mysql")]
fn word_condition(prefix: bool) -> &'static str {
    match prefix {
        false => "m.id IN (SELECT message_id FROM chatstore_message_words WHERE user_id = ? AND word = ?)",
        true => {
            "m.id IN (SELECT message_id FROM chatstore_message_words \
             WHERE user_id = ? AND word LIKE ? ESCAPE '!')"
        }
    }
}

/// Candidate ids read per statement (16 bytes each), and candidates whose content is read and
/// checked per statement (at most the indexed start of each: 100,000 characters).
#[cfg(feature = "mysql")]
const CANDIDATE_IDS: i64 = 1000;
#[cfg(feature = "mysql")]
const CHECKED_PER_STATEMENT: usize = 16;

/// Queries of up to this many distinct words keep their candidates' statement prepared.
#[cfg(feature = "mysql")]
const KEPT_WORDS: usize = 2;

/// MySQL's [`find`]: the page's ids first, then only the page's rows.
///
/// Memory is bounded by the page, not by the matches: ids are read a thousand at a time, content
/// that must be checked sixteen messages at a time (each its indexed start only), and only the
/// page's ids are kept. The page's rows, content whole, are read last. Holding every candidate's
/// row up to the page instead took 197 MB of Rust heap (415 MB resident) for a page at offset 185
/// of 200 matching 1 MiB messages, and 90 MB (200 MB resident) for a phrase whose words all of
/// them hold in the wrong order (MariaDB 10.11; see `search::a_search_holds_its_page_not_every_match`).
#[cfg(feature = "mysql")]
fn find_mysql(
    conn: &mut diesel::MysqlConnection,
    find: Find<'_>,
) -> Result<Vec<(Message, Option<String>)>> {
    let Find {
        conversation,
        hide_archived,
        query,
        order,
        limit,
        offset,
        ..
    } = find;
    // Each distinct word of the query once, as the index holds it, prefixes as LIKE patterns.
    let mut words: Vec<(String, bool)> = Vec::new();
    for phrase in &query.phrases {
        let last = phrase.words.len().saturating_sub(1);
        for (i, word) in phrase.words.iter().enumerate() {
            let prefix = phrase.prefix && i == last;
            let word = crate::search::index_word(word);
            let word = match prefix {
                // Words hold only letters and digits; the escape is for safety's sake.
                true => {
                    let escaped = word
                        .replace('!', "!!")
                        .replace('%', "!%")
                        .replace('_', "!_");
                    format!("{escaped}%")
                }
                false => word,
            };
            if !words.contains(&(word.clone(), prefix)) {
                words.push((word, prefix));
            }
        }
    }
    let conditions: Vec<&str> = words.iter().map(|(_, p)| word_condition(*p)).collect();
    let rank = match order {
        SearchOrder::BestMatch => {
            let any: Vec<&str> = words
                .iter()
                .map(|(_, p)| {
                    if *p {
                        "w.word LIKE ? ESCAPE '!'"
                    } else {
                        "w.word = ?"
                    }
                })
                .collect();
            format!(
                "(SELECT SUM(w.hits) FROM chatstore_message_words w WHERE w.message_id = m.id \
                 AND ({})) DESC, ",
                any.join(" OR ")
            )
        }
        _ => String::new(),
    };
    let in_conversation = match conversation {
        Some(_) => "AND m.conversation_id = ?",
        None => "",
    };
    // Ids only: sorting whole rows took every match's content through a temporary table, since
    // the join began with the conversations: 2.2-2.7 s for a word in all of a user's 100,000
    // messages (W12), 0.14-0.16 s with the ids first; 1.2-1.9 ms for a word in 100 of them (W11),
    // 0.5-1.0 ms (MariaDB 10.11).
    let hidden = match hide_archived {
        true => NOT_ARCHIVED,
        false => "",
    };
    let sql = format!(
        "SELECT m.id FROM chatstore_messages m WHERE m.user_id = ? {in_conversation} AND {} \
         {hidden} ORDER BY {rank}m.created_at DESC, m.seq DESC, m.id DESC LIMIT ? OFFSET ?",
        conditions.join(" AND ")
    );
    let candidates = Candidates {
        sql: &sql,
        words: &words,
        find,
    };
    // A query of single words (or prefixes) shorter than the index's cut needs no check at
    // all: the index holds each whole word of the content as the check would read it, so it
    // has already answered. The check tokenized each candidate's content once more (the
    // snippet does it again): with Unicode lookups and an allocation per word, half the
    // store's client-side CPU of a 20-hit search (perf, W11).
    let exact = query.phrases.iter().all(|p| {
        let [word] = p.words.as_slice() else {
            return false;
        };
        crate::search::index_word(word).chars().count() < crate::search::INDEXED_WORD_CHARS
    });
    let page = match exact {
        true => candidates.read(conn, limit, offset)?,
        false => candidates.checked(conn, limit, offset, query)?,
    };
    page_rows(conn, &page)
}

/// The statement that reads a user's candidates for a query, in the page's order, with its binds.
#[cfg(feature = "mysql")]
struct Candidates<'a> {
    sql: &'a str,
    words: &'a [(String, bool)],
    find: Find<'a>,
}

#[cfg(feature = "mysql")]
impl Candidates<'_> {
    /// Up to `limit` candidate ids after skipping `offset` of them.
    fn read(
        &self,
        conn: &mut diesel::MysqlConnection,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<MessageId>> {
        let Find {
            user,
            conversation,
            order,
            ..
        } = self.find;
        use super::Param;
        let mut params = vec![Param::Text(user.as_str())];
        if let Some(conversation) = &conversation {
            params.push(Param::Binary(conversation.as_bytes()));
        }
        for (word, _) in self.words {
            params.extend([Param::Text(user.as_str()), Param::Text(word)]);
        }
        if order == SearchOrder::BestMatch {
            params.extend(self.words.iter().map(|(word, _)| Param::Text(word)));
        }
        params.extend([Param::BigInt(limit), Param::BigInt(offset)]);
        // The text depends on the query's words: kept prepared for queries of up to
        // `KEPT_WORDS` words, a few dozen texts at most a connection; any more and kept
        // statements would pile up on the server for every shape a client can write.
        let statement = Raw::new(self.sql, params, self.words.len() <= KEPT_WORDS);
        Ok(Positional::<_, Binary>::new(statement).load(conn)?)
    }

    /// Up to `limit` ids of candidates whose content matches, after skipping `offset` of those.
    ///
    /// The index finds the messages holding every word; only a phrase's order (or a word past the
    /// index's 64 characters) can fail the check. Candidates are read in pages of ids, and their
    /// content `CHECKED_PER_STATEMENT` at a time, until the page is full. They must all be read
    /// from one snapshot ([`crate::conn::snapshot`]), so that a message written or deleted between
    /// two statements cannot shift the offsets (repeating or skipping a hit): READ COMMITTED would
    /// give each statement a snapshot of its own.
    fn checked(
        &self,
        conn: &mut diesel::MysqlConnection,
        limit: i64,
        offset: i64,
        query: &Query,
    ) -> Result<Vec<MessageId>> {
        let (limit, mut skip) = (limit.max(0) as usize, offset.max(0));
        let mut page = Vec::with_capacity(limit);
        let mut read = 0i64;
        while page.len() < limit {
            let ids = self.read(conn, CANDIDATE_IDS, read)?;
            read += ids.len() as i64;
            for batch in ids.chunks(CHECKED_PER_STATEMENT) {
                for id in matching(conn, batch, query)? {
                    if skip > 0 {
                        skip -= 1;
                    } else if page.len() < limit {
                        page.push(id);
                    }
                }
                if page.len() == limit {
                    break;
                }
            }
            if (ids.len() as i64) < CANDIDATE_IDS {
                break;
            }
        }
        Ok(page)
    }
}

/// Which of `ids` (in their order) match `query` by their text's indexed start (the content's,
/// and the text parts' after it).
#[cfg(feature = "mysql")]
fn matching(
    conn: &mut diesel::MysqlConnection,
    ids: &[MessageId],
    query: &Query,
) -> Result<Vec<MessageId>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // SUBSTRING counts characters, as the index's cut does.
    let (sql, params, kept) = in_list(
        &format!(
            "SELECT id, SUBSTRING(content, 1, {}) AS start, parts FROM chatstore_messages \
             WHERE id IN ({{ids}})",
            crate::search::INDEXED_CHARS
        ),
        ids,
    );
    let rows: Vec<(MessageId, String, Option<String>)> =
        Positional::<_, (Binary, Text, Nullable<Text>)>::new(Raw::new(&sql, params, kept))
            .load(conn)?;
    Ok(ids
        .iter()
        .filter(|id| {
            rows.iter().any(|(row, start, parts)| {
                row == *id
                    && crate::search::matches_all(
                        &crate::models::stored_text(start, parts.as_deref()),
                        query,
                    )
            })
        })
        .copied()
        .collect())
}

/// The rows of the page's messages, in the page's order, each with its conversation's title.
#[cfg(feature = "mysql")]
fn page_rows(
    conn: &mut diesel::MysqlConnection,
    page: &[MessageId],
) -> Result<Vec<(Message, Option<String>)>> {
    if page.is_empty() {
        return Ok(Vec::new());
    }
    let (sql, params, kept) = in_list(
        &format!(
            "SELECT {MESSAGE_COLUMNS}, c.title FROM chatstore_messages m \
             JOIN chatstore_conversations c ON c.id = m.conversation_id WHERE m.id IN ({{ids}})"
        ),
        page,
    );
    let mut rows: Vec<Hit> =
        Positional::<_, HitSql>::new(Raw::new(&sql, params, kept)).load(conn)?;
    let mut hits = Vec::with_capacity(page.len());
    for id in page {
        // A message of the page is in the snapshot the ids came from: it is there.
        if let Some(at) = rows.iter().position(|(message, _)| message.id == *id) {
            let (message, title) = rows.swap_remove(at);
            hits.push((message.into_model()?, title));
        }
    }
    Ok(hits)
}

/// `sql` with an `IN` list of `ids` (not empty) for its `{ids}`, padded ([`super::padded`]): the
/// text, its parameters, and whether to keep it prepared (not if the list was too long to pad).
#[cfg(feature = "mysql")]
fn in_list<'a>(sql: &str, ids: &'a [MessageId]) -> (String, Vec<super::Param<'a>>, bool) {
    let padded = super::padded(ids);
    let kept = padded.len() <= super::PADDED_IDS_MAX;
    let sql = sql.replace("{ids}", &vec!["?"; padded.len()].join(", "));
    // The padding repeats the last id: bind that id as many more times.
    let last = ids.len().saturating_sub(1);
    let params = (0..padded.len())
        .filter_map(|i| ids.get(i.min(last)))
        .map(|id| super::Param::Binary(id.as_bytes()))
        .collect();
    (sql, params, kept)
}

/// Messages indexed per transaction when the index catches up: each backend's index takes a few
/// tens of microseconds a message, so a batch holds its locks for tens of milliseconds at most.
pub(crate) const INDEX_BATCH: i64 = 1000;

/// Whether a message waits to be indexed: on SQLite anyone's (one watermark for every user), on
/// the servers `user`'s if given, else anyone's. One index look-up.
pub(crate) fn has_unindexed(conn: &mut Conn, user: Option<&UserId>) -> Result<bool> {
    let sql = match (conn.backend(), user) {
        (Backend::Sqlite, _) => {
            "SELECT 1 FROM chatstore_messages \
             WHERE key > (SELECT indexed_through FROM chatstore_search_state) LIMIT 1"
        }
        (Backend::Postgres, Some(_)) => {
            "SELECT 1 FROM chatstore_messages WHERE search IS NULL AND user_id = $1 LIMIT 1"
        }
        (Backend::Postgres, None) => {
            "SELECT 1 FROM chatstore_messages WHERE search IS NULL LIMIT 1"
        }
        (Backend::Mysql, Some(_)) => {
            "SELECT 1 FROM chatstore_search_pending WHERE user_id = ? LIMIT 1"
        }
        (Backend::Mysql, None) => "SELECT 1 FROM chatstore_search_pending LIMIT 1",
    };
    let found: Vec<i32> = match conn {
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => {
            let params = user.map(|user| super::Param::Text(user.as_str()));
            Positional::<_, Integer>::new(Raw::kept(sql, params.into_iter().collect())).load(c)?
        }
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(_) => {
            let statement = diesel::sql_query(sql).into_boxed::<MultiBackend>();
            Cached(Positional::<_, Integer>::new(statement)).load(conn)?
        }
        #[cfg(feature = "postgres")]
        Conn::Pg(_) => {
            let statement = diesel::sql_query(sql).into_boxed::<MultiBackend>();
            let statement = match user {
                Some(user) => statement.bind::<Text, _>(user),
                None => statement,
            };
            Cached(Positional::<_, Integer>::new(statement)).load(conn)?
        }
    };
    Ok(!found.is_empty())
}

/// Indexes up to `limit` of the messages waiting for the search index, oldest first (on the
/// servers only `user`'s if given; SQLite's index catches up for everyone at once), and returns
/// how many. Fewer than `limit` means none was left waiting when it ran. Run in a write
/// transaction: the messages it indexes are marked indexed in the same one, so a message is never
/// indexed twice, and one deleted meanwhile never enters the index.
///
/// Concurrent runs on the servers take turns on the rows: each locks the rows it indexes, and one
/// that waited skips those the other indexed.
// SQLite's index catches up for everyone: with SQLite alone, `user` is not read.
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(unused_variables)
)]
pub(crate) fn index_unindexed(conn: &mut Conn, user: Option<&UserId>, limit: i64) -> Result<usize> {
    match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => {
            // Both statements read the same waiting keys: they run in one write transaction, so
            // nothing is appended between them.
            let indexed = Cached(
                diesel::sql_query(
                    "INSERT INTO chatstore_messages_search (rowid, body, owner) \
                     SELECT key, substr(coalesce(search_text, content), 1, 100000), hex(user_id) \
                     FROM chatstore_messages \
                     WHERE key > (SELECT indexed_through FROM chatstore_search_state) \
                     ORDER BY key LIMIT ?",
                )
                .bind::<BigInt, _>(limit),
            )
            .execute(c)?;
            Cached(
                diesel::sql_query(
                    "UPDATE chatstore_search_state SET indexed_through = coalesce((\
                     SELECT max(key) FROM (SELECT key FROM chatstore_messages \
                     WHERE key > indexed_through ORDER BY key LIMIT ?)), indexed_through)",
                )
                .bind::<BigInt, _>(limit),
            )
            .execute(c)?;
            Ok(indexed)
        }
        // Store-wide, user by user: each statement names its owner, so that on Citus it runs on
        // the one node holding that user's rows (a locking read across shards is refused).
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => match user {
            Some(user) => index_user_pg(c, user.as_str(), limit),
            None => {
                #[derive(QueryableByName)]
                struct Waiting {
                    #[diesel(sql_type = Text)]
                    user_id: String,
                }
                // Every user with a message waiting, up to one a message of the batch: served by
                // the partial index of waiting messages.
                let waiting: Vec<Waiting> = Cached(
                    diesel::sql_query(
                        "SELECT DISTINCT user_id FROM chatstore_messages WHERE search IS NULL \
                         LIMIT $1",
                    )
                    .bind::<BigInt, _>(limit),
                )
                .load(c)?;
                // Short only if each user's batch was: then nothing was left waiting.
                let mut indexed = 0;
                for waiting in &waiting {
                    if indexed as i64 >= limit {
                        break;
                    }
                    indexed += index_user_pg(c, &waiting.user_id, limit - indexed as i64)?;
                }
                Ok(indexed)
            }
        },
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => index_pending_mysql(c, user, limit),
    }
}

/// Indexes up to `limit` of `user`'s messages that wait for the index (PostgreSQL). The index's
/// expression is the one the generated column had (migration 000004), so a message indexed before
/// and one indexed now hold the same words.
///
/// The waiting rows are locked and listed first (an init plan, run once), then updated through
/// the primary key. A join instead was planned from statistics taken while nothing waited (the
/// partial index "empty"): a nested loop that ran the subquery again for every row, 2.8 ms a
/// message over 10,000. The lock re-checks `search IS NULL` on a row another run indexed
/// meanwhile, and skips it.
#[cfg(feature = "postgres")]
fn index_user_pg(conn: &mut diesel::PgConnection, user: &str, limit: i64) -> Result<usize> {
    let statement = diesel::sql_query(
        "UPDATE chatstore_messages m SET search = to_tsvector('simple', regexp_replace(\
         left(coalesce(m.search_text, m.content), 100000), '[!-/:-@\\[-`{-~]', ' ', 'g')) \
         || ('u' || md5(m.user_id))::tsvector \
         WHERE m.user_id = $2 AND m.id = ANY (ARRAY(SELECT id FROM chatstore_messages \
         WHERE search IS NULL AND user_id = $2 ORDER BY id LIMIT $1 FOR UPDATE))",
    )
    .bind::<BigInt, _>(limit)
    .bind::<Text, _>(user);
    Ok(Cached(statement).execute(conn)?)
}

/// Records that newly inserted messages wait for the search index (MySQL's: the other backends
/// find what waits in the messages table itself).
#[cfg(feature = "mysql")]
pub(crate) fn mark_unindexed(
    conn: &mut diesel::MysqlConnection,
    rows: &[super::rows::NewMessageRow<'_>],
) -> Result<()> {
    // In INSERTs of a few sizes, each kept prepared (see `messages::pieces` and `Raw`): Diesel's
    // INSERT of a slice of rows was prepared and closed on every append, a round trip of its own.
    for chunk in rows.chunks(WORDS_PER_INSERT) {
        for piece in super::messages::pieces(chunk) {
            let values = vec!["(?, ?)"; piece.len()].join(", ");
            let sql = format!(
                "INSERT INTO chatstore_search_pending (message_id, user_id) VALUES {values}"
            );
            let params = piece
                .iter()
                .flat_map(|row| {
                    [
                        super::Param::Binary(row.id.as_bytes()),
                        super::Param::Text(row.user_id.as_str()),
                    ]
                })
                .collect();
            super::Raw::kept(&sql, params).execute(conn)?;
        }
    }
    Ok(())
}

#[cfg(feature = "mysql")]
diesel::table! {
    #[sql_name = "chatstore_search_pending"]
    search_pending (message_id) {
        message_id -> Binary,
        user_id -> Text,
    }
}

/// MySQL's [`index_unindexed`]: the waiting rows are locked and read as ids, their messages'
/// content and text parts [`REINDEX_PAGE`] at a time; each message's words replace any it had (a run of the
/// search migration's own catch-up may have indexed it already), and its row goes.
#[cfg(feature = "mysql")]
fn index_pending_mysql(
    conn: &mut diesel::MysqlConnection,
    user: Option<&UserId>,
    limit: i64,
) -> Result<usize> {
    let condition = match user {
        Some(_) => "WHERE user_id = ?",
        None => "",
    };
    let sql = format!(
        "SELECT message_id AS id FROM chatstore_search_pending {condition} \
         ORDER BY user_id, message_id LIMIT ? FOR UPDATE"
    );
    let mut params: Vec<_> = user
        .map(|user| super::Param::Text(user.as_str()))
        .into_iter()
        .collect();
    params.push(super::Param::BigInt(limit));
    let ids: Vec<MessageId> =
        Positional::<_, Binary>::new(super::Raw::kept(&sql, params)).load(conn)?;
    // Any words an earlier run left for these messages go first, in one statement; then the
    // words of a page of messages at a time, sent WORDS_PER_INSERT at a time (a statement a
    // message was 456 µs a message over 10,000).
    diesel::delete(message_words::table.filter(message_words::message_id.eq_any(&ids)))
        .execute(conn)?;
    let mut words: Vec<(MessageId, UserId, String, i32)> = Vec::new();
    for page in ids.chunks(REINDEX_PAGE as usize) {
        use crate::schema::messages;
        type Stored = (MessageId, UserId, String, Option<String>);
        let stored: Vec<Stored> = messages::table
            .select((
                messages::id,
                messages::user_id,
                messages::content,
                messages::parts,
            ))
            .filter(messages::id.eq_any(page))
            .load(conn)?;
        for (message, owner, content, parts) in stored {
            let text = crate::models::stored_text(&content, parts.as_deref());
            words.extend(
                crate::search::index_words(&text)
                    .into_iter()
                    .map(|(word, hits)| (message, owner.clone(), word, hits)),
            );
        }
        if words.len() >= WORDS_PER_INSERT {
            insert_word_tuples(conn, &words)?;
            words.clear();
        }
    }
    insert_word_tuples(conn, &words)?;
    diesel::delete(search_pending::table.filter(search_pending::message_id.eq_any(&ids)))
        .execute(conn)?;
    Ok(ids.len())
}
