//! The schema the store relies on, and a report of what a database has of it.

use std::fmt;

/// What kind of schema object a [`SchemaItem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ItemKind {
    /// A table.
    Table,
    /// An index (unique indexes included).
    Index,
    /// A named CHECK or FOREIGN KEY constraint.
    Constraint,
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ItemKind::Table => "table",
            ItemKind::Index => "index",
            ItemKind::Constraint => "constraint",
        })
    }
}

/// One table, index or constraint the store relies on, and whether the database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaItem {
    /// Table, index or constraint.
    pub kind: ItemKind,
    /// Its name (the same on every backend).
    pub name: &'static str,
    /// Whether the database has it.
    pub present: bool,
}

/// The result of [`ChatStore::verify_schema`](crate::ChatStore::verify_schema).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SchemaReport {
    /// Every object the store relies on, present or not.
    pub items: Vec<SchemaItem>,
}

impl SchemaReport {
    /// Whether every object is present.
    pub fn is_complete(&self) -> bool {
        self.items.iter().all(|i| i.present)
    }

    /// The objects that are missing.
    pub fn missing(&self) -> impl Iterator<Item = &SchemaItem> {
        self.items.iter().filter(|i| !i.present)
    }

    pub(crate) fn new(found: &[(ItemKind, String)]) -> Self {
        let items = EXPECTED
            .iter()
            .map(|&(kind, name)| SchemaItem {
                kind,
                name,
                present: found.iter().any(|(k, n)| *k == kind && n == name),
            })
            .collect();
        SchemaReport { items }
    }
}

impl fmt::Display for SchemaReport {
    /// One line per object: `ok      index chatstore_conversations_user_rank` or `MISSING …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for item in &self.items {
            let state = if item.present { "ok" } else { "MISSING" };
            writeln!(f, "{state:<8}{} {}", item.kind, item.name)?;
        }
        Ok(())
    }
}

/// What the migrations create, under the same names on every backend.
const EXPECTED: &[(ItemKind, &str)] = &[
    (ItemKind::Table, "chatstore_conversations"),
    (ItemKind::Table, "chatstore_messages"),
    (ItemKind::Table, "chatstore_branches"),
    (ItemKind::Table, "chatstore_conversation_tags"),
    (ItemKind::Index, "chatstore_conversations_id_user"),
    (ItemKind::Index, "chatstore_conversations_user_rank"),
    (ItemKind::Index, "chatstore_conversation_tags_list"),
    (ItemKind::Index, "chatstore_messages_conversation_seq"),
    (ItemKind::Index, "chatstore_messages_system"),
    // The full-text index: a GIN index on PostgreSQL, an FTS5 virtual table on SQLite.
    (ItemKind::Index, "chatstore_messages_search"),
    (ItemKind::Constraint, "chatstore_conversations_id_length"),
    (
        ItemKind::Constraint,
        "chatstore_conversations_user_id_length",
    ),
    (ItemKind::Constraint, "chatstore_conversations_title_length"),
    (
        ItemKind::Constraint,
        "chatstore_conversations_message_count_nonnegative",
    ),
    (ItemKind::Constraint, "chatstore_messages_id_length"),
    (ItemKind::Constraint, "chatstore_messages_seq_positive"),
    (ItemKind::Constraint, "chatstore_messages_role_valid"),
    (ItemKind::Constraint, "chatstore_messages_metadata_object"),
    (ItemKind::Constraint, "chatstore_messages_conversation_fk"),
    (ItemKind::Constraint, "chatstore_branches_conversation_fk"),
    (
        ItemKind::Constraint,
        "chatstore_conversation_tags_conversation_fk",
    ),
];
