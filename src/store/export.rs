//! Exporting a user's data: the records, and the iterator that reads them page by page through
//! the store.

use std::collections::VecDeque;

use super::ChatStore;
use crate::ids::{BranchId, ConversationId, MessageId, UserId};
use crate::models::{Branch, Conversation, Message};
use crate::queries::rows::{branch_model, BranchRow, ConversationRow};
use crate::trace::Recorded;
use crate::tree::Segment;
use crate::Result;

/// One record of a user's data, as [`ChatStore::export_user`] reads it and
/// [`ChatStore::import_tree`] takes it back: each conversation comes first; then, if it has ever
/// branched, every one of its branches by id (retired ones too); then its messages, branch by
/// branch, each branch's own in seq order — the root's first, so a conversation that never
/// branched is its record and its messages 1, 2, 3….
///
/// With the `serde` feature a record is its [`Conversation`], [`Branch`] or [`Message`] object with
/// a `"type"` field first, `"conversation"`, `"branch"` or `"message"`, so that one JSON line says
/// what it holds:
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
    /// A branch of the conversation before it, as it was then.
    Branch(Branch),
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

/// Conversations listed per statement.
const CONVERSATIONS_PER_PAGE: u32 = 100;
/// Messages read per statement: an export holds at most this many at a time.
const MESSAGES_PER_PAGE: u32 = 1000;

/// A user's data, read page by page: the iterator that [`ChatStore::export_user`] returns.
///
/// Conversations come in id order, listed 100 at a time, each followed by its branches (if it has
/// branched) and its messages, read in windows of 1,000: memory holds one page of messages and
/// the conversation's branch records, however long its history. Each page is one statement on a pooled connection, returned before the next item is
/// handed out, so the consumer may take its time (and call the store) between items.
///
/// It reads conversation by conversation, not one snapshot of everything: each conversation is
/// exported as it was when the export reached it — its record and its branches are one statement —
/// with its messages up to each branch's length then (messages appended since are left out, so
/// the records and the messages always agree). Renames and appends never move a conversation in
/// id order, so none is skipped or repeated; one created during the export is included if its id
/// comes after the page being listed; one deleted before the export reached it is left out; one
/// deleted (or a branch deleted, or cut back — and regrown or not) while its messages are read
/// ends early, and an import refuses it as incomplete: each page after a branch's first starts at
/// the last message read and checks that it is still there, so two histories are never spliced.
///
/// An error ends the export: the iterator returns `None` after it.
#[derive(Debug)]
#[must_use = "an export reads nothing until it is iterated"]
pub struct UserExport {
    store: ChatStore,
    user: UserId,
    /// Listed conversations not reached yet.
    page: VecDeque<ConversationId>,
    /// The last conversation id listed; `None` before the first page.
    after: Option<ConversationId>,
    listed_all: bool,
    /// The conversation whose messages are being read.
    reading: Option<ConversationId>,
    /// Its branches' runs of messages not read yet, each from the position after the last read.
    runs: VecDeque<Segment>,
    /// The last message read of the first run, once a page of it is read.
    last_read: Option<MessageId>,
    branches: VecDeque<Branch>,
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
            runs: VecDeque::new(),
            last_read: None,
            branches: VecDeque::new(),
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
            if let Some(branch) = self.branches.pop_front() {
                return Ok(Some(ExportItem::Branch(branch)));
            }
            if let Some(message) = self.messages.pop_front() {
                self.counts.messages += 1;
                return Ok(Some(ExportItem::Message(message)));
            }
            if let (Some(id), Some(run)) = (self.reading, self.runs.front_mut()) {
                let left = run.through - run.after;
                let limit = u32::try_from(left)
                    .map_or(MESSAGES_PER_PAGE, |left| left.min(MESSAGES_PER_PAGE));
                // A page after the run's first starts at the last message read, which must still
                // be there: a branch cut back and regrown between two pages would otherwise splice
                // two histories into one that never was.
                let (from, overlap) = match self.last_read {
                    Some(_) => (
                        Segment {
                            after: run.after - 1,
                            ..*run
                        },
                        1,
                    ),
                    None => (*run, 0),
                };
                let window = self
                    .store
                    .export_messages(&self.user, id, from, limit + overlap)?;
                let unchanged = match self.last_read {
                    Some(last) => window.first().is_some_and(|m| m.id == last),
                    None => true,
                };
                match window.last() {
                    Some(newest) if unchanged && newest.seq < run.through => {
                        run.after = newest.seq;
                        self.last_read = Some(newest.id);
                    }
                    Some(_) if unchanged => {
                        self.runs.pop_front();
                        self.last_read = None;
                    }
                    // Nothing, or not what was read: deleted or cut back since it was reached,
                    // so it ends here, short of its count (an import refuses it).
                    _ => {
                        self.runs.clear();
                        self.last_read = None;
                        continue;
                    }
                }
                self.messages
                    .extend(window.into_iter().skip(overlap as usize));
                continue;
            }
            self.reading = None;
            if let Some(id) = self.page.pop_front() {
                // Deleted since it was listed: left out.
                let Some(tree) = self.store.export_tree(&self.user, id)? else {
                    continue;
                };
                self.reading = Some(id);
                self.runs = tree.runs.into();
                self.branches = tree.branches.into();
                self.counts.conversations += 1;
                return Ok(Some(ExportItem::Conversation(tree.conversation)));
            }
            if self.listed_all {
                return Ok(None);
            }
            let page =
                self.store
                    .export_conversations(&self.user, self.after, CONVERSATIONS_PER_PAGE)?;
            self.listed_all = page.len() < CONVERSATIONS_PER_PAGE as usize;
            self.after = page.last().copied().or(self.after);
            self.page.extend(page);
        }
    }
}

/// A conversation as an export reaches it: its record, its branches (none if it never branched)
/// and the run of messages each branch stores itself.
pub(crate) struct ExportedTree {
    pub(crate) conversation: Conversation,
    pub(crate) branches: Vec<Branch>,
    pub(crate) runs: Vec<Segment>,
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

impl ExportedTree {
    /// The conversation of `row`, whose branch rows are `stored`.
    pub(crate) fn new(row: ConversationRow, stored: Vec<BranchRow>) -> Result<Self> {
        let branched = !stored.is_empty();
        let tree = row.tree(stored);
        let active = BranchId::from_db(row.branch);
        let nodes = tree.nodes();
        Ok(ExportedTree {
            branches: match branched {
                true => nodes
                    .iter()
                    .map(|n| branch_model(n, n.branch == active))
                    .collect(),
                false => Vec::new(),
            },
            runs: nodes
                .iter()
                .filter(|n| n.length > n.fork)
                .map(|n| Segment {
                    branch: n.branch,
                    after: n.fork,
                    through: n.length,
                })
                .collect(),
            conversation: row.into_model()?,
        })
    }
}

/// The conversation and its branches, or nothing (gone).
impl Recorded for Option<ExportedTree> {
    fn rows(&self) -> Option<usize> {
        Some(self.as_ref().map_or(0, |tree| 1 + tree.branches.len()))
    }
}
