use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde_json::Value;

use crate::ids::{ConversationId, MessageId};
use crate::schema::messages;
use crate::{Error, Result};

/// Who speaks in a message. With the `serde` feature it travels as its stored spelling
/// ([`Role::as_str`]); any other string is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// Attaches metadata: a JSON object (tool calls, model name, token counts…).
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
        if !metadata.is_object() {
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

/// A message row as selected: by the DSL (`Selectable`) or from hand-written SQL that names the
/// same columns (`QueryableByName`, the search).
#[derive(Queryable, Selectable, QueryableByName)]
#[diesel(table_name = messages)]
pub(crate) struct MessageRow {
    pub(crate) id: super::DbId,
    pub(crate) conversation_id: super::DbId,
    pub(crate) seq: i64,
    pub(crate) role: super::DbRole,
    pub(crate) content: String,
    pub(crate) metadata: Option<String>,
    pub(crate) created_at: super::DbTime,
}

impl MessageRow {
    pub(crate) fn into_model(self) -> Result<Message> {
        Ok(Message {
            id: self.id.0.into(),
            conversation_id: self.conversation_id.0.into(),
            seq: self.seq,
            role: self.role.0,
            content: self.content,
            metadata: self
                .metadata
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(super::corrupt_row)?,
            created_at: self.created_at.utc(),
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = messages, treat_none_as_default_value = false)]
pub(crate) struct NewMessageRow<'a> {
    pub(crate) id: &'a [u8],
    pub(crate) conversation_id: &'a [u8],
    pub(crate) user_id: &'a str,
    pub(crate) seq: i64,
    pub(crate) role: &'static str,
    pub(crate) content: &'a str,
    pub(crate) metadata: Option<&'a str>,
    pub(crate) created_at: NaiveDateTime,
    /// What the full-text index reads instead of the content, if anything (see `search.rs`).
    pub(crate) search_text: Option<&'a str>,
}
