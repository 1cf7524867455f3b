-- Conversation metadata and tags. `metadata` is the application's JSON object, `tags` the
-- conversation's tags as a JSON array of strings, sorted, NULL when it has none: what a read of the
-- conversation returns, from its own row.
--
-- `chatstore_conversation_tags` holds one row per tag of a conversation, carrying the
-- conversation's place in the lists (`list_rank`, `updated_at`: copied from its row in every
-- transaction that changes them), so that a list of one tag is one range of its index, read a page
-- at a time; the same index gives the user's tags with their counts. On Citus it is distributed by
-- `user_id` with the other tables when the migration run ends.
--
-- One command per EXECUTE (Citus: DDL on a distributed table is sent on from its text, which must
-- hold one command).
DO $$
BEGIN
    EXECUTE 'ALTER TABLE chatstore_conversations ADD COLUMN metadata TEXT '
        'CONSTRAINT chatstore_conversations_metadata_object '
        'CHECK (metadata IS NULL OR json_typeof(metadata::json) = ''object'')';
    EXECUTE 'ALTER TABLE chatstore_conversations ADD COLUMN tags TEXT '
        'CONSTRAINT chatstore_conversations_tags_array '
        'CHECK (tags IS NULL OR json_typeof(tags::json) = ''array'')';
    EXECUTE 'CREATE TABLE chatstore_conversation_tags ('
        'conversation_id BYTEA NOT NULL, '
        'user_id VARCHAR(255) NOT NULL, '
        'tag TEXT NOT NULL, '
        'list_rank SMALLINT NOT NULL, '
        'updated_at TIMESTAMP NOT NULL, '
        'CONSTRAINT chatstore_conversation_tags_key PRIMARY KEY (conversation_id, user_id, tag), '
        'CONSTRAINT chatstore_conversation_tags_conversation_fk FOREIGN KEY (conversation_id, user_id) '
        'REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE)';
    EXECUTE 'CREATE INDEX chatstore_conversation_tags_list ON chatstore_conversation_tags '
        '(user_id, tag, list_rank DESC, updated_at DESC, conversation_id DESC)';
END
$$;
