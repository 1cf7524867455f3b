use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::deserialize::FromSqlRow;
use diesel::expression::AsExpression;
use diesel::sql_types::Text;
use serde_json::Value;

use super::part::{parts_text, text};
use super::{Part, Usage};
use crate::error::ParseRoleError;
use crate::ids::{BranchId, ConversationId, MessageId};
use crate::{Error, Result};

/// Who speaks in a message. With the `serde` feature it travels as its stored spelling
/// ([`Role::as_str`]); any other string is refused.
///
/// More roles may come: a `match` on a role needs a `_` arm. A string that is no role is a
/// [`ParseRoleError`], which converts into [`Error`] for `?`.
///
/// ```
/// use chatstore::Role;
/// assert_eq!("tool".parse::<Role>(), Ok(Role::Tool));
/// assert_eq!("developer".parse::<Role>(), Ok(Role::Developer));
/// assert_eq!(Role::Assistant.as_str(), "assistant");
/// assert!("Tool".parse::<Role>().is_err(), "the stored spelling only");
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
    /// Instructions to the model from the application's developer: OpenAI's name for system
    /// messages in its newer models. Stored as `"developer"`, distinct from `system`, and treated
    /// like a system message by [`ChatStore::context_window`](crate::ChatStore::context_window):
    /// pinned at the start of the window, however old (see
    /// [`ContextOptions::pin_system`](crate::ContextOptions::pin_system)).
    ///
    /// ```
    /// use chatstore::{NewMessage, Role};
    /// assert_eq!(NewMessage::developer("Answer in French.").role(), Role::Developer);
    /// assert_eq!(Role::Developer.to_string(), "developer");
    /// ```
    Developer,
    /// The human.
    User,
    /// The model's reply (possibly with tool calls in its metadata).
    Assistant,
    /// The result of a tool call.
    Tool,
}

impl Role {
    /// The role as stored: `"system"`, `"developer"`, `"user"`, `"assistant"` or `"tool"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::Developer => "developer",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    /// Whether a context window pins messages of this role (when it pins system messages):
    /// `system` and `developer`, the two kinds of instructions.
    pub(crate) fn is_instruction(self) -> bool {
        matches!(self, Role::System | Role::Developer)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ParseRoleError;
    /// Parses the stored spelling (lowercase).
    fn from_str(s: &str) -> std::result::Result<Self, ParseRoleError> {
        match s {
            "system" => Ok(Role::System),
            "developer" => Ok(Role::Developer),
            "user" => Ok(Role::User),
            "assistant" => Ok(Role::Assistant),
            "tool" => Ok(Role::Tool),
            other => Err(ParseRoleError::new(other)),
        }
    }
}

impl TryFrom<String> for Role {
    type Error = ParseRoleError;
    /// As [`str::parse`].
    fn try_from(s: String) -> std::result::Result<Self, ParseRoleError> {
        s.parse()
    }
}

impl TryFrom<&str> for Role {
    type Error = ParseRoleError;
    /// As [`str::parse`].
    fn try_from(s: &str) -> std::result::Result<Self, ParseRoleError> {
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

/// A message to append. Its content is borrowed or owned, as given: a `&str` is borrowed (not
/// copied until it is written — content is the large part of an append), a `String` owned; its
/// metadata is a [`Metadata`]. So a batch can be built from borrowed data, or in a loop over
/// owned data and temporaries, alike.
///
/// ```
/// use chatstore::{NewMessage, Role};
/// use serde_json::json;
///
/// let call = json!({"tool_calls": [{"id": "call_1", "name": "add_todo"}]});
/// let msg = NewMessage::assistant("").with_metadata(&call); // copied
/// assert_eq!(msg.role(), Role::Assistant);
///
/// // Owned data, made in a loop: each message keeps what it was given.
/// let mut batch = Vec::new();
/// for (i, line) in ["first", "second"].into_iter().enumerate() {
///     let content: String = format!("{i}: {line}");
///     batch.push(NewMessage::user(content).with_metadata(json!({ "line": i })));
/// }
/// // A temporary's metadata, by value or by reference: the message keeps a copy.
/// batch.push(NewMessage::assistant("ok").with_metadata(&json!({ "done": true })));
/// assert_eq!(batch[1].content(), "1: second");
/// assert_eq!(batch[1].metadata(), Some(&json!({ "line": 1 })));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage<'a> {
    id: Option<MessageId>,
    role: Role,
    content: Cow<'a, str>,
    metadata: Option<Metadata<'a>>,
    usage: Option<Usage>,
    parts: Cow<'a, [Part]>,
}

/// Metadata for a [`NewMessage`]: what [`with_metadata`](NewMessage::with_metadata) takes. It
/// reads as the `Value` it holds, made from
///
/// - a `serde_json::Value`: moved in;
/// - a `&Value`: copied, so that `.with_metadata(&json!({…}))` on a temporary compiles wherever
///   the message goes (metadata is turned into JSON text before it is written anyway, a pass of
///   the same size);
/// - a `Cow<Value>`: `Cow::Borrowed(&value)` borrows it without a copy, for large metadata on a
///   hot path, where the value outlives the message.
///
/// ```
/// use std::borrow::Cow;
/// use chatstore::Metadata;
/// use serde_json::json;
///
/// let model = json!({"model": "gpt-5"});
/// let borrowed = Metadata::from(Cow::Borrowed(&model));
/// let copied = Metadata::from(&model);
/// let owned = Metadata::from(json!({"model": "gpt-5"}));
/// assert!(borrowed == copied && copied == owned);
/// assert_eq!(owned["model"], "gpt-5");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata<'a>(Cow<'a, Value>);

impl Metadata<'_> {
    /// The metadata, owned (copied if it was borrowed).
    pub fn into_owned(self) -> Metadata<'static> {
        Metadata(Cow::Owned(self.0.into_owned()))
    }
}

impl Deref for Metadata<'_> {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0
    }
}

impl AsRef<Value> for Metadata<'_> {
    fn as_ref(&self) -> &Value {
        &self.0
    }
}

impl<'a> From<Value> for Metadata<'a> {
    /// Owned metadata.
    fn from(value: Value) -> Self {
        Metadata(Cow::Owned(value))
    }
}

impl<'a> From<&Value> for Metadata<'a> {
    /// A copy of the metadata, so that a temporary's may be given (see [`Metadata`]).
    fn from(value: &Value) -> Self {
        Metadata(Cow::Owned(value.clone()))
    }
}

impl<'a> From<Cow<'a, Value>> for Metadata<'a> {
    /// Borrowed or owned, as the `Cow` is: `Cow::Borrowed` is not copied.
    fn from(value: Cow<'a, Value>) -> Self {
        Metadata(value)
    }
}

impl<'a> NewMessage<'a> {
    /// A message with the given role and content (which may be empty): a `&str` (borrowed), or
    /// a `String` (owned).
    ///
    /// ```
    /// use chatstore::{NewMessage, Role};
    ///
    /// let borrowed = NewMessage::new(Role::User, "hi");
    /// let owned = NewMessage::new(Role::User, String::from("hi"));
    /// assert_eq!(borrowed, owned);
    /// ```
    pub fn new(role: Role, content: impl Into<Cow<'a, str>>) -> Self {
        NewMessage {
            id: None,
            role,
            content: content.into(),
            metadata: None,
            usage: None,
            parts: Cow::Borrowed(&[]),
        }
    }

    /// A [`Role::System`] message.
    pub fn system(content: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Role::System, content)
    }

    /// A [`Role::Developer`] message: pinned by a context window as a system message is.
    ///
    /// ```
    /// use chatstore::{NewMessage, Role};
    /// assert_eq!(NewMessage::developer("Answer in French.").role(), Role::Developer);
    /// ```
    pub fn developer(content: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Role::Developer, content)
    }

    /// A [`Role::User`] message.
    pub fn user(content: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Role::User, content)
    }

    /// A [`Role::Assistant`] message.
    pub fn assistant(content: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// A [`Role::Tool`] message.
    pub fn tool(content: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Role::Tool, content)
    }

    /// Attaches metadata: a JSON object (tool calls, model name, token counts…), nested at most
    /// [`MAX_METADATA_DEPTH`] levels deep. A `Value` is moved in, a `&Value` copied, a
    /// `Cow::Borrowed(&value)` borrowed (see [`Metadata`]).
    ///
    /// ```
    /// use chatstore::{ChatStore, NewMessage, UserId};
    /// use serde_json::json;
    ///
    /// let store = ChatStore::open(":memory:")?;
    /// let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?.id;
    /// let usage = json!({"tokens": 12});
    /// let reply = NewMessage::assistant("Done.").with_metadata(&usage);
    /// // Temporaries, by value or by reference: the message may outlive this statement.
    /// let call = NewMessage::assistant("").with_metadata(json!({"tool_calls": []}));
    /// let done = NewMessage::tool("ok").with_metadata(&json!({"n": 1}));
    /// store.append_messages(&alice, conv, &[reply, call, done])?;
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn with_metadata(mut self, metadata: impl Into<Metadata<'a>>) -> Self {
        self.metadata = Some(metadata.into());
        self
    }

    /// Attaches the tokens the model call behind this message used (see [`Usage`]): the
    /// conversation's running total ([`Conversation::usage`](crate::Conversation::usage)) grows by
    /// it in the append's transaction. Checked when appended ([`Error::InvalidUsage`]).
    ///
    /// ```
    /// use chatstore::{ChatStore, NewMessage, Usage, UserId};
    ///
    /// let store = ChatStore::open(":memory:")?;
    /// let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?.id;
    /// let reply = NewMessage::assistant("Done.").with_usage(Usage::new(812, 4));
    /// let stored = store.append_message(&alice, conv, reply)?;
    /// assert_eq!(stored.usage, Some(Usage::new(812, 4)));
    /// assert_eq!(store.conversation(&alice, conv)?.usage.total_tokens, 816);
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Gives the message its parts, in order (see [`Part`]): text, and images and files by
    /// reference. They go beside the content, which may be empty. A `Vec` is moved in, a slice
    /// borrowed. Checked when appended ([`Error::InvalidPart`], [`Error::TooManyParts`], and
    /// [`Error::ContentTooLarge`] for content and text parts together).
    ///
    /// ```
    /// use chatstore::{Attachment, ChatStore, NewMessage, Part, Reference, UserId};
    ///
    /// let store = ChatStore::open(":memory:")?;
    /// let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?.id;
    /// let report = Attachment::new(Reference::key("uploads/7f3a"), "application/pdf", 81_920)
    ///     .with_name("q3.pdf");
    /// let ask = NewMessage::user("Summarise the report").with_parts(vec![Part::File(report)]);
    /// let stored = store.append_message(&alice, conv, ask)?;
    /// assert_eq!(stored.content, "Summarise the report");
    /// let Part::File(file) = &stored.parts[0] else { unreachable!() };
    /// assert_eq!(file.name.as_deref(), Some("q3.pdf"));
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn with_parts(mut self, parts: impl Into<Cow<'a, [Part]>>) -> Self {
        self.parts = parts.into();
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

    /// The same message, owning its content and metadata (copied if they were borrowed): one
    /// that may outlive what it was made from, or move to another thread.
    ///
    /// ```
    /// use chatstore::NewMessage;
    ///
    /// fn keep(text: &str) -> NewMessage<'static> {
    ///     NewMessage::user(text).into_owned()
    /// }
    /// assert_eq!(keep("hi").content(), "hi");
    /// ```
    pub fn into_owned(self) -> NewMessage<'static> {
        // Destructured, so that a field added to NewMessage cannot be left behind unnoticed.
        let NewMessage {
            id,
            role,
            content,
            metadata,
            usage,
            parts,
        } = self;
        NewMessage {
            id,
            role,
            content: Cow::Owned(content.into_owned()),
            metadata: metadata.map(Metadata::into_owned),
            usage,
            parts: Cow::Owned(parts.into_owned()),
        }
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
    pub fn content(&self) -> &str {
        &self.content
    }

    /// The metadata, if any.
    pub fn metadata(&self) -> Option<&Value> {
        self.metadata.as_deref()
    }

    /// The token usage, if any.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Its parts, in order (none unless [`with_parts`](NewMessage::with_parts) gave some).
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Checks the message against the store's limits and returns its metadata and its parts as
    /// the JSON text stored.
    pub(crate) fn validate(&self, max_bytes: usize) -> Result<Encoded> {
        if self.content.len() > max_bytes {
            return Err(Error::ContentTooLarge {
                bytes: self.content.len(),
                max: max_bytes,
            });
        }
        if let Some(index) = self.content.find('\0') {
            return Err(Error::InvalidContent { index });
        }
        let parts = parts_text(&self.parts, self.content.len(), max_bytes)?;
        if let Some(usage) = self.usage {
            usage.validate()?;
        }
        let metadata = self
            .metadata()
            .map(|metadata| metadata_text(metadata, max_bytes))
            .transpose()?;
        Ok(Encoded { metadata, parts })
    }
}

/// A checked message's JSON columns, as stored: its metadata and its parts (`None` for none).
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) metadata: Option<String>,
    pub(crate) parts: Option<String>,
}

/// Metadata, a message's or a conversation's, checked against the limits and turned into the JSON
/// text stored: an object, at most [`MAX_METADATA_DEPTH`] levels deep and `max_bytes` long.
pub(crate) fn metadata_text(metadata: &Value, max_bytes: usize) -> Result<String> {
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
    Ok(text)
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

/// A stored message.
///
/// With the `serde` feature: `{"id", "conversation_id", "seq", "role", "content", "metadata",
/// "created_at"}`, the metadata as the JSON object itself (or `null`), `"branch"` for a message
/// off the root branch, `"usage"` for a message with token usage (see [`Usage`]), and `"parts"`
/// for a message with parts (see [`Part`]).
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
    /// The branch that holds it (the root branch unless it was written on a branch of its own,
    /// see [`ChatStore::append_sibling`](crate::ChatStore::append_sibling)); its `seq` is its
    /// position on that branch's path.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "BranchId::is_root_ref")
    )]
    pub branch: BranchId,
    /// The tokens the model call behind it used, if it was given
    /// ([`NewMessage::with_usage`]).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub usage: Option<Usage>,
    /// Its parts, in order ([`NewMessage::with_parts`]); empty for a message of plain content.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub parts: Vec<Part>,
}

impl Message {
    /// Its text: the content, then each text part on a line of its own (empty ones left out). What
    /// search reads and [`char_cost`](crate::char_cost) counts; the content alone when there are
    /// no text parts.
    ///
    /// ```
    /// use chatstore::{ChatStore, NewMessage, Part, UserId};
    ///
    /// let store = ChatStore::open(":memory:")?;
    /// let alice = UserId::new("alice")?;
    /// let conv = store.create_conversation(&alice, None)?.id;
    /// let parts = vec![Part::text("first"), Part::text("second")];
    /// let stored = store.append_message(&alice, conv, NewMessage::user("").with_parts(parts))?;
    /// assert_eq!(stored.text(), "first\nsecond");
    /// # Ok::<(), chatstore::Error>(())
    /// ```
    pub fn text(&self) -> Cow<'_, str> {
        text(&self.content, &self.parts)
    }
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
