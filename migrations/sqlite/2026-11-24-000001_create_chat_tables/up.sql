-- Conversations and messages for SQLite.
-- Ids are UUIDv7 as 16-byte BLOBs; timestamps are naive UTC text written by diesel ("%F %T%.f"), which
-- sorts chronologically; `length()` on TEXT counts characters, so the CHECKs match the library's limits.
CREATE TABLE chatstore_conversations (
    id BLOB NOT NULL PRIMARY KEY
        CONSTRAINT chatstore_conversations_id_length CHECK (length(id) = 16),
    user_id TEXT NOT NULL
        CONSTRAINT chatstore_conversations_user_id_length CHECK (length(user_id) BETWEEN 1 AND 255),
    title TEXT
        CONSTRAINT chatstore_conversations_title_length CHECK (title IS NULL OR length(title) BETWEEN 1 AND 255),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    message_count BIGINT NOT NULL DEFAULT 0
        CONSTRAINT chatstore_conversations_message_count_nonnegative CHECK (message_count >= 0)
);

-- The parent key of messages' composite foreign key: a message's owner is its conversation's owner.
CREATE UNIQUE INDEX chatstore_conversations_id_user ON chatstore_conversations (id, user_id);
-- list_conversations: one user's conversations, most recently updated first, keyset on (updated_at, id).
CREATE INDEX chatstore_conversations_user_updated ON chatstore_conversations (user_id, updated_at DESC, id DESC);

CREATE TABLE chatstore_messages (
    id BLOB NOT NULL PRIMARY KEY
        CONSTRAINT chatstore_messages_id_length CHECK (length(id) = 16),
    conversation_id BLOB NOT NULL,
    user_id TEXT NOT NULL,
    seq BIGINT NOT NULL
        CONSTRAINT chatstore_messages_seq_positive CHECK (seq >= 1),
    role TEXT NOT NULL
        CONSTRAINT chatstore_messages_role_valid CHECK (role IN ('system', 'developer', 'user', 'assistant', 'tool')),
    content TEXT NOT NULL,
    metadata TEXT
        CONSTRAINT chatstore_messages_metadata_object CHECK (metadata IS NULL OR json_type(metadata) = 'object'),
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT chatstore_messages_conversation_fk FOREIGN KEY (conversation_id, user_id)
        REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE
);

-- The one ordering key: every history window is a range scan on it.
CREATE UNIQUE INDEX chatstore_messages_conversation_seq ON chatstore_messages (conversation_id, seq);
