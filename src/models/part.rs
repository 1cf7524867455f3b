use std::borrow::Cow;

use serde_json::Value;

use crate::{Error, Result};

/// One piece of a message's content: text, or an image or a file held elsewhere and named here by
/// reference. A message carries an ordered list of parts beside its plain
/// [`content`](crate::Message::content), which may be empty when the parts say everything
/// ([`NewMessage::with_parts`](crate::NewMessage::with_parts)). Anything else a model call sends
/// or receives (tool calls, citations) stays in the message's metadata.
///
/// The text parts count as text: search finds their words and the default context cost
/// ([`char_cost`](crate::char_cost)) counts their characters, with the content's, as the one text
/// [`Message::text`](crate::Message::text) returns. Images and files are never read: the store
/// keeps their reference, media type, size and name, and gives them back as they were.
///
/// Parts are checked when a message is appended or imported, each against the limits below, or
/// [`Error::InvalidPart`] naming it; a message holds at most [`Part::MAX_PER_MESSAGE`] parts
/// ([`Error::TooManyParts`]), and its content and text parts together at most the store's content
/// limit ([`Error::ContentTooLarge`]).
///
/// With the `serde` feature, and as the store keeps them, parts are JSON objects tagged by
/// `"type"`:
///
/// ```json
/// {"type": "text", "text": "What is in this picture?"}
/// {"type": "image", "url": "https://example.com/cat.png", "media_type": "image/png",
///  "size": 48213}
/// {"type": "file", "key": "uploads/7f3a/report.pdf", "media_type": "application/pdf",
///  "size": 1048576, "name": "report.pdf"}
/// ```
///
/// An attachment has a `"url"` or a `"key"` (exactly one), a `"media_type"` and a `"size"`, and
/// `"name"` only when it has one. A part that breaks a limit is a deserialization error.
///
/// ```
/// use chatstore::{Attachment, ChatStore, NewMessage, Part, Reference, SearchQuery, UserId};
///
/// let store = ChatStore::open(":memory:")?;
/// let alice = UserId::new("alice")?;
/// let conv = store.create_conversation(&alice, None)?.id;
/// let photo = Attachment::new(Reference::url("https://example.com/cat.png"), "image/png", 48_213);
/// let question = NewMessage::user("").with_parts(vec![
///     Part::text("What is in this picture?"),
///     Part::Image(photo.clone()),
/// ]);
/// let stored = store.append_message(&alice, conv, question)?;
/// assert_eq!(stored.parts[1], Part::Image(photo));
/// assert_eq!(stored.text(), "What is in this picture?");
///
/// // The text parts are searched like content.
/// let found = store.search_messages(&alice, &SearchQuery::new("picture"))?;
/// assert_eq!(found.hits[0].message.id, stored.id);
/// # Ok::<(), chatstore::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(try_from = "Value")
)]
#[non_exhaustive]
pub enum Part {
    /// Text, as content is: searched and counted.
    Text(String),
    /// An image, by reference. Its media type is an `image/…` type.
    Image(Attachment),
    /// Any other file, by reference.
    File(Attachment),
}

/// An image or a file that a [`Part`] refers to: where it is ([`Reference`]), what it is, how
/// large, and the name it was given, if any. The store keeps the reference and never fetches it.
///
/// ```
/// use chatstore::{Attachment, Reference};
///
/// let pdf = Reference::key("uploads/7f3a/report.pdf");
/// let report = Attachment::new(pdf, "application/pdf", 1 << 20).with_name("report.pdf");
/// assert_eq!(report.name.as_deref(), Some("report.pdf"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Attachment {
    /// Where it is.
    pub reference: Reference,
    /// Its media type, such as `image/png` or `application/pdf; charset=binary`: a type and a
    /// subtype, parameters allowed, at most [`Attachment::MAX_MEDIA_TYPE_BYTES`] bytes.
    pub media_type: String,
    /// Its size in bytes, at most [`Attachment::MAX_SIZE`].
    pub size: u64,
    /// The name it was given (a file name, say), at most [`Attachment::MAX_NAME_BYTES`] bytes.
    pub name: Option<String>,
}

/// Where an [`Attachment`] is: a URL anyone holding it can fetch, or a key the application
/// resolves itself (an object-store key, a row id). Either is kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reference {
    /// An absolute URL (`https://…`, `s3://…`), at most [`Reference::MAX_BYTES`] bytes. A `data:`
    /// URL is refused: it is the file itself, not a reference to it.
    Url(String),
    /// A key of the application's own, at most [`Reference::MAX_BYTES`] bytes.
    Key(String),
}

impl Part {
    /// The most parts a message may have.
    pub const MAX_PER_MESSAGE: usize = 100;

    /// A text part.
    ///
    /// ```
    /// use chatstore::Part;
    /// assert_eq!(Part::text("hi"), Part::Text("hi".to_owned()));
    /// ```
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text(text.into())
    }

    /// Its text, if it is a text part.
    ///
    /// ```
    /// use chatstore::{Attachment, Part, Reference};
    /// assert_eq!(Part::text("hi").as_text(), Some("hi"));
    /// let file = Attachment::new(Reference::key("k"), "text/plain", 2);
    /// assert_eq!(Part::File(file).as_text(), None);
    /// ```
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Part::Text(text) => Some(text),
            _ => None,
        }
    }

    /// Why this part is not one the store keeps, if it is not. Text is checked with the content
    /// (its size, NUL characters) by the message.
    fn fault(&self) -> Option<&'static str> {
        match self {
            Part::Text(_) => None,
            Part::Image(attachment) if !attachment.media_type_is("image") => {
                Some("an image's media type must be an image/… type")
            }
            Part::Image(attachment) | Part::File(attachment) => attachment.fault(),
        }
    }

    /// The part a JSON object describes, checked; why not, if it describes none.
    pub(crate) fn from_json(value: &Value) -> std::result::Result<Part, String> {
        let object = value
            .as_object()
            .ok_or_else(|| "a part must be a JSON object".to_owned())?;
        let string = |field: &str| match object.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("a part's \"{field}\" must be a string")),
        };
        let kind = string("type")?.ok_or_else(|| "a part needs a \"type\"".to_owned())?;
        let allowed: &[&str] = match kind.as_str() {
            "text" => &["type", "text"],
            "image" | "file" => &["type", "url", "key", "media_type", "size", "name"],
            other => {
                return Err(format!(
                    "unknown part type {other:?}: expected \"text\", \"image\" or \"file\""
                ))
            }
        };
        if let Some(field) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(format!("a {kind} part has no field {field:?}"));
        }
        if kind == "text" {
            let text = string("text")?.ok_or_else(|| "a text part needs \"text\"".to_owned())?;
            return Ok(Part::Text(text));
        }
        let reference = match (string("url")?, string("key")?) {
            (Some(url), None) => Reference::Url(url),
            (None, Some(key)) => Reference::Key(key),
            _ => {
                return Err(format!(
                    "a {kind} part needs a \"url\" or a \"key\", not both"
                ))
            }
        };
        let media_type =
            string("media_type")?.ok_or_else(|| format!("a {kind} part needs a \"media_type\""))?;
        let size = match object.get("size") {
            Some(size) => size.as_u64().ok_or_else(|| {
                format!("a {kind} part's \"size\" must be a whole number of bytes")
            })?,
            None => return Err(format!("a {kind} part needs a \"size\"")),
        };
        let attachment = Attachment {
            reference,
            media_type,
            size,
            name: string("name")?,
        };
        let part = match kind.as_str() {
            "image" => Part::Image(attachment),
            _ => Part::File(attachment),
        };
        match part.fault() {
            Some(fault) => Err(fault.to_owned()),
            None => Ok(part),
        }
    }
}

impl Attachment {
    /// The largest size: 2⁵³ − 1 bytes, the largest whole number every JSON reader keeps exactly.
    pub const MAX_SIZE: u64 = (1 << 53) - 1;
    /// The longest media type, in bytes.
    pub const MAX_MEDIA_TYPE_BYTES: usize = 255;
    /// The longest name, in bytes.
    pub const MAX_NAME_BYTES: usize = 255;

    /// An attachment without a name.
    ///
    /// ```
    /// use chatstore::{Attachment, Reference};
    /// let photo = Attachment::new(Reference::url("https://example.com/a.png"), "image/png", 512);
    /// assert_eq!((photo.size, photo.name), (512, None));
    /// ```
    pub fn new(reference: Reference, media_type: impl Into<String>, size: u64) -> Self {
        Attachment {
            reference,
            media_type: media_type.into(),
            size,
            name: None,
        }
    }

    /// The same attachment, named.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether its media type's type is `kind` (`image`, say), in any case.
    fn media_type_is(&self, kind: &str) -> bool {
        self.media_type
            .split_once('/')
            .is_some_and(|(t, _)| t.eq_ignore_ascii_case(kind))
    }

    fn fault(&self) -> Option<&'static str> {
        if let Some(fault) = self.reference.fault() {
            return Some(fault);
        }
        if !is_media_type(&self.media_type) {
            return Some(
                "a media type must be a type and a subtype (such as image/png), at most 255 bytes",
            );
        }
        if self.size > Attachment::MAX_SIZE {
            return Some("a size must be at most 2^53 - 1 bytes");
        }
        match &self.name {
            Some(name) if name.trim().is_empty() || name.len() > Attachment::MAX_NAME_BYTES => {
                Some("a name must be 1 to 255 bytes, not blank")
            }
            Some(name) if name.chars().any(char::is_control) => {
                Some("a name must not contain control characters")
            }
            _ => None,
        }
    }
}

/// `type/subtype`, each an RFC 6838 restricted name, then parameters if any (`; charset=utf-8`),
/// printable, within the length limit.
fn is_media_type(media_type: &str) -> bool {
    let restricted = |name: &str| {
        let bytes = name.as_bytes();
        (1..=127).contains(&bytes.len())
            && bytes[0].is_ascii_alphanumeric()
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(b))
    };
    let (essence, parameters) = media_type.split_once(';').unwrap_or((media_type, ""));
    media_type.len() <= Attachment::MAX_MEDIA_TYPE_BYTES
        && essence
            .split_once('/')
            .is_some_and(|(t, sub)| restricted(t) && restricted(sub.trim_end()))
        && !parameters.chars().any(char::is_control)
}

impl Reference {
    /// The longest URL or key, in bytes.
    pub const MAX_BYTES: usize = 2048;

    /// A URL.
    ///
    /// ```
    /// use chatstore::Reference;
    /// assert_eq!(Reference::url("s3://bucket/a.pdf"), Reference::Url("s3://bucket/a.pdf".into()));
    /// ```
    pub fn url(url: impl Into<String>) -> Self {
        Reference::Url(url.into())
    }

    /// An application's key.
    ///
    /// ```
    /// use chatstore::Reference;
    /// assert_eq!(Reference::key("uploads/1"), Reference::Key("uploads/1".into()));
    /// ```
    pub fn key(key: impl Into<String>) -> Self {
        Reference::Key(key.into())
    }

    fn fault(&self) -> Option<&'static str> {
        let (Reference::Url(reference) | Reference::Key(reference)) = self;
        if reference.is_empty() || reference.len() > Reference::MAX_BYTES {
            return Some("a URL or key must be 1 to 2048 bytes");
        }
        if reference.chars().any(char::is_control) {
            return Some("a URL or key must not contain control characters");
        }
        let Reference::Url(url) = self else {
            return None;
        };
        let scheme = url.split_once(':').map(|(scheme, _)| scheme);
        let valid_scheme = scheme.is_some_and(|s| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        if !valid_scheme || url.contains(char::is_whitespace) {
            return Some("a URL must be absolute (scheme:…) without spaces");
        }
        if scheme.is_some_and(|s| s.eq_ignore_ascii_case("data")) {
            return Some("a data: URL holds the file itself: store it and give its URL or key");
        }
        None
    }
}

impl TryFrom<Value> for Part {
    type Error = String;
    /// As the store reads a part ([`Part`]'s JSON).
    fn try_from(value: Value) -> std::result::Result<Self, String> {
        Part::from_json(&value)
    }
}

/// A part as the JSON object the store keeps and serde writes, its fields in a fixed order:
/// `"type"` first, then the text, or the reference, media type, size and name.
struct Ordered<'p>(&'p Part);

impl serde::Serialize for Ordered<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;

        let mut map = serializer.serialize_map(None)?;
        let (kind, attachment) = match self.0 {
            Part::Text(text) => {
                map.serialize_entry("type", "text")?;
                map.serialize_entry("text", text)?;
                return map.end();
            }
            Part::Image(attachment) => ("image", attachment),
            Part::File(attachment) => ("file", attachment),
        };
        map.serialize_entry("type", kind)?;
        match &attachment.reference {
            Reference::Url(url) => map.serialize_entry("url", url)?,
            Reference::Key(key) => map.serialize_entry("key", key)?,
        }
        map.serialize_entry("media_type", &attachment.media_type)?;
        map.serialize_entry("size", &attachment.size)?;
        if let Some(name) = &attachment.name {
            map.serialize_entry("name", name)?;
        }
        map.end()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Part {
    /// As the store keeps a part (see [`Part`]).
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        Ordered(self).serialize(serializer)
    }
}

/// A message's text: its content, then each text part, on lines of their own (empty ones left
/// out). What search reads and the default context cost counts.
pub(crate) fn text<'t>(content: &'t str, parts: &'t [Part]) -> Cow<'t, str> {
    let mut texts = std::iter::once(content)
        .chain(parts.iter().filter_map(Part::as_text))
        .filter(|t| !t.is_empty());
    let Some(first) = texts.next() else {
        return Cow::Borrowed("");
    };
    match texts.next() {
        None => Cow::Borrowed(first),
        Some(second) => {
            let mut joined = format!("{first}\n{second}");
            for more in texts {
                joined.push('\n');
                joined.push_str(more);
            }
            Cow::Owned(joined)
        }
    }
}

/// Checks a message's parts (`content_bytes` of content beside them) and returns them as the JSON
/// text stored, or `None` for none.
pub(crate) fn parts_text(
    parts: &[Part],
    content_bytes: usize,
    max_bytes: usize,
) -> Result<Option<String>> {
    if parts.is_empty() {
        return Ok(None);
    }
    if parts.len() > Part::MAX_PER_MESSAGE {
        return Err(Error::TooManyParts {
            parts: parts.len(),
            max: Part::MAX_PER_MESSAGE,
        });
    }
    let mut bytes = content_bytes;
    for (index, part) in parts.iter().enumerate() {
        if let Some(text) = part.as_text() {
            bytes += text.len();
            if text.contains('\0') {
                return Err(Error::InvalidPart {
                    index,
                    reason: "text must not contain a NUL character",
                });
            }
        }
        if let Some(reason) = part.fault() {
            return Err(Error::InvalidPart { index, reason });
        }
    }
    if bytes > max_bytes {
        return Err(Error::ContentTooLarge {
            bytes,
            max: max_bytes,
        });
    }
    let ordered: Vec<Ordered<'_>> = parts.iter().map(Ordered).collect();
    serde_json::to_string(&ordered)
        .map(Some)
        // Strings and numbers only: writing them cannot fail.
        .map_err(|e| Error::database(diesel::result::Error::SerializationError(Box::new(e))))
}

/// The parts a `parts` column holds (JSON text, or NULL for none); `None` if it holds anything
/// [`parts_text`] does not write.
pub(crate) fn read_parts(text: Option<&str>) -> Option<Vec<Part>> {
    let Some(text) = text else {
        return Some(Vec::new());
    };
    let values: Vec<Value> = serde_json::from_str(text).ok()?;
    values.iter().map(|v| Part::from_json(v).ok()).collect()
}

/// The text of a stored message's parts, joined to its content as [`text`] joins them: what the
/// search index reads. Parts that do not read back count no text.
pub(crate) fn stored_text<'t>(content: &'t str, parts: Option<&str>) -> Cow<'t, str> {
    match parts.and_then(|p| read_parts(Some(p))) {
        Some(parts) if parts.iter().any(|p| p.as_text().is_some()) => {
            Cow::Owned(text(content, &parts).into_owned())
        }
        _ => Cow::Borrowed(content),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn image(url: &str, media_type: &str) -> Part {
        Part::Image(Attachment::new(Reference::url(url), media_type, 10))
    }

    #[test]
    fn text_joins_content_and_text_parts_on_lines() {
        let parts = [
            Part::text("b"),
            image("https://x/y.png", "image/png"),
            Part::text("c"),
        ];
        assert_eq!(text("a", &parts), "a\nb\nc");
        assert_eq!(text("", &parts), "b\nc");
        assert_eq!(text("a", &[]), "a");
        assert!(matches!(text("a", &[]), Cow::Borrowed(_)));
        assert_eq!(text("", &[Part::text("")]), "");
    }

    #[test]
    fn faults_name_what_is_wrong() {
        let fault = |part: Part| part.fault();
        assert_eq!(fault(image("https://x/y.png", "image/png")), None);
        assert_eq!(fault(image("https://x/y.png", "IMAGE/PNG")), None);
        assert!(fault(image("https://x/y.pdf", "application/pdf")).is_some());
        assert!(fault(image("data:image/png;base64,AAAA", "image/png")).is_some());
        assert!(fault(image("no scheme", "image/png")).is_some());
        assert!(fault(image("/relative/path.png", "image/png")).is_some());
        assert!(fault(image("https://x/a b.png", "image/png")).is_some());
        assert!(fault(image("https://x/y.png", "image")).is_some());
        assert!(fault(image("https://x/y.png", "image/")).is_some());
        assert!(fault(image("https://x/y.png", "image/png; q=1")).is_none());
        let file = |source, name: Option<&str>, size| {
            let mut a = Attachment::new(source, "text/plain; charset=utf-8", size);
            a.name = name.map(str::to_owned);
            Part::File(a)
        };
        assert_eq!(fault(file(Reference::key("k/1"), Some("a.txt"), 0)), None);
        assert_eq!(
            fault(file(Reference::key("k"), None, Attachment::MAX_SIZE)),
            None
        );
        assert!(fault(file(Reference::key("k"), None, Attachment::MAX_SIZE + 1)).is_some());
        assert!(fault(file(Reference::key(""), None, 1)).is_some());
        assert!(fault(file(Reference::key("k".repeat(2049)), None, 1)).is_some());
        assert_eq!(fault(file(Reference::key("k".repeat(2048)), None, 1)), None);
        assert!(fault(file(Reference::key("a\nb"), None, 1)).is_some());
        assert!(fault(file(Reference::key("k"), Some(" "), 1)).is_some());
        assert!(fault(file(Reference::key("k"), Some("a\tb"), 1)).is_some());
    }

    #[test]
    fn json_reads_back_and_refuses_what_the_store_would_not_write() {
        let parts = [
            Part::text("hi"),
            image("https://x/y.png", "image/png"),
            Part::File(
                Attachment::new(Reference::key("k"), "application/pdf", 7).with_name("r.pdf"),
            ),
        ];
        for part in &parts {
            let json = serde_json::to_value(Ordered(part)).unwrap();
            assert_eq!(Part::from_json(&json).as_ref(), Ok(part));
        }
        // The fields in their order, as stored.
        assert_eq!(
            parts_text(&parts[1..], 0, 1000).unwrap().unwrap(),
            concat!(
                r#"[{"type":"image","url":"https://x/y.png","media_type":"image/png","size":10},"#,
                r#"{"type":"file","key":"k","media_type":"application/pdf","size":7,"#,
                r#""name":"r.pdf"}]"#
            )
        );
        let stored = parts_text(&parts, 0, 1000).unwrap().unwrap();
        assert_eq!(read_parts(Some(&stored)).as_deref(), Some(&parts[..]));
        for bad in [
            json!("text"),
            json!({"type": "video", "url": "https://x", "media_type": "video/mp4", "size": 1}),
            json!({"type": "text"}),
            json!({"type": "text", "text": "a", "extra": 1}),
            json!({"type": "file", "url": "https://x", "key": "k", "media_type": "a/b", "size": 1}),
            json!({"type": "file", "key": "k", "media_type": "a/b"}),
            json!({"type": "file", "key": "k", "media_type": "a/b", "size": -1}),
            json!({"type": "file", "key": "k", "media_type": "a/b", "size": 1.5}),
            json!({"type": "image", "key": "k", "media_type": "text/plain", "size": 1}),
        ] {
            assert!(Part::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_message_s_parts_are_checked_as_a_whole() {
        let many = vec![Part::text("a"); Part::MAX_PER_MESSAGE + 1];
        assert!(matches!(
            parts_text(&many, 0, 1000),
            Err(Error::TooManyParts {
                parts: 101,
                max: 100
            })
        ));
        assert!(parts_text(&many[1..], 0, 1000).is_ok());
        assert!(matches!(
            parts_text(&[Part::text("abc")], 8, 10),
            Err(Error::ContentTooLarge { bytes: 11, max: 10 })
        ));
        assert!(matches!(
            parts_text(&[Part::text("ok"), Part::text("a\0")], 0, 10),
            Err(Error::InvalidPart { index: 1, .. })
        ));
        assert_eq!(parts_text(&[], 0, 10).unwrap(), None);
    }
}
