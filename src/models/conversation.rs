use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::ids::{ConversationId, UserId};
use crate::schema::conversations;

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

#[derive(Queryable, Selectable)]
#[diesel(table_name = conversations)]
pub(crate) struct ConversationRow {
    pub(crate) id: super::DbId,
    pub(crate) user_id: String,
    pub(crate) title: Option<String>,
    pub(crate) created_at: super::DbTime,
    pub(crate) updated_at: super::DbTime,
    pub(crate) message_count: i64,
}

impl ConversationRow {
    pub(crate) fn into_model(self) -> Conversation {
        Conversation {
            id: self.id.0.into(),
            user_id: UserId::from_db(self.user_id),
            title: self.title,
            created_at: self.created_at.utc(),
            updated_at: self.updated_at.utc(),
            message_count: self.message_count,
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = conversations, treat_none_as_default_value = false)]
pub(crate) struct NewConversationRow<'a> {
    pub(crate) id: &'a [u8],
    pub(crate) user_id: &'a str,
    pub(crate) title: Option<&'a str>,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) updated_at: NaiveDateTime,
    pub(crate) message_count: i64,
}
