//! Rows as the tables hold them: what is read (`…Row`, then turned into the public models) and
//! what is written (`New…Row`, borrowing from the caller). A column added to a table is added here,
//! next to its model's field.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Binary, Nullable, Text, Timestamp};

use super::columns::{BindTime, DbTime};
use crate::ids::{BranchId, ConversationId, MessageId, UserId};
use crate::models::{
    corrupt_row, read_parts, Branch, Conversation, Encoded, ListRank, Message, NewMessage, Role,
    Tag, Usage,
};
use crate::schema::{branches, conversations, messages};
use crate::tree::{split_seq, stored_seq, Node, Tree};
use crate::Result;

#[derive(Queryable, Selectable)]
#[diesel(table_name = conversations)]
pub(crate) struct ConversationRow {
    pub(crate) id: ConversationId,
    pub(crate) user_id: UserId,
    pub(crate) title: Option<String>,
    pub(crate) created_at: DbTime,
    pub(crate) updated_at: DbTime,
    pub(crate) message_count: i64,
    pub(crate) branch: i64,
    pub(crate) branch_fork: i64,
    pub(crate) list_rank: i16,
    pub(crate) metadata: Option<String>,
    pub(crate) tags: Option<String>,
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) total_tokens: i64,
}

/// A [`ConversationRow`]'s columns, in order, for hand-written SQL.
#[cfg(feature = "mysql")]
pub(crate) const CONVERSATION_COLUMNS: &str = "id, user_id, title, created_at, updated_at, \
     message_count, branch, branch_fork, list_rank, metadata, tags, input_tokens, output_tokens, \
     total_tokens";

/// The SQL types of [`CONVERSATION_COLUMNS`], in order.
#[cfg(feature = "mysql")]
pub(crate) type ConversationSql = (
    Binary,
    Text,
    Nullable<Text>,
    Timestamp,
    Timestamp,
    BigInt,
    BigInt,
    BigInt,
    diesel::sql_types::SmallInt,
    Nullable<Text>,
    Nullable<Text>,
    BigInt,
    BigInt,
    BigInt,
);

impl ConversationRow {
    pub(crate) fn into_model(self) -> Result<Conversation> {
        let rank = ListRank::from_db(self.list_rank)
            .ok_or_else(|| corrupt_row(format_args!("list rank {}", self.list_rank)))?;
        let (tags, metadata) = self.tags_and_metadata()?;
        let usage = Usage::from_db(self.input_tokens, self.output_tokens, self.total_tokens)
            .ok_or_else(|| corrupt_row("a negative usage total"))?;
        Ok(Conversation {
            id: self.id,
            user_id: self.user_id,
            title: self.title,
            created_at: self.created_at.utc(),
            updated_at: self.updated_at.utc(),
            message_count: self.message_count,
            branch: BranchId::from_db(self.branch),
            pinned: rank == ListRank::Pinned,
            archived: rank == ListRank::Archived,
            tags,
            metadata,
            usage,
        })
    }

    /// Its tags and metadata, read from their JSON text.
    pub(crate) fn tags_and_metadata(&self) -> Result<(Vec<Tag>, Option<serde_json::Value>)> {
        let metadata = match &self.metadata {
            None => None,
            // As a message's: any depth reads back (see `parse_metadata`).
            Some(text) => match parse_metadata(text) {
                Ok(value) if value.is_object() => Some(value),
                _ => {
                    return Err(corrupt_row(
                        "conversation metadata that is not a JSON object",
                    ))
                }
            },
        };
        let tags = match &self.tags {
            None => Vec::new(),
            Some(text) => read_tags(text)
                .ok_or_else(|| corrupt_row("conversation tags that are not an array of tags"))?,
        };
        Ok((tags, metadata))
    }

    /// Its branches as a tree, given its stored branch rows (none: the root alone, made when the
    /// conversation was).
    pub(crate) fn tree(&self, rows: Vec<BranchRow>) -> Tree {
        let nodes: Vec<Node> = rows.into_iter().map(BranchRow::into_node).collect();
        let branched = !nodes.is_empty();
        let mut tree = Tree::new(
            nodes,
            BranchId::from_db(self.branch),
            self.message_count,
            self.updated_at.0,
        );
        if let Some(root) = tree.get_mut(BranchId::ROOT).filter(|_| !branched) {
            root.created_at = self.created_at.0;
        }
        tree
    }
}

#[derive(Insertable)]
#[diesel(table_name = conversations, treat_none_as_default_value = false)]
pub(crate) struct NewConversationRow<'a> {
    pub(crate) id: ConversationId,
    pub(crate) user_id: &'a UserId,
    pub(crate) title: Option<&'a str>,
    pub(crate) created_at: BindTime,
    pub(crate) updated_at: BindTime,
    pub(crate) message_count: i64,
    pub(crate) branch: i64,
    /// Where the active branch's own messages start, and how many are stored off them (see
    /// `tree.rs`): 0 unless the conversation has branched.
    pub(crate) branch_fork: i64,
    pub(crate) off_branch: i64,
    /// The active branch's nearest ancestors ([`Tree::ancestors`]): -1 on a straight history.
    pub(crate) ancestor_1: i64,
    pub(crate) ancestor_2: i64,
    pub(crate) ancestor_3: i64,
    pub(crate) ancestor_4: i64,
    pub(crate) list_rank: i16,
    /// The metadata as JSON text, validated ([`metadata_text`](crate::models::metadata_text)).
    pub(crate) metadata: Option<String>,
    /// The tags as [`tags_text`] writes them.
    pub(crate) tags: Option<String>,
    /// Its messages' usage, summed.
    pub(crate) input_tokens: i64,
    pub(crate) output_tokens: i64,
    pub(crate) total_tokens: i64,
}

/// A conversation's tags (each once, sorted) as its `tags` column keeps them: a JSON array of
/// strings, or NULL for none.
pub(crate) fn tags_text(tags: &[Tag]) -> Option<String> {
    match tags.is_empty() {
        true => None,
        false => Some(serde_json::Value::from_iter(tags.iter().map(Tag::as_str)).to_string()),
    }
}

/// The tags a `tags` column holds; `None` if it holds anything [`tags_text`] does not write.
fn read_tags(text: &str) -> Option<Vec<Tag>> {
    let tags: Vec<String> = serde_json::from_str(text).ok()?;
    let tags: Vec<Tag> = tags.into_iter().map(Tag::new).collect::<Result<_>>().ok()?;
    // Each once, sorted, and not too many: what `Tag::set_of` makes.
    let canonical = tags.len() <= Tag::MAX_PER_CONVERSATION && tags.windows(2).all(|w| w[0] < w[1]);
    canonical.then_some(tags)
}

impl<'a> NewConversationRow<'a> {
    /// The row of `conversation`, as `user`'s, with no message stored off its active branch. Its
    /// metadata, if any, must have been validated, and its usage be its messages'.
    pub(crate) fn of(user: &'a UserId, conversation: &'a Conversation) -> Self {
        let (input_tokens, output_tokens, total_tokens) = conversation.usage.to_db();
        NewConversationRow {
            id: conversation.id,
            user_id: user,
            title: conversation.title.as_deref(),
            created_at: BindTime(conversation.created_at.naive_utc()),
            updated_at: BindTime(conversation.updated_at.naive_utc()),
            message_count: conversation.message_count,
            branch: conversation.branch.as_i64(),
            branch_fork: 0,
            off_branch: 0,
            ancestor_1: -1,
            ancestor_2: -1,
            ancestor_3: -1,
            ancestor_4: -1,
            list_rank: conversation.list_rank().as_db(),
            metadata: conversation.metadata.as_ref().map(|m| m.to_string()),
            tags: tags_text(&conversation.tags),
            input_tokens,
            output_tokens,
            total_tokens,
        }
    }
}

/// A message row as selected: by the DSL (`Selectable`) or from hand-written SQL of the same
/// columns in the same order ([`MessageSql`], the search).
#[derive(Queryable, Selectable)]
#[diesel(table_name = messages)]
pub(crate) struct MessageRow {
    pub(crate) id: MessageId,
    pub(crate) conversation_id: ConversationId,
    pub(crate) seq: i64,
    pub(crate) role: Role,
    pub(crate) content: String,
    pub(crate) metadata: Option<String>,
    pub(crate) created_at: DbTime,
    pub(crate) input_tokens: Option<i64>,
    pub(crate) output_tokens: Option<i64>,
    pub(crate) total_tokens: Option<i64>,
    pub(crate) parts: Option<String>,
}

/// A [`MessageRow`]'s columns, in its order (and [`MessageSql`]'s), each after `$table` (`"m."`,
/// or `""` for none), as a literal for hand-written SQL. Such a statement is decoded by position:
/// two columns of one type listed the other way round would read back swapped, so every
/// statement of message rows takes its list from here.
macro_rules! message_columns {
    ($table:literal) => {
        concat!(
            $table,
            "id, ",
            $table,
            "conversation_id, ",
            $table,
            "seq, ",
            $table,
            "role, ",
            $table,
            "content, ",
            $table,
            "metadata, ",
            $table,
            "created_at, ",
            $table,
            "input_tokens, ",
            $table,
            "output_tokens, ",
            $table,
            "total_tokens, ",
            $table,
            "parts"
        )
    };
}
pub(crate) use message_columns;

/// The SQL types of a [`MessageRow`]'s columns, in order.
pub(crate) type MessageSql = (
    Binary,
    Binary,
    BigInt,
    Text,
    Text,
    Nullable<Text>,
    Timestamp,
    Nullable<BigInt>,
    Nullable<BigInt>,
    Nullable<BigInt>,
    Nullable<Text>,
);

impl MessageRow {
    /// Its token usage, if it has one.
    pub(crate) fn usage(&self) -> Result<Option<Usage>> {
        message_usage(self.input_tokens, self.output_tokens, self.total_tokens)
    }

    pub(crate) fn into_model(self) -> Result<Message> {
        let (branch, seq) = split_seq(self.seq);
        let usage = self.usage()?;
        Ok(Message {
            id: self.id,
            conversation_id: self.conversation_id,
            seq,
            branch,
            role: self.role,
            content: self.content,
            metadata: self
                .metadata
                .as_deref()
                .map(parse_metadata)
                .transpose()
                .map_err(corrupt_row)?,
            created_at: self.created_at.utc(),
            usage,
            parts: read_parts(self.parts.as_deref())
                .ok_or_else(|| corrupt_row("message parts that are not an array of parts"))?,
        })
    }
}

/// A row of a history window's first statement (`messages::window`): the conversation's count, active branch and fork (on
/// the row of the own run's part; NULL on the ancestors' parts on SQLite and PostgreSQL), and a
/// message of the window, or NULLs if the window holds none. Decoded by position
/// ([`Positional`](super::Positional)), as [`WindowSql`] says, in the statement's column order.
#[derive(Queryable)]
pub(crate) struct WindowRow {
    pub(crate) count: Option<i64>,
    pub(crate) active: Option<i64>,
    pub(crate) fork: Option<i64>,
    pub(crate) id: Option<MessageId>,
    pub(crate) seq: Option<i64>,
    pub(crate) role: Option<crate::models::Role>,
    pub(crate) content: Option<String>,
    pub(crate) metadata: Option<String>,
    pub(crate) created_at: Option<DbTime>,
    pub(crate) input_tokens: Option<i64>,
    pub(crate) output_tokens: Option<i64>,
    pub(crate) total_tokens: Option<i64>,
    pub(crate) parts: Option<String>,
}

/// The SQL types of a [`WindowRow`]'s columns, in order.
pub(crate) type WindowSql = (
    Nullable<BigInt>,
    Nullable<BigInt>,
    Nullable<BigInt>,
    Nullable<Binary>,
    Nullable<BigInt>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Timestamp>,
    Nullable<BigInt>,
    Nullable<BigInt>,
    Nullable<BigInt>,
    Nullable<Text>,
);

impl WindowRow {
    /// Its message, a message of `conversation` (the statement reads one conversation's rows, so
    /// it does not read the id on every row), or `None` on the conversation's row of an empty
    /// window.
    pub(crate) fn message(self, conversation: ConversationId) -> Option<MessageRow> {
        Some(MessageRow {
            id: self.id?,
            conversation_id: conversation,
            seq: self.seq?,
            role: self.role?,
            content: self.content?,
            metadata: self.metadata,
            created_at: self.created_at?,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            total_tokens: self.total_tokens,
            parts: self.parts,
        })
    }
}

/// Stored metadata as JSON, however deeply it nests. The store writes at most
/// [`MAX_METADATA_DEPTH`](crate::MAX_METADATA_DEPTH) levels, but another program (or an older
/// chatstore) may have written more — SQLite's and PostgreSQL's checks allow hundreds — and past
/// serde_json's default limit of 128 levels one such row made every read that touched it fail,
/// a user's whole export included. So the limit is lifted, and `serde_stacker` grows the stack
/// while the parser descends, so that no depth can overflow it either.
fn parse_metadata(text: &str) -> serde_json::Result<serde_json::Value> {
    use serde::Deserialize;

    let mut parser = serde_json::Deserializer::from_str(text);
    parser.disable_recursion_limit();
    let value = serde_json::Value::deserialize(serde_stacker::Deserializer::new(&mut parser))?;
    parser.end()?;
    Ok(value)
}

#[derive(Insertable)]
#[diesel(table_name = messages, treat_none_as_default_value = false)]
pub(crate) struct NewMessageRow<'a> {
    pub(crate) id: MessageId,
    pub(crate) conversation_id: ConversationId,
    pub(crate) user_id: &'a UserId,
    pub(crate) seq: i64,
    pub(crate) role: Role,
    pub(crate) content: &'a str,
    pub(crate) metadata: Option<&'a str>,
    pub(crate) created_at: BindTime,
    /// What the full-text index reads instead of the content, if anything: left `None` by the
    /// callers, filled in by [`super::messages::insert`] as the backend's index needs.
    pub(crate) search_text: Option<String>,
    pub(crate) input_tokens: Option<i64>,
    pub(crate) output_tokens: Option<i64>,
    pub(crate) total_tokens: Option<i64>,
    /// The parts as JSON text ([`parts_text`](crate::models::parts_text)), or NULL for none.
    pub(crate) parts: Option<&'a str>,
}

/// A message's usage from its three columns: all NULL (none) or all set, none negative.
pub(crate) fn message_usage(
    input: Option<i64>,
    output: Option<i64>,
    total: Option<i64>,
) -> Result<Option<Usage>> {
    match (input, output, total) {
        (None, None, None) => Ok(None),
        (Some(input), Some(output), Some(total)) => Usage::from_db(input, output, total)
            .map(Some)
            .ok_or_else(|| corrupt_row("a negative token usage")),
        _ => Err(corrupt_row("a token usage with a part missing")),
    }
}

/// A message's usage as its three columns: all NULL, or all set.
fn usage_columns(usage: Option<Usage>) -> (Option<i64>, Option<i64>, Option<i64>) {
    match usage.map(Usage::to_db) {
        Some((input, output, total)) => (Some(input), Some(output), Some(total)),
        None => (None, None, None),
    }
}

impl<'a> NewMessageRow<'a> {
    /// The row of the new message `new`, with its metadata and parts already as JSON text.
    pub(crate) fn new(
        user: &'a UserId,
        conversation: ConversationId,
        (id, seq): (MessageId, i64),
        new: &'a NewMessage<'_>,
        encoded: &'a Encoded,
        created_at: NaiveDateTime,
    ) -> Self {
        let (input_tokens, output_tokens, total_tokens) = usage_columns(new.usage());
        NewMessageRow {
            id,
            conversation_id: conversation,
            user_id: user,
            seq,
            role: new.role(),
            content: new.content(),
            metadata: encoded.metadata.as_deref(),
            created_at: BindTime(created_at),
            search_text: None,
            input_tokens,
            output_tokens,
            total_tokens,
            parts: encoded.parts.as_deref(),
        }
    }

    /// A copy of the stored row `row`, as `user`'s message `id` of the conversation `conversation`,
    /// stored with the seq `seq`.
    pub(crate) fn copy_of(
        user: &'a UserId,
        row: &'a MessageRow,
        id: MessageId,
        conversation: ConversationId,
        seq: i64,
    ) -> Self {
        NewMessageRow {
            id,
            conversation_id: conversation,
            user_id: user,
            seq,
            role: row.role,
            content: &row.content,
            metadata: row.metadata.as_deref(),
            created_at: BindTime(row.created_at.0),
            search_text: None,
            input_tokens: row.input_tokens,
            output_tokens: row.output_tokens,
            total_tokens: row.total_tokens,
            parts: row.parts.as_deref(),
        }
    }

    /// The row of the stored message `message` (an import), as `user`'s, with its metadata and
    /// parts as JSON text.
    pub(crate) fn of(user: &'a UserId, message: &'a Message, encoded: &'a Encoded) -> Self {
        let (input_tokens, output_tokens, total_tokens) = usage_columns(message.usage);
        NewMessageRow {
            id: message.id,
            conversation_id: message.conversation_id,
            user_id: user,
            seq: stored_seq(message.branch, message.seq),
            role: message.role,
            content: &message.content,
            metadata: encoded.metadata.as_deref(),
            created_at: BindTime(message.created_at.naive_utc()),
            search_text: None,
            input_tokens,
            output_tokens,
            total_tokens,
            parts: encoded.parts.as_deref(),
        }
    }
}

/// A branch row, as read: see `tree.rs`.
#[derive(Queryable, Selectable)]
#[diesel(table_name = branches)]
pub(crate) struct BranchRow {
    pub(crate) branch: i64,
    pub(crate) parent: Option<i64>,
    pub(crate) fork_seq: i64,
    pub(crate) length: i64,
    pub(crate) retired: bool,
    pub(crate) created_at: DbTime,
    pub(crate) updated_at: DbTime,
}

impl BranchRow {
    pub(crate) fn into_node(self) -> Node {
        Node {
            branch: BranchId::from_db(self.branch),
            parent: self.parent.map(BranchId::from_db),
            fork: self.fork_seq,
            length: self.length,
            retired: self.retired,
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
        }
    }
}

/// A branch row, as written.
#[derive(Insertable)]
#[diesel(table_name = branches, treat_none_as_default_value = false)]
pub(crate) struct NewBranchRow<'a> {
    pub(crate) conversation_id: ConversationId,
    pub(crate) user_id: &'a UserId,
    pub(crate) branch: i64,
    pub(crate) parent: Option<i64>,
    pub(crate) fork_seq: i64,
    pub(crate) length: i64,
    pub(crate) retired: bool,
    pub(crate) created_at: BindTime,
    pub(crate) updated_at: BindTime,
}

impl<'a> NewBranchRow<'a> {
    /// The row of `node`, `user`'s in `conversation`.
    pub(crate) fn of(user: &'a UserId, conversation: ConversationId, node: &Node) -> Self {
        NewBranchRow {
            conversation_id: conversation,
            user_id: user,
            branch: node.branch.as_i64(),
            parent: node.parent.map(BranchId::as_i64),
            fork_seq: node.fork,
            length: node.length,
            retired: node.retired,
            created_at: BindTime(node.created_at),
            updated_at: BindTime(node.updated_at),
        }
    }
}

/// `node` as listed, `active` or not.
pub(crate) fn branch_model(node: &Node, active: bool) -> Branch {
    Branch {
        id: node.branch,
        parent: node.parent,
        fork_seq: node.fork,
        length: node.length,
        created_at: node.created_at.and_utc(),
        updated_at: node.updated_at.and_utc(),
        active,
        retired: node.retired,
    }
}
