-- Search words are indexed after the append, not in its transaction: FTS5 wrote a segment on every
-- commit (about 60 µs, plus 25 µs a message), most of a single append's cost. A message is now in
-- the index once `chatstore_search_state.indexed_through` has passed its key; the store indexes the
-- messages after it in batches (a search does first, and `ChatStore::index_pending`), so a search
-- still finds every message committed before it began. Nothing is lost by a crash between an append
-- and its indexing: what waits is read from the messages themselves.
CREATE TABLE chatstore_search_state (
    id INTEGER NOT NULL PRIMARY KEY
        CONSTRAINT chatstore_search_state_one_row CHECK (id = 1),
    -- Every message whose key is at most this is in chatstore_messages_search.
    indexed_through INTEGER NOT NULL
);
INSERT INTO chatstore_search_state (id, indexed_through)
SELECT 1, coalesce(max(key), 0) FROM chatstore_messages;

DROP TRIGGER chatstore_messages_search_insert;
DROP TRIGGER chatstore_messages_search_delete;
DROP TRIGGER chatstore_messages_search_update;

-- A deleted message leaves the index, if it was in it (account deletion means it). SQLite gives a
-- new row the largest key plus one, so deleting the newest messages would let the next insert take
-- a key the state counts as indexed: the state falls back to the largest key left. (Run for every
-- deleted row, whatever its key, so the last one of a statement sees the final table.)
CREATE TRIGGER chatstore_messages_search_delete AFTER DELETE ON chatstore_messages BEGIN
    DELETE FROM chatstore_messages_search
    WHERE rowid = old.key AND old.key <= (SELECT indexed_through FROM chatstore_search_state);
    UPDATE chatstore_search_state
    SET indexed_through = (SELECT coalesce(max(key), 0) FROM chatstore_messages)
    WHERE indexed_through > (SELECT coalesce(max(key), 0) FROM chatstore_messages);
END;

-- The store never updates a message; another program that does keeps the index in step too (a
-- message not yet indexed is indexed as it is then).
CREATE TRIGGER chatstore_messages_search_update AFTER UPDATE OF content, search_text, user_id ON chatstore_messages
WHEN old.key <= (SELECT indexed_through FROM chatstore_search_state) BEGIN
    DELETE FROM chatstore_messages_search WHERE rowid = old.key;
    INSERT INTO chatstore_messages_search (rowid, body, owner)
    VALUES (new.key, substr(coalesce(new.search_text, new.content), 1, 100000), hex(new.user_id));
END;
