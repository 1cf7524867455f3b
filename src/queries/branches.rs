//! The branches table: a branched conversation's tree (see `tree.rs`), read whole and written a
//! node at a time. A conversation that never branched has no rows.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::columns::BindTime;
use super::rows::{BranchRow, ConversationRow, NewBranchRow};
use crate::conn::Conn;
use crate::ids::{BranchId, ConversationId, UserId};
use crate::schema::branches::dsl::*;
use crate::tree::{Node, Segment, Tree};
use crate::Result;

/// The conversation's branch rows (the caller has checked that it is the user's).
pub(crate) fn rows(conn: &mut Conn, user: &UserId, conv: ConversationId) -> Result<Vec<BranchRow>> {
    Ok(branches
        .filter(conversation_id.eq(conv))
        .filter(user_id.eq(user))
        .select(BranchRow::as_select())
        .load(conn)?)
}

/// The user's conversation `conv` with its branch rows, read in one statement, so one snapshot on
/// every backend: `None` if the user owns no such conversation.
pub(crate) fn with_conversation(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
) -> Result<Option<(ConversationRow, Vec<BranchRow>)>> {
    use crate::schema::conversations as c;
    let rows: Vec<(ConversationRow, Option<BranchRow>)> = c::table
        .left_join(branches.on(conversation_id.eq(c::id).and(user_id.eq(c::user_id))))
        .filter(c::id.eq(conv))
        .filter(c::user_id.eq(user))
        .select((
            ConversationRow::as_select(),
            Option::<BranchRow>::as_select(),
        ))
        .load(conn)?;
    let mut found = None;
    let mut nodes = Vec::new();
    for (row, node) in rows {
        nodes.extend(node);
        found = Some(row);
    }
    Ok(found.map(|row| (row, nodes)))
}

/// The path of `active`, the conversation's active branch (`count` long), through position
/// `through`: segments newest first (see [`Tree::path`]). The root branch's is itself alone, which
/// takes no statement.
pub(crate) fn path(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    active: BranchId,
    count: i64,
    through: i64,
) -> Result<Vec<Segment>> {
    if active.is_root() {
        return Ok(Tree::new(Vec::new(), active, count, NaiveDateTime::MIN).path(active, through));
    }
    // Only what a path needs: no times to decode for every branch.
    let links: Vec<(i64, Option<i64>, i64)> = branches
        .filter(conversation_id.eq(conv))
        .filter(user_id.eq(user))
        .select((branch, parent, fork_seq))
        .load(conn)?;
    let nodes = links
        .into_iter()
        .map(|(id, up, fork)| Node {
            branch: BranchId::from_db(id),
            parent: up.map(BranchId::from_db),
            fork,
            length: 0,
            retired: false,
            created_at: NaiveDateTime::MIN,
            updated_at: NaiveDateTime::MIN,
        })
        .collect();
    Ok(Tree::new(nodes, active, count, NaiveDateTime::MIN).path(active, through))
}

/// Writes `node` as `user`'s branch of `conv`: inserted if new, otherwise its parent, fork,
/// length, retirement and `updated_at` set.
pub(crate) fn save(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    node: &Node,
    stored: bool,
) -> Result<()> {
    if !stored {
        let row = NewBranchRow::of(user, conv, node);
        diesel::insert_into(branches).values(&row).execute(conn)?;
        return Ok(());
    }
    let target = branches
        .filter(conversation_id.eq(conv))
        .filter(user_id.eq(user))
        .filter(branch.eq(node.branch.as_i64()));
    diesel::update(target)
        .set((
            parent.eq(node.parent.map(BranchId::as_i64)),
            fork_seq.eq(node.fork),
            length.eq(node.length),
            retired.eq(node.retired),
            updated_at.eq(BindTime(node.updated_at)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Deletes the row of `user`'s branch `gone` of `conv`.
pub(crate) fn delete(
    conn: &mut Conn,
    user: &UserId,
    conv: ConversationId,
    gone: BranchId,
) -> Result<()> {
    let target = branches
        .filter(conversation_id.eq(conv))
        .filter(user_id.eq(user))
        .filter(branch.eq(gone.as_i64()));
    diesel::delete(target).execute(conn)?;
    Ok(())
}
