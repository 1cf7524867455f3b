-- Conversation metadata and tags. `metadata` is the application's JSON object, `tags` the
-- conversation's tags as a JSON array of strings, sorted, NULL when it has none: what a read of the
-- conversation returns, from its own row.
ALTER TABLE chatstore_conversations ADD COLUMN metadata TEXT
    CONSTRAINT chatstore_conversations_metadata_object CHECK (metadata IS NULL OR json_type(metadata) = 'object');
ALTER TABLE chatstore_conversations ADD COLUMN tags TEXT
    CONSTRAINT chatstore_conversations_tags_array CHECK (tags IS NULL OR json_type(tags) = 'array');
-- One row per tag of a conversation, carrying the conversation's place in the lists
-- (`list_rank`, `updated_at`: copied from its row in every transaction that changes them), so that
-- a list of one tag is one range of the index below, read a page at a time.
CREATE TABLE chatstore_conversation_tags (
    conversation_id BLOB NOT NULL,
    user_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    list_rank SMALLINT NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    CONSTRAINT chatstore_conversation_tags_key PRIMARY KEY (conversation_id, user_id, tag),
    CONSTRAINT chatstore_conversation_tags_conversation_fk FOREIGN KEY (conversation_id, user_id)
        REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE
) WITHOUT ROWID;
-- A user's conversations with one tag, in list order; and the user's tags, for their counts.
CREATE INDEX chatstore_conversation_tags_list ON chatstore_conversation_tags (user_id, tag, list_rank DESC, updated_at DESC, conversation_id DESC);
