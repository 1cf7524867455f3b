DROP TABLE chatstore_conversation_tags;
ALTER TABLE chatstore_conversations DROP COLUMN tags;
ALTER TABLE chatstore_conversations DROP COLUMN metadata;
