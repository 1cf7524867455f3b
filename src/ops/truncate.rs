//! Taking back the newest messages of a conversation — an undo (the newest `n`), a truncation
//! after a seq, a clear — in one write transaction: the conversation's row is locked, the
//! messages after the seq it keeps are read (when they are to be returned) and deleted, and its
//! count and `updated_at` set, so concurrent appends queue behind it and number their messages
//! after what it left.

use chrono::NaiveDateTime;

use crate::conn::Conn;
use crate::cursor::Window;
use crate::ids::{ConversationId, UserId};
use crate::models::{corrupt_row, Message};
use crate::queries::{conversations, messages};
use crate::{Error, Result};

/// What a truncation took away.
pub(crate) struct Removed {
    /// How many messages.
    pub(crate) count: u64,
    /// The messages, oldest first, if they were asked for.
    pub(crate) messages: Vec<Message>,
}

/// Removes the user's messages of `conv` after the seq that `keep` gives for the conversation's
/// message count (the count itself, or more: nothing is removed, nothing written). With
/// `returning`, the removed messages are read first and returned. `keep` may refuse, and then
/// nothing is written.
pub(crate) fn truncate(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    keep: impl FnOnce(i64) -> Result<i64>,
    returning: bool,
    now: NaiveDateTime,
) -> Result<Removed> {
    let count = conversations::lock(conn, user, conv)?
        .ok_or(Error::NotFound)?
        .message_count;
    let keep = keep(count)?;
    if keep >= count {
        return Ok(Removed {
            count: 0,
            messages: Vec::new(),
        });
    }
    let removed = count - keep;
    let messages = match returning {
        true => read(conn, user, conv, keep, removed)?,
        false => Vec::new(),
    };
    let deleted = messages::delete_after(conn, user, conv, keep)?;
    // The count is kept equal to the last seq: anything else is a broken row, and the rollback
    // leaves it as it was.
    if deleted as i64 != removed {
        return Err(corrupt_row(format!(
            "{deleted} messages after seq {keep}, where the count says {removed}"
        )));
    }
    conversations::set_count(conn, user, conv, keep, now)?;
    Ok(Removed {
        count: removed as u64,
        messages,
    })
}

/// The `n` messages after seq `keep`, oldest first (the caller has bounded `n` by a window).
fn read(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    keep: i64,
    n: i64,
) -> Result<Vec<Message>> {
    let limit = u32::try_from(n).map_err(|_| corrupt_row("a removal larger than a window"))?;
    let window = Window::After { seq: keep, limit }.bounds();
    let (_, messages) = messages::window(conn, user, conv, window)?.ok_or(Error::NotFound)?;
    Ok(messages)
}
