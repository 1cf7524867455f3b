use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Tag, Usage};
use crate::ids::{BranchId, ConversationId, UserId};

/// A conversation: one chat thread owned by one user.
///
/// With the `serde` feature: `{"id", "user_id", "title", "created_at", "updated_at",
/// "message_count"}`, ids as strings and times in RFC 3339 (UTC), `"branch"` once it has
/// branched (absent means the root branch), `"pinned": true` or `"archived": true` when it is
/// (absent means false), `"tags"` when it has any (an array of strings, sorted), `"metadata"`
/// when it has some (the JSON object itself) and `"usage"` when its messages used any tokens
/// (see [`Usage`]).
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
    /// Its tags, each once, sorted by their UTF-8 bytes (see
    /// [`set_conversation_tags`](crate::ChatStore::set_conversation_tags)).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub tags: Vec<Tag>,
    /// The application's JSON object about it, if any (see
    /// [`set_conversation_metadata`](crate::ChatStore::set_conversation_metadata)).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub metadata: Option<Value>,
    /// The token usage of its messages, summed (see [`NewMessage::with_usage`](crate::NewMessage::with_usage)):
    /// every message it stores counts, on every branch. Kept in the transaction of each append,
    /// and of each call that removes messages (a pop, a truncation, a cleared history, a deleted
    /// branch); [`Usage::ZERO`] when no message carries usage.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Usage::is_zero")
    )]
    pub usage: Usage,
}

/// A conversation to create with more than a title: what
/// [`create_conversation_with`](crate::ChatStore::create_conversation_with) takes. Checked when it
/// is created: the title as [`create_conversation`](crate::ChatStore::create_conversation) checks
/// it, the tags as [`set_conversation_tags`](crate::ChatStore::set_conversation_tags) and the
/// metadata as [`set_conversation_metadata`](crate::ChatStore::set_conversation_metadata) do.
///
/// ```
/// use chatstore::{NewConversation, Tag};
/// use serde_json::json;
///
/// let new = NewConversation::new()
///     .with_title("Kitchen renovation")
///     .with_tag(Tag::new("home")?)
///     .with_metadata(json!({ "project": 42 }));
/// assert_eq!(new.title(), Some("Kitchen renovation"));
/// # Ok::<(), chatstore::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use = "a NewConversation does nothing until it is created"]
pub struct NewConversation<'a> {
    title: Option<Cow<'a, str>>,
    tags: Vec<Tag>,
    metadata: Option<Value>,
}

impl<'a> NewConversation<'a> {
    /// A conversation with no title, no tags and no metadata.
    pub fn new() -> Self {
        NewConversation::default()
    }

    /// Sets the title (trimmed when created; blank means none): a `&str`, borrowed, or a
    /// `String`.
    pub fn with_title(mut self, title: impl Into<Cow<'a, str>>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// Adds a tag (a tag given twice is kept once).
    pub fn with_tag(mut self, tag: Tag) -> Self {
        self.tags.push(tag);
        self
    }

    /// Adds tags (a tag given twice is kept once).
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = Tag>) -> Self {
        self.tags.extend(tags);
        self
    }

    /// Sets the metadata: a JSON object, as for
    /// [`set_conversation_metadata`](crate::ChatStore::set_conversation_metadata).
    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// The title, as given.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// The tags, as given.
    pub fn tags(&self) -> &[Tag] {
        &self.tags
    }

    /// The metadata, if any.
    pub fn metadata(&self) -> Option<&Value> {
        self.metadata.as_ref()
    }

    /// The same conversation, owning its title (copied if it was borrowed): one that can be sent
    /// to another thread or task.
    pub fn into_owned(self) -> NewConversation<'static> {
        NewConversation {
            title: self.title.map(|t| Cow::Owned(t.into_owned())),
            tags: self.tags,
            metadata: self.metadata,
        }
    }

    pub(crate) fn into_parts(self) -> (Option<Cow<'a, str>>, Vec<Tag>, Option<Value>) {
        (self.title, self.tags, self.metadata)
    }
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
