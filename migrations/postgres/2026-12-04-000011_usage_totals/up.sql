-- Token usage. A message may carry the tokens its model call used: all three columns or none,
-- input plus output at most the total. A conversation keeps the sums of its messages' usage,
-- changed in every transaction that adds or removes messages; a user's total is the sum over
-- their conversations' rows. Existing rows have no usage: NULL on messages, 0 on conversations
-- (a column with a constant default is added without rewriting the table).
--
-- One command per EXECUTE (Citus: DDL on a distributed table is sent on from its text, which must
-- hold one command).
DO $$
BEGIN
    EXECUTE 'ALTER TABLE chatstore_messages '
        'ADD COLUMN input_tokens BIGINT, '
        'ADD COLUMN output_tokens BIGINT, '
        'ADD COLUMN total_tokens BIGINT';
    -- Its own command: Citus takes ADD CONSTRAINT only as an ALTER TABLE's one subcommand.
    EXECUTE 'ALTER TABLE chatstore_messages '
        'ADD CONSTRAINT chatstore_messages_usage_valid CHECK ('
        '(input_tokens IS NULL AND output_tokens IS NULL AND total_tokens IS NULL) '
        'OR (input_tokens >= 0 AND output_tokens >= 0 AND input_tokens + output_tokens <= total_tokens))';
    EXECUTE 'ALTER TABLE chatstore_conversations '
        'ADD COLUMN input_tokens BIGINT NOT NULL DEFAULT 0, '
        'ADD COLUMN output_tokens BIGINT NOT NULL DEFAULT 0, '
        'ADD COLUMN total_tokens BIGINT NOT NULL DEFAULT 0';
END
$$;
