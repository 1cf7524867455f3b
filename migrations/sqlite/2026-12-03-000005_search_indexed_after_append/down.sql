-- Index what waits, then keep the index in each write's transaction again.
INSERT INTO chatstore_messages_search (rowid, body, owner)
SELECT key, substr(coalesce(search_text, content), 1, 100000), hex(user_id) FROM chatstore_messages
WHERE key > (SELECT indexed_through FROM chatstore_search_state);
DROP TRIGGER chatstore_messages_search_delete;
DROP TRIGGER chatstore_messages_search_update;
DROP TABLE chatstore_search_state;

CREATE TRIGGER chatstore_messages_search_insert AFTER INSERT ON chatstore_messages BEGIN
    INSERT INTO chatstore_messages_search (rowid, body, owner)
    VALUES (new.key, substr(coalesce(new.search_text, new.content), 1, 100000), hex(new.user_id));
END;

CREATE TRIGGER chatstore_messages_search_delete AFTER DELETE ON chatstore_messages BEGIN
    DELETE FROM chatstore_messages_search WHERE rowid = old.key;
END;

CREATE TRIGGER chatstore_messages_search_update AFTER UPDATE OF content, search_text, user_id ON chatstore_messages BEGIN
    DELETE FROM chatstore_messages_search WHERE rowid = old.key;
    INSERT INTO chatstore_messages_search (rowid, body, owner)
    VALUES (new.key, substr(coalesce(new.search_text, new.content), 1, 100000), hex(new.user_id));
END;
