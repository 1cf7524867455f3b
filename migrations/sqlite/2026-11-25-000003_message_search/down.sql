DROP TRIGGER messages_search_delete;
DROP TRIGGER messages_search_insert;
DROP TABLE messages_search;
ALTER TABLE messages DROP COLUMN search_text;
