-- Full-text search over messages: an FTS5 index kept by triggers, so every write path (including
-- cascades from a deleted conversation) keeps it in step, in the same transaction.
--
-- `search_text` is what is indexed when it differs from the content: the store sets it for text in
-- scripts written without spaces (Chinese, Japanese, Thai…), with a space around each such
-- character so that each is a token and a word of several is found as a phrase. NULL otherwise.
ALTER TABLE messages ADD COLUMN search_text TEXT;

-- Contentless: the index keeps no copy of the text (the messages table has it). `owner` holds the
-- hex of the owner's id, one token, so a search is the intersection with that user's messages rather
-- than a filter over everyone's matches. unicode61 with remove_diacritics 2 folds case and accents.
CREATE VIRTUAL TABLE messages_search USING fts5(
    body, owner,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER messages_search_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_search (rowid, body, owner)
    VALUES (new.rowid, coalesce(new.search_text, new.content), hex(new.user_id));
END;

CREATE TRIGGER messages_search_delete AFTER DELETE ON messages BEGIN
    DELETE FROM messages_search WHERE rowid = old.rowid;
END;

-- Messages stored before this migration.
INSERT INTO messages_search (rowid, body, owner)
SELECT rowid, coalesce(search_text, content), hex(user_id) FROM messages;
