DROP TABLE chatstore_message_words;
ALTER TABLE chatstore_messages DROP COLUMN search_text;
