//! Retention: deleting the conversations nobody touched since a cutoff, a batch per transaction, and
//! counting them first. The batches are found in `queries/retention.rs`.

use std::ops::ControlFlow;

use super::ChatStore;
use crate::models::{self, DeletedCounts, Retention};
use crate::queries::retention::{self, Stale};
use crate::{Error, Result};

impl ChatStore {
    /// Deletes the conversations `retention` names — those whose `updated_at` is before its
    /// cutoff, every user's or one user's — with their messages, branches, tags and search index
    /// entries, and returns how many conversations and messages went.
    ///
    /// It works in batches, each its own short transaction: at most
    /// [`Retention::batch_size`] conversations and about
    /// [`Retention::MESSAGES_PER_BATCH`] messages (a conversation is deleted whole, so one larger
    /// than that is a batch of its own). So on SQLite the write lock is held a batch at a time,
    /// and on the servers appends to other conversations never wait for the purge. After each
    /// batch `progress` gets the counts so far; [`ControlFlow::Break`] stops the purge there.
    ///
    /// An append that commits during the purge is never lost: a conversation is deleted only if it
    /// is still not updated since the cutoff when its batch runs, and an append to one already
    /// deleted fails with [`Error::NotFound`]. A purge that stops — a `Break`, an error, a killed
    /// process — keeps every batch it committed; running it again deletes the rest.
    ///
    /// ```
    /// # use std::ops::ControlFlow;
    /// # use chatstore::{ChatStore, NewMessage, Retention, UserId};
    /// use chrono::Utc;
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let old = store.create_conversation(&alice, Some("old"))?;
    /// store.append_message(&alice, old.id, NewMessage::user("hi"))?;
    /// let cutoff = Utc::now();
    /// # while Utc::now() <= cutoff {}
    /// let new = store.create_conversation(&alice, Some("new"))?;
    /// let retention = Retention::not_updated_since(cutoff);
    /// let deleted = store.purge(&retention, |so_far| {
    ///     eprintln!("{} conversations deleted so far", so_far.conversations);
    ///     ControlFlow::Continue(())
    /// })?;
    /// assert_eq!((deleted.conversations, deleted.messages), (1, 1));
    /// assert!(store.conversation(&alice, old.id).is_err());
    /// assert!(store.conversation(&alice, new.id).is_ok());
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// With the `tracing` feature, the purge is one operation `purge`.
    ///
    /// # Errors
    /// [`Error::InvalidCutoff`] for a cutoff later than now (appends made during the purge would
    /// go too); [`Error::Busy`], connection and database errors, which stop the purge after the
    /// batches it committed.
    pub fn purge(
        &self,
        retention: &Retention,
        mut progress: impl FnMut(&DeletedCounts) -> ControlFlow<()>,
    ) -> Result<DeletedCounts> {
        self.op("purge", || {
            let cutoff = checked_cutoff(retention)?;
            let limit = i64::from(retention.batch());
            let mut deleted = DeletedCounts::default();
            let mut after = None;
            // What a round that deleted nothing found: found again, the purge would go round in
            // circles (one user's are read from the start each round).
            let mut stuck = None;
            loop {
                let found = self.with_conn(|conn| {
                    retention::stale(conn, retention.user(), cutoff, after, limit)
                })?;
                let Some(last) = found.last() else {
                    return Ok(deleted);
                };
                let ids: Vec<_> = found.iter().map(|s| s.id).collect();
                if stuck.as_ref() == Some(&ids) {
                    return Err(models::corrupt_row(
                        "conversations a purge found stale again after deleting them",
                    ));
                }
                after = Some(last.id);
                let before = deleted.conversations;
                for batch in batches(&found) {
                    // One statement per owner: on Citus each runs on the owner's node.
                    let mut batch = batch.to_vec();
                    batch.sort_by(|a, b| a.user.as_str().cmp(b.user.as_str()));
                    let counts = self.write(|conn| {
                        let mut counts = Vec::with_capacity(batch.len());
                        for owned in batch.chunk_by(|a, b| a.user == b.user) {
                            let ids: Vec<_> = owned.iter().map(|s| s.id).collect();
                            let user = &owned[0].user;
                            counts.extend(retention::delete(conn, user, &ids, cutoff)?);
                        }
                        Ok(counts)
                    })?;
                    deleted.conversations += counts.len() as u64;
                    deleted.messages += counts.iter().map(|&n| n.max(0) as u64).sum::<u64>();
                    if progress(&deleted).is_break() {
                        return Ok(deleted);
                    }
                }
                if (found.len() as i64) < limit {
                    return Ok(deleted);
                }
                stuck = (deleted.conversations == before).then_some(ids);
            }
        })
    }

    /// What [`purge`](Self::purge) would delete now: how many conversations `retention` names
    /// and how many messages they hold, in one statement, deleting nothing (a dry run).
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, Retention, UserId};
    /// use chrono::Utc;
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// store.append_message(&alice, conv.id, NewMessage::user("hi"))?;
    /// let would = store.purge_preview(&Retention::not_updated_since(Utc::now()).of_user(alice.clone()))?;
    /// assert_eq!((would.conversations, would.messages), (1, 1));
    /// assert!(store.conversation(&alice, conv.id).is_ok(), "nothing deleted");
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidCutoff`] for a cutoff later than now; connection and database errors.
    pub fn purge_preview(&self, retention: &Retention) -> Result<DeletedCounts> {
        self.op("purge_preview", || {
            let cutoff = checked_cutoff(retention)?;
            let (conversations, messages) =
                self.with_conn(|conn| retention::count(conn, retention.user(), cutoff))?;
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            Ok(DeletedCounts {
                conversations: count(conversations),
                messages: count(messages),
            })
        })
    }
}

/// The cutoff as stored times compare, if it is not later than now.
fn checked_cutoff(retention: &Retention) -> Result<chrono::NaiveDateTime> {
    let cutoff = retention.cutoff();
    // The clock as it reads, not `models::now()`: truncated to the microsecond, that was earlier
    // than a caller's `Utc::now()` taken in the same microsecond, and refused it.
    if cutoff > chrono::Utc::now() {
        return Err(Error::InvalidCutoff(cutoff));
    }
    Ok(cutoff.naive_utc())
}

/// `found` in transactions of at most [`Retention::MESSAGES_PER_BATCH`] messages, each at least
/// one conversation, in order.
fn batches(found: &[Stale]) -> impl Iterator<Item = &[Stale]> {
    let mut rest = found;
    std::iter::from_fn(move || {
        let mut messages = 0;
        let take = rest
            .iter()
            .take_while(|s| {
                messages += s.messages;
                messages <= Retention::MESSAGES_PER_BATCH
            })
            .count()
            .max(1)
            .min(rest.len());
        let (batch, tail) = rest.split_at(take);
        rest = tail;
        (!batch.is_empty()).then_some(batch)
    })
}
