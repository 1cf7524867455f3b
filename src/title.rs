//! Conversation titles.

use std::fmt;

use crate::error::{check_text, Error, Result};

/// A conversation title: trimmed, 1 to [`Title::MAX_CHARS`] characters (not bytes: "日本" is two),
/// no control characters. With the `serde` feature a title is its string, read back through
/// [`Title::parse`] (so it is trimmed, and a blank one is refused).
///
/// ```
/// use chatstore::Title;
/// assert_eq!(Title::parse("  Groceries ").unwrap().unwrap().as_str(), "Groceries");
/// assert!(Title::parse("   ").unwrap().is_none()); // blank means "no title"
/// assert!(Title::parse(&"é".repeat(256)).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Title(String);

impl Title {
    /// The longest title accepted, in characters.
    pub const MAX_CHARS: usize = 255;

    /// Trims surrounding whitespace and validates. A blank string is no title (`Ok(None)`).
    ///
    /// # Errors
    /// [`Error::InvalidTitle`] if the trimmed title is longer than [`Title::MAX_CHARS`] characters
    /// or contains a control character.
    pub fn parse(title: &str) -> Result<Option<Self>> {
        let title = title.trim();
        if title.is_empty() {
            return Ok(None);
        }
        check_text(title, Self::MAX_CHARS).map_err(Error::InvalidTitle)?;
        Ok(Some(Title(title.to_owned())))
    }

    /// The title text.
    pub fn as_str(&self) -> &str {
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
