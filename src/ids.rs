//! Typed identifiers: a [`UserId`] can never be passed where a [`ConversationId`] goes.

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use diesel::sql_types::{Binary, Text};
use uuid::Uuid;

use crate::error::{check_text, Error, Result, TextError};

/// The acting user: an opaque id from the application's authentication system (a subject claim, an
/// account number). Every store operation takes one and only touches that user's data.
///
/// Valid ids have 1 to [`UserId::MAX_CHARS`] characters and no control characters; they are stored
/// and compared verbatim (no trimming, no case folding). With the `serde` feature a user id is its
/// string, read back through [`UserId::new`].
///
/// ```
/// use chatstore::UserId;
/// assert!(UserId::new("auth0|5f7c8ec7c33c6c004bbafe82").is_ok());
/// assert!(UserId::new("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "String", into = "String")
)]
pub struct UserId(String);

impl UserId {
    /// The longest user id accepted, in characters.
    pub const MAX_CHARS: usize = 255;

    /// Validates `id` as a user id.
    ///
    /// # Errors
    /// [`Error::InvalidUserId`] if `id` is empty, longer than [`UserId::MAX_CHARS`] characters, or
    /// contains a control character.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        if id.is_empty() {
            return Err(Error::InvalidUserId(TextError::Empty));
        }
        check_text(&id, Self::MAX_CHARS).map_err(Error::InvalidUserId)?;
        Ok(UserId(id))
    }

    /// A user id read back from the database, where the schema already constrains it.
    pub(crate) fn from_db(id: String) -> Self {
        UserId(id)
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for UserId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        UserId::new(s)
    }
}

impl TryFrom<String> for UserId {
    type Error = Error;
    /// As [`UserId::new`].
    fn try_from(id: String) -> Result<Self> {
        UserId::new(id)
    }
}

impl From<UserId> for String {
    /// The id as given.
    fn from(id: UserId) -> String {
        id.0
    }
}

impl AsRef<str> for UserId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
        #[diesel(sql_type = Binary)]
        #[cfg_attr(
            feature = "serde",
            derive(serde::Serialize, serde::Deserialize),
            serde(try_from = "String", into = "String")
        )]
        pub struct $name(Uuid);

        impl $name {
            /// A new UUIDv7 (time-ordered) id.
            pub(crate) fn generate() -> Self {
                $name(Uuid::now_v7())
            }

            /// The id as a UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The 16 bytes stored in the database.
            pub(crate) fn as_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                $name(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            /// As [`str::parse`].
            fn try_from(s: String) -> Result<Self> {
                s.parse()
            }
        }

        impl From<$name> for String {
            /// The hyphenated UUID.
            fn from(id: $name) -> String {
                id.to_string()
            }
        }

        impl fmt::Display for $name {
            /// The hyphenated UUID, as in `0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d`.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            /// Parses a UUID in any of its usual spellings.
            ///
            /// # Errors
            /// [`Error::InvalidId`] if `s` is not a UUID.
            fn from_str(s: &str) -> Result<Self> {
                Uuid::parse_str(s).map($name).map_err(|_| {
                    // Enough to recognise in a log line, however long the input.
                    let shown: String = s.chars().take(64).collect();
                    Error::InvalidId(shown)
                })
            }
        }
    };
}

uuid_id! {
    /// A conversation's id: a UUIDv7 made by the store. Parse one from a URL path with
    /// [`str::parse`]; an id that does not exist or belongs to another user reads as
    /// [`Error::NotFound`]. With the `serde` feature it is its hyphenated string, and anything
    /// but a UUID is refused.
    ConversationId
}

uuid_id! {
    /// A message's id: a UUIDv7 made by the store, or the client's own
    /// ([`NewMessage::with_id`](crate::NewMessage::with_id)). Ids are unique across the whole
    /// store, every user included. Messages are ordered by their `seq`, never by id. With the
    /// `serde` feature it is its hyphenated string, and anything but a UUID is refused.
    MessageId
}

/// A branch of a conversation. Every conversation has the root branch, [`BranchId::ROOT`]; an
/// edited or regenerated message starts a new one ([`ChatStore::append_sibling`]), numbered 1, 2, 3…
/// in the order they were made. A branch id means something only with its conversation's id.
/// With the `serde` feature it is its number.
///
/// ```
/// use chatstore::BranchId;
/// assert!(BranchId::ROOT.is_root());
/// assert_eq!(BranchId::new(3).unwrap().get(), 3);
/// assert!(BranchId::new(u32::MAX).is_none(), "at most 2^31 - 1");
/// ```
///
/// [`ChatStore::append_sibling`]: crate::ChatStore::append_sibling
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "u32", into = "u32")
)]
pub struct BranchId(u32);

impl BranchId {
    /// The branch every conversation starts with.
    pub const ROOT: BranchId = BranchId(0);
    /// The largest branch number.
    pub const MAX: u32 = i32::MAX as u32;

    /// The branch numbered `n`, if it is at most [`BranchId::MAX`].
    pub fn new(n: u32) -> Option<Self> {
        (n <= Self::MAX).then_some(BranchId(n))
    }

    /// Its number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// Whether it is the root branch.
    pub fn is_root(self) -> bool {
        self.0 == 0
    }

    /// For serde's `skip_serializing_if`.
    #[cfg(feature = "serde")]
    pub(crate) fn is_root_ref(&self) -> bool {
        self.is_root()
    }

    /// The branch stored as `n`, which the schema keeps within range.
    pub(crate) fn from_db(n: i64) -> Self {
        BranchId(u32::try_from(n).unwrap_or(0))
    }

    /// As stored.
    pub(crate) fn as_i64(self) -> i64 {
        i64::from(self.0)
    }
}

impl fmt::Display for BranchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl TryFrom<u32> for BranchId {
    type Error = Error;
    /// As [`BranchId::new`]; [`Error::InvalidId`] past [`BranchId::MAX`].
    fn try_from(n: u32) -> Result<Self> {
        BranchId::new(n).ok_or_else(|| {
            Error::InvalidId(format!("branch {n} is past the largest, {}", Self::MAX))
        })
    }
}

impl From<BranchId> for u32 {
    fn from(id: BranchId) -> u32 {
        id.0
    }
}
