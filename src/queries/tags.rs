//! Conversations' tags as `chatstore_conversation_tags` indexes them: one row per tag of a
//! conversation, carrying the conversation's place in the lists (its `list_rank` and `updated_at`),
//! so that a list of one tag is one range of the index `(user_id, tag, list_rank DESC, updated_at
//! DESC, conversation_id DESC)`. The conversation's own `tags` column is what reads return; every
//! statement here that changes one changes the other in the same transaction, and every change to
//! a conversation's place is followed here ([`follow`]) before its transaction commits.

use chrono::NaiveDateTime;
use diesel::dsl::count_star;
use diesel::prelude::*;

use super::columns::BindTime;
use super::rows::tags_text;
use crate::conn::Conn;
use crate::ids::{ConversationId, UserId};
use crate::models::{Conversation, Tag, TagCount};
use crate::schema::conversation_tags::dsl::*;
use crate::schema::conversations;
use crate::Result;

#[derive(Insertable)]
#[diesel(table_name = crate::schema::conversation_tags)]
struct NewTagRow<'a> {
    conversation_id: ConversationId,
    user_id: &'a UserId,
    tag: &'a str,
    list_rank: i16,
    updated_at: BindTime,
}

/// Indexes the tags of `conversation`, a new conversation of `user`'s (its own row holds them
/// already).
pub(crate) fn insert(conn: &mut Conn, user: &UserId, conversation: &Conversation) -> Result<()> {
    if conversation.tags.is_empty() {
        return Ok(());
    }
    let rows: Vec<NewTagRow<'_>> = conversation
        .tags
        .iter()
        .map(|t| NewTagRow {
            conversation_id: conversation.id,
            user_id: user,
            tag: t.as_str(),
            list_rank: conversation.list_rank().as_db(),
            updated_at: BindTime(conversation.updated_at.naive_utc()),
        })
        .collect();
    // A multi-row INSERT is backend-specific SQL (`DEFAULT` keywords, or none, for SQLite).
    let insert = diesel::insert_into(conversation_tags).values(&rows);
    match conn {
        #[cfg(feature = "sqlite")]
        Conn::Sqlite(c) => insert.execute(c)?,
        #[cfg(feature = "postgres")]
        Conn::Pg(c) => insert.execute(c)?,
        #[cfg(feature = "mysql")]
        Conn::Mysql(c) => insert.execute(c)?,
    };
    Ok(())
}

/// Gives the user's conversation the tags `conversation.tags` in its row and in the index, where
/// it is at `conversation`'s place in the lists: the caller holds the conversation's row lock
/// ([`lock`](super::conversations::lock)), under which it read that place.
pub(crate) fn replace(conn: &mut Conn, user: &UserId, conversation: &Conversation) -> Result<()> {
    let conv = conversation.id;
    diesel::update(
        conversations::table
            .filter(conversations::id.eq(conv))
            .filter(conversations::user_id.eq(user)),
    )
    .set(conversations::tags.eq(tags_text(&conversation.tags)))
    .execute(conn)?;
    diesel::delete(
        conversation_tags
            .filter(conversation_id.eq(conv))
            .filter(user_id.eq(user)),
    )
    .execute(conn)?;
    insert(conn, user, conversation)
}

/// Copies the conversation's place in the lists (`list_rank`, `updated_at`) from its row into its
/// tags' rows: run after every change to either, in the same transaction. A conversation without
/// tags has no rows to change.
pub(crate) fn follow(conn: &mut Conn, user: &UserId, conv: ConversationId) -> Result<()> {
    let source = conversations::table
        .filter(conversations::id.eq(conv))
        .filter(conversations::user_id.eq(user));
    diesel::update(
        conversation_tags
            .filter(conversation_id.eq(conv))
            .filter(user_id.eq(user)),
    )
    .set((
        list_rank.eq(source
            .select(conversations::list_rank)
            .single_value()
            .assume_not_null()),
        updated_at.eq(source
            .select(conversations::updated_at)
            .single_value()
            .assume_not_null()),
    ))
    .execute(conn)?;
    Ok(())
}

/// Sets the `updated_at` of the conversation's tags' rows to `time`, the conversation's: an
/// append's, which changes nothing else of its place.
pub(crate) fn touch(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    time: NaiveDateTime,
) -> Result<()> {
    let rows = conversation_tags
        .filter(conversation_id.eq(conv))
        .filter(user_id.eq(user));
    super::Cached(diesel::update(rows).set(updated_at.eq(BindTime(time)))).execute(conn)?;
    Ok(())
}

/// The user's tags with how many of the user's conversations have each, listed and archived,
/// sorted by tag (UTF-8 bytes), in one statement over the index.
pub(crate) fn counts(conn: &mut Conn, user: &UserId) -> Result<Vec<TagCount>> {
    let groups: Vec<(String, i16, i64)> = conversation_tags
        .filter(user_id.eq(user))
        .group_by((tag, list_rank))
        .select((tag, list_rank, count_star()))
        .load(conn)?;
    let mut counts: Vec<TagCount> = Vec::new();
    for (name, rank, n) in groups {
        let name = Tag::new(name).map_err(|_| crate::models::corrupt_row("a tag"))?;
        let n = u64::try_from(n).unwrap_or(0);
        let at = match counts.binary_search_by(|c| c.tag.cmp(&name)) {
            Ok(at) => at,
            Err(at) => {
                counts.insert(
                    at,
                    TagCount {
                        tag: name,
                        conversations: 0,
                        archived: 0,
                    },
                );
                at
            }
        };
        match rank {
            0 => counts[at].archived += n,
            _ => counts[at].conversations += n,
        }
    }
    Ok(counts)
}
