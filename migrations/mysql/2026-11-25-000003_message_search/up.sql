-- Full-text search over messages. InnoDB's FULLTEXT index does not fit: it skips words shorter than
-- innodb_ft_min_token_size (3 by default, a server-wide setting that needs a restart), so "AI",
-- "go" and every Chinese character would never be found, and it drops stop words. So the store
-- indexes words itself, split and folded in Rust exactly as the query is: one row per distinct word
-- of a message, with how often it occurs there (the rank of a best-match search).
--
-- `search_text` exists for the other backends' sake (one schema for the store's inserts) and stays
-- NULL here: the words are read from the content.
ALTER TABLE chatstore_messages ADD COLUMN search_text LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;

CREATE TABLE chatstore_message_words (
    message_id VARBINARY(16) NOT NULL,
    user_id VARBINARY(1020) NOT NULL,
    -- Folded by the store; compared byte for byte. Longer words are cut to 64 characters here (and
    -- in queries), and the store checks each candidate against its content.
    word VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    hits INT NOT NULL,
    PRIMARY KEY (message_id, word),
    CONSTRAINT chatstore_message_words_message_fk FOREIGN KEY (message_id)
        REFERENCES chatstore_messages (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A search reads the user's messages holding a word (or a prefix) as one index range.
CREATE INDEX chatstore_messages_search ON chatstore_message_words (user_id, word, message_id);
