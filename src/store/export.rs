//! Exporting a user's data: the records, and the iterator that reads them page by page through
//! the store.

use std::collections::VecDeque;

use super::ChatStore;
use crate::ids::{ConversationId, UserId};
use crate::models::{Conversation, Message};
use crate::Result;

/// One record of a user's data, as [`ChatStore::export_user`] reads it and
/// [`ChatStore::import_conversation`] takes it back: each conversation comes first, then its
/// messages in seq order.
///
/// With the `serde` feature a record is its [`Conversation`] or [`Message`] object with a `"type"`
/// field first, `"conversation"` or `"message"`, so that one JSON line says what it holds:
///
/// ```json
/// {"type":"conversation","id":"0193a3c4-…","user_id":"alice","title":"Groceries","created_at":"2026-11-24T08:15:56.724622Z","updated_at":"…","message_count":2}
/// {"type":"message","id":"0193a3c4-…","conversation_id":"0193a3c4-…","seq":1,"role":"user","content":"Add oat milk","metadata":null,"created_at":"…"}
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(tag = "type", rename_all = "lowercase")
)]
#[non_exhaustive]
pub enum ExportItem {
    /// A conversation, as it was when the export reached it.
    Conversation(Conversation),
    /// A message of the conversation before it.
    Message(Message),
}

/// What an export has read so far ([`UserExport::counts`]). With the `serde` feature:
/// `{"conversations", "messages"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ExportCounts {
    /// Conversations read.
    pub conversations: u64,
    /// Messages read.
    pub messages: u64,
}

/// Conversations read per statement.
const CONVERSATIONS_PER_PAGE: u32 = 100;
/// Messages read per statement: an export holds at most this many at a time.
const MESSAGES_PER_PAGE: u32 = 1000;

/// The conversation whose messages an export is reading.
#[derive(Debug)]
struct Reading {
    id: ConversationId,
    /// Its message count when the export reached it: messages appended since are left out.
    last: i64,
    /// The seq read up to.
    read: i64,
}

/// A user's data, read page by page: the iterator that [`ChatStore::export_user`] returns.
///
/// Conversations come in id order, a page of 100 at a time, each followed by its messages in seq
/// order, read in windows of 1,000: memory holds one page, however large the history. Each page is
/// one statement on a pooled connection, returned before the next item is handed out, so the
/// consumer may take its time (and call the store) between items.
///
/// It reads page by page and conversation by conversation, not one snapshot of everything: each
/// conversation is exported as its page of the list read it, with its messages up to the count
/// it had then (messages appended since are left out, so the record and its messages always
/// agree). Renames and appends never move a conversation in id order, so none is skipped or
/// repeated; one created during the export is included if its id comes after the page being
/// read; one deleted before its messages are read ends early, and an import refuses it as
/// incomplete.
///
/// An error ends the export: the iterator returns `None` after it.
#[derive(Debug)]
#[must_use = "an export reads nothing until it is iterated"]
pub struct UserExport {
    store: ChatStore,
    user: UserId,
    page: VecDeque<Conversation>,
    /// The last conversation id listed; `None` before the first page.
    after: Option<ConversationId>,
    listed_all: bool,
    reading: Option<Reading>,
    messages: VecDeque<Message>,
    counts: ExportCounts,
    finished: bool,
}

impl UserExport {
    pub(crate) fn new(store: ChatStore, user: UserId) -> Self {
        UserExport {
            store,
            user,
            page: VecDeque::new(),
            after: None,
            listed_all: false,
            reading: None,
            messages: VecDeque::new(),
            counts: ExportCounts::default(),
            finished: false,
        }
    }

    /// The conversations and messages handed out so far.
    pub fn counts(&self) -> ExportCounts {
        self.counts
    }

    /// The next record, reading a page when the one held is used up; `None` at the end.
    fn advance(&mut self) -> Result<Option<ExportItem>> {
        loop {
            if let Some(message) = self.messages.pop_front() {
                self.counts.messages += 1;
                return Ok(Some(ExportItem::Message(message)));
            }
            if let Some(reading) = &mut self.reading {
                let left = reading.last - reading.read;
                if left > 0 {
                    let limit = u32::try_from(left)
                        .map_or(MESSAGES_PER_PAGE, |left| left.min(MESSAGES_PER_PAGE));
                    let window =
                        self.store
                            .export_messages(&self.user, reading.id, reading.read, limit)?;
                    let last = reading.last;
                    self.messages
                        .extend(window.into_iter().filter(|m| m.seq <= last));
                    if let Some(newest) = self.messages.back() {
                        reading.read = newest.seq;
                        continue;
                    }
                    // Nothing: deleted since it was listed, so it ends here.
                }
                self.reading = None;
            }
            if let Some(conversation) = self.page.pop_front() {
                self.reading = Some(Reading {
                    id: conversation.id,
                    last: conversation.message_count,
                    read: 0,
                });
                self.counts.conversations += 1;
                return Ok(Some(ExportItem::Conversation(conversation)));
            }
            if self.listed_all {
                return Ok(None);
            }
            let page =
                self.store
                    .export_conversations(&self.user, self.after, CONVERSATIONS_PER_PAGE)?;
            self.listed_all = page.len() < CONVERSATIONS_PER_PAGE as usize;
            self.after = page.last().map(|c| c.id).or(self.after);
            self.page.extend(page);
        }
    }
}

impl Iterator for UserExport {
    type Item = Result<ExportItem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let item = self.advance().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.finished = true;
        }
        item
    }
}

impl std::iter::FusedIterator for UserExport {}
