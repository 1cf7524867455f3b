//! Appending a batch of messages: seqs reserved under the conversation's row lock, rows inserted,
//! and a batch whose client ids are already stored recognised as a retry. On PostgreSQL all of it
//! is one statement, committed as it runs (but for an append that names its branch); elsewhere a
//! write transaction, which this operation begins itself (see [`Batch::write`]).

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;

use crate::conn::{write_transaction, Conn};
use crate::ids::{BranchId, ConversationId, MessageId, UserId};
use crate::models::{corrupt_row, Encoded, Message, NewMessage, Usage};
use crate::queries::columns::{BindTime, DbTime};
use crate::queries::messages::OneStatement;
use crate::queries::rows::{MessageRow, NewMessageRow};
use crate::queries::{conversations, messages};
use crate::tree::stored_seq;
use crate::{Error, Result};

/// What an append did.
pub(crate) enum Written {
    /// Wrote the batch from `first_seq` on, at `created_at`, on `branch`.
    New {
        first_seq: i64,
        created_at: DbTime,
        branch: BranchId,
    },
    /// Found the batch already stored (a retry): these are the stored messages.
    Replayed(Vec<Message>),
}

/// What an optimistic append expects to extend: the active branch's last seq, and the branch, if
/// the caller named it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected {
    pub(crate) seq: i64,
    pub(crate) branch: Option<BranchId>,
}

impl Expected {
    /// Why a conversation whose active branch is `branch`, `count` long, is not what this expects;
    /// `None` if it is.
    fn unmet(self, branch: BranchId, count: i64) -> Option<Error> {
        match self.branch {
            Some(expected) if expected != branch => Some(Error::BranchSwitched {
                expected,
                actual: branch,
            }),
            _ if self.seq != count => Some(Error::Conflict {
                expected: self.seq,
                actual: count,
            }),
            _ => None,
        }
    }
}

/// A batch checked against the store's limits, with what its rows need: ids, and metadata and
/// parts as JSON text.
pub(crate) struct Batch<'b, 'a> {
    user: &'b UserId,
    conversation: ConversationId,
    messages: &'b [NewMessage<'a>],
    ids: Vec<MessageId>,
    /// Each message's metadata and parts as JSON text.
    encoded: Vec<Encoded>,
    /// The messages' token usage, summed: what the conversation's totals grow by.
    usage: Usage,
}

impl<'b, 'a> Batch<'b, 'a> {
    /// Checks each message against the limits (`max_bytes` of content, and of metadata as JSON)
    /// and gives each an id: the client's, or a new UUIDv7.
    pub(crate) fn new(
        user: &'b UserId,
        conversation: ConversationId,
        messages: &'b [NewMessage<'a>],
        max_bytes: usize,
    ) -> Result<Self> {
        let encoded = messages
            .iter()
            .map(|m| m.validate(max_bytes))
            .collect::<Result<Vec<_>>>()?;
        Ok(Batch {
            user,
            conversation,
            messages,
            ids: message_ids(messages)?,
            encoded,
            usage: messages.iter().filter_map(NewMessage::usage).sum(),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// The messages' token usage, summed.
    pub(crate) fn usage(&self) -> Usage {
        self.usage
    }

    fn has_client_ids(&self) -> bool {
        self.messages.iter().any(|m| m.id().is_some())
    }

    /// An empty batch writes nothing, but answers as an append would: `NotFound` for a
    /// conversation that is not the user's, `Conflict` or `BranchSwitched` if it is not what
    /// `expected` says.
    pub(crate) fn check_unwritten(
        &self,
        conn: &mut Conn,
        expected: Option<Expected>,
    ) -> Result<()> {
        let found = conversations::find(conn, self.user, self.conversation)?;
        let found = found.ok_or(Error::NotFound)?;
        let branch = BranchId::from_db(found.branch);
        match expected.and_then(|e| e.unmet(branch, found.message_count)) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The append, on a connection that the facade hands over after the store's earlier writers,
    /// with no transaction open. Where the query layer reserves the seqs and inserts the rows in
    /// one statement ([`messages::reserve_and_insert`]: PostgreSQL, a batch that fits one INSERT),
    /// that statement is the append, atomic by itself and committed as it ends: one round trip.
    /// Elsewhere (SQLite, MySQL, a larger batch) the append runs in a write transaction
    /// ([`write_transaction`]), begun here rather than by the facade because only the query layer
    /// knows which of the two an append takes. The messages to return are made afterwards, by
    /// [`Batch::stored`]: nothing is copied while the append holds its locks.
    ///
    /// An append that names the branch it extends (`expected`) always takes the transaction: the
    /// branch is checked against the one its reservation found, and a mismatch rolls it back; so
    /// does every append with `one_statement` false (on Citus, see `ChatStore::citus`).
    pub(crate) fn write(
        &self,
        conn: &mut Conn,
        expected: Option<Expected>,
        now: NaiveDateTime,
        one_statement: bool,
    ) -> Result<Written> {
        // The rows are made once, numbered from 1 at `now`; the transaction renumbers them.
        let mut rows = self.rows(now);
        if one_statement && expected.is_none_or(|e| e.branch.is_none()) {
            let last_seq = expected.map(|e| e.seq);
            if let Some(written) = self.write_in_one_statement(conn, &mut rows, last_seq, now)? {
                return Ok(written);
            }
        }
        let mut attempt = || {
            write_transaction(conn, |conn| {
                self.write_in_transaction(conn, &mut rows, expected, now)
            })
        };
        match attempt() {
            // On PostgreSQL and MySQL another call may store one of the client's ids after this
            // one looked (the look-up takes no lock; a SQLite write transaction holds the whole
            // database). That call has committed by the time the insert fails, so a second
            // attempt finds it: the same batch is replayed, a different one refused.
            Err(Error::DuplicateId(_)) if self.has_client_ids() => attempt(),
            outcome => outcome,
        }
    }

    /// The append as one statement, or `None` where the query layer does not write it in one
    /// (then nothing ran). The statement writes the whole batch or nothing; only when it writes
    /// nothing does the append read on, as the transaction does ([`Batch::replay`],
    /// [`Batch::moved_on`]), but after the statement rather than before it: whether the batch is a
    /// retry of one already stored, or why no seqs were reserved.
    fn write_in_one_statement(
        &self,
        conn: &mut Conn,
        rows: &mut [NewMessageRow<'_>],
        last_seq: Option<i64>,
        now: NaiveDateTime,
    ) -> Result<Option<Written>> {
        let n = self.messages.len() as i64;
        let mut looked_again = false;
        loop {
            let (user, conv) = (self.user, self.conversation);
            match messages::reserve_and_insert(conn, user, conv, rows, now, last_seq) {
                Ok(OneStatement::NotRun) => return Ok(None),
                Ok(OneStatement::Written(count, created_at, branch)) => {
                    return Ok(Some(Written::New {
                        first_seq: count - n + 1,
                        created_at,
                        branch: BranchId::from_db(branch),
                    }))
                }
                // Not the user's conversation, or its last seq is not `last_seq` — perhaps moved
                // on by this very batch, which an earlier attempt stored: a retry, not a conflict.
                Ok(OneStatement::NotReserved) => {
                    if let Some(stored) = self.replay(conn)? {
                        return Ok(Some(Written::Replayed(stored)));
                    }
                    let expected = last_seq.map(|seq| Expected { seq, branch: None });
                    if let Some(error) = self.moved_on(conn, expected)? {
                        return Err(error);
                    }
                    // The count reached `last_seq` after the statement: try again. Counts only
                    // grow, so this happens at most once.
                }
                // A client id is stored, and the statement wrote nothing (its reservation rolled
                // back with the INSERT). Stored by an earlier attempt of this batch — also one
                // that committed while this one waited for the conversation's row — it is a
                // retry; otherwise the id is another message's.
                Err(Error::DuplicateId(id)) if self.has_client_ids() => {
                    if let Some(stored) = self.replay(conn)? {
                        return Ok(Some(Written::Replayed(stored)));
                    }
                    // The message in the way went (with its conversation) before the look-up:
                    // once more, as the transaction takes a second attempt.
                    if looked_again {
                        return Err(Error::DuplicateId(id));
                    }
                    looked_again = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The append's transaction: a retry of a stored batch is found and returned; otherwise the
    /// seqs are reserved (if the conversation is still what `expected` says, when given) and the
    /// rows inserted.
    fn write_in_transaction(
        &self,
        conn: &mut Conn,
        rows: &mut [NewMessageRow<'_>],
        expected: Option<Expected>,
        now: NaiveDateTime,
    ) -> Result<Written> {
        if let Some(stored) = self.replay(conn)? {
            return Ok(Written::Replayed(stored));
        }
        let n = self.messages.len() as i64;
        let last_seq = expected.map(|e| e.seq);
        let (count, created_at, branch) = loop {
            let (user, conv, usage) = (self.user, self.conversation, self.usage);
            let reserved = conversations::reserve_seqs(conn, user, conv, n, usage, now, last_seq)?;
            if let Some(reserved) = reserved {
                break reserved;
            }
            // The look-up above takes no lock. On the servers another attempt of this very batch
            // may have committed while this one waited for the row, and moved the count past
            // `last_seq`: that is a retry, not a conflict.
            if let Some(stored) = self.replay(conn)? {
                return Ok(Written::Replayed(stored));
            }
            match self.moved_on(conn, expected)? {
                Some(error) => return Err(error),
                // The count reached `last_seq` between the two statements: try again. Counts
                // only grow, so this happens at most once.
                None => continue,
            }
        };
        let first_seq = count - n + 1;
        let branch = BranchId::from_db(branch);
        // The count was as expected, but on another branch: the caller's transaction rolls the
        // reservation back.
        if let Some(error) = expected.and_then(|e| e.unmet(branch, count - n)) {
            return Err(error);
        }
        for (row, seq) in rows.iter_mut().zip(first_seq..) {
            row.seq = stored_seq(branch, seq);
            row.created_at = BindTime(created_at.0);
        }
        messages::insert(conn, rows)?;
        Ok(Written::New {
            first_seq,
            created_at,
            branch,
        })
    }

    /// The batch's rows, with seqs from 1 on, at `created_at`.
    pub(crate) fn rows(&self, created_at: NaiveDateTime) -> Vec<NewMessageRow<'_>> {
        self.messages
            .iter()
            .zip(self.ids.iter().zip(1..))
            .zip(&self.encoded)
            .map(|((new, (&id, seq)), encoded)| {
                NewMessageRow::new(
                    self.user,
                    self.conversation,
                    (id, seq),
                    new,
                    encoded,
                    created_at,
                )
            })
            .collect()
    }

    /// The messages the batch is stored as, once [`write`](Batch::write) has committed.
    pub(crate) fn stored(&self, written: Written) -> Vec<Message> {
        let (first_seq, created_at, branch) = match written {
            Written::Replayed(stored) => return stored,
            Written::New {
                first_seq,
                created_at,
                branch,
            } => (first_seq, created_at, branch),
        };
        self.messages
            .iter()
            .zip(&self.ids)
            .zip(first_seq..)
            .map(|((new, &id), seq)| Message {
                id,
                conversation_id: self.conversation,
                seq,
                role: new.role(),
                content: new.content().to_owned(),
                metadata: new.metadata().cloned(),
                created_at: created_at.utc(),
                branch,
                usage: new.usage(),
                parts: new.parts().to_vec(),
            })
            .collect()
    }

    /// The stored batch, if this is a retry of it (see [`replayed`]); `None` if none of its client
    /// ids is stored; `NotFound` if one is but the conversation is not the user's.
    pub(crate) fn replay(&self, conn: &mut Conn) -> Result<Option<Vec<Message>>> {
        let client_ids: Vec<MessageId> = self
            .messages
            .iter()
            .zip(&self.ids)
            .filter(|(m, _)| m.id().is_some())
            .map(|(_, &id)| id)
            .collect();
        if client_ids.is_empty() {
            return Ok(None);
        }
        let stored = messages::by_ids(conn, self.user, &client_ids)?;
        if stored.is_empty() {
            return Ok(None);
        }
        // Whose conversation this is decides before any id does: another user's conversation
        // answers exactly as a missing one, whatever the batch's ids, so that knowing one of
        // someone's message ids never reveals which conversation holds it.
        if conversations::find(conn, self.user, self.conversation)?.is_none() {
            return Err(Error::NotFound);
        }
        replayed(self.conversation, self.messages, stored).map(Some)
    }

    /// Why the append reserved no seqs: the conversation is not the user's (`NotFound`), or it is
    /// no longer what `expected` says (`Conflict`, `BranchSwitched`). `None` if it is after all:
    /// an append committed between the reservation and this read, so the reservation can be tried
    /// again.
    fn moved_on(&self, conn: &mut Conn, expected: Option<Expected>) -> Result<Option<Error>> {
        let found = conversations::find(conn, self.user, self.conversation)?;
        Ok(match (found, expected) {
            (Some(row), Some(expected)) => {
                expected.unmet(BranchId::from_db(row.branch), row.message_count)
            }
            _ => Some(Error::NotFound),
        })
    }
}

/// Each message's id: the client's, or a new UUIDv7. A client id twice in the batch is refused.
fn message_ids(batch: &[NewMessage<'_>]) -> Result<Vec<MessageId>> {
    let mut seen = HashSet::new();
    batch
        .iter()
        .map(|m| match m.id() {
            Some(id) if !seen.insert(id) => Err(Error::DuplicateId(id)),
            Some(id) => Ok(id),
            None => Ok(MessageId::generate()),
        })
        .collect()
}

/// The outcome of a batch some of whose client ids are already `stored`, appended to a
/// conversation of the user's own: a retry if it is this very batch — every message stored under
/// its id, in this conversation, with the same role, content, metadata, usage and parts — which
/// returns the stored messages in the batch's order.
fn replayed(
    conversation: ConversationId,
    batch: &[NewMessage<'_>],
    stored: Vec<MessageRow>,
) -> Result<Vec<Message>> {
    let mut by_id = HashMap::with_capacity(stored.len());
    for row in stored {
        let message = row.into_model()?;
        by_id.insert(message.id, message);
    }
    // The id to report if this is not a retry: the batch's first id that is stored.
    let Some(taken) = batch
        .iter()
        .filter_map(|m| m.id())
        .find(|id| by_id.contains_key(id))
    else {
        return Err(corrupt_row("stored messages found by ids not in the batch"));
    };
    let mut replay = Vec::with_capacity(batch.len());
    for new in batch {
        let Some(message) = new.id().and_then(|id| by_id.remove(&id)) else {
            return Err(Error::DuplicateId(taken));
        };
        let same = message.conversation_id == conversation
            && message.role == new.role()
            && message.content == new.content()
            && message.metadata.as_ref() == new.metadata()
            && message.usage == new.usage()
            && message.parts == new.parts();
        if !same {
            return Err(Error::DuplicateId(message.id));
        }
        replay.push(message);
    }
    Ok(replay)
}
