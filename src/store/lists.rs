//! A user's lists of conversations: the default list (pinned first, then the rest, archived ones
//! hidden), the list of archived conversations, and the calls that move a conversation between
//! them. A conversation's place is its `list_rank` (see [`ListRank`]); every list is a keyset walk
//! of one index, most recently updated first within a rank.

use super::ChatStore;
use crate::cursor::ConversationCursor;
use crate::ids::{ConversationId, UserId};
use crate::models::{Conversation, ListRank, Tag};
use crate::page::{ConversationPage, Page};
use crate::queries::conversations;
use crate::{Error, Result};

impl ChatStore {
    /// A page of the user's conversations: the pinned ones first, then the others, each most
    /// recently updated first. Archived conversations are not listed here (see
    /// [`list_archived_conversations`](Self::list_archived_conversations)).
    ///
    /// Pages are keyset pages: a conversation that is appended to, renamed, pinned, unpinned or
    /// archived while a client walks the list moves (ahead of the walk, or out of it), and the walk
    /// neither repeats nor skips any other.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Page, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let mut page = store.list_conversations(&user, Page::first(20))?;
    /// loop {
    ///     for c in &page.conversations {
    ///         println!("{} {:?} pinned: {}", c.id, c.title, c.pinned);
    ///     }
    ///     match page.next {
    ///         Some(next) => page = store.list_conversations(&user, next)?,
    ///         None => break,
    ///     }
    /// }
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidCursor`] if the page starts after an archived conversation (a position in
    /// the archived list); connection and database errors.
    pub fn list_conversations(&self, user: &UserId, page: Page) -> Result<ConversationPage> {
        self.op("list_conversations", || {
            self.list(user, None, page, (ListRank::Pinned, ListRank::Listed))
        })
    }

    /// A page of the user's conversations with the tag `tag`, in the order of
    /// [`list_conversations`](Self::list_conversations) (pinned first; archived ones not listed),
    /// paged the same way. A page costs the same whatever the user's conversations and tags
    /// number: it is one range of an index of the tags, read a page at a time.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Page, Tag, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let work = Tag::new("work")?;
    /// let plan = store.create_conversation(&alice, Some("Q3 plan"))?;
    /// store.create_conversation(&alice, Some("Holiday"))?;
    /// store.tag_conversation(&alice, plan.id, &work)?;
    /// let page = store.list_conversations_tagged(&alice, &work, Page::first(20))?;
    /// let titles: Vec<_> = page.conversations.iter().map(|c| c.title.as_deref()).collect();
    /// assert_eq!(titles, [Some("Q3 plan")]);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidCursor`] if the page starts after an archived conversation; connection and
    /// database errors.
    pub fn list_conversations_tagged(
        &self,
        user: &UserId,
        tag: &Tag,
        page: Page,
    ) -> Result<ConversationPage> {
        self.op("list_conversations_tagged", || {
            self.list(user, Some(tag), page, (ListRank::Pinned, ListRank::Listed))
        })
    }

    /// A page of the user's archived conversations, most recently updated first, paged like
    /// [`list_conversations`](Self::list_conversations).
    ///
    /// ```
    /// # use chatstore::{ChatStore, Page, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let old = store.create_conversation(&alice, Some("Last year's trip"))?;
    /// store.archive_conversation(&alice, old.id)?;
    /// let archived = store.list_archived_conversations(&alice, Page::first(20))?;
    /// assert_eq!(archived.conversations[0].id, old.id);
    /// assert!(store.list_conversations(&alice, Page::first(20))?.conversations.is_empty());
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidCursor`] if the page starts after a conversation that is not archived (a
    /// position in the default list); connection and database errors.
    pub fn list_archived_conversations(
        &self,
        user: &UserId,
        page: Page,
    ) -> Result<ConversationPage> {
        self.op("list_archived_conversations", || {
            self.list(user, None, page, (ListRank::Archived, ListRank::Archived))
        })
    }

    /// Pins the conversation: [`list_conversations`](Self::list_conversations) lists it before
    /// every unpinned one. Pinning an archived conversation restores it, pinned; pinning a pinned
    /// one changes nothing. `updated_at` is kept: pinning is not activity.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Page, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let todo = store.create_conversation(&alice, Some("Todo list"))?;
    /// let newer = store.create_conversation(&alice, Some("Newer"))?;
    /// assert!(store.pin_conversation(&alice, todo.id)?.pinned);
    /// let page = store.list_conversations(&alice, Page::first(20))?;
    /// let ids: Vec<_> = page.conversations.iter().map(|c| c.id).collect();
    /// assert_eq!(ids, [todo.id, newer.id]);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; connection and database errors.
    pub fn pin_conversation(&self, user: &UserId, id: ConversationId) -> Result<Conversation> {
        self.op("pin_conversation", || {
            self.move_to(user, id, ListRank::Pinned, &ListRank::ALL)
        })
    }

    /// Unpins the conversation: it takes its place among the others again, by its `updated_at`.
    /// A conversation that is not pinned is left as it is.
    ///
    /// ```
    /// # use chatstore::{ChatStore, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// store.pin_conversation(&alice, conv.id)?;
    /// assert!(!store.unpin_conversation(&alice, conv.id)?.pinned);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; connection and database errors.
    pub fn unpin_conversation(&self, user: &UserId, id: ConversationId) -> Result<Conversation> {
        self.op("unpin_conversation", || {
            self.move_to(user, id, ListRank::Listed, &[ListRank::Pinned])
        })
    }

    /// Archives the conversation: it is kept, with its messages, and can still be read, appended
    /// to and exported, but only
    /// [`list_archived_conversations`](Self::list_archived_conversations) lists it and a search
    /// finds it only on request ([`SearchQuery::include_archived`](crate::SearchQuery::include_archived),
    /// or a search in that conversation), until it is restored. Archiving a pinned conversation
    /// unpins it. `updated_at` is kept.
    ///
    /// ```
    /// # use chatstore::{ChatStore, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// assert!(store.archive_conversation(&alice, conv.id)?.archived);
    /// assert!(store.messages(&alice, conv.id, Window::All)?.messages.is_empty());
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; connection and database errors.
    pub fn archive_conversation(&self, user: &UserId, id: ConversationId) -> Result<Conversation> {
        self.op("archive_conversation", || {
            self.move_to(user, id, ListRank::Archived, &ListRank::ALL)
        })
    }

    /// Restores an archived conversation to
    /// [`list_conversations`](Self::list_conversations), unpinned, at its place by `updated_at`.
    /// A conversation that is not archived is left as it is.
    ///
    /// ```
    /// # use chatstore::{ChatStore, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// store.archive_conversation(&alice, conv.id)?;
    /// assert!(!store.restore_conversation(&alice, conv.id)?.archived);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; connection and database errors.
    pub fn restore_conversation(&self, user: &UserId, id: ConversationId) -> Result<Conversation> {
        self.op("restore_conversation", || {
            self.move_to(user, id, ListRank::Listed, &[ListRank::Archived])
        })
    }

    /// A page of the conversations (with `tag`, those with that tag) ranked from `ranks.0` down
    /// to `ranks.1`.
    fn list(
        &self,
        user: &UserId,
        tag: Option<&Tag>,
        page: Page,
        ranks: (ListRank, ListRank),
    ) -> Result<ConversationPage> {
        let (highest, lowest) = ranks;
        let limit = page.limit.clamp(1, self.limits.max_page_size);
        let after = match page.after {
            Some(c) if c.rank > highest || c.rank < lowest => {
                return Err(Error::InvalidCursor(match c.rank {
                    ListRank::Archived => "the cursor is a position in the archived list".into(),
                    ListRank::Listed | ListRank::Pinned => {
                        "the cursor is a position in the list of conversations, not the archived list"
                            .into()
                    }
                }))
            }
            Some(c) => Some((c.rank, c.updated_at, c.id)),
            None => None,
        };
        // One row more than asked tells whether a next page exists.
        let rows = self.with_conn(|conn| {
            conversations::list(conn, user, tag, ranks, after, i64::from(limit) + 1)
        })?;
        let mut items = rows
            .into_iter()
            .map(|row| row.into_model())
            .collect::<Result<Vec<Conversation>>>()?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items
                .last()
                .map(|last| Page::after(ConversationCursor::after(last), limit))
        } else {
            None
        };
        Ok(ConversationPage {
            conversations: items,
            next,
        })
    }

    /// Moves the conversation to `rank` if it is at one of the ranks `from` (and leaves it as it
    /// is otherwise), in one transaction; returns it as it then is.
    fn move_to(
        &self,
        user: &UserId,
        id: ConversationId,
        rank: ListRank,
        from: &[ListRank],
    ) -> Result<Conversation> {
        self.write(|conn| {
            conversations::set_rank(conn, user, id, from, rank)?;
            conversations::get(conn, user, id)
        })
    }
}
