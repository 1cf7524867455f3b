-- One command per EXECUTE, as in up.sql (Citus).
DO $$
BEGIN
    EXECUTE 'DROP TABLE chatstore_conversation_tags';
    EXECUTE 'ALTER TABLE chatstore_conversations DROP COLUMN tags';
    EXECUTE 'ALTER TABLE chatstore_conversations DROP COLUMN metadata';
END
$$;
