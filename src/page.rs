//! Pages: what a list of conversations or a window of messages returns. Where a read starts (a
//! list cursor, a message window) and the token forms of those positions are in `cursor.rs`.

use crate::cursor::{ConversationCursor, Window};
use crate::ids::{BranchId, UserId};
use crate::models::{Conversation, Message};

/// Where a page of [`ChatStore::list_conversations`](crate::ChatStore::list_conversations) starts
/// and how long it is.
///
/// Pages are keyset pages on `(updated_at, id)`: a conversation that is appended to while a client
/// walks the list moves to the front, and the walk neither repeats nor skips the others.
///
/// With the `serde` feature: `{"limit", "after"}` (`after` a cursor or `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Page {
    pub(crate) limit: u32,
    pub(crate) after: Option<ConversationCursor>,
}

impl Page {
    /// The first (most recently updated) `limit` conversations. The store clamps `limit` to
    /// `1..=`[`StoreBuilder::max_page_size`](crate::StoreBuilder::max_page_size).
    pub fn first(limit: u32) -> Self {
        Page { limit, after: None }
    }

    /// The `limit` conversations that follow `cursor` in the list.
    pub fn after(cursor: ConversationCursor, limit: u32) -> Self {
        Page {
            limit,
            after: Some(cursor),
        }
    }

    /// The page size asked for.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Where the page starts, if it is not the first.
    pub fn cursor(&self) -> Option<ConversationCursor> {
        self.after
    }
}

/// One page of conversations, most recently updated first. With the `serde` feature:
/// `{"conversations", "next"}`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ConversationPage {
    /// The conversations on this page.
    pub conversations: Vec<Conversation>,
    /// The request for the next page, or `None` if this was the last.
    pub next: Option<Page>,
}

impl ConversationPage {
    /// The next page as an opaque token for `user` — the [`ConversationCursor`] token of
    /// [`next`](Self::next) — or `None` if this was the last page. Read it back with
    /// [`ConversationCursor::from_token`] and [`Page::after`].
    ///
    /// ```
    /// # use chatstore::{ChatStore, ConversationCursor, Page, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// # for _ in 0..3 { store.create_conversation(&alice, None)?; }
    /// let page = store.list_conversations(&alice, Page::first(2))?;
    /// let token = page.next_token(&alice).expect("a third conversation");
    /// // …sent to the client, and back with its next request:
    /// let cursor = ConversationCursor::from_token(&token, &alice)?;
    /// let rest = store.list_conversations(&alice, Page::after(cursor, 2))?;
    /// assert_eq!(rest.conversations.len(), 1);
    /// assert_eq!(rest.next_token(&alice), None);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn next_token(&self, user: &UserId) -> Option<String> {
        self.next
            .and_then(|next| next.cursor())
            .map(|cursor| cursor.to_token(user))
    }
}

/// A window of messages, in chronological order, with the windows next to it. With the `serde`
/// feature: `{"messages", "older", "newer", "total"}`, and `"branch"` off the root branch.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct MessagePage {
    /// The messages, oldest first.
    pub messages: Vec<Message>,
    /// The same-sized window of older messages, or `None` if the first message is seq 1 (or the
    /// page is empty).
    pub older: Option<Window>,
    /// The same-sized window of newer messages, or `None` if the last message was the newest when
    /// read (or the page is empty).
    pub newer: Option<Window>,
    /// How many messages the conversation held when read: its active branch's path.
    pub total: i64,
    /// The conversation's active branch when read: the branch whose path the window is (for
    /// [`ChatStore::append_if_last_seq_on`](crate::ChatStore::append_if_last_seq_on)).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "BranchId::is_root_ref")
    )]
    pub branch: BranchId,
}

impl MessagePage {
    /// The [`older`](Self::older) window as an opaque token for `user` (and this page's
    /// conversation), or `None` if there is no older message. Read it back with
    /// [`Window::from_token`].
    ///
    /// A token names positions on a path, not a branch: a page read with it after the active
    /// branch was switched (an edit, a regeneration) shows the new active branch at those
    /// positions. A client that pages through one version compares each page's
    /// [`branch`](Self::branch) with the first's, and starts again from the newest page when it
    /// differs.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, None)?.id;
    /// # store.append_messages(&alice, conv, &[NewMessage::user("a"), NewMessage::user("b")])?;
    /// let page = store.messages(&alice, conv, Window::Latest(1))?;
    /// let token = page.older_token(&alice).expect("an older message");
    /// // …sent to the client, and back when it scrolls up:
    /// let older = store.messages(&alice, conv, Window::from_token(&token, &alice, conv)?)?;
    /// assert_eq!(older.messages[0].content, "a");
    /// assert_eq!((older.older_token(&alice), older.newer_token(&alice).is_some()), (None, true));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn older_token(&self, user: &UserId) -> Option<String> {
        self.token(self.older, user)
    }

    /// The [`newer`](Self::newer) window as an opaque token for `user` (and this page's
    /// conversation), or `None` if the page ends with the newest message. As
    /// [`older_token`](Self::older_token).
    pub fn newer_token(&self, user: &UserId) -> Option<String> {
        self.token(self.newer, user)
    }

    /// `window`'s token: a page with a window next to it has messages, whose conversation the
    /// token is bound to.
    fn token(&self, window: Option<Window>, user: &UserId) -> Option<String> {
        let conversation = self.messages.first()?.conversation_id;
        window.map(|window| window.to_token(user, conversation))
    }

    pub(crate) fn new(
        messages: Vec<Message>,
        window: Window,
        total: i64,
        branch: BranchId,
    ) -> Self {
        let limit = window.limit();
        let older = messages
            .first()
            .filter(|m| m.seq > 1)
            .map(|m| Window::Before { seq: m.seq, limit });
        let newer = messages
            .last()
            .filter(|m| m.seq < total)
            .map(|m| Window::After { seq: m.seq, limit });
        MessagePage {
            messages,
            older,
            newer,
            total,
            branch,
        }
    }
}
