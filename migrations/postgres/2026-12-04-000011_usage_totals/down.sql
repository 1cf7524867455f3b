-- One command per EXECUTE, as in up.sql (Citus).
DO $$
BEGIN
    EXECUTE 'ALTER TABLE chatstore_conversations DROP COLUMN total_tokens, '
        'DROP COLUMN output_tokens, DROP COLUMN input_tokens';
    EXECUTE 'ALTER TABLE chatstore_messages DROP COLUMN total_tokens, '
        'DROP COLUMN output_tokens, DROP COLUMN input_tokens';
END
$$;
