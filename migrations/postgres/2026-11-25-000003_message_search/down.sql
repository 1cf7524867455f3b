DROP INDEX chatstore_messages_search;
ALTER TABLE chatstore_messages DROP COLUMN search;
ALTER TABLE chatstore_messages DROP COLUMN search_text;
