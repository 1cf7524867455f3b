DROP TABLE message_words;
ALTER TABLE messages DROP COLUMN search_text;
