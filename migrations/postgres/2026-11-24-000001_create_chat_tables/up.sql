-- Conversations and messages for PostgreSQL.
-- Ids are UUIDv7 as 16-byte BYTEA (one column type every backend shares); timestamps are naive UTC
-- `timestamp` (microseconds), so the session time zone can never shift them.
CREATE TABLE chatstore_conversations (
    id BYTEA NOT NULL PRIMARY KEY
        CONSTRAINT chatstore_conversations_id_length CHECK (octet_length(id) = 16),
    user_id VARCHAR(255) NOT NULL
        CONSTRAINT chatstore_conversations_user_id_length CHECK (char_length(user_id) BETWEEN 1 AND 255),
    title VARCHAR(255)
        CONSTRAINT chatstore_conversations_title_length CHECK (title IS NULL OR char_length(title) BETWEEN 1 AND 255),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    message_count BIGINT NOT NULL DEFAULT 0
        CONSTRAINT chatstore_conversations_message_count_nonnegative CHECK (message_count >= 0),
    -- The parent key of messages' composite foreign key: a message's owner is its conversation's owner.
    CONSTRAINT chatstore_conversations_id_user UNIQUE (id, user_id)
);

-- list_conversations: one user's conversations, most recently updated first, keyset on (updated_at, id).
CREATE INDEX chatstore_conversations_user_updated ON chatstore_conversations (user_id, updated_at DESC, id DESC);

CREATE TABLE chatstore_messages (
    id BYTEA NOT NULL PRIMARY KEY
        CONSTRAINT chatstore_messages_id_length CHECK (octet_length(id) = 16),
    conversation_id BYTEA NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    seq BIGINT NOT NULL
        CONSTRAINT chatstore_messages_seq_positive CHECK (seq >= 1),
    role VARCHAR(16) NOT NULL
        CONSTRAINT chatstore_messages_role_valid CHECK (role IN ('system', 'developer', 'user', 'assistant', 'tool')),
    content TEXT NOT NULL,
    metadata TEXT
        CONSTRAINT chatstore_messages_metadata_object CHECK (metadata IS NULL OR json_typeof(metadata::json) = 'object'),
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT chatstore_messages_conversation_fk FOREIGN KEY (conversation_id, user_id)
        REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE,
    -- The one ordering key: every history window is a range scan on it.
    CONSTRAINT chatstore_messages_conversation_seq UNIQUE (conversation_id, seq)
);
