//! Full-text search: hand-written SQL over each backend's index (an FTS5 table on SQLite, a
//! generated tsvector column with a GIN index on PostgreSQL, with the same binds on both; on MySQL
//! a table of each message's words that the store fills itself, see [`find_mysql`]).

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Nullable, Text};

use super::rows::MessageRow;
use super::Cached;
use crate::conn::Conn;
#[cfg(feature = "mysql")]
use crate::ids::MessageId;
use crate::ids::{ConversationId, UserId};
use crate::models::Message;
use crate::search::{Query, SearchOrder};
use crate::Result;

type MultiBackend = <Conn as diesel::Connection>::Backend;

/// A hit: the message's columns, and its conversation's title.
#[derive(QueryableByName)]
struct HitRow {
    #[diesel(embed)]
    message: MessageRow,
    #[diesel(sql_type = Nullable<Text>)]
    title: Option<String>,
}

/// A search's page: up to `limit` of the user's messages matching `query` (in one conversation, if
/// given), after skipping `offset`, in `order`.
#[derive(Clone, Copy)]
pub(crate) struct Find<'a> {
    pub(crate) user: &'a UserId,
    pub(crate) conversation: Option<ConversationId>,
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
        query,
        order,
        limit,
        offset,
    } = find;
    let (in_conversation, limit_at, offset_at) = match conversation {
        Some(_) => ("AND m.conversation_id = $3", "$4", "$5"),
        None => ("", "$3", "$4"),
    };
    // Each backend's index: what to read, how a row matches, how it ranks, and the match itself.
    let (from, matches, rank, matching): (&str, &str, &str, String) = match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(_) => (
            "messages_search s JOIN messages m ON m.key = s.rowid \
             JOIN conversations c ON c.id = m.conversation_id",
            "messages_search MATCH $1",
            // The owner column matches every row alike: only the words weigh.
            "bm25(messages_search, 1.0, 0.0), ",
            fts5_query(user, query),
        ),
        // Accents are stripped from the query as from the index, by the same expression. Words
        // the parser does not keep (such as "²") drop out of the query, as they do from the index;
        // a query left with none would be the owner's token alone, every message of the user, so
        // it finds nothing instead.
        #[cfg(feature = "postgres")]
        Conn::Pg(_) => (
            "messages m JOIN conversations c ON c.id = m.conversation_id, \
             (SELECT to_tsquery('simple', regexp_replace(normalize($1, NFD), \
               '[\\u0300-\\u036f]', '', 'g')) AS words) w, \
             LATERAL (SELECT w.words && ('u' || md5($2))::tsquery AS q) q",
            "numnode(w.words) > 0 AND m.search @@ q.q",
            "ts_rank(m.search, q.q) DESC, ",
            tsquery(query),
        ),
        // Statements of its own: see below.
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => return find_mysql(c, find),
    };
    let rank = match order {
        SearchOrder::BestMatch => rank,
        _ => "",
    };
    let sql = format!(
        "SELECT m.id, m.conversation_id, m.seq, m.role, m.content, m.metadata, m.created_at, \
         c.title FROM {from} WHERE {matches} AND m.user_id = $2 {in_conversation} \
         ORDER BY {rank}m.created_at DESC, m.seq DESC, m.id DESC \
         LIMIT {limit_at} OFFSET {offset_at}"
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
    let rows: Vec<HitRow> = Cached(statement).load(conn)?;
    rows.into_iter()
        .map(|row| Ok((row.message.into_model()?, row.title)))
        .collect()
}

/// The FTS5 query: the owner's token and every phrase, each a quoted string (words hold only
/// letters, digits and combining marks, so nothing in them is FTS5 syntax).
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
/// split and folded by the same Rust code as the query ([`crate::search`]). The index finds the
/// messages holding every word of the query (words are cut to 64 characters there); each candidate
/// is then checked against its content — phrases in order, whole words — before it counts.
#[cfg(feature = "mysql")]
mod mysql_words {
    diesel::table! {
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

/// Indexes the words of newly inserted messages, a statement per `WORDS_PER_INSERT` words (the
/// rows of a whole large batch would take dozens of times its text in memory).
#[cfg(feature = "mysql")]
pub(crate) fn index_words(
    conn: &mut diesel::MysqlConnection,
    rows: &[super::rows::NewMessageRow<'_>],
) -> Result<()> {
    let mut words: Vec<WordRow<'_>> = Vec::new();
    for row in rows {
        words.extend(
            crate::search::index_words(row.content)
                .into_iter()
                .map(|(word, hits)| WordRow {
                    message_id: row.id,
                    user_id: row.user_id,
                    word,
                    hits,
                }),
        );
        if words.len() >= WORDS_PER_INSERT {
            insert_words(conn, &words)?;
            words.clear();
        }
    }
    insert_words(conn, &words)
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

/// A stored message that has no word in the index yet.
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
    // Ids are 16 bytes: every one sorts after the empty string.
    let mut after: Vec<u8> = Vec::new();
    loop {
        let page: Vec<Unindexed> = diesel::sql_query(
            "SELECT m.id, m.user_id, m.content FROM messages m WHERE m.id > ? \
             AND NOT EXISTS (SELECT 1 FROM message_words w WHERE w.message_id = m.id) \
             ORDER BY m.id LIMIT 100",
        )
        .bind::<Binary, _>(&after)
        .load(conn)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.id.as_bytes().to_vec();
        conn.transaction(|conn| {
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

/// A word's condition: its messages among the user's, by one range of `messages_search`.
#[cfg(feature = "mysql")]
fn word_condition(prefix: bool) -> &'static str {
    match prefix {
        false => "m.id IN (SELECT message_id FROM message_words WHERE user_id = ? AND word = ?)",
        true => {
            "m.id IN (SELECT message_id FROM message_words \
             WHERE user_id = ? AND word LIKE ? ESCAPE '!')"
        }
    }
}

/// MySQL's [`find`]: the page's ids first, then its rows (see [`candidates`]).
#[cfg(feature = "mysql")]
fn find_mysql(
    conn: &mut diesel::MysqlConnection,
    find: Find<'_>,
) -> Result<Vec<(Message, Option<String>)>> {
    let Find {
        conversation,
        query,
        order,
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
                // Words hold only letters, digits and marks; the escape is for safety's sake.
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
                "(SELECT SUM(w.hits) FROM message_words w WHERE w.message_id = m.id \
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
    // The page's ids are found and sorted first, and only then are its rows read and joined
    // to their titles. Written as one join, the sort took every match's whole row (content
    // included) through a temporary table, since the join began with the conversations:
    // 2.2-2.7 s for a word in all of a user's 100,000 messages (W12), 0.14-0.16 s this way;
    // 1.2-1.9 ms for a word in 100 of them (W11), 0.5-1.0 ms this way (MariaDB 10.11). The
    // page is sorted again outside, the same way (the rank's binds follow the page's).
    let order_by = format!("{rank}m.created_at DESC, m.seq DESC, m.id DESC");
    let sql = format!(
        "SELECT m.id, m.conversation_id, m.seq, m.role, m.content, m.metadata, m.created_at, \
         c.title FROM (SELECT m.id FROM messages m \
         WHERE m.user_id = ? {in_conversation} AND {} \
         ORDER BY {order_by} LIMIT ? OFFSET ?) page \
         JOIN messages m ON m.id = page.id JOIN conversations c ON c.id = m.conversation_id \
         ORDER BY {order_by}",
        conditions.join(" AND ")
    );
    candidates(conn, &sql, &words, find)
}

/// The candidate pages of [`find_mysql`], each checked against its content.
///
/// Candidates come in pages, checked against their content, until the page asked for is full:
/// usually at once, since the index is exact for words of up to 64 characters and only a phrase's
/// order can fail the check. The pages must be read from one snapshot ([`crate::conn::snapshot`]),
/// so that a message written or deleted between two of them cannot shift the offsets (repeating or
/// skipping a hit): READ COMMITTED would give each statement a snapshot of its own.
#[cfg(feature = "mysql")]
fn candidates(
    conn: &mut diesel::MysqlConnection,
    sql: &str,
    words: &[(String, bool)],
    find: Find<'_>,
) -> Result<Vec<(Message, Option<String>)>> {
    let (limit, offset) = (find.limit, find.offset);
    let Find {
        user,
        conversation,
        query,
        order,
        ..
    } = find;
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
    let wanted = (offset + limit).max(0) as usize;
    let mut found: Vec<(Message, Option<String>)> = Vec::new();
    let mut skipped_candidates = 0i64;
    let mut batch = (offset + limit).clamp(16, 4096);
    loop {
        let mut statement = diesel::sql_query(sql)
            .into_boxed::<diesel::mysql::Mysql>()
            .bind::<Text, _>(user);
        if let Some(conversation) = conversation {
            statement = statement.bind::<Binary, _>(conversation);
        }
        for (word, _) in words {
            statement = statement.bind::<Text, _>(user).bind::<Text, _>(word);
        }
        if order == SearchOrder::BestMatch {
            for (word, _) in words {
                statement = statement.bind::<Text, _>(word);
            }
        }
        let mut statement = statement
            .bind::<BigInt, _>(batch)
            .bind::<BigInt, _>(skipped_candidates);
        if order == SearchOrder::BestMatch {
            for (word, _) in words {
                statement = statement.bind::<Text, _>(word);
            }
        }
        // Not marked for Diesel's statement cache: the text depends on the query's words, and
        // kept for every shape a client can write, statements would pile up on the server
        // towards its `max_prepared_stmt_count` (16,382 for all connections). (The mark would
        // not hold on MySQL anyway: see `conversations::mysql`.)
        let rows: Vec<HitRow> = statement.load(conn)?;
        let exhausted = (rows.len() as i64) < batch;
        skipped_candidates += rows.len() as i64;
        for row in rows {
            let message = row.message.into_model()?;
            if exact || crate::search::matches_all(&message.content, query) {
                found.push((message, row.title));
            }
        }
        if exhausted || found.len() >= wanted {
            break;
        }
        batch = (batch * 2).min(4096);
    }
    Ok(found
        .into_iter()
        .skip(offset.max(0) as usize)
        .take(limit.max(0) as usize)
        .collect())
}
