use chrono::{DateTime, Utc};

use crate::ids::{BranchId, ConversationId, UserId};

/// A conversation: one chat thread owned by one user.
///
/// With the `serde` feature: `{"id", "user_id", "title", "created_at", "updated_at",
/// "message_count"}`, ids as strings and times in RFC 3339 (UTC), `"branch"` once it has
/// branched (absent means the root branch), and `"pinned": true` or `"archived": true` when it is
/// (absent means false).
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
    /// Pinned: [`list_conversations`](crate::ChatStore::list_conversations) lists it before every
    /// unpinned conversation (see [`pin_conversation`](crate::ChatStore::pin_conversation)).
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "is_false"))]
    pub pinned: bool,
    /// Archived: kept, but listed only by
    /// [`list_archived_conversations`](crate::ChatStore::list_archived_conversations) (see
    /// [`archive_conversation`](crate::ChatStore::archive_conversation)). Never also pinned.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "is_false"))]
    pub archived: bool,
}

#[cfg(feature = "serde")]
fn is_false(value: &bool) -> bool {
    !*value
}

/// A conversation's place in its owner's lists, as the `list_rank` column keeps it: the default
/// list runs over the pinned, then the listed; the archived have a list of their own. Every list
/// is most recently updated first within a rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ListRank {
    Archived = 0,
    Listed = 1,
    Pinned = 2,
}

impl ListRank {
    pub(crate) const ALL: [ListRank; 3] = [ListRank::Archived, ListRank::Listed, ListRank::Pinned];

    /// The rank a stored value names; `None` for a value the schema's check refuses.
    pub(crate) fn from_db(value: i16) -> Option<ListRank> {
        ListRank::ALL.into_iter().find(|rank| *rank as i16 == value)
    }

    /// The rank below this one, if any.
    pub(crate) fn below(self) -> Option<ListRank> {
        match self {
            ListRank::Pinned => Some(ListRank::Listed),
            ListRank::Listed => Some(ListRank::Archived),
            ListRank::Archived => None,
        }
    }

    pub(crate) fn as_db(self) -> i16 {
        self as i16
    }

    /// The rank of a conversation with these flags; `None` for both at once.
    pub(crate) fn of(pinned: bool, archived: bool) -> Option<ListRank> {
        match (pinned, archived) {
            (false, false) => Some(ListRank::Listed),
            (true, false) => Some(ListRank::Pinned),
            (false, true) => Some(ListRank::Archived),
            (true, true) => None,
        }
    }
}

impl Conversation {
    /// Its place in its owner's lists. An impossible pair of flags (pinned and archived, which
    /// only a caller's own value can hold) counts as archived.
    pub(crate) fn list_rank(&self) -> ListRank {
        ListRank::of(self.pinned, self.archived).unwrap_or(ListRank::Archived)
    }
}
