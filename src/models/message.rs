use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use diesel::sql_types::Text;
use serde_json::Value;

use crate::ids::{ConversationId, MessageId};
use crate::{Error, Result};

/// Who speaks in a message. With the `serde` feature it travels as its stored spelling
/// ([`Role::as_str`]); any other string is refused.
///
/// More roles may come: a `match` on a role needs a `_` arm.
///
/// ```
/// use chatstore::Role;
/// assert_eq!("tool".parse::<Role>(), Ok(Role::Tool));
/// assert_eq!(Role::Assistant.as_str(), "assistant");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, AsExpression, FromSqlRow)]
#[diesel(sql_type = Text)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "String", into = "&'static str")
)]
#[non_exhaustive]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The human.
    User,
    /// The model's reply (possibly with tool calls in its metadata).
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// The role as stored: `"system"`, `"user"`, `"assistant"` or `"tool"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    /// Parses the stored spelling (lowercase).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "system" => Ok(Role::System),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "tool" => Ok(Role::Tool),
            other => Err(format!("unknown role {other:?}")),
        }
    }
}

impl TryFrom<String> for Role {
    type Error = String;
    /// As [`str::parse`].
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<Role> for &'static str {
    /// As [`Role::as_str`].
    fn from(role: Role) -> &'static str {
        role.as_str()
    }
}

/// How deeply message metadata may nest: the metadata object is level 1 and each object or array
/// inside it one level more, so `{"calls": [{"args": {}}]}` is 4 levels deep. Deeper metadata is
/// refused with [`Error::InvalidMetadata`] before anything is written, on every backend alike.
///
/// 31 is the deepest every backend stores: MariaDB's JSON check (`JSON_VALID`, in the metadata
/// column's constraint) refuses 32 levels of objects and arrays, where SQLite and PostgreSQL
/// allow hundreds. Metadata another program wrote deeper than this still reads back.
///
/// ```
/// use chatstore::{ChatStore, Error, NewMessage, UserId, MAX_METADATA_DEPTH};
/// use serde_json::json;
///
/// let store = ChatStore::open(":memory:")?;
/// let alice = UserId::new("alice")?;
/// let conv = store.create_conversation(&alice, None)?.id;
/// let nested = |levels| (1..levels).fold(json!({}), |inner, _| json!({ "a": inner }));
///
/// let deepest = nested(MAX_METADATA_DEPTH);
/// store.append_message(&alice, conv, NewMessage::tool("ok").with_metadata(&deepest))?;
/// let deeper = nested(MAX_METADATA_DEPTH + 1);
/// let refused = store.append_message(&alice, conv, NewMessage::tool("no").with_metadata(&deeper));
/// assert!(matches!(refused, Err(Error::InvalidMetadata)));
/// # Ok::<(), chatstore::Error>(())
/// ```
pub const MAX_METADATA_DEPTH: usize = 31;

/// A message to append. Borrows its content and metadata: nothing is copied until it is written.
///
/// ```
/// use chatstore::{NewMessage, Role};
/// use serde_json::json;
///
/// let call = json!({"tool_calls": [{"id": "call_1", "name": "add_todo"}]});
/// let msg = NewMessage::assistant("").with_metadata(&call);
/// assert_eq!(msg.role(), Role::Assistant);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewMessage<'a> {
    id: Option<MessageId>,
    role: Role,
    content: &'a str,
    metadata: Option<&'a Value>,
}

impl<'a> NewMessage<'a> {
    /// A message with the given role and content (which may be empty).
    pub fn new(role: Role, content: &'a str) -> Self {
        NewMessage {
            id: None,
            role,
            content,
            metadata: None,
        }
    }

    /// A [`Role::System`] message.
    pub fn system(content: &'a str) -> Self {
        Self::new(Role::System, content)
    }

    /// A [`Role::User`] message.
    pub fn user(content: &'a str) -> Self {
        Self::new(Role::User, content)
    }

    /// A [`Role::Assistant`] message.
    pub fn assistant(content: &'a str) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A [`Role::Tool`] message.
    pub fn tool(content: &'a str) -> Self {
        Self::new(Role::Tool, content)
    }

    /// Attaches metadata: a JSON object (tool calls, model name, token counts…), nested at most
    /// [`MAX_METADATA_DEPTH`] levels deep.
    pub fn with_metadata(mut self, metadata: &'a Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Gives the message an id chosen by the client, which makes its append safe to retry: see
    /// [`ChatStore::append_messages`](crate::ChatStore::append_messages). Make it before the first
    /// attempt (`uuid::Uuid::now_v7()` or a random UUID) and keep it for the retries; give every
    /// message of a batch one, or the batch cannot be recognised when it is sent again.
    ///
    /// Message ids are unique across the whole store, every user included: an id is taken once,
    /// so it must be one nobody else can guess or know in advance (a fresh UUID is).
    pub fn with_id(mut self, id: MessageId) -> Self {
        self.id = Some(id);
        self
    }

    /// The client-supplied id, if any.
    pub fn id(&self) -> Option<MessageId> {
        self.id
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The content.
    pub fn content(&self) -> &'a str {
        self.content
    }

    /// The metadata, if any.
    pub fn metadata(&self) -> Option<&'a Value> {
        self.metadata
    }

    /// Checks the message against the store's limits and returns its metadata as JSON text.
    pub(crate) fn validate(&self, max_bytes: usize) -> Result<Option<String>> {
        if self.content.len() > max_bytes {
            return Err(Error::ContentTooLarge {
                bytes: self.content.len(),
                max: max_bytes,
            });
        }
        if let Some(index) = self.content.find('\0') {
            return Err(Error::InvalidContent { index });
        }
        let Some(metadata) = self.metadata else {
            return Ok(None);
        };
        // The depth first: turning a value into text recurses once per level.
        if !metadata.is_object() || nests_deeper_than(metadata, MAX_METADATA_DEPTH) {
            return Err(Error::InvalidMetadata);
        }
        let text = metadata.to_string();
        if text.len() > max_bytes {
            return Err(Error::MetadataTooLarge {
                bytes: text.len(),
                max: max_bytes,
            });
        }
        Ok(Some(text))
    }
}

/// Whether `value` has more than `max` levels of objects and arrays (itself the first). Walked
/// with a list, not recursion, and never below level `max + 1`: a value built in memory may nest
/// deeper than any stack.
fn nests_deeper_than(value: &Value, max: usize) -> bool {
    let mut pending = vec![(value, 1)];
    while let Some((value, depth)) = pending.pop() {
        let inner: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        if depth > max {
            return true;
        }
        pending.extend(inner.map(|v| (v, depth + 1)));
    }
    false
}

/// A [`NewMessage`] that owns its content and metadata, so that it can move to another thread (the
/// async store's blocking pool) and be lent out as a `NewMessage` there.
#[cfg(feature = "tokio")]
#[derive(Debug)]
pub(crate) struct OwnedNewMessage {
    id: Option<MessageId>,
    role: Role,
    content: String,
    metadata: Option<Value>,
}

#[cfg(feature = "tokio")]
impl OwnedNewMessage {
    /// Copies `message`'s content and metadata.
    pub(crate) fn new(message: &NewMessage<'_>) -> Self {
        // Destructured, so that a field added to NewMessage cannot be left behind unnoticed.
        let NewMessage {
            id,
            role,
            content,
            metadata,
        } = *message;
        OwnedNewMessage {
            id,
            role,
            content: content.to_owned(),
            metadata: metadata.cloned(),
        }
    }

    /// The message again, borrowing from this copy.
    pub(crate) fn borrow(&self) -> NewMessage<'_> {
        NewMessage {
            id: self.id,
            role: self.role,
            content: &self.content,
            metadata: self.metadata.as_ref(),
        }
    }
}

/// A stored message.
///
/// With the `serde` feature: `{"id", "conversation_id", "seq", "role", "content", "metadata",
/// "created_at"}`, the metadata as the JSON object itself (or `null`).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Message {
    /// Its id: a UUIDv7 made by the store, or the client's own ([`NewMessage::with_id`]).
    pub id: MessageId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Its position in the conversation: 1, 2, 3… without gaps. The one ordering key: messages that
    /// share a timestamp are still in the order they were appended.
    pub seq: i64,
    /// Who speaks.
    pub role: Role,
    /// The text, exactly as appended.
    pub content: String,
    /// The metadata object, if any.
    pub metadata: Option<Value>,
    /// When it was appended (UTC, microsecond precision).
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// `levels` deep, objects and arrays in turn, an object outermost.
    fn nested(levels: usize) -> Value {
        (1..levels).fold(json!({}), |inner, i| {
            if (levels - i).is_multiple_of(2) {
                json!([inner])
            } else {
                json!({ "a": 1, "b": inner })
            }
        })
    }

    #[test]
    fn depth_counts_objects_and_arrays_not_scalars() {
        assert!(!nests_deeper_than(&json!({}), 1));
        assert!(!nests_deeper_than(&json!({"a": 1, "b": "x"}), 1));
        assert!(nests_deeper_than(&json!({"a": []}), 1));
        assert!(!nests_deeper_than(&json!({"a": [1, {"b": 2}]}), 3));
        assert!(nests_deeper_than(&json!({"a": [1, {"b": []}]}), 3));
        for levels in [1, 2, MAX_METADATA_DEPTH, MAX_METADATA_DEPTH + 1, 200] {
            let value = nested(levels);
            assert!(!nests_deeper_than(&value, levels), "{levels}");
            assert!(nests_deeper_than(&value, levels - 1), "{levels}");
        }
    }

    #[test]
    fn metadata_deeper_than_the_limit_is_invalid_and_the_message_says_the_limit() {
        let message = |metadata| NewMessage::tool("").with_metadata(metadata);
        let deepest = nested(MAX_METADATA_DEPTH);
        assert!(message(&deepest).validate(usize::MAX).is_ok());
        let deeper = nested(MAX_METADATA_DEPTH + 1);
        let error = message(&deeper).validate(usize::MAX).unwrap_err();
        assert!(matches!(error, Error::InvalidMetadata), "{error:?}");
        assert!(error
            .to_string()
            .contains(&format!(" {MAX_METADATA_DEPTH} levels")));
    }
}
