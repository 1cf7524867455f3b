//! `ChatStore`: the facade. Each method validates its input, then runs query functions on one pooled
//! connection: every write in one write transaction (an append whose client id another call stored
//! meanwhile takes a second, to find it), every history read in one statement. A context window
//! and a search read in a few statements; messages are never changed once written, so they still
//! see one history.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDateTime;
use diesel::r2d2::Pool;
use parking_lot::FairMutex;

use crate::admin::{self, StoreStats, UserExport};
use crate::config::{Limits, StoreBuilder};
use crate::conn::{write_transaction, Backend, Conn, Manager};
use crate::context::{self, ContextOptions, ContextWindow};
use crate::ids::{ConversationId, MessageId, UserId};
use crate::models::{
    self, Conversation, ConversationRow, DbTime, Message, MessageRow, NewConversationRow,
    NewMessage, NewMessageRow,
};
use crate::page::{ConversationCursor, ConversationPage, MessagePage, Page, Window};
use crate::queries::{self, catalog, conversations, messages};
use crate::search::{self, SearchHit, SearchQuery, SearchResults};
use crate::title::parse_optional;
use crate::trace::{self, Recorded};
use crate::verify::SchemaReport;
use crate::{Error, Result};

/// A store of chat conversations and their messages, on behalf of many users.
///
/// Every operation takes the acting [`UserId`] and touches only that user's data; another user's
/// conversation reads as [`Error::NotFound`], exactly like one that does not exist.
///
/// Open one at start-up and share it: it is cheap to clone and safe to use from many threads (it
/// holds a connection pool). On SQLite, open one store per database file in a process: a store's
/// writers take turns in arrival order, while separate stores (like separate processes) meet only in
/// SQLite's busy handler.
///
/// Besides the errors each method lists, any call can fail with [`Error::Pool`] (no connection
/// within the connection timeout), [`Error::ConnectionLost`] (retry: the connection is replaced),
/// [`Error::Busy`] (a SQLite write that another process kept waiting past the busy timeout) or
/// [`Error::Database`].
///
/// With the cargo feature `tracing`, every method (and opening, and its migration run) runs in a
/// `debug` span named `chatstore` with the fields `operation` (the method's name), `backend`
/// (`"sqlite"`, `"postgres"` or `"mysql"`), `rows` (rows written or returned; empty for
/// `delete_conversation`, `open` and `migrate`) and `elapsed_us`, and ends with a `debug` event, or
/// a `warn` event with the error. Spans and events never hold message content, titles, metadata,
/// search text or user ids, and errors never quote them.
#[derive(Clone)]
pub struct ChatStore {
    pool: Pool<Manager>,
    backend: Backend,
    limits: Limits,
    /// SQLite only: this store's writers take turns here, first come first served, before they ask
    /// SQLite for its write lock. SQLite's busy handler is not fair — it polls with sleeps of up to
    /// 100 ms — and under steady contention it starved a writer past the busy timeout ("database is
    /// locked"). With the gate, the busy handler only arbitrates between processes.
    write_gate: Option<Arc<FairMutex<()>>>,
    /// The migrations this store applied when it opened.
    migrated: Arc<[String]>,
}

impl std::fmt::Debug for ChatStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStore")
            .field("backend", &self.backend)
            .field("pool", &self.pool.state())
            .finish_non_exhaustive()
    }
}

/// What an append's transaction did.
enum Appended {
    /// Wrote the batch from `first_seq` on.
    New { first_seq: i64, created_at: DbTime },
    /// Found the batch already stored (a retry): these are the stored messages.
    Replayed(Vec<Message>),
}

/// A batch checked against the store's limits, with what its rows need: ids, metadata as JSON text,
/// and what the search index reads.
struct Batch<'b, 'a> {
    user: &'b UserId,
    conversation: ConversationId,
    messages: &'b [NewMessage<'a>],
    ids: Vec<MessageId>,
    metadata: Vec<Option<String>>,
    search_texts: Vec<Option<String>>,
}

impl<'b, 'a> Batch<'b, 'a> {
    fn new(
        user: &'b UserId,
        conversation: ConversationId,
        messages: &'b [NewMessage<'a>],
        max_bytes: usize,
        backend: Backend,
    ) -> Result<Self> {
        let metadata = messages
            .iter()
            .map(|m| m.validate(max_bytes))
            .collect::<Result<Vec<_>>>()?;
        Ok(Batch {
            user,
            conversation,
            messages,
            ids: message_ids(messages)?,
            metadata,
            search_texts: messages
                .iter()
                .map(|m| search::search_text_on(backend, m.content()))
                .collect(),
        })
    }

    fn has_client_ids(&self) -> bool {
        self.messages.iter().any(|m| m.id().is_some())
    }

    /// The append's transaction: a retry of a stored batch is found and returned; otherwise the
    /// seqs are reserved (if the last seq is still `last_seq`, when given) and the rows inserted.
    fn write(
        &self,
        conn: &mut Conn,
        last_seq: Option<i64>,
        now: NaiveDateTime,
    ) -> Result<Appended> {
        if let Some(stored) = self.replay(conn)? {
            return Ok(Appended::Replayed(stored));
        }
        let n = self.messages.len() as i64;
        let (count, created_at) = loop {
            let reserved = conversations::reserve_seqs(
                conn,
                self.user.as_str(),
                self.conversation.as_bytes(),
                n,
                now,
                last_seq,
            )?;
            if let Some(reserved) = reserved {
                break reserved;
            }
            // The look-up above takes no lock. On PostgreSQL another attempt of this very batch
            // may have committed while this one waited for the row, and moved the count past
            // `last_seq`: that is a retry, not a conflict.
            if let Some(stored) = self.replay(conn)? {
                return Ok(Appended::Replayed(stored));
            }
            match moved_on(conn, self.user, self.conversation, last_seq)? {
                Some(error) => return Err(error),
                // The count reached `last_seq` between the two statements: try again. Counts
                // only grow, so this happens at most once.
                None => continue,
            }
        };
        let first_seq = count - n + 1;
        let rows: Vec<NewMessageRow<'_>> = (0..self.messages.len())
            .zip(first_seq..)
            .map(|(i, seq)| NewMessageRow {
                id: self.ids[i].as_bytes(),
                conversation_id: self.conversation.as_bytes(),
                user_id: self.user.as_str(),
                seq,
                role: self.messages[i].role().as_str(),
                content: self.messages[i].content(),
                metadata: self.metadata[i].as_deref(),
                created_at: created_at.0,
                search_text: self.search_texts[i].as_deref(),
            })
            .collect();
        messages::insert(conn, &rows)?;
        Ok(Appended::New {
            first_seq,
            created_at,
        })
    }

    /// The stored batch, if this is a retry of it (see [`replayed`]); `None` if none of its client
    /// ids is stored.
    fn replay(&self, conn: &mut Conn) -> Result<Option<Vec<Message>>> {
        let client_ids: Vec<&[u8]> = self
            .messages
            .iter()
            .zip(&self.ids)
            .filter(|(m, _)| m.id().is_some())
            .map(|(_, id)| id.as_bytes())
            .collect();
        if client_ids.is_empty() {
            return Ok(None);
        }
        let stored = messages::by_ids(conn, &client_ids)?;
        if stored.is_empty() {
            return Ok(None);
        }
        replayed(self.user, self.conversation, self.messages, stored).map(Some)
    }

    /// The messages the batch became, written from `first_seq` on at `created_at`.
    fn stored(&self, first_seq: i64, created_at: DbTime) -> Vec<Message> {
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
            })
            .collect()
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

/// The outcome of a batch some of whose client ids are already `stored` (with their owners): a
/// retry if it is this very batch — every message stored under its id, in this conversation, with
/// the same role, content and metadata — which returns the stored messages in the batch's order.
fn replayed(
    user: &UserId,
    conversation: ConversationId,
    batch: &[NewMessage<'_>],
    stored: Vec<(String, MessageRow)>,
) -> Result<Vec<Message>> {
    let mut by_id = HashMap::with_capacity(stored.len());
    for (owner, row) in stored {
        let message = row.into_model()?;
        if message.conversation_id == conversation && owner != user.as_str() {
            // The conversation is someone else's: say so exactly as for any other call.
            return Err(Error::NotFound);
        }
        by_id.insert(message.id, message);
    }
    // The id to report if this is not a retry: the batch's first id that is stored.
    let Some(taken) = batch
        .iter()
        .filter_map(|m| m.id())
        .find(|id| by_id.contains_key(id))
    else {
        return Err(models::corrupt_row(
            "stored messages found by ids not in the batch",
        ));
    };
    let mut replay = Vec::with_capacity(batch.len());
    for new in batch {
        let Some(message) = new.id().and_then(|id| by_id.remove(&id)) else {
            return Err(Error::DuplicateId(taken));
        };
        let same = message.conversation_id == conversation
            && message.role == new.role()
            && message.content == new.content()
            && message.metadata.as_ref() == new.metadata();
        if !same {
            return Err(Error::DuplicateId(message.id));
        }
        replay.push(message);
    }
    Ok(replay)
}

/// Why an append reserved no seqs: the conversation is not the user's (`NotFound`), or its last seq
/// is no longer `last_seq` (`Conflict`). `None` if it is `last_seq` after all: an append committed
/// between the reservation and this read, so the reservation can be tried again.
fn moved_on(
    conn: &mut Conn,
    user: &UserId,
    conversation: ConversationId,
    last_seq: Option<i64>,
) -> Result<Option<Error>> {
    let found = conversations::find(conn, user.as_str(), conversation.as_bytes())?;
    Ok(match (found, last_seq) {
        (Some(row), Some(expected)) if row.message_count == expected => None,
        (Some(row), Some(expected)) => Some(Error::Conflict {
            expected,
            actual: row.message_count,
        }),
        _ => Some(Error::NotFound),
    })
}

/// What [`ChatStore::delete_user_data`] removed. With the `serde` feature:
/// `{"conversations", "messages"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct DeletedCounts {
    /// Conversations deleted.
    pub conversations: u64,
    /// Messages deleted.
    pub messages: u64,
}

impl ChatStore {
    /// Opens the store at `url` with default options, running any pending migrations first.
    ///
    /// URLs: `sqlite://path/to/chat.db`, a bare file path, `:memory:` (or `sqlite::memory:`) for a
    /// private in-memory database, `postgres://…`/`postgresql://…` (libpq parameters such as
    /// `sslmode=require` pass through, so managed and serverless PostgreSQL work), and
    /// `mysql://…`/`mariadb://…` (Diesel's parameters: `ssl_mode`, `ssl_ca`, `unix_socket`).
    ///
    /// # Errors
    /// As [`StoreBuilder::open`].
    pub fn open(url: &str) -> Result<ChatStore> {
        StoreBuilder::new(url).open()
    }

    /// Options for opening a store at `url`: pool size, timeouts, limits, durability.
    pub fn builder(url: impl Into<String>) -> StoreBuilder {
        StoreBuilder::new(url)
    }

    pub(crate) fn from_parts(
        pool: Pool<Manager>,
        backend: Backend,
        limits: Limits,
        migrated: Vec<String>,
    ) -> Self {
        let write_gate = (backend == Backend::Sqlite).then(|| Arc::new(FairMutex::new(())));
        ChatStore {
            pool,
            backend,
            limits,
            write_gate,
            migrated: migrated.into(),
        }
    }

    /// The database system behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The versions of the migrations this store applied when it opened, oldest first (such as
    /// `"20261124000001"`); empty if the schema was already up to date.
    ///
    /// ```
    /// let store = chatstore::ChatStore::open(":memory:")?;
    /// assert!(!store.migrations_applied_at_open().is_empty(), "a new database is migrated");
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn migrations_applied_at_open(&self) -> &[String] {
        &self.migrated
    }

    /// Runs `f` as the public operation `operation`: in a span, with the `tracing` feature (see
    /// `trace.rs`); a plain call of `f` without it.
    fn op<T: Recorded>(&self, operation: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        trace::op(operation, Some(self.backend), f)
    }

    /// Runs `f` on a pooled connection; a connection found lost is dropped from the pool.
    fn with_conn<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let mut pooled = self.pool.get().map_err(Error::Pool)?;
        let result = f(&mut pooled.conn);
        if matches!(result, Err(Error::ConnectionLost(_))) {
            pooled.lost = true;
        }
        result
    }

    /// Runs `f` in a write transaction on a pooled connection, after this store's earlier writers.
    fn write<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let _turn = self.write_gate.as_ref().map(|gate| gate.lock());
        self.with_conn(|conn| write_transaction(conn, f))
    }

    /// Creates a conversation owned by `user`. The title is trimmed; `None` or a blank title means
    /// no title.
    ///
    /// # Errors
    /// [`Error::InvalidTitle`]; connection and database errors.
    pub fn create_conversation(&self, user: &UserId, title: Option<&str>) -> Result<Conversation> {
        self.op("create_conversation", || {
            let title = parse_optional(title)?;
            let id = ConversationId::generate();
            let now = models::now();
            let row = NewConversationRow {
                id: id.as_bytes(),
                user_id: user.as_str(),
                title: title.as_ref().map(|t| t.as_str()),
                created_at: now.naive_utc(),
                updated_at: now.naive_utc(),
                message_count: 0,
            };
            self.write(|conn| conversations::insert(conn, &row))?;
            Ok(Conversation {
                id,
                user_id: user.clone(),
                title: title.map(|t| t.as_str().to_owned()),
                created_at: now,
                updated_at: now,
                message_count: 0,
            })
        })
    }

    /// The conversation `id`, if `user` owns it.
    ///
    /// # Errors
    /// [`Error::NotFound`] if it does not exist or another user owns it; connection and database
    /// errors.
    pub fn conversation(&self, user: &UserId, id: ConversationId) -> Result<Conversation> {
        self.op("conversation", || self.find_conversation(user, id))
    }

    /// [`conversation`](Self::conversation), for the operations that need it.
    fn find_conversation(&self, user: &UserId, id: ConversationId) -> Result<Conversation> {
        self.with_conn(|conn| conversations::find(conn, user.as_str(), id.as_bytes()))?
            .map(ConversationRow::into_model)
            .ok_or(Error::NotFound)
    }

    /// A page of the user's conversations, most recently updated first.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Page, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let mut page = store.list_conversations(&user, Page::first(20))?;
    /// loop {
    ///     for c in &page.conversations {
    ///         println!("{} {:?}", c.id, c.title);
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
    /// Connection and database errors.
    pub fn list_conversations(&self, user: &UserId, page: Page) -> Result<ConversationPage> {
        self.op("list_conversations", || {
            let limit = page.limit.clamp(1, self.limits.max_page_size);
            let after = page.after.map(|c| (c.updated_at, c.id));
            let rows = self.with_conn(|conn| {
                let after = after.as_ref().map(|(time, id)| (*time, id.as_bytes()));
                // One row more than asked tells whether a next page exists.
                conversations::list(conn, user.as_str(), after, i64::from(limit) + 1)
            })?;
            let mut items: Vec<Conversation> =
                rows.into_iter().map(ConversationRow::into_model).collect();
            let next = if items.len() > limit as usize {
                items.truncate(limit as usize);
                items.last().map(|last| {
                    Page::after(ConversationCursor::new(last.updated_at, last.id), limit)
                })
            } else {
                None
            };
            Ok(ConversationPage {
                conversations: items,
                next,
            })
        })
    }

    /// Sets (or, with `None` or a blank title, clears) the title, and bumps `updated_at`.
    ///
    /// # Errors
    /// [`Error::InvalidTitle`]; [`Error::NotFound`] if the user owns no such conversation;
    /// connection and database errors.
    pub fn rename_conversation(
        &self,
        user: &UserId,
        id: ConversationId,
        title: Option<&str>,
    ) -> Result<Conversation> {
        self.op("rename_conversation", || {
            let title = parse_optional(title)?;
            let now = models::now().naive_utc();
            self.write(|conn| {
                let title = title.as_ref().map(|t| t.as_str());
                if conversations::rename(conn, user.as_str(), id.as_bytes(), title, now)? == 0 {
                    return Err(Error::NotFound);
                }
                conversations::find(conn, user.as_str(), id.as_bytes())?.ok_or(Error::NotFound)
            })
            .map(ConversationRow::into_model)
        })
    }

    /// Deletes the conversation and all its messages, atomically.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; connection and database errors.
    pub fn delete_conversation(&self, user: &UserId, id: ConversationId) -> Result<()> {
        self.op("delete_conversation", || {
            match self.write(|conn| conversations::delete(conn, user.as_str(), id.as_bytes()))? {
                0 => Err(Error::NotFound),
                _ => Ok(()),
            }
        })
    }

    /// Appends one message; see [`append_messages`](Self::append_messages).
    ///
    /// # Errors
    /// As [`append_messages`](Self::append_messages).
    pub fn append_message(
        &self,
        user: &UserId,
        conversation: ConversationId,
        message: NewMessage<'_>,
    ) -> Result<Message> {
        self.op("append_message", || {
            let stored = self.insert_messages(user, conversation, &[message], None)?;
            stored
                .into_iter()
                .next()
                .ok_or_else(|| models::corrupt_row("an append of one message stored none"))
        })
    }

    /// Appends messages to the end of the conversation, all or nothing: they get consecutive seqs
    /// after the last one, and the conversation's `updated_at` and message count change in the same
    /// transaction. Concurrent appends to one conversation, from any number of threads or processes,
    /// queue on the conversation's row and never lose, duplicate or reorder a message.
    ///
    /// An empty batch writes nothing (it still checks that the user owns the conversation).
    ///
    /// # Retrying safely
    /// A call that fails with a lost connection or a timeout may still have committed. To retry
    /// without risking a duplicate, give every message an id of your own
    /// ([`NewMessage::with_id`]) before the first attempt and send the same batch again: if it was
    /// stored, the call writes nothing and returns the stored messages (with their original seqs
    /// and times).
    ///
    /// ```
    /// # use chatstore::{ChatStore, MessageId, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&user, None)?;
    /// let id = MessageId::from(uuid::Uuid::now_v7()); // made once, kept for the retries
    /// let first = store.append_message(&user, conv.id, NewMessage::user("hi").with_id(id))?;
    /// // The answer was lost on the way back; the retry finds the message already there.
    /// let again = store.append_message(&user, conv.id, NewMessage::user("hi").with_id(id))?;
    /// assert_eq!(first, again);
    /// assert_eq!(store.conversation(&user, conv.id)?.message_count, 1);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// - [`Error::ContentTooLarge`], [`Error::InvalidContent`], [`Error::InvalidMetadata`],
    ///   [`Error::MetadataTooLarge`] for a message that breaks the limits — nothing of the batch is
    ///   written;
    /// - [`Error::DuplicateId`] if a client-supplied id is taken by a different message (in another
    ///   conversation, with other content, or twice in the batch), or if only part of the batch is
    ///   stored under its ids (not a retry of one batch) — nothing is written;
    /// - [`Error::NotFound`] if the user owns no such conversation;
    /// - [`Error::Busy`] if another process kept SQLite's write lock past the busy timeout;
    /// - connection and database errors (the transaction is rolled back).
    pub fn append_messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        batch: &[NewMessage<'_>],
    ) -> Result<Vec<Message>> {
        self.op("append_messages", || {
            self.insert_messages(user, conversation, batch, None)
        })
    }

    /// Appends the batch only if the conversation's last seq is still `last_seq` (0 for an empty
    /// conversation): optimistic concurrency for a writer that decides what to append from what it
    /// read ([`MessagePage::total`](crate::MessagePage::total),
    /// [`Conversation::message_count`](crate::Conversation::message_count)). Otherwise as
    /// [`append_messages`](Self::append_messages); a retry of a stored batch (by its ids) returns
    /// it, even though the last seq has moved since.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Error, NewMessage, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&user, None)?;
    /// let seen = store.messages(&user, conv.id, Window::Latest(20))?;
    /// store.append_message(&user, conv.id, NewMessage::user("sent from another tab"))?;
    /// let reply = [NewMessage::assistant("an answer to what I saw")];
    /// let result = store.append_if_last_seq(&user, conv.id, seen.total, &reply);
    /// assert!(matches!(result, Err(Error::Conflict { expected: 0, actual: 1 })));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Conflict`] if the conversation's last seq is not `last_seq` — nothing is written;
    /// otherwise as [`append_messages`](Self::append_messages).
    pub fn append_if_last_seq(
        &self,
        user: &UserId,
        conversation: ConversationId,
        last_seq: i64,
        batch: &[NewMessage<'_>],
    ) -> Result<Vec<Message>> {
        self.op("append_if_last_seq", || {
            self.insert_messages(user, conversation, batch, Some(last_seq))
        })
    }

    /// Validates the batch, then writes it — unless it is a retry of a stored batch — if the
    /// conversation's last seq is `last_seq` (when given).
    fn insert_messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        new_messages: &[NewMessage<'_>],
        last_seq: Option<i64>,
    ) -> Result<Vec<Message>> {
        let batch = Batch::new(
            user,
            conversation,
            new_messages,
            self.limits.max_content_bytes,
            self.backend,
        )?;
        if new_messages.is_empty() {
            let found = self.find_conversation(user, conversation)?;
            return match last_seq {
                Some(expected) if expected != found.message_count => Err(Error::Conflict {
                    expected,
                    actual: found.message_count,
                }),
                _ => Ok(Vec::new()),
            };
        }
        let now = models::now().naive_utc();
        let attempt = || self.write(|conn| batch.write(conn, last_seq, now));
        let outcome = match attempt() {
            // On PostgreSQL, another call may store one of the client's ids after this one looked
            // (the look-up takes no lock; a SQLite write transaction holds the whole database).
            // That call has committed by the time the insert fails, so a second attempt finds it:
            // the same batch is replayed, a different one refused.
            Err(Error::DuplicateId(_)) if batch.has_client_ids() => attempt()?,
            outcome => outcome?,
        };
        Ok(match outcome {
            Appended::Replayed(stored) => stored,
            Appended::New {
                first_seq,
                created_at,
            } => batch.stored(first_seq, created_at),
        })
    }

    /// A window of the conversation's messages, always in chronological order, with the windows
    /// before and after it. A window reads only the rows it returns: its cost depends on its size, not
    /// on the length of the history.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&user, None)?;
    /// # store.append_message(&user, conv.id, NewMessage::user("hi"))?;
    /// // The newest 50, for the next prompt…
    /// let page = store.messages(&user, conv.id, Window::Latest(50))?;
    /// // …and older ones as the user scrolls up.
    /// if let Some(older) = page.older {
    ///     let earlier = store.messages(&user, conv.id, older)?;
    /// }
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; connection and database errors.
    pub fn messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        window: Window,
    ) -> Result<MessagePage> {
        self.op("messages", || {
            let (total, messages) = self
                .with_conn(|conn| {
                    messages::window(
                        conn,
                        user.as_str(),
                        conversation.as_bytes(),
                        window.bounds(),
                    )
                })?
                .ok_or(Error::NotFound)?;
            Ok(MessagePage::new(messages, window, total))
        })
    }

    /// The newest messages of the conversation whose total cost fits `budget`, in the order to send
    /// them: the conversation's system messages first (however old), then the newest run of messages
    /// that fits, oldest first. Cost is counted in characters ([`char_cost`](crate::char_cost)); see
    /// [`context_window_with`](Self::context_window_with) for a tokenizer of your own and options.
    ///
    /// The window is cut where a provider accepts it: it never starts with a tool result whose
    /// call is not in it (such results are left out with everything before them), and every tool
    /// call in it comes with all its stored results (calls and results are linked by id, as in
    /// the [`ContextWindow`] docs). It reads about as many rows as it returns,
    /// so its cost does not grow with the history. A budget smaller than the newest message gives
    /// no messages but the system ones.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&user, None)?;
    /// store.append_messages(&user, conv.id, &[
    ///     NewMessage::system("You manage a todo list."),
    ///     NewMessage::user("Add oat milk"),
    ///     NewMessage::assistant("Added."),
    ///     NewMessage::user("And bread"),
    /// ])?;
    /// let context = store.context_window(&user, conv.id, 35)?;
    /// let sent: Vec<&str> = context.messages.iter().map(|m| m.content.as_str()).collect();
    /// assert_eq!(sent, ["You manage a todo list.", "And bread"]);
    /// assert_eq!((context.cost, context.omitted), (32, 2));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; [`Error::BudgetTooSmall`] if the
    /// system messages alone cost more than `budget`; connection and database errors.
    pub fn context_window(
        &self,
        user: &UserId,
        conversation: ConversationId,
        budget: u64,
    ) -> Result<ContextWindow> {
        self.op("context_window", || {
            self.build_context_window(
                user,
                conversation,
                budget,
                ContextOptions::default(),
                crate::char_cost,
            )
        })
    }

    /// [`context_window`](Self::context_window) with options and a cost function of your own —
    /// typically your model's tokenizer — called once for each message considered.
    ///
    /// ```
    /// # use chatstore::{ChatStore, ContextOptions, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&user, None)?;
    /// # store.append_message(&user, conv.id, NewMessage::user("Add oat milk to the list"))?;
    /// // A rough token count: words, plus a few tokens of framing per message.
    /// let tokens = |m: &chatstore::Message| m.content.split_whitespace().count() as u64 + 4;
    /// let context = store.context_window_with(&user, conv.id, 4096, ContextOptions::default(), tokens)?;
    /// assert_eq!(context.cost, 10);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`context_window`](Self::context_window).
    pub fn context_window_with<F>(
        &self,
        user: &UserId,
        conversation: ConversationId,
        budget: u64,
        options: ContextOptions,
        cost: F,
    ) -> Result<ContextWindow>
    where
        F: FnMut(&Message) -> u64,
    {
        self.op("context_window_with", || {
            self.build_context_window(user, conversation, budget, options, cost)
        })
    }

    /// [`context_window_with`](Self::context_window_with), for both context operations.
    fn build_context_window<F>(
        &self,
        user: &UserId,
        conversation: ConversationId,
        budget: u64,
        options: ContextOptions,
        cost: F,
    ) -> Result<ContextWindow>
    where
        F: FnMut(&Message) -> u64,
    {
        /// The first page; each older one doubles, up to the last size.
        const PAGES: (u32, u32) = (64, 1024);
        let (user, conv) = (user.as_str(), conversation.as_bytes());
        self.with_conn(|conn| {
            let first = Window::Latest(PAGES.0).bounds();
            let (total, mut page) =
                messages::window(conn, user, conv, first)?.ok_or(Error::NotFound)?;
            let pinned = match options.pins_system() {
                true => messages::system(conn, user, conv, total)?,
                false => Vec::new(),
            };
            let mut builder = context::Builder::new(budget, cost, pinned)?;
            let mut limit = PAGES.0;
            loop {
                let oldest = page.first().map_or(1, |m| m.seq);
                if !builder.take(page) || oldest <= 1 {
                    break;
                }
                limit = (limit * 2).min(PAGES.1);
                let older = Window::Before { seq: oldest, limit }.bounds();
                // Deleted since the first page: as if it had been before.
                (_, page) = messages::window(conn, user, conv, older)?.ok_or(Error::NotFound)?;
            }
            Ok(builder.finish(total))
        })
    }

    /// Full-text search over the user's messages, in all their conversations or in one: every
    /// word of the query must occur, case and Latin accents ignored (see [`SearchQuery`] for phrases and
    /// prefixes). Each hit comes with its conversation's title and a snippet with the matches
    /// marked. Only the user's own messages are ever searched, whatever the query holds.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, SearchQuery, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let conv = store.create_conversation(&user, Some("Groceries"))?;
    /// store.append_message(&user, conv.id, NewMessage::user("Add oat milk and a crème brûlée"))?;
    /// let found = store.search_messages(&user, &SearchQuery::new("creme brulee"))?;
    /// let hit = &found.hits[0];
    /// assert_eq!(hit.conversation_title.as_deref(), Some("Groceries"));
    /// assert_eq!(hit.snippet.marked("[", "]"), "Add oat milk and a [crème] [brûlée]");
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidQuery`] for a query that cannot be run; [`Error::NotFound`] if a conversation
    /// to search in is not the user's; connection and database errors.
    pub fn search_messages(&self, user: &UserId, query: &SearchQuery<'_>) -> Result<SearchResults> {
        self.op("search_messages", || {
            let parsed = search::parse(query.text())?;
            let (limit, offset) = query.page();
            let limit = limit.clamp(1, self.limits.max_page_size);
            let conversation = query.conversation();
            let found = self.with_conn(|conn| {
                if let Some(conversation) = conversation {
                    conversations::find(conn, user.as_str(), conversation.as_bytes())?
                        .ok_or(Error::NotFound)?;
                }
                // One row more than asked tells whether a next page exists.
                queries::search::find(
                    conn,
                    user.as_str(),
                    conversation.as_ref().map(ConversationId::as_bytes),
                    &parsed,
                    query.ordering(),
                    i64::from(limit) + 1,
                    i64::from(offset),
                )
            })?;
            let more = found.len() > limit as usize;
            let hits = found
                .into_iter()
                .take(limit as usize)
                .map(|(message, conversation_title)| SearchHit {
                    snippet: search::snippet(&message.content, &parsed),
                    message,
                    conversation_title,
                })
                .collect();
            Ok(SearchResults {
                hits,
                next_offset: more.then(|| offset.saturating_add(limit)),
            })
        })
    }

    /// Erases everything `user` owns — every conversation and message — in one statement, for
    /// account deletion. Other users' data is untouched.
    ///
    /// # Errors
    /// Connection and database errors (nothing is deleted then).
    pub fn delete_user_data(&self, user: &UserId) -> Result<DeletedCounts> {
        self.op("delete_user_data", || {
            let counts = self.write(|conn| conversations::delete_all(conn, user.as_str()))?;
            Ok(DeletedCounts {
                conversations: counts.len() as u64,
                messages: counts.iter().map(|&n| n as u64).sum(),
            })
        })
    }

    /// Store-wide counts for an operator: users who own a conversation, conversations, messages,
    /// every user's alike. One statement over the conversations table (messages are counted by
    /// their conversations' message counts), so it costs a scan of that table's smallest index,
    /// never of the messages.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// store.append_message(&alice, conv.id, NewMessage::user("hi"))?;
    /// let stats = store.stats()?;
    /// assert_eq!((stats.users, stats.conversations, stats.messages), (1, 1, 1));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// Connection and database errors.
    pub fn stats(&self) -> Result<StoreStats> {
        self.op("stats", || {
            let (users, conversations, messages) = self.with_conn(conversations::totals)?;
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            Ok(StoreStats {
                users: count(users),
                conversations: count(conversations),
                messages: count(messages),
            })
        })
    }

    /// Everything `user` owns, as records to back up or move to another database: each
    /// conversation, then its messages in seq order, read page by page (see [`UserExport`] for
    /// the pages and for what an export sees of writes made while it runs). Nothing is read until
    /// the iterator is; [`import_conversation`](Self::import_conversation) writes the records back.
    ///
    /// With the `tracing` feature, each page read is an operation `export_user`.
    ///
    /// ```
    /// # use chatstore::{ChatStore, ExportItem, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, Some("Groceries"))?;
    /// # store.append_message(&alice, conv.id, NewMessage::user("Add oat milk"))?;
    /// let copy = ChatStore::open(":memory:")?;
    /// let (mut conversation, mut messages) = (None, Vec::new());
    /// for item in store.export_user(&alice) {
    ///     match item? {
    ///         ExportItem::Conversation(next) => {
    ///             if let Some(done) = conversation.replace(next) {
    ///                 copy.import_conversation(&alice, &done, &std::mem::take(&mut messages))?;
    ///             }
    ///         }
    ///         ExportItem::Message(message) => messages.push(message),
    ///         _ => {}
    ///     }
    /// }
    /// if let Some(done) = conversation {
    ///     copy.import_conversation(&alice, &done, &messages)?;
    /// }
    /// assert_eq!(copy.conversation(&alice, conv.id)?, store.conversation(&alice, conv.id)?);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// The iterator's items: connection and database errors, after which it ends.
    pub fn export_user(&self, user: &UserId) -> UserExport {
        UserExport::new(self.clone(), user.clone())
    }

    /// Up to `limit` of the user's conversations in id order after `after`: a page of an export.
    pub(crate) fn export_conversations(
        &self,
        user: &UserId,
        after: Option<ConversationId>,
        limit: u32,
    ) -> Result<Vec<Conversation>> {
        self.op("export_user", || {
            let rows = self.with_conn(|conn| {
                let after = after.as_ref().map(ConversationId::as_bytes);
                conversations::after_id(conn, user.as_str(), after, i64::from(limit))
            })?;
            Ok(rows.into_iter().map(ConversationRow::into_model).collect())
        })
    }

    /// Up to `limit` of the conversation's messages after seq `after`: a page of an
    /// export; none if the conversation is gone (deleted since it was listed).
    pub(crate) fn export_messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Message>> {
        self.op("export_user", || {
            let window = Window::After { seq: after, limit }.bounds();
            let found = self.with_conn(|conn| {
                messages::window(conn, user.as_str(), conversation.as_bytes(), window)
            })?;
            Ok(found.map(|(_, messages)| messages).unwrap_or_default())
        })
    }

    /// Writes a conversation and its messages exactly as [`export_user`](Self::export_user) read
    /// them — ids, title, times, seqs, roles, content, metadata — in one write transaction, as
    /// `user`'s. The messages are inserted as appends insert them, so the search index holds them
    /// at once.
    ///
    /// Everything is checked before anything is written: the conversation must be `user`'s, its
    /// title trimmed and valid, its message count the number of `messages`, which must be its
    /// own, with seqs 1, 2, 3… in order, distinct ids, content and metadata within the store's
    /// limits, and times as the store writes them (microseconds; the conversation's `created_at`
    /// ≤ each message's, in seq order, ≤ its `updated_at`; on MySQL, between 1970 and 2038, the
    /// range of the TIMESTAMP type times are sent as). An operator's call: the conversation id is
    /// refused if any user has it.
    ///
    /// # Errors
    /// Nothing is written on any error:
    /// - [`Error::InvalidImport`] for a conversation or messages that break the rules above;
    ///   [`Error::InvalidTitle`], [`Error::ContentTooLarge`], [`Error::InvalidContent`],
    ///   [`Error::InvalidMetadata`], [`Error::MetadataTooLarge`] as for the other writes;
    /// - [`Error::AlreadyExists`] if the conversation id is stored;
    /// - [`Error::DuplicateId`] if a message id is stored (in any conversation) or given twice;
    /// - [`Error::Busy`], connection and database errors (the transaction is rolled back).
    pub fn import_conversation(
        &self,
        user: &UserId,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<()> {
        self.op("import_conversation", || {
            let checked =
                admin::check_import(user, conversation, messages, self.limits.max_content_bytes)?;
            #[cfg(feature = "mysql")]
            if self.backend == Backend::Mysql {
                admin::check_mysql_times(conversation)?;
            }
            let search_texts: Vec<Option<String>> = messages
                .iter()
                .map(|m| search::search_text_on(self.backend, &m.content))
                .collect();
            let row = NewConversationRow {
                id: conversation.id.as_bytes(),
                user_id: user.as_str(),
                title: conversation.title.as_deref(),
                created_at: conversation.created_at.naive_utc(),
                updated_at: conversation.updated_at.naive_utc(),
                message_count: conversation.message_count,
            };
            let rows: Vec<NewMessageRow<'_>> = messages
                .iter()
                .zip(&checked.metadata)
                .zip(&search_texts)
                .map(|((message, metadata), search_text)| NewMessageRow {
                    id: message.id.as_bytes(),
                    conversation_id: conversation.id.as_bytes(),
                    user_id: user.as_str(),
                    seq: message.seq,
                    role: message.role.as_str(),
                    content: &message.content,
                    metadata: metadata.as_deref(),
                    created_at: message.created_at.naive_utc(),
                    search_text: search_text.as_deref(),
                })
                .collect();
            let ids: Vec<&[u8]> = rows.iter().map(|r| r.id).collect();
            self.write(|conn| {
                conversations::insert(conn, &row)?;
                // Looked up first, to name the id: a failed insert does not say which it was.
                let stored = messages::stored_ids(conn, &ids)?;
                if let Some(taken) = messages.iter().find(|m| stored.contains(&m.id)) {
                    return Err(Error::DuplicateId(taken.id));
                }
                // The insert takes one time for all its rows: one run of equal times at a time
                // (an append's batch shares its time, so a run is usually a whole batch).
                for run in rows.chunk_by(|a, b| a.created_at == b.created_at) {
                    messages::insert(conn, run)?;
                }
                Ok(())
            })
        })
    }

    /// Checks that each table, index and constraint the store relies on is present.
    ///
    /// ```
    /// # let store = chatstore::ChatStore::open(":memory:")?;
    /// let report = store.verify_schema()?;
    /// assert!(report.is_complete(), "{report}");
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// Connection and database errors.
    pub fn verify_schema(&self) -> Result<SchemaReport> {
        self.op("verify_schema", || {
            let found = self.with_conn(catalog::objects)?;
            Ok(SchemaReport::new(&found))
        })
    }
}
