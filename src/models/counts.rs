//! Counts an operator's call returns.

/// Store-wide counts, from [`ChatStore::stats`](crate::ChatStore::stats). With the `serde` feature:
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

/// What [`ChatStore::delete_user_data`](crate::ChatStore::delete_user_data) removed. With the
/// `serde` feature: `{"conversations", "messages"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct DeletedCounts {
    /// Conversations deleted.
    pub conversations: u64,
    /// Messages deleted.
    pub messages: u64,
}
