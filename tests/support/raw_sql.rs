//! Statements written by hand for one backend, as another program would write them: to try the
//! database's own constraints, and to read rows the library did not write.

use chatstore::ConversationId;

use super::{Kind, TestDb};

/// The statements of one backend.
pub struct RawSql(Kind);

/// A message row for [`RawSql::message`]; `..Default::default()` makes the rest a valid row
/// (seq 2 of alice's conversation).
pub struct RawMessage<'a> {
    /// Every byte of the 16-byte id.
    pub id: u8,
    pub owner: &'a str,
    pub seq: i64,
    pub role: &'a str,
    pub content: &'a str,
    /// JSON text, or NULL.
    pub metadata: Option<&'a str>,
    /// `YYYY-MM-DD HH:MM:SS`.
    pub at: &'a str,
}

impl Default for RawMessage<'_> {
    fn default() -> Self {
        RawMessage {
            id: 1,
            owner: "alice",
            seq: 2,
            role: "user",
            content: "x",
            metadata: None,
            at: "2026-01-01 00:00:00",
        }
    }
}

impl RawSql {
    pub fn new(db: &TestDb) -> Self {
        RawSql(db.kind)
    }

    /// A 16-byte id.
    pub fn id(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match self.0 {
            Kind::Postgres | Kind::Citus => format!("'\\x{hex}'::bytea"),
            _ => format!("x'{hex}'"),
        }
    }

    /// A timestamp written `YYYY-MM-DD HH:MM:SS`.
    pub fn at(&self, time: &str) -> String {
        match self.0 {
            Kind::Postgres | Kind::Citus => format!("'{time}'::timestamp"),
            _ => format!("'{time}'"),
        }
    }

    pub fn message(&self, conv: ConversationId, m: RawMessage) -> String {
        let metadata = m
            .metadata
            .map_or("NULL".to_owned(), |json| format!("'{json}'"));
        format!(
            "INSERT INTO chatstore_messages \
             (id, conversation_id, user_id, seq, role, content, metadata, created_at) \
             VALUES ({}, {}, '{}', {}, '{}', '{}', {metadata}, {})",
            self.id(&[m.id; 16]),
            self.id(conv.as_uuid().as_bytes()),
            m.owner,
            m.seq,
            m.role,
            m.content,
            self.at(m.at),
        )
    }

    pub fn conversation(&self, id: u8, owner: &str, title: Option<&str>) -> String {
        let title = title.map_or("NULL".to_owned(), |t| format!("'{t}'"));
        let at = self.at("2026-01-01 00:00:00");
        format!(
            "INSERT INTO chatstore_conversations \
             (id, user_id, title, created_at, updated_at, message_count) \
             VALUES ({}, '{owner}', {title}, {at}, {at}, 0)",
            self.id(&[id; 16]),
        )
    }
}
