use chrono::{DateTime, Utc};

use crate::ids::{ConversationId, UserId};

/// A conversation: one chat thread owned by one user.
///
/// With the `serde` feature: `{"id", "user_id", "title", "created_at", "updated_at",
/// "message_count"}`, ids as strings and times in RFC 3339 (UTC).
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
    /// without gaps).
    pub message_count: i64,
}
