-- Search words are indexed after the append, not in its transaction: a message's words were a
-- row each, written into two indexes by every append. An append now records only that its
-- messages wait here, one row each; the store indexes them later (a search does first, for its
-- user, and `ChatStore::index_pending` for everyone) and removes their rows, so a search still
-- finds every message committed before it began. Nothing is lost by a crash between an append and
-- its indexing: the rows are written in the append's transaction. A deleted message's row goes
-- with it.
CREATE TABLE chatstore_search_pending (
    message_id VARBINARY(16) NOT NULL PRIMARY KEY,
    user_id VARBINARY(1020) NOT NULL,
    CONSTRAINT chatstore_search_pending_message_fk FOREIGN KEY (message_id)
        REFERENCES chatstore_messages (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A search's catch-up reads its user's waiting messages as one index range.
CREATE INDEX chatstore_search_pending_user ON chatstore_search_pending (user_id, message_id);
