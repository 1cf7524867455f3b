DROP TRIGGER chatstore_messages_search_update;
DROP TRIGGER chatstore_messages_search_delete;
DROP TRIGGER chatstore_messages_search_insert;
DROP TABLE chatstore_messages_search;

-- Back to the table without `key` and `search_text`.
CREATE TABLE chatstore_messages_rebuilt (
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
INSERT INTO chatstore_messages_rebuilt
SELECT id, conversation_id, user_id, seq, role, content, metadata, created_at FROM chatstore_messages ORDER BY key;
DROP TABLE chatstore_messages;
ALTER TABLE chatstore_messages_rebuilt RENAME TO chatstore_messages;
CREATE UNIQUE INDEX chatstore_messages_conversation_seq ON chatstore_messages (conversation_id, seq);
CREATE INDEX chatstore_messages_system ON chatstore_messages (conversation_id, seq) WHERE role IN ('system', 'developer');
