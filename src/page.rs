//! Paging: keyset pages of conversations and seq windows of messages.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SubsecRound, Utc};

use crate::ids::ConversationId;
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

/// A position in a user's conversation list: the `(updated_at, id)` of the last conversation of a
/// page. A service can hand both parts to a client (say, as query parameters) and rebuild the
/// cursor with [`ConversationCursor::new`] on the next request; a cursor only ever selects among
/// the acting user's conversations, whatever values it holds.
///
/// For an opaque string to hand out instead, see [`to_token`](ConversationCursor::to_token). With
/// the `serde` feature a cursor is `{"updated_at", "id"}`, read back through
/// [`ConversationCursor::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConversationCursor {
    pub(crate) updated_at: NaiveDateTime,
    pub(crate) id: ConversationId,
}

impl ConversationCursor {
    /// The position just after a conversation with this `updated_at` and `id`. Sub-microsecond
    /// precision is dropped, as in storage, and a time outside the years 1 to 9999 is moved to the
    /// nearest end of that range: SQLite keeps timestamps as text, which sorts in time order only
    /// with four-digit years (and every stored time is a recent one).
    pub fn new(updated_at: DateTime<Utc>, id: ConversationId) -> Self {
        let (earliest, latest) = four_digit_years();
        let updated_at = updated_at
            .trunc_subsecs(6)
            .naive_utc()
            .clamp(earliest, latest);
        ConversationCursor { updated_at, id }
    }

    /// The `updated_at` of the conversation the cursor follows.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at.and_utc()
    }

    /// The id of the conversation the cursor follows.
    pub fn id(&self) -> ConversationId {
        self.id
    }
}

/// The first and last microsecond of the years 1 to 9999 (checked at compile time).
pub(crate) fn four_digit_years() -> (NaiveDateTime, NaiveDateTime) {
    const FIRST: NaiveDateTime = match NaiveDate::from_ymd_opt(1, 1, 1) {
        Some(day) => day.and_time(NaiveTime::MIN),
        None => panic!("year 1 is a date"),
    };
    const LAST: NaiveDateTime = match (
        NaiveDate::from_ymd_opt(9999, 12, 31),
        NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999),
    ) {
        (Some(day), Some(time)) => day.and_time(time),
        _ => panic!("the last microsecond of 9999 is a time"),
    };
    (FIRST, LAST)
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

/// Which messages of a conversation to read. Every window comes back in chronological order
/// (ascending `seq`), and reads only the rows it returns: `Latest(50)` costs the same on a
/// 100-message history as on a 100,000-message one.
///
/// With the `serde` feature: `"all"`, `{"latest": n}`, `{"before": {"seq", "limit"}}` or
/// `{"after": {"seq", "limit"}}`. For an opaque string to hand out instead, see
/// [`to_token`](Window::to_token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Window {
    /// The whole history.
    All,
    /// The newest `n` messages — what a prompt builder asks for.
    Latest(u32),
    /// Up to `limit` messages immediately older than `seq` (exclusive).
    Before {
        /// Exclusive upper bound.
        seq: i64,
        /// Most messages to return.
        limit: u32,
    },
    /// Up to `limit` messages immediately newer than `seq` (exclusive); `After { seq: 0, .. }` starts
    /// at the beginning.
    After {
        /// Exclusive lower bound.
        seq: i64,
        /// Most messages to return.
        limit: u32,
    },
}

impl Window {
    /// The seq bounds of this window, for a read that learns the message count (`count`) in the
    /// same statement: the rows with `lo <= seq <= hi` and `seq > min(count, hi) - back`. Seqs
    /// have no gaps, so the bounds select exactly the window's rows from an index range.
    pub(crate) fn bounds(self) -> SeqBounds {
        const ANY: i64 = i64::MAX;
        match self {
            Window::All => SeqBounds::new(1, ANY, ANY),
            Window::Latest(n) => SeqBounds::new(1, ANY, i64::from(n)),
            // A cursor past the end counts back from the end.
            Window::Before { seq, limit } => {
                SeqBounds::new(1, seq.saturating_sub(1), i64::from(limit))
            }
            Window::After { seq, limit } => {
                let lo = seq.saturating_add(1).max(1);
                SeqBounds::new(lo, lo.saturating_add(i64::from(limit)) - 1, ANY)
            }
        }
    }

    fn limit(self) -> u32 {
        match self {
            Window::All => u32::MAX,
            Window::Latest(limit) | Window::Before { limit, .. } | Window::After { limit, .. } => {
                limit
            }
        }
    }
}

/// Seq bounds: see [`Window::bounds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqBounds {
    pub(crate) lo: i64,
    pub(crate) hi: i64,
    pub(crate) back: i64,
}

impl SeqBounds {
    /// `hi` is clamped to 0 or more, so `min(count, hi) - back` cannot overflow in SQL (`back` is
    /// at most `i64::MAX` and the count is never negative).
    fn new(lo: i64, hi: i64, back: i64) -> Self {
        SeqBounds {
            lo,
            hi: hi.max(0),
            back,
        }
    }
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
