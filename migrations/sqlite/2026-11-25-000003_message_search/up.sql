-- Full-text search over messages: an FTS5 index kept by triggers, so every write path (cascades from
-- a deleted conversation included) keeps it in step, in the same transaction.
--
-- The index is keyed by an integer. `messages` had only SQLite's implicit rowid, which VACUUM and a
-- dump and restore may renumber, leaving the index pointing at other messages. So the table is
-- rebuilt with an explicit INTEGER PRIMARY KEY, `key`, which both keep. The message id stays unique,
-- with the same constraints.
--
-- `search_text` is what is indexed when it differs from the content: the store sets it for text in
-- scripts written without spaces (Chinese, Japanese, Thai…), with a space around each such
-- character so that each is a token and a word of several is found as a phrase. NULL otherwise.
CREATE TABLE chatstore_messages_rebuilt (
    key INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE
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
    search_text TEXT,
    CONSTRAINT chatstore_messages_conversation_fk FOREIGN KEY (conversation_id, user_id)
        REFERENCES chatstore_conversations (id, user_id) ON DELETE CASCADE
);
INSERT INTO chatstore_messages_rebuilt (id, conversation_id, user_id, seq, role, content, metadata, created_at)
SELECT id, conversation_id, user_id, seq, role, content, metadata, created_at FROM chatstore_messages ORDER BY rowid;
DROP TABLE chatstore_messages;
ALTER TABLE chatstore_messages_rebuilt RENAME TO chatstore_messages;
CREATE UNIQUE INDEX chatstore_messages_conversation_seq ON chatstore_messages (conversation_id, seq);
CREATE INDEX chatstore_messages_system ON chatstore_messages (conversation_id, seq) WHERE role IN ('system', 'developer');

-- Contentless: the index keeps no copy of the text (the messages table has it). `owner` holds the
-- hex of the owner's id, one token, so a search is the intersection with that user's messages rather
-- than a filter over everyone's matches. unicode61 with remove_diacritics 2 folds case and the
-- accents of Latin letters. Only the first 100,000 characters of a message are indexed (the same
-- limit as on PostgreSQL, whose tsvector cannot pass 1 MB). secure-delete removes a deleted
-- message's words from the index itself, not only from its results: account deletion means it.
CREATE VIRTUAL TABLE chatstore_messages_search USING fts5(
    body, owner,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO chatstore_messages_search (chatstore_messages_search, rank) VALUES ('secure-delete', 1);

CREATE TRIGGER chatstore_messages_search_insert AFTER INSERT ON chatstore_messages BEGIN
    INSERT INTO chatstore_messages_search (rowid, body, owner)
    VALUES (new.key, substr(coalesce(new.search_text, new.content), 1, 100000), hex(new.user_id));
END;

CREATE TRIGGER chatstore_messages_search_delete AFTER DELETE ON chatstore_messages BEGIN
    DELETE FROM chatstore_messages_search WHERE rowid = old.key;
END;

-- The store never updates a message; another program that does keeps the index in step too.
CREATE TRIGGER chatstore_messages_search_update AFTER UPDATE OF content, search_text, user_id ON chatstore_messages BEGIN
    DELETE FROM chatstore_messages_search WHERE rowid = old.key;
    INSERT INTO chatstore_messages_search (rowid, body, owner)
    VALUES (new.key, substr(coalesce(new.search_text, new.content), 1, 100000), hex(new.user_id));
END;

-- Messages stored before this migration.
INSERT INTO chatstore_messages_search (rowid, body, owner)
SELECT key, substr(content, 1, 100000), hex(user_id) FROM chatstore_messages;
