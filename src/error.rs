//! The crate's one error type.

use std::fmt;
use std::sync::Arc;

use crate::ids::BranchId;

/// What can go wrong in chatstore. Every fallible call returns this, never a panic.
///
/// Input errors ([`InvalidTitle`](Error::InvalidTitle), [`InvalidUserId`](Error::InvalidUserId),
/// [`ContentTooLarge`](Error::ContentTooLarge), [`InvalidContent`](Error::InvalidContent),
/// [`InvalidMetadata`](Error::InvalidMetadata), [`MetadataTooLarge`](Error::MetadataTooLarge),
/// [`InvalidTag`](Error::InvalidTag), [`TooManyTags`](Error::TooManyTags),
/// [`InvalidUsage`](Error::InvalidUsage), [`InvalidPart`](Error::InvalidPart),
/// [`TooManyParts`](Error::TooManyParts), [`InvalidCutoff`](Error::InvalidCutoff),
/// [`InvalidId`](Error::InvalidId), [`InvalidImport`](Error::InvalidImport)) are found before
/// anything is written: the database is left as it was.
///
/// Rather than list variants (the enum is `#[non_exhaustive]`: more may come), sort an error with
/// [`is_invalid_input`](Error::is_invalid_input), [`is_conflict`](Error::is_conflict) and
/// [`is_retryable`](Error::is_retryable). The database's own errors are wrapped in a
/// [`DatabaseError`], whose [`source`](std::error::Error::source) is the driver's error.
///
/// An error's text never repeats its [`source`](std::error::Error::source) (the convention of
/// `thiserror` and `anyhow`): `Connect`, `Pool`, `ConnectionLost`, `Busy`, `Database` and
/// `Migration` say what failed, and the driver's words are the next error of the chain. Print the
/// chain where the cause matters — anyhow's `{:#}`, or a loop over `source()`:
///
/// ```
/// use std::error::Error as _;
///
/// let error = chatstore::ChatStore::open("/no/such/directory/chat.db").unwrap_err();
/// assert_eq!(error.to_string(), "could not connect to the database");
/// let cause = error.source().expect("the driver's error").to_string();
/// assert!(!cause.is_empty() && !error.to_string().contains(&cause));
/// ```
///
/// It is [`Clone`] (a database error's source is shared, not copied), so one failure can be
/// handed to several waiters, or kept while it is also returned.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The conversation does not exist, or belongs to another user. The two are deliberately
    /// indistinguishable so that ids never leak.
    #[error("conversation not found")]
    NotFound,

    /// A title is too long (counted in characters) or contains a control character.
    #[error("title {0}")]
    InvalidTitle(TextError),

    /// A user id is empty, too long (counted in characters) or contains a control character.
    #[error("user id {0}")]
    InvalidUserId(TextError),

    /// A message's content is larger than the store's limit (see
    /// [`StoreBuilder::max_content_bytes`](crate::StoreBuilder::max_content_bytes)).
    #[error("message content is {bytes} bytes, the maximum is {max}")]
    ContentTooLarge {
        /// Size of the refused content, in bytes (UTF-8).
        bytes: usize,
        /// The store's limit, in bytes.
        max: usize,
    },

    /// A message's content contains a NUL character, which PostgreSQL cannot store; it is refused on
    /// every backend alike.
    #[error("message content contains a NUL character at byte {index}")]
    InvalidContent {
        /// Byte offset of the first NUL character.
        index: usize,
    },

    /// Message or conversation metadata is not a JSON object, or nests more than
    /// [`MAX_METADATA_DEPTH`](crate::MAX_METADATA_DEPTH) (31) levels of objects and arrays deep —
    /// the deepest MariaDB's JSON check accepts, refused by the store on every backend alike.
    #[error("metadata must be a JSON object nested at most 31 levels deep")]
    InvalidMetadata,

    /// Message or conversation metadata, as JSON text, is larger than the content limit.
    #[error("metadata is {bytes} bytes as JSON, the maximum is {max}")]
    MetadataTooLarge {
        /// Size of the metadata as JSON text, in bytes.
        bytes: usize,
        /// The store's limit, in bytes.
        max: usize,
    },

    /// A tag is blank, too long (counted in characters, after trimming) or contains a control
    /// character (see [`Tag`](crate::Tag)).
    #[error("tag {0}")]
    InvalidTag(TextError),

    /// A conversation would have more tags than
    /// [`Tag::MAX_PER_CONVERSATION`](crate::Tag::MAX_PER_CONVERSATION). Nothing was changed.
    #[error("a conversation may have at most {max} tags, not {tags}")]
    TooManyTags {
        /// The tags it would have.
        tags: usize,
        /// The most it may have.
        max: usize,
    },

    /// A message's token usage does not add up: its input plus output tokens exceed its total,
    /// or the total exceeds [`Usage::MAX_TOKENS`](crate::Usage::MAX_TOKENS). Nothing was written.
    #[error(
        "token usage of {input_tokens} input, {output_tokens} output and {total_tokens} total: \
         input plus output must be at most the total, and the total at most {max}"
    )]
    InvalidUsage {
        /// The usage's input tokens.
        input_tokens: u64,
        /// Its output tokens.
        output_tokens: u64,
        /// Its total.
        total_tokens: u64,
        /// The largest total a message may have ([`Usage::MAX_TOKENS`](crate::Usage::MAX_TOKENS)).
        max: u64,
    },

    /// A message's part (see [`Part`](crate::Part)) is not one the store keeps: an image whose media
    /// type is not `image/…`, a `data:` URL, a reference, media type or name too long or malformed,
    /// a size above [`Attachment::MAX_SIZE`](crate::Attachment::MAX_SIZE), or text with a NUL
    /// character. Nothing was written.
    #[error("part {index} of the message: {reason}")]
    InvalidPart {
        /// The part's position in the message's parts, from 0.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A message has more parts than [`Part::MAX_PER_MESSAGE`](crate::Part::MAX_PER_MESSAGE).
    /// Nothing was written.
    #[error("a message may have at most {max} parts, not {parts}")]
    TooManyParts {
        /// The parts it has.
        parts: usize,
        /// The most it may have.
        max: usize,
    },

    /// A retention rule's cutoff is later than now: a purge would delete conversations appended
    /// to while it runs (see [`ChatStore::purge`](crate::ChatStore::purge)). Nothing was deleted.
    #[error(
        "the cutoff {0} is later than now: a purge deletes what was not updated since a past time"
    )]
    InvalidCutoff(chrono::DateTime<chrono::Utc>),

    /// A string given as a conversation or message id is not a UUID (its first 64 characters).
    #[error("invalid id {0:?}: not a UUID")]
    InvalidId(String),

    /// The database URL names no backend chatstore knows, or is one it cannot use: an unknown
    /// scheme, or a SQLite parameter it does not accept (the message names it; see
    /// [`ChatStore::open`](crate::ChatStore::open) for the URL forms).
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),

    /// A write to a store that cannot write: a SQLite store opened read-only (`mode=ro` or
    /// `immutable=1` in its URL: refused before the database is asked), or a database that
    /// refused the write as read-only (a SQLite file without write permission, a PostgreSQL hot
    /// standby or `default_transaction_read_only`, a MySQL server in `read_only` mode; the
    /// driver's error is then the source). Nothing was written; reads go on working.
    ///
    /// ```
    /// use chatstore::{ChatStore, Error, UserId};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("chat.db");
    /// let alice = UserId::new("alice")?;
    /// ChatStore::open(&format!("sqlite://{}", path.display()))?.create_conversation(&alice, None)?;
    /// let reader = ChatStore::open(&format!("sqlite://{}?mode=ro", path.display()))?;
    /// assert_eq!(reader.stats()?.conversations, 1);
    /// let refused = reader.create_conversation(&alice, None).unwrap_err();
    /// assert!(matches!(refused, Error::ReadOnly { .. }), "{refused:?}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[error("the database is open read-only: nothing can be written")]
    ReadOnly {
        /// The database's own refusal, if the database refused (none if the store did).
        source: Option<DatabaseError>,
    },

    /// A string is not a [`Role`](crate::Role) (from [`str::parse`] or `Role::try_from`): its
    /// text is the [`ParseRoleError`]'s.
    #[error(transparent)]
    InvalidRole(#[from] ParseRoleError),

    /// [`Window::All`](crate::Window::All) on a conversation with more messages than a window
    /// may hold ([`StoreBuilder::max_window`](crate::StoreBuilder::max_window)). Nothing is
    /// returned: read the history in windows instead (`Window::After { seq: 0, limit }`, then
    /// each page's [`newer`](crate::MessagePage::newer)), or raise the cap. Also a truncation
    /// ([`ChatStore::truncate_messages`](crate::ChatStore::truncate_messages)) that would remove
    /// and return more: nothing is removed (clear the conversation instead, or truncate in steps).
    #[error(
        "{messages} messages, more than a window may hold ({max}): read them in windows, or \
         raise the store's max_window"
    )]
    WindowTooLarge {
        /// Messages in the conversation when read (for a truncation, the messages it would
        /// remove).
        messages: i64,
        /// The store's cap on a window.
        max: u32,
    },

    /// A seq that no message can have, given where one is expected: seqs start at 1, and 0
    /// stands for "before the first message".
    #[error("seq {0} is negative: seqs start at 1, and 0 is before the first message")]
    InvalidSeq(i64),

    /// Messages to remove are on another branch's path too: a branch forks from the active branch
    /// after `seq`, and shares its messages up to there. Nothing was removed; delete that branch
    /// first ([`ChatStore::delete_branch`](crate::ChatStore::delete_branch)), or remove less.
    #[error("message {seq} is shared with a branch that forks after it: nothing was removed")]
    SharedMessages {
        /// The last seq another branch shares.
        seq: i64,
    },

    /// A conversation's last branch cannot be deleted (delete the conversation instead, or
    /// clear its messages). Nothing was deleted.
    #[error("a conversation's last branch cannot be deleted")]
    LastBranch,

    /// An append that named the last seq it saw ([`ChatStore::append_if_last_seq`](crate::ChatStore::append_if_last_seq))
    /// found that the conversation has moved on: someone appended since. Nothing was written; read
    /// the new messages and decide again.
    #[error(
        "the conversation has changed: expected its last seq to be {expected}, it is {actual}"
    )]
    Conflict {
        /// The last seq the caller stated.
        expected: i64,
        /// The conversation's last seq when the append ran.
        actual: i64,
    },

    /// An append that named the branch it extends
    /// ([`ChatStore::append_if_last_seq_on`](crate::ChatStore::append_if_last_seq_on)) found
    /// another branch active: someone switched, edited or regenerated since. Nothing was written;
    /// read the active branch and decide again.
    #[error("the conversation's active branch is {actual}, not {expected}")]
    BranchSwitched {
        /// The branch the caller stated.
        expected: BranchId,
        /// The conversation's active branch when the append ran.
        actual: BranchId,
    },

    /// A client-supplied message id ([`NewMessage::with_id`](crate::NewMessage::with_id)) is
    /// already taken by a different message: one in another conversation, one with other content,
    /// or the same id twice in a batch. Nothing was written. (The same message appended again to the
    /// same conversation is not an error: see [`ChatStore::append_messages`](crate::ChatStore::append_messages).)
    #[error("message id {0} is already used by a different message")]
    DuplicateId(crate::MessageId),

    /// A conversation to import ([`ChatStore::import_conversation`](crate::ChatStore::import_conversation))
    /// has an id the store already holds, for this user or another. Nothing was written.
    #[error("conversation {0} already exists")]
    AlreadyExists(crate::ConversationId),

    /// A conversation to import ([`ChatStore::import_conversation`](crate::ChatStore::import_conversation))
    /// is not one the store could have written: another user's, seqs that do not run 1, 2, 3…
    /// without a gap, a message count that is not its number of messages, a message of another
    /// conversation, times out of order or finer than microseconds, a title that is not trimmed.
    /// Nothing was written. The message says which rule is broken, and never quotes content,
    /// titles or user ids.
    #[error("invalid import: {0}")]
    InvalidImport(String),

    /// A context window's budget is smaller than the conversation's pinned system messages alone
    /// (see [`ContextOptions::pin_system`](crate::ContextOptions::pin_system)).
    #[error("the system messages cost {needed}, more than the budget of {budget}")]
    BudgetTooSmall {
        /// What the pinned system messages cost.
        needed: u64,
        /// The budget asked for.
        budget: u64,
    },

    /// A search query cannot be run: a quote is not closed, it has no word to search for, a word
    /// holds a character the search index does not keep (the message names the word), it is too
    /// long, or its offset is past [`MAX_SEARCH_OFFSET`](crate::MAX_SEARCH_OFFSET) (see
    /// [`SearchQuery`](crate::SearchQuery)). Nothing is read. The one error that quotes its input:
    /// the refused word, so that the person who typed it can be told which; the `tracing` event
    /// of the call leaves the reason out.
    #[error("invalid search query: {0}")]
    InvalidQuery(String),

    /// A cursor token ([`ConversationCursor::from_token`](crate::ConversationCursor::from_token),
    /// [`Window::from_token`](crate::Window::from_token)) cannot be used: it is empty, too long, not
    /// URL-safe base64, damaged, of the other kind, or made for another user or conversation. The
    /// message says which, and never repeats the token.
    #[error("{0}")]
    InvalidCursor(String),

    /// The URL names a backend that this build was compiled without.
    #[error("the {backend} backend is not compiled in: enable the cargo feature \"{feature}\"")]
    BackendNotEnabled {
        /// The backend the URL asked for.
        backend: &'static str,
        /// The cargo feature of chatstore that enables it.
        feature: &'static str,
    },

    /// Running the embedded migrations failed. On SQLite and PostgreSQL the whole run is one
    /// transaction, so the schema stays as it was. MySQL commits DDL as it runs, so the failed
    /// migration may be left part-done; every statement of a MySQL migration is skipped when the
    /// object it makes is already there, so the next open carries on where this one stopped.
    #[error("running migrations failed")]
    Migration(#[source] Arc<dyn std::error::Error + Send + Sync>),

    /// MySQL: a pending migration makes an object that the database already holds in another
    /// shape — a column of another type or nullability, an index over other columns, a table
    /// without a column the migration declares — made by another program, or changed since an
    /// interrupted run. Nothing more of the migration ran; the object needs a person's look
    /// (drop it, or make it as the migration does) before the store can open.
    #[error("migration {migration} cannot complete: {difference}")]
    SchemaConflict {
        /// The migration, such as `2026-11-25-000003_message_search`.
        migration: String,
        /// The object, such as `column chatstore_messages.search_text`.
        object: String,
        /// What differs, such as "column chatstore_messages.search_text is int NULL, the
        /// migration makes it longtext NULL".
        difference: String,
    },

    /// The database has a chatstore migration applied that this build does not know: as a rule it
    /// was migrated by a newer chatstore. It is refused rather than used with a schema this code
    /// was not written for. Only chatstore's own versions count (its table
    /// `chatstore_schema_migrations`), never a host application's migrations.
    #[error("{}", too_new(found, known))]
    SchemaTooNew {
        /// The first applied migration version this build does not know.
        found: String,
        /// The newest migration version this build embeds.
        known: String,
    },

    /// The store was opened with [`Migrations::Verify`](crate::Migrations::Verify) and the
    /// database's schema is not up to date: these migrations are pending. Nothing was changed.
    /// Apply them with an open that migrates (the default), or `chatstore migrate`.
    #[error("chatstore's schema is not up to date: migrations {} are pending", pending.join(", "))]
    MigrationsPending {
        /// The pending versions, oldest first (such as `"20261124000001"`): every version when
        /// the database has no chatstore schema at all; last, `"upgrade from the 0.1 layout"`
        /// when the database holds chatstore 0.1's tables, which an open that migrates moves.
        pending: Vec<String>,
    },

    /// The store was opened without migrating (see [`Migrations`](crate::Migrations)) on a
    /// SQLite file that does not exist. No file was created.
    #[error("no database file at {path:?}")]
    DatabaseNotFound {
        /// The path that was looked up.
        path: String,
    },

    /// A new connection to the database could not be established.
    #[error("could not connect to the database")]
    Connect(#[source] DatabaseError),

    /// No pooled connection became free within the connection timeout (or none could be made).
    /// Retryable ([`is_retryable`](Error::is_retryable)).
    #[error("no database connection available")]
    Pool(#[source] DatabaseError),

    /// The connection broke during the call (server restart, network failure, terminated backend).
    /// The broken connection is dropped from the pool, so a retry gets a fresh one. A write whose
    /// connection broke while it committed may have committed or not: retry appends with client
    /// ids ([`NewMessage::with_id`](crate::NewMessage::with_id)) to find out safely. Retryable
    /// ([`is_retryable`](Error::is_retryable)).
    #[error("the database connection was lost")]
    ConnectionLost(#[source] DatabaseError),

    /// Another writer held the lock longer than this call may wait: SQLite's busy timeout (another
    /// process writing); MySQL's `innodb_lock_wait_timeout` (50 s by default), or a deadlock
    /// MySQL broke by rolling this call back; or, when opening a PostgreSQL or MySQL store, another
    /// process's migration run for longer than the connection timeout. Nothing was written; the call
    /// can be retried ([`is_retryable`](Error::is_retryable)).
    #[error("the database is busy")]
    Busy(#[source] DatabaseError),

    /// Any other error reported by the database.
    #[error("database error")]
    Database(#[source] DatabaseError),

    /// A call of the `AsyncChatStore` (cargo feature `tokio`) did not finish on tokio's blocking
    /// pool: it panicked (in a cost function of yours, say), the runtime shut down before it ran
    /// (it wrote nothing then), or no tokio runtime was running. The text says which.
    #[error("the blocking task failed: {0}")]
    TaskFailed(String),
}

/// The message of [`Error::SchemaTooNew`]: "newer" only when the unknown version is.
fn too_new(found: &str, known: &str) -> String {
    let why = match found > known {
        true => "the database was migrated by a newer chatstore",
        false => "the database has a chatstore migration this build does not know",
    };
    format!("{why}: migration {found} is applied, unknown here (newest known: {known})")
}

/// A string that is not a [`Role`](crate::Role): what [`str::parse`] and `Role::try_from` return.
/// It converts into [`Error::InvalidRole`], so `?` works in a function returning
/// [`chatstore::Result`](crate::Result), and into `Box<dyn Error>` or `anyhow::Error`.
///
/// ```
/// use chatstore::{NewMessage, ParseRoleError, Role};
///
/// fn message(role: &str, content: &str) -> chatstore::Result<NewMessage<'static>> {
///     let role: Role = role.parse()?; // ParseRoleError into chatstore::Error
///     Ok(NewMessage::new(role, content.to_owned()))
/// }
/// assert_eq!(message("developer", "Be brief.")?.role(), Role::Developer);
/// let refused = message("robot", "beep").unwrap_err();
/// assert!(refused.is_invalid_input());
/// assert_eq!(
///     refused.to_string(),
///     r#"unknown role "robot": expected system, developer, user, assistant or tool"#
/// );
///
/// fn any_error(role: &str) -> Result<Role, Box<dyn std::error::Error + Send + Sync>> {
///     Ok(role.parse::<Role>()?)
/// }
/// assert!(any_error("robot").unwrap_err().is::<ParseRoleError>());
/// # Ok::<(), chatstore::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRoleError {
    /// The refused text (its first 64 characters).
    text: String,
}

impl ParseRoleError {
    pub(crate) fn new(text: &str) -> Self {
        ParseRoleError {
            text: text.chars().take(64).collect(),
        }
    }

    /// The refused text (its first 64 characters).
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for ParseRoleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown role {:?}: expected system, developer, user, assistant or tool",
            self.text
        )
    }
}

impl std::error::Error for ParseRoleError {}

/// Why a user id or title was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextError {
    /// The text is empty.
    Empty,
    /// The text has more characters (Unicode scalar values, not bytes) than allowed.
    TooLong {
        /// Characters in the refused text.
        chars: usize,
        /// The maximum number of characters.
        max: usize,
    },
    /// The text contains a control character (such as a newline, tab or NUL).
    ControlCharacter {
        /// Position of the first control character, counted in characters from 0.
        position: usize,
    },
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::Empty => write!(f, "is empty"),
            TextError::TooLong { chars, max } => {
                write!(f, "is {chars} characters, the maximum is {max}")
            }
            TextError::ControlCharacter { position } => {
                write!(f, "contains a control character at position {position}")
            }
        }
    }
}

impl Error {
    /// Whether the same call, made again unchanged, may succeed: the database was busy
    /// ([`Busy`](Error::Busy)), no pooled connection was free ([`Pool`](Error::Pool)), or the
    /// connection broke ([`ConnectionLost`](Error::ConnectionLost); the pool replaces it). Wait a
    /// little between attempts. A write whose connection broke while it committed may have
    /// committed: retry appends with client ids ([`NewMessage::with_id`](crate::NewMessage::with_id))
    /// so that a second attempt cannot append twice.
    ///
    /// ```
    /// use chatstore::{ChatStore, Error, NewMessage, UserId};
    ///
    /// /// Runs `call` up to three times while it fails with a retryable error.
    /// fn with_retries<T>(mut call: impl FnMut() -> chatstore::Result<T>) -> chatstore::Result<T> {
    ///     let mut attempts = 1;
    ///     loop {
    ///         match call() {
    ///             Err(e) if e.is_retryable() && attempts < 3 => {
    ///                 attempts += 1;
    ///                 std::thread::sleep(std::time::Duration::from_millis(50));
    ///             }
    ///             result => return result,
    ///         }
    ///     }
    /// }
    ///
    /// let store = ChatStore::open(":memory:")?;
    /// let alice = UserId::new("alice")?;
    /// let conv = with_retries(|| store.create_conversation(&alice, None))?;
    /// let id = uuid::Uuid::now_v7().into(); // made once, kept for every attempt
    /// with_retries(|| store.append_message(&alice, conv.id, NewMessage::user("hi").with_id(id)))?;
    /// assert!(!Error::NotFound.is_retryable());
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Busy(_) | Error::Pool(_) | Error::ConnectionLost(_)
        )
    }

    /// Whether the call was refused for what it was given, before anything was written: an invalid
    /// title, user id, role, content, metadata, id, import, cursor token or search query, a context
    /// budget too small for the pinned system messages, or [`Window::All`](crate::Window::All) on
    /// a history longer than a window may hold. The same call fails again; the message
    /// describes the caller's own input (it never quotes content), so a service can pass it on to
    /// its client (as HTTP 400 or 422, say).
    ///
    /// ```
    /// use chatstore::{ChatStore, Error, UserId};
    ///
    /// let store = ChatStore::open(":memory:")?;
    /// let alice = UserId::new("alice")?;
    /// let long = "x".repeat(chatstore::MAX_TITLE_CHARS + 1);
    /// let refused = store.create_conversation(&alice, Some(&long)).unwrap_err();
    /// assert!(refused.is_invalid_input());
    /// assert_eq!(refused.to_string(), "title is 256 characters, the maximum is 255");
    /// assert!(UserId::new("").unwrap_err().is_invalid_input());
    /// assert!(!Error::NotFound.is_invalid_input());
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidTitle(_)
                | Error::InvalidUserId(_)
                | Error::ContentTooLarge { .. }
                | Error::InvalidContent { .. }
                | Error::InvalidMetadata
                | Error::MetadataTooLarge { .. }
                | Error::InvalidTag(_)
                | Error::TooManyTags { .. }
                | Error::InvalidUsage { .. }
                | Error::InvalidPart { .. }
                | Error::TooManyParts { .. }
                | Error::InvalidCutoff(_)
                | Error::InvalidId(_)
                | Error::InvalidImport(_)
                | Error::InvalidCursor(_)
                | Error::InvalidQuery(_)
                | Error::BudgetTooSmall { .. }
                | Error::InvalidRole(_)
                | Error::WindowTooLarge { .. }
                | Error::InvalidSeq(_)
        )
    }

    /// Whether the call was refused for what the store already holds, and wrote nothing: the
    /// conversation moved on since the stated last seq ([`Conflict`](Error::Conflict)) or to
    /// another branch ([`BranchSwitched`](Error::BranchSwitched)), a client message id is taken by
    /// a different message ([`DuplicateId`](Error::DuplicateId)), an imported conversation's id is
    /// stored ([`AlreadyExists`](Error::AlreadyExists)), a pop would take a message another branch
    /// shares ([`SharedMessages`](Error::SharedMessages)), or the branch to delete is the last
    /// ([`LastBranch`](Error::LastBranch)). Read the current state and decide again (HTTP 409,
    /// say).
    ///
    /// ```
    /// use chatstore::{ChatStore, NewMessage, UserId};
    ///
    /// let store = ChatStore::open(":memory:")?;
    /// let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?;
    /// store.append_message(&alice, conv.id, NewMessage::user("first"))?;
    /// // Someone else appended since this client read the conversation empty (last seq 0).
    /// let stale = store
    ///     .append_if_last_seq(&alice, conv.id, 0, &[NewMessage::user("second")])
    ///     .unwrap_err();
    /// assert!(stale.is_conflict());
    /// assert!(!stale.is_retryable() && !stale.is_invalid_input());
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Error::Conflict { .. }
                | Error::BranchSwitched { .. }
                | Error::DuplicateId(_)
                | Error::AlreadyExists(_)
                | Error::SharedMessages { .. }
                | Error::LastBranch
        )
    }

    /// [`Error::Connect`] from the driver's error.
    pub(crate) fn connect(e: diesel::ConnectionError) -> Self {
        Error::Connect(DatabaseError::new(Source::Connect(e)))
    }

    /// [`Error::Pool`]: no connection within the connection timeout, after `failed`, the last
    /// failure to open one (if any).
    pub(crate) fn pool_timeout(failed: Option<Error>) -> Self {
        Error::Pool(DatabaseError::new(Source::Pool(NoConnection(
            failed.map(Box::new),
        ))))
    }

    /// [`Error::Migration`] from the migration harness's error (or one of the store's own).
    pub(crate) fn migration(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Migration(Arc::from(e.into()))
    }

    /// [`Error::Busy`] from a query's error, whatever [`From`] would make of it.
    pub(crate) fn busy(e: diesel::result::Error) -> Self {
        Error::Busy(DatabaseError::new(Source::Query(e)))
    }

    /// [`Error::Busy`] for a wait of the store's own that ran out (a lock it takes besides the
    /// database's), saying what it waited for.
    pub(crate) fn busy_waiting(message: String) -> Self {
        Error::busy(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::Unknown,
            Box::new(message),
        ))
    }

    /// [`Error::ReadOnly`] from the database's refusal.
    fn read_only(e: diesel::result::Error) -> Self {
        Error::ReadOnly {
            source: Some(DatabaseError::new(Source::Query(e))),
        }
    }

    /// [`Error::Database`] from a query's error, whatever [`From`] would make of it.
    pub(crate) fn database(e: diesel::result::Error) -> Self {
        Error::Database(DatabaseError::new(Source::Query(e)))
    }
}

/// An error of the database, its driver or the connection pool, in [`Error::Connect`],
/// [`Error::Pool`], [`Error::ConnectionLost`], [`Error::Busy`] and [`Error::Database`]: the
/// [`source`](std::error::Error::source) of those, and the link of the chain that holds the
/// driver's own message. It stands in for the driver's (Diesel's) error — its text, its `Debug`
/// form and its sources are the driver error's — whose type is not part of chatstore's API, so
/// that a new Diesel does not make a new chatstore. In [`Error::Pool`] it says "timed out waiting
/// for connection", and the last failure to open one, if any, is its source (an [`Error`]).
///
/// ```
/// use std::error::Error as _;
/// use chatstore::{ChatStore, Error};
///
/// // A SQLite file in a directory that does not exist cannot be opened.
/// let error = ChatStore::open("/no/such/directory/chat.db").unwrap_err();
/// let Error::Connect(database) = &error else { panic!("{error:?}") };
/// assert_eq!(error.to_string(), "could not connect to the database");
/// assert!(!database.to_string().is_empty()); // the driver's message
/// assert!(error.source().is_some_and(|cause| cause.to_string() == database.to_string()));
/// ```
#[derive(Clone)]
pub struct DatabaseError(Arc<Source>);

/// What a [`DatabaseError`] wraps.
enum Source {
    Connect(diesel::ConnectionError),
    Pool(NoConnection),
    Query(diesel::result::Error),
}

/// Why a call got no connection: the connection timeout passed, after the last failure to open
/// one, if any (the pool tries again until the timeout).
#[derive(Debug)]
struct NoConnection(Option<Box<Error>>);

impl fmt::Display for NoConnection {
    /// r2d2's words, which the store's pool used before it had one of its own.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The last failure to open one is the source, not part of this text.
        f.write_str("timed out waiting for connection")
    }
}

impl std::error::Error for NoConnection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .as_deref()
            .map(|failed| failed as &(dyn std::error::Error + 'static))
    }
}

impl DatabaseError {
    fn new(source: Source) -> Self {
        DatabaseError(Arc::new(source))
    }
}

impl Source {
    fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            Source::Connect(e) => e,
            Source::Pool(e) => e,
            Source::Query(e) => e,
        }
    }
}

impl fmt::Display for DatabaseError {
    /// The driver's message, as it words it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0.get(), f)
    }
}

impl fmt::Debug for DatabaseError {
    /// The driver's error, as it shows itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.get(), f)
    }
}

impl std::error::Error for DatabaseError {
    /// The driver error's own source: this error already shows the driver's message.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.get().source()
    }
}

/// `Result` with chatstore's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Diesel's errors, sorted deliberately: a lost connection is not "not found", and "not found" from a
/// query that must return a row is a bug report, not a missing conversation (callers that expect
/// absence use `.optional()`).
impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as D};
        match e {
            D::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )
            | D::BrokenTransactionManager => {
                Error::ConnectionLost(DatabaseError::new(Source::Query(e)))
            }
            // MySQL's client reports a dropped connection only by its message, also when the
            // COMMIT is what met it.
            D::DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if is_mysql_connection_lost(info.message()) =>
            {
                Error::ConnectionLost(DatabaseError::new(Source::Query(e)))
            }
            D::RollbackErrorOnCommit {
                ref commit_error, ..
            } if matches!(
                commit_error.as_ref(),
                D::DatabaseError(DatabaseErrorKind::Unknown, info)
                    if is_mysql_connection_lost(info.message())
            ) =>
            {
                Error::ConnectionLost(DatabaseError::new(Source::Query(e)))
            }
            D::DatabaseError(_, ref info) if is_lock_timeout(info.message()) => Error::busy(e),
            // PostgreSQL's read_only_sql_transaction (25006), and the others' by their message.
            D::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _) => Error::read_only(e),
            D::DatabaseError(_, ref info) if is_read_only(info.message()) => Error::read_only(e),
            // MySQL's deadlock victim (1213): its transaction was rolled back whole.
            D::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => Error::busy(e),
            _ => Error::database(e),
        }
    }
}

/// Diesel reports these only by their message: SQLite's SQLITE_BUSY and SQLITE_LOCKED,
/// PostgreSQL's lock_not_available after `lock_timeout`, and MySQL's lock wait timeout.
pub(crate) fn is_lock_timeout(message: &str) -> bool {
    matches!(message, "database is locked" | "database table is locked")
        || message.starts_with("canceling statement due to lock timeout")
        || message.starts_with("Lock wait timeout exceeded")
}

/// SQLite's SQLITE_READONLY (a file without write permission, say), and MySQL's and MariaDB's
/// server in `read_only` mode (1290) or a read-only transaction (1792).
fn is_read_only(message: &str) -> bool {
    message.starts_with("attempt to write a readonly database")
        || message.contains("running with the --read-only option")
        || message.starts_with("Cannot execute statement in a READ ONLY transaction")
}

/// MySQL's and MariaDB's clients' messages for a connection that broke (CR_SERVER_GONE_ERROR,
/// CR_SERVER_LOST), and the server's for a connection it killed.
fn is_mysql_connection_lost(message: &str) -> bool {
    message.contains("server has gone away")
        || message.contains("Server has gone away")
        || message.starts_with("Lost connection to")
        || message.starts_with("Connection was killed")
        // MySQL 8.0.24+: an idle connection the server timed out (4031).
        || message.contains("disconnected by the server")
        // A statement over max_allowed_packet: the server drops the connection too (1153).
        || message.contains("max_allowed_packet")
}

/// Checks text against the rules shared by user ids and titles: at most `max` characters and no
/// control characters. Emptiness is the caller's rule.
pub(crate) fn check_text(s: &str, max: usize) -> Result<(), TextError> {
    let mut chars = 0;
    for (position, c) in s.chars().enumerate() {
        if c.is_control() {
            return Err(TextError::ControlCharacter { position });
        }
        chars = position + 1;
    }
    if chars > max {
        return Err(TextError::TooLong { chars, max });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::error::Error as _;

    use diesel::result::{DatabaseErrorKind, Error as D};

    use super::*;

    fn diesel_error(kind: DatabaseErrorKind, message: &str) -> D {
        D::DatabaseError(kind, Box::new(message.to_owned()))
    }

    /// Every error's text, then each source's, as anyhow's `{:#}` prints them.
    pub(crate) fn chain(error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    #[test]
    fn database_errors_keep_their_debug_form_and_show_the_driver_text_once_in_the_chain() {
        let lock = || diesel_error(DatabaseErrorKind::Unknown, "database is locked");
        let error = Error::from(lock());
        assert!(matches!(error, Error::Busy(_)));
        assert_eq!(error.to_string(), "the database is busy");
        assert_eq!(chain(&error), "the database is busy: database is locked");
        assert_eq!(format!("{error:?}"), format!("Busy({:?})", lock()));
        assert_eq!(error.source().unwrap().to_string(), "database is locked");

        let error = Error::connect(diesel::ConnectionError::BadConnection("refused".into()));
        assert_eq!(error.to_string(), "could not connect to the database");
        assert_eq!(chain(&error), "could not connect to the database: refused");
    }

    #[test]
    fn no_error_repeats_its_source_and_every_error_clones() {
        let errors = [
            Error::from(diesel_error(
                DatabaseErrorKind::Unknown,
                "database is locked",
            )),
            Error::from(diesel_error(DatabaseErrorKind::ClosedConnection, "closed")),
            Error::from(diesel_error(DatabaseErrorKind::UniqueViolation, "dup")),
            Error::from(diesel_error(
                DatabaseErrorKind::Unknown,
                "attempt to write a readonly database",
            )),
            Error::connect(diesel::ConnectionError::BadConnection("refused".into())),
            Error::pool_timeout(Some(Error::connect(
                diesel::ConnectionError::BadConnection("refused".into()),
            ))),
            Error::migration("a bad migration"),
            Error::from(ParseRoleError::new("robot")),
        ];
        for error in &errors {
            let mut text = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                assert!(
                    !text.contains(&cause_text),
                    "{text:?} repeats {cause_text:?}"
                );
                text = cause_text;
                source = cause.source();
            }
            assert_eq!(chain(&error.clone()), chain(error));
        }
        assert_eq!(
            chain(&errors[5]),
            "no database connection available: timed out waiting for connection: could not \
             connect to the database: refused"
        );
        assert!(matches!(&errors[3], Error::ReadOnly { source: Some(_) }));
        let pg_standby = diesel_error(DatabaseErrorKind::ReadOnlyTransaction, "read-only");
        assert!(matches!(Error::from(pg_standby), Error::ReadOnly { .. }));
    }

    #[test]
    fn errors_sort_into_retryable_invalid_input_and_conflict() {
        let lost = Error::from(diesel_error(
            DatabaseErrorKind::ClosedConnection,
            "server closed the connection",
        ));
        assert!(matches!(lost, Error::ConnectionLost(_)));
        let unique = Error::from(diesel_error(DatabaseErrorKind::UniqueViolation, "dup"));
        assert!(matches!(unique, Error::Database(_)));
        let deadlock = Error::from(diesel_error(
            DatabaseErrorKind::SerializationFailure,
            "Deadlock found",
        ));
        for retryable in [&lost, &deadlock] {
            assert!(retryable.is_retryable(), "{retryable:?}");
            assert!(!retryable.is_invalid_input() && !retryable.is_conflict());
        }
        let invalid = [
            Error::InvalidTitle(TextError::Empty),
            Error::InvalidUserId(TextError::Empty),
            Error::ContentTooLarge { bytes: 2, max: 1 },
            Error::InvalidContent { index: 0 },
            Error::InvalidMetadata,
            Error::MetadataTooLarge { bytes: 2, max: 1 },
            Error::InvalidTag(TextError::Empty),
            Error::TooManyTags { tags: 2, max: 1 },
            Error::InvalidCutoff(chrono::DateTime::UNIX_EPOCH),
            Error::InvalidPart {
                index: 0,
                reason: "x",
            },
            Error::TooManyParts { parts: 2, max: 1 },
            Error::InvalidUsage {
                input_tokens: 2,
                output_tokens: 2,
                total_tokens: 3,
                max: 4,
            },
            Error::InvalidId("x".into()),
            Error::InvalidImport("x".into()),
            Error::InvalidCursor("x".into()),
            Error::InvalidQuery("x".into()),
            Error::BudgetTooSmall {
                needed: 2,
                budget: 1,
            },
            Error::InvalidRole(ParseRoleError::new("x")),
            Error::WindowTooLarge {
                messages: 2,
                max: 1,
            },
            Error::InvalidSeq(-1),
        ];
        for error in &invalid {
            assert!(error.is_invalid_input(), "{error:?}");
            assert!(!error.is_retryable() && !error.is_conflict());
        }
        let id = uuid::Uuid::nil();
        for error in [
            Error::Conflict {
                expected: 1,
                actual: 2,
            },
            Error::DuplicateId(id.into()),
            Error::AlreadyExists(id.into()),
            Error::SharedMessages { seq: 1 },
            Error::LastBranch,
            Error::BranchSwitched {
                expected: BranchId::ROOT,
                actual: BranchId::new(1).unwrap(),
            },
        ] {
            assert!(error.is_conflict(), "{error:?}");
            assert!(!error.is_retryable() && !error.is_invalid_input());
        }
        for error in [
            Error::NotFound,
            unique,
            Error::UnsupportedUrl("x".into()),
            Error::TaskFailed("x".into()),
            Error::ReadOnly { source: None },
        ] {
            assert!(!error.is_retryable() && !error.is_invalid_input() && !error.is_conflict());
        }
    }
}
