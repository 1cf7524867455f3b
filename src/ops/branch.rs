//! Branches: a sibling of a message started as a new branch (an edit, a regeneration), the active
//! branch switched, a message's siblings and a conversation's branches listed, a branch deleted.
//! The tree's rules are in `tree.rs`; each write here locks the conversation's row first, as an
//! append does, so it and the appends to the conversation take turns.

use chrono::NaiveDateTime;

use super::append::{Batch, Written};
use crate::conn::Conn;
use crate::ids::{BranchId, ConversationId, MessageId, UserId};
use crate::models::{corrupt_row, Branch, Conversation, Message, Sibling, Siblings};
use crate::queries::rows::{branch_model, BranchRow, ConversationRow, MessageRow};
use crate::queries::{branches, conversations, messages};
use crate::tree::{stored_seq, Cut, Node, Segment, Tree, MAX_POSITION};
use crate::{Error, Result};

/// The user's conversation `conv`, its tree, and which of its branches have rows: what every
/// change of the tree reads first (here, and a truncation's in `truncate.rs`).
pub(crate) struct Loaded {
    pub(crate) row: ConversationRow,
    pub(crate) tree: Tree,
    saved: Vec<BranchId>,
}

impl Loaded {
    /// Read under the conversation's row lock (`lock`: a write follows) or as it is.
    /// Unlocked, the row and the branches are one statement: one snapshot.
    fn read(conn: &mut Conn, user: &UserId, conv: ConversationId, lock: bool) -> Result<Self> {
        match lock {
            true => {
                let row = conversations::lock(conn, user, conv)?.ok_or(Error::NotFound)?;
                Loaded::locked(conn, row)
            }
            false => {
                let (row, stored) =
                    branches::with_conversation(conn, user, conv)?.ok_or(Error::NotFound)?;
                Ok(Loaded::of(row, stored))
            }
        }
    }

    /// The tree of the conversation whose row the caller has locked.
    pub(crate) fn locked(conn: &mut Conn, row: ConversationRow) -> Result<Self> {
        let stored = branches::rows(conn, &row.user_id, row.id)?;
        Ok(Loaded::of(row, stored))
    }

    fn of(row: ConversationRow, stored: Vec<BranchRow>) -> Self {
        let saved = stored.iter().map(|r| BranchId::from_db(r.branch)).collect();
        let tree = row.tree(stored);
        Loaded { row, tree, saved }
    }

    pub(crate) fn active(&self) -> BranchId {
        BranchId::from_db(self.row.branch)
    }

    /// Writes the rows that `cut` changed: those of the branches it removed go, those it changed
    /// are saved — none in a conversation that never branched, which keeps having no rows.
    pub(crate) fn apply(&self, conn: &mut Conn, user: &UserId, cut: &Cut) -> Result<()> {
        for gone in &cut.rows {
            branches::delete(conn, user, self.row.id, *gone)?;
        }
        if self.saved.is_empty() {
            return Ok(());
        }
        for changed in &cut.changed {
            self.save(conn, user, *changed)?;
        }
        Ok(())
    }

    /// Writes the node of `branch` as the tree has it now.
    fn save(&self, conn: &mut Conn, user: &UserId, branch: BranchId) -> Result<()> {
        let node = self
            .tree
            .get(branch)
            .ok_or_else(|| corrupt_row("a branch missing from its tree"))?;
        let stored = self.saved.contains(&branch);
        branches::save(conn, user, self.row.id, node, stored)
    }

    /// Makes `branch` active, as the tree has it, at `now` (or the last change, if later).
    pub(crate) fn activate(
        &self,
        conn: &mut Conn,
        user: &UserId,
        branch: BranchId,
        now: NaiveDateTime,
    ) -> Result<()> {
        let node = self
            .tree
            .get(branch)
            .ok_or_else(|| corrupt_row("a branch missing from its tree"))?;
        let off = self.tree.off_branch(branch);
        let kept = self.tree.ancestors(branch);
        let (conv, fork, count) = (self.row.id, node.fork, node.length);
        conversations::set_active(conn, user, conv, branch, fork, count, off, kept, now)?;
        Ok(())
    }
}

/// The user's message `id` in the conversation `conv`, or `NotFound`.
fn message_in(
    conn: &mut Conn,
    (user, conv): (&UserId, ConversationId),
    id: MessageId,
) -> Result<Message> {
    messages::by_ids(conn, user, &[id])?
        .into_iter()
        .find(|m| m.conversation_id == conv)
        .ok_or(Error::NotFound)?
        .into_model()
}

/// Writes `batch` as a new branch whose first message is a sibling of `of` (the branch shares
/// everything before `of`), and makes it active. A retry of a batch stored with client ids
/// returns it, as an append does.
pub(crate) fn append_sibling(
    conn: &mut Conn,
    batch: &Batch<'_, '_>,
    (user, conv): (&UserId, ConversationId),
    of: MessageId,
    now: NaiveDateTime,
) -> Result<Vec<Message>> {
    let mut loaded = Loaded::read(conn, user, conv, true)?;
    let sibling = message_in(conn, (user, conv), of)?;
    if let Some(stored) = batch.replay(conn)? {
        return Ok(stored);
    }
    let n = batch.len() as i64;
    let fork = sibling.seq - 1;
    if fork + n > MAX_POSITION {
        return Err(corrupt_row("a branch past 2^32 - 1 messages"));
    }
    let id = loaded
        .tree
        .next_id()
        .ok_or_else(|| corrupt_row("a conversation with 2^31 branches"))?;
    let parent = loaded.tree.owner_at(sibling.branch, fork);
    // Not before the conversation's last change, so that time follows seq on every path.
    let time = now.max(loaded.row.updated_at.0);
    let active = loaded.active();
    // The branch that stops being active keeps its length and time in its row (the root's row is
    // made now, when the conversation first branches).
    loaded.save(conn, user, active)?;
    let unneeded = loaded.tree.insert(Node {
        branch: id,
        parent: Some(parent),
        fork,
        length: fork + n,
        retired: false,
        created_at: time,
        updated_at: time,
    });
    if let Some(tombstone) = unneeded {
        branches::delete(conn, user, conv, tombstone)?;
    }
    loaded.save(conn, user, id)?;
    let mut rows = batch.rows(time);
    for (row, position) in rows.iter_mut().zip(fork + 1..) {
        row.seq = stored_seq(id, position);
    }
    messages::insert(conn, &mut rows)?;
    if !batch.usage().is_zero() {
        conversations::add_usage(conn, user, conv, batch.usage())?;
    }
    loaded.activate(conn, user, id, time)?;
    Ok(batch.stored(Written::New {
        first_seq: fork + 1,
        created_at: crate::queries::columns::DbTime(time),
        branch: id,
    }))
}

/// Makes `branch` the conversation's active branch; returns the conversation.
pub(crate) fn switch(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    branch: BranchId,
    now: NaiveDateTime,
) -> Result<Conversation> {
    let loaded = Loaded::read(conn, user, conv, true)?;
    loaded.tree.live(branch).ok_or(Error::NotFound)?;
    let active = loaded.active();
    if branch != active {
        loaded.save(conn, user, active)?;
        loaded.activate(conn, user, branch, now)?;
    }
    conversations::get(conn, user, conv)
}

/// The message `of` and its siblings, oldest first.
pub(crate) fn siblings(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    of: MessageId,
) -> Result<Siblings> {
    let loaded = Loaded::read(conn, user, conv, false)?;
    let asked = message_in(conn, (user, conv), of)?;
    let position = asked.seq;
    let mut siblings = Vec::new();
    for branch in loaded.tree.siblings(asked.branch, position) {
        let at = Segment {
            branch,
            after: position - 1,
            through: position,
        };
        // A sibling deleted since the tree was read is left out.
        if let Some(row) = messages::in_segment(conn, user, conv, at, 1)?
            .into_iter()
            .next()
        {
            siblings.push(Sibling {
                message: MessageRow::into_model(row)?,
                branch: loaded.tree.shown_by(branch, position),
            });
        }
    }
    let position = siblings
        .iter()
        .position(|s| s.message.id == asked.id)
        .ok_or(Error::NotFound)?;
    Ok(Siblings { siblings, position })
}

/// The conversation's branches (retired ones left out), by id.
pub(crate) fn list(conn: &mut Conn, user: &UserId, conv: ConversationId) -> Result<Vec<Branch>> {
    let loaded = Loaded::read(conn, user, conv, false)?;
    let active = loaded.active();
    Ok(loaded
        .tree
        .nodes()
        .iter()
        .filter(|n| !n.retired)
        .map(|n| branch_model(n, n.branch == active))
        .collect())
}

/// Deletes `branch`: the messages only it holds go, those other branches share stay. If it was
/// active, the branch changed last becomes active. Returns the conversation.
pub(crate) fn delete(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    branch: BranchId,
    now: NaiveDateTime,
) -> Result<Conversation> {
    let mut loaded = Loaded::read(conn, user, conv, true)?;
    loaded.tree.live(branch).ok_or(Error::NotFound)?;
    let successor = loaded.tree.successor(branch).ok_or(Error::LastBranch)?;
    let active = match loaded.active() {
        active if active == branch => successor,
        active => active,
    };
    let cut = loaded.tree.delete(branch);
    for &(owner, after) in &cut.messages {
        messages::delete_own(conn, user, conv, owner, after)?;
    }
    loaded.apply(conn, user, &cut)?;
    if active != loaded.active() {
        loaded.save(conn, user, active)?;
    }
    loaded.activate(conn, user, active, now)?;
    conversations::get(conn, user, conv)
}
