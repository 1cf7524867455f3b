//! Conversation titles.
//!
//! `Title` is crate-private: the store takes titles as `&str` and checks them itself
//! ([`Error::InvalidTitle`]), so a public `Title` would only be a second way to make the same
//! check. What a caller needs to know up front, the limit, is [`MAX_TITLE_CHARS`].

use std::fmt;

use crate::error::{check_text, Error, Result};

/// The longest conversation title accepted, in characters (Unicode scalar values, not bytes: "日本"
/// is two), counted after trimming. A longer title is [`Error::InvalidTitle`].
///
/// ```
/// use chatstore::{ChatStore, Error, UserId, MAX_TITLE_CHARS};
/// # let store = ChatStore::open(":memory:")?;
/// # let alice = UserId::new("alice")?;
/// let longest = "é".repeat(MAX_TITLE_CHARS);
/// assert!(store.create_conversation(&alice, Some(&longest)).is_ok());
/// let longer = "é".repeat(MAX_TITLE_CHARS + 1);
/// let refused = store.create_conversation(&alice, Some(&longer));
/// assert!(matches!(refused, Err(Error::InvalidTitle(_))));
/// # Ok::<(), chatstore::Error>(())
/// ```
pub const MAX_TITLE_CHARS: usize = 255;

/// A conversation title: trimmed, 1 to [`MAX_TITLE_CHARS`] characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Title(String);

impl Title {
    /// Trims surrounding whitespace and validates. A blank string is no title (`Ok(None)`).
    ///
    /// # Errors
    /// [`Error::InvalidTitle`] if the trimmed title is longer than [`MAX_TITLE_CHARS`] characters
    /// or contains a control character.
    pub(crate) fn parse(title: &str) -> Result<Option<Self>> {
        let title = title.trim();
        if title.is_empty() {
            return Ok(None);
        }
        check_text(title, MAX_TITLE_CHARS).map_err(Error::InvalidTitle)?;
        Ok(Some(Title(title.to_owned())))
    }

    /// The title text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Title {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// Parses an optional title as the store's methods take it: `None` and blank are both no title.
pub(crate) fn parse_optional(title: Option<&str>) -> Result<Option<Title>> {
    title.map_or(Ok(None), Title::parse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TextError;

    #[test]
    fn titles_are_trimmed_and_counted_in_characters() {
        let title = Title::parse("  Groceries ").unwrap().unwrap();
        assert_eq!(title.as_str(), "Groceries");
        assert_eq!(title.to_string(), "Groceries");
        assert_eq!(Title::parse("   ").unwrap(), None); // blank means "no title"
        assert_eq!(parse_optional(None).unwrap(), None);
        assert!(Title::parse(&"é".repeat(MAX_TITLE_CHARS)).is_ok());
        let error = Title::parse(&"é".repeat(MAX_TITLE_CHARS + 1)).unwrap_err();
        assert!(matches!(
            error,
            Error::InvalidTitle(TextError::TooLong {
                chars: 256,
                max: 255
            })
        ));
        assert_eq!(
            error.to_string(),
            "title is 256 characters, the maximum is 255"
        );
        let error = Title::parse("a\u{7}b").unwrap_err();
        assert_eq!(
            error.to_string(),
            "title contains a control character at position 1"
        );
    }
}
