DROP INDEX messages_search;
ALTER TABLE messages DROP COLUMN search;
ALTER TABLE messages DROP COLUMN search_text;
