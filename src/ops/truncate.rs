//! Taking back the newest messages of a conversation's active branch — an undo (the newest `n`), a
//! truncation after a seq, a clear — in one write transaction: the conversation's row is locked,
//! the messages after the seq it keeps are read (when they are to be returned) and the branch's own
//! among them deleted, and its count and `updated_at` set, so concurrent appends queue behind it
//! and number their messages after what it left. A message that another branch's path goes through
//! is never deleted (see `tree.rs`).

use chrono::NaiveDateTime;

use super::branch::Loaded;
use crate::conn::Conn;
use crate::cursor::Window;
use crate::ids::{ConversationId, UserId};
use crate::models::{corrupt_row, Message};
use crate::queries::{conversations, messages};
use crate::{Error, Result};

/// What a truncation took away.
pub(crate) struct Removed {
    /// How many messages, from the active branch's path.
    pub(crate) count: u64,
    /// The messages, oldest first, if they were asked for.
    pub(crate) messages: Vec<Message>,
}

/// Removes the messages of the user's conversation `conv` after the seq that `keep` gives for its
/// message count (the count itself, or more: nothing is removed, nothing written), on its active
/// branch. With `returning`, the removed messages are read first and returned. `keep` may refuse,
/// and then nothing is written; so is [`Error::SharedMessages`] if a branch forks from the active
/// one after the seq kept.
pub(crate) fn truncate(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    keep: impl FnOnce(i64) -> Result<i64>,
    returning: bool,
    now: NaiveDateTime,
) -> Result<Removed> {
    let row = conversations::lock(conn, user, conv)?.ok_or(Error::NotFound)?;
    let count = row.message_count;
    let keep = keep(count)?;
    if keep >= count {
        return Ok(Removed {
            count: 0,
            messages: Vec::new(),
        });
    }
    let mut loaded = Loaded::locked(conn, row)?;
    let active = loaded.active();
    let cut = loaded
        .tree
        .cut(active, keep)
        .map_err(|seq| Error::SharedMessages { seq })?;
    let removed = count - keep;
    let messages = match returning {
        true => read(conn, user, conv, keep, removed)?,
        false => Vec::new(),
    };
    let mut deleted = 0;
    for &(branch, after) in &cut.messages {
        let gone = messages::delete_own(conn, user, conv, branch, after)? as i64;
        // Only the active branch's count is checked: a retired ancestor's go with it.
        if branch == active {
            deleted += gone;
        }
    }
    // Of the removed, the branch's own are deleted: all of them, unless the cut went below the
    // fork. Anything else is a broken row, and the rollback leaves it as it was.
    let own = removed.min(count - loaded.row.branch_fork);
    if deleted != own {
        return Err(corrupt_row(format!(
            "{deleted} messages deleted after seq {keep}, where the count says {own}"
        )));
    }
    loaded.apply(conn, user, &cut)?;
    loaded.activate(conn, user, active, now)?;
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
    let found = messages::window(conn, user, conv, window)?.ok_or(Error::NotFound)?;
    Ok(found.messages)
}
