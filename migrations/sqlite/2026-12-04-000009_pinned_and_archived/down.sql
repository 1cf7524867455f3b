CREATE INDEX chatstore_conversations_user_updated ON chatstore_conversations (user_id, updated_at DESC, id DESC);
DROP INDEX chatstore_conversations_user_rank;
ALTER TABLE chatstore_conversations DROP COLUMN list_rank;
