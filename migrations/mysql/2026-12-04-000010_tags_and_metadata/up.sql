-- Conversation metadata and tags. `metadata` is the application's JSON object, `tags` the
-- conversation's tags as a JSON array of strings, sorted, NULL when it has none: what a read of the
-- conversation returns, from its own row. (No CHECK: MariaDB names no constraint made with a
-- column; the store writes only what it validated, and refuses any other value it reads.)
ALTER TABLE chatstore_conversations ADD COLUMN metadata LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;
ALTER TABLE chatstore_conversations ADD COLUMN tags LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;
-- One row per tag of a conversation, carrying the conversation's place in the lists
-- (`list_rank`, `updated_at`: copied from its row in every transaction that changes them), so that
-- a list of one tag is one range of the index below, read a page at a time. A tag is at most 64
-- characters: 256 bytes of UTF-8, compared byte by byte as user ids are.
CREATE TABLE chatstore_conversation_tags (
    conversation_id VARBINARY(16) NOT NULL,
    user_id VARBINARY(1020) NOT NULL,
    tag VARBINARY(256) NOT NULL,
    list_rank SMALLINT NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    CONSTRAINT chatstore_conversation_tags_key PRIMARY KEY (conversation_id, user_id, tag),
    CONSTRAINT chatstore_conversation_tags_conversation_fk FOREIGN KEY (conversation_id, user_id)
        REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
-- A user's conversations with one tag, in list order; and the user's tags, for their counts.
CREATE INDEX chatstore_conversation_tags_list ON chatstore_conversation_tags (user_id, tag, list_rank DESC, updated_at DESC, conversation_id DESC);
