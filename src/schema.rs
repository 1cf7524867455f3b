//! Diesel table definitions shared by every backend.
//!
//! Only column types that Diesel's `MultiConnection` supports on all backends appear here: ids are
//! 16-byte `Binary` UUIDv7s, timestamps are naive UTC `Timestamp`s, metadata is JSON `Text`. The
//! per-backend DDL lives in `migrations/<backend>/`.

diesel::table! {
    conversations (id) {
        id -> Binary,
        user_id -> Text,
        title -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        message_count -> BigInt,
    }
}

diesel::table! {
    messages (id) {
        id -> Binary,
        conversation_id -> Binary,
        user_id -> Text,
        seq -> BigInt,
        role -> Text,
        content -> Text,
        metadata -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(conversations, messages);
