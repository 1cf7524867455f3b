//! Operators' data: store-wide counts, the records a user's data is exported as and imported from,
//! and the checks an import passes before anything is written.

use std::collections::{HashSet, VecDeque};

use chrono::{DateTime, Timelike, Utc};

use crate::ids::{ConversationId, UserId};
use crate::models::{Conversation, Message, NewMessage};
use crate::store::ChatStore;
use crate::title::Title;
use crate::{Error, Result};

/// Store-wide counts, from [`ChatStore::stats`]. With the `serde` feature:
/// `{"users", "conversations", "messages"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct StoreStats {
    /// Users who own at least one conversation (the store keeps nothing else about a user).
    pub users: u64,
    /// Conversations, every user's.
    pub conversations: u64,
    /// Messages, every user's.
    pub messages: u64,
}

/// One record of a user's data, as [`ChatStore::export_user`] reads it and
/// [`ChatStore::import_conversation`] takes it back: each conversation comes first, then its
/// messages in seq order.
///
/// With the `serde` feature a record is its [`Conversation`] or [`Message`] object with a `"type"`
/// field first, `"conversation"` or `"message"`, so that one JSON line says what it holds:
///
/// ```json
/// {"type":"conversation","id":"0193a3c4-…","user_id":"alice","title":"Groceries","created_at":"2026-11-24T08:15:56.724622Z","updated_at":"…","message_count":2}
/// {"type":"message","id":"0193a3c4-…","conversation_id":"0193a3c4-…","seq":1,"role":"user","content":"Add oat milk","metadata":null,"created_at":"…"}
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(tag = "type", rename_all = "lowercase")
)]
#[non_exhaustive]
pub enum ExportItem {
    /// A conversation, as it was when the export reached it.
    Conversation(Conversation),
    /// A message of the conversation before it.
    Message(Message),
}

/// What an export has read so far ([`UserExport::counts`]). With the `serde` feature:
/// `{"conversations", "messages"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct ExportCounts {
    /// Conversations read.
    pub conversations: u64,
    /// Messages read.
    pub messages: u64,
}

/// Conversations read per statement.
const CONVERSATIONS_PER_PAGE: u32 = 100;
/// Messages read per statement: an export holds at most this many at a time.
const MESSAGES_PER_PAGE: u32 = 1000;

/// The conversation whose messages an export is reading.
#[derive(Debug)]
struct Reading {
    id: ConversationId,
    /// Its message count when the export reached it: messages appended since are left out.
    last: i64,
    /// The seq read up to.
    read: i64,
}

/// A user's data, read page by page: the iterator that [`ChatStore::export_user`] returns.
///
/// Conversations come in id order, a page of 100 at a time, each followed by its messages in seq
/// order, read in windows of 1,000: memory holds one page, however large the history. Each page is
/// one statement on a pooled connection, returned before the next item is handed out, so the
/// consumer may take its time (and call the store) between items.
///
/// It reads page by page and conversation by conversation, not one snapshot of everything: each
/// conversation is exported as its page of the list read it, with its messages up to the count
/// it had then (messages appended since are left out, so the record and its messages always
/// agree). Renames and appends never move a conversation in id order, so none is skipped or
/// repeated; one created during the export is included if its id comes after the page being
/// read; one deleted before its messages are read ends early, and an import refuses it as
/// incomplete.
///
/// An error ends the export: the iterator returns `None` after it.
#[derive(Debug)]
#[must_use = "an export reads nothing until it is iterated"]
pub struct UserExport {
    store: ChatStore,
    user: UserId,
    page: VecDeque<Conversation>,
    /// The last conversation id listed; `None` before the first page.
    after: Option<ConversationId>,
    listed_all: bool,
    reading: Option<Reading>,
    messages: VecDeque<Message>,
    counts: ExportCounts,
    finished: bool,
}

impl UserExport {
    pub(crate) fn new(store: ChatStore, user: UserId) -> Self {
        UserExport {
            store,
            user,
            page: VecDeque::new(),
            after: None,
            listed_all: false,
            reading: None,
            messages: VecDeque::new(),
            counts: ExportCounts::default(),
            finished: false,
        }
    }

    /// The conversations and messages handed out so far.
    pub fn counts(&self) -> ExportCounts {
        self.counts
    }

    /// The next record, reading a page when the one held is used up; `None` at the end.
    fn advance(&mut self) -> Result<Option<ExportItem>> {
        loop {
            if let Some(message) = self.messages.pop_front() {
                self.counts.messages += 1;
                return Ok(Some(ExportItem::Message(message)));
            }
            if let Some(reading) = &mut self.reading {
                let left = reading.last - reading.read;
                if left > 0 {
                    let limit = u32::try_from(left)
                        .map_or(MESSAGES_PER_PAGE, |left| left.min(MESSAGES_PER_PAGE));
                    let window =
                        self.store
                            .export_messages(&self.user, reading.id, reading.read, limit)?;
                    let last = reading.last;
                    self.messages
                        .extend(window.into_iter().filter(|m| m.seq <= last));
                    if let Some(newest) = self.messages.back() {
                        reading.read = newest.seq;
                        continue;
                    }
                    // Nothing: deleted since it was listed, so it ends here.
                }
                self.reading = None;
            }
            if let Some(conversation) = self.page.pop_front() {
                self.reading = Some(Reading {
                    id: conversation.id,
                    last: conversation.message_count,
                    read: 0,
                });
                self.counts.conversations += 1;
                return Ok(Some(ExportItem::Conversation(conversation)));
            }
            if self.listed_all {
                return Ok(None);
            }
            let page =
                self.store
                    .export_conversations(&self.user, self.after, CONVERSATIONS_PER_PAGE)?;
            self.listed_all = page.len() < CONVERSATIONS_PER_PAGE as usize;
            self.after = page.last().map(|c| c.id).or(self.after);
            self.page.extend(page);
        }
    }
}

impl Iterator for UserExport {
    type Item = Result<ExportItem>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let item = self.advance().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.finished = true;
        }
        item
    }
}

impl std::iter::FusedIterator for UserExport {}

/// A conversation to import, checked: what its message rows need besides the messages themselves.
pub(crate) struct CheckedImport {
    /// Each message's metadata as JSON text.
    pub(crate) metadata: Vec<Option<String>>,
}

/// Checks that `conversation` and `messages` are what the store could have written for `user`:
/// the rules of [`ChatStore::import_conversation`].
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
    let (earliest, latest) = crate::page::four_digit_years();
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
            new = new.with_metadata(value);
        }
        metadata.push(new.validate(max_bytes)?);
    }
    if previous > conversation.updated_at {
        return invalid("a message was created after the conversation's updated_at".into());
    }
    Ok(CheckedImport { metadata })
}

/// MySQL: Diesel binds times as MySQL's TIMESTAMP, whose range is 1970-01-01 00:00:01 to
/// 2038-01-19 03:14:07.999999 UTC, and MariaDB turns a time outside it into NULL, which the
/// column refuses. The store's own times, from the clock, are inside it; an import's are checked,
/// so that such a time is an input error rather than a database error. Messages lie between the
/// conversation's times (see [`check_import`]), so those two are enough.
#[cfg(feature = "mysql")]
pub(crate) fn check_mysql_times(conversation: &Conversation) -> Result<()> {
    let first = DateTime::from_timestamp(1, 0);
    let last = DateTime::from_timestamp(i64::from(i32::MAX), 999_999_000);
    let (Some(first), Some(last)) = (first, last) else {
        return Ok(());
    };
    if conversation.created_at < first || conversation.updated_at > last {
        return Err(Error::InvalidImport(
            "a time is outside what MySQL can store (1970-01-01 00:00:01 to 2038-01-19 \
             03:14:07 UTC)"
                .into(),
        ));
    }
    Ok(())
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
            })
            .collect();
        (user, conversation, messages)
    }

    fn check(user: &UserId, c: &Conversation, m: &[Message]) -> Result<CheckedImport> {
        check_import(user, c, m, 100)
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn mysql_refuses_times_outside_its_timestamp_range() {
        let (_, mut conversation, _) = sample(0);
        assert!(check_mysql_times(&conversation).is_ok());
        let at = |secs: i64, nanos: u32| DateTime::from_timestamp(secs, nanos).unwrap();
        conversation.created_at = at(1, 0);
        conversation.updated_at = at(i64::from(i32::MAX), 999_999_000);
        assert!(check_mysql_times(&conversation).is_ok());
        conversation.created_at = at(0, 999_999_000);
        assert!(matches!(
            check_mysql_times(&conversation),
            Err(Error::InvalidImport(_))
        ));
        conversation.created_at = at(1, 0);
        conversation.updated_at = at(i64::from(i32::MAX) + 1, 0);
        assert!(matches!(
            check_mysql_times(&conversation),
            Err(Error::InvalidImport(_))
        ));
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
