use chrono::{DateTime, Utc};

use crate::ids::{BranchId, ConversationId, UserId};

/// A conversation: one chat thread owned by one user.
///
/// With the `serde` feature: `{"id", "user_id", "title", "created_at", "updated_at",
/// "message_count"}`, ids as strings and times in RFC 3339 (UTC), and `"branch"` once it has
/// branched (absent means the root branch).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Conversation {
    /// Its id (UUIDv7, made by the store).
    pub id: ConversationId,
    /// The owner; only this user can read or change it.
    pub user_id: UserId,
    /// The title, trimmed; `None` when none was given or it was blank.
    pub title: Option<String>,
    /// When it was created (UTC, microsecond precision).
    pub created_at: DateTime<Utc>,
    /// When it last changed: created, renamed or appended to. Lists sort by it, newest first.
    pub updated_at: DateTime<Utc>,
    /// How many messages it holds, which is also the `seq` of its newest message (seqs run 1, 2, 3…
    /// without gaps). With branches: how many its active branch's path holds.
    pub message_count: i64,
    /// Its active branch: the one that reads, context windows and appends follow (the root branch
    /// until a message is edited or regenerated, see
    /// [`ChatStore::append_sibling`](crate::ChatStore::append_sibling)).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "BranchId::is_root_ref")
    )]
    pub branch: BranchId,
}
