//! Pages: what a list of conversations or a window of messages returns. Where a read starts (a
//! list cursor, a message window) and the token forms of those positions are in `cursor.rs`.

use crate::cursor::{ConversationCursor, Window};
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

/// A window of messages, in chronological order, with the windows next to it. With the `serde`
/// feature: `{"messages", "older", "newer", "total"}`.
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
    /// How many messages the conversation held when read.
    pub total: i64,
}

impl MessagePage {
    pub(crate) fn new(messages: Vec<Message>, window: Window, total: i64) -> Self {
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
        }
    }
}
