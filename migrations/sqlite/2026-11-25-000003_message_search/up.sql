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
CREATE TABLE messages_rebuilt (
    key INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE
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
    search_text TEXT,
    CONSTRAINT messages_conversation_fk FOREIGN KEY (conversation_id, user_id)
        REFERENCES conversations (id, user_id) ON DELETE CASCADE
);
INSERT INTO messages_rebuilt (id, conversation_id, user_id, seq, role, content, metadata, created_at)
SELECT id, conversation_id, user_id, seq, role, content, metadata, created_at FROM messages ORDER BY rowid;
DROP TABLE messages;
ALTER TABLE messages_rebuilt RENAME TO messages;
CREATE UNIQUE INDEX messages_conversation_seq ON messages (conversation_id, seq);
CREATE INDEX messages_system ON messages (conversation_id, seq) WHERE role = 'system';

-- Contentless: the index keeps no copy of the text (the messages table has it). `owner` holds the
-- hex of the owner's id, one token, so a search is the intersection with that user's messages rather
-- than a filter over everyone's matches. unicode61 with remove_diacritics 2 folds case and the
-- accents of Latin letters. Only the first 100,000 characters of a message are indexed (the same
-- limit as on PostgreSQL, whose tsvector cannot pass 1 MB). secure-delete removes a deleted
-- message's words from the index itself, not only from its results: account deletion means it.
CREATE VIRTUAL TABLE messages_search USING fts5(
    body, owner,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO messages_search (messages_search, rank) VALUES ('secure-delete', 1);

CREATE TRIGGER messages_search_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_search (rowid, body, owner)
    VALUES (new.key, substr(coalesce(new.search_text, new.content), 1, 100000), hex(new.user_id));
END;

CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_search WHERE rowid = old.key;
END;

-- The store never updates a message; another program that does keeps the index in step too.
CREATE TRIGGER messages_search_update AFTER UPDATE OF content, search_text, user_id ON messages BEGIN
    DELETE FROM messages_search WHERE rowid = old.key;
    INSERT INTO messages_search (rowid, body, owner)
    VALUES (new.key, substr(coalesce(new.search_text, new.content), 1, 100000), hex(new.user_id));
END;

-- Messages stored before this migration.
INSERT INTO messages_search (rowid, body, owner)
SELECT key, substr(content, 1, 100000), hex(user_id) FROM messages;
