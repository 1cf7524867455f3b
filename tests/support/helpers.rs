//! Small helpers the behaviours share: users, what a page of messages holds, conversations to read.

use chatstore::{ChatStore, ConversationId, Message, NewMessage, UserId, Window};

/// A user id the test knows to be valid.
pub fn user(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

/// The messages' contents, in order.
pub fn contents(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.content.clone()).collect()
}

/// The messages' seqs, in order.
pub fn seqs(messages: &[Message]) -> Vec<i64> {
    messages.iter().map(|m| m.seq).collect()
}

/// A conversation holding messages "m1".."m{n}", appended in batches.
pub fn conversation_with(store: &ChatStore, owner: &UserId, n: usize) -> ConversationId {
    let conv = store.create_conversation(owner, Some("history")).unwrap();
    let texts: Vec<String> = (1..=n).map(|i| format!("m{i}")).collect();
    for chunk in texts.chunks(500) {
        let batch: Vec<NewMessage> = chunk.iter().map(NewMessage::user).collect();
        store.append_messages(owner, conv.id, &batch).unwrap();
    }
    conv.id
}

/// The contents [`conversation_with`] gave the messages of `range`.
pub fn expected(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// A conversation's complete observable state, to show that a refused write changed nothing.
pub fn snapshot(store: &ChatStore, owner: &UserId, conv: ConversationId) -> (i64, Vec<Message>) {
    let c = store.conversation(owner, conv).unwrap();
    (
        c.message_count,
        store.messages(owner, conv, Window::All).unwrap().messages,
    )
}

/// That `copy` is `original` copied into another conversation (a fork): new id, the same seq,
/// role, content, metadata, usage, parts and time.
pub fn assert_copied(copy: &Message, original: &Message) {
    assert_ne!(copy.id, original.id);
    assert_eq!(
        (
            copy.seq,
            copy.role,
            &copy.content,
            &copy.metadata,
            copy.usage,
            &copy.parts,
            copy.created_at
        ),
        (
            original.seq,
            original.role,
            &original.content,
            &original.metadata,
            original.usage,
            &original.parts,
            original.created_at
        )
    );
}
