use std::fmt;
use std::str::FromStr;

use crate::error::{check_text, Error, Result, TextError};

/// A conversation's tag: a label the application files conversations under (a project, a topic), to
/// list them by ([`ChatStore::list_conversations_tagged`](crate::ChatStore::list_conversations_tagged)).
///
/// A tag is trimmed, then must have 1 to [`Tag::MAX_CHARS`] characters and no control character;
/// it is stored and compared verbatim after trimming (`"Work"` and `"work"` are two tags). A
/// conversation has at most [`Tag::MAX_PER_CONVERSATION`] tags. With the `serde` feature a tag is
/// its string, read back through [`Tag::new`].
///
/// ```
/// use chatstore::{Error, Tag, TextError};
///
/// assert_eq!(Tag::new("  project:apollo ")?.as_str(), "project:apollo");
/// assert!(matches!(Tag::new(" "), Err(Error::InvalidTag(TextError::Empty))));
/// assert!(matches!(Tag::new("a\nb"), Err(Error::InvalidTag(TextError::ControlCharacter { .. }))));
/// assert!(Tag::new("x".repeat(Tag::MAX_CHARS + 1)).is_err());
/// # Ok::<(), chatstore::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "String", into = "String")
)]
pub struct Tag(String);

impl Tag {
    /// The longest tag accepted, in characters (after trimming).
    pub const MAX_CHARS: usize = 64;

    /// The most tags a conversation may have.
    pub const MAX_PER_CONVERSATION: usize = 20;

    /// Validates `tag` as a tag, trimmed.
    ///
    /// # Errors
    /// [`Error::InvalidTag`] if it is blank, longer than [`Tag::MAX_CHARS`] characters once
    /// trimmed, or contains a control character.
    pub fn new(tag: impl Into<String>) -> Result<Self> {
        let tag = tag.into();
        let trimmed = tag.trim();
        if trimmed.is_empty() {
            return Err(Error::InvalidTag(TextError::Empty));
        }
        check_text(trimmed, Self::MAX_CHARS).map_err(Error::InvalidTag)?;
        Ok(Tag(match trimmed.len() == tag.len() {
            true => tag,
            false => trimmed.to_owned(),
        }))
    }

    /// The tag, trimmed.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `tags` as a conversation keeps them: each once, sorted (by their UTF-8 bytes).
    ///
    /// # Errors
    /// [`Error::TooManyTags`] if more than [`Tag::MAX_PER_CONVERSATION`] remain.
    pub(crate) fn set_of(tags: impl IntoIterator<Item = Tag>) -> Result<Vec<Tag>> {
        let mut set: Vec<Tag> = tags.into_iter().collect();
        set.sort_unstable();
        set.dedup();
        if set.len() > Tag::MAX_PER_CONVERSATION {
            return Err(Error::TooManyTags {
                tags: set.len(),
                max: Tag::MAX_PER_CONVERSATION,
            });
        }
        Ok(set)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl FromStr for Tag {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Tag::new(s)
    }
}

impl TryFrom<String> for Tag {
    type Error = Error;
    /// As [`Tag::new`].
    fn try_from(tag: String) -> Result<Self> {
        Tag::new(tag)
    }
}

impl TryFrom<&str> for Tag {
    type Error = Error;
    /// As [`Tag::new`].
    fn try_from(tag: &str) -> Result<Self> {
        Tag::new(tag)
    }
}

impl From<Tag> for String {
    /// The tag, trimmed.
    fn from(tag: Tag) -> String {
        tag.0
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// One of a user's tags and how many of the user's conversations have it: what
/// [`ChatStore::tags`](crate::ChatStore::tags) returns.
///
/// With the `serde` feature: `{"tag", "conversations", "archived"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct TagCount {
    /// The tag.
    pub tag: Tag,
    /// The conversations with it that the default list shows (pinned or not; archived ones not).
    pub conversations: u64,
    /// The archived conversations with it.
    pub archived: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_of_tags_is_sorted_without_repeats_and_bounded() {
        let tag = |t: &str| Tag::new(t).unwrap();
        let set = Tag::set_of([tag("b"), tag("a"), tag(" b ")]).unwrap();
        assert_eq!(set, [tag("a"), tag("b")]);
        let many = (0..=Tag::MAX_PER_CONVERSATION).map(|i| tag(&format!("t{i}")));
        assert!(matches!(
            Tag::set_of(many),
            Err(Error::TooManyTags { tags: 21, max: 20 })
        ));
    }

    #[test]
    fn tags_are_counted_in_characters_after_trimming() {
        assert!(Tag::new(format!(" {} ", "é".repeat(Tag::MAX_CHARS))).is_ok());
        assert!(matches!(
            Tag::new("é".repeat(Tag::MAX_CHARS + 1)),
            Err(Error::InvalidTag(TextError::TooLong { chars: 65, max: 64 }))
        ));
    }
}
