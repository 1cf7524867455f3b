-- Conversations and messages for MariaDB 10.6+ and MySQL 8.
-- Ids are UUIDv7 as 16-byte VARBINARY (one column type every backend shares). User ids are
-- VARBINARY too, so that they compare byte for byte: under a text collation 'Alice' would equal
-- 'alice' and 'alice ' (case-insensitive, PAD SPACE), and one user would reach another's rows.
-- Timestamps are naive UTC DATETIME(6): microseconds, and no session time zone can shift them.
-- Text is utf8mb4 (every Unicode character), LONGTEXT for message content (TEXT stops at 64 KiB).
CREATE TABLE chatstore_conversations (
    id VARBINARY(16) NOT NULL PRIMARY KEY,
    user_id VARBINARY(1020) NOT NULL,
    title VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    message_count BIGINT NOT NULL DEFAULT 0,
    CONSTRAINT chatstore_conversations_id_length CHECK (LENGTH(id) = 16),
    CONSTRAINT chatstore_conversations_user_id_length
        CHECK (CHAR_LENGTH(CONVERT(user_id USING utf8mb4)) BETWEEN 1 AND 255),
    CONSTRAINT chatstore_conversations_title_length
        CHECK (title IS NULL OR CHAR_LENGTH(title) BETWEEN 1 AND 255),
    CONSTRAINT chatstore_conversations_message_count_nonnegative CHECK (message_count >= 0),
    -- The parent key of messages' composite foreign key: a message's owner is its conversation's owner.
    CONSTRAINT chatstore_conversations_id_user UNIQUE (id, user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- list_conversations: one user's conversations, most recently updated first, keyset on (updated_at, id).
CREATE INDEX chatstore_conversations_user_updated ON chatstore_conversations (user_id, updated_at DESC, id DESC);

CREATE TABLE chatstore_messages (
    id VARBINARY(16) NOT NULL PRIMARY KEY,
    conversation_id VARBINARY(16) NOT NULL,
    user_id VARBINARY(1020) NOT NULL,
    seq BIGINT NOT NULL,
    role VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    content LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    metadata LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL,
    created_at DATETIME(6) NOT NULL,
    CONSTRAINT chatstore_messages_id_length CHECK (LENGTH(id) = 16),
    CONSTRAINT chatstore_messages_seq_positive CHECK (seq >= 1),
    CONSTRAINT chatstore_messages_role_valid CHECK (role IN ('system', 'developer', 'user', 'assistant', 'tool')),
    CONSTRAINT chatstore_messages_metadata_object
        CHECK (metadata IS NULL OR (JSON_VALID(metadata) AND JSON_TYPE(metadata) = 'OBJECT')),
    -- The one ordering key: every history window is a range scan on it.
    CONSTRAINT chatstore_messages_conversation_seq UNIQUE (conversation_id, seq),
    CONSTRAINT chatstore_messages_conversation_fk FOREIGN KEY (conversation_id, user_id)
        REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
