-- One command per EXECUTE, as in up.sql (Citus).
DO $$
BEGIN
    EXECUTE 'CREATE INDEX chatstore_conversations_user_updated ON chatstore_conversations '
        '(user_id, updated_at DESC, id DESC)';
    EXECUTE 'DROP INDEX chatstore_conversations_user_rank';
    EXECUTE 'ALTER TABLE chatstore_conversations DROP COLUMN list_rank';
END
$$;
