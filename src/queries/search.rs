//! Full-text search: hand-written SQL over each backend's index (an FTS5 table on SQLite, a
//! generated tsvector column with a GIN index on PostgreSQL), with the same binds on both.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Nullable, Text};

use super::Cached;
use crate::conn::Conn;
use crate::models::{Message, MessageRow};
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

/// Up to `limit` of the user's messages matching `query` (in one conversation, if given), after
/// skipping `offset`, each with its conversation's title.
///
/// Each backend's index also holds a token for each message's owner, and the query asks for it
/// alongside the words: the index intersects the user's messages with the matches, rather than the
/// database filtering every user's matches. The `user_id` condition stays, so correctness never
/// rests on the token.
pub(crate) fn find(
    conn: &mut Conn,
    user: &str,
    conversation: Option<&[u8]>,
    query: &Query,
    order: SearchOrder,
    limit: i64,
    offset: i64,
) -> Result<Vec<(Message, Option<String>)>> {
    let (in_conversation, limit_at, offset_at) = match conversation {
        Some(_) => ("AND m.conversation_id = $3", "$4", "$5"),
        None => ("", "$3", "$4"),
    };
    // Each backend's index: what to read, how a row matches, how it ranks, and the match itself.
    let (from, matches, rank, matching) = match conn {
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
fn fts5_query(user: &str, query: &Query) -> String {
    let owner: String = user.bytes().map(|b| format!("{b:02X}")).collect();
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
