//! Importing a conversation as an export wrote it: the checks it passes before anything is
//! written, and the write.

use std::collections::HashSet;

use chrono::{DateTime, Timelike, Utc};

use crate::conn::Conn;
use crate::ids::UserId;
use crate::models::{Conversation, Message, NewMessage};
use crate::queries::rows::{NewConversationRow, NewMessageRow};
use crate::queries::{conversations, messages};
use crate::title::Title;
use crate::{Error, Result};

/// A conversation to import, checked: what its message rows need besides the messages themselves.
pub(crate) struct CheckedImport {
    /// Each message's metadata as JSON text.
    pub(crate) metadata: Vec<Option<String>>,
}

impl CheckedImport {
    /// Writes the conversation and its messages (in the caller's write transaction), refusing a
    /// conversation id or message id that is stored already.
    pub(crate) fn write(
        &self,
        conn: &mut Conn,
        user: &UserId,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<()> {
        conversations::insert(conn, &NewConversationRow::of(user, conversation))?;
        // Looked up first, to name the id: a failed insert does not say which it was.
        let ids: Vec<_> = messages.iter().map(|m| m.id).collect();
        let stored = messages::stored_ids(conn, &ids)?;
        if let Some(taken) = messages.iter().find(|m| stored.contains(&m.id)) {
            return Err(Error::DuplicateId(taken.id));
        }
        let mut rows: Vec<NewMessageRow<'_>> = messages
            .iter()
            .zip(&self.metadata)
            .map(|(message, metadata)| NewMessageRow::of(user, message, metadata.as_deref()))
            .collect();
        messages::insert_stored(conn, &mut rows)
    }
}

/// Checks that `conversation` and `messages` are what the store could have written for `user`:
/// the rules of [`ChatStore::import_conversation`](crate::ChatStore::import_conversation).
pub(crate) fn check_import(
    user: &UserId,
    conversation: &Conversation,
    messages: &[Message],
    max_bytes: usize,
) -> Result<CheckedImport> {
    let invalid = |why: String| Err(Error::InvalidImport(why));
    if conversation.user_id != *user {
        return invalid(
            "the conversation belongs to another user than the one importing it".into(),
        );
    }
    if let Some(title) = &conversation.title {
        match Title::parse(title)? {
            Some(parsed) if parsed.as_str() == title => {}
            _ => return invalid("the title is blank or has surrounding whitespace".into()),
        }
    }
    if usize::try_from(conversation.message_count).ok() != Some(messages.len()) {
        return invalid(format!(
            "the conversation's message count is {}, but {} messages are given",
            conversation.message_count,
            messages.len()
        ));
    }
    microseconds(conversation.created_at, "the conversation's created_at")?;
    microseconds(conversation.updated_at, "the conversation's updated_at")?;
    // Stored times sort in time order only within four-digit years (SQLite keeps them as text):
    // a conversation of the year 10000 would sort first and send list cursors round in circles.
    // Messages lie between the conversation's times (checked below).
    let (earliest, latest) = crate::cursor::four_digit_years();
    if conversation.created_at.naive_utc() < earliest
        || conversation.updated_at.naive_utc() > latest
    {
        return invalid("a time is outside the years 1 to 9999".into());
    }
    if conversation.updated_at < conversation.created_at {
        return invalid("the conversation's updated_at is before its created_at".into());
    }
    let mut ids = HashSet::with_capacity(messages.len());
    let mut previous = conversation.created_at;
    let mut metadata = Vec::with_capacity(messages.len());
    for (message, seq) in messages.iter().zip(1i64..) {
        if message.conversation_id != conversation.id {
            return invalid(format!("message {seq} belongs to another conversation"));
        }
        if message.seq != seq {
            return invalid(format!(
                "message {seq} has seq {}: seqs must run 1, 2, 3… without a gap",
                message.seq
            ));
        }
        if !ids.insert(message.id) {
            return Err(Error::DuplicateId(message.id));
        }
        microseconds(message.created_at, "a message's created_at")?;
        if message.created_at < previous {
            return invalid(format!(
                "message {seq} was created before the conversation or the message before it"
            ));
        }
        previous = message.created_at;
        let mut new = NewMessage::new(message.role, &message.content);
        if let Some(value) = &message.metadata {
            // Borrowed: an import checks every message's metadata, which is not copied for it.
            new = new.with_metadata(std::borrow::Cow::Borrowed(value));
        }
        metadata.push(new.validate(max_bytes)?);
    }
    if previous > conversation.updated_at {
        return invalid("a message was created after the conversation's updated_at".into());
    }
    Ok(CheckedImport { metadata })
}

/// Every backend keeps microseconds: a finer time would read back as another.
fn microseconds(time: DateTime<Utc>, what: &str) -> Result<()> {
    match time.nanosecond() % 1000 {
        0 => Ok(()),
        _ => Err(Error::InvalidImport(format!(
            "{what} is finer than microseconds"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ConversationId;
    use crate::models::Role;
    use crate::MessageId;

    fn time(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(1_700_000_000_000_000 + micros).unwrap()
    }

    fn sample(n: i64) -> (UserId, Conversation, Vec<Message>) {
        let user = UserId::new("alice").unwrap();
        let conversation = Conversation {
            id: ConversationId::generate(),
            user_id: user.clone(),
            title: Some("Groceries".into()),
            created_at: time(0),
            updated_at: time(n + 1),
            message_count: n,
            branch: crate::ids::BranchId::ROOT,
        };
        let messages = (1..=n)
            .map(|seq| Message {
                id: MessageId::generate(),
                conversation_id: conversation.id,
                seq,
                role: Role::User,
                content: format!("m{seq}"),
                metadata: None,
                created_at: time(seq),
                branch: crate::ids::BranchId::ROOT,
            })
            .collect();
        (user, conversation, messages)
    }

    fn check(user: &UserId, c: &Conversation, m: &[Message]) -> Result<CheckedImport> {
        check_import(user, c, m, 100)
    }

    #[test]
    fn what_the_store_could_have_written_passes() {
        let (user, conversation, messages) = sample(3);
        assert!(check(&user, &conversation, &messages).is_ok());
        let (user, conversation, messages) = sample(0);
        assert!(check(&user, &conversation, &messages).is_ok());
    }

    #[test]
    fn each_broken_rule_is_refused() {
        let (user, conversation, messages) = sample(3);
        let refused = |c: &Conversation, m: &[Message]| match check(&user, c, m) {
            Err(Error::InvalidImport(why)) => why,
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("accepted"),
        };
        let mut c = conversation.clone();
        c.user_id = UserId::new("bob").unwrap();
        assert!(refused(&c, &messages).contains("another user"));
        for title in ["  Groceries", "", " "] {
            let mut c = conversation.clone();
            c.title = Some(title.into());
            assert!(refused(&c, &messages).contains("title"), "{title:?}");
        }
        let mut c = conversation.clone();
        c.message_count = 4;
        assert!(refused(&c, &messages).contains("message count"));
        let mut m = messages.clone();
        m[2].seq = 4;
        assert!(refused(&conversation, &m).contains("without a gap"));
        let mut m = messages.clone();
        m.swap(0, 1);
        assert!(refused(&conversation, &m).contains("without a gap"));
        let mut m = messages.clone();
        m[1].conversation_id = ConversationId::generate();
        assert!(refused(&conversation, &m).contains("another conversation"));
        let mut m = messages.clone();
        m[2].created_at = time(1);
        assert!(refused(&conversation, &m).contains("created before"));
        let mut c = conversation.clone();
        c.updated_at = time(2);
        assert!(refused(&c, &messages).contains("after the conversation's updated_at"));
        let mut c = conversation.clone();
        c.created_at = time(0) + chrono::Duration::nanoseconds(1);
        assert!(refused(&c, &messages).contains("finer than microseconds"));

        let mut m = messages.clone();
        m[1].id = m[0].id;
        assert!(matches!(
            check(&user, &conversation, &m),
            Err(Error::DuplicateId(id)) if id == m[0].id
        ));
        let mut m = messages.clone();
        m[0].content = "x".repeat(101);
        assert!(matches!(
            check(&user, &conversation, &m),
            Err(Error::ContentTooLarge {
                bytes: 101,
                max: 100
            })
        ));
        let mut m = messages;
        m[0].metadata = Some(serde_json::json!([1]));
        assert!(matches!(
            check(&user, &conversation, &m),
            Err(Error::InvalidMetadata)
        ));
        let mut c = conversation;
        c.title = Some("a\nb".into());
        assert!(matches!(check(&user, &c, &[]), Err(Error::InvalidTitle(_))));
    }
}
