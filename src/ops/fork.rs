//! Forking a conversation: the path to one of its messages copied, with new ids, into a new
//! conversation of the same user, in one write transaction.

use chrono::NaiveDateTime;

use crate::conn::Conn;
use crate::ids::{BranchId, ConversationId, MessageId, UserId};
use crate::models::{corrupt_row, Conversation, Usage};
use crate::queries::rows::{ConversationRow, NewConversationRow, NewMessageRow};
use crate::queries::{branches, conversations, messages, tags};
use crate::tree::Segment;
use crate::{Error, Result};

/// Messages read and written at a time: a copy holds one page in memory, whatever its length.
const PAGE: i64 = 1000;

/// Copies the messages on the path to `through` — the branch holding it, up to and including it,
/// and what it shares with its ancestors — from the user's conversation `source` into a new
/// conversation `fork`, on its root branch: the source's title, tags and metadata (not whether it
/// is pinned or archived), its `created_at` (the copied
/// history starts there), `updated_at` `now` (or the newest copied time, if later), the messages
/// with their seqs, roles, content, metadata and times, and new ids. `NotFound` if the user owns
/// no such conversation or `through` is not one of its messages.
pub(crate) fn fork(
    conn: &mut Conn,
    user: &UserId,
    source: ConversationId,
    through: MessageId,
    fork: ConversationId,
    now: NaiveDateTime,
) -> Result<Conversation> {
    let row = conversations::find(conn, user, source)?.ok_or(Error::NotFound)?;
    let last = messages::by_ids(conn, user, &[through])?
        .into_iter()
        .find(|m| m.conversation_id == source)
        .ok_or(Error::NotFound)?
        .into_model()?;
    let (tags, metadata) = row.tags_and_metadata()?;
    let mut conversation = Conversation {
        id: fork,
        user_id: user.clone(),
        title: row.title.clone(),
        created_at: row.created_at.utc(),
        updated_at: now.max(last.created_at.naive_utc()).and_utc(),
        message_count: last.seq,
        branch: BranchId::ROOT,
        pinned: false,
        archived: false,
        tags,
        metadata,
        usage: Usage::ZERO,
    };
    let stored = branches::rows(conn, user, source)?;
    let path = ConversationRow::tree(&row, stored).path(last.branch, last.seq);
    conversations::insert(conn, &NewConversationRow::of(user, &conversation))?;
    tags::insert(conn, user, &conversation)?;
    for segment in path.into_iter().rev() {
        conversation.usage = conversation.usage + copy(conn, user, source, segment, fork)?;
    }
    if !conversation.usage.is_zero() {
        conversations::add_usage(conn, user, fork, conversation.usage)?;
    }
    Ok(conversation)
}

/// Copies `segment` of `source` into `fork`'s root branch, a page at a time; returns the copies'
/// usage, summed.
fn copy(
    conn: &mut Conn,
    user: &UserId,
    source: ConversationId,
    segment: Segment,
    fork: ConversationId,
) -> Result<Usage> {
    let mut usage = Usage::ZERO;
    let mut after = segment.after;
    while after < segment.through {
        let page = Segment { after, ..segment };
        let rows = messages::in_segment(conn, user, source, page, PAGE)?;
        let Some(end) = rows
            .last()
            .map(|m| m.seq - segment.stored().0 + segment.after)
        else {
            return Err(corrupt_row("a branch's path has a gap"));
        };
        let mut copies: Vec<NewMessageRow<'_>> = rows
            .iter()
            .zip(after + 1..)
            .map(|(row, seq)| NewMessageRow::copy_of(user, row, MessageId::generate(), fork, seq))
            .collect();
        messages::insert_stored(conn, &mut copies)?;
        for row in &rows {
            usage = usage + row.usage()?.unwrap_or_default();
        }
        after = end;
    }
    Ok(usage)
}
