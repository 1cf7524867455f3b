//! Importing a conversation as an export wrote it, with its branches: the checks it passes before
//! anything is written, and the write.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDateTime, Timelike, Utc};

use crate::conn::Conn;
use crate::ids::{BranchId, UserId};
use crate::models::{
    metadata_text, Branch, Conversation, Encoded, Message, NewMessage, Tag, Usage,
};
use crate::queries::rows::{NewConversationRow, NewMessageRow};
use crate::queries::{branches, conversations, messages, tags};
use crate::title::Title;
use crate::tree::{Node, Tree, MAX_POSITION};
use crate::{Error, Result};

/// A conversation to import, checked: what its rows need besides the records themselves.
pub(crate) struct CheckedImport {
    /// Each message's metadata and parts as JSON text.
    pub(crate) encoded: Vec<Encoded>,
    /// Its branches (the root alone if none were given).
    tree: Tree,
    /// Whether branches were given: then each has a row.
    branched: bool,
}

impl CheckedImport {
    /// Writes the conversation, its branches and its messages (in the caller's write transaction),
    /// refusing a conversation id or message id that is stored already.
    pub(crate) fn write(
        &self,
        conn: &mut Conn,
        user: &UserId,
        conversation: &Conversation,
        messages: &[Message],
    ) -> Result<()> {
        let active = conversation.branch;
        let [ancestor_1, ancestor_2, ancestor_3, ancestor_4] = self.tree.ancestors(active);
        let row = NewConversationRow {
            branch_fork: self.tree.get(active).map_or(0, |n| n.fork),
            off_branch: self.tree.off_branch(active),
            ancestor_1,
            ancestor_2,
            ancestor_3,
            ancestor_4,
            ..NewConversationRow::of(user, conversation)
        };
        conversations::insert(conn, &row)?;
        tags::insert(conn, user, conversation)?;
        if self.branched {
            for node in self.tree.nodes() {
                branches::save(conn, user, conversation.id, node, false)?;
            }
        }
        // Looked up first, to name the id: a failed insert does not say which it was.
        let ids: Vec<_> = messages.iter().map(|m| m.id).collect();
        let stored = messages::stored_ids(conn, user, &ids)?;
        if let Some(taken) = messages.iter().find(|m| stored.contains(&m.id)) {
            return Err(Error::DuplicateId(taken.id));
        }
        let mut rows: Vec<NewMessageRow<'_>> = messages
            .iter()
            .zip(&self.encoded)
            .map(|(message, encoded)| NewMessageRow::of(user, message, encoded))
            .collect();
        messages::insert_stored(conn, &mut rows)
    }
}

/// Checks that `conversation`, `branches` and `messages` are what the store could have written
/// for `user`: the rules of [`ChatStore::import_tree`](crate::ChatStore::import_tree).
pub(crate) fn check_import(
    user: &UserId,
    conversation: &Conversation,
    branches: &[Branch],
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
    if conversation.pinned && conversation.archived {
        return invalid("the conversation is both pinned and archived".into());
    }
    if Tag::set_of(conversation.tags.iter().cloned())? != conversation.tags {
        return invalid("the conversation's tags are not sorted, each once".into());
    }
    if let Some(metadata) = &conversation.metadata {
        metadata_text(metadata, max_bytes)?;
    }
    check_times(
        conversation.created_at,
        conversation.updated_at,
        "the conversation's",
    )?;
    let tree = match branches {
        [] => {
            if !conversation.branch.is_root() {
                return invalid(format!(
                    "the conversation's active branch is {}, but no branches are given",
                    conversation.branch
                ));
            }
            if usize::try_from(conversation.message_count).ok() != Some(messages.len()) {
                return invalid(format!(
                    "the conversation's message count is {}, but {} messages are given",
                    conversation.message_count,
                    messages.len()
                ));
            }
            let root = Node {
                branch: BranchId::ROOT,
                parent: None,
                fork: 0,
                length: conversation.message_count,
                retired: false,
                created_at: conversation.created_at.naive_utc(),
                updated_at: conversation.updated_at.naive_utc(),
            };
            let count = conversation.message_count;
            Tree::new(vec![root], BranchId::ROOT, count, NaiveDateTime::MIN)
        }
        _ => check_tree(conversation, branches)?,
    };
    let encoded = check_messages(conversation, &tree, messages, max_bytes)?;
    let usage: Usage = messages.iter().filter_map(|m| m.usage).sum();
    if usage != conversation.usage {
        return invalid(format!(
            "the conversation's usage is {} input, {} output and {} total tokens, but its \
             messages' add up to {}, {} and {}",
            conversation.usage.input_tokens,
            conversation.usage.output_tokens,
            conversation.usage.total_tokens,
            usage.input_tokens,
            usage.output_tokens,
            usage.total_tokens
        ));
    }
    Ok(CheckedImport {
        encoded,
        tree,
        branched: !branches.is_empty(),
    })
}

/// The tree of `branches`, if the store could have made it: by id from the root, each forking
/// from an older branch at a position its parent owns, a retired one kept only for what the
/// branches forking from it share, and the conversation's active branch one of the others, as
/// long as its message count.
fn check_tree(conversation: &Conversation, branches: &[Branch]) -> Result<Tree> {
    let invalid = |why: String| Err(Error::InvalidImport(why));
    let mut nodes: Vec<Node> = Vec::with_capacity(branches.len());
    for (i, b) in branches.iter().enumerate() {
        let at = |what: &str| format!("branch {}: {what}", b.id);
        if nodes.last().is_some_and(|n| n.branch >= b.id) {
            return invalid(at("the branches must come once each, by id"));
        }
        let tombstone = b.retired && b.fork_seq == 0 && b.length == 0;
        match (nodes.is_empty(), b.parent) {
            (true, None) if b.id.is_root() && b.fork_seq == 0 => {}
            (true, _) => return invalid(at("the first branch must be the root, forking at 0")),
            // A deleted branch that keeps the highest id taken (see `tree.rs`).
            (false, None) if tombstone && i + 1 == branches.len() => {}
            (false, None) => return invalid(at("only the root has no parent")),
            (false, Some(parent)) => {
                // By id, as the branches are.
                let found = nodes.binary_search_by_key(&parent, |n| n.branch);
                let Some(up) = found.ok().map(|k| &nodes[k]) else {
                    return invalid(at("its parent must be a branch given before it"));
                };
                let owned = match b.fork_seq {
                    0 => up.branch.is_root(),
                    fork => fork > up.fork && fork <= up.length,
                };
                if !owned {
                    return invalid(at("it must fork at a seq its parent holds itself"));
                }
            }
        }
        if b.length < b.fork_seq || b.length > MAX_POSITION {
            return invalid(at(
                "its length is before its fork or past the most a path holds",
            ));
        }
        if b.active != (b.id == conversation.branch) {
            return invalid(at(
                "it is marked active, or not, against the conversation's branch",
            ));
        }
        if b.active && (b.retired || b.length != conversation.message_count) {
            return invalid(at(
                "the active branch must be live, as long as the conversation's message count",
            ));
        }
        check_times(b.created_at, b.updated_at, &at("its"))?;
        if b.created_at < conversation.created_at {
            return invalid(at("it was made before the conversation"));
        }
        nodes.push(Node {
            branch: b.id,
            parent: b.parent,
            fork: b.fork_seq,
            length: b.length,
            retired: b.retired,
            created_at: b.created_at.naive_utc(),
            updated_at: b.updated_at.naive_utc(),
        });
    }
    if !nodes.iter().any(|n| n.branch == conversation.branch) {
        return invalid(format!(
            "the conversation's active branch {} is not among the branches given",
            conversation.branch
        ));
    }
    // The furthest fork of each branch's children, in one pass: a retired branch (other than a
    // tombstone) has children, and keeps exactly what they share.
    let mut shared: HashMap<BranchId, i64> = HashMap::new();
    for node in &nodes {
        if let Some(parent) = node.parent {
            let furthest = shared.entry(parent).or_insert(node.fork);
            *furthest = (*furthest).max(node.fork);
        }
    }
    for node in nodes.iter().filter(|n| n.retired && !n.is_tombstone()) {
        if shared.get(&node.branch) != Some(&node.length) {
            return invalid(format!(
                "branch {}: a retired branch keeps exactly what the branches forking from it share",
                node.branch
            ));
        }
    }
    let count = conversation.message_count;
    Ok(Tree::new(
        nodes,
        conversation.branch,
        count,
        NaiveDateTime::MIN,
    ))
}

/// Checks `messages` against the tree: each branch's own, by branch id, from its fork on in seq
/// order without a gap, each message its conversation's, its time no earlier than the message
/// before it on its path; returns each one's metadata and parts as JSON text.
fn check_messages(
    conversation: &Conversation,
    tree: &Tree,
    messages: &[Message],
    max_bytes: usize,
) -> Result<Vec<Encoded>> {
    let invalid = |why: String| Err(Error::InvalidImport(why));
    let expected: i64 = tree.nodes().iter().map(Node::own).sum();
    if usize::try_from(expected).ok() != Some(messages.len()) {
        return invalid(format!(
            "the branches hold {expected} messages, but {} are given",
            messages.len()
        ));
    }
    // Where each branch's own messages start among `messages`.
    let mut starts: HashMap<BranchId, usize> = HashMap::new();
    let mut due = tree
        .nodes()
        .iter()
        .flat_map(|n| (n.fork + 1..=n.length).map(move |seq| (n.branch, seq)));
    let mut ids = HashSet::with_capacity(messages.len());
    let mut encoded = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let number = i + 1;
        if message.conversation_id != conversation.id {
            return invalid(format!("message {number} belongs to another conversation"));
        }
        let Some((branch, seq)) = due.next() else {
            return invalid(format!("message {number} is more than the branches hold"));
        };
        if (message.branch, message.seq) != (branch, seq) {
            return invalid(format!(
                "message {number} is seq {} of branch {}, where seq {seq} of branch {branch} is \
                 due: each branch's messages come by branch, from its fork on, without a gap",
                message.seq, message.branch
            ));
        }
        let Some(node) = tree.get(branch) else {
            return invalid(format!("message {number} is on a branch not given"));
        };
        if seq == node.fork + 1 {
            starts.insert(branch, i);
        }
        if !ids.insert(message.id) {
            return Err(Error::DuplicateId(message.id));
        }
        microseconds(message.created_at, "a message's created_at")?;
        // The message before it on its path: its own branch's, or its parent's at the fork.
        let previous = match (seq == node.fork + 1, node.parent) {
            (false, _) => Some(messages[i - 1].created_at),
            (true, _) if node.fork == 0 => None,
            (true, Some(parent)) => {
                let owner = tree.owner_at(parent, node.fork);
                let start = tree.get(owner).map(|n| (starts.get(&owner), n.fork));
                match start {
                    Some((Some(&start), fork)) => usize::try_from(node.fork - fork - 1)
                        .ok()
                        .and_then(|k| messages.get(start + k))
                        .map(|m| m.created_at),
                    _ => None,
                }
            }
            (true, None) => None,
        };
        if message.created_at < previous.unwrap_or(conversation.created_at) {
            return invalid(format!(
                "message {number} was created before the conversation or the message before it"
            ));
        }
        if message.created_at > conversation.updated_at {
            return invalid(format!(
                "message {number} was created after the conversation's updated_at"
            ));
        }
        // Borrowed: an import checks every message's parts and metadata, which are not copied
        // for it.
        let mut new =
            NewMessage::new(message.role, &message.content).with_parts(&message.parts[..]);
        if let Some(usage) = message.usage {
            new = new.with_usage(usage);
        }
        if let Some(value) = &message.metadata {
            new = new.with_metadata(std::borrow::Cow::Borrowed(value));
        }
        encoded.push(new.validate(max_bytes)?);
    }
    Ok(encoded)
}

/// A record's times: each in microseconds, within the years 1 to 9999, the first not after the
/// second.
fn check_times(created: DateTime<Utc>, updated: DateTime<Utc>, whose: &str) -> Result<()> {
    microseconds(created, &format!("{whose} created_at"))?;
    microseconds(updated, &format!("{whose} updated_at"))?;
    // Stored times sort in time order only within four-digit years (SQLite keeps them as text):
    // a conversation of the year 10000 would sort first and send list cursors round in circles.
    // Messages lie between the conversation's times (checked with them).
    let (earliest, latest) = crate::cursor::four_digit_years();
    if created.naive_utc() < earliest || updated.naive_utc() > latest {
        return Err(Error::InvalidImport(
            "a time is outside the years 1 to 9999".into(),
        ));
    }
    if updated < created {
        return Err(Error::InvalidImport(format!(
            "{whose} updated_at is before its created_at"
        )));
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
            pinned: false,
            archived: false,
            tags: Vec::new(),
            metadata: None,
            usage: Usage::ZERO,
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
                usage: None,
                parts: Vec::new(),
            })
            .collect();
        (user, conversation, messages)
    }

    /// `sample(3)` with a branch forking after message 1 and holding two messages of its own,
    /// active.
    fn branched() -> (UserId, Conversation, Vec<Branch>, Vec<Message>) {
        let (user, mut conversation, mut messages) = sample(3);
        let one = crate::ids::BranchId::new(1).unwrap();
        conversation.branch = one;
        conversation.updated_at = time(10);
        for (seq, at) in [(2, 5), (3, 6)] {
            messages.push(Message {
                id: MessageId::generate(),
                seq,
                branch: one,
                created_at: time(at),
                ..messages[0].clone()
            });
        }
        let branch = |id, parent, fork_seq, active| Branch {
            id,
            parent,
            fork_seq,
            length: 3,
            created_at: time(4),
            updated_at: time(6),
            active,
            retired: false,
        };
        let root = crate::ids::BranchId::ROOT;
        let branches = vec![
            branch(root, None, 0, false),
            branch(one, Some(root), 1, true),
        ];
        (user, conversation, branches, messages)
    }

    #[test]
    fn a_tree_is_checked_along_each_path() {
        let (user, conversation, branches, messages) = branched();
        let checked = check_import(&user, &conversation, &branches, &messages, 100).unwrap();
        assert_eq!(
            checked.tree.off_branch(conversation.branch),
            3,
            "the root's three"
        );
        // Its first message is compared with the root's message it follows, at the fork.
        let mut m = messages.clone();
        m[3].created_at = time(0);
        let refused = check_import(&user, &conversation, &branches, &m, 100);
        assert!(
            matches!(&refused, Err(Error::InvalidImport(why)) if why.contains("created before")),
            "{:?}",
            refused.err()
        );
        let mut b = branches.clone();
        b[1].created_at = time(-1);
        assert!(check_import(&user, &conversation, &b, &messages, 100).is_err());
        let mut b = branches;
        b[1].fork_seq = 0;
        assert!(check_import(&user, &conversation, &b, &messages, 100).is_err());
    }

    fn check(user: &UserId, c: &Conversation, m: &[Message]) -> Result<CheckedImport> {
        check_import(user, c, &[], m, 100)
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
        let mut c = conversation.clone();
        (c.pinned, c.archived) = (true, true);
        assert!(refused(&c, &messages).contains("both pinned and archived"));
        let mut c = conversation.clone();
        c.tags = ["b", "a"].map(|t| Tag::new(t).unwrap()).to_vec();
        assert!(refused(&c, &messages).contains("tags are not sorted"));
        let mut c = conversation.clone();
        c.metadata = Some(serde_json::json!([1]));
        assert!(matches!(
            check(&user, &c, &messages),
            Err(Error::InvalidMetadata)
        ));
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
