//! Serde forms (cargo feature `serde`) of the types that are not plain data: ids, roles and titles
//! travel as strings, and, like cursors and snippets, are read back through the checks their own
//! constructors make. Invalid input is a deserialization error, never an invalid value. Plain data
//! (conversations, messages, pages) derives its form where it is defined.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::ids::{ConversationId, MessageId, UserId};
use crate::models::Role;
use crate::page::ConversationCursor;
use crate::search::Snippet;
use crate::title::Title;

/// Reads a string through `parse`; what `parse` refuses is the deserializer's error.
struct Parsed<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
    _type: PhantomData<T>,
}

impl<T> Visitor<'_> for Parsed<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
        (self.parse)(s).map_err(E::custom)
    }
}

/// `Serialize` as the type's `Display` form and `Deserialize` through `$parse`.
macro_rules! string_form {
    ($($t:ty, $expecting:literal, $parse:expr;)*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(Parsed {
                    expecting: $expecting,
                    parse: $parse,
                    _type: PhantomData,
                })
            }
        }
    )*};
}

string_form! {
    UserId, "a user id", |s| UserId::new(s).map_err(|e| e.to_string());
    ConversationId, "a conversation id (a UUID)", |s| s.parse().map_err(|e: crate::Error| e.to_string());
    MessageId, "a message id (a UUID)", |s| s.parse().map_err(|e: crate::Error| e.to_string());
    Role, "a role: \"system\", \"user\", \"assistant\" or \"tool\"", |s| s.parse();
    Title, "a title", |s| match Title::parse(s) {
        Ok(Some(title)) => Ok(title),
        Ok(None) => Err("title is blank".to_owned()),
        Err(e) => Err(e.to_string()),
    };
}

/// A [`ConversationCursor`] on the wire: `{"updated_at": RFC 3339, "id": UUID}`.
#[derive(Serialize, Deserialize)]
#[serde(rename = "ConversationCursor")]
struct CursorForm {
    updated_at: DateTime<Utc>,
    id: ConversationId,
}

impl Serialize for ConversationCursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        CursorForm {
            updated_at: self.updated_at(),
            id: self.id(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ConversationCursor {
    /// Through [`ConversationCursor::new`], which keeps the time within what storage can compare.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let form = CursorForm::deserialize(deserializer)?;
        Ok(ConversationCursor::new(form.updated_at, form.id))
    }
}

/// A [`Snippet`] on the wire: `{"text": …, "highlights": [{"start": …, "end": …}, …]}`.
#[derive(Serialize, Deserialize)]
#[serde(rename = "Snippet")]
struct SnippetForm<T> {
    text: T,
    highlights: Vec<Range<usize>>,
}

impl Serialize for Snippet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SnippetForm {
            text: self.text.as_str(),
            highlights: self.highlights.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Snippet {
    /// Refuses highlights that are not ranges of the text on character boundaries, in order and
    /// apart, which [`Snippet::marked`] could not mark.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let SnippetForm { text, highlights } = SnippetForm::<String>::deserialize(deserializer)?;
        let mut at = 0;
        for range in &highlights {
            let fits = at <= range.start
                && range.start <= range.end
                && range.end <= text.len()
                && text.is_char_boundary(range.start)
                && text.is_char_boundary(range.end);
            if !fits {
                return Err(de::Error::custom(format!(
                    "snippet highlight {}..{} is not a range of its text, in order",
                    range.start, range.end
                )));
            }
            at = range.end;
        }
        Ok(Snippet { text, highlights })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_travel_as_their_stored_spelling() {
        for role in [Role::System, Role::User, Role::Assistant, Role::Tool] {
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
        for bad in [r#""User""#, r#""""#, r#""bot""#, "1", "null"] {
            assert!(serde_json::from_str::<Role>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn titles_are_read_through_their_checks() {
        let title: Title = serde_json::from_str(r#""  Groceries ""#).unwrap();
        assert_eq!(title.as_str(), "Groceries");
        assert_eq!(serde_json::to_string(&title).unwrap(), r#""Groceries""#);
        for bad in [r#""   ""#, r#""a\u0007b""#] {
            assert!(serde_json::from_str::<Title>(bad).is_err(), "{bad}");
        }
        let long = format!("\"{}\"", "é".repeat(Title::MAX_CHARS + 1));
        let error = serde_json::from_str::<Title>(&long)
            .unwrap_err()
            .to_string();
        assert!(error.contains("the maximum is 255"), "{error}");
    }

    #[test]
    fn cursors_keep_their_time_in_range() {
        let id = ConversationId::generate();
        // Year 0 sorts wrongly as SQLite text; the cursor moves it to year 1, as `new` does.
        let json = format!(r#"{{"updated_at": "0000-06-01T00:00:00Z", "id": "{id}"}}"#);
        let cursor: ConversationCursor = serde_json::from_str(&json).unwrap();
        assert_eq!(
            cursor.updated_at().to_rfc3339(),
            "0001-01-01T00:00:00+00:00"
        );
        assert_eq!(cursor.id(), id);
    }

    #[test]
    fn snippets_with_highlights_outside_their_text_are_refused() {
        let ok = r#"{"text": "café au lait", "highlights": [{"start": 0, "end": 5}, {"start": 9, "end": 13}]}"#;
        let snippet: Snippet = serde_json::from_str(ok).unwrap();
        assert_eq!(snippet.marked("[", "]"), "[café] au [lait]");
        for highlights in [
            r#"[{"start": 0, "end": 4}]"#,                         // inside "é"
            r#"[{"start": 9, "end": 14}]"#,                        // past the end
            r#"[{"start": 5, "end": 3}]"#,                         // backwards
            r#"[{"start": 6, "end": 8}, {"start": 0, "end": 5}]"#, // out of order
        ] {
            let json = format!(r#"{{"text": "café au lait", "highlights": {highlights}}}"#);
            assert!(
                serde_json::from_str::<Snippet>(&json).is_err(),
                "{highlights}"
            );
        }
    }
}
