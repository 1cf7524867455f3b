//! A conversation's tags: setting them, adding and removing one, and a user's tags with their
//! counts. Listing the conversations of one tag is a list like the others, in `lists.rs`; how the
//! tags are indexed is `queries/tags.rs`.

use super::ChatStore;
use crate::ids::{ConversationId, UserId};
use crate::models::{Conversation, Tag, TagCount};
use crate::queries::{conversations, tags};
use crate::{Error, Result};

impl ChatStore {
    /// Gives the conversation exactly these tags (each once; none clears them). `updated_at` is
    /// kept: tagging is not activity.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Tag, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, Some("Kitchen"))?;
    /// let (home, diy) = (Tag::new("home")?, Tag::new("diy")?);
    /// let tagged = store.set_conversation_tags(&alice, conv.id, &[home.clone(), diy.clone()])?;
    /// assert_eq!(tagged.tags, [diy, home]); // sorted
    /// assert!(store.set_conversation_tags(&alice, conv.id, &[])?.tags.is_empty());
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::TooManyTags`] for more than [`Tag::MAX_PER_CONVERSATION`] tags (nothing is
    /// changed); [`Error::NotFound`] if the user owns no such conversation; connection and
    /// database errors.
    pub fn set_conversation_tags(
        &self,
        user: &UserId,
        id: ConversationId,
        tags: &[Tag],
    ) -> Result<Conversation> {
        self.op("set_conversation_tags", || {
            let set = Tag::set_of(tags.iter().cloned())?;
            self.retag(user, id, |_| Ok(set))
        })
    }

    /// Adds a tag to the conversation (a tag it has already is left as it is). `updated_at` is
    /// kept.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Tag, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// let work = Tag::new("work")?;
    /// store.tag_conversation(&alice, conv.id, &work)?;
    /// assert_eq!(store.tag_conversation(&alice, conv.id, &work)?.tags, [work]);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::TooManyTags`] if the conversation has [`Tag::MAX_PER_CONVERSATION`] tags already
    /// (nothing is changed); [`Error::NotFound`] if the user owns no such conversation; connection
    /// and database errors.
    pub fn tag_conversation(
        &self,
        user: &UserId,
        id: ConversationId,
        tag: &Tag,
    ) -> Result<Conversation> {
        self.op("tag_conversation", || {
            self.retag(user, id, |mut tags| {
                tags.push(tag.clone());
                Tag::set_of(tags)
            })
        })
    }

    /// Removes a tag from the conversation (a tag it does not have changes nothing). `updated_at`
    /// is kept.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Tag, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// let work = Tag::new("work")?;
    /// store.tag_conversation(&alice, conv.id, &work)?;
    /// assert!(store.untag_conversation(&alice, conv.id, &work)?.tags.is_empty());
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; connection and database errors.
    pub fn untag_conversation(
        &self,
        user: &UserId,
        id: ConversationId,
        tag: &Tag,
    ) -> Result<Conversation> {
        self.op("untag_conversation", || {
            self.retag(user, id, |mut tags| {
                tags.retain(|t| t != tag);
                Ok(tags)
            })
        })
    }

    /// The user's tags, each with how many of the user's conversations have it (those the default
    /// list shows, and the archived ones), sorted by tag (by their UTF-8 bytes): one statement over
    /// an index of the tags.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Tag, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let work = Tag::new("work")?;
    /// for title in ["Q3 plan", "Hiring", "Offsite"] {
    ///     let conv = store.create_conversation(&alice, Some(title))?;
    ///     store.tag_conversation(&alice, conv.id, &work)?;
    ///     if title == "Offsite" {
    ///         store.archive_conversation(&alice, conv.id)?;
    ///     }
    /// }
    /// let counts = store.tags(&alice)?;
    /// assert_eq!((counts[0].tag.as_str(), counts[0].conversations, counts[0].archived), ("work", 2, 1));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// Connection and database errors.
    pub fn tags(&self, user: &UserId) -> Result<Vec<TagCount>> {
        self.op("tags", || self.with_conn(|conn| tags::counts(conn, user)))
    }

    /// Gives the conversation the tags `f` makes of its tags, in one write transaction under its
    /// row lock; returns it as it then is.
    fn retag(
        &self,
        user: &UserId,
        id: ConversationId,
        f: impl FnOnce(Vec<Tag>) -> Result<Vec<Tag>>,
    ) -> Result<Conversation> {
        self.write(|conn| {
            let row = conversations::lock(conn, user, id)?.ok_or(Error::NotFound)?;
            let mut conversation = row.into_model()?;
            let tags = f(conversation.tags.clone())?;
            if tags != conversation.tags {
                conversation.tags = tags;
                tags::replace(conn, user, &conversation)?;
            }
            Ok(conversation)
        })
    }
}
