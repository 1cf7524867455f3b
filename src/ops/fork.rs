//! Forking a conversation: its messages up to one of them copied, with new ids, into a new
//! conversation of the same user, in one write transaction.

use chrono::NaiveDateTime;

use crate::conn::Conn;
use crate::ids::{ConversationId, MessageId, UserId};
use crate::models::{corrupt_row, Conversation};
use crate::queries::rows::{ConversationRow, NewConversationRow, NewMessageRow};
use crate::queries::{conversations, messages};
use crate::{Error, Result};

/// Messages read and written at a time: a copy holds one page in memory, whatever its length.
const PAGE: i64 = 1000;

/// Copies the messages of the user's conversation `source` up to and including `through` into a
/// new conversation `fork`: the source's title, its `created_at` (the copied history starts
/// there), `updated_at` `now` (or the newest copied time, if later), the messages with their
/// seqs, roles, content, metadata and times, and new ids. `NotFound` if the user owns no such
/// conversation or `through` is not one of its messages.
pub(crate) fn fork(
    conn: &mut Conn,
    user: &UserId,
    source: ConversationId,
    through: MessageId,
    fork: ConversationId,
    now: NaiveDateTime,
) -> Result<Conversation> {
    let source = conversations::find(conn, user, source)?
        .map(ConversationRow::into_model)
        .ok_or(Error::NotFound)?;
    let last = messages::by_ids(conn, &[through])?
        .into_iter()
        .find(|m| m.conversation_id == source.id)
        .ok_or(Error::NotFound)?;
    let conversation = Conversation {
        id: fork,
        user_id: user.clone(),
        title: source.title,
        created_at: source.created_at,
        updated_at: now.max(last.created_at.0).and_utc(),
        message_count: last.seq,
    };
    conversations::insert(conn, &NewConversationRow::of(user, &conversation))?;
    let mut after = 0;
    while after < last.seq {
        let page = messages::rows_after(conn, source.id, after, PAGE.min(last.seq - after))?;
        let Some(end) = page.last().map(|m| m.seq) else {
            return Err(corrupt_row("a conversation's count is past its messages"));
        };
        let mut rows: Vec<NewMessageRow<'_>> = page
            .iter()
            .map(|row| NewMessageRow::copy_of(user, row, MessageId::generate(), fork))
            .collect();
        messages::insert_stored(conn, &mut rows)?;
        after = end;
    }
    Ok(conversation)
}
