//! Plain data: what the store returns and what it takes to write.

mod branch;
mod conversation;
mod counts;
mod message;
mod part;
mod retention;
mod tag;
mod usage;

pub use branch::{Branch, Sibling, Siblings};
pub(crate) use conversation::ListRank;
pub use conversation::{Conversation, NewConversation};
pub use counts::{DeletedCounts, StoreStats};
pub(crate) use message::{metadata_text, Encoded};
pub use message::{Message, Metadata, NewMessage, Role, MAX_METADATA_DEPTH};
pub(crate) use part::{read_parts, stored_text};
pub use part::{Attachment, Part, Reference};
pub use retention::Retention;
pub use tag::{Tag, TagCount};
pub use usage::Usage;

use chrono::{DateTime, SubsecRound, Utc};

/// The current time at the precision every backend keeps (microseconds), so that what a call returns
/// equals what a later read gives back.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A row that the schema should have made impossible (a malformed id or role written by another
/// program), reported as a database error rather than a panic.
pub(crate) fn corrupt_row(what: impl std::fmt::Display) -> crate::Error {
    crate::Error::database(diesel::result::Error::DeserializationError(
        format!("unreadable row: {what}").into(),
    ))
}
