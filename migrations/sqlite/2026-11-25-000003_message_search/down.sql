DROP TRIGGER messages_search_update;
DROP TRIGGER messages_search_delete;
DROP TRIGGER messages_search_insert;
DROP TABLE messages_search;

-- Back to the table without `key` and `search_text`.
CREATE TABLE messages_rebuilt (
    id BLOB NOT NULL PRIMARY KEY
        CONSTRAINT messages_id_length CHECK (length(id) = 16),
    conversation_id BLOB NOT NULL,
    user_id TEXT NOT NULL,
    seq BIGINT NOT NULL
        CONSTRAINT messages_seq_positive CHECK (seq >= 1),
    role TEXT NOT NULL
        CONSTRAINT messages_role_valid CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content TEXT NOT NULL,
    metadata TEXT
        CONSTRAINT messages_metadata_object CHECK (metadata IS NULL OR json_type(metadata) = 'object'),
    created_at TIMESTAMP NOT NULL,
    CONSTRAINT messages_conversation_fk FOREIGN KEY (conversation_id, user_id)
        REFERENCES conversations (id, user_id) ON DELETE CASCADE
);
INSERT INTO messages_rebuilt
SELECT id, conversation_id, user_id, seq, role, content, metadata, created_at FROM messages ORDER BY key;
DROP TABLE messages;
ALTER TABLE messages_rebuilt RENAME TO messages;
CREATE UNIQUE INDEX messages_conversation_seq ON messages (conversation_id, seq);
CREATE INDEX messages_system ON messages (conversation_id, seq) WHERE role = 'system';
