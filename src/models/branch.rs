use chrono::{DateTime, Utc};

use super::Message;
use crate::ids::BranchId;

/// A branch of a conversation, as [`ChatStore::branches`](crate::ChatStore::branches) lists it and
/// an export ([`ExportItem::Branch`](crate::ExportItem::Branch)) holds it.
///
/// With the `serde` feature: `{"id", "parent", "fork_seq", "length", "created_at", "updated_at",
/// "active"}`, and `"retired": true` for a retired branch (only an export has those).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Branch {
    /// Its id within the conversation.
    pub id: BranchId,
    /// The branch it forks from (`None` for the root branch, which forks from nothing).
    pub parent: Option<BranchId>,
    /// The last seq it shares with its parent: its own messages start at `fork_seq + 1` (0 for the
    /// root, or a branch that replaced the first message).
    pub fork_seq: i64,
    /// The seq of its newest message: how many messages its path holds.
    pub length: i64,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it last changed: made, appended to, made active.
    pub updated_at: DateTime<Utc>,
    /// Whether it is the conversation's active branch.
    pub active: bool,
    /// Whether it was deleted while other branches forked from it: it is then kept, for the
    /// messages they share (its `length` is where the last of them forks), but never listed or
    /// made active. A retired branch with no parent, no fork and no length is the deleted branch
    /// that had the highest id, kept so that the id is never given again (a stale id then finds
    /// nothing, never another branch). Always `false` in
    /// [`ChatStore::branches`](crate::ChatStore::branches); an export carries retired branches so
    /// that an import rebuilds the tree exactly.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "std::ops::Not::not")
    )]
    pub retired: bool,
}

/// One of the versions of a message: see [`Siblings`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Sibling {
    /// The message.
    pub message: Message,
    /// The branch to make active ([`ChatStore::switch_branch`](crate::ChatStore::switch_branch))
    /// to show it.
    pub branch: BranchId,
}

/// A message and its siblings — every version of it: the messages at its seq whose branches share
/// everything before it (edits of one user message, regenerations of one reply), oldest first.
/// What a "< 2 / 3 >" control needs: `position + 1` of `siblings.len()`.
///
/// With the `serde` feature: `{"siblings", "position"}`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Siblings {
    /// Every version, oldest first (the message asked about included).
    pub siblings: Vec<Sibling>,
    /// The index of the message asked about in `siblings`.
    pub position: usize,
}
