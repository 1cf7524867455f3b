ALTER TABLE chatstore_conversations DROP COLUMN total_tokens;
ALTER TABLE chatstore_conversations DROP COLUMN output_tokens;
ALTER TABLE chatstore_conversations DROP COLUMN input_tokens;
ALTER TABLE chatstore_messages DROP COLUMN total_tokens;
ALTER TABLE chatstore_messages DROP COLUMN output_tokens;
ALTER TABLE chatstore_messages DROP COLUMN input_tokens;
