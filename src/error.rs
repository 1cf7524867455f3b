//! The crate's one error type.

use std::fmt;

/// What can go wrong in chatstore. Every fallible call returns this, never a panic.
///
/// Input errors ([`InvalidTitle`](Error::InvalidTitle), [`InvalidUserId`](Error::InvalidUserId),
/// [`ContentTooLarge`](Error::ContentTooLarge), [`InvalidContent`](Error::InvalidContent),
/// [`InvalidMetadata`](Error::InvalidMetadata), [`MetadataTooLarge`](Error::MetadataTooLarge),
/// [`InvalidId`](Error::InvalidId), [`InvalidImport`](Error::InvalidImport)) are found before
/// anything is written: the database is left as it was.
#[derive(Debug, thiserror::Error)]
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

    /// Message metadata is not a JSON object.
    #[error("message metadata must be a JSON object")]
    InvalidMetadata,

    /// Message metadata, as JSON text, is larger than the content limit.
    #[error("message metadata is {bytes} bytes as JSON, the maximum is {max}")]
    MetadataTooLarge {
        /// Size of the metadata as JSON text, in bytes.
        bytes: usize,
        /// The store's limit, in bytes.
        max: usize,
    },

    /// A string given as a conversation or message id is not a UUID (its first 64 characters).
    #[error("invalid id {0:?}: not a UUID")]
    InvalidId(String),

    /// The database URL names no backend chatstore knows.
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),

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

    /// A search query cannot be run: a quote is not closed, it has no word to search for, or it is
    /// too long (see [`SearchQuery`](crate::SearchQuery)).
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
    /// transaction, so the schema stays as it was; MySQL commits DDL as it runs, so the failed
    /// migration may be left part-done (see `verify_schema`).
    #[error("running migrations failed: {0}")]
    Migration(#[source] Box<dyn std::error::Error + Send + Sync>),

    /// The database has migrations applied that this build does not know: it was migrated by a newer
    /// chatstore. It is refused rather than used with a schema this code was not written for.
    #[error(
        "the database schema is newer than this build of chatstore: migration {found} is applied \
         but unknown here (newest known: {known})"
    )]
    SchemaTooNew {
        /// The first applied migration version this build does not know.
        found: String,
        /// The newest migration version this build embeds.
        known: String,
    },

    /// A new connection to the database could not be established.
    #[error("could not connect to the database: {0}")]
    Connect(#[source] diesel::ConnectionError),

    /// No pooled connection became free within the connection timeout (or none could be made).
    #[error("no database connection available: {0}")]
    Pool(#[source] diesel::r2d2::PoolError),

    /// The connection broke during the call (server restart, network failure, terminated backend).
    /// The broken connection is dropped from the pool, so a retry gets a fresh one. A write whose
    /// connection broke while it committed may have committed or not: retry appends with client
    /// ids ([`NewMessage::with_id`](crate::NewMessage::with_id)) to find out safely.
    #[error("the database connection was lost: {0}")]
    ConnectionLost(#[source] diesel::result::Error),

    /// Another writer held the lock longer than this call may wait: SQLite's busy timeout (another
    /// process writing); MySQL's `innodb_lock_wait_timeout` (50 s by default), or a deadlock
    /// MySQL broke by rolling this call back; or, when opening a PostgreSQL or MySQL store, another
    /// process's migration run for longer than the connection timeout. Nothing was written; the call
    /// can be retried.
    #[error("the database is busy: {0}")]
    Busy(#[source] diesel::result::Error),

    /// Any other error reported by the database.
    #[error("database error: {0}")]
    Database(#[source] diesel::result::Error),

    /// A call of the `AsyncChatStore` (cargo feature `tokio`) did not finish on tokio's blocking
    /// pool: it panicked (in a cost function of yours, say), the runtime shut down before it ran
    /// (it wrote nothing then), or no tokio runtime was running. The text says which.
    #[error("the blocking task failed: {0}")]
    TaskFailed(String),
}

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
            | D::BrokenTransactionManager => Error::ConnectionLost(e),
            // MySQL's client reports a dropped connection only by its message, also when the
            // COMMIT is what met it.
            D::DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if is_mysql_connection_lost(info.message()) =>
            {
                Error::ConnectionLost(e)
            }
            D::RollbackErrorOnCommit {
                ref commit_error, ..
            } if matches!(
                commit_error.as_ref(),
                D::DatabaseError(DatabaseErrorKind::Unknown, info)
                    if is_mysql_connection_lost(info.message())
            ) =>
            {
                Error::ConnectionLost(e)
            }
            D::DatabaseError(_, ref info) if is_lock_timeout(info.message()) => Error::Busy(e),
            // MySQL's deadlock victim (1213): its transaction was rolled back whole.
            D::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => Error::Busy(e),
            _ => Error::Database(e),
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
