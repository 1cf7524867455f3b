//! Options for opening a store, and their defaults. Opening itself is `StoreBuilder::open`, in
//! `store.rs`.

use std::time::Duration;

/// How hard SQLite works to keep a commit through a power cut (`PRAGMA synchronous`). Both settings
/// keep every committed write through a crash of the *process*; they differ on a crash of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Synchronous {
    /// Every commit is synced to disk before it returns: nothing committed is lost, even on power
    /// loss. The default.
    #[default]
    Full,
    /// The WAL is synced at checkpoints only: faster commits, but the last commits before a power
    /// loss or OS crash may roll back (the database stays consistent).
    Normal,
}

/// What opening a store does with the database's schema: set with
/// [`StoreBuilder::migrations`].
///
/// ```
/// use chatstore::{ChatStore, Error, Migrations};
///
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("chat.db");
/// # let url = path.to_str().unwrap();
/// // A process that must not change the schema (a read replica's reader, a release that waits
/// // for its migration step) refuses to open a database that is not up to date:
/// match ChatStore::builder(url).migrations(Migrations::Verify).open() {
///     Err(Error::DatabaseNotFound { .. }) => {} // no such file yet: nothing was created
///     other => panic!("{other:?}"),
/// }
/// ChatStore::open(url)?; // the default, Migrations::Apply, makes it
/// ChatStore::builder(url).migrations(Migrations::Verify).open()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Migrations {
    /// Apply the pending migrations, under a database-wide lock (the default). A database in
    /// chatstore 0.1's layout is upgraded in place.
    #[default]
    Apply,
    /// Change nothing: open only if no migration is pending, and fail with
    /// [`Error::MigrationsPending`](crate::Error::MigrationsPending), listing them, otherwise.
    /// A SQLite file that does not exist is
    /// [`Error::DatabaseNotFound`](crate::Error::DatabaseNotFound), and is not created.
    Verify,
    /// Neither check nor change the schema: for a host that applies chatstore's migrations with
    /// its own tooling. Calls fail with database errors if the schema is not there. A SQLite file
    /// that does not exist is still [`Error::DatabaseNotFound`](crate::Error::DatabaseNotFound).
    Skip,
}

/// The limits a store enforces, as opened: what [`ChatStore::limits`](crate::ChatStore::limits)
/// returns. Set them with the [`StoreBuilder`]; the others are fixed.
///
/// ```
/// use chatstore::{ChatStore, StoreBuilder, MAX_METADATA_DEPTH};
///
/// let store = ChatStore::builder(":memory:").max_content_bytes(64 * 1024).open()?;
/// let limits = store.limits();
/// assert_eq!(limits.max_content_bytes(), 64 * 1024);
/// assert_eq!(limits.max_metadata_bytes(), 64 * 1024);
/// assert_eq!(limits.max_metadata_depth(), MAX_METADATA_DEPTH);
/// assert_eq!(limits.max_page_size(), StoreBuilder::DEFAULT_MAX_PAGE_SIZE);
/// assert_eq!(limits.max_window(), StoreBuilder::DEFAULT_MAX_WINDOW);
/// # Ok::<(), chatstore::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub(crate) max_content_bytes: usize,
    pub(crate) max_page_size: u32,
    pub(crate) max_window: u32,
}

impl Limits {
    /// Largest message content accepted, in bytes of UTF-8
    /// ([`StoreBuilder::max_content_bytes`]).
    pub fn max_content_bytes(&self) -> usize {
        self.max_content_bytes
    }

    /// Largest metadata accepted, in bytes of JSON text: the content limit.
    pub fn max_metadata_bytes(&self) -> usize {
        self.max_content_bytes
    }

    /// Deepest metadata accepted: [`MAX_METADATA_DEPTH`](crate::MAX_METADATA_DEPTH), the same
    /// for every store.
    pub fn max_metadata_depth(&self) -> usize {
        crate::MAX_METADATA_DEPTH
    }

    /// Most conversations in a page of a list, and hits in a page of a search
    /// ([`StoreBuilder::max_page_size`]).
    pub fn max_page_size(&self) -> u32 {
        self.max_page_size
    }

    /// Most messages in a window of history ([`StoreBuilder::max_window`]).
    pub fn max_window(&self) -> u32 {
        self.max_window
    }
}

/// Options for opening a [`ChatStore`](crate::ChatStore); made by
/// [`ChatStore::builder`](crate::ChatStore::builder), opened by [`StoreBuilder::open`].
///
/// ```
/// use std::time::Duration;
/// use chatstore::ChatStore;
///
/// let store = ChatStore::builder(":memory:")
///     .max_content_bytes(64 * 1024)
///     .connection_timeout(Duration::from_secs(5))
///     .open()?;
/// # Ok::<(), chatstore::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .open() is called"]
pub struct StoreBuilder {
    pub(crate) url: String,
    pub(crate) pool_size: u32,
    pub(crate) connection_timeout: Duration,
    pub(crate) busy_timeout: Duration,
    pub(crate) synchronous: Synchronous,
    pub(crate) limits: Limits,
    pub(crate) migrations: Migrations,
}

impl StoreBuilder {
    /// Default for [`max_content_bytes`](Self::max_content_bytes): 1 MiB.
    pub const DEFAULT_MAX_CONTENT_BYTES: usize = 1024 * 1024;
    /// Default for [`pool_size`](Self::pool_size).
    pub const DEFAULT_POOL_SIZE: u32 = 10;
    /// Default for [`max_page_size`](Self::max_page_size).
    pub const DEFAULT_MAX_PAGE_SIZE: u32 = 100;
    /// Default for [`max_window`](Self::max_window): 10,000 messages — a long agent conversation
    /// fits whole; a runaway one is refused rather than loaded.
    pub const DEFAULT_MAX_WINDOW: u32 = 10_000;
    /// The largest pool accepted; larger sizes are reduced to it (far more connections than any
    /// server accepts by default: a larger number is a mistake, not a need).
    pub const MAX_POOL_SIZE: u32 = 1024;
    /// The longest timeout accepted (about 24.8 days: SQLite counts its busy timeout in `i32`
    /// milliseconds); longer ones are shortened to it.
    pub const MAX_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

    pub(crate) fn new(url: impl Into<String>) -> Self {
        StoreBuilder {
            url: url.into(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            connection_timeout: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::default(),
            limits: Limits {
                max_content_bytes: Self::DEFAULT_MAX_CONTENT_BYTES,
                max_page_size: Self::DEFAULT_MAX_PAGE_SIZE,
                max_window: Self::DEFAULT_MAX_WINDOW,
            },
            migrations: Migrations::default(),
        }
    }

    /// Most connections the store keeps open (default [`DEFAULT_POOL_SIZE`](Self::DEFAULT_POOL_SIZE); between 1 and
    /// [`MAX_POOL_SIZE`](Self::MAX_POOL_SIZE)). An in-memory SQLite store always uses one.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.clamp(1, Self::MAX_POOL_SIZE);
        self
    }

    /// How long a call waits for a free connection before failing with
    /// [`Error::Pool`](crate::Error::Pool)
    /// (default 30 s; between 1 ms and [`MAX_TIMEOUT`](Self::MAX_TIMEOUT)). On PostgreSQL it also
    /// bounds connecting (libpq's `connect_timeout`, in whole seconds, unless the URL sets one) and
    /// how long opening waits for another process's migration run.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout.clamp(Duration::from_millis(1), Self::MAX_TIMEOUT);
        self
    }

    /// SQLite: how long a writer waits for other processes' writers before failing with
    /// [`Error::Busy`](crate::Error::Busy) (default 5 s; at most [`MAX_TIMEOUT`](Self::MAX_TIMEOUT)):
    /// first for its turn in the queue that the stores of one database file share, on the lock
    /// file `<database>-chatstore.lock` beside it, then for SQLite's write lock if something that
    /// does not use that queue (another program) holds it. Writers of the same store never need
    /// it: they take turns in order.
    ///
    /// The lock file is created when a store opens a SQLite file, with the database's
    /// permissions; without it (in-memory databases, read-only or immutable `file:` URIs, a
    /// directory where it cannot be created, systems other than Linux) SQLite's busy handler
    /// alone decides between processes, which is not fair: a writer may then wait for seconds
    /// under sustained writes from several processes.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout.min(Self::MAX_TIMEOUT);
        self
    }

    /// What opening does with the schema (default [`Migrations::Apply`]: apply what is pending).
    ///
    /// ```
    /// use chatstore::{ChatStore, Migrations};
    ///
    /// let store = ChatStore::builder(":memory:").migrations(Migrations::Apply).open()?;
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn migrations(mut self, migrations: Migrations) -> Self {
        self.migrations = migrations;
        self
    }

    /// SQLite: durability of commits (default [`Synchronous::Full`]).
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }

    /// Largest message content accepted, in bytes of UTF-8 (default 1 MiB). Metadata, as JSON text,
    /// has the same limit.
    pub fn max_content_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_content_bytes = bytes;
        self
    }

    /// Largest page [`ChatStore::list_conversations`](crate::ChatStore::list_conversations) returns (default 100; at least 1).
    pub fn max_page_size(mut self, size: u32) -> Self {
        self.limits.max_page_size = size.max(1);
        self
    }

    /// Most messages a window of history holds
    /// ([`ChatStore::messages`](crate::ChatStore::messages); default
    /// [`DEFAULT_MAX_WINDOW`](Self::DEFAULT_MAX_WINDOW); at least 1), so that one call's memory
    /// is bounded, as a list page's is:
    ///
    /// - `Window::Latest(n)`, `Before { limit, .. }` and `After { limit, .. }` asking for more
    ///   are cut to the cap, as a list page is, and the page's
    ///   [`older`](crate::MessagePage::older) and [`newer`](crate::MessagePage::newer) windows
    ///   have the cap's size: walking them reads the rest.
    /// - `Window::All` returns the whole history if it has at most this many messages, and is
    ///   refused with [`Error::WindowTooLarge`](crate::Error::WindowTooLarge) otherwise, rather
    ///   than returning part of what was asked for "all". Read a longer history in windows
    ///   (`Window::After { seq: 0, limit }`, then each page's `newer`), or raise the cap.
    ///
    /// ```
    /// use chatstore::{ChatStore, Error, NewMessage, UserId, Window};
    ///
    /// let store = ChatStore::builder(":memory:").max_window(2).open()?;
    /// let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?.id;
    /// let batch: Vec<_> = (1..=3).map(|i| NewMessage::user(format!("m{i}"))).collect();
    /// store.append_messages(&alice, conv, &batch)?;
    ///
    /// let page = store.messages(&alice, conv, Window::Latest(50))?;
    /// assert_eq!(page.messages.len(), 2, "cut to the cap");
    /// assert_eq!(page.older, Some(Window::Before { seq: 2, limit: 2 }));
    /// let all = store.messages(&alice, conv, Window::All);
    /// assert!(matches!(all, Err(Error::WindowTooLarge { messages: 3, max: 2 })));
    ///
    /// // The whole history, window by window.
    /// let (mut window, mut read) = (Some(Window::After { seq: 0, limit: 2 }), Vec::new());
    /// while let Some(next) = window {
    ///     let page = store.messages(&alice, conv, next)?;
    ///     read.extend(page.messages.into_iter().map(|m| m.content));
    ///     window = page.newer;
    /// }
    /// assert_eq!(read, ["m1", "m2", "m3"]);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn max_window(mut self, messages: u32) -> Self {
        self.limits.max_window = messages.max(1);
        self
    }
}
