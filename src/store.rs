//! `ChatStore`: the facade. Each method validates its input, then runs query functions on one pooled
//! connection: every write in one write transaction (an append whose client id another call stored
//! meanwhile takes a second, to find it), or in one statement (an append on PostgreSQL); every
//! history read in one statement (a window below a branch's fork in two or three: the ancestors'
//! messages it reads never change while the branch exists, see `tree.rs`). A context window and a
//! search read in a few statements; a message is never changed once written, only removed from
//! the newest end of a branch, and a context window starts again if the active branch changes
//! under it.

mod export;
mod lists;
mod retention;
mod tags;

use std::sync::Arc;

use self::export::ExportedTree;
pub use self::export::{ExportCounts, ExportItem, UserExport};
use crate::config::{Limits, Migrations, StoreBuilder};
use crate::conn::{
    self, write_transaction, Backend, Conn, Manager, SqliteSettings, Target, WriteGate,
};
use crate::context::{ContextOptions, ContextWindow};
use crate::cursor::Window;
use crate::ids::{BranchId, ConversationId, MessageId, UserId};
use crate::models::{
    self, Branch, Conversation, DeletedCounts, Message, NewConversation, NewMessage, Siblings,
    StoreStats, Tag, Usage,
};
use crate::ops::{append, branch, context, fork, import, search, truncate};
use crate::page::MessagePage;
use crate::pool::Pool;
use crate::queries::rows::{MessageRow, NewConversationRow};
use crate::queries::tags as tag_rows;
use crate::queries::{branches, catalog, conversations, messages, migrations};
use crate::search::{SearchQuery, SearchResults};
use crate::title::parse_optional;
use crate::trace::{self, Recorded};
use crate::tree::Segment;
use crate::verify::SchemaReport;
use crate::{Error, Result};

/// A store of chat conversations and their messages, on behalf of many users.
///
/// Every operation takes the acting [`UserId`] and touches only that user's data; another user's
/// conversation reads as [`Error::NotFound`], exactly like one that does not exist.
///
/// Open one at start-up and share it: it is cheap to clone and safe to use from many threads (it
/// holds a connection pool). On SQLite, open one store per database file in a process: a store's
/// writers take turns in arrival order, and separate stores (like separate processes) queue on the
/// database's lock file (see [`StoreBuilder::busy_timeout`]).
///
/// Connections are opened only on the calling thread: a call takes a free connection of the pool
/// or, below the pool size, opens one itself, and waits for one otherwise. No thread of the store
/// touches a connection and it keeps no timer (idle connections are closed by the next call that
/// comes for one), so no connection work runs once the program's last call has returned: a
/// short-lived program may return from `main`, or call [`std::process::exit`], right after its
/// last call, also over TLS. (The one thread a store may start is a SQLite file's writer queue
/// waiting on its lock file; see [`StoreBuilder::busy_timeout`].)
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
/// search text or user ids, and errors never quote them — except [`Error::InvalidQuery`], which
/// names the query word it refuses to the caller who wrote it (its event leaves the reason out).
#[derive(Clone)]
pub struct ChatStore {
    pool: Pool<Manager>,
    backend: Backend,
    limits: Limits,
    /// Where this store's writers take turns.
    write_gate: WriteGate,
    /// The migrations this store applied when it opened.
    migrated: Arc<[String]>,
    /// Those of them that an interrupted run had left half applied.
    resumed: Arc<[String]>,
    /// Whether the database is a Citus cluster's, where an append is a transaction of two
    /// statements that Citus routes whole to the owner's node rather than PostgreSQL's one
    /// statement (which Citus would run in three steps through the coordinator).
    citus: bool,
}

impl std::fmt::Debug for ChatStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStore")
            .field("backend", &self.backend)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl StoreBuilder {
    /// Connects, brings the schema up to date (or checks it, see
    /// [`migrations`](Self::migrations)) and returns the store.
    ///
    /// ```
    /// use chatstore::{Backend, ChatStore};
    ///
    /// let store = ChatStore::builder(":memory:").pool_size(4).open()?;
    /// assert_eq!(store.backend(), Backend::Sqlite);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// - [`UnsupportedUrl`](crate::Error::UnsupportedUrl) or
    ///   [`BackendNotEnabled`](crate::Error::BackendNotEnabled) for a URL this build cannot open;
    /// - [`Connect`](crate::Error::Connect) if the database cannot be reached;
    /// - [`SchemaTooNew`](crate::Error::SchemaTooNew) if a newer chatstore migrated the database;
    /// - [`Migration`](crate::Error::Migration) if a migration fails;
    /// - [`SchemaConflict`](crate::Error::SchemaConflict) (MySQL) if a pending migration makes an
    ///   object the database already holds in another shape;
    /// - [`MigrationsPending`](crate::Error::MigrationsPending) with
    ///   [`Migrations::Verify`](crate::Migrations::Verify) if the schema is not up to date, and
    ///   [`DatabaseNotFound`](crate::Error::DatabaseNotFound) without
    ///   [`Migrations::Apply`](crate::Migrations::Apply) for a SQLite file that does not exist.
    pub fn open(self) -> Result<ChatStore> {
        trace::op("open", None, move || {
            let creates = self.migrations == Migrations::Apply;
            let (manager, mut first) = self.connect(creates)?;
            let backend = manager.target.backend();
            let mut migrated = migrations::Migrated::default();
            match self.migrations {
                Migrations::Apply => trace::op("migrate", Some(backend), || {
                    migrated = migrations::run(&mut first, self.connection_timeout)?;
                    Ok(())
                })?,
                Migrations::Verify => {
                    let pending = migrations::pending(&mut first)?;
                    if !pending.is_empty() {
                        return Err(Error::MigrationsPending { pending });
                    }
                }
                Migrations::Skip => {}
            }
            let citus = crate::queries::citus::present(&mut first)?;
            let write_gate = WriteGate::new(&manager, &mut first, creates);
            let pool = conn::pool(manager, first, self.pool_size, self.connection_timeout);
            let mut store = ChatStore::from_parts(pool, backend, write_gate, self.limits, migrated);
            store.citus = citus;
            Ok(store)
        })
    }
}

impl StoreBuilder {
    /// Drops everything chatstore made in the database: its tables (`chatstore_…`) with their
    /// indexes, constraints and triggers, and its version table, under the migration lock. Every
    /// conversation and message is gone; no object of another program is touched. For development
    /// and test databases: the next open that migrates makes the schema anew. A SQLite file that
    /// does not exist is [`Error::DatabaseNotFound`] (nothing is created).
    ///
    /// ```
    /// use chatstore::{ChatStore, Error, Migrations, UserId};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// # let path = dir.path().join("chat.db");
    /// # let url = path.to_str().unwrap();
    /// let store = ChatStore::open(url)?;
    /// store.create_conversation(&UserId::new("alice")?, None)?;
    /// drop(store);
    ///
    /// ChatStore::builder(url).drop_schema()?;
    /// let verify = ChatStore::builder(url).migrations(Migrations::Verify).open();
    /// assert!(matches!(verify, Err(Error::MigrationsPending { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`open`](Self::open) for the URL and the connection; a database error if a table cannot
    /// be dropped (SQLite and PostgreSQL: then none is).
    pub fn drop_schema(self) -> Result<()> {
        trace::op("drop_schema", None, move || {
            let (_, mut first) = self.connect(false)?;
            migrations::drop_all(&mut first, self.connection_timeout)
        })
    }

    /// Reads the URL and makes the first connection, on which opening migrates or checks: a
    /// wrong URL or a server that is down then fails here with the real error, not after a pool
    /// timeout. Unless it `creates` the database (and may change it), a SQLite file that does not
    /// exist is refused rather than created, and an existing one keeps its journal mode.
    fn connect(&self, creates: bool) -> Result<(Manager, Conn)> {
        let mut target = Target::parse(&self.url)?;
        target.bound_connect_time(self.connection_timeout);
        if !creates {
            if let Some(path) = target.refuse_to_create() {
                return Err(Error::DatabaseNotFound { path });
            }
        }
        let manager = Manager {
            target,
            sqlite: SqliteSettings {
                busy_timeout: self.busy_timeout,
                synchronous: self.synchronous,
            },
            anchor: None,
        };
        let first = manager.connect_first(creates)?;
        Ok((manager, first))
    }
}

impl ChatStore {
    /// Opens the store at `url` with default options, running any pending migrations first.
    ///
    /// URLs: `sqlite://path/to/chat.db` (or `sqlite:path`; percent-decoded, as sqlx reads it), a
    /// `file:` URI (as SQLite reads it), a bare file path (taken as it is, without parameters),
    /// `:memory:` (or `sqlite::memory:`) for a private in-memory database,
    /// `postgres://…`/`postgresql://…` (libpq parameters such as `sslmode=require` pass through,
    /// so managed and serverless PostgreSQL work), and `mysql://…`/`mariadb://…` (Diesel's
    /// parameters: `ssl_mode`, `ssl_ca`, `unix_socket`). Any other scheme is
    /// [`Error::UnsupportedUrl`], never a file name: a file whose name has a colon is given as
    /// `sqlite://my:chat.db` or `file:my:chat.db`.
    ///
    /// The SQLite URLs take these parameters, and refuse any other by name:
    /// - `mode=rwc` (the default: created if missing), `mode=rw` (the file must exist),
    ///   `mode=ro` (read-only: the file must exist, and every write is [`Error::ReadOnly`]);
    ///   `mode=memory`: an in-memory database of that name, shared by the stores of this process
    ///   that name it while one is open;
    /// - `immutable=1` (or `0`): the file is on read-only media; no locks, read-only;
    /// - `cache=private` (the default); `cache=shared` only for in-memory databases (on a file
    ///   its table locks fail at once instead of waiting).
    ///
    /// `vfs` and SQLite's other URI parameters are refused: the store's lock file and WAL need
    /// the default VFS and locking.
    ///
    /// ```
    /// use chatstore::{ChatStore, Error};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("chat.db");
    /// let missing = ChatStore::open(&format!("sqlite://{}?mode=rw", path.display()));
    /// assert!(matches!(missing, Err(Error::Connect(_))) && !path.exists());
    /// ChatStore::open(&format!("sqlite://{}?mode=rwc", path.display()))?;
    /// let typo = ChatStore::open("sqlte:chat.db").unwrap_err();
    /// assert!(matches!(typo, Error::UnsupportedUrl(_)));
    /// let unknown = ChatStore::open(&format!("sqlite://{}?vfs=unix-none", path.display()));
    /// assert!(unknown.unwrap_err().to_string().contains("\"vfs\""));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// ```
    /// use chatstore::ChatStore;
    ///
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("chat.db");
    /// let store = ChatStore::open(&format!("sqlite://{}", path.display()))?;
    /// // A store is cheap to clone: open it once at start-up, hand clones to each handler.
    /// let for_a_handler = store.clone();
    /// # drop(for_a_handler);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`StoreBuilder::open`].
    pub fn open(url: &str) -> Result<ChatStore> {
        StoreBuilder::new(url).open()
    }

    /// Options for opening a store at `url`: pool size, timeouts, limits, durability.
    ///
    /// ```
    /// use chatstore::{ChatStore, Synchronous};
    ///
    /// let store = ChatStore::builder(":memory:")
    ///     .max_page_size(50)
    ///     .synchronous(Synchronous::Normal)
    ///     .open()?;
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn builder(url: impl Into<String>) -> StoreBuilder {
        StoreBuilder::new(url)
    }

    fn from_parts(
        pool: Pool<Manager>,
        backend: Backend,
        write_gate: WriteGate,
        limits: Limits,
        migrated: migrations::Migrated,
    ) -> Self {
        ChatStore {
            pool,
            backend,
            limits,
            write_gate,
            migrated: migrated.applied.into(),
            resumed: migrated.resumed.into(),
            citus: false,
        }
    }

    /// The database system behind this store.
    ///
    /// ```
    /// use chatstore::{Backend, ChatStore};
    ///
    /// assert_eq!(ChatStore::open(":memory:")?.backend(), Backend::Sqlite);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The limits this store enforces: content and metadata size, metadata depth, page and
    /// window sizes (see [`Limits`]).
    ///
    /// ```
    /// let store = chatstore::ChatStore::builder(":memory:").max_window(500).open()?;
    /// assert_eq!(store.limits().max_window(), 500);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn limits(&self) -> Limits {
        self.limits
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

    /// Of [`migrations_applied_at_open`](Self::migrations_applied_at_open), those that a run cut
    /// short (a process killed while it migrated, a lost connection) had left half applied, and
    /// that this open completed. Always empty on SQLite and PostgreSQL, whose migration runs are
    /// transactions; on MySQL, which commits each DDL statement, every statement of a migration is
    /// skipped if the object it makes is already there, so the next open carries on where the
    /// interrupted run stopped. (With the `tracing` feature, each is also a `warn` event.)
    ///
    /// ```
    /// let store = chatstore::ChatStore::open(":memory:")?;
    /// assert!(store.migrations_resumed_at_open().is_empty(), "SQLite's runs are transactions");
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn migrations_resumed_at_open(&self) -> &[String] {
        &self.resumed
    }

    /// Runs `f` as the public operation `operation`: in a span, with the `tracing` feature (see
    /// `trace.rs`); a plain call of `f` without it.
    fn op<T: Recorded>(&self, operation: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        trace::op(operation, Some(self.backend), f)
    }

    /// Runs `f` on a pooled connection, on this thread; a connection found lost is dropped from
    /// the pool.
    fn with_conn<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        self.pool.run(f)
    }

    /// Runs `f` in a write transaction on a pooled connection, after this store's earlier writers.
    fn write<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        self.write_in_autocommit(|conn| write_transaction(conn, f))
    }

    /// Runs `f` on a pooled connection, after this store's earlier writers, in no transaction:
    /// for the append, which is one statement on PostgreSQL and begins its write transaction
    /// itself elsewhere (see `append::Batch::write`).
    fn write_in_autocommit<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let _turn = self.write_gate.turn()?;
        self.with_conn(f)
    }

    /// Creates a conversation owned by `user`. The title is trimmed; `None` or a blank title means
    /// no title.
    ///
    /// ```
    /// # use chatstore::{ChatStore, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, Some("  Groceries "))?;
    /// assert_eq!(conv.title.as_deref(), Some("Groceries"));
    /// assert_eq!(conv.message_count, 0);
    /// assert_eq!(store.create_conversation(&alice, Some("   "))?.title, None);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidTitle`]; connection and database errors.
    pub fn create_conversation(&self, user: &UserId, title: Option<&str>) -> Result<Conversation> {
        self.op("create_conversation", || {
            let new = match title {
                Some(title) => NewConversation::new().with_title(title),
                None => NewConversation::new(),
            };
            self.create(user, new)
        })
    }

    /// Creates a conversation owned by `user` with tags and metadata as well as a title, in one
    /// write: a [`NewConversation`].
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewConversation, Page, Tag, UserId};
    /// # use serde_json::json;
    /// # let store = ChatStore::open(":memory:")?;
    /// let alice = UserId::new("alice")?;
    /// let home = Tag::new("home")?;
    /// let conv = store.create_conversation_with(
    ///     &alice,
    ///     NewConversation::new()
    ///         .with_title("Kitchen renovation")
    ///         .with_tag(home.clone())
    ///         .with_metadata(json!({ "project": 42 })),
    /// )?;
    /// assert_eq!(conv.tags, [home.clone()]);
    /// assert_eq!(conv.metadata, Some(json!({ "project": 42 })));
    /// let tagged = store.list_conversations_tagged(&alice, &home, Page::first(20))?;
    /// assert_eq!(tagged.conversations, [conv]);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidTitle`]; [`Error::TooManyTags`]; [`Error::InvalidMetadata`],
    /// [`Error::MetadataTooLarge`]; connection and database errors. Nothing is written then.
    pub fn create_conversation_with(
        &self,
        user: &UserId,
        new: NewConversation<'_>,
    ) -> Result<Conversation> {
        self.op("create_conversation", || self.create(user, new))
    }

    /// [`create_conversation_with`](Self::create_conversation_with), in its caller's span.
    fn create(&self, user: &UserId, new: NewConversation<'_>) -> Result<Conversation> {
        let (title, tags, metadata) = new.into_parts();
        let title = parse_optional(title.as_deref())?;
        let tags = Tag::set_of(tags)?;
        if let Some(metadata) = &metadata {
            models::metadata_text(metadata, self.limits.max_content_bytes)?;
        }
        let now = models::now();
        let conversation = Conversation {
            id: ConversationId::generate(),
            user_id: user.clone(),
            title: title.map(|t| t.as_str().to_owned()),
            created_at: now,
            updated_at: now,
            message_count: 0,
            branch: BranchId::ROOT,
            pinned: false,
            archived: false,
            tags,
            metadata,
            usage: Usage::ZERO,
        };
        let row = NewConversationRow::of(user, &conversation);
        self.write(|conn| {
            conversations::insert(conn, &row)?;
            tag_rows::insert(conn, user, &conversation)
        })?;
        Ok(conversation)
    }

    /// The conversation `id`, if `user` owns it.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Error, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// let (alice, bob) = (UserId::new("alice")?, UserId::new("bob")?);
    /// let conv = store.create_conversation(&alice, Some("Groceries"))?;
    /// assert_eq!(store.conversation(&alice, conv.id)?, conv);
    /// // Someone else's conversation is indistinguishable from a missing one.
    /// assert!(matches!(store.conversation(&bob, conv.id), Err(Error::NotFound)));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if it does not exist or another user owns it; connection and database
    /// errors.
    pub fn conversation(&self, user: &UserId, id: ConversationId) -> Result<Conversation> {
        self.op("conversation", || self.find_conversation(user, id))
    }

    /// [`conversation`](Self::conversation), for the operations that need it.
    fn find_conversation(&self, user: &UserId, id: ConversationId) -> Result<Conversation> {
        self.with_conn(|conn| conversations::get(conn, user, id))
    }

    /// Sets (or, with `None` or a blank title, clears) the title, and bumps `updated_at`.
    ///
    /// ```
    /// # use chatstore::{ChatStore, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// let renamed = store.rename_conversation(&alice, conv.id, Some("Trip to Lisbon"))?;
    /// assert_eq!(renamed.title.as_deref(), Some("Trip to Lisbon"));
    /// assert!(renamed.updated_at >= conv.updated_at);
    /// assert_eq!(store.rename_conversation(&alice, conv.id, None)?.title, None);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
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
                if conversations::rename(conn, user, id, title, now)? == 0 {
                    return Err(Error::NotFound);
                }
                conversations::get(conn, user, id)
            })
        })
    }

    /// Sets (or, with `None`, clears) the conversation's metadata: the application's JSON object
    /// about it (a project id, the model chosen, a system prompt's version), returned with it by
    /// every read. Checked as message metadata is: an object, at most
    /// [`MAX_METADATA_DEPTH`](crate::MAX_METADATA_DEPTH) levels deep and at most
    /// [`Limits::max_metadata_bytes`] as JSON text. `updated_at` is kept: it is not activity.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Error, UserId};
    /// # use serde_json::json;
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// let set = store.set_conversation_metadata(&alice, conv.id, Some(&json!({ "model": "m-1" })))?;
    /// assert_eq!(store.conversation(&alice, conv.id)?.metadata, Some(json!({ "model": "m-1" })));
    /// assert_eq!(set.updated_at, conv.updated_at);
    /// let refused = store.set_conversation_metadata(&alice, conv.id, Some(&json!([1, 2])));
    /// assert!(matches!(refused, Err(Error::InvalidMetadata)));
    /// assert_eq!(store.set_conversation_metadata(&alice, conv.id, None)?.metadata, None);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidMetadata`], [`Error::MetadataTooLarge`] (nothing is changed);
    /// [`Error::NotFound`] if the user owns no such conversation; connection and database errors.
    pub fn set_conversation_metadata(
        &self,
        user: &UserId,
        id: ConversationId,
        metadata: Option<&serde_json::Value>,
    ) -> Result<Conversation> {
        self.op("set_conversation_metadata", || {
            let text = metadata
                .map(|m| models::metadata_text(m, self.limits.max_content_bytes))
                .transpose()?;
            self.write(|conn| {
                if conversations::set_metadata(conn, user, id, text.as_deref())? == 0 {
                    return Err(Error::NotFound);
                }
                conversations::get(conn, user, id)
            })
        })
    }

    /// Deletes the conversation and all its messages, atomically.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Error, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// store.append_message(&alice, conv.id, NewMessage::user("forget me"))?;
    /// store.delete_conversation(&alice, conv.id)?;
    /// assert!(matches!(store.conversation(&alice, conv.id), Err(Error::NotFound)));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; connection and database errors.
    pub fn delete_conversation(&self, user: &UserId, id: ConversationId) -> Result<()> {
        self.op("delete_conversation", || {
            match self.write(|conn| conversations::delete(conn, user, id))? {
                0 => Err(Error::NotFound),
                _ => Ok(()),
            }
        })
    }

    /// Appends one message; see [`append_messages`](Self::append_messages).
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, Role, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// let stored = store.append_message(&alice, conv.id, NewMessage::user("Add oat milk"))?;
    /// assert_eq!((stored.seq, stored.role), (1, Role::User));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
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
            let stored = self.append(user, conversation, &[message], None)?;
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
    /// - [`Error::NotFound`] if the user owns no such conversation, whatever the batch's ids (so
    ///   that a known message id never tells another user's conversation from a missing one);
    /// - [`Error::Busy`] if another process kept SQLite's write lock past the busy timeout;
    /// - connection and database errors (the transaction is rolled back).
    pub fn append_messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        batch: &[NewMessage<'_>],
    ) -> Result<Vec<Message>> {
        self.op("append_messages", || {
            self.append(user, conversation, batch, None)
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
            let expected = append::Expected {
                seq: last_seq,
                branch: None,
            };
            self.append(user, conversation, batch, Some(expected))
        })
    }

    /// Appends the batch only if `branch` is still the conversation's active branch and its last
    /// seq is still `last_seq`: [`append_if_last_seq`](Self::append_if_last_seq) for a writer
    /// that must not extend another branch than the one it read — a reply generated for one
    /// version of the history, while someone else edited a message, regenerated a reply or
    /// switched branches ([`MessagePage::branch`](crate::MessagePage::branch) and
    /// [`Conversation::branch`](crate::Conversation::branch) say which branch a read showed).
    /// Otherwise as [`append_messages`](Self::append_messages); a retry of a stored batch (by its
    /// ids) returns it.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Error, NewMessage, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let conv = store.create_conversation(&user, None)?;
    /// let asked = store.append_message(&user, conv.id, NewMessage::user("Lisbon or Porto?"))?;
    /// let seen = store.messages(&user, conv.id, Window::Latest(20))?;
    /// // Meanwhile, in another tab, the question is edited: a new branch, now active.
    /// store.append_sibling(&user, conv.id, asked.id, &[NewMessage::user("Lisbon or Faro?")])?;
    /// let reply = [NewMessage::assistant("Porto.")];
    /// let result = store.append_if_last_seq_on(&user, conv.id, seen.branch, seen.total, &reply);
    /// assert!(matches!(result, Err(Error::BranchSwitched { .. })));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BranchSwitched`] if another branch is active, [`Error::Conflict`] if the branch's
    /// last seq is not `last_seq` — nothing is written; otherwise as
    /// [`append_messages`](Self::append_messages).
    pub fn append_if_last_seq_on(
        &self,
        user: &UserId,
        conversation: ConversationId,
        branch: BranchId,
        last_seq: i64,
        batch: &[NewMessage<'_>],
    ) -> Result<Vec<Message>> {
        self.op("append_if_last_seq_on", || {
            let expected = append::Expected {
                seq: last_seq,
                branch: Some(branch),
            };
            self.append(user, conversation, batch, Some(expected))
        })
    }

    /// Validates the batch, then writes it — unless it is a retry of a stored batch — if the
    /// conversation is what `expected` says (when given).
    fn append(
        &self,
        user: &UserId,
        conversation: ConversationId,
        batch: &[NewMessage<'_>],
        expected: Option<append::Expected>,
    ) -> Result<Vec<Message>> {
        let batch = append::Batch::new(user, conversation, batch, self.limits.max_content_bytes)?;
        if batch.is_empty() {
            self.with_conn(|conn| batch.check_unwritten(conn, expected))?;
            return Ok(Vec::new());
        }
        let now = models::now().naive_utc();
        let one_statement = !self.citus;
        let written =
            self.write_in_autocommit(|conn| batch.write(conn, expected, now, one_statement))?;
        Ok(batch.stored(written))
    }

    /// Takes back the newest `n` messages of the conversation (an undo, the Agents SDK's
    /// `pop_item`), atomically, and returns them oldest first: fewer if it holds fewer, none for
    /// `n` = 0. The conversation's message count goes down by as many, its `updated_at` moves to
    /// now, and the search index forgets them. The next append takes the first seq they left
    /// free. `n` is capped at [`StoreBuilder::max_window`], as a window is.
    ///
    /// The newest messages when the call runs are taken: an append committed just before it is
    /// among them. To take back exactly what you read, truncate after the seq you keep
    /// ([`truncate_messages`](Self::truncate_messages)).
    ///
    /// A retried append (by client ids, see [`append_messages`](Self::append_messages)) of
    /// messages that were taken back stores them again, as new.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let conv = store.create_conversation(&user, None)?;
    /// store.append_message(&user, conv.id, NewMessage::user("Add oat milk"))?;
    /// store.append_message(&user, conv.id, NewMessage::assistant("Added oat milk."))?;
    /// let undone = store.pop_messages(&user, conv.id, 1)?;
    /// assert_eq!(undone[0].content, "Added oat milk.");
    /// let again = store.append_message(&user, conv.id, NewMessage::assistant("Done!"))?;
    /// assert_eq!(again.seq, 2);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; [`Error::Busy`], connection and
    /// database errors (nothing is removed).
    pub fn pop_messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        n: u32,
    ) -> Result<Vec<Message>> {
        self.op("pop_messages", || {
            let n = i64::from(n.min(self.limits.max_window));
            let keep = |count: i64| Ok((count - n).max(0));
            self.truncate(user, conversation, keep, true)
                .map(|removed| removed.messages)
        })
    }

    /// Removes every message of the conversation after seq `after_seq` (0: all of them),
    /// atomically, and returns them oldest first; none if it ends at or before `after_seq`. As
    /// [`pop_messages`](Self::pop_messages) for the count, `updated_at`, the search index and
    /// the next seq. Unlike a pop it names what it keeps, so an append that came in meanwhile is
    /// removed with the rest rather than in their place.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let conv = store.create_conversation(&user, None)?;
    /// for text in ["one", "two", "three"] {
    ///     store.append_message(&user, conv.id, NewMessage::user(text))?;
    /// }
    /// let removed = store.truncate_messages(&user, conv.id, 1)?;
    /// assert_eq!(removed.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3]);
    /// assert_eq!(store.conversation(&user, conv.id)?.message_count, 1);
    /// assert!(store.truncate_messages(&user, conv.id, 5)?.is_empty());
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidSeq`] for a negative `after_seq`; [`Error::WindowTooLarge`] if more
    /// messages than a window holds ([`StoreBuilder::max_window`]) would be removed (use
    /// [`clear_messages`](Self::clear_messages), which returns a count); [`Error::NotFound`] if
    /// the user owns no such conversation; [`Error::Busy`], connection and database errors.
    /// Nothing is removed on any error.
    pub fn truncate_messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        after_seq: i64,
    ) -> Result<Vec<Message>> {
        self.op("truncate_messages", || {
            if after_seq < 0 {
                return Err(Error::InvalidSeq(after_seq));
            }
            let max = self.limits.max_window;
            let keep = |count: i64| match count - after_seq {
                removed if removed > i64::from(max) => Err(Error::WindowTooLarge {
                    messages: removed,
                    max,
                }),
                _ => Ok(after_seq),
            };
            self.truncate(user, conversation, keep, true)
                .map(|removed| removed.messages)
        })
    }

    /// Removes every message of the conversation and keeps the conversation (its id, title and
    /// `created_at`), atomically; returns how many were removed. The count goes to 0, `updated_at`
    /// moves to now, the search index forgets them, and the next append is seq 1 again.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let conv = store.create_conversation(&user, Some("Scratch"))?;
    /// store.append_message(&user, conv.id, NewMessage::user("draft"))?;
    /// assert_eq!(store.clear_messages(&user, conv.id)?, 1);
    /// let cleared = store.conversation(&user, conv.id)?;
    /// assert_eq!((cleared.title.as_deref(), cleared.message_count), (Some("Scratch"), 0));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; [`Error::Busy`], connection and
    /// database errors (nothing is removed).
    pub fn clear_messages(&self, user: &UserId, conversation: ConversationId) -> Result<u64> {
        self.op("clear_messages", || {
            let removed = self.truncate(user, conversation, |_| Ok(0), false)?;
            Ok(removed.count)
        })
    }

    /// Removes the messages after the seq `keep` gives for the conversation's count, in a write
    /// transaction.
    fn truncate(
        &self,
        user: &UserId,
        conversation: ConversationId,
        keep: impl FnOnce(i64) -> Result<i64>,
        returning: bool,
    ) -> Result<truncate::Removed> {
        let now = models::now().naive_utc();
        self.write(|conn| truncate::truncate(conn, user, conversation, keep, returning, now))
    }

    /// Copies the conversation's messages up to and including `through` into a new conversation
    /// of the same user (LibreChat's fork, "branch in a new chat"), in one transaction, and
    /// returns it. The copy has new ids (conversation and messages) and the source's title, tags
    /// and metadata (it is neither pinned nor archived); its
    /// messages keep their seqs, roles, content, metadata and times, and its `created_at` is the
    /// source's, where the copied history begins; its `updated_at` is now. The two
    /// conversations are independent from then on, and the search index finds both.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let conv = store.create_conversation(&user, Some("Trip"))?;
    /// let question = store.append_message(&user, conv.id, NewMessage::user("Lisbon or Porto?"))?;
    /// store.append_message(&user, conv.id, NewMessage::assistant("Lisbon."))?;
    /// let fork = store.fork_conversation(&user, conv.id, question.id)?;
    /// let copied = store.messages(&user, fork.id, Window::All)?.messages;
    /// assert_eq!((fork.title.as_deref(), fork.message_count), (Some("Trip"), 1));
    /// assert_eq!(copied[0].content, "Lisbon or Porto?");
    /// assert_ne!(copied[0].id, question.id);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation or `through` is not one of its
    /// messages (the two look alike); [`Error::Busy`], connection and database errors (nothing is
    /// written).
    pub fn fork_conversation(
        &self,
        user: &UserId,
        conversation: ConversationId,
        through: MessageId,
    ) -> Result<Conversation> {
        self.op("fork_conversation", || {
            let now = models::now().naive_utc();
            let id = ConversationId::generate();
            self.write(|conn| fork::fork(conn, user, conversation, through, id, now))
        })
    }

    /// Writes `batch` as a sibling of the message `of`, on a new branch that shares everything
    /// before `of`, and makes that branch the conversation's active one: an edit (a new version of
    /// a user message, with the replies that follow it) or a regeneration (another reply). The old
    /// versions stay, on their branches: [`siblings`](Self::siblings) lists them, and
    /// [`switch_branch`](Self::switch_branch) goes back. The messages get the seqs `of` and after;
    /// the conversation's message count becomes the new branch's length, and its `updated_at`
    /// moves to now. `of` may be on any branch.
    ///
    /// Everything an append guarantees holds: the batch is validated first and written all or
    /// nothing, and a batch with client ids is safe to retry (a stored one is returned as stored).
    /// An empty batch writes nothing.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let conv = store.create_conversation(&user, None)?;
    /// let asked = store.append_message(&user, conv.id, NewMessage::user("Lisbon or Porto?"))?;
    /// let first = store.append_message(&user, conv.id, NewMessage::assistant("Lisbon."))?;
    /// // Regenerate the reply: a sibling of the first one, on a new active branch.
    /// let second = store.append_sibling(&user, conv.id, first.id, &[NewMessage::assistant("Porto.")])?;
    /// assert_eq!(second[0].seq, 2);
    /// let now = store.messages(&user, conv.id, Window::All)?.messages;
    /// assert_eq!((now[0].id, now[1].content.as_str()), (asked.id, "Porto."));
    /// let versions = store.siblings(&user, conv.id, second[0].id)?;
    /// assert_eq!((versions.position, versions.siblings.len()), (1, 2)); // "2 / 2"
    /// // Back to the first reply.
    /// store.switch_branch(&user, conv.id, versions.siblings[0].branch)?;
    /// assert_eq!(store.messages(&user, conv.id, Window::All)?.messages[1].content, "Lisbon.");
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`append_messages`](Self::append_messages), and [`Error::NotFound`] if `of` is not one
    /// of the conversation's messages (as for someone else's conversation).
    pub fn append_sibling(
        &self,
        user: &UserId,
        conversation: ConversationId,
        of: MessageId,
        batch: &[NewMessage<'_>],
    ) -> Result<Vec<Message>> {
        self.op("append_sibling", || {
            let batch =
                append::Batch::new(user, conversation, batch, self.limits.max_content_bytes)?;
            if batch.is_empty() {
                self.with_conn(|conn| batch.check_unwritten(conn, None))?;
                return Ok(Vec::new());
            }
            let now = models::now().naive_utc();
            self.write(|conn| branch::append_sibling(conn, &batch, (user, conversation), of, now))
        })
    }

    /// Makes `branch` the conversation's active branch — the one its reads, context windows and
    /// appends follow — and returns the conversation (its message count is the branch's length;
    /// its `updated_at` moves to now). The branch to show a sibling is in
    /// [`Sibling::branch`](crate::Sibling::branch); [`branches`](Self::branches) lists them all.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation or it has no such branch;
    /// connection and database errors.
    pub fn switch_branch(
        &self,
        user: &UserId,
        conversation: ConversationId,
        branch: BranchId,
    ) -> Result<Conversation> {
        self.op("switch_branch", || {
            let now = models::now().naive_utc();
            self.write(|conn| branch::switch(conn, user, conversation, branch, now))
        })
    }

    /// The message `of` and its siblings — every version of it, on every branch — oldest first,
    /// each with the branch that shows it, and where `of` is among them: what a "< 2 / 3 >"
    /// control under a message needs. A message never edited or regenerated is alone.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let conv = store.create_conversation(&user, None)?;
    /// let typo = store.append_message(&user, conv.id, NewMessage::user("Add oat mlik"))?;
    /// let fixed = store.append_sibling(&user, conv.id, typo.id, &[NewMessage::user("Add oat milk")])?;
    /// let versions = store.siblings(&user, conv.id, typo.id)?;
    /// assert_eq!(versions.position, 0);
    /// assert_eq!(versions.siblings[1].message.id, fixed[0].id);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation or `of` is not one of its
    /// messages; connection and database errors.
    pub fn siblings(
        &self,
        user: &UserId,
        conversation: ConversationId,
        of: MessageId,
    ) -> Result<Siblings> {
        self.op("siblings", || {
            self.with_conn(|conn| branch::siblings(conn, user, conversation, of))
        })
    }

    /// The conversation's branches, by id: each with the branch it forks from, the last seq they
    /// share, its length, its times, and whether it is active. A conversation never edited has
    /// one, the root.
    ///
    /// ```
    /// # use chatstore::{BranchId, ChatStore, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let conv = store.create_conversation(&user, None)?;
    /// let reply = store.append_messages(&user, conv.id, &[NewMessage::user("hi"), NewMessage::assistant("hello")])?;
    /// store.append_sibling(&user, conv.id, reply[1].id, &[NewMessage::assistant("hey")])?;
    /// let branches = store.branches(&user, conv.id)?;
    /// assert_eq!(branches.len(), 2);
    /// assert_eq!((branches[1].parent, branches[1].fork_seq, branches[1].length), (Some(BranchId::ROOT), 1, 2));
    /// assert!(branches[1].active && !branches[0].active);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; connection and database errors.
    pub fn branches(&self, user: &UserId, conversation: ConversationId) -> Result<Vec<Branch>> {
        self.op("branches", || {
            self.with_conn(|conn| branch::list(conn, user, conversation))
        })
    }

    /// Deletes a branch, atomically: the messages only it holds go (and leave the search index);
    /// those it shares — with the branch it forks from, or with branches that fork from it — stay.
    /// A deleted active branch gives way to the branch changed last. Returns the conversation.
    ///
    /// ```
    /// # use chatstore::{ChatStore, Error, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let conv = store.create_conversation(&user, None)?;
    /// let first = store.append_message(&user, conv.id, NewMessage::user("draft one"))?;
    /// let second = store.append_sibling(&user, conv.id, first.id, &[NewMessage::user("draft two")])?;
    /// let after = store.delete_branch(&user, conv.id, second[0].branch)?;
    /// assert!(after.branch.is_root());
    /// assert!(matches!(store.delete_branch(&user, conv.id, after.branch), Err(Error::LastBranch)));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::LastBranch`] for the conversation's only branch; [`Error::NotFound`] if the user
    /// owns no such conversation or branch; connection and database errors (nothing is deleted).
    pub fn delete_branch(
        &self,
        user: &UserId,
        conversation: ConversationId,
        branch: BranchId,
    ) -> Result<Conversation> {
        self.op("delete_branch", || {
            let now = models::now().naive_utc();
            self.write(|conn| branch::delete(conn, user, conversation, branch, now))
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
    /// A window holds at most [`StoreBuilder::max_window`] messages (10,000 by default): a larger
    /// `Latest`, `Before` or `After` is cut to it, and `Window::All` on a longer history is
    /// refused (see there).
    ///
    /// # Errors
    /// [`Error::NotFound`] if the user owns no such conversation; [`Error::WindowTooLarge`] for
    /// `Window::All` on a history longer than the cap; connection and database errors.
    pub fn messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        window: Window,
    ) -> Result<MessagePage> {
        self.op("messages", || {
            let max = self.limits.max_window;
            let (window, read) = window.capped(max);
            let found = self
                .with_conn(|conn| messages::window(conn, user, conversation, read.bounds()))?
                .ok_or(Error::NotFound)?;
            let (total, messages) = (found.count, found.messages);
            if window == Window::All && total > i64::from(max) {
                return Err(Error::WindowTooLarge {
                    messages: total,
                    max,
                });
            }
            Ok(MessagePage::new(messages, window, total, found.branch))
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
            let budget = context::Budget {
                budget,
                options: ContextOptions::default(),
                cost: crate::char_cost,
            };
            self.with_conn(|conn| context::read(conn, user, conversation, budget))
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
            let budget = context::Budget {
                budget,
                options,
                cost,
            };
            self.with_conn(|conn| context::read(conn, user, conversation, budget))
        })
    }

    /// Full-text search over the user's messages, in all their conversations or in one: every
    /// word of the query must occur, case and Latin accents ignored (see [`SearchQuery`] for phrases and
    /// prefixes). Each hit comes with its conversation's title and a snippet with the matches
    /// marked. Only the user's own messages are ever searched, whatever the query holds.
    ///
    /// Every message committed before the search began is found: messages still waiting for the
    /// search index are indexed first (see [`index_pending`](ChatStore::index_pending)). A store
    /// that cannot write (opened read-only, or on a standby) searches what the index holds.
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
            let search = search::Search::new(query, self.limits.max_page_size)?;
            match self.catch_up_index(Some(user)) {
                // A store that cannot write (a read-only file, a standby) searches what the
                // index holds: what waits is found once a writer indexes it.
                Ok(_) | Err(Error::ReadOnly { .. }) => {}
                Err(e) => return Err(e),
            }
            self.with_conn(|conn| conn::snapshot(conn, |conn| search.run(conn, user)))
        })
    }

    /// Indexes every message that waits for the search index, and returns how many it indexed.
    ///
    /// Appends do not write the search index: it catches up afterwards, a batch per transaction,
    /// so that an append costs what storing the message costs. A search catches up first by
    /// itself (the user's messages on PostgreSQL and MySQL, everyone's on SQLite), so it always
    /// finds every message committed before it began; calling this from an idle task, or after a
    /// large import, takes that work off the next searches. A message waiting for the index is
    /// safe: it is stored, and found again after a crash.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, SearchQuery, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let user = UserId::new("alice")?;
    /// let conv = store.create_conversation(&user, None)?;
    /// store.append_message(&user, conv.id, NewMessage::user("buy oat milk"))?;
    /// assert_eq!(store.index_pending()?, 1);
    /// assert_eq!(store.index_pending()?, 0);
    /// let found = store.search_messages(&user, &SearchQuery::new("oat"))?;
    /// assert_eq!(found.hits.len(), 1);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// Connection and database errors. Each batch is its own transaction: an error leaves the
    /// batches before it indexed.
    pub fn index_pending(&self) -> Result<u64> {
        self.op("index_pending", || self.catch_up_index(None))
    }

    /// Brings the search index up to date with every message committed before the call (on the
    /// servers, only `user`'s if given), a batch per write transaction; the number indexed. A
    /// look-up first, so that a search with nothing waiting takes no write lock.
    fn catch_up_index(&self, user: Option<&UserId>) -> Result<u64> {
        use crate::queries::search::{has_unindexed, index_unindexed, INDEX_BATCH};
        if !self.with_conn(|conn| has_unindexed(conn, user))? {
            return Ok(0);
        }
        let mut indexed = 0u64;
        loop {
            let batch = self.write(|conn| index_unindexed(conn, user, INDEX_BATCH))?;
            indexed += batch as u64;
            // A short batch found nothing more waiting when it ran.
            if (batch as i64) < INDEX_BATCH {
                return Ok(indexed);
            }
        }
    }

    /// Erases everything `user` owns — every conversation and message — in one statement, for
    /// account deletion. Other users' data is untouched.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// let (alice, bob) = (UserId::new("alice")?, UserId::new("bob")?);
    /// let conv = store.create_conversation(&alice, None)?;
    /// store.append_message(&alice, conv.id, NewMessage::user("hi"))?;
    /// store.create_conversation(&bob, None)?;
    /// let deleted = store.delete_user_data(&alice)?;
    /// assert_eq!((deleted.conversations, deleted.messages), (1, 1));
    /// assert_eq!(store.stats()?.users, 1, "bob's data stays");
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// Connection and database errors (nothing is deleted then).
    pub fn delete_user_data(&self, user: &UserId) -> Result<DeletedCounts> {
        self.op("delete_user_data", || {
            let counts = self.write(|conn| conversations::delete_all(conn, user))?;
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

    /// The token usage of everything `user` keeps: the totals of all their conversations
    /// (archived ones included), in one statement over their conversations' rows, which keep
    /// their messages' sums ([`Conversation::usage`]). [`Usage::ZERO`] for a user with none.
    ///
    /// It counts what is stored: a message taken back, a deleted branch or conversation takes its
    /// tokens out of the totals. A bill that must outlive deletions belongs in the application's
    /// own ledger, written beside each append.
    ///
    /// ```
    /// # use chatstore::{ChatStore, NewMessage, Usage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// let alice = UserId::new("alice")?;
    /// for topic in ["Groceries", "Trip"] {
    ///     let conv = store.create_conversation(&alice, Some(topic))?.id;
    ///     let reply = NewMessage::assistant("Sure.").with_usage(Usage::new(100, 10));
    ///     store.append_message(&alice, conv, reply)?;
    /// }
    /// assert_eq!(store.usage(&alice)?, Usage::new(200, 20));
    /// assert_eq!(store.usage(&UserId::new("bob")?)?, Usage::ZERO);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// Connection and database errors.
    pub fn usage(&self, user: &UserId) -> Result<Usage> {
        self.op("usage", || {
            self.with_conn(|conn| conversations::user_usage(conn, user))
        })
    }

    /// Everything `user` owns, as records to back up or move to another database: each
    /// conversation, then its branches if it has branched, then its messages, read page by page
    /// (see [`ExportItem`] for the order, [`UserExport`] for the pages and for what an export sees
    /// of writes made while it runs). Nothing is read until the iterator is;
    /// [`import_tree`](Self::import_tree) writes a conversation's records back.
    ///
    /// With the `tracing` feature, each page read is an operation `export_user`.
    ///
    /// ```
    /// # use chatstore::{Branch, ChatStore, Conversation, ExportItem, Message, NewMessage, UserId};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// # let conv = store.create_conversation(&alice, Some("Groceries"))?;
    /// # store.append_message(&alice, conv.id, NewMessage::user("Add oat milk"))?;
    /// let copy = ChatStore::open(":memory:")?;
    /// // The conversation being read, with its branches and messages so far.
    /// let mut reading: Option<(Conversation, Vec<Branch>, Vec<Message>)> = None;
    /// let mut records = store.export_user(&alice).map(Some).chain([None]);
    /// while let Some(item) = records.next() {
    ///     match item.transpose()? {
    ///         Some(ExportItem::Branch(b)) => reading.as_mut().unwrap().1.push(b),
    ///         Some(ExportItem::Message(m)) => reading.as_mut().unwrap().2.push(m),
    ///         next => {
    ///             if let Some((c, branches, messages)) = reading.take() {
    ///                 copy.import_tree(&alice, &c, &branches, &messages)?;
    ///             }
    ///             if let Some(ExportItem::Conversation(c)) = next {
    ///                 reading = Some((c, Vec::new(), Vec::new()));
    ///             }
    ///         }
    ///     }
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

    /// The ids of up to `limit` of the user's conversations in id order after `after`: a page of
    /// an export.
    pub(crate) fn export_conversations(
        &self,
        user: &UserId,
        after: Option<ConversationId>,
        limit: u32,
    ) -> Result<Vec<ConversationId>> {
        self.op("export_user", || {
            self.with_conn(|conn| conversations::ids_after(conn, user, after, i64::from(limit)))
        })
    }

    /// The user's conversation `conversation` as an export reaches it, read in one statement;
    /// `None` if it is gone (deleted since it was listed).
    pub(crate) fn export_tree(
        &self,
        user: &UserId,
        conversation: ConversationId,
    ) -> Result<Option<ExportedTree>> {
        self.op("export_user", || {
            let found =
                self.with_conn(|conn| branches::with_conversation(conn, user, conversation))?;
            found
                .map(|(row, stored)| ExportedTree::new(row, stored))
                .transpose()
        })
    }

    /// Up to `limit` of the conversation's messages in `run` (a branch's own): a page of an
    /// export; none if the conversation is gone.
    pub(crate) fn export_messages(
        &self,
        user: &UserId,
        conversation: ConversationId,
        run: Segment,
        limit: u32,
    ) -> Result<Vec<Message>> {
        self.op("export_user", || {
            let rows = self.with_conn(|conn| {
                messages::in_segment(conn, user, conversation, run, i64::from(limit))
            })?;
            rows.into_iter().map(MessageRow::into_model).collect()
        })
    }

    /// Writes a conversation that has never branched and its messages exactly as
    /// [`export_user`](Self::export_user) read them: [`import_tree`](Self::import_tree) with no
    /// branches. The rules and errors are that call's; a conversation whose export holds
    /// [`ExportItem::Branch`] records needs them, and that call.
    ///
    /// ```
    /// # use chatstore::{ChatStore, ExportItem, NewMessage, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, Some("Groceries"))?;
    /// store.append_message(&alice, conv.id, NewMessage::user("Add oat milk"))?;
    /// // Moving a conversation to another database, exactly (ids, times, seqs).
    /// let conversation = store.conversation(&alice, conv.id)?;
    /// let messages = store.messages(&alice, conv.id, Window::All)?.messages;
    /// let other = ChatStore::open(":memory:")?;
    /// other.import_conversation(&alice, &conversation, &messages)?;
    /// assert_eq!(other.messages(&alice, conv.id, Window::All)?.messages, messages);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`import_tree`](Self::import_tree); [`Error::InvalidImport`] for a conversation whose
    /// active branch is not the root, or a message on another branch.
    pub fn import_conversation(
        &self,
        user: &UserId,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<()> {
        self.op("import_conversation", || {
            let max_bytes = self.limits.max_content_bytes;
            let checked = import::check_import(user, conversation, &[], messages, max_bytes)?;
            self.write(|conn| checked.write(conn, user, conversation, messages))
        })
    }

    /// Writes a conversation, its branches and its messages exactly as
    /// [`export_user`](Self::export_user) read them — ids, title, tags, metadata, pinned or
    /// archived, times, the tree of branches with
    /// the active one, seqs, roles, content, metadata — in one write transaction, as `user`'s. The
    /// messages are inserted as appends insert them, so the search index holds them at once.
    ///
    /// Everything is checked before anything is written:
    /// - the conversation must be `user`'s, its title trimmed and valid, not both pinned and
    ///   archived, its tags sorted and each once (at most
    ///   [`Tag::MAX_PER_CONVERSATION`]), its metadata within the limits of
    ///   [`set_conversation_metadata`](Self::set_conversation_metadata);
    /// - with no branches (a conversation that never branched), its message count is the number of
    ///   `messages`, all on the root branch; otherwise `branches` are the root first, then the
    ///   others by id, each forking from an older one at a seq that one holds itself, no longer
    ///   than the most a path holds, a retired one kept for exactly what the branches forking from
    ///   it share, and the active one (the conversation's `branch`, marked `active`, live) as long
    ///   as the conversation's message count;
    /// - `messages` are each branch's own, branch by branch, from its fork on, with seqs in order
    ///   and no gap, all the conversation's, distinct ids, content and metadata within the store's
    ///   limits;
    /// - times are as the store writes them: microseconds; the conversation's `created_at` ≤ each
    ///   message's, along each path in seq order, ≤ its `updated_at`; a branch made no earlier
    ///   than the conversation and changed no earlier than made; every time within the years 1 to
    ///   9999, on every backend.
    ///
    /// An operator's call: the conversation id is refused if any user has it.
    ///
    /// ```
    /// # use chatstore::{ChatStore, ExportItem, NewMessage, UserId, Window};
    /// # let store = ChatStore::open(":memory:")?;
    /// # let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// let asked = store.append_message(&alice, conv.id, NewMessage::user("Plan a trip"))?;
    /// store.append_message(&alice, conv.id, NewMessage::assistant("To where?"))?;
    /// // An edit: the question asked again, on a second branch.
    /// store.append_sibling(&alice, conv.id, asked.id, &[NewMessage::user("Plan a trip to Oslo")])?;
    ///
    /// let (mut branches, mut messages) = (Vec::new(), Vec::new());
    /// let mut conversation = None;
    /// for item in store.export_user(&alice) {
    ///     match item? {
    ///         ExportItem::Conversation(c) => conversation = Some(c),
    ///         ExportItem::Branch(b) => branches.push(b),
    ///         ExportItem::Message(m) => messages.push(m),
    ///         _ => {}
    ///     }
    /// }
    /// let other = ChatStore::open(":memory:")?;
    /// other.import_tree(&alice, &conversation.unwrap(), &branches, &messages)?;
    /// assert_eq!(other.branches(&alice, conv.id)?, store.branches(&alice, conv.id)?);
    /// assert_eq!(
    ///     other.messages(&alice, conv.id, Window::All)?.messages,
    ///     store.messages(&alice, conv.id, Window::All)?.messages,
    /// );
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    ///
    /// # Errors
    /// Nothing is written on any error:
    /// - [`Error::InvalidImport`] for records that break the rules above; [`Error::InvalidTitle`],
    ///   [`Error::ContentTooLarge`], [`Error::InvalidContent`], [`Error::InvalidMetadata`],
    ///   [`Error::MetadataTooLarge`] as for the other writes;
    /// - [`Error::AlreadyExists`] if the conversation id is stored;
    /// - [`Error::DuplicateId`] if a message id is stored (in any conversation) or given twice;
    /// - [`Error::Busy`], connection and database errors (the transaction is rolled back).
    pub fn import_tree(
        &self,
        user: &UserId,
        conversation: &Conversation,
        branches: &[Branch],
        messages: &[Message],
    ) -> Result<()> {
        self.op("import_tree", || {
            let max_bytes = self.limits.max_content_bytes;
            let checked = import::check_import(user, conversation, branches, messages, max_bytes)?;
            self.write(|conn| checked.write(conn, user, conversation, messages))
        })
    }

    /// Checks that each table, index and constraint the store relies on is present.
    ///
    /// A MySQL migration that a run cut short left half applied is never reported here as such:
    /// opening the store completed it, before there was a store to ask.
    /// [`migrations_resumed_at_open`](Self::migrations_resumed_at_open) tells whether that
    /// happened (and the admin tool's `verify` says so).
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

impl Recorded for ChatStore {
    fn rows(&self) -> Option<usize> {
        None
    }

    fn backend(&self) -> Option<Backend> {
        Some(self.backend())
    }
}
